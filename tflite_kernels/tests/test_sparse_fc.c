/* test_sparse_fc.c -- the compressed FULLY_CONNECTED form (dc_sparse_fc.h):
 * building it from packed vectors (codec_vectors.h, whatever format version
 * the decoder speaks), rejecting what it cannot hold, surviving corrupted
 * bytes, and the float32/int8 kernels against a dense reference for batch
 * sizes around the tile size and every fused activation range.  The lookup
 * table form (dc_sparse_table_build + dc_sparse_gather: EMBEDDING_LOOKUP /
 * GATHER) returns the decoded rows bit for bit and refuses bad indices. */
#if defined(__linux__) || defined(__APPLE__)
#define _DEFAULT_SOURCE 1 /* MAP_ANONYMOUS */
#include <sys/mman.h>
#include <unistd.h>
#define DC_GUARD_PAGES 1
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_vectors.h"
#include "dc_sparse_fc.h"
#include "dc_test.h"
#include "dc_test_pack.h"
#include "sparse_fc_check.h"

static uint32_t rng_state = 12345u;
static uint32_t rnd(void) {
  rng_state = rng_state * 1664525u + 1013904223u;
  return rng_state >> 8;
}

/* Compact form straight from a dense float matrix (the test's own builder). */
static void from_dense_float(const float* w, uint32_t rows, uint32_t cols, dc_sparse_fc* m) {
  memset(m, 0, sizeof *m);
  m->rows = rows;
  m->cols = cols;
  m->dtype = DC_DTYPE_FLOAT32;
  m->row_ptr = malloc((rows + 1) * sizeof(uint32_t));
  m->col = malloc((size_t)rows * cols * sizeof(uint16_t) + 1);
  m->code = malloc((size_t)rows * cols + 1);
  uint32_t k = 0;
  for (uint32_t r = 0; r < rows; ++r) {
    m->row_ptr[r] = k;
    for (uint32_t c = 0; c < cols; ++c) {
      float v = w[(size_t)r * cols + c];
      if (v == 0.f) continue;
      uint32_t code = 0;
      while (code < m->num_values && m->codebook[code] != v) ++code;
      if (code == m->num_values) m->codebook[m->num_values++] = v;
      m->col[k] = (uint16_t)c;
      m->code[k++] = (uint8_t)code;
    }
  }
  m->row_ptr[rows] = k;
  m->nnz = k;
}

/* 1 when this CPU has vector tile kernels, AVX-512 or AVX2 (whatever dc_sparse_fc_use_simd says
 * now): int8 FC layers then take the tile form. */
static int tile_cpu(void) {
  const int was = dc_sparse_fc_use_simd(1);
  const int tiles = strcmp(dc_sparse_fc_kernel_name(), "scalar") != 0;
  dc_sparse_fc_use_simd(was);
  return tiles;
}

/* 1 when this CPU has the AVX-512 kernels (whatever dc_sparse_fc_use_simd says now): float32 FC
 * layers of <= 32 values then take the tile form too. */
static int avx512_cpu(void) {
  const int was = dc_sparse_fc_use_simd(1);
  const int avx = strcmp(dc_sparse_fc_kernel_name(), "avx512") == 0;
  dc_sparse_fc_use_simd(was);
  return avx;
}

/* 1 when this CPU has both the AVX-512 kernels and the AVX2 ones (dc_sparse_fc_use_simd(4)), so
 * that the two tile kernels can be compared. */
static int avx2_and_avx512(void) {
  const int was = dc_sparse_fc_use_simd(1);
  const int a = strcmp(dc_sparse_fc_kernel_name(), "avx512") == 0;
  dc_sparse_fc_use_simd(4);
  const int b = strcmp(dc_sparse_fc_kernel_name(), "avx2") == 0;
  dc_sparse_fc_use_simd(was);
  return a && b;
}

/* On a tile form, the AVX2 float tile kernels (dc_sparse_fc_use_simd(4)) give the bits of the
 * AVX-512 ones (the same FMAs in the same order, dc_sfc_tiles.h; float_tiles_xt_avx2; a NaN for a
 * NaN),
 * every batch size, with and without scratch: compared byte for byte where this CPU has both
 * (the AVX2 kernels run float tile forms built with the AVX-512 kernels in use). */
static void check_float_avx2(const dc_sparse_fc* m, const float* x, size_t batch, const float* bias,
                             float lo, float hi, const char* what) {
  if (!m->tile_e || !avx2_and_avx512()) return;
  float* a = malloc(batch * m->rows * sizeof(float));
  float* b = malloc(batch * m->rows * sizeof(float));
  float* scratch = malloc((size_t)m->cols * DC_SFC_BATCH_TILE * sizeof(float));
  const int was = dc_sparse_fc_use_simd(1);
  dc_sparse_fc_float(m, x, batch, bias, lo, hi, a, scratch);
  for (int with_scratch = 1; with_scratch >= 0; --with_scratch) {
    /* batch >= 6 with scratch and finite x: x transposed (float_tiles_xt_avx2); without
     * scratch, smaller batches or with inf / NaN in x: the lookups of float_tiles_batch_avx2 */
    dc_sparse_fc_use_simd(4);
    dc_sparse_fc_float(m, x, batch, bias, lo, hi, b, with_scratch ? scratch : NULL);
    size_t i = 0; /* the same bits, or both NaN (which NaN an FMA passes on where two meet
                   * depends on the instruction form the compiler picked) */
    while (i < batch * m->rows &&
           (!memcmp(a + i, b + i, sizeof(float)) || (isnan(a[i]) && isnan(b[i]))))
      ++i;
    CHECK(i == batch * m->rows,
          "float %s %ux%u batch %zu scratch %d: the AVX2 tile kernel's bits differ from AVX-512's",
          what, m->rows, m->cols, batch, with_scratch);
  }
  dc_sparse_fc_use_simd(was);
  free(a), free(b), free(scratch);
}

/* The forms a float kernel test runs on: the rows alone, the rows with the tile form
 * (dc_sparse_fc_add_tiles), and the tile form alone (what dc_sparse_fc_build keeps on CPUs with
 * the AVX-512 or AVX2 kernels: its rows freed).  The tiles are built with the vector kernels in
 * use, also in the scalar pass: a form built so must run after dc_sparse_fc_use_simd(0) too.  0
 * when the form cannot be had here (no AVX-512 or AVX2, > 32 values). */
static int make_form(const float* w, uint32_t rows, uint32_t cols, int form, dc_sparse_fc* m) {
  from_dense_float(w, rows, cols, m);
  if (form == 0) return 1;
  const int want = avx512_cpu() && m->num_values <= 32;
  const int was = dc_sparse_fc_use_simd(1);
  const int built = dc_sparse_fc_add_tiles(m);
  dc_sparse_fc_use_simd(was);
  CHECK(built == want, "tiles %ux%u, %u values: built %d", rows, cols, m->num_values, built);
  CHECK(want == (m->tile_e != NULL), "tile form present");
  if (built && sfc_tiles_mismatch(m, w) >= 0) CHECK(0, "tile form of %ux%u differs", rows, cols);
  if (built) { /* the builder's portable loop (use_simd(2)) makes the same tiles as its AVX-512 one */
    dc_sparse_fc p;
    from_dense_float(w, rows, cols, &p);
    const int was2 = dc_sparse_fc_use_simd(2);
    CHECK(dc_sparse_fc_add_tiles(&p) == 1 && sfc_same_form(&p, m), "tiles %ux%u: portable loop",
          rows, cols);
    dc_sparse_fc_use_simd(was2);
    dc_sparse_fc_free(&p);
  }
  if (!built) {
    dc_sparse_fc_free(m);
    return 0;
  }
  if (form == 2) { /* tiles alone */
    free(m->row_ptr), free(m->col), free(m->code);
    m->row_ptr = NULL, m->col = NULL, m->code = NULL;
    CHECK(dc_sparse_fc_bytes(m) > 0, "bytes of a tile form");
  }
  return 1;
}

/* The value form (dc_sparse_fc.h) of rows of codes m: the weight itself per non-zero instead of
 * its code (what the build makes of float planes of > 255 values), in place: the codes freed. */
static void to_values(dc_sparse_fc* m) {
  m->value = malloc((size_t)(m->nnz ? m->nnz : 1) * sizeof(float));
  for (uint64_t k = 0; k < m->nnz; ++k) m->value[k] = m->codebook[m->code[k]];
  free(m->code);
  m->code = NULL;
  m->num_values = 0;
  memset(m->codebook, 0, sizeof m->codebook);
}

/* The dense reference of y[b, r] (double precision) and the sum of |terms|; NaN / inf inputs
 * give what IEEE arithmetic gives (NaN times a non-zero weight: NaN; inf - inf: NaN). */
static double ref_out(const float* w, const float* x, const float* bias, uint32_t cols, size_t b,
                      uint32_t r, double* mag) {
  double acc = bias ? bias[r] : 0.0;
  *mag = fabs(acc);
  for (uint32_t c = 0; c < cols; ++c) {
    const float wv = w[(size_t)r * cols + c];
    if (wv == 0.f) continue; /* a zero weight is not stored: 0 * NaN does not count */
    acc += (double)wv * x[b * cols + c];
    *mag += fabs((double)wv * x[b * cols + c]);
  }
  return acc;
}

/* nvalues distinct non-zero weights (> 32: the AVX-512 kernel gathers them from the codebook
 * instead of permuting two registers), a fraction tenths / 10 of the weights non-zero (0: an
 * all-empty layer); special: 1 puts NaN, +inf and -inf into x. */
