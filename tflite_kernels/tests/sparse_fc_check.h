/* sparse_fc_check.h -- reference checks of a built compressed FULLY_CONNECTED form
 * (dc_sparse_fc.h), shared by tests/test_sparse_fc.c (reports and goes on) and
 * fuzz/fuzz_sparse_fc.c (aborts): each says where the form or a kernel's output first differs
 * from the dense decoded tensor. Header-only: one copy per translation unit. */
#ifndef DC_SPARSE_FC_CHECK_H
#define DC_SPARSE_FC_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dc_sparse_fc.h"

/* -1 if the tile form of m holds exactly the non-zeros of `dense` and is well formed:
 * tile_ptr from 0, non-decreasing; a group's blocks increasing and < the block count; 1..32 steps
 * per tile, none all empty; each lane a run of entries (columns increasing, < cols; float32:
 * codes < num_values, codebook[code] the weight's bit pattern; int8: the code is the weight, not
 * 0, and row_sum[r] the row's sum) then DC_SFC_TILE_EMPTY only; lanes past the last row empty;
 * tile_entries and nnz the totals.  Otherwise the first row of the group that differs (rows: the
 * totals). */
static int64_t sfc_tiles_mismatch(const dc_sparse_fc* m, const void* dense) {
  const uint8_t* raw = (const uint8_t*)dense;
  const uint32_t blocks = (m->cols + 31) / 32, groups = (m->rows + 15) / 16;
  const int i8 = m->dtype == DC_DTYPE_INT8;
  uint64_t e = 0, nnz = 0;
  if ((!i8 && m->dtype != DC_DTYPE_FLOAT32) || (i8 && !m->row_sum) || m->tile_groups != groups ||
      m->tile_ptr[0] != 0)
    return m->rows;
  uint32_t* rec = (uint32_t*)malloc((size_t)16 * m->cols * sizeof(uint32_t));
  if (!rec) return m->rows;
  for (uint32_t g = 0; g < groups; ++g) {
    int bad = m->tile_ptr[g] > m->tile_ptr[g + 1];
    int64_t last[16];
    memset(rec, 0, (size_t)16 * m->cols * sizeof(uint32_t));
    for (uint32_t l = 0; l < 16; ++l) last[l] = -1;
    for (uint32_t t = m->tile_ptr[g]; t < m->tile_ptr[g + 1] && !bad; ++t) {
      const uint32_t b = m->tile_block[t], steps = m->tile_steps[t];
      int done[16] = {0};
      bad = b >= blocks || (t > m->tile_ptr[g] && b <= m->tile_block[t - 1]) || steps == 0 ||
            steps > 32;
      for (uint32_t s = 0; s < steps && !bad; ++s, e += 16) {
        int any = 0;
        for (uint32_t l = 0; l < 16 && !bad; ++l) {
          const uint16_t v = m->tile_e[e + l];
          if (v == DC_SFC_TILE_EMPTY) {
            done[l] = 1;
            continue;
          }
          const uint32_t c = 32 * b + (v & 31u), code = v >> 5;
          bad = done[l] || (v & 0x8000u) || 16 * g + l >= m->rows || c >= m->cols ||
                (i8 ? code > 255 || code == 0 : code >= m->num_values) || (int64_t)c <= last[l];
          if (bad) break;
          last[l] = c;
          if (i8) {
            rec[(size_t)l * m->cols + c] = code;
          } else {
            memcpy(&rec[(size_t)l * m->cols + c], &m->codebook[code], 4);
          }
          any = 1;
          ++nnz;
        }
        bad = bad || !any;
      }
    }
    for (uint32_t l = 0; l < 16 && 16 * g + l < m->rows && !bad; ++l) {
      int32_t sum = 0;
      for (uint32_t c = 0; c < m->cols && !bad; ++c) {
        const size_t i = (size_t)(16 * g + l) * m->cols + c;
        uint32_t bits;
        if (i8) {
          bits = raw[i]; /* 0: not stored */
          sum += (int8_t)raw[i];
        } else {
          memcpy(&bits, raw + 4 * i, 4);
          if ((bits << 1) == 0) bits = 0; /* -0.0: not stored */
        }
        bad = rec[(size_t)l * m->cols + c] != bits;
      }
      bad = bad || (i8 && m->row_sum[16 * g + l] != sum);
    }
    if (bad) {
      free(rec);
      return 16 * (int64_t)g;
    }
  }
  free(rec);
  return e == m->tile_entries && nnz == m->nnz ? -1 : (int64_t)m->rows;
}

/* -1 if the form holds exactly the non-zeros of `dense` (the decoded row-major rows x cols
 * tensor) row by row, columns increasing, codes valid (float: codebook[code] has the weight's bit
 * pattern, or, in the value form, value[k] has it; -0.0 is a zero, but for a lookup table,
 * m->table, only +0.0 is: it keeps -0.0; an int8 table leaves out m->fill) and, for an int8 FC
 * form, row_sum[r] is the row's sum; otherwise the first row
 * that differs (rows: the ends of row_ptr).  A form holds rows, a tile form
 * (sfc_tiles_mismatch), or both: each is checked. */
