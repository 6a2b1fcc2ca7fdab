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
#define _POSIX_C_SOURCE 200809L /* pthread mutexes */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dc_codec.h"
#include "dc_pages.h"
#include "dc_parallel.h"
#include "dc_parallel_internal.h"
#include "dc_sparse_fc.h"
#include "dc_tensor_label.h"
#include "dc_tflite.h" /* the public declarations of the entry points below */
#include "dc_unpack.h" /* DC_UNPACK_CORRUPT_FIX, DC_UNPACK_NEWER_FIX */
#include "dc_version_note.h"
#include "tflite_abi.h"

#define DC_EXPORT __attribute__((visibility("default")))

static const char kOpName[] = "HuffDecode";
static const char kDelegateKernelName[] = "DcKerasHuffDecodeDelegate";
enum { kBuiltinDelegate = 51 };  /* BuiltinOperator DELEGATE */
enum { kDecodedAlignment = 64 }; /* like TFLite's kDefaultTensorAlignment */
/* decode_lazily puts tensors of this size or more at multiples of it (dc_arena_fill moves them
 * into the lazy arena a whole huge page at a time) */
static const size_t kHugePage = (size_t)2 << 20;

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
    case DC_DTYPE_INT64: return kTfLiteInt64; /* §16 (version 3) */
    case DC_DTYPE_BOOL: return kTfLiteBool;
    case DC_DTYPE_FLOAT64: return kTfLiteFloat64;
    case DC_DTYPE_UINT64: return kTfLiteUInt64;
    case DC_DTYPE_UINT32: return kTfLiteUInt32;
    case DC_DTYPE_UINT16: return kTfLiteUInt16;
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
    case kTfLiteFloat64: return "float64";
    case kTfLiteUInt64: return "uint64";
    case kTfLiteUInt32: return "uint32";
    case kTfLiteUInt16: return "uint16";
    case kTfLiteString: return "string";
    default: return "unsupported type";
  }
}

/* The output's byte size fits the decoded tensor: equal, or for int4 the
 * runtime's one-byte-per-element size (the data stays packed, §13). */
static int output_size_ok(const TfLiteTensor* out, const dc_tensor_info* info) {
  if ((uint64_t)out->bytes == info->output_bytes) return 1;
  return info->dtype == DC_DTYPE_INT4 && (uint64_t)out->bytes == info->num_elements;
}

/* How messages and the delegate's report name tensor t of `context`: its name, or for a nameless
 * one (pack(strip_strings=True)) "(unnamed tensor N)", N its index in context->tensors (the index
 * get_tensor_details() gives; dc_tensor_label.h).  buf: DC_TENSOR_LABEL_SIZE bytes, which
 * TENSOR_NAME gives as a compound literal (it lives until the end of the caller's block). */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline)) /* one copy, not one per message (measured: -O2 +1.7 kB inlined) */
#endif
static const char*
tensor_label(const TfLiteContext* context, const TfLiteTensor* t, char* buf) {
  const uintptr_t at = (uintptr_t)t, first = (uintptr_t)context->tensors;
  const long index = at >= first && (at - first) / sizeof *t < context->tensors_size
                         ? (long)((at - first) / sizeof *t)
                         : -1;
  return dc_tensor_label(t->name, index, 0, buf, DC_TENSOR_LABEL_SIZE);
}
#define TENSOR_NAME(context, t) tensor_label((context), (t), (char[DC_TENSOR_LABEL_SIZE]){0})

static void set_msg(char* msg, size_t size, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, size, fmt, ap);
  va_end(ap);
}

/* What the app can do about a packed tensor refused with `st` (dc_peek's or dc_decode's status;
 * `newer`: dc_version_note found a version newer than DC_VERSION_MAX), in dc_unpack's words
 * (dc_unpack.h: DC_UNPACK_NEWER_FIX, DC_UNPACK_CORRUPT_FIX): an app's log (the C API's error
 * reporter, logcat) gets the fix as dc_keras.runtime's errors do.  "" where none is the file's:
 * a build without a layout whose message says to rebuild it, a bug of the caller. */
static const char* packed_fix(dc_status st, int newer) {
  if (newer) return DC_UNPACK_NEWER_FIX;
  if (st == DC_ERR_UNSUPPORTED) {
    return strstr(dc_strerror(st), "rebuild")
               ? ""
               : "rebuild the decoder without the DC_CODEC_NO_* options";
  }
  if (st == DC_ERR_OUTPUT_SIZE || st == DC_ERR_ARGUMENT || st == DC_ERR_WORKSPACE) return "";
  return DC_UNPACK_CORRUPT_FIX;
}

/* Appends "; fix" to msg when it fits whole (as dc_unpack does: a cut fix would mislead). */
static void add_fix(char* msg, size_t size, const char* fix) {
  const size_t len = strlen(msg);
  if (*fix && len + 2 + strlen(fix) < size) snprintf(msg + len, size - len, "; %s", fix);
}

/* Looks up the node's single input/output; NULL + message on misuse. */
static int node_tensors(const TfLiteContext* context, const TfLiteNode* node, TfLiteTensor** in,
                        TfLiteTensor** out, char* msg, size_t msg_size) {
  if (!node->inputs || !node->outputs || node->inputs->size != 1 || node->outputs->size != 1) {
    set_msg(msg, msg_size, "HuffDecode: expected 1 input and 1 output");
    return 0;
  }
  int i = node->inputs->data[0], o = node->outputs->data[0];
  if (i < 0 || o < 0 || (size_t)i >= context->tensors_size || (size_t)o >= context->tensors_size) {
    set_msg(msg, msg_size, "HuffDecode: tensor index out of range");
    return 0;
  }
  *in = &context->tensors[i];
  *out = &context->tensors[o];
  return 1;
}

/* How messages name a packed input: by its name, or, as pack writes packed tensors nameless
 * (FORMAT.md §15), as the packed input of the tensor it decodes to (the one the model reads). */
static void input_label(const TfLiteTensor* in, const char* oname, char* buf, size_t size) {
  if (in->name && in->name[0]) {
    snprintf(buf, size, "packed input '%s'", in->name);
  } else {
    snprintf(buf, size, "packed input of '%s'", oname);
  }
}

/* Checks the packed input and that its header matches the output tensor
 * (dtype, shape, byte size).  Returns 1 and fills *info, or 0 + message ending with the fix:
 * the file's damage (DC_UNPACK_CORRUPT_FIX) unless dc_peek's status says otherwise. */
static int check_packed(const TfLiteContext* context, const TfLiteTensor* in,
                        const TfLiteTensor* out, dc_tensor_info* info, char* msg, size_t msg_size) {
  const char* oname = TENSOR_NAME(context, out);
  char what[192];
  input_label(in, oname, what, sizeof what);
  const char* fix = DC_UNPACK_CORRUPT_FIX;
  dc_status st;
  int want;
  if (in->type != kTfLiteUInt8) {
    set_msg(msg, msg_size, "HuffDecode(%s): %s must be uint8, got %s", oname, what,
            type_name(in->type));
    goto refused;
  }
  if (!in->dims || in->dims->size != 1) {
    set_msg(msg, msg_size, "HuffDecode(%s): %s must be 1-D", oname, what);
    goto refused;
  }
  if (in->allocation_type != kTfLiteMmapRo || in->data.raw_const == NULL) {
    set_msg(msg, msg_size, "HuffDecode(%s): %s must be a constant tensor", oname, what);
    goto refused;
  }
  if (in->dims->data[0] < 0 || (size_t)in->dims->data[0] != in->bytes) {
    set_msg(msg, msg_size, "HuffDecode(%s): %s holds %zu bytes, but its shape says %d", oname, what,
            in->bytes, (int)in->dims->data[0]);
    goto refused;
  }
  st = dc_peek((const uint8_t*)in->data.raw_const, in->bytes, info);
  if (st != DC_OK) {
    char note[96]; /* a refused version: which one (newer, or none: damage) */
    const int newer =
        dc_version_note(st, (const uint8_t*)in->data.raw_const, in->bytes, note, sizeof note);
    set_msg(msg, msg_size, "HuffDecode(%s): %s: %s%s", oname, DC_PEEK_FAILURE(st), dc_strerror(st),
            note);
    fix = packed_fix(st, newer);
    goto refused;
  }
  want = dc_to_tflite_type(info->dtype);
  if (want < 0 || want != (int)out->type) {
    set_msg(msg, msg_size, "HuffDecode(%s): packed dtype %s does not match output dtype %s", oname,
            want < 0 ? "unknown" : type_name(want), type_name(out->type));
    goto refused;
  }
  if (!out->dims || out->dims->size < 0 || (uint32_t)out->dims->size != info->rank) {
    set_msg(msg, msg_size, "HuffDecode(%s): packed rank %u does not match output rank %d", oname,
            (unsigned)info->rank, out->dims ? out->dims->size : -1);
    goto refused;
  }
  for (uint32_t k = 0; k < info->rank; ++k) {
    if (out->dims->data[k] < 0 || (uint64_t)out->dims->data[k] != info->dims[k]) {
      set_msg(msg, msg_size, "HuffDecode(%s): packed dim %u is %llu but the output's is %d", oname,
              (unsigned)k, (unsigned long long)info->dims[k], out->dims->data[k]);
      goto refused;
    }
  }
  if (info->output_bytes > (uint64_t)SIZE_MAX) {
    set_msg(msg, msg_size, "HuffDecode(%s): tensor too large", oname);
    fix = ""; /* this build's limit, not the file's damage */
    goto refused;
  }
  return 1;
refused:
  add_fix(msg, msg_size, fix);
  return 0;
}

/* A HuffDecode output with data of its own in the model (a constant: pack empties the decoded
 * tensor's buffer, docs/FORMAT.md §15), a model edited after packing.  Until 2026-12-06 the
 * delegate took such an output for one it had decoded and the op route decoded over it after
 * XNNPACK had packed the consumer's weights from the constant: either way the model ran on the
 * constant's bytes (NaN outputs from a 4,096-byte buffer of 0..255).  The TFLM kernel refuses it
 * with the same words (micro/huffdecode_tflm.c). */