static void test_float_kernel_x(uint32_t rows, uint32_t cols, size_t batch, float lo, float hi,
                                int with_bias, uint32_t nvalues, uint32_t tenths, int special) {
  float* w = calloc((size_t)rows * cols, sizeof(float));
  float values[255] = {0.5f, -0.25f, 1.75f, -3.0f, 0.125f};
  for (uint32_t v = 5; v < nvalues; ++v) values[v] = (float)((int)v - 128) / 32.f + 1.f / 1024.f;
  for (size_t i = 0; i < (size_t)rows * cols; ++i) {
    if (rnd() % 10 < tenths) w[i] = values[rnd() % nvalues];
  }
  float* x = malloc(batch * cols * sizeof(float));
  for (size_t i = 0; i < batch * cols; ++i) x[i] = (float)((int)(rnd() % 2001) - 1000) / 256.f;
  if (special) {
    for (size_t i = 0; i < batch * cols; i += 1 + rnd() % (3 * cols + 1))
      x[i] = i % 3 == 0 ? NAN : (i % 3 == 1 ? INFINITY : -INFINITY);
  }
  float* bias = malloc(rows * sizeof(float));
  for (uint32_t r = 0; r < rows; ++r) bias[r] = (float)((int)(rnd() % 201) - 100) / 64.f;
  float* y = malloc(batch * rows * sizeof(float));
  float* y0 = malloc(batch * rows * sizeof(float)); /* form 3: its rows of codes' outputs */
  float* scratch = malloc(cols * DC_SFC_BATCH_TILE * sizeof(float));
  for (int form = 0; form < 4; ++form) { /* 3: the value form of the rows */
    dc_sparse_fc m;
    if (!make_form(w, rows, cols, form == 3 ? 0 : form, &m)) continue;
    if (form == 3) { /* the rows of codes on the scalar kernels, which the value form runs on */
      const int was0 = dc_sparse_fc_use_simd(0);
      dc_sparse_fc_float(&m, x, batch, with_bias ? bias : NULL, lo, hi, y0, scratch);
      dc_sparse_fc_use_simd(was0);
      to_values(&m);
      const int was = dc_sparse_fc_use_simd(1);
      CHECK(dc_sparse_fc_add_tiles(&m) == 0 && !m.tile_e, "tiles added to a value form");
      dc_sparse_fc_use_simd(was);
      CHECK(dc_sparse_fc_bytes(&m) == sizeof m + 4 * ((size_t)rows + 1) + 6 * (size_t)m.nnz,
            "bytes of a value form %ux%u", rows, cols);
    }
    dc_sparse_fc_float(&m, x, batch, with_bias ? bias : NULL, lo, hi, y, scratch);
    if (form == 3) { /* the same kernels in the same order as the codes': the same bits */
      size_t i = 0;
      while (i < batch * rows &&
             (!memcmp(y + i, y0 + i, sizeof(float)) || (isnan(y[i]) && isnan(y0[i]))))
        ++i;
      CHECK(i == batch * rows,
            "float %ux%u batch %zu: the value form's bits differ from the codes'", rows, cols,
            batch);
      /* and without scratch: batch rows one at a time (the batch-1 kernel) */
      dc_sparse_fc_float(&m, x, batch, with_bias ? bias : NULL, lo, hi, y0, NULL);
      if (batch == 1) CHECK(!memcmp(y, y0, rows * sizeof(float)) || special, "value form batch 1");
      if (rows <= 64) { /* gather of an FC form of values: the weights, row by row */
        float* row = malloc((size_t)cols * sizeof(float));
        for (int32_t r = 0; r < (int32_t)rows; ++r) {
          CHECK(dc_sparse_gather(&m, &r, 0, 1, row) == 1 &&
                    !memcmp(row, w + (size_t)r * cols, (size_t)cols * sizeof(float)),
                "gather of a value form, row %d", (int)r);
        }
        free(row);
      }
    }
    check_float_avx2(&m, x, batch, with_bias ? bias : NULL, lo, hi, "kernel test");
    for (size_t b = 0; b < batch; ++b) {
      for (uint32_t r = 0; r < rows; ++r) {
        double mag;
        const double acc = ref_out(w, x, with_bias ? bias : NULL, cols, b, r, &mag);
        const double want = acc < lo ? lo : (acc > hi ? hi : acc);
        const double got = y[b * rows + r];
        const int ok = isnan(want)  ? isnan(got)
                       : isinf(mag) ? got == want /* an inf term: that inf, or the clamp */
                                    : fabs(got - want) <= 1e-6 * (mag + 1e-30) + 1e-30;
        CHECK(ok, "float %ux%u batch %zu form %d special %d [%zu,%u]: %g vs %g", rows, cols, batch,
              form, special, b, r, got, want);
      }
    }
    dc_sparse_fc_free(&m);
  }
  free(w), free(x), free(bias), free(y), free(y0), free(scratch);
}

/* dc_sparse_fc_add_tiles takes a caller's rows only when their columns increase strictly and
 * stay < cols (the tile builder relies on it): repeated, decreasing, too large -> 0, no tiles. */
static void test_add_tiles_refuses_bad_rows(void) {
  float w[20 * 40];
  for (int i = 0; i < 20 * 40; ++i) w[i] = i % 3 ? 0.f : (float)(1 + i % 5);
  for (int bad = 0; bad < 4; ++bad) {
    dc_sparse_fc m;
    from_dense_float(w, 20, 40, &m);
    const uint32_t j = m.row_ptr[3] + 2; /* row 3's third non-zero */
    if (bad == 1) m.col[j] = m.col[j - 1];
    if (bad == 2) m.col[j] = (uint16_t)(m.col[j - 1] - 1);
    if (bad == 3) m.col[m.row_ptr[20] - 1] = 40;
    const int was = dc_sparse_fc_use_simd(1);
    const int built = dc_sparse_fc_add_tiles(&m);
    dc_sparse_fc_use_simd(was);
    CHECK(built == (bad == 0 && avx512_cpu()) && !m.tile_e == !built, "bad rows %d: built %d", bad,
          built);
    dc_sparse_fc_free(&m);
  }
}

static void test_float_kernel_n(uint32_t rows, uint32_t cols, size_t batch, float lo, float hi,
                                int with_bias, uint32_t nvalues, uint32_t tenths) {
  test_float_kernel_x(rows, cols, batch, lo, hi, with_bias, nvalues, tenths, 0);
}

static void test_float_kernel(uint32_t rows, uint32_t cols, size_t batch, float lo, float hi,
                              int with_bias) {
  test_float_kernel_n(rows, cols, batch, lo, hi, with_bias, 5, 3);
}

static int8_t ref_requant(int32_t acc, float scale, int32_t zp, int32_t qmin, int32_t qmax) {
  float v = rintf((float)acc * scale) + (float)zp;
  if (v < qmin) v = (float)qmin;
  if (v > qmax) v = (float)qmax;
  return (int8_t)v;
}

/* n bytes that end right before an inaccessible page (where the OS allows it): a kernel that
 * reads past its input faults instead of reading slack.  guarded_free releases it. */
static void* guarded(size_t n, size_t* map_size) {
#ifdef DC_GUARD_PAGES
  const size_t page = (size_t)sysconf(_SC_PAGESIZE), body = (n + page - 1) / page * page;
  uint8_t* p = mmap(NULL, body + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p != MAP_FAILED && mprotect(p + body, page, PROT_NONE) == 0) {
    *map_size = body + page;
    return p + body - n;
  }
  if (p != MAP_FAILED) munmap(p, body + page);
#endif
  *map_size = 0;
  return malloc(n ? n : 1);
}

static void guarded_free(void* q, size_t n, size_t map_size) {
#ifdef DC_GUARD_PAGES
  if (map_size) {
    munmap((uint8_t*)q + n - (map_size - (size_t)sysconf(_SC_PAGESIZE)), map_size);
    return;
  }
#endif
  (void)n, (void)map_size;
  free(q);
}

/* int8: checks one kernel run against the plain dense formula; each call takes the next of a
 * few quantizations (input / output zero points at the int8 extremes, the full and narrow output
 * ranges, no bias). */
static void check_int8(const int8_t* w, uint32_t rows, uint32_t cols, const dc_sparse_fc* m,
                       size_t batch, const char* what) {
  static const struct {
    int32_t izp, ozp, qmin, qmax, bias;
  } q[] = {{-7, 3, -100, 120, 1},
           {-128, -128, -128, 127, 0},
           {127, 127, -128, 127, 1},
           {0, -5, -20, 20, 1},
           {-128, 0, -128, 127, 0}};
  static unsigned calls = 0;
  const unsigned k = calls++ % (sizeof q / sizeof q[0]);
  size_t x_map;
  int8_t* x = guarded(batch * cols, &x_map); /* the AVX-512 kernel reads 4-byte words of x */
  for (size_t i = 0; i < batch * cols; ++i) x[i] = (int8_t)(rnd() & 0xff);
  int32_t* bias = malloc(rows * sizeof(int32_t));
  float* scale = malloc(rows * sizeof(float));
  for (uint32_t r = 0; r < rows; ++r) {
    bias[r] = (int32_t)(rnd() % 20001) - 10000;
    scale[r] = 0.0005f + (float)(rnd() % 1000) * 1e-5f;
  }
  int8_t* y = malloc(batch * rows);
  int32_t* scratch = malloc(cols * DC_SFC_BATCH_TILE * sizeof(int32_t));
  const int32_t izp = q[k].izp, ozp = q[k].ozp, qmin = q[k].qmin, qmax = q[k].qmax;
  dc_sparse_fc_int8(m, x, batch, izp, q[k].bias ? bias : NULL, scale, ozp, qmin, qmax, y, scratch);
  if (m->tile_e) { /* the int8 tile kernels without AVX-512 VNNI (use_simd(3)): the same bytes */
    int8_t* y3 = malloc(batch * rows);
    const int was = dc_sparse_fc_use_simd(3);
    dc_sparse_fc_int8(m, x, batch, izp, q[k].bias ? bias : NULL, scale, ozp, qmin, qmax, y3,
                      scratch);
    dc_sparse_fc_use_simd(was);
    CHECK(!memcmp(y3, y, batch * rows), "int8 %s batch %zu: other bytes without VNNI", what, batch);
    free(y3);
  }
  { /* the AVX2 kernels (use_simd(4); on a tile form its AVX2 tile kernels, on rows the scalar
     * ones): the same bytes */
    int8_t* y4 = malloc(batch * rows);
    const int was = dc_sparse_fc_use_simd(4);
    dc_sparse_fc_int8(m, x, batch, izp, q[k].bias ? bias : NULL, scale, ozp, qmin, qmax, y4,
                      scratch);
    dc_sparse_fc_use_simd(was);
    CHECK(!memcmp(y4, y, batch * rows), "int8 %s batch %zu: other bytes with the AVX2 kernels",
          what, batch);
    free(y4);
  }
  for (size_t b = 0; b < batch; ++b) {
    for (uint32_t r = 0; r < rows; ++r) {
      int32_t acc = q[k].bias ? bias[r] : 0;
      for (uint32_t c = 0; c < cols; ++c) {
        acc += (int32_t)w[(size_t)r * cols + c] * ((int32_t)x[b * cols + c] - izp);
      }
      int8_t want = ref_requant(acc, scale[r], ozp, qmin, qmax);
      CHECK(y[b * rows + r] == want, "int8 %s batch %zu [%zu,%u]: %d vs %d", what, batch, b, r,
            y[b * rows + r], want);
    }
  }
  guarded_free(x, batch * cols, x_map);
  free(bias), free(scale), free(y), free(scratch);
}

/* The form holds exactly the non-zeros of the decoded tensor `raw` (sparse_fc_check.h). */
static void check_form(const dc_sparse_fc* m, const uint8_t* raw, const char* name) {
  int64_t r = sfc_form_mismatch(m, raw);
  CHECK(r < 0, "%s: row %lld (of %u) differs from the decoded tensor", name, (long long)r, m->rows);
}

/* float kernel on a built form against the dense decoded weights (batch 1 and 3). */
static void check_float_vs_raw(const dc_sparse_fc* m, const float* w, const char* name) {
  const size_t batch = 3;
  float* x = malloc(batch * m->cols * sizeof(float));
  float* y = malloc(batch * m->rows * sizeof(float));
  float* y1 = malloc(m->rows * sizeof(float));
  float* scratch = malloc((size_t)m->cols * DC_SFC_BATCH_TILE * sizeof(float));
  for (size_t i = 0; i < batch * m->cols; ++i) x[i] = (float)((int)(rnd() % 2001) - 1000) / 256.f;
  dc_sparse_fc_float(m, x, batch, NULL, -INFINITY, INFINITY, y, scratch);
  dc_sparse_fc_float(m, x, 1, NULL, -INFINITY, INFINITY, y1, NULL);
  check_float_avx2(m, x, batch, NULL, -INFINITY, INFINITY, name);
  check_float_avx2(m, x, 1, NULL, -INFINITY, INFINITY, name);
  int64_t i = sfc_float_mismatch(m, w, x, batch, y, 1e-6, 0);
  CHECK(i < 0, "%s: float output %lld (batch %zu) off", name, (long long)i, batch);
  CHECK(sfc_float_mismatch(m, w, x, 1, y1, 1e-6, 0) < 0, "%s: float batch 1", name);
  free(x), free(y), free(y1), free(scratch);
}

/* Byte flips with the CRC (§8) recomputed, so that the structural checks of the entries, not
 * the checksum, must catch them: the builder's status equals dc_decode's, and whatever it
 * builds holds exactly the decoded tensor's non-zeros. */
