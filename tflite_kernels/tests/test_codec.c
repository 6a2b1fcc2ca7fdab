/* test_codec.c -- C tests of the packed-tensor decoder (docs/FORMAT.md, dc_codec.h).
 *
 * Vectors in codec_vectors.h come from the numpy encoder (gen_codec_vectors.py, format version
 * 2, every layout and dtype); codec_vectors_v1.h holds frozen version 1 files (§10: they must
 * decode forever).  Every
 * malformed buffer is decoded from an exact-size heap copy, so a sanitizer or valgrind build
 * (make CFLAGS="-fsanitize=address,undefined -g" BUILD=build-asan test) sees any overread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_vectors.h"
#include "codec_vectors_v1.h"
#include "dc_codec.h"
#include "dc_test_pack.h"

static int passed, failed;

#define CHECK(cond, ...)                                     \
  do {                                                       \
    if (cond) {                                              \
      passed++;                                              \
    } else {                                                 \
      failed++;                                              \
      printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      printf(__VA_ARGS__);                                   \
      printf("\n");                                          \
    }                                                        \
  } while (0)

#define NVEC2 (sizeof codec_vectors / sizeof codec_vectors[0])
#define NVEC1 (sizeof codec_vectors_v1 / sizeof codec_vectors_v1[0])
#define NVEC (NVEC1 + NVEC2)

/* Vector v of both sets: the version 1 files first. */
static const codec_vector* vec(size_t v) {
  return v < NVEC1 ? &codec_vectors_v1[v] : &codec_vectors[v - NVEC1];
}

/* Decodes a heap copy of exactly `size` bytes; returns the status. */
static dc_status decode_copy(const uint8_t* src, size_t size, uint8_t** out_p, size_t* out_size) {
  uint8_t* buf = (uint8_t*)malloc(size ? size : 1);
  dc_tensor_info info;
  dc_status st;
  memcpy(buf, src, size);
  *out_p = NULL;
  *out_size = 0;
  st = dc_peek(buf, size, &info);
  if (st == DC_OK) {
    /* A caller decoding untrusted bytes caps the output (FORMAT.md §9: only zero-bit codes
     * let a few bytes declare a large tensor); 16 MB is 20x the largest vector here. */
    uint8_t* out = NULL;
    if (info.output_bytes > (16u << 20) ||
        (out = (uint8_t*)malloc(info.output_bytes ? (size_t)info.output_bytes : 1)) == NULL) {
      free(buf);
      return DC_ERR_OUTPUT_SIZE;
    }
    st = dc_decode(buf, size, out, (size_t)info.output_bytes);
    *out_p = out;
    *out_size = (size_t)info.output_bytes;
  }
  free(buf);
  return st;
}

/* §16: the dtypes format version 3 added. */
static int is_v3_dtype(uint32_t dtype) {
  return dtype == DC_DTYPE_INT64 || dtype == DC_DTYPE_BOOL || dtype == DC_DTYPE_FLOAT64 ||
         dtype == DC_DTYPE_UINT64 || dtype == DC_DTYPE_UINT32 || dtype == DC_DTYPE_UINT16;
}

/* Build options (dc_codec.h): which DC_CODEC_NO_* option of this build leaves out vector t's type
 * or layout (index into OPTIONS), -1 if none does. */
static const char* const OPTIONS[] = {"DC_CODEC_NO_64BIT",        "DC_CODEC_NO_SUBBYTE",
                                      "DC_CODEC_NO_GROUPED",      "DC_CODEC_NO_FLOAT_PLANES",
                                      "DC_CODEC_NO_CONTEXT",      "DC_CODEC_NO_INT_PLANES",
                                      "DC_CODEC_NO_SPARSE_PLANES"};
#define NOPTIONS (sizeof OPTIONS / sizeof OPTIONS[0])
static const int OPTION_SET[NOPTIONS] = {
#ifdef DC_CODEC_NO_64BIT
    1,
#else
    0,
#endif
#ifdef DC_CODEC_NO_SUBBYTE
    1,
#else
    0,
#endif
#ifdef DC_CODEC_NO_GROUPED
    1,
#else
    0,
#endif
#ifdef DC_CODEC_NO_FLOAT_PLANES
    1,
#else
    0,
#endif
#ifdef DC_CODEC_NO_CONTEXT
    1,
#else
    0,
#endif
#ifdef DC_CODEC_NO_INT_PLANES
    1,
#else
    0,
#endif
#ifdef DC_CODEC_NO_SPARSE_PLANES
    1,
#else
    0,
#endif
};
static int left_out_by(const codec_vector* t) {
  const uint32_t d = t->dtype, l = t->layout;
  const int need[NOPTIONS] = {d == DC_DTYPE_INT64 || d == DC_DTYPE_UINT64 || d == DC_DTYPE_FLOAT64,
                              d == DC_DTYPE_INT4 || d == DC_DTYPE_INT2 || d == DC_DTYPE_UINT4,
                              l == DC_LAYOUT_GROUPED_DENSE || l == DC_LAYOUT_GROUPED_SPARSE,
                              l == DC_LAYOUT_FLOAT_PLANES,
                              l == DC_LAYOUT_CONTEXT_SPARSE,
                              l == DC_LAYOUT_INT_PLANES,
                              l == DC_LAYOUT_SPARSE_PLANES};
  size_t o;
  for (o = 0; o < NOPTIONS; ++o)
    if (need[o] && OPTION_SET[o]) return (int)o;
  return -1;
}

/* A vector this build left out: every entry point refuses it with DC_ERR_UNSUPPORTED, whose
 * message names the option. */
static void check_left_out(const codec_vector* t, int option) {
  dc_tensor_info info;
  size_t ws = 0;
  uint8_t* out = (uint8_t*)malloc(t->raw_size + 1);
  uint8_t* wbuf = (uint8_t*)malloc(DC_MAX_WORKSPACE);
  dc_status st = dc_peek(t->packed, t->packed_size, &info);
  CHECK(st == DC_ERR_UNSUPPORTED, "%s (%s): peek %s", t->name, OPTIONS[option], dc_strerror(st));
  CHECK(dc_verify(t->packed, t->packed_size) == DC_ERR_UNSUPPORTED, "%s: verify", t->name);
  CHECK(dc_workspace_size(t->packed, t->packed_size, &ws) == DC_ERR_UNSUPPORTED && ws == 0,
        "%s: workspace size", t->name);
  st = dc_decode(t->packed, t->packed_size, out, t->raw_size);
  CHECK(st == DC_ERR_UNSUPPORTED, "%s: decode %s", t->name, dc_strerror(st));
  st = dc_decode_ws(t->packed, t->packed_size, out, t->raw_size, wbuf, DC_MAX_WORKSPACE);
  CHECK(st == DC_ERR_UNSUPPORTED, "%s: decode_ws %s", t->name, dc_strerror(st));
#ifdef DC_CODEC_MINIMAL
  CHECK(strstr(dc_strerror(st), "DC_CODEC_MINIMAL") != NULL, "%s: message '%s' names the option",
        t->name, dc_strerror(st));
#else
  CHECK(strstr(dc_strerror(st), OPTIONS[option]) != NULL, "%s: message '%s' names %s", t->name,
        dc_strerror(st), OPTIONS[option]);
#endif
  free(wbuf);
  free(out);
}

