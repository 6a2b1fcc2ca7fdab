/* test_threads.c -- the library on several threads at once, as an app or the Python runtime uses
 * it, written to be run under ThreadSanitizer (make test-tsan) as well as plainly and under
 * ASan/UBSan (make test, make test-sanitize):
 *  - first decodes on 4 threads at once (the decoder's and the sparse FC kernels' CPU-feature
 *    probes run then);
 *  - dc_decode_many's pool with 2, 3 and 4 workers, from two callers at once, one job corrupt:
 *    its error reaches the caller (the count and that job's status), every other job decodes;
 *  - dc_unpack on 3 threads at once, each with 3 decode threads, one of a corrupt model: the
 *    corrupt one fails naming its tensor, the others equal a one-thread unpack byte for byte; the
 *    same for the LiteRT kernel's state (DcKerasLiteRtHuffDecodeCreate);
 *  - compact FC forms built on 3 threads at once through the two-thread build (helper bytes 0),
 *    equal to one-thread builds, and their kernels run on one shared form from 3 threads;
 *  - one HuffDecode delegate (decode_threads=4; decode_async on and off) shared by interpreters
 *    loaded and dropped on 3 threads (fake runtime, as test_huffdecode_op.c): 6 tensors of 192
 *    KiB each, so that the decoded route takes decode_lazily's helper fill (userfaultfd) or the
 *    4-worker pool, and an EMBEDDING_LOOKUP table run compressed (its form built on two threads)
 *    while other interpreters load; some graphs hold a corrupt tensor, and exactly those fail in
 *    their kernel's Prepare with that tensor's decode error;
 *  - fork() while another thread is inside that delegate's Prepare: the child can use the
 *    delegate (it hung on the delegate's lock, copied held). */
#define _POSIX_C_SOURCE 200809L /* pthread barriers, setenv */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codec_vectors.h"
#include "dc_codec.h"
#include "dc_parallel.h"
#include "dc_sparse_fc.h"
#include "dc_test.h"
#include "dc_test_pack.h"
#include "dc_tflite.h"
#include "dc_unpack.h"
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic ignored "-Wunused-function" /* sparse_fc_check.h: two of its checks */
#endif
#include "sparse_fc_check.h"
#include "tflite_abi.h"

size_t DcKerasHuffDecodeDelegateAsync(const TfLiteDelegate*);
size_t DcKerasHuffDecodeDelegateReport(const TfLiteDelegate*, char*, size_t);

#define NVEC (sizeof codec_vectors / sizeof codec_vectors[0])
enum { kThreads = 3 };

static pthread_mutex_t g_check = PTHREAD_MUTEX_INITIALIZER; /* CHECK from worker threads */
#define TCHECK(cond, ...)           \
  do {                              \
    pthread_mutex_lock(&g_check);   \
    CHECK(cond, __VA_ARGS__);       \
    pthread_mutex_unlock(&g_check); \
  } while (0)

/* A float32 §5 tensor of n elements, 4 symbols of 2-bit codes, element i = symbol
 * hash(i + seed) & 3 (dc_test_pack.h); malloc'd packed bytes (*size) and decoded bytes (*raw). */
static uint8_t* make_tensor(uint32_t n, uint32_t seed, size_t* size, uint8_t** raw) {
  static const uint8_t len[4] = {2, 2, 2, 2};
  uint16_t* sym = (uint16_t*)malloc((size_t)n * sizeof *sym);
  uint8_t* p = (uint8_t*)malloc(pack_dense_f32_bound(4, n));
  *raw = (uint8_t*)malloc((size_t)n * 4);
  if (!sym || !p || !*raw) {
    fprintf(stderr, "test_threads: out of memory\n");
    exit(1);
  }
  for (uint32_t i = 0; i < n; ++i) {
    sym[i] = (uint16_t)((((uint64_t)(i + seed) * 2654435761u) >> 13) & 3u);
    dc_test_put32(*raw + (size_t)i * 4, dc_test_f32_bits(sym[i]));
  }
  uint32_t sizes_at;
  *size = pack_dense_f32(p, len, 4, sym, n, &sizes_at);
  free(sym);
  return p;
}

/* ---- first decodes at once ---------------------------------------------------------------- */

static pthread_barrier_t g_start;
typedef struct {
  dc_status st[NVEC];
  int same[NVEC];
  const char* kernels;
} FirstRun;

/* The i-th of the NVEC vectors in a shuffled order: a stride with no factor in common with NVEC
 * visits each once (7 did until the vector count became 63). */
static size_t shuffled(size_t i) {
  size_t k = 7, a, b;
  for (;; k += 2) {
    for (a = k, b = NVEC; b != 0;) { /* gcd(k, NVEC) */
      const size_t t = a % b;
      a = b;
      b = t;
    }
    if (a == 1) return (i * k + 3) % NVEC;
  }
}

