/* test_parallel.c -- dc_decode_many (dc_parallel.h): every thread count gives the
 * reference bytes of every vector, errors are per job, and the thread-count policy; dc_task runs
 * its function once, on a helper or in the caller; dc_arena_fill's lazy arenas give readers the
 * reference bytes while the fill is still running, also in a child forked before the join. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codec_vectors.h"
#include "dc_codec.h"
#include "dc_pages.h"
#include "dc_parallel.h"
#include "dc_test.h"
#include "dc_test_pack.h"

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

/* dc_arena: 2 MiB aligned when >= 2 MiB; dropping a block zeroes only the whole pages inside it
 * (a neighbour sharing its first or last page keeps its bytes); drops outside are ignored. */
static void arena(void) {
  const size_t size = (size_t)5 << 20, page = 4096;
  CHECK(dc_arena_new(0) == NULL, "empty arena");
  dc_arena* a = dc_arena_new(size);
  CHECK(a != NULL, "arena of 5 MiB");
  if (!a) return;
  uint8_t* b = dc_arena_base(a);
  CHECK(dc_arena_size(a) == size && ((uintptr_t)b & (((uintptr_t)2 << 20) - 1)) == 0,
        "size and 2 MiB alignment");
  memset(b, 7, size);
  /* block [100, 3 pages + 200): only pages 1 and 2 lie inside it */
  dc_arena_drop(a, b + 100, 3 * page + 100);
  CHECK(b[99] == 7 && b[page - 1] == 7 && b[3 * page + 200] == 7, "neighbours' bytes kept");
  CHECK(b[page] == 0 && b[3 * page - 1] == 0, "whole pages inside the block returned (zero)");
  dc_arena_drop(a, b + size - 10, 100); /* past the end: ignored */
  dc_arena_drop(a, b - page, page);     /* before the start: ignored */
  CHECK(b[size - 1] == 7 && b[0] == 7, "drops outside the arena ignored");
  dc_arena_drop(NULL, b, page);
  dc_arena_free(a);
  dc_arena_free(NULL);
}

/* A task mapping two blocks (dc_populate_pages) while this thread writes them from the front, as
 * a compact-form build does: it runs exactly once, and every byte written before, during and
 * after reads back. */
typedef struct {
  uint8_t* p[2];
  size_t n[2];
  int runs;
} PopulateJob;

static void populate_job(void* arg) {
  PopulateJob* j = (PopulateJob*)arg;
  dc_populate_pages(j->p[0], j->n[0]);
  dc_populate_pages(j->p[1], j->n[1]);
  j->runs++;
}

static void task(int helper) {
  size_t n1 = (3u << 20) + 12345, n2 = (1u << 20) + 7;
  uint8_t* a = (uint8_t*)dc_alloc_output(n1);
  uint8_t* b = (uint8_t*)dc_alloc_output(n2);
  CHECK(a && b, "out of memory");
  if (!a || !b) return;
  memset(a, 0x11, 4096); /* written before the task starts */
  PopulateJob job = {{a, b}, {n1, n2}, 0};
  dc_task* t = dc_task_start(populate_job, &job);
  CHECK(helper ? 1 : t == NULL && job.runs == 1, "DC_KERAS_DECODE_THREADS=1: run in the caller");
  for (size_t i = 4096; i < n1; ++i) a[i] = (uint8_t)(i * 7u);
  for (size_t i = 0; i < n2; ++i) b[i] = (uint8_t)(i * 13u + 1u);
  dc_task_join(t);
  CHECK(job.runs == 1, "task ran %d times", job.runs);
  size_t bad = 0;
  for (size_t i = 0; i < n1; ++i) bad += a[i] != (i < 4096 ? 0x11 : (uint8_t)(i * 7u));
  for (size_t i = 0; i < n2; ++i) bad += b[i] != (uint8_t)(i * 13u + 1u);
  CHECK(bad == 0, "task (helper %d): %zu bytes changed", helper, bad);
  dc_task_join(NULL);
  free(a);
  free(b);
}

/* dc_arena_fill into a lazy arena (want_lazy; skipped where userfaultfd is refused) or an
 * ordinary one: this thread reads every output -- from a lazy arena while the helpers are still
 * filling: a page not written yet waits for its tensor -- and sees the reference bytes, then zeros up to the block's end; a corrupt
 * job fails alone (its pages still appear: no reader waits forever); after the join the arena is
 * ordinary memory (dc_arena_drop zeroes whole pages). */
