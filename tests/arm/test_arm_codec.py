"""The C decoder gives byte-identical tensors on x86_64, aarch64 and armv7.

Packed inputs are made at test time by the x86 Python encoder (``dc_keras.codec.encode``); the
``dc_decode`` tool (tflite_kernels/tools/dc_decode.c, linked against each architecture's
libdc_huffdecode.so) decodes them natively on x86_64 and under qemu on aarch64 / armv7."""
import json

import numpy as np
import pytest

from arm_helpers import built, run_aarch64_python, run_arch

# Runs in the emulated aarch64 Python: dc_keras.codec (numpy encoder + ctypes decoder) on ARM.
AARCH64_SCRIPT = r"""
import json, os, sys
import numpy as np
os.environ["DC_KERAS_LIBRARY"] = sys.argv[1]
from dc_keras import codec
d = sys.argv[2]
for name in sys.argv[3:]:
    src = np.load(os.path.join(d, name + ".npy"))
    kw = json.load(open(os.path.join(d, name + ".kw")))
    with open(os.path.join(d, name + ".dcp"), "rb") as f:
        packed_x86 = f.read()
    out = codec.decode(packed_x86)
    np.save(os.path.join(d, name + ".aarch64py.npy"), out)
    with open(os.path.join(d, name + ".aarch64.dcp"), "wb") as f:
        f.write(codec.encode(src, **kw))
print("ok")
"""


def _arrays():
    """Weight-shared tensors of every dtype, dense and sparse, small and large, odd shapes."""
    rng = np.random.default_rng(2024)

    def shared(shape, dtype, k, density=1.0):
        n = int(np.prod(shape))
        if np.issubdtype(dtype, np.floating):
            book = rng.normal(size=k).astype(dtype)
        else:
            info = np.iinfo(dtype)
            book = rng.integers(info.min, info.max, size=k, endpoint=True).astype(dtype)
        # Skewed index distribution (long and short Huffman codes).
        p = rng.random(k) ** 3 + 1e-3
        a = book[rng.choice(k, size=n, p=p / p.sum())]
        if density < 1.0:
            a[rng.random(n) >= density] = 0
        return a.reshape(shape)

    cases = {
        "f32_dense_300x100_k32": (shared((300, 100), np.float32, 32), {}),
        "f32_sparse_1000x300_k16": (shared((1000, 300), np.float32, 16, 0.08), {}),
        "f32_conv_5x5x20x50_k256": (shared((5, 5, 20, 50), np.float32, 256, 0.35), {}),
        "f16_dense_257x3_k7": (shared((257, 3), np.float16, 7), {}),
        "i8_dense_513x129_k200": (shared((513, 129), np.int8, 200), {}),
        "i8_sparse_64x64x9": (shared((64, 64, 9), np.int8, 30, 0.1), {"layout": "sparse"}),
        "u8_dense_1000": (shared((1000,), np.uint8, 5), {"layout": "dense"}),
        "i16_rank3_k60": (shared((7, 11, 13), np.int16, 60), {}),
        "i32_k4096": (shared((64, 128), np.int32, 4096), {}),
        "f32_maxlen3": (shared((40, 40), np.float32, 8), {"max_code_length": 3}),
        "f32_single_value": (np.full((17, 5), 0.5, np.float32), {}),
        "f32_scalar": (np.array(1.25, np.float32), {}),
        "f32_2M_sparse": (shared((2000, 1000), np.float32, 32, 0.05), {}),
        # format version 2 layouts (FORMAT.md §11, §12) and a version 1 file
        "f32_per_channel_grouped": (shared((64, 300), np.float32, 16) * rng.uniform(0.5, 2, (64, 1)).astype(np.float32),
                                    {"layout": "grouped_dense"}),
        "i8_depthwise_grouped_sparse": (shared((3, 3, 5, 32), np.int8, 40, 0.3),
                                        {"layout": "grouped_sparse", "axis": 3}),
        "f32_unclustered_planes": (rng.normal(0, 0.05, (300, 200)).astype(np.float32), {}),
        "f16_unclustered_planes": (rng.normal(0, 0.5, (257, 3)).astype(np.float16), {"layout": "float_planes"}),
        "f32_sparse_version1": (shared((100, 300), np.float32, 16, 0.1), {"version": 1}),
        # §14 context-modelled sparse: kept weights in runs of one sign along the rows
        "f32_context_sparse_300x784": (np.abs(shared((300, 784), np.float32, 16, 0.07)) * np.where(
            np.cumsum(rng.random((300, 784)) < 0.005, axis=1) % 2, -1, 1).astype(np.float32),
                                       {"layout": "context_sparse"}),
        "i8_context_sparse_fillers": (np.where(np.arange(5000) % 1000 < 300, shared((5000,), np.int8, 20, 0.3), 0),
                                      {"layout": "context_sparse"}),
    }
    return cases


