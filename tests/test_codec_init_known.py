"""benchmarks/codec_bound.py --init-known-epochs (issue 19: what a decoder that knows the initial
weights could save) and its results_doc.py --codec-init subsection, on small synthetic tensors whose
answer is known; the training is replaced by a stand-in so that the tests stay fast."""
import json
import os
import subprocess
import sys
from math import erfc, sqrt

import numpy as np
import pytest

from _benchmarks import load as load_bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
LIM = 0.1


@pytest.fixture(scope="module")
def cb():
    return load_bench("codec_bound")


@pytest.fixture(scope="module")
def doc():
    return load_bench("results_doc")


def _details(cb, init, trained, density=0.3, k=8):
    """(tensor, details) as bench_codec.trained_lenet300_ip1 makes them: magnitude pruning to ``density``,
    k-means on the kept weights."""
    kmeans = load_bench("bench_codec").kmeans_linear_1d
    thr = float(np.quantile(np.abs(trained), 1 - density))
    keep = np.abs(trained) > thr
    out = np.zeros(trained.shape, np.float32)
    out[keep], cent = kmeans(trained[keep].astype(np.float64), k, centroids=True)
    return out, {"init": init, "trained": trained.astype(np.float64), "threshold": thr, "centroids": cent,
                 "init_limit": LIM}


def _init(shape=(120, 200), seed=1):
    return np.random.default_rng(seed).uniform(-LIM, LIM, shape)


def test_init_buckets_are_equal_cells_of_the_glorot_range(cb):
    x = np.array([-0.2, -0.1, -0.0500001, -0.05, 0.0, 0.0499999, 0.05, 0.0999999, 0.1, 0.3])
    assert cb.init_buckets(x, LIM, 4).tolist() == [0, 0, 0, 1, 2, 2, 3, 3, 3, 3]
    assert cb.init_buckets(x, LIM, 1).tolist() == [0] * len(x)


def test_normal_mass_is_accurate_in_both_tails(cb):
    """Where Phi(b) - Phi(a) rounds to 0 in float64 (10 and 20 standard deviations out), the mass is the
    difference of the upper tails; a symmetric interval gets the same mass on either side."""
    lo, hi = np.array([10.0, -11.0, -1.0, 20.0]), np.array([11.0, -10.0, 1.0, 21.0])
    got = cb._normal_mass(lo, hi, np.zeros(4), 1.0)
    q = lambda z: 0.5 * erfc(z / sqrt(2))  # noqa: E731
    want = [q(10) - q(11), q(10) - q(11), 1 - 2 * q(1), q(20) - q(21)]
    assert got[0] == got[1] and got[0] > 0 and got[3] > 0, got
    assert np.allclose(got, want, rtol=1e-12, atol=0), (got, want)


def test_gaussian_model_costs_nothing_when_training_left_the_weights_alone(cb):
    """trained == init: the symbol of every element is the one its initial value falls in, so the model
    around w0 pays its 8 B of parameters and next to nothing else; the model without w0 pays the
    initial weights' randomness."""
    w0 = _init()
    w, d = _details(cb, w0, w0.copy())
    known = cb.init_known_gaussian_bytes(w, d)
    unknown = cb.oracle_rows(w, d, ranks=())[0]["bytes"]
    assert 8 <= known < 8.1, known
    assert unknown > 4000, unknown


