/* sparse_fc_check.h -- reference checks of a built compressed FULLY_CONNECTED form
 * (dc_sparse_fc.h), shared by tests/test_sparse_fc.c (reports and goes on) and
 * fuzz/fuzz_sparse_fc.c (aborts): each says where the form or a kernel's output first differs
 * from the dense decoded tensor. Header-only: one copy per translation unit. */
#ifndef DC_SPARSE_FC_CHECK_H
#define DC_SPARSE_FC_CHECK_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "dc_sparse_fc.h"

/* -1 if the form holds exactly the non-zeros of `dense` (the decoded row-major rows x cols
 * tensor) row by row, columns increasing, codes valid (float: codebook[code] has the weight's bit
 * pattern; -0.0 is a zero) and, for int8, row_sum[r] is the row's sum; otherwise the first row
 * that differs (rows: the ends of row_ptr). */
static int64_t sfc_form_mismatch(const dc_sparse_fc* m, const void* dense) {
  const uint8_t* raw = (const uint8_t*)dense;
  uint64_t k = 0;
  if (m->row_ptr[0] != 0 || m->row_ptr[m->rows] != m->nnz) return m->rows;
  for (uint32_t r = 0; r < m->rows; ++r) {
    int bad = m->row_ptr[r] > m->row_ptr[r + 1];
    int32_t sum = 0;
    for (uint32_t c = 0; c < m->cols && !bad; ++c) {
      size_t i = (size_t)r * m->cols + c;
      if (m->dtype == DC_DTYPE_FLOAT32) {
        uint32_t bits;
        memcpy(&bits, raw + 4 * i, 4);
        if ((bits << 1) == 0) continue;
        bad = k >= m->row_ptr[r + 1] || m->col[k] != c || m->code[k] >= m->num_values ||
              memcmp(&m->codebook[m->code[k]], &bits, 4) != 0;
      } else {
        int8_t v = (int8_t)raw[i];
        sum += v;
        if (v == 0) continue;
        bad = k >= m->row_ptr[r + 1] || m->col[k] != c || (int8_t)m->code[k] != v;
      }
      ++k;
    }
    bad = bad || k != m->row_ptr[r + 1] || (m->dtype == DC_DTYPE_INT8 && sum != m->row_sum[r]);
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

#endif /* DC_SPARSE_FC_CHECK_H */