static void* first_run(void* arg) {
  FirstRun* r = (FirstRun*)arg;
  pthread_barrier_wait(&g_start);
  r->kernels = dc_sparse_fc_kernel_name();
  for (size_t i = 0; i < NVEC; ++i) {
    const size_t j = shuffled(i); /* another order than the check's */
    const codec_vector* v = &codec_vectors[j];
    uint8_t* out = (uint8_t*)malloc(v->raw_size ? v->raw_size : 1);
    r->st[j] = dc_decode(v->packed, v->packed_size, out, v->raw_size);
    r->same[j] = memcmp(out, v->raw, v->raw_size) == 0;
    free(out);
  }
  return NULL;
}

static void first_decodes_at_once(void) {
  enum { kFirst = 4 };
  pthread_t tid[kFirst];
  static FirstRun runs[kFirst];
  pthread_barrier_init(&g_start, NULL, kFirst);
  for (int t = 0; t < kFirst; ++t)
    CHECK(pthread_create(&tid[t], NULL, first_run, &runs[t]) == 0, "thread");
  for (int t = 0; t < kFirst; ++t) pthread_join(tid[t], NULL);
  pthread_barrier_destroy(&g_start);
  for (size_t i = 0; i < NVEC; ++i) {
    const codec_vector* v = &codec_vectors[i];
    uint8_t* out = (uint8_t*)malloc(v->raw_size ? v->raw_size : 1);
    dc_status st = dc_decode(v->packed, v->packed_size, out, v->raw_size);
    for (int t = 0; t < kFirst; ++t) {
      CHECK(runs[t].st[i] == st && (st != DC_OK || runs[t].same[i]),
            "first decodes, thread %d, %s: status %d (alone %d), bytes %s", t, v->name,
            (int)runs[t].st[i], (int)st, runs[t].same[i] ? "equal" : "differ");
    }
    free(out);
  }
  for (int t = 0; t < kFirst; ++t)
    CHECK(strcmp(runs[t].kernels, dc_sparse_fc_kernel_name()) == 0, "kernels %s", runs[t].kernels);
}

/* ---- dc_decode_many from two callers at once --------------------------------------------- */

enum { kBig = 6, kJobs = kBig + NVEC, kBad = 2 };
static uint8_t *g_big[kBig], *g_big_raw[kBig];
static size_t g_big_size[kBig];
static const uint32_t kBigN = 48 * 1024; /* 192 KiB decoded */

typedef struct {
  int threads;
  size_t failed;
  dc_decode_job jobs[kJobs];
  uint8_t* bad; /* job kBad's corrupt copy */
} Many;

static void* many_run(void* arg) {
  Many* m = (Many*)arg;
  m->bad = (uint8_t*)malloc(g_big_size[kBad]);
  memcpy(m->bad, g_big[kBad], g_big_size[kBad]);
  m->bad[g_big_size[kBad] - 100] ^= 0x40; /* a stream byte: the CRC fails (§8) */
  for (size_t i = 0; i < kJobs; ++i) {
    dc_decode_job* j = &m->jobs[i];
    if (i < kBig) {
      j->packed = i == kBad ? m->bad : g_big[i];
      j->packed_size = g_big_size[i];
      j->out_size = (size_t)kBigN * 4;
    } else {
      j->packed = codec_vectors[i - kBig].packed;
      j->packed_size = codec_vectors[i - kBig].packed_size;
      j->out_size = codec_vectors[i - kBig].raw_size;
    }
    j->out = malloc(j->out_size ? j->out_size : 1);
    j->status = DC_ERR_TRUNCATED; /* must be overwritten */
  }
  m->failed = dc_decode_many(m->jobs, kJobs, m->threads);
  return NULL;
}

static void decode_many_at_once(void) {
  for (int threads = 2; threads <= 4; ++threads) {
    pthread_t tid[2];
    static Many m[2];
    for (int c = 0; c < 2; ++c) {
      memset(&m[c], 0, sizeof m[c]);
      m[c].threads = threads;
      CHECK(pthread_create(&tid[c], NULL, many_run, &m[c]) == 0, "thread");
    }
    for (int c = 0; c < 2; ++c) pthread_join(tid[c], NULL);
    for (int c = 0; c < 2; ++c) {
      size_t want_failed = 0;
      for (size_t i = 0; i < kJobs; ++i) {
        const dc_decode_job* j = &m[c].jobs[i];
        uint8_t* ref = (uint8_t*)malloc(j->out_size ? j->out_size : 1);
        dc_status st = dc_decode(j->packed, j->packed_size, ref, j->out_size);
        const uint8_t* raw = i < kBig ? g_big_raw[i] : codec_vectors[i - kBig].raw;
        want_failed += st != DC_OK;
        CHECK(j->status == st && (st != DC_OK || memcmp(j->out, raw, j->out_size) == 0),
              "decode_many threads=%d caller %d job %zu: status %d (alone %d) or bytes differ",
              threads, c, i, (int)j->status, (int)st);
        free(ref);
        free(j->out);
      }
      CHECK(m[c].jobs[kBad].status == DC_ERR_CHECKSUM, "the corrupt job's error: %d",
            (int)m[c].jobs[kBad].status);
      CHECK(m[c].failed == want_failed && want_failed >= 1,
            "decode_many threads=%d: %zu failed jobs reported, %zu expected", threads, m[c].failed,
            want_failed);
      free(m[c].bad);
    }
  }
}

