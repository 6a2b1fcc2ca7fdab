/*
 * huffdecode_op.c -- the HuffDecode TFLite custom op and the delegate that
 * runs it, in C99 against our own ABI header (tflite_abi.h).
 *
 * A packed model (dc_keras.export.pack) holds, for every packed weight, a
 * constant uint8 1-D tensor (the packed bytes, docs/FORMAT.md) feeding a
 * HuffDecode node whose output is the original weight tensor.  The bytes
 * are decoded once, at load, through dc_codec.h; Invoke does nothing.
 *
 * Entry points (all exported, everything else hidden):
 *
 *  DcKerasRegisterHuffDecode(resolver)
 *      Registerer for TF's InterpreterWithCustomOps(custom_op_registerers=
 *      ["DcKerasRegisterHuffDecode"]).  Receives a tflite::MutableOpResolver*
 *      and adds the op through MutableOpResolver::AddCustom, whose address
 *      the host passes in first with DcKerasSetHuffDecodeAddCustom (no libdl
 *      dependency).  Decoding happens in the op's Prepare into
 *      kTfLitePersistentRo memory.
 *
 *  DcKerasHuffDecodeRegistration()
 *      The op's TfLiteRegistration for the TFLite C API:
 *      TfLiteInterpreterOptionsAddCustomOp(opts, "HuffDecode",
 *          DcKerasHuffDecodeRegistration(), 1, 1).
 *
 *  tflite_plugin_create_delegate / tflite_plugin_destroy_delegate
 *      External-delegate plugin (ai_edge_litert / tf.lite load_delegate).
 *      The delegate's Prepare runs when the delegate is applied, i.e. before
 *      the default XNNPACK delegate: it decodes every HuffDecode node right
 *      there into memory the delegate owns and turns the node's output into a
 *      read-only constant (kTfLiteMmapRo with data), then claims the nodes
 *      with a no-op kernel.  Consumers therefore see ordinary constant
 *      weights, so XNNPACK delegates them exactly as in the unpacked model.
 *      A decode failure is remembered and reported by the kernel's Prepare,
 *      so allocate_tensors() fails with the decoder's reason.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dc_codec.h"
#include "tflite_abi.h"

#define DC_EXPORT __attribute__((visibility("default")))

static const char kOpName[] = "HuffDecode";
static const char kDelegateKernelName[] = "DcKerasHuffDecodeDelegate";
enum { kBuiltinDelegate = 51 };     /* BuiltinOperator DELEGATE */
enum { kDecodedAlignment = 64 };    /* like TFLite's kDefaultTensorAlignment */

/* ------------------------------------------------------------------ */
/* shared validation                                                   */
/* ------------------------------------------------------------------ */

/* dc dtype codes are schema TensorType values; map to runtime TfLiteType. */
static int dc_to_tflite_type(uint32_t dtype) {
  switch (dtype) {
    case DC_DTYPE_FLOAT32: return kTfLiteFloat32;
    case DC_DTYPE_FLOAT16: return kTfLiteFloat16;
    case DC_DTYPE_INT32: return kTfLiteInt32;
    case DC_DTYPE_UINT8: return kTfLiteUInt8;
    case DC_DTYPE_INT16: return kTfLiteInt16;
    case DC_DTYPE_INT8: return kTfLiteInt8;
    case DC_DTYPE_INT4: return kTfLiteInt4;
    case DC_DTYPE_BFLOAT16: return kTfLiteBFloat16;
    default: return -1; /* int2/uint4: TFLite 2.21 cannot size such tensors */
  }
}

static const char* type_name(int t) {
  switch (t) {
    case kTfLiteFloat32: return "float32";
    case kTfLiteFloat16: return "float16";
    case kTfLiteInt4: return "int4";
    case kTfLiteBFloat16: return "bfloat16";
    case kTfLiteInt32: return "int32";
    case kTfLiteUInt8: return "uint8";
    case kTfLiteInt16: return "int16";
    case kTfLiteInt8: return "int8";
    case kTfLiteInt64: return "int64";
    case kTfLiteBool: return "bool";
    case kTfLiteString: return "string";
    default: return "unsupported type";
  }
}

/* The output's byte size fits the decoded tensor: equal, or for int4 the
 * runtime's one-byte-per-element size (the data stays packed, §13). */