static void flips_with_crc(const codec_vector* v) {
  const size_t check = 8 + 4 * (size_t)v->rank, n = v->packed_size;
  uint8_t* bad = malloc(n);
  for (size_t pos = 0; pos < n; ++pos) {
    if (pos >= check && pos < check + 4) continue;
    for (int f = 0; f < 2; ++f) {
      memcpy(bad, v->packed, n);
      bad[pos] ^= f ? 0x01 : 0xa5;
      uint32_t c = dc_crc32(0, bad, check);
      c = dc_crc32(c, bad + check + 4, n - check - 4);
      for (int b = 0; b < 4; ++b) bad[check + b] = (uint8_t)(c >> (8 * b));
      dc_sparse_fc m;
      dc_status ds = DC_OK, dd;
      char why[200] = "";
      dc_sfc_status st = dc_sparse_fc_build(bad, n, &m, &ds, why, sizeof why);
      dc_tensor_info info;
      dc_status dp = dc_peek(bad, n, &info);
      if (dp == DC_OK && info.output_bytes > (64u << 20)) { /* a flipped dim: too big to check */
        if (st == DC_SFC_OK) dc_sparse_fc_free(&m);
        continue;
      }
      uint8_t* dense = dp == DC_OK ? malloc(info.output_bytes + 1) : NULL;
      dd = dp == DC_OK ? dc_decode(bad, n, dense, info.output_bytes) : dp;
      if (st == DC_SFC_DECODE)
        CHECK(ds == dd, "%s: flip %zu: %d vs dc_decode %d", v->name, pos, ds, dd);
      if (st == DC_SFC_OK) {
        CHECK(dd == DC_OK, "%s: flip %zu built what dc_decode rejects (%d)", v->name, pos, dd);
        if (dd == DC_OK) check_form(&m, dense, v->name);
        dc_sparse_fc_free(&m);
      }
      free(dense);
    }
  }
  free(bad);
}

/* Lookup table form of one vector: every row (reverse order, int32 and int64
 * indices) equals the decoded row byte for byte; an index out of range fails
 * at its position and writes nothing. */
static void check_table(const codec_vector* v) {
  dc_sparse_fc t;
  dc_status ds;
  char why[200] = "";
  dc_sfc_status st = dc_sparse_table_build(v->packed, v->packed_size, &t, &ds, why, sizeof why);
  CHECK(st == DC_SFC_OK, "%s: table build failed %d (%s)", v->name, st, why);
  if (st != DC_SFC_OK) return;
  CHECK(t.table == 1 && t.row_sum == NULL, "%s: table form", v->name);
  const size_t es = t.dtype == DC_DTYPE_FLOAT32 ? 4 : 1, row = es * t.cols, n = t.rows;
  uint64_t stored = 0; /* cells other than the fill value */
  for (size_t i = 0; i < (size_t)t.rows * t.cols; ++i) {
    if (t.dtype == DC_DTYPE_FLOAT32) {
      uint32_t bits;
      memcpy(&bits, v->raw + 4 * i, 4);
      stored += bits != 0;
    } else {
      stored += (int8_t)v->raw[i] != t.fill;
    }
  }
  CHECK(t.nnz == stored, "%s: table holds %llu values, expected %llu", v->name,
        (unsigned long long)t.nnz, (unsigned long long)stored);
  if (t.nnz && !t.value) { /* dc_sparse_table_build_max: rows of codes take any count */
    dc_sparse_fc b;
    void* dense = (void*)&b;
    st = dc_sparse_table_build_max(v->packed, v->packed_size, t.nnz - 1, &b, &dense, &ds, why,
                                   sizeof why);
    CHECK(st == DC_SFC_OK && !dense && sfc_same_form(&b, &t), "%s: table build_max: %d", v->name,
          st);
    if (st == DC_SFC_OK) dc_sparse_fc_free(&b);
  }
  int32_t* i32 = malloc((n + 2) * sizeof(int32_t));
  int64_t* i64 = malloc((n + 2) * sizeof(int64_t));
  uint8_t* out = malloc((n + 2) * row);
  for (size_t i = 0; i < n; ++i) i64[i] = i32[i] = (int32_t)(n - 1 - i);
  for (int w = 0; w < 2; ++w) {
    memset(out, 0x5a, (n + 2) * row);
    CHECK(dc_sparse_gather(&t, w ? (const void*)i64 : (const void*)i32, w, n, out) == n,
          "%s: gather", v->name);
    for (size_t i = 0; i < n; ++i) {
      CHECK(memcmp(out + i * row, v->raw + (size_t)i32[i] * row, row) == 0,
            "%s: gathered row %d differs (idx64 %d)", v->name, i32[i], w);
    }
  }
  i32[n] = (int32_t)n, i64[n] = -1;        /* first bad index at position n */
  i32[n + 1] = -1, i64[n + 1] = INT64_MAX; /* (and another after it) */
  memset(out, 0x5a, (n + 2) * row);
  CHECK(dc_sparse_gather(&t, i32, 0, n + 2, out) == n, "%s: int32 bad index", v->name);
  CHECK(dc_sparse_gather(&t, i64, 1, n + 2, out) == n, "%s: int64 bad index", v->name);
  i64[0] = (int64_t)1 << 32; /* would alias row 0 if truncated to 32 bits */
  CHECK(dc_sparse_gather(&t, i64, 1, 1, out) == 0, "%s: 2^32 index", v->name);
  int clean = 1;
  for (size_t i = 0; i < (n + 2) * row; ++i) clean &= out[i] == 0x5a;
  CHECK(clean, "%s: a failed gather wrote output", v->name);
  CHECK(dc_sparse_gather(&t, i32, 0, 0, out) == 0, "%s: empty gather", v->name);
  free(i32), free(i64), free(out);
  dc_sparse_fc_free(&t);
}

/* ------------------------------------------------------------------------------------------- */
/* FORMAT.md §18 (sparse float planes) built straight from its entries (dc_decode_value_rows)   */
/* ------------------------------------------------------------------------------------------- */

/* Bytes pack_planes18 may write for n elements and gap alphabet g. */
static size_t planes18_bound(size_t n, uint32_t g) {
  return 256 + g + 7 * n;
}

/* Appends the l-bit code c, most significant bit first, to the LSB-first stream s at bit *b. */
static void put_code(uint8_t* s, uint64_t* b, uint32_t c, uint32_t l) {
  while (l-- > 0) {
    if ((c >> l) & 1u) s[*b / 8] |= (uint8_t)(1u << (*b % 8));
    ++*b;
  }
}

/* Canonical codes (FORMAT.md §4) of n symbols of the given lengths (<= 12, 0: unused). */
static void canonical_codes(const uint8_t* len, uint32_t n, uint32_t* code) {
  uint32_t count[14] = {0}, next[14], c = 0;
  for (uint32_t s = 0; s < n; ++s) count[len[s]]++;
  count[0] = 0;
  for (uint32_t l = 1; l <= 13; ++l) {
    c = (c + count[l - 1]) << 1;
    next[l] = c;
  }
  for (uint32_t s = 0; s < n; ++s) code[s] = len[s] ? next[len[s]]++ : 0;
}

/* A [rows, cols] float32 weight of bit patterns w packed as FORMAT.md §18 (version 5, layout 7),
 * the test's own encoder: background bg, gap alphabet g (a power of two, 1..4096, every gap code
 * log2(g) bits), the 258 symbols coded in 8 bits but 252..255 in 9; elements bg are background,
 * bg with its sign flipped symbol 257 -- but with store_zeros, the ±0 elements at odd positions
 * are stored entries (symbol 0 and a rest: the format allows it, dc_keras's encoder writes none):
 * stored ±0s, which are no non-zeros.  Returns its size (p: planes18_bound bytes). */
static size_t pack_planes18(uint8_t* p, const uint32_t* w, uint32_t rows, uint32_t cols,
                            uint32_t bg, uint32_t g, int store_zeros) {
  const size_t n = (size_t)rows * cols;
  uint32_t gl = 0, *gap = malloc((2 * n + 2) * sizeof(uint32_t));
  uint16_t* sym = malloc((2 * n + 2) * sizeof(uint16_t));
  uint8_t *rest = malloc(3 * n + 1), slen[258], glen[4096];
  uint32_t scode[258], gcode[4096];
  size_t e = 0, stored = 0, run = 0, pos;
  while ((1u << gl) < g) ++gl;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t x = w[i];
    const int stored_zero = store_zeros && (x << 1) == 0 && (i & 1);
    if (x == bg && !stored_zero) {
      ++run;
      continue;
    }
    for (; run >= g; run -= g) gap[e] = g - 1, sym[e++] = 256; /* fillers */
    gap[e] = (uint32_t)run;
    run = 0;
    if (x == (bg ^ 0x80000000u) && !stored_zero) {
      sym[e++] = 257;
      continue;
    }
    sym[e++] = (uint16_t)((x >> 23) & 0xFFu);
    const uint32_t r = (x & 0x7FFFFFu) | (x >> 31) << 23;
    rest[3 * stored] = (uint8_t)r, rest[3 * stored + 1] = (uint8_t)(r >> 8);
    rest[3 * stored + 2] = (uint8_t)(r >> 16);
    ++stored;
  }
  for (; run >= g; run -= g) gap[e] = g - 1, sym[e++] = 256;
  for (uint32_t s = 0; s < 258; ++s) slen[s] = s >= 252 && s < 256 ? 9 : 8;
  for (uint32_t s = 0; s < g; ++s) glen[s] = (uint8_t)gl;
  canonical_codes(slen, 258, scode);
  if (gl) canonical_codes(glen, g, gcode);
  memcpy(p, "DCHF", 4);
  p[4] = 5, p[5] = 0, p[6] = 2, p[7] = 7; /* version 5, float32, rank 2, layout 7 */
  dc_test_put32(p + 8, rows);
  dc_test_put32(p + 12, cols);
  pos = 20; /* the CRC at 16 */
  dc_test_put32(p + pos, bg);
  dc_test_put32(p + pos + 4, (uint32_t)e);
  dc_test_put32(p + pos + 8, (uint32_t)stored);
  p[pos + 12] = (uint8_t)g, p[pos + 13] = (uint8_t)(g >> 8);
  pos += 14;
  p[pos++] = (uint8_t)gl; /* gap code: L, then the only symbol (L = 0) or the lengths */
  if (!gl) {
    p[pos++] = 0, p[pos++] = 0;
  } else {
    for (uint32_t s = 0; s < g; s += 2) p[pos++] = (uint8_t)(gl | (s + 1 < g ? gl << 4 : 0));
  }
  p[pos++] = 9; /* symbol code */
  for (uint32_t s = 0; s < 258; s += 2) p[pos++] = (uint8_t)(slen[s] | slen[s + 1] << 4);
  uint64_t bits[4] = {0, 0, 0, 0};
  for (size_t j = 0; j < e; ++j) bits[j & 3] += gl + slen[sym[j]];
  uint8_t* st[4];
  st[0] = p + pos + 16;
  for (int s = 0; s < 4; ++s) {
    const uint32_t size = (uint32_t)((bits[s] + 7) / 8);
    dc_test_put32(p + pos + 4 * s, size);
    if (s < 3) st[s + 1] = st[s] + size;
    memset(st[s], 0, size);
  }
  for (int s = 0; s < 4; ++s) { /* §7: entry j in stream j mod 4, its gap code then its symbol */
    uint64_t b = 0;
    for (size_t j = (size_t)s; j < e; j += 4) {
      put_code(st[s], &b, gl ? gcode[gap[j]] : 0, gl);
      put_code(st[s], &b, scode[sym[j]], slen[sym[j]]);
    }
  }
  pos = (size_t)(st[3] - p) + (size_t)((bits[3] + 7) / 8);
  memcpy(p + pos, rest, 3 * stored);
  pos += 3 * stored;
  dc_test_put32(p + 16, dc_crc32(dc_crc32(0, p, 16), p + 20, pos - 20));
  free(gap), free(sym), free(rest);
  return pos;
}

