"""Deep Compression, Table 1 on the embedded MNIST: LeNet-300-100 and LeNet-5 through the whole chain.

Stages: trained baseline -> iterative magnitude pruning with retraining (AGP schedule, per-layer
targets) -> trained weight sharing (linear-init k-means per layer, centroid fine-tuning; biases
shared too) -> TFLite export -> Huffman packing (HuffDecode ops).

The defaults (``_common.CONFIG``) are issue 19's recipe, chosen on validation data only: the last
``--val`` training images (CONFIG: 10,000 for both LeNets) are held out from
every training stage (the baseline too: ``baselines.py --val``), and
``benchmarks/recipe_search.py`` scored the candidates by the error of their packed files on them
(recorded in docs/results/search_<model>.json, shown in docs/results.md). The levers: lower
density on the big layers, longer retraining, per-layer bits below the paper's 5 / 8, biases shared with 3 bits. Every stage is exported and packed, and its
test error is measured on that packed ``.tflite`` through ``dc_keras.runtime.Interpreter`` over
the 10,000 test images. Ratios are whole files: float ``.tflite`` of the baseline / packed file.

Side by side on the same trained baseline (``--peers``, default on; see benchmarks/peers.py):
tfmot 0.8.1's recipe (zip of its .tflite), gzip/xz/zstd/zip of our pruned+clustered float
``.tflite``, TFLite int8 post-training quantization with and without our packing.

    .venv/bin/python benchmarks/paper_table1.py --model lenet-300-100 --json out.json
    .venv/bin/python benchmarks/paper_table1.py --model lenet-5 --json out.json

The JSON's top level holds ``ratio`` and ``test_error`` (fraction) of the final packed file,
``stages`` (one dict per row) and ``peers``; benchmarks/results_doc.py turns JSONs into
docs/results.md.
"""
import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from _common import CONFIG, GOALS, LITERATURE, PAPER, log, machine_info, save_model, write_json

SENSITIVITY_SWEEP = (0.5, 0.7, 0.8, 0.9, 0.93, 0.95, 0.965, 0.975, 0.985)


