/*
 * dc_sfc_float_tiles.h -- the float32 tile-form kernels of dc_sparse_fc.c (batch 1, batch 2..8),
 * included there once per instruction set: AVX-512 F/BW/VL (a step's 16 lanes in one register,
 * x and the weights by vpermt2ps, masked FMA) and AVX2 + FMA (the 16 lanes as two halves of 8, x
 * and the weights by four vpermps and a blend tree, empty lanes zeroed).  The same operations in
 * the same order on every lane (one FMA per non-zero, the same accumulators, then the bias), so
 * the two give the same bits.  Before including it, define
 *   DC_TILE_TARGET      the functions' target attribute
 *   DC_TILE_NAME(base)  their names (base_<suffix>)
 *   DC_T(op)            the instruction set's types and operations (op_<suffix>):
 *     f_cb, f_x, f_e, f_w, f_acc            codebook, x block (32 columns), a step's 16 entries,
 *                                           their weights, 16 accumulators
 *     f_codebook(m), f_block_x(xb, part)    (part: columns of a partial last block, else 0: no
 *                                           x read past them), f_entries(e), f_weights(cb, v),
 *     f_zero(), f_add(a, b), f_fma(acc, w, v, x) (acc + w * x[v's columns], empty lanes kept),
 *     f_store16(m, g, acc, bias, lo, hi, y) (group g's outputs: + bias, clamped, rows < rows)
 * (undefined again at the end).  Not a header of its own: no include guard.
 */

/* Batch 1: lane l of a group's two accumulators holds row 16 g + l; per tile x's 32 columns of
 * the block are looked up in registers (no gather).  Summation order: a row's non-zeros in
 * column order, steps alternating between the two accumulators, then the bias. */
DC_TILE_TARGET static void DC_TILE_NAME(float_tiles_b1)(const dc_sparse_fc* m, const float* x,
                                                        const float* bias, float lo, float hi,
                                                        float* y) {
  const DC_T(f_cb) cb = DC_T(f_codebook)(m);
  const uint32_t last = (m->cols - 1) / 32, part = m->cols % 32;
  const uint16_t* e = m->tile_e;
  for (uint32_t g = 0; g < m->tile_groups; ++g) {
    DC_T(f_acc) a0 = DC_T(f_zero)(), a1 = a0;
    for (uint32_t t = m->tile_ptr[g]; t < m->tile_ptr[g + 1]; ++t) {
      const uint32_t b = m->tile_block[t];
      const DC_T(f_x) xb = DC_T(f_block_x)(x + 32u * b, b == last ? part : 0);
      uint32_t s = m->tile_steps[t];
      for (; s >= 2; s -= 2, e += 32) {
        const DC_T(f_e) v = DC_T(f_entries)(e), v2 = DC_T(f_entries)(e + 16);
        a0 = DC_T(f_fma)(a0, DC_T(f_weights)(cb, v), v, xb);
        a1 = DC_T(f_fma)(a1, DC_T(f_weights)(cb, v2), v2, xb);
      }
      if (s) {
        const DC_T(f_e) v = DC_T(f_entries)(e);
        a0 = DC_T(f_fma)(a0, DC_T(f_weights)(cb, v), v, xb);
        e += 16;
      }
    }
    DC_T(f_store16)(m, g, DC_T(f_add)(a0, a1), bias, lo, hi, y);
  }
}

/* Batch 2..8: as float_tiles_b1 with nb batch rows at once -- per tile each batch row's x block,
 * per step the entries and the weights taken once for all nb rows, then per batch row x looked
 * up and one FMA into that row's accumulator.  Summation order: a row's non-zeros in column
 * order into one accumulator (no alternation: the nb FMA chains already overlap), then the bias.
 * Inlined with a constant nb (float_tiles_batch), so the nb-element arrays live in registers. */
DC_TILE_TARGET static inline __attribute__((always_inline)) void DC_TILE_NAME(float_tiles_nb)(
    const dc_sparse_fc* m, const float* x, const uint32_t nb, const float* bias, float lo, float hi,
    float* y) {
  const DC_T(f_cb) cb = DC_T(f_codebook)(m);
  const size_t cols = m->cols, rows = m->rows;
  const uint32_t last = (m->cols - 1) / 32, part = m->cols % 32;
  const uint16_t* e = m->tile_e;
  for (uint32_t g = 0; g < m->tile_groups; ++g) {
    DC_T(f_acc) a[DC_SFC_BATCH_TILE];
#pragma GCC unroll 8
    for (uint32_t b = 0; b < nb; ++b) a[b] = DC_T(f_zero)();
    for (uint32_t t = m->tile_ptr[g]; t < m->tile_ptr[g + 1]; ++t) {
      const uint32_t blk = m->tile_block[t];
      DC_T(f_x) xb[DC_SFC_BATCH_TILE];
#pragma GCC unroll 8
      for (uint32_t b = 0; b < nb; ++b)
        xb[b] = DC_T(f_block_x)(x + b * cols + 32u * blk, blk == last ? part : 0);
      for (uint32_t s = m->tile_steps[t]; s > 0; --s, e += 16) {
        const DC_T(f_e) v = DC_T(f_entries)(e);
        const DC_T(f_w) w = DC_T(f_weights)(cb, v); /* once for the nb rows */
#pragma GCC unroll 8
        for (uint32_t b = 0; b < nb; ++b) a[b] = DC_T(f_fma)(a[b], w, v, xb[b]);
      }
    }
#pragma GCC unroll 8
    for (uint32_t b = 0; b < nb; ++b) DC_T(f_store16)(m, g, a[b], bias, lo, hi, y + b * rows);
  }
}

DC_TILE_TARGET static void DC_TILE_NAME(float_tiles_batch)(const dc_sparse_fc* m, const float* x,
                                                           uint32_t nb, const float* bias, float lo,
                                                           float hi, float* y) {
  switch (nb) {
    case 2: DC_TILE_NAME(float_tiles_nb)(m, x, 2, bias, lo, hi, y); break;
    case 3: DC_TILE_NAME(float_tiles_nb)(m, x, 3, bias, lo, hi, y); break;
    case 4: DC_TILE_NAME(float_tiles_nb)(m, x, 4, bias, lo, hi, y); break;
    case 5: DC_TILE_NAME(float_tiles_nb)(m, x, 5, bias, lo, hi, y); break;
    case 6: DC_TILE_NAME(float_tiles_nb)(m, x, 6, bias, lo, hi, y); break;
    case 7: DC_TILE_NAME(float_tiles_nb)(m, x, 7, bias, lo, hi, y); break;
    default: DC_TILE_NAME(float_tiles_nb)(m, x, 8, bias, lo, hi, y); break;
  }
}

#undef DC_TILE_TARGET
#undef DC_TILE_NAME
#undef DC_T
