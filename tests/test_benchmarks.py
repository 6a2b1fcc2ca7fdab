"""benchmarks/ (issue 18): no import circle, no sys.path edits, shared config/JSON writing in
_common.py; results_doc.py still renders the committed JSON results."""
import ast
import os
import subprocess
import sys

import pytest

from _benchmarks import load as load_bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
# Scripts added while issue 18 landed that still edit sys.path (their owners' to change: scripts
# run as `python benchmarks/X.py` have benchmarks/ on sys.path already; dc_keras is installed).
_SYS_PATH_PENDING = set()


def _imports():
    """benchmark module -> benchmark modules it imports (anywhere in the file)."""
    names = {f[:-3] for f in os.listdir(BENCH) if f.endswith(".py")}
    graph = {}
    for name in names:
        with open(os.path.join(BENCH, name + ".py")) as f:
            tree = ast.parse(f.read())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                deps |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                deps.add(node.module.split(".")[0])
        graph[name] = deps & names
    return graph, names


def test_no_import_cycle_and_no_sys_path_edits():
    graph, names = _imports()
    assert "_common" in names and graph["_common"] == set()  # the shared module imports no script
    state = {}

    def visit(n, path):
        if state.get(n) == "done":
            return
        assert state.get(n) != "active", "import cycle: " + " -> ".join(path + [n])
        state[n] = "active"
        for d in sorted(graph[n]):
            visit(d, path + [n])
        state[n] = "done"

    for n in sorted(names):
        visit(n, [])
    for name in names:
        with open(os.path.join(BENCH, name + ".py")) as f:
            text = f.read()
        edits = "sys.path.insert" in text or "sys.path.append" in text
        assert edits == (name in _SYS_PATH_PENDING), (
            f"{name}: sys.path edit" if edits else f"{name} is clean now: drop it from _SYS_PATH_PENDING")


def test_shared_settings_live_in_common():
    graph, _ = _imports()
    assert "_common" in graph["paper_table1"] and "_common" in graph["peers"]
    assert "paper_table1" not in graph["peers"]


def _zoo_args(res):
    """The model zoo's JSONs (benchmarks/model_zoo.py, one per process of the run), if committed."""
    zoo = sorted(os.path.join(res, n) for n in os.listdir(res) if n.startswith("model_zoo") and n.endswith(".json"))
    return ["--zoo", *zoo] if zoo else []


def _multi_worker_args(res):
    """benchmarks/bench_multi_worker.py's JSON, once committed."""
    path = os.path.join(res, "multi_worker_step.json")
    return ["--multi-worker", path] if os.path.exists(path) else []


def _codec_bound_args(res):
    """benchmarks/codec_bound.py's JSON, once committed."""
    path = os.path.join(res, "codec_bound.json")
    return ["--codec-bound", path] if os.path.exists(path) else []


def _codec_init_args(res):
    """benchmarks/codec_bound.py --init-known-epochs's JSON, once committed."""
    path = os.path.join(res, "codec_init_known.json")
    return ["--codec-init", path] if os.path.exists(path) else []


def _centroid_ops_args(res):
    """benchmarks/bench_centroid_ops.py's JSON, once committed."""
    path = os.path.join(res, "centroid_ops.json")
    return ["--centroid-ops", path] if os.path.exists(path) else []


def _density_args(res):
    """benchmarks/bench_density.py's JSON, once committed."""
    path = os.path.join(res, "density.json")
    return ["--density", path] if os.path.exists(path) else []


def _quantized_args(res):
    """bench_quantized.py's JSON, then bench_quantized_zoo.py's if committed."""
    return [os.path.join(res, n) for n in ("quantized.json", "quantized_zoo.json")
            if n == "quantized.json" or os.path.exists(os.path.join(res, n))]


def _scale_args(res):
    """benchmarks/bench_scale.py's JSON, once committed."""
    path = os.path.join(res, "scale.json")
    return ["--scale", path] if os.path.exists(path) else []


def _mcu_args(res):
    """benchmarks/mcu_bench.py's JSON(s), once committed."""
    mcu = sorted(os.path.join(res, n) for n in os.listdir(res) if n.startswith("mcu_") and n.endswith(".json"))
    return ["--mcu", *mcu] if mcu else []


def test_results_doc_reproduces_docs_results_md(tmp_path):
    """The JSON schema results_doc.py reads is unchanged: from the committed docs/results/*.json
    it writes docs/results.md exactly as committed, and the results_doc.py command its Reproduce
    block records names every option used (it lacked --multi-worker and --codec: run as written,
    it dropped those two sections)."""
    (tmp_path / "docs" / "img").mkdir(parents=True)
    res = os.path.join(ROOT, "docs", "results")
    table1 = [os.path.join(res, n) for n in ("lenet_300_100.json", "lenet_5.json")]
    args = ["--table1", *table1, "--speed", os.path.join(res, "speed.json"), "--quantized", *_quantized_args(res),
            "--runtime", os.path.join(res, "runtime.json"), "--fit-step", os.path.join(res, "fit_step.json"),
            "--codec", os.path.join(res, "codec_context.json"), *_zoo_args(res), *_multi_worker_args(res),
            *_codec_bound_args(res), *_codec_init_args(res), *_centroid_ops_args(res), *_density_args(res), *_scale_args(res), *_mcu_args(res)]
    r = subprocess.run([sys.executable, os.path.join(BENCH, "results_doc.py"), *args, "--out", "docs/results.md",
                        "--img_dir", "docs/img"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    with open(os.path.join(ROOT, "docs", "results.md")) as f:
        committed = f.read()
    assert (tmp_path / "docs" / "results.md").read_text() == committed
    recorded = [line for line in committed.splitlines() if line.startswith(".venv/bin/python benchmarks/results_doc.py ")]
    assert len(recorded) == 1, recorded
    assert sorted({w for w in recorded[0].split() if w.startswith("--")}) == sorted({a for a in args if a.startswith("--")})
    assert sorted(p.name for p in (tmp_path / "docs" / "img").iterdir()) == [
        "lenet_300_100_size_vs_error.png", "lenet_5_size_vs_error.png"]


def test_recipe_search_pick_applies_the_written_rule():
    """recipe_search.pick: the smallest file within baseline val error + x among the rule's tag;
    other searches' rows are ignored; none qualifying -> the lowest validation error, flagged."""
    code = r'''
import json, recipe_search
def c(tag, val, size, base=0.0120):
    return {"search": tag, "val_error": val, "baseline_val_error": base, "file_bytes": size,
            "sparsity": {"fc1": 0.9}, "bits": {"fc1": 3}}
rule = {"tag": "t", "x": 0.003}
s = {"rule": rule, "candidates": [c("old", 0.0100, 100), c("t", 0.0149, 900), c("t", 0.0151, 800),
                                    c("t", 0.0140, 1000), c("t", 0.0150, 950)]}
p = recipe_search.pick(s)
assert p["meets_rule"] and p["candidate"] == 0 and p["file_bytes"] == 900 and p["of"] == 4, p
s["rule"] = dict(rule, x=0.001)
p = recipe_search.pick(s)
assert not p["meets_rule"] and p["file_bytes"] == 1000, p
print("ok")
'''
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=BENCH,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join([BENCH, ROOT])))
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


