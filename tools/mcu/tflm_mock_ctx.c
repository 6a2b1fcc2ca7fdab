/*
 * tflm_mock_ctx.c -- drives the HuffDecode TFLM kernel (tflite_kernels/micro/huffdecode_tflm.c)
 * through its registration with a stand-in for TFLM's context, on the host: the calls TFLM makes
 * (init, Prepare, planning, Invoke) in orders the PyPI wheel cannot produce (Prepare twice, before
 * and after the first Invoke), counting what the kernel takes from the arena.  Used by
 * tests/test_micro.py (test_kernel_lifecycle_with_a_stand_in_context).
 *
 *   tflm_mock_ctx MODE PACKED RAW TYPE DIM... [--corrupt] [--persistent-limit BYTES]
 *                 [--shape-bytes N] [--output-const BYTES] [--misalign] [--options BYTE...]
 *
 * MODE: 0 decode once, 1 every invoke (the registration's default; no custom options).  PACKED:
 * a docs/FORMAT.md tensor; RAW: its decoded bytes; TYPE: the TfLiteType of the output.  Prints
 * one "key value" line per fact and exits 0 when every call returned what the line says.  The
 * context is tflite_kernels/fuzz/tflm_stand_in.h's (also driven by fuzz/fuzz_tflm.c).  The packed
 * bytes sit as TFLM hands a constant's data to a kernel: a flatbuffer vector's elements, after its
 * u32 length (in an allocation of exactly 4 + their size, so ASan sees any read past them).
 * --shape-bytes N: the packed input's shape says N bytes (a model edited after packing: the buffer
 * holds PACKED's); --output-const BYTES: the output has data before Prepare, as a constant of the
 * flatbuffer (BYTES of it) has in TFLM; --misalign: the vector one byte off its 4-byte alignment,
 * as in a model array off its own (the allocation one byte longer); --options BYTE...: the op's
 * custom options (each BYTE a decimal number; the rest of the arguments).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "huffdecode_tflm.h"
/* the stand-in context, shared with the libFuzzer harness tflite_kernels/fuzz/fuzz_tflm.c */
#include "../../tflite_kernels/fuzz/tflm_stand_in.h"

static DcTflmStandIn g_si;

static unsigned char* g_out_const; /* --output-const: the output's data before Prepare */
static size_t g_const_bytes;

/* the output holds the raw bytes (memcmp's arguments must not be NULL, even for 0 bytes; a
 * constant output shorter than them cannot) */
static int holds(const void* out, const unsigned char* raw, size_t n) {
  if (out != NULL && out == g_out_const && g_const_bytes < n) return 0;
  return n == 0 || (out != NULL && memcmp(out, raw, n) == 0);
}

/* The file's bytes after `prefix` bytes (filled by the caller), in an allocation of exactly
 * prefix + size bytes (1 if that is 0). */
static unsigned char* read_file(const char* path, size_t prefix, size_t* size) {
  FILE* f = fopen(path, "rb");
  unsigned char* p;
  long n;
  if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
    fprintf(stderr, "cannot read %s\n", path);
    exit(2);
  }
  p = (unsigned char*)malloc(prefix + (size_t)n ? prefix + (size_t)n : 1);
  if (p == NULL || fread(p + prefix, 1, (size_t)n, f) != (size_t)n) exit(2);
  fclose(f);
  *size = (size_t)n;
  return p;
}

