"""Recipe search for benchmarks/paper_table1.py (issue 19): choices on VALIDATION data only.

The last ``--val`` training images are held out: pruning and weight sharing train on the rest,
and every candidate is scored by the error of its packed ``.tflite`` on the held-out images and
by its packed sizes (whole file, constant tensors only). The test set is never loaded. One
pruning run per sparsity setting; each ``--bits`` variant shares the same pruned model.

    .venv/bin/python benchmarks/recipe_search.py --model lenet-300-100 \\
        --sparsity fc1=0.965,fc2=0.93,fc3=0.75 --bits fc1=4,fc2=4,fc3=5 --bits fc1=3,fc2=4,fc3=5 \\
        --cluster_biases 3 --json docs/results/search_lenet_300_100.json

Each run appends its candidates to the JSON (``{"model", "candidates": [...]}``).

``--ladder PRUNED.keras`` instead measures which change buys how many bytes, without training: the
pruned model (e.g. paper_table1's ``pruned.keras``) shared by k-means (no fine-tuning) with the
old recipe's bits and free biases, then each lever added in turn; rows go to the JSON's
``ladder`` (the sizes of packed files; no error is measured here).
"""
import argparse
import json
import os
import time

from _common import CONFIG, log, machine_info, write_json


def _parse_map(text, cast):
    return {k.strip(): cast(v) for k, v in (item.split("=") for item in text.split(","))}


def _sizes(model, base_raw, base_file, context_model):
    from dc_keras import export

    plain = export.to_tflite(model, pack=False)
    packed = export.pack(plain, context_model=context_model)
    report = export.inspect(packed)
    return packed, {"file_bytes": len(packed), "ratio": base_file / len(packed),
                    "weights_bytes": report.packed_total, "weights_ratio": base_raw / report.packed_total,
                    "stripped_bytes": len(export.pack(plain, strip_strings=True, context_model=context_model))}


def _kept(model, layers):
    import numpy as np

    kept = total = 0
    for name in layers:
        k = np.asarray(model.get_layer(name).kernel)
        kept, total = kept + int(np.count_nonzero(k)), total + k.size
    return kept / total


LADDER = {  # (label, bits, cluster_biases, context_model); None: the recipe's own bits
    "lenet-300-100": [("paper bits (5 per layer), biases free", {"fc1": 5, "fc2": 5, "fc3": 5}, False, False),
                      ("+ biases shared (3 bits)", {"fc1": 5, "fc2": 5, "fc3": 5}, 3, False),
                      ("+ recipe bits", None, 3, False),
                      ("+ context-modelled packing (FORMAT.md §14, opt-in)", None, 3, True)],
    "lenet-5": [("paper bits (8 conv, 5 fc), biases free", {"conv1": 8, "conv2": 8, "fc1": 5, "fc2": 5}, False, False),
                ("+ biases shared (3 bits)", {"conv1": 8, "conv2": 8, "fc1": 5, "fc2": 5}, 3, False),
                ("+ recipe bits", None, 3, False),
                ("+ context-modelled packing (FORMAT.md §14, opt-in)", None, 3, True)],
}


def ladder(model_name, pruned_path, bits, base_raw, base_file):
    """Bytes of one pruned model under each lever of the recipe, added one at a time."""
    import keras

    import dc_keras

    pruned = keras.saving.load_model(pruned_path)
    rows = []
    for label, step_bits, cluster_biases, context_model in LADDER[model_name]:
        shared = dc_keras.strip(dc_keras.cluster(pruned, bits=step_bits or bits, cluster_biases=cluster_biases))
        _, sizes = _sizes(shared, base_raw, base_file, context_model)
        rows.append({"step": label, "bits": step_bits or bits, "cluster_biases": cluster_biases,
                     "context_model": context_model, **sizes})
        log(f"{label}: file {sizes['file_bytes']:,} B ({sizes['ratio']:.1f}x), weights {sizes['weights_ratio']:.1f}x")
    return rows


def _slug(sparsity, bits):
    return "_".join(f"{k}{v:g}" for k, v in sparsity.items()) + "__" + "_".join(f"{k}b{v}" for k, v in bits.items())


