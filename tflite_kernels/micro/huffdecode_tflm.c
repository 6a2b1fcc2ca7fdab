/*
 * huffdecode_tflm.c -- HuffDecode kernel for TensorFlow Lite Micro (see huffdecode_tflm.h).
 *
 * C99 against tflm_abi.h; the decoder is dc_codec.h.  All memory comes from the TFLM arena:
 * op state and (decode-once mode) the decoded tensor from AllocatePersistentBuffer, the decoder
 * workspace from a scratch buffer (planned by TFLM for this op only, so it shares memory with
 * other ops' tensors; decode-once decodes at the first Eval, where the scratch buffer exists);
 * (decode-each-invoke mode) the output from the memory planner.  A format version 1 tensor in
 * decode-once mode (its checksum covers the decoded bytes: only decoding checks it) decodes in
 * Prepare with a persistent workspace, as every tensor did until 2026-12-05.  Errors are
 * reported with context->ReportError,
 * naming the tensor index and the fix; with TF_LITE_STRIP_ERROR_STRINGS defined (TFLM's
 * BUILD_TYPE=release) the same errors are returned without a message (DC_TFLM_LOG below).
 */
#include "huffdecode_tflm.h"

#include <string.h>

#include "dc_codec.h"

/* Codec v2 (docs/FORMAT.md) adds a caller-provided workspace so the decoder's stack stays
 * under 4 KiB; the v1 decoder keeps its tables on the stack. */
#if defined(DC_MAX_WORKSPACE)
#define DC_TFLM_HAVE_WS 1
#else
#define DC_TFLM_HAVE_WS 0
#endif

/* The flags share one 32-bit unit: the state is 32 B on Cortex-M (48 B on x86-64), one 16-byte
 * slot less per op in TFLM's persistent arena than five separate bytes (36 B, padded to 48:
 * measured +16 B per op on the M4 firmware, 2026-12-06). */
typedef struct {
  unsigned mode : 8;        /* DcTflmDecodeMode */
  unsigned bad_options : 1; /* custom options were not a decode mode */
  unsigned decoded : 1;     /* decode-once: output ready */
  unsigned pending : 1;     /* decode-once: Prepare done, the first Eval decodes into out */
  unsigned prepared : 1;    /* a Prepare succeeded (later ones may run after planning) */
  int in_idx, out_idx;
  int scratch_idx; /* the workspace's scratch buffer (either mode), -1 if none */
  size_t packed_bytes, out_bytes, ws_bytes;
  void* out; /* decode-once: persistent decoded tensor */
} OpData;

/* Every message goes through DC_TFLM_LOG, as TFLM's own kernels log through TF_LITE_KERNEL_LOG
 * (tensorflow/lite/core/c/common.h) and MicroPrintf (micro_log.h): with TF_LITE_STRIP_ERROR_STRINGS
 * defined it expands, as TF_LITE_KERNEL_LOG does, to an unevaluated sizeof of the stringified
 * arguments, so no message string, dtype_name() or dc_strerror() call is left in the object; the
 * status each caller returns is the same.  A value used only by a message is computed in the
 * message's arguments, so that nothing is left unused in that build. */
#ifndef TF_LITE_STRIP_ERROR_STRINGS
#define DC_TFLM_LOG(ctx, ...) (ctx)->ReportError((ctx), __VA_ARGS__)
#else
#define DC_TFLM_LOG(ctx, ...) ((void)(ctx), (void)sizeof(#__VA_ARGS__))
#endif

static int tflm_type(uint32_t dc_dtype) {
  switch (dc_dtype) {
    case DC_DTYPE_FLOAT32: return kDcTflmFloat32;
    case DC_DTYPE_FLOAT16: return kDcTflmFloat16;
    case DC_DTYPE_INT32: return kDcTflmInt32;
    case DC_DTYPE_UINT8: return kDcTflmUInt8;
    case DC_DTYPE_INT16: return kDcTflmInt16;
    case DC_DTYPE_INT8: return kDcTflmInt8;
    case DC_DTYPE_INT64: return kDcTflmInt64; /* §16: int16x8 models' biases */
    case DC_DTYPE_BOOL: return kDcTflmBool;
    default: return -1;
  }
}