/* A float32 weight of n elements (bit patterns), `permille` of them non-zero: kind 0 random
 * floats (> 255 distinct values once there are enough of them), 1 forty values (rows of codes),
 * 2 random floats with NaN payloads, infinities and subnormals among them; the zeros +0.0, or
 * -0.0 at negzero_permille of them (tfmot's strip_pruning leaves -0.0 where a pruned weight was
 * negative). */
static void planes18_weights(uint32_t* w, size_t n, uint32_t permille, int kind,
                             uint32_t negzero_permille) {
  static const uint32_t special[] = {0x7FC00001u, 0xFF812345u, 0x7F800000u,
                                     0xFF800000u, 0x00000001u, 0x807FFFFFu};
  for (size_t i = 0; i < n; ++i) {
    if (rnd() % 1000 >= permille) {
      w[i] = rnd() % 1000 < negzero_permille ? 0x80000000u : 0u;
      continue;
    }
    float f = kind == 1 ? (float)((int)(rnd() % 40) - 20) / 8.f + 1.f / 16.f
                        : (float)((int)(rnd() % 200001) - 100000) / 4096.f;
    if (f == 0.f) f = 0.5f;
    memcpy(&w[i], &f, 4);
    if (kind == 2 && rnd() % 8 == 0) w[i] = special[rnd() % 6];
  }
}

/* 1 for a tensor the build takes straight from its §18 entries: layout 7, float32, rank 2, a ±0
 * background (FORMAT.md §18: the body after the header and CRC starts with it). */
static int planes18_direct(const uint8_t* p, size_t n) {
  dc_tensor_info info;
  if (dc_peek(p, n, &info) != DC_OK || info.layout != DC_LAYOUT_SPARSE_PLANES ||
      info.dtype != DC_DTYPE_FLOAT32 || info.rank != 2)
    return 0;
  return (dc_test_get32(p + 8 + 4 * 2 + 4) << 1) == 0;
}

/* 1 for a §18 tensor a lookup table takes straight from its entries: planes18_direct with a +0.0
 * background, or a -0.0 one with G = 1 (with gaps, the -0.0s between the entries are elements the
 * table keeps: the dense copy). */
static int planes18_table_direct(const uint8_t* p, size_t n) {
  return planes18_direct(p, n) && (dc_test_get32(p + 20) == 0 || (p[32] | p[33] << 8) == 1);
}

/* Builds p (n bytes) three ways with `build` (dc_sparse_fc_build or dc_sparse_table_build): by its
 * default route (a), through the dense copy (b, dc_sparse_fc_set_direct(0)) and with the helper
 * thread on every form (c, dc_sparse_fc_set_helper_bytes(0)); checks the three give the same status
 * and decode status.  Returns 1 when all three built (the caller frees them), else 0 (freed). */
typedef dc_sfc_status (*sfc_build_fn)(const uint8_t*, size_t, dc_sparse_fc*, dc_status*, char*,
                                      size_t);
static int build_three_ways(sfc_build_fn build, const uint8_t* p, size_t n, dc_sparse_fc* a,
                            dc_sparse_fc* b, dc_sparse_fc* c, const char* what, const char* name) {
  dc_status da = DC_OK, db = DC_OK, dh = DC_OK;
  char why[200] = "";
  const dc_sfc_status sa = build(p, n, a, &da, why, sizeof why);
  const int was = dc_sparse_fc_set_direct(0);
  const dc_sfc_status sb = build(p, n, b, &db, why, sizeof why);
  dc_sparse_fc_set_direct(was);
  const size_t old = dc_sparse_fc_set_helper_bytes(0);
  const dc_sfc_status sh = build(p, n, c, &dh, why, sizeof why);
  dc_sparse_fc_set_helper_bytes(old);
  CHECK(sa == sb && sh == sa && da == db && dh == da,
        "%s: %sroutes %d/%d, dense %d/%d, helper %d/%d", name, what, sa, da, sb, db, sh, dh);
  if (sa == DC_SFC_OK && sb == DC_SFC_OK && sh == DC_SFC_OK) return 1;
  if (sa == DC_SFC_OK) dc_sparse_fc_free(a);
  if (sb == DC_SFC_OK) dc_sparse_fc_free(b);
  if (sh == DC_SFC_OK) dc_sparse_fc_free(c);
  return 0;
}

/* The lookup-table form of a §18 tensor p (n bytes) of the decoded table raw (NULL: not
 * decodable): built from the entries (+0.0 background) and through the dense copy
 * (dc_sparse_fc_set_direct(0)), and with the helper thread on every form: the same status and
 * decode status, the same form byte for byte, which holds every element of raw but +0.0 (-0.0,
 * NaN payloads, infinities as stored), the value form exactly for > 255 distinct kept values;
 * every row gathered (reverse order, int32 and int64 indices) is raw's, bit for bit; indices out
 * of range (-1, rows, 2^32) are refused at their position, nothing written.  build_max: at the
 * count the same form; one below, a value form is refused (TOO_DENSE, the count kept, the decoded
 * table handed over), rows of codes are not; at the entries (E) the direct route. */
static int table_values, table_direct_values, table_neg_zeros, table_negbg; /* what was seen */
static void check_planes18_table(const uint8_t* p, size_t n, const uint32_t* raw,
                                 const char* name) {
  dc_sparse_fc a, b, c;
  const int direct = planes18_table_direct(p, n);
  if (!build_three_ways(dc_sparse_table_build, p, n, &a, &b, &c, "table ", name)) return;
  table_negbg += direct && dc_test_get32(p + 20) != 0; /* -0.0 background, G = 1 */
  CHECK(a.table == 1 && a.from_dense == !direct && b.from_dense == 1 &&
            c.from_dense == a.from_dense && !a.row_sum && !a.tile_e,
        "%s: table from_dense %u / %u (direct %d)", name, a.from_dense, b.from_dense, direct);
  CHECK(sfc_same_form(&a, &b) && sfc_same_form(&c, &a), "%s: the table routes' forms differ", name);
  if (raw) {
    const size_t cells = (size_t)a.rows * a.cols, row = 4 * (size_t)a.cols, m = a.rows;
    uint64_t kept = 0, distinct;
    for (size_t i = 0; i < cells; ++i) kept += raw[i] != 0;
    { /* distinct kept bit patterns, up to 256 */
      uint32_t seen[256];
      distinct = 0;
      for (size_t i = 0; i < cells && distinct <= DC_SFC_MAX_VALUES; ++i) {
        size_t j = 0;
        if (raw[i] == 0) continue;
        while (j < distinct && seen[j] != raw[i]) ++j;
        if (j == distinct) {
          if (distinct < 256) seen[distinct] = raw[i];
          ++distinct;
        }
      }
    }
    const int values = distinct > DC_SFC_MAX_VALUES;
    table_values += values, table_direct_values += values && direct;
    for (size_t i = 0; i < cells && values; ++i) {
      if (raw[i] == 0x80000000u) {
        ++table_neg_zeros;
        break;
      }
    }
    CHECK(a.nnz == kept && sfc_form_mismatch(&a, raw) < 0, "%s: table holds %llu, %llu kept", name,
          (unsigned long long)a.nnz, (unsigned long long)kept);
    CHECK((a.value != NULL) == values && (a.code == NULL) == values,
          "%s: table value form %d for %s than 255 values", name, !!a.value,
          values ? "more" : "no more");
    CHECK(dc_sparse_fc_bytes(&a) == sizeof a + 4 * ((size_t)m + 1) + (values ? 6 : 3) * kept,
          "%s: table bytes %zu", name, dc_sparse_fc_bytes(&a));
    int32_t* i32 = malloc((m + 2) * sizeof(int32_t));
    int64_t* i64 = malloc((m + 2) * sizeof(int64_t));
    uint8_t* out = malloc((m + 2) * row);
    for (size_t i = 0; i < m; ++i) i64[i] = i32[i] = (int32_t)(m - 1 - i);
    for (int w = 0; w < 2; ++w) {
      memset(out, 0x5a, (m + 2) * row);
      CHECK(dc_sparse_gather(&a, w ? (const void*)i64 : (const void*)i32, w, m, out) == m,
            "%s: table gather", name);
      for (size_t i = 0; i < m; ++i)
        CHECK(memcmp(out + i * row, (const uint8_t*)raw + (size_t)i32[i] * row, row) == 0,
              "%s: gathered row %d differs (idx64 %d)", name, i32[i], w);
    }
    i32[m] = (int32_t)m, i64[m] = -1;
    i32[m + 1] = -1, i64[m + 1] = INT64_MAX;
    memset(out, 0x5a, (m + 2) * row);
    CHECK(dc_sparse_gather(&a, i32, 0, m + 2, out) == m, "%s: int32 bad index", name);
    CHECK(dc_sparse_gather(&a, i64, 1, m + 2, out) == m, "%s: int64 bad index", name);
    i64[0] = (int64_t)1 << 32;
    CHECK(dc_sparse_gather(&a, i64, 1, 1, out) == 0, "%s: 2^32 index", name);
    int clean = 1;
    for (size_t i = 0; i < (m + 2) * row; ++i) clean &= out[i] == 0x5a;
    CHECK(clean, "%s: a failed table gather wrote output", name);
    free(i32), free(i64), free(out);
    /* build_max: the value form's limit */
    dc_sparse_fc t;
    dc_status ds = DC_OK;
    char why[200] = "";
    void* dense = (void*)&t;
    dc_sfc_status st = dc_sparse_table_build_max(p, n, kept, &t, &dense, &ds, why, sizeof why);
    CHECK(st == DC_SFC_OK && !dense && sfc_same_form(&t, &a) &&
              (!direct || t.from_dense == (kept < dc_test_get32(p + 24))),
          "%s: table build_max at the count: %d, from_dense %u", name, st, t.from_dense);
    if (st == DC_SFC_OK) dc_sparse_fc_free(&t);
    if (kept) {
      st = dc_sparse_table_build_max(p, n, kept - 1, &t, &dense, &ds, why, sizeof why);
      if (values) {
        CHECK(st == DC_SFC_TOO_DENSE && t.nnz == kept && !t.row_ptr && !t.value && dense &&
                  !memcmp(dense, raw, cells * 4),
              "%s: table build_max below the count: %d, count %llu", name, st,
              (unsigned long long)t.nnz);
        free(dense);
      } else {
        CHECK(st == DC_SFC_OK && !dense && sfc_same_form(&t, &a),
              "%s: rows of codes take any count: %d", name, st);
        if (st == DC_SFC_OK) dc_sparse_fc_free(&t);
      }
    }
  }
  dc_sparse_fc_free(&a);
  dc_sparse_fc_free(&b);
  dc_sparse_fc_free(&c);
}

/* Builds of a §18 tensor p (n bytes) of the decoded weight raw, straight from the entries (or,
 * background not ±0, through the dense copy) and through the dense copy
 * (dc_sparse_fc_set_direct(0)): the same status (decode status), and the same form byte for byte
 * (row_ptr, col, value or codes and codebook: sfc_same_form), which holds exactly raw's non-zeros
 * (-0.0 none), the value form exactly for > 255 distinct non-zero values; m->from_dense says the
 * route.  Also with the helper thread on every form (dc_sparse_fc_set_helper_bytes(0)). */
