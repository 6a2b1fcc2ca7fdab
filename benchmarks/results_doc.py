"""Writes docs/results.md (tables) and docs/img/*.png (plots) from the benchmark JSONs; no table figure is typed by
hand (the notes a JSON carries, e.g. "rerun", search rules, are its runner's words and are rendered as written).

    .venv/bin/python benchmarks/results_doc.py --table1 docs/results/lenet_300_100.json docs/results/lenet_5.json \
        [--speed docs/results/speed.json] [--runtime docs/results/runtime.json] [--out docs/results.md] [--img_dir docs/img]

The command that writes docs/results.md as committed, every option: the last line of its Reproduce block.
"""
import argparse
import json
import os

from _common import save_figure, write_text


#: What each option reads: the command that writes it, and a test that a JSON is of that kind (a
#: JSON of another benchmark is refused with one message naming both, never rendered half-way).
KINDS = {
    "--table1": ("benchmarks/paper_table1.py --json", lambda d: "float_tflite_bytes" in d and "stages" in d),
    "--tfmot": ("benchmarks/peers.py --json", lambda d: "tfmot" in d and "zip_bytes" in d),
    "--speed": ("benchmarks/speed_table.py --json", lambda d: "runs" in d and "machine" in d),
    "--zoo": ("benchmarks/model_zoo.py --json", lambda d: "models" in d and "epoch_scale" in d),
    "--quantized": ("benchmarks/bench_quantized.py / bench_quantized_zoo.py --json",
                    lambda d: d.get("benchmark") == "quantized_zoo" or (isinstance(d.get("rows"), list) and all(
                        isinstance(r, dict) and "variant" in r and "packed_bytes" in r for r in d["rows"]))),
    "--runtime": ("benchmarks/bench_runtime.py --json", lambda d: "models" in d and "rounds" in d),
    "--codec": ("benchmarks/bench_codec.py --json", lambda d: isinstance(d.get("rows"), list) and d["rows"]
                and all(isinstance(r, dict) and "compressor_bytes" in r for r in d["rows"])),
    "--codec-bound": ("benchmarks/codec_bound.py --tflite ... --json", lambda d: "tensors" in d and "tflite" in d),
    "--codec-init": ("benchmarks/codec_bound.py --init-known-epochs ... --json",
                     lambda d: d.get("benchmark") == "codec_init_known"),
    "--fit-step": ("benchmarks/bench_fit_step.py --json", lambda d: d.get("benchmark") == "fit_step"),
    "--multi-worker": ("benchmarks/bench_multi_worker.py --json", lambda d: d.get("benchmark") == "multi_worker_step"),
    "--centroid-ops": ("benchmarks/bench_centroid_ops.py --json", lambda d: d.get("benchmark") == "centroid_ops"),
    "--density": ("benchmarks/bench_density.py --json", lambda d: d.get("benchmark") == "density"),
    "--scale": ("benchmarks/bench_scale.py --json", lambda d: d.get("benchmark") == "scale"),
    "--mcu": ("benchmarks/mcu_bench.py", lambda d: str(d.get("benchmark", "")).startswith("mcu_")),
}


def load(option, path):
    """The JSON ``path`` given to ``option``, checked to be of the kind that option renders; one
    SystemExit naming the file, the problem and the fix otherwise (missing, truncated, another kind).

    Example:
        >>> speed = load("--speed", "docs/results/speed.json")
    """
    writer, is_kind = KINDS[option]
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise SystemExit(f"results_doc.py {option} {path}: no such file. Give the JSON `{writer}` wrote "
                         "(the committed ones are in docs/results/).") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SystemExit(f"results_doc.py {option} {path}: not valid JSON ({e}): a truncated or edited file. "
                         f"Re-run `{writer}`, or restore the committed one (git checkout -- {path}).") from None
    if not isinstance(data, dict) or not is_kind(data):
        what = (f"its benchmark is {data['benchmark']!r}" if isinstance(data, dict) and data.get("benchmark")
                else f"its top-level fields are {sorted(data)[:8]}" if isinstance(data, dict)
                else f"it holds a {type(data).__name__}")
        raise SystemExit(f"results_doc.py {option} {path}: not a result of `{writer}` ({what}). Give {option} "
                         "the JSON that command writes.")
    return data


def render(option, path, section, *args):
    """``section(*args)`` for the JSON ``path`` of ``option``; a field the section needs but the JSON
    lacks (a JSON of an older or newer schema) is one SystemExit naming the file and the field.

    Example:
        >>> lines = render("--speed", path, speed_section, load("--speed", path))
    """
    try:
        return section(*args)
    except (KeyError, IndexError, TypeError) as e:
        raise SystemExit(f"results_doc.py {option} {path}: this {KINDS[option][0]} result lacks what this "
                         f"results_doc.py reads ({type(e).__name__}: {e}): it was written by an older or newer "
                         f"version of the benchmark. Re-run `{KINDS[option][0]}`, or render it with the "
                         "results_doc.py of the commit that wrote it.") from None


def pct(x):
    return "-" if x is None else f"{100 * x:.2f} %"


def kb(n):
    return "-" if n is None else f"{n:,}"


def ratio(x):
    return "-" if x is None else f"{x:.1f}x"


