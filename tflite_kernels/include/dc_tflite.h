/*
 * dc_tflite.h -- the TFLite / LiteRT entry points of libdc_huffdecode.so, for C and C++ apps that
 * drive TFLite from native code (docs/android.md).  Declared with TFLite's own struct tags
 * (struct TfLiteRegistration, struct TfLiteDelegate), so this header needs no TFLite header and
 * mixes with TFLite's: include it next to tensorflow/lite/c/c_api.h.
 *
 * Custom op (TFLite C API):
 *     TfLiteInterpreterOptionsAddCustomOp(options, "HuffDecode",
 *                                         DcKerasHuffDecodeRegistration(), 1, 1);
 * Delegate (applied before XNNPACK and any GPU/NPU delegate; destroyed after the interpreter):
 *     static char k0[] = "weights", v0[] = "compressed"; (C++ takes no string literal as char*)
 *     char* k[] = {k0};
 *     char* v[] = {v0};
 *     TfLiteDelegate* d = tflite_plugin_create_delegate(k, v, 1, my_report);
 *     if (!d) ... my_report got the reason (stderr when it is NULL)
 *     TfLiteInterpreterOptionsAddDelegate(options, d);
 *     ... TfLiteInterpreterDelete(interpreter); tflite_plugin_destroy_delegate(d);
 * LiteRT CompiledModel custom op kernel (CPU; the model first through dc_align_packed(..., 64,
 * ...) and into 64-byte aligned memory, dc_unpack.h):
 *     DcKerasLiteRtApi api = {(DcKerasLiteRtLockFn)LiteRtLockTensorBuffer,
 *                             (DcKerasLiteRtUnlockFn)LiteRtUnlockTensorBuffer,
 *                             (DcKerasLiteRtSizeFn)LiteRtGetTensorBufferSize};
 *     void* k = DcKerasLiteRtHuffDecodeCreate(model, n, &api, why, sizeof why);
 *     LiteRtAddCustomOpKernelOption(options, "HuffDecode", 1,
 *                                   (const LiteRtCustomOpKernel*)DcKerasLiteRtHuffDecodeKernel(), k);
 *     ... after each LiteRtRunCompiledModel: DcKerasLiteRtHuffDecodeError(k)[0] != 0 -> failed
 *     LiteRtDestroyCompiledModel(...); DcKerasLiteRtHuffDecodeDestroy(k);
 */
#ifndef DC_TFLITE_H_
#define DC_TFLITE_H_

#include <stddef.h>
#include <stdint.h>

#include "dc_codec.h" /* DC_API */

#ifdef __cplusplus
extern "C" {
#endif

struct TfLiteRegistration;
struct TfLiteDelegate;

/* ---- TFLite (Interpreter) ---- */

/* The HuffDecode op as a TFLite custom op (TfLiteRegistration with TFLite's layout; static
 * storage).  It decodes its weight in Prepare, one tensor per node. */
DC_API const struct TfLiteRegistration* DcKerasHuffDecodeRegistration(void);

/* The external-delegate plugin entry points (what load_delegate calls).  options: num_options
 * key/value strings, keys weights=decoded|compressed, keep_decoded=1|0, decode_threads=0..64,
 * decode_async=1|0, max_density=1..100 (docs/android.md).  On an unknown key or value, or out of
 * memory, returns NULL after passing the reason to report_error (stderr if that is NULL).  The
 * option strings are read during the call only (not kept); report_error is not called later.
 * fork() waits for the calls into a live delegate in progress on other threads (e.g. a Prepare
 * decoding a model), so that a child can use the delegates it inherits. */
DC_API struct TfLiteDelegate* tflite_plugin_create_delegate(char** options_keys,
                                                            char** options_values,
                                                            size_t num_options,
                                                            void (*report_error)(const char*));
DC_API void tflite_plugin_destroy_delegate(struct TfLiteDelegate* delegate);

/* What the delegate did with each layer fed by packed weights (weights=compressed), one
 * tab-separated line each, "compressed <name> <rows>x<cols> <float32|int8> <non-zeros> <bytes>
 * <op> <codes|tiles|values>" or "dense <name> <reason> <op>" (tab, newline, carriage return and backslash in a tensor name or reason
 * written as \t, \n, \r and \\); copies up to size - 1 bytes (NUL terminated), returns the full
 * length. A delegate shared by interpreters (any threads: it takes a lock) holds each model's lines once,
 * however many interpreters load it, up to 1 MiB of lines; then one last line "more\t<count>\t..."
 * counts the lines not kept. */
DC_API size_t DcKerasHuffDecodeDelegateReport(const struct TfLiteDelegate* delegate, char* buf,
                                              size_t size);

/* The delegate's first error, "" if none (waits for its decode helpers): TFLite reports it in the
 * delegate kernel's Prepare, which it defers to the first Invoke for ops after a dynamic output
 * shape; call this after AllocateTensors to fail at load then too.  A delegate shared by several
 * interpreters fails only the kernels of the interpreter whose model has the error, but this
 * returns the first error of any of them: use one delegate per interpreter to read it.  Copies
 * up to size - 1 bytes (NUL terminated), returns the full length. */
DC_API size_t DcKerasHuffDecodeDelegateError(struct TfLiteDelegate* delegate, char* buf,
                                             size_t size);

/* ---- LiteRT CompiledModel custom op kernel (dc_litert_op.c) ---- */

/* LiteRT's LiteRtLockTensorBuffer, LiteRtUnlockTensorBuffer and LiteRtGetTensorBufferSize
 * (LiteRtStatus is an int-sized C enum, LiteRtTensorBuffer a pointer, the lock mode an enum:
 * cast the functions to these types). */
typedef int (*DcKerasLiteRtLockFn)(void* buffer, void** host_mem, int lock_mode);
typedef int (*DcKerasLiteRtUnlockFn)(void* buffer);
typedef int (*DcKerasLiteRtSizeFn)(void* buffer, size_t* size);
typedef struct DcKerasLiteRtApi {
  DcKerasLiteRtLockFn lock;
  DcKerasLiteRtUnlockFn unlock;
  DcKerasLiteRtSizeFn size;
} DcKerasLiteRtApi;

/* The kernel to pass to LiteRtAddCustomOpKernelOption (a LiteRtCustomOpKernel*). */
DC_API const void* DcKerasLiteRtHuffDecodeKernel(void);

/* Lists and decodes every HuffDecode op of `model` (n bytes) for the kernel; NULL and `why`
 * (why_n bytes) on error: a corrupt packed tensor, packed bytes not 64-byte aligned in memory
 * (dc_align_packed), or an environment variable DC_KERAS_DECODE_THREADS it cannot read
 * (dc_decode_threads_check).  `model` must be the buffer LiteRT loads and outlive the state. */
DC_API void* DcKerasLiteRtHuffDecodeCreate(const uint8_t* model, size_t n,
                                           const DcKerasLiteRtApi* api, char* why, size_t why_n);

/* The kernel's first error, "" if none: LiteRT ignores a custom kernel's status, so check it
 * after each run.  The string belongs to the state (valid until DcKerasLiteRtHuffDecodeDestroy);
 * "no state" for NULL. */
DC_API const char* DcKerasLiteRtHuffDecodeError(const void* state);

/* After the compiled model that uses it is destroyed. */
DC_API void DcKerasLiteRtHuffDecodeDestroy(void* state);

#ifdef __cplusplus
}
#endif

#endif /* DC_TFLITE_H_ */
