"""The public C headers (tflite_kernels/include) as a C/C++ developer uses them: each compiles on
its own as C99 and as C++ with -Wall -Wextra -pedantic -Werror, and a program written against
them alone (no declarations copied from the sources, as docs/android.md's snippets need) builds as
C and as C++, links against libdc_huffdecode.so and runs."""
import os
import shutil
import subprocess

import pytest

from dc_keras import runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INCLUDE = os.path.join(ROOT, "tflite_kernels", "include")
PUBLIC = ["dc_codec.h", "dc_unpack.h", "dc_sparse_fc.h", "dc_tflite.h"]
CC, CXX = shutil.which("cc") or shutil.which("gcc"), shutil.which("c++") or shutil.which("g++")


def _compile(argv):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (argv, r.stderr)


@pytest.mark.parametrize("header", PUBLIC)
def test_public_header_compiles_alone_as_c99_and_cxx(header, tmp_path):
    assert CC and CXX, "needs a C and a C++ compiler (apt install gcc g++)"
    src = tmp_path / "one.c"
    src.write_text(f'#include "{header}"\n#include "{header}"\nint main(void) {{ return 0; }}\n')
    _compile([CC, "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", f"-I{INCLUDE}", "-fsyntax-only",
              str(src)])
    _compile([CXX, "-std=c++11", "-Wall", "-Wextra", "-pedantic", "-Werror", f"-I{INCLUDE}", "-fsyntax-only",
              "-x", "c++", str(src)])


PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dc_tflite.h"
#include "dc_unpack.h"

/* as tensorflow/lite/c/c_api.h declares them */
typedef struct TfLiteDelegate TfLiteDelegate;
typedef struct TfLiteRegistration TfLiteRegistration;

static int fake_lock(void* b, void** m, int mode) { (void)b; (void)m; (void)mode; return 1; }
static int fake_unlock(void* b) { (void)b; return 1; }
static int fake_size(void* b, size_t* n) { (void)b; (void)n; return 1; }

int main(int argc, char** argv) {
  char k0[] = "weights", v0[] = "compressed", v1[] = "compresed";
  char* k[] = {k0};
  char* v[] = {v0};
  char* bad[] = {v1};
  const TfLiteRegistration* reg = DcKerasHuffDecodeRegistration();
  TfLiteDelegate* d = tflite_plugin_create_delegate(k, v, 1, NULL);
  char report[64];
  if (!reg || !d || DcKerasHuffDecodeDelegateReport(d, report, sizeof report) != 0) return 10;
  tflite_plugin_destroy_delegate(d);
  if (tflite_plugin_create_delegate(k, bad, 1, NULL) != NULL) return 11;

  FILE* f = fopen(argc > 1 ? argv[1] : "", "rb");
  if (!f) return 12;
  static uint8_t model[1 << 20];
  size_t n = fread(model, 1, sizeof model, f);
  fclose(f);
  uint8_t* aligned = NULL;
  size_t aligned_n = 0;
  char why[512];
  if (dc_align_packed(model, n, 64, &aligned, &aligned_n, why, sizeof why) != DC_UNPACK_OK) return 13;
  uint8_t* mem = (uint8_t*)malloc(aligned_n + 64);
  uint8_t* at = mem + ((64 - (uintptr_t)mem % 64) % 64);
  memcpy(at, aligned, aligned_n);
  DcKerasLiteRtApi api = {fake_lock, fake_unlock, fake_size};
  void* state = DcKerasLiteRtHuffDecodeCreate(at, aligned_n, &api, why, sizeof why);
  if (!state || DcKerasLiteRtHuffDecodeKernel() == NULL) { fprintf(stderr, "%s\n", why); return 14; }
  if (DcKerasLiteRtHuffDecodeError(state)[0] != '\0') return 15;
  DcKerasLiteRtHuffDecodeDestroy(state);
  dc_unpack_free(aligned);
  free(mem);
  printf("ok\n");
  return 0;
}
"""


@pytest.mark.parametrize("lang", ["c", "c++"])
def test_program_against_the_public_headers_builds_and_runs(lang, tmp_path):
    assert CC and CXX, "needs a C and a C++ compiler (apt install gcc g++)"
    src = tmp_path / "app.c"
    src.write_text(PROGRAM)
    lib = runtime.library_path()
    exe = tmp_path / "app"
    if lang == "c":
        argv = [CC, "-std=c99", "-pedantic"]
    else:
        argv = [CXX, "-std=c++11", "-x", "c++"]
    _compile(argv + ["-Wall", "-Wextra", "-Werror", f"-I{INCLUDE}", str(src), "-x", "none", lib,
                     f"-Wl,-rpath,{os.path.dirname(lib)}", "-o", str(exe)])
    model = os.path.join(ROOT, "tests", "data", "conv_int8_tail.packed.tflite")
    r = subprocess.run([str(exe), model], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "ok\n", (r.returncode, r.stdout, r.stderr)
    # the bad option's reason went to stderr (no report_error callback), one line
    assert r.stderr.count("unknown option weights=compresed") == 1, r.stderr


# TFLM's own C flags (tensorflow/lite/micro/tools/make/Makefile: CCFLAGS = -std=c11, CC_WARNINGS,
# COMMON_FLAGS' -Werror): the flags the kernel and decoder get when an app adds them to a TFLM
# Makefile build, as docs/microcontrollers.md says to.
TFLM_CCFLAGS = ["-std=c11", "-Wimplicit-function-declaration", "-Wsign-compare", "-Wdouble-promotion",
                "-Wshadow", "-Wunused-variable", "-Wmissing-field-initializers", "-Wunused-function",
                "-Wswitch", "-Wvla", "-Wall", "-Wextra", "-Wstrict-aliasing", "-Wno-unused-parameter",
                "-Werror", "-fno-unwind-tables", "-ffunction-sections", "-fdata-sections",
                "-DTF_LITE_STATIC_MEMORY", "-Os"]


@pytest.mark.parametrize("src", ["src/dc_codec.c", "micro/huffdecode_tflm.c"])
def test_mcu_sources_compile_with_tflm_flags(src, tmp_path):
    assert CC, "needs a C compiler (apt install gcc)"
    kernels = os.path.join(ROOT, "tflite_kernels")
    _compile([CC, *TFLM_CCFLAGS, f"-I{INCLUDE}", f"-I{os.path.join(kernels, 'micro')}", "-c",
              os.path.join(kernels, src), "-o", str(tmp_path / "out.o")])
