"""tflite_kernels/android/dc_tflite_example.c run on the host: its JNI entry points called through a
fake JNIEnv, against recording stand-ins of the TFLite C API functions it uses (no TFLite C
library or NDK here; tests/arm/test_arm_android.py compile-checks it for the ARM ABIs) and the
real libdc_huffdecode.so. Checks what the example itself decides: which route registers what, and
that a bad argument throws IllegalArgumentException with a message instead of doing something
else."""
import glob
import os
import shutil
import subprocess

from dc_keras import runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = os.path.join(ROOT, "tflite_kernels")

HARNESS = r"""
#include <jni.h>
#include <stdio.h>
#include <string.h>

#include "tensorflow/lite/c/c_api.h"

struct TfLiteModel { int unused; };
struct TfLiteInterpreterOptions { int unused; };
struct TfLiteInterpreter { int unused; };
static struct TfLiteModel g_model;
static struct TfLiteInterpreterOptions g_options;
static struct TfLiteInterpreter g_interpreter;
static int g_custom_ops, g_delegates;

TfLiteModel* TfLiteModelCreate(const void* d, size_t n) { (void)d; return n ? &g_model : NULL; }
void TfLiteModelDelete(TfLiteModel* m) { (void)m; }
TfLiteInterpreterOptions* TfLiteInterpreterOptionsCreate(void) { return &g_options; }
void TfLiteInterpreterOptionsDelete(TfLiteInterpreterOptions* o) { (void)o; }
void TfLiteInterpreterOptionsSetNumThreads(TfLiteInterpreterOptions* o, int32_t n) { (void)o; (void)n; }
void TfLiteInterpreterOptionsAddDelegate(TfLiteInterpreterOptions* o, TfLiteDelegate* d) {
  (void)o; g_delegates += d != NULL;
}
void TfLiteInterpreterOptionsSetErrorReporter(TfLiteInterpreterOptions* o,
    void (*r)(void*, const char*, va_list), void* u) { (void)o; (void)r; (void)u; }
void TfLiteInterpreterOptionsAddCustomOp(TfLiteInterpreterOptions* o, const char* name,
    const TfLiteRegistration* reg, int32_t lo, int32_t hi) {
  (void)o; g_custom_ops += strcmp(name, "HuffDecode") == 0 && reg != NULL && lo == 1 && hi == 1;
}
TfLiteInterpreter* TfLiteInterpreterCreate(const TfLiteModel* m, const TfLiteInterpreterOptions* o) {
  (void)m; (void)o; return &g_interpreter;
}
void TfLiteInterpreterDelete(TfLiteInterpreter* i) { (void)i; }
TfLiteStatus TfLiteInterpreterAllocateTensors(TfLiteInterpreter* i) { (void)i; return kTfLiteOk; }
TfLiteTensor* TfLiteInterpreterGetInputTensor(const TfLiteInterpreter* i, int32_t k) { (void)i; (void)k; return NULL; }
const TfLiteTensor* TfLiteInterpreterGetOutputTensor(const TfLiteInterpreter* i, int32_t k) { (void)i; (void)k; return NULL; }
TfLiteStatus TfLiteInterpreterInvoke(TfLiteInterpreter* i) { (void)i; return kTfLiteError; }
TfLiteType TfLiteTensorType(const TfLiteTensor* t) { (void)t; return kTfLiteNoType; }
size_t TfLiteTensorByteSize(const TfLiteTensor* t) { (void)t; return 0; }
TfLiteStatus TfLiteTensorCopyFromBuffer(TfLiteTensor* t, const void* d, size_t n) { (void)t; (void)d; (void)n; return kTfLiteError; }
TfLiteStatus TfLiteTensorCopyToBuffer(const TfLiteTensor* t, void* d, size_t n) { (void)t; (void)d; (void)n; return kTfLiteError; }

/* the fake JNIEnv: a direct ByteBuffer over `g_model_bytes`, exceptions recorded */
static char g_model_bytes[64] = "a model";
static char g_thrown[700];
static jclass JNICALL find_class(JNIEnv* e, const char* name) { (void)e; return (jclass)name; }
static jint JNICALL throw_new(JNIEnv* e, jclass c, const char* msg) {
  (void)e; snprintf(g_thrown, sizeof g_thrown, "%s: %s", (const char*)c, msg); return 0;
}
static void* JNICALL buffer_address(JNIEnv* e, jobject b) { (void)e; return b; }
static jlong JNICALL buffer_capacity(JNIEnv* e, jobject b) { (void)e; (void)b; return sizeof g_model_bytes; }

JNIEXPORT jlong JNICALL Java_org_dckeras_example_PackedModel_nativeCreate(JNIEnv*, jclass, jobject, jint, jint);
JNIEXPORT void JNICALL Java_org_dckeras_example_PackedModel_nativeClose(JNIEnv*, jclass, jlong);

int main(void) {
  struct JNINativeInterface_ fns;
  memset(&fns, 0, sizeof fns);
  fns.FindClass = find_class;
  fns.ThrowNew = throw_new;
  fns.GetDirectBufferAddress = buffer_address;
  fns.GetDirectBufferCapacity = buffer_capacity;
  JNIEnv env_value = &fns;
  JNIEnv* env = &env_value;
  for (int route = 0; route <= 2; ++route) {
    g_custom_ops = g_delegates = 0;
    g_thrown[0] = '\0';
    jlong h = Java_org_dckeras_example_PackedModel_nativeCreate(env, NULL, (jobject)g_model_bytes, 2, route);
    printf("route=%d handle=%d custom_ops=%d delegates=%d thrown=%s\n", route, h != 0, g_custom_ops,
           g_delegates, g_thrown);
    Java_org_dckeras_example_PackedModel_nativeClose(env, NULL, h);
  }
  return 0;
}
"""


