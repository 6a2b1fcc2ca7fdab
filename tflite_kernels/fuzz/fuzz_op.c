/* fuzz_op.c -- libFuzzer harness of the HuffDecode op's Prepare path and of the external
 * delegate's Prepare (huffdecode_op.c), driven through a fake TfLiteContext built from
 * tflite_abi.h, the way a TFLite runtime calls them.
 *
 * Input: byte 0 = control, the rest = the packed input tensor's bytes (its constant data).
 *   control & 3     route: 0 op + ResizeTensorExplicit, 1 op + ResizeTensor (legacy runtime),
 *                   2 external delegate, 3 op whose runtime allocation fails
 *   control & 4     output shape differs from the packed header (one dim + 1, or rank + 1)
 *   control & 8     output type differs from the packed header
 *   control & 16    packed input tensor is not uint8 / not 1-D / not constant (misuse paths)
 * The output tensor's type and shape are otherwise taken from the packed header by the harness
 * itself (not via dc_peek), so the op's own header/tensor comparison is exercised both ways.
 * Outputs larger than DC_FUZZ_MAX_OUTPUT get a mismatching shape instead (bounds the harness).
 *
 * Properties: no memory error or UB (ASan/UBSan); every failure reports a non-empty message;
 * Prepare succeeds iff dc_decode of the same bytes into a tensor of that shape succeeds, and
 * then the output holds exactly dc_decode's bytes; Prepare again is idempotent; Invoke fails
 * after a failed Prepare and succeeds after a good one; no leak (LeakSanitizer).
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dc_codec.h"
#include "tflite_abi.h"

#define DC_FUZZ_NAME "fuzz_op"
#include "dc_fuzz.h"

/* Exported by huffdecode_op.c (no public header declares them: they are entry points). */
const TfLiteRegistration* DcKerasHuffDecodeRegistration(void);
TfLiteDelegate* tflite_plugin_create_delegate(char** keys, char** values, size_t n,
                                              void (*report_error)(const char*));
void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate);

/* ---- fake runtime ---- */
typedef struct {
  TfLiteContext ctx; /* first: the op sees a TfLiteContext* */
  TfLiteTensor tensors[2];
  TfLiteNode node;
  TfLiteRegistration reg;
  int fail_alloc;
  int errors; /* ReportError calls */
  char last_error[600];
  void* owned_data; /* data block allocated by the fake Resize* */
  TfLiteIntArray* owned_dims[4];
  int num_owned_dims;
  int plan_storage[2]; /* TfLiteIntArray {size, data[1]} */
  TfLiteRegistration delegate_kernel;
  int replaced;
} Fake;

static TfLiteIntArray* int_array(int n) {
  TfLiteIntArray* a =
      (TfLiteIntArray*)calloc(1, sizeof(TfLiteIntArray) + sizeof(int) * (size_t)(n ? n : 1));
  REQUIRE(a != NULL);
  a->size = n;
  return a;
}

static void own_dims(Fake* f, TfLiteIntArray* a) {
  REQUIRE(f->num_owned_dims < 4);
  f->owned_dims[f->num_owned_dims++] = a;
}

static void report_error(TfLiteContext* ctx, const char* fmt, ...) {
  Fake* f = (Fake*)ctx;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(f->last_error, sizeof f->last_error, fmt, ap);
  va_end(ap);
  REQUIRE(f->last_error[0] != '\0');
  f->errors++;
}

static size_t type_size(TfLiteType t) {
  switch (t) {
    case kTfLiteFloat32:
    case kTfLiteInt32: return 4;
    case kTfLiteFloat16:
    case kTfLiteInt16: return 2;
    case kTfLiteUInt8:
    case kTfLiteInt8:
    case kTfLiteBool: return 1;
    case kTfLiteUInt32: return 4;
    case kTfLiteUInt16: return 2;
    default: return 8;
  }
}

/* TFLite's ResizeTensorImpl for a persistent tensor: new dims, bytes, and (here) the memory. */
static TfLiteStatus resize_impl(Fake* f, TfLiteTensor* t, int rank, const int* shape) {
  uint64_t bytes = type_size(t->type);
  TfLiteIntArray* dims;
  int k;
  for (k = 0; k < rank; ++k) {
    if (shape[k] < 0) return kTfLiteError;
    bytes *= (uint64_t)shape[k];
    if (bytes > DC_FUZZ_MAX_OUTPUT) return kTfLiteError;
  }
  if (f->fail_alloc) return kTfLiteError;
  dims = int_array(rank);
  for (k = 0; k < rank; ++k) dims->data[k] = shape[k];
  own_dims(f, dims);
  t->dims = dims;
  free(f->owned_data);
  f->owned_data = malloc(bytes ? (size_t)bytes : 1);
  REQUIRE(f->owned_data != NULL);
  t->data.data = f->owned_data;
  t->bytes = (size_t)bytes;
  return kTfLiteOk;
}

static TfLiteStatus resize_explicit(TfLiteContext* ctx, TfLiteTensor* t, int rank,
                                    const int* shape) {
  return resize_impl((Fake*)ctx, t, rank, shape);
}

