/* fuzz_tflm.c -- libFuzzer harness of the HuffDecode kernel for TensorFlow Lite Micro
 * (micro/huffdecode_tflm.c), driven as TFLM drives it through the stand-in context of
 * tflm_stand_in.h (shared with tools/mcu/tflm_mock_ctx.c): init (with the op's custom options)
 * -> Prepare -> the planner (scratch buffers, the planned output) -> Invoke -> Invoke -> free.
 * fuzz.sh builds it for the host's ABI (tflm) and, where the compiler links -m32, for the 32-bit
 * layouts of tflm_abi.h (tflm32).
 *
 * Input: byte 0 = control, the rest = the packed input tensor's bytes (its constant data, after
 * their u32 count as in a flatbuffer vector).
 *   control % 6        the decode mode and the custom options init gets: 0 the decode-once
 *                      registration, no options; 1 the every-invoke registration, no options;
 *                      2 every-invoke registration, options {0} (decode once); 3 decode-once
 *                      registration, options {1} (every invoke); 4 decode-once registration, one
 *                      bad option byte (2..255); 5 every-invoke registration, two option bytes
 *   control / 6 % 8    0 nothing changed; 1 the packed bytes' CRC (§8, versions >= 2) rewritten to
 *                      match them, so that mutated payloads reach the decode at an invoke; 2 one
 *                      output dim differs from the packed header; 3 the output's rank does; 4 the
 *                      output's type does; 5 the packed input is int8, not uint8; 6 the packed
 *                      input is not 1-D; 7 the packed input has no data (external buffers)
 *   control / 48       the arena: 0 ample; 1 the persistent part one byte short of what the
 *                      kernel should take (decode once: the decoded bytes, 16-B aligned, and a
 *                      version 1 tensor's workspace; when that is nothing, too small for the op's
 *                      state); 2 the planned part one byte short (scratch workspace + every-invoke
 *                      output); 3 RequestScratchBufferInArena fails; 4 GetScratchBuffer returns
 *                      NULL; 5 both parts exactly what the kernel should take
 * The output tensor's type and shape come from the packed header, read by the harness itself
 * (not dc_peek); outputs over DC_FUZZ_MAX_OUTPUT get all dims 1 instead (bounds the harness).
 *
 * Properties: no memory error or UB (ASan/UBSan; every arena buffer is its own exact-size
 * allocation); Prepare succeeds exactly when it should by dc_peek / dc_workspace_size / dc_verify
 * (at an invoke) / dc_decode (decode once in Prepare: version 1, or no workspace) of the same
 * bytes into that shape and type, with the options valid and the arena large enough, and each
 * failure reports a non-empty message under 256 characters; after a successful Prepare the kernel
 * took exactly what it should from the arena (decode once: the decoded bytes, as the output's
 * data pointer, plus a version 1 tensor's workspace; one scratch request of dc_workspace_size
 * bytes when it decodes at an invoke; nothing else), so the planner fails exactly when its part
 * is short; after a successful Invoke the output holds exactly dc_decode's bytes (both modes);
 * Invoke succeeds exactly when dc_decode does (and the scratch buffer exists, if one is needed);
 * a second Invoke, after other ops overwrote the planned memory, returns the same status and
 * bytes and (decode once) fetches no scratch buffer; Invoke fails after a failed Prepare; no
 * arena call outside the phase TFLM allows it in; no leak (LeakSanitizer).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dc_codec.h"
#include "huffdecode_tflm.h"
#include "tflm_stand_in.h"

#define DC_FUZZ_NAME "fuzz_tflm"
#include "dc_fuzz.h"

/* Header dtype byte -> TfLiteType (the harness's own table; docs/FORMAT.md §2, §16).  Types the
 * kernel does not decode (bfloat16, the sub-byte ones, float64, the unsigned wide ones) give
 * kDcTflmNoType, which the kernel must refuse. */
static DcTflmType header_type(uint8_t d) {
  switch (d) {
    case 0: return kDcTflmFloat32;
    case 1: return kDcTflmFloat16;
    case 2: return kDcTflmInt32;
    case 3: return kDcTflmUInt8;
    case 4: return kDcTflmInt64;
    case 6: return kDcTflmBool;
    case 7: return kDcTflmInt16;
    case 9: return kDcTflmInt8;
    default: return kDcTflmNoType;
  }
}