static void test_vectors(void) {
  size_t v, o;
  int refused[NOPTIONS] = {0};
  for (v = 0; v < NVEC; ++v) {
    const codec_vector* t = vec(v);
    dc_tensor_info info;
    uint8_t* out;
    size_t out_size;
    uint32_t r;
    dc_status st;
    const int option = left_out_by(t);
    if (option >= 0) {
      check_left_out(t, option);
      refused[option]++;
      continue;
    }
    st = dc_peek(t->packed, t->packed_size, &info);
    CHECK(st == DC_OK, "%s: peek %s", t->name, dc_strerror(st));
    CHECK(info.dtype == t->dtype && info.rank == t->rank && info.output_bytes == t->raw_size,
          "%s: info", t->name);
    for (r = 0; r < t->rank; ++r) CHECK(info.dims[r] == t->dims[r], "%s: dim %u", t->name, r);
    st = decode_copy(t->packed, t->packed_size, &out, &out_size);
    CHECK(st == DC_OK, "%s: decode %s", t->name, dc_strerror(st));
    CHECK(st != DC_OK || (out_size == t->raw_size && memcmp(out, t->raw, t->raw_size) == 0),
          "%s: content differs", t->name);
    free(out);
    /* output buffer of the wrong size, and into an unaligned buffer */
    {
      uint8_t* big = (uint8_t*)malloc(t->raw_size + 9);
      CHECK(dc_decode(t->packed, t->packed_size, big, t->raw_size + 1) == DC_ERR_OUTPUT_SIZE,
            "%s: wrong out size accepted", t->name);
      if (t->raw_size)
        CHECK(dc_decode(t->packed, t->packed_size, big, t->raw_size - 1) == DC_ERR_OUTPUT_SIZE,
              "%s: short out size accepted", t->name);
      st = dc_decode(t->packed, t->packed_size, big + 1, t->raw_size);
      CHECK(st == DC_OK && memcmp(big + 1, t->raw, t->raw_size) == 0, "%s: unaligned out", t->name);
      free(big);
    }
    CHECK(info.version == (v < NVEC1                              ? 1u
                           : t->layout == DC_LAYOUT_SPARSE_PLANES ? 5u
                           : t->layout == DC_LAYOUT_INT_PLANES    ? 4u
                           : is_v3_dtype(t->dtype)                ? 3u
                                                                  : 2u) &&
              info.layout == t->layout,
          "%s: version/layout", t->name);
    /* dc_decode_ws with exactly dc_workspace_size() bytes at an odd address, and one byte less */
    {
      size_t ws = 0;
      uint8_t* wbuf;
      uint8_t* o2 = (uint8_t*)malloc(t->raw_size + 1);
      st = dc_workspace_size(t->packed, t->packed_size, &ws);
      CHECK(st == DC_OK && ws <= DC_MAX_WORKSPACE, "%s: workspace size %zu", t->name, ws);
      wbuf = (uint8_t*)malloc(ws + 1);
      st = dc_decode_ws(t->packed, t->packed_size, o2, t->raw_size, wbuf + 1, ws);
      CHECK(st == DC_OK && memcmp(o2, t->raw, t->raw_size) == 0, "%s: decode_ws %s", t->name,
            dc_strerror(st));
      if (info.num_elements)
        CHECK(dc_decode_ws(t->packed, t->packed_size, o2, t->raw_size, wbuf + 1, ws - 1) ==
                  DC_ERR_WORKSPACE,
              "%s: short workspace accepted", t->name);
      free(wbuf);
      free(o2);
    }
  }
  /* each option of this build refused some vector (the vectors have every type and layout) */
  for (o = 0; o < NOPTIONS; ++o)
    if (OPTION_SET[o]) CHECK(refused[o] > 0, "%s left out nothing of the vectors", OPTIONS[o]);
}

/* Packed bytes at every address modulo 4 (FORMAT.md §1: any byte offset), as in a flatbuffer
 * mapped from flash, decoded on the default, portable (Cortex-M's) and portable-spread paths
 * into an output and workspace at other odd offsets: same bytes, and the input is never written
 * (it may be const flash).  A typed load through a misaligned pointer, which faults on Cortex-M0,
 * is what UBSan's alignment check (make test-sanitize) reports here on the host. */
static void test_unaligned_input(void) {
  static const int simd[3] = {1, 0, 1}, portable[3] = {1, 0, 2};
  size_t v, off;
  int m;
  for (v = 0; v < NVEC; ++v) {
    const codec_vector* t = vec(v);
    uint8_t *buf, *out;
    if (left_out_by(t) >= 0) continue; /* refused by this build: test_vectors checks that */
    buf = (uint8_t*)malloc(t->packed_size + 4);
    out = (uint8_t*)malloc(t->raw_size + 4);
    for (off = 1; off < 4; ++off) {
      uint8_t* in = buf + off;
      size_t ws_size = 0;
      uint8_t* ws;
      dc_tensor_info info;
      dc_status st;
      memcpy(in, t->packed, t->packed_size);
      CHECK(dc_peek(in, t->packed_size, &info) == DC_OK && dc_verify(in, t->packed_size) == DC_OK &&
                dc_workspace_size(in, t->packed_size, &ws_size) == DC_OK,
            "%s: input at offset %zu: header", t->name, off);
      ws = (uint8_t*)malloc(ws_size + 4);
      for (m = 0; m < 3; ++m) {
        const int was = dc_codec_use_simd(simd[m]), was_p = dc_codec_portable_fast(portable[m]);
        st = dc_decode_ws(in, t->packed_size, out + 4 - off, t->raw_size, ws + off, ws_size);
        dc_codec_use_simd(was);
        dc_codec_portable_fast(was_p);
        CHECK(st == DC_OK && memcmp(out + 4 - off, t->raw, t->raw_size) == 0,
              "%s: input at offset %zu, path %d: %s / bytes differ", t->name, off, m,
              dc_strerror(st));
      }
      CHECK(memcmp(in, t->packed, t->packed_size) == 0, "%s: input at offset %zu was written",
            t->name, off);
      free(ws);
    }
    free(out);
    free(buf);
  }
}

/* Every truncation fails; every single-bit flip fails (never crashes, never decodes). */
static void test_truncations_and_flips(void) {
  size_t v, i;
  int b;
  for (v = 0; v < NVEC; ++v) {
    const codec_vector* t = vec(v);
    uint8_t* copy = (uint8_t*)malloc(t->packed_size);
    int trunc_ok = 1, flip_ok = 1;
    for (i = 0; i < t->packed_size; ++i) {
      uint8_t* out;
      size_t out_size;
      dc_status st = decode_copy(t->packed, i, &out, &out_size);
      free(out);
      if (st == DC_OK) {
        trunc_ok = 0;
        printf("  %s: truncation to %zu bytes decoded\n", t->name, i);
      }
    }
    CHECK(trunc_ok, "%s: every truncation must fail", t->name);
    /* flips: all bits of small vectors, every 7th bit of bigger ones */
    for (i = 0; i < t->packed_size; ++i) {
      for (b = 0; b < 8; ++b) {
        uint8_t* out;
        size_t out_size;
        dc_status st;
        if (t->packed_size > 2000 && (i * 8 + b) % 7 != 0) continue;
        memcpy(copy, t->packed, t->packed_size);
        copy[i] ^= (uint8_t)(1u << b);
        st = decode_copy(copy, t->packed_size, &out, &out_size);
        free(out);
        if (st == DC_OK) {
          flip_ok = 0;
          printf("  %s: flip of byte %zu bit %d decoded\n", t->name, i, b);
        }
      }
    }
    CHECK(flip_ok, "%s: every bit flip must fail", t->name);
    free(copy);
  }
}

