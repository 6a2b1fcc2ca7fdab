/* fuzz_sparse_fc.c -- libFuzzer harness of the compressed FULLY_CONNECTED form
 * (dc_sparse_fc.h): the input is one packed tensor (untrusted bytes, seeds shared with
 * fuzz_decode).
 *
 * Properties checked besides memory safety (any violation aborts):
 *  - dc_sparse_fc_build succeeds only for a 2-D float32/int8 tensor that dc_decode accepts
 *    (all of its routes: straight from the §6/§11 entries through dc_decode_rows, from the §18
 *    entries through dc_decode_value_rows, and through a dense copy; the seeds of gen_seeds.py
 *    reach all three);
 *    on DC_SFC_DECODE its decode status equals dc_decode's; DC_SFC_UNSUPPORTED comes with a
 *    reason; a failed build leaves the form zeroed;
 *  - a built form is consistent (rows: row_ptr monotone, ends at nnz, columns < cols and
 *    increasing within a row, codes < num_values for float, int8 row sums; the value form
 *    exactly for float32 planes (§12, §18) of more than 255 distinct non-zero values
 *    (dc_sparse_fc_count_values of the decoded tensor), through the dense copy (§12, §18 with a
 *    background other than ±0) or from the §18 entries, without codes or tiles
 *    (dc_sparse_fc_add_tiles refuses it); the tile form kept
 *    instead on AVX-512 CPUs: sfc_tiles_mismatch's structure checks and int8 row sums) and
 *    holds exactly the non-zeros of the decoded tensor (tests/sparse_fc_check.h, shared with tests/test_sparse_fc.c);
 *  - built with the scalar kernels in use (dc_sparse_fc_use_simd(0)): the same status and count,
 *    rows only; built at a tile fill of 0 (dc_sparse_fc_set_tile_fill: every tile form turned
 *    back into rows): the same rows; built with the tile builder's portable loop
 *    (dc_sparse_fc_use_simd(2)): the same form; built with the AVX2 kernels
 *    (dc_sparse_fc_use_simd(4)): int8 the same form, float32 the rows;
 *  - the float kernel (batch 1 and 3) matches a double-precision dense product within
 *    1e-5 of the sum of |terms| when every weight is finite; the int8 kernel (batch 3, and
 *    batch 1 on an input of exactly one row) equals the dense integer formula with rintf
 *    requantization exactly; with the kernels chosen at run time, the same without AVX-512 VNNI
 *    (dc_sparse_fc_use_simd(3): the int8 tile kernels' other variant), with the AVX2 ones
 *    (dc_sparse_fc_use_simd(4)) and the scalar ones; a float32 tile form run on the AVX2 tile
 *    kernels gives the AVX-512 ones' bits, NaN for NaN (batch 1, 3, 8, with and without scratch,
 *    inf / NaN in x);
 *  - built with the helper thread on every form (dc_sparse_fc_set_helper_bytes(0): decoding and
 *    placing on two threads), the same status and the same form;
 *  - a §18 tensor built through the dense copy (dc_sparse_fc_set_direct(0)): the same status
 *    (and decode status) and the same form byte for byte as the direct build (from_dense 1 there,
 *    0 for the direct build of a float32 one with a ±0 background);
 *  - dc_sparse_fc_check (header only) refuses nothing the build accepts: its UNSUPPORTED (same
 *    reason) and DECODE are the build's; dc_sparse_fc_form says NONE exactly where the check
 *    refuses, and TILES only for an int8 tensor or a float32 one the build finds of <= 32
 *    values; a tile form built was said TILES (on every route: the build follows the header); a
 *    TILES said but built as rows kept the count of its tiles (tile_entries), more than
 *    DC_SFC_TILE_FILL entries per non-zero (int8: or more bytes than the dense weight and the
 *    rows, sfc_tiles_fit), which dc_sparse_fc_add_tiles on the same build makes; ROWS said: no
 *    tiles built or counted;
 *  - dc_sparse_fc_build_max at the form's own count builds the same count; one below it refuses
 *    it (DC_SFC_TOO_DENSE, the count kept, and the count of tiles that would not have fit, that of
 *    the build's rows; nothing else held) and hands over the decoded weight exactly when the form
 *    came from a dense copy or from §18's entries (more stored entries than the limit: the dense
 *    route counts them), equal to dc_decode's output;
 *  - the lookup-table form (dc_sparse_table_build) fails with the same decode status (unless
 *    its header check refuses it: then UNSUPPORTED), and when
 *    built, dc_sparse_gather returns every decoded row bit for bit (int32 and int64 indices,
 *    rows in reverse order) and refuses indices -1 and rows (returns their position, writes
 *    nothing); it holds every element but +0.0 (int8: but its fill), the value form exactly for
 *    float32 planes (§12, §18) of more than 255 distinct kept values (-0.0 counted); a §18 table
 *    built through the dense copy (dc_sparse_fc_set_direct(0)) gives the same status and the
 *    same form byte for byte; dc_sparse_table_build_max one below a value form's count refuses
 *    it (DC_SFC_TOO_DENSE, the count kept, the decoded table handed over), rows of codes not.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/sparse_fc_check.h"
#include "dc_codec.h"
#include "dc_sparse_fc.h"

#define DC_FUZZ_NAME "fuzz_sparse_fc"
#include "dc_fuzz.h"

static void check_float(const dc_sparse_fc* m, const float* w) {
  const size_t batch = 3;
  for (size_t i = 0; i < (size_t)m->rows * m->cols; ++i) {
    if (!isfinite(w[i]) || fabsf(w[i]) > 1e30f) return; /* reference would overflow */
  }
  float* x = malloc(batch * m->cols * sizeof(float));
  float* y = malloc(batch * m->rows * sizeof(float));
  float* y1 = malloc(m->rows * sizeof(float));
  float* scratch = malloc((size_t)m->cols * DC_SFC_BATCH_TILE * sizeof(float));
  REQUIRE(x && y && y1 && scratch);
  for (size_t i = 0; i < batch * m->cols; ++i) x[i] = (float)((int)(i * 7919 % 17) - 8) / 8.f;
  dc_sparse_fc_float(m, x, batch, NULL, -INFINITY, INFINITY, y, scratch);
  dc_sparse_fc_float(m, x, 1, NULL, -INFINITY, INFINITY, y1, NULL);
  REQUIRE(sfc_float_mismatch(m, w, x, batch, y, 1e-5, 1) < 0);
  REQUIRE(sfc_float_mismatch(m, w, x, 1, y1, 1e-5, 1) < 0);
  free(x), free(y), free(y1), free(scratch);
}