def test_init_known_report_on_related_and_independent_weights(cb):
    """trained = init + a small update: every model with w0 known is far cheaper than without; trained
    independent of init: the static floors gain next to nothing (conditioning never raises a static
    entropy, it only overfits) and every paid-for model with w0 costs more than without (tables + seed).
    With no w0 (one context) the Huffman figure is §6's packed size but for the streams' byte padding."""
    rng = np.random.default_rng(2)
    w0 = _init()
    w, d = _details(cb, w0, w0 + rng.normal(0, 0.002, w0.shape))
    r = cb.init_known_report(w, d)
    assert r["corr_init_trained"] > 0.99 and abs(r["update_std_vs_limit"] - 0.02) < 0.002, r
    u, k = r["init_unknown"], r["init_known"]
    assert sorted(k) == ["16", "4", "64"], k
    assert k["64"]["entropy_bytes"] < 0.5 * u["entropy_bytes"] and k["16"]["rans_bytes"] < 0.6 * u["rans_bytes"], r
    assert r["gaussian_init_known_bytes"] < 0.3 * r["gaussian_init_unknown_bytes"], r
    assert 0 <= r["packed_sparse_bytes"] - u["huffman_bytes"] < 8, r
    assert u["huffman_bytes"] == r["fixed_bytes"] + r["gap_huffman_bytes"] + u["index_huffman_bytes"], r
    assert r["best_bytes"] == min(r["compressor_bytes"].values()) and r["goal_bytes"] == 0.75 * r["best_bytes"]

    w, d = _details(cb, w0, rng.uniform(-LIM, LIM, w0.shape))
    r = cb.init_known_report(w, d)
    u, k = r["init_unknown"], r["init_known"]
    assert abs(r["corr_init_trained"]) < 0.02, r
    for b in ("4", "16", "64"):
        assert 0.99 * u["entropy_bytes"] <= k[b]["entropy_bytes"] <= u["entropy_bytes"], (b, r)
        assert k[b]["rans_bytes"] > u["rans_bytes"] and k[b]["huffman_bytes"] > u["huffman_bytes"], (b, r)
    assert r["gaussian_init_known_bytes"] > r["gaussian_init_unknown_bytes"], r


def test_init_known_report_counts_the_seed_and_the_fixed_bytes(cb):
    """The paid-for figures are the fixed bytes + the streams + the seed (8 B); the floor has no seed."""
    w0 = _init((60, 80))
    w, d = _details(cb, w0, w0 + np.random.default_rng(3).normal(0, 0.01, w0.shape))
    r = cb.init_known_report(w, d, buckets=(2,))
    m = r["init_known"]["2"]
    assert r["seed_bytes"] == 8
    assert m["entropy_bytes"] == r["fixed_bytes"] + m["mask_entropy_bytes"] + m["index_entropy_bytes"]
    assert m["rans_bytes"] == r["fixed_bytes"] + m["mask_rans_bytes"] + m["index_rans_bytes"] + 8
    assert m["huffman_bytes"] == r["fixed_bytes"] + r["gap_huffman_bytes"] + m["index_huffman_bytes"] + 8
    kept = (w.reshape(-1) != 0).astype(np.int64)
    b = cb.init_buckets(w0.reshape(-1), LIM, 2)
    want = cb.entropy_bytes(kept[b == 0]) + cb.entropy_bytes(kept[b == 1])  # H(kept | cell) * n, in bytes
    assert 0 < want < cb.entropy_bytes(kept) and abs(m["mask_entropy_bytes"] - want) < 1e-9 * want, (m, want)


def test_init_known_refuses_details_of_another_tensor(cb):
    w0 = _init((40, 60))
    w, d = _details(cb, w0, w0.copy())
    d["threshold"] *= 1.1
    for fn in (cb.init_known_report, cb.init_known_gaussian_bytes):
        with pytest.raises(ValueError, match="reproduce"):
            fn(w, d)
    with pytest.raises(ValueError, match="reproduce"):
        cb.init_known_report(w[:, :30], _details(cb, w0, w0.copy())[1])


def _fake_training(cb, monkeypatch):
    """trained_lenet300_ip1 replaced by a stand-in: init + an update growing with the epochs; the
    default call (bench_codec.py's tensor) returns the 1-epoch tensor. Returns the calls made."""
    calls = []
    w0 = _init((60, 80), seed=4)

    def make(epochs, density, bits):
        upd = np.random.default_rng(epochs).normal(0, 0.01 * epochs, w0.shape)
        return _details(cb, w0, w0 + upd, density=density, k=2 ** bits)

    def fake(epochs=1, density=0.08, bits=5, seed=0, details=False):
        calls.append((epochs, details))
        w, d = make(epochs, density, bits)
        return (w, d) if details else w

    def machine_info(frameworks=True):
        calls.append(("machine_info", frameworks))
        return {"date": "2026-01-01 00:00 UTC", "loadavg": [0.5, 0.5, 0.5]}

    def gradual(base_epochs, prune_epochs, density=0.08, bits=5, seed=0):
        calls.append(("gradual", base_epochs, prune_epochs))
        w, d = make(base_epochs + prune_epochs, density, bits)
        d["trained"] = np.where(w != 0, d["trained"], 0.0)  # the pruned weights set to 0, as prune_retrain does
        d["threshold"] = 0.0
        return w, d

    monkeypatch.setattr(cb, "trained_lenet300_ip1", fake)
    monkeypatch.setattr(cb, "gradual_pruning_tensor", gradual)
    monkeypatch.setattr(cb, "machine_info", machine_info)
    return calls


