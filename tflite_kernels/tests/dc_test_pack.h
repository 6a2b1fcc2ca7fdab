/* dc_test_pack.h -- a §5 float32 dense encoder in C for the standalone C tests (test_codec.c,
 * test_parallel.c): hand-made tensors of any complete code, without the numpy encoder.
 * Symbol s's value has the bits dc_test_f32_bits(s). */
#ifndef DC_TEST_PACK_H
#define DC_TEST_PACK_H

#include <stdint.h>
#include <string.h>

#include "dc_codec.h"

/* The bits of symbol s's float32 value: 0x3F800000 + 7919 s (distinct, finite, around 1.0). */
static uint32_t dc_test_f32_bits(uint32_t s) {
  return 0x3F800000u + 7919u * s;
}

/* v as the format stores it (FORMAT.md §1: little-endian), whatever the host's byte order. */
static inline void dc_test_put32(uint8_t* p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

/* The little-endian 32-bit value at p. */
static inline uint32_t dc_test_get32(const uint8_t* p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Bytes pack_dense_f32 may write for k symbols and n elements (code lengths up to 15). */
static size_t pack_dense_f32_bound(uint32_t k, uint32_t n) {
  return 64 + 5 * (size_t)k + 2 * (size_t)n;
}

/* Packs n symbols of a code with the given lengths (K symbols, complete, lengths 1..13) as a
 * version 2 §5 float32 tensor into p (pack_dense_f32_bound bytes); returns its size, and in
 * *sizes_at the offset of the four stream sizes. */
static size_t pack_dense_f32(uint8_t* p, const uint8_t* len, uint32_t k, const uint16_t* sym,
                             uint32_t n, uint32_t* sizes_at) {
  uint32_t code[256], next[14], count[14], s, i, l, c = 0, maxl = 0, pos, crc;
  uint8_t* st[4];
  uint64_t bits[4] = {0, 0, 0, 0};
  memset(count, 0, sizeof count);
  for (s = 0; s < k; ++s) {
    count[len[s]]++;
    if (len[s] > maxl) maxl = len[s];
  }
  count[0] = 0;
  for (l = 1; l <= 13; ++l) { /* §4 canonical codes, as DEFLATE */
    c = (c + count[l - 1]) << 1;
    next[l] = c;
  }
  for (s = 0; s < k; ++s) code[s] = len[s] ? next[len[s]]++ : 0;
  memcpy(p, "DCHF", 4);
  p[4] = 2; /* version */
  p[5] = 0; /* float32 */
  p[6] = 1; /* rank */
  p[7] = 0; /* dense */
  dc_test_put32(p + 8, n);
  pos = 16; /* check at 12 */
  p[pos++] = (uint8_t)k;
  p[pos++] = (uint8_t)(k >> 8);
  for (s = 0; s < k; ++s, pos += 4) {
    dc_test_put32(p + pos, dc_test_f32_bits(s));
  }
  p[pos++] = (uint8_t)maxl;
  for (s = 0; s < k; s += 2) p[pos++] = (uint8_t)(len[s] | (s + 1 < k ? len[s + 1] << 4 : 0));
  for (s = 0; s < 4; ++s) /* stream bit counts first, to place them */
    for (i = s; i < n; i += 4) bits[s] += len[sym[i]];
  *sizes_at = pos;
  st[0] = p + pos + 16;
  for (s = 0; s < 4; ++s) {
    uint32_t size = (uint32_t)((bits[s] + 7) / 8);
    dc_test_put32(p + pos + 4 * s, size);
    if (s < 3) st[s + 1] = st[s] + size;
    memset(st[s], 0, size);
  }
  for (s = 0; s < 4; ++s) { /* §7: LSB first, each code from its most significant bit */
    uint64_t b = 0;
    for (i = s; i < n; i += 4)
      for (l = len[sym[i]]; l-- > 0; ++b)
        if ((code[sym[i]] >> l) & 1u) st[s][b / 8] |= (uint8_t)(1u << (b % 8));
  }
  pos = (uint32_t)(st[3] - p) + (uint32_t)((bits[3] + 7) / 8);
  crc = dc_crc32(dc_crc32(0, p, 12), p + 16, pos - 16);
  dc_test_put32(p + 12, crc);
  return pos;
}

#endif /* DC_TEST_PACK_H */
