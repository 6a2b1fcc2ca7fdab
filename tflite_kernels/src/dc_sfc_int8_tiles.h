/*
 * dc_sfc_int8_tiles.h -- the int8 tile-form kernels of dc_sparse_fc.c (batch 1, batch 2..8),
 * included there once per variant: AVX-512 F/BW/VL (each step's 16 products by vpmaddwd, added by
 * vpaddd), AVX-512 VNNI (vpdpwssd does both) and AVX2 (the 16 entries as 16-bit lanes, x looked up
 * by two vpshufb and a blend, the products of even and odd rows by two vpmaddwd into two
 * accumulators).  The same exact integer sums and the same requantization: the same bytes out.
 * Before including it, define
 *   DC_TILE_TARGET                the functions' target attribute
 *   DC_TILE_NAME(base)            their names (base_<suffix>)
 *   DC_T(op)                      the instruction set's types and operations (op_<suffix>):
 *     i8_x, i8_e, i8_w, i8_acc    x block (32 columns), a step's 16 entries, their weights, sums
 *     i8_block_x(xb, part)        (part: columns of a partial last block, else 0: no x read past
 *                                 them), i8_entries(e), i8_weights(v), i8_zero(), i8_add(a, b),
 *     i8_store16(m, g, acc, izp, bias, scale, ozp, qmin, qmax, y)  group g's outputs
 *   DC_I8_ACC(acc, w, v, x)       acc + the 16 products of one step
 * (undefined again at the end).  Not a header of its own: no include guard.
 */
DC_TILE_TARGET static void DC_TILE_NAME(int8_tiles_b1)(const dc_sparse_fc* m, const int8_t* x,
                                                       int32_t izp, const int32_t* bias,
                                                       const float* scale, int32_t ozp,
                                                       int32_t qmin, int32_t qmax, int8_t* y) {
  const uint32_t last = (m->cols - 1) / 32, part = m->cols % 32;
  const uint16_t* e = m->tile_e;
  for (uint32_t g = 0; g < m->tile_groups; ++g) {
    DC_T(i8_acc) a0 = DC_T(i8_zero)(), a1 = a0;
    for (uint32_t t = m->tile_ptr[g]; t < m->tile_ptr[g + 1]; ++t) {
      const uint32_t b = m->tile_block[t];
      const DC_T(i8_x) xb = DC_T(i8_block_x)(x + 32u * b, b == last ? part : 0);
      uint32_t s = m->tile_steps[t];
      for (; s >= 2; s -= 2, e += 32) {
        const DC_T(i8_e) v = DC_T(i8_entries)(e), v2 = DC_T(i8_entries)(e + 16);
        a0 = DC_I8_ACC(a0, DC_T(i8_weights)(v), v, xb);
        a1 = DC_I8_ACC(a1, DC_T(i8_weights)(v2), v2, xb);
      }
      if (s) {
        const DC_T(i8_e) v = DC_T(i8_entries)(e);
        a0 = DC_I8_ACC(a0, DC_T(i8_weights)(v), v, xb);
        e += 16;
      }
    }
    DC_T(i8_store16)(m, g, DC_T(i8_add)(a0, a1), izp, bias, scale, ozp, qmin, qmax, y);
  }
}

/* Batch 2..8 on the int8 tile form: per tile each batch row's x block, per step the entries and
 * weights taken once for all nb rows (inlined with a constant nb). */
DC_TILE_TARGET static inline __attribute__((always_inline)) void DC_TILE_NAME(int8_tiles_nb)(
    const dc_sparse_fc* m, const int8_t* x, const uint32_t nb, int32_t izp, const int32_t* bias,
    const float* scale, int32_t ozp, int32_t qmin, int32_t qmax, int8_t* y) {
  const size_t cols = m->cols, rows = m->rows;
  const uint32_t last = (m->cols - 1) / 32, part = m->cols % 32;
  const uint16_t* e = m->tile_e;
  for (uint32_t g = 0; g < m->tile_groups; ++g) {
    DC_T(i8_acc) a[DC_SFC_BATCH_TILE];
#pragma GCC unroll 8
    for (uint32_t b = 0; b < nb; ++b) a[b] = DC_T(i8_zero)();
    for (uint32_t t = m->tile_ptr[g]; t < m->tile_ptr[g + 1]; ++t) {
      const uint32_t blk = m->tile_block[t];
      DC_T(i8_x) xb[DC_SFC_BATCH_TILE];
#pragma GCC unroll 8
      for (uint32_t b = 0; b < nb; ++b)
        xb[b] = DC_T(i8_block_x)(x + b * cols + 32u * blk, blk == last ? part : 0);
      for (uint32_t s = m->tile_steps[t]; s > 0; --s, e += 16) {
        const DC_T(i8_e) v = DC_T(i8_entries)(e);
        const DC_T(i8_w) w = DC_T(i8_weights)(v); /* once for the nb rows */
#pragma GCC unroll 8
        for (uint32_t b = 0; b < nb; ++b) a[b] = DC_I8_ACC(a[b], w, v, xb[b]);
      }
    }
#pragma GCC unroll 8
    for (uint32_t b = 0; b < nb; ++b)
      DC_T(i8_store16)(m, g, a[b], izp, bias, scale, ozp, qmin, qmax, y + b * rows);
  }
}

DC_TILE_TARGET static void DC_TILE_NAME(int8_tiles_batch)(const dc_sparse_fc* m, const int8_t* x,
                                                          uint32_t nb, int32_t izp,
                                                          const int32_t* bias, const float* scale,
                                                          int32_t ozp, int32_t qmin, int32_t qmax,
                                                          int8_t* y) {
  switch (nb) {
    case 2: DC_TILE_NAME(int8_tiles_nb)(m, x, 2, izp, bias, scale, ozp, qmin, qmax, y); break;
    case 3: DC_TILE_NAME(int8_tiles_nb)(m, x, 3, izp, bias, scale, ozp, qmin, qmax, y); break;
    case 4: DC_TILE_NAME(int8_tiles_nb)(m, x, 4, izp, bias, scale, ozp, qmin, qmax, y); break;
    case 5: DC_TILE_NAME(int8_tiles_nb)(m, x, 5, izp, bias, scale, ozp, qmin, qmax, y); break;
    case 6: DC_TILE_NAME(int8_tiles_nb)(m, x, 6, izp, bias, scale, ozp, qmin, qmax, y); break;
    case 7: DC_TILE_NAME(int8_tiles_nb)(m, x, 7, izp, bias, scale, ozp, qmin, qmax, y); break;
    default: DC_TILE_NAME(int8_tiles_nb)(m, x, 8, izp, bias, scale, ozp, qmin, qmax, y); break;
  }
}

#undef DC_TILE_TARGET
#undef DC_TILE_NAME
#undef DC_T
#undef DC_I8_ACC