#ifndef TF_LITE_STRIP_ERROR_STRINGS
static const char* dtype_name(uint32_t dc_dtype) {
  switch (dc_dtype) {
    case DC_DTYPE_INT4: return "int4";
    case DC_DTYPE_BFLOAT16: return "bfloat16";
    case DC_DTYPE_INT2: return "int2";
    case DC_DTYPE_UINT4: return "uint4";
    case DC_DTYPE_FLOAT64: return "float64";
    case DC_DTYPE_UINT64: return "uint64";
    case DC_DTYPE_UINT32: return "uint32";
    case DC_DTYPE_UINT16: return "uint16";
    default: return "this element type's";
  }
}
#endif

static dc_status workspace_bytes(const uint8_t* data, size_t size, size_t* bytes) {
#if DC_TFLM_HAVE_WS
  return dc_workspace_size(data, size, bytes);
#else
  (void)data;
  (void)size;
  *bytes = 0;
  return DC_OK;
#endif
}

static dc_status decode(const uint8_t* data, size_t size, void* out, size_t out_size, void* ws,
                        size_t ws_size) {
  /* An empty tensor has no output buffer here (decode once allocates none: out is NULL).  The
   * decoder accepts NULL for 0 bytes, but its format version 1 checksum computed NULL + 0 from it
   * until f9aa766, which C leaves undefined (clang's UBSan stopped on it; found by
   * fuzz/fuzz_tflm.c): a valid address, where nothing is written, keeps this kernel safe with a
   * dc_codec.c from before that fix too. */
  unsigned char none;
  if (out == NULL && out_size == 0) out = &none;
#if DC_TFLM_HAVE_WS
  return dc_decode_ws(data, size, out, out_size, ws, ws_size);
#else
  (void)ws;
  (void)ws_size;
  return dc_decode(data, size, out, out_size);
#endif
}

static void* op_init(DcTflmContext* ctx, const char* buffer, size_t length, DcTflmDecodeMode mode) {
  OpData* d = (OpData*)ctx->AllocatePersistentBuffer(ctx, sizeof(OpData));
  if (d == NULL) return NULL;
  memset(d, 0, sizeof *d);
  d->mode = (uint8_t)mode;
  d->scratch_idx = -1;
  if (length == 1 && buffer != NULL && (buffer[0] == 0 || buffer[0] == 1)) {
    d->mode = (uint8_t)buffer[0];
  } else if (length != 0) {
    d->bad_options = 1;
  }
  return d;
}
static void* init_once(DcTflmContext* ctx, const char* buffer, size_t length) {
  return op_init(ctx, buffer, length, DC_TFLM_DECODE_ONCE);
}
static void* init_each(DcTflmContext* ctx, const char* buffer, size_t length) {
  return op_init(ctx, buffer, length, DC_TFLM_DECODE_EACH_INVOKE);
}

/* A packed tensor of a type the kernel has no TFLM type for: 0 + report. */
static int unsupported_type(DcTflmContext* ctx, const OpData* d, uint32_t dc_dtype) {
  (void)d; /* message arguments only (TF_LITE_STRIP_ERROR_STRINGS) */
  (void)dc_dtype;
  DC_TFLM_LOG(ctx,
              "HuffDecode (output tensor %d): the TFLM kernel does not decode %s tensors "
              "(it decodes float32, float16, int32, int16, int8, uint8, int64 and bool "
              "ones); run this "
              "model unpacked on TFLM (dc-keras unpack IN OUT)",
              d->out_idx, dtype_name(dc_dtype));
  return 0;
}