/* Random garbage after a valid prefix: must not crash (any status is fine). */
static void test_random_garbage(void) {
  uint32_t x = 12345;
  size_t v, round;
  int crashes_would_show = 1;
  for (v = 0; v < NVEC; ++v) {
    const codec_vector* t = vec(v);
    uint8_t* copy = (uint8_t*)malloc(t->packed_size + 64);
    for (round = 0; round < 200; ++round) {
      size_t keep = round % (t->packed_size + 1), len = t->packed_size + (round % 3) * 16, i;
      uint8_t* out;
      size_t out_size;
      memcpy(copy, t->packed, keep);
      for (i = keep; i < len; ++i) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        copy[i] = (uint8_t)x;
      }
      (void)decode_copy(copy, len, &out, &out_size);
      free(out);
    }
    free(copy);
  }
  CHECK(crashes_would_show, "random garbage");
}

/* Hand-made hostile headers (§2, §9): rejected by dc_peek before any work. */
static void test_hostile_headers(void) {
  uint8_t h[64];
  dc_tensor_info info;
  memset(h, 0, sizeof h);
  memcpy(h, "DCHF", 4);
  h[4] = 1;
  h[5] = DC_DTYPE_FLOAT32;
  h[6] = 2;
  h[7] = 0;
  dc_test_put32(h + 8, 0xFFFFFFFFu);
  dc_test_put32(h + 12, 0xFFFFFFFFu);
  CHECK(dc_peek(h, sizeof h, &info) == DC_ERR_SHAPE, "2^64 elements");
  dc_test_put32(h + 8, 65536);
  dc_test_put32(h + 12, 32768);
  CHECK(dc_peek(h, sizeof h, &info) == DC_ERR_SHAPE, "2^31 elements");
  h[6] = 9;
  CHECK(dc_peek(h, sizeof h, &info) == DC_ERR_SHAPE, "rank 9");
  h[6] = 2;
  h[5] = 4;
  CHECK(dc_peek(h, sizeof h, &info) == DC_ERR_DTYPE, "dtype 4 (string)");
  h[5] = DC_DTYPE_FLOAT32;
  h[4] = DC_VERSION_MAX + 1;
  CHECK(dc_peek(h, sizeof h, &info) == DC_ERR_VERSION, "version %u", h[4]);
  h[4] = 0;
  CHECK(dc_peek(h, sizeof h, &info) == DC_ERR_VERSION, "version 0");
  h[4] = 1;
  h[7] = 2;
  CHECK(dc_peek(h, sizeof h, &info) == DC_ERR_LAYOUT, "layout 2 in version 1");
  h[7] = 4;
  CHECK(dc_peek(h, sizeof h, &info) == DC_ERR_LAYOUT, "layout 4 in version 1");
  h[7] = 0;
  h[5] = DC_DTYPE_INT4;
  CHECK(dc_peek(h, sizeof h, &info) == DC_ERR_DTYPE, "int4 in version 1");
  h[5] = DC_DTYPE_BFLOAT16;
  CHECK(dc_peek(h, sizeof h, &info) == DC_ERR_DTYPE, "bfloat16 in version 1");
  h[4] = 2;
  h[7] = 6;
  CHECK(dc_peek(h, sizeof h, &info) == DC_ERR_LAYOUT, "layout 6 in version 2");
  h[5] = DC_DTYPE_FLOAT32;
  h[7] = DC_LAYOUT_SPARSE_PLANES; /* §10: layout 7 needs version 5 */
  for (h[4] = 1; h[4] < 5; ++h[4])
    CHECK(dc_peek(h, sizeof h, &info) == DC_ERR_LAYOUT, "layout 7 in version %u", h[4]);
  h[4] = 5;
  h[7] = 8;
  CHECK(dc_peek(h, sizeof h, &info) == DC_ERR_LAYOUT, "layout 8 in version 5");
  h[7] = DC_LAYOUT_SPARSE_PLANES; /* §18: float32, float16, bfloat16 only */
  {
    static const uint8_t not_float[] = {DC_DTYPE_INT8,  DC_DTYPE_INT16,   DC_DTYPE_INT32,
                                        DC_DTYPE_UINT8, DC_DTYPE_FLOAT64, DC_DTYPE_INT4};
    size_t k;
    for (k = 0; k < sizeof not_float; ++k) {
      h[5] = not_float[k];
      CHECK(dc_peek(h, sizeof h, &info) == DC_ERR_LAYOUT, "sparse planes of dtype %u", h[5]);
    }
  }
  h[4] = 1;
  h[5] = DC_DTYPE_FLOAT32;
  h[7] = DC_LAYOUT_CONTEXT_SPARSE;
  CHECK(dc_peek(h, sizeof h, &info) == DC_ERR_LAYOUT, "layout 5 in version 1");
  h[4] = 2;
  h[5] = DC_DTYPE_INT4;
  CHECK(dc_peek(h, sizeof h, &info) == DC_ERR_LAYOUT, "context sparse int4");
  h[5] = DC_DTYPE_INT4;
  h[7] = DC_LAYOUT_GROUPED_DENSE;
  CHECK(dc_peek(h, sizeof h, &info) == DC_ERR_LAYOUT, "grouped int4");
  h[5] = DC_DTYPE_INT8;
  h[7] = DC_LAYOUT_FLOAT_PLANES;
  CHECK(dc_peek(h, sizeof h, &info) == DC_ERR_LAYOUT, "float planes of int8");
  /* §16: the version 3 dtypes need version 3, and their layout rules */
  h[7] = 0;
  {
    static const uint8_t v3types[] = {DC_DTYPE_INT64,  DC_DTYPE_BOOL,   DC_DTYPE_FLOAT64,
                                      DC_DTYPE_UINT64, DC_DTYPE_UINT32, DC_DTYPE_UINT16};
    size_t k;
    for (k = 0; k < sizeof v3types; ++k) {
      h[5] = v3types[k];
      h[4] = 2;
      CHECK(dc_peek(h, sizeof h, &info) == DC_ERR_DTYPE, "v3 dtype %u in version 2", h[5]);
      h[4] = 1;
      CHECK(dc_peek(h, sizeof h, &info) == DC_ERR_DTYPE, "v3 dtype %u in version 1", h[5]);
      h[4] = 3;
      h[7] = DC_LAYOUT_FLOAT_PLANES;
      CHECK(dc_peek(h, sizeof h, &info) == DC_ERR_LAYOUT, "float planes of v3 dtype %u", h[5]);
      h[7] = DC_LAYOUT_GROUPED_SPARSE;
      CHECK((dc_peek(h, sizeof h, &info) == DC_ERR_LAYOUT) ==
                (h[5] != DC_DTYPE_UINT32 && h[5] != DC_DTYPE_UINT16),
            "grouped v3 dtype %u", h[5]);
      h[7] = DC_LAYOUT_CONTEXT_SPARSE;
      CHECK((dc_peek(h, sizeof h, &info) == DC_ERR_LAYOUT) == (h[5] == DC_DTYPE_BOOL),
            "context sparse of v3 dtype %u", h[5]);
      h[7] = 0;
    }
  }
  /* §9 / §16: 2^29 int64 elements are 2^32 output bytes, which a 32-bit size_t cannot hold */
  {
    const uint8_t save[8] = {h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]};
    dc_status st;
    h[4] = 3;
    h[5] = DC_DTYPE_INT64;
    h[6] = 2;
    dc_test_put32(h + 8, 1u << 14);
    dc_test_put32(h + 12, 1u << 15);
    st = dc_peek(h, sizeof h, &info);
    if (sizeof(size_t) < 8)
      CHECK(st == DC_ERR_SHAPE, "2^32 output bytes on a 32-bit target: %s", dc_strerror(st));
    else
      CHECK(st != DC_OK && st != DC_ERR_SHAPE, "2^32 output bytes on a 64-bit host: %s",
            dc_strerror(st));
    memcpy(h + 8, save, 8);
  }
  h[5] = DC_DTYPE_FLOAT32;
  h[4] = 1;
  h[7] = 0;
  /* 1000 x 1000 dense, codebook of 5000 entries */
  dc_test_put32(h + 8, 1000);
  dc_test_put32(h + 12, 1000);
  h[24] = 0x88;
  h[25] = 0x13;
  CHECK(dc_peek(h, sizeof h, &info) == DC_ERR_CODEBOOK, "K = 5000");
  h[24] = 0;
  h[25] = 0;
  CHECK(dc_peek(h, sizeof h, &info) == DC_ERR_CODEBOOK, "K = 0 for a non-empty tensor");
  /* K = 2, codebook 8 bytes, descriptor L=1 lengths (1,1), then huge stream sizes */
  h[24] = 2;
  h[34] = 1;
  h[35] = 0x11;
  dc_test_put32(h + 36, 0x7FFFFFFFu);
  CHECK(dc_peek(h, sizeof h, &info) == DC_ERR_TRUNCATED, "stream larger than the buffer");
  /* valid-looking sizes but a million 1-bit symbols cannot fit in 12 bytes */
  dc_test_put32(h + 36, 3);
  dc_test_put32(h + 40, 3);
  dc_test_put32(h + 44, 3);
  dc_test_put32(h + 48, 3);
  CHECK(dc_peek(h, 52 + 12, &info) == DC_ERR_SIZE_MISMATCH, "1e6 symbols in 12 bytes");
  h[35] = 0x12; /* lengths 2,1: incomplete code */
  CHECK(dc_peek(h, 52 + 12, &info) == DC_ERR_CODE_LENGTHS, "incomplete code");
  h[35] = 0x11;
  h[34] = 13;
  CHECK(dc_peek(h, 52 + 12, &info) == DC_ERR_CODE_LENGTHS, "L = 13");
  /* constant tensor (zero-bit code) declaring 2^30 float32 elements: no stream bytes justify it */
  {
    uint8_t c[40];
    memset(c, 0, sizeof c);
    memcpy(c, "DCHF", 4);
    c[4] = 1;
    c[6] = 1;
    dc_test_put32(c + 8, 1u << 30);
    c[20] = 1; /* K = 1, value 0.0 at 22..25 */
    c[26] = 0; /* L = 0, single symbol 0 at 27..28; stream sizes (all 0) at 29..44 */
    {
      uint8_t d[45];
      memset(d, 0, sizeof d);
      memcpy(d, c, sizeof c);
      CHECK(dc_peek(d, sizeof d, &info) == DC_ERR_SIZE_MISMATCH ||
                dc_peek(d, sizeof d, &info) == DC_ERR_SHAPE,
            "zero-bit bomb: %s", dc_strerror(dc_peek(d, sizeof d, &info)));
      dc_test_put32(d + 8, 1000);
      CHECK(dc_peek(d, sizeof d, &info) == DC_OK && info.output_bytes == 4000, "1000 zeros header");
    }
  }
  CHECK(dc_peek(NULL, 10, &info) == DC_ERR_ARGUMENT, "NULL data");
  CHECK(dc_peek(h, 10, NULL) == DC_ERR_ARGUMENT, "NULL info");
  CHECK(dc_decode(h, 0, h, 0) == DC_ERR_TRUNCATED, "empty buffer");
  CHECK(dc_peek((const uint8_t*)"XXXXXXXXXXXXXXXX", 16, &info) == DC_ERR_MAGIC, "bad magic");
  CHECK(strlen(dc_strerror(DC_ERR_CHECKSUM)) > 5 && strlen(dc_strerror((dc_status)99)) > 5,
        "strerror");
  CHECK(strcmp(dc_strerror(DC_ERR_UNSUPPORTED), dc_strerror((dc_status)99)) != 0 &&
            strstr(dc_strerror(DC_ERR_UNSUPPORTED), "left out") != NULL,
        "strerror of DC_ERR_UNSUPPORTED: %s", dc_strerror(DC_ERR_UNSUPPORTED));
}

