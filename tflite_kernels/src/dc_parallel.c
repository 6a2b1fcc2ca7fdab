/*
 * dc_parallel.c -- dc_decode_many: decode independent packed tensors on a
 * small pthread pool (see dc_parallel.h).  Work is handed out one tensor at a
 * time, largest first, from a mutex-protected index; each job writes only its
 * own output buffer and status, so the result is the same for any thread count.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* madvise, MADV_HUGEPAGE (Linux, Android) */
#include "dc_parallel.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dc_parallel_internal.h"

/* Lazy arenas (dc_arena_new_lazy): Linux's userfaultfd, missing mode, filled by UFFDIO_COPY.
 * Not on Android: before Android 13 an app's seccomp policy may kill the process (SIGSYS) on the
 * syscall instead of refusing it; not measured there either. */
#if defined(__linux__) && !defined(__ANDROID__) && !defined(DC_NO_UFFD)
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#if defined(__NR_userfaultfd) && defined(UFFDIO_COPY) && defined(UFFDIO_REGISTER)
#define DC_UFFD 1
#endif
#endif
#ifndef DC_UFFD
#define DC_UFFD 0
#endif
#if DC_UFFD && !defined(UFFD_USER_MODE_ONLY)
#define UFFD_USER_MODE_ONLY 1 /* Linux 5.11 uapi; older kernels refuse the flag (EINVAL) */
#endif
/* UFFDIO_MOVE (Linux 6.8 uapi): moves pages, a whole 2 MiB huge page at a time where aligned,
 * into the arena instead of copying them.  Declared here for older headers; an older kernel
 * refuses the feature (the arena then copies). */
#if DC_UFFD && !defined(UFFDIO_MOVE)
struct uffdio_move {
  __u64 dst;
  __u64 src;
  __u64 len;
  __u64 mode;
  __s64 move;
};
#define _UFFDIO_MOVE (0x05)
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif
#if DC_UFFD && !defined(UFFD_FEATURE_MOVE)
#define UFFD_FEATURE_MOVE (1 << 16)
#endif

/* glibc 2.34 moved the pthread functions into libc under a new symbol version; bind to the
 * original versions (present in every glibc since the architecture's first) so that the
 * library keeps needing nothing newer than GLIBC_2.17 (tools/arm/check_abi.py). */
#if defined(__GLIBC__) && !defined(__ANDROID__)
#if defined(__x86_64__)
#define DC_PTHREAD_VER "GLIBC_2.2.5"
#elif defined(__aarch64__)
#define DC_PTHREAD_VER "GLIBC_2.17"
#elif defined(__arm__)
#define DC_PTHREAD_VER "GLIBC_2.4"
#endif
#ifdef DC_PTHREAD_VER
__asm__(".symver pthread_create, pthread_create@" DC_PTHREAD_VER);
__asm__(".symver pthread_join, pthread_join@" DC_PTHREAD_VER);
#endif
#endif

static void decode_one(dc_decode_job* j) {
  j->status = dc_decode(j->packed, j->packed_size, j->out, j->out_size);
}

/* DC_KERAS_DECODE_THREADS read: 1 and *n (0: one per CPU) for a whole number 0..64, -1 when unset
 * or empty, 0 for anything else (letters, a sign, a trailing unit, more than 64, an overflow). */
static int env_threads(long* n) {
  const char* env = getenv("DC_KERAS_DECODE_THREADS");
  long v = 0;
  if (!env || !*env) return -1;
  for (const char* c = env; *c; ++c) {
    if (*c < '0' || *c > '9') return 0;
    if (v <= DC_MAX_DECODE_THREADS) v = 10 * v + (*c - '0'); /* stops growing past the cap */
  }
  if (v > DC_MAX_DECODE_THREADS) return 0;
  *n = v;
  return 1;
}

DC_API int dc_decode_threads_check(char* why, size_t why_n) {
  long n = 0;
  if (env_threads(&n) != 0) return 1;
  if (why && why_n) {
    snprintf(why, why_n,
             "environment variable DC_KERAS_DECODE_THREADS='%.64s' is not a whole number from 0 to "
             "%d: set it to the number of decode threads (0 = one per CPU), or unset it",
             getenv("DC_KERAS_DECODE_THREADS"), DC_MAX_DECODE_THREADS);
  }
  return 0;
}