/* ---- dc_unpack on several threads -------------------------------------------------------- */

typedef struct {
  const uint8_t* model;
  size_t n;
  int litert; /* DcKerasLiteRtHuffDecodeCreate instead of dc_unpack */
  dc_unpack_status st;
  uint8_t* out;
  size_t out_n;
  void* state;
  char why[512];
} Unpack;

static int fake_lock(void* b, void** m, int mode) {
  (void)b, (void)m, (void)mode;
  return 1;
}
static int fake_unlock(void* b) {
  (void)b;
  return 1;
}
static int fake_size(void* b, size_t* n) {
  (void)b, (void)n;
  return 1;
}

static void* unpack_run(void* arg) {
  Unpack* u = (Unpack*)arg;
  const DcKerasLiteRtApi api = {fake_lock, fake_unlock, fake_size}; /* Create calls none */
  if (u->litert) {
    u->state = DcKerasLiteRtHuffDecodeCreate(u->model, u->n, &api, u->why, sizeof u->why);
  } else {
    u->st = dc_unpack(u->model, u->n, &u->out, &u->out_n, u->why, sizeof u->why);
  }
  return NULL;
}

static void unpack_at_once(void) {
  const char* path = "../tests/data/conv_int8_tail.packed.tflite";
  size_t n = 0, ref_n = 0, num = 0;
  uint8_t *model = read_file(path, &n), *ref = NULL;
  char why[512];
  CHECK(model != NULL, "cannot read %s (run from tflite_kernels/)", path);
  if (!model) return;
  setenv("DC_KERAS_DECODE_THREADS", "1", 1); /* no thread runs now */
  CHECK(dc_unpack(model, n, &ref, &ref_n, why, sizeof why) == DC_UNPACK_OK, "unpack: %s", why);
  dc_huffdecode_op* ops = NULL;
  CHECK(dc_list_huffdecode(model, n, &ops, &num, why, sizeof why) == DC_UNPACK_OK && num >= 2,
        "list: %s", why);
  size_t big = 0;
  for (size_t i = 1; i < num; ++i) big = ops[i].packed_size > ops[big].packed_size ? i : big;
  uint8_t* bad = (uint8_t*)malloc(n);
  memcpy(bad, model, n);
  if (num) bad[(size_t)(ops[big].packed - model) + ops[big].packed_size - 9] ^= 0x10;
  setenv("DC_KERAS_DECODE_THREADS", "3", 1);
  pthread_t tid[kThreads];
  Unpack u[kThreads];
  memset(u, 0, sizeof u);
  for (int t = 0; t < kThreads; ++t) {
    u[t].model = t == 1 ? bad : model;
    u[t].n = n;
    CHECK(pthread_create(&tid[t], NULL, unpack_run, &u[t]) == 0, "thread");
  }
  for (int t = 0; t < kThreads; ++t) pthread_join(tid[t], NULL);
  unsetenv("DC_KERAS_DECODE_THREADS");
  for (int t = 0; t < kThreads; ++t) {
    if (t == 1) {
      CHECK(u[t].st == DC_UNPACK_BAD_PACKED && strstr(u[t].why, "decoding failed") && num &&
                strstr(u[t].why, ops[big].name),
            "corrupt model on a thread: status %d, %s", (int)u[t].st, u[t].why);
    } else {
      CHECK(u[t].st == DC_UNPACK_OK && u[t].out_n == ref_n && memcmp(u[t].out, ref, ref_n) == 0,
            "unpack on thread %d: status %d (%s), or bytes differ from one thread's", t,
            (int)u[t].st, u[t].why);
    }
    dc_unpack_free(u[t].out);
  }
  /* The LiteRT kernel's state (dc_litert_op.c) decodes every op at once too: the same model with
   * its packed tensors 64-byte aligned (dc_align_packed), good and corrupt, on 3 threads. */
  uint8_t *al = NULL, *mem[2] = {NULL, NULL};
  size_t al_n = 0;
  CHECK(dc_align_packed(model, n, 64, &al, &al_n, why, sizeof why) == DC_UNPACK_OK, "align: %s",
        why);
  for (int c = 0; al && c < 2; ++c) {
    CHECK(posix_memalign((void**)&mem[c], 64, al_n) == 0, "out of memory");
    memcpy(mem[c], al, al_n);
  }
  dc_huffdecode_op* aops = NULL;
  size_t anum = 0;
  CHECK(al && dc_list_huffdecode(mem[0], al_n, &aops, &anum, why, sizeof why) == DC_UNPACK_OK &&
            anum == num,
        "list the aligned model: %s", why);
  for (size_t i = 0; i < anum; ++i) {
    if (strcmp(aops[i].name, ops[big].name) == 0)
      mem[1][(size_t)(aops[i].packed - mem[0]) + aops[i].packed_size - 9] ^= 0x10;
  }
  setenv("DC_KERAS_DECODE_THREADS", "3", 1);
  memset(u, 0, sizeof u);
  for (int t = 0; mem[1] && t < kThreads; ++t) {
    u[t].model = mem[t == 1];
    u[t].n = al_n;
    u[t].litert = 1;
    CHECK(pthread_create(&tid[t], NULL, unpack_run, &u[t]) == 0, "thread");
  }
  for (int t = 0; mem[1] && t < kThreads; ++t) pthread_join(tid[t], NULL);
  unsetenv("DC_KERAS_DECODE_THREADS");
  for (int t = 0; mem[1] && t < kThreads; ++t) {
    if (t == 1) {
      char want[160];
      snprintf(want, sizeof want, "HuffDecode(%s): decoding failed: ", ops[big].name);
      CHECK(!u[t].state && strstr(u[t].why, want), "corrupt model, LiteRT kernel: %s", u[t].why);
    } else {
      CHECK(u[t].state && DcKerasLiteRtHuffDecodeError(u[t].state)[0] == '\0',
            "LiteRT kernel on thread %d: %s", t, u[t].why);
    }
    DcKerasLiteRtHuffDecodeDestroy(u[t].state);
  }
  free(aops);
  free(mem[0]);
  free(mem[1]);
  dc_unpack_free(al);
  free(ops);
  free(bad);
  dc_unpack_free(ref);
  free(model);
}

