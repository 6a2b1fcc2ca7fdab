"""Property-based round trips and corruption robustness of dc_keras.codec.

Corrupted inputs are decoded in a child process so that a crash of the native decoder fails the
test instead of killing pytest.
"""
import json
import os
import subprocess
import sys
import textwrap

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dc_keras import codec

DTYPES = [np.float32, np.float16, np.int32, np.int16, np.int8, np.uint8,
          np.float64, np.int64, np.uint64, np.uint32, np.uint16, np.bool_]  # the last six: version 3 (§16)


def pool_for(dtype):
    if np.dtype(dtype) == np.bool_:
        return [False, True]
    if np.dtype(dtype).kind == "f":
        return [0.0, -0.0, 1.0, -1.0, 0.5, 0.25, -3.75, 1e-3, 65504.0 if dtype == np.float16 else 3e38,
                float("inf"), float("nan")] + [1e300, -5e-324] * (dtype == np.float64)
    info = np.iinfo(dtype)
    signed = [-1, -3] if info.min < 0 else [3, 200]
    return sorted({0, 1, 2, 7, int(info.min), int(info.max), *signed})


@st.composite
def tensors(draw):
    dtype = draw(st.sampled_from(DTYPES))
    pool = pool_for(dtype)
    values = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=len(pool), unique=True))
    weights = st.sampled_from(values) if len(values) == 1 else st.one_of(
        st.just(values[0]), st.just(values[0]), st.just(values[0]), st.sampled_from(values))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=7))
    with np.errstate(over="ignore"):
        return draw(hnp.arrays(np.dtype(dtype), shape, elements=weights.map(lambda v: np.array(v).astype(dtype)),
                               fill=st.nothing()))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=tensors(), layout=st.sampled_from([None, "dense", "sparse"]), limit=st.integers(4, 12))
def test_property_roundtrip(a, layout, limit):
    packed = codec.encode(a, layout=layout, max_code_length=limit)
    b = codec.decode(packed)
    assert b.dtype == a.dtype and b.shape == a.shape
    assert b.tobytes() == a.tobytes()
    info = codec.info(packed)
    assert info["shape"] == a.shape and info["packed_bytes"] == len(packed)
    assert info.get("index_code", {"max_length": 0})["max_length"] <= limit


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 5000), density=st.floats(0.0, 1.0),
       k=st.integers(1, 300))
def test_property_sparse_random_gaps(seed, n, density, k):
    rng = np.random.default_rng(seed)
    vals = (np.arange(1, k + 1) * 0.5).astype(np.float32)
    a = np.where(rng.random(n) < density, rng.choice(vals, size=n), 0).astype(np.float32)
    for layout in (None, "sparse", "dense"):
        assert codec.decode(codec.encode(a, layout=layout)).tobytes() == a.tobytes()


CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    from dc_keras import codec

    def attempt(buf, counts):
        try:
            codec.decode(buf)
            counts["ok"] += 1
        except codec.CorruptDataError as e:
            counts["rejected"] += 1
            counts["statuses"].add(e.status)

    for path, mode, seed in json.load(open(sys.argv[1])):
        print("job", path, mode, seed, file=sys.stderr, flush=True)  # the last one names a crash's input
        data = open(path, "rb").read()
        rng = np.random.default_rng(seed)
        counts = {"ok": 0, "rejected": 0, "statuses": set()}
        if mode == "truncate":
            for i in range(len(data)):
                attempt(data[:i], counts)
        elif mode == "flip1":
            for i in range(len(data) * 8):
                b = bytearray(data); b[i // 8] ^= 1 << (i % 8); attempt(bytes(b), counts)
        elif mode == "flipn":
            for _ in range(3000):
                b = bytearray(data)
                for bit in rng.integers(0, len(data) * 8, size=rng.integers(2, 9)):
                    b[bit // 8] ^= 1 << (bit % 8)
                attempt(bytes(b), counts)
        elif mode == "garbage":
            for _ in range(3000):
                keep = int(rng.integers(0, len(data)))
                tail = rng.integers(0, 256, size=int(rng.integers(0, 2 * len(data)))).astype(np.uint8).tobytes()
                attempt(data[:keep] + tail, counts)
        else:
            raise SystemExit("unknown mode " + mode)
        counts["statuses"] = sorted(counts["statuses"])
        print("RESULT " + json.dumps([path, mode, seed, counts]), flush=True)
""")

def corpus():
    rng = np.random.default_rng(11)
    w = np.zeros((40, 30), np.float32)
    m = rng.random(w.shape) < 0.1
    w[m] = rng.choice(np.linspace(-1, 1, 16).astype(np.float32), size=int(m.sum()))
    w[39, 29] = 0.0
    return {
        "sparse_float32": codec.encode(w),
        "dense_int8": codec.encode(rng.integers(-5, 5, size=(17, 13)).astype(np.int8), layout="dense"),
        "sparse_int16_fillers": codec.encode(np.eye(300, dtype=np.int16)[:40], layout="sparse"),
        "constant_float16": codec.encode(np.full((9, 9), 2.5, np.float16)),
        "scalar_uint8": codec.encode(np.array(200, np.uint8)),
        "empty_int32": codec.encode(np.zeros((0, 3), np.int32)),
        # format version 2 layouts (FORMAT.md §11-§13) and a version 1 file (§10)
        "grouped_sparse_int8": codec.encode(np.where(rng.random((6, 4, 9)) < 0.3, rng.integers(-9, 9, (6, 4, 9)) * np.arange(1, 7)[:, None, None], 0).astype(np.int8),
                                            layout="grouped_sparse", axis=0),
        "grouped_dense_float32": codec.encode((rng.choice(np.linspace(-1, 1, 8), (5, 20)) * rng.uniform(1, 2, (5, 1))).astype(np.float32),
                                              layout="grouped_dense"),
        "float_planes_float32": codec.encode(rng.normal(0, 0.1, 60).astype(np.float32), layout="float_planes"),
        "int4_sparse": codec.encode(np.where(rng.random(301) < 0.2, rng.integers(-8, 8, 301), 0).astype(ml_dtypes.int4)),
        "version1_sparse_float32": codec.encode(w, version=1),
        "context_sparse_float32": codec.encode(w, layout="context_sparse"),
        "context_sparse_int16_fillers": codec.encode(np.eye(300, dtype=np.int16)[:40] * 3 - np.eye(300, dtype=np.int16)[1:41],
                                                     layout="context_sparse"),
        # format version 3 dtypes (FORMAT.md §16)
        "v3_sparse_int64": codec.encode(np.where(m, rng.choice([np.iinfo(np.int64).min, -1, 2**62], m.shape), 0)
                                        .astype(np.int64)),
        "v3_dense_float64": codec.encode(rng.choice([0.0, -0.0, np.nan, 1.5, -np.inf], (11, 7)), layout="dense"),
        "v3_dense_bool": codec.encode(rng.random((9, 13)) < 0.4, layout="dense"),
        "v3_context_sparse_uint64": codec.encode(np.where(m, rng.choice(np.array([1, 2**63, 2**64 - 1], np.uint64),
                                                                        m.shape), np.uint64(5)),
                                                 layout="context_sparse"),
        "v3_grouped_sparse_uint16": codec.encode(np.where(rng.random((5, 30)) < 0.3, rng.integers(0, 9, (5, 30))
                                                          * np.arange(1, 6)[:, None] * 1000, 0).astype(np.uint16),
                                                 layout="grouped_sparse", axis=0),
    }


MULTI_FLIP = ["sparse_float32", "dense_int8", "sparse_int16_fillers", "grouped_sparse_int8", "float_planes_float32",
              "context_sparse_float32", "v3_sparse_int64"]  # large enough that repeated flips rarely cancel
GARBAGE = ["sparse_float32", "dense_int8"]


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory):
    """(name, mode) -> {"ok", "rejected", "statuses"}: every corruption below decoded in ONE child
    process (a crash of the native decoder fails these tests, with the input it was on, instead of
    killing pytest); one process start-up instead of one per case."""
    out = tmp_path_factory.mktemp("codec_fuzz")
    keys, jobs = [], []
    for name, data in sorted(corpus().items()):
        path = out / f"{name}.bin"
        path.write_bytes(data)
        for mode, seed in [("truncate", 0), ("flip1", 0)] + [("flipn", 1)] * (name in MULTI_FLIP) \
                + [("garbage", 2)] * (name in GARBAGE):
            keys.append((name, mode))
            jobs.append((str(path), mode, seed))
    (out / "jobs.json").write_text(json.dumps(jobs))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(out / "jobs.json")], capture_output=True,
                          text=True, timeout=900, env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    assert proc.returncode == 0, f"decoder child died (rc={proc.returncode}): {proc.stderr[-2000:]}"
    done = [json.loads(line[len("RESULT "):]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert [d[:3] for d in done] == [list(j) for j in jobs], proc.stdout[-2000:]  # each job, in order
    return {key: d[3] for key, d in zip(keys, done)}


@pytest.mark.parametrize("name", sorted(corpus()))
def test_every_truncation_rejected(corrupted, name):
    r = corrupted[name, "truncate"]
    assert r["ok"] == 0 and r["rejected"] == len(corpus()[name])


@pytest.mark.parametrize("name", sorted(corpus()))
def test_every_single_bit_flip_rejected(corrupted, name):
    r = corrupted[name, "flip1"]
    assert r["ok"] == 0 and r["rejected"] == 8 * len(corpus()[name])


@pytest.mark.parametrize("name", MULTI_FLIP)
def test_random_multi_bit_flips_rejected(corrupted, name):
    r = corrupted[name, "flipn"]
    assert r["ok"] == 0 and r["rejected"] == 3000
    assert len(r["statuses"]) >= 3  # caught by different checks, not just one


@pytest.mark.parametrize("name", GARBAGE)
def test_random_garbage_never_crashes(corrupted, name):
    r = corrupted[name, "garbage"]
    assert r["ok"] == 0 and r["rejected"] == 3000
