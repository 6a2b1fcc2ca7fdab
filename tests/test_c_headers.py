"""The public C headers (tflite_kernels/include) as a C/C++ developer uses them: each compiles on
its own as C99 and as C++ with -Wall -Wextra -pedantic -Werror, and a program written against
them alone (no declarations copied from the sources, as docs/android.md's snippets need) builds as
C and as C++, links against libdc_huffdecode.so and runs."""
import os
import re
import shutil
import subprocess
import textwrap

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
    assert r.stderr.count("bad value in option weights=compresed") == 1, r.stderr


# TFLM's own C flags (tensorflow/lite/micro/tools/make/Makefile: CCFLAGS = -std=c11, CC_WARNINGS,
# COMMON_FLAGS' -Werror): the flags the kernel and decoder get when an app adds them to a TFLM
# Makefile build, as docs/microcontrollers.md says to.
TFLM_CCFLAGS = ["-std=c11", "-Wimplicit-function-declaration", "-Wsign-compare", "-Wdouble-promotion",
                "-Wshadow", "-Wunused-variable", "-Wmissing-field-initializers", "-Wunused-function",
                "-Wswitch", "-Wvla", "-Wall", "-Wextra", "-Wstrict-aliasing", "-Wno-unused-parameter",
                "-Werror", "-fno-unwind-tables", "-ffunction-sections", "-fdata-sections",
                "-DTF_LITE_STATIC_MEMORY", "-Os"]


@pytest.mark.parametrize("src, defines", [("src/dc_codec.c", []), ("micro/huffdecode_tflm.c", []),
                                          # TFLM's BUILD_TYPE=release adds these two
                                          ("micro/huffdecode_tflm.c", ["-DNDEBUG", "-DTF_LITE_STRIP_ERROR_STRINGS"])])
def test_mcu_sources_compile_with_tflm_flags(src, defines, tmp_path):
    assert CC, "needs a C compiler (apt install gcc)"
    kernels = os.path.join(ROOT, "tflite_kernels")
    _compile([CC, *TFLM_CCFLAGS, *defines, f"-I{INCLUDE}", f"-I{os.path.join(kernels, 'micro')}", "-c",
              os.path.join(kernels, src), "-o", str(tmp_path / "out.o")])


# -- the C/C++ snippets of the docs, compiled as written -------------------------------------------
# Each snippet's statements go into a function whose parameters are the snippet's inputs (named in
# its comments); headers the project does not ship (TFLite's C API, TFLM, Android's log) come from
# minimal stand-ins declared as upstream declares them, so what is checked is the snippet against
# the public headers (names, types, argument counts).

STUBS = {
    "tensorflow/lite/c/c_api.h": """
        #include <stdint.h>
        typedef struct TfLiteModel TfLiteModel;
        typedef struct TfLiteInterpreter TfLiteInterpreter;
        typedef struct TfLiteInterpreterOptions TfLiteInterpreterOptions;
        typedef struct TfLiteRegistration TfLiteRegistration;
        typedef struct TfLiteDelegate TfLiteDelegate;
        TfLiteInterpreterOptions* TfLiteInterpreterOptionsCreate(void);
        void TfLiteInterpreterOptionsAddDelegate(TfLiteInterpreterOptions* options, TfLiteDelegate* delegate);
        TfLiteInterpreter* TfLiteInterpreterCreate(const TfLiteModel* model,
                                                   const TfLiteInterpreterOptions* optional_options);
    """,
    # upstream declares the (experimental) custom-op registration here, not in c_api.h
    "tensorflow/lite/c/c_api_experimental.h": """
        #include "tensorflow/lite/c/c_api.h"
        void TfLiteInterpreterOptionsAddCustomOp(TfLiteInterpreterOptions* options, const char* name,
            const TfLiteRegistration* registration, int32_t min_version, int32_t max_version);
    """,
    "tensorflow/lite/micro/micro_common.h": """
        typedef struct TFLMRegistration TFLMRegistration;
    """,
    "tensorflow/lite/micro/micro_mutable_op_resolver.h": """
        #include "tensorflow/lite/micro/micro_op_resolver.h"
        namespace tflite {
        template <unsigned N> class MicroMutableOpResolver : public MicroOpResolver {
         public:
          int AddFullyConnected() { return 0; }
          int AddCustom(const char* name, const TFLMRegistration* registration) { return name && registration; }
          const TFLMRegistration* FindOp(const char* op) const override { return op ? nullptr : nullptr; }
        };
        }  // namespace tflite
    """,
    # what huffdecode_tflm_register.h's CheckCustomOps and the doc's model check use, as TFLM declares it
    "tensorflow/lite/micro/micro_op_resolver.h": """
        #include "tensorflow/lite/micro/micro_common.h"
        namespace tflite {
        class MicroOpResolver {
         public:
          virtual ~MicroOpResolver() {}
          virtual const TFLMRegistration* FindOp(const char* op) const = 0;
        };
        }  // namespace tflite
    """,
    "tensorflow/lite/micro/micro_log.h": """
        void MicroPrintf(const char* format, ...);
    """,
    "tensorflow/lite/schema/schema_generated.h": """
        #include <stdint.h>
        namespace flatbuffers {
        struct String { const char* c_str() const; };
        template <class T> struct Vector { const T* const* begin() const; const T* const* end() const; };
        }  // namespace flatbuffers
        namespace tflite {
        enum BuiltinOperator : int32_t { BuiltinOperator_CUSTOM = 32 };
        struct OperatorCode {
          int8_t deprecated_builtin_code() const;
          const flatbuffers::String* custom_code() const;
          BuiltinOperator builtin_code() const;
        };
        struct Model { const flatbuffers::Vector<OperatorCode>* operator_codes() const; };
        const Model* GetModel(const void* buf);
        }  // namespace tflite
    """,
    "android/log.h": """
        enum { ANDROID_LOG_ERROR = 6 };
        int __android_log_print(int prio, const char* tag, const char* fmt, ...);
    """,
}