/* The same bits, or both NaN: where a NaN sum meets a NaN product, which of the two an FMA
 * passes on (its sign, its payload) depends on the instruction form the compiler picked
 * (vfmadd132/213/231ps take them in another order; seen with -O1), which IEEE 754 leaves open. */
static int same_float(float a, float b) {
  return !memcmp(&a, &b, sizeof a) || (isnan(a) && isnan(b));
}

/* A float32 tile form (built with the AVX-512 kernels) run on the AVX2 tile kernels
 * (dc_sparse_fc_use_simd(4)) gives the AVX-512 kernels' bits (NaN: a NaN, same_float): batch 1,
 * 3 (the lookups), 8 with
 * and without scratch (x transposed, and the lookups), x with inf / NaN (the lookups), whatever
 * the weights (inf / NaN codebook values included).  Where this CPU has both. */
static void check_float_avx2(const dc_sparse_fc* m) {
  if (!m->tile_e) return;
  const int was = dc_sparse_fc_use_simd(4);
  const int avx2 = !strcmp(dc_sparse_fc_kernel_name(), "avx2");
  dc_sparse_fc_use_simd(1);
  const int avx512 = !strcmp(dc_sparse_fc_kernel_name(), "avx512");
  dc_sparse_fc_use_simd(was);
  if (!avx2 || !avx512) return;
  const size_t batch = 8, n = batch * m->rows;
  float* x = malloc(batch * m->cols * sizeof(float));
  float* a = malloc(n * sizeof(float));
  float* b = malloc(n * sizeof(float));
  float* scratch = malloc((size_t)m->cols * DC_SFC_BATCH_TILE * sizeof(float));
  REQUIRE(x && a && b && scratch);
  for (int special = 0; special < 2; ++special) {
    for (size_t i = 0; i < batch * m->cols; ++i) {
      x[i] = (float)((int)(i * 7919 % 17) - 8) / 8.f;
      if (special && i % 7 == 3) x[i] = i % 3 == 0 ? NAN : (i % 3 == 1 ? INFINITY : -INFINITY);
    }
    static const size_t batches[] = {1, 3, 8};
    for (int k = 0; k < 3; ++k) {
      for (int with_scratch = 0; with_scratch < 2; ++with_scratch) {
        float* s = with_scratch ? scratch : NULL;
        dc_sparse_fc_use_simd(1);
        dc_sparse_fc_float(m, x, batches[k], NULL, -INFINITY, INFINITY, a, s);
        dc_sparse_fc_use_simd(4);
        dc_sparse_fc_float(m, x, batches[k], NULL, -INFINITY, INFINITY, b, s);
        dc_sparse_fc_use_simd(was);
        for (size_t i = 0; i < batches[k] * m->rows; ++i) REQUIRE(same_float(a[i], b[i]));
      }
    }
  }
  free(x), free(a), free(b), free(scratch);
}

