"""Hostile sizes (issue 10): packed headers that claim huge shapes or element counts are rejected
before any allocation larger than the input justifies -- in the Python decode path
(``dc_keras.codec.decode`` / ``info``) and in the TFLite op / delegate (``allocate_tensors``).

Peak memory is measured in a fresh subprocess (``ru_maxrss`` before and after the hostile calls,
after a warm-up), so a blow-up cannot hide behind the test runner's own footprint.

The limits come from docs/FORMAT.md §9: a dense tensor has N <= 8 * stream bytes, a sparse one
N < (E + 1) * G with E bounded by the stream bytes, and a tensor whose codes are all zero-bit (a
constant) may declare at most ``MAX_ZERO_BIT_OUTPUT`` (16 MiB) of output.
"""
import json
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dc_keras import codec
from dc_keras.codec import CorruptDataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_ZERO_BIT_OUTPUT = 1 << 24
F32 = 0


def _with_dims(packed, dims):
    """``packed`` with its dims field replaced (same rank), nothing else changed."""
    rank = packed[6]
    assert len(dims) == rank
    return packed[:8] + struct.pack(f"<{rank}I", *dims) + packed[8 + 4 * rank:]


def _header(dtype, dims, layout=0, tail=b""):
    """Magic, version, dtype, rank, layout, dims, zero checksums, then ``tail``."""
    return (b"DCHF" + bytes([1, dtype, len(dims), layout]) + struct.pack(f"<{len(dims)}I", *dims)
            + b"\0" * 8 + tail)


def _constant(n, dtype=np.float32):
    """A valid packed constant tensor (all codes zero-bit) of ``n`` elements."""
    data = codec.encode(np.full(n, 0.5, dtype), layout="dense")
    info = codec.info(data)
    assert info["index_code"]["max_length"] == 0
    return data