static TfLiteStatus resize_legacy(TfLiteContext* ctx, TfLiteTensor* t, TfLiteIntArray* shape) {
  Fake* f = (Fake*)ctx;
  TfLiteStatus st = resize_impl(f, t, shape->size, shape->data);
  free(shape); /* TFLite takes ownership of new_size */
  return st;
}

static TfLiteStatus get_plan(TfLiteContext* ctx, TfLiteIntArray** plan) {
  Fake* f = (Fake*)ctx;
  f->plan_storage[0] = 1;
  f->plan_storage[1] = 0;
  *plan = (TfLiteIntArray*)(void*)f->plan_storage;
  return kTfLiteOk;
}

static TfLiteStatus get_node(TfLiteContext* ctx, int index, TfLiteNode** node,
                             TfLiteRegistration** reg) {
  Fake* f = (Fake*)ctx;
  if (index != 0) return kTfLiteError;
  *node = &f->node;
  *reg = &f->reg;
  return kTfLiteOk;
}

static TfLiteStatus replace_nodes(TfLiteContext* ctx, TfLiteRegistration kernel,
                                  const TfLiteIntArray* nodes, TfLiteDelegate* delegate) {
  Fake* f = (Fake*)ctx;
  REQUIRE(nodes->size == 1 && nodes->data[0] == 0);
  REQUIRE(kernel.prepare != NULL && kernel.invoke != NULL);
  f->delegate_kernel = kernel;
  f->node.delegate = delegate;
  f->replaced = 1;
  return kTfLiteOk;
}

/* dtype byte of the packed header -> runtime type (harness's own table).  Types the op does not
 * map (bfloat16, int4, int2, uint4 of format version 2) give kTfLiteNoType, which never matches
 * an output, so the op must refuse them. */
