/* dc_fuzz.h -- what every libFuzzer harness in this folder shares: the output bound and the
 * property check.  A harness defines DC_FUZZ_NAME (its name, for the message) before including.
 */
#ifndef DC_FUZZ_H
#define DC_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "dc_codec.h"

/* Largest output a harness decodes (bounds its memory; larger declared tensors are only peeked). */
#ifndef DC_FUZZ_MAX_OUTPUT
#define DC_FUZZ_MAX_OUTPUT (16u << 20)
#endif

/* A violated property aborts, so libFuzzer records the input as a finding. */
#define REQUIRE(cond)                                                                        \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      fprintf(stderr, "%s: property failed: %s (line %d)\n", DC_FUZZ_NAME, #cond, __LINE__); \
      abort();                                                                               \
    }                                                                                        \
  } while (0)

/* The output shape a harness gives an op for a packed tensor: the rank and dims its header bytes
 * declare (FORMAT.md §2: the rank in byte 6, little-endian 32-bit dims from byte 8, each clamped to
 * INT32_MAX), rank 1 for one past DC_MAX_RANK.  Bytes too short to hold the rank leave *rank and
 * shape as they are; too short for the dims, shape. */
static inline void dc_fuzz_header_shape(const uint8_t* buf, size_t size, int* rank, int* shape) {
  int k;
  if (size < 8) return;
  *rank = buf[6] <= DC_MAX_RANK ? buf[6] : 1;
  if (size < 8 + 4u * (size_t)*rank) return;
  for (k = 0; k < *rank; ++k) {
    const uint8_t* p = buf + 8 + 4 * k;
    uint32_t d =
        (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    shape[k] = d > 0x7fffffffu ? 0x7fffffff : (int)d;
  }
}

#endif /* DC_FUZZ_H */