def _hostile_inputs():
    """name -> bytes; every one must be rejected by dc_peek (hence by decode and info)."""
    rng = np.random.default_rng(7)
    dense = codec.encode(rng.choice(np.linspace(-1, 1, 16, dtype=np.float32), size=(40, 25)),
                         layout="dense")
    w = np.zeros((64, 64), np.float32)
    w[rng.random(w.shape) < 0.05] = 0.25
    sparse = codec.encode(w, layout="sparse")
    assert codec.info(sparse)["layout"] == "sparse"
    const = _constant(1000)
    all_bg = codec.encode(np.zeros(5000, np.float32), layout="sparse")
    return {
        # overflow of the element count (2^64, 2^31, a partial product > 2^31 - 1 before a 0)
        "dims_2^64": _header(F32, [0xFFFFFFFF, 0xFFFFFFFF], tail=b"\1\0"),
        "dims_2^31": _header(F32, [65536, 32768], tail=b"\1\0"),
        "rank_8_overflow": _header(F32, [256] * 8, tail=b"\1\0"),
        "partial_product_then_zero": _header(F32, [0xFFFFFFFF, 0xFFFFFFFF, 0], tail=b"\0\0"),
        "rank_9": _header(F32, [1] * 9, tail=b"\1\0"),
        # a constant (zero-bit) tensor may not claim more than 16 MiB
        "constant_2^31-1_float32": _with_dims(const, [2**31 - 1]),
        "constant_16MiB+4": _with_dims(const, [MAX_ZERO_BIT_OUTPUT // 4 + 1]),
        "all_background_sparse_2^31-1": _with_dims(all_bg, [2**31 - 1]),
        # real coded tensors whose dims were inflated: the streams cannot hold that many symbols
        "dense_dims_x1000": _with_dims(dense, [40_000, 25]),
        "dense_dims_max": _with_dims(dense, [2**31 - 1, 1]),
        "sparse_dims_x1000": _with_dims(sparse, [64_000, 64]),
        "sparse_dims_max": _with_dims(sparse, [1, 2**31 - 1]),
        # stream sizes far beyond the buffer
        "stream_size_2^31": dense[:-(4 * 4 + sum(codec.info(dense)["stream_bytes"]))]
        + struct.pack("<4I", 2**31 - 1, 0, 0, 0) + b"\0" * 16,
    }


HOSTILE = _hostile_inputs()


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_header_rejected_by_decode_and_info(name):
    data = HOSTILE[name]
    with pytest.raises(CorruptDataError) as e1:
        codec.decode(data)
    assert str(e1.value)  # a reason, e.g. "invalid rank or dimensions, or element count too large"
    with pytest.raises(CorruptDataError):
        codec.info(data)  # the pure-Python header parser agrees with the C decoder


def test_constant_at_the_limit_decodes():
    """The cap is not off by one: exactly 16 MiB from zero-bit codes is a valid tensor."""
    data = _constant(MAX_ZERO_BIT_OUTPUT // 4)
    out = codec.decode(data)
    assert out.nbytes == MAX_ZERO_BIT_OUTPUT and out.dtype == np.float32 and (out == 0.5).all()


_RSS_CHILD = textwrap.dedent("""
    import json, resource, sys
    sys.path.insert(0, sys.argv[1])
    from dc_keras import codec
    cases = json.load(open(sys.argv[2]))
    # warm up the decoder on a small valid tensor
    import numpy as np
    codec.decode(codec.encode(np.arange(100, dtype=np.float32) % 7))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    errors = {}
    for name, hexdata in cases.items():
        data = bytes.fromhex(hexdata)
        try:
            codec.decode(data)
            errors[name] = None
        except ValueError as exc:
            errors[name] = str(exc)
        try:
            codec.info(data)
        except ValueError:
            pass
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rss_growth_kb": after - before, "errors": errors}))
""")


def test_hostile_headers_allocate_nothing_big(tmp_path):
    """All hostile inputs decoded in one fresh process: peak RSS grows by < 16 MiB in total
    (a single accepted claim would be >= 16 MiB, the 2^31 ones 8 GiB)."""
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps({k: v.hex() for k, v in HOSTILE.items()}))
    child = tmp_path / "child.py"
    child.write_text(_RSS_CHILD)
    res = subprocess.run([sys.executable, str(child), ROOT, str(cases)], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert all(out["errors"][k] for k in HOSTILE), out["errors"]
    assert out["rss_growth_kb"] < 16 * 1024, out


def test_peek_bounds_output_by_input_size():
    """§9 as a property over random headers built from real tensors: whatever dc_peek accepts
    has output_bytes <= 16 MiB (zero-bit codes) or <= 4 * 4096 * (8 * size + 1)."""
    rng = np.random.default_rng(11)
    checked = 0
    for _ in range(300):
        n = int(rng.integers(1, 3000))
        k = int(rng.integers(1, 40))
        a = rng.choice(np.arange(k, dtype=np.float32), size=n)
        a[rng.random(n) < rng.random()] = 0
        data = codec.encode(a)
        rank = data[6]
        for _ in range(5):
            dims = [int(rng.integers(1, 2**31 // max(1, n))) for _ in range(rank)]
            bad = _with_dims(data, dims)
            try:
                info = codec.info(bad)
            except CorruptDataError:
                continue
            checked += 1
            bound = MAX_ZERO_BIT_OUTPUT if all(
                c["max_length"] == 0 for c in (info["index_code"], info.get("gap_code", info["index_code"]))
            ) else 4 * 4096 * (8 * len(bad) + 1)
            assert info["raw_bytes"] <= bound
    assert checked > 0


# ------------------------------------------------------------------------------------------
# the op / delegate: Prepare fails before allocating what a hostile header claims
# ------------------------------------------------------------------------------------------
_OP_CHILD = textwrap.dedent("""
    import json, os, resource, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    from dc_keras import runtime
    spec = json.load(open(sys.argv[2]))
    route = sys.argv[3]
    kw = {"backend": "tensorflow", "decode": "op"} if route == "op" else {}
    good = bytes.fromhex(spec.pop("good"))
    it = runtime.Interpreter(model_content=good, num_threads=1, **kw)
    it.allocate_tensors()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    errors = {}
    for name, hexdata in spec.items():
        try:
            it = runtime.Interpreter(model_content=bytes.fromhex(hexdata), num_threads=1, **kw)
            it.allocate_tensors()
            errors[name] = None
        except (RuntimeError, ValueError) as exc:
            errors[name] = str(exc)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rss_growth_kb": after - before, "errors": errors}))
""")


@pytest.fixture(scope="module")
def zero_weight_model():
    """A small dense model whose first kernel is all zero (packed as a zero-bit constant) and
    whose second is clustered (packed with real codes); returns (packed bytes, buffers)."""
    import keras

    from dc_keras import export

    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((64,)), keras.layers.Dense(128, name="a"),
                          keras.layers.Dense(32, name="b")])
    m.layers[0].kernel.assign(np.zeros((64, 128), np.float32))
    w = m.layers[1].kernel.numpy()
    m.layers[1].kernel.assign(np.round(w * 8) / 8)
    packed = export.pack(export.to_tflite(m, pack=False))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from test_corruption import _packed_buffers

    buffers = _packed_buffers(packed)
    assert len(buffers) == 2
    return packed, buffers


def _patch(packed, pos, n, new):
    assert len(new) == n
    return packed[:pos] + new + packed[pos + n:]


@pytest.mark.parametrize("route", ["delegate", "op"])
def test_op_rejects_hostile_sizes_before_allocating(tmp_path, zero_weight_model, route):
    packed, buffers = zero_weight_model
    spec = {"good": packed.hex()}
    for name, pos, n, _ in buffers:
        data = packed[pos:pos + n]
        info = codec.info(data)
        rank = data[6]
        short = name.split("/")[-3] if name.count("/") >= 3 else name
        # claims that dc_peek refuses (zero-bit cap, stream bounds, 2^31 elements)
        spec[f"{short}:max_elements"] = _patch(packed, pos, n, _with_dims(data, [2**31 - 1] + [1] * (rank - 1))).hex()
        spec[f"{short}:x1000"] = _patch(packed, pos, n, _with_dims(
            data, [info["shape"][0] * 1000] + list(info["shape"][1:]))).hex()
        spec[f"{short}:2^64"] = _patch(packed, pos, n, _with_dims(data, [0xFFFFFFFF] * rank)).hex()
        # a claim dc_peek accepts but the model's tensor contradicts: refused before allocating
        if info["index_code"]["max_length"] == 0:
            spec[f"{short}:other_shape"] = _patch(packed, pos, n, _with_dims(
                data, [info["shape"][0] * 2] + list(info["shape"][1:]))).hex()
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    child = tmp_path / "child.py"
    child.write_text(_OP_CHILD)
    res = subprocess.run([sys.executable, str(child), ROOT, str(path), route], capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for name, err in out["errors"].items():
        assert err and "HuffDecode" in err, (name, err)
    assert any("does not match" in e or "but the output's is" in e for e in out["errors"].values())
    assert out["rss_growth_kb"] < 16 * 1024, out


# ------------------------------------------------------------------------------------------
# reinstalling the native library under a running process
# ------------------------------------------------------------------------------------------
_LOADED_CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    from dc_keras import codec
    a = np.arange(1000, dtype=np.float32) % 9
    assert np.array_equal(codec.decode(codec.encode(a)), a)
    print("loaded", flush=True)
    sys.stdin.readline()
    assert np.array_equal(codec.decode(codec.encode(a)), a)  # still runs the code it loaded
    maps = [l.strip() for l in open("/proc/self/maps") if sys.argv[2] in l]
    print("maps", " | ".join(maps), flush=True)
""")


def test_make_lib_replaces_library_atomically(tmp_path):
    """`make lib` installs dc_keras/_native/libdc_huffdecode.so by copy + rename (target
    native-copy): a process that has the library loaded keeps its mapping (shown as
    "(deleted)"), instead of having its code rewritten in place -- copying over the loaded file
    crashed running interpreters (corruption-sweep workers died with SIGSEGV while a teammate
    ran `make lib`)."""
    import shutil

    from dc_keras import _native

    src = _native.library_path()
    lib = tmp_path / "libdc_huffdecode.so"
    shutil.copy(src, lib)
    inode = os.stat(lib).st_ino
    child = tmp_path / "child.py"
    child.write_text(_LOADED_CHILD)
    env = dict(os.environ, DC_KERAS_LIBRARY=str(lib))
    p = subprocess.Popen([sys.executable, str(child), ROOT, str(lib)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert p.stdout.readline().strip() == "loaded"
        res = subprocess.run(["make", "-s", "-C", ROOT, "native-copy", f"NATIVE={lib}", f"KLIB={src}"],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        p.stdin.write("\n")
        p.stdin.flush()
        maps = p.stdout.readline()
        assert p.wait(timeout=60) == 0
    finally:
        if p.poll() is None:
            p.kill()
    assert os.stat(lib).st_ino != inode  # a new file took the name
    assert lib.read_bytes() == open(src, "rb").read()
    assert "(deleted)" in maps, maps  # the running process still maps the old, untouched file
    assert not [f for f in os.listdir(tmp_path) if ".tmp." in f]  # no temporary left behind