static void check_int8(const dc_sparse_fc* m, const int8_t* w) {
  const size_t batch = 3;
  int8_t* x = malloc(batch * m->cols);
  int8_t* y = malloc(batch * m->rows);
  int32_t* scratch = malloc((size_t)m->cols * DC_SFC_BATCH_TILE * sizeof(int32_t));
  float* scale = malloc(m->rows * sizeof(float));
  REQUIRE(x && y && scratch && scale);
  for (size_t i = 0; i < batch * m->cols; ++i) x[i] = (int8_t)(i * 131 + 7);
  for (uint32_t r = 0; r < m->rows; ++r) scale[r] = 1.0f / (float)(64 + r % 1000);
  int8_t* x1 = malloc(m->cols); /* batch 1 on its own buffer: nothing past it may be read */
  int8_t* y1 = malloc(m->rows);
  REQUIRE(x1 && y1);
  memcpy(x1, x, m->cols);
  dc_sparse_fc_int8(m, x, batch, 5, NULL, scale, -2, -128, 127, y, scratch);
  dc_sparse_fc_int8(m, x1, 1, 5, NULL, scale, -2, -128, 127, y1, NULL);
  for (uint32_t r = 0; r < m->rows; ++r) REQUIRE(y1[r] == y[r]);
  free(x1), free(y1);
  for (size_t b = 0; b < batch; ++b) {
    for (uint32_t r = 0; r < m->rows; ++r) {
      int32_t acc = 0;
      for (uint32_t c = 0; c < m->cols; ++c) {
        acc += (int32_t)w[(size_t)r * m->cols + c] * ((int32_t)x[b * m->cols + c] - 5);
      }
      float v = rintf((float)acc * scale[r]) - 2.0f;
      v = v < -128.f ? -128.f : (v > 127.f ? 127.f : v);
      REQUIRE(y[b * m->rows + r] == (int8_t)v);
    }
  }
  free(x), free(y), free(scratch), free(scale);
}

