/*
 * tflm_abi.h -- the slice of TensorFlow Lite Micro's C ABI that the HuffDecode
 * TFLM kernel (huffdecode_tflm.c) uses.  Written from the TFLM sources of commit
 * 88f8587b3fa6e4e027caf5437b1510a86bf31a60 (2026-02-03), the commit the PyPI wheel
 * tflite-micro==0.dev20260203175027 records; not copied from them, and no TFLM
 * header is needed to build against it.  Why that nightly: it is the newest whose
 * cp311 build imports on Python 3.11 (the 2026-08/09 cp311 wheels, e.g.
 * 0.dev20260820164721 = commit 90b983c, need the 3.13-only PyObject_ClearManagedDict).
 * Every struct below is byte-identical at 90b983c (the diff of core/c/common.h and
 * micro_common.h between the two touches comments, macros and Windows-only fields),
 * which is the tree the Cortex-M4 build of docs/microcontrollers.md used.  Every name is prefixed (DcTflm*) so this
 * header can sit next to TFLM's own headers in one translation unit
 * (huffdecode_tflm_register.cc asserts the two agree, field by field).
 *
 * TFLM builds with TF_LITE_STATIC_MEMORY, which gives TfLiteTensor and TfLiteNode
 * a reduced layout unlike TFLite's (tflite_abi.h): a kernel built against the
 * wrong one reads garbage.  Layout facts of that commit (tensorflow/lite/core/c/
 * common.h, tensorflow/lite/micro/micro_common.h, micro_mutable_op_resolver.h):
 *  - TfLiteTensor (static memory): quantization, params, data, dims, bytes, type,
 *    allocation_type, is_variable.  Kernels get one from context->GetTensor (a
 *    temporary, valid during Prepare only).
 *  - TfLiteEvalTensor: data, dims, type (context->GetEvalTensor; Init..Invoke).
 *  - TfLiteNode (static memory): inputs, outputs, intermediates, user_data,
 *    builtin_data, custom_initial_data, custom_initial_data_size.
 *  - TFLMRegistration: init, free, prepare, invoke, reset, builtin_code,
 *    custom_name.
 *  - TfLiteContext: TFLite's field order; TFLM sets ReportError, GetTensor,
 *    GetEvalTensor, AllocatePersistentBuffer, RequestScratchBufferInArena,
 *    GetScratchBuffer and GetExternalContext; the rest stay NULL.
 *  - MicroMutableOpResolver<N> (only for the wheel's registerer-by-name route,
 *    which hands us a PythonOpsResolver = MicroMutableOpResolver<200>): vtable
 *    pointer, TFLMRegistration registrations_[N], unsigned registrations_len_,
 *    int32 builtin_codes_[N], parser pointers[N], unsigned num_buitin_ops_.
 * Offsets are asserted below for LP64 (x86_64/aarch64 hosts) and ILP32 (Cortex-M).
 */
#ifndef DC_TFLM_ABI_H_
#define DC_TFLM_ABI_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DC_TFLM_COMMIT "88f8587b3fa6e4e027caf5437b1510a86bf31a60"
#define DC_TFLM_WHEEL_VERSION "0.dev20260203175027"

/* Enums are declared as enums (not int) on purpose: arm-none-eabi GCC defaults to short enums
 * (AAPCS, __ARM_SIZEOF_MINIMAL_ENUM == 1), where TFLM's TfLiteType and TfLiteAllocationType
 * fields are one byte each; ours have the same value ranges (< 256), so they get the same size
 * under either ABI (asserted below and, against TFLM's headers, in huffdecode_tflm_register.cc). */
typedef enum { kDcTflmOk = 0, kDcTflmError = 1 } DcTflmStatus;

/* TfLiteType values (runtime enum, not the schema's TensorType). */
typedef enum {
  kDcTflmNoType = 0,
  kDcTflmFloat32 = 1,
  kDcTflmInt32 = 2,
  kDcTflmUInt8 = 3,
  kDcTflmInt64 = 4,
  kDcTflmBool = 6,
  kDcTflmInt16 = 7,
  kDcTflmInt8 = 9,
  kDcTflmFloat16 = 10
} DcTflmType;
/* TfLiteAllocationType: kTfLiteMmapRo = constant (flatbuffer) data. */
typedef enum { kDcTflmMemNone = 0, kDcTflmMmapRo = 1 } DcTflmAllocationType;
enum { kDcTflmBuiltinCustom = 32 };      /* BuiltinOperator_CUSTOM */
enum { kDcTflmPythonResolverOps = 200 }; /* PythonOpsResolver = MicroMutableOpResolver<200> */

typedef struct DcTflmIntArray {
  int size;
  int data[]; /* C99 flexible array member */
} DcTflmIntArray;