static int output_size_ok(const TfLiteTensor* out, const dc_tensor_info* info) {
  if ((uint64_t)out->bytes == info->output_bytes) return 1;
  return info->dtype == DC_DTYPE_INT4 &&
         (uint64_t)out->bytes == info->num_elements;
}

static const char* tensor_name(const TfLiteTensor* t) {
  return (t && t->name) ? t->name : "?";
}

static void set_msg(char* msg, size_t size, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, size, fmt, ap);
  va_end(ap);
}

/* Looks up the node's single input/output; NULL + message on misuse. */
static int node_tensors(const TfLiteContext* context, const TfLiteNode* node,
                        TfLiteTensor** in, TfLiteTensor** out, char* msg,
                        size_t msg_size) {
  if (!node->inputs || !node->outputs || node->inputs->size != 1 ||
      node->outputs->size != 1) {
    set_msg(msg, msg_size, "HuffDecode: expected 1 input and 1 output");
    return 0;
  }
  int i = node->inputs->data[0], o = node->outputs->data[0];
  if (i < 0 || o < 0 || (size_t)i >= context->tensors_size ||
      (size_t)o >= context->tensors_size) {
    set_msg(msg, msg_size, "HuffDecode: tensor index out of range");
    return 0;
  }
  *in = &context->tensors[i];
  *out = &context->tensors[o];
  return 1;
}

/* Checks the packed input and that its header matches the output tensor
 * (dtype, shape, byte size).  Returns 1 and fills *info, or 0 + message. */
static int check_packed(const TfLiteTensor* in, const TfLiteTensor* out,
                        dc_tensor_info* info, char* msg, size_t msg_size) {
  const char* oname = tensor_name(out);
  if (in->type != kTfLiteUInt8) {
    set_msg(msg, msg_size,
            "HuffDecode(%s): packed input '%s' must be uint8, got %s", oname,
            tensor_name(in), type_name(in->type));
    return 0;
  }
  if (!in->dims || in->dims->size != 1) {
    set_msg(msg, msg_size, "HuffDecode(%s): packed input '%s' must be 1-D",
            oname, tensor_name(in));
    return 0;
  }
  if (in->allocation_type != kTfLiteMmapRo || in->data.raw_const == NULL) {
    set_msg(msg, msg_size,
            "HuffDecode(%s): packed input '%s' must be a constant tensor",
            oname, tensor_name(in));
    return 0;
  }
  if (in->dims->data[0] < 0 || (size_t)in->dims->data[0] != in->bytes) {
    set_msg(msg, msg_size,
            "HuffDecode(%s): packed input '%s' byte size disagrees with its shape",
            oname, tensor_name(in));
    return 0;
  }
  dc_status st = dc_peek((const uint8_t*)in->data.raw_const, in->bytes, info);
  if (st != DC_OK) {
    set_msg(msg, msg_size, "HuffDecode(%s): invalid packed tensor: %s", oname,
            dc_strerror(st));
    return 0;
  }
  int want = dc_to_tflite_type(info->dtype);
  if (want < 0 || want != (int)out->type) {
    set_msg(msg, msg_size,
            "HuffDecode(%s): packed dtype %s does not match output dtype %s",
            oname, want < 0 ? "unknown" : type_name(want), type_name(out->type));
    return 0;
  }
  if (!out->dims || out->dims->size < 0 ||
      (uint32_t)out->dims->size != info->rank) {
    set_msg(msg, msg_size,
            "HuffDecode(%s): packed rank %u does not match output rank %d",
            oname, (unsigned)info->rank, out->dims ? out->dims->size : -1);
    return 0;
  }
  for (uint32_t k = 0; k < info->rank; ++k) {
    if (out->dims->data[k] < 0 ||
        (uint64_t)out->dims->data[k] != info->dims[k]) {
      set_msg(msg, msg_size,
              "HuffDecode(%s): packed dim %u is %llu but the output's is %d",
              oname, (unsigned)k, (unsigned long long)info->dims[k],
              out->dims->data[k]);
      return 0;
    }
  }
  if (info->output_bytes > (uint64_t)SIZE_MAX) {
    set_msg(msg, msg_size, "HuffDecode(%s): tensor too large", oname);
    return 0;
  }
  return 1;
}

/* ------------------------------------------------------------------ */
/* the op (registerer / C API route)                                   */
/* ------------------------------------------------------------------ */

typedef struct {
  int decoded;
  void* data; /* output data pointer after a successful decode */
} OpState;

