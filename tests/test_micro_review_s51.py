"""Review of the microcontroller user's journey (s51): docs/microcontrollers.md read as an embedded
engineer with a Cortex-M board and TFLite Micro reads it, the kernel (tflite_kernels/micro/) built
as the doc says with fewer decoder features, and the traps of such a build.

A firmware builds dc_codec.c with DC_CODEC_NO_* options to save flash (the doc's *Leaving decoder
features out*). A packed model that needs a left-out layout was refused in Prepare with "layout L /
type T is left out of this dc_codec.c build (DC_CODEC_NO_* / DC_CODEC_MINIMAL)": the option to
drop was left for the engineer to look up from a layout number. The kernel now names it (layout 4:
DC_CODEC_NO_FLOAT_PLANES, ...; an int64 tensor in the integer-planes layout both DC_CODEC_NO_64BIT
and DC_CODEC_NO_INT_PLANES, since the kernel is compiled apart from dc_codec.c and cannot know
which one the build set). An int4 tensor in a DC_CODEC_NO_SUBBYTE build was sent to rebuild
dc_codec.c, after which the kernel refused it anyway ("the TFLM kernel does not decode int4
tensors"): that message now comes first, the same as a full build's.

The kernel is driven through its registration by tools/mcu/tflm_mock_ctx.c (TFLM's calls with a
stand-in context), linked with dc_codec.c compiled with each option."""
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import ml_dtypes
import numpy as np
import pytest

import _cbuild
import _docs
from dc_keras import codec

ROOT = _docs.ROOT
K = os.path.join(ROOT, "tflite_kernels")
STRIP = "-DTF_LITE_STRIP_ERROR_STRINGS"
TFLITE_TYPES = {np.dtype(np.float32): 1, np.dtype(np.int32): 2, np.dtype(np.int64): 4, np.dtype(np.int8): 9,
                np.dtype(ml_dtypes.int4): 18}
BUILDS = {"full": [], "no_planes": ["-DDC_CODEC_NO_FLOAT_PLANES"], "no_grouped": ["-DDC_CODEC_NO_GROUPED"],
          "no_context": ["-DDC_CODEC_NO_CONTEXT"], "no_64bit": ["-DDC_CODEC_NO_64BIT"],
          "no_int_planes": ["-DDC_CODEC_NO_INT_PLANES"], "no_subbyte": ["-DDC_CODEC_NO_SUBBYTE"],
          "minimal": ["-DDC_CODEC_MINIMAL"], "minimal_strip": ["-DDC_CODEC_MINIMAL", STRIP],
          "full_strip": [STRIP], "small_crc": ["-DDC_CODEC_MINIMAL", "-DDC_CRC_SMALL_TABLE"]}