static int64_t sfc_form_mismatch(const dc_sparse_fc* m, const void* dense) {
  const uint8_t* raw = (const uint8_t*)dense;
  uint64_t k = 0;
  if (m->tile_e) {
    const int64_t t = sfc_tiles_mismatch(m, dense);
    if (t >= 0 || !m->row_ptr) return t;
  }
  if (!m->row_ptr || (m->value && (m->code || m->dtype != DC_DTYPE_FLOAT32 || m->num_values)))
    return m->rows;
  if (m->row_ptr[0] != 0 || m->row_ptr[m->rows] != m->nnz) return m->rows;
  for (uint32_t r = 0; r < m->rows; ++r) {
    int bad = m->row_ptr[r] > m->row_ptr[r + 1];
    int32_t sum = 0;
    for (uint32_t c = 0; c < m->cols && !bad; ++c) {
      size_t i = (size_t)r * m->cols + c;
      if (m->dtype == DC_DTYPE_FLOAT32) {
        uint32_t bits;
        memcpy(&bits, raw + 4 * i, 4);
        if (m->table ? bits == 0 : (bits << 1) == 0) continue;
        bad = k >= m->row_ptr[r + 1] || m->col[k] != c ||
              (m->value ? memcmp(&m->value[k], &bits, 4) != 0
                        : m->code[k] >= m->num_values ||
                              memcmp(&m->codebook[m->code[k]], &bits, 4) != 0);
      } else {
        int8_t v = (int8_t)raw[i];
        sum += v;
        if (v == (m->table ? m->fill : 0)) continue;
        bad = k >= m->row_ptr[r + 1] || m->col[k] != c || (int8_t)m->code[k] != v;
      }
      ++k;
    }
    bad = bad || k != m->row_ptr[r + 1] ||
          (m->dtype == DC_DTYPE_INT8 && !m->table && sum != m->row_sum[r]);
    if (bad) return r;
  }
  return -1;
}

/* -1 if every output y[b * rows + r] (b < batch) of the float kernel is within
 * rel_tol * sum|terms| of the double-precision dense product of the weights w and inputs x, or is
 * infinite where sum|terms| > 1e37 and allow_inf; otherwise the index of the first one that is
 * not. */
static int64_t sfc_float_mismatch(const dc_sparse_fc* m, const float* w, const float* x,
                                  size_t batch, const float* y, double rel_tol, int allow_inf) {
  for (size_t b = 0; b < batch; ++b) {
    for (uint32_t r = 0; r < m->rows; ++r) {
      double acc = 0, mag = 0;
      for (uint32_t c = 0; c < m->cols; ++c) {
        double t = (double)w[(size_t)r * m->cols + c] * x[b * m->cols + c];
        acc += t, mag += fabs(t);
      }
      float got = y[b * m->rows + r];
      if (!(fabs(got - acc) <= rel_tol * mag + 1e-30) && !(allow_inf && isinf(got) && mag > 1e37))
        return (int64_t)(b * m->rows + r);
    }
  }
  return -1;
}

/* The build's rule for keeping a tile form (dc_sparse_fc.c tiles_fit, at the default fill): at
 * most DC_SFC_TILE_FILL entries per non-zero, and for int8 no more bytes (2 per entry) than the
 * larger of the dense weight (1 per weight) and the rows (3 per non-zero). */
static int sfc_tiles_fit(const dc_sparse_fc* m, uint64_t entries, uint64_t nnz) {
  if (entries > (uint64_t)DC_SFC_TILE_FILL * nnz) return 0;
  const uint64_t dense = (uint64_t)m->rows * m->cols, rows = 3 * nnz;
  return m->dtype != DC_DTYPE_INT8 || 2 * entries <= (dense > rows ? dense : rows);
}

/* 1 if two built forms are the same: shape, type, count, codebook, row sums, and the same rows
 * (of codes or of values) and / or tile form, array for array. */
static int sfc_same_form(const dc_sparse_fc* a, const dc_sparse_fc* b) {
  if (a->rows != b->rows || a->cols != b->cols || a->dtype != b->dtype || a->nnz != b->nnz ||
      a->num_values != b->num_values || !a->row_ptr != !b->row_ptr || !a->tile_e != !b->tile_e ||
      memcmp(a->codebook, b->codebook, a->num_values * sizeof(float)) != 0 ||
      !a->row_sum != !b->row_sum || !a->value != !b->value ||
      (a->row_sum && memcmp(a->row_sum, b->row_sum, (size_t)a->rows * sizeof(int32_t)) != 0))
    return 0;
  if (a->row_ptr && (memcmp(a->row_ptr, b->row_ptr, ((size_t)a->rows + 1) * sizeof(uint32_t)) ||
                     memcmp(a->col, b->col, a->nnz * sizeof(uint16_t)) ||
                     (a->value ? memcmp(a->value, b->value, a->nnz * sizeof(float))
                               : memcmp(a->code, b->code, a->nnz))))
    return 0;
  if (a->tile_e) {
    const uint32_t tiles = a->tile_ptr[a->tile_groups];
    if (a->tile_groups != b->tile_groups || a->tile_entries != b->tile_entries ||
        memcmp(a->tile_ptr, b->tile_ptr, ((size_t)a->tile_groups + 1) * sizeof(uint32_t)) ||
        memcmp(a->tile_block, b->tile_block, tiles * sizeof(uint16_t)) ||
        memcmp(a->tile_steps, b->tile_steps, tiles) ||
        memcmp(a->tile_e, b->tile_e, a->tile_entries * sizeof(uint16_t)))
      return 0;
  }
  return 1;
}

#endif /* DC_SPARSE_FC_CHECK_H */