def plot_size_vs_error(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.8))
    shapes = "osD^vP*Xhp<>"
    for i, r in enumerate(p for p in result["peers"] if p["test_error"] is not None):
        m = r["method"]
        big = m.startswith("dc_keras")
        ax.scatter(r["bytes"] / 1024, 100 * r["test_error"], marker=shapes[i % len(shapes)], s=90 if big else 40,
                   color="C3" if big else f"C{i % 10}", zorder=3, edgecolors="k" if big else "none",
                   label=f"{m} ({r['bytes'] / 1024:.1f} KiB, {r['ratio']:.1f}x)")
    p = result["paper"]
    paper_kb = result["float_tflite_bytes"] / p["ratio"] / 1024
    ax.scatter(paper_kb, 100 * p["test_error"], marker="*", color="k", s=120, zorder=3,
               label=f"paper, Caffe ({p['ratio']:.0f}x of the weights only)")
    ax.set_xscale("log")
    ax.set_xlabel("file size (KiB, log scale)")
    ax.set_ylabel("test error (%) on the .tflite")
    ax.set_title(f"{result['model']}: size vs error (MNIST test set)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def _verdict(r):
    """Goal check: whole-file ratio, test error and (newer JSONs) the weights-only ratio."""
    g = r["goal"]
    checks = [("ratio", r["ratio"] < g["ratio"]), ("error", r["test_error"] > g["test_error"])]
    if "weights_ratio" in g:
        checks.append(("weights-only ratio", r["weights_ratio"] < g["weights_ratio"]))
    misses = [w for w, bad in checks if bad]
    if misses:
        return "no: " + " and ".join(misses) + " outside the goal"
    if "stretch_ratio" in g:
        return "yes, stretch %.0fx %s" % (g["stretch_ratio"], "too" if r["ratio"] >= g["stretch_ratio"] else "not reached")
    return "yes"


def seeds_lines(r):
    """The record's recipe at other seeds (benchmarks/seed_runs.py), one row per seed, the record first."""
    others = r.get("other_seeds")
    if not others:
        return []
    g = r["goal"]
    rows = [dict(seed=r["config"]["seed"], packed_bytes=r["packed_bytes"], ratio=r["ratio"],
                 weights_ratio=r.get("weights_ratio"), test_error=r["test_error"], val_error=r.get("val_error"),
                 baseline_error=r["baseline_error"], record=True)] + others
    out = ["The same recipe at other seeds (the same command with `--seed S --no-tfmot`, each on its own "
           "`baselines.py --seed S` baseline, each run once, all reported; `benchmarks/seed_runs.py` copies their "
           "figures into this record):", "",
           "| seed | file (B) | whole file | weights only | test error | validation error | baseline test error | "
           "goal met |", "|---|---|---|---|---|---|---|---|"]
    met = 0
    for row in rows:
        ok = _verdict(dict(row, goal=g)).startswith("yes")
        met += ok
        out.append(f"| {row['seed']}{' (this record)' if row.get('record') else ''} | {kb(row['packed_bytes'])} | "
                   f"{ratio(row['ratio'])} | {ratio(row['weights_ratio'])} | {pct(row['test_error'])} | "
                   f"{pct(row['val_error'])} | {pct(row['baseline_error'])} | {'yes' if ok else 'no'} |")
    mean = sum(row["test_error"] for row in rows) / len(rows)
    out += ["", f"Goal met at {met} of {len(rows)} seeds; mean test error {pct(mean)}, range "
                f"{pct(min(row['test_error'] for row in rows))}-{pct(max(row['test_error'] for row in rows))}.", ""]
    return out


def _goal_text(g):
    weights = f", >= {g['weights_ratio']:.0f}x weights only" if "weights_ratio" in g else ""
    return f">= {g['ratio']:.0f}x{weights} at <= {100 * g['test_error']:.2f} %"


def table1_summary(results):
    lines = ["| model | baseline error | params kept | dc_keras ratio | dc_keras error | whole file, names stripped | "
             "weights only | weights only, names stripped | paper ratio | paper error | later methods (weights only) | "
             "tfmot ratio (zipped) | tfmot error | goal | met |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        tf = r.get("tfmot")
        tf_zip = next((p for p in r["peers"] if p["method"].startswith("tfmot: same, zipped")), None)
        st = r.get("stripped") or {}
        later = "; ".join(f"{x['method'].split(' (')[0]} {ratio(x['ratio'])} at {pct(x['test_error'])}"
                          for x in r.get("literature", [])) or "-"
        lines.append(
            f"| {r['model']} | {pct(r['baseline_error'])} | {pct(r['stages'][-1]['kept_fraction'])} | **{ratio(r['ratio'])}** | **{pct(r['test_error'])}** | "
            f"{ratio(st['ratio']) if st else 'not measured'} | "
            f"{ratio(r['weights_ratio']) if r.get('weights_ratio') else '-'} | "
            f"{ratio(st['weights_ratio']) if st.get('weights_ratio') else '-'} | "
            f"{ratio(r['paper']['ratio'])} | {pct(r['paper']['test_error'])} | {later} | "
            f"{ratio(tf_zip['ratio']) if tf_zip else '-'} | {pct(tf['test_error']) if tf else '-'} | "
            f"{_goal_text(r['goal'])} | {_verdict(r)} |")
    return lines


def _rule_text(rule, pick):
    """One search's rule (written down before its runs) and what it picked."""
    head = f"Rule of search `{rule['tag']}` (written down {rule['written']}): "
    if rule.get("kind") == "seeds_median":
        head += rule["text"] + " Why: " + rule["why"]
        if not pick:
            return head + " No pick recorded."
        if pick["adopted"]:
            verdict = (f"adopted {_recipe_text(pick['recipe'])}: median validation error "
                       f"{pct(pick['median_val_error'])} vs the incumbent's {pct(pick['incumbent_median_val_error'])}")
        elif pick["best"] == pick["recipe"]:
            verdict = f"the incumbent stays: its median ({pct(pick['median_val_error'])}) is the lowest"
        else:
            other = next(r["median_val_error"] for r in pick["recipes"] if r["recipe"] == pick["best"])
            verdict = (f"the incumbent stays (median {pct(pick['median_val_error'])}); the best other recipe, "
                       f"{_recipe_text(pick['best'])}, has median {pct(other)}, less than "
                       f"{100 * rule['adopt_margin']:.2f} pp lower")
        return head + f" Result over {pick['of']} recipes: {verdict}."
    if rule.get("kind") == "ratio_then_val":
        head += rule["text"] + " Why: " + rule["why"]
        if rule.get("added"):
            head += f" Runs added to the plan at {rule['added']['written']}: {rule['added']['why']}."
    else:
        head += (f"validation error <= baseline's validation error + {100 * rule['x']:.2f} pp, then the smallest "
                 "packed file.")
    if not pick:
        return head + " No pick recorded."
    verdict = "meets the rule" if pick["meets_rule"] else (
        "NO candidate met the rule: " + ("largest ratio" if rule.get("kind") == "ratio_then_val" else
                                         "lowest validation error"))
    if "meets_margin" in pick:
        verdict += (f"; validation {pct(pick['val_error'])} vs baseline {pct(pick['baseline_val_error'])}: "
                    + ("within" if pick["meets_margin"] else "OUTSIDE") + f" the +{100 * rule['margin_x']:.2f} pp margin")
    return head + f" Pick: candidate {pick['candidate'] + 1} of {pick['of']} ({verdict})."


def _recipe_text(recipe):
    sp = "/".join(f"{100 * v:g}" for v in recipe["sparsity"].values())
    bits = "/".join(str(v) for v in recipe["bits"].values())
    return (f"{sp} % pruned, {bits} bits, {recipe['prune_epochs']} + {recipe['cluster_epochs']} epochs")


def _seed_recipes_table(rule, pick):
    """A seeds_median search: one row per recipe, its validation error at each seed and the median."""
    if not pick or pick.get("kind") != "seeds_median":
        return []
    out = [f"Search `{rule['tag']}`, one row per recipe (each run once per seed, own baseline per seed):", "",
           "| recipe | validation error, seeds " + "/".join(map(str, rule["seeds"])) + " | median | smallest ratio "
           "(whole / weights) | mean file | eligible |", "|---|---|---|---|---|---|"]
    for rec in pick["recipes"]:
        mark = " **adopted**" if pick["adopted"] and rec["recipe"] == pick["recipe"] else (
            " (incumbent)" if all(rec["recipe"].get(k) == v for k, v in rule["incumbent"].items()) else "")
        out.append(f"| {_recipe_text(rec['recipe'])}{mark} | {' / '.join(pct(v) for v in rec['val_errors'])} | "
                   f"{pct(rec['median_val_error'])} | {ratio(rec['min_ratio'])} / {ratio(rec['min_weights_ratio'])} | "
                   f"{kb(round(rec['mean_file_bytes']))} | {'yes' if rec['eligible'] else 'no'} |")
    return out + [""]


def search_section(r):
    """The recipe search behind the run's settings (benchmarks/recipe_search.py), if recorded."""
    search = r.get("search")
    if not search:
        return []
    out = ["### Recipe search (validation data only)", "",
           f"From `{search['file']}`: each candidate trained on the training images minus the held-out "
           "validation images, scored by the error of its packed file on those validation images; the "
           "test set is never used for a choice. " + search.get("note", ""), ""]
    rule, pick = search.get("rule"), search.get("pick")
    if rule:
        out += [_rule_text(rule, pick), ""]
        for earlier in search.get("earlier_rules", []):
            out += ["Earlier: " + _rule_text(earlier["rule"], earlier.get("pick")), ""]
        if search.get("earlier_note"):
            out += [search["earlier_note"], ""]
        out += _seed_recipes_table(rule, pick)
    out += ["| search | sparsity | bits | biases | epochs (pruning / sharing) | kept | val error (baseline) | whole file | "
            "weights only | test error |", "|---|---|---|---|---|---|---|---|---|---|"]
    n_tag = {}
    picks = [(rule, pick)] + [(e["rule"], e.get("pick")) for e in search.get("earlier_rules", [])]
    per_seed = {r["tag"] for r, _ in picks if r and r.get("kind") == "seeds_median"}
    for c in search["candidates"]:
        tag = c.get("search")
        if tag in per_seed:  # shown one row per recipe above
            continue
        n_tag[tag] = n_tag.get(tag, 0) + 1
        chosen = any(p and r and tag == r["tag"] and n_tag[tag] == p["candidate"] + 1 for r, p in picks)
        bits = ", ".join(f"{k} {v}" for k, v in c["bits"].items())
        sp = ", ".join(f"{k} {100 * v:g} %" for k, v in c["sparsity"].items())
        base = f" ({pct(c['baseline_val_error'])})" if "baseline_val_error" in c else ""
        out.append(f"| {tag or '-'}{' **pick**' if chosen else ''} | {sp} | {bits} | {c['cluster_biases'] or 'free'} bits | "
                   f"{c['prune_epochs']} / {c.get('cluster_epochs', '-')} | {pct(c['kept_fraction'])} | {pct(c['val_error'])}{base} | "
                   f"{kb(c['file_bytes'])} ({ratio(c['ratio'])}) | {ratio(c['weights_ratio'])} | "
                   f"{pct(c['test_error']) if c.get('test_error') is not None else '-'} |")
    lad = search.get("ladder")
    if lad:
        out += ["", f"What each lever buys, added one at a time on one pruned model ({lad['pruned']}; "
                "k-means without fine-tuning, so the bytes only):", "",
                "| step | bits | whole file | weights only |", "|---|---|---|---|"]
        for row in lad["rows"]:
            bits = ", ".join(f"{k} {v}" for k, v in row["bits"].items())
            out.append(f"| {row['step']} | {bits} | {kb(row['file_bytes'])} B ({ratio(row['ratio'])}) | "
                       f"{ratio(row['weights_ratio'])} |")
    return out + [""]


def model_section(r, img_rel, title=None, show_search=True):
    out = [f"## {title or r['model']}", ""]
    c = r["config"]
    total = r["timings"].get("total_minutes")
    wall = f"{total:.0f} min wall time" if total is not None else "wall time not recorded (peer runs interrupted)"
    reused = [label for k, label in (("prune_minutes", "pruned"), ("cluster_minutes", "weight-shared"))
              if k in r["timings"] and r["timings"][k] is None]
    sens_reused = "sensitivity_minutes" in r["timings"] and r["timings"]["sensitivity_minutes"] is None
    if reused:
        wall += (f"; the {' and '.join(reused)} stage models"
                 + (" and the per-layer sensitivity sweep" if sens_reused else "")
                 + " were reused (`--resume`) from an earlier run of "
                 "the same code with identical settings, everything else ran in this one")
    out += [f"Command: `{r['command']}`  ", f"Run: {r['machine']['date']}, {wall}, {load_text(r['machine'])}.  ",
            *([f"Why this run: {r['rerun']}  "] if r.get("rerun") else []),
            *(["**This run did not finish** (`complete: false` in its JSON: stopped after the dc_keras rows, "
               "during the side-by-side runs): the rows below are those it recorded; peers after the last one "
               "shown are missing.  "] if r.get("complete") is False else []),
            f"Per-layer sparsity {c['sparsity']}, bits {c['bits']}, {c['prune_epochs']} pruning epochs, "
            f"{c['cluster_epochs']} weight-sharing epochs"
            + (f", pruning Adam lr {c['prune_lr']:g}" if c.get("prune_lr") else "")
            + (f", biases shared with {c['cluster_biases']} bits" if c.get("cluster_biases") else "")
            + (", packed with the context-modelled layout (FORMAT.md §14)" if c.get("context_model") else "")
            + (f", {c['val_images']:,} training images held out for validation (final validation error "
               f"{pct(r['val_error'])})" if c.get("val_images") else "")
            + f", seed {c['seed']}. Baseline: {r['stages'][0]['note']}.", ""]
    out += seeds_lines(r)
    out += search_section(r) if show_search else []
    out += ["### Stages", "",
            "Every row is exported to `.tflite`, packed, and its test error measured on that packed file "
            "through `dc_keras.runtime.Interpreter` "
            f"({r['config'].get('test_subset') or 10000:,} test images). Ratio: baseline float `.tflite` "
            "bytes / this file's bytes (whole file, flatbuffer overhead included).", "",
            "| stage | params kept | bits | float .tflite (B) | packed file (B) | ratio | test error |",
            "|---|---|---|---|---|---|---|"]
    for s in r["stages"]:
        bits = s["bits"] if isinstance(s["bits"], int) else ", ".join(f"{k} {v}" for k, v in s["bits"].items())
        out.append(f"| {s['stage']} | {s['params_kept']:,} ({100 * s['kept_fraction']:.2f} %) | {bits} | "
                   f"{kb(s['float_tflite_bytes'])} | {kb(s['file_bytes'])} | {ratio(s['ratio'])} | {pct(s['test_error'])} |")
    out += ["", f"Weights and biases alone (the paper's measure): {ratio(r['weights_ratio'])} "
            f"({r['weights_bytes']:,} B of constant tensors in the packed file). "
            f"Packed and unpacked files give bit-identical outputs on the whole test set: "
            f"{'yes' if r['packed_outputs_identical'] else 'NO'}.", ""]
    out += ["### Per layer (final model)", "",
            "| layer | weights | kept | density | distinct non-zeros | bits | raw B | packed B | bits per kept weight |",
            "|---|---|---|---|---|---|---|---|---|"]
    for l in r["layers"]:
        bpw = "-" if l["bits_per_nonzero"] is None else f"{l['bits_per_nonzero']:.2f}"
        out.append(f"| {l['layer']} | {l['params']:,} | {l['nonzero']:,} | {100 * l['density']:.2f} % | "
                   f"{l['distinct']} | {l['bits'] or '-'} | {kb(l['raw_bytes'])} | {kb(l['packed_bytes'])} | {bpw} |")
    if r["peers"]:
        out += ["", "### Side by side (same trained baseline)", "",
                "| method | bytes | ratio | test error | note |", "|---|---|---|---|---|"]
        prev = None
        for p in r["peers"]:
            if p["method"].endswith("+ dc_keras pack") and prev and prev["bytes"] == p["bytes"] and not p.get("note"):
                p = dict(p, note="pack left every tensor raw: dense int8 weights shrink by less than its "
                                 "default min_saving (10 %)")
            prev = p
            out.append(f"| {p['method']} | {kb(p['bytes'])} | {ratio(p['ratio'])} | {pct(p['test_error'])} | {p.get('note', '')} |")
        out += ["", f"![size vs error]({img_rel})"]
    sens = r.get("sensitivity")
    if sens:
        rep = sens["report"]
        n_val = r.get("config", {}).get("val_images") or 5000
        out += ["", f"### Per-layer sensitivity (one layer pruned at a time, no retraining; {n_val:,} "
                "held-out training images; the test set is never used for choices)", "",
                "| layer | " + " | ".join(f"{100 * v:.1f} %" for v in rep["values"]) + " |",
                "|---|" + "---|" * len(rep["values"])]
        for layer, vals in rep["layers"].items():
            out.append(f"| {layer} | " + " | ".join(f"{100 * v:.2f}" for v in vals) + " |")
        out += ["", f"Validation {rep['metric']} (%) at each sparsity; unpruned: {100 * rep['baseline']:.2f} %. "
                f"`suggest_sparsity(max_drop={sens['max_drop']})` gives {sens['suggested']}"
                f"{' (used for this run)' if sens['used'] else '; the run used the tuned targets above, since retraining recovers far more than a one-shot sweep shows'}."]
    if r.get("failures"):
        out += ["", "Did not run: " + "; ".join(r["failures"])]
    out.append("")
    return out


def load_text(machine):
    """The machine's load when the run ended, as recorded in the JSON (older JSONs lack it)."""
    la = machine.get("loadavg")
    if not la:
        return "machine load not recorded"
    return f"load average at the end {la[0]:.1f} / {la[1]:.1f} / {la[2]:.1f} (1 / 5 / 15 min) on {machine['nproc']} CPUs"


def speed_section(speed):
    out = ["## Speed", "", f"Run: {speed['machine']['date']} on {speed['machine']['nproc']} CPUs "
           f"({speed['machine']['cpu']}), {load_text(speed['machine'])}, command `{speed['command']}`. Each benchmark is its owner's script, "
           "run once here; its printed output follows verbatim.", ""]
    for run in speed["runs"]:
        out += [f"### `{run['script']} {' '.join(run['args'])}`", ""]
        if run["returncode"] != 0:
            out += [f"Failed (exit {run['returncode']}) after {run['seconds']:.0f} s:", ""]
        out += ["```", run["stdout"].rstrip() or "(no output)", "```", ""]
    for name in speed.get("missing", []):
        out += [f"- `{name}`: not in this checkout when the run was made.", ""]
    return out


ZOO_ORDER = ["mobilenetv2_035", "resnet", "ds_cnn", "lstm", "transformer", "transformer_128", "conv1d"]
ZOO_DATA = {"fashion32x3": "Fashion-MNIST, padded to 32x32, 3 channels", "fashion": "Fashion-MNIST 28x28x1",
            "sequences": "generated sequences 32x8"}


def merge_zoo(paths):
    """One zoo result from several model_zoo.py JSONs (e.g. models run in parallel processes)."""
    merged = {"models": [], "failures": [], "commands": []}
    for path in paths:
        z = load("--zoo", path)
        merged["models"] += z["models"]
        merged["failures"] += z.get("failures", [])
        merged["failures"] += [f"{name}: the run stopped before it ({path})" for name in z.get("pending", [])]
        merged["commands"].append(z["command"])
        merged["machine"] = z["machine"]
    return merged


def _yes_no(value):
    return "-" if value is None else ("yes" if value else "**no**")


def _repacked_cell(r, variant):
    """A zoo row's file re-packed by ``zoo_repack.py`` with pack ``variant``: bytes (ratio), or "-"."""
    rp = (r.get("repacked") or {}).get(variant)
    if not rp:
        return "-"
    return f"{rp['bytes']:,} B ({ratio(rp['ratio'])})" if rp["outputs_identical"] else "**outputs differ**"


def _zoo_bits(r):
    """The row's bits: one figure, or pruned-layer bits / other layers' bits, plus biases if shared."""
    cfg = r.get("config", {})
    text = str(r["bits"]) if cfg.get("bits_pruned") in (None, r["bits"]) else f"{cfg['bits_pruned']} pruned / {r['bits']}"
    text += "".join(f", {kind} {b}" for kind, b in sorted((cfg.get("bits_by_type") or {}).items()))
    return text + (f", biases {cfg['cluster_biases']}" if cfg.get("cluster_biases") else "")


def _val_size(r):
    """`` (N own-seed validation sequences)`` for a row whose validation split is not the held-out
    training samples (model_zoo.py ``val_samples``: generated from a seed of their own); `` (N held-out
    validation images, +x ± se pp)`` for an image row with a larger held-out split (``val_samples``)."""
    src = r.get("val_source") or ""
    if src.startswith("held-out training images") and r.get("val_samples", 5000) != 5000:
        se = r.get("val_increase_se_pp")
        rise = 100 * (r["final_val_error"] - r["baseline_val_error"])
        return f" ({r['val_samples']:,} held-out validation images" + (
            "" if se is None else f", {rise:+.2f} ± {se:.2f} pp") + ")"
    return "" if not src or src.startswith("held-out") else f" ({r['val_samples']:,} own-seed validation sequences)"


def _zoo_rank(model):
    """A zoo model's place in the tables: ZOO_ORDER's, others after it."""
    return ZOO_ORDER.index(model) if model in ZOO_ORDER else 99


def _zoo_goal(goal):
    """A zoo row's goal as the tables show it, or "-" for a row without one."""
    return "-" if not goal else f">= {goal['ratio']:.0f}x at <= +{goal['max_increase_pp']:.0f} pp"


def _zoo_rerun_table(rows):
    """Rows marked ``rerun_of`` ({"file", "date"}: the row of record they repeat, same settings): one
    line per model, the earlier record beside today's run of the same command."""
    reruns = [r for r in rows if r.get("rerun_of")]
    if not reruns:
        return []
    out = [f"**The rows of record, re-run on the code of {reruns[0]['date'][:10]}** (`benchmarks/model_zoo.py "
           "--models=M` with ZOO's settings at the time, those of the row of record; same data, seed 0). The code changed since "
           "the records: training draws other random streams (the pipeline's steps have their own batch streams, "
           "c10fa90) and `pack` writes smaller files (docs/FORMAT.md §15's nameless packed tensors, `compact`). "
           "Test error float -> packed on the full test split, validation error as in the table below; "
           "`met`: the goal on the names-kept file.", "",
           "| model | goal | row of record: file, ratio, test change, met | today: commit | file (B) | ratio | "
           "ratio, names stripped | test error float -> packed | change | validation change | met | bit-identical |",
           "|" + "---|" * 12]
    for r in sorted(reruns, key=lambda r: _zoo_rank(r["model"])):
        was = next((e for e in rows if e["model"] == r["model"] and e["date"] == r["rerun_of"]["date"]), None)
        if was is None:
            raise SystemExit(f"{r['model']}: rerun_of names {r['rerun_of']}, which is not among the zoo JSONs given")
        g, st = r.get("goal"), r.get("stripped_names") or {}
        goal = _zoo_goal(g)
        same = ("yes" if r["packed_outputs_identical"] else "**NO**") + (
            "" if "identical" not in st else " / " + ("yes" if st["identical"] else "**NO**"))
        val = 100 * (r["final_val_error"] - r["baseline_val_error"])
        out.append(f"| {r['model']} | {goal} | `{r['rerun_of']['file']}` ({was['date'][:10]}, {was['commit']}): "
                   f"{was['packed_bytes']:,} B, {ratio(was['ratio'])}, {was['error_increase_pp']:+.2f} pp, "
                   f"{_yes_no(was.get('goal_met'))} | {r['commit']} | {r['packed_bytes']:,} | **{ratio(r['ratio'])}** | "
                   f"{ratio(st.get('ratio'))} | {pct(r['baseline_error'])} -> {pct(r['final_error'])} | "
                   f"{r['error_increase_pp']:+.2f} pp | {val:+.2f} pp | {_yes_no(r.get('goal_met'))} | {same} |")
    outcomes = [f"- {r['model']}: {r['rerun_outcome']}" for r in reruns if r.get("rerun_outcome")]
    return out + ([""] + outcomes if outcomes else []) + [""]


def _zoo_seed_table(rows):
    """Rows marked ``seed_of`` ({"file", "date"}: the seed-0 row they repeat with the same settings and
    code of the same day, another ``seed``): one line per model, seed 0 beside the other seeds, and at how
    many seeds the goal is met (names kept, the verdict of record; names stripped)."""
    others = [r for r in rows if r.get("seed_of")]
    if not others:
        return []
    groups = {}
    for r in others:
        base = next((e for e in rows if e["model"] == r["model"] and e["date"] == r["seed_of"]["date"]), None)
        if base is None:
            raise SystemExit(f"{r['model']}: seed_of names {r['seed_of']}, which is not among the zoo JSONs given")
        groups.setdefault(id(base), (base, []))[1].append(r)
    seeds = sorted({int(r["seed"]) for r in others})
    out = ["**Other seeds** (`benchmarks/model_zoo.py --models=M --seed=S`, the row of record's settings, ZOO's "
           "at the time; seed 0 is the run named in the third column, on the code of the same day): packed file and "
           "ratio (names kept), test error change, validation error change, goal met (names kept / names stripped). Run after "
           "the settings were chosen: they report, they choose nothing.", "",
           "| model | goal | seed 0: JSON (date, commit): file, ratio, test change, validation change, met | " +
           " | ".join(f"seed {s}" for s in seeds) + " | goal met at (names kept) | names stripped |",
           "|" + "---|" * (5 + len(seeds))]

    def cell(r):
        val = 100 * (r["final_val_error"] - r["baseline_val_error"])
        return (f"{r['packed_bytes']:,} B, {ratio(r['ratio'])}, {r['error_increase_pp']:+.2f} pp, val {val:+.2f} pp, "
                f"{_yes_no(r.get('goal_met'))} / {_yes_no(r.get('goal_met_stripped'))}")

    for base, runs in sorted(groups.values(), key=lambda g: _zoo_rank(g[0]["model"])):
        g = base.get("goal")
        goal = _zoo_goal(g)
        by_seed = {int(r["seed"]): r for r in runs}
        every = [base] + [by_seed[s] for s in seeds if s in by_seed]
        if g:
            met = f"{sum(bool(r.get('goal_met')) for r in every)} of {len(every)}"
            met_st = f"{sum(bool(r.get('goal_met_stripped')) for r in every)} of {len(every)}"
        else:
            met = met_st = "-"
        out.append(f"| {base['model']} | {goal} | `{runs[0]['seed_of']['file']}` ({base['date'][:10]}, {base['commit']}): "
                   f"{cell(base)} | " + " | ".join(cell(by_seed[s]) if s in by_seed else "-" for s in seeds) +
                   f" | {met} | {met_st} |")
    return out + [""]


def zoo_section(zoo):
    """The model-zoo section (benchmarks/model_zoo.py JSON): one row per model, then where the bytes go."""
    rows = sorted(zoo["models"], key=lambda r: (_zoo_rank(r["model"]),
                                                 r["date"]))
    seen = {}
    for r in rows:  # a model run twice (a second configuration) keeps both rows, numbered
        seen[r["model"]] = seen.get(r["model"], 0) + 1
        r["label"] = r["model"] if seen[r["model"]] == 1 else f"{r['model']} (run {seen[r['model']]})"
    for r in rows:
        if seen[r["model"]] > 1 and r["label"] == r["model"]:
            r["label"] += " (run 1)"
    out = ["## Model zoo: the five calls beyond LeNet", "",
           "Commands (one process each, partly in parallel on the shared machine): " + ", ".join(f"`{c}`" for c in zoo["commands"]) + "  ",
           f"Models finished: {', '.join(sorted({r['date'] for r in rows}))}; {load_text(zoo['machine'])}; each "
           "model's own end-of-run load is in the table. Every model goes through `prune` -> fit -> `strip` -> `cluster` -> fit "
           "-> `strip` -> `export.to_tflite` (via `dc_keras.pipeline`); BatchNormalization is folded by `cluster`. "
           "Per-layer rules (no choice uses test data): layers below `min_params` weights and the first conv of an "
           "image model are not pruned (only clustered); layers with at least `big_params` weights get the larger "
           "sparsity target. Errors: the packed `.tflite` through `dc_keras.runtime.Interpreter` on the full "
           "held-out test split (Fashion-MNIST: 10,000 images; sequences: 5,000 generated with another seed), "
           "against the model's own float baseline `.tflite`. Ratio: baseline float `.tflite` / packed file "
           "(whole files). Two packed files per model, both bit-identical checked against the unpacked `.tflite`: "
           "names kept (the default `pack`, **the goal verdict of record**, column `met`) and packed with "
           "`strip_strings=True` (tensor/subgraph names and description dropped; column `met, stripped`). Image models train on a subset of the 60,000 images (column `train`) to keep CPU "
           "time sane; 5,000 (sequences: 2,000) training samples are held out for validation, except where the "
           "validation column names its own split (a sequence row with `val_samples`: that many sequences generated "
           "from a third seed; training and test sequences unchanged).", ""] + _zoo_rerun_table(rows) + \
        _zoo_seed_table(rows) + [
           "| model | data | train | epochs (base/prune/share) | params | covered | sparsity of covered | bits | "
           "float .tflite (B) | packed (B) | ratio | ratio, names stripped | error: float -> packed | change | goal | "
           "met | met, stripped | bit-identical (kept / stripped) | validation error (Keras) | minutes | load at end |",
           "|" + "---|" * 21]
    for r in rows:
        e, g = r["epochs"], r.get("goal")
        goal = _zoo_goal(g)
        met, met_st = (_yes_no(r.get(k)) for k in ("goal_met", "goal_met_stripped"))
        st = r.get("stripped_names") or {}
        same = ("yes" if r["packed_outputs_identical"] else "**NO**") + (
            "" if "identical" not in st else " / " + ("yes" if st["identical"] else "**NO**"))
        la = r.get("loadavg_end") or [float("nan")]
        out.append(
            f"| {r['label']} | {ZOO_DATA.get(r['data'], r['data'])} | {r['train_samples']:,} | "
            f"{e['baseline']}/{e['prune']}/{e['cluster']} | {r['baseline_params']:,} | "
            f"{100 * r['covered_fraction']:.1f} % | {100 * r['sparsity_covered']:.1f} % | {_zoo_bits(r)} | "
            f"{r['float_tflite_bytes']:,} | {r['packed_bytes']:,} | **{ratio(r['ratio'])}** | {ratio(st.get('ratio'))} | "
            f"{pct(r['baseline_error'])} -> {pct(r['final_error'])} | {r['error_increase_pp']:+.2f} pp | {goal} | "
            f"{met} | {met_st} | {same} | "
            f"{pct(r['baseline_val_error'])} -> {pct(r['final_val_error'])}{_val_size(r)} | {r['minutes']['total']:.1f} | "
            f"{la[0]:.1f} |")
    out += ["", "### Where the packed bytes go", "",
            "Packed tensors: Huffman-packed kernels (and any other tensor that packs). Raw 1-D: biases, "
            "including the biases BatchNormalization folding creates (float32, one per output channel). "
            "Tensor names and the rest of the flatbuffer (operators, shapes, tables) are what `pack` leaves. With "
            "`cluster_biases` (bits in the `bits` column) the biases are shared too and `pack` packs one only when "
            "its packed form plus what a packed tensor adds (the HuffDecode op, the extra tensor and buffer: "
            "63-68 B with names kept or stripped since docs/FORMAT.md §15's nameless packed tensors; before, "
            "~190 B with names kept, ~80 B stripped) is smaller: a 128-entry bias at 3 bits packs 512 -> ~120 B, "
            "a 64-entry one (96 B packed) stays raw. "
            "Last columns: the run's file (packed by the packer of its date) re-packed by today's `pack` "
            "(`benchmarks/zoo_repack.py`, same weights, outputs bit-identical on 500 test inputs): with its "
            "defaults (names kept, `compact` on), and with `strip_strings=True, compact=True`.", "",
            "| model | file (B) | packed tensors | raw 1-D (biases) | raw other | tensor names | other structure | "
            "with names stripped | re-packed, names kept | re-packed, stripped + `compact` |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b, st = r["bytes"], r.get("stripped_names")
        stripped = "-" if not st else f"{st['bytes']:,} B ({ratio(st['ratio'])})"
        kept, both = (_repacked_cell(r, k) for k in ("default", "strip_strings+compact"))
        cells = [f"{b[k]:,} ({100 * b[k] / b['file']:.0f} %)"
                 for k in ("packed_tensors", "raw_1d", "raw_other", "tensor_names", "structure")]
        out.append(f"| {r['label']} | {b['file']:,} | " + " | ".join(cells) + f" | {stripped} | {kept} | {both} |")
    shared = [r["label"] for r in rows if r["model"] == "lstm" and r["date"] < "2026-12-05"]
    if shared:  # measured by the count before 99adee6 (bytes_breakdown counted a shared buffer per tensor)
        out += ["", f"The lstm rows ({', '.join(shared) if len(shared) < 3 else f'{len(shared)} runs'}) were measured before `bytes_breakdown` counted a buffer that two tensors "
                "share once (99adee6, 2026-12-05): raw other counts the one 512-B buffer of the two zero loop "
                "states twice and raw 1-D an int32 scalar read in two subgraphs twice (4 B), so raw other is 512 B, "
                "raw 1-D 4 B smaller and other structure 516 B larger than shown (this architecture rebuilt and "
                "counted both ways; the run files were not kept). Every other column, the ratios and the "
                "goal verdicts are unaffected."]
    runs = [f"- {r['label']}: {r['note']}" for r in rows if r.get("note")]
    runs += [f"- {r['label']}: search run, `--config` " + json.dumps(r["override"], sort_keys=True)
             + f"; validation error {pct(r['baseline_val_error'])} -> {pct(r['final_val_error'])}"
             for r in rows if r.get("override")]
    if runs:
        out += ["", "Runs with a second configuration (chosen from the first run's size and validation error, "
                "never the test split):", ""] + runs
    batch = [f"- {r['label']}: exported with a static batch of {r['config']['batch_size']}; with the converter's "
             f"dynamic batch the float file is {r['dynamic_batch']['float_tflite_bytes']:,} B and the packed one "
             f"{r['dynamic_batch']['packed_bytes']:,} B ({ratio(r['dynamic_batch']['ratio'])}): the shape-computing "
             "ops a dynamic batch keeps" for r in rows if r.get("dynamic_batch")]
    if batch:
        out += ["", "Static batch:", ""] + batch
    stages = [f"- {r['label']}: {pct(r['baseline_val_error'])} -> {pct(r['minutes']['pruned_val_error'])} pruned -> "
              f"{pct(r['final_val_error'])} shared{_val_size(r)}" for r in rows
              if r["minutes"].get("pruned_val_error") is not None]
    if stages:
        out += ["", "Validation error per stage (Keras; held-out training samples unless a row names its own "
                "validation split):", ""] + stages
    notes = [f"- {r['label']}: " + " / ".join(r["export_warnings"]) for r in rows if r.get("export_warnings")]
    if notes:
        out += ["", "Warnings `to_tflite` gave:", ""] + notes
    if zoo.get("failures"):
        out += ["", "Did not run: " + "; ".join(zoo["failures"])]
    return out + [""]
def quantized_section(q):
    """The bytes table of benchmarks/bench_quantized.py (issue 15): every export of the same weights."""
    m = q["machine"]
    fp = next(r for r in q["rows"] if r["variant"] == "float32")
    lines = ["## Quantized and packed: same pruned + clustered weights (LeNet-300-100)", "",
             f"One model ({q['note']}), exported every way and packed with `dc_keras.export.pack`; "
             "error on the full MNIST test set, measured on the packed file; \"bit-exact\": packed and "
             "unpacked files give identical outputs on all 10,000 test images. \"vs float packed\" is "
             f"packed bytes / {fp['packed_bytes']:,} B (the packed float32 file); \"codes\": distinct "
             "integer values per weight tensor (fc1, fc2, fc3 order as stored).", "",
             "| export | file bytes | packed bytes | vs float packed | test error | vs float (pp) | bit-exact | codes |",
             "|---|---|---|---|---|---|---|---|"]
    v3 = all("packed_bytes_v3" in r for r in q["rows"])
    if v3:  # bench_quantized.py since 2026-12-05: the same files packed with pack(version=3) too
        lines[2] += (" \"v3\": packed with `pack(version=3)` (no integer planes, FORMAT.md §17: integer biases "
                     "stay raw), vs the same packed float32 file; bit-exact as above.")
        lines[4] += " packed bytes, v3 | vs float packed, v3 |"
        lines[5] += "---|---|"
    for r in q["rows"]:
        lines.append(f"| {r['variant']} | {r['bytes']:,} | {r['packed_bytes']:,} | {r['vs_float_packed']:.2f}x | "
                     f"{pct(r['test_error'])} | {r['error_vs_float_pp']:+.2f} | {'yes' if r['bit_exact'] else 'NO'} | "
                     f"{', '.join(map(str, r['distinct_int_codes'])) or '-'} |"
                     + (f" {r['packed_bytes_v3']:,}{'' if r['bit_exact_v3'] else ' (NOT bit-exact)'} | "
                        f"{r['vs_float_packed_v3']:.2f}x |" if v3 else ""))
    if q.get("lossless_float"):
        lines += ["", "Lossless float packing (codec v2 float-planes layout, FORMAT.md §12) of unclustered "
                  "third-party float models (whole file; bit-exact = identical outputs for a random input):", "",
                  "| model | file bytes | packed bytes | ratio | bit-exact | packed tensors by layout |",
                  "|---|---|---|---|---|---|"]
        for r in q["lossless_float"]:
            lay = ", ".join(f"{k} {v}" for k, v in sorted(r["layouts"].items()))
            lines.append(f"| {r['model']} | {r['bytes']:,} | {r['packed_bytes']:,} | {r['ratio']:.3f}x | "
                         f"{'yes' if r['bit_exact'] else 'NO'} | {lay} |")
    if q.get("failures"):  # bench_quantized.py records them since 2026-12-07 (printed only before)
        lines += ["", "Did not run: " + "; ".join(q["failures"])]
    checks = [f"{r['variant']}: {r['vs_float_packed']:.2f}x, {r['error_vs_float_pp']:+.2f} pp, "
              f"{'met' if r['vs_float_packed'] <= 1.05 and r['error_vs_float_pp'] <= 0.1 else 'NOT met'}"
              for r in q["rows"] if r["variant"].endswith("per-tensor (TFLite converter)")]
    lines += ["", "Goal (issue 15): int8 and dynamic-range packed <= 1.05x the packed float file at <= its "
              "error + 0.1 pp, with dc_keras' defaults for a clustered model (per-tensor scales): "
              + "; ".join(checks) + ". Command: `" + q["command"] + "`"
              + (f", {q['date']}, {q['minutes']} min" if q.get("date") else "")
              + f"; load average {m['loadavg_before'][0]:.1f} "
              f"before, {m['loadavg_after'][0]:.1f} after; TensorFlow {m['tensorflow']}, Keras {m['keras']}.", ""]
    return lines


def quantized_zoo_section(q):
    """The bytes table of benchmarks/bench_quantized_zoo.py (issue 15, second model): a zoo CNN."""
    m = q["machine"]
    fp = next(r for r in q["rows"] if r["variant"] == "float32")
    lines = [f"## Quantized and packed: same pruned + clustered weights ({q['model']}, Fashion-MNIST)", "",
             f"The {q['model']} of benchmarks/model_zoo.py ({q['train_samples']:,} training images, epochs "
             f"{'/'.join(map(str, q['epochs']))}, BatchNorm folded by `cluster`), exported every way and packed; "
             "error on the 10,000 test images measured on the packed file; \"bit-exact\": packed and unpacked "
             f"files give identical outputs. \"vs float packed\" is packed bytes / {fp['packed_bytes']:,} B.", "",
             "| export | file bytes | packed bytes | vs float packed | test error | vs float (pp) | bit-exact | finite |",
             "|---|---|---|---|---|---|---|---|"]
    for r in q["rows"]:
        lines.append(f"| {r['variant']} | {r['bytes']:,} | {r['packed_bytes']:,} | {r['vs_float_packed']:.3f}x | "
                     f"{pct(r['test_error'])} | {r['error_vs_float_pp']:+.2f} | {'yes' if r['bit_exact'] else 'NO'} | "
                     f"{'yes' if r.get('finite', True) else 'NO (NaN/inf)'} |")
    if q.get("failures"):
        lines += ["", "Did not run: " + "; ".join(q["failures"])]
    checks = [f"{r['variant']}: {r['vs_float_packed']:.3f}x, {r['error_vs_float_pp']:+.2f} pp, "
              f"{'met' if r['goal_met'] else 'NOT met'}" for r in q["rows"] if "(default)" in r["variant"]]
    lines += ["", "Goal (issue 15): " + "; ".join(checks) + ". Command: `" + q["command"] +
              "`" + (f", {m['date']} on {m['nproc']} CPUs ({m['cpu']})" if m.get("date") else "") +
              f"; load average {m['loadavg'][0]:.1f} before, {m['loadavg_after'][0]:.1f} after; "
              f"{q['minutes']:.0f} min.", ""]
    return lines


RUNTIME_ROUTES = ("dense", "decoded", "compressed", "tflite_sparse", "tflite_1x4")
RUNTIME_GOALS = [  # (model, route, metric, limit, label)
    ("fc4096_d10", "compressed", "batch1_s_ratio", 0.3, "4096² FC 10 %, batch 1: latency ≤ 0.3x (median)"),
    ("fc4096_d10", "compressed", "batch1_min_s_ratio", 0.3, "4096² FC 10 %, batch 1: latency ≤ 0.3x (fastest)"),
    ("fc4096_d10", "compressed", "rss_delta_ratio", 0.1, "4096² FC 10 %: resident memory ≤ 0.1x"),
    ("fc4096_d10", "compressed", "load_s_ratio", 0.25, "4096² FC 10 %: load ≤ 0.25x"),
    ("fc1024_d10", "compressed", "batch1_s_ratio", 1.0, "1024² FC 10 %: latency in cache ≤ 1.0x (median)"),
    ("fc1024_d10", "compressed", "batch1_min_s_ratio", 1.0, "1024² FC 10 %: latency in cache ≤ 1.0x (fastest)"),
    ("fc1024_d10", "compressed", "batch1_dram_s_ratio", 0.45, "1024² FC 10 %: latency from DRAM ≤ 0.45x"),
    ("mobilenetv2", "decoded", "rss_delta_ratio", 1.1, "MobileNetV2 decoded route: RSS ≤ 1.1x"),
    ("mobilenetv2", "decoded", "load_s_ratio", 1.25, "MobileNetV2 decoded route: load ≤ 1.25x"),
]


def _ms(v):
    return "–" if v is None else f"{v * 1e3:.3g} ms"


def _mib(v):
    return "–" if v is None else f"{v / 2**20:.1f}"


def _rt(v):
    return "" if v is None else f" ({v:.2f}x)"


def runtime_section(rt):
    """Section of docs/results.md from benchmarks/bench_runtime.py --json."""
    m = rt["machine"]
    la = m.get("loadavg_start", [0])[0], m["loadavg"][0]
    out = ["## Runtime routes: dense, decoded, compressed", "",
           f"Run: {m['date']} on {m['nproc']} CPUs ({m['cpu']}), load average {la[0]:.1f} at the "
           f"start and {la[1]:.1f} at the end (1 min), {rt['rounds']} interleaved rounds, one fresh "
           f"process per route and round (medians), command `{rt['command']}`. Ratios in brackets "
           "are vs `dense` (unpacked `.tflite`, LiteRT with default delegates = XNNPACK) of the same "
           "model in the same run. `decoded` and `compressed` run the packed `.tflite` through "
           "`dc_keras.runtime.Interpreter(release_decoded=True)` (decoded weights freed once XNNPACK "
           "packed its copy; opt-in, docs/android.md), `compressed` with `weights=\"compressed\"`"
           + (f", max_density={m['compressed_max_density']} (every FC layer compressed, whatever its density)"
              if m.get("compressed_max_density") else "") + ". Memory: growth of the process's resident set from before the "
           "interpreter is created" + (f" ({m['memory_baseline']})" if m.get("memory_baseline") else "")
           + " to after load + invokes (anonymous + file-backed pages). "
           + (f"Compressed batch-1 kernels: {m['compressed_kernel']}. " if m.get("compressed_kernel") else "") +
           "Batch 1: median of the invokes, and the fastest (with the load above the CPU count a long "
           "invoke is often preempted; the minimum filters that out). "
           "DRAM: batch-1 invoke timed right after writing 256 MiB to evict the caches. "
           "Float outputs of `compressed` differ from `dense` by summation order "
           "(max |diff| / max |output| in the last column).", "",
           "| model | route | file | load | batch 1 | batch 1 (min) | batch 1 (DRAM) | batch 8 | anon MiB | file MiB | rel. diff |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, res in rt["models"].items():
        for route in RUNTIME_ROUTES:
            v = res.get(route)
            if v is None:
                continue
            if "error" in v:
                out.append(f"| {name} | {route} | failed: {v['error'][-120:]!r} | | | | | | | | |")
                continue
            diff = v.get("max_rel_diff_vs_dense")
            out.append(
                f"| {name} | {route} | {kb(v['tflite_bytes'])} | {_ms(v['load_s'])}{_rt(v.get('load_s_ratio'))} "
                f"| {_ms(v['batch1_s'])}{_rt(v.get('batch1_s_ratio'))} "
                f"| {_ms(v.get('batch1_min_s'))}{_rt(v.get('batch1_min_s_ratio'))} "
                f"| {_ms(v.get('batch1_dram_s'))}{_rt(v.get('batch1_dram_s_ratio'))} "
                f"| {_ms(v['batch8_s'])}{_rt(v.get('batch8_s_ratio'))} "
                f"| {_mib(v['rss_anon'])} | {_mib(v['rss_file'])}{_rt(v.get('rss_delta_ratio'))} "
                f"| {'' if diff is None else f'{diff:.1e}'} |")
    failed = [f"- {name} {route}: {v['failed_rounds']} of {v['rounds']} rounds failed (medians over the others): "
              f"{v['failed_error'][-120:]!r}" for name, res in rt["models"].items() for route in RUNTIME_ROUTES
              if (v := res.get(route)) and v.get("failed_rounds")]
    if failed:
        out += ["", "Rounds that failed:", ""] + failed
    out += ["", "Goals of issue 17 (this run):", ""]
    for model, route, metric, limit, label in RUNTIME_GOALS:
        v = rt["models"].get(model, {}).get(route, {}).get(metric)
        if v is None:
            out.append(f"- {label}: not measured")
        else:
            out.append(f"- {label}: **{v:.2f}x** — {'met' if v <= limit else 'NOT met'}")
    return out + [""]


def codec_section(c):
    """bench_codec.py --json: packed size vs gzip / bzip2 / xz / zstd of the same tensor, and the
    context-modelled layout (FORMAT.md §14) beside the order-0 sparse one (§6)."""
    la, m = c["load_average"], c.get("machine")
    when = (f"{m['date']} on {c['cpus']} CPUs ({m['cpu']})" if m else
            f"on {c['cpus']} CPUs (date and CPU model not recorded in this JSON)")
    inputs = "".join(f"; `{i['file']}`: {i['bytes']:,} B, sha256 {i['sha256'][:16]}..." for i in c.get("inputs", []))
    out = ["## Codec vs general-purpose compressors (pruned + clustered tensors)", "",
           f"Run: `{c['command']}` {when}, load average at the end {la[0]:.1f} / {la[1]:.1f} / "
           f"{la[2]:.1f} (1 / 5 / 15 min){inputs}. "
           + ("Not measured in this run (their columns show -, the best is over the others): "
              + "; ".join(c["compressors_not_measured"]) + ". " if c.get("compressors_not_measured") else "")
           + "Sizes of the same float32 tensor; ratio = ours / best of the four "
           "(goal <= 0.75x). Decode: CPU time of one `dc_decode`, best of several runs, on a shared machine. "
           "§6 = order-0 sparse layout, §14 = context-modelled sparse layout (chosen only when smaller).", "",
           "| tensor | shape | non-zero | ours (layout) | bits/nz | gzip-9 | bz2-9 | xz-9e | zstd-19 | ours / best | "
           "§6 bytes (bits/nz) | decode ours / §6 (us) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in c["rows"]:
        cb = r["compressor_bytes"]
        six = (f"{r['sparse6_bytes']:,} ({r['sparse6_bits_per_nonzero']:.2f})" if "sparse6_bytes" in r else "-")
        dec = f"{r['decode_cpu_s'] * 1e6:.0f}" + (f" / {r['sparse6_decode_cpu_s'] * 1e6:.0f}" if "sparse6_bytes" in r else "")
        out.append(f"| {r['tensor']} | {'x'.join(map(str, r['shape']))} | {r['nonzero']:,} | {r['packed_bytes']:,} "
                   f"({r['layout']}) | {r['bits_per_nonzero']:.2f} | "
                   + " | ".join(f"{cb[k]:,}" if k in cb else "-" for k in ("gzip-9", "bz2-9", "xz-9e", "zstd-19"))
                   + f" | {r['ratio_vs_best']:.3f}x ({r['best_compressor']}) | {six} | {dec} |")
    return out + [""]


def codec_bound_section(cb, init_known=None, record=None):
    """benchmarks/codec_bound.py --json: what context modelling could buy on the same tensors, as
    per-context Huffman codes (tables included) and as static conditional entropies (a floor);
    ``init_known`` (codec_bound.py --init-known-epochs's JSON): codec_init_lines after the oracle table."""
    m = cb["machine"]
    out = ["## Codec: what modelling could buy (vs the <= 0.75x goal)", "",
           f"Run: {m['date']} on {m['nproc']} CPUs ({m['cpu']}), "
           + (f"load average at the start {m['loadavg'][0]:.1f} / {m['loadavg'][1]:.1f} / {m['loadavg'][2]:.1f} "
              "(1 / 5 / 15 min), " if m.get("loadavg") else "machine load not recorded, ")
           + f"command `{cb['command']}` on `{cb['tflite']}`. Sizes in bytes; ratios are to the "
           "best of gzip-9 / bz2-9 / xz-9e / zstd-19 of the same float32 tensor. *Best Huffman-family*: the fixed "
           "bytes of the §6 file plus the cheapest measured context for each stream, Huffman-coded per context with "
           "its tables. *Context-coder floor*: the same fixed bytes plus the lowest static conditional entropy of "
           "the positions (gap symbols, or the kept/not-kept bits coded one by one as an arithmetic / ANS binary "
           "coder would) and of the indices, under the measured contexts with at most 81 values, model cost not "
           "counted.", "",
           "*Tables free*: the same with the Huffman tables not counted (a bound for any cleverer table coding; "
           "only contexts with at most 81 values).", "",
           "*Static rANS*: the fixed bytes plus the cheapest measured context per stream coded with fractional "
           "bits (rANS / arithmetic) from one frequency table per context, every table byte counted (a coder that "
           "decodes entry by entry like §6). *Adaptive coder*: the fixed bytes plus the cheapest *adaptive* model "
           "of the kept/not-kept bit of every element and of the indices (rows marked *adaptive*; their "
           "\"entropy\" column is the code length of a model learned while decoding, Krichevsky-Trofimov counts per "
           "context: model cost included, coder overhead not; such a coder decodes one binary decision per "
           "element, not per kept weight).", "",
           "*Strongest model*: the fixed bytes plus the cheapest position model and the cheapest index model "
           "(or the cheapest joint model) whose model cost is paid: Huffman / static rANS with their tables, "
           "adaptive models, and models sent as side information (rows marked *side info counted*: per-row and "
           "per-column densities of the kept bits, each row's own index histogram, a low-rank prediction of the "
           "tensor). The mixing row (*logistic mix of 5 adaptive predictors*) is what context-mixing compressors "
           "do, one binary decision per element.", "",
           "| tensor | best compressor | goal (0.75x) | §6 | §14 | best Huffman-family | Huffman, tables free | "
           "context-coder floor | static rANS | adaptive coder | strongest model |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in cb["tensors"]:
        best = min(t["compressor_bytes"].values())
        out.append(f"| {t['tensor']} {'x'.join(map(str, t['shape']))} | {best:,} ({t['best_compressor']}) | "
                   f"{t['goal_bytes']:,.0f} | {t['packed_sparse_bytes']:,} ({t['packed_sparse_vs_best']:.3f}x) | "
                   f"{t['packed_context_bytes']:,} ({t['packed_context_vs_best']:.3f}x) | "
                   f"{t['best_huffman_family_bytes']:,.0f} ({t['best_huffman_family_vs_best']:.3f}x) | "
                   f"{t['huffman_free_tables_bound_bytes']:,.0f} ({t['huffman_free_tables_bound_vs_best']:.3f}x) | "
                   f"{t['context_coder_floor_bytes']:,.0f} ({t['context_coder_floor_vs_best']:.3f}x) | "
                   + " | ".join(f"{t[k + '_bytes']:,.0f} ({t[k + '_vs_best']:.3f}x)" if k + "_bytes" in t else "-"
                                for k in ("static_rans", "adaptive_coder", "strongest_model")) + " |")
    for t in cb["tensors"]:
        if "stored_orientation_best_bytes" in t:
            out += ["", f"{t['tensor']} is the same tensor as stored transposed (a layout may code it in [out, in] "
                    f"order): its strongest model, {t['strongest_model_bytes']:,.0f} B, is "
                    f"**{t['strongest_model_vs_stored_best']:.3f}x** of the stored tensor's best compressor "
                    f"({t['stored_orientation_best_bytes']:,} B; goal 0.75x = {0.75 * t['stored_orientation_best_bytes']:,.0f} B)."]
    out += _peers_table(cb) + _codec_verdict(cb) + ([] if init_known is None else codec_init_lines(init_known, record))
    for t in cb["tensors"]:
        out += ["", f"{t['tensor']} ({'x'.join(map(str, t['shape']))}, {t['nonzero']:,} kept, G = {t['gap_alphabet']}, "
                f"K = {t['codebook_size']}, fixed bytes {t['fixed_bytes']:,}):", "",
                "| stream | context | entropy | Huffman (tables included) | Huffman, tables free | static rANS |",
                "|---|---|---|---|---|---|"]
        for r in t["rows"]:
            hb = "-" if r["huffman_bytes"] is None else f"{r['huffman_bytes']:,.0f}"
            hf = "-" if r.get("huffman_free_tables_bytes") is None else f"{r['huffman_free_tables_bytes']:,.0f}"
            rb = "-" if r.get("rans_bytes") is None else f"{r['rans_bytes']:,.0f}"
            out.append(f"| {r['stream']} | {r['context']} | {r['entropy_bytes']:,.0f} | {hb} | {hf} | {rb} |")
    return out + [""]


def _codec_verdict(cb):
    """The smallest figure any measured coder reached on bench_codec.py's tensor (either scan order, against
    the stored tensor's best general compressor), with its decode cost."""
    bench = [t for t in cb["tensors"] if t["tensor"].startswith("bench_codec.py")]
    if not bench:
        return []
    best = min(bench[0]["compressor_bytes"].values())
    found = []  # (bytes, what, decode M elements/s or None)
    for t in bench:
        order = t["tensor"].split("ip1 ")[-1]
        found.append((t["strongest_model_bytes"], f"the strongest paid-for model, {order} order: "
                      + " + ".join(f"{s} ({c})" for s, c in t.get("strongest_model_parts", [])), None))
        found.append((min(t["packed_sparse_bytes"], t["packed_context_bytes"]), f"our packed tensor ({order} order)",
                      t.get("packed_decode_melem_s")))
        if "peers" in t:
            b = t["peers"]["best"]
            found.append((b["bytes"], f"{b['coder']} on the {b['input']}, {order}", b.get("decode_melem_s")))
    floor = min(t["context_coder_floor_bytes"] for t in bench)
    top = min(found, key=lambda f: f[0])
    peers = [f for f in found if f[2] is not None and not f[1].startswith("our")]
    ours = min((f for f in found if f[1].startswith("our")), key=lambda f: f[0])
    text = (f"**Verdict on bench_codec.py's tensor** (goal <= 0.75x of {best:,} B = {0.75 * best:,.0f} B): the smallest "
            f"figure any measured coder reached is {top[0]:,.0f} B = **{top[0] / best:.3f}x** ({top[1]}), "
            + ("which meets the goal" if top[0] <= 0.75 * best else f"{top[0] - 0.75 * best:,.0f} B short of the goal")
            + f". The lowest static floor (model cost not counted) is {floor:,.0f} B ({floor / best:.3f}x). "
            f"{ours[1][0].upper() + ours[1][1:]}: {ours[0]:,} B ({ours[0] / best:.3f}x), decoded at {ours[2]:,.0f} M elements/s.")
    if peers:
        p = min(peers, key=lambda f: f[0])
        text += (f" The smallest general-purpose modelling coder: {p[1]}, {p[0]:,} B ({p[0] / best:.3f}x), decoded at "
                 f"{p[2]:,.1f} M elements/s.")
    if top[2] is None:
        text += (" The strongest models' adaptive and mixing parts decode one adaptive binary decision per tensor "
                 "element (no table-driven decoder exists for them).")
    return ["", text] + _oracle_table(bench[0])


def _oracle_table(t):
    """codec_bound.py's generative-model rows of the bench tensor (initial weights + training update)."""
    rows = t.get("oracle_rows")
    if not rows:
        return []
    out = ["", f"How {t['tensor']} came about, as a model (codec_bound.oracle_rows): every trained weight is its "
           "Glorot-uniform initial value plus the training update, its symbol the pruning / k-means interval it "
           f"falls in. Code lengths of the actual symbols, + the {t['fixed_bytes']} fixed bytes; rows marked *oracle* "
           "use knowledge the encoder does not have (it has only the tensor) and price it below its cost:", "",
           "| model | bytes | vs best compressor | update energy in the factors |", "|---|---|---|---|"]
    best = min(t["compressor_bytes"].values())
    for r in rows:
        e = f"{100 * r['update_energy']:.0f} %" if "update_energy" in r else "-"
        out.append(f"| {r['model']} | {r['bytes'] + t['fixed_bytes']:,.0f} | {(r['bytes'] + t['fixed_bytes']) / best:.3f}x | {e} |")
    return out


def codec_init_lines(ck, record=None):
    """codec_bound.py --init-known-epochs (docs/results/codec_init_known.json): what a decoder that knows the
    initial weights (a seed in the file) could save on bench_codec.py's tensor trained 1 .. N epochs, one
    table row per training length (rows ``"pruning": "gradual"``: the kernel pruned during training, B + P
    epochs), and the verdict. ``record``: the Table 1 LeNet-300-100 run's config (its pruning / fine-tuning
    epochs quoted), or None.

    Example:
        >>> lines = codec_init_lines(json.load(open("docs/results/codec_init_known.json")))
    """
    rows, c, m = ck["rows"], ck["config"], ck["machine"]
    bk = [str(b) for b in c["buckets"]]
    one = [x for x in rows if x.get("pruning", "one-shot") == "one-shot"]
    grad = [x for x in rows if x.get("pruning", "one-shot") == "gradual"]

    def r(x, best):
        s = f"{x / best:.3f}x"
        return f"**{s}**" if x <= 0.75 * best else s

    def paid(row):  # (bytes, what) of the cheapest model with w0 known and its model cost paid
        cands = [(row["init_known"][b]["rans_bytes"], f"static rANS, {b} cells") for b in bk]
        cands += [(row["init_known"][b]["huffman_bytes"], f"§6 gaps + index Huffman per cell, {b} cells") for b in bk]
        if row["gaussian_init_known_bytes"] is not None:
            cands.append((row["gaussian_init_known_bytes"], "the Gaussian update around w0"))
        return min(cands)

    def rg(x, best):
        return "-" if x is None else r(x, best)

    def epochs(x):
        return (f"{x['base_epochs']} + {x['prune_epochs']}, pruned during training" if x.get("pruning") == "gradual"
                else str(x["epochs"]))

    def table_driven(row):
        return min((row["init_known"][b]["huffman_bytes"], b) for b in bk)

    n = rows[0]["shape"][0] * rows[0]["shape"][1]
    out = ["", f"**If the decoder knew the initial weights** (`{ck['command']}`, run {m['date']}, load average "
           f"{ck['loadavg_start'][0]:.1f} at the start, {m['loadavg'][0]:.1f} at the end): a seeded initializer whose "
           f"seed the file carries ({c['seed_bytes']} B), the decoder regenerating every initial value w0. The same "
           f"kernel as bench_codec.py's: {c['model']}; seed {c['seed']}, density {c['density']}, {c['bits']}-bit "
           "k-means, trained for each number of epochs from the same initial weights"
           + ("; at 1 epoch bit-identical to bench_codec.py's tensor" if any(x.get("identical_to_bench_codec_tensor")
                                                                          for x in rows) else "")
           + ". Ratios to the best of gzip-9 / bz2-9 / xz-9e / zstd-19 of each tensor, every figure + the fixed bytes "
           "of the §6 file, each cell *w0 unknown → w0 known* (w0 in B equal cells of [-L, L], L Glorot's limit). "
           "*Static floor*: the kept bit of every element and each kept weight's index given w0's cell, static "
           "conditional entropies, model cost not counted. *Static rANS*: the same contexts, one frequency table "
           "per cell counted as in the table above, + the seed; one binary decision per element. *§6 gaps + "
           "Huffman per cell*: §6's gap stream unchanged, the index stream Huffman-coded with one table per w0 "
           "cell of the entry, tables and seed counted (a table-driven decoder at §6's pace: w0 needed at the "
           "entries only). *Gaussian update*: P(symbol | w0) = the mass of N(w0 + mean, std²) of the training "
           "update on the symbol's interval (2 parameters), the w0-unknown side being the first row of the table "
           "above."
           + ("" if not grad else " Rows *B + P, pruned during training*: Deep Compression's own recipe, B epochs as "
              "above, then the kernel pruned during P more by dc_keras.pipeline.prune_retrain (AGP ramp to the same "
              "density over the first 60 % of them, then the survivors retrained; the same k-means); their correlation "
              "and update std are over the kept weights (*kept*; the others are set to 0, and the Gaussian model does "
              "not apply)."), "",
           "| epochs | corr(w0, trained) | update std / L | best compressor | §6 / §14 | static floor, "
           + " / ".join(bk) + " cells | static rANS, " + " / ".join(bk) + " cells | §6 gaps + Huffman per cell, "
           + " / ".join(bk) + " cells | Gaussian update |",
           "|---|---|---|---|---|---|---|---|---|"]
    for x in rows:
        best, u, k = x["best_bytes"], x["init_unknown"], x["init_known"]
        kw = " (kept)" if x.get("stats_over") == "kept weights" else ""
        out.append(f"| {epochs(x)} | {x['corr_init_trained']:.3f}{kw} | {x['update_std_vs_limit']:.2f}{kw} | "
                   f"{best:,} ({x['best_compressor']}) | {r(x['packed_sparse_bytes'], best)} / "
                   f"{r(x['packed_context_bytes'], best)} | {r(u['entropy_bytes'], best)} → "
                   + " / ".join(r(k[b]["entropy_bytes"], best) for b in bk) + f" | {r(u['rans_bytes'], best)} → "
                   + " / ".join(r(k[b]["rans_bytes"], best) for b in bk) + f" | {r(u['huffman_bytes'], best)} → "
                   + " / ".join(r(k[b]["huffman_bytes"], best) for b in bk)
                   + f" | {rg(x['gaussian_init_unknown_bytes'], best)} → {rg(x['gaussian_init_known_bytes'], best)} |")
    first, last = one[0], one[-1]
    text = []
    fb = first["best_bytes"]
    pb, pw = paid(first)
    hb, hk = table_driven(first)
    text.append(f"Knowing w0 would {'meet' if pb <= 0.75 * fb else 'still miss'} the <= 0.75x goal on the "
                f"{first['epochs']}-epoch tensor: {pw}, {pb:,.0f} B = **{pb / fb:.3f}x** of {fb:,} B (static floor "
                f"{min(first['init_known'][b]['entropy_bytes'] for b in bk) / fb:.3f}x; §6 today "
                f"{first['packed_sparse_bytes'] / fb:.3f}x), but only with the kept bit of every element coded given "
                f"its w0; the table-driven variant a §6-speed decoder could run reaches {hb:,.0f} B = "
                f"{hb / fb:.3f}x ({hk} cells), {'within' if hb <= 0.75 * fb else 'above'} the goal.")
    if len(one) > 1:
        text.append(f"The gain fades as training lengthens: the correlation of w0 and the trained weights falls from "
                    f"{first['corr_init_trained']:.2f} ({first['epochs']} epoch{'s' if first['epochs'] > 1 else ''}) to "
                    f"{last['corr_init_trained']:.2f} ({last['epochs']} epochs) while the update's std grows from "
                    f"{first['update_std_vs_limit']:.2f} L to {last['update_std_vs_limit']:.2f} L, and the cheapest "
                    "paid-for model with w0 known is at "
                    + ", ".join(f"{r(paid(x)[0], x['best_bytes'])} after {x['epochs']}" for x in one[1:])
                    + " epochs (§6 today: " + ", ".join(f"{x['packed_sparse_bytes'] / x['best_bytes']:.3f}x" for x in one[1:])
                    + ").")
    if grad:
        text.append("Pruned during training (Deep Compression's own recipe), the cheapest paid-for model with w0 known "
                    "is at " + ", ".join(f"{r(paid(x)[0], x['best_bytes'])} after {x['base_epochs']} + "
                                         f"{x['prune_epochs']}" for x in grad)
                    + " epochs (§6 today: " + ", ".join(f"{x['packed_sparse_bytes'] / x['best_bytes']:.3f}x" for x in grad)
                    + "; the table-driven variant: " + ", ".join(f"{r(table_driven(x)[0], x['best_bytes'])}" for x in grad)
                    + ").")
    rec = (f"The Table 1 LeNet-300-100 is trained much longer (a trained baseline, then {record['prune_epochs']} "
           f"pruning and {record['cluster_epochs']} weight-sharing epochs), and the " if record else "The ")
    text.append(rec + "models that code the kept bit of every element given its w0 decode one w0 draw and one binary "
                f"decision for each of the {n:,} "
                f"elements where §6 decodes {first['entries']:,} Huffman entries, while issue 19 also requires a decode "
                "speed >= today's: not built, and the goal stays missed.")
    return out + ["", " ".join(text)]

def _peers_table(cb):
    """codec_bound.py --peers: context-mixing / PPM coders on each tensor, best per input."""
    ts = [t for t in cb["tensors"] if "peers" in t]
    if not ts:
        return []
    out = ["", "Context-mixing and PPM coders (codec_bound.py --peers: zpaq, PPMd var. H, brotli from PyPI; the "
           "zpaq / lrzip / 7-Zip command-line coders as installed by Debian's packages) on three inputs: the float32 "
           "tensor; its dense index array (one byte per element) plus the float32 codebook; §6's gap and index "
           "streams (one byte per symbol, G capped at 256) plus the codebook. Each cell: the smallest over the "
           "coders (container overhead included: zpaq -m5 adds ~290 B to a 1-byte input, the zpaq CLI archive "
           "~1 KB); *decode* is the winning coder's decode speed on that input, in million tensor elements per CPU "
           "second (one run; for the stream inputs the streams' decode only, not their expansion to the tensor), beside our C decoder's on the packed tensor (best of 20 runs), both under the load recorded "
           "above.", "",
           "| tensor | float32 | dense index + codebook | gap + index streams + codebook | strongest peer | decode | "
           "ours: packed | decode |",
           "|---|---|---|---|---|---|---|---|"]
    for t in ts:
        p, cells = t["peers"], []
        for inp in ("float32", "dense uint8 index + codebook", "gap + index streams + codebook"):
            c = min(p["bytes"][inp], key=p["bytes"][inp].get)
            cells.append(f"{p['bytes'][inp][c]:,} ({c})")
        b = p["best"]
        dec = "-" if b.get("decode_melem_s") is None else f"{b['decode_melem_s']:.1f} M/s"
        ours = min(t["packed_sparse_bytes"], t["packed_context_bytes"])
        out.append(f"| {t['tensor']} | " + " | ".join(cells) + f" | {b['bytes']:,} (**{b['vs_best']:.3f}x**) | {dec} | "
                   f"{ours:,} ({ours / min(t['compressor_bytes'].values()):.3f}x) | {t['packed_decode_melem_s']:,.0f} M/s |")
    missing = sorted({m for t in ts for m in t["peers"]["missing"]})
    if missing:
        out += ["", "Not installed when this ran (their rows are missing): " + ", ".join(missing) + "."]
    return out


def fit_step_section(fs):
    """Section of docs/results.md from benchmarks/bench_fit_step.py --json (issue 16). Rows of runs
    that also timed the clustered fine-tuning step (``clustered_s``) get its columns too; runs with
    interleaved rounds (``config["rounds"]``) give each ratio's min-max over the rounds.

    Example:
        >>> lines = fit_step_section(json.load(open("docs/results/fit_step.json")))
    """
    m = fs["machine"]
    c = fs["config"]
    clustered = any("clustered_s" in r for r in fs["rows"])
    title = "pruned and clustered vs plain" if clustered else "pruned vs plain"
    kinds = "plain, pruned and clustered" if clustered else "plain and pruned"
    if "rounds" in c:
        method = (f"{c['steps']} steps per timed `fit()` epoch, {c['rounds']} interleaved rounds ({kinds}, one epoch "
                  f"each, after {c['warmup']} warm-up epochs per model) in one process per backend; ratio = median "
                  "over the rounds of the wrapped epoch's time / the mean of the plain epochs just before and after "
                  "it, [min-max] over the rounds; ms/step = median epoch. cpu = user+sys CPU time of the process "
                  "(steadier on a loaded machine).")
    else:
        method = (f"{c['steps']} steps per timed epoch, median of {c['repeats']} epochs; {kinds} epochs alternate in "
                  "one process per backend. cpu ratio = user+sys CPU time ratio (steadier on a loaded machine).")
    out = [f"## Fit step: {title}, per Keras backend", "",
           f"Run: {m['date']} on {m['nproc']} CPUs ({m['cpu']}), load average {m['loadavg_before'][0]:.1f} at the "
           f"start and {m['loadavg'][0]:.1f} at the end (1 min), command `{fs['command']}`. {c['model']}, batch "
           f"{c['batch_size']}, " + method
           + (f" Clustered: the fine-tuning step of {c.get('cluster_bits', 5)}-bit weight sharing." if clustered else ""),
           ""]
    head = "| backend | plain ms/step | pruned ms/step | ratio | cpu ratio | goal |"
    rule = "|---|---|---|---|---|---|"
    if clustered:
        head += " clustered ms/step | ratio | cpu ratio | goal |"
        rule += "---|---|---|---|"
    out += [head, rule]
    for r in fs["rows"]:
        if "error" in r:
            out.append(f"| {r['label']} | failed: {r['error'][-120:]!r} | | | | |" + (" | | | |" if clustered else ""))
            continue
        row = (f"| {r['label']} | {1e3 * r['plain_s']:.2f} | {1e3 * r['pruned_s']:.2f} | {_ratio(r, 'ratio', True)} "
               f"| {_ratio(r, 'cpu_ratio')} | {_goal(r['goal_met'], fs['goal_ratio'])} |")
        if clustered and "clustered_s" in r:
            row += (f" {1e3 * r['clustered_s']:.2f} | {_ratio(r, 'cluster_ratio', True)} | "
                    f"{_ratio(r, 'cluster_cpu_ratio')} | {_goal(r['cluster_goal_met'], fs['goal_ratio'])} |")
        elif clustered:
            row += " - | - | - | - |"
        out.append(row)
    native = [r for r in fs["rows"] if "jax_ffi" in r]
    if native:  # bench_fit_step.py records whether the JAX clustered step ran the native kernels
        out += ["", "JAX clustered step: " + "; ".join(
            f"{r['label']}: " + ("native centroid kernels (`make jax-ffi`)" if r["jax_ffi"] else
                                 "lax.gather fallback (native centroid kernels not built)") for r in native) + "."]
    return out + [""]


def _ratio(row, key, bold=False):
    """``**1.05x**`` (old runs) or ``**1.05x** [0.98-1.12]`` (runs with the ratio's min and max)."""
    text = f"**{row[key]:.2f}x**" if bold else f"{row[key]:.2f}x"
    if key + "_min" in row:
        text += f" [{row[key + '_min']:.2f}-{row[key + '_max']:.2f}]"
    return text


def _goal(met, ratio):
    return "-" if met is None else (f"<= {ratio}x: " + ("met" if met else "NOT met"))


def multi_worker_section(mw):
    """Section of docs/results.md from benchmarks/bench_multi_worker.py --json (issue 16).

    Example:
        >>> lines = multi_worker_section(json.load(open("docs/results/multi_worker_step.json")))
    """
    m, c = mw["machine"], mw["config"]
    out = ["## Multi-worker fit step: pruned and clustered vs plain, same distribution", "",
           f"Run: {m['date']} on {m['nproc']} CPUs ({m['cpu']}), load average {m['loadavg_before'][0]:.1f} at the "
           f"start and {m['loadavg'][0]:.1f} at the end (1 min), command `{mw['command']}`. {c['model']}, Keras 3 "
           f"{c['backend'].upper()} backend, `keras.distribution.{c['distribution']}` over {c['workers']} worker "
           f"processes on 127.0.0.1 ({c['devices']} devices), global batch {c['batch_size']}; median of {c['rounds']} "
           f"timed epochs of {c['steps']} steps per model on worker 0, the three models interleaved round by round.", "",
           "| model | ms/step | ratio to plain | goal |", "|---|---|---|---|"]
    for r in mw["rows"]:
        goal = "-" if r["goal_met"] is None else (f"<= {mw['goal_ratio']}x: " + ("met" if r["goal_met"] else "NOT met"))
        out.append(f"| {r['model']} | {1e3 * r['step_s']:.2f} | **{r['ratio']:.2f}x** | {goal} |")
    return out + [""]


def density_section(d):
    """Section of docs/results.md from benchmarks/bench_density.py --json: compressed / decoded
    invoke time of one FULLY_CONNECTED layer by density, weight type, size and batch, the compact
    form's memory against the dense weight's, and which densities the default max_density runs
    compressed (bold).

    Example:
        >>> lines = density_section(json.load(open("docs/results/density.json")))
    """
    m = d["machine"]
    densities = sorted({round(100 * r["density"]) for r in d["rows"]})
    out = ["## Compressed FC layers by density: the default `max_density`", "",
           f"Run: {m['date']} on {m['nproc']} CPUs ({m['cpu']}), load average {m['loadavg'][0]:.1f} at the start "
           f"and {m['loadavg_end'][0]:.1f} at the end (1 min), command `{d['command']}`, compressed kernels: "
           f"{d['compressed_kernel']}. One Dense layer (bias, 15 shared non-zero values, unstructured), packed; "
           "`weights=\"compressed\", max_density=1.0` against `weights=\"decoded\"` (XNNPACK) in one process, "
           f"{d['rounds']} alternating invokes each" + (", in 3 blocks: compressed / decoded of the median invoke, the median of the "
           "blocks' ratios" if d["rows"] and "block_ratios" in d["rows"][0] else ": compressed / decoded of the median invoke") +
           " (below 1x the compressed layer is faster). **Bold**: the layer runs compressed with `weights=\"compressed\"` and the default "
           "`max_density`; the others stay decoded. int8: the converter's full-integer model (outputs checked equal). "
           "Memory: the compact form's bytes / the dense weight's (float32: 4 B, int8: 1 B per weight).", "",
           "| weights | size | batch | " + " | ".join(f"{p} %" for p in densities) + " |",
           "|---|---|---|" + "---|" * len(densities)]
    groups = {}
    for r in d["rows"]:
        groups.setdefault((r["dtype"], r["n"], r["batch"]), {})[round(100 * r["density"])] = r
    mem = {}
    for (dtype, n, batch), cells in groups.items():
        row = []
        for p in densities:
            r = cells.get(p)
            text = "–" if r is None else f"{r['ratio']:.2f}x"
            row.append(f"**{text}**" if r is not None and r["default"] == "compressed" else text)
            if r is not None:
                mem.setdefault((dtype, n), {})[p] = r["compact_bytes"] / r["dense_bytes"]
        out.append(f"| {dtype} | {n}² | {batch} | " + " | ".join(row) + " |")
    for (dtype, n), cells in mem.items():
        out.append(f"| {dtype} | {n}² | memory | " + " | ".join(
            f"{cells[p]:.2f}x" if p in cells else "–" for p in densities) + " |")
    return out + [""] + density_variants_section(d, densities, groups)


def density_variants_section(d, densities, groups):
    """The kernel variants of bench_density.py (its rows' "variants", when measured) side by side:
    per layer and batch the fastest invoke of XNNPACK (decoded) and of each compressed variant, with
    its ratio to XNNPACK's; bold where the variant's default max_density runs the layer compressed."""
    variants = d.get("variants") or []
    if len(variants) < 2:
        return []
    m = d["machine"]
    wait = m.get("load_wait")
    names = {"native": f"{d['compressed_kernel']} (this CPU's kernels)",
             "avx2": "avx2 (use_simd(4): float32 rows, scalar; int8 AVX2 tiles)",
             "avx2_tiles": "avx2 tiles (float32: AVX-512-built tiles, AVX2 kernels)",
             "scalar": "scalar (use_simd(0): rows)"}
    loads = [r["loadavg"] for r in d["rows"] if "loadavg" in r]
    out = ["### Kernel variants side by side", "",
           "The same run: each compressed variant is one more interpreter of the same packed layer, alternating "
           "with the decoded one as the table above does (two at a time), its kernels switched with "
           "`dc_sparse_fc_use_simd` (dc_sparse_fc.h) for its load and around each of its invokes. Figures: the "
           f"fastest of its {3 * d['rounds']} invokes in ms, and its ratio to XNNPACK's fastest in the same "
           "alternation (XNNPACK's row: its fastest over all of them; its AVX-512 kernels on this CPU, which a CPU "
           "without AVX-512 does not have either). **Bold**: the variant's default `max_density` runs the layer "
           "compressed."
           + (f" Started after waiting {wait['waited_s']} s for the 1-minute load average to fall below "
              f"{wait['limit']} (it was {wait['loadavg_then']})." if wait else "")
           + (f" Load average after each layer: {min(loads):.1f}-{max(loads):.1f}." if loads else ""), "",
           "| weights | size | batch | kernels | " + " | ".join(f"{p} %" for p in densities) + " |",
           "|---|---|---|---|" + "---|" * len(densities)]
    for (dtype, n, batch), cells in groups.items():
        if not any("variants" in r for r in cells.values()):
            continue
        out.append(f"| {dtype} | {n}² | {batch} | XNNPACK (decoded) | " + " | ".join(
            f"{cells[p]['decoded_fastest_ms']:.3f}" if p in cells else "–" for p in densities) + " |")
        for v in variants:
            row = []
            for p in densities:
                r = cells.get(p, {}).get("variants", {}).get(v)
                text = "–" if r is None else f"{r['fastest_ms']:.3f} ({r['ratio_fastest']:.2f}x)"
                row.append(f"**{text}**" if r is not None and r["default"] == "compressed" else text)
            if any(t != "–" for t in row):
                out.append(f"| | | | {names.get(v, v)} | " + " | ".join(row) + " |")
    return out + [""]


def scale_section(sc):
    """Section of docs/results.md from benchmarks/bench_scale.py --json: pack / unpack / inspect and
    load + invoke on synthesised big and wide models, wall time and peak RSS of each operation in a
    process of its own.

    Example:
        >>> lines = scale_section(json.load(open("docs/results/scale.json")))
    """
    m = sc["machine"]
    out = ["## Scale: big and wide models", "",
           f"Run: {m['date']} on {m['nproc']} CPUs ({m['cpu']}), load average {m['loadavg'][0]:.1f} at the start "
           f"and {m['loadavg_end'][0]:.1f} at the end (1 min), command `{sc['command']}`. Models synthesised through "
           "the TFLite schema (chains of FULLY_CONNECTED, kernels 10 % kept among 16 shared values); each operation "
           "runs in a child process of its own, reading the file included: wall time and peak RSS (VmHWM). "
           "`run`: load, allocate and invoke every signature with `dc_keras.runtime.Interpreter`; the packed "
           "model's outputs are compared bit for bit with the plain model's."
           + (" int16 / int32 cases: GATHER ops on constant tables instead, half of them clustered (16 values per "
              "row, 30 % kept), half not: int16 quantized per row over its whole range (kept raw), int32 within "
              "+-2^20, nearly all distinct (no codebook packs them; FORMAT.md §17's integer planes, format "
              "version 4, do since 2026-12-03: big_i32 was 54,507,136 B before)."
              if any(r["dtype"] in ("int16", "int32") for r in sc["rows"]) else ""), "",
           "| case | file | tensors | subgraphs | operation | seconds | peak RSS | output | bit-identical |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in sc["rows"]:
        for i, o in enumerate(r["ops"]):
            head = (f"{r['case']} ({r['dtype']}, buffers {r['buffers']}) | {r['file_bytes'] / 1e6:,.1f} MB | "
                    f"{r['tensors']:,} | {r['subgraphs']}") if i == 0 else " | | |"
            outb = "" if o["out_bytes"] is None else (
                f"{o['out_bytes']:,} B ({r['file_bytes'] / o['out_bytes']:.1f}x smaller)" if o["op"] == "pack"
                else f"{o['out_bytes']:,} B")
            same = ("yes" if r["bit_identical"] else "**no**") if i == 0 else ""
            out.append(f"| {head} | {o['op']} | {o['seconds']:.2f} | {o['peak_rss_mb']:,.0f} MB | {outb} | {same} |")
    return out + [""]


def centroid_ops_section(co):
    """Section of docs/results.md from benchmarks/bench_centroid_ops.py --json: per-op cost of the
    clustered TF training step's centroid gather and sums, native ops vs the XLA fallback; each
    native row also as a ratio to the fallback row of the same op and zero-slot share.

    Example:
        >>> lines = centroid_ops_section(json.load(open("docs/results/centroid_ops.json")))
    """
    m = co["machine"]
    threads = co["intra_threads"] or "TF's default"
    out = ["## Clustered TF training step: centroid ops, native vs fallback", "",
           f"Run: {m['date']} on {m['nproc']} CPUs ({m['cpu']}), load average {co['loadavg_before'][0]:.1f} at the "
           f"start and {co['loadavg_after'][0]:.1f} at the end (1 min), command `{co['command']}`. LeNet-300-100's "
           "fc1 (784 x 300 entries, 32 centroids + the zero slot), without and with 90 % of the entries in the zero "
           f"slot. Each op runs {co['repeat']} times in a tf.function's while loop, called {co['calls']} times after "
           "a warm-up; per op: the median wall time and the mean process CPU time (all threads) per call, minus the "
           f"empty loop's, divided by {co['repeat']}. Native: `make tf-ops` (dc_keras/train/_tf_ops.py); split: shared "
           "with one thread of TF's intra-op pool (the training step uses one thread); fallback: XLA-compiled "
           "tf.gather / unsorted_segment_sum, each XLA call's launch included (the training step pays it too). "
           f"TF intra-op threads: {threads}. Ratios: native / fallback (below 1x: the native op costs less).", "",
           "| op | zero slot | wall µs | cpu µs | wall ratio | cpu ratio |", "|---|---|---|---|---|---|"]
    fallback = {(r["op"].split()[0], r["pruned"]): r for r in co["rows"] if "fallback" in r["op"]}
    for r in co["rows"]:
        ref = None if "fallback" in r["op"] else fallback.get((r["op"].split()[0], r["pruned"]))
        wall, cpu = ("-", "-") if ref is None else (f"{r['wall_us'] / ref['wall_us']:.2f}x",
                                                     f"{r['cpu_us'] / ref['cpu_us']:.2f}x")
        out.append(f"| {r['op']} | {100 * r['pruned']:.0f} % | {r['wall_us']:.1f} | {r['cpu_us']:.1f} | {wall} | {cpu} |")
    return out + [""]


_MCU_RUNS = [("float", "float32 unpacked"), ("float.packed.once", "float32 packed, decode once"),
             ("float.packed.each", "float32 packed, decode every invoke"),
             ("float.lut", "float32 TFLM LUT (pinned wheel's tool)"), ("int8", "int8 unpacked"),
             ("int8.packed.once", "int8 packed, decode once"), ("int8.packed.each", "int8 packed, decode every invoke"),
             ("int8.lut", "int8 TFLM LUT (pinned wheel's tool)")]


_MCU_LUT_TOOLS = [("lut", "pinned wheel"), ("lut_new", "newer tool")]


def _mcu_tensor(name):
    """``float fc1`` for mcu_bench's ``float_lenet_300_100_1_fc1_1_MatMul`` (the name itself otherwise)."""
    kind, layer = name.split("_", 1)[0], [w for w in name.split("_") if w.startswith("fc") and w[2:].isdigit()]
    return f"{kind} {layer[0]}" if kind in ("float", "int8") and layer else name


def mcu_section(mcu):
    """Section of docs/results.md from benchmarks/mcu_bench.py's JSON (docs/results/mcu_*.json): flash
    bytes packed vs TFLite Micro's LUT compression, TFLM (x86 wheel) outputs and arena bytes, and the
    Cortex-M4 decode cost under qemu (instructions per output element, stack, workspace, code size).

    Example:
        >>> lines = mcu_section(json.load(open("docs/results/mcu_lenet_300_100.json")))
    """
    m, model, tflm = mcu["machine"], mcu["model"], mcu["tflm_x86"]
    start, end = mcu.get("loadavg_start"), mcu.get("loadavg_end")
    load = (f"load average {start[0]:.1f} at the start and {end[0]:.1f} at the end (1 min)" if start and end
            else load_text(m))
    command = (f"command `{mcu['command']}`" if mcu.get("command") else
               "command not recorded (`benchmarks/mcu_bench.py` wrote this file)")
    layers = ", ".join(f"{r['layer']} {100 * r['density']:.1f} % kept, {r['distinct']} values" for r in model["layers"])
    out = [f"## Microcontrollers ({mcu['benchmark']}): TensorFlow Lite Micro and Cortex-M4", "",
           f"Run: {m['date']} on {m['nproc']} CPUs ({m['cpu']}), {load}, {command}, {mcu['seconds']:.0f} s. "
           f"Model: `benchmarks/mcu_models.py` (seed {model['seed']}; {layers}; float test error "
           f"{pct(model['float_error_full_test'])}), float32 and full-integer int8 `.tflite`. Instruction counts are "
           "exact (qemu `-icount`), no wall time is quoted. Details and goals: docs/microcontrollers.md.", "",
           "Flash (`.tflite` bytes): dc_keras packed vs TFLite Micro's own compression (`tflite_micro.compression`, "
           "LUT, same weights): the pinned runtime wheel's tool (quantized tensors only) and a newer nightly's.", "",
           "| model | unpacked | dc_keras packed | TFLM LUT (pinned wheel) | TFLM LUT (newer tool) | packed / LUT |",
           "|---|---|---|---|---|---|"]
    sz, ratios = tflm["flash_bytes"], mcu.get("ratios_packed_vs_lut", {})
    for kind, title in (("float", "float32"), ("int8", "int8")):
        lut = f"{sz[kind + '.lut']:,}" if sz.get(kind + ".lut", sz[kind]) != sz[kind] else "not compressed"
        new = f"{sz[kind + '.lut_new']:,}" if kind + ".lut_new" in sz else "-"
        ratio = " / ".join(f"{ratios[f'{kind} ({lut})']:.3f} ({tool})" for lut, tool in _MCU_LUT_TOOLS
                           if f"{kind} ({lut})" in ratios) or "-"
        out.append(f"| {title} | {sz[kind]:,} | **{sz[kind + '.packed']:,}** | {lut} | {new} | **{ratio}** |")
    out += ["", f"TFLM (PyPI wheel, x86-64, reference kernels), {tflm['images']} MNIST test images, batch 1; arena: "
            "TFLM's recording allocator after one invoke; outputs compared bit for bit with the unpacked model's; "
            "test error on these images.", "",
            "| model | outputs vs unpacked | test error | arena bytes |", "|---|---|---|---|"]
    for name, title in _MCU_RUNS:
        r = tflm["runs"].get(name)
        if r is None:
            continue
        if not r["ok"]:
            out.append(f"| {title} | failed: {r.get('error') or '-'} | - | - |")
            continue
        same = "—" if "." not in name else ("bit-exact" if r.get("bit_exact_vs_unpacked") else "DIFFERENT")
        if name.endswith(".lut") and not r.get("lut_tensors"):
            same += " (no tensor compressed)"
        out.append(f"| {title} | {same} | {pct(r['test_error'])} | {r['arena_total_bytes']:,} |")
    c4 = mcu.get("cortex_m4")
    if not c4:
        out += ["", "Cortex-M4: not measured in this run (`--skip-m4`)."]
    else:
        out += ["", f"Cortex-M4: {c4['cpu']}, decoder `{c4['decoder_api']}`, every weight tensor: decode "
                "instructions per output element (all the decoder executes: header checks, table build, CRC-32 of "
                "the packed bytes, decode, background fill), painted stack high-water mark, decoder workspace.", "",
                "| tensor | layout | elements | non-zero | packed B | decode instructions | instructions / element "
                "| stack B | workspace B |", "|---|---|---|---|---|---|---|---|---|"]
        by_kind = {}
        for t in c4["tensors"]:
            by_kind.setdefault(t["name"].split("_", 1)[0], []).append(t)
        for kind, rows in by_kind.items():
            for t in sorted(rows, key=lambda t: -t["elements"]):
                out.append(f"| {_mcu_tensor(t['name'])} | {t['layout']} | {t['elements']:,} | {t['nonzero']:,} | "
                           f"{t['packed_bytes']:,} | {t['decode_insns']:,} | {t['insns_per_element']:.2f} | "
                           f"{t['stack_bytes']:,} | {t['workspace_bytes']:,} |")
            whole = c4.get("insns_per_element_by_model", {}).get(kind)
            if whole is not None:
                out.append(f"| **{kind}, whole model** | | {sum(t['elements'] for t in rows):,} | | | "
                           f"{sum(t['decode_insns'] for t in rows):,} | **{whole:.2f}** | | |")
        o2, os_ = c4["code_bytes_O2"], c4["code_bytes_Os"]
        out += ["", f"Code for Cortex-M4 (`.text+.rodata+.data` of the object, -O2 / -Os): decoder `dc_codec.c` "
                f"{o2['decoder']:,} / {os_['decoder']:,} B, TFLM kernel `huffdecode_tflm.c` {o2['kernel']:,} / "
                f"{os_['kernel']:,} B{_mcu_stripped(c4)}. Decoder stack: {c4['max_stack_bytes']:,} B at most over these tensors; largest "
                f"frame (`-fstack-usage`): {_mcu_frame(c4['largest_frame_m4_without_dc_decode'])}; the host "
                f"convenience `dc_decode`, which the kernel never calls: {_mcu_frame(c4['largest_frame_m4'])}."]
    return out + [""]


def _mcu_stripped(c4):
    """The kernel object compiled with TF_LITE_STRIP_ERROR_STRINGS (TFLM's release builds), when the run measured it."""
    o2, os_ = c4.get("code_bytes_O2_strip"), c4.get("code_bytes_Os_strip")
    if not (o2 and os_):
        return ""
    return f" ({o2['kernel']:,} / {os_['kernel']:,} B with `TF_LITE_STRIP_ERROR_STRINGS`, as TFLM's release builds compile it)"


def _mcu_frame(line):
    """A -fstack-usage line ("path:line:col:function bytes kind") as text: "`function`, N B, kind (file
    line L in that run's sources)"; a path:line word is not a repository path (tests/test_docs.py checks
    those), and the line moves with every edit of the file."""
    where, size, kind = line.rsplit(None, 2)
    path, lineno, _col, function = where.rsplit(":", 3)
    return f"`{function}`, {int(size):,} B, {kind} ({os.path.basename(path)} line {lineno} in that run's sources)"


R = "docs/results/"  # where every command of the Reproduce block writes, and results_doc.py reads


def reproduce_block(args):
    """docs/results.md's Reproduce block: the benchmark commands behind the sections ``args`` asks
    for, each writing over the committed JSON it names, then the results_doc.py command that reads
    those JSONs; in a clone, that last command alone rewrites docs/results.md byte for byte.

    Example:
        >>> lines = reproduce_block(argparse.Namespace(table1=[...], zoo=None, ...))  # main's parsed options
    """
    run = [(None, "make install                                             # the bench extra (zstandard), tfmot 0.8.1 and tf_keras"),
           (None, ".venv/bin/python benchmarks/baselines.py --val 10000 --out_dir ~/.cache/dc_keras/baselines_val10k"),
           ("table1", f".venv/bin/python benchmarks/paper_table1.py --model lenet-300-100 --baseline_dir ~/.cache/dc_keras/baselines_val10k --json {R}lenet_300_100.json"),
           ("table1", f".venv/bin/python benchmarks/paper_table1.py --model lenet-5 --baseline_dir ~/.cache/dc_keras/baselines_val10k --json {R}lenet_5.json"),
           ("speed", f".venv/bin/python benchmarks/speed_table.py --json {R}speed.json --args bench_codec.py=--quick --args bench_load_invoke.py=--quick --args 'bench_fit_step.py=--steps 200 --repeats 3'"),
           ("runtime", f".venv/bin/python benchmarks/bench_runtime.py --rounds 10 --json {R}runtime.json   # ~10 min"),
           ("quantized", f".venv/bin/python benchmarks/bench_quantized.py --json {R}quantized.json"),
           ("quantized", f".venv/bin/python benchmarks/bench_quantized_zoo.py --json {R}quantized_zoo.json   # DS-CNN, ~15 min"),
           ("codec", f".venv/bin/python benchmarks/bench_codec.py --quick --tflite PRUNED_CLUSTERED.tflite --json {R}codec_context.json"
                     "   # e.g. paper_table1.py's shared_float.tflite (in its --out_dir)"),
           ("codec_bound", f".venv/bin/python benchmarks/codec_bound.py --tflite PRUNED_CLUSTERED.tflite --bench-tensor --peers --json {R}codec_bound.json"
                           "   # apt-get install zpaq lrzip 7zip first"),
           ("fit_step", f".venv/bin/python benchmarks/bench_fit_step.py --json {R}fit_step.json   # TF + JAX + tfmot, ~5 min"),
           ("zoo", f"nice .venv/bin/python benchmarks/model_zoo.py               # {R}model_zoo.json, ~45 min"),
           ("zoo", f".venv/bin/python benchmarks/zoo_repack.py --json={R}model_zoo.json  # + strip/compact sizes"),
           ("centroid_ops", f".venv/bin/python benchmarks/bench_centroid_ops.py --json {R}centroid_ops.json   # make tf-ops first"),
           ("density", f".venv/bin/python benchmarks/bench_density.py --json {R}density.json   # ~5 min"),
           ("multi_worker", f".venv/bin/python benchmarks/bench_multi_worker.py --rounds 15 --json {R}multi_worker_step.json"),
           ("scale", f".venv/bin/python benchmarks/bench_scale.py --json {R}scale.json   # ~3 min, ~1 GB of RAM"),
           ("codec_init", f".venv/bin/python benchmarks/codec_bound.py --init-known-epochs 1,2,5,10,20,30 "
                          f"--init-known-gradual 1+5,20+30 --json {R}codec_init_known.json   # ~8 min (training)"),
           ("mcu", f".venv/bin/python benchmarks/mcu_bench.py   # {R}mcu_lenet_300_100.json; "
                   "qemu + arm-none-eabi-gcc (make test-mcu installs them)")]
    # the options in this order; the Table 1 / speed / runtime / quantized / fit-step / codec-bound ones always
    # (the block has named them since it was first written), the others when given
    read = [("table1", True, f"--table1 {R}lenet_300_100.json {R}lenet_5.json"), ("speed", True, f"--speed {R}speed.json"),
            ("runtime", True, f"--runtime {R}runtime.json"),
            ("quantized", True, f"--quantized {R}quantized.json {R}quantized_zoo.json"),
            ("fit_step", True, f"--fit-step {R}fit_step.json"), ("codec_bound", True, f"--codec-bound {R}codec_bound.json"),
            ("zoo", False, f"--zoo {R}model_zoo*.json"), ("centroid_ops", False, f"--centroid-ops {R}centroid_ops.json"),
            ("density", False, f"--density {R}density.json"),
            ("multi_worker", False, f"--multi-worker {R}multi_worker_step.json"), ("scale", False, f"--scale {R}scale.json"),
            ("codec_init", False, f"--codec-init {R}codec_init_known.json"), ("codec", False, f"--codec {R}codec_context.json"),
            ("mcu", False, f"--mcu {R}mcu_*.json")]
    used = {key for key, always, _ in read if always or getattr(args, key)}
    regen = " ".join([".venv/bin/python benchmarks/results_doc.py"] + [words for key, _, words in read if key in used])
    return (["## Reproduce", "", "```sh"] + [line for key, line in run if key is None or key in used]
            + [regen, "```", "",
               f"Each benchmark command writes over the committed JSON it names (`git diff {R}` shows what moved); "
               "the last command alone, on the committed JSONs, writes this page byte for byte (docs/img/ too). "
               "The exact commands of this run are listed in each section.", ""])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table1", nargs="+", default=[], help="paper_table1.py --json outputs")
    p.add_argument("--tfmot", action="append", default=[], metavar="MODEL=JSON",
                   help="tfmot result of a separate `benchmarks/peers.py --json` run for a model whose "
                        "paper_table1 run had no tfmot rows")
    p.add_argument("--speed", default=None, help="speed_table.py --json output")
    p.add_argument("--zoo", nargs="+", default=None,
                   help="model_zoo.py JSON(s) (docs/results/model_zoo*.json); several runs' rows are merged")
    p.add_argument("--quantized", nargs="+", default=None,
                   help="bench_quantized.py / bench_quantized_zoo.py --json output(s)")
    p.add_argument("--runtime", default=None, help="bench_runtime.py --json output (docs/results/runtime.json)")
    p.add_argument("--codec", default=None, help="bench_codec.py --json output (docs/results/codec_context.json)")
    p.add_argument("--codec-bound", default=None, help="codec_bound.py --json output (docs/results/codec_bound.json)")
    p.add_argument("--codec-init", default=None,
                   help="codec_bound.py --init-known-epochs output (docs/results/codec_init_known.json): the initial "
                        "weights known to the decoder, after the --codec-bound section's oracle table")
    p.add_argument("--fit-step", default=None, help="bench_fit_step.py --json output (docs/results/fit_step.json)")
    p.add_argument("--multi-worker", default=None,
                   help="bench_multi_worker.py --json output (docs/results/multi_worker_step.json)")
    p.add_argument("--centroid-ops", default=None,
                   help="bench_centroid_ops.py --json output (docs/results/centroid_ops.json)")
    p.add_argument("--density", default=None, help="bench_density.py --json output (docs/results/density.json)")
    p.add_argument("--scale", default=None, help="bench_scale.py --json output (docs/results/scale.json)")
    p.add_argument("--mcu", nargs="+", default=None,
                   help="mcu_bench.py output(s) (docs/results/mcu_*.json): the microcontroller section")
    p.add_argument("--out", default="docs/results.md")
    p.add_argument("--img_dir", default="docs/img")
    args = p.parse_args(argv)
    if args.codec_init and not args.codec_bound:
        p.error("--codec-init renders inside the --codec-bound section: give --codec-bound codec_bound.json too")
    results = []
    for path in args.table1:
        results.append(load("--table1", path))
    for item in args.tfmot:
        model, _, path = item.partition("=")
        t = load("--tfmot", path)
        for r in results:
            if r["model"] == model and not r.get("tfmot"):
                base = r["float_tflite_bytes"]
                note = (f"tfmot {t['tfmot']} on tf_keras {t['tf_keras']}, same baseline weights, sparsity, clusters, "
                        f"epochs; separate run: `{t.get('command', 'benchmarks/peers.py')}`")
                for method, nbytes in (("tfmot: prune + cluster + strip + TFLite (.tflite)", t["tflite_bytes"]),
                                       ("tfmot: same, zipped (its documented size)", t["zip_bytes"])):
                    r["peers"].append({"method": method, "bytes": nbytes, "ratio": base / nbytes,
                                       "test_error": t["test_error"], "note": note})
                r["tfmot"] = t
                r["failures"] = [f for f in r.get("failures", []) if not f.startswith("tfmot")]
    os.makedirs(args.img_dir, exist_ok=True)
    lines = ["# Results", "",
             "Generated by `benchmarks/results_doc.py` from the JSON written by the commands below; no table "
             "figure is typed by hand. The notes stored with a run (*Why this run*, search rules, notes on rows, "
             "what a row replaced) are its runner's words and may quote figures of other runs.", ""]
    if results:
        m = results[0]["machine"]
        lines += [f"Machine of the Table 1 runs: {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, TensorFlow "
                  f"{m['tensorflow']}, Keras {m['keras']}. The other sections ran on other days, some on another "
                  "CPU: each names its run's date and load, and its CPU where the JSON recorded it. Wall times are indicative "
                  "only.", "",
                  "## Deep Compression Table 1 (MNIST)", "",
                  "dc_keras: whole packed `.tflite` file vs the float `.tflite` of the same trained baseline, "
                  "error measured on the packed file. Paper: weights only, Caffe. tfmot: its documented recipe "
                  "on the same baseline weights with the same per-layer sparsity, number of shared values, "
                  "epochs and optimizer, size of the zipped `.tflite`.", ""]
        lines += render("--table1", " ".join(args.table1), table1_summary, results) + [""]
        seen = {}
        for path, r in zip(args.table1, results):
            n = seen[r["model"]] = seen.get(r["model"], 0) + 1
            title = r["model"] if n == 1 else (f"{r['model']}, run {n} (sparsity {r['config']['sparsity']}, {r['config']['prune_epochs']} pruning + "
                                                      f"{r['config']['cluster_epochs']} sharing epochs)")
            img = os.path.join(args.img_dir, f"{r['model'].replace('-', '_')}{'' if n == 1 else f'_{n}'}_size_vs_error.png")
            if r["peers"]:
                plot_size_vs_error(r, img)
            lines += render("--table1", path, model_section, r,
                            os.path.relpath(img, os.path.dirname(os.path.abspath(args.out)) or "."), title, n == 1)
    if args.zoo:
        lines += render("--zoo", " ".join(args.zoo), zoo_section, merge_zoo(args.zoo))
    lines += reproduce_block(args)
    for option, section in (("--runtime", runtime_section), ("--density", density_section),
                            ("--scale", scale_section), ("--fit-step", fit_step_section),
                            ("--multi-worker", multi_worker_section), ("--centroid-ops", centroid_ops_section),
                            ("--speed", speed_section)):
        path = getattr(args, option[2:].replace("-", "_"))
        if path:
            lines += render(option, path, section, load(option, path))
    for path in args.quantized or []:
        q = load("--quantized", path)
        lines += render("--quantized", path, quantized_zoo_section if q.get("benchmark") == "quantized_zoo"
                        else quantized_section, q)
    if args.codec:
        lines += render("--codec", args.codec, codec_section, load("--codec", args.codec))
    if args.codec_bound:
        init_known = load("--codec-init", args.codec_init) if args.codec_init else None
        record = next((r["config"] for r in results if r["model"] == "lenet-300-100"), None)
        lines += render("--codec-bound", args.codec_bound + (f" (with --codec-init {args.codec_init})" if init_known
                                                             else ""),
                        codec_bound_section, load("--codec-bound", args.codec_bound), init_known, record)
    for path in args.mcu or []:
        lines += render("--mcu", path, mcu_section, load("--mcu", path))
    try:
        write_text(args.out, "\n".join(lines) + "\n")
    except OSError as e:  # e.g. the directory does not exist: the message says so and the fix
        raise SystemExit(f"results_doc.py --out {args.out}: {e}") from None
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
