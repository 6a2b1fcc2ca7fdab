/*
 * dc_tflite_example.c -- Android example: run a dc_keras-packed .tflite (HuffDecode ops) with the
 * TensorFlow Lite C API, from Kotlin/Java through JNI.  See docs/android.md.
 *
 * Two ways to make the HuffDecode op known to the interpreter, both provided by
 * libdc_huffdecode.so (built from tflite_kernels/ by CMakeLists.txt for each ABI):
 *
 *  1. Custom op (default here): TfLiteInterpreterOptionsAddCustomOp(options, "HuffDecode",
 *     DcKerasHuffDecodeRegistration(), 1, 1).  The op decodes its weight once, in Prepare.
 *     XNNPACK (applied by the interpreter before that Prepare) leaves the layers fed by decoded
 *     weights to the builtin kernels: correct, but slower than the unpacked model.
 *  2. Delegate: TfLiteInterpreterOptionsAddDelegate(options, tflite_plugin_create_delegate(...)).
 *     The delegate decodes every packed tensor before XNNPACK looks at the graph, so the packed
 *     model runs on the same kernels as the unpacked one.  This is the route dc_keras.runtime
 *     uses and the one tested under emulation (make test-arm; LiteRT Python on aarch64).
 *     From Kotlin with the Java API: wrap HuffDecodeDelegate.nativeCreate() (below) in an
 *     org.tensorflow.lite.Delegate and pass it to Interpreter.Options.addDelegate().
 *
 * Needs the TFLite C API headers and library: the org.tensorflow:tensorflow-lite AAR ships them
 * (headers/ and jni/<abi>/libtensorflowlite_jni.so); CMakeLists.txt option DC_ANDROID_EXAMPLE.
 * The JNI class is org.dckeras.example.PackedModel (rename the functions for your package).
 */
#include <jni.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __ANDROID__
#include <android/log.h>
#endif

#include "dc_tflite.h" /* libdc_huffdecode.so's entry points (tflite_kernels/include) */
#include "dc_unpack.h" /* DC_UNPACK_CORRUPT_FIX: what to do about a damaged file */
#include "tensorflow/lite/c/c_api.h"
#include "tensorflow/lite/c/c_api_experimental.h" /* AddCustomOp in older TFLite releases */

enum { DC_ROUTE_CUSTOM_OP = 0, DC_ROUTE_DELEGATE = 1 };

typedef struct {
  void* model_data; /* must outlive the model and the interpreter (TfLiteModelCreate) */
  TfLiteModel* model;
  TfLiteInterpreter* interpreter;
  TfLiteDelegate* delegate; /* DC_ROUTE_DELEGATE only; destroyed after the interpreter */
  char error[512];
} DcRunner;

static void dc_report(void* user_data, const char* format, va_list args) {
  DcRunner* r = (DcRunner*)user_data;
  if (r->error[0] == '\0') vsnprintf(r->error, sizeof r->error, format, args);
}

/* tflite_plugin_create_delegate's reason when it returns NULL (an option, or the environment
 * variable DC_KERAS_DECODE_THREADS, it cannot read; out of memory).  Its report_error takes no
 * user data, so the reason goes through one buffer, creations one at a time; on Android also to
 * logcat (stderr, where the library says it without a report_error, goes nowhere in an app). */
static pthread_mutex_t g_create_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_create_error[512];

static void dc_create_report(const char* msg) {
  snprintf(g_create_error, sizeof g_create_error, "%s", msg);
#ifdef __ANDROID__
  __android_log_print(ANDROID_LOG_ERROR, "dc_keras", "%s", msg);
#endif
}

/* The HuffDecode delegate (default options), or NULL with the library's reason in err. */
static TfLiteDelegate* dc_delegate_create(char* err, size_t err_size) {
  TfLiteDelegate* d;
  pthread_mutex_lock(&g_create_lock);
  g_create_error[0] = '\0';
  d = tflite_plugin_create_delegate(NULL, NULL, 0, dc_create_report);
  if (!d) {
    snprintf(err, err_size, "cannot create the HuffDecode delegate: %s",
             g_create_error[0] ? g_create_error : "out of memory");
  }
  pthread_mutex_unlock(&g_create_lock);
  return d;
}

static void dc_runner_destroy(DcRunner* r) {
  if (!r) return;
  if (r->interpreter) TfLiteInterpreterDelete(r->interpreter);
  if (r->delegate) tflite_plugin_destroy_delegate(r->delegate);
  if (r->model) TfLiteModelDelete(r->model);
  free(r->model_data);
  free(r);
}

/* Loads a (packed or ordinary) model from memory.  On failure returns NULL and writes the
 * reason (TFLite's or the decoder's message, e.g. a corrupt packed tensor) to err. */
