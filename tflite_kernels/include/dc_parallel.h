/*
 * dc_parallel.h -- decode many packed tensors at once on a small pthread pool.
 *
 * Every tensor is decoded by dc_decode (docs/FORMAT.md) into its own output
 * buffer; tensors are independent, so the bytes written do not depend on the
 * number of threads or on scheduling (deterministic output).  Used by the
 * HuffDecode delegate's Prepare (decoded route) and by dc_unpack.
 */
#ifndef DC_PARALLEL_H_
#define DC_PARALLEL_H_

#include <stddef.h>
#include <stdint.h>

#include "dc_codec.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  const uint8_t* packed; /* packed tensor bytes (docs/FORMAT.md) */
  size_t packed_size;
  void* out; /* output buffer of out_size bytes (the tensor's decoded size) */
  size_t out_size;
  dc_status status; /* set by dc_decode_many: DC_OK or the decoder's error */
} dc_decode_job;

/* Largest pool dc_decode_many starts. */
#define DC_MAX_DECODE_THREADS 64

/* Threads the decoder uses when asked for `requested` (<= 0: automatic):
 * the environment variable DC_KERAS_DECODE_THREADS if set (1 = single
 * thread), else the online CPUs, capped by DC_MAX_DECODE_THREADS. */
DC_API int dc_decode_threads(int requested);

/* Decodes every job, largest first, on min(threads, num_jobs) threads
 * (threads <= 0: dc_decode_threads(0); 1, or a failure to start a thread:
 * in the calling thread).  Returns the number of jobs whose status is not
 * DC_OK (0: all decoded). */
DC_API size_t dc_decode_many(dc_decode_job* jobs, size_t num_jobs, int threads);

/* A 64-byte aligned block of n bytes for decoded output (not zeroed), freed
 * with free(); 2 MiB and larger blocks are huge-page aligned and advised
 * (fewer page faults when the decoder first writes them).  NULL if out of
 * memory. */
DC_API void* dc_alloc_output(size_t n);

/* Output memory for many decoded tensors at once (dc_decode_many's jobs):
 * one anonymous mapping of `size` bytes, 2 MiB aligned, its whole 2 MiB
 * pages advised for transparent huge pages, so that first writes fault a
 * few huge pages instead of a 4 KiB page at a time (MobileNetV2's 62
 * tensors, 13.9 MB: ~3,100 page faults).  Carve 64-byte aligned blocks out
 * of it; dc_arena_drop(a, p, n) returns the whole pages inside [p, p + n)
 * to the system (a block no longer needed), dc_arena_free unmaps it all.
 * NULL if the mapping fails (then allocate with dc_alloc_output). */
typedef struct dc_arena dc_arena;
DC_API dc_arena* dc_arena_new(size_t size);
DC_API uint8_t* dc_arena_base(const dc_arena* a);
DC_API size_t dc_arena_size(const dc_arena* a);
DC_API void dc_arena_drop(dc_arena* a, void* p, size_t n);
DC_API void dc_arena_free(dc_arena* a);

/* Runs fn(arg) on a helper thread while the caller goes on (e.g. the compact-form build maps its
 * arrays and checks the packed bytes' CRC there while it decodes them: dc_sparse_fc.c).  With
 * one CPU (dc_decode_threads(0) == 1) or when no thread starts, runs it in the calling thread
 * and returns NULL.  dc_task_join (NULL: nothing) waits for it and frees the task. */
typedef struct dc_task dc_task;
DC_API dc_task* dc_task_start(void (*fn)(void*), void* arg);
DC_API void dc_task_join(dc_task* t);

#ifdef __cplusplus
}
#endif

#endif /* DC_PARALLEL_H_ */