static void check_planes18_routes(const uint8_t* p, size_t n, const uint32_t* raw,
                                  const char* name) {
  dc_sparse_fc a, b, c;
  const int direct = planes18_direct(p, n);
  if (build_three_ways(dc_sparse_fc_build, p, n, &a, &b, &c, "", name)) {
    CHECK(a.from_dense == !direct && b.from_dense == 1 && c.from_dense == a.from_dense,
          "%s: from_dense %u / %u (direct %d)", name, a.from_dense, b.from_dense, direct);
    CHECK(sfc_same_form(&a, &b) && sfc_same_form(&c, &a), "%s: the routes' forms differ", name);
    if (raw) {
      const size_t cells = (size_t)a.rows * a.cols;
      CHECK(sfc_form_mismatch(&a, raw) < 0, "%s: form differs from the weight", name);
      const int values =
          dc_sparse_fc_count_values((const float*)(const void*)raw, cells) > DC_SFC_MAX_VALUES;
      CHECK((a.value != NULL) == values && (a.code == NULL) == values && !a.tile_e,
            "%s: value form %d for %s than 255 values", name, !!a.value,
            values ? "more" : "no more");
    }
    dc_sparse_fc_free(&a);
    dc_sparse_fc_free(&b);
    dc_sparse_fc_free(&c);
  }
  check_planes18_table(p, n, raw, name);
}

/* dc_sparse_fc_build_max on a §18 tensor built straight from its entries: at the count (and at R,
 * the stored entries, where they are more) the same form from the entries; one below: refused
 * (TOO_DENSE, the count kept) and the decoded weight handed over (R > max_nnz takes the dense
 * route, which counts the non-zeros: the caller then runs the layer on that weight without
 * decoding it again). */
static void check_planes18_max(const uint8_t* p, size_t n, const uint32_t* raw, uint64_t stored,
                               const char* name) {
  dc_sparse_fc a, b;
  dc_status ds = DC_OK;
  char why[200] = "";
  void* dense = (void*)&a;
  CHECK(dc_sparse_fc_build(p, n, &a, &ds, why, sizeof why) == DC_SFC_OK, "%s: build", name);
  const uint64_t lims[2] = {a.nnz, stored};
  for (int i = 0; i < 2; ++i) {
    dc_sfc_status st = dc_sparse_fc_build_max(p, n, lims[i], &b, &dense, &ds, why, sizeof why);
    CHECK(st == DC_SFC_OK && dense == NULL && sfc_same_form(&a, &b) &&
              b.from_dense == (lims[i] < stored),
          "%s: build_max at %llu (count %llu, %llu stored): %d, from_dense %u", name,
          (unsigned long long)lims[i], (unsigned long long)a.nnz, (unsigned long long)stored, st,
          b.from_dense);
    if (st == DC_SFC_OK) dc_sparse_fc_free(&b);
  }
  if (a.nnz) {
    dc_sfc_status st = dc_sparse_fc_build_max(p, n, a.nnz - 1, &b, &dense, &ds, why, sizeof why);
    const size_t bytes = (size_t)a.rows * a.cols * 4;
    CHECK(st == DC_SFC_TOO_DENSE && b.nnz == a.nnz && !b.row_ptr && !b.value && dense &&
              !memcmp(dense, raw, bytes),
          "%s: build_max below the count: %d, count %llu", name, st, (unsigned long long)b.nnz);
    free(dense);
  }
  dc_sparse_fc_free(&a);
}

/* Damaged §18 tensors: every byte flipped (at a stride) with the CRC recomputed, so that the
 * entries' checks must catch it, and without (DC_ERR_CHECKSUM), and truncations: the direct build's
 * status equals the dense route's and dc_decode's, and whatever builds is the same form on both
 * routes (check_planes18_routes). */
static void check_planes18_damage(const uint8_t* p, size_t n, const char* name) {
  uint8_t* bad = malloc(n);
  const size_t stride = 1 + n / 400;
  for (size_t pos = 0; pos < n; pos += stride) {
    for (int f = 0; f < 3; ++f) {
      if (pos >= 16 && pos < 20 && f < 2) continue;
      memcpy(bad, p, n);
      bad[pos] ^= f == 1 ? 0x01 : 0xa5;
      if (f < 2) dc_test_put32(bad + 16, dc_crc32(dc_crc32(0, bad, 16), bad + 20, n - 20));
      dc_sparse_fc m;
      dc_status ds = DC_OK;
      char why[200] = "";
      dc_tensor_info info;
      const dc_sfc_status st = dc_sparse_fc_build(bad, n, &m, &ds, why, sizeof why);
      if (st == DC_SFC_OK) dc_sparse_fc_free(&m);
      const dc_status dp = dc_peek(bad, n, &info);
      /* every byte but the CRC's is under it (§8): a flip alone is refused, whatever it hit */
      if (f == 2) CHECK(st == DC_SFC_DECODE, "%s: flip %zu without the CRC: %d", name, pos, st);
      if (dp != DC_OK) {
        CHECK(st == DC_SFC_DECODE && ds == dp, "%s: flip %zu: build %d/%d, dc_peek %d", name, pos,
              st, ds, dp);
      } else if (info.output_bytes <= (16u << 20)) {
        void* out = malloc(info.output_bytes ? info.output_bytes : 1);
        const dc_status dd = dc_decode(bad, n, out, info.output_bytes);
        CHECK(st == DC_SFC_DECODE ? ds == dd : st != DC_SFC_OK || dd == DC_OK,
              "%s: flip %zu (%d): build %d/%d, dc_decode %d", name, pos, f, st, ds, dd);
        if (info.layout == DC_LAYOUT_SPARSE_PLANES)
          check_planes18_routes(bad, n, dd == DC_OK && info.rank == 2 ? (const uint32_t*)out : NULL,
                                name);
        free(out);
      }
    }
  }
  for (size_t cut = 0; cut < n; cut += 1 + n / 50) {
    dc_sparse_fc m;
    dc_status ds = DC_OK;
    char why[200] = "";
    CHECK(dc_sparse_fc_build(p, cut, &m, &ds, why, sizeof why) == DC_SFC_DECODE && ds != DC_OK &&
              !m.row_ptr && !m.value,
          "%s: cut at %zu built", name, cut);
  }
  free(bad);
}

/* §18 float32 weights of every shape class (1 x N, N x 1, empty rows, 65,536 columns), density,
 * gap alphabet, value kind (> 255 values: the value form; <= 255: rows of codes), -0.0 share,
 * background (+0.0, -0.0: straight from the entries; 1.0: the dense copy) and stored ±0s: the
 * direct build equals the dense copy's byte for byte (check_planes18_routes), its limits
 * (check_planes18_max), and, for a few, damaged copies (check_planes18_damage).  float16 /
 * bfloat16 §18 tensors have no compact form (the kernels are float32 / int8) on either route. */
static void test_planes18_direct(void) {
  static const uint32_t shapes[][2] = {{1, 1},    {1, 700}, {700, 1},  {33, 70},
                                       {64, 300}, {3, 40},  {2, 65536}};
  static const uint32_t permilles[] = {0, 10, 100, 200, 500, 1000};
  static const uint32_t gaps[] = {1, 2, 16, 256, 4096};
  int cases = 0, values = 0, codes = 0, damaged = 0;
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; ++si) {
    const uint32_t rows = shapes[si][0], cols = shapes[si][1];
    const size_t n = (size_t)rows * cols;
    uint32_t* w = malloc(n * sizeof(uint32_t));
    uint8_t* p = malloc(planes18_bound(n, 4096));
    for (size_t di = 0; di < sizeof permilles / sizeof permilles[0]; ++di) {
      for (int kind = 0; kind < 3; ++kind) {
        if (cols == 65536 && (permilles[di] > 10 || kind)) continue; /* kept small */
        const uint32_t g = gaps[rnd() % 5], negzero = (uint32_t)(rnd() % 3) * 250;
        const int store_zeros = rnd() % 4 == 0, bgi = (int)(rnd() % 5);
        const uint32_t bg = bgi == 4 ? 0x3F800000u : bgi == 3 ? 0x80000000u : 0u;
        planes18_weights(w, n, permilles[di], kind, negzero);
        if (rows == 64) memset(w + 5 * cols, 0, 7 * cols * sizeof(uint32_t)); /* empty rows */
        if (bg == 0x3F800000u)
          for (size_t i = 0; i < n; i += 2) w[i] = bg;
        const size_t len = pack_planes18(p, w, rows, cols, bg, g, store_zeros);
        char name[96];
        snprintf(name, sizeof name, "planes18 %ux%u %u/1000 kind %d G %u bg %08x%s", rows, cols,
                 permilles[di], kind, g, bg, store_zeros ? " stored zeros" : "");
        uint32_t* raw = malloc(n * sizeof(uint32_t));
        CHECK(dc_decode(p, len, raw, n * 4) == DC_OK && !memcmp(raw, w, n * 4),
              "%s: the test's packer", name);
        check_planes18_routes(p, len, raw, name);
        dc_sparse_fc m;
        dc_status ds;
        char why[200] = "";
        if (dc_sparse_fc_build(p, len, &m, &ds, why, sizeof why) == DC_SFC_OK) {
          values += m.value != NULL, codes += m.value == NULL;
          if (planes18_direct(p, len)) check_planes18_max(p, len, raw, dc_test_get32(p + 28), name);
          dc_sparse_fc_free(&m);
        }
        if (n <= 2100 && permilles[di] == 200 && kind != 1) {
          check_planes18_damage(p, len, name);
          ++damaged;
        }
        free(raw);
        ++cases;
      }
    }
    free(w), free(p);
  }
  CHECK(values >= 10 && codes >= 10 && damaged >= 4,
        "planes18: %d value forms, %d codes, %d damaged", values, codes, damaged);
  CHECK(table_values >= 10 && table_direct_values >= 5 && table_neg_zeros >= 5 && table_negbg >= 1,
        "planes18 tables: %d value forms, %d from the entries, %d with -0.0, %d -0.0 backgrounds",
        table_values, table_direct_values, table_neg_zeros, table_negbg);
  printf(
      "test_sparse_fc: §18 direct build: %d tensors (%d value forms, %d rows of codes); "
      "tables: %d value forms (%d from the entries, %d with -0.0), %d from -0.0 backgrounds\n",
      cases, values, codes, table_values, table_direct_values, table_neg_zeros, table_negbg);
}