static DcRunner* dc_runner_create(const void* data, size_t size, int num_threads, int route,
                                  char* err, size_t err_size) {
  DcRunner* r = (DcRunner*)calloc(1, sizeof(DcRunner));
  TfLiteInterpreterOptions* options = NULL;
  if (route != DC_ROUTE_CUSTOM_OP && route != DC_ROUTE_DELEGATE) {
    snprintf(err, err_size, "route must be %d (ROUTE_CUSTOM_OP) or %d (ROUTE_DELEGATE), got %d",
             DC_ROUTE_CUSTOM_OP, DC_ROUTE_DELEGATE, route);
    free(r);
    return NULL;
  }
  if (!r || !(r->model_data = malloc(size ? size : 1))) {
    snprintf(err, err_size, "out of memory");
    free(r);
    return NULL;
  }
  memcpy(r->model_data, data, size);
  r->model = TfLiteModelCreate(r->model_data, size);
  if (!r->model) {
    snprintf(err, err_size, "not a valid .tflite model (%zu bytes); %s", size,
             DC_UNPACK_CORRUPT_FIX);
    dc_runner_destroy(r);
    return NULL;
  }
  options = TfLiteInterpreterOptionsCreate();
  TfLiteInterpreterOptionsSetNumThreads(options, num_threads);
  TfLiteInterpreterOptionsSetErrorReporter(options, dc_report, r);
  if (route == DC_ROUTE_DELEGATE) {
    r->delegate = dc_delegate_create(err, err_size);
    if (!r->delegate) {
      TfLiteInterpreterOptionsDelete(options);
      dc_runner_destroy(r);
      return NULL;
    }
    TfLiteInterpreterOptionsAddDelegate(options, r->delegate);
  } else {
    /* The name must outlive the options: a string literal does. */
    TfLiteInterpreterOptionsAddCustomOp(options, "HuffDecode", DcKerasHuffDecodeRegistration(), 1,
                                        1);
  }
  r->interpreter = TfLiteInterpreterCreate(r->model, options);
  TfLiteInterpreterOptionsDelete(options);
  if (!r->interpreter || TfLiteInterpreterAllocateTensors(r->interpreter) != kTfLiteOk) {
    snprintf(err, err_size, "cannot load the model: %s",
             r->error[0] ? r->error : "interpreter creation failed");
    dc_runner_destroy(r);
    return NULL;
  }
  /* TFLite defers the delegate kernel's Prepare, which reports a damaged packed tensor, to the
   * first Invoke for ops after a dynamic output shape: ask the delegate to fail at load then too. */
  if (r->delegate && DcKerasHuffDecodeDelegateError(r->delegate, r->error, sizeof r->error) > 0) {
    snprintf(err, err_size, "cannot load the model: %s", r->error);
    dc_runner_destroy(r);
    return NULL;
  }
  return r;
}

/* The name of a TfLiteType a classifier's input or output may have (c_api_types.h's values). */
static const char* dc_type_name(TfLiteType type) {
  switch ((int)type) {
    case 1: return "float32";
    case 2: return "int32";
    case 3: return "uint8";
    case 4: return "int64";
    case 6: return "bool";
    case 7: return "int16";
    case 9: return "int8";
    case 10: return "float16";
    default: return "a type other than float32";
  }
}

/* One float32 input and one float32 output (e.g. a classifier); copies with size checks.  A
 * model with quantized inputs or outputs (an int8 model converted with inference_input_type /
 * inference_output_type int8) is refused with what it has: feed it bytes of its own type. */
static int dc_runner_run(DcRunner* r, const float* in, size_t in_count, float* out,
                         size_t out_count, char* err, size_t err_size) {
  TfLiteTensor* input = TfLiteInterpreterGetInputTensor(r->interpreter, 0);
  const TfLiteTensor* output;
  if (TfLiteTensorType(input) != kTfLiteFloat32) {
    snprintf(err, err_size,
             "the model's input 0 is %s (%zu bytes), not float32, which this example feeds: "
             "quantize the values with the input's TfLiteTensorQuantizationParams and copy them "
             "in its type, or convert the model with float32 inputs",
             dc_type_name(TfLiteTensorType(input)), TfLiteTensorByteSize(input));
    return 0;
  }
  if (TfLiteTensorByteSize(input) != in_count * sizeof(float)) {
    snprintf(err, err_size, "input must be %zu float32 values, got %zu",
             TfLiteTensorByteSize(input) / sizeof(float), in_count);
    return 0;
  }
  TfLiteTensorCopyFromBuffer(input, in, in_count * sizeof(float));
  r->error[0] = '\0';
  if (TfLiteInterpreterInvoke(r->interpreter) != kTfLiteOk) {
    snprintf(err, err_size, "invoke failed: %s", r->error);
    return 0;
  }
  output = TfLiteInterpreterGetOutputTensor(r->interpreter, 0);
  if (TfLiteTensorType(output) != kTfLiteFloat32) {
    snprintf(err, err_size,
             "the model's output 0 is %s (%zu bytes), not float32, which this example returns: "
             "copy it out in its type and dequantize it with the output's "
             "TfLiteTensorQuantizationParams, or convert the model with float32 outputs",
             dc_type_name(TfLiteTensorType(output)), TfLiteTensorByteSize(output));
    return 0;
  }
  if (TfLiteTensorByteSize(output) != out_count * sizeof(float)) {
    snprintf(err, err_size,
             "the model's output 0 is %zu float32 values: pass outputSize = %zu, not %zu",
             TfLiteTensorByteSize(output) / sizeof(float),
             TfLiteTensorByteSize(output) / sizeof(float), out_count);
    return 0;
  }
  TfLiteTensorCopyToBuffer(output, out, out_count * sizeof(float));
  return 1;
}