FIX = ", left out of this dc_codec.c build: rebuild without that option, or pack with --decoder minimal or "


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    """run(build, packed, raw, tag, *args, mode=0) -> ({key: words}, kernel messages): tools/mcu/tflm_mock_ctx.c with the
    kernel and dc_codec.c compiled (-Wall -Wextra -Werror) with BUILDS[build]'s options."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    assert cc, "needs a C compiler (apt install gcc)"
    d = tmp_path_factory.mktemp("mock_builds")

    def build(name):
        r = _cbuild.build(cc, ["-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", *BUILDS[name], f"-I{K}/include",
                               f"-I{K}/src", f"-I{K}/micro"],
                          [os.path.join(ROOT, "tools", "mcu", "tflm_mock_ctx.c"),
                           os.path.join(K, "micro", "huffdecode_tflm.c"), os.path.join(K, "src", "dc_codec.c")],
                          d / name)
        assert r.returncode == 0 and not r.stderr.strip(), (name, r.stderr[-3000:])

    with ThreadPoolExecutor(min(len(BUILDS), os.cpu_count() or 1)) as pool:
        list(pool.map(build, BUILDS))

    def run(name, packed, raw, tag, *args, mode=0):
        p, q = d / f"{name}_{tag}.p", d / f"{name}_{tag}.r"
        p.write_bytes(packed)
        q.write_bytes(raw.tobytes())
        r = subprocess.run([str(d / name), str(mode), str(p), str(q), str(TFLITE_TYPES[raw.dtype]),
                            *map(str, raw.shape), *args],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and not r.stderr.strip(), (name, r.returncode, r.stdout, r.stderr[-3000:])
        facts = {ln.split()[0]: ln.split()[1:] for ln in r.stdout.splitlines() if not ln.startswith("log ")}
        return facts, [ln[4:] for ln in r.stdout.splitlines() if ln.startswith("log ")]
    return run


def _tensors():
    """{name: (raw array, packed bytes)}, each in the layout / type a DC_CODEC_NO_* option leaves out."""
    rng = np.random.default_rng(0)
    out = {
        "grouped": ((rng.integers(0, 4, (64, 64)) * np.arange(1, 65)[:, None]).astype(np.float32),
                    dict(layout="grouped_dense", axis=0)),
        "planes": (rng.standard_normal((64, 64)).astype(np.float32), dict(layout="float_planes")),
        "context": (np.where(rng.random((64, 64)) < 0.2, rng.integers(-8, 8, (64, 64)), 0).astype(np.float32),
                    dict(layout="context_sparse")),
        "int64": (rng.integers(-4, 4, (64, 64)).astype(np.int64), dict(layouts=("dense", "sparse"))),
        "int64_planes": (rng.integers(-2 ** 40, 2 ** 40, (64, 64)).astype(np.int64), dict(layout="int_planes")),
        "int32_planes": (rng.integers(-2 ** 20, 2 ** 20, (64, 64)).astype(np.int32), dict(layout="int_planes")),
        "int4": (rng.integers(-4, 4, (64, 64)).astype(ml_dtypes.int4), {}),
        # §18 (s56): a pruned float32 kernel with tfmot's -0.0s; its left-out message through DC_CODEC_MINIMAL
        # (the same code path as DC_CODEC_NO_SPARSE_PLANES, without a build of its own for make test's budget)
        "sparse_planes": (np.where(rng.random((64, 64)) < 0.2, rng.standard_normal((64, 64)),
                                   np.where(rng.random((64, 64)) < 0.5, -0.0, 0.0)).astype(np.float32),
                          dict(layout="sparse_planes")),
    }
    return {name: (raw, codec.encode(raw, **kw)) for name, (raw, kw) in out.items()}


TENSORS = _tensors()
# (tensor, build) -> what the kernel names after "packed tensor not readable here: "
NAMED = {
    ("planes", "no_planes"): "layout 4 (DC_CODEC_NO_FLOAT_PLANES or DC_CODEC_MINIMAL)",
    ("planes", "minimal"): "layout 4 (DC_CODEC_NO_FLOAT_PLANES or DC_CODEC_MINIMAL)",
    ("grouped", "no_grouped"): "layout 2/3 (DC_CODEC_NO_GROUPED or DC_CODEC_MINIMAL)",
    ("grouped", "minimal"): "layout 2/3 (DC_CODEC_NO_GROUPED or DC_CODEC_MINIMAL)",
    ("context", "no_context"): "layout 5 (DC_CODEC_NO_CONTEXT or DC_CODEC_MINIMAL)",
    ("int32_planes", "no_int_planes"): "layout 6 (DC_CODEC_NO_INT_PLANES or DC_CODEC_MINIMAL)",
    ("int64", "no_64bit"): "int64 (DC_CODEC_NO_64BIT or DC_CODEC_MINIMAL)",
    ("int64", "minimal"): "int64 (DC_CODEC_NO_64BIT or DC_CODEC_MINIMAL)",
    ("int64_planes", "no_64bit"): "int64 (DC_CODEC_NO_64BIT) or layout 6 (DC_CODEC_NO_INT_PLANES)",
    ("int64_planes", "no_int_planes"): "int64 (DC_CODEC_NO_64BIT) or layout 6 (DC_CODEC_NO_INT_PLANES)",
    ("sparse_planes", "minimal"): "layout 7 (DC_CODEC_NO_SPARSE_PLANES or DC_CODEC_MINIMAL)",
}


def test_the_tensors_are_in_the_layouts_the_options_leave_out():
    got = {name: (codec.info(p)["layout"], str(codec.info(p)["dtype"])) for name, (_, p) in TENSORS.items()}
    assert got == {"grouped": ("grouped_dense", "float32"), "planes": ("float_planes", "float32"),
                   "context": ("context_sparse", "float32"), "int64": ("dense", "int64"),
                   "int64_planes": ("int_planes", "int64"), "int32_planes": ("int_planes", "int32"),
                   "int4": ("dense", "int4"), "sparse_planes": ("sparse_planes", "float32")}, got


@pytest.mark.parametrize("tensor,build", sorted(NAMED))
def test_a_left_out_layout_or_type_is_refused_naming_the_option(mock, tensor, build):
    """Before: "layout 4 / type 0 is left out of this dc_codec.c build (DC_CODEC_NO_* /
    DC_CODEC_MINIMAL): rebuild it without that, ..." for every such tensor."""
    raw, packed = TENSORS[tensor]
    facts, log = mock(build, packed, raw, tensor)
    assert facts["prepare"] == ["1"] and facts["prepare_persistent"] == ["0"], facts
    fix = FIX + ("--format-version 2" if "int64" in tensor else "--layouts")  # int64: a type, not a layout
    assert log == [f"HuffDecode (output tensor 1): packed tensor not readable here: {NAMED[tensor, build]}{fix}"], log
    assert len(log[0]) <= 255, len(log[0])  # TFLM's Cortex-M log line