def _parse_map(text, cast):
    out = {}
    for item in text.split(","):
        if "=" not in item:
            raise argparse.ArgumentTypeError(f"expected layer=value pairs, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = cast(v)
    return out


def weight_counts(model, layers):
    """(kept, total) parameters of ``model``: all kernels and biases; pruned kernels count their non-zeros."""
    kept = total = 0
    for layer in model.layers:
        for w in layer.get_weights():
            total += w.size
            kept += int(np.count_nonzero(w)) if layer.name in layers and w.ndim >= 2 else w.size
    return kept, total


def predictions(tflite_bytes, x, batch_size=1000):
    """Raw output of a .tflite over ``x`` through dc_keras.runtime.Interpreter (for bit-exact checks)."""
    from dc_keras import pipeline

    return pipeline.predict_tflite(tflite_bytes, x, batch_size)


def layer_table(model, packed, cfg):
    """Per-layer rows like the paper's Tables 2/3, from the model and the packed file's report."""
    from dc_keras import export, pipeline

    report = export.inspect(packed)
    by_size = {}
    for r in report.rows:
        by_size.setdefault(int(np.prod(r.shape)) if r.shape else 1, []).append(r)
    rows = []
    for st in pipeline.layer_stats(model):
        cand = by_size.get(st["params"], [])
        packed_bytes = cand[0].packed_bytes if len(cand) == 1 else None
        raw_bytes = cand[0].raw_bytes if len(cand) == 1 else st["params"] * 4
        rows.append({
            "layer": st["layer"], "params": st["params"], "nonzero": st["nonzero"],
            "density": st["density"], "distinct": st["distinct"], "bits": cfg["bits"].get(st["layer"]),
            "raw_bytes": raw_bytes, "packed_bytes": packed_bytes,
            "bits_per_nonzero": (8.0 * packed_bytes / st["nonzero"]) if packed_bytes and st["nonzero"] else None,
        })
    return rows, report


def _cached(out_dir, stem, key):
    """Path of ``<stem>.keras`` in ``out_dir`` if it was saved with the same settings ``key``."""
    path, meta = os.path.join(out_dir, stem + ".keras"), os.path.join(out_dir, stem + ".json")
    try:
        with open(meta) as f:
            return path if json.load(f) == json.loads(json.dumps(key)) and os.path.exists(path) else None
    except (OSError, ValueError):
        return None


def _store(out_dir, stem, key, model):
    save_model(model, os.path.join(out_dir, stem + ".keras"))
    write_json(os.path.join(out_dir, stem + ".json"), key)


@dataclass
class Run:
    """One model's run: settings, data, and the rows measured so far."""

    args: argparse.Namespace
    cfg: dict
    out_dir: str
    data: tuple  # (x_train, y_train, x_test, y_test, x_val, y_val)
    stages: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    layers: set = field(default_factory=set)

    @property
    def verbose(self):
        return 2 if self.args.verbose else 0  # 2: one line per epoch

    def evaluate(self, tflite_bytes, x=None, y=None):
        """Test error of a .tflite; on the (possibly subset) test set unless ``x``, ``y`` are given."""
        from dc_keras import pipeline

        x, y = (self.data[2], self.data[3]) if x is None else (x, y)
        return pipeline.evaluate_tflite(tflite_bytes, x, y, progress=False)

    def save(self, fname, data):
        from dc_keras._fileio import atomic_write

        atomic_write(os.path.join(self.out_dir, fname), data)

    def add_stage(self, stage, model, bits, minutes, note=""):
        """Exports and packs ``model``, measures the packed file's test error; one row of the table."""
        from dc_keras import export

        t = time.time()
        float_tfl = export.to_tflite(model, pack=False)
        packed = export.pack(float_tfl, context_model=self.cfg["context_model"])
        err = self.evaluate(packed)
        kept, total = weight_counts(model, self.layers)
        row = {"stage": stage, "params": total, "params_kept": kept, "kept_fraction": kept / total,
               "bits": bits, "float_tflite_bytes": len(float_tfl), "file_bytes": len(packed),
               "test_error": err, "minutes": minutes, "note": note}
        self.stages.append(row)
        row["ratio"] = self.stages[0]["float_tflite_bytes"] / len(packed)
        log(f"{stage}: {kept:,}/{total:,} params kept, file {len(packed):,} B ({row['ratio']:.1f}x), "
            f"error {100 * err:.2f} %  [eval {time.time() - t:.0f}s]")
        return float_tfl, packed


def _settings(args):
    """The model's CONFIG entry with the command line's overrides applied."""
    cfg = dict(CONFIG[args.model])
    if args.sparsity:
        cfg["sparsity"] = {**cfg["sparsity"], **args.sparsity}
    if args.bits:
        cfg["bits"] = {**cfg["bits"], **args.bits}
    cfg["prune_epochs"] = args.prune_epochs or cfg["prune_epochs"]
    cfg["prune_lr"] = args.prune_lr or cfg["prune_lr"]
    if args.cluster_epochs is not None:
        cfg["cluster_epochs"] = args.cluster_epochs
    if args.cluster_biases is not None:
        cfg["cluster_biases"] = args.cluster_biases or False
    if args.context_model is not None:
        cfg["context_model"] = args.context_model
    return cfg


def _mnist(args):
    """(x_train, y_train, x_test, y_test, x_val, y_val): the last ``--val`` training images are
    held out for every choice (sensitivity, recipe search); training uses the rest."""
    from dc_keras import datasets

    (x_train, y_train), (x_test, y_test) = datasets.mnist.load_data()
    x_val, y_val = datasets.normalize(x_train[len(x_train) - args.val:]), y_train[len(y_train) - args.val:]
    x_train, y_train = x_train[:len(x_train) - args.val], y_train[:len(y_train) - args.val]
    if args.train_subset:
        x_train, y_train = x_train[:args.train_subset], y_train[:args.train_subset]
    if args.test_subset:
        x_test, y_test = x_test[:args.test_subset], y_test[:args.test_subset]
    return datasets.normalize(x_train), y_train, datasets.normalize(x_test), y_test, x_val, y_val


def _check_held_out(baseline_dir, model, val):
    """Refuses a baseline that trained on the --val images: baselines.py's baselines.json in its folder
    records how many of the last training images it held out (``val_held_out``); the validation error
    and the sensitivity sweep of this run are measured on the last ``val`` ones. (The default
    --baseline_dir, from ``baselines.py`` without --val, held out none.) A folder without that record is
    used as it is, with a log line."""
    path = os.path.join(baseline_dir, "baselines.json")
    try:
        with open(path) as f:
            entry = next((r for r in json.load(f) if r.get("model") == model), None)
    except (OSError, ValueError):
        entry = None
    if entry is None or "val_held_out" not in entry:
        log(f"baseline: {path} does not say which images {model}'s baseline held out; its validation figures "
            f"assume the last {val:,} training images were not trained on")
        return
    if entry["val_held_out"] < val:
        raise SystemExit(f"paper_table1.py: the baseline in {baseline_dir} held out {entry['val_held_out']:,} training "
                         f"images, but --val {val} measures validation error on the last {val:,}: they were trained "
                         f"on. Train one that holds them out (benchmarks/baselines.py --val {val} --out_dir DIR) and "
                         "pass --baseline_dir DIR, or a smaller --val.")


def _record_held_out(baseline_dir, model, val, epochs, seed):
    """The baselines.json entry (as benchmarks/baselines.py writes it) of a baseline trained here, so a
    later run knows which images it held out (_check_held_out)."""
    path = os.path.join(baseline_dir, "baselines.json")
    try:
        with open(path) as f:
            entries = [r for r in json.load(f) if r.get("model") != model]
    except (OSError, ValueError):
        entries = []
    write_json(path, entries + [{"model": model, "epochs": epochs, "seed": seed, "val_held_out": val,
                                 "trained_by": "benchmarks/paper_table1.py"}])


def _baseline(run):
    """The trained baseline: loaded from --baseline_dir, or trained here (and saved there)."""
    import keras

    from dc_keras import models, pipeline

    args, cfg = run.args, run.cfg
    stem = os.path.join(os.path.expanduser(args.baseline_dir), cfg["builder"])
    t0 = time.time()
    if os.path.exists(stem + ".keras") and not args.train_subset:
        _check_held_out(os.path.dirname(stem), args.model, args.val)
        log(f"baseline: loading {stem}.keras")
        model, source = keras.saving.load_model(stem + ".keras"), stem + ".keras"
    else:
        epochs = args.baseline_epochs or cfg["baseline_epochs"]
        log(f"baseline: training {args.model} for {epochs} epochs")
        # the initial weights from --seed too, as baselines.py does (train_baseline's seed fixes only the
        # batches): unseeded, each run trained another baseline (1-epoch smoke runs: 29.8 / 33.6 / 30.0 %)
        keras.utils.set_random_seed(args.seed)
        model = pipeline.train_baseline(getattr(models, cfg["builder"])(), run.data[0], run.data[1], epochs=epochs,
                                        seed=args.seed, verbose=run.verbose)
        source = f"trained here, {epochs} epochs"
        if not args.train_subset:
            os.makedirs(os.path.dirname(stem), exist_ok=True)
            save_model(model, stem + ".keras")
            _record_held_out(os.path.dirname(stem), args.model, args.val, epochs, args.seed)
    run.timings["baseline_minutes"] = (time.time() - t0) / 60
    return model, source, stem


def _sensitivity(run, baseline, baseline_source):
    """One layer pruned at a time, no retraining, on the held-out validation images (``--val``).
    With ``--resume`` and a loaded baseline, a sweep saved in ``--out_dir`` for the same baseline
    file, validation images, sparsities and layers is reused (its minutes are then None)."""
    from dc_keras import train

    t0 = time.time()
    x_val, y_val = run.data[4], run.data[5]
    key = {"baseline": baseline_source, "val": run.args.val, "sparsities": list(SENSITIVITY_SWEEP),
           "layers": sorted(run.layers), "metric": "error",
           "baseline_mtime": os.path.getmtime(baseline_source) if baseline_source.endswith(".keras") else None}
    path = os.path.join(run.out_dir, "sensitivity.json")
    sens = _cached_sensitivity(path, key) if run.args.resume and baseline_source.endswith(".keras") else None
    if sens is None:
        sens = train.sensitivity(baseline, (x_val, y_val), sparsities=SENSITIVITY_SWEEP, metric="error",
                                 layers=sorted(run.layers))
        if baseline_source.endswith(".keras"):
            write_json(path, {"key": key, "report": sens})
        run.timings["sensitivity_minutes"] = (time.time() - t0) / 60
    else:
        log(f"sensitivity: reusing {path} (same baseline, validation images, sparsities, layers)")
        run.timings["sensitivity_minutes"] = None
    suggested = train.suggest_sparsity(sens, max_drop=run.args.max_drop)
    log(f"sensitivity (validation error, one layer at a time): suggested at max_drop={run.args.max_drop}: "
        f"{suggested}")
    if run.args.targets == "sensitivity":
        run.cfg["sparsity"] = {k: v for k, v in suggested.items() if v > 0}
        run.layers = set(run.cfg["sparsity"])
    return sens, suggested


def _cached_sensitivity(path, key):
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return None
    return saved["report"] if saved.get("key") == json.loads(json.dumps(key)) else None


def _trained_or_cached(run, what, timing, key, resume, train_fn):
    """``train_fn()``, or the model an earlier --resume run saved with the same ``key``; its
    minutes go to ``run.timings[timing]`` (None when reused)."""
    import keras

    cached = _cached(run.out_dir, what, key) if resume else None
    t0 = time.time()
    if cached is not None:
        log(f"{what}: reusing {cached} (--resume, same settings)")
        run.timings[timing] = None
        return keras.saving.load_model(cached)
    model = train_fn()
    run.timings[timing] = (time.time() - t0) / 60
    _store(run.out_dir, what, key, model)
    return model


def cache_keys(model, cfg, seed, train_subset, val, baseline_source, stem):
    """The settings a saved ``pruned.keras`` / ``shared.keras`` must match for ``--resume`` to reuse
    it (benchmarks/recipe_search.py ``--work_dir`` saves its candidates under the same keys, so the
    run of the chosen candidate reports exactly the model the validation rule picked)."""
    key = {"model": model, "sparsity": cfg["sparsity"], "prune_epochs": cfg["prune_epochs"],
           "prune_lr": cfg["prune_lr"], "seed": seed, "train_subset": train_subset, "val": val,
           "baseline": baseline_source,
           "baseline_mtime": os.path.getmtime(stem + ".keras") if os.path.exists(stem + ".keras") else None,
           # the pipeline's steps draw their own batch streams since session 49: a model saved before is not reused
           "batch_streams": "per step"}
    return key, dict(key, bits=cfg["bits"], cluster_epochs=cfg["cluster_epochs"],
                     cluster_biases=cfg["cluster_biases"])


def _compress(run, baseline, baseline_source, stem):
    """Pruning, then weight sharing (each cached with --resume); returns the shared model."""
    from dc_keras import pipeline

    args, cfg, (x_train, y_train) = run.args, run.cfg, run.data[:2]
    key, shared_key = cache_keys(args.model, cfg, args.seed, args.train_subset, args.val, baseline_source, stem)
    resume = args.resume and baseline_source.endswith(".keras")  # a baseline trained just now is new

    def prune():
        log(f"pruning {cfg['sparsity']} over {cfg['prune_epochs']} epochs (AGP ramp, then retraining)")
        return pipeline.prune_retrain(baseline, x_train, y_train, cfg["sparsity"], epochs=cfg["prune_epochs"],
                                      lr=cfg["prune_lr"], seed=args.seed, verbose=run.verbose)

    pruned = _trained_or_cached(run, "pruned", "prune_minutes", key, resume, prune)
    run.add_stage("pruned", pruned, 32, run.timings["prune_minutes"], f"iterative pruning, {cfg['prune_epochs']} epochs")

    def share():
        log(f"weight sharing {cfg['bits']} bits (biases: {cfg['cluster_biases'] or 'free'}), "
            f"{cfg['cluster_epochs']} fine-tuning epochs")
        return pipeline.cluster_finetune(pruned, x_train, y_train, bits=cfg["bits"], epochs=cfg["cluster_epochs"],
                                         seed=args.seed, verbose=run.verbose, cluster_biases=cfg["cluster_biases"])

    return _trained_or_cached(run, "shared", "cluster_minutes", shared_key, resume, share)


def _stripped(run, shared_float, base_float):
    """The same packed model with ``pack(strip_strings=True)`` (no tensor / subgraph names, no
    description): whole-file ratio beside the default (names kept). The weights-only ratio is
    measured again on the stripped file (the same constant bytes: names are not weights)."""
    from dc_keras import export

    stripped = export.pack(shared_float, strip_strings=True, context_model=run.cfg["context_model"])
    run.save("shared_packed_stripped.tflite", stripped)
    identical = _check_bit_exact(stripped, shared_float, run.data[2])
    weights = export.inspect(stripped).packed_total
    return {"packed_bytes": len(stripped), "ratio": len(base_float) / len(stripped), "weights_bytes": weights,
            "weights_ratio": export.inspect(base_float).raw_total / weights, "outputs_identical": identical}


def _check_bit_exact(shared_packed, shared_float, x_test):
    """Packed and unpacked files must give bit-identical outputs."""
    p_out, f_out = predictions(shared_packed, x_test), predictions(shared_float, x_test)
    identical = bool(np.array_equal(p_out.view(np.uint32), f_out.view(np.uint32)))
    log(f"packed vs unpacked outputs bit-identical: {identical}")
    if not identical:
        raise SystemExit("packed and unpacked outputs differ")
    return identical


def _command_line():
    python = os.path.relpath(sys.executable, os.getcwd()) if sys.executable.startswith(os.getcwd()) else "python"
    return shlex.join([python, os.path.relpath(__file__, os.getcwd())] + sys.argv[1:])


def _result(run, shared, shared_packed, base_float, identical, sensitivity):
    """The JSON document (schema read by benchmarks/results_doc.py)."""
    from dc_keras import export

    args, cfg, name = run.args, run.cfg, run.args.model
    per_layer, report = layer_table(shared, shared_packed, cfg)
    final = run.stages[-1]
    sens, suggested = sensitivity
    return {
        "model": name, "ratio": final["ratio"], "test_error": final["test_error"],
        "baseline_error": run.stages[0]["test_error"], "float_tflite_bytes": run.stages[0]["float_tflite_bytes"],
        "packed_bytes": final["file_bytes"],
        # the paper's measure: bytes of the constant tensors (weights + biases) only
        "weights_bytes": report.packed_total,
        "weights_ratio": export.inspect(base_float).raw_total / report.packed_total,
        "packed_outputs_identical": identical,
        "paper": PAPER[name],
        "goal": {"ratio": GOALS[name][0], "test_error": GOALS[name][1], "weights_ratio": GOALS[name][2]},
        "config": {"sparsity": cfg["sparsity"], "bits": cfg["bits"], "prune_epochs": cfg["prune_epochs"],
                   "prune_lr": cfg["prune_lr"], "cluster_epochs": cfg["cluster_epochs"], "seed": args.seed,
                   "cluster_biases": cfg["cluster_biases"], "context_model": cfg["context_model"],
                   "val_images": args.val, "train_subset": args.train_subset, "test_subset": args.test_subset},
        "val_error": run.evaluate(shared_packed, run.data[4], run.data[5]),
        "literature": LITERATURE.get(name, []), "search": _search_record(name),
        "sensitivity": {"report": sens, "max_drop": args.max_drop, "suggested": suggested,
                        "used": args.targets == "sensitivity"},
        "stages": run.stages, "layers": per_layer, "timings": run.timings, "machine": machine_info(),
        "command": _command_line(), "peers": [], "complete": False,
    }


def _search_record(name):
    """The recipe search behind CONFIG (benchmarks/recipe_search.py, validation data only), if
    recorded in docs/results/search_<model>.json."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "results",
                        f"search_{name.replace('-', '_')}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        search = json.load(f)
    return {"file": os.path.relpath(path, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")),
            "note": search.get("note", ""), "candidates": search["candidates"], "ladder": search.get("ladder"),
            "rule": search.get("rule"), "pick": search.get("pick"), "earlier_note": search.get("earlier_note"),
            "earlier_rules": search.get("earlier_rules", [])}


def run(args):
    """The dc_keras rows of one model (baseline -> pruned -> shared + packed), then its peers."""
    from dc_keras import train

    if not hasattr(train, "cluster"):
        raise SystemExit("dc_keras.train.cluster is not available in this checkout")
    cfg = _settings(args)
    out_dir = os.path.expanduser(args.out_dir or f"~/.cache/dc_keras/paper_table1/{args.model.replace('-', '_')}")
    os.makedirs(out_dir, exist_ok=True)
    r = Run(args, cfg, out_dir, _mnist(args), layers=set(cfg["sparsity"]))

    baseline, baseline_source, stem = _baseline(r)
    sensitivity = _sensitivity(r, baseline, baseline_source)
    base_float, _ = r.add_stage("baseline", baseline, 32, r.timings["baseline_minutes"], baseline_source)
    r.save("baseline.tflite", base_float)
    shared = _compress(r, baseline, baseline_source, stem)
    shared_float, shared_packed = r.add_stage(
        "pruned + weight sharing + Huffman (packed)", shared, cfg["bits"], r.timings["cluster_minutes"],
        f"k-means (linear init, split at zero) + {cfg['cluster_epochs']} fine-tuning epochs")
    r.save("shared_float.tflite", shared_float)
    r.save("shared_packed.tflite", shared_packed)
    identical = _check_bit_exact(shared_packed, shared_float, r.data[2])
    result = _result(r, shared, shared_packed, base_float, identical, sensitivity)
    result["stripped"] = _stripped(r, shared_float, base_float)
    checkpoint(args, result)  # the dc_keras rows are saved even if a peer run is interrupted
    if args.peers:
        _peers(r, result, baseline, shared, shared_float)
    return result


def _peers(run, result, baseline, shared, shared_float):
    """Side-by-side rows on the same trained models: generic compressors, int8 PTQ, tfmot."""
    import peers

    base_bytes, final = run.stages[0]["float_tflite_bytes"], run.stages[-1]

    def peer(method, nbytes, err, note=""):
        row = {"method": method, "bytes": nbytes, "ratio": base_bytes / nbytes, "test_error": err, "note": note}
        result["peers"].append(row)
        log(f"peer {method}: {nbytes:,} B ({row['ratio']:.1f}x), error {'-' if err is None else f'{100 * err:.2f} %'}")

    peer("float .tflite (baseline)", base_bytes, run.stages[0]["test_error"])
    peer("dc_keras: pruned + shared + packed", final["file_bytes"], final["test_error"])
    for method, size in peers.generic_compressors(shared_float).items():
        peer(f"pruned + shared float .tflite + {method}", size, final["test_error"],
             "same weights as dc_keras, generic compressor instead of packing")
    _int8_peers(run, result, peer, baseline, shared)
    checkpoint(run.args, result)
    if run.args.tfmot:
        _tfmot_peer(run, result, peer, baseline)


def _int8_peers(run, result, peer, baseline, shared):
    import peers

    x_train, x_test, y_test = run.data[0], run.data[2], run.data[3]
    pick = np.random.default_rng(run.args.seed).choice(len(x_train), min(500, len(x_train)), replace=False)
    for label, model in (("baseline", baseline), ("pruned + shared", shared)):
        try:
            for method, size, err, data in peers.int8_rows(model, label, x_train[pick], x_test, y_test, run.evaluate):
                peer(method, size, err)
                run.save(method.replace(" ", "_").replace("+", "").replace("__", "_") + ".tflite", data)
        except Exception as exc:  # a converter failure is reported, not fatal for the table
            log(f"int8 PTQ of {label} failed: {exc!r}")
            result.setdefault("failures", []).append(f"int8 PTQ of {label}: {exc!r}")


def _tfmot_peer(run, result, peer, baseline):
    import peers

    args, cfg = run.args, run.cfg
    t0 = time.time()
    try:
        res = peers.tfmot_recipe(args.model, baseline, cfg["sparsity"], cfg["bits"], cfg["prune_epochs"],
                                 cfg["cluster_epochs"], prune_lr=cfg["prune_lr"], seed=args.seed,
                                 train_subset=len(run.data[0]),  # the same images: the --val ones held out
                                 out_dir=os.path.join(run.out_dir, "tfmot"), log=log)
        err = run.evaluate(res["tflite"])
        note = f"tfmot {res['tfmot']} on tf_keras {res['tf_keras']}, same baseline weights, sparsity, clusters, epochs"
        peer("tfmot: prune + cluster + strip + TFLite (.tflite)", len(res["tflite"]), err, note)
        peer("tfmot: same, zipped (its documented size)", res["zip_bytes"], err, note)
        result["tfmot"] = {k: v for k, v in res.items() if k != "tflite"}
        result["tfmot"]["test_error"] = err
        run.timings["tfmot_minutes"] = (time.time() - t0) / 60
    except Exception as exc:
        log(f"tfmot failed: {exc}")
        result.setdefault("failures", []).append(f"tfmot: {exc}")


def checkpoint(args, result):
    """Writes the (possibly partial) result JSON atomically."""
    if args.json:
        write_json(args.json, result)


def print_table(result):
    print()
    print(f"{result['model']}: Deep Compression stages (errors measured on each packed .tflite)")
    print(f"{'stage':<44}{'kept':>9}{'file':>12}{'ratio':>8}{'error':>9}")
    for s in result["stages"]:
        print(f"{s['stage']:<44}{100 * s['kept_fraction']:>8.2f}%{s['file_bytes']:>12,}{s['ratio']:>7.1f}x"
              f"{100 * s['test_error']:>8.2f}%")
    if result.get("stripped"):
        st = result["stripped"]
        print(f"{'same, pack(strip_strings=True)':<44}{'':>9}{st['packed_bytes']:>12,}{st['ratio']:>7.1f}x"
              f"{100 * result['test_error']:>8.2f}%")
    print(f"weights only: {result['weights_ratio']:.1f}x (names do not change the weight bytes)")
    p = result["paper"]
    print(f"{'paper (weights only)':<44}{100 * p['weights_kept']:>8.2f}%{'':>12}{p['ratio']:>7.1f}x"
          f"{100 * p['test_error']:>8.2f}%")
    if result["peers"]:
        print()
        print(f"{'method':<60}{'bytes':>11}{'ratio':>8}{'error':>9}")
        for r in result["peers"]:
            err = "-" if r["test_error"] is None else f"{100 * r['test_error']:.2f}%"
            print(f"{r['method']:<60}{r['bytes']:>11,}{r['ratio']:>7.1f}x{err:>9}")
    print()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(CONFIG), required=True)
    p.add_argument("--json", default=None, help="write the result JSON here")
    p.add_argument("--out_dir", default=None, help="artifacts (.keras, .tflite); default ~/.cache/dc_keras/paper_table1/<model>")
    p.add_argument("--baseline_dir", default="~/.cache/dc_keras/baselines",
                   help="trained baselines from benchmarks/baselines.py (trained here when missing)")
    p.add_argument("--baseline_epochs", type=int, default=None)
    p.add_argument("--prune_epochs", type=int, default=None)
    p.add_argument("--prune_lr", type=float, default=None, help="Adam lr of pruning/retraining (tfmot gets the same)")
    p.add_argument("--cluster_epochs", type=int, default=None)
    p.add_argument("--cluster_biases", type=int, default=None,
                   help="bits of the shared biases (dc_keras.cluster(cluster_biases=...)); 0: biases stay free")
    p.add_argument("--context_model", action=argparse.BooleanOptionalAction, default=None,
                   help="pack with the context-modelled layout (FORMAT.md §14, opt-in)")
    p.add_argument("--val", type=int, default=None,
                   help="last training images held out as validation data for every choice (never trained on); "
                        "default: the model's CONFIG (the held-out set its recipe was chosen on)")
    p.add_argument("--sparsity", type=lambda t: _parse_map(t, float), default=None, help="e.g. fc1=0.97,fc2=0.9")
    p.add_argument("--bits", type=lambda t: _parse_map(t, int), default=None, help="e.g. fc1=4")
    p.add_argument("--targets", choices=("config", "sensitivity"), default="config",
                   help="per-layer sparsity: the tuned CONFIG table, or dc_keras.suggest_sparsity from a "
                        "one-shot sensitivity sweep on the --val images (always recorded; never the test set)")
    p.add_argument("--max_drop", type=float, default=0.01,
                   help="--targets sensitivity: largest validation error increase per layer (one-shot, "
                        "before retraining)")
    p.add_argument("--peers", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--tfmot", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--train_subset", type=int, default=None, help="smoke runs only")
    p.add_argument("--test_subset", type=int, default=None, help="smoke runs only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true", help="one log line per training epoch")
    p.add_argument("--resume", action="store_true",
                   help="reuse pruned/shared models saved in --out_dir by an earlier run with the same settings")
    args = p.parse_args(argv)
    if args.val is None:
        args.val = CONFIG[args.model]["val"]
    if not 100 <= args.val <= 30000:
        p.error(f"--val must be between 100 and 30000 held-out training images, got {args.val}")
    t0 = time.time()
    result = run(args)
    result["timings"]["total_minutes"] = (time.time() - t0) / 60
    print_table(result)
    result["complete"] = True
    checkpoint(args, result)
    if args.json:
        log(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