static void lazy(int threads, int want_lazy) {
  const size_t page = dc_page_size(), n = NVEC * REPEAT;
  dc_decode_job* jobs = (dc_decode_job*)calloc(n, sizeof *jobs);
  size_t* span = (size_t*)calloc(n, sizeof *span);
  int* filled = (int*)calloc(n, sizeof *filled);
  uint8_t** copies = (uint8_t**)calloc(n, sizeof *copies);
  size_t total = 0;
  CHECK(jobs && span && filled && copies, "out of memory");
  if (!jobs || !span || !filled || !copies) return;
  for (size_t i = 0; i < n; ++i) {
    const codec_vector* v = &codec_vectors[i % NVEC];
    span[i] = (v->raw_size / page + 1) * page; /* at least one zero byte after the data */
    total += span[i];
  }
  CHECK(dc_arena_new_lazy(page + 1) == NULL, "lazy arena of a size that is no page multiple");
  dc_arena* a = want_lazy ? dc_arena_new_lazy(total) : dc_arena_new(total);
  if (want_lazy && !a) {
    printf("test_parallel: userfaultfd refused here, lazy arenas not tested\n");
    free(jobs), free(span), free(filled), free(copies);
    return;
  }
  CHECK(a != NULL, "arena of %zu bytes", total);
  if (!a) return;
  uint8_t* base = dc_arena_base(a);
  size_t off = 0;
  for (size_t i = 0; i < n; ++i) {
    const codec_vector* v = &codec_vectors[i % NVEC];
    copies[i] = (uint8_t*)malloc(v->packed_size);
    memcpy(copies[i], v->packed, v->packed_size);
    if (i % 9 == 4 && v->packed_size > 24) copies[i][v->packed_size / 2] ^= 0x5a;
    jobs[i].packed = copies[i];
    jobs[i].packed_size = v->packed_size;
    jobs[i].out = base + off;
    jobs[i].out_size = v->raw_size;
    off += span[i];
  }
  dc_fill* f = dc_arena_fill(a, jobs, span, filled, n, threads);
  if (!want_lazy) { /* an ordinary arena: readers must wait for the join */
    dc_arena_fill_join(f);
    f = NULL;
  }
  size_t bad = 0, tail = 0;
  for (size_t i = n; i-- > 0;) { /* the last jobs first: those written last */
    const codec_vector* v = &codec_vectors[i % NVEC];
    const uint8_t* out = (const uint8_t*)jobs[i].out;
    uint8_t* ref = (uint8_t*)malloc(v->raw_size ? v->raw_size : 1);
    dc_status st = dc_decode(copies[i], v->packed_size, ref, v->raw_size);
    if (st == DC_OK) bad += memcmp(out, v->raw, v->raw_size) != 0;
    for (size_t k = v->raw_size; k < span[i]; ++k) tail += out[k] != 0;
    free(ref);
  }
  dc_arena_fill_join(f);
  size_t want_bad = 0, not_filled = 0, status_bad = 0;
  for (size_t i = 0; i < n; ++i) {
    const codec_vector* v = &codec_vectors[i % NVEC];
    uint8_t* ref = (uint8_t*)malloc(v->raw_size ? v->raw_size : 1);
    dc_status st = dc_decode(copies[i], v->packed_size, ref, v->raw_size);
    want_bad += st != DC_OK;
    status_bad += jobs[i].status != st;
    not_filled += filled[i] != 1;
    free(ref);
    free(copies[i]);
  }
  CHECK(bad == 0 && tail == 0, "lazy %d threads=%d: %zu outputs differ, %zu tail bytes not zero",
        want_lazy, threads, bad, tail);
  CHECK(status_bad == 0 && not_filled == 0, "lazy %d threads=%d: %zu statuses wrong, %zu unfilled",
        want_lazy, threads, status_bad, not_filled);
  CHECK(want_bad > 0, "corruption left every vector decodable");
  memset(base, 7, 2 * page); /* ordinary memory after the join */
  dc_arena_drop(a, base, 2 * page);
  CHECK(base[0] == 0 && base[2 * page - 1] == 0, "drop after the join");
  dc_arena_free(a);
  CHECK(dc_arena_fill(NULL, jobs, span, filled, n, 1) == NULL, "no arena");
  free(jobs);
  free(span);
  free(filled);
  free(copies);
}

/* fork() while a fill and a task may still be running (their joins not called yet): the child
 * reads the reference bytes from the arena and joins both without waiting for threads it does
 * not have (before, the lazy arena was not mapped in the child (SIGSEGV), and a join could wait
 * forever); the parent then joins as usual.  alarm(): a hang is a failure, not a stuck test. */
