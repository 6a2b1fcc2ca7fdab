/*
 * tflm_mock_ctx.c -- drives the HuffDecode TFLM kernel (tflite_kernels/micro/huffdecode_tflm.c)
 * through its registration with a stand-in for TFLM's context, on the host: the calls TFLM makes
 * (init, Prepare, planning, Invoke) in orders the PyPI wheel cannot produce (Prepare twice, before
 * and after the first Invoke), counting what the kernel takes from the arena.  Used by
 * tests/test_micro.py (test_kernel_lifecycle_with_a_stand_in_context).
 *
 *   tflm_mock_ctx MODE PACKED RAW TYPE DIM... [--corrupt] [--persistent-limit BYTES]
 *
 * MODE: 0 decode once, 1 every invoke (the registration's default; no custom options).  PACKED:
 * a docs/FORMAT.md tensor; RAW: its decoded bytes; TYPE: the TfLiteType of the output.  Prints
 * one "key value" line per fact and exits 0 when every call returned what the line says.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "huffdecode_tflm.h"

#define MAX_SCRATCH 8
static unsigned char* g_tail_base;
static size_t g_tail_used, g_tail_limit;
static size_t g_scratch_bytes[MAX_SCRATCH];
static void* g_scratch[MAX_SCRATCH];
static int g_scratch_count, g_scratch_gets, g_planned;
static DcTflmEvalTensor g_tensors[2];

static void report(struct DcTflmContext* ctx, const char* fmt, ...) {
  va_list ap;
  (void)ctx;
  va_start(ap, fmt);
  printf("log ");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
}

static void* persistent(struct DcTflmContext* ctx, size_t bytes) {
  size_t aligned = (bytes + 15u) & ~(size_t)15u;
  (void)ctx;
  if (g_tail_used + aligned > g_tail_limit) return NULL;
  g_tail_used += aligned;
  return g_tail_base + g_tail_used - aligned;
}

static DcTflmStatus request_scratch(struct DcTflmContext* ctx, size_t bytes, int* idx) {
  (void)ctx;
  if (g_planned || g_scratch_count == MAX_SCRATCH) return kDcTflmError; /* Prepare only */
  g_scratch_bytes[g_scratch_count] = bytes;
  *idx = g_scratch_count++;
  return kDcTflmOk;
}

static void* get_scratch(struct DcTflmContext* ctx, int idx) {
  (void)ctx;
  g_scratch_gets++;
  return g_planned && idx >= 0 && idx < g_scratch_count ? g_scratch[idx] : NULL;
}

static DcTflmEvalTensor* get_eval(const struct DcTflmContext* ctx, int idx) {
  (void)ctx;
  return idx >= 0 && idx < 2 ? &g_tensors[idx] : NULL;
}

/* TFLM's planner: scratch buffers (garbage-filled, as planned memory is) exist after Prepare. */
static void plan(void) {
  int i;
  for (i = 0; i < g_scratch_count; ++i) {
    if (g_scratch[i] == NULL) {
      g_scratch[i] = malloc(g_scratch_bytes[i]);
      memset(g_scratch[i], 0xA5, g_scratch_bytes[i]);
    }
  }
  g_planned = 1;
}

static unsigned char* read_file(const char* path, size_t* size) {
  FILE* f = fopen(path, "rb");
  unsigned char* p;
  long n;
  if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
    fprintf(stderr, "cannot read %s\n", path);
    exit(2);
  }
  p = (unsigned char*)malloc((size_t)n + 1);
  if (fread(p, 1, (size_t)n, f) != (size_t)n) exit(2);
  fclose(f);
  *size = (size_t)n;
  return p;
}