def _save_for_resume(args, cfg, stem, bits, pruned, shared):
    """Saves the candidate's pruned and shared models where ``paper_table1.py --out_dir DIR --resume``
    (same baseline, --val, settings) reuses them: the reported run is then exactly this candidate."""
    from paper_table1 import _store, cache_keys

    out_dir = os.path.join(os.path.expanduser(args.work_dir), _slug(args.sparsity, bits))
    os.makedirs(out_dir, exist_ok=True)
    run_cfg = {"sparsity": args.sparsity, "prune_epochs": cfg["prune_epochs"], "prune_lr": cfg["prune_lr"],
               "bits": bits, "cluster_epochs": cfg["cluster_epochs"], "cluster_biases": args.cluster_biases or False}
    key, shared_key = cache_keys(args.model, run_cfg, args.seed, None, args.val, stem + ".keras", stem)
    _store(out_dir, "pruned", key, pruned)
    _store(out_dir, "shared", shared_key, shared)
    return out_dir


def _recipe_key(c):
    """What makes a candidate a recipe (everything but the seed and the measured figures)."""
    return json.dumps({k: c.get(k) for k in ("sparsity", "bits", "cluster_biases", "prune_epochs", "prune_lr",
                                             "ramp_fraction", "cluster_epochs", "context_model")}, sort_keys=True)


def _pick_seeds_median(rule, cands):
    """Kind "seeds_median" (s6): candidates grouped into recipes, each run once per seed in
    ``rule["seeds"]`` (own baseline per seed). Eligible: every seed's file >= ``min_ratio`` whole and
    >= ``min_weights_ratio`` weights only. Pick: the lowest median validation error over the seeds
    (within ``tie`` of it: the smaller mean file). The pick replaces ``rule["incumbent"]`` only if
    its median is at least ``adopt_margin`` below the incumbent's; otherwise the incumbent stays."""
    import statistics

    groups = {}
    for c in cands:
        groups.setdefault(_recipe_key(c), []).append(c)
    recipes = []
    for key, runs in groups.items():
        seeds = sorted(c["seed"] for c in runs)
        complete = seeds == sorted(rule["seeds"])
        recipes.append({"recipe": json.loads(key), "seeds": seeds, "complete": complete,
                        "val_errors": [c["val_error"] for c in sorted(runs, key=lambda c: c["seed"])],
                        "median_val_error": statistics.median(c["val_error"] for c in runs),
                        "mean_file_bytes": statistics.mean(c["file_bytes"] for c in runs),
                        "min_ratio": min(c["ratio"] for c in runs),
                        "min_weights_ratio": min(c["weights_ratio"] for c in runs)})
        recipes[-1]["eligible"] = bool(complete and recipes[-1]["min_ratio"] >= rule["min_ratio"]
                                       and recipes[-1]["min_weights_ratio"] >= rule["min_weights_ratio"])
    incumbent = next((r for r in recipes if all(r["recipe"].get(k) == v for k, v in rule["incumbent"].items())), None)
    if incumbent is None or not incumbent["complete"]:
        raise SystemExit(f"search {rule['tag']!r}: the incumbent recipe has not run at every seed {rule['seeds']}")
    ok = [r for r in recipes if r["eligible"]] or [incumbent]
    low = min(r["median_val_error"] for r in ok)
    best = min((r for r in ok if r["median_val_error"] <= low + rule["tie"] + 1e-12),
               key=lambda r: (r["mean_file_bytes"], r["median_val_error"]))
    adopt = best is not incumbent and best["median_val_error"] <= (
        incumbent["median_val_error"] - rule["adopt_margin"] + 1e-12)
    chosen = best if adopt else incumbent
    return {"tag": rule["tag"], "kind": "seeds_median", "meets_rule": chosen["eligible"], "adopted": adopt,
            "recipe": chosen["recipe"], "median_val_error": chosen["median_val_error"],
            "best": best["recipe"], "incumbent_median_val_error": incumbent["median_val_error"],
            "sparsity": chosen["recipe"]["sparsity"], "bits": chosen["recipe"]["bits"],
            "recipes": recipes, "of": len(recipes)}