def test_recipe_search_pick_seeds_median_rule():
    """recipe_search.pick, kind seeds_median: runs grouped into recipes by everything but the seed;
    a recipe missing a seed or below a ratio floor at any seed is out; the lowest median validation
    error wins (a tie -> the smaller mean file), and replaces the incumbent only by adopt_margin."""
    code = r'''
import recipe_search
base = {"sparsity": {"fc1": 0.955}, "bits": {"fc1": 2}, "cluster_biases": 3, "prune_epochs": 30, "prune_lr": 0.001,
        "ramp_fraction": 0.6, "cluster_epochs": 6, "context_model": False}
def runs(vals, size=16000, ratio=66.0, wratio=83.0, tag="t", **change):
    return [dict(base, **change, search=tag, seed=s, val_error=v, file_bytes=size, ratio=ratio,
                 weights_ratio=wratio) for s, v in enumerate(vals)]
rule = {"tag": "t", "kind": "seeds_median", "seeds": [0, 1, 2, 3, 4], "min_ratio": 60.6, "min_weights_ratio": 70.7,
        "tie": 0.0002, "adopt_margin": 0.0005, "incumbent": dict(base)}
inc = runs([0.0150, 0.0147, 0.0154, 0.0149, 0.0154])
better = runs([0.0140, 0.0160, 0.0141, 0.0139, 0.0145], size=17000, ratio=62.0, bits={"fc1": 3})
small = runs([0.0140, 0.0141, 0.0143, 0.0120, 0.0150], size=16500, ratio=64.0, prune_epochs=40)
s = {"rule": rule, "candidates": runs([0.0100] * 5, tag="old") + inc + better}
p = recipe_search.pick(s)
assert p["adopted"] and p["bits"] == {"fc1": 3} and p["median_val_error"] == 0.0141, p
assert p["incumbent_median_val_error"] == 0.0150 and p["of"] == 2, p
s["candidates"] = inc + better + small  # medians 1.41 vs 1.41: tied, the smaller mean file wins
p = recipe_search.pick(s)
assert p["adopted"] and p["recipe"]["prune_epochs"] == 40, p
s["candidates"] = inc + better[:4]  # a seed missing: not eligible, the incumbent stays
p = recipe_search.pick(s)
assert not p["adopted"] and p["recipe"]["bits"] == {"fc1": 2} and p["meets_rule"], p
s["candidates"] = inc + better[:4] + [dict(better[4], ratio=60.0)]  # one seed below the floor
assert not recipe_search.pick(s)["adopted"]
s["candidates"] = inc + better
s["rule"] = dict(rule, adopt_margin=0.0010)  # 0.09 pp better is not enough
p = recipe_search.pick(s)
assert not p["adopted"] and p["best"]["bits"] == {"fc1": 3} and p["recipe"]["bits"] == {"fc1": 2}, p
s["candidates"] = better
try:
    recipe_search.pick(s)
except SystemExit as e:
    assert "incumbent" in str(e), e
else:
    raise AssertionError("no incumbent runs must be refused")
print("ok")
'''
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=BENCH,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join([BENCH, ROOT])))
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


def test_results_doc_shows_a_seeds_median_search_one_row_per_recipe():
    """results_doc: a seeds_median search gets one table row per recipe (its validation error at each
    seed, the median, eligibility) and a verdict sentence; its per-seed runs do not flood the
    per-candidate table, which keeps the earlier searches' rows."""
    recipe_search, doc = load_bench("recipe_search"), load_bench("results_doc")
    base = {"sparsity": {"fc1": 0.955, "fc2": 0.92}, "bits": {"fc1": 2, "fc2": 4}, "cluster_biases": 3,
            "prune_epochs": 30, "prune_lr": 0.001, "ramp_fraction": 0.6, "cluster_epochs": 6, "context_model": False}

    def runs(vals, **change):
        return [dict(base, **change, search="s6", seed=i, val_error=v, file_bytes=16000, ratio=66.0,
                     weights_ratio=83.0, kept_fraction=0.05) for i, v in enumerate(vals)]

    rule = {"tag": "s6", "kind": "seeds_median", "written": "then", "text": "T.", "why": "W.", "seeds": [0, 1, 2],
            "min_ratio": 60.6, "min_weights_ratio": 70.7, "tie": 0.0002, "adopt_margin": 0.0005,
            "incumbent": dict(base)}
    old = dict(base, search="s5", seed=0, val_error=0.0135, file_bytes=16816, ratio=63.6, weights_ratio=79.2,
               kept_fraction=0.05)
    search = {"file": "f.json", "rule": rule, "earlier_rules": [{"rule": {"tag": "s5", "x": 0.003, "written": "x"},
                                                                  "pick": None}],
              "candidates": [old] + runs([0.0150, 0.0147, 0.0154]) + runs([0.0150, 0.0146, 0.0147], prune_epochs=40)}
    search["pick"] = recipe_search.pick(search)
    lines = doc.search_section({"search": search})
    text = "\n".join(lines)
    assert "| 95.5/92 % pruned, 2/4 bits, 30 + 6 epochs (incumbent) | 1.50 % / 1.47 % / 1.54 % | 1.50 % |" in text
    assert "| 95.5/92 % pruned, 2/4 bits, 40 + 6 epochs | 1.50 % / 1.46 % / 1.47 % | 1.47 % |" in text
    assert "the best other recipe, 95.5/92 % pruned, 2/4 bits, 40 + 6 epochs, has median 1.47 %" in text
    assert sum(line.startswith("| s5 |") for line in lines) == 1 and not any(line.startswith("| s6") for line in lines)
    search["rule"] = dict(rule, adopt_margin=0.0002)
    search["pick"] = recipe_search.pick(search)
    text = "\n".join(doc.search_section({"search": search}))
    assert "adopted 95.5/92 % pruned, 2/4 bits, 40 + 6 epochs: median validation error 1.47 % vs the incumbent's 1.50 %" in text
    assert "40 + 6 epochs **adopted** |" in text


