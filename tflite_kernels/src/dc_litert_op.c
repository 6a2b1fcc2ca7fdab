/*
 * dc_litert_op.c -- HuffDecode as a LiteRT 2.x custom op kernel, for CompiledModel
 * (LiteRtAddCustomOpKernelOption).  Plain C99 with its own minimal declarations of the
 * LiteRT C ABI (litert_custom_op_kernel.h, litert_layout.h as of LiteRT 2.2/2.3); no LiteRT
 * header, no link to libLiteRt: the host hands over the three LiteRT functions the kernel
 * calls (LiteRtLockTensorBuffer, LiteRtUnlockTensorBuffer, LiteRtGetTensorBufferSize).
 *
 *   void* k = DcKerasLiteRtHuffDecodeCreate(model, size, &api, why, sizeof why);
 *   LiteRtAddCustomOpKernelOption(options, "HuffDecode", 1,
 *                                 DcKerasLiteRtHuffDecodeKernel(), k);
 *   ... LiteRtCreateCompiledModel / LiteRtRunCompiledModel ...
 *   if (DcKerasLiteRtHuffDecodeError(k)[0]) -> the run's outputs are not valid
 *   LiteRtDestroyCompiledModel(...); DcKerasLiteRtHuffDecodeDestroy(k);
 *
 * Why the model bytes: LiteRT asks the kernel for output shapes (GetOutputLayouts) from the
 * input layouts only, never the data, and a packed input is just [N] bytes.  Create lists the
 * model's HuffDecode ops (dc_list_huffdecode) and decodes them all at once (dc_decode_many),
 * so bad packed data fails here, before compilation; GetOutputLayouts then answers from the
 * op whose packed size is N, and Run finds the op by its packed bytes and copies the decoded
 * tensor into the output buffer (LiteRT gives custom ops arena outputs, rewritten by other
 * ops between runs, so the copy is made on every run).
 *
 * LiteRT 2.2/2.3 ignore the status a custom kernel returns from GetOutputLayouts and Run
 * (litert/runtime/custom_op_dispatcher.cc), so the kernel also records its first error;
 * callers check DcKerasLiteRtHuffDecodeError after a run (dc_keras.runtime does).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dc_parallel.h"
#include "dc_tflite.h"
#include "dc_unpack.h"

#define DC_EXPORT __attribute__((visibility("default")))

/* ---- the LiteRT ABI we rely on (LiteRtStatus is a C enum: int) ---- */
typedef int DcLiteRtStatus;
enum { kDcLiteRtOk = 0, kDcLiteRtInvalidArgument = 1, kDcLiteRtRuntimeFailure = 500 };
enum { kDcLiteRtLockRead = 0, kDcLiteRtLockWrite = 1 };
#define DC_LITERT_MAX_RANK 8
#define DC_LITERT_HOST_ALIGNMENT 64 /* LITERT_HOST_MEMORY_BUFFER_ALIGNMENT */

typedef struct {
  unsigned int rank : 7;
  unsigned int has_strides : 1;
  int32_t dimensions[DC_LITERT_MAX_RANK];
  uint32_t strides[DC_LITERT_MAX_RANK];
} DcLiteRtLayout; /* LiteRtLayout: 68 bytes */

typedef struct {
  DcLiteRtStatus (*Init)(void* user_data, const void* init_data, size_t init_data_size);
  DcLiteRtStatus (*GetOutputLayouts)(void* user_data, size_t num_inputs,
                                     const DcLiteRtLayout* input_layouts, size_t num_outputs,
                                     DcLiteRtLayout* output_layouts);
  DcLiteRtStatus (*Run)(void* user_data, size_t num_inputs, void* const* inputs, size_t num_outputs,
                        void* const* outputs);
  DcLiteRtStatus (*Destroy)(void* user_data);
} DcLiteRtCustomOpKernel; /* LiteRtCustomOpKernel */

/* The LiteRT functions the kernel calls, filled in by the host (dc_tflite.h). */
typedef DcKerasLiteRtApi DcLiteRtApi;

typedef struct {
  DcLiteRtApi api;
  dc_huffdecode_op* ops;
  size_t num_ops;
  void** decoded; /* per op, malloc'd */
  char error[512];
} DcLiteRtHuff;

static void record(DcLiteRtHuff* k, const char* fmt, ...) {
  if (k->error[0]) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(k->error, sizeof k->error, fmt, ap);
  va_end(ap);
}

