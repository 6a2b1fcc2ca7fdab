"""Review of the microcontroller user's journey (s54): the mistakes an embedded engineer makes putting a
packed model on a Cortex-M part with TensorFlow Lite Micro, and whether each ends in one clear error.

A model array off its 16-byte alignment was documented only: on Cortex-M4 the LeNet ended in a
UsageFault in AllocateTensors (flatbuffers reading SOFTMAX's float option), before any HuffDecode
ran, and nothing in the op could see the array. huffdecode_tflm_check.c now gives the firmware
DcTflmCheckModel (huffdecode_tflm.h), run before tflite::GetModel: alignment, the TFL3 identifier,
the Model table, its subgraph and buffer vectors and every Buffer's data inside the array (a
truncated or overwritten image), the schema version, buffers stored after the flatbuffer. And the
kernel's Prepare refuses a packed input off its 4-byte alignment (the model array off its own) where
TFLM got that far (a float MLP's options hold no float: it reaches HuffDecode first). Custom options
the kernel cannot read (a newer dc_keras, an editor) named neither the tensor nor the fix.

Cheap: the check is compiled with the host cc (ASan + UBSan where the compiler has them) and run on the
packed files of tests/data; the kernel through tools/mcu/tflm_mock_ctx.c."""
import os
import re
import shutil
import struct
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import _docs
from dc_keras import codec, export

ROOT = _docs.ROOT
K = os.path.join(ROOT, "tflite_kernels")
DATA = os.path.join(ROOT, "tests", "data")
CHECK_C = os.path.join(K, "micro", "huffdecode_tflm_check.c")
CODES = {"OK": 0, "MISSING": 1, "MISALIGNED": 2, "NOT_TFLITE": 3, "DAMAGED": 4, "SCHEMA_VERSION": 5,
         "EXTERNAL_BUFFERS": 6, "NO_SUBGRAPH": 7}

DRIVER = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "huffdecode_tflm.h"

/* check FILE OFFSET SIZE: the file at OFFSET bytes past a 16-byte aligned address, SIZE bytes
 * passed (-1: the file's); fuzz FILE SEED N: N copies with 1-4 bytes overwritten or the size cut,
 * each in an allocation of exactly its size (ASan sees any read past it): the codes' counts */
static unsigned char* slurp(const char* path, size_t* n) {
  FILE* f = fopen(path, "rb");
  unsigned char* p;
  if (f == NULL || fseek(f, 0, SEEK_END) != 0) exit(2);
  *n = (size_t)ftell(f);
  rewind(f);
  p = (unsigned char*)malloc(*n);
  if (p == NULL || fread(p, 1, *n, f) != *n) exit(2);
  fclose(f);
  return p;
}