def test_seed_runs_merge_keeps_other_seeds_of_the_same_recipe_and_results_doc_shows_them():
    """seed_runs.merge copies each seed's figures into the record's other_seeds (sorted), refusing another
    recipe, another model, an unfinished run, a repeated seed or the record's own seed; results_doc's
    table lists the record first, checks each seed against the goal and gives the mean and range."""
    seed_runs, doc = load_bench("seed_runs"), load_bench("results_doc")
    cfg = {"sparsity": {"fc1": 0.955}, "bits": {"fc1": 2}, "prune_epochs": 40, "prune_lr": 0.001, "cluster_epochs": 8,
           "cluster_biases": 3, "context_model": False, "val_images": 10000, "train_subset": None, "test_subset": None}

    def run(seed, err, ratio=66.0, **change):
        return {"model": "lenet-300-100", "config": dict(cfg, seed=seed, **change), "command": f"c --seed {seed}",
                "machine": {"date": "d", "loadavg": [1.0, 1.0, 1.0]}, "packed_bytes": 16000, "ratio": ratio,
                "weights_ratio": 83.0, "test_error": err, "val_error": 0.014, "baseline_error": 0.013,
                "packed_outputs_identical": True, "complete": True,
                "goal": {"ratio": 60.0, "weights_ratio": 70.0, "test_error": 0.0158}}

    rec = seed_runs.merge(run(0, 0.0151), [("a", run(4, 0.0159)), ("b", run(1, 0.0150, ratio=59.0))])
    assert [s["seed"] for s in rec["other_seeds"]] == [1, 4] and rec["other_seeds"][1]["test_error"] == 0.0159
    for bad, words in [(run(2, 0.01, prune_epochs=30), "prune_epochs differ"), (run(0, 0.01), "seed 0 is already"),
                       (dict(run(2, 0.01), model="lenet-5"), "model 'lenet-5'"),
                       (dict(run(2, 0.01), complete=False), "did not finish")]:
        try:
            seed_runs.merge(run(0, 0.0151), [("x.json", bad)])
        except SystemExit as e:
            assert str(e).startswith("x.json: ") and words in str(e), e
        else:
            raise AssertionError(words)
    lines = doc.seeds_lines(rec)
    table = [line for line in lines if line.startswith("| ")]
    assert table[1] == "| 0 (this record) | 16,000 | 66.0x | 83.0x | 1.51 % | 1.40 % | 1.30 % | yes |"
    assert table[2].startswith("| 1 | ") and table[2].endswith("| no |")  # 59.0x: below the ratio goal
    assert table[3].startswith("| 4 | ") and table[3].endswith("| no |")  # 1.59 %: above the error goal
    assert "Goal met at 1 of 3 seeds; mean test error 1.53 %, range 1.50 %-1.59 %." in lines
    assert doc.seeds_lines(run(0, 0.0151)) == []


def test_recipe_search_pick_ratio_then_val_rule():
    """recipe_search.pick, kind ratio_then_val: files below either ratio floor are out; of the rest,
    the lowest validation error (a 0.03 pp tie -> the smaller file); the margin flag; none eligible
    -> the largest ratio of the fallback kind, flagged."""
    code = r'''
import recipe_search
def c(tag, val, size, ratio, wratio, base=0.0142):
    return {"search": tag, "val_error": val, "baseline_val_error": base, "file_bytes": size, "ratio": ratio,
            "weights_ratio": wratio, "sparsity": {"fc1": 0.9}, "bits": {"fc1": 3}}
rule = {"tag": "t", "kind": "ratio_then_val", "min_ratio": 60.6, "min_weights_ratio": 70.7, "margin_x": 0.0018,
        "tie": 0.0003, "fallback": "ratio"}
s = {"rule": rule, "candidates": [c("old", 0.0100, 100, 99, 99), c("t", 0.0150, 900, 62, 80),
                                    c("t", 0.0152, 800, 65, 85), c("t", 0.0140, 2000, 59, 99),
                                    c("t", 0.0149, 950, 61, 69), c("t", 0.0170, 700, 70, 95)]}
p = recipe_search.pick(s)
assert p["meets_rule"] and p["candidate"] == 1 and p["file_bytes"] == 800 and p["of"] == 5, p
assert p["meets_margin"], p
s["rule"] = dict(rule, tie=0.0001)
p = recipe_search.pick(s)
assert p["file_bytes"] == 900 and p["meets_margin"], p
s["rule"] = dict(rule, tie=0.0001, margin_x=0.0005)
assert not recipe_search.pick(s)["meets_margin"]
s["rule"] = dict(rule, min_ratio=80.0)
p = recipe_search.pick(s)
assert not p["meets_rule"] and p["file_bytes"] == 700, p
s["rule"] = dict(rule, min_ratio=80.0, fallback="weights_ratio")
assert recipe_search.pick(s)["file_bytes"] == 2000
print("ok")
'''
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=BENCH,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join([BENCH, ROOT])))
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