static void test_vectors(void) {
  size_t n = sizeof codec_vectors / sizeof codec_vectors[0];
  int built = 0, direct = 0, tiled = 0;
  for (size_t i = 0; i < n; ++i) {
    const codec_vector* v = &codec_vectors[i];
    dc_sparse_fc m;
    dc_status ds;
    char why[200] = "";
    dc_sfc_status st = dc_sparse_fc_build(v->packed, v->packed_size, &m, &ds, why, sizeof why);
    int fits = v->rank == 2 && (v->dtype == DC_DTYPE_FLOAT32 || v->dtype == DC_DTYPE_INT8) &&
               v->dims[0] > 0 && v->dims[1] > 0;
    if (!fits) {
      CHECK(st == DC_SFC_UNSUPPORTED && why[0], "%s: expected UNSUPPORTED, got %d", v->name, st);
      st = dc_sparse_table_build(v->packed, v->packed_size, &m, &ds, why, sizeof why);
      CHECK(st == DC_SFC_UNSUPPORTED && why[0] && !m.row_ptr, "%s: table UNSUPPORTED", v->name);
      continue;
    }
    CHECK(st == DC_SFC_OK, "%s: build failed %d (%s)", v->name, st, why);
    if (st != DC_SFC_OK) continue;
    ++built;
    uint32_t rows = (uint32_t)v->dims[0], cols = (uint32_t)v->dims[1];
    uint64_t nnz = 0;
    for (size_t k = 0; k < v->raw_size; ++k) nnz += v->raw[k] != 0; /* int8 */
    CHECK(m.rows == rows && m.cols == cols && (m.row_ptr ? m.row_ptr[rows] == m.nnz : !!m.tile_e),
          "%s: shape", v->name);
    /* which form: int8 with the AVX-512 or AVX2 kernels, float32 of <= 32 values with the
     * AVX-512 ones keep the tiles alone while they fit */
    const int tiles_ok =
        v->dtype == DC_DTYPE_INT8
            ? strcmp(dc_sparse_fc_kernel_name(), "scalar") != 0
            : m.num_values <= 32 && strcmp(dc_sparse_fc_kernel_name(), "avx512") == 0;
    CHECK(!m.tile_e || tiles_ok, "%s: a tile form where it does not belong", v->name);
    CHECK(!(m.tile_e && m.row_ptr), "%s: rows and tiles both kept", v->name);
    if (m.tile_e) {
      CHECK(sfc_tiles_fit(&m, m.tile_entries, m.nnz), "%s: tiles kept past their fill", v->name);
      /* the same build at a fill of 0 turns them into rows (tiles_to_rows): those of a build
       * with the scalar kernels, which never makes tiles; its kernels give the same results */
      dc_sparse_fc rows, ref;
      const uint32_t fill = dc_sparse_fc_set_tile_fill(0);
      CHECK(dc_sparse_fc_build(v->packed, v->packed_size, &rows, &ds, why, sizeof why) == DC_SFC_OK,
            "%s: build at fill 0", v->name);
      dc_sparse_fc_set_tile_fill(fill);
      const int was = dc_sparse_fc_use_simd(0);
      CHECK(dc_sparse_fc_build(v->packed, v->packed_size, &ref, &ds, why, sizeof why) == DC_SFC_OK,
            "%s: scalar build", v->name);
      dc_sparse_fc_use_simd(was);
      CHECK(!rows.tile_e && !ref.tile_e && sfc_same_form(&rows, &ref),
            "%s: rows of the tiles differ from the rows", v->name);
      dc_sparse_fc port; /* the tile builder's portable loop: the same form */
      const int was2 = dc_sparse_fc_use_simd(2);
      CHECK(
          dc_sparse_fc_build(v->packed, v->packed_size, &port, &ds, why, sizeof why) == DC_SFC_OK &&
              sfc_same_form(&port, &m),
          "%s: tiles of the portable loop differ", v->name);
      dc_sparse_fc_use_simd(was2);
      dc_sparse_fc_free(&port);
      dc_sparse_fc_free(&rows), dc_sparse_fc_free(&ref);
      ++tiled;
    } else if (tiles_ok) { /* rows instead: the tiles would not fit */
      dc_sparse_fc t;
      memcpy(&t, &m, sizeof t);
      const int was = dc_sparse_fc_use_simd(1);
      /* the tiles of a copy of the rows (t shares m's rows: only its tile arrays are freed) */
      t.tile_e = NULL;
      CHECK(dc_sparse_fc_add_tiles(&t) == 1 && !sfc_tiles_fit(&t, t.tile_entries, t.nnz),
            "%s: rows kept though the tiles fit", v->name);
      dc_sparse_fc_use_simd(was);
      free(t.tile_ptr), free(t.tile_block), free(t.tile_steps), free(t.tile_e);
    }
    check_form(&m, v->raw, v->name);
    /* §6 / §11 sparse with a zero background and float32 §18 with a ±0 one: straight from the
     * entries, else the dense route */
    int zero_bg = strncmp(v->name, "sparse_fc_", 10) == 0 ||
                  strncmp(v->name, "grouped_sparse_fc_", 18) == 0 ||
                  planes18_direct(v->packed, v->packed_size);
    direct += zero_bg;
    CHECK(m.from_dense == !zero_bg, "%s: built %s", v->name,
          m.from_dense ? "through a dense copy" : "from the entries");
    if (zero_bg) flips_with_crc(v);
    if (v->dtype == DC_DTYPE_FLOAT32) {
      float* w = malloc(v->raw_size);
      memcpy(w, v->raw, v->raw_size);
      check_float_vs_raw(&m, w, v->name);
      free(w);
    }
    if (v->dtype == DC_DTYPE_INT8) {
      CHECK(m.nnz == nnz, "%s: nnz %llu vs %llu", v->name, (unsigned long long)m.nnz,
            (unsigned long long)nnz);
      for (size_t b = 1; b <= 10; b += 4)
        check_int8((const int8_t*)v->raw, rows, cols, &m, b, v->name);
    }
    CHECK(dc_sparse_fc_bytes(&m) > 0, "%s: bytes", v->name);
    dc_sparse_fc_free(&m);
    check_table(v);
    /* every truncation and a byte flip at every position: clean status, no crash */
    for (size_t cut = 0; cut < v->packed_size; cut += 1 + v->packed_size / 64) {
      st = dc_sparse_fc_build(v->packed, cut, &m, &ds, why, sizeof why);
      CHECK(st == DC_SFC_DECODE && ds != DC_OK && m.row_ptr == NULL && m.tile_e == NULL,
            "%s: cut %zu -> %d", v->name, cut, st);
    }
    uint8_t* bad = malloc(v->packed_size);
    for (size_t pos = 0; pos < v->packed_size; ++pos) {
      memcpy(bad, v->packed, v->packed_size);
      bad[pos] ^= 0x5a;
      st = dc_sparse_fc_build(bad, v->packed_size, &m, &ds, why, sizeof why);
      CHECK(st != DC_SFC_OK ||
                (m.rows == rows && (m.row_ptr ? m.row_ptr[m.rows] == m.nnz : !!m.tile_e)),
            "%s: flip %zu built an inconsistent form", v->name, pos);
      if (st == DC_SFC_OK) dc_sparse_fc_free(&m);
    }
    free(bad);
  }
  CHECK(built >= 1, "no 2-D float32/int8 vector in codec_vectors.h");
  CHECK(direct == 6, "%d vectors built straight from the entries, expected 6", direct);
  if (strcmp(dc_sparse_fc_kernel_name(), "scalar") != 0)
    CHECK(tiled >= 2, "only %d vectors kept the tile form", tiled);
  else
    CHECK(tiled == 0, "%d tile forms built with the scalar kernels", tiled);
}

/* Forms built with the helper thread (dc_sparse_fc_set_helper_bytes(0): on a multi-core machine,
 * §6 tensors decoded by this thread and placed by the helper) equal the one-thread ones. */
static void test_helper_build_equal(void) {
  size_t n = sizeof codec_vectors / sizeof codec_vectors[0];
  int compared = 0;
  for (size_t i = 0; i < n; ++i) {
    const codec_vector* v = &codec_vectors[i];
    dc_sparse_fc a, b;
    dc_status da, db;
    char why[200] = "";
    size_t old = dc_sparse_fc_set_helper_bytes((size_t)-1);
    dc_sfc_status sa = dc_sparse_fc_build(v->packed, v->packed_size, &a, &da, why, sizeof why);
    dc_sparse_fc_set_helper_bytes(0);
    dc_sfc_status sb = dc_sparse_fc_build(v->packed, v->packed_size, &b, &db, why, sizeof why);
    dc_sparse_fc_set_helper_bytes(old);
    CHECK(sa == sb && (sa != DC_SFC_DECODE || da == db), "%s: helper build %d/%d vs %d/%d", v->name,
          sb, db, sa, da);
    if (sa == DC_SFC_OK && sb == DC_SFC_OK) {
      ++compared;
      CHECK(a.nnz == b.nnz && a.rows == b.rows && a.from_dense == b.from_dense &&
                a.packed_file == -1 && b.packed_file == 0 && sfc_same_form(&a, &b),
            "%s: helper build differs", v->name);
    }
    if (sa == DC_SFC_OK) dc_sparse_fc_free(&a);
    if (sb == DC_SFC_OK) dc_sparse_fc_free(&b);
  }
  CHECK(compared >= 5, "only %d forms compared", compared);
}

/* permille / 1000 of the weights non-zero */
static void test_int8_kernel_random(uint32_t rows, uint32_t cols, uint32_t permille) {
  int8_t* w = calloc((size_t)rows * cols, 1);
  for (size_t i = 0; i < (size_t)rows * cols; ++i) {
    if (rnd() % 1000 < permille) w[i] = (int8_t)(rnd() & 0xff);
  }
  dc_sparse_fc m;
  memset(&m, 0, sizeof m);
  m.rows = rows, m.cols = cols, m.dtype = DC_DTYPE_INT8;
  m.row_ptr = malloc((rows + 1) * sizeof(uint32_t));
  m.col = malloc((size_t)rows * cols * 2);
  m.code = malloc((size_t)rows * cols);
  m.row_sum = malloc(rows * sizeof(int32_t));
  uint32_t k = 0;
  for (uint32_t r = 0; r < rows; ++r) {
    m.row_ptr[r] = k;
    m.row_sum[r] = 0;
    for (uint32_t c = 0; c < cols; ++c) {
      int8_t v = w[(size_t)r * cols + c];
      if (!v) continue;
      m.col[k] = (uint16_t)c, m.code[k++] = (uint8_t)v, m.row_sum[r] += v;
    }
  }
  m.row_ptr[rows] = k, m.nnz = k;
  for (size_t b = 1; b <= 19; ++b) check_int8(w, rows, cols, &m, b, "random");
  /* the tile form (built with the AVX-512 kernels in use, also in the scalar pass: it then runs
   * on the scalar tile kernel): next to the rows, then alone, every batch size */
  const int was = dc_sparse_fc_use_simd(1);
  const int built = dc_sparse_fc_add_tiles(&m);
  dc_sparse_fc_use_simd(was);
  CHECK(built == tile_cpu(), "int8 tiles %ux%u: built %d", rows, cols, built);
  if (built) {
    CHECK(sfc_tiles_mismatch(&m, w) < 0, "int8 tile form of %ux%u differs", rows, cols);
    for (size_t b = 1; b <= 19; ++b) check_int8(w, rows, cols, &m, b, "random, rows and tiles");
    free(m.row_ptr), free(m.col), free(m.code);
    m.row_ptr = NULL, m.col = NULL, m.code = NULL;
    for (size_t b = 1; b <= 19; ++b) check_int8(w, rows, cols, &m, b, "random, tiles");
  }
  dc_sparse_fc_free(&m);
  free(w);
}

/* A [rows, k / rows] §5 float32 tensor of k distinct codebook values (k <= 256), element i being
 * value i % used (used = 0: k, each used once; else the others unused), of which the first `coded`
 * have a code (coded = 0: all; the others none, length 0: FORMAT.md §4); value 0 made +0.0 when
 * zero_first (k - 1 non-zero values then).  Returns its size (p: 2,048 bytes). */
static size_t pack_values_coded(uint8_t* p, uint32_t k, uint32_t rows, int zero_first,
                                uint32_t used, uint32_t coded) {
  uint8_t len[256], q[2048];
  uint16_t sym[256];
  uint32_t sizes_at, crc, big = 1, lb = 0;
  const uint32_t c = coded ? coded : k;
  while (big < c) big <<= 1, ++lb;
  /* a complete code of the c first: big - c symbols of length lb - 1, the others of length lb */
  for (uint32_t s = 0; s < k; ++s)
    len[s] = (uint8_t)(s >= c        ? 0
                       : s < big - c ? lb - 1
                                     : lb),
    sym[s] = (uint16_t)(used ? s % used : s);
  CHECK(k >= 2 && k <= 256 && c >= 2 && c <= k && (used ? used : k) <= c && k % rows == 0 &&
            pack_dense_f32_bound(k, k) + 4 <= sizeof q,
        "pack_values %u", k);
  size_t n = pack_dense_f32(q, len, k, sym, k, &sizes_at); /* rank 1 [k] */
  memcpy(p, q, 8);
  p[6] = 2; /* rank 2: dims rows, k / rows, then the check and the same body */
  uint32_t d0 = rows, d1 = k / rows;
  memcpy(p + 8, &d0, 4), memcpy(p + 12, &d1, 4);
  memcpy(p + 20, q + 16, n - 16);
  if (zero_first) memset(p + 20 + 2, 0, 4); /* codebook[0] after K */
  crc = dc_crc32(dc_crc32(0, p, 16), p + 20, n + 4 - 20);
  memcpy(p + 16, &crc, 4);
  return n + 4;
}