static void output_has_data(const TfLiteContext* context, const TfLiteTensor* out, char* msg,
                            size_t msg_size) {
  set_msg(msg, msg_size,
          "HuffDecode(%s): the output has data in the flatbuffer (a constant), which decoding "
          "would overwrite; the model was edited after packing: re-export the model with "
          "dc_keras.export.pack",
          TENSOR_NAME(context, out));
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
  if (out->allocation_type == kTfLiteMmapRo && out->data.raw_const != NULL) {
    output_has_data(context, out, msg, sizeof msg);
    context->ReportError(context, "%s", msg);
    return kTfLiteError;
  }
  if (!check_packed(context, in, out, &info, msg, sizeof msg)) {
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
    TfLiteIntArray* shape =
        (TfLiteIntArray*)malloc(sizeof(TfLiteIntArray) + sizeof(int) * (info.rank ? info.rank : 1));
    if (!shape) {
      context->ReportError(context, "HuffDecode(%s): out of memory", TENSOR_NAME(context, out));
      return kTfLiteError;
    }
    shape->size = (int)info.rank;
    for (uint32_t k = 0; k < info.rank; ++k) shape->data[k] = dims[k];
    rs = context->ResizeTensor(context, out, shape); /* takes ownership */
  }
  /* TFLite sizes int4 tensors at one byte per element (util.cc GetSizeOfType)
   * although kernels read them packed two per byte: accept the larger size. */
  if (rs != kTfLiteOk || out->data.data == NULL || !output_size_ok(out, &info)) {
    context->ReportError(context,
                         "HuffDecode(%s): could not allocate %llu bytes for the "
                         "decoded tensor",
                         TENSOR_NAME(context, out), (unsigned long long)info.output_bytes);
    return kTfLiteError;
  }
  if (out->bytes > info.output_bytes) {
    memset((uint8_t*)out->data.data + info.output_bytes, 0, out->bytes - info.output_bytes);
  }
  dc_status st = dc_decode((const uint8_t*)in->data.raw_const, in->bytes, out->data.data,
                           (size_t)info.output_bytes);
  if (st != DC_OK) {
    set_msg(msg, sizeof msg, "HuffDecode(%s): decoding failed: %s", TENSOR_NAME(context, out),
            dc_strerror(st));
    add_fix(msg, sizeof msg, packed_fix(st, 0));
    context->ReportError(context, "%s", msg);
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
    .reg =
        {
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

typedef void (*AddCustomII)(void* self, const char* name, const TfLiteRegistration* registration,
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

/* One FULLY_CONNECTED, EMBEDDING_LOOKUP or GATHER node run from compact
 * weights (weights="compressed").  Lookups: input = the indices, weight =
 * the table. */
typedef struct {
  const TfLiteContext* ctx; /* subgraph (node/tensor indices are per subgraph) */
  int node;                 /* original node index */
  int op;                   /* builtin code */
  int input, bias, output;
  int weight; /* the dense weight tensor: never allocated */
  int packed; /* packed uint8 tensor, the node's new input 1 */
  int activation;
  int keep_num_dims;
  float act_min, act_max;      /* float */
  int32_t input_zp, output_zp; /* int8 */
  int32_t qmin, qmax;
  float* scale; /* int8: rows requantization scales */
  dc_sparse_fc m;
  char name[96];
  int orphan; /* its kernel was freed (forget_graph): kept only if the graph is applied again */
} FcPlan;

typedef struct DcDelegateS {
  TfLiteDelegate base;  /* first: the runtime sees a TfLiteDelegate */
  uint64_t reserved[8]; /* zeros for fields a newer runtime may read */
  void** blocks;        /* raw malloc blocks of decoded tensors */
  size_t num_blocks, cap_blocks;
  struct Arena* arenas; /* mappings holding many decoded tensors (decode_nodes) */
  size_t num_arenas, cap_arenas;
  int compressed;      /* option weights=compressed */
  int keep_decoded;    /* 1 (default): keep decoded weights; option keep_decoded=0 releases
                        * those XNNPACK packed a copy of (reading such a tensor afterwards,
                        * e.g. get_tensor, returns freed memory: opt-in only) */
  struct Decoded* dec; /* decoded weight tensors (release bookkeeping) */
  size_t num_dec, cap_dec;
  /* The runtime's GetExecutionPlan / GetNodeAndRegistration as seen during
   * Prepare (kernels get stubs that refuse): plain accessors of the subgraph
   * behind context->impl_, used by release_packed_copies. */
  TfLiteStatus (*get_plan)(struct TfLiteContext*, TfLiteIntArray**);
  TfLiteStatus (*get_node)(struct TfLiteContext*, int, TfLiteNode**, TfLiteRegistration**);
  FcPlan** fcs; /* compressed FC nodes (stable pointers) */
  size_t num_fcs, cap_fcs;
  char* report; /* one line per FC considered (DcKerasHuffDecodeDelegateReport) */
  size_t report_len, report_cap;
  char error[512];         /* first decode error of any graph (DcKerasHuffDecodeDelegateError) */
  struct CtxError* errors; /* first error of each graph (context), reported by its kernels: a
                            * delegate shared by interpreters fails only the one whose model is bad */
  size_t num_errors;
  int errors_lost;    /* out of memory recording one: every kernel reports `error` */
  int kernels;        /* its kernels alive (kernel_init .. kernel_free) */
  int destroyed;      /* tflite_plugin_destroy_delegate was called: freed with its last kernel */
  int decode_threads; /* option decode_threads: 0 = all CPUs (dc_decode_threads), 1 = serial */
  int decode_async;   /* option decode_async (default 1): decode_lazily where available */
  int max_density;    /* option max_density (percent; 0: by type and form, max_density_for) */
  size_t
      async_tensors; /* tensors decode_lazily handed to a helper (DcKerasHuffDecodeDelegateAsync) */
  struct LazyFill* lazy;   /* decode_lazily's fill, joined by join_lazy */
  struct Release* release; /* release_packed_copies' frees, run by a helper (join_release) */
  /* One delegate may serve several interpreters, on several threads (an app passing one
   * load_delegate object to each): `lock` guards every field here but `release`, which
   * `release_lock` guards (kernel_invoke takes only that one, so that no invoke waits for another
   * interpreter's load).  Neither is held while the runtime calls back into the delegate
   * (ReplaceNodeSubsetsWithDelegateKernels -> kernel_init), so neither needs to be recursive. */
  pthread_mutex_t lock;
  pthread_mutex_t release_lock;
  /* The report holds each delegate Prepare's lines once (a block): a Prepare whose lines equal an
   * earlier block's adds none (the same model in every new interpreter grew it by ~100 B per
   * compressed layer each time), and it keeps its first kReportMax bytes of lines, then counts. */
  size_t block_start;          /* report offset of the current Prepare's lines */
  struct ReportBlock* rblocks; /* the blocks kept */
  size_t num_rblocks, cap_rblocks;
  size_t report_dropped;         /* lines not kept (kReportMax): the report's "more" line */
  struct DcDelegateS* next_live; /* g_delegates */
} DcDelegate;

/* Every delegate alive, for fork().  fork() copies only the thread that calls it: a delegate
 * whose lock another thread held then (inside the delegate's Prepare, a kernel's Prepare, Free or
 * Invoke, a report) stayed locked in the child forever, and the child's first call into it hung
 * (repro: fork while another thread's Prepare waits in the runtime's GetExecutionPlan; the child's
 * DcKerasHuffDecodeDelegateReport never returned).  So fork's prepare handler takes every live
 * delegate's locks -- fork waits for the calls in progress -- and the parent's and child's
 * handlers release them.  They run before dc_parallel.c's (registered after it): a thread holding
 * a delegate's lock may still need dc_parallel.c's lock, which its prepare handler holds. */
static struct {
  pthread_mutex_t lock;
  DcDelegate* head;
  int atfork; /* handlers registered */
} g_delegates = {PTHREAD_MUTEX_INITIALIZER, NULL, 0};

static void delegates_prepare(void) {
  pthread_mutex_lock(&g_delegates.lock);
  for (DcDelegate* d = g_delegates.head; d; d = d->next_live) {
    pthread_mutex_lock(&d->lock); /* in this order, as release_packed_copies takes them */
    pthread_mutex_lock(&d->release_lock);
  }
}

static void delegates_release(void) { /* fork's parent and child handlers */
  for (DcDelegate* d = g_delegates.head; d; d = d->next_live) {
    pthread_mutex_unlock(&d->release_lock);
    pthread_mutex_unlock(&d->lock);
  }
  pthread_mutex_unlock(&g_delegates.lock);
}

static void delegates_add(DcDelegate* d) {
  dc_parallel_register_atfork(); /* first: see g_delegates */
  pthread_mutex_lock(&g_delegates.lock);
  if (!g_delegates.atfork) {
    g_delegates.atfork =
        pthread_atfork(delegates_prepare, delegates_release, delegates_release) == 0;
  }
  d->next_live = g_delegates.head;
  g_delegates.head = d;
  pthread_mutex_unlock(&g_delegates.lock);
}

/* Before anything else of delegate_free: a fork from then on no longer takes its locks. */
static void delegates_remove(DcDelegate* d) {
  pthread_mutex_lock(&g_delegates.lock);
  DcDelegate** at = &g_delegates.head;
  while (*at && *at != d) at = &(*at)->next_live;
  if (*at) *at = d->next_live;
  pthread_mutex_unlock(&g_delegates.lock);
}

typedef struct ReportBlock {
  size_t at, kept; /* its lines kept in the report (kept <= len: cut at kReportMax) */
  size_t len;      /* the bytes of all its lines */
  uint64_t hash;   /* FNV-1a of those bytes */
} ReportBlock;

typedef struct CtxError {
  const struct TfLiteContext* ctx;
  char msg[512];
} CtxError;

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

/* A name or reason as a report field, in memory of its own (free it; NULL when out of memory: the
 * line is then left out, as report_line leaves out a line it has no memory for): tab, newline,
 * carriage return and backslash written as \t, \n, \r and \\, so that the report's lines and
 * fields stay one line, tab-separated, whatever the names (dc_keras.runtime reads them back). */
static char* report_field(const char* s) {
  size_t len = 0;
  for (const char* c = s; *c; ++c)
    len += (*c == '\t' || *c == '\n' || *c == '\r' || *c == '\\') ? 2 : 1;
  char* out = (char*)malloc(len + 1);
  if (!out) return NULL;
  size_t n = 0;
  for (; *s; ++s) {
    char e = *s == '\t' ? 't' : *s == '\n' ? 'n' : *s == '\r' ? 'r' : *s == '\\' ? '\\' : 0;
    if (e) out[n++] = '\\';
    out[n++] = e ? e : *s;
  }
  out[n] = '\0';
  return out;
}

static void report_line(DcDelegate* d, const char* fmt, ...) {
  /* measured first: a line is never cut (a cut line lost its last fields and its newline) */
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  size_t len = (size_t)n;
  if (d->report_len + len + 1 > d->report_cap) {
    size_t cap = (d->report_cap ? 2 * d->report_cap : 1024) + len;
    char* nr = (char*)realloc(d->report, cap);
    if (!nr) return;
    d->report = nr;
    d->report_cap = cap;
  }
  va_start(ap, fmt);
  (void)vsnprintf(d->report + d->report_len, len + 1, fmt, ap);
  va_end(ap);
  d->report_len += len;
}

/* The "dense" line for weights `name`, kept dense for `why`, read by op `op`. */
static void report_dense(DcDelegate* d, const char* name, const char* why, const char* op) {
  char* f_name = report_field(name);
  char* f_why = report_field(why);
  if (f_name && f_why) report_line(d, "dense\t%s\t%s\t%s\n", f_name, f_why, op);
  free(f_name);
  free(f_why);
}

/* Bytes of report lines kept (1 MiB: ~10,000 layers' lines; a model's own lines are ~100 B per
 * packed weight). */
static const size_t kReportMax = (size_t)1 << 20;
static const size_t kReportBlocks = 16384; /* blocks remembered (32 B each) */

static uint64_t fnv1a(const char* p, size_t n) {
  uint64_t h = 14695981039346656037ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
  return h;
}

/* Ends the current Prepare's block of report lines: dropped if an earlier block had the same
 * lines (the same model again), else kept, cut at a line end to kReportMax bytes of lines (the
 * lines cut are counted; a block is matched by all its lines, kept or cut).  At most
 * kReportBlocks blocks are remembered for matching. */
static void report_close_block(DcDelegate* d) {
  const size_t at = d->block_start, len = d->report_len - at;
  if (len == 0) return;
  const uint64_t h = fnv1a(d->report + at, len);
  for (size_t i = 0; i < d->num_rblocks; ++i) {
    const ReportBlock* b = &d->rblocks[i];
    if (b->len == len && b->hash == h && memcmp(d->report + b->at, d->report + at, b->kept) == 0) {
      d->report_len = at;
      d->report[at] = '\0';
      return;
    }
  }
  size_t keep = d->report_len;
  if (keep > kReportMax) { /* whole lines up to kReportMax bytes */
    keep = kReportMax;
    while (keep > at && d->report[keep - 1] != '\n') --keep;
    for (size_t i = keep; i < d->report_len; ++i) d->report_dropped += d->report[i] == '\n';
    d->report_len = keep;
    d->report[keep] = '\0';
  }
  if (d->num_rblocks == d->cap_rblocks) {
    size_t cap = d->cap_rblocks ? 2 * d->cap_rblocks : 8;
    ReportBlock* nb = d->cap_rblocks < kReportBlocks
                          ? (ReportBlock*)realloc(d->rblocks, cap * sizeof(ReportBlock))
                          : NULL;
    if (!nb) return; /* kept, not matched later */
    d->rblocks = nb;
    d->cap_rblocks = cap;
  }
  ReportBlock* b = &d->rblocks[d->num_rblocks++];
  b->at = at;
  b->kept = keep - at;
  b->len = len;
  b->hash = h;
}

/* A tensor decoded by the delegate.  Its block may be released once every
 * consumer is a FULLY_CONNECTED / CONV_2D / DEPTHWISE_CONV_2D node (filter
 * input only) that the XNNPACK delegate took over: XNNPACK packs such static
 * filters into its own memory when it creates its runtime and only reshapes
 * (never repacks) on a resize.  If the delegates are applied again, the
 * delegate's Prepare decodes it again. */
typedef struct Decoded {
  const TfLiteContext* ctx; /* subgraph of `tensor` */
  int tensor;
  void* block;    /* malloc block or part of arenas[arena], NULL once released */
  int arena;      /* index in DcDelegate.arenas, -1: a malloc block */
  size_t bytes;   /* the block's size */
  int* consumers; /* original node indices */
  int num_consumers;
  int eligible;
} Decoded;

/* One dc_arena and the number of its blocks not yet released. */
typedef struct Arena {
  dc_arena* mem;
  size_t live;
} Arena;

/* Adds an arena for `blocks` blocks; its index, or -1 (out of memory: freed). */
static int delegate_keep_arena(DcDelegate* d, dc_arena* mem, size_t blocks) {
  if (d->num_arenas == d->cap_arenas) {
    size_t cap = d->cap_arenas ? 2 * d->cap_arenas : 4;
    Arena* na = (Arena*)realloc(d->arenas, cap * sizeof(Arena));
    if (!na) {
      dc_arena_free(mem);
      return -1;
    }
    d->arenas = na;
    d->cap_arenas = cap;
  }
  d->arenas[d->num_arenas].mem = mem;
  d->arenas[d->num_arenas].live = blocks;
  return (int)d->num_arenas++;
}

static Decoded* find_decoded(const DcDelegate* d, const TfLiteContext* ctx, int tensor) {
  for (size_t i = 0; i < d->num_dec; ++i) {
    if (d->dec[i].ctx == ctx && d->dec[i].tensor == tensor) return &d->dec[i];
  }
  return NULL;
}

static void track_decoded(DcDelegate* d, const TfLiteContext* ctx, int tensor, void* block,
                          int arena, size_t bytes) {
  Decoded* r = find_decoded(d, ctx, tensor);
  if (!r) {
    if (d->num_dec == d->cap_dec) {
      size_t cap = d->cap_dec ? 2 * d->cap_dec : 16;
      Decoded* nd = (Decoded*)realloc(d->dec, cap * sizeof(Decoded));
      if (!nd) return; /* untracked: simply never released */
      d->dec = nd;
      d->cap_dec = cap;
    }
    r = &d->dec[d->num_dec++];
    memset(r, 0, sizeof *r);
    r->ctx = ctx;
    r->tensor = tensor;
  }
  r->block = block;
  r->arena = arena;
  r->bytes = bytes;
}

/* The memory release_packed_copies gives back: its syscalls and frees run on a helper thread
 * (dc_task_start) while the runtime goes on with the other kernels' Prepare (MobileNetV2: 62
 * blocks, 13.9 MB, ~0.6 ms off the load's critical path).  The bookkeeping is done at once; the
 * helper touches only the memory listed here, which nothing references any more. */
typedef struct Release {
  dc_arena** drop_arena; /* drop [ptr, ptr + len) of drop_arena[i] (dc_arena_drop) ... */
  void** drop_ptr;
  size_t* drop_len;
  size_t num_drops;
  dc_arena** dead; /* ... then free these arenas and blocks */
  size_t num_dead;
  void** blocks;
  size_t num_blocks;
  dc_task* task;
} Release;

static void release_run(void* arg) {
  Release* r = (Release*)arg;
  for (size_t i = 0; i < r->num_drops; ++i) {
    dc_arena_drop(r->drop_arena[i], r->drop_ptr[i], r->drop_len[i]);
  }
  for (size_t i = 0; i < r->num_dead; ++i) dc_arena_free(r->dead[i]);
  for (size_t i = 0; i < r->num_blocks; ++i) free(r->blocks[i]);
}

static void release_free(Release* r) {
  if (!r) return;
  free(r->drop_arena);
  free(r->drop_ptr);
  free(r->drop_len);
  free(r->dead);
  free(r->blocks);
  free(r);
}

/* A list for up to n blocks; NULL if out of memory (then drop_block frees at once). */
static Release* release_new(size_t n) {
  Release* r = (Release*)calloc(1, sizeof *r);
  if (!r) return NULL;
  n = n ? n : 1;
  r->drop_arena = (dc_arena**)malloc(n * sizeof(dc_arena*));
  r->drop_ptr = (void**)malloc(n * sizeof(void*));
  r->drop_len = (size_t*)malloc(n * sizeof(size_t));
  r->dead = (dc_arena**)malloc(n * sizeof(dc_arena*));
  r->blocks = (void**)malloc(n * sizeof(void*));
  if (!r->drop_arena || !r->drop_ptr || !r->drop_len || !r->dead || !r->blocks) {
    release_free(r);
    return NULL;
  }
  return r;
}

/* Waits for the last release_packed_copies' helper (its memory is then given back).  Takes it
 * under release_lock, then joins it: one caller joins a helper, however many threads invoke. */
static void join_release(DcDelegate* d) {
  pthread_mutex_lock(&d->release_lock);
  Release* r = d->release;
  d->release = NULL;
  pthread_mutex_unlock(&d->release_lock);
  if (!r) return;
  dc_task_join(r->task);
  release_free(r);
}

/* Frees a decoded tensor's block (its arena's pages; the arena once all its blocks are gone),
 * at once, or through `rel` (release_run) if not NULL. */
static void drop_block(DcDelegate* d, Decoded* r, Release* rel) {
  if (r->arena >= 0 && (size_t)r->arena < d->num_arenas) {
    Arena* a = &d->arenas[r->arena];
    if (a->live > 0 && --a->live == 0) { /* its last block: the whole arena goes */
      if (rel) {
        rel->dead[rel->num_dead++] = a->mem;
      } else {
        dc_arena_free(a->mem);
      }
      a->mem = NULL;
    } else if (rel) {
      rel->drop_arena[rel->num_drops] = a->mem;
      rel->drop_ptr[rel->num_drops] = r->block;
      rel->drop_len[rel->num_drops++] = r->bytes;
    } else {
      dc_arena_drop(a->mem, r->block, r->bytes);
    }
  } else {
    for (size_t b = 0; b < d->num_blocks; ++b) {
      if (d->blocks[b] == r->block) d->blocks[b] = NULL;
    }
    if (rel) {
      rel->blocks[rel->num_blocks++] = r->block;
    } else {
      free(r->block);
    }
  }
  r->block = NULL;
}

static FcPlan* find_fc(const DcDelegate* d, const TfLiteContext* ctx, int node) {
  for (size_t i = 0; i < d->num_fcs; ++i) {
    if (d->fcs[i]->ctx == ctx && d->fcs[i]->node == node) return d->fcs[i];
  }
  return NULL;
}

/* Input slot of the weights / table: GATHER(params, indices), the others (x, weights). */
static int table_slot(int op) {
  return op == kTfLiteBuiltinGather ? 0 : 1;
}

static const char* op_name(int op) {
  return op == kTfLiteBuiltinGather            ? "GATHER"
         : op == kTfLiteBuiltinEmbeddingLookup ? "EMBEDDING_LOOKUP"
                                               : "FULLY_CONNECTED";
}

/* compressed_report()'s form of a built layer (docs/runtime.md): "values" (rows of float32
 * weights, 6 B per non-zero), "tiles" (16-row tiles of codes, the AVX2 / AVX-512 kernels') or
 * "codes" (rows of 1-byte codes: a codebook index, an int8 weight's byte). */
static const char* form_name(const dc_sparse_fc* m) {
  return m->value ? "values" : m->tile_e ? "tiles" : "codes";
}

static void fc_plan_free(FcPlan* p) {
  if (!p) return;
  dc_sparse_fc_free(&p->m);
  free(p->scale);
  free(p);
}

/* Kernel state of one delegated partition: its compressed FC nodes in order. */
typedef struct {
  FcPlan** fcs;
  int num_fcs;
  const TfLiteIntArray* outputs; /* partition outputs (owned by the runtime) */
  void* scratch;                 /* batch tile, DC_SFC_BATCH_TILE * max cols floats */
  size_t scratch_bytes;
  struct DcDelegateS* d; /* the delegate (kernel_free joins its decode_lazily fill) */
} KernelState;

static void* kernel_init(TfLiteContext* context, const char* buffer, size_t length) {
  (void)context;
  (void)length;
  KernelState* ks = (KernelState*)calloc(1, sizeof(KernelState));
  const TfLiteDelegateParams* params = (const TfLiteDelegateParams*)buffer;
  if (!ks || !params || !params->delegate || !params->nodes_to_replace) return ks;
  DcDelegate* d = (DcDelegate*)params->delegate->data_;
  const TfLiteIntArray* nodes = params->nodes_to_replace;
  ks->outputs = params->output_tensors;
  ks->fcs = (FcPlan**)calloc((size_t)(nodes->size > 0 ? nodes->size : 1), sizeof(FcPlan*));
  if (!ks->fcs) {
    free(ks);
    return NULL;
  }
  ks->d = d;
  if (!d) return ks;
  pthread_mutex_lock(&d->lock);
  d->kernels++; /* kernel_free gives it back */
  for (int k = 0; k < nodes->size; ++k) {
    FcPlan* p = find_fc(d, context, nodes->data[k]);
    if (p) ks->fcs[ks->num_fcs++] = p;
  }
  pthread_mutex_unlock(&d->lock);
  return ks;
}

static void join_lazy(DcDelegate* d, int report);
static int lazy_of_other(const DcDelegate* d, const TfLiteContext* context);
static void delegate_free(DcDelegate* d);

/* The first error recorded for `context`'s graph (NULL if none). */
static const char* context_error(const DcDelegate* d, const TfLiteContext* context) {
  for (size_t i = 0; i < d->num_errors; ++i) {
    if (d->errors[i].ctx == context) return d->errors[i].msg;
  }
  return d->errors_lost && d->error[0] ? d->error : NULL;
}

static void forget_errors(DcDelegate* d, const TfLiteContext* context) {
  for (size_t i = 0; i < d->num_errors; ++i) {
    if (d->errors[i].ctx == context) {
      d->errors[i] = d->errors[--d->num_errors];
      return;
    }
  }
}

/* The graph of `context` is going: the runtime frees its kernels when the interpreter is
 * destroyed (or when it undoes its delegates, to apply them again).  A delegate shared by several
 * interpreters keys what it keeps by the graph's context, whose address a later interpreter's graph
 * often gets: so that graph starts clean, this graph's decoded weights are freed now (not at the
 * delegate's destruction: that grew memory by a model's weights per interpreter) and its tensors
 * no longer point at them (applied again, the delegate decodes them again), its errors are
 * forgotten, and its compressed layers (`fcs`) are marked, to be kept by delegate_prepare only for
 * this same graph applied again (they ran another model's weights in the new graph).  The graph's
 * tensors are still there (the runtime frees nodes first); its nodes may not be. */
static void forget_graph(DcDelegate* d, TfLiteContext* context, FcPlan** fcs, int num_fcs) {
  for (int i = 0; i < num_fcs; ++i) fcs[i]->orphan = 1;
  join_release(d);
  for (size_t i = 0; i < d->num_dec;) {
    Decoded* r = &d->dec[i];
    if (r->ctx != context) {
      ++i;
      continue;
    }
    if (r->block) {
      if (r->tensor >= 0 && (size_t)r->tensor < context->tensors_size &&
          context->tensors[r->tensor].data.data == r->block) {
        context->tensors[r->tensor].data.data = NULL;
      }
      drop_block(d, r, NULL);
    }
    free(r->consumers);
    d->dec[i] = d->dec[--d->num_dec];
  }
  forget_errors(d, context);
}

static void kernel_free(TfLiteContext* context, void* buffer) {
  KernelState* ks = (KernelState*)buffer;
  if (!ks) return;
  /* The runtime frees its nodes before the model's buffers: a helper still decoding from them
   * (an interpreter dropped before allocate_tensors) must be done first. */
  DcDelegate* d = ks->d;
  int last = 0;
  if (d) {
    pthread_mutex_lock(&d->lock);
    join_lazy(d, lazy_of_other(d, context)); /* another graph's fill: its errors are kept */
    forget_graph(d, context, ks->fcs, ks->num_fcs);
    last = --d->kernels == 0 && d->destroyed;
    pthread_mutex_unlock(&d->lock);
  }
  free(ks->fcs);
  free(ks->scratch);
  free(ks);
  if (last) delegate_free(d); /* destroyed before the graph */
}

static int is_fc_output(const KernelState* ks, int t) {
  for (int i = 0; ks && i < ks->num_fcs; ++i) {
    if (ks->fcs[i]->output == t) return 1;
  }
  return 0;
}

static int in_array(const TfLiteIntArray* a, int v) {
  for (int i = 0; a && i < a->size; ++i) {
    if (a->data[i] == v) return 1;
  }
  return 0;
}

/* Shapes the output of one compressed FC from its current input (as TFLite's
 * FULLY_CONNECTED does) and makes sure it will have memory. */
static TfLiteStatus fc_prepare(TfLiteContext* context, const KernelState* ks, FcPlan* p,
                               size_t* batch_out) {
  TfLiteTensor* in = &context->tensors[p->input];
  TfLiteTensor* out = &context->tensors[p->output];
  size_t elems = 1;
  for (int k = 0; in->dims && k < in->dims->size; ++k) {
    if (in->dims->data[k] < 0) return kTfLiteError;
    elems *= (size_t)in->dims->data[k];
  }
  if (!in->dims || in->dims->size < 1 || elems % p->m.cols != 0 ||
      (p->keep_num_dims && (uint32_t)in->dims->data[in->dims->size - 1] != p->m.cols)) {
    context->ReportError(context,
                         "dc_keras compressed FC(%s): input size is not a "
                         "multiple of %u",
                         p->name, (unsigned)p->m.cols);
    return kTfLiteError;
  }
  size_t batch = elems / p->m.cols;
  int rank = p->keep_num_dims ? in->dims->size : 2;
  if (batch > 0x7fffffff) return kTfLiteError;
  TfLiteIntArray* shape =
      (TfLiteIntArray*)malloc(sizeof(TfLiteIntArray) + sizeof(int) * (size_t)rank);
  if (!shape) return kTfLiteError;
  shape->size = rank;
  if (p->keep_num_dims) {
    for (int k = 0; k < rank; ++k) shape->data[k] = in->dims->data[k];
  } else {
    shape->data[0] = (int)batch;
  }
  shape->data[rank - 1] = (int)p->m.rows;
  /* An output used only inside this partition is planned by no one: heap. */
  if (!in_array(ks->outputs, p->output) && out->allocation_type == kTfLiteArenaRw) {
    out->allocation_type = kTfLiteDynamic;
  }
  *batch_out = batch;
  return context->ResizeTensor(context, out, shape); /* takes ownership */
}

/* Lookups: output = indices shape + [row width] (GATHER axis 0 of a 2-D table;
 * EMBEDDING_LOOKUP takes 1-D indices). */
static TfLiteStatus lookup_prepare(TfLiteContext* context, const KernelState* ks, FcPlan* p) {
  const TfLiteTensor* idx = &context->tensors[p->input];
  TfLiteTensor* out = &context->tensors[p->output];
  int rank = idx->dims ? idx->dims->size : -1;
  if (rank < 0 || rank > 7 || (p->op == kTfLiteBuiltinEmbeddingLookup && rank != 1)) {
    context->ReportError(context, "dc_keras compressed %s(%s): indices of rank %d", op_name(p->op),
                         p->name, rank);
    return kTfLiteError;
  }
  TfLiteIntArray* shape =
      (TfLiteIntArray*)malloc(sizeof(TfLiteIntArray) + sizeof(int) * (size_t)(rank + 1));
  if (!shape) return kTfLiteError;
  shape->size = rank + 1;
  for (int k = 0; k < rank; ++k) shape->data[k] = idx->dims->data[k];
  shape->data[rank] = (int)p->m.cols;
  if (!in_array(ks->outputs, p->output) && out->allocation_type == kTfLiteArenaRw) {
    out->allocation_type = kTfLiteDynamic;
  }
  return context->ResizeTensor(context, out, shape);
}

static void release_packed_copies(TfLiteContext* context, DcDelegate* d);

static TfLiteStatus kernel_prepare_locked(TfLiteContext* context, TfLiteNode* node, DcDelegate* d);

static TfLiteStatus kernel_prepare(TfLiteContext* context, TfLiteNode* node) {
  DcDelegate* d = node->delegate ? (DcDelegate*)node->delegate->data_ : NULL;
  if (!d) {
    context->ReportError(context, "HuffDecode delegate kernel without delegate");
    return kTfLiteError;
  }
  pthread_mutex_lock(&d->lock);
  TfLiteStatus status = kernel_prepare_locked(context, node, d);
  pthread_mutex_unlock(&d->lock);
  return status;
}

static TfLiteStatus kernel_prepare_locked(TfLiteContext* context, TfLiteNode* node, DcDelegate* d) {
  KernelState* ks = (KernelState*)node->user_data;
  join_lazy(d, 1); /* decode_lazily's tensors are complete (or the error known) from here on */
  const char* err = context_error(d, context);
  if (err) {
    context->ReportError(context, "%s", err);
    return kTfLiteError;
  }
  for (int k = 0; node->outputs && k < node->outputs->size; ++k) {
    int t = node->outputs->data[k];
    if (t < 0 || (size_t)t >= context->tensors_size ||
        (!is_fc_output(ks, t) && context->tensors[t].data.data == NULL &&
         context->tensors[t].bytes != 0 &&
         !(find_decoded(d, context, t) && !find_decoded(d, context, t)->block))) {
      context->ReportError(context, "HuffDecode delegate: output %d not decoded", t);
      return kTfLiteError;
    }
  }
  release_packed_copies(context, d);
  size_t need = 0;
  for (int i = 0; ks && i < ks->num_fcs; ++i) {
    size_t batch = 0;
    if (ks->fcs[i]->op != kTfLiteBuiltinFullyConnected) {
      if (lookup_prepare(context, ks, ks->fcs[i]) != kTfLiteOk) return kTfLiteError;
      continue;
    }
    if (fc_prepare(context, ks, ks->fcs[i], &batch) != kTfLiteOk) return kTfLiteError;
    size_t b = (size_t)ks->fcs[i]->m.cols * DC_SFC_BATCH_TILE * sizeof(float);
    if (batch > 1 && b > need) need = b;
  }
  if (ks && need > ks->scratch_bytes) {
    void* s = realloc(ks->scratch, need);
    if (!s) {
      context->ReportError(context, "dc_keras compressed FC: out of memory");
      return kTfLiteError;
    }
    ks->scratch = s;
    ks->scratch_bytes = need;
  }
  return kTfLiteOk;
}

static TfLiteStatus fc_invoke(TfLiteContext* context, const KernelState* ks, const FcPlan* p) {
  const TfLiteTensor* in = &context->tensors[p->input];
  TfLiteTensor* out = &context->tensors[p->output];
  const TfLiteTensor* bias = p->bias >= 0 ? &context->tensors[p->bias] : NULL;
  size_t esize = p->m.dtype == DC_DTYPE_FLOAT32 ? sizeof(float) : 1;
  size_t batch = in->bytes / esize / p->m.cols;
  /* An empty batch (a dimension of 0) has no data to point at: nothing to compute. */
  if ((batch && (!in->data.raw_const || !out->data.data)) ||
      out->bytes != batch * p->m.rows * esize || in->bytes != batch * p->m.cols * esize) {
    context->ReportError(context, "dc_keras compressed FC(%s): tensors not ready", p->name);
    return kTfLiteError;
  }
  if (batch == 0) return kTfLiteOk;
  if (p->m.dtype == DC_DTYPE_FLOAT32) {
    dc_sparse_fc_float(&p->m, (const float*)in->data.raw_const, batch,
                       bias ? (const float*)bias->data.raw_const : NULL, p->act_min, p->act_max,
                       (float*)out->data.data, (float*)ks->scratch);
  } else {
    dc_sparse_fc_int8(&p->m, (const int8_t*)in->data.raw_const, batch, p->input_zp,
                      bias ? (const int32_t*)bias->data.raw_const : NULL, p->scale, p->output_zp,
                      p->qmin, p->qmax, (int8_t*)out->data.data, (int32_t*)ks->scratch);
  }
  return kTfLiteOk;
}

/* Index out of range: fails like TFLite's GATHER / EMBEDDING_LOOKUP (never read). */
static TfLiteStatus lookup_invoke(TfLiteContext* context, const FcPlan* p) {
  const TfLiteTensor* idx = &context->tensors[p->input];
  TfLiteTensor* out = &context->tensors[p->output];
  int idx64 = idx->type == kTfLiteInt64;
  size_t n = idx->bytes / (idx64 ? 8u : 4u);
  size_t esize = p->m.dtype == DC_DTYPE_FLOAT32 ? sizeof(float) : 1;
  if ((n && (!idx->data.raw_const || !out->data.data)) || out->bytes != n * p->m.cols * esize) {
    context->ReportError(context, "dc_keras compressed %s(%s): tensors not ready", op_name(p->op),
                         p->name);
    return kTfLiteError;
  }
  size_t bad = dc_sparse_gather(&p->m, idx->data.raw_const, idx64, n, out->data.data);
  if (bad != n) {
    long long v = idx64 ? (long long)((const int64_t*)idx->data.raw_const)[bad]
                        : (long long)((const int32_t*)idx->data.raw_const)[bad];
    context->ReportError(context,
                         "dc_keras compressed %s(%s): index out of bounds: indices[%zu] = %lld, "
                         "the table has rows [0, %u)",
                         op_name(p->op), p->name, bad, v, (unsigned)p->m.rows);
    return kTfLiteError;
  }
  return kTfLiteOk;
}

static TfLiteStatus kernel_invoke(TfLiteContext* context, TfLiteNode* node) {
  const KernelState* ks = (const KernelState*)node->user_data;
  if (node->delegate) join_release((DcDelegate*)node->delegate->data_);
  for (int i = 0; ks && i < ks->num_fcs; ++i) {
    TfLiteStatus st = ks->fcs[i]->op == kTfLiteBuiltinFullyConnected
                          ? fc_invoke(context, ks, ks->fcs[i])
                          : lookup_invoke(context, ks->fcs[i]);
    if (st != kTfLiteOk) return kTfLiteError;
  }
  return kTfLiteOk;
}

/* Decoded route, step 1: checks one HuffDecode node; *bytes = the size of its output block.
 * Returns 1 (to decode), 2 (output already decoded: nothing to do) or 0 + message. */
static int delegate_check_node(TfLiteContext* context, DcDelegate* d, TfLiteNode* node,
                               size_t* bytes, char* msg, size_t msg_size) {
  TfLiteTensor *in, *out;
  dc_tensor_info info;
  if (!node_tensors(context, node, &in, &out, msg, msg_size)) return 0;
  if (out->allocation_type == kTfLiteMmapRo && out->data.data != NULL) {
    const Decoded* mine = find_decoded(d, context, node->outputs->data[0]);
    if (mine && mine->block == out->data.data) return 2; /* decoded (delegate applied again) */
    output_has_data(context, out, msg, msg_size);
    return 0;
  }
  if (!check_packed(context, in, out, &info, msg, msg_size)) return 0;
  const Decoded* prev = find_decoded(d, context, node->outputs->data[0]);
  if (prev && !prev->block && out->bytes == 0) {
    out->bytes = (size_t)info.output_bytes; /* released earlier: decode again */
  }
  if (!output_size_ok(out, &info)) {
    set_msg(msg, msg_size, "HuffDecode(%s): output byte size %llu != %llu",
            TENSOR_NAME(context, out), (unsigned long long)out->bytes,
            (unsigned long long)info.output_bytes);
    return 0;
  }
  *bytes = (size_t)out->bytes; /* >= output_bytes (int4: see output_size_ok) */
  return 1;
}

/* Decoded route, step 2: the node's output block -- `mem` (part of an arena, 64-byte aligned),
 * else `ready`, else a block of its own -- and *job, the decode to run.  `ready` (may be NULL) is a
 * malloc'ed block that already holds the node's whole decode (64-byte aligned, output_bytes); this
 * function takes it: it becomes the block when the output is exactly that size and no `mem` is
 * given, else it is freed.  Returns 1 (job staged), 3 (job staged, its output is `ready`: nothing
 * to decode), 2 (already decoded) or 0 + message. */
static int delegate_stage_node(TfLiteContext* context, DcDelegate* d, TfLiteNode* node,
                               uint8_t* mem, int zero_tail, void* ready, dc_decode_job* job,
                               void** block_out, char* msg, size_t msg_size) {
  size_t n = 0;
  int r = delegate_check_node(context, d, node, &n, msg, msg_size);
  const TfLiteTensor* in = &context->tensors[node->inputs->data[0]];
  const TfLiteTensor* out = &context->tensors[node->outputs->data[0]];
  dc_tensor_info info;
  if (r == 1) dc_peek((const uint8_t*)in->data.raw_const, in->bytes, &info); /* checked: step 1 */
  if (ready && (r != 1 || mem || n != (size_t)info.output_bytes)) {
    free(ready); /* already decoded, an error, an arena's block or a padded (int4) output */
    ready = NULL;
  }
  if (r != 1) return r;
  void* block = mem ? (void*)mem : ready;
  if (!block) block = dc_alloc_output(n); /* kDecodedAlignment-aligned, not zeroed */
  /* !block: no `mem` given (NULL) and no memory: before, NULL == mem skipped this check and the
   * decoder was handed a NULL output ("invalid argument (NULL pointer)") */
  if (!block || (block != mem && !delegate_keep(d, block))) {
    if (block != mem) free(block);
    set_msg(msg, msg_size,
            "HuffDecode(%s): out of memory (%llu bytes for the decoded tensor): free some memory "
            "or raise the process's memory limit (ulimit -v)",
            TENSOR_NAME(context, out), (unsigned long long)info.output_bytes);
    return 0;
  }
  /* The decoder writes output_bytes; zero the rest (int4: runtime size > data).  A lazy arena's
   * block (zero_tail 0) must not be touched here: its fill writes the tail. */
  if (zero_tail || block != mem) {
    memset((uint8_t*)block + info.output_bytes, 0, n - (size_t)info.output_bytes);
  }
  job->packed = (const uint8_t*)in->data.raw_const;
  job->packed_size = in->bytes;
  job->out = block;
  job->out_size = (size_t)info.output_bytes;
  job->status = DC_OK;
  *block_out = block;
  return ready ? 3 : 1;
}

/* Decoded route, step 2: after a successful decode, the output becomes a
 * read-only constant; 0 + message if the decode failed. */
static int delegate_finish_node(TfLiteContext* context, DcDelegate* d, TfLiteNode* node,
                                const dc_decode_job* job, void* block, int arena, char* msg,
                                size_t msg_size) {
  TfLiteTensor* out = &context->tensors[node->outputs->data[0]];
  if (job->status != DC_OK) {
    set_msg(msg, msg_size, "HuffDecode(%s): decoding failed: %s", TENSOR_NAME(context, out),
            dc_strerror(job->status));
    add_fix(msg, msg_size, packed_fix(job->status, 0));
    return 0;
  }
  out->data.data = job->out;
  out->allocation_type = kTfLiteMmapRo;
  track_decoded(d, context, node->outputs->data[0], block, arena, out->bytes);
  return 1;
}

/* Decodes one HuffDecode node in the calling thread (compressed route's fallback; the decoded
 * route batches all nodes through decode_nodes).  `ready`, if not NULL: the weight a refused FC's
 * density check decoded to count its non-zeros (malloc'ed, output_bytes, 64-byte aligned); it
 * becomes the node's output without a second decode when it fits (delegate_stage_node takes it). */
static int delegate_decode_node(TfLiteContext* context, DcDelegate* d, TfLiteNode* node,
                                void* ready, char* msg, size_t msg_size) {
  dc_decode_job job;
  void* block = NULL;
  int r = delegate_stage_node(context, d, node, NULL, 1, ready, &job, &block, msg, msg_size);
  if (r == 0 || r == 2) return r != 0;
  if (r == 1) dc_decode_many(&job, 1, 1);
  return delegate_finish_node(context, d, node, &job, block, -1, msg, msg_size);
}

/* ---- compressed FULLY_CONNECTED: deciding and building ---------------- */

static int const_tensor(const TfLiteTensor* t) {
  return t->allocation_type == kTfLiteMmapRo && t->data.raw_const != NULL;
}

/* TFLite's quantized activation bound: zp + round-half-away(x / scale). */
static int32_t quant_bound(float x, float scale, int32_t zp) {
  double q = (double)x / (double)scale;
  if (q > 1e6) q = 1e6;
  if (q < -1e6) q = -1e6;
  return zp + (int32_t)(q >= 0 ? q + 0.5 : q - 0.5);
}

static int fc_activation(FcPlan* p, int act, const TfLiteTensor* out) {
  const float inf = 1.0f / 0.0f;
  float lo = -inf, hi = inf;
  switch (act) {
    case kTfLiteActNone: break;
    case kTfLiteActRelu: lo = 0.f; break;
    case kTfLiteActReluN1To1:
      lo = -1.f;
      hi = 1.f;
      break;
    case kTfLiteActRelu6:
      lo = 0.f;
      hi = 6.f;
      break;
    default: return 0;
  }
  p->activation = act;
  p->act_min = lo;
  p->act_max = hi;
  p->qmin = -128;
  p->qmax = 127;
  if (out->type == kTfLiteInt8 && act != kTfLiteActNone) {
    int32_t a = quant_bound(lo, out->params.scale, out->params.zero_point);
    p->qmin = a > -128 ? a : -128;
    if (act != kTfLiteActRelu) {
      int32_t b = quant_bound(hi, out->params.scale, out->params.zero_point);
      p->qmax = b < 127 ? b : 127;
    }
  }
  return 1;
}

/* int8: per-row scales in_scale * w_scale[r] / out_scale, as XNNPACK's. */
static int fc_int8_params(FcPlan* p, const TfLiteTensor* in, const TfLiteTensor* w,
                          const TfLiteTensor* out, char* why, size_t why_size) {
  const TfLiteAffineQuantization* q = w->quantization.type == kTfLiteAffineQuantization
                                          ? (const TfLiteAffineQuantization*)w->quantization.params
                                          : NULL;
  uint32_t rows = p->m.rows;
  if (!q || !q->scale || (q->scale->size != 1 && (uint32_t)q->scale->size != rows) ||
      (q->scale->size != 1 && q->quantized_dimension != 0) || !(in->params.scale > 0.f) ||
      !(out->params.scale > 0.f)) {
    set_msg(why, why_size, "int8 weights without per-tensor/per-row scales");
    return 0;
  }
  for (int i = 0; q->zero_point && i < q->zero_point->size; ++i) {
    if (q->zero_point->data[i] != 0) {
      set_msg(why, why_size, "int8 weights with a non-zero zero point");
      return 0;
    }
  }
  p->scale = (float*)malloc(sizeof(float) * rows);
  if (!p->scale) {
    set_msg(why, why_size, "out of memory");
    return 0;
  }
  for (uint32_t r = 0; r < rows; ++r) {
    float ws = q->scale->data[q->scale->size == 1 ? 0 : r];
    p->scale[r] = in->params.scale * ws / out->params.scale;
  }
  p->input_zp = in->params.zero_point;
  p->output_zp = out->params.zero_point;
  return 1;
}

/* Checks an FC node's types/options (before anything is decoded).
 * Returns 1 if the compressed kernel can run it, else 0 + reason. */
static int fc_supported(TfLiteContext* context, const TfLiteNode* node, char* why,
                        size_t why_size) {
  const TfLiteFullyConnectedParams* prm = (const TfLiteFullyConnectedParams*)node->builtin_data;
  if (!node->inputs || node->inputs->size < 2 || node->inputs->size > 3 || !node->outputs ||
      node->outputs->size != 1 || !prm) {
    set_msg(why, why_size, "unexpected FULLY_CONNECTED node");
    return 0;
  }
  if (prm->weights_format != 0 ||
      (prm->activation < kTfLiteActNone || prm->activation > kTfLiteActRelu6)) {
    set_msg(why, why_size, "fused activation %d / weights format %d not supported", prm->activation,
            prm->weights_format);
    return 0;
  }
  for (int k = 0; k < node->inputs->size; ++k) {
    int t = node->inputs->data[k];
    if ((t < 0 && k != 2) || (t >= 0 && (size_t)t >= context->tensors_size)) {
      set_msg(why, why_size, "tensor index out of range");
      return 0;
    }
  }
  int o = node->outputs->data[0];
  if (o < 0 || (size_t)o >= context->tensors_size) {
    set_msg(why, why_size, "tensor index out of range");
    return 0;
  }
  const TfLiteTensor* in = &context->tensors[node->inputs->data[0]];
  const TfLiteTensor* w = &context->tensors[node->inputs->data[1]];
  const TfLiteTensor* out = &context->tensors[o];
  int bt = node->inputs->size == 3 && node->inputs->data[2] >= 0
               ? (int)context->tensors[node->inputs->data[2]].type
               : -1;
  int is_float = in->type == kTfLiteFloat32 && w->type == kTfLiteFloat32 &&
                 out->type == kTfLiteFloat32 && (bt < 0 || bt == kTfLiteFloat32);
  int is_int8 = in->type == kTfLiteInt8 && w->type == kTfLiteInt8 && out->type == kTfLiteInt8 &&
                (bt < 0 || bt == kTfLiteInt32);
  if (!is_float && !is_int8) {
    set_msg(why, why_size,
            "types input %s / weights %s / output %s: only float32 "
            "and full-integer int8 run compressed",
            type_name(in->type), type_name(w->type), type_name(out->type));
    return 0;
  }
  return 1;
}

/* A FULLY_CONNECTED candidate's density limit (max_density): its build stops at more than
 * max_nnz non-zeros (plan_build returns 2) with their count in nnz, the count of its tiles if they
 * would not have fit in tile_entries (else 0) and, where the build decoded the dense weight to
 * count them, that weight in dense (dc_sparse_fc_build_max; the caller's). */
typedef struct {
  uint64_t max_nnz, nnz, tile_entries;
  void* dense;
} DensityLimit;

/* The part of a compressed plan FC and lookups share: allocation, the compact form built from the
 * packed tensor (`table`: dc_sparse_table_build, else dc_sparse_fc_build), and the fields every op
 * sets.  Returns 1 (*out set), 0 (form not suitable, reason in why) or -1 (why). */
static int plan_build(TfLiteContext* context, TfLiteNode* node, int node_index, int op, int wi,
                      int packed, int table, DensityLimit* lim, FcPlan** out, char* why,
                      size_t why_size) {
  const TfLiteTensor* w = &context->tensors[wi];
  const TfLiteTensor* pk = &context->tensors[packed];
  FcPlan* p = (FcPlan*)calloc(1, sizeof(FcPlan));
  if (!p) {
    set_msg(why, why_size, "HuffDecode(%s): out of memory", TENSOR_NAME(context, w));
    return -1;
  }
  dc_status ds = DC_OK;
  const uint8_t* bytes = (const uint8_t*)pk->data.raw_const;
  dc_sfc_status st =
      table ? dc_sparse_table_build_max(bytes, pk->bytes, lim ? lim->max_nnz : UINT64_MAX, &p->m,
                                        lim ? &lim->dense : NULL, &ds, why, why_size)
            : dc_sparse_fc_build_max(bytes, pk->bytes, lim ? lim->max_nnz : UINT64_MAX, &p->m,
                                     lim ? &lim->dense : NULL, &ds, why, why_size);
  if (st != DC_SFC_OK) {
    if (st == DC_SFC_TOO_DENSE && lim) lim->nnz = p->m.nnz, lim->tile_entries = p->m.tile_entries;
    free(p);
    if (st == DC_SFC_TOO_DENSE) return 2;
    if (st == DC_SFC_UNSUPPORTED) return 0;
    /* "decoding failed:" as the decoded route says it (the same file got two wordings) */
    set_msg(why, why_size, "HuffDecode(%s): %s%s", TENSOR_NAME(context, w),
            st == DC_SFC_DECODE ? "decoding failed: " : "",
            st == DC_SFC_DECODE ? dc_strerror(ds) : "out of memory");
    if (st == DC_SFC_DECODE) add_fix(why, why_size, packed_fix(ds, 0));
    return -1;
  }
  /* The packed bytes are read again only if the delegate is applied again; those of a model
   * opened by path are file pages: drop them from this process (dc_pages.h; they fault back). */
  if (p->m.packed_file < 0) {
    dc_release_file_pages(bytes, pk->bytes);
  } else if (p->m.packed_file) {
    dc_drop_file_pages(bytes, pk->bytes); /* the builder checked the mapping */
  }
  p->ctx = context;
  p->node = node_index;
  p->op = op;
  p->output = node->outputs->data[0];
  p->weight = wi;
  p->packed = packed;
  snprintf(p->name, sizeof p->name, "%s", TENSOR_NAME(context, w));
  *out = p;
  return 1;
}

/* Builds the compact form of a supported FC node.  Returns 1 done, 0 not
 * suitable (reason in why: run dense), 2 denser than lim allows (lim->nnz, lim->dense),
 * -1 invalid packed bytes (msg). */
static int fc_plan_make(TfLiteContext* context, TfLiteNode* node, int node_index, int packed,
                        DensityLimit* lim, FcPlan** out_plan, char* why, size_t why_size) {
  const TfLiteFullyConnectedParams* prm = (const TfLiteFullyConnectedParams*)node->builtin_data;
  int wi = node->inputs->data[1];
  const TfLiteTensor* in = &context->tensors[node->inputs->data[0]];
  const TfLiteTensor* w = &context->tensors[wi];
  const TfLiteTensor* pk = &context->tensors[packed];
  const TfLiteTensor* out = &context->tensors[node->outputs->data[0]];
  int bi = node->inputs->size == 3 ? node->inputs->data[2] : -1;
  dc_tensor_info info;
  if (!check_packed(context, pk, w, &info, why, why_size)) return -1;
  if (bi >= 0 && (!const_tensor(&context->tensors[bi]) ||
                  context->tensors[bi].bytes != (size_t)info.dims[0] * 4u)) {
    set_msg(why, why_size, "bias is not a constant of %llu elements",
            (unsigned long long)info.dims[0]);
    return 0;
  }
  FcPlan* p = NULL;
  int r = plan_build(context, node, node_index, kTfLiteBuiltinFullyConnected, wi, packed, 0, lim,
                     &p, why, why_size);
  if (r != 1) return r;
  p->input = node->inputs->data[0];
  p->bias = bi;
  p->keep_num_dims = prm->keep_num_dims ? 1 : 0;
  if (!fc_activation(p, prm->activation, out) ||
      (p->m.dtype == DC_DTYPE_INT8 && !fc_int8_params(p, in, w, out, why, why_size))) {
    fc_plan_free(p);
    return 0;
  }
  *out_plan = p;
  return 1;
}

/* Checks an EMBEDDING_LOOKUP / GATHER node (before anything is decoded):
 * 2-D float32 or int8 table, axis 0, int32 (or GATHER int64) indices, output
 * of the table's type (EMBEDDING_LOOKUP's hybrid int8 -> float stays dense).
 * Returns 1 if the compressed lookup can run it, else 0 + reason. */
static int lookup_supported(TfLiteContext* context, const TfLiteNode* node, int op, char* why,
                            size_t why_size) {
  if (!node->inputs || node->inputs->size != 2 || !node->outputs || node->outputs->size != 1) {
    set_msg(why, why_size, "unexpected %s node", op_name(op));
    return 0;
  }
  for (int k = 0; k < 3; ++k) {
    int t = k < 2 ? node->inputs->data[k] : node->outputs->data[0];
    if (t < 0 || (size_t)t >= context->tensors_size) {
      set_msg(why, why_size, "tensor index out of range");
      return 0;
    }
  }
  const TfLiteTensor* w = &context->tensors[node->inputs->data[table_slot(op)]];
  const TfLiteTensor* idx = &context->tensors[node->inputs->data[1 - table_slot(op)]];
  const TfLiteTensor* out = &context->tensors[node->outputs->data[0]];
  if (op == kTfLiteBuiltinGather) {
    const TfLiteGatherParams* prm = (const TfLiteGatherParams*)node->builtin_data;
    int rank = w->dims ? w->dims->size : 0;
    if (!prm || !(prm->axis == 0 || prm->axis == -rank) || prm->batch_dims != 0) {
      set_msg(why, why_size, "GATHER axis %d / batch_dims %d: only axis 0 runs compressed",
              prm ? prm->axis : -1, prm ? prm->batch_dims : -1);
      return 0;
    }
  }
  int idx_ok =
      idx->type == kTfLiteInt32 || (op == kTfLiteBuiltinGather && idx->type == kTfLiteInt64);
  if (!idx_ok || (w->type != kTfLiteFloat32 && w->type != kTfLiteInt8) || out->type != w->type) {
    set_msg(why, why_size,
            "types table %s / indices %s / output %s: float32 and int8 tables with int32/int64 "
            "indices run compressed",
            type_name(w->type), type_name(idx->type), type_name(out->type));
    return 0;
  }
  if (w->dims && w->dims->size != 2) {
    set_msg(why, why_size, "table is not 2-D");
    return 0;
  }
  return 1;
}

/* Builds the compact form of a supported lookup's table.  Returns 1 done, 0
 * not suitable (reason in why: run dense), 2 a value form denser than lim allows (lim->nnz,
 * lim->dense; lim NULL: no limit), -1 invalid packed bytes (why). */
static int lookup_plan_make(TfLiteContext* context, TfLiteNode* node, int node_index, int op,
                            int packed, DensityLimit* lim, FcPlan** out_plan, char* why,
                            size_t why_size) {
  int wi = node->inputs->data[table_slot(op)];
  const TfLiteTensor* w = &context->tensors[wi];
  const TfLiteTensor* pk = &context->tensors[packed];
  dc_tensor_info info;
  if (!check_packed(context, pk, w, &info, why, why_size)) return -1;
  FcPlan* p = NULL;
  int r = plan_build(context, node, node_index, op, wi, packed, 1, lim, &p, why, why_size);
  if (r != 1) return r;
  p->input = node->inputs->data[1 - table_slot(op)];
  p->bias = -1;
  *out_plan = p;
  return 1;
}

static int keep_fc(DcDelegate* d, FcPlan* p) {
  if (d->num_fcs == d->cap_fcs) {
    size_t cap = d->cap_fcs ? 2 * d->cap_fcs : 8;
    FcPlan** nf = (FcPlan**)realloc(d->fcs, cap * sizeof(FcPlan*));
    if (!nf) return 0;
    d->fcs = nf;
    d->cap_fcs = cap;
  }
  d->fcs[d->num_fcs++] = p;
  return 1;
}

static int is_huff(const TfLiteRegistration* reg) {
  return reg->builtin_code == kTfLiteBuiltinCustom && reg->custom_name &&
         strcmp(reg->custom_name, kOpName) == 0;
}

static void remember_error(DcDelegate* d, const TfLiteContext* context, const char* msg) {
  if (!d->error[0]) {
    memcpy(d->error, msg, sizeof d->error);
    d->error[sizeof d->error - 1] = '\0';
  }
  for (size_t i = 0; i < d->num_errors; ++i) {
    if (d->errors[i].ctx == context) return; /* its first error stands */
  }
  CtxError* e = (CtxError*)realloc(d->errors, (d->num_errors + 1) * sizeof(CtxError));
  if (!e) {
    d->errors_lost = 1;
    return;
  }
  d->errors = e;
  e += d->num_errors++;
  e->ctx = context;
  memcpy(e->msg, msg, sizeof e->msg);
  e->msg[sizeof e->msg - 1] = '\0';
}

/* A node of the execution plan as the delegate's Prepare sees it. */
typedef struct {
  int index;
  TfLiteNode* node;
  TfLiteRegistration* reg;
  int fc_packed; /* compressed mode: packed tensor of a candidate FC, or -1 */
  int skip;      /* HuffDecode node whose output feeds only a compressed FC */
  char* why;     /* compressed mode: why this FC / lookup is no candidate, known from the packed
                  * header alone (dc_sparse_fc_check; its weights are decoded with the others) */
} PlanNode;

static void plan_nodes_free(PlanNode* pn, int n) {
  for (int k = 0; pn && k < n; ++k) free(pn[k].why);
  free(pn);
}

/* Compressed mode: marks FC nodes whose weights come straight from a
 * HuffDecode node and feed nothing else (candidates), and those HuffDecode
 * nodes (skip: not decoded unless the FC ends up dense). */
static int find_candidates(TfLiteContext* context, DcDelegate* d, PlanNode* pn, int n) {
  size_t nt = context->tensors_size;
  int* uses = (int*)calloc(nt ? nt : 1, sizeof(int));
  int* huff_at = (int*)calloc(nt ? nt : 1, sizeof(int)); /* plan pos + 1 */
  if (!uses || !huff_at) {
    free(uses);
    free(huff_at);
    return 0;
  }
  for (int k = 0; k < n; ++k) {
    const TfLiteIntArray* ins = pn[k].node->inputs;
    for (int i = 0; ins && i < ins->size; ++i) {
      if (ins->data[i] >= 0 && (size_t)ins->data[i] < nt) uses[ins->data[i]]++;
    }
    const TfLiteIntArray* outs = pn[k].node->outputs;
    if (is_huff(pn[k].reg) && outs && outs->size == 1 && outs->data[0] >= 0 &&
        (size_t)outs->data[0] < nt) {
      huff_at[outs->data[0]] = k + 1;
    }
  }
  for (int k = 0; k < n; ++k) {
    int code = pn[k].reg->builtin_code;
    if (code != kTfLiteBuiltinFullyConnected && code != kTfLiteBuiltinGather &&
        code != kTfLiteBuiltinEmbeddingLookup) {
      continue;
    }
    FcPlan* p = find_fc(d, context, pn[k].index);
    int slot = table_slot(code);
    int w =
        p ? p->weight
          : (pn[k].node->inputs && pn[k].node->inputs->size >= 2 ? pn[k].node->inputs->data[slot]
                                                                 : -1);
    if (w < 0 || (size_t)w >= nt || !huff_at[w] || (!p && uses[w] != 1)) continue;
    PlanNode* h = &pn[huff_at[w] - 1];
    if (!h->node->inputs || h->node->inputs->size != 1) continue;
    const int pk = h->node->inputs->data[0];
    char why[256] = "";
    if (!p && pk >= 0 && (size_t)pk < nt && context->tensors[pk].data.raw_const &&
        dc_sparse_fc_check((const uint8_t*)context->tensors[pk].data.raw_const,
                           context->tensors[pk].bytes, code != kTfLiteBuiltinFullyConnected, why,
                           sizeof why) == DC_SFC_UNSUPPORTED) {
      /* decoded with the other tensors (in parallel, overlapped with the runtime's packing),
       * not alone after them; report_decoded gives the reason */
      const size_t len = strlen(why) + 1;
      pn[k].why = (char*)malloc(len);
      if (pn[k].why) memcpy(pn[k].why, why, len);
      continue;
    }
    pn[k].fc_packed = pk;
    h->skip = 1;
  }
  free(uses);
  free(huff_at);
  return 1;
}

static PlanNode* huff_feeding(PlanNode* pn, int n, int packed) {
  for (int k = 0; k < n; ++k) {
    if (pn[k].skip && pn[k].node->inputs->data[0] == packed) return &pn[k];
  }
  return NULL;
}

/* Decides and builds one candidate (FC or lookup).  1 / 0 / 2 / -1 as fc_plan_make. */
static int plan_make(TfLiteContext* context, PlanNode* c, DensityLimit* lim, FcPlan** p, char* why,
                     size_t why_size) {
  int op = c->reg->builtin_code;
  if (op == kTfLiteBuiltinFullyConnected) {
    if (!fc_supported(context, c->node, why, why_size)) return 0;
    return fc_plan_make(context, c->node, c->index, c->fc_packed, lim, p, why, why_size);
  }
  if (!lookup_supported(context, c->node, op, why, why_size)) return 0;
  return lookup_plan_make(context, c->node, c->index, op, c->fc_packed, lim, p, why, why_size);
}

/* The default max_density (option not given), by weight type and the form the layer runs in
 * (dc_sparse_fc_form): the densest FULLY_CONNECTED layer that runs compressed; denser ones stay
 * decoded (docs/android.md; why each value: docs/android_design_notes.md "How the default
 * max_density was chosen"; benchmarks/bench_density.py, docs/results.md "Compressed FC layers
 * by density": 1024^2 and 4096^2, 15 values, batch 1 and 8, AVX-512 test machine, against
 * XNNPACK's dense kernel).
 *  - float32, row form (ARM and other CPUs without AVX-512 or AVX2; layers of > 32 coded values, §12
 *    and §18 planes or 1..3 output units; tiles that would not fit or found no memory): faster than the
 *    dense kernel up to about 30 %
 *    (0.73-0.95x at batch 1 and 1.05-1.07x at batch 8 at 30 %, 0.89-1.47x at 40 %), and up to
 *    8x slower on unpruned layers.
 *  - float32, tile form (AVX-512, <= 32 values): 40 %, the densest density measured (5, 10, 20,
 *    30, 40, 50, 70, 100 %) at which it was faster at batch 1 and 8 in both sizes in every run
 *    (2026-12-04 23:15 run, at 40 %: 0.90x / 0.69x on 1024^2, 0.31x / 0.64x on 4096^2; at 50 %
 *    1024^2 batch 1 took 1.04x, as in the 23:01 run; the three runs of 2026-12-01 crossed at
 *    50 %, e.g. 14:10: 0.66x / 0.84x and 0.39x / 0.61x there, and the default was 50 % until
 *    2026-12-04) and its memory is 0.28x of the dense weight's (at most 0.50x at 100 %: it is
 *    always smaller).
 *  - float32 with the AVX2 kernels (x86-64 CPUs without AVX-512, or dc_sparse_fc_use_simd(4);
 *    since 2026-12-05): float32 layers keep the row form there, on the scalar row kernel
 *    (dc_sparse_fc.c tiles_hold: its AVX2 float tile kernels did not beat it where it pays), and
 *    the same rule as the tile form's on bench_density's "avx2" variant gives 5 %: at 10 % the
 *    cache-resident 1024^2 layer took 1.06x of XNNPACK's time at batch 1 (1.05x and 1.03x in two
 *    earlier runs; 0.41x at batch 8; 4096^2: 0.39x / 0.35x), at 20 % 2.0x; at 5 % 0.56x / 0.22x
 *    and 0.15x / 0.15x (2026-12-05 08:48 run, docs/results.md).  Large layers pay up to ~30 %
 *    (4096^2: 0.65x / 0.62x at 20 %, 0.88x / 0.86x at 30 %): pass max_density.
 *  - int8 (rows, or the tile form on AVX-512 and AVX2 CPUs since 2026-12-04 / 05): chosen for memory, up to
 *    25 %, where the compact form still takes ~0.75x of the int8 weights (rows: 3 bytes per
 *    non-zero; tiles: 0.67x at 20 %, 0.90x at 30 %).  For time: XNNPACK's int8 kernel is faster
 *    than the rows at nearly every density (1024^2: 3.5x at 10 %); the tiles are faster at 5 %
 *    (0.53-0.85x), about even at 10 % (0.72-1.17x), mostly slower at 20 % (0.94-1.74x).
 *  - float32 packed as float planes (FORMAT.md §12, §18: pruned but unclustered weights, more than
 *    255 distinct non-zero values), which run on the value form (dc_sparse_fc.h: the float32
 *    weight per non-zero, 6 bytes, the scalar kernels on every CPU; since 2026-12-07): 10 %, the
 *    densest density measured (5, 10, 15, 20, 30, 40 %) at which it was faster than XNNPACK at
 *    batch 1 and 8 on 784x300 and 1024x1024 layers (benchmarks/bench_values.py,
 *    docs/results/values_density.json, docs/android_design_notes.md "Unclustered layers: the
 *    value form"), at 0.15x of the dense memory; at 15 % the 1024x1024 layer took 1.12x at
 *    batch 1, at 20 % 1.0-1.8x, at 30 % 1.4-2.1x.  Taken from the header's layout, before the
 *    build, so that a layer above it is decoded once (the build hands its decoded weight over);
 *    float planes of
 *    <= 255 values (clustered, rare: their encoder picks a codebook) get the rows of codes and
 *    their limit once that weight shows it (settle_candidate: such a layer between the two
 *    limits is decoded twice).
 * An explicit max_density applies to every form. */
#define DC_DEFAULT_MAX_DENSITY_FLOAT32_VALUES 10
/* EMBEDDING_LOOKUP / GATHER tables run compressed at any density on the rows of codes (3 bytes per
 * kept element + 4 per row: less than the dense table's 4 per element even when full); on the
 * value form (float planes of more than 255 distinct kept values, unclustered: 6 bytes per kept
 * element + 4 per row, dc_sparse_table_build_max) up to this percent of kept elements (all but
 * +0.0: -0.0 is kept), where the form takes at most 0.9x of the dense table plus its row offsets
 * (the form pays below ~66 %); the lookup copies the same rows either way, so memory alone
 * decides.  60, not less: a table pruned by tfmot to 90 % keeps ~55 % (its mask product leaves
 * -0.0 for half the pruned elements; a lookup must give them back), ~0.85x of the dense table.
 * Not changed by max_density, an option of FULLY_CONNECTED layers. */
#define DC_TABLE_VALUES_MAX_DENSITY 60
#define DC_DEFAULT_MAX_DENSITY_FLOAT32 30
#define DC_DEFAULT_MAX_DENSITY_FLOAT32_TILES 40
#define DC_DEFAULT_MAX_DENSITY_FLOAT32_AVX2 5
#define DC_DEFAULT_MAX_DENSITY_INT8 25

/* 1 while the AVX2 kernels are in use (x86-64 without AVX-512, or dc_sparse_fc_use_simd(4)). */
static int avx2_kernels(void) {
  return strcmp(dc_sparse_fc_kernel_name(), "avx2") == 0;
}

/* 1 for a float32 weight packed as float planes (§12, §18: no codebook; the value form when it
 * holds more than 255 distinct non-zero values). */
static int float_planes(const dc_tensor_info* info) {
  return info->dtype == DC_DTYPE_FLOAT32 &&
         (info->layout == DC_LAYOUT_FLOAT_PLANES || info->layout == DC_LAYOUT_SPARSE_PLANES);
}

/* values: the layer is taken to run on the value form (float_planes, until its decode shows <= 255
 * values). */
static int max_density_for(const DcDelegate* d, int dtype, dc_sfc_form form, int values) {
  if (d->max_density) return d->max_density;
  if (dtype == DC_DTYPE_INT8) return DC_DEFAULT_MAX_DENSITY_INT8;
  if (values) return DC_DEFAULT_MAX_DENSITY_FLOAT32_VALUES;
  if (form == DC_SFC_FORM_TILES) return DC_DEFAULT_MAX_DENSITY_FLOAT32_TILES;
  return avx2_kernels() ? DC_DEFAULT_MAX_DENSITY_FLOAT32_AVX2 : DC_DEFAULT_MAX_DENSITY_FLOAT32;
}

/* Why a layer dc_sparse_fc_form said TILES got the rows (its m.tile_entries, dc_sparse_fc.h). */
typedef enum { ROWS_SAID = 0, ROWS_TILES_DO_NOT_FIT, ROWS_NO_MEMORY_FOR_TILES } RowsWhy;

/* Which default max_density_for applied, for the report ("... (default max_density for %s)"). */
static const char* default_density_name(int dtype, dc_sfc_form form, RowsWhy rows_why, int values) {
  if (dtype == DC_DTYPE_INT8) return "int8 weights";
  if (values) return "unclustered float32 weights, on the value form";
  if (form == DC_SFC_FORM_TILES) return "float32 weights on the tile form";
  if (rows_why == ROWS_TILES_DO_NOT_FIT)
    return "float32 weights on the row form: its tiles did not fit";
  if (rows_why == ROWS_NO_MEMORY_FOR_TILES)
    return "float32 weights on the row form: out of memory for its tiles";
  if (avx2_kernels()) return "float32 weights on the row form with the AVX2 kernels";
  return "float32 weights on the row form";
}

/* The most non-zeros a layer of n weights may hold at a density limit of `limit` percent: the
 * limit's count rounded up, so a layer pruned to that density by a pruner that rounds its kept
 * count up (dc_keras.prune keeps 3277 of a 128x256 kernel at 90 % sparsity: 10.0006 %) or to the
 * nearest (tfmot 0.8.1: the same 3277) counts as at the limit, not over it. */
static uint64_t max_nnz_at(int limit, uint64_t n) {
  return ((uint64_t)limit * n + 99) / 100;
}

/* A density above a limit in percent (nnz > max_nnz_at(limit, elements)) as the report prints it: one
 * decimal, or as many more (up to 9) as it takes to print a number above the limit ("30.04",
 * not "30.0" > 30 %, which reads as if it were not). */
static void density_text(char* buf, size_t size, uint64_t nnz, uint64_t elements, int limit) {
  const double pct = 100.0 * (double)nnz / (double)elements;
  int decimals = 1;
  snprintf(buf, size, "%.*f", decimals, pct);
  while (decimals < 9 && strtod(buf, NULL) <= (double)limit)
    snprintf(buf, size, "%.*f", ++decimals, pct);
}

/* Runs one candidate compressed, or falls back to decoding its weights. */
static void settle_candidate(TfLiteContext* context, DcDelegate* d, PlanNode* fc, PlanNode* huff) {
  char why[512] = "";
  FcPlan* p = find_fc(d, context, fc->index);
  int r = p ? 1 : 0;
  const int slot = table_slot(fc->reg->builtin_code);
  void* dense = NULL; /* a refused FC's weight, decoded by its build to count the non-zeros */
  if (!p) {
    /* FC: its density limit from the header (dtype, shape; checked again by the build) */
    DensityLimit lim = {UINT64_MAX, 0, 0, NULL}, *lp = NULL;
    const TfLiteTensor* pk = &context->tensors[fc->fc_packed];
    dc_tensor_info info;
    int limit = 100;
    RowsWhy rows_why = ROWS_SAID;
    dc_sfc_form form = DC_SFC_FORM_ROWS;
    int values = 0;        /* float planes: the value form's default (max_density_for) */
    int lookup_values = 0; /* a lookup table of float planes: DC_TABLE_VALUES_MAX_DENSITY */
    if (fc->reg->builtin_code == kTfLiteBuiltinFullyConnected &&
        dc_peek((const uint8_t*)pk->data.raw_const, pk->bytes, &info) == DC_OK && info.rank == 2) {
      form = dc_sparse_fc_form((const uint8_t*)pk->data.raw_const, pk->bytes);
      values = float_planes(&info);
      limit = max_density_for(d, (int)info.dtype, form, values);
      lim.max_nnz = max_nnz_at(limit, info.dims[0] * info.dims[1]);
      lp = &lim;
    } else if (fc->reg->builtin_code != kTfLiteBuiltinFullyConnected &&
               dc_peek((const uint8_t*)pk->data.raw_const, pk->bytes, &info) == DC_OK &&
               info.rank == 2 && float_planes(&info)) {
      /* a lookup table's value form (DC_TABLE_VALUES_MAX_DENSITY; its rows of codes: no limit) */
      lookup_values = 1;
      limit = DC_TABLE_VALUES_MAX_DENSITY;
      lim.max_nnz = max_nnz_at(limit, info.dims[0] * info.dims[1]);
      lp = &lim;
    }
    r = plan_make(context, fc, lp, &p, why, sizeof why);
    if (r == 2 && values && !d->max_density && lim.dense &&
        dc_sparse_fc_count_values((const float*)lim.dense, info.dims[0] * info.dims[1]) <=
            DC_SFC_MAX_VALUES) {
      /* refused at the value form's default, but float planes of <= 255 values (clustered: rare,
       * their encoder picks a codebook) take the rows of codes, under the rows' default: known
       * only from the decoded weight the build handed over; built again from the packed bytes */
      values = 0;
      limit = max_density_for(d, (int)info.dtype, form, 0);
      lim.max_nnz = max_nnz_at(limit, info.dims[0] * info.dims[1]);
      if (lim.nnz <= lim.max_nnz) {
        free(lim.dense);
        lim.dense = NULL;
        r = plan_make(context, fc, lp, &p, why, sizeof why);
      }
    }
    if (lp && !d->max_density && form == DC_SFC_FORM_TILES &&
        ((r == 1 && !p->m.tile_e) || (r == 2 && lim.tile_entries))) {
      /* on the tile form's default, but the rows: its tiles did not fit (dc_sparse_fc_form; a
       * refused layer's would not have: their count) or there was no memory for them (built:
       * tile_entries 0), known only now; the rows' default applies */
      const int rows_limit = max_density_for(d, (int)info.dtype, DC_SFC_FORM_ROWS, 0);
      const uint64_t nnz = r == 1 ? p->m.nnz : lim.nnz;
      if (nnz > max_nnz_at(rows_limit, info.dims[0] * info.dims[1])) {
        rows_why = r == 2 || p->m.tile_entries ? ROWS_TILES_DO_NOT_FIT : ROWS_NO_MEMORY_FOR_TILES;
        lim.nnz = nnz;
        limit = rows_limit;
        form = DC_SFC_FORM_ROWS;
        if (r == 1) fc_plan_free(p);
        p = NULL;
        r = 2;
      }
    }
    if (r == 2) {
      char pct[32];
      density_text(pct, sizeof pct, lim.nnz, info.dims[0] * info.dims[1], limit);
      if (lookup_values) {
        set_msg(why, sizeof why,
                "density %s %% > %d %% (the limit of unclustered float32 lookup tables, on the "
                "value form: 6 bytes per kept element); decoded",
                pct, limit);
      } else if (d->max_density) {
        set_msg(why, sizeof why, "density %s %% > max_density %d %%; decoded", pct, limit);
      } else {
        set_msg(why, sizeof why, "density %s %% > %d %% (default max_density for %s); decoded", pct,
                limit, default_density_name((int)info.dtype, form, rows_why, values));
      }
      dense = lim.dense;
      r = 0;
    }
    if (r == 1 && !keep_fc(d, p)) {
      fc_plan_free(p);
      r = -1;
      set_msg(why, sizeof why, "dc_keras compressed FC: out of memory");
    }
    if (r == 1) {
      fc->node->inputs->data[slot] = p->packed; /* the dense weight loses its consumer */
      char* field = report_field(p->name);
      if (field) {
        report_line(d, "compressed\t%s\t%ux%u\t%s\t%llu\t%llu\t%s\t%s\n", field,
                    (unsigned)p->m.rows, (unsigned)p->m.cols,
                    p->m.dtype == DC_DTYPE_FLOAT32 ? "float32" : "int8",
                    (unsigned long long)p->m.nnz, (unsigned long long)dc_sparse_fc_bytes(&p->m),
                    op_name(p->op), form_name(&p->m));
        free(field);
      }
    }
  }
  if (r == 1) {
    fc->skip = 2; /* claimed: runs compressed */
    return;
  }
  if (r < 0) {
    remember_error(d, context, why);
    return;
  }
  char msg[512];
  report_dense(d, TENSOR_NAME(context, &context->tensors[fc->node->inputs->data[slot]]), why,
               op_name(fc->reg->builtin_code));
  huff->skip = 0;
  if (!delegate_decode_node(context, d, huff->node, dense, msg, sizeof msg)) {
    remember_error(d, context, msg);
  }
}

/* Records, for every decoded tensor, its consumers in the original graph and
 * whether they are all filter inputs of FC / conv nodes (release-eligible). */
static void note_consumers(const TfLiteContext* context, DcDelegate* d, const PlanNode* pn, int n) {
  for (size_t i = 0; i < d->num_dec; ++i) {
    Decoded* r = &d->dec[i];
    if (r->ctx != context || r->consumers) continue; /* the graph does not change */
    int count = 0, ok = 1;
    for (int k = 0; k < n; ++k) {
      const TfLiteIntArray* ins = pn[k].node->inputs;
      for (int j = 0; ins && j < ins->size; ++j) {
        if (ins->data[j] != r->tensor) continue;
        int code = pn[k].reg->builtin_code;
        ok &= j == 1 && (code == kTfLiteBuiltinFullyConnected || code == 3 || code == 4);
        ++count;
      }
    }
    r->consumers = (int*)malloc(sizeof(int) * (size_t)(count ? count : 1));
    if (!r->consumers) continue;
    r->num_consumers = 0;
    for (int k = 0; k < n; ++k) {
      const TfLiteIntArray* ins = pn[k].node->inputs;
      for (int j = 0; ins && j < ins->size; ++j) {
        if (ins->data[j] == r->tensor) r->consumers[r->num_consumers++] = pn[k].index;
      }
    }
    r->eligible = ok && count > 0;
  }
}

static int in_list(const int* a, int n, int v) {
  for (int i = 0; i < n; ++i) {
    if (a[i] == v) return 1;
  }
  return 0;
}

/* Original node indices that XNNPACK delegate kernels in the current plan took. */
static int* xnnpack_taken(TfLiteContext* context, const DcDelegate* d, int* num) {
  TfLiteIntArray* plan = NULL;
  int* taken = NULL;
  int cap = 0;
  *num = 0;
  if (!d->get_plan || !d->get_node || d->get_plan(context, &plan) != kTfLiteOk || !plan) {
    return NULL;
  }
  for (int k = 0; k < plan->size; ++k) {
    TfLiteNode* node = NULL;
    TfLiteRegistration* reg = NULL;
    if (d->get_node(context, plan->data[k], &node, &reg) != kTfLiteOk || !node || !reg ||
        reg->builtin_code != kBuiltinDelegate || !reg->custom_name ||
        strcmp(reg->custom_name, "TfLiteXNNPackDelegate") != 0 || !node->builtin_data) {
      continue;
    }
    const TfLiteIntArray* nodes =
        ((const TfLiteDelegateParams*)node->builtin_data)->nodes_to_replace;
    for (int i = 0; nodes && i < nodes->size; ++i) {
      if (*num == cap) {
        cap = cap ? 2 * cap : 64;
        int* nt = (int*)realloc(taken, sizeof(int) * (size_t)cap);
        if (!nt) {
          free(taken);
          *num = 0;
          return NULL;
        }
        taken = nt;
      }
      taken[(*num)++] = nodes->data[i];
    }
  }
  return taken;
}

/* Frees decoded weights whose consumers the XNNPACK delegate has all taken
 * (it packed its own copy when it created its runtime).  The memory goes back on a helper
 * thread (Release), joined by the next invoke at the latest. */
static void release_packed_copies(TfLiteContext* context, DcDelegate* d) {
  size_t pending = 0;
  for (size_t i = 0; i < d->num_dec; ++i) {
    pending += d->dec[i].ctx == context && d->dec[i].block && d->dec[i].eligible;
  }
  if (d->keep_decoded || !pending) return;
  join_release(d);
  Release* rel = release_new(pending);
  int num_taken = 0;
  int* taken = xnnpack_taken(context, d, &num_taken);
  for (size_t i = 0; taken && i < d->num_dec; ++i) {
    Decoded* r = &d->dec[i];
    if (r->ctx != context || !r->block || !r->eligible) continue;
    int all = 1;
    for (int c = 0; c < r->num_consumers && all; ++c) {
      all = in_list(taken, num_taken, r->consumers[c]);
    }
    if (!all) continue;
    drop_block(d, r, rel);
    /* bytes 0: the runtime's "input lacks data" check skips empty tensors */
    context->tensors[r->tensor].data.data = NULL;
    context->tensors[r->tensor].bytes = 0;
  }
  free(taken);
  if (rel && rel->num_drops + rel->num_dead + rel->num_blocks == 0) {
    release_free(rel);
  } else if (rel) {
    rel->task = dc_task_start(release_run, rel); /* NULL: done in this thread */
    pthread_mutex_lock(&d->release_lock);
    d->release = rel; /* joined (above) before: nothing to overwrite */
    pthread_mutex_unlock(&d->release_lock);
  }
}

/* The overlapped decode of decode_lazily: jobs in the order their first consumers run. */
typedef struct LazyFill {
  dc_fill* fill; /* NULL: done (no helper thread started) */
  const TfLiteContext* ctx;
  size_t num;
  dc_decode_job* jobs;
  size_t* span;
  int* filled;
  int* tensor; /* the jobs' output tensors */
} LazyFill;

static void lazy_free(LazyFill* f) {
  if (!f) return;
  free(f->jobs);
  free(f->span);
  free(f->filled);
  free(f->tensor);
  free(f);
}

/* Waits for decode_lazily's helpers and remembers its errors (`report` 0: the delegate is being
 * destroyed; its subgraphs may be gone). */
static void join_lazy(DcDelegate* d, int report) {
  LazyFill* f = d->lazy;
  char msg[512];
  if (!f) return;
  d->lazy = NULL;
  dc_arena_fill_join(f->fill);
  for (size_t k = 0; report && k < f->num; ++k) {
    const char* name = TENSOR_NAME(f->ctx, &f->ctx->tensors[f->tensor[k]]);
    if (!f->filled[k]) {
      set_msg(msg, sizeof msg,
              "HuffDecode(%s): could not write the decoded tensor's pages (out of memory?); "
              "the delegate option decode_async=0 decodes without userfaultfd",
              name);
      remember_error(d, f->ctx, msg);
    } else if (f->jobs[k].status != DC_OK) {
      set_msg(msg, sizeof msg, "HuffDecode(%s): decoding failed: %s", name,
              dc_strerror(f->jobs[k].status));
      add_fix(msg, sizeof msg, packed_fix(f->jobs[k].status, 0));
      remember_error(d, f->ctx, msg);
    }
  }
  lazy_free(f);
}

/* 1 if a fill is pending for a graph other than `context` (its errors must be kept when
 * `context`'s graph goes, or fails to take the delegate). */
static int lazy_of_other(const DcDelegate* d, const TfLiteContext* context) {
  return d->lazy && d->lazy->ctx != context;
}

/* Plan position of each tensor's first consumer (indices of node_of[0..m)'s outputs), in *first;
 * 0 when out of memory. */
static int first_uses(const TfLiteContext* context, const PlanNode* pn, int n, const int* node_of,
                      size_t m, int* first) {
  int* job_of = (int*)malloc(sizeof(int) * (context->tensors_size ? context->tensors_size : 1));
  if (!job_of) return 0;
  for (size_t t = 0; t < context->tensors_size; ++t) job_of[t] = -1;
  for (size_t j = 0; j < m; ++j) {
    job_of[pn[node_of[j]].node->outputs->data[0]] = (int)j; /* checked by delegate_check_node */
    first[j] = n;
  }
  for (int k = 0; k < n; ++k) {
    const TfLiteIntArray* ins = pn[k].node->inputs;
    for (int i = 0; ins && i < ins->size; ++i) {
      int t = ins->data[i];
      if (t >= 0 && (size_t)t < context->tensors_size && job_of[t] >= 0 && first[job_of[t]] > k) {
        first[job_of[t]] = k;
      }
    }
  }
  free(job_of);
  return 1;
}

/* Decoded route overlapped with the runtime's next steps (dc_arena_new_lazy).  The tensors of
 * node_of[0..m) (sizes: their byte sizes), in the order their first consumers run: the caller
 * decodes the first ones in place -- up to 30 % of the bytes, divided by the number of helpers --
 * while helper threads (one per CPU but one) decode the others, in that order, into a lazy arena
 * whose addresses they get at once; the delegate's Prepare returns and the XNNPACK delegate packs
 * the caller's tensors, then each of the others as soon as its pages appear (a reader of a page
 * not decoded yet waits for it).  So the helpers start ahead of the packing, and the last-used
 * tensors (MobileNetV2's classifier, 37 % of the bytes) are decoded while the first layers are
 * packed, not in the load's critical path.  MobileNetV2 on 2 CPUs (one helper, ~7 ms of it,
 * ~6.3 ms of packing): the caller used to decode the last-used 40 % in place (~2.5 ms) while the
 * helper decoded the rest, then idled ~2.3 ms; a second helper on the classifier instead made
 * three threads share two cores and slowed the packing.  Tensors of 2 MiB or more start on a
 * 2 MiB boundary (dc_arena_fill moves their pages in a huge page at a time, where the kernel
 * can).  join_lazy (the kernel's Prepare; its free, the delegate's destruction) waits and reports
 * errors.  The helpers read the packed bytes in the model: the runtime frees the kernel before
 * the model.  Returns the number of nodes left to decode in place, moved to the front of
 * node_of / sizes: m (nothing done) where that does not pay or is not available (one CPU, few or
 * one dominant tensor, no userfaultfd, option decode_async=0 or environment
 * DC_KERAS_DECODE_ASYNC=0). */
static size_t decode_lazily(TfLiteContext* context, DcDelegate* d, const PlanNode* pn, int n,
                            int* node_of, size_t* sizes, size_t m) {
  const int threads = dc_decode_threads(d->decode_threads), helpers = threads - 1;
  const size_t page = dc_page_size();
  size_t total = 0, largest = 0, own = 0, mine = 0, s = 0, off = 0;
  char msg[512];
  const char* env = getenv("DC_KERAS_DECODE_ASYNC");
  if (!d->decode_async || (env && strcmp(env, "0") == 0) || threads < 2 || m < 4 || d->lazy) {
    return m;
  }
  for (size_t j = 0; j < m; ++j) {
    size_t span = (sizes[j] + page - 1) / page * page;
    total += span;
    largest = span > largest ? span : largest;
  }
  if (total < ((size_t)1 << 20) || 2 * largest > total) return m;
  LazyFill* f = (LazyFill*)calloc(1, sizeof *f);
  int* first = (int*)malloc(sizeof(int) * m);
  size_t* order = (size_t*)malloc(sizeof(size_t) * m);
  size_t* at = (size_t*)malloc(sizeof(size_t) * m); /* arena offset of each tensor */
  if (f) {
    f->jobs = (dc_decode_job*)calloc(m, sizeof(dc_decode_job));
    f->span = (size_t*)calloc(m, sizeof(size_t));
    f->filled = (int*)calloc(m, sizeof(int));
    f->tensor = (int*)calloc(m, sizeof(int));
  }
  if (!f || !first || !order || !at || !f->jobs || !f->span || !f->filled || !f->tensor ||
      !first_uses(context, pn, n, node_of, m, first)) {
    lazy_free(f);
    free(first);
    free(order);
    free(at);
    return m;
  }
  for (size_t j = 0; j < m; ++j) { /* insertion sort by first use (stable) */
    size_t i = j;
    for (; i > 0 && first[order[i - 1]] > first[j]; --i) order[i] = order[i - 1];
    order[i] = j;
  }
  for (mine = 0; mine < m; ++mine) { /* the caller's: the first used, up to 30 % / helpers */
    size_t span = (sizes[order[mine]] + page - 1) / page * page;
    if ((uint64_t)100 * (own + span) * (uint64_t)helpers > (uint64_t)30 * total) break;
    own += span;
  }
  for (size_t i = 0; i + mine < m; ++i) { /* the helpers' tensors' places */
    const size_t j = order[mine + i], span = (sizes[j] + page - 1) / page * page;
    if (span >= kHugePage) off = (off + kHugePage - 1) / kHugePage * kHugePage; /* moves whole */
    at[i] = off;
    off += span;
  }
  dc_arena* mem = mine < m ? dc_arena_new_lazy(off) : NULL;
  int arena = mem ? delegate_keep_arena(d, mem, 0) : -1;
  uint8_t* base = arena >= 0 ? dc_arena_base(mem) : NULL;
  for (size_t i = 0; base && i + mine < m; ++i) {
    const size_t j = order[mine + i];
    TfLiteNode* node = pn[node_of[j]].node;
    void* block = NULL;
    int r = delegate_stage_node(context, d, node, base + at[i], 0, NULL, &f->jobs[s], &block, msg,
                                sizeof msg);
    if (r == 0) remember_error(d, context, msg);
    if (r != 1) continue;
    f->span[s] = (sizes[j] + page - 1) / page * page;
    f->tensor[s] = node->outputs->data[0];
    /* status DC_OK: the tensor's address and constness now, its bytes from the fill */
    delegate_finish_node(context, d, node, &f->jobs[s], block, arena, msg, sizeof msg);
    ++s;
  }
  if (base) { /* the caller's: to the front of node_of / sizes */
    for (size_t i = 0; i < mine; ++i) {
      first[i] = node_of[order[i]];
      at[i] = sizes[order[i]];
    }
    for (size_t i = 0; i < mine; ++i) {
      node_of[i] = first[i];
      sizes[i] = at[i];
    }
  }
  free(first);
  free(order);
  free(at);
  if (!base) { /* no lazy arena: all in place */
    lazy_free(f);
    return m;
  }
  d->arenas[arena].live = s;
  d->async_tensors += s;
  f->ctx = context;
  f->num = s;
  f->fill = dc_arena_fill(mem, f->jobs, f->span, f->filled, s, helpers);
  d->lazy = f;
  if (s == 0) {
    join_lazy(d, 0);
    dc_arena_free(d->arenas[arena].mem);
    d->arenas[arena].mem = NULL;
  }
  return mine;
}

/* Decoded route: decodes every HuffDecode node not left to the compressed
 * route, all tensors at once on d->decode_threads threads (0: all CPUs).
 * Decode errors are remembered (reported by the kernel's Prepare); returns
 * 0 only when out of memory for the job list. */
static int decode_nodes(TfLiteContext* context, DcDelegate* d, const PlanNode* pn, int n) {
  char msg[512];
  size_t cnt = (size_t)(n > 0 ? n : 1), m = 0, total = 0, kept = 0;
  dc_decode_job* jobs = (dc_decode_job*)calloc(cnt, sizeof(dc_decode_job));
  void** blocks = (void**)calloc(cnt, sizeof(void*));
  int* node_of = (int*)calloc(cnt, sizeof(int));
  size_t* offset = (size_t*)calloc(cnt, sizeof(size_t));
  size_t* sizes = (size_t*)calloc(cnt, sizeof(size_t));
  if (!jobs || !blocks || !node_of || !offset || !sizes) {
    free(jobs);
    free(blocks);
    free(node_of);
    free(offset);
    free(sizes);
    return 0;
  }
  for (int k = 0; k < n; ++k) { /* the nodes to decode */
    size_t bytes = 0;
    if (!is_huff(pn[k].reg) || pn[k].skip) continue;
    int r = delegate_check_node(context, d, pn[k].node, &bytes, msg, sizeof msg);
    if (r == 0) remember_error(d, context, msg);
    if (r != 1) continue;
    sizes[m] = bytes;
    node_of[m++] = k;
  }
  const size_t all = m;
  m = decode_lazily(context, d, pn, n, node_of, sizes, m); /* those left to decode here */
  for (size_t j = 0; j < m; ++j) {                         /* their place in one arena */
    offset[j] = total;
    total += (sizes[j] + kDecodedAlignment - 1) & ~(size_t)(kDecodedAlignment - 1);
  }
  /* 2 MiB or more: one mapping with huge pages (see dc_arena_new), else a block each */
  dc_arena* mem = total >= ((size_t)2 << 20) ? dc_arena_new(total) : NULL;
  int arena = mem ? delegate_keep_arena(d, mem, 0) : -1;
  uint8_t* base = arena >= 0 ? dc_arena_base(mem) : NULL;
  size_t staged = 0;
  for (size_t j = 0; j < m; ++j) {
    int r = delegate_stage_node(context, d, pn[node_of[j]].node, base ? base + offset[j] : NULL, 1,
                                NULL, &jobs[staged], &blocks[staged], msg, sizeof msg);
    if (r == 0) remember_error(d, context, msg);
    if (r == 1) node_of[staged++] = node_of[j];
  }
  /* a helper runs decode_lazily's fill: this thread decodes the rest alone */
  dc_decode_many(jobs, staged, m < all ? 1 : d->decode_threads);
  for (size_t j = 0; j < staged; ++j) {
    if (!delegate_finish_node(context, d, pn[node_of[j]].node, &jobs[j], blocks[j],
                              base ? arena : -1, msg, sizeof msg)) {
      remember_error(d, context, msg);
    } else {
      kept += base != NULL;
    }
  }
  if (arena >= 0) d->arenas[arena].live = kept;
  if (arena >= 0 && kept == 0) {
    dc_arena_free(d->arenas[arena].mem);
    d->arenas[arena].mem = NULL;
  }
  free(jobs);
  free(blocks);
  free(node_of);
  free(offset);
  free(sizes);
  return 1;
}

/* ---- compressed mode: the route of every other packed weight --------- */

/* Name of a node's operator for the report: the common builtins by name,
 * custom ops by their name, other builtins as BUILTIN_<code> (the Python
 * report maps those to names). */
static const char* node_op_name(const TfLiteRegistration* reg, char* buf, size_t n) {
  static const struct {
    int code;
    const char* name;
  } kNames[] = {{0, "ADD"},
                {2, "CONCATENATION"},
                {3, "CONV_2D"},
                {4, "DEPTHWISE_CONV_2D"},
                {6, "DEQUANTIZE"},
                {7, "EMBEDDING_LOOKUP"},
                {9, "FULLY_CONNECTED"},
                {16, "LSTM"},
                {18, "MUL"},
                {27, "SVDF"},
                {35, "UNIDIRECTIONAL_SEQUENCE_RNN"},
                {36, "GATHER"},
                {41, "SUB"},
                {44, "UNIDIRECTIONAL_SEQUENCE_LSTM"},
                {52, "BIDIRECTIONAL_SEQUENCE_LSTM"},
                {67, "TRANSPOSE_CONV"},
                {126, "BATCH_MATMUL"},
                {132, "CONV_3D"}};
  if (reg->builtin_code == kTfLiteBuiltinCustom && reg->custom_name) return reg->custom_name;
  for (size_t i = 0; i < sizeof kNames / sizeof kNames[0]; ++i) {
    if (kNames[i].code == reg->builtin_code) return kNames[i].name;
  }
  snprintf(buf, n, "BUILTIN_%d", reg->builtin_code);
  return buf;
}

/* 1 if `tensor` is the output of a HuffDecode node feeding a compressed
 * candidate (settle_candidate reported it, compressed or dense). */
static int fed_candidate(const PlanNode* pn, int n, int tensor) {
  for (int k = 0; k < n; ++k) {
    const TfLiteIntArray* outs = pn[k].node->outputs;
    const TfLiteIntArray* ins = pn[k].node->inputs;
    if (!is_huff(pn[k].reg) || !outs || outs->size != 1 || outs->data[0] != tensor || !ins ||
        ins->size != 1) {
      continue;
    }
    for (int j = 0; j < n; ++j) {
      if (pn[j].fc_packed >= 0 && pn[j].fc_packed == ins->data[0]) return 1;
    }
  }
  return 0;
}

/* Compressed mode: a "dense" report line, with the reason, for every decoded
 * weight that was no compressed candidate (CONV_2D filters, weights read by
 * several operators, ...), so that every packed tensor appears in the report.
 * Before note_consumers: reports each context's tensors at its first Prepare. */
static void report_decoded(TfLiteContext* context, DcDelegate* d, const PlanNode* pn, int n) {
  for (size_t i = 0; d->compressed && i < d->num_dec; ++i) {
    const Decoded* r = &d->dec[i];
    if (r->ctx != context || r->consumers || fed_candidate(pn, n, r->tensor)) continue;
    int count = 0, first = -1, slot = -1;
    for (int k = 0; k < n; ++k) {
      const TfLiteIntArray* ins = pn[k].node->inputs;
      for (int j = 0; ins && j < ins->size; ++j) {
        if (ins->data[j] != r->tensor) continue;
        if (count++ == 0) first = k, slot = j;
      }
    }
    char why[256], opbuf[32];
    const char* op = first < 0 ? "-" : node_op_name(pn[first].reg, opbuf, sizeof opbuf);
    int code = first < 0 ? -1 : pn[first].reg->builtin_code;
    int lookup_or_fc = code == kTfLiteBuiltinFullyConnected || code == kTfLiteBuiltinGather ||
                       code == kTfLiteBuiltinEmbeddingLookup;
    if (count == 1 && pn[first].why) {
      set_msg(why, sizeof why, "%s", pn[first].why);
    } else if (count == 0) {
      set_msg(why, sizeof why, "no operator reads it; decoded");
    } else if (count > 1) {
      set_msg(why, sizeof why,
              "read by %d operators (first: %s); the compressed kernels take weights read by "
              "one FULLY_CONNECTED, EMBEDDING_LOOKUP or GATHER only; decoded",
              count, op);
    } else if (!lookup_or_fc) {
      set_msg(why, sizeof why,
              "%s has no compressed kernel (FULLY_CONNECTED, EMBEDDING_LOOKUP and GATHER do); "
              "decoded",
              op);
    } else if (slot != table_slot(code)) {
      set_msg(why, sizeof why, "input %d of %s, not its weights; decoded", slot, op);
    } else {
      set_msg(why, sizeof why, "not a compressed candidate; decoded");
    }
    report_dense(d, TENSOR_NAME(context, &context->tensors[r->tensor]), why, op);
  }
}

/* The compressed layers forget_graph marked for this context: this graph applied again (the
 * node still reads the packed tensor, as settle_candidate rewired it) keeps them; a new graph at
 * the same address frees them. */
static void settle_orphans(const TfLiteContext* context, DcDelegate* d, const PlanNode* pn, int n) {
  for (size_t i = 0; i < d->num_fcs;) {
    FcPlan* p = d->fcs[i];
    int same = 0;
    for (int k = 0; p->ctx == context && p->orphan && k < n && !same; ++k) {
      const TfLiteIntArray* ins = pn[k].node->inputs;
      const int slot = table_slot(p->op);
      same = pn[k].index == p->node && pn[k].reg->builtin_code == p->op && ins &&
             ins->size > slot && ins->data[slot] == p->packed;
    }
    if (p->ctx == context && p->orphan && !same) {
      fc_plan_free(p);
      d->fcs[i] = d->fcs[--d->num_fcs];
      continue;
    }
    if (p->ctx == context) p->orphan = 0; /* this graph, applied again */
    ++i;
  }
}

/* The delegate's Prepare but the runtime's ReplaceNodeSubsetsWithDelegateKernels (whose
 * kernel_init takes d->lock): decodes, settles the compressed layers, reports, and lists the nodes
 * to claim in *claimed_out (malloc'ed, also on error).  Under d->lock. */
static TfLiteStatus delegate_plan(TfLiteContext* context, DcDelegate* d, TfLiteDelegate* delegate,
                                  TfLiteIntArray** claimed_out) {
  TfLiteIntArray* plan = NULL;
  *claimed_out = NULL;
  join_lazy(d, 1); /* applied again: the previous fill first */
  join_release(d);
  d->get_plan = context->GetExecutionPlan;
  d->get_node = context->GetNodeAndRegistration;
  if (context->GetExecutionPlan(context, &plan) != kTfLiteOk || !plan) {
    return kTfLiteError;
  }
  size_t cap = (size_t)(plan->size > 0 ? plan->size : 1);
  TfLiteIntArray* claimed = (TfLiteIntArray*)malloc(sizeof(TfLiteIntArray) + sizeof(int) * cap);
  PlanNode* pn = (PlanNode*)calloc(cap, sizeof(PlanNode));
  *claimed_out = claimed;
  if (!claimed || !pn) {
    free(pn);
    return kTfLiteError;
  }
  claimed->size = 0;
  int n = 0, huffs = 0, others = 0;
  for (int k = 0; k < plan->size; ++k) {
    TfLiteNode* node = NULL;
    TfLiteRegistration* reg = NULL;
    if (context->GetNodeAndRegistration(context, plan->data[k], &node, &reg) != kTfLiteOk ||
        !node || !reg) {
      continue;
    }
    PlanNode e = {plan->data[k], node, reg, -1, 0, NULL};
    pn[n++] = e;
    huffs += is_huff(reg);
    others += node->delegate != NULL && node->delegate != delegate;
  }
  settle_orphans(context, d, pn, n);
  if (huffs && others) { /* a warning: the model still runs, with the outputs it would have */
    context->ReportError(
        context,
        "HuffDecode delegate: applied after another delegate (%d of the graph's nodes are already "
        "delegated): that delegate saw the packed weights' layers before their weights were "
        "constants, so they stay on TFLite's builtin kernels; apply the HuffDecode delegate first "
        "(docs/android.md, 'Order of delegates')",
        others);
  }
  if (d->compressed && !find_candidates(context, d, pn, n)) {
    plan_nodes_free(pn, n);
    return kTfLiteError;
  }
  if (!decode_nodes(context, d, pn, n)) { /* decoded route: every other HuffDecode node */
    plan_nodes_free(pn, n);
    return kTfLiteError;
  }
  for (int k = 0; k < n; ++k) {
    if (pn[k].fc_packed < 0) continue;
    PlanNode* h = huff_feeding(pn, n, pn[k].fc_packed);
    if (h) settle_candidate(context, d, &pn[k], h);
  }
  report_decoded(context, d, pn, n);
  note_consumers(context, d, pn, n);
  claimed->size = 0;
  for (int k = 0; k < n; ++k) {
    if (is_huff(pn[k].reg) || (pn[k].fc_packed >= 0 && pn[k].skip == 2)) {
      claimed->data[claimed->size++] = pn[k].index;
    }
  }
  plan_nodes_free(pn, n);
  return kTfLiteOk;
}

static TfLiteStatus delegate_prepare(TfLiteContext* context, TfLiteDelegate* delegate) {
  DcDelegate* d = (DcDelegate*)delegate->data_;
  TfLiteIntArray* claimed = NULL;
  pthread_mutex_lock(&d->lock);
  d->block_start = d->report_len;
  TfLiteStatus status = delegate_plan(context, d, delegate, &claimed);
  report_close_block(d);
  pthread_mutex_unlock(&d->lock);
  if (status == kTfLiteOk && claimed->size > 0) {
    TfLiteRegistration kernel;
    memset(&kernel, 0, sizeof kernel);
    kernel.init = kernel_init;
    kernel.free = kernel_free;
    kernel.prepare = kernel_prepare;
    kernel.invoke = kernel_invoke;
    kernel.builtin_code = kBuiltinDelegate;
    kernel.custom_name = kDelegateKernelName;
    kernel.version = 1;
    status = context->ReplaceNodeSubsetsWithDelegateKernels(context, kernel, claimed, delegate);
  }
  if (status != kTfLiteOk) { /* the model may be freed next: no helper reading it */
    pthread_mutex_lock(&d->lock);
    join_lazy(d, lazy_of_other(d, context));
    pthread_mutex_unlock(&d->lock);
  }
  free(claimed);
  return status;
}

/* An option's decimal value in lo..hi (at most 3 digits): decode_threads 0..DC_MAX_DECODE_THREADS
 * (0: one per CPU), max_density 1..100 (percent). */
static int parse_uint(const char* v, int lo, int hi, int* out) {
  int t = 0;
  if (!*v || strlen(v) > 3) return 0;
  for (const char* c = v; *c; ++c) {
    if (*c < '0' || *c > '9') return 0;
    t = 10 * t + (*c - '0');
  }
  if (t < lo || t > hi) return 0;
  *out = t;
  return 1;
}

/* Reports why tflite_plugin_create_delegate returns NULL: through the caller's callback, or, when
 * it passed none (as a C caller may: docs/android.md), on stderr, so the reason is never lost. */
static void report_option_error(void (*report_error)(const char*), const char* msg) {
  if (report_error) {
    report_error(msg);
  } else {
    fprintf(stderr, "%s\n", msg);
    fflush(stderr);
  }
}

/* The environment variables the delegate reads, checked once at its creation (a value it cannot
 * read was silently taken as unset): DC_KERAS_DECODE_THREADS a whole number from 0 to 64 (0 = one
 * thread per CPU; dc_decode_threads_check, as dc_unpack and the LiteRT kernel check it),
 * DC_KERAS_DECODE_ASYNC "0" or "1"; empty counts as unset.  Worded as dc_keras.runtime's. */
static int check_environment(void (*report_error)(const char*)) {
  char msg[512], why[400];
  const char* lazy = getenv("DC_KERAS_DECODE_ASYNC");
  if (!dc_decode_threads_check(why, sizeof why)) {
    snprintf(msg, sizeof msg, "dc_keras HuffDecode delegate: %s", why);
    report_option_error(report_error, msg);
    return 0;
  }
  if (lazy && *lazy && strcmp(lazy, "0") != 0 && strcmp(lazy, "1") != 0) {
    snprintf(msg, sizeof msg,
             "dc_keras HuffDecode delegate: environment variable DC_KERAS_DECODE_ASYNC='%.64s' "
             "must be 0 (decode while the model loads) or 1 (the default: decode in the "
             "background); or unset it",
             lazy);
    report_option_error(report_error, msg);
    return 0;
  }
  return 1;
}

/* Options: "weights" = "decoded" (default) | "compressed"; "keep_decoded" = "1" (default) | "0";
 * "decode_threads" = "0" (default: one per CPU, or DC_KERAS_DECODE_THREADS) | "1" (serial) | N;
 * "decode_async" = "1" (default: decode_lazily where available) | "0" (decode within Prepare);
 * "max_density" = "1".."100" (default, max_density_for: 30 for float32 weights on the row form,
 * 40 on the tile form, 5 with the AVX2 kernels, 10 for unclustered float32 weights (float planes:
 * the value form), 25 for int8): with weights=compressed,
 * FULLY_CONNECTED layers with more
 * non-zero weights than that percent stay decoded (dense layers run faster on the dense kernels,
 * docs/android.md); the option applies to every form; 100: all run compressed. */
static int parse_options(DcDelegate* d, char** keys, char** values, size_t n,
                         void (*report_error)(const char*)) {
  char msg[512];
  for (size_t i = 0; i < n; ++i) {
    const char* k = keys ? keys[i] : NULL;
    const char* v = values ? values[i] : NULL;
    if (k && v && strcmp(k, "keep_decoded") == 0 && (strcmp(v, "0") == 0 || strcmp(v, "1") == 0)) {
      d->keep_decoded = v[0] == '1';
      continue;
    }
    if (k && v && strcmp(k, "decode_threads") == 0 &&
        parse_uint(v, 0, DC_MAX_DECODE_THREADS, &d->decode_threads)) {
      continue;
    }
    if (k && v && strcmp(k, "decode_async") == 0 && (strcmp(v, "0") == 0 || strcmp(v, "1") == 0)) {
      d->decode_async = v[0] == '1';
      continue;
    }
    if (k && v && strcmp(k, "max_density") == 0 && parse_uint(v, 1, 100, &d->max_density)) {
      continue;
    }
    if (k && v && strcmp(k, "weights") == 0 &&
        (strcmp(v, "decoded") == 0 || strcmp(v, "compressed") == 0)) {
      d->compressed = strcmp(v, "compressed") == 0;
      continue;
    }
    static const char* const known[] = {"weights", "keep_decoded", "decode_threads", "decode_async",
                                        "max_density"};
    int is_known = 0;
    for (size_t j = 0; k && j < sizeof known / sizeof known[0]; ++j)
      is_known |= strcmp(k, known[j]) == 0;
    snprintf(msg, sizeof msg,
             "dc_keras HuffDecode delegate: %s %s=%s (the options are "
             "weights=decoded|compressed, keep_decoded=1|0, decode_threads=0..%d "
             "(0 = one per CPU), decode_async=1|0 and max_density=1..100 (percent))",
             is_known ? "bad value in option" : "unknown option", k ? k : "(null)",
             v ? v : "(null)", DC_MAX_DECODE_THREADS);
    report_option_error(report_error, msg);
    return 0;
  }
  return 1;
}

DC_EXPORT TfLiteDelegate* tflite_plugin_create_delegate(char** options_keys, char** options_values,
                                                        size_t num_options,
                                                        void (*report_error)(const char*)) {
  /* Python's load_delegate passes the count as a C int: trust 32 bits. */
  size_t n = (size_t)(uint32_t)num_options;
  DcDelegate* d = (DcDelegate*)calloc(1, sizeof(DcDelegate));
  if (!d) {
    report_option_error(report_error, "dc_keras HuffDecode delegate: out of memory");
    return NULL;
  }
  d->keep_decoded = 1;
  d->decode_async = 1;
  d->max_density = 0; /* by weight type and form (max_density_for) */
  if (!parse_options(d, options_keys, options_values, n, report_error) ||
      !check_environment(report_error)) {
    free(d);
    return NULL;
  }
  if (pthread_mutex_init(&d->lock, NULL) != 0) {
    report_option_error(report_error, "dc_keras HuffDecode delegate: cannot create a mutex");
    free(d);
    return NULL;
  }
  if (pthread_mutex_init(&d->release_lock, NULL) != 0) {
    report_option_error(report_error, "dc_keras HuffDecode delegate: cannot create a mutex");
    pthread_mutex_destroy(&d->lock);
    free(d);
    return NULL;
  }
  d->base.data_ = d;
  d->base.Prepare = delegate_prepare;
  d->base.flags = kTfLiteDelegateFlagsAllowDynamicTensors;
  delegates_add(d);
  return &d->base;
}

/* Python's garbage collector may destroy the delegate before the interpreter it serves (both in
 * one reference cycle): its kernels, freed later with the interpreter, still need it, so it is
 * freed with the last of them then. */
DC_EXPORT void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) {
  if (!delegate) return;
  DcDelegate* d = (DcDelegate*)delegate->data_;
  pthread_mutex_lock(&d->lock);
  d->destroyed = 1;
  const int last = d->kernels == 0;
  pthread_mutex_unlock(&d->lock);
  if (last) delegate_free(d);
}

static void delegate_free(DcDelegate* d) {
  delegates_remove(d);
  join_lazy(d, 0);
  join_release(d);
  for (size_t i = 0; i < d->num_blocks; ++i) free(d->blocks[i]);
  for (size_t i = 0; i < d->num_arenas; ++i) dc_arena_free(d->arenas[i].mem);
  free(d->arenas);
  for (size_t i = 0; i < d->num_dec; ++i) free(d->dec[i].consumers);
  free(d->dec);
  for (size_t i = 0; i < d->num_fcs; ++i) fc_plan_free(d->fcs[i]);
  free(d->blocks);
  free(d->fcs);
  free(d->report);
  free(d->rblocks);
  free(d->errors);
  pthread_mutex_destroy(&d->release_lock);
  pthread_mutex_destroy(&d->lock);
  free(d);
}

/* Copies up to size - 1 bytes of s to buf (NUL terminated; nothing if buf is NULL or size 0) and
 * returns strlen(s): the exported text getters' convention. */
static size_t copy_out(const char* s, char* buf, size_t size) {
  size_t len = strlen(s);
  if (buf && size) {
    size_t c = len < size - 1 ? len : size - 1;
    memcpy(buf, s, c);
    buf[c] = '\0';
  }
  return len;
}

/* What the delegate did with each FULLY_CONNECTED / EMBEDDING_LOOKUP / GATHER
 * fed by packed weights, one tab-separated line each: "compressed <weights>
 * <rows>x<cols> <dtype> <nnz> <bytes> <op>" or "dense <weights> <reason> <op>".  A delegate shared
 * by interpreters reports each model's lines once (a model loaded again adds none), up to
 * kReportMax bytes of lines, then one last line "more <count> <text>" for the lines not kept.
 * Copies up to size - 1 bytes (NUL terminated) and returns the full length. */
DC_EXPORT size_t DcKerasHuffDecodeDelegateReport(const TfLiteDelegate* delegate, char* buf,
                                                 size_t size) {
  DcDelegate* d = delegate ? (DcDelegate*)delegate->data_ : NULL;
  char more[160] = "";
  if (!d) return copy_out("", buf, size);
  pthread_mutex_lock(&d->lock);
  if (d->report_dropped) {
    snprintf(more, sizeof more,
             "more\t%zu\t%zu more lines not kept: the report keeps %zu bytes (one delegate per "
             "interpreter reports each model in full)\n",
             d->report_dropped, d->report_dropped, kReportMax);
  }
  const size_t len = d->report_len, extra = strlen(more);
  if (buf && size) {
    size_t c = len < size - 1 ? len : size - 1;
    if (c) memcpy(buf, d->report, c);
    size_t e = extra < size - 1 - c ? extra : size - 1 - c;
    memcpy(buf + c, more, e);
    buf[c + e] = '\0';
  }
  pthread_mutex_unlock(&d->lock);
  return len + extra;
}

/* The delegate's first error ("" if none), e.g. a packed tensor that failed to decode, after
 * waiting for its decode helpers.  TFLite reports it in the delegate kernel's Prepare, which it
 * defers to the first invoke for ops after a dynamic output shape: an app can call this right after
 * AllocateTensors to fail at load in that case too.  Copies up to size - 1 bytes (NUL terminated)
 * and returns the full length. */
DC_EXPORT size_t DcKerasHuffDecodeDelegateError(TfLiteDelegate* delegate, char* buf, size_t size) {
  DcDelegate* d = delegate ? (DcDelegate*)delegate->data_ : NULL;
  if (!d) return copy_out("", buf, size);
  pthread_mutex_lock(&d->lock);
  join_lazy(d, 1); /* a deferred kernel Prepare has not joined them yet */
  const size_t len = copy_out(d->error, buf, size);
  pthread_mutex_unlock(&d->lock);
  return len;
}

/* The number of tensors the delegate has decoded on a helper thread while the load went on
 * (decode_lazily: 0 where userfaultfd is refused, on one CPU, with decode_async=0, or for models
 * it does not pay for).  For tests and diagnostics. */
DC_EXPORT size_t DcKerasHuffDecodeDelegateAsync(const TfLiteDelegate* delegate) {
  DcDelegate* d = delegate ? (DcDelegate*)delegate->data_ : NULL;
  if (!d) return 0;
  pthread_mutex_lock(&d->lock);
  const size_t n = d->async_tensors;
  pthread_mutex_unlock(&d->lock);
  return n;
}