def test_fit_step_section_renders_clustered_columns_and_old_rows():
    """bench_fit_step.py's JSON with the clustered step (and a row without it, as older runs wrote)."""
    doc = load_bench("results_doc")
    machine = {"date": "d", "nproc": 2, "cpu": "x86_64", "loadavg_before": [0.5], "loadavg": [0.7]}
    config = {"model": "LeNet-300-100", "batch_size": 128, "steps": 200, "repeats": 5, "cluster_bits": 5}
    row = {"label": "dc_keras, Keras 3 JAX", "plain_s": 0.002, "pruned_s": 0.0021, "ratio": 1.05,
           "cpu_ratio": 1.04, "goal_met": True}
    fs = {"machine": machine, "config": config, "command": "c", "goal_ratio": 1.1,
          "rows": [dict(row, clustered_s=0.0025, cluster_ratio=1.25, cluster_cpu_ratio=1.2, cluster_goal_met=False),
                   dict(row, label="old row")]}
    lines = doc.fit_step_section(fs)
    assert lines[0] == "## Fit step: pruned and clustered vs plain, per Keras backend"
    table = [line for line in lines if line.startswith("| ")]
    assert table[0].endswith("| clustered ms/step | ratio | cpu ratio | goal |")
    assert table[1].endswith("| 2.50 | **1.25x** | 1.20x | <= 1.1x: NOT met |")
    assert "| **1.05x** | 1.04x | <= 1.1x: met |" in table[1]
    assert table[2].startswith("| old row |") and table[2].endswith(" - | - | - | - |")
    assert all(line.count("|") == table[0].count("|") for line in table)
    old = doc.fit_step_section(dict(fs, rows=[row]))
    assert old[0] == "## Fit step: pruned vs plain, per Keras backend" and "clustered" not in "".join(old)
    assert not [line for line in lines if "kernels" in line]  # rows without jax_ffi: no note
    for used, says in ((True, "native centroid kernels (`make jax-ffi`)"), (False, "lax.gather fallback")):
        noted = doc.fit_step_section(dict(fs, rows=[dict(fs["rows"][0], jax_ffi=used)]))
        assert [line for line in noted if line.startswith("JAX clustered step: ")] == [
            f"JAX clustered step: dc_keras, Keras 3 JAX: {says}" + ("" if used else " (native centroid kernels not built)") + "."]


def test_fit_step_round_ratios_bracket_each_wrapped_epoch_by_the_plain_ones():
    """bench_fit_step.py: each wrapped epoch over the mean of the plain epochs before and after it;
    the row holds the medians, min and max over the rounds, CPU beside wall, and the epochs."""
    bench = load_bench("bench_fit_step")
    assert bench.round_ratios([2.2, 3.0, 1.0], [2.0, 2.0, 4.0, 2.0]) == pytest.approx([1.1, 1.0, 1 / 3])
    times = {"plain": [1.0, 3.0, 1.0, 1.0], "pruned": [2.0, 1.1, 1.3], "clustered": [1.0, 1.0, 1.0],
             "plain_cpu": [1.0, 1.0, 1.0, 1.0], "pruned_cpu": [1.05, 1.0, 1.2], "clustered_cpu": [0.9, 1.0, 1.1]}
    row = bench.summarize(times)
    # Rounds 0 and 1 bracket a load spike in plain epoch 1 (ratios 1.0 and 0.55); round 2 gives 1.3.
    assert row["ratio"] == pytest.approx(1.0) and row["ratio_min"] == pytest.approx(0.55)
    assert row["ratio_max"] == pytest.approx(1.3)
    assert row["cpu_ratio"] == pytest.approx(1.05) and row["cpu_ratio_max"] == pytest.approx(1.2)
    assert row["cluster_ratio"] == pytest.approx(0.5) and row["cluster_ratio_max"] == pytest.approx(1.0)
    assert row["cluster_cpu_ratio"] == pytest.approx(1.0) and row["cluster_cpu_ratio_min"] == pytest.approx(0.9)
    assert row["plain_s"] == pytest.approx(1.0) and row["pruned_s"] == pytest.approx(1.3)
    assert row["pruned_cpu_s"] == pytest.approx(1.05) and row["epochs"]["plain"] == times["plain"]


def test_fit_step_section_shows_the_spread_of_round_ratios():
    """A run with interleaved rounds: each ratio with its [min-max]; the method says how it was taken."""
    doc = load_bench("results_doc")
    machine = {"date": "d", "nproc": 2, "cpu": "x86_64", "loadavg_before": [0.5], "loadavg": [0.7]}
    config = {"model": "LeNet-300-100", "batch_size": 128, "steps": 200, "rounds": 15, "repeats": 15, "warmup": 2,
              "cluster_bits": 5}
    row = {"label": "dc_keras, Keras 3 TensorFlow", "plain_s": 0.005, "pruned_s": 0.0052, "ratio": 1.04,
           "ratio_min": 0.97, "ratio_max": 1.12, "cpu_ratio": 1.03, "cpu_ratio_min": 1.0, "cpu_ratio_max": 1.06,
           "goal_met": True, "clustered_s": 0.0056, "cluster_ratio": 1.12, "cluster_ratio_min": 1.01,
           "cluster_ratio_max": 1.3, "cluster_cpu_ratio": 1.09, "cluster_cpu_ratio_min": 1.02,
           "cluster_cpu_ratio_max": 1.2, "cluster_goal_met": False}
    lines = doc.fit_step_section({"machine": machine, "config": config, "command": "c", "goal_ratio": 1.1,
                                  "rows": [row]})
    assert "15 interleaved rounds" in lines[2] and "2 warm-up epochs" in lines[2]
    table = [line for line in lines if line.startswith("| ")]
    assert table[1] == ("| dc_keras, Keras 3 TensorFlow | 5.00 | 5.20 | **1.04x** [0.97-1.12] | 1.03x [1.00-1.06] "
                        "| <= 1.1x: met | 5.60 | **1.12x** [1.01-1.30] | 1.09x [1.02-1.20] | <= 1.1x: NOT met |")
    assert table[1].count("|") == table[0].count("|")