/* Bit-at-a-time CRC-32 (reflected 0xEDB88320), the reference for dc_crc32's fast paths. */
static uint32_t crc_bitwise(uint32_t crc, const uint8_t* p, size_t len) {
  crc = ~crc;
  for (size_t i = 0; i < len; ++i) {
    crc ^= p[i];
    for (int b = 0; b < 8; ++b) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

/* dc_crc32's paths (bytes, slice-by-8, 4 lanes from 4 KiB, carry-less multiplication from 256 B
 * where the CPU has it): every length 0..1100 at 3 offsets and 3 start values, and long inputs. */
static void test_crc_lengths(void) {
  const size_t n = (1u << 17) + 100;
  uint8_t* buf = (uint8_t*)malloc(n);
  uint32_t x = 12345u;
  int bad = 0;
  static const uint32_t starts[3] = {0u, 0xFFFFFFFFu, 0x9E3779B9u};
  for (size_t i = 0; i < n; ++i) buf[i] = (uint8_t)((x = x * 1103515245u + 12345u) >> 23);
  for (size_t len = 0; len <= 1100; ++len)
    for (size_t off = 0; off < 3; ++off)
      for (int s = 0; s < 3; ++s)
        bad +=
            dc_crc32(starts[s], buf + off * 5, len) != crc_bitwise(starts[s], buf + off * 5, len);
  for (size_t len = 4000; len < n; len = len * 2 + 77)
    bad += dc_crc32(7u, buf + 3, len) != crc_bitwise(7u, buf + 3, len);
  CHECK(bad == 0, "crc32 fast paths vs bitwise: %d mismatches", bad);
  free(buf);
}

/* §8: CRC-32 = zlib.crc32; a version 2 file with a wrong CRC is rejected before decoding, and a
 * §13 codebook value with bits above the element's is rejected. */
static void test_crc_and_subbyte_values(void) {
  size_t v;
  CHECK(dc_crc32(0, (const uint8_t*)"123456789", 9) == 0xCBF43926u, "crc32 check value");
  CHECK(dc_crc32(dc_crc32(0, (const uint8_t*)"12345", 5), (const uint8_t*)"6789", 4) == 0xCBF43926u,
        "crc32 continuation");
  CHECK(dc_crc32(0, NULL, 0) == 0, "crc32 of nothing");
  for (v = 0; v < NVEC2; ++v) {
    const codec_vector* t = &codec_vectors[v];
    dc_tensor_info info, scratch;
    uint8_t* copy;
    uint8_t* out;
    size_t out_size, cpos;
    if (dc_peek(t->packed, t->packed_size, &info) != DC_OK) continue;
    cpos = 8 + 4 * info.rank;
    copy = (uint8_t*)malloc(t->packed_size);
    memcpy(copy, t->packed, t->packed_size);
    CHECK(dc_verify(t->packed, t->packed_size) == DC_OK, "%s: dc_verify of the intact tensor",
          t->name);
    copy[cpos] ^= 1; /* the CRC field itself */
    CHECK(decode_copy(copy, t->packed_size, &out, &out_size) == DC_ERR_CHECKSUM, "%s: crc",
          t->name);
    free(out);
    CHECK(dc_verify(copy, t->packed_size) == DC_ERR_CHECKSUM, "%s: dc_verify sees it", t->name);
    copy[cpos] ^= 1;
    copy[t->packed_size - 1] ^= 0x40; /* the last byte: stream data unless the tensor has none */
    CHECK(dc_verify(copy, t->packed_size) == (dc_peek(copy, t->packed_size, &scratch) == DC_OK
                                                  ? DC_ERR_CHECKSUM
                                                  : dc_peek(copy, t->packed_size, &scratch)),
          "%s: dc_verify of a changed last byte", t->name);
    if (info.element_bits < 8 && t->layout == DC_LAYOUT_DENSE) {
      memcpy(copy, t->packed, t->packed_size);
      copy[cpos + 4 + 2] |= 0x80; /* first codebook value */
      CHECK(dc_peek(copy, t->packed_size, &info) == DC_ERR_CODEBOOK, "%s: sub-byte value", t->name);
    }
    if (info.dtype == DC_DTYPE_BOOL) { /* §16: a bool codebook value other than 0 or 1 */
      size_t k;
      for (k = 0; k < 2; ++k) {
        memcpy(copy, t->packed, t->packed_size);
        copy[cpos + 4 + 2 + k] = (uint8_t)(2 + 0xFD * k); /* value 0 or 1 -> 2 or 255 */
        CHECK(dc_peek(copy, t->packed_size, &scratch) == DC_ERR_CODEBOOK, "%s: bool value %u",
              t->name, copy[cpos + 4 + 2 + k]);
      }
    }
    free(copy);
  }
  CHECK(dc_workspace_size(NULL, 0, NULL) == DC_ERR_ARGUMENT, "workspace NULL");
}

/* ---- §5 float32 dense with K <= 256 on every path (x86-64: the spread-codebook loop through
 * dc_decode, dense_e4_bmi2 with dc_workspace_size's exact workspace, the portable loop with
 * dc_codec_use_simd(0)): hand-encoded tensors of every max code length 1..12 ---------------- */

/* Decodes with dc_decode under each dc_codec_use_simd setting, with the portable spread loop
 * forced (dc_codec_portable_fast(2): through dc_decode, and through dc_decode_ws with a
 * DC_FAST_WORKSPACE heap workspace at an odd address, which reaches it on 32-bit targets too),
 * with it off, and with an exact workspace; all must give the same status as the reference
 * (dc_codec_use_simd(0), path 2) and, if DC_OK, the same bytes as `want` (NULL: any error). */
#define DC_TEST_PATHS 7
static void decode_all_paths(const char* what, const uint8_t* p, size_t size, const uint8_t* want,
                             size_t nb) {
  static const int simd[DC_TEST_PATHS] = {1, 2, 0, 1, 1, 1, 1};
  static const int portable[DC_TEST_PATHS] = {1, 1, 1, 1, 2, 2, 0};
  uint8_t* out = (uint8_t*)malloc(nb + 1);
  dc_status st[DC_TEST_PATHS];
  size_t ws_size = 0;
  int m;
  for (m = 0; m < DC_TEST_PATHS; ++m) {
    const int was = dc_codec_use_simd(simd[m]), was_p = dc_codec_portable_fast(portable[m]);
    if (m == 3 || m == 5) {
      uint8_t* ws;
      if (m == 3 && dc_workspace_size(p, size, &ws_size) != DC_OK) ws_size = 16;
      if (m == 5) ws_size = DC_FAST_WORKSPACE;
      ws = (uint8_t*)malloc(ws_size + 1);
      st[m] = dc_decode_ws(p, size, out, nb, ws + 1, ws_size);
      free(ws);
    } else {
      st[m] = dc_decode(p, size, out, nb);
    }
    dc_codec_use_simd(was);
    dc_codec_portable_fast(was_p);
    if (want != NULL)
      CHECK(st[m] == DC_OK && memcmp(out, want, nb) == 0, "%s: path %d: %s / bytes differ", what, m,
            dc_strerror(st[m]));
  }
  for (m = 0; m < DC_TEST_PATHS; ++m)
    CHECK(st[m] == st[2], "%s: path %d status %s, reference %s", what, m, dc_strerror(st[m]),
          dc_strerror(st[2]));
  free(out);
}

/* Re-seals a version 2 tensor of `size` bytes after an edit (§8: CRC of all but bytes 12..15). */
static void reseal(uint8_t* p, size_t size) {
  uint32_t crc = dc_crc32(dc_crc32(0, p, 12), p + 16, size - 16);
  dc_test_put32(p + 12, crc);
}

static void test_dense_f32_all_lengths(void) {
  /* the spread loop's size threshold (8191, 8192 by default; the build with
   * DC_SPREAD_MIN_ELEMENTS=1 takes it for all sizes) and its chunk edges for S = 7, 6, 5, 4 */
  static const uint32_t sizes[] = {1,
                                   5,
                                   27,
                                   1000,
                                   8191,
                                   8192,
                                   4 * 7 * 1024 + 13,
                                   4 * 6 * 1024 * 2 + 3,
                                   4 * 5 * 1024 + 1,
                                   4 * 4 * 1024 * 2 + 7,
                                   100003};
  uint8_t len[256];
  uint32_t m, z, s, i, rnd = 12345;
  for (m = 1; m <= 14; ++m) {
    uint32_t k;
    if (m <= 12) { /* lengths 1, 2, ..., m, m: complete, max length m */
      for (s = 0; s < m; ++s) len[s] = (uint8_t)(s + 1);
      len[m] = (uint8_t)m;
      k = m + 1;
    } else if (m == 13) { /* MobileNetV2-like: 1 code of 7 bits, 253 of 8, 2 of 9 */
      k = 256;
      for (s = 0; s < k; ++s) len[s] = 8;
      len[17] = 7;
      len[200] = 9;
      len[255] = 9;
    } else { /* 256 codes of 8 bits */
      k = 256;
      for (s = 0; s < k; ++s) len[s] = 8;
    }
    for (z = 0; z < sizeof sizes / sizeof sizes[0]; ++z) {
      const uint32_t n = sizes[z];
      uint16_t* sym = (uint16_t*)malloc(n * sizeof *sym);
      uint8_t* p = (uint8_t*)malloc(pack_dense_f32_bound(k, n));
      uint8_t* want = (uint8_t*)malloc((size_t)n * 4);
      char what[64];
      size_t size;
      uint32_t sizes_at;
      for (i = 0; i < n; ++i) {
        rnd = rnd * 1103515245u + 12345u;
        sym[i] = (uint16_t)((rnd >> 8) % k);
        if (m <= 12 && (rnd >> 30) == 0) sym[i] = (uint16_t)(k - 1); /* more longest codes */
      }
      size = pack_dense_f32(p, len, k, sym, n, &sizes_at);
      for (i = 0; i < n; ++i) {
        dc_test_put32(want + 4 * i, dc_test_f32_bits(sym[i]));
      }
      snprintf(what, sizeof what, "dense f32 L%u K%u n%u", m <= 12 ? m : 9, k, n);
      decode_all_paths(what, p, size, want, (size_t)n * 4);
      if (n > 8) { /* a flipped stream bit, a stream boundary moved by one byte, random stream
                    * bytes, then the last stream one byte short (CRC fixed each time) */
        uint32_t s0, s1, s3;
        const uint32_t first = sizes_at + 16;
        p[size - 1 - (n % 7)] ^= (uint8_t)(1u << (n % 8));
        reseal(p, size);
        decode_all_paths(what, p, size, NULL, (size_t)n * 4);
        s0 = dc_test_get32(p + sizes_at);
        s1 = dc_test_get32(p + sizes_at + 4);
        if (s1 > 0) {
          s0 += 1;
          s1 -= 1;
          dc_test_put32(p + sizes_at, s0);
          dc_test_put32(p + sizes_at + 4, s1);
          reseal(p, size);
          decode_all_paths(what, p, size, NULL, (size_t)n * 4);
          s0 -= 2;
          s1 += 2;
          dc_test_put32(p + sizes_at, s0);
          dc_test_put32(p + sizes_at + 4, s1);
          reseal(p, size);
          decode_all_paths(what, p, size, NULL, (size_t)n * 4);
        }
        for (i = first; i < size; ++i) {
          rnd = rnd * 1103515245u + 12345u;
          p[i] = (uint8_t)(rnd >> 16);
        }
        reseal(p, size);
        decode_all_paths(what, p, size, NULL, (size_t)n * 4);
        s3 = dc_test_get32(p + sizes_at + 12);
        s3 -= 1;
        dc_test_put32(p + sizes_at + 12, s3);
        reseal(p, size - 1);
        decode_all_paths(what, p, size - 1, NULL, (size_t)n * 4);
      }
      free(sym);
      free(p);
      free(want);
    }
  }
}

/* ---- §18 sparse float planes: hand-made float32 tensors, each malformed in one field -------
 * Gap code: G = 4, the four gaps 2-bit codes; symbol code (n = 258): 127, 128 (§12 symbols with
 * a rest), 256 (B) and 257 (B, sign flipped) 2-bit codes, so the canonical code of gap g is g
 * and that of the k-th of those symbols is k. */
#define SP7_MAX 600
typedef struct {
  uint32_t n, e, r, g;              /* N, E, R, G as written in the header */
  uint32_t ne;                      /* entries in the streams */
  uint8_t gap[SP7_MAX], k[SP7_MAX]; /* entry j: gap (0..3), symbol (0..3: 127, 128, 256, 257) */
  uint32_t rests;                   /* rest plane entries written */
} sp7_tensor;
static const uint32_t SP7_SYMBOL[4] = {127, 128, 256, 257};
#define SP7_B 0x3DCCCCCDu /* background 0.1f: B xor the sign bit is -0.1f */

/* The rest of stored entry r (3 bytes; the sign on top, set for odd r). */
static void sp7_rest(uint32_t r, uint8_t b[3]) {
  b[0] = (uint8_t)(r * 37u + 5u);
  b[1] = (uint8_t)(r * 11u + 1u);
  b[2] = (uint8_t)((r * 3u) & 0x7Fu) | (uint8_t)((r & 1u) << 7);
}

/* Packs t as a version 5 layout 7 float32 tensor of rank 1 into p; returns its size. */
static size_t pack_sp7(uint8_t* p, const sp7_tensor* t) {
  uint32_t s, j, pos, bits[4] = {0, 0, 0, 0};
  uint8_t* st;
  memset(p, 0, 200 + SP7_MAX + 3 * SP7_MAX);
  memcpy(p, "DCHF", 4);
  p[4] = 5;
  p[5] = DC_DTYPE_FLOAT32;
  p[6] = 1;
  p[7] = DC_LAYOUT_SPARSE_PLANES;
  dc_test_put32(p + 8, t->n);
  dc_test_put32(p + 16, SP7_B);
  dc_test_put32(p + 20, t->e);
  dc_test_put32(p + 24, t->r);
  p[28] = (uint8_t)t->g;
  p[29] = (uint8_t)(t->g >> 8);
  if (t->g == 1) { /* gap code: zero-bit gap 0 (u16 at 31), the same 3 bytes */
    p[30] = p[31] = p[32] = 0;
  } else { /* gap code: L = 2, lengths 2, 2, 2, 2 */
    p[30] = 2;
    p[31] = p[32] = 0x22;
  }
  p[33] = 2;              /* symbol code: L = 2, 129 nibble bytes */
  p[34 + 127 / 2] = 0x20; /* 127: high nibble of byte 63 */
  p[34 + 128 / 2] = 0x02; /* 128: low nibble of byte 64 */
  p[34 + 256 / 2] = 0x22; /* 256, 257 */
  pos = 34 + 129;         /* 4 stream sizes */
  for (j = 0; j < t->ne; ++j) bits[j & 3] += t->g == 1 ? 2 : 4;
  st = p + pos + 16;
  for (s = 0; s < 4; ++s) dc_test_put32(p + pos + 4 * s, (bits[s] + 7) / 8);
  for (s = 0; s < 4; ++s) { /* §7: LSB first, each 2-bit code from its high bit */
    uint32_t b = 0;
    for (j = s; j < t->ne; j += 4) {
      const uint32_t c[2] = {t->gap[j], t->k[j]};
      int q, l;
      for (q = t->g == 1; q < 2; ++q) /* G = 1: no gap bits */
        for (l = 1; l >= 0; --l, ++b)
          if ((c[q] >> l) & 1u) st[b / 8] |= (uint8_t)(1u << (b % 8));
    }
    st += (bits[s] + 7) / 8;
  }
  for (j = 0; j < t->rests; ++j, st += 3) sp7_rest(j, st);
  pos = (uint32_t)(st - p);
  dc_test_put32(p + 12, dc_crc32(dc_crc32(0, p, 12), p + 16, pos - 16));
  return pos;
}

/* §18's decoding of t (the spec's loop, written plainly) into want; 0 if it is not valid. */
static int sp7_expect(const sp7_tensor* t, uint8_t* want) {
  uint64_t p = 0, r = 0, i;
  uint32_t j;
  for (i = 0; i < t->n; ++i) dc_test_put32(want + 4 * i, SP7_B);
  for (j = 0; j < t->ne; ++j) {
    const uint32_t sym = SP7_SYMBOL[t->k[j]];
    p += t->gap[j];
    if (p >= t->n) return 0;
    if (sym == 256) {
      dc_test_put32(want + 4 * p, SP7_B);
    } else if (sym == 257) {
      dc_test_put32(want + 4 * p, SP7_B ^ 0x80000000u);
    } else {
      uint8_t b[3];
      uint32_t v;
      if (r >= t->r) return 0;
      sp7_rest((uint32_t)r++, b);
      v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16;
      dc_test_put32(want + 4 * p, (v & 0x7FFFFFu) | sym << 23 | (v >> 23) << 31);
    }
    p++;
  }
  return t->n - p < t->g && r == t->r && t->ne == t->e;
}

/* t with ne random entries (gaps 0..3, or 0 for G = 1; symbols weighted to 257 and the stored
 * ones) and the header that makes it valid (the smallest N it fits, plus `tail` < G implicit
 * elements). */
static void sp7_random_g(sp7_tensor* t, uint32_t ne, uint32_t tail, uint32_t g, uint32_t* rnd) {
  uint32_t j, p = 0, stored = 0;
  for (j = 0; j < ne; ++j) {
    *rnd = *rnd * 1103515245u + 12345u;
    t->gap[j] = (uint8_t)(g == 1 ? 0u : (*rnd >> 10) & 3u);
    t->k[j] = (uint8_t)((*rnd >> 20) % 5u % 4u); /* 0 (127) twice as often */
    p += t->gap[j] + 1u;
    stored += t->k[j] < 2;
  }
  t->ne = t->e = ne;
  t->n = p + tail;
  t->g = g;
  t->r = t->rests = stored;
}
static void sp7_random(sp7_tensor* t, uint32_t ne, uint32_t tail, uint32_t* rnd) {
  sp7_random_g(t, ne, tail, 4, rnd);
}

/* One §18 case: dc_peek's status, then (if it passes) dc_decode's from an exact-size heap copy. */
static void sp7_case(const char* what, const sp7_tensor* t, dc_status peek, dc_status dec) {
  static uint8_t p[200 + SP7_MAX + 3 * SP7_MAX];
  static uint8_t want[4 * 4 * SP7_MAX + 64];
  const size_t size = pack_sp7(p, t);
  dc_tensor_info info;
  uint8_t* out;
  size_t out_size;
  dc_status st = dc_peek(p, size, &info);
  CHECK(st == peek, "§18 %s: peek %s, expected %s", what, dc_strerror(st), dc_strerror(peek));
  if (st != DC_OK) return;
  st = decode_copy(p, size, &out, &out_size);
  CHECK(st == dec, "§18 %s: decode %s, expected %s", what, dc_strerror(st), dc_strerror(dec));
  if (dec == DC_OK) {
    CHECK(sp7_expect(t, want) && st == DC_OK && memcmp(out, want, out_size) == 0,
          "§18 %s: bytes differ", what);
    decode_all_paths(what, p, size, want, (size_t)t->n * 4);
  } else {
    decode_all_paths(what, p, size, NULL, (size_t)t->n * 4);
  }
  free(out);
}

static void test_sparse_planes_malformed(void) {
  static sp7_tensor t, v;
  uint32_t rnd = 777, ne, tail;
#ifdef DC_CODEC_NO_SPARSE_PLANES /* a valid layout 7 tensor: every entry point refuses it */
  {
    static uint8_t p[200 + SP7_MAX + 3 * SP7_MAX];
    static uint8_t out[4 * 4 * SP7_MAX], ws[DC_MAX_WORKSPACE];
    dc_tensor_info info;
    size_t size, wsize = 0;
    sp7_random(&t, 500, 2, &rnd);
    size = pack_sp7(p, &t);
    CHECK(dc_peek(p, size, &info) == DC_ERR_UNSUPPORTED &&
              dc_verify(p, size) == DC_ERR_UNSUPPORTED &&
              dc_workspace_size(p, size, &wsize) == DC_ERR_UNSUPPORTED &&
              dc_decode(p, size, out, (size_t)t.n * 4) == DC_ERR_UNSUPPORTED &&
              dc_decode_ws(p, size, out, (size_t)t.n * 4, ws, sizeof ws) == DC_ERR_UNSUPPORTED,
          "§18 tensor in a DC_CODEC_NO_SPARSE_PLANES build");
    CHECK(strstr(dc_strerror(DC_ERR_UNSUPPORTED),
#ifdef DC_CODEC_MINIMAL
                 "DC_CODEC_MINIMAL"
#else
                 "DC_CODEC_NO_SPARSE_PLANES"
#endif
                 ) != NULL,
          "§18 left out: '%s' names the option", dc_strerror(DC_ERR_UNSUPPORTED));
    return;
  }
#endif
  for (ne = 1; ne <= SP7_MAX; ne = ne < 40 ? ne + 7 : ne * 3) /* the tail loop, then the fast */
    for (tail = 0; tail < 4; tail += 3) {
      char what[64];
      sp7_random(&t, ne, tail, &rnd);
      snprintf(what, sizeof what, "valid, %u entries, tail %u", ne, tail);
      sp7_case(what, &t, DC_OK, DC_OK);
    }
  sp7_random(&t, 500, 2, &rnd); /* the fast loop's 4 streams of >= 8 bytes each */
  CHECK(t.r > 40, "§18: %u stored entries", t.r);
  sp7_case("valid, 500 entries", &t, DC_OK, DC_OK);
  v = t;
  v.r = v.e + 1; /* §9: R <= E */
  sp7_case("R > E", &v, DC_ERR_LAYOUT, DC_OK);
  v = t;
  v.r = v.rests = t.r - 1; /* the last stored entry has no rest left */
  sp7_case("r runs out at the last stored entry", &v, DC_OK, DC_ERR_STREAM);
  v.r = v.rests = t.r / 2; /* inside the fast loop */
  sp7_case("r runs out half way", &v, DC_OK, DC_ERR_STREAM);
  v.r = v.rests = 0;
  sp7_case("R = 0 with stored entries", &v, DC_OK, DC_ERR_STREAM);
  v.r = v.rests = t.r + 1; /* a rest no entry reads */
  sp7_case("r != R at the end", &v, DC_OK, DC_ERR_SIZE_MISMATCH);
  v = t;
  v.rests = t.r + 1; /* plane one entry longer than R says: a spare 3 bytes */
  sp7_case("plane longer than R", &v, DC_ERR_SIZE_MISMATCH, DC_OK);
  v.rests = t.r - 1;
  sp7_case("plane shorter than R", &v, DC_ERR_TRUNCATED, DC_OK);
  v = t;
  v.n = t.n - 3; /* the last entry's position (N - 1 before) is now past the end */
  sp7_case("p >= N", &v, DC_OK, DC_ERR_STREAM);
  v.n = t.n + 2; /* N - p = 4 = G trailing elements */
  sp7_case("N - p >= G at the end", &v, DC_OK, DC_ERR_STREAM);
  v = t;
  v.e = t.n + 1;
  sp7_case("E > N", &v, DC_ERR_LAYOUT, DC_OK);
  v.e = 1; /* N >= (E + 1) G (and R <= E) */
  v.r = v.rests = 0;
  sp7_case("N >= (E + 1) G", &v, DC_ERR_SIZE_MISMATCH, DC_OK);
  v = t;
  v.e = t.ne - 1; /* fewer entries than the streams hold: their bounds (§9) or the end (§7) */
  {
    static uint8_t p[200 + SP7_MAX + 3 * SP7_MAX];
    const size_t size = pack_sp7(p, &v);
    uint8_t* out;
    size_t out_size;
    dc_status st = decode_copy(p, size, &out, &out_size);
    free(out);
    CHECK(st != DC_OK, "§18 E one short: %s", dc_strerror(st));
  }
  /* G = 1: every element an entry (E = N), the gap code zero-bit (x86-64 has a loop for it) */
  for (ne = 1; ne <= SP7_MAX; ne = ne < 40 ? ne + 13 : ne * 4) {
    char what[64];
    sp7_random_g(&v, ne, 0, 1, &rnd);
    snprintf(what, sizeof what, "G = 1, valid, %u entries", ne);
    sp7_case(what, &v, DC_OK, DC_OK);
  }
  sp7_random_g(&v, SP7_MAX, 0, 1, &rnd);
  CHECK(v.r > 100, "§18 G = 1: %u stored entries", v.r);
  v.r = v.rests = v.r - 1;
  sp7_case("G = 1, r runs out at the last stored entry", &v, DC_OK, DC_ERR_STREAM);
  v.r = v.rests = v.r / 4;
  sp7_case("G = 1, r runs out early", &v, DC_OK, DC_ERR_STREAM);
  sp7_random_g(&v, SP7_MAX, 0, 1, &rnd);
  v.r = v.rests = v.r + 1;
  sp7_case("G = 1, r != R at the end", &v, DC_OK, DC_ERR_SIZE_MISMATCH);
  sp7_random_g(&v, SP7_MAX, 0, 1, &rnd);
  v.n = v.ne - 1;
  sp7_case("G = 1, E > N", &v, DC_ERR_LAYOUT, DC_OK);
  v.n = v.ne + 1; /* N >= (E + 1) G: one element without an entry */
  sp7_case("G = 1, N = E + 1", &v, DC_ERR_SIZE_MISMATCH, DC_OK);
  v = t;
  v.g = 0;
  sp7_case("G = 0", &v, DC_ERR_LAYOUT, DC_OK);
  v.g = 4097;
  sp7_case("G = 4097", &v, DC_ERR_LAYOUT, DC_OK);
  v.g = 5; /* the gap descriptor's 3 bytes read as n = 5: lengths 2, 2, 2, 2, 2, over-full */
  sp7_case("G = 5", &v, DC_ERR_CODE_LENGTHS, DC_OK);
  /* descriptors, patched after packing (offsets of pack_sp7) */
  {
    static uint8_t p[200 + SP7_MAX + 3 * SP7_MAX];
    dc_tensor_info info;
    size_t size = pack_sp7(p, &t);
    p[34 + 128] = 0x32; /* 257's length 3: an incomplete code */
    CHECK(dc_peek(p, size, &info) == DC_ERR_CODE_LENGTHS, "§18 incomplete symbol code");
    p[34 + 128] = 0x22;
    p[34 + 129] = 0x10; /* the odd n = 258 has no spare nibble: this is the stream sizes' byte */
    CHECK(dc_peek(p, size, &info) != DC_OK, "§18 stream size changed");
    size = pack_sp7(p, &t);
    p[33] = 13; /* L = 13 */
    CHECK(dc_peek(p, size, &info) == DC_ERR_CODE_LENGTHS, "§18 symbol code L = 13");
    p[33] = 0; /* zero-bit symbol code: single symbol 258 (u16 at 34) */
    p[34] = 2;
    p[35] = 1;
    CHECK(dc_peek(p, size, &info) == DC_ERR_CODE_LENGTHS, "§18 zero-bit symbol 258");
    p[34] = 1; /* 257: valid, then the sizes that follow no longer fit */
    CHECK(dc_peek(p, size, &info) != DC_OK, "§18 zero-bit symbol 257 with the old streams");
    size = pack_sp7(p, &t);
    p[30] = 0; /* zero-bit gap code of symbol 4 >= G */
    p[31] = 4;
    p[32] = 0;
    CHECK(dc_peek(p, size, &info) == DC_ERR_CODE_LENGTHS, "§18 zero-bit gap 4 with G = 4");
  }
  /* §9: gap and symbol codes both zero-bit (G = 1: every element an entry, all 256 or all 257)
   * bound N by nothing but the 16 MiB rule */
  {
    uint8_t z[64];
    dc_tensor_info info;
    /* 2^22 float32 elements are 16 MiB (peek only: a Cortex-M board has no 16 MiB to decode into);
     * one more is refused; 2^16 are decoded (all -0.0) */
    const uint32_t ns[3] = {1u << 22, (1u << 22) + 1, 1u << 16};
    int k;
    for (k = 0; k < 3; ++k) {
      memset(z, 0, sizeof z);
      memcpy(z, "DCHF", 4);
      z[4] = 5;
      z[5] = DC_DTYPE_FLOAT32;
      z[6] = 1;
      z[7] = DC_LAYOUT_SPARSE_PLANES;
      dc_test_put32(z + 8, ns[k]);
      dc_test_put32(z + 20, ns[k]); /* E = N; R = 0 */
      z[28] = 1;                    /* G = 1 */
      z[30] = 0;                    /* gap code: zero-bit gap 0 at 31..32 */
      z[33] = 0;                    /* symbol code: zero-bit 257 */
      z[34] = 1;
      z[35] = 1; /* stream sizes 36..51 all 0, no plane */
      dc_test_put32(z + 12, dc_crc32(dc_crc32(0, z, 12), z + 16, 52 - 16));
      CHECK(dc_peek(z, 52, &info) == (k == 1 ? DC_ERR_SIZE_MISMATCH : DC_OK),
            "§18 zero-bit codes, %lu float32 elements: %s", (unsigned long)ns[k],
            dc_strerror(dc_peek(z, 52, &info)));
      if (k == 2) {
        uint8_t* out = (uint8_t*)malloc((size_t)ns[k] * 4);
        unsigned long i, bad = 0;
        CHECK(out != NULL && dc_decode(z, 52, out, (size_t)ns[k] * 4) == DC_OK,
              "§18 zero-bit decode");
        for (i = 0; out != NULL && i < ns[k]; ++i) bad += dc_test_get32(out + 4 * i) != 0x80000000u;
        CHECK(bad == 0, "§18 zero-bit: %lu elements not -0.0", bad);
        free(out);
      }
    }
  }
}

int main(void) {
  test_vectors();
  test_unaligned_input();
  test_dense_f32_all_lengths();
  test_crc_and_subbyte_values();
  test_crc_lengths();
  test_hostile_headers();
  test_sparse_planes_malformed();
  test_truncations_and_flips();
  test_random_garbage();
  {
    size_t o;
    printf("test_codec: %d passed, %d failed (build options:", passed, failed);
    for (o = 0; o < NOPTIONS; ++o)
      if (OPTION_SET[o]) printf(" %s", OPTIONS[o]);
#ifdef DC_CODEC_NO_SPREAD
    printf(" DC_CODEC_NO_SPREAD");
#endif
    printf(")\n");
  }
  return failed ? 1 : 0;
}
