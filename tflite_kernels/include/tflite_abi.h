/*
 * tflite_abi.h -- the minimal slice of the TensorFlow Lite C ABI that the
 * HuffDecode op and its delegate use.  Written from the upstream headers
 * (tensorflow/lite/core/c/common.h and c_api_types.h, TF 2.21 / LiteRT 2.x),
 * not copied from them; no TensorFlow header is needed to build against it.
 *
 * Rules that make a partial declaration safe:
 *  - TfLiteTensor is an array element of context->tensors, so it is declared
 *    in full and its size (the stride) is asserted.
 *  - TfLiteNode, TfLiteContext and TfLiteDelegate are only reached through
 *    pointers; every field we touch is declared at its upstream offset
 *    (asserted below for LP64 targets: x86_64, aarch64).
 *  - TfLiteRegistration is declared exactly as upstream (size asserted): it is
 *    passed BY VALUE to ReplaceNodeSubsetsWithDelegateKernels, and on AAPCS32
 *    (armv7) a larger struct would shift the arguments that follow it.
 *    Registrations handed out BY POINTER (the op's, for AddCustom and the C
 *    API, which copy sizeof(their struct)) live in DcPaddedRegistration, whose
 *    zero-filled tail makes a newer runtime with a larger struct read zeros
 *    (= "not set") instead of whatever follows in memory.
 *
 * Enum values that matter and are easy to get wrong:
 *  - TfLiteType (runtime) is NOT the schema's TensorType:
 *      runtime kTfLiteFloat32 = 1, kTfLiteFloat16 = 10,
 *      schema  FLOAT32 = 0,       FLOAT16 = 1;
 *    int32/uint8/int64/bool/int16/int8 happen to coincide (2, 3, 4, 6, 7, 9); float64, uint64,
 *    uint32, uint16 are 11, 13, 16, 17 at run time but 10, 12, 15, 16 in the schema.
 *  - kTfLitePersistentRo = 5, kTfLiteMmapRo = 1.
 */
#ifndef DC_TFLITE_ABI_H_
#define DC_TFLITE_ABI_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  kTfLiteOk = 0,
  kTfLiteError = 1,
  kTfLiteDelegateError = 2,
  kTfLiteApplicationError = 3
} TfLiteStatus;

/* Runtime element types (c_api_types.h / tflite_types.h). */
typedef enum {
  kTfLiteNoType = 0,
  kTfLiteFloat32 = 1,
  kTfLiteInt32 = 2,
  kTfLiteUInt8 = 3,
  kTfLiteInt64 = 4,
  kTfLiteString = 5,
  kTfLiteBool = 6,
  kTfLiteInt16 = 7,
  kTfLiteComplex64 = 8,
  kTfLiteInt8 = 9,
  kTfLiteFloat16 = 10,
  kTfLiteFloat64 = 11,
  kTfLiteUInt64 = 13,
  kTfLiteUInt32 = 16,
  kTfLiteUInt16 = 17,
  kTfLiteInt4 = 18, /* tflite_types.h (TF 2.21); stored two per byte */
  kTfLiteBFloat16 = 19
} TfLiteType;

typedef enum {
  kTfLiteMemNone = 0,
  kTfLiteMmapRo = 1,
  kTfLiteArenaRw = 2,
  kTfLiteArenaRwPersistent = 3,
  kTfLiteDynamic = 4,
  kTfLitePersistentRo = 5,
  kTfLiteCustom = 6,
  kTfLiteVariantObject = 7,
  kTfLiteNonCpu = 8
} TfLiteAllocationType;

enum { kTfLiteDelegateFlagsAllowDynamicTensors = 1 };
enum { kTfLiteBuiltinCustom = 32 }; /* BuiltinOperator CUSTOM */
typedef struct TfLiteIntArray {
  int size;
  int data[]; /* C99 flexible array member */
} TfLiteIntArray;

enum { kTfLiteBuiltinFullyConnected = 9 }; /* BuiltinOperator FULLY_CONNECTED */
enum { kTfLiteBuiltinEmbeddingLookup = 7, kTfLiteBuiltinGather = 36 };

/* builtin_op_data.h: builtin data of GATHER (read through a pointer). */
typedef struct TfLiteGatherParams {
  int axis;
  int batch_dims;
} TfLiteGatherParams;

/* builtin_op_data.h: TfLiteFusedActivation */
typedef enum {
  kTfLiteActNone = 0,
  kTfLiteActRelu = 1,
  kTfLiteActReluN1To1 = 2,
  kTfLiteActRelu6 = 3,
  kTfLiteActTanh = 4,
  kTfLiteActSignBit = 5,
  kTfLiteActSigmoid = 6
} TfLiteFusedActivation;