def test_cli_writes_its_own_json(cb, monkeypatch, tmp_path):
    """--init-known-epochs: one row per training length, the 1-epoch tensor checked against bench_codec.py's
    (the default call), the command, uptime and load recorded; bad lists and mixed modes refused."""
    calls = _fake_training(cb, monkeypatch)
    path = tmp_path / "ck.json"
    cb.main(["--init-known-epochs", "1,3", "--json", str(path)])
    out = json.loads(path.read_text())
    # the load at the start, the 1-epoch tensor and bench_codec.py's, 3 epochs, the machine with Keras's version
    assert calls == [("machine_info", False), (1, True), (1, False), (3, True), ("machine_info", True)], calls
    assert [r["epochs"] for r in out["rows"]] == [1, 3]
    assert out["rows"][0]["identical_to_bench_codec_tensor"] is True and "identical_to_bench_codec_tensor" not in out["rows"][1]
    assert out["rows"][0]["corr_init_trained"] > out["rows"][1]["corr_init_trained"]
    assert out["command"].endswith("codec_bound.py --init-known-epochs 1,3 --json " + str(path)), out["command"]
    assert out["machine"]["date"] and out["loadavg_start"] == [0.5, 0.5, 0.5] and "load average" in out["uptime_end"]
    assert out["config"]["buckets"] == [4, 16, 64] and out["config"]["seed_bytes"] == 8
    for argv, msg in ((["--init-known-epochs", "0,2"], "positive whole numbers"),
                      (["--init-known-epochs", "1,x"], "positive whole numbers"),
                      (["--init-known-epochs", "1", "--tflite", "m.tflite"], "its own JSON"),
                      (["--init-known-epochs", "1", "--bench-tensor"], "its own JSON"),
                      ([], "--tflite is required"),
                      (["--init-known-epochs", "1", "--init-known-gradual", "1-5"], "BASE+PRUNE epoch pairs"),
                      (["--init-known-epochs", "1", "--init-known-gradual", "1+0"], "BASE+PRUNE epoch pairs"),
                      (["--init-known-gradual", "1+5"], "give --init-known-epochs too")):
        r = subprocess.run([sys.executable, os.path.join(BENCH, "codec_bound.py"), *argv], capture_output=True,
                           text=True, timeout=120, cwd=tmp_path)
        assert r.returncode == 2 and msg in r.stderr, (argv, r.stderr[-2000:])


def test_cli_gradual_rows_are_pruned_during_training(cb, monkeypatch, tmp_path):
    """--init-known-gradual B+P: rows after the one-shot ones, marked gradual, with the same initial weights
    (hash), statistics over the kept weights and no Gaussian model (its pruned weights are 0, not moved)."""
    calls = _fake_training(cb, monkeypatch)
    out = cb.main(["--init-known-epochs", "2", "--init-known-gradual", "0+2,1+3"])
    assert [c for c in calls if c[0] != "machine_info"] == [(2, True), ("gradual", 0, 2), ("gradual", 1, 3)], calls
    one, g1, g2 = out["rows"]
    assert one["pruning"] == "one-shot" and one["stats_over"] == "all elements" and one["gaussian_init_known_bytes"] > 0
    assert (g1["pruning"], g1["base_epochs"], g1["prune_epochs"], g1["epochs"]) == ("gradual", 0, 2, 2), g1
    assert (g2["base_epochs"], g2["prune_epochs"], g2["epochs"]) == (1, 3, 4), g2
    assert g1["stats_over"] == "kept weights" and g1["gaussian_init_known_bytes"] is None
    assert g1["gaussian_init_unknown_bytes"] is None and one["init_sha256"] == g1["init_sha256"] == g2["init_sha256"]
    # the same tensor as the one-shot row (the stand-in prunes alike): the same sizes, the statistics of the kept
    assert g1["init_known"] == one["init_known"] and g1["packed_sparse_bytes"] == one["packed_sparse_bytes"]
    assert g1["corr_init_trained"] != one["corr_init_trained"]