def test_zoo_validation_column_names_a_larger_image_split_and_keeps_old_rows():
    """results_doc._val_size: an image row with model_zoo.py's ``val_samples`` shows its split size and
    the increase with its standard error; old rows (no val_samples override, no SE) render as before."""
    doc = load_bench("results_doc")
    new = {"val_source": "held-out training images (the last 20,000 of the 60,000; training: the first 20,000, "
           "disjoint)", "val_samples": 20000, "baseline_val_error": 0.1300, "final_val_error": 0.1352,
           "val_increase_se_pp": 0.157}
    assert doc._val_size(new) == " (20,000 held-out validation images, +0.52 ± 0.16 pp)"
    assert doc._val_size({**new, "val_increase_se_pp": None}) == " (20,000 held-out validation images)"
    old = {"val_source": "held-out training images (the last 5,000)", "val_samples": 5000,
           "baseline_val_error": 0.13, "final_val_error": 0.14}
    assert doc._val_size(old) == "" and doc._val_size({"val_samples": 5000}) == ""
    seq = {"val_source": "10,000 generated sequences, seed 3 (...)", "val_samples": 10000}
    assert doc._val_size(seq) == " (10,000 own-seed validation sequences)"


def test_zoo_rerun_table_puts_the_row_of_record_beside_todays_run_and_refuses_a_missing_record():
    """results_doc._zoo_rerun_table: a row with ``rerun_of`` gets one line with the earlier record's
    file, ratio, change and verdict beside today's figures; a ``rerun_of`` naming no given row stops."""
    import pytest

    doc = load_bench("results_doc")
    goal = {"ratio": 8.0, "max_increase_pp": 1.0}
    was = {"model": "transformer", "date": "2026-11-30 03:03 UTC", "commit": "b075904", "packed_bytes": 35936,
           "ratio": 8.37, "error_increase_pp": 0.16, "goal_met": True, "goal": goal}
    now = {"model": "transformer", "date": "2026-12-07 01:35 UTC", "commit": "ea32725", "packed_bytes": 31120,
           "ratio": 9.66, "error_increase_pp": 1.14, "goal_met": False, "goal": goal, "baseline_error": 0.1132,
           "final_error": 0.1246, "baseline_val_error": 0.114, "final_val_error": 0.124,
           "packed_outputs_identical": True, "stripped_names": {"ratio": 12.8, "identical": True},
           "rerun_of": {"file": "model_zoo_transformer_s4_t2.json", "date": was["date"]}}
    lines = doc._zoo_rerun_table([was, now])
    assert lines[0].startswith("**The rows of record, re-run on the code of 2026-12-07**")
    table = [line for line in lines if line.startswith("| ")]
    assert table[1] == ("| transformer | >= 8x at <= +1 pp | `model_zoo_transformer_s4_t2.json` (2026-11-30, b075904): "
                        "35,936 B, 8.4x, +0.16 pp, yes | ea32725 | 31,120 | **9.7x** | 12.8x | 11.32 % -> 12.46 % | "
                        "+1.14 pp | +1.00 pp | **no** | yes / yes |")
    assert table[1].count("|") == table[0].count("|")
    assert doc._zoo_rerun_table([was, {**now, "rerun_outcome": "a search chose t4"}])[-2:] == [
        "- transformer: a search chose t4", ""]
    assert doc._zoo_rerun_table([was]) == []
    with pytest.raises(SystemExit, match="transformer: rerun_of names"):
        doc._zoo_rerun_table([now])


def test_centroid_ops_section_from_the_benchmarks_own_record(tmp_path):
    """bench_centroid_ops.py's --json record (built by its own ``record``, made-up figures) renders
    as a section: each native row's ratios to the fallback row of the same op and zero-slot share;
    results_doc.py --centroid-ops adds the section and its commands to the Reproduce block."""
    import argparse
    import json

    bench, doc = load_bench("bench_centroid_ops"), load_bench("results_doc")
    args = argparse.Namespace(calls=30, repeat=50, intra_threads=0)
    rows = [{"op": "gather native", "pruned": 0.0, "wall_us": 40.0, "cpu_us": 50.0},
            {"op": "gather fallback (XLA)", "pruned": 0.0, "wall_us": 100.0, "cpu_us": 200.0},
            {"op": "sums native split", "pruned": 0.9, "wall_us": 30.0, "cpu_us": 90.0},
            {"op": "sums fallback (XLA)", "pruned": 0.9, "wall_us": 120.0, "cpu_us": 60.0},
            {"op": "sums native", "pruned": 0.0, "wall_us": 10.0, "cpu_us": 10.0}]  # no fallback row
    machine = {"date": "2026-12-01 00:00 UTC", "nproc": 2, "cpu": "x86_64", "loadavg": [0.3, 0.2, 0.1]}
    co = bench.record(args, ["--json", "c.json"], rows, (0.5, 0.4, 0.3), (0.7, 0.5, 0.3), machine)
    lines = doc.centroid_ops_section(json.loads(json.dumps(co)))  # as read back from the file
    assert lines[0] == "## Clustered TF training step: centroid ops, native vs fallback"
    assert lines[2].startswith("Run: 2026-12-01 00:00 UTC on 2 CPUs (x86_64), load average 0.5 at the start and "
                               "0.7 at the end (1 min), command `python benchmarks/bench_centroid_ops.py --json c.json`.")
    assert "runs 50 times" in lines[2] and "called 30 times" in lines[2] and "threads: TF's default." in lines[2]
    table = [line for line in lines if line.startswith("| ")]
    assert table[1:] == ["| gather native | 0 % | 40.0 | 50.0 | 0.40x | 0.25x |",
                         "| gather fallback (XLA) | 0 % | 100.0 | 200.0 | - | - |",
                         "| sums native split | 90 % | 30.0 | 90.0 | 0.25x | 1.50x |",
                         "| sums fallback (XLA) | 90 % | 120.0 | 60.0 | - | - |",
                         "| sums native | 0 % | 10.0 | 10.0 | - | - |"]
    assert all(line.count("|") == table[0].count("|") for line in table)
    assert "threads: 2." in doc.centroid_ops_section(dict(co, intra_threads=2))[2]
    (tmp_path / "c.json").write_text(json.dumps(co))
    out = tmp_path / "results.md"
    doc.main(["--centroid-ops", str(tmp_path / "c.json"), "--out", str(out), "--img_dir", str(tmp_path / "img")])
    text = out.read_text()
    assert "\n".join(lines) in text
    assert ("\n.venv/bin/python benchmarks/bench_centroid_ops.py --json docs/results/centroid_ops.json   # make tf-ops "
            "first\n.venv/bin/python benchmarks/results_doc.py ") in text
    assert "--codec-bound docs/results/codec_bound.json --centroid-ops docs/results/centroid_ops.json\n```" in text