/* builtin_op_data.h: builtin data of FULLY_CONNECTED (prefix we read; the
 * struct is allocated by the runtime, we only read through a pointer). */
typedef struct TfLiteFullyConnectedParams {
  int activation;     /* TfLiteFusedActivation */
  int weights_format; /* 0 = kTfLiteFullyConnectedWeightsFormatDefault */
  bool keep_num_dims;
  bool asymmetric_quantize_inputs;
} TfLiteFullyConnectedParams;

/* common.h: quantization.type kTfLiteAffineQuantization and its params. */
enum { kTfLiteNoQuantization = 0, kTfLiteAffineQuantization = 1 };

typedef struct TfLiteFloatArray {
  int size;
  float data[];
} TfLiteFloatArray;

typedef struct TfLiteAffineQuantization {
  TfLiteFloatArray* scale;
  TfLiteIntArray* zero_point;
  int32_t quantized_dimension;
} TfLiteAffineQuantization;

typedef struct TfLiteQuantizationParams {
  float scale;
  int32_t zero_point;
} TfLiteQuantizationParams;

typedef struct TfLiteQuantization {
  int type; /* TfLiteQuantizationType */
  void* params;
} TfLiteQuantization;

struct TfLiteContext;
struct TfLiteDelegate;
struct TfLiteNode;

typedef struct TfLiteTensor {
  TfLiteType type;
  union {
    void* data;
    const void* raw_const;
    uint8_t* uint8;
  } data;
  TfLiteIntArray* dims;
  TfLiteQuantizationParams params;
  TfLiteAllocationType allocation_type;
  size_t bytes;
  const void* allocation;
  const char* name;
  struct TfLiteDelegate* delegate;
  int buffer_handle;
  bool data_is_stale;
  bool is_variable;
  TfLiteQuantization quantization;
  void* sparsity;
  const TfLiteIntArray* dims_signature;
} TfLiteTensor;

typedef struct TfLiteNode {
  TfLiteIntArray* inputs;
  TfLiteIntArray* outputs;
  TfLiteIntArray* intermediates;
  TfLiteIntArray* temporaries;
  void* user_data;
  void* builtin_data;
  const void* custom_initial_data;
  int custom_initial_data_size;
  struct TfLiteDelegate* delegate;
  bool might_have_side_effect;
} TfLiteNode;

/* Builtin data of a delegate kernel node (TfLiteDelegateParams). */
typedef struct TfLiteDelegateParams {
  struct TfLiteDelegate* delegate;
  TfLiteIntArray* nodes_to_replace;
  TfLiteIntArray* input_tensors;
  TfLiteIntArray* output_tensors;
} TfLiteDelegateParams;

#define DC_TFLITE_REGISTRATION_RESERVE 16

typedef struct TfLiteRegistration {
  void* (*init)(struct TfLiteContext* context, const char* buffer, size_t length);
  void (*free)(struct TfLiteContext* context, void* buffer);
  TfLiteStatus (*prepare)(struct TfLiteContext* context, TfLiteNode* node);
  TfLiteStatus (*invoke)(struct TfLiteContext* context, TfLiteNode* node);
  const char* (*profiling_string)(const struct TfLiteContext* context, const TfLiteNode* node);
  int32_t builtin_code;
  const char* custom_name;
  int version;
  void* registration_external; /* TfLiteOperator*            */
  void* async_kernel;          /* TfLiteAsyncKernel* (*)(...) */
  uint64_t inplace_operator;
} TfLiteRegistration;

/* Not upstream: a registration followed by zeros for fields a newer runtime
 * may have added; hand out &padded.reg wherever the runtime copies from a
 * pointer. */
typedef struct DcPaddedRegistration {
  TfLiteRegistration reg;
  uint64_t zero_tail[DC_TFLITE_REGISTRATION_RESERVE];
} DcPaddedRegistration;