@pytest.fixture(scope="module")
def decoded(arm_env, tmp_path_factory):
    from dc_keras import codec

    tmp = tmp_path_factory.mktemp("codec_arm")
    cases = _arrays()
    for name, (array, kw) in cases.items():
        (tmp / f"{name}.dcp").write_bytes(codec.encode(array, **kw))
        np.save(tmp / f"{name}.npy", array)
        (tmp / f"{name}.kw").write_text(json.dumps(kw))
    results = {}
    for arch in ("host", "aarch64", "armv7"):
        argv = [built(arch, "dc_decode")]
        for name in cases:
            argv += [tmp / f"{name}.dcp", tmp / f"{name}.{arch}.raw"]
        run_arch(arch, argv)
        results[arch] = {name: (tmp / f"{name}.{arch}.raw").read_bytes() for name in cases}
    (tmp / "aarch64_codec.py").write_text(AARCH64_SCRIPT)
    run_aarch64_python(arm_env, [tmp / "aarch64_codec.py", built("aarch64", "libdc_huffdecode.so"),
                                 tmp, *cases], cpu="cortex-a76")
    results["aarch64-python"] = {name: np.load(tmp / f"{name}.aarch64py.npy") for name in cases}
    results["aarch64-encoder"] = {name: (tmp / f"{name}.aarch64.dcp").read_bytes() for name in cases}
    results["x86-encoder"] = {name: (tmp / f"{name}.dcp").read_bytes() for name in cases}
    return cases, results


def test_decoded_bytes_identical_across_architectures(decoded):
    cases, results = decoded
    for name, (array, _) in cases.items():
        expected = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        assert results["host"][name] == expected, f"{name}: x86_64 decode differs from the input"
        assert results["aarch64"][name] == results["host"][name], f"{name}: aarch64 != x86_64"
        assert results["armv7"][name] == results["host"][name], f"{name}: armv7 != x86_64"


def test_python_decode_agrees(decoded):
    from dc_keras import codec

    cases, results = decoded
    for name, (array, kw) in cases.items():
        out = codec.decode(codec.encode(array, **kw))
        assert out.dtype == array.dtype and out.shape == array.shape
        assert out.tobytes() == results["aarch64"][name]


def test_dc_keras_codec_on_emulated_aarch64(decoded):
    """dc_keras.codec on aarch64 Python (ctypes binding of the aarch64 library): decodes the x86
    encoder's bytes to the original arrays, and its own encoder writes the same bytes as x86's."""
    cases, results = decoded
    for name, (array, _) in cases.items():
        out = results["aarch64-python"][name]
        assert out.dtype == array.dtype and out.shape == array.shape, name
        assert out.tobytes() == array.tobytes(), name
        assert results["aarch64-encoder"][name] == results["x86-encoder"][name], name


@pytest.mark.parametrize("arch", ["aarch64", "armv7"])
def test_corrupt_input_is_an_error_on_arm(arch, decoded, tmp_path):
    from dc_keras import codec

    good = bytearray(codec.encode(np.arange(256, dtype=np.int8).reshape(16, 16)))
    bad = tmp_path / "bad.dcp"
    good[len(good) // 2] ^= 0x10
    bad.write_bytes(bytes(good))
    import subprocess

    with pytest.raises(subprocess.CalledProcessError) as err:
        run_arch(arch, [built(arch, "dc_decode"), bad, tmp_path / "out.raw"])
    assert err.value.returncode == 1 and "bad.dcp" in err.value.stderr
    assert not (tmp_path / "out.raw").exists()


def test_subbyte_and_bfloat16_decode_identically_on_arm(arm_env, tmp_path):
    """§13 int4 / int2 (TFLite's packed bytes) and bfloat16 (§12): the dc_decode tool's output on
    aarch64 and armv7 equals the TFLite bytes the x86 side expects."""
    import ml_dtypes

    from dc_keras import codec

    rng = np.random.default_rng(7)
    cases = {
        "int4_odd": rng.integers(-8, 8, 1001).astype(ml_dtypes.int4),
        "int4_sparse": np.where(rng.random((40, 33)) < 0.1, rng.integers(-8, 8, (40, 33)), 0).astype(ml_dtypes.int4),
        "int2": rng.integers(-2, 2, 2003).astype(ml_dtypes.int2),
        "uint4": rng.integers(0, 16, (17, 9)).astype(ml_dtypes.uint4),
        "bf16_planes": rng.normal(0, 1, (100, 30)).astype(ml_dtypes.bfloat16),
    }
    expected = {}
    for name, a in cases.items():
        data = codec.encode(a)
        (tmp_path / f"{name}.dcp").write_bytes(data)
        code = codec.info(data)["dtype_code"]
        expected[name] = codec.pack_subbyte(a, code) if a.dtype.itemsize == 1 else a.tobytes()
    for arch in ("host", "aarch64", "armv7"):
        argv = [built(arch, "dc_decode")]
        for name in cases:
            argv += [tmp_path / f"{name}.dcp", tmp_path / f"{name}.{arch}.raw"]
        run_arch(arch, argv)
        for name in cases:
            assert (tmp_path / f"{name}.{arch}.raw").read_bytes() == expected[name], (arch, name)
