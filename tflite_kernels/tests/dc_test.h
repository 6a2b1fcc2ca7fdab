/* dc_test.h -- what the standalone C tests test_sparse_fc.c, test_parallel.c, test_unpack.c and
 * test_threads.c share: the check macro (a failed CHECK prints where and why and counts, the test
 * goes on and its main returns non-zero when `failures` is not 0) and read_file. */
#ifndef DC_TEST_H
#define DC_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

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

/* The whole file at `path`, malloc'd (*n its size), or NULL. */
static inline uint8_t* read_file(const char* path, size_t* n) {
  FILE* f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t* b = len > 0 ? (uint8_t*)malloc((size_t)len) : NULL;
  if (b && fread(b, 1, (size_t)len, f) != (size_t)len) {
    free(b);
    b = NULL;
  }
  fclose(f);
  *n = (size_t)len;
  return b;
}

#endif /* DC_TEST_H */