/* ---- compact FC forms on several threads ------------------------------------------------- */

typedef struct {
  dc_sparse_fc forms[NVEC];
  dc_sfc_status st[NVEC];
  dc_status dst[NVEC];
} Builds;

static void* build_run(void* arg) {
  Builds* b = (Builds*)arg;
  char why[200];
  for (size_t i = 0; i < NVEC; ++i) {
    const codec_vector* v = &codec_vectors[i];
    b->st[i] =
        dc_sparse_fc_build(v->packed, v->packed_size, &b->forms[i], &b->dst[i], why, sizeof why);
  }
  return NULL;
}

typedef struct {
  const dc_sparse_fc* m;
  const float* x;
  float* y;
  int rounds;
} Kernel;

static void* kernel_run(void* arg) {
  Kernel* k = (Kernel*)arg;
  for (int r = 0; r < k->rounds; ++r) {
    dc_sparse_fc_float(k->m, k->x, 1, NULL, -1e30f, 1e30f, k->y, NULL);
  }
  return NULL;
}

static void sparse_fc_at_once(void) {
  static Builds b[kThreads], one;
  size_t old = dc_sparse_fc_set_helper_bytes((size_t)-1); /* one thread: the reference */
  build_run(&one);
  dc_sparse_fc_set_helper_bytes(0); /* every build on two threads, chunks of 8 entries */
  pthread_t tid[kThreads];
  for (int t = 0; t < kThreads; ++t)
    CHECK(pthread_create(&tid[t], NULL, build_run, &b[t]) == 0, "thread");
  for (int t = 0; t < kThreads; ++t) pthread_join(tid[t], NULL);
  dc_sparse_fc_set_helper_bytes(old);
  int compared = 0;
  const dc_sparse_fc* shared = NULL;
  for (size_t i = 0; i < NVEC; ++i) {
    for (int t = 0; t < kThreads; ++t) {
      CHECK(b[t].st[i] == one.st[i] && (one.st[i] != DC_SFC_DECODE || b[t].dst[i] == one.dst[i]),
            "%s: build on thread %d: %d/%d, one thread %d/%d", codec_vectors[i].name, t, b[t].st[i],
            b[t].dst[i], one.st[i], one.dst[i]);
      if (one.st[i] == DC_SFC_OK && b[t].st[i] == DC_SFC_OK) {
        ++compared;
        CHECK(sfc_same_form(&one.forms[i], &b[t].forms[i]) &&
                  sfc_form_mismatch(&b[t].forms[i], codec_vectors[i].raw) < 0,
              "%s: form on thread %d differs", codec_vectors[i].name, t);
      }
    }
    if (one.st[i] == DC_SFC_OK && one.forms[i].dtype == DC_DTYPE_FLOAT32 &&
        (!shared || one.forms[i].nnz > shared->nnz))
      shared = &one.forms[i];
  }
  CHECK(compared >= 5 * kThreads, "only %d forms compared", compared);
  if (shared) { /* one form, read by the kernels of several threads at once */
    float *x = (float*)malloc(shared->cols * sizeof(float)), *want = NULL;
    Kernel k[kThreads];
    for (uint32_t c = 0; c < shared->cols; ++c) x[c] = (float)((c * 37u) % 11u) - 5.0f;
    want = (float*)malloc(shared->rows * sizeof(float));
    dc_sparse_fc_float(shared, x, 1, NULL, -1e30f, 1e30f, want, NULL);
    for (int t = 0; t < kThreads; ++t) {
      k[t].m = shared;
      k[t].x = x;
      k[t].y = (float*)malloc(shared->rows * sizeof(float));
      k[t].rounds = 20;
      CHECK(pthread_create(&tid[t], NULL, kernel_run, &k[t]) == 0, "thread");
    }
    for (int t = 0; t < kThreads; ++t) {
      pthread_join(tid[t], NULL);
      CHECK(memcmp(k[t].y, want, shared->rows * sizeof(float)) == 0, "kernel on thread %d", t);
      free(k[t].y);
    }
    free(x);
    free(want);
  }
  for (size_t i = 0; i < NVEC; ++i) {
    if (one.st[i] == DC_SFC_OK) dc_sparse_fc_free(&one.forms[i]);
    for (int t = 0; t < kThreads; ++t)
      if (b[t].st[i] == DC_SFC_OK) dc_sparse_fc_free(&b[t].forms[i]);
  }
}

