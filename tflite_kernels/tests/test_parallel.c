/* test_parallel.c -- dc_decode_many (dc_parallel.h): every thread count gives the
 * reference bytes of every vector, errors are per job, and the thread-count policy. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_vectors.h"
#include "dc_parallel.h"
#include "dc_test.h"

#define NVEC (sizeof codec_vectors / sizeof codec_vectors[0])
#define REPEAT 7 /* every vector several times: more jobs than threads */

static void run(int threads, int corrupt) {
  size_t n = NVEC * REPEAT;
  dc_decode_job* jobs = (dc_decode_job*)calloc(n, sizeof *jobs);
  uint8_t** copies = (uint8_t**)calloc(n, sizeof *copies);
  CHECK(jobs && copies, "out of memory");
  if (!jobs || !copies) return;
  for (size_t i = 0; i < n; ++i) {
    const codec_vector* v = &codec_vectors[i % NVEC];
    copies[i] = (uint8_t*)malloc(v->packed_size);
    memcpy(copies[i], v->packed, v->packed_size);
    if (corrupt && i % 5 == 3 && v->packed_size > 24) copies[i][v->packed_size / 2] ^= 0x5a;
    jobs[i].packed = copies[i];
    jobs[i].packed_size = v->packed_size;
    jobs[i].out = malloc(v->raw_size ? v->raw_size : 1);
    jobs[i].out_size = v->raw_size;
    jobs[i].status = DC_ERR_TRUNCATED; /* must be overwritten */
  }
  size_t bad = dc_decode_many(jobs, n, threads);
  size_t want_bad = 0;
  for (size_t i = 0; i < n; ++i) {
    const codec_vector* v = &codec_vectors[i % NVEC];
    /* The reference: the same (possibly corrupted) input through dc_decode alone. */
    uint8_t* ref = (uint8_t*)malloc(v->raw_size ? v->raw_size : 1);
    dc_status st = dc_decode(copies[i], v->packed_size, ref, v->raw_size);
    want_bad += st != DC_OK;
    CHECK(jobs[i].status == st, "threads=%d job %zu (%s): status %d, alone %d", threads, i, v->name,
          (int)jobs[i].status, (int)st);
    if (st == DC_OK) {
      CHECK(memcmp(jobs[i].out, v->raw, v->raw_size) == 0, "threads=%d job %zu (%s): bytes differ",
            threads, i, v->name);
    }
    free(ref);
    free(jobs[i].out);
    free(copies[i]);
  }
  CHECK(bad == want_bad, "threads=%d: %zu failed jobs reported, %zu expected", threads, bad,
        want_bad);
  CHECK(!corrupt || want_bad > 0, "corruption left every vector decodable");
  free(jobs);
  free(copies);
}

int main(void) {
  int counts[] = {1, 2, 3, 8, 0, -1};
  for (size_t c = 0; c < sizeof counts / sizeof counts[0]; ++c) {
    run(counts[c], 0);
    run(counts[c], 1);
  }
  CHECK(dc_decode_many(NULL, 0, 4) == 0, "no jobs");
  CHECK(dc_decode_threads(3) == 3, "explicit count");
  CHECK(dc_decode_threads(1000) == DC_MAX_DECODE_THREADS, "cap");
  setenv("DC_KERAS_DECODE_THREADS", "1", 1);
  CHECK(dc_decode_threads(0) == 1, "environment: single thread");
  CHECK(dc_decode_threads(5) == 5, "an explicit count wins over the environment");
  setenv("DC_KERAS_DECODE_THREADS", "zero", 1);
  CHECK(dc_decode_threads(0) >= 1, "bad environment value: automatic");
  unsetenv("DC_KERAS_DECODE_THREADS");
  CHECK(dc_decode_threads(0) >= 1, "automatic");
  if (failures) {
    fprintf(stderr, "test_parallel: %d failure(s)\n", failures);
    return 1;
  }
  printf("test_parallel: all passed\n");
  return 0;
}