def _row(epochs, best, six, floor, rans, huff, g_unknown, g_known, corr, std):
    """A JSON row of the given ratios (x best) for every bucket count."""
    def m(e, r, h):
        return {"entropy_bytes": e * best, "rans_bytes": r * best, "huffman_bytes": h * best}
    return {"epochs": epochs, "shape": [10, 20], "entries": 30, "best_bytes": best, "best_compressor": "bz2-9",
            "packed_sparse_bytes": six * best, "packed_context_bytes": six * best, "corr_init_trained": corr,
            "update_std_vs_limit": std, "init_unknown": m(0.86, 0.86, six),
            "init_known": {b: m(floor, rans + i / 100, huff + i / 100) for i, b in enumerate(("4", "16", "64"))},
            "gaussian_init_unknown_bytes": g_unknown * best, "gaussian_init_known_bytes": g_known * best}


def _ck(rows):
    return {"command": "python benchmarks/codec_bound.py --init-known-epochs 1,20", "loadavg_start": [1.0, 1, 1],
            "machine": {"date": "2026-01-01 00:00 UTC", "loadavg": [2.0, 2, 2]},
            "config": {"buckets": [4, 16, 64], "seed_bytes": 8, "seed": 0, "density": 0.08, "bits": 5, "model": "M"},
            "rows": rows}


def test_codec_init_lines_table_and_verdict(doc):
    """One table row per training length, ratios <= 0.75 in bold; the verdict names the cheapest paid-for
    model of the first row and whether it meets the goal, the table-driven figure, the trend, the record's
    epochs and the decode cost per element."""
    rows = [_row(1, 1000, 0.866, 0.65, 0.667, 0.768, 0.867, 0.679, 0.892, 0.296),
            _row(20, 2000, 0.862, 0.85, 0.86, 0.844, 0.923, 0.913, 0.387, 1.5)]
    rows[0]["identical_to_bench_codec_tensor"] = True
    lines = doc.codec_init_lines(_ck(rows), {"prune_epochs": 30, "cluster_epochs": 6})
    table = [x for x in lines if x.startswith("| ")]
    assert len(table) == 3 and table[0].startswith("| epochs |"), table
    assert table[1] == ("| 1 | 0.892 | 0.30 | 1,000 (bz2-9) | 0.866x / 0.866x | 0.860x → **0.650x** / **0.650x** / **0.650x** | "
                        "0.860x → **0.667x** / **0.677x** / **0.687x** | 0.866x → 0.768x / 0.778x / 0.788x | "
                        "0.867x → **0.679x** |"), table[1]
    assert "**" not in table[2], table[2]
    text = lines[-1]
    assert "bit-identical to bench_codec.py's tensor" in "\n".join(lines)
    assert text.startswith("Knowing w0 would meet the <= 0.75x goal on the 1-epoch tensor: static rANS, 4 cells, "
                           "667 B = **0.667x** of 1,000 B (static floor 0.650x; §6 today 0.866x)"), text
    assert "reaches 768 B = 0.768x (4 cells), above the goal." in text, text
    assert "falls from 0.89 (1 epoch) to 0.39 (20 epochs)" in text and "0.30 L to 1.50 L" in text, text
    assert "is at 0.844x after 20 epochs (§6 today: 0.862x)." in text, text
    assert "then 30 pruning and 6 weight-sharing epochs" in text and "each of the 200 elements" in text, text
    assert "30 Huffman entries" in text and "the goal stays missed" in text, text
    rows[0]["gaussian_init_known_bytes"] = rows[0]["init_known"]["4"]["rans_bytes"] = 800  # now none meets it
    rows[0]["init_known"]["16"]["rans_bytes"] = rows[0]["init_known"]["64"]["rans_bytes"] = 900
    text = doc.codec_init_lines(_ck(rows[:1]))[-1]
    assert text.startswith("Knowing w0 would still miss the <= 0.75x goal on the 1-epoch tensor: §6 gaps + index "
                           "Huffman per cell, 4 cells, 768 B"), text
    assert "fades" not in text and text.split(". ")[-1].startswith("The models that code the kept bit"), text


