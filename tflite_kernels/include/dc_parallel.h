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
 * the environment variable DC_KERAS_DECODE_THREADS if set to 1..64 (1 = single
 * thread), else the online CPUs, capped by DC_MAX_DECODE_THREADS.  A value it
 * cannot read counts as unset here: the entry points (dc_unpack,
 * DcKerasLiteRtHuffDecodeCreate, the delegate's creation) refuse it first,
 * through dc_decode_threads_check. */
DC_API int dc_decode_threads(int requested);

/* 1 if DC_KERAS_DECODE_THREADS is unset, empty or a whole number from 0 to
 * DC_MAX_DECODE_THREADS (0 = one thread per CPU); else 0, and `why` (why_n
 * bytes, may be NULL) names the variable, its value and the fix. */
DC_API int dc_decode_threads_check(char* why, size_t why_n);

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

/* The decoded route's load in parallel with its consumer (Linux): an arena whose pages appear
 * only as dc_arena_fill writes them -- a reader of a page not yet written waits for it (a
 * userfaultfd registered over the arena, missing mode) -- so the caller can hand the tensors'
 * addresses out at once and go on (the XNNPACK delegate packs the first layers while the last
 * ones are still being decoded on another core).  dc_arena_new_lazy returns NULL where that is not
 * available (not Linux, Android; userfaultfd refused by the kernel or seccomp): use dc_arena_new
 * and dc_decode_many.  fork() waits for the helpers of every fill and task in progress (the
 * child inherits filled arenas; there dc_arena_fill_join and dc_task_join only free).  Blocks must be whole pages (dc_page_size) at page-aligned offsets, and no
 * one but dc_arena_fill may write to the arena before dc_arena_fill_join.  A reader faulting from
 * kernel mode (a syscall given an address in it) before the fill gets EFAULT where only
 * user-mode userfaultfd is allowed.  An arena of 2 MiB or more starts on a 2 MiB boundary. */
DC_API size_t dc_page_size(void);
DC_API dc_arena* dc_arena_new_lazy(size_t size);

/* Decodes the jobs into a lazy arena on `threads` helper threads (>= 1), taking them in the
 * order given (the order its readers need them), while the caller goes on.  Job k's output
 * (jobs[k].out, page-aligned in the arena) owns span[k] bytes (a multiple of the page size,
 * >= out_size): the decoded bytes, then zeros.  Each job's pages appear together once it is
 * decoded (a failed decode's too: its bytes are then meaningless, and its status says so).
 * `jobs`, `span` and `filled` must stay valid until dc_arena_fill_join, which waits for the
 * helpers, sets filled[k] (1: job k's pages were written; 0: they could not be -- the arena then
 * turned into ordinary zero-filled memory so that no reader waits forever) and makes the arena
 * ordinary memory (dc_arena_drop works again).  Returns NULL (having done the whole fill in the
 * calling thread) if no helper thread starts.  A non-lazy arena is filled by plain decodes.
 * A helper decodes a job into staging pages of its own and puts them in place with one
 * UFFDIO_COPY; a job of 2 MiB or more at a 2 MiB boundary, where the kernel has UFFDIO_MOVE
 * (Linux 6.8), into fresh pages advised for huge pages that then move in whole (no copy; the
 * last partial huge page is copied). */
typedef struct dc_fill dc_fill;
DC_API dc_fill* dc_arena_fill(dc_arena* a, dc_decode_job* jobs, const size_t* span, int* filled,
                              size_t num_jobs, int threads);
DC_API void dc_arena_fill_join(dc_fill* f);

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