static size_t type_size(DcTflmType t) {
  switch (t) {
    case kDcTflmFloat32:
    case kDcTflmInt32: return 4;
    case kDcTflmFloat16:
    case kDcTflmInt16: return 2;
    case kDcTflmInt64: return 8;
    default: return 1;
  }
}

static size_t align16(size_t n) {
  return (n + 15u) & ~(size_t)15u;
}

/* §8: the CRC of every byte but the check field, stored in it (versions >= 2). */
static void fix_crc(uint8_t* buf, size_t size) {
  size_t off;
  uint32_t crc;
  if (size < 8 || buf[4] < 2 || buf[6] > DC_MAX_RANK) return;
  off = 8 + 4 * (size_t)buf[6];
  if (size < off + 4) return;
  crc = dc_crc32(0, buf, off);
  crc = dc_crc32(crc, buf + off + 4, size - off - 4);
  buf[off] = (uint8_t)crc;
  buf[off + 1] = (uint8_t)(crc >> 8);
  buf[off + 2] = (uint8_t)(crc >> 16);
  buf[off + 3] = (uint8_t)(crc >> 24);
}

static DcTflmIntArray* int_array(int n) {
  DcTflmIntArray* a = (DcTflmIntArray*)calloc(1, sizeof(DcTflmIntArray) + sizeof(int) * 10);
  REQUIRE(a != NULL);
  a->size = n;
  return a;
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  DcTflmStandIn* si;
  DcTflmNode node;
  const DcTflmRegistration* reg;
  DcTflmIntArray *in_dims, *out_dims, *node_in, *node_out;
  uint8_t ctl, *vec, *buf, *ref = NULL, *options = NULL;
  size_t psize, options_len = 0, out_bytes, ws = 0, need_tail = 0, need_head = 0, tail0;
  int mode_sel, mismatch, arena, once, bad_options = 0, rank = 1, k, errors;
  int matches = 0, at_invoke = 0, expect_prepare = 0, expect_invoke = 0, ref_ok = 0;
  int shape[DC_MAX_RANK + 1] = {0};
  DcTflmType otype = kDcTflmFloat32;
  dc_tensor_info info;
  DcTflmStatus st, st1, st2;

  if (size < 1) return 0;
  ctl = data[0];
  mode_sel = ctl % 6;
  mismatch = ctl / 6 % 8;
  arena = ctl / 48;
  psize = size - 1;
  /* exact-size constant data, as TFLM hands it: a flatbuffer vector's elements, after its u32
   * little-endian length (which the kernel checks against the input's shape) */
  vec = (uint8_t*)malloc(4 + psize);
  REQUIRE(vec != NULL);
  for (k = 0; k < 4; ++k) vec[k] = (uint8_t)((uint64_t)psize >> (8 * k));
  buf = vec + 4;
  if (psize) memcpy(buf, data + 1, psize);
  if (mismatch == 1) fix_crc(buf, psize);

  /* the custom options (exact-size, as TFLM hands the flatbuffer's bytes) and the mode they give */
  reg = DcTflmHuffDecodeRegistration(mode_sel == 1 || mode_sel == 2 || mode_sel == 5
                                         ? DC_TFLM_DECODE_EACH_INVOKE
                                         : DC_TFLM_DECODE_ONCE);
  once = mode_sel == 0 || mode_sel == 2 || mode_sel == 4;
  if (mode_sel >= 2) {
    options_len = mode_sel == 5 ? 2 : 1;
    options = (uint8_t*)malloc(options_len);
    REQUIRE(options != NULL);
    options[0] = (uint8_t)(mode_sel == 2 ? 0 : mode_sel == 3 ? 1 : 2 + psize % 254);
    if (options_len == 2) options[1] = 0;
    bad_options = mode_sel >= 4;
  }

  /* the output tensor: type and shape from the header bytes when present */
  if (psize >= 8) otype = header_type(buf[5]);
  dc_fuzz_header_shape(buf, psize, &rank, shape);
  if (mismatch == 2) {
    if (rank > 0)
      shape[rank - 1] = shape[rank - 1] == 1 ? 2 : 1;
    else
      shape[rank++] = 1;
  } else if (mismatch == 3) {
    if (rank < DC_MAX_RANK)
      shape[rank++] = 1;
    else
      rank--;
  } else if (mismatch == 4) {
    otype = otype == kDcTflmInt8 ? kDcTflmUInt8 : kDcTflmInt8;
  }
  {
    uint64_t b = type_size(otype);
    for (k = 0; k < rank && b <= DC_FUZZ_MAX_OUTPUT; ++k) b *= (uint64_t)shape[k];
    if (b > DC_FUZZ_MAX_OUTPUT) { /* bounded instead (a mismatch unless every dim is 1) */
      for (k = 0; k < rank; ++k) shape[k] = 1;
      b = type_size(otype);
    }
    out_bytes = (size_t)b;
  }

  /* what Prepare must say, from the decoder's own functions on the same bytes */
  if (mismatch < 5 && dc_peek(buf, psize, &info) == DC_OK && info.rank == (uint32_t)rank &&
      header_type((uint8_t)info.dtype) == otype && otype != kDcTflmNoType) {
    matches = 1;
    for (k = 0; k < rank; ++k)
      if ((uint64_t)shape[k] != info.dims[k]) matches = 0;
  }
  if (matches) {
    REQUIRE(info.output_bytes == out_bytes);
    ref = (uint8_t*)malloc(out_bytes ? out_bytes : 1);
    REQUIRE(ref != NULL);
    ref_ok = dc_decode(buf, psize, ref, out_bytes) == DC_OK;
    if (dc_workspace_size(buf, psize, &ws) == DC_OK) {
      int eff_once = once; /* (bad options fail Prepare before the mode matters) */
      at_invoke = !eff_once || (ws != 0 && info.version >= 2);
      expect_prepare = !bad_options && (!at_invoke || dc_verify(buf, psize) == DC_OK);
      if (eff_once) need_tail = align16(out_bytes) * (out_bytes != 0);
      if (eff_once && !at_invoke) {
        need_tail += align16(ws);
        expect_prepare = expect_prepare && ref_ok;
      }
      if (at_invoke && ws) {
        need_head = ws;
        if (arena == 3) expect_prepare = 0;
      }
      if (!eff_once) need_head += out_bytes;
      if (arena == 1) expect_prepare = 0; /* the persistent part is one byte short (or nothing) */
    } else {
      ws = 0;
    }
  }

  /* the stand-in TFLM: tensors, node, arena */
  si = (DcTflmStandIn*)malloc(sizeof *si);
  REQUIRE(si != NULL);
  dc_si_setup(si);
  in_dims = int_array(1);
  in_dims->data[0] = (int)(psize > 0x7fffffff ? 0x7fffffff : psize);
  if (mismatch == 6) {
    in_dims->size = (psize & 1) ? 2 : 0;
    in_dims->data[1] = 1;
  }
  si->tensors[0].type = mismatch == 5 ? kDcTflmInt8 : kDcTflmUInt8;
  si->tensors[0].dims = in_dims;
  si->tensors[0].data.raw_const = mismatch == 7 ? NULL : buf;
  out_dims = int_array(rank);
  for (k = 0; k < rank; ++k) out_dims->data[k] = shape[k];
  si->tensors[1].type = otype;
  si->tensors[1].dims = out_dims;
  si->tensors[1].data.data = NULL;
  si->out_bytes = out_bytes;
  si->fail_request = arena == 3;
  si->null_scratch = arena == 4;
  node_in = int_array(1);
  node_in->data[0] = 0;
  node_out = int_array(1);
  node_out->data[0] = 1;
  memset(&node, 0, sizeof node);
  node.inputs = node_in;
  node.outputs = node_out;
  node.custom_initial_data = options; /* what TFLM passes to init */
  node.custom_initial_data_size = (int)options_len;

  if (arena == 1 && need_tail == 0) si->tail_limit = 0; /* no room for the op's state */
  node.user_data = dc_si_init_op(si, reg, (const char*)options, options_len);
  REQUIRE((node.user_data == NULL) == (si->tail_limit == 0));
  tail0 = si->tail_used;
  if (arena == 1 && need_tail) si->tail_limit = tail0 + need_tail - 1;
  if (arena == 5) si->tail_limit = tail0 + need_tail;
  if (arena == 2 && need_head) si->head_limit = need_head - 1;
  if (arena == 5) si->head_limit = need_head;

  st = dc_si_prepare(si, reg, &node);
  REQUIRE(si->out_of_phase == 0);
  if (st != kDcTflmOk) {
    REQUIRE(!expect_prepare);
    REQUIRE(si->errors > 0 && si->last_error[0] != '\0');
    REQUIRE(si->tail_used - tail0 <= need_tail);
    REQUIRE(si->scratch_count == 0); /* (the request is Prepare's last step) */
    /* TFLM invokes nothing after a failed AllocateTensors; the kernel must refuse it anyway (the
     * output given memory as a plan would) */
    si->head_limit = (size_t)-1;
    si->fail_request = 0;
    REQUIRE(dc_si_plan(si));
    REQUIRE(dc_si_invoke(si, reg, &node) != kDcTflmOk);
    REQUIRE(dc_si_invoke(si, reg, &node) != kDcTflmOk);
  } else {
    int gets;
    void* out_ptr;
    REQUIRE(expect_prepare);
    /* the arena: exactly what the kernel should take */
    REQUIRE(si->tail_used - tail0 == need_tail);
    REQUIRE(si->scratch_count == (at_invoke && ws != 0));
    REQUIRE(si->scratch_count == 0 || si->scratch_bytes[0] == ws);
    if (once) {
      REQUIRE(out_bytes == 0 || dc_si_is_persistent(si, si->tensors[1].data.data, out_bytes));
    } else {
      REQUIRE(si->tensors[1].data.data == NULL); /* left to the planner */
    }
    if (once && !at_invoke) { /* decoded in Prepare */
      REQUIRE(out_bytes == 0 || memcmp(si->tensors[1].data.data, ref, out_bytes) == 0);
    }
    if (!dc_si_plan(si)) {
      REQUIRE(arena == 2 && need_head > 0); /* AllocateTensors fails in the planner */
      REQUIRE(si->head_used == need_head);
    } else {
      REQUIRE(!(arena == 2 && need_head > 0) && si->head_used == need_head);
      expect_invoke = !at_invoke || (ref_ok && !(ws && arena == 4));
      out_ptr = si->tensors[1].data.data;
      errors = si->errors;
      st1 = dc_si_invoke(si, reg, &node);
      REQUIRE((st1 == kDcTflmOk) == expect_invoke);
      if (st1 == kDcTflmOk) {
        REQUIRE(si->tensors[1].data.data == out_ptr || (out_bytes == 0 && once));
        REQUIRE(out_bytes == 0 || memcmp(si->tensors[1].data.data, ref, out_bytes) == 0);
      } else {
        REQUIRE(si->errors > errors && si->last_error[0] != '\0');
      }
      out_ptr = si->tensors[1].data.data;
      dc_si_clobber_planned(si, 0xE7); /* other ops ran in the planned memory */
      gets = si->scratch_gets;
      st2 = dc_si_invoke(si, reg, &node);
      REQUIRE(st2 == st1 && si->tensors[1].data.data == out_ptr);
      if (st2 == kDcTflmOk) {
        REQUIRE(out_bytes == 0 || memcmp(si->tensors[1].data.data, ref, out_bytes) == 0);
        if (once) REQUIRE(si->scratch_gets == gets); /* decoded once */
      }
      REQUIRE(si->tail_used - tail0 == need_tail); /* nothing allocated by an invoke */
    }
  }
  REQUIRE(si->out_of_phase == 0);
  REQUIRE(si->longest_error < 256); /* TFLM's Cortex-M logger's line (huffdecode_tflm.h) */
  if (reg->free) reg->free(&si->ctx, node.user_data);

  dc_si_release(si);
  free(si);
  free(in_dims);
  free(out_dims);
  free(node_in);
  free(node_out);
  free(options);
  free(ref);
  free(vec);
  return 0;
}