static void lazy_fork(void) {
  const size_t page = dc_page_size(), n = NVEC;
  dc_decode_job jobs[NVEC];
  size_t span[NVEC], total = 0, off = 0;
  int filled[NVEC];
  for (size_t i = 0; i < n; ++i) {
    span[i] = (codec_vectors[i].raw_size / page + 1) * page;
    total += span[i];
  }
  dc_arena* a = dc_arena_new_lazy(total);
  if (!a) return; /* userfaultfd refused: lazy() says so */
  uint8_t* base = dc_arena_base(a);
  for (size_t i = 0; i < n; ++i) {
    jobs[i].packed = codec_vectors[i].packed;
    jobs[i].packed_size = codec_vectors[i].packed_size;
    jobs[i].out = base + off;
    jobs[i].out_size = codec_vectors[i].raw_size;
    off += span[i];
  }
  size_t n1 = (1u << 20) + 5;
  uint8_t* mem = (uint8_t*)dc_alloc_output(n1);
  PopulateJob job = {{mem, mem}, {n1, 0}, 0};
  dc_fill* f = dc_arena_fill(a, jobs, span, filled, n, 2);
  dc_task* t = dc_task_start(populate_job, &job);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(60);
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) {
      const codec_vector* v = &codec_vectors[i];
      if (jobs[i].status == DC_OK) bad += memcmp(jobs[i].out, v->raw, v->raw_size) != 0;
    }
    dc_task_join(t);
    dc_arena_fill_join(f);
    for (size_t i = 0; i < n; ++i) bad += filled[i] != 1;
    _exit(bad == 0 && job.runs == 1 ? 0 : 3);
  }
  int status = -1;
  CHECK(pid > 0 && waitpid(pid, &status, 0) == pid, "fork");
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "forked child: status %d (%s %d)", status,
        WIFSIGNALED(status) ? "signal" : "exit",
        WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
  dc_task_join(t);
  dc_arena_fill_join(f);
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    const codec_vector* v = &codec_vectors[i];
    bad += filled[i] != 1 || jobs[i].status != DC_OK || memcmp(jobs[i].out, v->raw, v->raw_size);
  }
  CHECK(bad == 0 && job.runs == 1, "after the fork: %zu jobs wrong", bad);
  dc_arena_free(a);
  free(mem);
}

/* A packed float32 tensor of n elements (§2 version 2, §5 dense, dc_test_pack.h): two values
 * with a 1-bit code each, element i = value[bit (i * 2654435761 >> 13) & 1]; malloc'd, size in
 * *size, the decoded bytes in *raw (malloc'd). */
static uint8_t* big_packed(uint32_t n, size_t* size, uint8_t** raw) {
  static const uint8_t len[2] = {1, 1}; /* codes 0 and 1 */
  uint16_t* sym = (uint16_t*)malloc((size_t)n * sizeof *sym);
  uint8_t* p = (uint8_t*)malloc(pack_dense_f32_bound(2, n));
  *raw = (uint8_t*)malloc((size_t)n * 4);
  if (!sym || !p || !*raw) {
    free(sym);
    free(p);
    return NULL;
  }
  for (uint32_t i = 0; i < n; ++i) {
    sym[i] = (uint16_t)((((uint64_t)i * 2654435761u) >> 13) & 1u);
    dc_test_put32(*raw + (size_t)i * 4, dc_test_f32_bits(sym[i]));
  }
  uint32_t sizes_at;
  *size = pack_dense_f32(p, len, 2, sym, n, &sizes_at);
  free(sym);
  return p;
}

/* dc_arena_fill with jobs of 2 MiB and more (moved into the lazy arena a huge page at a time
 * where the kernel has UFFDIO_MOVE, copied where not): one at a 2 MiB boundary, one corrupt
 * there, one off the boundary, small ones between; this thread reads them back to front while
 * the helpers fill.  Bytes, zero tails and statuses as dc_decode's. */