# The part of jni.h the example and the harness use, for machines without a JDK (the harness
# prefers a JDK's real jni.h; both compile the example against the same declarations).
JNI_STUB = r"""
#pragma once
#include <stdint.h>
#define JNIEXPORT
#define JNICALL
#define JNI_ABORT 2
typedef int32_t jint;
typedef int64_t jlong;
typedef float jfloat;
typedef unsigned char jboolean;
typedef jint jsize;
typedef void* jobject;
typedef jobject jclass;
typedef jobject jfloatArray;
struct JNINativeInterface_;
typedef const struct JNINativeInterface_* JNIEnv;
struct JNINativeInterface_ {
  jclass (*FindClass)(JNIEnv*, const char*);
  jint (*ThrowNew)(JNIEnv*, jclass, const char*);
  void* (*GetDirectBufferAddress)(JNIEnv*, jobject);
  jlong (*GetDirectBufferCapacity)(JNIEnv*, jobject);
  jsize (*GetArrayLength)(JNIEnv*, jobject);
  jfloat* (*GetFloatArrayElements)(JNIEnv*, jfloatArray, jboolean*);
  void (*ReleaseFloatArrayElements)(JNIEnv*, jfloatArray, jfloat*, jint);
  jfloatArray (*NewFloatArray)(JNIEnv*, jsize);
  void (*SetFloatArrayRegion)(JNIEnv*, jfloatArray, jsize, jsize, const jfloat*);
};
"""


def _jni_include(tmp_path):
    """A JDK's include dirs, or the stub above."""
    for inc in sorted(glob.glob("/usr/lib/jvm/*/include"), reverse=True):
        if os.path.isfile(os.path.join(inc, "jni.h")) and os.path.isdir(os.path.join(inc, "linux")):
            return [inc, os.path.join(inc, "linux")]
    stub = tmp_path / "jni"
    stub.mkdir()
    (stub / "jni.h").write_text(JNI_STUB)
    return [str(stub)]


def _c_api_header(tmp_path):
    import re

    with open(os.path.join(ROOT, "tests", "arm", "test_arm_android.py")) as f:
        decls = re.search(r'C_API_DECLS = r"""(.*?)"""', f.read(), re.S).group(1)
    inc = tmp_path / "include" / "tensorflow" / "lite" / "c"
    inc.mkdir(parents=True)
    (inc / "c_api.h").write_text("#pragma once\n" + decls)
    (inc / "c_api_experimental.h").write_text('#pragma once\n#include "tensorflow/lite/c/c_api.h"\n')
    return tmp_path / "include"


def build_harness(tmp_path, source, extra=()):
    """``source`` (a main() calling the example's JNI functions) built on the host with
    dc_tflite_example.c against the stand-ins above and the real library; the executable's path."""
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "needs a C compiler (apt install gcc)"
    (tmp_path / "harness.c").write_text(source)
    lib = runtime.library_path()
    exe = tmp_path / "harness"
    r = subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
                        f"-I{_c_api_header(tmp_path)}", f"-I{os.path.join(KERNELS, 'include')}",
                        *(f"-I{d}" for d in _jni_include(tmp_path)), str(tmp_path / "harness.c"),
                        os.path.join(KERNELS, "android", "dc_tflite_example.c"), lib, *extra,
                        f"-Wl,-rpath,{os.path.dirname(lib)}", "-o", str(exe)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return exe


def test_example_routes_and_bad_route(tmp_path):
    exe = build_harness(tmp_path, HARNESS)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "route=0 handle=1 custom_ops=1 delegates=0 thrown=", lines  # ROUTE_CUSTOM_OP
    assert lines[1] == "route=1 handle=1 custom_ops=0 delegates=1 thrown=", lines  # ROUTE_DELEGATE
    # an unknown route: no model, IllegalArgumentException naming the valid routes (it used to
    # fall through to the custom-op route silently)
    assert lines[2].startswith("route=2 handle=0 custom_ops=0 delegates=0 thrown="
                               "java/lang/IllegalArgumentException: route must be 0 (ROUTE_CUSTOM_OP) "
                               "or 1 (ROUTE_DELEGATE), got 2"), lines