def pick(search):
    """Applies ``search["rule"]`` (written down before its runs) to the candidates of its tag.

    ``kind`` "val_then_size" (default; searches up to s4): the smallest packed file whose validation
    error is at most the baseline's + ``x``; none qualifying -> the lowest validation error (flagged).
    ``kind`` "ratio_then_val" (s5): among files >= ``min_ratio`` whole and >= ``min_weights_ratio``
    weights only, the lowest validation error (within ``tie`` of it: the smaller file); ``meets_margin``
    says whether that error is <= the baseline's + ``margin_x``; none eligible -> the largest ratio.
    ``kind`` "seeds_median" (s6): one recipe run at several seeds, see ``_pick_seeds_median``."""
    rule = search["rule"]
    cands = [c for c in search["candidates"] if c.get("search") == rule["tag"]]
    if not cands:
        raise SystemExit(f"no candidates of search {rule['tag']!r} in the JSON yet")
    if rule.get("kind") == "seeds_median":
        return _pick_seeds_median(rule, cands)
    if rule.get("kind", "val_then_size") == "ratio_then_val":
        ok = [c for c in cands if c["ratio"] >= rule["min_ratio"] and c["weights_ratio"] >= rule["min_weights_ratio"]]
        if ok:
            low = min(c["val_error"] for c in ok)
            best = min((c for c in ok if c["val_error"] <= low + rule.get("tie", 0.0003) + 1e-12),
                       key=lambda c: (c["file_bytes"], c["val_error"]))
        else:
            best = max(cands, key=lambda c: (c[rule.get("fallback", "ratio")], -c["val_error"]))
    else:
        ok = [c for c in cands if c["val_error"] <= c["baseline_val_error"] + rule["x"] + 1e-12]
        best = min(ok, key=lambda c: (c["file_bytes"], c["val_error"])) if ok else min(
            cands, key=lambda c: (c["val_error"], c["file_bytes"]))
    out = {"tag": rule["tag"], "meets_rule": bool(ok), "candidate": cands.index(best), "sparsity": best["sparsity"],
           "bits": best["bits"], "val_error": best["val_error"], "baseline_val_error": best["baseline_val_error"],
           "file_bytes": best["file_bytes"], "work_dir": best.get("work_dir"), "of": len(cands)}
    if "margin_x" in rule:
        out["meets_margin"] = bool(best["val_error"] <= best["baseline_val_error"] + rule["margin_x"] + 1e-12)
    return out