typedef struct DcTflmQuantization {
  DcTflmType quantization_type_placeholder_; /* TfLiteQuantizationType (an enum, < 256) */
  void* params;
} DcTflmQuantization;

typedef struct DcTflmQuantizationParams {
  float scale;
  int32_t zero_point;
} DcTflmQuantizationParams;

typedef struct DcTflmTensor {
  DcTflmQuantization quantization;
  DcTflmQuantizationParams params;
  union {
    void* data;
    const void* raw_const;
  } data;
  DcTflmIntArray* dims;
  size_t bytes;
  DcTflmType type;
  DcTflmAllocationType allocation_type;
  bool is_variable;
} DcTflmTensor;

typedef struct DcTflmEvalTensor {
  union {
    void* data;
    const void* raw_const;
  } data;
  DcTflmIntArray* dims;
  DcTflmType type;
} DcTflmEvalTensor;

typedef struct DcTflmNode {
  DcTflmIntArray* inputs;
  DcTflmIntArray* outputs;
  DcTflmIntArray* intermediates;
  void* user_data;
  void* builtin_data;
  const void* custom_initial_data;
  int custom_initial_data_size;
} DcTflmNode;

struct DcTflmContext;
typedef struct DcTflmContext {
  size_t tensors_size;
  void* GetExecutionPlan;
  void* tensors;
  void* impl_;
  void* ResizeTensor;
  void (*ReportError)(struct DcTflmContext*, const char* msg, ...);
  void* AddTensors;
  void* GetNodeAndRegistration;
  void* ReplaceNodeSubsetsWithDelegateKernels;
  int recommended_num_threads;
  void* GetExternalContext;
  void* SetExternalContext;
  bool allow_fp32_relax_to_fp16;
  void* profiler;
  void* (*AllocatePersistentBuffer)(struct DcTflmContext* ctx, size_t bytes);
  void* AllocateBufferForEval;
  DcTflmStatus (*RequestScratchBufferInArena)(struct DcTflmContext* ctx, size_t bytes,
                                              int* buffer_idx);
  void* (*GetScratchBuffer)(struct DcTflmContext* ctx, int buffer_idx);
  void* ResizeTensorExplicit;
  void* PreviewDelegatePartitioning;
  DcTflmTensor* (*GetTensor)(const struct DcTflmContext* context, int tensor_idx);
  DcTflmEvalTensor* (*GetEvalTensor)(const struct DcTflmContext* context, int tensor_idx);
  void* GetModelMetadata;
  void* AcquireSubgraphContext;
  void* ReleaseSubgraphContext;
  /* (Windows builds append two more pointers; never read here.) */
} DcTflmContext;

typedef struct DcTflmRegistration {
  void* (*init)(DcTflmContext* context, const char* buffer, size_t length);
  void (*free)(DcTflmContext* context, void* buffer);
  DcTflmStatus (*prepare)(DcTflmContext* context, DcTflmNode* node);
  DcTflmStatus (*invoke)(DcTflmContext* context, DcTflmNode* node);
  void (*reset)(DcTflmContext* context, void* buffer);
  int32_t builtin_code;
  const char* custom_name;
} DcTflmRegistration;

/* Head of MicroMutableOpResolver<200> (a C++ object: vtable pointer first). */
typedef struct DcTflmPythonOpsResolver {
  const void* vtable;
  DcTflmRegistration registrations[kDcTflmPythonResolverOps];
  unsigned int registrations_len;
  int32_t builtin_codes[kDcTflmPythonResolverOps];
  void* builtin_parsers[kDcTflmPythonResolverOps];
  unsigned int num_builtin_ops;
} DcTflmPythonOpsResolver;

