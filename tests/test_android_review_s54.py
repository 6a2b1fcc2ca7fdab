"""Session 54's review of the Android / ARM app engineer's journey (README -> docs/android.md ->
tflite_kernels/android/dc_tflite_example.c -> `make test-arm`), command by command.

Found and fixed:

* The C library's own errors for a damaged or newer packed tensor (HuffDecode op and delegate: what
  an app's TFLite error reporter, logcat, LiteRT's and TF's Python APIs show) named the problem but
  not the fix; only dc_keras.runtime's Python wrapper and dc_unpack added it. They now end with
  dc_unpack.h's DC_UNPACK_CORRUPT_FIX / DC_UNPACK_NEWER_FIX themselves.
* dc_tflite_example.c: a delegate it could not create (DC_KERAS_DECODE_THREADS set to something it
  cannot read) said only "cannot create the HuffDecode delegate" (the reason went to stderr,
  nowhere in an app), and HuffDecodeDelegate.nativeCreate threw OutOfMemoryError("HuffDecode
  delegate") for it; a model TFLite refuses said "not a valid .tflite model (N bytes)" with no fix;
  the delegate route did not ask DcKerasHuffDecodeDelegateError after AllocateTensors, as
  docs/android.md tells apps to.
* docs/android.md had no word on what each mistake looks like (a stock interpreter, a library of
  another architecture, a damaged or newer file): its *Troubleshooting* table, checked here against
  the runtimes' own messages.

What was re-run and held (not repeated as tests here): `make test-arm` from an empty cache, the
doc's CMake cross builds for aarch64 and armv7, LiteRT's plain `load_delegate` route on emulated
aarch64 (float and int8, 1 and 2 threads, a delegate shared by 4 threads: bit-exact with the unpacked
model), the emulated test below."""
import os
import platform
import re
import subprocess
import sys

import numpy as np
import pytest

from dc_keras import _flatbuffer as fb
from dc_keras import export, runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = os.path.join(ROOT, "tflite_kernels")
DOC = os.path.join(ROOT, "docs", "android.md")


