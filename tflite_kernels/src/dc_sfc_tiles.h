/*
 * dc_sfc_tiles.h -- the tile-form kernels of dc_sparse_fc.c (batch 1, batch 2..8), one body
 * included there once per weight type and instruction set: float32 on AVX-512 F/BW/VL (a step's 16
 * lanes in one register, x and the weights by vpermt2ps, masked FMA) and on AVX2 + FMA (the 16
 * lanes as two halves of 8, x and the weights by four vpermps and a blend tree, empty lanes
 * zeroed; the same FMAs in the same order: the same bits, but which NaN comes out where a NaN
 * sum meets a NaN product, which depends on the FMA form the compiler picks); int8 on AVX-512 (each step's 16
 * products by vpmaddwd, added by vpaddd), AVX-512 VNNI (vpdpwssd does both) and AVX2 (16-bit
 * lanes, x by two vpshufb and a blend, even and odd rows' products by two vpmaddwd; the same exact
 * integer sums and requantization: the same bytes).  Before including it, define
 *   DC_TILE_TARGET             the functions' target attribute
 *   DC_TILE_NAME(base)         their names
 *   DC_TILE_X, DC_TILE_Y       the element types of x and y; DC_TILE_OUT the output parameters
 *   DC_T(op)                   the weight type's and instruction set's types and operations:
 *     cb, x, e, w, acc         codebook, x block (32 columns), a step's 16 entries, their weights,
 *                              16 sums
 *     codebook(m), block_x(xb, part) (part: columns of a partial last block, else 0: no x read past
 *     them), entries(e), weights(cb, v), zero(), add(a, b),
 *     store16(m, g, acc, out, y)  group g's outputs (rows < rows)
 *   DC_TILE_ACC(acc, w, v, x)  acc + the products of one step (empty lanes: nothing)
 * (undefined again at the end).  Not a header of its own: no include guard.
 */

/* Batch 1: lane l of a group's two accumulators holds row 16 g + l; per tile x's 32 columns of
 * the block are looked up in registers (no gather).  Summation order: a row's non-zeros in
 * column order, steps alternating between the two accumulators, then the bias. */
DC_TILE_TARGET static void DC_TILE_NAME(tiles_b1)(const dc_sparse_fc* m, const DC_TILE_X* x,
                                                  const DC_TILE_OUT* o, DC_TILE_Y* y) {
  const DC_T(cb) cb = DC_T(codebook)(m);
  const uint32_t last = (m->cols - 1) / 32, part = m->cols % 32;
  const uint16_t* e = m->tile_e;
  for (uint32_t g = 0; g < m->tile_groups; ++g) {
    DC_T(acc) a0 = DC_T(zero)(), a1 = a0;
    for (uint32_t t = m->tile_ptr[g]; t < m->tile_ptr[g + 1]; ++t) {
      const uint32_t b = m->tile_block[t];
      const DC_T(x) xb = DC_T(block_x)(x + 32u * b, b == last ? part : 0);
      uint32_t s = m->tile_steps[t];
      for (; s >= 2; s -= 2, e += 32) {
        const DC_T(e) v = DC_T(entries)(e), v2 = DC_T(entries)(e + 16);
        a0 = DC_TILE_ACC(a0, DC_T(weights)(cb, v), v, xb);
        a1 = DC_TILE_ACC(a1, DC_T(weights)(cb, v2), v2, xb);
      }
      if (s) {
        const DC_T(e) v = DC_T(entries)(e);
        a0 = DC_TILE_ACC(a0, DC_T(weights)(cb, v), v, xb);
        e += 16;
      }
    }
    DC_T(store16)(m, g, DC_T(add)(a0, a1), o, y);
  }
}

/* Batch 2..8: as tiles_b1 with nb batch rows at once -- per tile each batch row's x block, per
 * step the entries and the weights taken once for all nb rows, then per batch row its products
 * into its own sums.  Summation order: a row's non-zeros in column order into one accumulator (no
 * alternation: the nb chains already overlap), then the bias.  Inlined with a constant nb
 * (tiles_batch), so the nb-element arrays live in registers. */
DC_TILE_TARGET static inline __attribute__((always_inline)) void DC_TILE_NAME(tiles_nb)(
    const dc_sparse_fc* m, const DC_TILE_X* x, const uint32_t nb, const DC_TILE_OUT* o,
    DC_TILE_Y* y) {
  const DC_T(cb) cb = DC_T(codebook)(m);
  const size_t cols = m->cols, rows = m->rows;
  const uint32_t last = (m->cols - 1) / 32, part = m->cols % 32;
  const uint16_t* e = m->tile_e;
  for (uint32_t g = 0; g < m->tile_groups; ++g) {
    DC_T(acc) a[DC_SFC_BATCH_TILE];
#pragma GCC unroll 8
    for (uint32_t b = 0; b < nb; ++b) a[b] = DC_T(zero)();
    for (uint32_t t = m->tile_ptr[g]; t < m->tile_ptr[g + 1]; ++t) {
      const uint32_t blk = m->tile_block[t];
      DC_T(x) xb[DC_SFC_BATCH_TILE];
#pragma GCC unroll 8
      for (uint32_t b = 0; b < nb; ++b)
        xb[b] = DC_T(block_x)(x + b * cols + 32u * blk, blk == last ? part : 0);
      for (uint32_t s = m->tile_steps[t]; s > 0; --s, e += 16) {
        const DC_T(e) v = DC_T(entries)(e);
        const DC_T(w) w = DC_T(weights)(cb, v); /* once for the nb rows */
#pragma GCC unroll 8
        for (uint32_t b = 0; b < nb; ++b) a[b] = DC_TILE_ACC(a[b], w, v, xb[b]);
      }
    }
#pragma GCC unroll 8
    for (uint32_t b = 0; b < nb; ++b) DC_T(store16)(m, g, a[b], o, y + b * rows);
  }
}

DC_TILE_TARGET static void DC_TILE_NAME(tiles_batch)(const dc_sparse_fc* m, const DC_TILE_X* x,
                                                     uint32_t nb, const DC_TILE_OUT* o,
                                                     DC_TILE_Y* y) {
  switch (nb) {
    case 2: DC_TILE_NAME(tiles_nb)(m, x, 2, o, y); break;
    case 3: DC_TILE_NAME(tiles_nb)(m, x, 3, o, y); break;
    case 4: DC_TILE_NAME(tiles_nb)(m, x, 4, o, y); break;
    case 5: DC_TILE_NAME(tiles_nb)(m, x, 5, o, y); break;
    case 6: DC_TILE_NAME(tiles_nb)(m, x, 6, o, y); break;
    case 7: DC_TILE_NAME(tiles_nb)(m, x, 7, o, y); break;
    default: DC_TILE_NAME(tiles_nb)(m, x, 8, o, y); break;
  }
}

#undef DC_TILE_TARGET
#undef DC_TILE_NAME
#undef DC_TILE_X
#undef DC_TILE_Y
#undef DC_TILE_OUT
#undef DC_T
#undef DC_TILE_ACC