def test_codec_init_lines_gradual_rows(doc):
    """Rows pruned during training: 'B + P, pruned during training', statistics marked (kept), no Gaussian
    cell; the trend sentence uses the one-shot rows only, a sentence of their own for the gradual ones."""
    rows = [_row(1, 1000, 0.866, 0.65, 0.667, 0.768, 0.867, 0.679, 0.892, 0.296),
            _row(30, 1000, 0.857, 0.85, 0.86, 0.844, 0.923, 0.913, 0.324, 1.89),
            _row(50, 2000, 0.87, 0.7, 0.74, 0.79, 0, 0, 0.9, 0.95)]
    rows[2].update(pruning="gradual", base_epochs=20, prune_epochs=30, stats_over="kept weights",
                   gaussian_init_unknown_bytes=None, gaussian_init_known_bytes=None)
    lines = doc.codec_init_lines(_ck(rows))
    table = [x for x in lines if x.startswith("| ")]
    assert table[3].startswith("| 20 + 30, pruned during training | 0.900 (kept) | 0.95 (kept) | 2,000 (bz2-9) | "), table[3]
    assert table[3].endswith("| 0.870x → 0.790x / 0.800x / 0.810x | - → - |"), table[3]
    text = lines[-1]
    assert "to 0.32 (30 epochs)" in text and "is at 0.844x after 30 epochs (§6 today: 0.857x)." in text, text
    assert ("Pruned during training (Deep Compression's own recipe), the cheapest paid-for model with w0 known is at "
            "**0.740x** after 20 + 30 epochs (§6 today: 0.870x; the table-driven variant: 0.790x).") in text, text
    assert "Rows *B + P, pruned during training*" in lines[1], lines[1]
    assert "Rows *B + P" not in doc.codec_init_lines(_ck(rows[:2]))[1]


def test_results_doc_codec_init_reproduces_docs_results_md(tmp_path):
    """results_doc.py --codec-init with the committed JSONs (the lead's regen command, in the order the
    Reproduce block records) writes docs/results.md as committed; --codec-init alone is refused."""
    with open(os.path.join(ROOT, "docs", "results.md")) as f:
        committed = f.read()
    recorded = [x for x in committed.splitlines() if x.startswith(".venv/bin/python benchmarks/results_doc.py ")]
    assert len(recorded) == 1 and " --codec-init docs/results/codec_init_known.json" in recorded[0], recorded
    res = os.path.join(ROOT, "docs", "results")
    args = []
    for word in recorded[0].split()[2:]:
        if word.startswith("--"):
            args.append(word)
        elif word.endswith("*.json"):
            prefix = os.path.basename(word)[:-len("*.json")]
            args += sorted(os.path.join(res, n) for n in os.listdir(res) if n.startswith(prefix) and n.endswith(".json"))
        else:
            args.append(os.path.join(res, os.path.basename(word)))
    (tmp_path / "docs" / "img").mkdir(parents=True)
    r = subprocess.run([sys.executable, os.path.join(BENCH, "results_doc.py"), *args, "--out", "docs/results.md",
                        "--img_dir", "docs/img"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "docs" / "results.md").read_text() == committed
    r = subprocess.run([sys.executable, os.path.join(BENCH, "results_doc.py"), "--codec-init",
                        os.path.join(res, "codec_init_known.json"), "--out", "x.md"], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 2 and "give --codec-bound" in r.stderr and not (tmp_path / "x.md").exists(), r.stderr