def test_mcu_section_from_the_committed_run(tmp_path):
    """results_doc.py --mcu renders mcu_bench.py's JSON (the committed run): flash bytes vs TFLM's LUT
    with the recorded ratios, TFLM arena bytes and bit-exactness, the Cortex-M4 decode cost per tensor
    with each model's whole-model row (instructions summed over its tensors), code size and stack; the
    run's date, load and command (older runs recorded none: said so); a run without the Cortex-M4 part
    (--skip-m4) or with a failed TFLM run still renders; the bench and the option join the Reproduce block."""
    import copy
    import json

    doc = load_bench("results_doc")
    path = os.path.join(ROOT, "docs", "results", "mcu_lenet_300_100.json")
    with open(path) as f:
        mcu = json.load(f)
    lines = doc.mcu_section(mcu)
    assert lines[0] == "## Microcontrollers (mcu_lenet_300_100): TensorFlow Lite Micro and Cortex-M4"
    m = mcu["machine"]
    assert lines[2].startswith(f"Run: {m['date']} on {m['nproc']} CPUs ({m['cpu']}), load average "
                               f"{mcu['loadavg_start'][0]:.1f} at the start and {mcu['loadavg_end'][0]:.1f} at the end")
    assert f"command `{mcu['command']}`" in lines[2]  # the 2026-12-02 run recorded it
    assert "command not recorded" in doc.mcu_section({k: v for k, v in mcu.items() if k != "command"})[2]
    assert "command `python benchmarks/mcu_bench.py --skip-m4`" in doc.mcu_section(
        dict(mcu, command="python benchmarks/mcu_bench.py --skip-m4"))[2]
    sz = mcu["tflm_x86"]["flash_bytes"]
    table = [line for line in lines if line.startswith("| ")]
    assert f"| float32 | {sz['float']:,} | **{sz['float.packed']:,}** | not compressed | {sz['float.lut_new']:,} | " \
           f"**{mcu['ratios_packed_vs_lut']['float (lut_new)']:.3f} (newer tool)** |" in table
    assert any(line.startswith(f"| int8 | {sz['int8']:,} | **{sz['int8.packed']:,}** | {sz['int8.lut']:,} | ")
               and "(pinned wheel) / " in line for line in table)
    once = mcu["tflm_x86"]["runs"]["float.packed.once"]
    assert f"| float32 packed, decode once | bit-exact | {doc.pct(once['test_error'])} | {once['arena_total_bytes']:,} |" in table
    c4 = mcu["cortex_m4"]
    for kind in ("float", "int8"):
        rows = [t for t in c4["tensors"] if t["name"].startswith(kind + "_")]
        whole = [line for line in table if line.startswith(f"| **{kind}, whole model** |")]
        assert whole == [f"| **{kind}, whole model** | | {sum(t['elements'] for t in rows):,} | | | "
                         f"{sum(t['decode_insns'] for t in rows):,} | **{c4['insns_per_element_by_model'][kind]:.2f}** | | |"]
        fc1 = next(t for t in rows if "_fc1_" in t["name"])
        assert f"| {kind} fc1 | {fc1['layout']} | {fc1['elements']:,} | {fc1['nonzero']:,} | {fc1['packed_bytes']:,} | " \
               f"{fc1['decode_insns']:,} | {fc1['insns_per_element']:.2f} | {fc1['stack_bytes']:,} | " \
               f"{fc1['workspace_bytes']:,} |" in table
    assert f"decoder `dc_codec.c` {c4['code_bytes_O2']['decoder']:,} / {c4['code_bytes_Os']['decoder']:,} B" in lines[-2]
    assert f"Decoder stack: {c4['max_stack_bytes']:,} B" in lines[-2]
    assert f"{c4['code_bytes_O2_strip']['kernel']:,} / {c4['code_bytes_Os_strip']['kernel']:,} B with " \
           "`TF_LITE_STRIP_ERROR_STRINGS`" in lines[-2]
    older = copy.deepcopy(mcu)  # a run from before the stripped kernel was measured
    del older["cortex_m4"]["code_bytes_O2_strip"], older["cortex_m4"]["code_bytes_Os_strip"]
    assert "STRIP" not in doc.mcu_section(older)[-2] and f"{c4['code_bytes_Os']['kernel']:,} B. Decoder" in \
        doc.mcu_section(older)[-2]
    for header in [i for i, line in enumerate(table) if line.startswith("|---")]:
        n = table[header].count("|")
        width = next((i for i in range(header + 1, len(table)) if table[i].count("|") != n), len(table))
        assert width > header + 1 and all(line.count("|") == n for line in table[header - 1:width])
    skipped = copy.deepcopy(mcu)
    del skipped["cortex_m4"]
    skipped["tflm_x86"]["runs"]["int8.lut"] = {"ok": False, "error": "arena too small"}
    short = doc.mcu_section(skipped)
    assert "Cortex-M4: not measured in this run (`--skip-m4`)." in short
    assert "| int8 TFLM LUT (pinned wheel's tool) | failed: arena too small | - | - |" in short
    out = tmp_path / "results.md"
    doc.main(["--mcu", path, "--out", str(out), "--img_dir", str(tmp_path / "img")])
    text = out.read_text()
    assert "\n".join(lines) in text
    assert "\n.venv/bin/python benchmarks/mcu_bench.py   # docs/results/mcu_lenet_300_100.json" in text
    assert "--codec-bound docs/results/codec_bound.json --mcu docs/results/mcu_*.json\n```" in text