/* ---------------------------------------------------------------- JNI ---- */

static void throw_java(JNIEnv* env, const char* cls, const char* msg) {
  jclass c = (*env)->FindClass(env, cls);
  if (c) (*env)->ThrowNew(env, c, msg);
}

/* PackedModel.nativeCreate(model: ByteBuffer (direct), numThreads: Int, route: Int): Long */
JNIEXPORT jlong JNICALL Java_org_dckeras_example_PackedModel_nativeCreate(JNIEnv* env, jclass cls,
                                                                          jobject model,
                                                                          jint num_threads,
                                                                          jint route) {
  char err[600];
  const void* data = (*env)->GetDirectBufferAddress(env, model);
  jlong size = (*env)->GetDirectBufferCapacity(env, model);
  DcRunner* r;
  (void)cls;
  if (!data || size <= 0) {
    throw_java(env, "java/lang/IllegalArgumentException",
               "model must be a non-empty direct ByteBuffer");
    return 0;
  }
  r = dc_runner_create(data, (size_t)size, (int)num_threads, (int)route, err, sizeof err);
  if (!r) {
    throw_java(env, "java/lang/IllegalArgumentException", err);
    return 0;
  }
  return (jlong)(intptr_t)r;
}

/* PackedModel.nativeRun(handle: Long, input: FloatArray, outputSize: Int): FloatArray -- one call
 * at a time per handle, never during nativeClose (docs/android.md: PackedModel's run and close are
 * @Synchronized): a TFLite interpreter is not safe to invoke from two threads at once. */
JNIEXPORT jfloatArray JNICALL Java_org_dckeras_example_PackedModel_nativeRun(
    JNIEnv* env, jclass cls, jlong handle, jfloatArray input, jint output_size) {
  DcRunner* r = (DcRunner*)(intptr_t)handle;
  char err[600];
  jsize n = (*env)->GetArrayLength(env, input);
  jfloatArray result;
  jfloat* in;
  float* out;
  int ok;
  (void)cls;
  if (!r || output_size <= 0) {
    throw_java(env, "java/lang/IllegalStateException", "model is closed or outputSize <= 0");
    return NULL;
  }
  out = (float*)malloc((size_t)output_size * sizeof(float));
  in = (*env)->GetFloatArrayElements(env, input, NULL);
  if (!out || !in) {
    free(out);
    if (in) (*env)->ReleaseFloatArrayElements(env, input, in, JNI_ABORT);
    throw_java(env, "java/lang/OutOfMemoryError", "dc_tflite_example");
    return NULL;
  }
  ok = dc_runner_run(r, in, (size_t)n, out, (size_t)output_size, err, sizeof err);
  (*env)->ReleaseFloatArrayElements(env, input, in, JNI_ABORT);
  if (!ok) {
    free(out);
    throw_java(env, "java/lang/IllegalArgumentException", err);
    return NULL;
  }
  result = (*env)->NewFloatArray(env, output_size);
  if (result) (*env)->SetFloatArrayRegion(env, result, 0, output_size, out);
  free(out);
  return result;
}

/* PackedModel.nativeClose(handle: Long) */
JNIEXPORT void JNICALL Java_org_dckeras_example_PackedModel_nativeClose(JNIEnv* env, jclass cls,
                                                                        jlong handle) {
  (void)env;
  (void)cls;
  dc_runner_destroy((DcRunner*)(intptr_t)handle);
}

/* HuffDecodeDelegate.nativeCreate(): Long -- a TfLiteDelegate* for the Java API
 * (org.tensorflow.lite.Delegate.getNativeHandle()). */
JNIEXPORT jlong JNICALL Java_org_dckeras_example_HuffDecodeDelegate_nativeCreate(JNIEnv* env,
                                                                                 jclass cls) {
  char err[600];
  TfLiteDelegate* d = dc_delegate_create(err, sizeof err);
  (void)cls;
  if (!d) throw_java(env, "java/lang/IllegalStateException", err);
  return (jlong)(intptr_t)d;
}

/* HuffDecodeDelegate.nativeDelete(handle: Long) -- after the Interpreter using it is closed. */
JNIEXPORT void JNICALL Java_org_dckeras_example_HuffDecodeDelegate_nativeDelete(JNIEnv* env,
                                                                                jclass cls,
                                                                                jlong handle) {
  (void)env;
  (void)cls;
  tflite_plugin_destroy_delegate((TfLiteDelegate*)(intptr_t)handle);
}