static size_t pack_values(uint8_t* p, uint32_t k, uint32_t rows, int zero_first) {
  return pack_values_coded(p, k, rows, zero_first, 0, 0);
}

static size_t pack_256_values(uint8_t* p, int zero_first) {
  return pack_values(p, 256, 16, zero_first);
}

/* dc_sparse_fc_check says from the header alone what the build would refuse: a codebook of more
 * than DC_SFC_MAX_VALUES non-zero values (the build then decodes nothing), not-2-D weights. */
static void test_check_from_header(void) {
  uint8_t p[2048];
  char why[200] = "";
  dc_sparse_fc m;
  dc_status ds;
  size_t n = pack_256_values(p, 0);
  CHECK(dc_sparse_fc_check(p, n, 0, why, sizeof why) == DC_SFC_UNSUPPORTED &&
            strstr(why, "in its codebook"),
        "256 values: check said '%s'", why);
  why[0] = 0;
  CHECK(dc_sparse_fc_build(p, n, &m, &ds, why, sizeof why) == DC_SFC_UNSUPPORTED &&
            strstr(why, "in its codebook") && !m.row_ptr,
        "256 values: build said '%s'", why);
  p[n - 1] ^= 0x5a; /* payload corrupted (CRC no longer matches): the header still answers */
  CHECK(dc_sparse_fc_check(p, n, 1, why, sizeof why) == DC_SFC_UNSUPPORTED, "table, corrupted");
  CHECK(dc_sparse_fc_build(p, n, &m, &ds, why, sizeof why) == DC_SFC_UNSUPPORTED,
        "build of a corrupted tensor it cannot hold: UNSUPPORTED before any decode");
  n = pack_256_values(p, 1); /* +0.0 is not kept: 255 values fit */
  why[0] = 0;
  CHECK(dc_sparse_fc_check(p, n, 0, why, sizeof why) == DC_SFC_OK && !why[0], "255: %s", why);
  CHECK(dc_sparse_fc_build(p, n, &m, &ds, why, sizeof why) == DC_SFC_OK && m.num_values == 255 &&
            m.nnz == 255,
        "255 values: build %s", why);
  dc_sparse_fc_free(&m);
  /* a table keeps -0.0 / +0.0 apart but drops +0.0 too: 255 values */
  CHECK(dc_sparse_fc_check(p, n, 1, why, sizeof why) == DC_SFC_OK, "table of 255 values");
  p[n - 1] ^= 0x5a;
  CHECK(dc_sparse_fc_check(p, n, 0, why, sizeof why) == DC_SFC_OK, "header only: no CRC check");
  CHECK(
      dc_sparse_fc_build(p, n, &m, &ds, why, sizeof why) == DC_SFC_DECODE && ds == DC_ERR_CHECKSUM,
      "corrupted tensor that fits: the decode error");
  p[0] = 'X';
  CHECK(dc_sparse_fc_check(p, n, 0, why, sizeof why) == DC_SFC_DECODE, "bad magic");
  CHECK(dc_sparse_fc_check(NULL, 0, 0, why, sizeof why) == DC_SFC_ARGUMENT, "NULL");
  for (size_t i = 0; i < sizeof codec_vectors / sizeof codec_vectors[0]; ++i) {
    const codec_vector* v = &codec_vectors[i];
    dc_sfc_status b = dc_sparse_fc_build(v->packed, v->packed_size, &m, &ds, why, sizeof why);
    dc_sparse_fc_free(&m);
    dc_sfc_status c = dc_sparse_fc_check(v->packed, v->packed_size, 0, why, sizeof why);
    /* the check refuses only what the build refuses; here only shapes, types */
    CHECK(c == (b == DC_SFC_UNSUPPORTED ? DC_SFC_UNSUPPORTED : DC_SFC_OK), "%s: check %d build %d",
          v->name, c, b);
  }
}

/* A tile form said (f) but rows built (m): the build kept the count of its tiles (tile_entries,
 * dc_sparse_fc.h: they did not fit: sfc_tiles_fit, more than DC_SFC_TILE_FILL entries per
 * non-zero or, for int8, more bytes than the dense weight and the rows), and tiles
 * added to the rows (dc_sparse_fc_add_tiles: whatever their fill) have that many.  Said ROWS: no
 * tiles, none counted. */
static void check_tiles_did_not_fit(dc_sparse_fc* m, dc_sfc_form f, const char* name) {
  if (f != DC_SFC_FORM_TILES) {
    CHECK(!m->tile_e && m->tile_entries == 0, "%s: rows said, tiles built or counted", name);
    return;
  }
  if (m->tile_e) return;
  const uint64_t counted = m->tile_entries;
  CHECK(!sfc_tiles_fit(m, counted, m->nnz),
        "%s: tile form said, built as rows, but its %llu tile entries fit %llu non-zeros", name,
        (unsigned long long)counted, (unsigned long long)m->nnz);
  CHECK(dc_sparse_fc_add_tiles(m) && m->tile_entries == counted,
        "%s: %llu tile entries counted, %llu built", name, (unsigned long long)counted,
        (unsigned long long)m->tile_entries);
}

/* dc_sparse_fc_form tells from the header the form the build makes: the tile form for float32
 * of <= 32 non-zero coded codebook values and at least 4 rows while the AVX-512 kernels are in
 * use (+0.0 not counted), the rows otherwise (33 values, int8, 1..3 rows: [1, 33], [2, 1], [3, 4],
 * whose tiles never fit, dc_sparse_fc_use_simd(0), CPUs without AVX-512; 40 codebook values, all
 * coded, of which 16 are used: the rows too, though the tiles of the 16 would fit), none for what
 * the build refuses; a predicted tile form whose tiles do not fit ([4, 8] with one zero: 128
 * entries for 31 non-zeros; [4, 4] full: 64 for 16 fits; [4, 10] of 16 values with 3 zeros: 160
 * for 37) is built as rows with their count kept.  Entries without a code (length 0) are not
 * counted: 40 values of which 16 coded (and used) get the tiles, 256 of which 32 or 255 coded are
 * no longer refused (before: rows, and none). */
static void test_form_from_header(void) {
  const int avx = avx512_cpu(), was = dc_sparse_fc_use_simd(1);
  const dc_sfc_form tiles = avx ? DC_SFC_FORM_TILES : DC_SFC_FORM_ROWS;
  const struct {
    uint32_t k, rows;
    int zero_first;
    dc_sfc_form form;
    int built_tiles;
    uint32_t used, coded; /* pack_values_coded */
  } cases[] = {{32, 32, 0, tiles, avx, 0, 0},
               {33, 33, 0, DC_SFC_FORM_ROWS, 0, 0, 0},
               {33, 33, 1, tiles, avx, 0, 0},
               {33, 1, 1, DC_SFC_FORM_ROWS, 0, 0, 0},
               {34, 34, 1, DC_SFC_FORM_ROWS, 0, 0, 0},
               {16, 16, 0, tiles, avx, 0, 0},
               {2, 2, 0, DC_SFC_FORM_ROWS, 0, 0, 0},
               {12, 3, 0, DC_SFC_FORM_ROWS, 0, 0, 0},
               {16, 4, 0, tiles, avx, 0, 0},
               {32, 4, 1, tiles, 0, 0, 0},
               {40, 4, 0, DC_SFC_FORM_ROWS, 0, 16, 0},
               {40, 4, 1, DC_SFC_FORM_ROWS, 0, 16, 0},
               {40, 4, 0, DC_SFC_FORM_ROWS, 0, 33, 0},
               {256, 16, 1, DC_SFC_FORM_ROWS, 0, 0, 0},
               {256, 16, 0, DC_SFC_FORM_NONE, 0, 0, 0},
               {40, 4, 0, tiles, avx, 16, 16},
               {40, 4, 1, tiles, 0, 16, 16},
               {40, 4, 0, DC_SFC_FORM_ROWS, 0, 16, 33},
               {256, 16, 0, tiles, avx, 32, 32},
               {256, 16, 0, DC_SFC_FORM_ROWS, 0, 200, 255}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    uint8_t p[2048];
    char why[200] = "";
    dc_sparse_fc m;
    dc_status ds;
    const size_t n = pack_values_coded(p, cases[i].k, cases[i].rows, cases[i].zero_first,
                                       cases[i].used, cases[i].coded);
    const dc_sfc_form f = dc_sparse_fc_form(p, n);
    CHECK(f == cases[i].form, "form of %u values [%u, %u] zero %d: %d, expected %d", cases[i].k,
          cases[i].rows, cases[i].k / cases[i].rows, cases[i].zero_first, f, cases[i].form);
    const dc_sfc_status st = dc_sparse_fc_build(p, n, &m, &ds, why, sizeof why);
    CHECK((st == DC_SFC_OK) == (f != DC_SFC_FORM_NONE) &&
              (st != DC_SFC_OK || (m.tile_e != NULL) == cases[i].built_tiles),
          "build of %u values [%u, ...]: %d, tiles %d", cases[i].k, cases[i].rows, st,
          st == DC_SFC_OK && m.tile_e != NULL);
    if (st == DC_SFC_OK && m.nnz) { /* refused as too dense: the same count kept, if any */
      dc_sparse_fc b;
      CHECK(dc_sparse_fc_build_max(p, n, m.nnz - 1, &b, NULL, &ds, why, sizeof why) ==
                    DC_SFC_TOO_DENSE &&
                b.tile_entries == (m.tile_e ? 0 : m.tile_entries),
            "build_max of %u values [%u, ...]: %llu tile entries", cases[i].k, cases[i].rows,
            (unsigned long long)b.tile_entries);
    }
    if (st == DC_SFC_OK) {
      check_tiles_did_not_fit(&m, f, "pack_values");
      dc_sparse_fc_free(&m);
    }
    dc_sparse_fc_use_simd(0); /* the scalar kernels: rows, always */
    CHECK(dc_sparse_fc_form(p, n) == (f == DC_SFC_FORM_NONE ? DC_SFC_FORM_NONE : DC_SFC_FORM_ROWS),
          "form of %u values with the scalar kernels", cases[i].k);
    dc_sparse_fc_use_simd(4); /* the AVX2 kernels: float32 on the rows too */
    CHECK(dc_sparse_fc_form(p, n) == (f == DC_SFC_FORM_NONE ? DC_SFC_FORM_NONE : DC_SFC_FORM_ROWS),
          "form of %u values with the AVX2 kernels", cases[i].k);
    dc_sparse_fc_use_simd(1);
    p[0] = 'X';
    CHECK(dc_sparse_fc_form(p, n) == DC_SFC_FORM_NONE, "form of a bad header");
  }
  CHECK(dc_sparse_fc_form(NULL, 0) == DC_SFC_FORM_NONE, "form of NULL");
  /* every vector: a built tile form was predicted; a predicted tile form is built as tiles or,
   * where they would not fit, as rows; none exactly where the build refuses */
  int predicted_tiles = 0;
  for (size_t i = 0; i < sizeof codec_vectors / sizeof codec_vectors[0]; ++i) {
    const codec_vector* v = &codec_vectors[i];
    dc_sparse_fc m;
    dc_status ds;
    char why[200] = "";
    const dc_sfc_form f = dc_sparse_fc_form(v->packed, v->packed_size);
    const dc_sfc_status st =
        dc_sparse_fc_build(v->packed, v->packed_size, &m, &ds, why, sizeof why);
    CHECK((st == DC_SFC_OK) == (f != DC_SFC_FORM_NONE), "%s: form %d, build %d", v->name, f, st);
    if (st != DC_SFC_OK) continue;
    CHECK(!m.tile_e || f == DC_SFC_FORM_TILES, "%s: tiles built, form %d said", v->name, f);
    CHECK(f != DC_SFC_FORM_TILES || m.num_values <= 32, "%s: tiles predicted, %u values built",
          v->name, m.num_values);
    CHECK(f != DC_SFC_FORM_TILES || avx, "%s: tiles predicted without AVX-512", v->name);
    predicted_tiles += f == DC_SFC_FORM_TILES;
    check_tiles_did_not_fit(&m, f, v->name);
    dc_sparse_fc_free(&m);
  }
  CHECK(!avx || predicted_tiles >= 2, "only %d vectors predicted on the tile form",
        predicted_tiles);
  dc_sparse_fc_use_simd(was);
}