def _load(path, model):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"model": model, "candidates": []}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(CONFIG), required=True)
    p.add_argument("--sparsity", type=lambda t: _parse_map(t, float), default=None)
    p.add_argument("--bits", type=lambda t: _parse_map(t, int), action="append", default=None)
    p.add_argument("--ladder", default=None, metavar="PRUNED.keras",
                   help="bytes bought by each lever on this pruned model (CONFIG bits), no training")
    p.add_argument("--cluster_biases", type=int, default=0, help="bits of the shared biases; 0: biases free")
    p.add_argument("--prune_epochs", type=int, default=None)
    p.add_argument("--prune_lr", type=float, default=None)
    p.add_argument("--cluster_epochs", type=int, default=None)
    p.add_argument("--ramp_fraction", type=float, default=0.6)
    p.add_argument("--context_model", action="store_true", help="pack with FORMAT.md §14 (opt-in layout)")
    p.add_argument("--val", type=int, default=5000, help="held-out last training images")
    p.add_argument("--baseline_dir", default="~/.cache/dc_keras/baselines")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", required=True)
    p.add_argument("--tag", default=None, help="search name stored with each candidate (the JSON's rule names "
                                                 "the tag it selects among)")
    p.add_argument("--work_dir", default=None,
                   help="save each candidate's pruned/shared models here, one folder per candidate, in "
                        "paper_table1.py's --resume format")
    p.add_argument("--pick", action="store_true", help="apply the JSON's rule to its candidates; store the pick")
    args = p.parse_args(argv)
    if args.pick:
        search = _load(args.json, args.model)
        search["pick"] = pick(search)
        write_json(args.json, search)
        log(f"pick: {json.dumps(search['pick'])}")
        return
    if not args.ladder and not (args.sparsity and args.bits):
        p.error("give --sparsity and --bits (a search), or --ladder PRUNED.keras")

    import keras

    from dc_keras import datasets, export, pipeline

    cfg = CONFIG[args.model]
    (x, y), _ = datasets.mnist.load_data()
    x = datasets.normalize(x)
    x_fit, y_fit, x_val, y_val = x[:-args.val], y[:-args.val], x[-args.val:], y[-args.val:]
    stem = os.path.join(os.path.expanduser(args.baseline_dir), cfg["builder"])
    from paper_table1 import _check_held_out  # a baseline that trained on the validation images is refused

    _check_held_out(os.path.dirname(stem), args.model, args.val)
    baseline = keras.saving.load_model(stem + ".keras")
    base_plain = export.to_tflite(baseline, pack=False)
    base_raw = export.inspect(base_plain).raw_total
    if args.ladder:
        out = {"model": args.model, "candidates": []}
        if os.path.exists(args.json):
            with open(args.json) as f:
                out = json.load(f)
        out["ladder"] = {"pruned": args.ladder, "rows": ladder(args.model, args.ladder, cfg["bits"], base_raw,
                                                               len(base_plain)), "machine": machine_info()}
        write_json(args.json, out)
        return
    prune_epochs = args.prune_epochs or cfg["prune_epochs"]
    prune_lr = args.prune_lr or cfg["prune_lr"]
    cluster_epochs = cfg["cluster_epochs"] if args.cluster_epochs is None else args.cluster_epochs
    t0 = time.time()
    log(f"{args.model}: pruning {args.sparsity}, {prune_epochs} epochs, lr {prune_lr}")
    pruned = pipeline.prune_retrain(baseline, x_fit, y_fit, args.sparsity, epochs=prune_epochs, lr=prune_lr,
                                    ramp_fraction=args.ramp_fraction, seed=args.seed, verbose=0)
    prune_minutes = (time.time() - t0) / 60
    pruned_err = pipeline.evaluate_tflite(export.to_tflite(pruned, pack=False), x_val, y_val, progress=False)
    base_err = pipeline.evaluate_tflite(base_plain, x_val, y_val, progress=False)
    log(f"pruned: validation error {100 * pruned_err:.2f} % (baseline {100 * base_err:.2f} %, "
        f"{prune_minutes:.1f} min)")
    for bits in args.bits:
        t1 = time.time()
        shared = pipeline.cluster_finetune(pruned, x_fit, y_fit, bits=bits, epochs=cluster_epochs, seed=args.seed,
                                           verbose=0, cluster_biases=args.cluster_biases or False)
        packed, sizes = _sizes(shared, base_raw, len(base_plain), args.context_model)
        err = pipeline.evaluate_tflite(packed, x_val, y_val, progress=False)
        row = {"sparsity": args.sparsity, "bits": bits, "cluster_biases": args.cluster_biases,
               "prune_epochs": prune_epochs, "prune_lr": prune_lr, "ramp_fraction": args.ramp_fraction,
               "cluster_epochs": cluster_epochs, "context_model": args.context_model, "seed": args.seed,
               "kept_fraction": _kept(shared, args.sparsity), "val_images": args.val,
               "pruned_val_error": pruned_err, "val_error": err, **sizes,
               "minutes": {"prune": prune_minutes, "cluster": (time.time() - t1) / 60},
               "machine": machine_info(), "search": args.tag, "baseline": stem + ".keras",
               "baseline_val_error": base_err,
               "work_dir": _save_for_resume(args, {"prune_epochs": prune_epochs, "prune_lr": prune_lr,
                                                    "cluster_epochs": cluster_epochs}, stem, bits, pruned, shared)
               if args.work_dir else None}
        log(f"bits {bits}: val error {100 * err:.2f} %, file {sizes['file_bytes']:,} B ({sizes['ratio']:.1f}x), "
            f"weights {sizes['weights_ratio']:.1f}x, kept {100 * row['kept_fraction']:.2f} %")
        out = _load(args.json, args.model)  # another search process may have appended meanwhile
        out["candidates"].append(row)
        write_json(args.json, out)


if __name__ == "__main__":
    main()
