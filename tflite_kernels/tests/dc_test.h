/* dc_test.h -- the check macro the standalone C tests test_sparse_fc.c, test_parallel.c and
 * test_unpack.c share: a failed CHECK prints where and why and counts, the test goes on and
 * its main returns non-zero when `failures` is not 0. */
#ifndef DC_TEST_H
#define DC_TEST_H

#include <stdio.h>

static int failures = 0;

#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (!(cond)) {                                         \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                        \
      fprintf(stderr, "\n");                               \
      ++failures;                                          \
    }                                                      \
  } while (0)

#endif /* DC_TEST_H */
