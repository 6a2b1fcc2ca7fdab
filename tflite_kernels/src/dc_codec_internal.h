/* dc_codec_internal.h -- parsed header of a packed tensor (docs/FORMAT.md), shared by
 * dc_codec.c and the C tests; not part of the public API. */
#ifndef DC_CODEC_INTERNAL_H_
#define DC_CODEC_INTERNAL_H_

#include <stddef.h>
#include <stdint.h>

#include "dc_codec.h"

/* §4 alphabet descriptor. */
typedef struct {
  uint32_t n;              /* alphabet size */
  uint32_t max_len;        /* L: 0 (single zero-bit symbol) .. 12 */
  uint32_t min_len;        /* shortest code length in use (0 if L = 0) */
  uint32_t single;         /* the symbol when L = 0 */
  const uint8_t* lengths;  /* ceil(n/2) nibble bytes when L > 0, points into the input */
} dc_alphabet;

typedef struct {
  dc_tensor_info info;
  uint32_t layout;            /* 0 dense, 1 sparse */
  size_t prefix_len;          /* bytes magic..dims (§8 checksums them) */
  uint32_t check_a, check_b;  /* §8 */
  uint32_t k;                 /* codebook size */
  const uint8_t* codebook;    /* k * element_size bytes, points into the input */
  uint32_t background;        /* sparse: codebook index */
  uint64_t entries;           /* sparse: E */
  uint32_t gap_alphabet;      /* sparse: G */
  dc_alphabet gap_code, index_code;
  size_t streams_pos;
  size_t stream_start[DC_NUM_STREAMS];
  uint64_t stream_size[DC_NUM_STREAMS];
  uint64_t stream_count[DC_NUM_STREAMS]; /* symbols (dense) or entries (sparse) per stream */
} dc_header;

/* Parses and validates everything of §2-§7 and §9 that needs no decoding. */
dc_status dc_parse(const uint8_t* data, size_t size, dc_header* h);

/* §8: Fletcher update over `nwords` little-endian 32-bit words at p. */
void dc_checksum_update(uint32_t* a, uint32_t* b, const uint8_t* p, size_t nwords);

#endif /* DC_CODEC_INTERNAL_H_ */