/* ---- one delegate, graphs of kBig HuffDecode nodes on several threads --------------------- */

/* Tensors 2i (packed, uint8 constant) -> HuffDecode node i -> tensor 2i + 1 (float32 [kBigN]),
 * i < kBig; then a lookup table: packed kTPacked -> HuffDecode node kBig -> kTable (float32
 * [37, 300], codec vector sparse_fc_f32_rows), read by EMBEDDING_LOOKUP node kBig + 1 with indices
 * kIdx (int32 [4]) into kLookup (float32 [4, 300]): with weights=compressed the delegate runs the
 * lookup from the compact form (its build on two threads: helper bytes 0).  The runtime's
 * callbacks reach the graph from its context (first member). */
enum { kTPacked = 2 * kBig, kTable, kIdx, kLookup, kTensors, kNodes = kBig + 2, kRows = 4 };
static const int32_t kRowsAt[kRows] = {36, 0, 17, 5};
typedef struct {
  TfLiteContext ctx;
  TfLiteTensor tensors[kTensors];
  TfLiteNode nodes[kNodes];
  TfLiteRegistration regs[kNodes];
  int plan[1 + kNodes];
  TfLiteIntArray *in[kNodes], *out[kNodes], *in_dims[kBig + 1], *out_dims, *outputs, *inputs;
  TfLiteIntArray *table_dims, *idx_dims, *lookup_dims;
  void* lookup_data;
  int compressed;
  uint8_t* bad; /* the corrupt copy of tensor kBad's packed bytes, or NULL */
  TfLiteRegistration kernel;
  TfLiteNode kernel_node;
  int replaced_calls;
  char error[512];
} Graph;

#include "fake_runtime.h" /* int_array, graph_context: after Graph */

/* As the runtime: a dynamic or arena tensor gets memory of its new size (only kLookup here). */
static TfLiteStatus graph_resize(TfLiteContext* c, TfLiteTensor* t, TfLiteIntArray* shape) {
  Graph* g = (Graph*)c;
  size_t n = 4;
  for (int k = 0; k < shape->size; ++k) n *= (size_t)shape->data[k];
  if (t != &g->tensors[kLookup]) {
    free(shape);
    return kTfLiteError;
  }
  free(g->lookup_dims);
  g->lookup_dims = shape;
  g->lookup_data = realloc(g->lookup_data, n ? n : 1);
  t->dims = shape;
  t->bytes = n;
  t->data.data = g->lookup_data;
  return g->lookup_data ? kTfLiteOk : kTfLiteError;
}