int main(int argc, char** argv) {
  DcTflmContext ctx;
  DcTflmNode node;
  const DcTflmRegistration* reg;
  struct {
    int size;
    int data[1];
  } ins = {1, {0}}, outs = {1, {1}};
  DcTflmIntArray* dims;
  unsigned char *packed, *raw, *out = NULL;
  size_t packed_size, raw_size, before;
  int mode, i, rank = 0, corrupt = 0, st;
  if (argc < 6) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  mode = atoi(argv[1]);
  packed = read_file(argv[2], &packed_size);
  raw = read_file(argv[3], &raw_size);
  dims = (DcTflmIntArray*)malloc(sizeof(DcTflmIntArray) + 8 * sizeof(int));
  g_tail_limit = (size_t)1 << 24;
  for (i = 5; i < argc; ++i) {
    if (strcmp(argv[i], "--corrupt") == 0) {
      corrupt = 1;
    } else if (strcmp(argv[i], "--persistent-limit") == 0 && i + 1 < argc) {
      g_tail_limit = (size_t)strtoul(argv[++i], NULL, 10);
    } else if (rank < 8) {
      dims->data[rank++] = atoi(argv[i]);
    }
  }
  dims->size = rank;
  if (corrupt) packed[packed_size / 2] ^= 0x10;
  g_tail_base = (unsigned char*)malloc((size_t)1 << 24);
  memset(&ctx, 0, sizeof ctx);
  ctx.ReportError = report;
  ctx.AllocatePersistentBuffer = persistent;
  ctx.RequestScratchBufferInArena = request_scratch;
  ctx.GetScratchBuffer = get_scratch;
  ctx.GetEvalTensor = get_eval;
  {
    static int packed_dims[2];
    packed_dims[0] = 1;
    packed_dims[1] = (int)packed_size;
    g_tensors[0].data.raw_const = packed;
    g_tensors[0].dims = (DcTflmIntArray*)(void*)packed_dims;
    g_tensors[0].type = kDcTflmUInt8;
  }
  g_tensors[1].data.data = NULL;
  g_tensors[1].dims = dims;
  g_tensors[1].type = (DcTflmType)atoi(argv[4]);
  memset(&node, 0, sizeof node);
  node.inputs = (DcTflmIntArray*)(void*)&ins;
  node.outputs = (DcTflmIntArray*)(void*)&outs;

  reg = DcTflmHuffDecodeRegistration((DcTflmDecodeMode)mode);
  node.user_data = reg->init(&ctx, NULL, 0);
  before = g_tail_used; /* the op's state */
  st = reg->prepare(&ctx, &node);
  printf("prepare %d\n", st);
  printf("prepare_persistent %zu\n", g_tail_used - before);
  printf("prepare_scratch_requests %d\n", g_scratch_count);
  printf("prepare_scratch_bytes %zu\n", g_scratch_count ? g_scratch_bytes[0] : (size_t)0);
  printf("output_set_by_prepare %d\n", g_tensors[1].data.data != NULL);
  printf("decoded_after_prepare %d\n",
         g_tensors[1].data.data != NULL && memcmp(g_tensors[1].data.data, raw, raw_size) == 0);
  if (st != kDcTflmOk) goto done;
  /* Prepare again before any invoke (its op's state kept): nothing allocated twice */
  before = g_tail_used;
  st = reg->prepare(&ctx, &node);
  printf("reprepare_before_invoke %d persistent %zu scratch_requests %d\n", st,
         g_tail_used - before, g_scratch_count);
  plan();
  if (g_tensors[1].data.data == NULL) { /* every invoke: the planner gives the output memory */
    out = (unsigned char*)malloc(raw_size ? raw_size : 1);
    memset(out, 0x5A, raw_size);
    g_tensors[1].data.data = out;
  }
  for (i = 0; i < 3; ++i) {
    int gets = g_scratch_gets;
    st = reg->invoke(&ctx, &node);
    printf("invoke%d %d decoded %d scratch_gets %d\n", i + 1, st,
           memcmp(g_tensors[1].data.data, raw, raw_size) == 0, g_scratch_gets - gets);
    if (i == 1) { /* Prepare again after the op decoded (decode once: keeps the output) */
      void* was = g_tensors[1].data.data;
      int requests = g_scratch_count;
      before = g_tail_used;
      g_planned = 0;
      if (mode == DC_TFLM_DECODE_ONCE) g_tensors[1].data.data = NULL; /* as a fresh plan has it */
      st = reg->prepare(&ctx, &node);
      printf("reprepare_after_invoke %d persistent %zu scratch_requests %d same_output %d\n", st,
             g_tail_used - before, g_scratch_count - requests,
             mode != DC_TFLM_DECODE_ONCE || g_tensors[1].data.data == was);
      plan();
      if (g_tensors[1].data.data == NULL) g_tensors[1].data.data = was;
    }
  }
done:
  for (i = 0; i < g_scratch_count; ++i) free(g_scratch[i]);
  free(out);
  free(dims);
  free(packed);
  free(raw);
  free(g_tail_base);
  return 0;
}