static DcLiteRtStatus k_init(void* user_data, const void* init_data, size_t n) {
  (void)user_data;
  (void)init_data;
  (void)n;
  return kDcLiteRtOk;
}

/* Called once per node: the state belongs to the host (DcKerasLiteRtHuffDecodeDestroy). */
static DcLiteRtStatus k_destroy(void* user_data) {
  (void)user_data;
  return kDcLiteRtOk;
}

static DcLiteRtStatus k_layouts(void* user_data, size_t num_inputs, const DcLiteRtLayout* in,
                                size_t num_outputs, DcLiteRtLayout* out) {
  DcLiteRtHuff* k = (DcLiteRtHuff*)user_data;
  if (num_inputs != 1 || num_outputs != 1 || in[0].rank != 1 || in[0].dimensions[0] < 0) {
    record(k, "HuffDecode: expected one 1-D packed input and one output");
    return kDcLiteRtInvalidArgument;
  }
  const dc_huffdecode_op* found = NULL;
  for (size_t i = 0; i < k->num_ops; ++i) {
    if (k->ops[i].packed_size != (size_t)in[0].dimensions[0]) continue;
    if (found && (found->rank != k->ops[i].rank ||
                  memcmp(found->dims, k->ops[i].dims, sizeof found->dims) != 0)) {
      record(k,
             "HuffDecode(%s, %s): two packed tensors of %d bytes have different shapes; "
             "unpack the model (dc_unpack) for CompiledModel",
             found->name, k->ops[i].name, in[0].dimensions[0]);
      return kDcLiteRtInvalidArgument;
    }
    found = &k->ops[i];
  }
  if (!found) {
    record(k,
           "HuffDecode: no packed tensor of %d bytes in the model given to "
           "DcKerasLiteRtHuffDecodeCreate",
           in[0].dimensions[0]);
    return kDcLiteRtInvalidArgument;
  }
  memset(&out[0], 0, sizeof out[0]);
  out[0].rank = found->rank;
  for (uint32_t d = 0; d < found->rank; ++d) out[0].dimensions[d] = found->dims[d];
  return kDcLiteRtOk;
}

static DcLiteRtStatus k_run(void* user_data, size_t num_inputs, void* const* inputs,
                            size_t num_outputs, void* const* outputs) {
  DcLiteRtHuff* k = (DcLiteRtHuff*)user_data;
  void *src = NULL, *dst = NULL;
  size_t src_n = 0, dst_n = 0;
  if (num_inputs != 1 || num_outputs != 1) return kDcLiteRtInvalidArgument;
  if (k->api.size(inputs[0], &src_n) != kDcLiteRtOk ||
      k->api.size(outputs[0], &dst_n) != kDcLiteRtOk ||
      k->api.lock(inputs[0], &src, kDcLiteRtLockRead) != kDcLiteRtOk) {
    record(k, "HuffDecode: cannot read the packed input buffer");
    return kDcLiteRtRuntimeFailure;
  }
  size_t i = 0;
  while (i < k->num_ops &&
         (k->ops[i].packed_size != src_n || memcmp(k->ops[i].packed, src, src_n) != 0)) {
    ++i;
  }
  k->api.unlock(inputs[0]);
  if (i == k->num_ops) {
    record(k, "HuffDecode: packed input not found in the model given to the kernel");
    return kDcLiteRtRuntimeFailure;
  }
  if (k->ops[i].output_bytes > dst_n) {
    record(k, "HuffDecode(%s): output buffer too small", k->ops[i].name);
    return kDcLiteRtRuntimeFailure;
  }
  if (k->api.lock(outputs[0], &dst, kDcLiteRtLockWrite) != kDcLiteRtOk) {
    record(k, "HuffDecode(%s): cannot write the output buffer", k->ops[i].name);
    return kDcLiteRtRuntimeFailure;
  }
  memcpy(dst, k->decoded[i], k->ops[i].output_bytes);
  memset((uint8_t*)dst + k->ops[i].output_bytes, 0, dst_n - k->ops[i].output_bytes);
  k->api.unlock(outputs[0]);
  return kDcLiteRtOk;
}

static const DcLiteRtCustomOpKernel g_kernel = {k_init, k_layouts, k_run, k_destroy};

DC_EXPORT const void* DcKerasLiteRtHuffDecodeKernel(void) {
  return &g_kernel;
}