static Graph* graph_new(int bad, int compressed) {
  Graph* g = (Graph*)calloc(1, sizeof(Graph));
  int outs[kBig + 1], ins[kBig + 2], dim = (int)kBigN;
  g->out_dims = int_array(1, &dim);
  for (int i = 0; i < kBig; ++i) {
    const int p = 2 * i, o = 2 * i + 1, psize = (int)g_big_size[i];
    uint8_t* packed = g_big[i];
    if (bad && i == kBad) {
      g->bad = (uint8_t*)malloc(g_big_size[i]);
      memcpy(g->bad, g_big[i], g_big_size[i]);
      g->bad[g_big_size[i] - 100] ^= 0x40; /* a stream byte: the CRC fails when decoded */
      packed = g->bad;
    }
    g->in[i] = int_array(1, &p);
    g->out[i] = int_array(1, &o);
    g->in_dims[i] = int_array(1, &psize);
    ins[i] = p;
    outs[i] = o;
    g->tensors[p].type = kTfLiteUInt8;
    g->tensors[p].data.data = packed;
    g->tensors[p].dims = g->in_dims[i];
    g->tensors[p].allocation_type = kTfLiteMmapRo;
    g->tensors[p].bytes = g_big_size[i];
    g->tensors[o].type = kTfLiteFloat32;
    g->tensors[o].dims = g->out_dims;
    g->tensors[o].allocation_type = kTfLiteArenaRw;
    g->tensors[o].bytes = (size_t)kBigN * 4;
    g->tensors[o].name = i == kBad ? "w_bad" : "w";
    g->nodes[i].inputs = g->in[i];
    g->nodes[i].outputs = g->out[i];
    g->regs[i].builtin_code = kTfLiteBuiltinCustom;
    g->regs[i].custom_name = "HuffDecode";
    g->plan[1 + i] = i;
  }
  const codec_vector* v = &codec_vectors[0];
  for (size_t i = 0; i < NVEC; ++i)
    if (strcmp(codec_vectors[i].name, "sparse_fc_f32_rows") == 0) v = &codec_vectors[i];
  const int psize = (int)v->packed_size, tdims[2] = {(int)v->dims[0], (int)v->dims[1]};
  const int rows = kRows, lookup_in[2] = {kIdx, kTable}, lookup_out = kLookup, tp = kTPacked,
            tt = kTable;
  g->in_dims[kBig] = int_array(1, &psize);
  g->table_dims = int_array(2, tdims);
  g->idx_dims = int_array(1, &rows);
  g->tensors[kTPacked].type = kTfLiteUInt8;
  g->tensors[kTPacked].data.raw_const = v->packed;
  g->tensors[kTPacked].dims = g->in_dims[kBig];
  g->tensors[kTPacked].allocation_type = kTfLiteMmapRo;
  g->tensors[kTPacked].bytes = v->packed_size;
  g->tensors[kTable].type = kTfLiteFloat32;
  g->tensors[kTable].dims = g->table_dims;
  g->tensors[kTable].allocation_type = kTfLiteArenaRw;
  g->tensors[kTable].bytes = v->raw_size;
  g->tensors[kTable].name = "table";
  g->tensors[kIdx].type = kTfLiteInt32;
  g->tensors[kIdx].data.raw_const = kRowsAt;
  g->tensors[kIdx].dims = g->idx_dims;
  g->tensors[kIdx].allocation_type = kTfLiteArenaRw;
  g->tensors[kIdx].bytes = sizeof kRowsAt;
  g->tensors[kLookup].type = kTfLiteFloat32;
  g->tensors[kLookup].allocation_type = kTfLiteArenaRw;
  g->tensors[kLookup].name = "lookup";
  g->in[kBig] = int_array(1, &tp);
  g->out[kBig] = int_array(1, &tt);
  g->in[kBig + 1] = int_array(2, lookup_in);
  g->out[kBig + 1] = int_array(1, &lookup_out);
  for (int i = kBig; i < kNodes; ++i) {
    g->nodes[i].inputs = g->in[i];
    g->nodes[i].outputs = g->out[i];
    g->plan[1 + i] = i;
  }
  g->regs[kBig].builtin_code = kTfLiteBuiltinCustom;
  g->regs[kBig].custom_name = "HuffDecode";
  g->regs[kBig + 1].builtin_code = kTfLiteBuiltinEmbeddingLookup;
  ins[kBig] = kTPacked;
  ins[kBig + 1] = kIdx;
  outs[kBig] = compressed ? kLookup : kTable;
  g->compressed = compressed;
  g->plan[0] = kNodes;
  g->inputs = int_array(kBig + 2, ins);
  g->outputs = int_array(kBig + 1, outs);
  graph_context(g, kTensors);
  g->ctx.ResizeTensor = graph_resize;
  return g;
}

/* Applies the delegate and prepares its kernel (as AllocateTensors): 1 if a good graph decodes
 * every tensor exactly and its kernel prepares and runs, or a corrupt one fails in its kernel's
 * Prepare with the corrupt tensor's decode error. */
static int graph_load(Graph* g, TfLiteDelegate* d) {
  if (d->Prepare(&g->ctx, d) != kTfLiteOk || g->replaced_calls != 1) return 0;
  TfLiteStatus prep = g->kernel.prepare(&g->ctx, &g->kernel_node);
  if (g->bad) {
    return prep == kTfLiteError && strstr(g->error, "HuffDecode(w_bad): decoding failed") &&
           strstr(g->error, dc_strerror(DC_ERR_CHECKSUM));
  }
  int ok = prep == kTfLiteOk && g->kernel.invoke(&g->ctx, &g->kernel_node) == kTfLiteOk;
  for (int i = 0; ok && i < kBig; ++i) {
    const TfLiteTensor* t = &g->tensors[2 * i + 1];
    ok = t->data.data && memcmp(t->data.data, g_big_raw[i], (size_t)kBigN * 4) == 0;
  }
  /* the table: decoded (weights=decoded), or its rows looked up by the delegate's kernel */
  const uint8_t* raw = (const uint8_t*)g->tensors[kTPacked].data.raw_const;
  for (size_t i = 0; i < NVEC; ++i)
    if (codec_vectors[i].packed == raw) raw = codec_vectors[i].raw;
  const size_t row = g->table_dims->data[1] * 4u;
  const TfLiteTensor *table = &g->tensors[kTable], *lookup = &g->tensors[kLookup];
  if (ok && !g->compressed) ok = table->data.data && !memcmp(table->data.data, raw, table->bytes);
  for (int r = 0; ok && g->compressed && r < kRows; ++r) {
    ok = lookup->data.data && lookup->bytes == kRows * row &&
         memcmp((const uint8_t*)lookup->data.data + r * row, raw + kRowsAt[r] * row, row) == 0;
  }
  if (!ok && !g->error[0]) snprintf(g->error, sizeof g->error, "wrong bytes");
  return ok;
}

