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
          "full_strip": [STRIP]}
FIX = ", left out of this dc_codec.c build: rebuild it without that option, or pack with --decoder minimal or --layouts"


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    """run(build, packed, raw) -> ({key: words}, kernel messages): tools/mcu/tflm_mock_ctx.c with the
    kernel and dc_codec.c compiled (-Wall -Wextra -Werror) with BUILDS[build]'s options."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    assert cc, "needs a C compiler (apt install gcc)"
    d = tmp_path_factory.mktemp("mock_builds")

    def build(name):
        r = subprocess.run([cc, "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", *BUILDS[name], f"-I{K}/include",
                            f"-I{K}/src", f"-I{K}/micro", "-o", str(d / name),
                            os.path.join(ROOT, "tools", "mcu", "tflm_mock_ctx.c"),
                            os.path.join(K, "micro", "huffdecode_tflm.c"), os.path.join(K, "src", "dc_codec.c")],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0 and not r.stderr.strip(), (name, r.stderr[-3000:])

    with ThreadPoolExecutor(min(len(BUILDS), os.cpu_count() or 1)) as pool:
        list(pool.map(build, BUILDS))

    def run(name, packed, raw, tag):
        p, q = d / f"{name}_{tag}.p", d / f"{name}_{tag}.r"
        p.write_bytes(packed)
        q.write_bytes(raw.tobytes())
        r = subprocess.run([str(d / name), "0", str(p), str(q), str(TFLITE_TYPES[raw.dtype]), *map(str, raw.shape)],
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
}


def test_the_tensors_are_in_the_layouts_the_options_leave_out():
    got = {name: (codec.info(p)["layout"], str(codec.info(p)["dtype"])) for name, (_, p) in TENSORS.items()}
    assert got == {"grouped": ("grouped_dense", "float32"), "planes": ("float_planes", "float32"),
                   "context": ("context_sparse", "float32"), "int64": ("dense", "int64"),
                   "int64_planes": ("int_planes", "int64"), "int32_planes": ("int_planes", "int32"),
                   "int4": ("dense", "int4")}, got


@pytest.mark.parametrize("tensor,build", sorted(NAMED))
def test_a_left_out_layout_or_type_is_refused_naming_the_option(mock, tensor, build):
    """Before: "layout 4 / type 0 is left out of this dc_codec.c build (DC_CODEC_NO_* /
    DC_CODEC_MINIMAL): rebuild it without that, ..." for every such tensor."""
    raw, packed = TENSORS[tensor]
    facts, log = mock(build, packed, raw, tensor)
    assert facts["prepare"] == ["1"] and facts["prepare_persistent"] == ["0"], facts
    assert log == [f"HuffDecode (output tensor 1): packed tensor not readable here: {NAMED[tensor, build]}{FIX}"], log
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
              f"{NAMED['planes', 'no_planes']}{FIX}")
    assert quoted in doc
    assert '"int64 (DC_CODEC_NO_64BIT) or layout 6 (DC_CODEC_NO_INT_PLANES)"' in doc
    with open(os.path.join(K, "micro", "huffdecode_tflm.c")) as f:
        kernel = f.read()
    body = re.search(r"static const char\* left_out_by\(.*?\n\}", kernel, re.S).group(0)
    named = set(re.findall(r"DC_CODEC_NO_[A-Z0-9_]+", body))
    assert named == {"DC_CODEC_NO_GROUPED", "DC_CODEC_NO_FLOAT_PLANES", "DC_CODEC_NO_CONTEXT",
                     "DC_CODEC_NO_INT_PLANES", "DC_CODEC_NO_64BIT"}, named
    for option in named:
        assert f"`{option}`" in doc, option