DC_API int dc_decode_threads(int requested) {
  long n = requested, e = 0;
  if (n <= 0) n = env_threads(&e) == 1 && e > 0 ? e : sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = 1;
  if (n > DC_MAX_DECODE_THREADS) n = DC_MAX_DECODE_THREADS;
  return (int)n;
}

typedef struct {
  dc_decode_job* jobs;
  const size_t* order; /* job indices, largest output first */
  size_t num_jobs;
  size_t next;
  pthread_mutex_t lock;
} Pool;

static void* worker(void* arg) {
  Pool* p = (Pool*)arg;
  for (;;) {
    pthread_mutex_lock(&p->lock);
    size_t k = p->next < p->num_jobs ? p->next++ : p->num_jobs;
    pthread_mutex_unlock(&p->lock);
    if (k >= p->num_jobs) return NULL;
    decode_one(&p->jobs[p->order[k]]);
  }
}

/* Heap sort (no recursion, no allocation besides `order`); `before(a, b)`:
 * job a is decoded before job b (larger output first, then job order). */
static int before(const dc_decode_job* jobs, size_t a, size_t b) {
  if (jobs[a].out_size != jobs[b].out_size) return jobs[a].out_size > jobs[b].out_size;
  return a < b;
}

static void sift(const dc_decode_job* jobs, size_t* o, size_t start, size_t end) {
  size_t root = start;
  while (2 * root + 1 < end) {
    size_t child = 2 * root + 1;
    if (child + 1 < end && before(jobs, o[child], o[child + 1])) ++child;
    if (!before(jobs, o[root], o[child])) return;
    size_t t = o[root];
    o[root] = o[child];
    o[child] = t;
    root = child;
  }
}

/* Sorts `o` into `before` order. */
static void sort_largest_first(const dc_decode_job* jobs, size_t* o, size_t n) {
  for (size_t i = n / 2; i-- > 0;) sift(jobs, o, i, n);
  for (size_t end = n; end-- > 1;) {
    size_t t = o[0];
    o[0] = o[end];
    o[end] = t;
    sift(jobs, o, 0, end);
  }
}

static size_t count_failed(const dc_decode_job* jobs, size_t n) {
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) bad += jobs[i].status != DC_OK;
  return bad;
}

DC_API size_t dc_decode_many(dc_decode_job* jobs, size_t num_jobs, int threads) {
  if (!jobs || num_jobs == 0) return 0;
  int t = dc_decode_threads(threads);
  if ((size_t)t > num_jobs) t = (int)num_jobs;
  size_t* order = t > 1 ? (size_t*)malloc(num_jobs * sizeof(size_t)) : NULL;
  if (!order) t = 1;
  if (t <= 1) {
    for (size_t i = 0; i < num_jobs; ++i) decode_one(&jobs[i]);
    return count_failed(jobs, num_jobs);
  }
  for (size_t i = 0; i < num_jobs; ++i) order[i] = i;
  sort_largest_first(jobs, order, num_jobs);
  Pool pool;
  memset(&pool, 0, sizeof pool);
  pool.jobs = jobs;
  pool.order = order;
  pool.num_jobs = num_jobs;
  if (pthread_mutex_init(&pool.lock, NULL) != 0) {
    free(order);
    for (size_t i = 0; i < num_jobs; ++i) decode_one(&jobs[i]);
    return count_failed(jobs, num_jobs);
  }
  pthread_t tid[DC_MAX_DECODE_THREADS];
  int started = 0;
  for (int i = 1; i < t; ++i) { /* the caller is worker 0 */
    if (pthread_create(&tid[started], NULL, worker, &pool) != 0) break;
    ++started;
  }
  worker(&pool);
  for (int i = 0; i < started; ++i) pthread_join(tid[i], NULL);
  pthread_mutex_destroy(&pool.lock);
  free(order);
  return count_failed(jobs, num_jobs);
}

/* Output memory for decoded tensors.  Blocks of 2 MiB and more are 2 MiB
 * aligned and marked MADV_HUGEPAGE where the kernel has transparent huge
 * pages in "madvise" mode (Linux, Android): first-touch page faults then
 * cost 3x less CPU (64 MiB: 33 ms -> 10.5 ms measured here).  The tail that
 * does not fill a huge page keeps 4 KiB pages, so resident memory does not
 * grow.  Freed with free(). */
#define DC_HUGE_PAGE ((size_t)2 << 20)