static void check_table(const uint8_t* buf, size_t size, dc_sfc_status fc_st, dc_status fc_ds,
                        const void* dense) {
  dc_sparse_fc t;
  dc_status ds = DC_OK;
  char why[256] = "";
  dc_sfc_status st = dc_sparse_table_build(buf, size, &t, &ds, why, sizeof why);
  if (dc_sparse_fc_check(buf, size, 1, why, sizeof why) == DC_SFC_UNSUPPORTED) {
    /* refused from the header, before any decode (a table keeps -0.0: its codebook may hold
     * one value more than the FC's) */
    REQUIRE(st == DC_SFC_UNSUPPORTED && why[0] != '\0' && t.row_ptr == NULL);
    return;
  }
  REQUIRE((st == DC_SFC_DECODE) == (fc_st == DC_SFC_DECODE) && ds == fc_ds);
  if (st != DC_SFC_OK) {
    REQUIRE(t.row_ptr == NULL && t.col == NULL && t.code == NULL && t.row_sum == NULL);
    if (st == DC_SFC_UNSUPPORTED) REQUIRE(why[0] != '\0');
    return;
  }
  REQUIRE(t.row_sum == NULL && t.row_ptr[0] == 0 && t.row_ptr[t.rows] == t.nnz);
  REQUIRE(sfc_form_mismatch(&t, dense) < 0);
  dc_tensor_info info;
  REQUIRE(dc_peek(buf, size, &info) == DC_OK);
  const int planes = t.dtype == DC_DTYPE_FLOAT32 && (info.layout == DC_LAYOUT_FLOAT_PLANES ||
                                                     info.layout == DC_LAYOUT_SPARSE_PLANES);
  if (planes) { /* the value form exactly for > 255 distinct kept values (-0.0 one of them) */
    const uint32_t* bits = (const uint32_t*)dense;
    uint32_t seen[DC_SFC_MAX_VALUES + 1], distinct = 0;
    for (size_t i = 0; i < info.num_elements && distinct <= DC_SFC_MAX_VALUES; ++i) {
      uint32_t j = 0;
      if (bits[i] == 0) continue;
      while (j < distinct && seen[j] != bits[i]) ++j;
      if (j == distinct) seen[distinct++] = bits[i];
    }
    REQUIRE((t.value != NULL) == (distinct > DC_SFC_MAX_VALUES) && (t.code == NULL) == !!t.value);
  } else {
    REQUIRE(t.value == NULL);
  }
  if (info.layout == DC_LAYOUT_SPARSE_PLANES) { /* both routes: the same form */
    dc_sparse_fc d;
    dc_status dds = DC_OK;
    const int was = dc_sparse_fc_set_direct(0);
    const dc_sfc_status dst = dc_sparse_table_build(buf, size, &d, &dds, why, sizeof why);
    dc_sparse_fc_set_direct(was);
    REQUIRE(dst == DC_SFC_OK && d.from_dense == 1 && sfc_same_form(&d, &t));
    dc_sparse_fc_free(&d);
  }
  if (t.nnz) { /* the value form's limit; rows of codes take any count */
    dc_sparse_fc d;
    dc_status dds = DC_OK;
    void* handed = NULL;
    const dc_sfc_status dst =
        dc_sparse_table_build_max(buf, size, t.nnz - 1, &d, &handed, &dds, why, sizeof why);
    if (t.value) {
      REQUIRE(dst == DC_SFC_TOO_DENSE && d.nnz == t.nnz && !d.row_ptr && handed &&
              !memcmp(handed, dense, (size_t)info.output_bytes));
      free(handed);
    } else {
      REQUIRE(dst == DC_SFC_OK && !handed && sfc_same_form(&d, &t));
      dc_sparse_fc_free(&d);
    }
  }
  const size_t es = t.dtype == DC_DTYPE_FLOAT32 ? 4 : 1, row = es * t.cols;
  const size_t n = t.rows < 64 ? t.rows : 64; /* rows - 1 down to rows - n */
  int32_t* i32 = malloc((n + 1) * sizeof(int32_t));
  int64_t* i64 = malloc((n + 1) * sizeof(int64_t));
  uint8_t* out = malloc((n + 1) * row);
  REQUIRE(i32 && i64 && out);
  for (size_t i = 0; i < n; ++i) i64[i] = i32[i] = (int32_t)(t.rows - 1 - i);
  for (int w = 0; w < 2; ++w) {
    memset(out, 0xA5, (n + 1) * row);
    REQUIRE(dc_sparse_gather(&t, w ? (const void*)i64 : (const void*)i32, w, n, out) == n);
    for (size_t i = 0; i < n; ++i) {
      REQUIRE(memcmp(out + i * row, (const uint8_t*)dense + (size_t)i32[i] * row, row) == 0);
    }
  }
  i32[n] = -1;
  i64[n] = (int64_t)t.rows;
  memset(out, 0xA5, (n + 1) * row);
  REQUIRE(dc_sparse_gather(&t, i32, 0, n + 1, out) == n);
  REQUIRE(dc_sparse_gather(&t, i64, 1, n + 1, out) == n);
  for (size_t i = 0; i < (n + 1) * row; ++i) REQUIRE(out[i] == 0xA5);
  free(i32), free(i64), free(out);
  dc_sparse_fc_free(&t);
}

/* The same build with the helper thread on every form (dc_sparse_fc_set_helper_bytes(0): §6
 * tensors decoded by this thread and placed by both, in chunks through a ring) gives the same
 * status and the same form. */