static void* op_init(TfLiteContext* context, const char* buffer, size_t length) {
  (void)context;
  (void)buffer;
  (void)length;
  return calloc(1, sizeof(OpState));
}

static void op_free(TfLiteContext* context, void* buffer) {
  (void)context;
  free(buffer);
}

static TfLiteStatus op_prepare(TfLiteContext* context, TfLiteNode* node) {
  char msg[512];
  TfLiteTensor *in, *out;
  dc_tensor_info info;
  OpState* state = (OpState*)node->user_data;
  if (!state) {
    context->ReportError(context, "HuffDecode: out of memory in init");
    return kTfLiteError;
  }
  if (!node_tensors(context, node, &in, &out, msg, sizeof msg)) {
    context->ReportError(context, "%s", msg);
    return kTfLiteError;
  }
  if (state->decoded && out->allocation_type == kTfLitePersistentRo &&
      out->data.data == state->data && out->data.data != NULL) {
    return kTfLiteOk; /* decoded by an earlier Prepare */
  }
  if (!check_packed(in, out, &info, msg, sizeof msg)) {
    context->ReportError(context, "%s", msg);
    return kTfLiteError;
  }
  /* Persistent read-only output: allocated now, treated as a constant by
   * downstream kernels (same pattern as TFLite's sparse densification). */
  int dims[DC_MAX_RANK];
  for (uint32_t k = 0; k < info.rank; ++k) dims[k] = out->dims->data[k];
  out->allocation_type = kTfLitePersistentRo;
  out->data.data = NULL;
  TfLiteStatus rs;
  if (context->ResizeTensorExplicit) {
    rs = context->ResizeTensorExplicit(context, out, (int)info.rank, dims);
  } else {
    TfLiteIntArray* shape = (TfLiteIntArray*)malloc(
        sizeof(TfLiteIntArray) + sizeof(int) * (info.rank ? info.rank : 1));
    if (!shape) {
      context->ReportError(context, "HuffDecode(%s): out of memory",
                           tensor_name(out));
      return kTfLiteError;
    }
    shape->size = (int)info.rank;
    for (uint32_t k = 0; k < info.rank; ++k) shape->data[k] = dims[k];
    rs = context->ResizeTensor(context, out, shape); /* takes ownership */
  }
  /* TFLite sizes int4 tensors at one byte per element (util.cc GetSizeOfType)
   * although kernels read them packed two per byte: accept the larger size. */
  if (rs != kTfLiteOk || out->data.data == NULL ||
      !output_size_ok(out, &info)) {
    context->ReportError(context,
                         "HuffDecode(%s): could not allocate %llu bytes for the "
                         "decoded tensor",
                         tensor_name(out), (unsigned long long)info.output_bytes);
    return kTfLiteError;
  }
  if (out->bytes > info.output_bytes) {
    memset((uint8_t*)out->data.data + info.output_bytes, 0, out->bytes - info.output_bytes);
  }
  dc_status st = dc_decode((const uint8_t*)in->data.raw_const, in->bytes,
                           out->data.data, (size_t)info.output_bytes);
  if (st != DC_OK) {
    context->ReportError(context, "HuffDecode(%s): decoding failed: %s",
                         tensor_name(out), dc_strerror(st));
    return kTfLiteError;
  }
  state->decoded = 1;
  state->data = out->data.data;
  return kTfLiteOk;
}

static TfLiteStatus op_invoke(TfLiteContext* context, TfLiteNode* node) {
  OpState* state = (OpState*)node->user_data;
  if (!state || !state->decoded) {
    context->ReportError(context, "HuffDecode: invoked before a successful Prepare");
    return kTfLiteError;
  }
  return kTfLiteOk; /* the output was decoded in Prepare */
}

/* Static storage: every field not named here (incl. the zero tail) is zero. */
static const DcPaddedRegistration g_op_registration = {
    .reg = {
        .init = op_init,
        .free = op_free,
        .prepare = op_prepare,
        .invoke = op_invoke,
        .builtin_code = kTfLiteBuiltinCustom,
        .custom_name = kOpName,
        .version = 1,
    },
};

DC_EXPORT const TfLiteRegistration* DcKerasHuffDecodeRegistration(void) {
  return &g_op_registration.reg;
}

typedef void (*AddCustomII)(void* self, const char* name,
                            const TfLiteRegistration* registration,
                            int min_version, int max_version);

