/* dc_fuzz.h -- what every libFuzzer harness in this folder shares: the output bound and the
 * property check.  A harness defines DC_FUZZ_NAME (its name, for the message) before including.
 */
#ifndef DC_FUZZ_H
#define DC_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

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

#endif /* DC_FUZZ_H */