def _run_bench_code(code, timeout=300):
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=BENCH,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join([BENCH, ROOT])))
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), (r.stdout[-2000:], r.stderr[-3000:])


def test_codec_bound_side_info_models_pay_for_their_parameters():
    """codec_bound.py's issue-19 rows: the enumerative own-histogram cost is exact on a tiny case; each
    side-information model wins on data with that structure and pays for its parameters on i.i.d. data;
    the mixing model learns a striped mask; the strongest-model total takes joint rows into account."""
    code = r'''
import numpy as np, codec_bound as cb
from math import log2
# one row, K = 2 (0.5, 1.0), indices 0, 0, 1: histogram C(4, 1) = 4 -> 2 bits, sequence 3 -> log2 3 bits
r = cb.own_histogram_rows(np.array([[0.5, 0.5, 1.0]], np.float32))[0]
assert abs(r["entropy_bytes"] - (2 + log2(3)) / 8) < 1e-9, r
rng = np.random.default_rng(0)
iid = ((rng.random((120, 200)) < 0.1) * rng.choice([-1.0, -0.5, 0.5, 1.0], (120, 200))).astype(np.float32)
h_mask = cb.entropy_bytes((iid != 0).reshape(-1).astype(np.int64))
rows = {x["context"].split(" (")[0]: x["entropy_bytes"] for x in cb.rank1_mask_rows(iid)}
assert min(v for k, v in rows.items() if "free" not in k) > h_mask - 5, (rows, h_mask)
dense = (rng.random((120, 1)) < 0.5) * 0.4 + 0.02  # half the rows dense, half sparse
rowy = ((rng.random((120, 200)) < dense) * 1.0).astype(np.float32)
rows = {x["context"].split(" (")[0]: x["entropy_bytes"] for x in cb.rank1_mask_rows(rowy)}
assert rows["per-row density"] < 0.8 * cb.entropy_bytes((rowy != 0).reshape(-1).astype(np.int64)), rows
# each row uses its own 2 of 16 values: the row's histogram beats order 0 with the histograms paid
vals = np.linspace(-1, 1, 16).astype(np.float32)
own = np.where(rng.random((64, 100)) < 0.3, vals[(np.arange(64)[:, None] % 8) * 2 + rng.integers(0, 2, (64, 100))], 0)
f = own[own != 0]
r = cb.own_histogram_rows(own.astype(np.float32))[0]
assert r["entropy_bytes"] < 0.7 * cb.entropy_bytes(np.unique(f, return_inverse=True)[1]), r
r = cb.own_histogram_rows(iid)[0]  # i.i.d. indices: the histograms cost more than they save
assert r["entropy_bytes"] > cb.entropy_bytes(np.unique(iid[iid != 0], return_inverse=True)[1]), r
stripes = np.tile(np.arange(56) % 4 == 0, (60, 1)).astype(np.float32)  # every 4th column kept
mix = cb.mixed_mask_row(stripes, 28)["entropy_bytes"]
assert mix < 0.2 * cb.entropy_bytes((stripes != 0).reshape(-1).astype(np.int64)), mix
lr = cb.low_rank_rows(np.outer(np.linspace(-1, 1, 60), np.linspace(-1, 1, 80)).round(1).astype(np.float32), ranks=(1,))
h = cb.entropy_bytes(np.unique(np.outer(np.linspace(-1, 1, 60), np.linspace(-1, 1, 80)).round(1), return_inverse=True)[1])
assert lr[0]["entropy_bytes"] < 0.8 * h, (lr, h)
rows = [{"stream": "gap", "huffman_bytes": 10.0, "rans_bytes": 9.0, "entropy_bytes": 1.0},
        {"stream": "mask bits", "huffman_bytes": None, "entropy_bytes": 2.0},  # a floor: no model cost
        {"stream": "mask bits, adaptive", "huffman_bytes": None, "entropy_bytes": 8.0},
        {"stream": "index, side info counted", "huffman_bytes": None, "entropy_bytes": 5.0}]
assert [cb._realistic(x) for x in rows] == [9.0, None, 8.0, 5.0]
print("ok")
'''
    _run_bench_code(code)