static void graph_free(Graph* g) {
  if (g->replaced_calls) g->kernel.free(&g->ctx, g->kernel_node.user_data);
  for (int i = 0; i < kNodes; ++i) free(g->in[i]), free(g->out[i]);
  for (int i = 0; i <= kBig; ++i) free(g->in_dims[i]);
  free(g->out_dims);
  free(g->table_dims);
  free(g->idx_dims);
  free(g->lookup_dims);
  free(g->lookup_data);
  free(g->inputs);
  free(g->outputs);
  free(g->bad);
  free(g);
}

enum { kRounds = 6, kAlive = 2 };

typedef struct {
  TfLiteDelegate* d;
  int id, ok, loaded, bad, compressed;
} Loader;

/* Graphs loaded and dropped in turn (kAlive alive at a time); every third a corrupt one. */
static void* loader_run(void* arg) {
  Loader* w = (Loader*)arg;
  Graph* alive[kAlive] = {NULL};
  w->ok = 1;
  for (int k = 0; k < kRounds; ++k) {
    const int bad = (k + w->id) % 3 == 0;
    Graph* g = graph_new(bad, w->compressed);
    const int ok = graph_load(g, w->d);
    if (!ok)
      TCHECK(0, "loader %d round %d (%s graph): %s", w->id, k, bad ? "corrupt" : "good", g->error);
    w->ok &= ok;
    w->loaded++;
    w->bad += bad;
    if (alive[k % kAlive]) graph_free(alive[k % kAlive]);
    alive[k % kAlive] = g;
  }
  for (int k = 0; k < kAlive; ++k) {
    if (alive[k] && !alive[k]->bad)
      w->ok &= alive[k]->kernel.invoke(&alive[k]->ctx, &alive[k]->kernel_node) == kTfLiteOk;
    if (alive[k]) graph_free(alive[k]);
  }
  return NULL;
}

/* decode_async=1 with weights=compressed (the lookup from its compact form), 0 with the default
 * weights=decoded. */
static void shared_delegate(int async) {
  char* keys[3] = {"decode_threads", "decode_async", "weights"};
  char* values[3] = {"4", async ? "1" : "0", async ? "compressed" : "decoded"};
  TfLiteDelegate* d = tflite_plugin_create_delegate(keys, values, 3, NULL);
  CHECK(d != NULL, "delegate");
  if (!d) return;
  const size_t old = dc_sparse_fc_set_helper_bytes(0); /* the table's build on two threads */
  pthread_t tid[kThreads];
  Loader w[kThreads];
  memset(w, 0, sizeof w);
  for (int t = 0; t < kThreads; ++t) {
    w[t].d = d;
    w[t].id = t;
    w[t].compressed = async;
    CHECK(pthread_create(&tid[t], NULL, loader_run, &w[t]) == 0, "thread");
  }
  for (int t = 0; t < kThreads; ++t) pthread_join(tid[t], NULL);
  dc_sparse_fc_set_helper_bytes(old);
  for (int t = 0; t < kThreads; ++t) {
    CHECK(w[t].ok && w[t].loaded == kRounds && w[t].bad >= 1,
          "decode_async=%d loader %d: every graph as expected", async, t);
  }
  const size_t lazy = DcKerasHuffDecodeDelegateAsync(d);
  const char* env = getenv("DC_KERAS_DECODE_ASYNC"); /* "0": the delegate decodes in place */
  if (async && lazy == 0 && !(env && strcmp(env, "0") == 0)) {
    dc_arena* a = dc_arena_new_lazy(dc_page_size());
    printf("test_threads: decode_lazily not taken (userfaultfd %s)\n", a ? "available" : "refused");
    CHECK(a == NULL, "decode_async=1: no tensor decoded by decode_lazily's helpers");
    dc_arena_free(a);
  }
  printf("test_threads: decode_async=%d: %zu tensors decoded by decode_lazily's helpers\n", async,
         lazy);
  CHECK(async || lazy == 0, "decode_async=0: %zu tensors decoded lazily", lazy);
  char report[512];
  DcKerasHuffDecodeDelegateReport(d, report, sizeof report);
  CHECK(async ? strstr(report, "compressed\ttable\t37x300\t") == report : report[0] == '\0',
        "decode_async=%d: the report says %s", async, report);
  tflite_plugin_destroy_delegate(d);
}

/* ---- fork while another thread is inside the delegate ------------------------------------ */