@pytest.mark.parametrize("tensor", sorted(TENSORS))
def test_a_full_build_decodes_what_the_options_leave_out_bit_exact(mock, tensor):
    """The same tensors decode in a build without options (int4 excepted: no TFLM type), so each refusal
    above is the option's. The mock compares the decoded output with the array byte for byte."""
    raw, packed = TENSORS[tensor]
    facts, log = mock("full", packed, raw, tensor)
    if tensor == "int4":
        assert facts["prepare"] == ["1"] and len(log) == 1 and "does not decode int4 tensors" in log[0], (facts, log)
        return
    assert facts["prepare"] == ["0"] and not log, (facts, log)
    assert facts["invoke1"][:3] == ["0", "decoded", "1"], facts


def test_int4_in_a_build_without_subbyte_gets_the_message_of_a_full_build(mock):
    """Before: "layout 0 / type 17 is left out of this dc_codec.c build ...: rebuild it without that",
    and the rebuilt firmware then failed with "the TFLM kernel does not decode int4 tensors"."""
    raw, packed = TENSORS["int4"]
    full = mock("full", packed, raw, "int4")
    for build in ("no_subbyte", "minimal"):
        got = mock(build, packed, raw, "int4")
        assert got == full, (build, got, full)
    assert full[1] == ["HuffDecode (output tensor 1): the TFLM kernel does not decode int4 tensors (it decodes "
                       "float32, float16, int32, int16, int8, uint8, int64 and bool ones); run this model unpacked "
                       "on TFLM (dc-keras unpack IN OUT)"], full


@pytest.mark.parametrize("tensor", ["planes", "int64", "int4"])
def test_a_release_build_fails_the_same_way_without_a_message(mock, tensor):
    raw, packed = TENSORS[tensor]
    for build, strip in (("minimal", "minimal_strip"), ("full", "full_strip")):
        facts, log = mock(build, packed, raw, tensor)
        stripped, slog = mock(strip, packed, raw, tensor)
        assert stripped == facts and not slog, (build, stripped, facts, slog)


def test_the_doc_quotes_the_message_and_names_every_option_the_kernel_names():
    doc = " ".join(_docs.read("docs/microcontrollers.md").split())
    quoted = ("HuffDecode (output tensor N): packed tensor not readable here: "
              f"{NAMED['planes', 'no_planes']}{FIX}--layouts")
    assert quoted in doc
    assert '"int64 (DC_CODEC_NO_64BIT) or layout 6 (DC_CODEC_NO_INT_PLANES)"' in doc
    with open(os.path.join(K, "micro", "huffdecode_tflm.c")) as f:
        kernel = f.read()
    body = re.search(r"static const char\* left_out_by\(.*?\n\}", kernel, re.S).group(0)
    named = set(re.findall(r"DC_CODEC_NO_[A-Z0-9_]+", body))
    assert named == {"DC_CODEC_NO_GROUPED", "DC_CODEC_NO_FLOAT_PLANES", "DC_CODEC_NO_CONTEXT",
                     "DC_CODEC_NO_INT_PLANES", "DC_CODEC_NO_SPARSE_PLANES", "DC_CODEC_NO_64BIT"}, named
    for option in named:
        assert f"`{option}`" in doc, option