#ifndef TF_LITE_STRIP_ERROR_STRINGS
/* What a tensor dc_peek refused as DC_ERR_UNSUPPORTED needs, and the dc_codec.h option that leaves
 * it out (§2 header bytes 7 and 5), for the message: the firmware's build names its -D options,
 * not layout numbers.  Only int64 among the types the kernel decodes can be left out, by
 * DC_CODEC_NO_64BIT, so an int64 tensor in a layout that can be left out names both (which one
 * the build leaves out the kernel does not know: dc_codec.c is compiled apart).  Every option is
 * also in DC_CODEC_MINIMAL. */
static const char* left_out_by(unsigned layout, unsigned dc_dtype) {
  const int wide = dc_dtype == DC_DTYPE_INT64;
  switch (layout) {
    case DC_LAYOUT_GROUPED_DENSE:
    case DC_LAYOUT_GROUPED_SPARSE:
      return wide ? "int64 (DC_CODEC_NO_64BIT) or layout 2/3 (DC_CODEC_NO_GROUPED)"
                  : "layout 2/3 (DC_CODEC_NO_GROUPED or DC_CODEC_MINIMAL)";
    case DC_LAYOUT_FLOAT_PLANES: return "layout 4 (DC_CODEC_NO_FLOAT_PLANES or DC_CODEC_MINIMAL)";
    case DC_LAYOUT_CONTEXT_SPARSE:
      return wide ? "int64 (DC_CODEC_NO_64BIT) or layout 5 (DC_CODEC_NO_CONTEXT)"
                  : "layout 5 (DC_CODEC_NO_CONTEXT or DC_CODEC_MINIMAL)";
    case DC_LAYOUT_INT_PLANES:
      return wide ? "int64 (DC_CODEC_NO_64BIT) or layout 6 (DC_CODEC_NO_INT_PLANES)"
                  : "layout 6 (DC_CODEC_NO_INT_PLANES or DC_CODEC_MINIMAL)";
    case DC_LAYOUT_SPARSE_PLANES: /* floats only: never int64 */
      return "layout 7 (DC_CODEC_NO_SPARSE_PLANES or DC_CODEC_MINIMAL)";
    default:
      return wide ? "int64 (DC_CODEC_NO_64BIT or DC_CODEC_MINIMAL)"
                  : "its layout or type (DC_CODEC_NO_* or DC_CODEC_MINIMAL)";
  }
}

/* The pack options that keep a model clear of what left_out_by names: --decoder minimal in every
 * case (layouts 0 and 1 of the 1, 2 and 4 byte types; other tensors stay raw); for an int64
 * tensor also format version 2 (no 64-bit types, no layout 6: it stays raw), for a layout --layouts
 * without it. */
static const char* repack_with(unsigned dc_dtype) {
  return dc_dtype == DC_DTYPE_INT64 ? "--decoder minimal or --format-version 2"
                                    : "--decoder minimal or --layouts";
}
#endif

/* Checks the packed input against the output tensor; fills *info.  0 + report on error.
 * Eval tensors only: TFLM's GetTensor hands out temporaries that a C kernel cannot free
 * (DeallocateTempTfLiteTensor is C++), and Prepare fails if any is left. */