DC_EXPORT void DcKerasLiteRtHuffDecodeDestroy(void* state) {
  DcLiteRtHuff* k = (DcLiteRtHuff*)state;
  if (!k) return;
  for (size_t i = 0; k->decoded && i < k->num_ops; ++i) free(k->decoded[i]);
  free(k->decoded);
  free(k->ops);
  free(k);
}

/* Decodes every HuffDecode op of `model`; NULL + why on error.  `model` must stay valid as long
 * as the state (its packed bytes are compared at run time), and be the buffer LiteRT loads:
 * its packed tensors must start on 64-byte aligned addresses (dc_align_packed, then aligned
 * memory), which LiteRT requires of a custom op's constant input; refused here otherwise. */
DC_EXPORT void* DcKerasLiteRtHuffDecodeCreate(const uint8_t* model, size_t n,
                                              const DcLiteRtApi* api, char* why, size_t why_n) {
  DcLiteRtHuff* k = (DcLiteRtHuff*)calloc(1, sizeof *k);
  if (!k || !api || !api->lock || !api->unlock || !api->size) {
    if (why && why_n)
      snprintf(why, why_n, "%s", k ? "the LiteRT functions are required" : "out of memory");
    free(k);
    return NULL;
  }
  k->api = *api;
  if (!dc_decode_threads_check(why, why_n)) { /* dc_decode_many below reads it */
    DcKerasLiteRtHuffDecodeDestroy(k);
    return NULL;
  }
  if (dc_list_huffdecode(model, n, &k->ops, &k->num_ops, why, why_n) != DC_UNPACK_OK) {
    DcKerasLiteRtHuffDecodeDestroy(k);
    return NULL;
  }
  /* LiteRT wraps each packed input as a host tensor buffer and refuses one that is not
   * DC_LITERT_HOST_ALIGNMENT-aligned, at the first run and with a bare status: refuse here. */
  for (size_t i = 0; i < k->num_ops; ++i) {
    if (((uintptr_t)k->ops[i].packed % DC_LITERT_HOST_ALIGNMENT) == 0) continue;
    if (why && why_n) {
      snprintf(why, why_n,
               "HuffDecode(%s): its packed bytes are not %d-byte aligned in memory, and LiteRT's "
               "CompiledModel refuses such a constant input (\"Unaligned host memory pointer\"): "
               "run dc_align_packed(model, n, %d, ...) and pass its result, copied to "
               "%d-byte aligned memory (e.g. aligned_alloc), to LiteRT and to this function",
               k->ops[i].name, DC_LITERT_HOST_ALIGNMENT, DC_LITERT_HOST_ALIGNMENT,
               DC_LITERT_HOST_ALIGNMENT);
    }
    DcKerasLiteRtHuffDecodeDestroy(k);
    return NULL;
  }
  dc_decode_job* jobs = (dc_decode_job*)calloc(k->num_ops + 1, sizeof *jobs);
  k->decoded = (void**)calloc(k->num_ops + 1, sizeof(void*));
  int ok = jobs && k->decoded;
  for (size_t i = 0; ok && i < k->num_ops; ++i) {
    jobs[i].packed = k->ops[i].packed;
    jobs[i].packed_size = k->ops[i].packed_size;
    jobs[i].out_size = k->ops[i].output_bytes;
    jobs[i].out = k->decoded[i] = dc_alloc_output(k->ops[i].output_bytes);
    ok = jobs[i].out != NULL;
  }
  if (!ok && why && why_n) snprintf(why, why_n, "out of memory");
  if (ok && dc_decode_many(jobs, k->num_ops, 0) != 0) {
    for (size_t i = 0; i < k->num_ops; ++i) {
      if (jobs[i].status == DC_OK) continue;
      if (why && why_n) {
        snprintf(why, why_n, "HuffDecode(%s): decoding failed: %s; %s", k->ops[i].name,
                 dc_strerror(jobs[i].status), DC_UNPACK_CORRUPT_FIX); /* as dc_unpack says it */
      }
      break;
    }
    ok = 0;
  }
  free(jobs);
  if (!ok) {
    DcKerasLiteRtHuffDecodeDestroy(k);
    return NULL;
  }
  return k;
}

/* The kernel's first error ("" if none): LiteRT does not propagate a custom kernel's status. */
DC_EXPORT const char* DcKerasLiteRtHuffDecodeError(const void* state) {
  return state ? ((const DcLiteRtHuff*)state)->error : "no state";
}