DC_API void* dc_alloc_output(size_t n) {
  void* p = NULL;
  size_t align = n >= DC_HUGE_PAGE ? DC_HUGE_PAGE : 64;
  if (posix_memalign(&p, align, n ? n : 1) != 0) return NULL;
#ifdef MADV_HUGEPAGE
  if (align == DC_HUGE_PAGE) (void)madvise(p, n - n % DC_HUGE_PAGE, MADV_HUGEPAGE);
#endif
  return p;
}

struct dc_arena {
  uint8_t* map; /* the mapping (map_size bytes); base: its first 2 MiB boundary */
  size_t map_size;
  uint8_t* base;
  size_t size;
  int uffd; /* lazy arena (dc_arena_new_lazy) until its fill is joined; else -1 */
  int move; /* lazy arena: UFFDIO_MOVE works (lazy_move) */
};

DC_API dc_arena* dc_arena_new(size_t size) {
  dc_arena* a = (dc_arena*)calloc(1, sizeof *a);
  if (!a || size == 0 || size > SIZE_MAX - DC_HUGE_PAGE) {
    free(a);
    return NULL;
  }
  /* a 2 MiB boundary inside: map one huge page more than asked (untouched pages cost nothing) */
  size_t map_size = size + (size >= DC_HUGE_PAGE ? DC_HUGE_PAGE : 0);
  void* m = mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    free(a);
    return NULL;
  }
  a->uffd = -1;
  a->map = (uint8_t*)m;
  a->map_size = map_size;
  a->base = a->map;
  if (size >= DC_HUGE_PAGE) {
    a->base = (uint8_t*)(((uintptr_t)m + DC_HUGE_PAGE - 1) & ~(uintptr_t)(DC_HUGE_PAGE - 1));
#ifdef MADV_HUGEPAGE
    (void)madvise(a->base, size - size % DC_HUGE_PAGE, MADV_HUGEPAGE);
#endif
  }
  a->size = size;
  return a;
}

DC_API uint8_t* dc_arena_base(const dc_arena* a) {
  return a ? a->base : NULL;
}

DC_API size_t dc_arena_size(const dc_arena* a) {
  return a ? a->size : 0;
}

DC_API void dc_arena_drop(dc_arena* a, void* p, size_t n) {
  long pg = sysconf(_SC_PAGESIZE);
  uintptr_t page = pg > 0 ? (uintptr_t)pg : 4096u;
  uintptr_t lo = ((uintptr_t)p + page - 1) & ~(page - 1);
  uintptr_t hi = ((uintptr_t)p + n) & ~(page - 1);
  if (!a || a->uffd >= 0 || (uint8_t*)p < a->base || (uint8_t*)p + n > a->base + a->size ||
      hi <= lo)
    return;
  (void)madvise((void*)lo, hi - lo, MADV_DONTNEED); /* pages shared with a neighbour stay */
}

static void lazy_release(dc_arena* a);

DC_API void dc_arena_free(dc_arena* a) {
  if (!a) return;
  lazy_release(a);
  munmap(a->map, a->map_size);
  free(a);
}

DC_API size_t dc_page_size(void) {
  long pg = sysconf(_SC_PAGESIZE);
  return pg > 0 ? (size_t)pg : 4096u;
}

#if DC_UFFD
/* A userfaultfd with the API handshake done, or -1: full mode first (kernel-mode faults wait
 * too; needs privilege or vm.unprivileged_userfaultfd=1), else user-mode faults only; each with
 * UFFDIO_MOVE first (*move = 1), else without (an unknown feature fails the handshake, after
 * which the descriptor is not used again). */
static int uffd_open(int* move) {
  const int flags[2] = {O_CLOEXEC, O_CLOEXEC | UFFD_USER_MODE_ONLY};
  for (int i = 0; i < 4; ++i) {
    long fd = syscall(__NR_userfaultfd, flags[i / 2]);
    if (fd < 0) continue;
    struct uffdio_api api;
    memset(&api, 0, sizeof api);
    api.api = UFFD_API;
    api.features = i % 2 == 0 ? UFFD_FEATURE_MOVE : 0;
    if (ioctl((int)fd, UFFDIO_API, &api) == 0) {
      *move = i % 2 == 0 && (api.features & UFFD_FEATURE_MOVE) != 0;
      return (int)fd;
    }
    close((int)fd);
  }
  return -1;
}