static int check_tensors(DcTflmContext* ctx, OpData* d, const DcTflmEvalTensor* in,
                         const DcTflmEvalTensor* out, dc_tensor_info* info) {
  uint32_t k;
  dc_status st;
  int want;
  if (in == NULL || out == NULL) {
    DC_TFLM_LOG(ctx, "HuffDecode: could not get tensors %d/%d", d->in_idx, d->out_idx);
    return 0;
  }
  if (in->type != kDcTflmUInt8 || in->dims == NULL || in->dims->size != 1 ||
      in->dims->data[0] < 0) {
    DC_TFLM_LOG(ctx,
                "HuffDecode (output tensor %d): the packed input must be a 1-D uint8 "
                "tensor; re-export the model with dc_keras.export.pack",
                d->out_idx);
    return 0;
  }
  /* Before planning only constants with data inside the flatbuffer have a data pointer: TFLM
   * does not read Buffer.offset/size, so data stored after the flatbuffer (pack's "external"
   * buffers) leave the packed input without one. */
  if (in->data.raw_const == NULL) {
    DC_TFLM_LOG(ctx,
                "HuffDecode (output tensor %d): packed input %d has no data in the "
                "flatbuffer; TFLM reads no buffers after it (pack --buffers external): "
                "pack with --buffers inline (dc-keras unpack IN PLAIN; dc-keras pack "
                "--buffers inline PLAIN OUT)",
                d->out_idx, d->in_idx);
    return 0;
  }
  /* A flatbuffer vector's elements follow its u32 count, 4-byte aligned in the file: a packed
   * input off that alignment sits in a model array off its own (16 bytes, as TFLM's
   * generate_cc_arrays.py declares it), whose float and int64 constants TFLM's kernels load in
   * place, which faults on Cortex-M (DcTflmCheckModel refuses such an array before TFLM reads it;
   * this catches what reaches here). */
  if (((uintptr_t)in->data.raw_const & 3) != 0) {
    DC_TFLM_LOG(ctx,
                "HuffDecode (output tensor %d): packed input %d is not 4-byte aligned: the "
                "model array is not 16-byte aligned, which TFLM's loads need: declare it "
                "alignas(16) (as generate_cc_arrays.py does) or copy it to an aligned buffer",
                d->out_idx, d->in_idx);
    return 0;
  }
  /* TFLM gives a kernel no buffer size: a constant's data pointer is the first element of its
   * flatbuffer Buffer's data vector (TFLM's GetFlatbufferTensorBuffer), which flatbuffers' format
   * puts right after the vector's u32 little-endian element count (read byte by byte: any
   * alignment, any byte order).  Until 2026-12-06 a shape saying more bytes than that (a model
   * edited after packing) made the decoder read past the buffer (the CRC over the shape's count
   * of bytes: the flatbuffer's next bytes, or past its end; reported as a checksum mismatch), one
   * saying fewer failed as "truncated".  LiteRT refuses the first at load ("required_bytes <=
   * bytes"), the second in huffdecode_op.c, with this message's words. */
  {
    const uint8_t* p = (const uint8_t*)in->data.raw_const - 4;
    const uint32_t held =
        (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    if ((uint64_t)held != (uint64_t)in->dims->data[0]) {
      DC_TFLM_LOG(ctx,
                  "HuffDecode (output tensor %d): packed input %d holds %u bytes, but its "
                  "shape says %d; the model was edited after packing: re-export the model with "
                  "dc_keras.export.pack",
                  d->out_idx, d->in_idx, (unsigned)held, (int)in->dims->data[0]);
      return 0;
    }
  }
  d->packed_bytes = (size_t)in->dims->data[0];
  st = dc_peek((const uint8_t*)in->data.raw_const, d->packed_bytes, info);
  if (st == DC_ERR_VERSION && d->packed_bytes > 7) { /* header byte 4 (docs/FORMAT.md §2) */
    const unsigned v = ((const uint8_t*)in->data.raw_const)[4];
    if (v > DC_VERSION_MAX) {
      DC_TFLM_LOG(ctx,
                  "HuffDecode (output tensor %d): packed tensor not readable here: format "
                  "version %u, newer than this decoder's %u: pack with --format-version %u "
                  "(pack(version=%u)), or update dc_codec.c",
                  d->out_idx, v, (unsigned)DC_VERSION_MAX, (unsigned)DC_VERSION_MAX,
                  (unsigned)DC_VERSION_MAX);
      return 0;
    }
  }
  if (st == DC_ERR_UNSUPPORTED && d->packed_bytes > 7) { /* §2: byte 5 dtype, byte 7 layout */
    const uint8_t* h = (const uint8_t*)in->data.raw_const;
    /* A type this kernel does not decode either (int4, uint64, ...): rebuilding dc_codec.c with
     * it would only move the failure to the type check below, so that message now. */
    if (tflm_type(h[5]) < 0) return unsupported_type(ctx, d, h[5]);
    DC_TFLM_LOG(ctx,
                "HuffDecode (output tensor %d): packed tensor not readable here: %s, left out "
                "of this dc_codec.c build: rebuild without that option, or pack with %s",
                d->out_idx, left_out_by(h[7], h[5]), repack_with(h[5]));
    return 0;
  }
  if (st != DC_OK) {
    DC_TFLM_LOG(ctx, "HuffDecode (output tensor %d): %s: %s", d->out_idx, DC_PEEK_FAILURE(st),
                dc_strerror(st));
    return 0;
  }
  want = tflm_type(info->dtype);
  /* a valid tensor (e.g. int4 / bfloat16 weights) of a type not handled here */
  if (want < 0) return unsupported_type(ctx, d, info->dtype);
  if (want != (int)out->type || out->dims == NULL || out->dims->size < 0 ||
      (uint32_t)out->dims->size != info->rank) {
    DC_TFLM_LOG(ctx,
                "HuffDecode (output tensor %d): packed dtype/rank (%u/%u) differ from "
                "the output's (type %d, rank %d); the model was edited after packing",
                d->out_idx, (unsigned)info->dtype, (unsigned)info->rank, (int)out->type,
                out->dims ? out->dims->size : -1);
    return 0;
  }
  /* Before planning, an output with a data pointer is a constant of the flatbuffer (or a
   * variable): decoded every invoke, the decoder wrote the tensor's bytes over that memory (past
   * its end when shorter: an out-of-bounds write; the model itself; flash on a board).  Only the
   * first Prepare runs before planning (later ones see the planned output, or decode once's). */
  if (!d->prepared && out->data.data != NULL && out->data.data != d->out) {
    DC_TFLM_LOG(ctx,
                "HuffDecode (output tensor %d): the output has data in the flatbuffer (a "
                "constant), which decoding would overwrite; the model was edited after "
                "packing: re-export the model with dc_keras.export.pack",
                d->out_idx);
    return 0;
  }
  for (k = 0; k < info->rank; ++k) {
    if (out->dims->data[k] < 0 || (uint64_t)out->dims->data[k] != info->dims[k]) {
      DC_TFLM_LOG(ctx,
                  "HuffDecode (output tensor %d): packed dim %u differs from the "
                  "output's; the model was edited after packing",
                  d->out_idx, (unsigned)k);
      return 0;
    }
  }
  if (info->output_bytes > (uint64_t)(size_t)-1) {
    DC_TFLM_LOG(ctx, "HuffDecode (output tensor %d): tensor too large", d->out_idx);
    return 0;
  }
  return 1;
}

static DcTflmStatus op_prepare(DcTflmContext* ctx, DcTflmNode* node) {
  OpData* d = (OpData*)node->user_data;
  const DcTflmEvalTensor* in;
  DcTflmEvalTensor* out;
  dc_tensor_info info;
  dc_status st;
  int at_invoke;
  if (d == NULL) {
    DC_TFLM_LOG(ctx, "HuffDecode: arena too small for the op's state; enlarge the arena");
    return kDcTflmError;
  }
  /* A tensor index of -1 (the flatbuffer's "no tensor") would make TFLM's GetEvalTensor, which
   * checks no bounds, read before its tensor array. */
  if (node->inputs == NULL || node->outputs == NULL || node->inputs->size != 1 ||
      node->outputs->size != 1 || node->inputs->data[0] < 0 || node->outputs->data[0] < 0) {
    DC_TFLM_LOG(ctx,
                "HuffDecode: expected 1 input and 1 output tensor; re-export the model with "
                "dc_keras.export.pack");
    return kDcTflmError;
  }
  d->in_idx = node->inputs->data[0];
  d->out_idx = node->outputs->data[0];
  if (d->bad_options) { /* pack writes none; set_decode_mode.py one byte, 0 or 1 */
    DC_TFLM_LOG(ctx,
                "HuffDecode (output tensor %d): custom options must be empty or one byte (0: "
                "decode once, 1: decode every invoke): clear them (tools/mcu/set_decode_mode.py "
                "IN OUT --reset), or update this kernel if a newer dc_keras wrote them",
                d->out_idx);
    return kDcTflmError;
  }
  in = ctx->GetEvalTensor(ctx, d->in_idx);
  out = ctx->GetEvalTensor(ctx, d->out_idx);
  if (d->decoded) { /* decoded by an earlier Prepare: keep the output pointing at it */
    if (out == NULL) return kDcTflmError;
    out->data.data = d->out;
    return kDcTflmOk;
  }
  if (!check_tensors(ctx, d, in, out, &info)) return kDcTflmError;
  d->out_bytes = (size_t)info.output_bytes;
  st = workspace_bytes((const uint8_t*)in->data.raw_const, d->packed_bytes, &d->ws_bytes);
  if (st != DC_OK) {
    DC_TFLM_LOG(ctx, "HuffDecode (output tensor %d): %s", d->out_idx, dc_strerror(st));
    return kDcTflmError;
  }
  /* Decoded at an invoke: every invoke, or decode-once's first when the tensor needs a workspace
   * (then a scratch buffer, which exists from the first Eval on).  A format version 1 tensor's
   * checksum covers the decoded bytes, so decode-once decodes it here, in Prepare. */
  at_invoke = d->mode != DC_TFLM_DECODE_ONCE || (d->ws_bytes != 0 && info.version >= 2);
#if DC_TFLM_HAVE_WS
  /* Decoded at an invoke: check the packed bytes' CRC (§8; version 1: the header only) now, so
   * that corrupt data fails in Prepare (AllocateTensors), once, not at an invoke. */
  if (at_invoke) {
    st = dc_verify((const uint8_t*)in->data.raw_const, d->packed_bytes);
    if (st != DC_OK) {
      DC_TFLM_LOG(ctx, "HuffDecode (output tensor %d): %s: %s", d->out_idx, DC_PEEK_FAILURE(st),
                  dc_strerror(st));
      return kDcTflmError;
    }
  }
#endif
  if (d->mode == DC_TFLM_DECODE_ONCE) {
    d->pending = 0;
    /* (d->out set: by an earlier Prepare whose op was never invoked; TFLM frees nothing) */
    if (d->out == NULL && d->out_bytes) {
      d->out = ctx->AllocatePersistentBuffer(ctx, d->out_bytes);
      if (d->out == NULL) {
        DC_TFLM_LOG(ctx,
                    "HuffDecode (output tensor %d): arena too small for the %u decoded "
                    "bytes; enlarge the arena or decode this layer every invoke",
                    d->out_idx, (unsigned)d->out_bytes);
        return kDcTflmError;
      }
    }
    /* A non-NULL data pointer before planning: TFLM's planner leaves this tensor alone. */
    out->data.data = d->out;
    if (!at_invoke) {
      void* ws = d->ws_bytes ? ctx->AllocatePersistentBuffer(ctx, d->ws_bytes) : NULL;
      if (d->ws_bytes && ws == NULL) {
        DC_TFLM_LOG(ctx,
                    "HuffDecode (output tensor %d): arena too small for the %u-byte workspace of "
                    "this format version 1 tensor, decoded in Prepare; enlarge the arena, decode "
                    "this layer every invoke or repack it (format version 2 or later)",
                    d->out_idx, (unsigned)d->ws_bytes);
        return kDcTflmError;
      }
      st = decode((const uint8_t*)in->data.raw_const, d->packed_bytes, d->out, d->out_bytes, ws,
                  d->ws_bytes);
      if (st != DC_OK) {
        DC_TFLM_LOG(ctx, "HuffDecode (output tensor %d): decoding failed: %s", d->out_idx,
                    dc_strerror(st));
        return kDcTflmError;
      }
      d->decoded = 1;
      d->prepared = 1;
      return kDcTflmOk;
    }
  }
  /* The workspace only while decoding: a scratch buffer, which TFLM plans for this op alone (it
   * shares memory with tensors and scratch not alive at this op); an arena too small for the plan
   * fails in AllocateTensors. */
  if (d->ws_bytes &&
      ctx->RequestScratchBufferInArena(ctx, d->ws_bytes, &d->scratch_idx) != kDcTflmOk) {
    DC_TFLM_LOG(ctx,
                "HuffDecode (output tensor %d): could not plan a %u-byte scratch "
                "buffer",
                d->out_idx, (unsigned)d->ws_bytes);
    return kDcTflmError;
  }
  if (d->mode == DC_TFLM_DECODE_ONCE) d->pending = 1;
  d->prepared = 1;
  return kDcTflmOk;
}

static DcTflmStatus op_invoke(DcTflmContext* ctx, DcTflmNode* node) {
  OpData* d = (OpData*)node->user_data;
  DcTflmEvalTensor *in, *out;
  void* dst;
  void* ws = NULL;
  dc_status st;
  if (d == NULL) return kDcTflmError;
  out = ctx->GetEvalTensor(ctx, d->out_idx);
  if (out == NULL) return kDcTflmError;
  if (d->mode == DC_TFLM_DECODE_ONCE) {
    if (!d->decoded && !d->pending) {
      DC_TFLM_LOG(ctx, "HuffDecode: invoked before a successful Prepare");
      return kDcTflmError;
    }
    out->data.data = d->out;
    if (d->decoded) return kDcTflmOk;
  }
  /* every invoke, or decode-once's first: decode into the output with the scratch workspace */
  dst = d->mode == DC_TFLM_DECODE_ONCE ? d->out : out->data.data;
  in = ctx->GetEvalTensor(ctx, d->in_idx);
  if (d->scratch_idx >= 0) ws = ctx->GetScratchBuffer(ctx, d->scratch_idx);
  if (in == NULL || in->data.raw_const == NULL || (d->ws_bytes && ws == NULL) ||
      (d->out_bytes && dst == NULL)) {
    DC_TFLM_LOG(ctx, "HuffDecode (output tensor %d): missing buffers at invoke", d->out_idx);
    return kDcTflmError;
  }
  st = decode((const uint8_t*)in->data.raw_const, d->packed_bytes, dst, d->out_bytes, ws,
              d->ws_bytes);
  if (st != DC_OK) {
    DC_TFLM_LOG(ctx, "HuffDecode (output tensor %d): decoding failed: %s", d->out_idx,
                dc_strerror(st));
    return kDcTflmError;
  }
  if (d->mode == DC_TFLM_DECODE_ONCE) {
    d->decoded = 1;
    d->pending = 0;
  }
  return kDcTflmOk;
}

static const DcTflmRegistration g_once = {
    init_once, NULL, op_prepare, op_invoke, NULL, kDcTflmBuiltinCustom, DC_TFLM_HUFFDECODE_NAME};
static const DcTflmRegistration g_each = {
    init_each, NULL, op_prepare, op_invoke, NULL, kDcTflmBuiltinCustom, DC_TFLM_HUFFDECODE_NAME};

const DcTflmRegistration* DcTflmHuffDecodeRegistration(DcTflmDecodeMode default_mode) {
  return default_mode == DC_TFLM_DECODE_EACH_INVOKE ? &g_each : &g_once;
}
