/*
 * dc_sfc_int8_tiles.h -- the int8 tile-form kernels of dc_sparse_fc.c (batch 1, batch 2..8),
 * included there twice: once for AVX-512 F/BW/VL (each step's 16 products by vpmaddwd, added by
 * vpaddd) and once for AVX-512 VNNI CPUs (vpdpwssd does both).  The same exact integer sums:
 * the same bytes out.  Before including it, define
 *   DC_I8_TARGET                  the functions' target attribute
 *   DC_I8_NAME(base)              their names (base_<suffix>)
 *   DC_I8_ACC(acc, w, v, xl, xh)  acc + the 16 products of one step (int8_products)
 * (undefined again at the end).  Not a header of its own: no include guard.
 */
DC_I8_TARGET static void DC_I8_NAME(int8_tiles_b1)(const dc_sparse_fc* m, const int8_t* x,
                                                   int32_t izp, const int32_t* bias,
                                                   const float* scale, int32_t ozp, int32_t qmin,
                                                   int32_t qmax, int8_t* y) {
  const uint32_t last = (m->cols - 1) / 32, part = m->cols % 32;
  const __mmask32 kpart = part ? (__mmask32)((1u << part) - 1u) : (__mmask32)0xffffffffu;
  const uint16_t* e = m->tile_e;
  for (uint32_t g = 0; g < m->tile_groups; ++g) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0;
    for (uint32_t t = m->tile_ptr[g]; t < m->tile_ptr[g + 1]; ++t) {
      const uint32_t b = m->tile_block[t];
      __m512i xl, xh;
      int8_block_x(x + 32u * b, b == last ? kpart : (__mmask32)0xffffffffu, &xl, &xh);
      uint32_t s = m->tile_steps[t];
      for (; s >= 2; s -= 2, e += 32) {
        const __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)e));
        const __m512i v2 = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(e + 16)));
        a0 = DC_I8_ACC(a0, int8_weights(v), v, xl, xh);
        a1 = DC_I8_ACC(a1, int8_weights(v2), v2, xl, xh);
      }
      if (s) {
        const __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)e));
        a0 = DC_I8_ACC(a0, int8_weights(v), v, xl, xh);
        e += 16;
      }
    }
    int8_store16(m, g, _mm512_add_epi32(a0, a1), izp, bias, scale, ozp, qmin, qmax, y);
  }
}

/* Batch 2..8 on the int8 tile form: per tile each batch row's 32 x values in two registers, per
 * step the entries and weights taken once for all nb rows (inlined with a constant nb). */
DC_I8_TARGET static inline __attribute__((always_inline)) void DC_I8_NAME(int8_tiles_nb)(
    const dc_sparse_fc* m, const int8_t* x, const uint32_t nb, int32_t izp, const int32_t* bias,
    const float* scale, int32_t ozp, int32_t qmin, int32_t qmax, int8_t* y) {
  const size_t cols = m->cols, rows = m->rows;
  const uint32_t last = (m->cols - 1) / 32, part = m->cols % 32;
  const __mmask32 kpart = part ? (__mmask32)((1u << part) - 1u) : (__mmask32)0xffffffffu;
  const uint16_t* e = m->tile_e;
  for (uint32_t g = 0; g < m->tile_groups; ++g) {
    __m512i a[DC_SFC_BATCH_TILE];
#pragma GCC unroll 8
    for (uint32_t b = 0; b < nb; ++b) a[b] = _mm512_setzero_si512();
    for (uint32_t t = m->tile_ptr[g]; t < m->tile_ptr[g + 1]; ++t) {
      const uint32_t blk = m->tile_block[t];
      const __mmask32 k = blk == last ? kpart : (__mmask32)0xffffffffu;
      __m512i xl[DC_SFC_BATCH_TILE], xh[DC_SFC_BATCH_TILE];
#pragma GCC unroll 8
      for (uint32_t b = 0; b < nb; ++b) int8_block_x(x + b * cols + 32u * blk, k, &xl[b], &xh[b]);
      for (uint32_t s = m->tile_steps[t]; s > 0; --s, e += 16) {
        const __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)e));
        const __m512i w = int8_weights(v); /* once for the nb rows */
#pragma GCC unroll 8
        for (uint32_t b = 0; b < nb; ++b) a[b] = DC_I8_ACC(a[b], w, v, xl[b], xh[b]);
      }
    }
#pragma GCC unroll 8
    for (uint32_t b = 0; b < nb; ++b)
      int8_store16(m, g, a[b], izp, bias, scale, ozp, qmin, qmax, y + b * rows);
  }
}

DC_I8_TARGET static void DC_I8_NAME(int8_tiles_batch)(const dc_sparse_fc* m, const int8_t* x,
                                                      uint32_t nb, int32_t izp, const int32_t* bias,
                                                      const float* scale, int32_t ozp, int32_t qmin,
                                                      int32_t qmax, int8_t* y) {
  switch (nb) {
    case 2: DC_I8_NAME(int8_tiles_nb)(m, x, 2, izp, bias, scale, ozp, qmin, qmax, y); break;
    case 3: DC_I8_NAME(int8_tiles_nb)(m, x, 3, izp, bias, scale, ozp, qmin, qmax, y); break;
    case 4: DC_I8_NAME(int8_tiles_nb)(m, x, 4, izp, bias, scale, ozp, qmin, qmax, y); break;
    case 5: DC_I8_NAME(int8_tiles_nb)(m, x, 5, izp, bias, scale, ozp, qmin, qmax, y); break;
    case 6: DC_I8_NAME(int8_tiles_nb)(m, x, 6, izp, bias, scale, ozp, qmin, qmax, y); break;
    case 7: DC_I8_NAME(int8_tiles_nb)(m, x, 7, izp, bias, scale, ozp, qmin, qmax, y); break;
    default: DC_I8_NAME(int8_tiles_nb)(m, x, 8, izp, bias, scale, ozp, qmin, qmax, y); break;
  }
}

#undef DC_I8_TARGET
#undef DC_I8_NAME
#undef DC_I8_ACC