/* Unregisters the whole arena: pages not written yet become ordinary zero-fill memory and every
 * reader waiting for one wakes up (the kernel wakes them when the range is unregistered). */
static void lazy_unregister(dc_arena* a) {
  struct uffdio_range r;
  r.start = (uintptr_t)a->base;
  r.len = a->size;
  (void)ioctl(a->uffd, UFFDIO_UNREGISTER, &r);
}

/* Writes [src, src + len) to the missing pages at dst (page multiples), waking their readers. */
static int lazy_copy(int fd, uint8_t* dst, const uint8_t* src, size_t len) {
  size_t done = 0;
  int retries = 0;
  while (done < len) {
    struct uffdio_copy c;
    memset(&c, 0, sizeof c);
    c.dst = (uintptr_t)(dst + done);
    c.src = (uintptr_t)(src + done);
    c.len = len - done;
    if (ioctl(fd, UFFDIO_COPY, &c) == 0) return 1;
    if (c.copy > 0) {
      done += (size_t)c.copy; /* partial (the mappings changed meanwhile): go on */
    } else if (c.copy == -EEXIST) {
      /* a page already in place: only the fill writes the arena, so lazy_move put it there
       * (it may have moved more than it reported before it failed) */
      done += dc_page_size();
    } else if (c.copy != -EAGAIN || ++retries > 1000) {
      return 0;
    }
  }
  return 1;
}

/* Moves the len bytes of pages at src (an ordinary private mapping, every page written) to the
 * missing pages at dst (page multiples), waking their readers: whole 2 MiB huge pages move as
 * such where both sides are aligned, the rest page by page, nothing is copied.  Returns the bytes
 * moved (from the start; the caller copies the rest). */
static size_t lazy_move(int fd, uint8_t* dst, uint8_t* src, size_t len) {
  size_t done = 0;
  int retries = 0;
  while (done < len) {
    struct uffdio_move m;
    memset(&m, 0, sizeof m);
    m.dst = (uintptr_t)(dst + done);
    m.src = (uintptr_t)(src + done);
    m.len = len - done;
    if (ioctl(fd, UFFDIO_MOVE, &m) == 0) return len;
    if (m.move > 0) {
      done += (size_t)m.move; /* partial: go on */
    } else if (m.move != -EAGAIN || ++retries > 1000) {
      break;
    }
  }
  return done;
}
#endif

DC_API dc_arena* dc_arena_new_lazy(size_t size) {
#if DC_UFFD
  const size_t page = dc_page_size();
  int move = 0;
  if (size == 0 || size % page != 0 || size > SIZE_MAX - DC_HUGE_PAGE) return NULL;
  int fd = uffd_open(&move);
  if (fd < 0) return NULL;
  dc_arena* a = (dc_arena*)calloc(1, sizeof *a);
  /* 2 MiB aligned from 2 MiB on (one huge page more mapped, never touched), so that whole huge
   * pages can move in (lazy_move); only [base, base + size) is registered */
  const size_t map_size = size + (size >= DC_HUGE_PAGE ? DC_HUGE_PAGE : 0);
  void* m = a ? mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
              : MAP_FAILED;
  uint8_t* base = (uint8_t*)m;
  /* Not advised for huge pages (unlike dc_arena_new): a huge page moved in stays one, and
   * khugepaged must not fill the gaps between tensors later. */
  if (m != MAP_FAILED && size >= DC_HUGE_PAGE) {
    base = (uint8_t*)(((uintptr_t)m + DC_HUGE_PAGE - 1) & ~(uintptr_t)(DC_HUGE_PAGE - 1));
  }
  struct uffdio_register reg;
  memset(&reg, 0, sizeof reg);
  reg.range.start = (uintptr_t)base;
  reg.range.len = size;
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  if (m == MAP_FAILED || ioctl(fd, UFFDIO_REGISTER, &reg) != 0 ||
      !(reg.ioctls & ((uint64_t)1 << _UFFDIO_COPY))) {
    if (m != MAP_FAILED) munmap(m, map_size);
    close(fd);
    free(a);
    return NULL;
  }
  /* A child forked before the fill is joined would see zeros where tensors are still missing
   * (its copy is not registered): it gets no copy of the arena until then (lazy_release). */
  (void)madvise(base, size, MADV_DONTFORK);
  a->map = (uint8_t*)m;
  a->map_size = map_size;
  a->base = base;
  a->size = size;
  a->uffd = fd;
  a->move = move && (reg.ioctls & ((uint64_t)1 << _UFFDIO_MOVE)) != 0;
  return a;
#else
  (void)size;
  return NULL;
#endif
}