static AddCustomII g_add_custom = NULL;

/* Sets the address of tflite::MutableOpResolver::AddCustom(const char*,
 * const TfLiteRegistration*, int, int) in the running TFLite runtime (the
 * symbol _ZN6tflite17MutableOpResolver9AddCustomEPKcPK18TfLiteRegistrationii).
 * The library must not depend on libdl (Android/portability rules), so the
 * host looks the symbol up (dc_keras.runtime does it with ctypes) and hands
 * it over before the registerer runs. */
DC_EXPORT void DcKerasSetHuffDecodeAddCustom(void* add_custom) {
  memcpy(&g_add_custom, &add_custom, sizeof g_add_custom);
}

/* Registerer for TF's InterpreterWithCustomOps(custom_op_registerers=
 * ["DcKerasRegisterHuffDecode"]).  `resolver` is a tflite::MutableOpResolver*;
 * AddCustom is a non-virtual member, called through its Itanium-ABI symbol
 * (this = first argument). */
DC_EXPORT void DcKerasRegisterHuffDecode(void* resolver) {
  if (!g_add_custom || !resolver) {
    fprintf(stderr,
            "dc_keras: DcKerasRegisterHuffDecode: AddCustom address not set "
            "(call DcKerasSetHuffDecodeAddCustom first, or use "
            "dc_keras.runtime.Interpreter / the external delegate)\n");
    return;
  }
  g_add_custom(resolver, kOpName, DcKerasHuffDecodeRegistration(), 1, 1);
}

/* ------------------------------------------------------------------ */
/* the delegate (external-delegate plugin route)                      */
/* ------------------------------------------------------------------ */

typedef struct {
  TfLiteDelegate base;    /* first: the runtime sees a TfLiteDelegate */
  uint64_t reserved[8];   /* zeros for fields a newer runtime may read */
  void** blocks;          /* raw malloc blocks of decoded tensors */
  size_t num_blocks, cap_blocks;
  char error[512];        /* first decode error, reported by the kernel */
} DcDelegate;

static int delegate_keep(DcDelegate* d, void* block) {
  if (d->num_blocks == d->cap_blocks) {
    size_t cap = d->cap_blocks ? 2 * d->cap_blocks : 16;
    void** nb = (void**)realloc(d->blocks, cap * sizeof(void*));
    if (!nb) return 0;
    d->blocks = nb;
    d->cap_blocks = cap;
  }
  d->blocks[d->num_blocks++] = block;
  return 1;
}

static void* kernel_init(TfLiteContext* context, const char* buffer,
                         size_t length) {
  (void)context;
  (void)buffer;
  (void)length;
  return NULL;
}

static TfLiteStatus kernel_prepare(TfLiteContext* context, TfLiteNode* node) {
  DcDelegate* d = node->delegate ? (DcDelegate*)node->delegate->data_ : NULL;
  if (!d) {
    context->ReportError(context, "HuffDecode delegate kernel without delegate");
    return kTfLiteError;
  }
  if (d->error[0]) {
    context->ReportError(context, "%s", d->error);
    return kTfLiteError;
  }
  for (int k = 0; node->outputs && k < node->outputs->size; ++k) {
    int t = node->outputs->data[k];
    if (t < 0 || (size_t)t >= context->tensors_size ||
        context->tensors[t].data.data == NULL) {
      context->ReportError(context, "HuffDecode delegate: output %d not decoded", t);
      return kTfLiteError;
    }
  }
  return kTfLiteOk;
}

static TfLiteStatus kernel_invoke(TfLiteContext* context, TfLiteNode* node) {
  (void)context;
  (void)node;
  return kTfLiteOk;
}

/* Decodes one HuffDecode node now; on success its output becomes a constant
 * (kTfLiteMmapRo) backed by memory owned by the delegate. */