static void check_helper_build(const uint8_t* buf, size_t size, dc_sfc_status st, dc_status ds,
                               const dc_sparse_fc* m) {
  dc_sparse_fc h;
  dc_status hs = DC_OK;
  char why[256] = "";
  size_t old = dc_sparse_fc_set_helper_bytes(0);
  dc_sfc_status hst = dc_sparse_fc_build(buf, size, &h, &hs, why, sizeof why);
  dc_sparse_fc_set_helper_bytes(old);
  REQUIRE(hst == st && (st != DC_SFC_DECODE || hs == ds));
  if (hst != DC_SFC_OK) return;
  REQUIRE(sfc_same_form(&h, m));
  dc_sparse_fc_free(&h);
}

/* The rows: built with the scalar kernels in use (never a tile form), the same status and count;
 * built at a tile fill of 0 (a tile form made is turned into rows: tiles_to_rows), the same rows. */
static void check_rows_build(const uint8_t* buf, size_t size, dc_sfc_status st, dc_status ds,
                             const dc_sparse_fc* m) {
  dc_sparse_fc a, b;
  dc_status as = DC_OK, bs = DC_OK;
  char why[256] = "";
  const int was = dc_sparse_fc_use_simd(0);
  dc_sfc_status ast = dc_sparse_fc_build(buf, size, &a, &as, why, sizeof why);
  dc_sparse_fc_use_simd(was);
  REQUIRE(ast == st && (st != DC_SFC_DECODE || as == ds));
  if (ast != DC_SFC_OK) return;
  REQUIRE(!a.tile_e && a.row_ptr && a.nnz == m->nnz);
  const uint32_t fill = dc_sparse_fc_set_tile_fill(0);
  dc_sfc_status bst = dc_sparse_fc_build(buf, size, &b, &bs, why, sizeof why);
  dc_sparse_fc_set_tile_fill(fill);
  REQUIRE(bst == DC_SFC_OK && !b.tile_e && sfc_same_form(&a, &b));
  dc_sparse_fc_free(&b);
  const int was2 = dc_sparse_fc_use_simd(2); /* the tile builder's portable loop: the same form */
  REQUIRE(dc_sparse_fc_build(buf, size, &b, &bs, why, sizeof why) == DC_SFC_OK);
  dc_sparse_fc_use_simd(was2);
  REQUIRE(sfc_same_form(&b, m));
  dc_sparse_fc_free(&b);
  /* with the AVX2 kernels (use_simd(4); the scalar ones on a CPU without AVX2): int8 the same
   * form as the run-time choice, whenever it has vector tile kernels; float32 the rows */
  const int was4 = dc_sparse_fc_use_simd(4);
  const int avx2 = !strcmp(dc_sparse_fc_kernel_name(), "avx2");
  REQUIRE(dc_sparse_fc_build(buf, size, &b, &bs, why, sizeof why) == DC_SFC_OK);
  dc_sparse_fc_use_simd(was4);
  if (b.dtype == DC_DTYPE_INT8 && avx2 && strcmp(dc_sparse_fc_kernel_name(), "scalar")) {
    REQUIRE(sfc_same_form(&b, m));
  } else if (b.dtype == DC_DTYPE_FLOAT32) {
    REQUIRE(!b.tile_e && sfc_same_form(&b, &a));
  }
  dc_sparse_fc_free(&b);
  dc_sparse_fc_free(&a);
}

/* The form said from the header against the one built (m, status OK; see the list above). */
static void check_form_said(const uint8_t* buf, size_t size, dc_sfc_form form,
                            const dc_sparse_fc* m) {
  REQUIRE(form != DC_SFC_FORM_NONE);
  if (form == DC_SFC_FORM_TILES)
    REQUIRE(m->dtype == DC_DTYPE_INT8 || (m->dtype == DC_DTYPE_FLOAT32 && m->num_values <= 32));
  if (m->tile_e) REQUIRE(form == DC_SFC_FORM_TILES);
  if (form != DC_SFC_FORM_TILES) REQUIRE(!m->tile_e && m->tile_entries == 0);
  if (form != DC_SFC_FORM_TILES || m->tile_e) return;
  /* said TILES, built as rows: its tiles do not fit (their count kept) */
  REQUIRE(!sfc_tiles_fit(m, m->tile_entries, m->nnz));
  dc_sparse_fc b;
  dc_status ds = DC_OK;
  char why[256] = "";
  REQUIRE(dc_sparse_fc_build(buf, size, &b, &ds, why, sizeof why) == DC_SFC_OK && !b.tile_e);
  if (dc_sparse_fc_add_tiles(&b)) REQUIRE(b.tile_entries == m->tile_entries);
  dc_sparse_fc_free(&b);
}