/* dc_sparse_fc_build_max: a limit of the tensor's own non-zero count builds the same form; one
 * less refuses it (DC_SFC_TOO_DENSE: shape, type and count kept, and the count of tiles that would
 * not have fit, the build's tile_entries with the rows; nothing else held) and hands
 * over the dense weight exactly when the build went through a dense copy or §18's direct route,
 * equal to dc_decode's. */
static void test_build_max(void) {
  int refused = 0, handed = 0;
  for (size_t i = 0; i < sizeof codec_vectors / sizeof codec_vectors[0]; ++i) {
    const codec_vector* v = &codec_vectors[i];
    dc_sparse_fc a, b;
    dc_status ds;
    char why[200] = "";
    void* dense = (void*)&a; /* must be reset */
    if (dc_sparse_fc_build(v->packed, v->packed_size, &a, &ds, why, sizeof why) != DC_SFC_OK)
      continue;
    dc_sfc_status st =
        dc_sparse_fc_build_max(v->packed, v->packed_size, a.nnz, &b, &dense, &ds, why, sizeof why);
    CHECK(st == DC_SFC_OK && dense == NULL && b.nnz == a.nnz && sfc_same_form(&a, &b),
          "%s: build_max at its own count", v->name);
    if (st == DC_SFC_OK) dc_sparse_fc_free(&b);
    if (a.nnz == 0) {
      dc_sparse_fc_free(&a);
      continue;
    }
    st = dc_sparse_fc_build_max(v->packed, v->packed_size, a.nnz - 1, &b, &dense, &ds, why,
                                sizeof why);
    ++refused;
    CHECK(st == DC_SFC_TOO_DENSE && b.nnz == a.nnz && b.rows == a.rows && b.cols == a.cols &&
              b.dtype == a.dtype && !b.row_ptr && !b.col && !b.code && !b.tile_e,
          "%s: build_max below its count -> %d", v->name, st);
    /* the count of the tiles that would not have fit: that of the build's rows, else 0 */
    CHECK(b.tile_entries == (a.tile_e ? 0 : a.tile_entries), "%s: refused, %llu tile entries",
          v->name, (unsigned long long)b.tile_entries);
    /* (§18 straight from the entries: the dense route counts a layer of more stored entries than
     * max_nnz, check_planes18_max) */
    CHECK((dense != NULL) == (a.from_dense || planes18_direct(v->packed, v->packed_size)),
          "%s: dense handed over %d, from_dense %u", v->name, dense != NULL, a.from_dense);
    if (dense) {
      ++handed;
      void* ref = malloc(v->raw_size);
      CHECK(dc_decode(v->packed, v->packed_size, ref, v->raw_size) == DC_OK &&
                !memcmp(ref, dense, v->raw_size) && (uintptr_t)dense % 64 == 0,
            "%s: handed-over weight differs from dc_decode's", v->name);
      free(ref);
      free(dense);
    }
    st = dc_sparse_fc_build_max(v->packed, v->packed_size, a.nnz - 1, &b, NULL, &ds, why,
                                sizeof why); /* nothing asked: nothing handed over (no leak) */
    CHECK(st == DC_SFC_TOO_DENSE, "%s: build_max without dense", v->name);
    dc_sparse_fc_free(&a);
  }
  CHECK(refused >= 5 && handed >= 1 && handed < refused,
        "build_max: %d refused, %d handed over (both routes expected)", refused, handed);
}

int main(void) {
  const float inf = INFINITY;
  size_t batches[] = {1, 2, 7, 8, 9, 17};
#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && \
    __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  /* big-endian host (make test-bigendian): every build refused, with the reason, so that the
   * callers decode instead; nothing else of this file applies */
  for (size_t i = 0; i < sizeof codec_vectors / sizeof codec_vectors[0]; ++i) {
    dc_sparse_fc m;
    dc_status ds;
    char why[200] = "";
    CHECK(dc_sparse_fc_build(codec_vectors[i].packed, codec_vectors[i].packed_size, &m, &ds, why,
                             sizeof why) == DC_SFC_UNSUPPORTED &&
              strstr(why, "big-endian") != NULL,
          "%s: built on a big-endian host (%s)", codec_vectors[i].name, why);
  }
  if (failures) {
    fprintf(stderr, "test_sparse_fc: %d failure(s)\n", failures);
    return 1;
  }
  printf("test_sparse_fc: big-endian host: every build refused (the callers decode)\n");
  return 0;
#endif
  printf("test_sparse_fc: batch-1 kernels %s\n", dc_sparse_fc_kernel_name());
  /* every kernel test three times: the kernels dc_sparse_fc_kernel_name() picks (AVX-512 on such
   * x86-64 CPUs), the scalar ones, then the AVX2 ones (dc_sparse_fc_use_simd(4): what x86-64 CPUs
   * without AVX-512 run; the scalar ones again where the CPU has no AVX2) */
  static const int passes[] = {1, 0, 4};
  for (int pass = 0; pass < 3; ++pass) {
    dc_sparse_fc_use_simd(passes[pass]);
    printf("test_sparse_fc: pass with kernels %s\n", dc_sparse_fc_kernel_name());
    for (size_t i = 0; i < sizeof batches / sizeof batches[0]; ++i) {
      test_float_kernel(33, 70, batches[i], -inf, inf, 1);
      test_float_kernel(5, 4, batches[i], 0.f, 6.f, 0);
    }
    test_float_kernel(64, 300, 3, -1.f, 1.f, 1);
    test_float_kernel(3, 1, 1, 0.f, inf, 1);
    /* rows of 0..~1000 non-zeros: full 32-wide steps, 16-wide tails, > 32 codebook values */
    for (uint32_t t = 1; t <= 10; t += 3) {
      test_float_kernel_n(40, 1031, 1, -inf, inf, 1, 32, t);
      test_float_kernel_n(40, 1031, 1, -inf, inf, 0, 33, t);
      test_float_kernel_n(17, 517, 1, -2.f, 2.f, 1, 255, t);
    }
    /* the tile form's corners, every batch size (1: float_tiles_b1_*; 2..8: its batched
     * kernel with nb rows; 9, 17: a full tile of 8 then the rest): 1..1031 columns (partial last
     * blocks of 1, 16, 17, 31 columns), rows not a multiple of 16, empty rows and blocks (5 %),
     * full blocks (100 %: 32 steps), an all-empty layer, NaN / inf inputs, activation clamps */
    const size_t tile_batches[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 17};
    for (size_t i = 0; i < sizeof tile_batches / sizeof tile_batches[0]; ++i) {
      const size_t b = tile_batches[i];
      test_float_kernel_n(1, 1, b, -inf, inf, 1, 3, 10);
      test_float_kernel_n(17, 33, b, -inf, inf, 1, 32, 10);  /* 32 steps; last block 1 column */
      test_float_kernel_n(31, 48, b, 0.f, 6.f, 0, 32, 10);   /* last block 16 columns */
      test_float_kernel_n(16, 49, b, -1.f, 1.f, 1, 7, 5);    /* 17 */
      test_float_kernel_n(47, 1031, b, -inf, inf, 1, 32, 1); /* 7 */
      test_float_kernel_n(20, 95, b, -inf, inf, 1, 5, 0);    /* all empty: the bias */
      test_float_kernel_x(33, 70, b, -inf, inf, 1, 32, 3, 1);
      test_float_kernel_x(18, 64, b, 0.f, 6.f, 1, 32, 10, 1);
    }
    test_float_kernel_n(100, 1000, 8, -inf, inf, 1, 32, 0); /* 1 % at most: empty blocks */
    test_add_tiles_refuses_bad_rows();
    test_int8_kernel_random(37, 53, 200);
    test_int8_kernel_random(29, 260, 900); /* dense rows: the last columns (scalar) too */
    test_int8_kernel_random(31, 3, 1000);  /* cols < 4: all scalar */
    test_int8_kernel_random(9, 4, 1000);
    /* the int8 tile form's corners: full blocks (32 steps), partial last blocks of 1, 16, 17, 31
     * columns, one row, rows not a multiple of 16, 1 % (empty blocks), an all-empty layer */
    test_int8_kernel_random(17, 33, 1000);
    test_int8_kernel_random(1, 48, 1000);
    test_int8_kernel_random(31, 49, 500);
    test_int8_kernel_random(47, 1031, 10); /* 1 %: empty blocks between tiles */
    test_int8_kernel_random(100, 1000, 2); /* 0.2 %: groups without a tile */
    test_int8_kernel_random(40, 1000, 0);
    test_int8_kernel_random(64, 63, 1000);
    test_vectors();
  }
  dc_sparse_fc_use_simd(1);
  /* every vector again with the helper thread on every form (the size threshold at 0) */
  size_t old_helper = dc_sparse_fc_set_helper_bytes(0);
  test_vectors();
  dc_sparse_fc_set_helper_bytes(old_helper);
  CHECK(old_helper == (size_t)1 << 20, "default helper threshold %zu", old_helper);
  test_helper_build_equal();
  test_check_from_header();
  test_form_from_header();
  test_build_max();
  test_planes18_direct();
  dc_sparse_fc m;
  char why[64];
  CHECK(dc_sparse_fc_build(NULL, 0, &m, NULL, why, sizeof why) == DC_SFC_ARGUMENT, "NULL data");
  CHECK(dc_sparse_fc_build(codec_vectors[0].packed, 3, NULL, NULL, NULL, 0) == DC_SFC_ARGUMENT,
        "NULL form");
  dc_sparse_fc_free(NULL);
  /* NULL arguments to the lookup: "not done" (a return < n), never a crash */
  int32_t idx0 = 0;
  float out0[4];
  memset(&m, 0, sizeof m);
  CHECK(dc_sparse_gather(NULL, &idx0, 0, 1, out0) == 0, "gather: NULL table");
  CHECK(dc_sparse_gather(&m, NULL, 0, 1, out0) == 0, "gather: NULL indices");
  CHECK(dc_sparse_gather(&m, &idx0, 0, 1, NULL) == 0, "gather: NULL output");
  CHECK(dc_sparse_gather(NULL, NULL, 0, 0, NULL) == 0, "gather: nothing to do");
  if (failures) {
    fprintf(stderr, "test_sparse_fc: %d failure(s)\n", failures);
    return 1;
  }
  printf("test_sparse_fc: all passed\n");
  return 0;
}