static void lazy_large(int threads) {
  const size_t page = dc_page_size(), huge = (size_t)2 << 20;
  const uint32_t counts[5] = {1000, (5u << 20) / 4 + 1000, 3000, (5u << 20) / 4 + 1000, 700000};
  size_t at[5], span[5], size[5], total = 0;
  uint8_t *packed[5], *raw[5];
  dc_decode_job jobs[5];
  int filled[5];
  for (int i = 0; i < 5; ++i) {
    packed[i] = big_packed(counts[i], &size[i], &raw[i]);
    CHECK(packed[i] && raw[i], "out of memory");
    if (!packed[i] || !raw[i]) return;
    span[i] = ((size_t)counts[i] * 4 / page + 1) * page;
    if (i == 1) total = (total + huge - 1) / huge * huge;        /* job 1 at a 2 MiB boundary */
    if (i == 3) total = (total + huge - 1) / huge * huge + page; /* job 3 off it */
    at[i] = total;
    total += span[i];
  }
  packed[4][size[4] - 3] ^= 0x21; /* job 4: corrupt (CRC) */
  dc_arena* a = dc_arena_new_lazy(total);
  if (!a) {
    printf("test_parallel: userfaultfd refused here, large lazy jobs not tested\n");
  } else {
    CHECK((uintptr_t)dc_arena_base(a) % huge == 0, "a lazy arena of 2 MiB or more: aligned");
    for (int i = 0; i < 5; ++i) {
      jobs[i].packed = packed[i];
      jobs[i].packed_size = size[i];
      jobs[i].out = dc_arena_base(a) + at[i];
      jobs[i].out_size = (size_t)counts[i] * 4;
    }
    dc_fill* f = dc_arena_fill(a, jobs, span, filled, 5, threads);
    size_t bad = 0, tail = 0;
    for (int i = 5; i-- > 0;) {
      const uint8_t* out = (const uint8_t*)jobs[i].out;
      if (i != 4) bad += memcmp(out, raw[i], (size_t)counts[i] * 4) != 0;
      for (size_t k = (size_t)counts[i] * 4; k < span[i]; ++k) tail += out[k] != 0;
    }
    dc_arena_fill_join(f);
    int st_ok = 1;
    for (int i = 0; i < 5; ++i)
      st_ok &= filled[i] == 1 && jobs[i].status == (i == 4 ? DC_ERR_CHECKSUM : DC_OK);
    CHECK(bad == 0 && tail == 0, "large lazy jobs, threads=%d: %zu outputs differ, %zu tail bytes",
          threads, bad, tail);
    CHECK(st_ok, "large lazy jobs, threads=%d: statuses or filled flags wrong", threads);
    dc_arena_free(a);
  }
  for (int i = 0; i < 5; ++i) {
    free(packed[i]);
    free(raw[i]);
  }
}

int main(void) {
  arena();
  task(1);
  lazy(1, 1);
  lazy(2, 1);
  lazy(0, 1); /* no helper thread: the whole fill in the caller */
  lazy(2, 0);
  lazy_fork();
  lazy_large(1);
  lazy_large(2);
  lazy_large(0);
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
  task(0);
  setenv("DC_KERAS_DECODE_THREADS", "zero", 1);
  CHECK(dc_decode_threads(0) >= 1, "bad environment value: automatic");
  /* what the entry points refuse (dc_unpack, the LiteRT kernel, the delegate): a whole number
   * 0..64 or unset / empty, nothing else (they took the rest as unset: one thread per CPU) */
  const char* bad[] = {"abc", "-3", "4x", " 4", "+4", "65", "99999999999999999999", "0x10"};
  const char* good[] = {"", "0", "1", "64", "007"};
  char why[256];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
    char want[64];
    snprintf(want, sizeof want, "DC_KERAS_DECODE_THREADS='%s' is not a whole number", bad[i]);
    setenv("DC_KERAS_DECODE_THREADS", bad[i], 1);
    why[0] = '\0';
    CHECK(dc_decode_threads_check(why, sizeof why) == 0 && strstr(why, want) != NULL &&
              strstr(why, "from 0 to 64: set it to the number of decode threads") != NULL &&
              strstr(why, "or unset it") != NULL,
          "unreadable value refused with its name, value and fix");
  }
  for (size_t i = 0; i < sizeof good / sizeof good[0]; ++i) {
    setenv("DC_KERAS_DECODE_THREADS", good[i], 1);
    CHECK(dc_decode_threads_check(why, sizeof why) == 1, "whole number 0..64 taken");
  }
  setenv("DC_KERAS_DECODE_THREADS", "007", 1);
  CHECK(dc_decode_threads(0) == 7, "leading zeros");
  unsetenv("DC_KERAS_DECODE_THREADS");
  CHECK(dc_decode_threads_check(NULL, 0) == 1, "unset");
  CHECK(dc_decode_threads(0) >= 1, "automatic");
  if (failures) {
    fprintf(stderr, "test_parallel: %d failure(s)\n", failures);
    return 1;
  }
  printf("test_parallel: all passed\n");
  return 0;
}