@pytest.mark.parametrize("mode", [0, 1])
def test_the_small_crc_table_option_checks_and_decodes_as_the_default(mock, mode):
    """DC_CRC_SMALL_TABLE (the doc's *Code size*: one 1 KiB CRC table instead of 8 KiB, the flash
    option with DC_CODEC_MINIMAL) ran only in test_mcu.sh's decode counts; here through the kernel:
    a sparse int8 tensor decodes bit-exact in both modes and corrupt bytes fail Prepare with the
    default build's message."""
    rng = np.random.default_rng(5)
    raw = np.where(rng.random((64, 96)) < 0.2, rng.integers(-8, 8, (64, 96)), 0).astype(np.int8)
    packed = codec.encode(raw, layouts=("dense", "sparse"))
    got = {b: mock(b, packed, raw, f"crc{mode}", mode=mode) for b in ("minimal", "small_crc")}
    assert got["small_crc"] == got["minimal"] and got["minimal"][0]["prepare"] == ["0"], got
    assert got["minimal"][0]["invoke1"][:3] == ["0", "decoded", "1"], got
    bad = {b: mock(b, packed, raw, f"crc{mode}", "--corrupt", mode=mode) for b in ("minimal", "small_crc")}
    assert bad["small_crc"] == bad["minimal"], bad
    assert bad["small_crc"][0]["prepare"] == ["1"] and len(bad["small_crc"][1]) == 1, bad
    assert "invalid packed tensor: checksum mismatch" in bad["small_crc"][1][0], bad