def _packed():
    """A small packed Dense model (float32), its unpacked file and one input."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(4)])
    rng = np.random.default_rng(0)
    for layer in model.layers:
        k, b = layer.get_weights()
        k = np.round(k * 4) / 4  # a few shared values, some zero
        k[rng.random(k.shape) < 0.6] = 0
        layer.set_weights([k, b])
    plain = export.to_tflite(model, pack=False)
    return plain, export.pack(plain)


@pytest.fixture(scope="module")
def files():
    plain, packed = _packed()
    at = packed.find(b"DCHF")
    flipped = bytearray(packed)
    flipped[at + 40] ^= 0x40  # inside a packed tensor's streams: the CRC refuses it
    newer = bytearray(packed)
    newer[at + 4] = 9  # format version 9: a newer dc_keras packed it
    return {"plain": plain, "packed": packed, "flipped": bytes(flipped), "newer": bytes(newer)}


def test_litert_delegate_says_the_fix_of_a_damaged_or_newer_file_itself(files):
    """LiteRT's own API with load_delegate (the route an app copies): the message comes from the
    library, not from dc_keras.runtime; it said "...checksum mismatch: the packed data is corrupt"
    and "...it is version 9, which only a decoder with DC_VERSION_MAX >= 9 reads" and stopped."""
    from ai_edge_litert.interpreter import Interpreter, load_delegate

    for name, fix in (("flipped", fb.CORRUPT_FIX), ("newer", fb.NEWER_FIX)):
        with pytest.raises(RuntimeError) as e:
            Interpreter(model_content=files[name],
                        experimental_delegates=[load_delegate(runtime.library_path())]).allocate_tensors()
        msg = str(e.value)
        assert re.search(r"HuffDecode\([^)]+\): (decoding failed|packed tensor not readable here): ", msg), msg
        assert f"; {fix}" in msg and msg.count(fb.CORRUPT_FIX) + msg.count(fb.NEWER_FIX) == 1, (name, msg)


def test_tensorflow_op_route_says_the_fix_itself(files):
    """The op route (the registration the TFLite C API's TfLiteInterpreterOptionsAddCustomOp takes),
    through TF's InterpreterWithCustomOps and the library's registerer, no dc_keras wrapper."""
    from tensorflow.lite.python.interpreter import InterpreterWithCustomOps

    for name, fix in (("flipped", fb.CORRUPT_FIX), ("newer", fb.NEWER_FIX)):
        it = InterpreterWithCustomOps(model_content=files[name],
                                      custom_op_registerers=[runtime.prepare_tensorflow_registerer()])
        with pytest.raises(RuntimeError) as e:
            it.allocate_tensors()
        assert f"; {fix}" in str(e.value), (name, str(e.value))


# LiteRT's Delegate.__del__ after a failed load_delegate: "'Delegate' object has no attribute '_library'"
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_doc_troubleshooting_quotes_what_the_runtimes_say(files, tmp_path, monkeypatch):
    """Each message docs/android.md's Troubleshooting table quotes is the runtime's own: a stock
    interpreter on a packed file, a library of another word size or machine (ELF header patched:
    what a cross build for the wrong ABI gives dlopen), a truncated file, a damaged packed tensor."""
    from ai_edge_litert.interpreter import Interpreter, load_delegate

    with open(DOC) as f:
        doc = f.read()
    section = doc.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    said = {}
    with pytest.raises(RuntimeError) as e:
        Interpreter(model_content=files["packed"]).allocate_tensors()
    said["stock"] = str(e.value)
    lib = open(runtime.library_path(), "rb").read()
    other, other_name = (62, "x86-64") if platform.machine() == "aarch64" else (183, r"AArch64 \(ARM64\)")
    for what, patch in (("machine", (18, other.to_bytes(2, "little"))), ("class", (4, b"\x01"))):
        bad = bytearray(lib)
        bad[patch[0]:patch[0] + len(patch[1])] = patch[1]
        (tmp_path / f"{what}.so").write_bytes(bytes(bad))
        with pytest.raises(OSError) as e:
            load_delegate(str(tmp_path / f"{what}.so"))
        said[what] = str(e.value)
    with pytest.raises(ValueError) as e:
        Interpreter(model_content=files["packed"][:-300])
    said["truncated"] = str(e.value)
    with pytest.raises(RuntimeError) as e:
        Interpreter(model_content=files["flipped"],
                    experimental_delegates=[load_delegate(runtime.library_path())]).allocate_tensors()
    said["damaged"] = str(e.value)
    with pytest.raises(ValueError) as e:
        load_delegate(runtime.library_path(), {"decode_thread": "2"})  # a misspelt option
    said["option"] = str(e.value)
    quoted = {"stock": "Encountered unresolved custom op: HuffDecode",
              "machine": "cannot open shared object file: No such file or directory",
              "class": "wrong ELF class: ELFCLASS32", "truncated": "The model is not a valid Flatbuffer buffer",
              "damaged": f"checksum mismatch: the packed data is corrupt; {fb.CORRUPT_FIX}",
              "option": "Failed to load delegate from"}
    for key, words in quoted.items():
        assert words in said[key], (key, said[key])
        assert words in " ".join(section.split()), (key, words)
    # the same mistakes through dc_keras.runtime name the file or library and the fix in words
    monkeypatch.setenv("DC_KERAS_LIBRARY", str(tmp_path / "machine.so"))
    with pytest.raises(OSError, match=rf"it is a library for {other_name}, and this Python runs on {platform.machine()}: "
                                      r"point DC_KERAS_LIBRARY at a libdc_huffdecode.so built on this machine"):
        runtime.library_path()


HARNESS = r"""
#include <jni.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensorflow/lite/c/c_api.h"

#ifndef JNI_VERSION_1_1 /* test_android_example.py's stand-in of jni.h (no JDK) */
typedef jobject jarray;
#endif

struct TfLiteModel { int unused; };
struct TfLiteInterpreterOptions { int unused; };
struct TfLiteInterpreter { int unused; };
struct TfLiteTensor { int type; size_t bytes; };
static struct TfLiteModel g_model;
static struct TfLiteInterpreterOptions g_options;
static struct TfLiteInterpreter g_interpreter;
static struct TfLiteTensor g_input, g_output;   /* type and size from the command line */

/* TFLite's verifier refuses the model: what TfLiteModelCreate does with a truncated file */
TfLiteModel* TfLiteModelCreate(const void* d, size_t n) { return n && memcmp(d, "bad", 3) ? &g_model : NULL; }
void TfLiteModelDelete(TfLiteModel* m) { (void)m; }
TfLiteInterpreterOptions* TfLiteInterpreterOptionsCreate(void) { return &g_options; }
void TfLiteInterpreterOptionsDelete(TfLiteInterpreterOptions* o) { (void)o; }
void TfLiteInterpreterOptionsSetNumThreads(TfLiteInterpreterOptions* o, int32_t n) { (void)o; (void)n; }
void TfLiteInterpreterOptionsAddDelegate(TfLiteInterpreterOptions* o, TfLiteDelegate* d) { (void)o; (void)d; }
void TfLiteInterpreterOptionsSetErrorReporter(TfLiteInterpreterOptions* o,
    void (*r)(void*, const char*, va_list), void* u) { (void)o; (void)r; (void)u; }
void TfLiteInterpreterOptionsAddCustomOp(TfLiteInterpreterOptions* o, const char* name,
    const TfLiteRegistration* reg, int32_t lo, int32_t hi) { (void)o; (void)name; (void)reg; (void)lo; (void)hi; }
TfLiteInterpreter* TfLiteInterpreterCreate(const TfLiteModel* m, const TfLiteInterpreterOptions* o) {
  (void)m; (void)o; return &g_interpreter;
}
void TfLiteInterpreterDelete(TfLiteInterpreter* i) { (void)i; }
TfLiteStatus TfLiteInterpreterAllocateTensors(TfLiteInterpreter* i) { (void)i; return kTfLiteOk; }
TfLiteTensor* TfLiteInterpreterGetInputTensor(const TfLiteInterpreter* i, int32_t k) { (void)i; (void)k; return &g_input; }
const TfLiteTensor* TfLiteInterpreterGetOutputTensor(const TfLiteInterpreter* i, int32_t k) { (void)i; (void)k; return &g_output; }
TfLiteStatus TfLiteInterpreterInvoke(TfLiteInterpreter* i) { (void)i; return kTfLiteOk; }
TfLiteType TfLiteTensorType(const TfLiteTensor* t) { return (TfLiteType)t->type; }
size_t TfLiteTensorByteSize(const TfLiteTensor* t) { return t->bytes; }
TfLiteStatus TfLiteTensorCopyFromBuffer(TfLiteTensor* t, const void* d, size_t n) { (void)t; (void)d; (void)n; return kTfLiteOk; }
TfLiteStatus TfLiteTensorCopyToBuffer(const TfLiteTensor* t, void* d, size_t n) { (void)t; memset(d, 0, n); return kTfLiteOk; }

static char g_bytes[64];
static char g_thrown[700];
static float g_floats[1024];
static jsize g_count;
static jclass JNICALL find_class(JNIEnv* e, const char* name) { (void)e; return (jclass)name; }
static jint JNICALL throw_new(JNIEnv* e, jclass c, const char* msg) {
  (void)e; snprintf(g_thrown, sizeof g_thrown, "%s: %s", (const char*)c, msg); return 0;
}
static void* JNICALL buffer_address(JNIEnv* e, jobject b) { (void)e; return b; }
static jlong JNICALL buffer_capacity(JNIEnv* e, jobject b) { (void)e; (void)b; return sizeof g_bytes; }
static jsize JNICALL array_length(JNIEnv* e, jarray a) { (void)e; (void)a; return g_count; }
static jfloat* JNICALL float_elements(JNIEnv* e, jfloatArray a, jboolean* c) { (void)e; (void)a; (void)c; return g_floats; }
static void JNICALL release_floats(JNIEnv* e, jfloatArray a, jfloat* p, jint m) { (void)e; (void)a; (void)p; (void)m; }
static jfloatArray JNICALL new_floats(JNIEnv* e, jsize n) { (void)e; (void)n; return (jfloatArray)g_floats; }
static void JNICALL set_floats(JNIEnv* e, jfloatArray a, jsize s, jsize n, const jfloat* p) {
  (void)e; (void)a; (void)s; (void)n; (void)p;
}

JNIEXPORT jlong JNICALL Java_org_dckeras_example_PackedModel_nativeCreate(JNIEnv*, jclass, jobject, jint, jint);
JNIEXPORT jfloatArray JNICALL Java_org_dckeras_example_PackedModel_nativeRun(JNIEnv*, jclass, jlong, jfloatArray, jint);
JNIEXPORT void JNICALL Java_org_dckeras_example_PackedModel_nativeClose(JNIEnv*, jclass, jlong);
JNIEXPORT jlong JNICALL Java_org_dckeras_example_HuffDecodeDelegate_nativeCreate(JNIEnv*, jclass);
JNIEXPORT void JNICALL Java_org_dckeras_example_HuffDecodeDelegate_nativeDelete(JNIEnv*, jclass, jlong);

/* argv: model text ("bad..." is refused), route, input type, input bytes, output type, output
 * bytes, number of input floats, outputSize */
int main(int argc, char** argv) {
  struct JNINativeInterface_ fns;
  memset(&fns, 0, sizeof fns);
  fns.FindClass = find_class;
  fns.ThrowNew = throw_new;
  fns.GetDirectBufferAddress = buffer_address;
  fns.GetDirectBufferCapacity = buffer_capacity;
  fns.GetArrayLength = array_length;
  fns.GetFloatArrayElements = float_elements;
  fns.ReleaseFloatArrayElements = release_floats;
  fns.NewFloatArray = new_floats;
  fns.SetFloatArrayRegion = set_floats;
  JNIEnv env_value = &fns;
  JNIEnv* env = &env_value;
  if (argc != 9) return 2;
  snprintf(g_bytes, sizeof g_bytes, "%s", argv[1]);
  g_input.type = atoi(argv[3]); g_input.bytes = (size_t)atoi(argv[4]);
  g_output.type = atoi(argv[5]); g_output.bytes = (size_t)atoi(argv[6]);
  g_count = atoi(argv[7]);
  jlong h = Java_org_dckeras_example_PackedModel_nativeCreate(env, NULL, (jobject)g_bytes, 2, atoi(argv[2]));
  printf("model handle=%d thrown=%s\n", h != 0, g_thrown);
  if (h) {
    g_thrown[0] = '\0';
    jfloatArray y = Java_org_dckeras_example_PackedModel_nativeRun(env, NULL, h, (jfloatArray)g_floats, atoi(argv[8]));
    printf("run result=%d thrown=%s\n", y != NULL, g_thrown);
  }
  Java_org_dckeras_example_PackedModel_nativeClose(env, NULL, h);
  g_thrown[0] = '\0';
  h = Java_org_dckeras_example_HuffDecodeDelegate_nativeCreate(env, NULL);
  printf("delegate handle=%d thrown=%s\n", h != 0, g_thrown);
  if (h) Java_org_dckeras_example_HuffDecodeDelegate_nativeDelete(env, NULL, h);
  return 0;
}
"""


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """dc_tflite_example.c built on the host against stand-ins of the TFLite C API (as
    tests/test_android_example.py does) and the real library; run(model, route, ...) -> lines."""
    import test_android_example as example

    tmp_path = tmp_path_factory.mktemp("example")
    exe = example.build_harness(tmp_path, HARNESS, extra=["-lpthread"])

    def run(model, route, io=(1, 64, 1, 40, 16, 10), **env):
        base = {k: v for k, v in os.environ.items() if k != "DC_KERAS_DECODE_THREADS"}
        p = subprocess.run([str(exe), model, str(route), *map(str, io)], capture_output=True, text=True,
                           timeout=60, env={**base, **env})
        assert p.returncode == 0, p.stderr
        return p.stdout.splitlines()

    return run


def test_example_says_why_a_delegate_or_a_model_cannot_be_made(harness):
    # a file TFLite's verifier refuses (truncated, not a .tflite): the fix after the size
    lines = harness("bad model", 0)
    assert lines[0] == ("model handle=0 thrown=java/lang/IllegalArgumentException: not a valid .tflite model "
                        f"(64 bytes); {fb.CORRUPT_FIX}"), lines
    assert lines[1] == "delegate handle=1 thrown=", lines
    # an environment the library cannot read: its reason, on both routes that make a delegate (it
    # was "cannot create the HuffDecode delegate" and OutOfMemoryError("HuffDecode delegate"))
    why = ("dc_keras HuffDecode delegate: environment variable DC_KERAS_DECODE_THREADS='two' is not a whole "
           "number from 0 to 64: set it to the number of decode threads (0 = one per CPU), or unset it")
    lines = harness("a model", 1, DC_KERAS_DECODE_THREADS="two")
    assert lines == [f"model handle=0 thrown=java/lang/IllegalArgumentException: cannot create the HuffDecode "
                     f"delegate: {why}",
                     f"delegate handle=0 thrown=java/lang/IllegalStateException: cannot create the HuffDecode "
                     f"delegate: {why}"], lines
    assert harness("a model", 1) == ["model handle=1 thrown=", "run result=1 thrown=", "delegate handle=1 thrown="]


def test_example_names_the_type_and_size_of_an_int8_models_input_and_output(harness):
    """An int8 .tflite with int8 inputs (converted with inference_input_type=tf.int8) in the
    example's float32 run: "input must be 196 float32 values, got 784" (its 784 bytes / 4); an
    output of another size: "output is not 12 float32 values", not what it is."""
    ok = ["model handle=1 thrown=", "run result=1 thrown=", "delegate handle=1 thrown="]
    assert harness("a model", 0, io=(1, 3136, 1, 40, 784, 10)) == ok
    lines = harness("a model", 0, io=(9, 784, 9, 10, 784, 10))
    assert lines[1] == ("run result=0 thrown=java/lang/IllegalArgumentException: the model's input 0 is int8 "
                        "(784 bytes), not float32, which this example feeds: quantize the values with the input's "
                        "TfLiteTensorQuantizationParams and copy them in its type, or convert the model with "
                        "float32 inputs"), lines
    lines = harness("a model", 0, io=(1, 3136, 3, 10, 784, 10))
    assert lines[1].startswith("run result=0 thrown=java/lang/IllegalArgumentException: the model's output 0 is "
                               "uint8 (10 bytes), not float32, which this example returns: copy it out in its "
                               "type and dequantize it"), lines
    lines = harness("a model", 0, io=(1, 3136, 1, 40, 784, 12))
    assert lines[1] == ("run result=0 thrown=java/lang/IllegalArgumentException: the model's output 0 is 10 "
                        "float32 values: pass outputSize = 10, not 12"), lines
    lines = harness("a model", 0, io=(1, 3136, 1, 40, 100, 10))
    assert lines[1] == ("run result=0 thrown=java/lang/IllegalArgumentException: input must be 784 float32 values, "
                        "got 100"), lines


def test_example_asks_the_delegate_for_its_error_after_allocate_tensors():
    """docs/android.md: call DcKerasHuffDecodeDelegateError after AllocateTensors (TFLite defers
    the delegate kernel's Prepare past a dynamic output shape); the example, which apps copy, did not."""
    with open(os.path.join(KERNELS, "android", "dc_tflite_example.c")) as f:
        c = f.read()
    create = c[c.index("static DcRunner* dc_runner_create("):c.index("/* The name of a TfLiteType")]
    assert create.index("TfLiteInterpreterAllocateTensors") < create.index("DcKerasHuffDecodeDelegateError(")


def _arm_env():
    """tools/arm/setup.sh's settings (cached under ~/.cache/dc_keras/arm after `make test-arm`)."""
    out = subprocess.run([os.path.join(ROOT, "tools", "arm", "setup.sh")], capture_output=True, text=True,
                         timeout=900, cwd=ROOT).stdout.strip()
    assert out.startswith("READY "), f"tools/arm/setup.sh: {out} (needs root, or `make test-arm` run once as root)"
    sys.path.insert(0, os.path.join(ROOT, "tests", "arm"))
    from arm_helpers import read_env

    return read_env(out[len("READY "):])


EMULATED = r"""
import json, sys, threading
import numpy as np
from ai_edge_litert.interpreter import Interpreter, load_delegate
d, lib, lib32 = sys.argv[1], sys.argv[2], sys.argv[3]
x = np.load(f"{d}/x.npy")
def run(name, delegates, threads=2):
    it = Interpreter(model_path=f"{d}/{name}", experimental_delegates=delegates, num_threads=threads)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    out = []
    for row in x:
        it.set_tensor(i["index"], row[None]); it.invoke(); out.append(it.get_tensor(o["index"]).copy())
    return np.concatenate(out).tobytes()
def error(f):
    try:
        f()
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return "no error"
res = {"exact": [run("plain.tflite", [], t) == run("packed.tflite", [load_delegate(lib)], t) for t in (1, 2)]}
shared, outs = load_delegate(lib, {"decode_threads": "4"}), {}
def work(k):
    outs[k] = run("packed.tflite", [shared])
ts = [threading.Thread(target=work, args=(k,)) for k in range(3)]
[t.start() for t in ts]; [t.join() for t in ts]
res["shared"] = sorted(set(outs.values())) == [run("plain.tflite", [])]
for name in ("flipped", "newer"):
    res[name] = error(lambda: run(f"{name}.tflite", [load_delegate(lib)]))
res["stock"] = error(lambda: run("packed.tflite", []))
res["armv7"] = error(lambda: load_delegate(lib32))
print("RESULT " + json.dumps(res))
"""


@pytest.mark.long  # qemu: two cross builds of the library (3 s with ccache warm, ~30 s cold), an emulated Python
def test_plain_litert_load_delegate_on_emulated_aarch64(files, tmp_path):
    """The app route of docs/runtime.md on emulated aarch64 with LiteRT's own API (tests/arm runs
    dc_keras.runtime's wrapper): bit-exact with the unpacked model at 1 and 2 threads and with one
    delegate shared by 3 threads; a damaged and a newer file, a stock interpreter and an armv7
    library each refused with the message docs/android.md's Troubleshooting table quotes."""
    env = _arm_env()
    libs = {}
    for arch, cc in (("aarch64", "aarch64-linux-gnu-gcc"), ("armv7", "arm-linux-gnueabihf-gcc")):
        build = tmp_path / arch
        r = subprocess.run(["make", "-s", "-C", KERNELS, f"CC={cc}", f"BUILD={build}", "all"],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        libs[arch] = build / "libdc_huffdecode.so"
    for name in ("plain", "packed", "flipped", "newer"):
        (tmp_path / f"{name}.tflite").write_bytes(files[name])
    np.save(tmp_path / "x.npy", np.random.default_rng(1).random((4, 16), dtype=np.float32))
    (tmp_path / "emulated.py").write_text(EMULATED)
    sysroot = env["DC_ARM_SYSROOT"]
    p = subprocess.run(["qemu-aarch64-static", "-L", sysroot, f"{sysroot}/usr/bin/python3.11",
                        str(tmp_path / "emulated.py"), str(tmp_path), str(libs["aarch64"]), str(libs["armv7"])],
                       capture_output=True, text=True, timeout=900,
                       env=dict(os.environ, PYTHONPATH=env["DC_ARM_SITE"], QEMU_CPU="cortex-a76",
                                TF_CPP_MIN_LOG_LEVEL="2", PYTHONDONTWRITEBYTECODE="1"))
    assert p.returncode == 0, p.stdout + p.stderr
    import json

    res = json.loads(next(line for line in p.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert res["exact"] == [True, True] and res["shared"], res
    assert f"checksum mismatch: the packed data is corrupt; {fb.CORRUPT_FIX}" in res["flipped"], res
    assert f"it is version 9, which only a decoder with DC_VERSION_MAX >= 9 reads; {fb.NEWER_FIX}" in res["newer"], res
    assert "Encountered unresolved custom op: HuffDecode" in res["stock"], res
    assert "wrong ELF class: ELFCLASS32" in res["armv7"], res