/* The arena becomes ordinary memory (every waiting reader wakes up). */
static void lazy_release(dc_arena* a) {
#if DC_UFFD
  if (a->uffd < 0) return;
  lazy_unregister(a);
  close(a->uffd);
  (void)madvise(a->base, a->size, MADV_DOFORK);
#endif
  a->uffd = -1;
}

typedef struct {
  dc_arena* a;
  dc_decode_job* jobs;
  const size_t* span;
  int* filled;
  size_t num_jobs, next, stage_size; /* stage_size: read only once the helpers run */
  int broken; /* a copy failed: the arena was unregistered, jobs not written yet fail */
  pthread_mutex_t lock;
} FillPool;

struct dc_fill {
  FillPool pool;
  pthread_t tid[DC_MAX_DECODE_THREADS];
  int started;
  int finished;         /* helpers done (under g_live.lock) */
  int forked;           /* a forked child's copy: its helpers are not threads of this process */
  struct dc_fill* next; /* g_live.fills */
};

struct dc_task {
  pthread_t tid;
  void (*fn)(void*);
  void* arg;
  int finished, forked; /* as dc_fill's */
  struct dc_task* next; /* g_live.tasks */
};

/* The helper threads running (dc_arena_fill's, dc_task_start's) and fork().  A forked child has
 * only the thread that forked: a helper still running in the parent would be missing there, and
 * a lazy arena before its join is not inherited at all (MADV_DONTFORK: nothing is mapped there
 * in the child).  A child that then used the interpreter (its Prepare joins
 * the fill) crashed (SIGSEGV reading the weights) or waited forever in pthread_join.  So
 * fork_prepare (pthread_atfork) waits for every helper to finish and makes every lazy arena
 * ordinary memory (filled: the child gets the decoded weights), and the child marks their copies
 * forked, whose joins then only free them.  fork() waits for the decode in progress (the fill
 * of a model's weights: milliseconds). */
static struct {
  pthread_mutex_t lock;
  pthread_cond_t done; /* a helper finished */
  dc_fill* fills;
  dc_task* tasks;
  int atfork; /* fork handlers registered */
} g_live = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, 0};

static int live_running(void) {
  for (const dc_fill* f = g_live.fills; f; f = f->next) {
    if (f->finished < f->started) return 1;
  }
  for (const dc_task* t = g_live.tasks; t; t = t->next) {
    if (!t->finished) return 1;
  }
  return 0;
}

static void fork_prepare(void) {
  pthread_mutex_lock(&g_live.lock);
  while (live_running()) pthread_cond_wait(&g_live.done, &g_live.lock);
  for (dc_fill* f = g_live.fills; f; f = f->next) lazy_release(f->pool.a);
}

static void fork_parent(void) {
  pthread_mutex_unlock(&g_live.lock);
}

static void fork_child(void) {
  for (dc_fill* f = g_live.fills; f; f = f->next) f->forked = 1;
  for (dc_task* t = g_live.tasks; t; t = t->next) t->forked = 1;
  pthread_mutex_unlock(&g_live.lock);
}

/* Under g_live.lock: the fork handlers, once per process. */
static void live_register_atfork(void) {
  if (!g_live.atfork) g_live.atfork = pthread_atfork(fork_prepare, fork_parent, fork_child) == 0;
}

void dc_parallel_register_atfork(void) {
  pthread_mutex_lock(&g_live.lock);
  live_register_atfork();
  pthread_mutex_unlock(&g_live.lock);
}

static void live_finished(int* finished) {
  pthread_mutex_lock(&g_live.lock);
  ++*finished;
  pthread_cond_broadcast(&g_live.done);
  pthread_mutex_unlock(&g_live.lock);
}

#if DC_UFFD
/* Job k moves in whole huge pages (lazy_move): a span of 2 MiB or more at a 2 MiB boundary of an
 * arena that can move pages. */
static int moves_whole(const FillPool* p, size_t k) {
  return p->a->move && p->span[k] >= DC_HUGE_PAGE && (uintptr_t)p->jobs[k].out % DC_HUGE_PAGE == 0;
}