static TfLiteType header_type(uint8_t d) {
  switch (d) {
    case 0: return kTfLiteFloat32;
    case 1: return kTfLiteFloat16;
    case 2: return kTfLiteInt32;
    case 3: return kTfLiteUInt8;
    case 7: return kTfLiteInt16;
    case 9: return kTfLiteInt8;
    case 4: return kTfLiteInt64; /* §16, format version 3 */
    case 6: return kTfLiteBool;
    case 10: return kTfLiteFloat64;
    case 12: return kTfLiteUInt64;
    case 15: return kTfLiteUInt32;
    case 16: return kTfLiteUInt16;
    case 17:
    case 18:
    case 19:
    case 20: return kTfLiteNoType;
    default: return kTfLiteFloat32;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Fake* f;
  uint8_t ctl;
  const uint8_t* packed;
  size_t psize;
  uint8_t* buf;
  int route, rank = 1, k, expect_ok;
  int shape[DC_MAX_RANK + 1] = {0};
  uint64_t out_bytes;
  TfLiteType otype = kTfLiteFloat32;
  TfLiteTensor* in;
  TfLiteTensor* out;
  TfLiteIntArray *in_dims, *out_dims, *node_in, *node_out;
  TfLiteStatus st;
  uint8_t* ref = NULL;
  dc_status ref_status;

  if (size < 1) return 0;
  ctl = data[0];
  packed = data + 1;
  psize = size - 1;
  route = ctl & 3;
  buf = (uint8_t*)malloc(psize ? psize : 1); /* exact-size constant data */
  REQUIRE(buf != NULL);
  if (psize) memcpy(buf, packed, psize);

  /* output tensor type and shape: from the header bytes when present */
  if (psize >= 8) otype = header_type(buf[5]);
  dc_fuzz_header_shape(buf, psize, &rank, shape);
  if (ctl & 8) otype = otype == kTfLiteInt8 ? kTfLiteUInt8 : kTfLiteInt8;
  if (ctl & 4) {
    if (rank > 0 && (ctl & 32))
      shape[rank - 1] = shape[rank - 1] == 1 ? 2 : 1;
    else if (rank < DC_MAX_RANK)
      shape[rank++] = 1;
  }
  out_bytes = type_size(otype);
  for (k = 0; k < rank; ++k) {
    out_bytes *= (uint64_t)shape[k];
    if (out_bytes > DC_FUZZ_MAX_OUTPUT) break;
  }
  if (out_bytes > DC_FUZZ_MAX_OUTPUT) { /* bounded instead (and a mismatch unless all dims are 1) */
    for (k = 0; k < rank; ++k) shape[k] = 1;
    out_bytes = type_size(otype);
  }

  f = (Fake*)calloc(1, sizeof(Fake));
  REQUIRE(f != NULL);
  f->ctx.tensors_size = 2;
  f->ctx.tensors = f->tensors;
  f->ctx.ReportError = report_error;
  f->ctx.ResizeTensor = resize_legacy;
  f->ctx.ResizeTensorExplicit = route == 1 ? NULL : resize_explicit;
  f->ctx.GetExecutionPlan = get_plan;
  f->ctx.GetNodeAndRegistration = get_node;
  f->ctx.ReplaceNodeSubsetsWithDelegateKernels = replace_nodes;
  f->fail_alloc = route == 3;

  in = &f->tensors[0];
  out = &f->tensors[1];
  in_dims = int_array(1);
  in_dims->data[0] = (int)(psize > 0x7fffffff ? 0x7fffffff : psize);
  in->type = kTfLiteUInt8;
  in->dims = in_dims;
  in->data.raw_const = buf;
  in->bytes = psize;
  in->allocation_type = kTfLiteMmapRo;
  in->name = "w/dc_packed";
  if (ctl & 16) {
    switch ((ctl >> 6) & 3) {
      case 0: in->type = kTfLiteInt8; break;
      case 1: in_dims->size = 0; break;
      case 2: in->allocation_type = kTfLiteArenaRw; break;
      default: in->bytes = psize + 1; break;
    }
  }
  out_dims = int_array(rank);
  for (k = 0; k < rank; ++k) out_dims->data[k] = shape[k];
  out->type = otype;
  out->dims = out_dims;
  out->bytes = (size_t)out_bytes;
  out->allocation_type = kTfLiteArenaRw;
  out->name = "w";

  node_in = int_array(1);
  node_in->data[0] = 0;
  node_out = int_array(1);
  node_out->data[0] = 1;
  f->node.inputs = node_in;
  f->node.outputs = node_out;

  /* reference: what dc_decode says about these bytes for an output of this shape */
  {
    dc_tensor_info info;
    int matches = !(ctl & 16);
    ref_status = dc_peek(buf, psize, &info);
    if (ref_status == DC_OK && (uint32_t)rank == info.rank) {
      for (k = 0; k < rank; ++k)
        if ((uint64_t)shape[k] != info.dims[k]) matches = 0;
    } else {
      matches = 0;
    }
    if (matches && (header_type((uint8_t)info.dtype) != otype || otype == kTfLiteNoType))
      matches = 0;
    if (matches) {
      ref = (uint8_t*)malloc(info.output_bytes ? (size_t)info.output_bytes : 1);
      REQUIRE(ref != NULL);
      ref_status = dc_decode(buf, psize, ref, (size_t)info.output_bytes);
    }
    expect_ok = matches && ref_status == DC_OK && route != 3;
  }

  if (route != 2) {
    const TfLiteRegistration* reg = DcKerasHuffDecodeRegistration();
    REQUIRE(reg && reg->prepare && reg->invoke && reg->init && reg->free);
    f->node.user_data = reg->init(&f->ctx, NULL, 0);
    st = reg->prepare(&f->ctx, &f->node);
    if (st == kTfLiteOk) {
      REQUIRE(expect_ok);
      REQUIRE(out->data.data != NULL && out->bytes == out_bytes);
      REQUIRE(out_bytes == 0 || memcmp(out->data.data, ref, (size_t)out_bytes) == 0);
      REQUIRE(reg->prepare(&f->ctx, &f->node) == kTfLiteOk); /* idempotent */
      REQUIRE(reg->invoke(&f->ctx, &f->node) == kTfLiteOk);
    } else {
      REQUIRE(!expect_ok);
      REQUIRE(f->errors > 0);
      REQUIRE(reg->invoke(&f->ctx, &f->node) != kTfLiteOk);
    }
    reg->free(&f->ctx, f->node.user_data);
  } else {
    TfLiteDelegate* d = tflite_plugin_create_delegate(NULL, NULL, 0, NULL);
    REQUIRE(d != NULL && d->Prepare != NULL);
    f->reg.builtin_code = kTfLiteBuiltinCustom;
    f->reg.custom_name = "HuffDecode";
    st = d->Prepare(&f->ctx, d);
    REQUIRE(st == kTfLiteOk);
    REQUIRE(f->replaced);
    {
      void* ud = f->delegate_kernel.init ? f->delegate_kernel.init(&f->ctx, NULL, 0) : NULL;
      f->node.user_data = ud;
      st = f->delegate_kernel.prepare(&f->ctx, &f->node);
      if (st == kTfLiteOk) {
        REQUIRE(expect_ok);
        REQUIRE(out->data.data != NULL && out->allocation_type == kTfLiteMmapRo);
        REQUIRE(out_bytes == 0 || memcmp(out->data.data, ref, (size_t)out_bytes) == 0);
        REQUIRE(f->delegate_kernel.invoke(&f->ctx, &f->node) == kTfLiteOk);
      } else {
        REQUIRE(!expect_ok);
        REQUIRE(f->errors > 0);
      }
      if (f->delegate_kernel.free) f->delegate_kernel.free(&f->ctx, ud);
    }
    tflite_plugin_destroy_delegate(d);
  }

  free(ref);
  for (k = 0; k < f->num_owned_dims; ++k) free(f->owned_dims[k]);
  free(f->owned_data);
  free(in_dims);
  free(out_dims);
  free(node_in);
  free(node_out);
  free(f);
  free(buf);
  return 0;
}