static int delegate_decode_node(TfLiteContext* context, DcDelegate* d,
                                TfLiteNode* node, char* msg, size_t msg_size) {
  TfLiteTensor *in, *out;
  dc_tensor_info info;
  if (!node_tensors(context, node, &in, &out, msg, msg_size)) return 0;
  if (out->allocation_type == kTfLiteMmapRo && out->data.data != NULL) {
    return 1; /* already decoded (delegate applied again) */
  }
  if (!check_packed(in, out, &info, msg, msg_size)) return 0;
  if (!output_size_ok(out, &info)) {
    set_msg(msg, msg_size, "HuffDecode(%s): output byte size %llu != %llu",
            tensor_name(out), (unsigned long long)out->bytes,
            (unsigned long long)info.output_bytes);
    return 0;
  }
  size_t n = (size_t)out->bytes; /* >= output_bytes (int4: see output_size_ok) */
  void* block = calloc(1, n + kDecodedAlignment);
  if (!block || !delegate_keep(d, block)) {
    free(block);
    set_msg(msg, msg_size, "HuffDecode(%s): out of memory (%llu bytes)",
            tensor_name(out), (unsigned long long)info.output_bytes);
    return 0;
  }
  uintptr_t p = ((uintptr_t)block + kDecodedAlignment - 1) &
                ~(uintptr_t)(kDecodedAlignment - 1);
  dc_status st = dc_decode((const uint8_t*)in->data.raw_const, in->bytes,
                           (void*)p, (size_t)info.output_bytes);
  if (st != DC_OK) {
    set_msg(msg, msg_size, "HuffDecode(%s): decoding failed: %s",
            tensor_name(out), dc_strerror(st));
    return 0;
  }
  out->data.data = (void*)p;
  out->allocation_type = kTfLiteMmapRo;
  return 1;
}

static TfLiteStatus delegate_prepare(TfLiteContext* context,
                                     TfLiteDelegate* delegate) {
  DcDelegate* d = (DcDelegate*)delegate->data_;
  TfLiteIntArray* plan = NULL;
  if (context->GetExecutionPlan(context, &plan) != kTfLiteOk || !plan) {
    return kTfLiteError;
  }
  TfLiteIntArray* claimed =
      (TfLiteIntArray*)malloc(sizeof(TfLiteIntArray) +
                              sizeof(int) * (size_t)(plan->size > 0 ? plan->size : 1));
  if (!claimed) return kTfLiteError;
  claimed->size = 0;
  for (int k = 0; k < plan->size; ++k) {
    TfLiteNode* node = NULL;
    TfLiteRegistration* reg = NULL;
    if (context->GetNodeAndRegistration(context, plan->data[k], &node, &reg) !=
            kTfLiteOk || !node || !reg) {
      continue;
    }
    if (reg->builtin_code != kTfLiteBuiltinCustom || !reg->custom_name ||
        strcmp(reg->custom_name, kOpName) != 0) {
      continue;
    }
    char msg[512];
    if (!delegate_decode_node(context, d, node, msg, sizeof msg) && !d->error[0]) {
      memcpy(d->error, msg, sizeof d->error);
      d->error[sizeof d->error - 1] = '\0';
    }
    claimed->data[claimed->size++] = plan->data[k];
  }
  TfLiteStatus status = kTfLiteOk;
  if (claimed->size > 0) {
    TfLiteRegistration kernel;
    memset(&kernel, 0, sizeof kernel);
    kernel.init = kernel_init;
    kernel.prepare = kernel_prepare;
    kernel.invoke = kernel_invoke;
    kernel.builtin_code = kBuiltinDelegate;
    kernel.custom_name = kDelegateKernelName;
    kernel.version = 1;
    status = context->ReplaceNodeSubsetsWithDelegateKernels(context, kernel,
                                                            claimed, delegate);
  }
  free(claimed);
  return status;
}

DC_EXPORT TfLiteDelegate* tflite_plugin_create_delegate(
    char** options_keys, char** options_values, size_t num_options,
    void (*report_error)(const char*)) {
  (void)options_keys;
  (void)options_values;
  if (num_options != 0) {
    if (report_error) {
      report_error("dc_keras HuffDecode delegate takes no options");
    }
    return NULL;
  }
  DcDelegate* d = (DcDelegate*)calloc(1, sizeof(DcDelegate));
  if (!d) {
    if (report_error) report_error("dc_keras HuffDecode delegate: out of memory");
    return NULL;
  }
  d->base.data_ = d;
  d->base.Prepare = delegate_prepare;
  d->base.flags = kTfLiteDelegateFlagsAllowDynamicTensors;
  return &d->base;
}

DC_EXPORT void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) {
  if (!delegate) return;
  DcDelegate* d = (DcDelegate*)delegate->data_;
  for (size_t i = 0; i < d->num_blocks; ++i) free(d->blocks[i]);
  free(d->blocks);
  free(d);
}