static pthread_mutex_t g_fork_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_fork_cv = PTHREAD_COND_INITIALIZER;
static int g_fork_inside, g_fork_go, g_fork_done;

/* The runtime's GetExecutionPlan, slow: the delegate's Prepare (holding its lock) waits here until
 * a fork begins, then decodes the graph's tensors in this thread. */
static TfLiteStatus slow_plan(TfLiteContext* c, TfLiteIntArray** plan) {
  pthread_mutex_lock(&g_fork_lock);
  g_fork_inside = 1;
  pthread_cond_broadcast(&g_fork_cv);
  while (!g_fork_go) pthread_cond_wait(&g_fork_cv, &g_fork_lock);
  pthread_mutex_unlock(&g_fork_lock);
  return graph_plan(c, plan);
}

/* This test's fork prepare handler, registered after the library's, so it runs before them: the
 * Prepare goes on, as a runtime's call returns by itself. */
static void fork_lets_prepare_go(void) {
  pthread_mutex_lock(&g_fork_lock);
  g_fork_go = 1;
  pthread_cond_broadcast(&g_fork_cv);
  pthread_mutex_unlock(&g_fork_lock);
}

typedef struct {
  TfLiteDelegate* d;
  Graph* g;
  TfLiteStatus st;
} Applying;

/* The Prepare's thread then waits for the parent's fork() to return: a thread that ended before the
 * fork, not yet joined, is a leaked thread to ThreadSanitizer in the child (which cannot join it),
 * reported at the child's exit (exit 66, in 3-5 of 12 runs under load); alive at the fork, it is
 * not the child's. */
static void* apply_run(void* arg) {
  Applying* a = (Applying*)arg;
  a->st = a->d->Prepare(&a->g->ctx, a->d);
  pthread_mutex_lock(&g_fork_lock);
  while (!g_fork_done) pthread_cond_wait(&g_fork_cv, &g_fork_lock);
  pthread_mutex_unlock(&g_fork_lock);
  return NULL;
}

/* fork() while another thread is inside the delegate's Prepare (its lock held; decoding 7 tensors
 * in that thread, decode_threads=1): the child's calls into the delegate return (before: the
 * lock stayed held in the child and its first call waited forever: alarm), and the parent's
 * Prepare completes. */
static void fork_during_prepare(void) {
  char* keys[2] = {"decode_threads", "decode_async"};
  char* values[2] = {"1", "0"};
  TfLiteDelegate* d = tflite_plugin_create_delegate(keys, values, 2, NULL);
  CHECK(d != NULL && pthread_atfork(fork_lets_prepare_go, NULL, NULL) == 0, "delegate, handler");
  if (!d) return;
  Applying a = {d, graph_new(0, 0), kTfLiteError};
  a.g->ctx.GetExecutionPlan = slow_plan;
  pthread_t tid;
  CHECK(pthread_create(&tid, NULL, apply_run, &a) == 0, "thread");
  pthread_mutex_lock(&g_fork_lock);
  while (!g_fork_inside) pthread_cond_wait(&g_fork_cv, &g_fork_lock);
  pthread_mutex_unlock(&g_fork_lock);
  fflush(stdout);
  pid_t pid = fork();
  if (pid != 0) {
    pthread_mutex_lock(&g_fork_lock);
    g_fork_done = 1;
    pthread_cond_broadcast(&g_fork_cv);
    pthread_mutex_unlock(&g_fork_lock);
  }
  if (pid == 0) {
    alarm(20);
    char report[64];
    DcKerasHuffDecodeDelegateReport(d, report, sizeof report);
    DcKerasHuffDecodeDelegateError(d, report, sizeof report);
    _exit(0);
  }
  int status = -1;
  CHECK(pid > 0 && waitpid(pid, &status, 0) == pid, "fork");
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "child calling into a delegate another thread was in at fork: %s %d",
        WIFSIGNALED(status) ? "signal" : "exit",
        WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
  pthread_join(tid, NULL);
  CHECK(a.st == kTfLiteOk && a.g->replaced_calls == 1 &&
            a.g->kernel.prepare(&a.g->ctx, &a.g->kernel_node) == kTfLiteOk,
        "the Prepare in progress at fork: %s", a.g->error);
  graph_free(a.g);
  tflite_plugin_destroy_delegate(d);
}

int main(void) {
  first_decodes_at_once(); /* first: the CPU-feature probes run on these threads */
  for (int i = 0; i < kBig; ++i)
    g_big[i] = make_tensor(kBigN, 977u * (uint32_t)i, &g_big_size[i], &g_big_raw[i]);
  decode_many_at_once();
  unpack_at_once();
  sparse_fc_at_once();
  shared_delegate(1);
  shared_delegate(0);
  fork_during_prepare();
  for (int i = 0; i < kBig; ++i) free(g_big[i]), free(g_big_raw[i]);
  if (failures) {
    fprintf(stderr, "test_threads: %d failure(s)\n", failures);
    return 1;
  }
  printf("test_threads: all passed\n");
  return 0;
}