int main(int argc, char** argv) {
  size_t n, i;
  unsigned char* file;
  if (argc < 5) return 2;
  file = slurp(argv[2], &n);
  if (strcmp(argv[1], "check") == 0) {
    size_t off = (size_t)atoi(argv[3]);
    long size = atol(argv[4]);
    unsigned char* raw = (unsigned char*)malloc(n + 32);
    unsigned char* base = raw + (16 - ((uintptr_t)raw & 15)) % 16;
    DcTflmModelCheck c;
    memcpy(base + off, file, n);
    c = DcTflmCheckModel(base + off, size < 0 ? n : (size_t)size);
    printf("%d %s\n", (int)c, DcTflmModelCheckMessage(c));
    free(raw);
  } else {
    uint32_t x = (uint32_t)atoi(argv[3]) * 2654435761u + 1;
    unsigned long counts[9] = {0};
    long it, iters = atol(argv[4]);
    for (it = 0; it < iters; ++it) {
      size_t size = n, k, flips;
      void* p = NULL;
      x ^= x << 13, x ^= x >> 17, x ^= x << 5;
      if (x % 8 == 0) size = x / 8 % n; /* cut */
      if (posix_memalign(&p, 16, size ? size : 1) != 0) return 2;
      memcpy(p, file, size);
      flips = x % 8 == 0 ? 0 : 1 + x / 8 % 4;
      for (k = 0; k < flips && size; ++k) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        /* half of them in the first 256 bytes, where the root table and its vectors begin */
        i = (x & 1 ? x / 2 % (size < 256 ? size : 256) : x / 2 % size);
        ((unsigned char*)p)[i] = (unsigned char)(x >> 24);
      }
      counts[DcTflmCheckModel(p, size)]++;
      free(p);
    }
    for (i = 0; i < 8; ++i) printf("%lu ", counts[i]);
    printf("\n");
  }
  free(file);
  return 0;
}
"""


def _sanitizers(cc):
    probe = subprocess.run([cc, "-fsanitize=address,undefined", "-x", "c", "-o", os.devnull, "-"],
                           input="int main(void){return 0;}\n", capture_output=True, text=True)
    return ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"] if probe.returncode == 0 else []


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    """run(*args) -> stdout of DRIVER compiled with huffdecode_tflm_check.c (-Wall -Wextra -Werror, sanitizers
    where the compiler has them)."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    assert cc, "needs a C compiler (apt install gcc)"
    d = tmp_path_factory.mktemp("check_model")
    (d / "driver.c").write_text(DRIVER)
    exe = d / "driver"
    r = subprocess.run([cc, "-std=c99", "-D_POSIX_C_SOURCE=200112L", "-O1", "-Wall", "-Wextra", "-Werror",
                        *_sanitizers(cc), f"-I{K}/micro", f"-I{K}/include", "-o", str(exe), str(d / "driver.c"),
                        CHECK_C], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr[-3000:]

    def run(*args):
        r = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and not r.stderr.strip(), (args, r.returncode, r.stderr[-3000:])
        return r.stdout.strip()
    return run


def _files(tmp_path):
    """{name: path}: tests/data's packed files, their unpacked forms, and one packed with external buffers."""
    out = {}
    for name in ("conv_int8_tail.packed", "zoo_lstm128.packed"):
        data = open(os.path.join(DATA, name + ".tflite"), "rb").read()
        out[name] = data
        out[name.replace(".packed", ".plain")] = export.unpack(data)
    out["external"] = export.pack(out["conv_int8_tail.plain"], buffers="external")
    paths = {}
    for name, data in out.items():
        paths[name] = tmp_path / f"{name}.tflite"
        paths[name].write_bytes(data)
    return paths


def _code(line):
    return int(line.split()[0])


def test_the_check_passes_aligned_models_and_refuses_every_offset_off_16(check, tmp_path):
    files = _files(tmp_path)
    for name, path in files.items():
        if name == "external":
            continue
        for off in (0, 16):
            assert check("check", path, off, -1) == "0 model array: OK", (name, off)
        for off in (1, 2, 4, 8, 12):
            got = check("check", path, off, -1)
            assert _code(got) == CODES["MISALIGNED"], (name, off, got)
            assert "declare it alignas(16)" in got and "HardFault" in got, got


def _version_field(data):
    """Where Model.version (field 0 of the root table) sits."""
    root = struct.unpack_from("<I", data, 0)[0]
    vt = root - struct.unpack_from("<i", data, root)[0]
    return root + struct.unpack_from("<H", data, vt + 4)[0]


def test_each_mistake_gets_its_code_and_a_message_naming_the_fix(check, tmp_path):
    files = _files(tmp_path)
    good = files["conv_int8_tail.packed"]
    data = good.read_bytes()
    cases = {}
    cases["truncated"] = (good, len(data) // 2)
    with zipfile.ZipFile(tmp_path / "zip.bin", "w") as z:  # e.g. the .keras file, a zip
        z.writestr("model.weights.h5", data)
    cases["not tflite"] = (tmp_path / "zip.bin", -1)
    v = bytearray(data)
    v[_version_field(data)] = 4
    (tmp_path / "v4.bin").write_bytes(bytes(v))
    cases["schema"] = (tmp_path / "v4.bin", -1)
    cases["external"] = (files["external"], -1)
    cases["tiny"] = (good, 7)
    want = {"truncated": ("DAMAGED", "truncated or damaged (flash it again)"),
            "not tflite": ("NOT_TFLITE", "no TFL3 identifier"),
            "schema": ("SCHEMA_VERSION", "schema version not 3"),
            "external": ("EXTERNAL_BUFFERS", "pack with --buffers inline"), "tiny": ("MISSING", "its size in bytes")}
    for case, (path, size) in cases.items():
        got = check("check", path, 0, size)
        code, words = want[case]
        assert _code(got) == CODES[code] and words in got, (case, got)
        assert len(got) - 2 < 256, got  # TFLM's Cortex-M log line


def test_the_check_reads_nothing_outside_the_array_on_damaged_images(check, tmp_path):
    """20,000 damaged copies of each packed file (1-4 bytes overwritten, or cut), each in an allocation
    of its exact size, under ASan and UBSan: no read outside, every copy answered with a code; the
    damage is caught where it touches the parts checked (others are TFLM's, or a packed tensor's CRC)."""
    files = _files(tmp_path)
    for name in ("conv_int8_tail.packed", "zoo_lstm128.packed"):
        counts = list(map(int, check("fuzz", files[name], 7, 20000).split()))
        assert sum(counts) == 20000, counts
        assert counts[CODES["OK"]] > 0 and counts[CODES["DAMAGED"]] > 1000, (name, counts)
        assert counts[CODES["MISALIGNED"]] == 0, counts


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    """run(*args, mode=0, strip=False) -> ({key: words}, kernel messages): tools/mcu/tflm_mock_ctx.c with the
    kernel (also as a release build) on a sparse float32 tensor."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    assert cc, "needs a C compiler (apt install gcc)"
    d = tmp_path_factory.mktemp("mock")

    def build(strip):
        r = subprocess.run([cc, "-std=c99", "-O0", "-Wall", "-Wextra", "-Werror",
                            *(["-DTF_LITE_STRIP_ERROR_STRINGS"] if strip else []), f"-I{K}/include", f"-I{K}/src",
                            f"-I{K}/micro", "-o", str(d / f"mock{int(strip)}"),
                            os.path.join(ROOT, "tools", "mcu", "tflm_mock_ctx.c"),
                            os.path.join(K, "micro", "huffdecode_tflm.c"), os.path.join(K, "src", "dc_codec.c")],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0 and not r.stderr.strip(), r.stderr[-3000:]

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(build, (False, True)))
    rng = np.random.default_rng(3)
    raw = np.where(rng.random((32, 48)) < 0.2, rng.integers(-8, 8, (32, 48)), 0).astype(np.float32)
    (d / "p.bin").write_bytes(codec.encode(raw))
    (d / "r.bin").write_bytes(raw.tobytes())

    def run(*args, mode=0, strip=False):
        r = subprocess.run([str(d / f"mock{int(strip)}"), str(mode), str(d / "p.bin"), str(d / "r.bin"), "1", "32",
                            "48", *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and not r.stderr.strip(), r.stderr[-3000:]
        facts = {ln.split()[0]: ln.split()[1:] for ln in r.stdout.splitlines() if not ln.startswith("log ")}
        return facts, [ln[4:] for ln in r.stdout.splitlines() if ln.startswith("log ")]
    return run


ALIGN_MSG = ("HuffDecode (output tensor 1): packed input 0 is not 4-byte aligned: the model array is not 16-byte "
             "aligned, which TFLM's loads need: declare it alignas(16) (as generate_cc_arrays.py does) or copy it "
             "to an aligned buffer")
OPTIONS_MSG = ("HuffDecode (output tensor 1): custom options must be empty or one byte (0: decode once, 1: decode "
               "every invoke): clear them (tools/mcu/set_decode_mode.py IN OUT --reset), or update this kernel if a "
               "newer dc_keras wrote them")


@pytest.mark.parametrize("mode", [0, 1])
def test_the_kernel_refuses_a_packed_input_off_its_alignment(mock, mode):
    """Before: decoded (the decoder reads bytes), and the model's other constants faulted in TFLM's
    kernels; aligned, the same tensor decodes."""
    facts, log = mock(mode=mode)
    assert facts["prepare"] == ["0"] and facts["invoke1"][:3] == ["0", "decoded", "1"] and not log, (facts, log)
    facts, log = mock("--misalign", mode=mode)
    assert facts["prepare"] == ["1"] and facts["prepare_persistent"] == ["0"], facts
    assert log == [ALIGN_MSG] and len(ALIGN_MSG) < 256, log
    stripped, slog = mock("--misalign", mode=mode, strip=True)
    assert stripped == facts and not slog, (stripped, slog)


@pytest.mark.parametrize("options", [["2"], ["0", "0"], ["1", "0", "0", "0"]])
def test_options_the_kernel_cannot_read_name_the_tensor_and_the_fix(mock, options):
    """Before: "HuffDecode: custom options must be empty or one byte (...)", no tensor, no fix."""
    facts, log = mock("--options", *options)
    assert facts["prepare"] == ["1"] and log == [OPTIONS_MSG] and len(OPTIONS_MSG) < 256, (facts, log)
    for byte in ("0", "1"):  # what set_decode_mode.py writes
        facts, log = mock("--options", byte)
        assert facts["prepare"] == ["0"] and not log, (byte, facts, log)


def test_the_doc_quotes_the_messages_and_the_usage():
    doc = " ".join(_docs.read("docs/microcontrollers.md").split())
    assert ALIGN_MSG.replace("output tensor 1", "output tensor N").replace("packed input 0", "packed input M") in doc
    assert OPTIONS_MSG.replace("output tensor 1", "output tensor N") in doc
    with open(CHECK_C) as f:
        src = " ".join(f.read().split())
    checked = 0
    for text in src.split("kModelCheckMessages[] = ")[1].split("#endif")[0].split("\\0")[1:8]:  # not OK, not the last
        msg = text.replace('" "', "").strip(' "')
        assert msg and f'"{msg}"' in doc, msg
        checked += 1
    assert checked == 7, checked
    assert "DcTflmCheckModel(g_model, g_model_len)" in doc and "huffdecode_tflm_check.c" in doc
    with open(os.path.join(K, "micro", "huffdecode_tflm.h")) as f:
        enum = {k: int(v) for k, v in re.findall(r"DC_TFLM_MODEL_([A-Z_]+) = (\d+)", f.read())}
    assert enum == CODES, enum  # the codes these tests read are the header's
    for name in CODES:
        assert name == "OK" or f"| `DC_TFLM_MODEL_{name}` |" in doc, name


def test_the_release_build_keeps_the_codes_without_the_text(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    obj = tmp_path / "c.o"
    subprocess.run([cc, "-std=c99", "-Os", "-Wall", "-Wextra", "-Werror", "-DTF_LITE_STRIP_ERROR_STRINGS",
                    f"-I{K}/micro", f"-I{K}/include", "-c", "-o", str(obj), CHECK_C], check=True, timeout=120)
    assert b"alignas" not in obj.read_bytes() and b"flash it again" not in obj.read_bytes()


@pytest.mark.long
def test_on_cortex_m4_the_check_refuses_the_array_that_faults(tmp_path):
    """run_align.sh (TFLM 90b983c under qemu mps2-an386): DcTflmCheckModel refuses the model at
    offset 1 with its message, then the same model run anyway ends in the UsageFault it prevents;
    it passes the aligned copies and refuses those at offsets 4, 8 and 12, which ran. Needs DC_TFLM_TREE, arm-none-eabi-g++ with libstdc++,
    qemu-system-arm; ~2 min."""
    import test_micro_review_s51 as s51

    tflm = os.environ.get("DC_TFLM_TREE")
    if not (tflm and shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-g++")):
        pytest.skip("needs DC_TFLM_TREE (a TFLM tree with tools/make/downloads), arm-none-eabi-g++, qemu-system-arm")
    models = tmp_path / "models"
    models.mkdir()
    s51._align_models(models)
    r = subprocess.run([os.path.join(ROOT, "tools", "mcu", "tflm_m4", "run_align.sh"), tflm, str(tmp_path / "w")],
                       capture_output=True, text=True, timeout=1800, env=dict(os.environ, MODELS=str(models)))
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    checks = [ln for ln in r.stdout.splitlines() if ln.startswith("TFLM_M4_ALIGN_CHECK ")]
    assert len(checks) == 17, checks
    for ln in checks[:16]:  # offsets 0, 4, 8, 12 of each model: TFLM ran all bit-exact; the check asks for 16
        assert ln.endswith(": 0 model array: OK") if " offset 0: " in ln else ": 2 model array: not 16-byte" in ln, ln
    assert " offset 1: 2 model array: not 16-byte aligned" in checks[16], checks


def test_the_doc_check_snippet_compiles_and_links_against_tflm(tmp_path):
    """*Checking the model array*'s C++ block, compiled for Cortex-M4 with the build block's C++ flags:
    it calls the check (huffdecode_tflm_check.c, which defines both functions) and the inline
    CheckCustomOps. Needs
    DC_TFLM_TREE and arm-none-eabi-g++ with libstdc++ (as test_micro_review_s51's registration block)."""
    blocks = [c for lang, _, c in _docs.blocks("docs/microcontrollers.md") if lang == "c++" and "DcTflmCheckModel" in c]
    assert len(blocks) == 1, blocks
    tflm = os.environ.get("DC_TFLM_TREE")
    if not (tflm and shutil.which("arm-none-eabi-g++")):
        pytest.skip("needs DC_TFLM_TREE (a TFLM tree with tools/make/downloads) and arm-none-eabi-g++")
    (tmp_path / "app.cc").write_text(blocks[0])
    dl = os.path.join(tflm, "tensorflow", "lite", "micro", "tools", "make", "downloads")
    cpu = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
    r = subprocess.run(["arm-none-eabi-g++", *cpu, "-std=c++17", "-Os", "-fno-rtti", "-fno-exceptions",
                        "-fno-threadsafe-statics", "-DTF_LITE_STATIC_MEMORY", "-Wall", "-Wextra", "-Wno-unused-parameter",
                        "-Werror", f"-I{K}/micro", f"-I{tflm}", f"-I{dl}/flatbuffers/include", f"-I{dl}/gemmlowp",
                        f"-I{dl}/ruy", "-c", "-o",
                        str(tmp_path / "app.o"), str(tmp_path / "app.cc")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run(["arm-none-eabi-gcc", *cpu, "-std=c99", "-Os", "-Wall", "-Wextra", "-Werror", f"-I{K}/micro",
                        "-c", "-o", str(tmp_path / "check.o"), CHECK_C], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    nm = subprocess.run(["arm-none-eabi-nm", "-u", str(tmp_path / "app.o")], capture_output=True, text=True).stdout
    assert "DcTflmCheckModel" in nm and "DcTflmModelCheckMessage" in nm, nm
    assert "MicroPrintf" in nm, nm  # from the inline CheckCustomOps (and the block's own call)
    defined = subprocess.run(["arm-none-eabi-nm", "--defined-only", str(tmp_path / "check.o")], capture_output=True,
                             text=True).stdout
    assert " T DcTflmCheckModel" in defined and " T DcTflmModelCheckMessage" in defined, defined


CHECK_OPS_APP = r"""
#include <stdio.h>

#include "huffdecode_tflm_register.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

alignas(16) static unsigned char g_model[1 << 20];

int main(int argc, char** argv) {
  FILE* f = fopen(argv[1], "rb");
  if (f == nullptr || fread(g_model, 1, sizeof g_model, f) == 0) return 2;
  const tflite::Model* model = tflite::GetModel(g_model);
  tflite::MicroMutableOpResolver<2> none, other, with;
  other.AddCustom("Other", dc_keras::Register_HUFFDECODE());
  with.AddCustom("HuffDecode", dc_keras::Register_HUFFDECODE());
  fprintf(stderr, "none %d\n", dc_keras::CheckCustomOps(model, none));
  fprintf(stderr, "other %d\n", dc_keras::CheckCustomOps(model, other));
  fprintf(stderr, "with %d\n", dc_keras::CheckCustomOps(model, with));
  fprintf(stderr, "null %d\n", dc_keras::CheckCustomOps(nullptr, with));
  return 0;
}
"""


@pytest.mark.long
def test_check_custom_ops_names_the_op_the_resolver_lacks_and_the_fix(tmp_path):
    """TFLM reports a model whose HuffDecode is not registered only as "Failed to get registration from
    op code CUSTOM" in AllocateTensors. dc_keras::CheckCustomOps, run against TFLM 90b983c's headers
    and logger on the host (g++, TFLM's default debug_log.cc: stderr): one line per missing custom op,
    naming it and the AddCustom line; true once registered. Needs DC_TFLM_TREE; ~15 s of g++."""
    tflm = os.environ.get("DC_TFLM_TREE")
    if not (tflm and shutil.which("g++") and shutil.which("gcc")):
        pytest.skip("needs DC_TFLM_TREE (a TFLM tree with tools/make/downloads), g++ and gcc")
    dl = os.path.join(tflm, "tensorflow", "lite", "micro", "tools", "make", "downloads")
    micro = os.path.join(tflm, "tensorflow", "lite", "micro")
    (tmp_path / "app.cc").write_text(CHECK_OPS_APP)
    for src, obj in ((os.path.join(K, "micro", "huffdecode_tflm.c"), "k.o"), (os.path.join(K, "src", "dc_codec.c"),
                                                                              "c.o")):
        subprocess.run(["gcc", "-std=c99", "-O0", f"-I{K}/micro", f"-I{K}/include", f"-I{K}/src", "-c", src, "-o",
                        str(tmp_path / obj)], check=True, timeout=300)
    r = subprocess.run(["g++", "-std=c++17", "-O1", "-DTF_LITE_STATIC_MEMORY", "-Wall", "-Wextra",
                        "-Wno-unused-parameter", "-Werror", f"-I{K}/micro", f"-I{K}/include", f"-I{tflm}",
                        f"-I{dl}/flatbuffers/include", f"-I{dl}/gemmlowp", f"-I{dl}/ruy", "-o", str(tmp_path / "app"),
                        str(tmp_path / "app.cc"), os.path.join(K, "micro", "huffdecode_tflm_register.cc"),
                        os.path.join(micro, "micro_log.cc"), os.path.join(micro, "debug_log.cc"),
                        str(tmp_path / "k.o"), str(tmp_path / "c.o")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    data = open(os.path.join(DATA, "conv_int8_tail.packed.tflite"), "rb").read()
    (tmp_path / "m.tflite").write_bytes(data)
    (tmp_path / "other.tflite").write_bytes(data.replace(b"HuffDecode", b"HuffDecodf"))
    fix = ('the model\'s custom op HuffDecode is not registered: add resolver.AddCustom("HuffDecode", '
           'dc_keras::Register_HUFFDECODE()) (huffdecode_tflm_register.h), one resolver slot more')
    got = subprocess.run([str(tmp_path / "app"), str(tmp_path / "m.tflite")], capture_output=True, text=True,
                         timeout=60)
    assert got.returncode == 0 and got.stderr.splitlines() == [fix, "none 0", fix, "other 0", "with 1", "null 0"], \
        got.stderr
    assert len(fix) < 256 and " ".join(fix.split()) in " ".join(_docs.read("docs/microcontrollers.md").split())
    got = subprocess.run([str(tmp_path / "app"), str(tmp_path / "other.tflite")], capture_output=True, text=True,
                         timeout=60)
    other = "the model's custom op HuffDecodf is not registered: add it with resolver.AddCustom"
    assert got.stderr.splitlines() == [other, "none 0", other, "other 0", other, "with 0", "null 0"], got.stderr