/* ---- layout checks ---- */
#define DC_TFLM_ASSERT(cond, name) typedef char dc_tflm_assert_##name[(cond) ? 1 : -1]
#if defined(__LP64__) || defined(_LP64)
DC_TFLM_ASSERT(sizeof(DcTflmTensor) == 64, tensor_size);
DC_TFLM_ASSERT(offsetof(DcTflmTensor, data) == 24, tensor_data);
DC_TFLM_ASSERT(offsetof(DcTflmTensor, dims) == 32, tensor_dims);
DC_TFLM_ASSERT(offsetof(DcTflmTensor, bytes) == 40, tensor_bytes);
DC_TFLM_ASSERT(offsetof(DcTflmTensor, type) == 48, tensor_type);
DC_TFLM_ASSERT(offsetof(DcTflmTensor, allocation_type) == 52, tensor_alloc);
DC_TFLM_ASSERT(sizeof(DcTflmEvalTensor) == 24, eval_tensor_size);
DC_TFLM_ASSERT(offsetof(DcTflmEvalTensor, type) == 16, eval_tensor_type);
DC_TFLM_ASSERT(offsetof(DcTflmNode, user_data) == 24, node_user_data);
DC_TFLM_ASSERT(offsetof(DcTflmNode, custom_initial_data) == 40, node_custom_data);
DC_TFLM_ASSERT(offsetof(DcTflmNode, custom_initial_data_size) == 48, node_custom_size);
DC_TFLM_ASSERT(offsetof(DcTflmContext, ReportError) == 40, ctx_report);
DC_TFLM_ASSERT(offsetof(DcTflmContext, AllocatePersistentBuffer) == 112, ctx_persistent);
DC_TFLM_ASSERT(offsetof(DcTflmContext, RequestScratchBufferInArena) == 128, ctx_scratch_req);
DC_TFLM_ASSERT(offsetof(DcTflmContext, GetScratchBuffer) == 136, ctx_scratch_get);
DC_TFLM_ASSERT(offsetof(DcTflmContext, GetTensor) == 160, ctx_get_tensor);
DC_TFLM_ASSERT(offsetof(DcTflmContext, GetEvalTensor) == 168, ctx_get_eval_tensor);
DC_TFLM_ASSERT(sizeof(DcTflmContext) == 200, ctx_size);
DC_TFLM_ASSERT(sizeof(DcTflmRegistration) == 56, reg_size);
DC_TFLM_ASSERT(offsetof(DcTflmRegistration, builtin_code) == 40, reg_builtin);
DC_TFLM_ASSERT(offsetof(DcTflmRegistration, custom_name) == 48, reg_name);
DC_TFLM_ASSERT(offsetof(DcTflmPythonOpsResolver, registrations_len) == 11208, res_len);
DC_TFLM_ASSERT(offsetof(DcTflmPythonOpsResolver, builtin_codes) == 11212, res_codes);
DC_TFLM_ASSERT(offsetof(DcTflmPythonOpsResolver, num_builtin_ops) == 13616, res_nbuiltin);
DC_TFLM_ASSERT(sizeof(DcTflmPythonOpsResolver) == 13624, res_size);
#elif defined(__ILP32__) || (defined(__arm__) && !defined(__aarch64__)) || defined(__XTENSA__)
#if defined(__ARM_SIZEOF_MINIMAL_ENUM) && __ARM_SIZEOF_MINIMAL_ENUM == 1 /* arm-none-eabi */
DC_TFLM_ASSERT(sizeof(DcTflmTensor) == 32, tensor_size);
DC_TFLM_ASSERT(offsetof(DcTflmTensor, allocation_type) == 29, tensor_alloc);
#else
DC_TFLM_ASSERT(sizeof(DcTflmTensor) == 40, tensor_size);
DC_TFLM_ASSERT(offsetof(DcTflmTensor, allocation_type) == 32, tensor_alloc);
#endif
DC_TFLM_ASSERT(offsetof(DcTflmTensor, data) == 16, tensor_data);
DC_TFLM_ASSERT(offsetof(DcTflmTensor, dims) == 20, tensor_dims);
DC_TFLM_ASSERT(offsetof(DcTflmTensor, bytes) == 24, tensor_bytes);
DC_TFLM_ASSERT(offsetof(DcTflmTensor, type) == 28, tensor_type);
DC_TFLM_ASSERT(sizeof(DcTflmEvalTensor) == 12, eval_tensor_size);
DC_TFLM_ASSERT(offsetof(DcTflmNode, user_data) == 12, node_user_data);
DC_TFLM_ASSERT(offsetof(DcTflmNode, custom_initial_data) == 20, node_custom_data);
DC_TFLM_ASSERT(offsetof(DcTflmContext, ReportError) == 20, ctx_report);
DC_TFLM_ASSERT(offsetof(DcTflmContext, AllocatePersistentBuffer) == 56, ctx_persistent);
DC_TFLM_ASSERT(offsetof(DcTflmContext, RequestScratchBufferInArena) == 64, ctx_scratch_req);
DC_TFLM_ASSERT(offsetof(DcTflmContext, GetScratchBuffer) == 68, ctx_scratch_get);
DC_TFLM_ASSERT(offsetof(DcTflmContext, GetTensor) == 80, ctx_get_tensor);
DC_TFLM_ASSERT(offsetof(DcTflmContext, GetEvalTensor) == 84, ctx_get_eval_tensor);
DC_TFLM_ASSERT(sizeof(DcTflmContext) == 100, ctx_size);
DC_TFLM_ASSERT(sizeof(DcTflmRegistration) == 28, reg_size);
DC_TFLM_ASSERT(offsetof(DcTflmRegistration, custom_name) == 24, reg_name);
#endif
#undef DC_TFLM_ASSERT

#ifdef __cplusplus
}
#endif
#endif /* DC_TFLM_ABI_H_ */