def test_micro_makefile_rebuilds_when_the_firmware_options_change(tmp_path):
    """The doc's host check of a firmware build (`make -C tflite_kernels/micro BUILD=...
    CFLAGS=-DDC_CODEC_MINIMAL`) into a BUILD dir that held a default build said "Nothing to be done"
    and left the full decoder in the library: the model then ran on the host and failed on the board.
    The library now depends on a stamp of the compiler and flags; the same flags again rebuild
    nothing."""
    env = dict(os.environ, MAKEFLAGS="")
    b = tmp_path / "b"

    def make(*flags):
        r = subprocess.run(["make", "-s", "-C", os.path.join(K, "micro"), f"BUILD={b}", *flags],
                           capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0 and not r.stderr.strip(), r.stderr[-3000:]
        lib = b / "libdc_huffdecode_tflm.so"
        return lib.read_bytes(), lib.stat().st_mtime_ns

    # dc_strerror's text for DC_ERR_UNSUPPORTED names the options the decoder was built with
    minimal_text = b"type or layout left out of this build by DC_CODEC_MINIMAL"
    full, _ = make()
    assert minimal_text not in full
    minimal, t = make("CFLAGS=-DDC_CODEC_MINIMAL")
    assert minimal_text in minimal
    again, t2 = make("CFLAGS=-DDC_CODEC_MINIMAL")
    assert t2 == t and again == minimal
    back, _ = make()
    assert minimal_text not in back


def test_the_doc_cpp_registration_snippet_compiles_against_tflm(tmp_path):
    """The doc's C++ registration block with the headers it includes (it named only
    huffdecode_tflm_register.h, which does not bring MicroMutableOpResolver), compiled for Cortex-M4
    with the build block's C++ flags. Needs a TFLM tree with its downloads (DC_TFLM_TREE, as
    test_docs_as_written's build block) and arm-none-eabi-g++ with libstdc++."""
    blocks = [c for lang, _, c in _docs.blocks("docs/microcontrollers.md") if lang == "c++" and "AddCustom" in c]
    assert len(blocks) == 1, blocks
    lines = blocks[0].splitlines()
    head = [ln for ln in lines if ln.startswith("#include")]
    assert '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"' in head, head
    tflm = os.environ.get("DC_TFLM_TREE")
    if not (tflm and shutil.which("arm-none-eabi-g++")):
        pytest.skip("needs DC_TFLM_TREE (a TFLM tree with tools/make/downloads) and arm-none-eabi-g++")
    body = [ln for ln in lines if not ln.startswith("#include")]
    src = tmp_path / "app.cc"
    src.write_text("\n".join(head) + "\nbool setup();\nbool setup() {\n" + "\n".join(body)
                   + "\n  return resolver.AddCustom(\"HuffDecode\", dc_keras::Register_HUFFDECODE(\n"
                   "      DC_TFLM_DECODE_EACH_INVOKE)) != kTfLiteOk;  // the doc: a second one fails\n}\n")
    dl = os.path.join(tflm, "tensorflow", "lite", "micro", "tools", "make", "downloads")
    r = subprocess.run(["arm-none-eabi-g++", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16",
                        "-std=c++17", "-Os", "-fno-rtti", "-fno-exceptions", "-DTF_LITE_STATIC_MEMORY", "-Wall",
                        "-Wextra", "-Wno-unused-parameter", "-Werror", f"-I{K}/micro", f"-I{K}/include", f"-I{tflm}",
                        f"-I{dl}/flatbuffers/include", f"-I{dl}/gemmlowp", f"-I{dl}/ruy", "-c", "-o",
                        str(tmp_path / "app.o"), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stderr[-3000:], src.read_text())


def test_kernel_and_decoder_compile_warning_free_big_endian(tmp_path):
    """The doc's *Byte order*: both C files compile warning-free for a big-endian Cortex-M4 (nothing
    runs there: neither TFLM nor the tests)."""
    if not shutil.which("arm-none-eabi-gcc"):
        pytest.skip("needs arm-none-eabi-gcc (make test-mcu installs it as root)")
    for src in (os.path.join(K, "src", "dc_codec.c"), os.path.join(K, "micro", "huffdecode_tflm.c")):
        r = _cbuild.compile_one("arm-none-eabi-gcc", ["-mcpu=cortex-m4", "-mthumb", "-mbig-endian", "-std=c99", "-Os",
                                                      "-Wall", "-Wextra", "-Wshadow", "-Wdouble-promotion", "-Wvla",
                                                      "-Werror", f"-I{K}/include", f"-I{K}/src", f"-I{K}/micro"],
                                src, str(tmp_path / (os.path.basename(src) + ".o")))
        assert r.returncode == 0 and not r.stderr.strip(), (src, r.stderr[-3000:])
    doc = " ".join(_docs.read("docs/microcontrollers.md").split())
    assert "compile warning-free for a big-endian Cortex-M4 (`-mbig-endian`), but nothing has run big-endian on a " \
        "Cortex-M" in doc


@pytest.mark.parametrize("opt", ["-O2", "-Os"])
@pytest.mark.parametrize("cpu", ["m4", "m0"])
def test_the_doc_names_every_library_function_the_two_objects_call(cpu, opt, tmp_path):
    """*Registering the op* lists what the objects need from the C and runtime libraries; for Cortex-M0
    it named __aeabi_uidiv and __aeabi_lmul but not __clzdi2 (both levels) nor, at -Os,
    __aeabi_llsl, __aeabi_llsr and __gnu_thumb1_case_uqi (`arm-none-eabi-nm -u` of both objects)."""
    if not shutil.which("arm-none-eabi-gcc"):
        pytest.skip("needs arm-none-eabi-gcc (make test-mcu installs it as root)")
    flags = {"m4": ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
             "m0": ["-mcpu=cortex-m0", "-mthumb"]}[cpu]
    doc = _docs.read("docs/microcontrollers.md")
    para = doc[doc.index("Neither object needs `malloc`"):]
    para = para[:para.index("\n\n")]
    undefined = set()
    for src in (os.path.join(K, "src", "dc_codec.c"), os.path.join(K, "micro", "huffdecode_tflm.c")):
        obj = str(tmp_path / (os.path.basename(src) + ".o"))
        r = _cbuild.compile_one("arm-none-eabi-gcc", [*flags, "-std=c99", opt, "-ffunction-sections", "-fdata-sections",
                                                      f"-I{K}/include", f"-I{K}/src", f"-I{K}/micro"], src, obj)
        assert r.returncode == 0, r.stderr[-3000:]
        nm = subprocess.run(["arm-none-eabi-nm", "-u", obj], capture_output=True, text=True, check=True).stdout
        undefined |= {ln.split()[-1] for ln in nm.splitlines() if ln.strip()}
    undefined = {u for u in undefined if not u.startswith("dc_")}  # the decoder's own, between the two
    assert {"memcpy", "memset", "__aeabi_uldivmod"} <= undefined, undefined
    missing = sorted(u for u in undefined if f"`{u}`" not in para)
    assert not missing, (missing, para)


def _align_models(d):
    """A clustered, pruned float MLP ending in softmax (the LeNet firmware's ops) as the three files
    tools/mcu/tflm_m4/run_align.sh reads: int8.packed.tflite, float.packed.tflite, int8.tflite."""
    import warnings

    import keras

    from dc_keras import export

    rng = np.random.default_rng(0)
    m = keras.Sequential([keras.Input((32,)), keras.layers.Dense(128, activation="relu"),
                          keras.layers.Dense(10, activation="softmax")])
    values = np.array([-0.5, -0.25, 0.25, 0.5], np.float32)
    for layer in m.layers:
        k, b = layer.get_weights()
        layer.set_weights([np.where(rng.random(k.shape) < 0.3, rng.choice(values, k.shape), 0).astype(np.float32), b])
    with warnings.catch_warnings():  # small tensors stay raw: expected
        warnings.simplefilter("ignore", UserWarning)
        f = export.to_tflite(m, pack=False)
        q = export.to_tflite(m, pack=False, quantize="int8", representative_data=rng.random((64, 32), dtype=np.float32))
        files = {"float.packed": export.pack(f), "int8.packed": export.pack(q), "int8": q}
    for name, data in files.items():
        (d / f"{name}.tflite").write_bytes(data)


def test_a_model_array_off_its_alignment_faults_on_cortex_m4(tmp_path):
    """*Alignment*: the model array must be aligned for TFLM, on Cortex-M4 too. run_align.sh (TFLM
    90b983c for Cortex-M4 under qemu mps2-an386) runs packed and unpacked models copied to 4-byte
    aligned offsets bit-exact, and the model at offset 1 ends in a UsageFault for an unaligned access
    with no message (in the LeNet: flatbuffers reading SOFTMAX's float option with VLDR in
    AllocateTensors, the stacked PC in flatbuffers::Table::GetField<float>). Needs
    DC_TFLM_TREE, arm-none-eabi-g++ with its C++ library and qemu-system-arm; ~2 min."""
    tflm = os.environ.get("DC_TFLM_TREE")
    if not (tflm and shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-g++")):
        pytest.skip("needs DC_TFLM_TREE (a TFLM tree with tools/make/downloads), arm-none-eabi-g++, qemu-system-arm")
    probe = subprocess.run(["arm-none-eabi-g++", "-mcpu=cortex-m4", "-mthumb", "-x", "c++", "-fsyntax-only", "-"],
                           input="#include <cstdarg>\n", capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("arm-none-eabi-g++ without its C++ library (libstdc++-arm-none-eabi-newlib)")
    models = tmp_path / "models"
    models.mkdir()
    _align_models(models)
    r = subprocess.run([os.path.join(ROOT, "tools", "mcu", "tflm_m4", "run_align.sh"), tflm, str(tmp_path / "w")],
                       capture_output=True, text=True, timeout=1800, env=dict(os.environ, MODELS=str(models)))
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("TFLM_M4_ALIGN ")]
    assert len(lines) == 17 and all("output" in ln for ln in lines[:16]), lines
    assert "offset 1: FAULT: CFSR=01000000" in lines[16], lines


def test_the_cnn_op_lists_and_resolver_sizes_in_the_doc_are_the_models():
    """*Convolutional models* tells the engineer which ops to add and how many resolver slots to give
    (`MicroMutableOpResolver<7>` for the DS-CNN, 8 for the autoencoder); nothing compared them with the
    models test_micro_cnn.py builds as the doc describes. ~40 s (two short trainings)."""
    from tensorflow.lite.python import schema_py_generated as schema

    import test_micro_cnn
    from dc_keras import _flatbuffer as fb

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    doc = " ".join(_docs.read("docs/microcontrollers.md").split())
    for name, title in (("ds_cnn", "**DS-CNN**"), ("autoencoder", "**Convolutional autoencoder**")):
        bullet = doc[doc.index(title):]
        m = re.search(r"Ops: ((?:`[A-Z_0-9]+`, )*`[A-Z_0-9]+`) \+ `HuffDecode` \((?:a `MicroMutableOpResolver<(\d+)>`|(\d+) slots)\)",
                      bullet)
        assert m, bullet[:400]
        doc_ops = set(re.findall(r"`([A-Z_0-9]+)`", m.group(1)))
        slots = int(m.group(2) or m.group(3))
        _, packed, _ = test_micro_cnn._compressed_int8(name)
        model = fb.read_model(packed)
        ops = {"HuffDecode" if fb.is_huffdecode_code(c) else names[max(c.builtinCode, c.deprecatedBuiltinCode)]
               for c in (model.operatorCodes[op.opcodeIndex] for sg in model.subgraphs for op in sg.operators)}
        assert ops == doc_ops | {"HuffDecode"}, (name, sorted(ops), sorted(doc_ops))
        assert slots == len(ops), (name, slots, sorted(ops))


def test_a_model_packed_with_strip_strings_runs_bit_exact_in_tflm(micro_lib, tmp_path):
    """`--strip-strings` (the doc's *Packing a model for a microcontroller*) drops every tensor name; the
    op's custom code, which TFLM resolves it by, stays. Nothing ran such a model in TFLM: here the
    stripped and the named packed MLP give the unpacked model's output bytes in both modes, and a
    per-layer mode set by `@T` (set_decode_mode.py's name for a nameless tensor) runs too."""
    import json
    import sys
    import warnings

    import keras

    from dc_keras import _flatbuffer as fb
    from dc_keras import export

    sys.path.insert(0, os.path.join(ROOT, "tools", "mcu"))
    import set_decode_mode
    import tflm_env

    rng = np.random.default_rng(1)
    m = keras.Sequential([keras.Input((32,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])
    values = np.array([-0.5, -0.25, 0.25, 0.5], np.float32)
    for layer in m.layers:
        k, b = layer.get_weights()
        layer.set_weights([np.where(rng.random(k.shape) < 0.3, rng.choice(values, k.shape), 0).astype(np.float32), b])
    with warnings.catch_warnings():  # the small tensors stay raw: expected
        warnings.simplefilter("ignore", UserWarning)
        plain = export.to_tflite(m, pack=False)
        named, stripped = export.pack(plain), export.pack(plain, strip_strings=True)
    assert b"dense" in named and b"dense" not in stripped and b"HuffDecode" in stripped
    ops = set_decode_mode._outputs(fb.read_model(stripped))
    assert len(ops) == 2 and all(name is None or name == "" for _, _, _, name in ops), ops
    s, _, t, _ = ops[0]
    files = {"plain": plain, "named": named, "stripped": stripped,
             "mixed": set_decode_mode.set_modes(stripped, {f"@{s}:{t}": 1}, default=0)}
    for name, data in files.items():
        (tmp_path / f"{name}.tflite").write_bytes(data)
    np.save(tmp_path / "x.npy", rng.random((4, 32), dtype=np.float32))
    once, each = "DcKerasRegisterHuffDecodeTflm", "DcKerasRegisterHuffDecodeTflmEachInvoke"
    runs = [("plain", []), ("named", [once]), ("named", [each]), ("stripped", [once]), ("stripped", [each]),
            ("mixed", [once])]
    jobs = [{"model": str(tmp_path / f"{n}.tflite"), "registerers": reg, "input": str(tmp_path / "x.npy"),
             "out": str(tmp_path / f"{i}.npy")} for i, (n, reg) in enumerate(runs)]
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    r = subprocess.run([tflm_env.ensure(), os.path.join(ROOT, "tools", "mcu", "tflm_run.py"), "--lib", micro_lib,
                        "--jobs", str(tmp_path / "jobs.json")], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(r.stdout.strip().splitlines()[-1])
    assert all(res["ok"] for res in results), results
    ref = np.load(tmp_path / "0.npy")
    assert ref.size and np.isfinite(ref).all()
    for i in range(1, len(runs)):
        assert np.load(tmp_path / f"{i}.npy").tobytes() == ref.tobytes(), runs[i]