typedef struct TfLiteContext {
  size_t tensors_size;
  TfLiteStatus (*GetExecutionPlan)(struct TfLiteContext* context, TfLiteIntArray** execution_plan);
  TfLiteTensor* tensors;
  void* impl_;
  TfLiteStatus (*ResizeTensor)(struct TfLiteContext*, TfLiteTensor* tensor,
                               TfLiteIntArray* new_size);
  void (*ReportError)(struct TfLiteContext*, const char* msg, ...);
  TfLiteStatus (*AddTensors)(struct TfLiteContext*, int tensors_to_add,
                             int* first_new_tensor_index);
  TfLiteStatus (*GetNodeAndRegistration)(struct TfLiteContext*, int node_index, TfLiteNode** node,
                                         TfLiteRegistration** registration);
  TfLiteStatus (*ReplaceNodeSubsetsWithDelegateKernels)(struct TfLiteContext*,
                                                        TfLiteRegistration registration,
                                                        const TfLiteIntArray* nodes_to_replace,
                                                        struct TfLiteDelegate* delegate);
  int recommended_num_threads;
  void* GetExternalContext;
  void* SetExternalContext;
  bool allow_fp32_relax_to_fp16;
  void* profiler;
  void* (*AllocatePersistentBuffer)(struct TfLiteContext* ctx, size_t bytes);
  void* AllocateBufferForEval;
  void* RequestScratchBufferInArena;
  void* GetScratchBuffer;
  TfLiteStatus (*ResizeTensorExplicit)(struct TfLiteContext* ctx, TfLiteTensor* tensor, int dims,
                                       const int* shape);
  /* Later fields are never read by this library. */
} TfLiteContext;

typedef struct TfLiteDelegate {
  void* data_;
  TfLiteStatus (*Prepare)(TfLiteContext* context, struct TfLiteDelegate* delegate);
  void* CopyFromBufferHandle;
  void* CopyToBufferHandle;
  void* FreeBufferHandle;
  int64_t flags;
  void* opaque_delegate_builder;
} TfLiteDelegate;

/* ---- layout checks (LP64: x86_64 / aarch64 Linux, Android, macOS) ---- */
#if defined(__LP64__) || defined(_LP64)
#define DC_ABI_ASSERT(cond, name) typedef char dc_abi_assert_##name[(cond) ? 1 : -1]
DC_ABI_ASSERT(sizeof(TfLiteTensor) == 112, tensor_size);
DC_ABI_ASSERT(offsetof(TfLiteTensor, data) == 8, tensor_data);
DC_ABI_ASSERT(offsetof(TfLiteTensor, dims) == 16, tensor_dims);
DC_ABI_ASSERT(offsetof(TfLiteTensor, allocation_type) == 32, tensor_alloc);
DC_ABI_ASSERT(offsetof(TfLiteTensor, bytes) == 40, tensor_bytes);
DC_ABI_ASSERT(offsetof(TfLiteTensor, name) == 56, tensor_name);
DC_ABI_ASSERT(offsetof(TfLiteTensor, quantization) == 80, tensor_quant);
DC_ABI_ASSERT(offsetof(TfLiteTensor, sparsity) == 96, tensor_sparsity);
DC_ABI_ASSERT(offsetof(TfLiteNode, user_data) == 32, node_user_data);
DC_ABI_ASSERT(offsetof(TfLiteNode, builtin_data) == 40, node_builtin_data);
DC_ABI_ASSERT(offsetof(TfLiteNode, delegate) == 64, node_delegate);
DC_ABI_ASSERT(sizeof(TfLiteNode) == 80, node_size);
DC_ABI_ASSERT(offsetof(TfLiteRegistration, builtin_code) == 40, reg_builtin);
DC_ABI_ASSERT(offsetof(TfLiteRegistration, custom_name) == 48, reg_name);
DC_ABI_ASSERT(offsetof(TfLiteRegistration, version) == 56, reg_version);
DC_ABI_ASSERT(offsetof(TfLiteRegistration, inplace_operator) == 80, reg_inplace);
DC_ABI_ASSERT(sizeof(TfLiteRegistration) == 88, reg_size);
DC_ABI_ASSERT(offsetof(TfLiteContext, tensors) == 16, ctx_tensors);
DC_ABI_ASSERT(offsetof(TfLiteContext, ResizeTensor) == 32, ctx_resize);
DC_ABI_ASSERT(offsetof(TfLiteContext, ReportError) == 40, ctx_report);
DC_ABI_ASSERT(offsetof(TfLiteContext, GetNodeAndRegistration) == 56, ctx_getnode);
DC_ABI_ASSERT(offsetof(TfLiteContext, ReplaceNodeSubsetsWithDelegateKernels) == 64, ctx_replace);
DC_ABI_ASSERT(offsetof(TfLiteContext, ResizeTensorExplicit) == 144, ctx_resize_explicit);
DC_ABI_ASSERT(offsetof(TfLiteFullyConnectedParams, keep_num_dims) == 8, fc_keep);
DC_ABI_ASSERT(offsetof(TfLiteAffineQuantization, quantized_dimension) == 16, affine_qdim);
DC_ABI_ASSERT(offsetof(TfLiteDelegate, flags) == 40, delegate_flags);
DC_ABI_ASSERT(sizeof(TfLiteDelegate) == 56, delegate_size);
#undef DC_ABI_ASSERT
#endif

#ifdef __cplusplus
}
#endif
#endif /* DC_TFLITE_ABI_H_ */