int main(int argc, char** argv) {
  DcTflmStandIn* si = &g_si;
  DcTflmNode node;
  const DcTflmRegistration* reg;
  struct {
    int size;
    int data[1];
  } ins = {1, {0}}, outs = {1, {1}};
  DcTflmIntArray* dims;
  unsigned char *vec, *packed, *raw;
  size_t packed_size, raw_size, before, shape_bytes = (size_t)-1;
  int mode, i, rank = 0, corrupt = 0, have_const = 0, misalign = 0, n_options = 0, st;
  char options[8];
  if (argc < 6) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  dc_si_setup(si);
  si->echo = 1;
  mode = atoi(argv[1]);
  for (i = 5; i < argc; ++i) misalign |= strcmp(argv[i], "--misalign") == 0;
  vec = read_file(argv[2], 4 + (size_t)misalign, &packed_size);
  /* a flatbuffer vector: u32 little-endian length, then the bytes */
  packed = vec + 4 + misalign;
  for (i = 0; i < 4; ++i) vec[misalign + i] = (unsigned char)(packed_size >> (8 * i));
  raw = read_file(argv[3], 0, &raw_size);
  dims = (DcTflmIntArray*)malloc(sizeof(DcTflmIntArray) + 8 * sizeof(int));
  si->tail_limit = (size_t)1 << 24;
  for (i = 5; i < argc; ++i) {
    if (strcmp(argv[i], "--corrupt") == 0) {
      corrupt = 1;
    } else if (strcmp(argv[i], "--persistent-limit") == 0 && i + 1 < argc) {
      si->tail_limit = (size_t)strtoul(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--shape-bytes") == 0 && i + 1 < argc) {
      shape_bytes = (size_t)strtoul(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--output-const") == 0 && i + 1 < argc) {
      g_const_bytes = (size_t)strtoul(argv[++i], NULL, 10);
      have_const = 1;
    } else if (strcmp(argv[i], "--misalign") == 0) {
      continue; /* read above */
    } else if (strcmp(argv[i], "--options") == 0) {
      while (++i < argc && n_options < (int)sizeof options)
        options[n_options++] = (char)atoi(argv[i]);
    } else if (rank < 8) {
      dims->data[rank++] = atoi(argv[i]);
    }
  }
  dims->size = rank;
  if (corrupt) packed[packed_size / 2] ^= 0x10;
  {
    static int packed_dims[2];
    packed_dims[0] = 1;
    packed_dims[1] = (int)(shape_bytes == (size_t)-1 ? packed_size : shape_bytes);
    si->tensors[0].data.raw_const = packed;
    si->tensors[0].dims = (DcTflmIntArray*)(void*)packed_dims;
    si->tensors[0].type = kDcTflmUInt8;
  }
  if (have_const) { /* exactly g_const_bytes (1 if 0), filled with a pattern */
    g_out_const = (unsigned char*)malloc(g_const_bytes ? g_const_bytes : 1);
    if (g_out_const == NULL) return 2;
    memset(g_out_const, 0x3C, g_const_bytes);
  }
  si->tensors[1].data.data = g_out_const;
  si->tensors[1].dims = dims;
  si->tensors[1].type = (DcTflmType)atoi(argv[4]);
  si->out_bytes = raw_size; /* every invoke: the planner gives the output memory */
  memset(&node, 0, sizeof node);
  node.inputs = (DcTflmIntArray*)(void*)&ins;
  node.outputs = (DcTflmIntArray*)(void*)&outs;

  reg = DcTflmHuffDecodeRegistration((DcTflmDecodeMode)mode);
  node.user_data = dc_si_init_op(si, reg, n_options ? options : NULL, (size_t)n_options);
  before = si->tail_used; /* the op's state */
  st = dc_si_prepare(si, reg, &node);
  printf("prepare %d\n", st);
  printf("prepare_persistent %zu\n", si->tail_used - before);
  printf("prepare_scratch_requests %d\n", si->scratch_count);
  printf("prepare_scratch_bytes %zu\n", si->scratch_count ? si->scratch_bytes[0] : (size_t)0);
  printf("output_set_by_prepare %d\n", si->tensors[1].data.data != NULL);
  printf("decoded_after_prepare %d\n",
         si->tensors[1].data.data != NULL && holds(si->tensors[1].data.data, raw, raw_size));
  if (st != kDcTflmOk) goto done;
  /* Prepare again before any invoke (its op's state kept): nothing allocated twice */
  before = si->tail_used;
  st = dc_si_prepare(si, reg, &node);
  printf("reprepare_before_invoke %d persistent %zu scratch_requests %d\n", st,
         si->tail_used - before, si->scratch_count);
  dc_si_plan(si);
  for (i = 0; i < 3; ++i) {
    int gets = si->scratch_gets;
    st = dc_si_invoke(si, reg, &node);
    printf("invoke%d %d decoded %d scratch_gets %d\n", i + 1, st,
           holds(si->tensors[1].data.data, raw, raw_size), si->scratch_gets - gets);
    if (i == 1) { /* Prepare again after the op decoded (decode once: keeps the output) */
      void* was = si->tensors[1].data.data;
      int requests = si->scratch_count;
      before = si->tail_used;
      if (mode == DC_TFLM_DECODE_ONCE) si->tensors[1].data.data = NULL; /* as a fresh plan has it */
      st = dc_si_prepare(si, reg, &node);
      printf("reprepare_after_invoke %d persistent %zu scratch_requests %d same_output %d\n", st,
             si->tail_used - before, si->scratch_count - requests,
             mode != DC_TFLM_DECODE_ONCE || si->tensors[1].data.data == was);
      if (si->tensors[1].data.data == NULL) si->tensors[1].data.data = was;
      dc_si_plan(si);
    }
  }
  if (si->out_of_phase) printf("out_of_phase %d\n", si->out_of_phase);
done:
  dc_si_release(si);
  free(dims);
  free(vec);
  free(raw);
  free(g_out_const);
  return 0;
}