/* 1 for a tensor the build takes straight from its §18 entries: layout 7 (FORMAT.md §2, byte 7),
 * float32, rank 2, a ±0 background (§18: the body's first 4 bytes, after the CRC). */
static int planes18_direct(const uint8_t* buf, size_t size) {
  dc_tensor_info info;
  if (dc_peek(buf, size, &info) != DC_OK || info.layout != DC_LAYOUT_SPARSE_PLANES ||
      info.dtype != DC_DTYPE_FLOAT32 || info.rank != 2 || size < 24)
    return 0;
  const uint32_t bg = (uint32_t)buf[20] | (uint32_t)buf[21] << 8 | (uint32_t)buf[22] << 16 |
                      (uint32_t)buf[23] << 24;
  return (uint32_t)(bg << 1) == 0;
}

/* A §18 tensor's build through the dense copy (dc_sparse_fc_set_direct(0)) against the default
 * build (st, ds, m): the same status and form (see the list above). */
static void check_planes18_routes(const uint8_t* buf, size_t size, dc_sfc_status st, dc_status ds,
                                  const dc_sparse_fc* m) {
  dc_tensor_info info;
  if (dc_peek(buf, size, &info) != DC_OK || info.layout != DC_LAYOUT_SPARSE_PLANES) return;
  dc_sparse_fc d;
  dc_status dds = DC_OK;
  char why[256] = "";
  const int was = dc_sparse_fc_set_direct(0);
  const dc_sfc_status dst = dc_sparse_fc_build(buf, size, &d, &dds, why, sizeof why);
  dc_sparse_fc_set_direct(was);
  REQUIRE(dst == st && (st != DC_SFC_DECODE || dds == ds));
  if (dst != DC_SFC_OK) return;
  REQUIRE(d.from_dense == 1 && m->from_dense == !planes18_direct(buf, size));
  REQUIRE(sfc_same_form(&d, m));
  dc_sparse_fc_free(&d);
}