/* Job k decoded into fresh pages of its own, 2 MiB aligned and advised for huge pages, which then
 * move into the arena (the part short of a whole huge page is copied): no copy of the bulk, no
 * page fault or page allocation per 4 KiB on either side where huge pages are available
 * (MobileNetV2's classifier, 5.1 MB: ~1,000 UFFDIO_COPY pages, ~1.2 ms of the helper, before).
 * Returns 1 (filled), 0 (could not write the pages) or -1 (no memory for the pages: stage it). */
static int fill_moved(FillPool* p, size_t k) {
  dc_decode_job* j = &p->jobs[k];
  const size_t span = p->span[k], whole = span - span % DC_HUGE_PAGE, size = span + DC_HUGE_PAGE;
  void* m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return -1;
  uint8_t* src = (uint8_t*)(((uintptr_t)m + DC_HUGE_PAGE - 1) & ~(uintptr_t)(DC_HUGE_PAGE - 1));
#ifdef MADV_HUGEPAGE
  (void)madvise(src, span, MADV_HUGEPAGE);
#endif
  j->status = dc_decode(j->packed, j->packed_size, src, j->out_size);
  memset(src + j->out_size, 0, span - j->out_size);
  const size_t moved = lazy_move(p->a->uffd, (uint8_t*)j->out, src, whole);
  const int ok = lazy_copy(p->a->uffd, (uint8_t*)j->out + moved, src + moved, span - moved);
  munmap(m, size);
  return ok;
}
#endif

/* One helper: decodes the next job into its own staging pages, then moves them into place
 * (UFFDIO_COPY: the pages appear at once, with their bytes, and their readers wake up; large
 * jobs: fill_moved). */