def test_codec_bound_peer_summary_adds_the_codebook_and_finds_the_smallest():
    """codec_bound.peer_summary: inputs without the float values pay the codebook; the smallest coder/input
    wins; its decode speed comes from the matching blobs; codec_peers.measure lists coders not installed."""
    code = r'''
import codec_bound as cb, codec_peers
rep = {"codebook_size": 5, "shape": [10, 100], "compressor_bytes": {"bz2-9": 200}}
sz = {"t|float32": {"a": 150, "b": 140}, "t|dense uint8 index": {"a": 130, "b": 125},
      "t|gap stream": {"a": 60, "b": 70}, "t|index stream": {"a": 50, "b": 45}}
dec = {k: {"a": 0.001, "b": 0.002} for k in sz}
s = cb.peer_summary("t", rep, {"sizes": sz, "decode_seconds": dec, "overhead": {}, "missing": ["x"]})
assert s["bytes"]["dense uint8 index + codebook"] == {"a": 146, "b": 141}, s
assert s["bytes"]["gap + index streams + codebook"] == {"a": 126, "b": 131}, s
b = s["best"]
assert (b["input"], b["coder"], b["bytes"]) == ("gap + index streams + codebook", "a", 126), b
assert abs(b["vs_best"] - 0.63) < 1e-9 and abs(b["decode_melem_s"] - 1000 / 0.002 / 1e6) < 1e-9, b
m = codec_peers.measure({"x": b"abc" * 50})  # every coder is either measured or listed as missing
fam = {"zpaq (PyPI)": "zpaq -m", "pyppmd (PyPI)": "PPMd", "brotli (PyPI)": "brotli"}
fam.update({k: k for k in codec_peers.CLI})
for miss, prefix in fam.items():
    assert any(n.startswith(miss) for n in m["missing"]) != any(k.startswith(prefix) for k in m["sizes"]["x"]), (miss, m)
print("ok")
'''
    _run_bench_code(code)


@pytest.mark.slow
def test_codec_peers_venv_measures_every_python_coder():
    """codec_peers.run_peers makes its venv (PyPI once) and every in-memory coder round-trips and sizes
    a structured input below its raw length."""
    code = r'''
import codec_peers
raw = bytes(range(256)) * 64
r = codec_peers.run_peers({"t": raw})
sizes = r["sizes"]["t"]
assert not [m for m in r["missing"] if "PyPI" in m], r["missing"]
assert {"zpaq -m5", "PPMd var.H order 2", "brotli -q 11 -w 24"} <= set(sizes), sizes
assert all(0 < v < len(raw) // 4 for v in sizes.values()), sizes
print("ok")
'''
    _run_bench_code(code, timeout=900)


def test_codec_bound_oracle_rows_exact_on_a_known_process():
    """codec_bound.oracle_rows: with no training update, the 'whole update free' code length is exactly
    -log2(interval length / 2L) summed over the elements; with a large update the update-aware rows beat
    the update-blind one; a tensor the details do not reproduce is refused."""
    code = r'''
import numpy as np, codec_bound as cb
from bench_codec import kmeans_linear_1d
rng = np.random.default_rng(1)
lim = 0.1
w0 = rng.uniform(-lim, lim, (40, 60))
def details(trained):
    thr = float(np.quantile(np.abs(trained), 0.9))
    keep = np.abs(trained) > thr
    out = np.zeros(trained.shape, np.float32)
    out[keep], cent = kmeans_linear_1d(trained[keep], 8, centroids=True)
    return out, {"init": w0, "trained": trained, "threshold": thr, "centroids": cent, "init_limit": lim}
w, d = details(w0.copy())
rows = cb.oracle_rows(w, d, ranks=(1,))
mids = (d["centroids"][1:] + d["centroids"][:-1]) / 2
edges = np.concatenate([[-lim], mids, [lim]])
f = w0.reshape(-1)
kept = np.abs(f) > d["threshold"]
j = np.searchsorted(mids, f)
length = np.where(kept, np.minimum(edges[j + 1], lim) - np.maximum(edges[j], -lim), 2 * d["threshold"])
length = length - np.where(kept, np.clip(np.minimum(edges[j + 1], d["threshold"]) - np.maximum(edges[j], -d["threshold"]), 0, None), 0)
want = -np.log2(length / (2 * lim)).sum() / 8
assert abs(rows[-1]["bytes"] - want) < 0.01 * want, (rows[-1], want)
trend = np.outer(np.linspace(-1, 1, 40), np.linspace(-1, 1, 60)) * 0.2  # a rank-1 update
w, d = details(w0 + trend)
rows = cb.oracle_rows(w, d, ranks=(1,))
assert rows[1]["bytes"] < 0.9 * rows[0]["bytes"] and rows[1]["update_energy"] > 0.99, rows
d["threshold"] *= 1.1
try:
    cb.oracle_rows(w, d)
    raise SystemExit("not refused")
except ValueError as e:
    assert "reproduce" in str(e)
print("ok")
'''
    _run_bench_code(code)


def test_bench_codec_baseline_library_decodes_as_today(tmp_path):
    """bench_codec.baseline_library (--baseline-rev): the C decoder of an earlier revision, built from
    this checkout's history, decodes today's §6 encoding of a tensor to the bytes today's decoder
    gives (it times that decoder against today's §14 and §6); a revision that is not in the history
    is refused naming the fix."""
    rev = "e617840"  # the decoder of the day issue 19 set its decode-speed goal
    if subprocess.run(["git", "-C", os.path.dirname(BENCH), "cat-file", "-e", f"{rev}^{{commit}}"]).returncode:
        pytest.skip(f"{rev} is not in this checkout's history (a shallow clone)")
    code = f'''
import ctypes, numpy as np
from bench_codec import baseline_library
from dc_keras import codec
rng = np.random.default_rng(0)
w = (rng.integers(-8, 8, (300, 200)) * 0.01).astype(np.float32)
w[rng.random(w.shape) > 0.1] = 0
plain = codec.encode(w, layout="sparse")
old = baseline_library("{rev}", {str(tmp_path)!r})
out = np.empty(w.size, np.float32)
assert old.dc_decode(plain, len(plain), out.ctypes.data_as(ctypes.c_void_p), out.nbytes) == 0
assert out.view(np.uint32).tobytes() == w.view(np.uint32).tobytes()
try:
    baseline_library("0000000", {str(tmp_path / "x")!r})
    raise SystemExit("not refused")
except ValueError as e:
    assert "--baseline-rev 0000000: no tflite_kernels/src/dc_codec.c" in str(e) and "give a commit" in str(e), e
print("ok")
'''
    _run_bench_code(code)