/* dc_sparse_fc_build_max around a built form's count m->nnz (see the list above). */
static void check_build_max(const uint8_t* buf, size_t size, const dc_sparse_fc* m,
                            const void* dense, size_t out_size) {
  dc_sparse_fc b;
  dc_status ds = DC_OK;
  char why[256] = "";
  void* got = NULL;
  REQUIRE(dc_sparse_fc_build_max(buf, size, m->nnz, &b, &got, &ds, why, sizeof why) == DC_SFC_OK);
  REQUIRE(got == NULL && b.nnz == m->nnz && b.rows == m->rows);
  dc_sparse_fc_free(&b);
  if (m->nnz == 0) return;
  REQUIRE(dc_sparse_fc_build_max(buf, size, m->nnz - 1, &b, &got, &ds, why, sizeof why) ==
          DC_SFC_TOO_DENSE);
  REQUIRE(b.nnz == m->nnz && b.rows == m->rows && b.cols == m->cols && !b.row_ptr && !b.col &&
          !b.code && !b.row_sum && !b.tile_e && !b.value &&
          b.tile_entries == (m->tile_e ? 0 : m->tile_entries));
  REQUIRE((got != NULL) == (m->from_dense || planes18_direct(buf, size)));
  REQUIRE(!got || !memcmp(got, dense, out_size));
  free(got);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dc_tensor_info info;
  uint8_t* buf = (uint8_t*)malloc(size ? size : 1);
  if (!buf) return 0;
  if (size) memcpy(buf, data, size);
  if (dc_peek(buf, size, &info) == DC_OK && info.output_bytes > DC_FUZZ_MAX_OUTPUT) {
    free(buf); /* bounded harness: the builder would allocate the declared size */
    return 0;
  }
  dc_sparse_fc m;
  dc_status ds = DC_OK;
  char why[256] = "";
  dc_sfc_status st = dc_sparse_fc_build(buf, size, &m, &ds, why, sizeof why);
  if (st != DC_SFC_OK) {
    REQUIRE(m.row_ptr == NULL && m.col == NULL && m.code == NULL && m.row_sum == NULL &&
            m.tile_e == NULL && m.tile_ptr == NULL && m.value == NULL);
  }
  if (st == DC_SFC_UNSUPPORTED) REQUIRE(why[0] != '\0');
  /* what the header alone says, the build says too (before decoding anything) */
  char cwhy[256] = "";
  dc_sfc_status cst = dc_sparse_fc_check(buf, size, 0, cwhy, sizeof cwhy);
  if (cst == DC_SFC_UNSUPPORTED) REQUIRE(st == DC_SFC_UNSUPPORTED && !strcmp(cwhy, why));
  if (cst == DC_SFC_DECODE) REQUIRE(st == DC_SFC_DECODE);
  /* the form said from the header: none exactly where the check refuses; a predicted tile form
   * is an int8 one or a float32 one of <= 32 values (the build may still make rows: tiles that
   * do not fit) */
  const dc_sfc_form form = dc_sparse_fc_form(buf, size);
  REQUIRE((form == DC_SFC_FORM_NONE) == (cst != DC_SFC_OK));
  if (st == DC_SFC_OK) check_form_said(buf, size, form, &m);
  check_helper_build(buf, size, st, ds, &m);
  check_planes18_routes(buf, size, st, ds, &m);
  check_rows_build(buf, size, st, ds, &m);
  size_t out_size = dc_peek(buf, size, &info) == DC_OK ? (size_t)info.output_bytes : 0;
  void* dense = malloc(out_size ? out_size : 1);
  REQUIRE(dense);
  dc_status dd = dc_decode(buf, size, dense, out_size);
  if (st == DC_SFC_DECODE) REQUIRE(ds != DC_OK && dd == ds);
  if (st == DC_SFC_OK) {
    REQUIRE(dd == DC_OK && info.rank == 2 && m.rows == info.dims[0] && m.cols == info.dims[1]);
    REQUIRE(info.dtype == m.dtype && (m.dtype == DC_DTYPE_FLOAT32 || m.dtype == DC_DTYPE_INT8));
    REQUIRE(sfc_form_mismatch(&m, dense) < 0);
    /* the value form exactly for float planes (header byte 7: the layout, FORMAT.md §2) of more
     * than 255 distinct non-zero values */
    const int planes = m.dtype == DC_DTYPE_FLOAT32 && (info.layout == DC_LAYOUT_FLOAT_PLANES ||
                                                       info.layout == DC_LAYOUT_SPARSE_PLANES);
    REQUIRE(!m.value ==
            !(planes && dc_sparse_fc_count_values((const float*)dense, info.num_elements) >
                            DC_SFC_MAX_VALUES));
    if (m.value) {
      REQUIRE(size > 7 && buf[7] == info.layout);
      REQUIRE(m.dtype == DC_DTYPE_FLOAT32 && m.from_dense == !planes18_direct(buf, size) &&
              !m.code && !m.tile_e && m.num_values == 0 && m.nnz > DC_SFC_MAX_VALUES &&
              dc_sparse_fc_add_tiles(&m) == 0);
    }
    static const int simds[] = {1, 3, 4, 0}; /* the run-time choice (AVX-512 on such CPUs), the
                                              * same without VNNI (int8 tiles), the AVX2 kernels
                                              * (on AVX-512 CPUs too), then scalar */
    for (int k = 0; k < 4 && (uint64_t)m.rows * m.cols <= (1u << 20); ++k) {
      dc_sparse_fc_use_simd(simds[k]);
      if (m.dtype == DC_DTYPE_FLOAT32)
        check_float(&m, (const float*)dense);
      else
        check_int8(&m, (const int8_t*)dense);
    }
    dc_sparse_fc_use_simd(1);
    if (m.dtype == DC_DTYPE_FLOAT32 && (uint64_t)m.rows * m.cols <= (1u << 20))
      check_float_avx2(&m);
    check_build_max(buf, size, &m, dense, out_size);
    dc_sparse_fc_free(&m);
  }
  if (st == DC_SFC_DECODE || dd == DC_OK) check_table(buf, size, st, ds, dense);
  free(dense);
  free(buf);
  return 0;
}