static void* fill_worker(void* arg) {
  FillPool* p = (FillPool*)arg;
  uint8_t *stage = NULL, *stage_map = NULL;
  size_t stage_len = 0, stage_map_len = 0;
  for (;;) {
    pthread_mutex_lock(&p->lock);
    size_t k = p->next < p->num_jobs ? p->next++ : p->num_jobs;
    int broken = p->broken;
    pthread_mutex_unlock(&p->lock);
    if (k >= p->num_jobs) break;
    dc_decode_job* j = &p->jobs[k];
    if (p->a->uffd < 0) { /* an ordinary arena: decode in place */
      j->status = dc_decode(j->packed, j->packed_size, j->out, j->out_size);
      memset((uint8_t*)j->out + j->out_size, 0, p->span[k] - j->out_size);
      p->filled[k] = 1;
      continue;
    }
#if DC_UFFD
    if (broken) continue;
    int moved = moves_whole(p, k) ? fill_moved(p, k) : -1;
    if (moved == 1) {
      p->filled[k] = 1;
      continue;
    }
    if (moved < 0 && stage_len < p->span[k]) { /* the stage: the largest staged span */
      size_t need = p->stage_size > p->span[k] ? p->stage_size : p->span[k];
      /* from 512 KiB on, whole huge pages: a few huge-page faults instead of one per 4 KiB
       * (MobileNetV2: 1.6 MB, ~400 faults, ~0.8 ms of the helper) */
      const int huge = need >= DC_HUGE_PAGE / 4 && need <= SIZE_MAX - 2 * DC_HUGE_PAGE;
      if (huge) need = (need + DC_HUGE_PAGE - 1) / DC_HUGE_PAGE * DC_HUGE_PAGE;
      if (stage_map) munmap(stage_map, stage_map_len);
      stage_map_len = need + (huge ? DC_HUGE_PAGE : 0);
      void* m =
          mmap(NULL, stage_map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      stage_map = m == MAP_FAILED ? NULL : (uint8_t*)m;
      stage = stage_map;
      if (stage_map && huge) {
        stage = (uint8_t*)(((uintptr_t)m + DC_HUGE_PAGE - 1) & ~(uintptr_t)(DC_HUGE_PAGE - 1));
#ifdef MADV_HUGEPAGE
        (void)madvise(stage, need, MADV_HUGEPAGE);
#endif
      }
      stage_len = stage ? need : 0;
    }
    if (moved < 0 && stage) {
      j->status = dc_decode(j->packed, j->packed_size, stage, j->out_size);
      memset(stage + j->out_size, 0, p->span[k] - j->out_size);
    }
    if (moved < 0 && stage && lazy_copy(p->a->uffd, (uint8_t*)j->out, stage, p->span[k])) {
      p->filled[k] = 1;
      continue;
    }
    pthread_mutex_lock(&p->lock); /* no reader may wait forever: the arena turns ordinary */
    if (!p->broken) lazy_unregister(p->a);
    p->broken = 1;
    pthread_mutex_unlock(&p->lock);
#else
    (void)broken;
#endif
  }
  if (stage_map) munmap(stage_map, stage_map_len);
  return NULL;
}

/* A helper thread of dc_arena_fill. */
static void* fill_thread(void* arg) {
  dc_fill* f = (dc_fill*)arg;
  fill_worker(&f->pool);
  live_finished(&f->finished);
  return NULL;
}

DC_API dc_fill* dc_arena_fill(dc_arena* a, dc_decode_job* jobs, const size_t* span, int* filled,
                              size_t num_jobs, int threads) {
  if (!a) return NULL;
  if ((!jobs || !span || !filled) && num_jobs > 0) {
    lazy_release(a);
    return NULL;
  }
  dc_fill* f = (dc_fill*)calloc(1, sizeof *f);
  FillPool local, *p = f ? &f->pool : &local;
  memset(p, 0, sizeof *p);
  p->a = a;
  p->jobs = jobs;
  p->span = span;
  p->filled = filled;
  p->num_jobs = num_jobs;
  for (size_t k = 0; k < num_jobs; ++k) { /* stage_size: the largest span staged and copied */
    filled[k] = 0;
#if DC_UFFD
    if (a->uffd >= 0 && moves_whole(p, k)) continue;
#endif
    if (span[k] > p->stage_size) p->stage_size = span[k];
  }
  if (pthread_mutex_init(&p->lock, NULL) != 0) {
    free(f);
    lazy_release(a); /* pages appear as zeros: no job is filled */
    return NULL;
  }
  if (threads > DC_MAX_DECODE_THREADS) threads = DC_MAX_DECODE_THREADS;
  pthread_mutex_lock(&g_live.lock); /* no fork() between the helpers' start and f's registration */
  live_register_atfork();
  for (int i = 0; f && i < threads && (size_t)i < num_jobs; ++i) {
    if (pthread_create(&f->tid[f->started], NULL, fill_thread, f) != 0) break;
    ++f->started;
  }
  if (f && f->started > 0) {
    f->next = g_live.fills;
    g_live.fills = f;
  }
  pthread_mutex_unlock(&g_live.lock);
  if (f && f->started > 0) return f;
  fill_worker(p); /* no helper: the whole fill here */
  pthread_mutex_destroy(&p->lock);
  lazy_release(a);
  free(f);
  return NULL;
}

DC_API void dc_arena_fill_join(dc_fill* f) {
  if (!f) return;
  for (int i = 0; !f->forked && i < f->started; ++i) pthread_join(f->tid[i], NULL);
  pthread_mutex_lock(&g_live.lock);
  dc_fill** at = &g_live.fills;
  while (*at && *at != f) at = &(*at)->next;
  if (*at) *at = f->next;
  lazy_release(f->pool.a); /* under the lock: fork_prepare may release it too */
  pthread_mutex_unlock(&g_live.lock);
  pthread_mutex_destroy(&f->pool.lock);
  free(f);
}

static void* task_run(void* arg) {
  dc_task* t = (dc_task*)arg;
  t->fn(t->arg);
  live_finished(&t->finished);
  return NULL;
}

DC_API dc_task* dc_task_start(void (*fn)(void*), void* arg) {
  dc_task* t = dc_decode_threads(0) > 1 ? (dc_task*)calloc(1, sizeof *t) : NULL;
  if (t) {
    t->fn = fn;
    t->arg = arg;
    pthread_mutex_lock(&g_live.lock);
    live_register_atfork();
    const int started = pthread_create(&t->tid, NULL, task_run, t) == 0;
    if (started) {
      t->next = g_live.tasks;
      g_live.tasks = t;
    }
    pthread_mutex_unlock(&g_live.lock);
    if (started) return t;
    free(t);
  }
  fn(arg); /* one CPU, or no thread: in the caller */
  return NULL;
}

DC_API void dc_task_join(dc_task* t) {
  if (!t) return;
  if (!t->forked) pthread_join(t->tid, NULL);
  pthread_mutex_lock(&g_live.lock);
  dc_task** at = &g_live.tasks;
  while (*at && *at != t) at = &(*at)->next;
  if (*at) *at = t->next;
  pthread_mutex_unlock(&g_live.lock);
  free(t);
}