# (doc, text the snippet contains): (extra includes, the wrapping function's parameters)
SNIPPETS = {
    ("docs/android.md", "TfLiteInterpreterOptionsAddCustomOp"): ([], "const TfLiteModel* model"),
    ("docs/android.md", "dc_unpack(packed"): (
        ["android/log.h", "stdint.h", "stddef.h"],
        "const uint8_t* packed, size_t packed_n, const char* cache, "
        "int (*write_atomically)(const char* path, const uint8_t* data, size_t n)"),
    ("docs/android.md", "tflite_plugin_create_delegate(k, v"): (
        ["tensorflow/lite/c/c_api.h"], "TfLiteInterpreterOptions* options, void (*report)(const char*)"),
    ("docs/microcontrollers.md", "Register_HUFFDECODE"): (["tensorflow/lite/micro/micro_mutable_op_resolver.h"], ""),
    # a whole function (parameters None: the snippet is compiled as it is, not wrapped in one)
    ("docs/microcontrollers.md", "DcTflmCheckModel(g_model"): ([], None),
}


def _doc_snippets():
    import _docs

    out = []
    for doc in _docs.doc_files():
        for lang, line, code in _docs.blocks(doc):
            if lang in ("c", "c++", "cpp"):
                out.append(pytest.param(doc, lang, code, id=f"{doc}:{line}"))
    # docs/android.md's delegate-options table: the C of its "C / JNI" row, in the order shown
    row = next(r for r in _docs.read("docs/android.md").splitlines() if r.startswith("| C / JNI"))
    spans = re.findall(r"`([^`]+)`", row)
    code = "\n".join([s for s in spans if s.startswith("#include")]
                     + [s if s.endswith(";") else s + ";" for s in spans
                        if s.endswith(";") or s.startswith(("TfLiteInterpreterOptionsAddDelegate(", "tflite_plugin_destroy_delegate("))])
    out.append(pytest.param("docs/android.md", "c", code, id="docs/android.md:table C / JNI"))
    return out


DOC_SNIPPETS = _doc_snippets()


def _wrap(doc, code, lang):
    """The snippet as a translation unit: its #includes on top, the rest in a function."""
    key = [k for k in SNIPPETS if k[0] == doc and k[1] in code]
    assert len(key) == 1, f"{doc}: a C snippet tests/test_c_headers.py does not know; add it to SNIPPETS"
    includes, params = SNIPPETS[key[0]]
    if params is None:  # a definition of its own
        return code
    # an alternative shown commented out (`// resolver.AddCustom(...);`) compiles too
    lines = [re.sub(r"^(\s*)//\s*(\w[\w.:]*\(.*\);)\s*$", r"\1\2", line) for line in code.splitlines()]
    head = [line for line in lines if line.startswith("#include")]
    body = [line for line in lines if not line.startswith("#include")]
    extra = "".join(f"#include <{h}>\n" if h.endswith(".h") and "/" not in h and h[:-2].isalpha()
                    else f'#include "{h}"\n' for h in includes)
    return extra + "\n".join(head) + f"\n\nvoid doc_snippet({params or 'void'});\nvoid doc_snippet({params or 'void'}) {{\n" + \
        "\n".join(body) + "\n}\n"


@pytest.mark.parametrize(("doc", "lang", "code"), DOC_SNIPPETS)
def test_doc_snippet_compiles_against_the_public_headers(doc, lang, code, tmp_path):
    assert CC and CXX, "needs a C and a C++ compiler (apt install gcc g++)"
    stubs = tmp_path / "stubs"
    for name, text in STUBS.items():
        (stubs / os.path.dirname(name)).mkdir(parents=True, exist_ok=True)
        (stubs / name).write_text(f"#pragma once\n{textwrap.dedent(text)}")
    src = tmp_path / ("snippet.cc" if lang != "c" else "snippet.c")
    src.write_text(_wrap(doc, code, lang))
    incs = [f"-I{INCLUDE}", f"-I{os.path.join(ROOT, 'tflite_kernels', 'micro')}", f"-I{stubs}"]
    warn = ["-Wall", "-Wextra", "-Werror", "-Wno-unused-variable", "-Wno-unused-parameter"]
    if lang == "c":  # docs/android.md's C is for C and C++ (JNI) code alike
        _compile([CC, "-std=c99", *warn, *incs, "-fsyntax-only", str(src)])
    _compile([CXX, "-std=c++17", *warn, *incs, "-fsyntax-only", "-x", "c++", str(src)])


def test_doc_snippets_found():
    assert len(DOC_SNIPPETS) >= 3 and len(SNIPPETS) == len(DOC_SNIPPETS), DOC_SNIPPETS
