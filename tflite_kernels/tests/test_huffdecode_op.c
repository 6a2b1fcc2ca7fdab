/* Tests of the HuffDecode op and delegate against a fake TfLiteContext (no TFLite needed):
 * decoding into the output, re-Prepare, every validation error with its message, and the
 * delegate's claim-decode-constant path.  Packed inputs come from codec_vectors.h. */
#define _POSIX_C_SOURCE 200809L /* pthreads */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_vectors.h"
#include "dc_codec.h"
#include "dc_unpack.h" /* DC_UNPACK_CORRUPT_FIX, DC_UNPACK_NEWER_FIX */
#include "tflite_abi.h"

const TfLiteRegistration* DcKerasHuffDecodeRegistration(void);
TfLiteDelegate* tflite_plugin_create_delegate(char**, char**, size_t, void (*)(const char*));
void tflite_plugin_destroy_delegate(TfLiteDelegate*);
size_t DcKerasHuffDecodeDelegateError(TfLiteDelegate*, char*, size_t);
size_t DcKerasHuffDecodeDelegateReport(const TfLiteDelegate*, char*, size_t);

static int passed, failed;
#define CHECK(cond, what)                                                                       \
  do {                                                                                          \
    if (cond) {                                                                                 \
      passed++;                                                                                 \
    } else {                                                                                    \
      failed++;                                                                                 \
      printf("FAIL %s:%d: %s (%s) last error: %s\n", __FILE__, __LINE__, #cond, what, g_error); \
    }                                                                                           \
  } while (0)

/* A graph as test_delegate's (HuffDecode -> FULLY_CONNECTED reading it as its input 0), the
 * runtime's callbacks reaching it from the context (its first member). */
typedef struct {
  TfLiteContext ctx;
  TfLiteTensor tensors[2];
  TfLiteNode nodes[2];
  TfLiteRegistration regs[2];
  int plan[3];
  TfLiteIntArray *inputs, *outputs, *in_dims, *out_dims, *replaced;
  uint8_t* packed;
  TfLiteRegistration kernel; /* the delegate's, as ReplaceNodeSubsetsWithDelegateKernels got it */
  TfLiteNode kernel_node;
  int replaced_calls;
  char error[512];
} Graph;

#include "fake_runtime.h" /* int_array, graph_context: after Graph */

/* ---- fake runtime ---- */
static char g_error[1024];
static TfLiteTensor g_tensors[4];
static TfLiteNode g_nodes[2];
static TfLiteRegistration g_regs[2];
static int g_plan_data[3] = {2, 0, 1}; /* TfLiteIntArray layout: size, data... */
static int g_replaced_calls, g_replaced_nodes[4], g_replaced_count;
static TfLiteRegistration g_kernel;
static void* g_heap[8];
static int g_heap_n;

static void report(TfLiteContext* c, const char* fmt, ...) {
  (void)c;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_error, sizeof g_error, fmt, ap);
  va_end(ap);
}

static TfLiteStatus resize_explicit(TfLiteContext* c, TfLiteTensor* t, int rank, const int* shape) {
  (void)c;
  size_t n = 1;
  for (int k = 0; k < rank; ++k) n *= (size_t)shape[k];
  size_t es = t->type == kTfLiteFloat32 || t->type == kTfLiteInt32   ? 4
              : t->type == kTfLiteFloat16 || t->type == kTfLiteInt16 ? 2
                                                                     : 1;
  t->bytes = n * es;
  if (t->allocation_type == kTfLitePersistentRo) {
    t->data.data = malloc(t->bytes ? t->bytes : 1);
    g_heap[g_heap_n++] = t->data.data;
  }
  return kTfLiteOk;
}

static TfLiteStatus get_plan(TfLiteContext* c, TfLiteIntArray** plan) {
  (void)c;
  *plan = (TfLiteIntArray*)g_plan_data;
  return kTfLiteOk;
}

static TfLiteStatus get_node(TfLiteContext* c, int i, TfLiteNode** n, TfLiteRegistration** r) {
  (void)c;
  *n = &g_nodes[i];
  *r = &g_regs[i];
  return kTfLiteOk;
}

static TfLiteStatus replace(TfLiteContext* c, TfLiteRegistration reg, const TfLiteIntArray* nodes,
                            TfLiteDelegate* d) {
  (void)c;
  (void)d;
  g_replaced_calls++;
  g_kernel = reg;
  g_replaced_count = nodes->size;
  for (int k = 0; k < nodes->size && k < 4; ++k) g_replaced_nodes[k] = nodes->data[k];
  return kTfLiteOk;
}

static TfLiteContext g_ctx;
static TfLiteIntArray *g_in_list, *g_out_list, *g_in_dims, *g_out_dims;
static uint8_t* g_packed;

/* Tensor 0: packed uint8 input; tensor 1: float32 [3,5,2] output (dense_float32_rank3). */
static void setup(void) {
  const int zero = 0, one = 1, outdims[3] = {3, 5, 2};
  int n = (int)sizeof dense_float32_rank3_packed;
  memset(g_tensors, 0, sizeof g_tensors);
  memset(g_nodes, 0, sizeof g_nodes);
  memset(g_regs, 0, sizeof g_regs);
  free(g_in_list);
  free(g_out_list);
  free(g_in_dims);
  free(g_out_dims);
  free(g_packed);
  g_in_list = int_array(1, &zero);
  g_out_list = int_array(1, &one);
  g_in_dims = int_array(1, &n);
  g_out_dims = int_array(3, outdims);
  g_packed = (uint8_t*)malloc((size_t)n);
  memcpy(g_packed, dense_float32_rank3_packed, (size_t)n);
  g_tensors[0].type = kTfLiteUInt8;
  g_tensors[0].data.data = g_packed;
  g_tensors[0].dims = g_in_dims;
  g_tensors[0].allocation_type = kTfLiteMmapRo;
  g_tensors[0].bytes = (size_t)n;
  g_tensors[0].name = "w/dc_packed";
  g_tensors[1].type = kTfLiteFloat32;
  g_tensors[1].dims = g_out_dims;
  g_tensors[1].allocation_type = kTfLiteArenaRw;
  g_tensors[1].bytes = 3 * 5 * 2 * 4;
  g_tensors[1].name = "w";
  g_nodes[0].inputs = g_in_list;
  g_nodes[0].outputs = g_out_list;
  g_nodes[1].inputs = g_out_list; /* a consumer (builtin FULLY_CONNECTED = 9) */
  g_nodes[1].outputs = g_in_list;
  g_regs[0].builtin_code = kTfLiteBuiltinCustom;
  g_regs[0].custom_name = "HuffDecode";
  g_regs[1].builtin_code = 9;
  memset(&g_ctx, 0, sizeof g_ctx);
  g_ctx.tensors_size = 4;
  g_ctx.tensors = g_tensors;
  g_ctx.ReportError = report;
  g_ctx.ResizeTensorExplicit = resize_explicit;
  g_ctx.GetExecutionPlan = get_plan;
  g_ctx.GetNodeAndRegistration = get_node;
  g_ctx.ReplaceNodeSubsetsWithDelegateKernels = replace;
  g_error[0] = '\0';
}

static TfLiteStatus op_run(void) {
  const TfLiteRegistration* r = DcKerasHuffDecodeRegistration();
  g_nodes[0].user_data = r->init(&g_ctx, NULL, 0);
  TfLiteStatus s = r->prepare(&g_ctx, &g_nodes[0]);
  return s;
}

static void op_done(void) {
  DcKerasHuffDecodeRegistration()->free(&g_ctx, g_nodes[0].user_data);
}

static void test_op_decodes_in_prepare(void) {
  const TfLiteRegistration* r = DcKerasHuffDecodeRegistration();
  CHECK(r->builtin_code == kTfLiteBuiltinCustom && strcmp(r->custom_name, "HuffDecode") == 0,
        "registration");
  setup();
  CHECK(op_run() == kTfLiteOk, "prepare ok");
  CHECK(g_tensors[1].allocation_type == kTfLitePersistentRo, "persistent ro output");
  CHECK(g_tensors[1].data.data != NULL && memcmp(g_tensors[1].data.data, dense_float32_rank3_raw,
                                                 sizeof dense_float32_rank3_raw) == 0,
        "decoded content");
  void* first = g_tensors[1].data.data;
  CHECK(r->prepare(&g_ctx, &g_nodes[0]) == kTfLiteOk && g_tensors[1].data.data == first,
        "re-prepare keeps data");
  CHECK(r->invoke(&g_ctx, &g_nodes[0]) == kTfLiteOk, "invoke no-op");
  op_done();
}

static int ends_with(const char* s, const char* tail) {
  const size_t n = strlen(s), m = strlen(tail);
  return n >= m && strcmp(s + n - m, tail) == 0;
}

/* A damaged (or newer) packed tensor: the reason, then the fix an app's log shows (until
 * 2026-12-07 only dc_keras.runtime's Python errors and dc_unpack said it). */
static void expect_op_error_fix(const char* what, const char* needle, const char* fix) {
  CHECK(op_run() == kTfLiteError, what);
  CHECK(strstr(g_error, needle) != NULL, needle);
  CHECK(ends_with(g_error, fix), what);
  op_done();
}

static void expect_op_error(const char* what, const char* needle) {
  expect_op_error_fix(what, needle, DC_UNPACK_CORRUPT_FIX);
}

static void test_op_errors(void) {
  setup();
  g_tensors[0].type = kTfLiteInt8;
  expect_op_error("input type", "must be uint8");
  setup();
  {
    const int d[2] = {1, (int)sizeof dense_float32_rank3_packed};
    free(g_in_dims);
    g_in_dims = int_array(2, d);
    g_tensors[0].dims = g_in_dims;
  }
  expect_op_error("input rank", "must be 1-D");
  setup();
  g_tensors[0].allocation_type = kTfLiteArenaRw;
  expect_op_error("input not constant", "must be a constant");
  setup();
  g_in_dims->data[0] -= 1; /* a damaged shape: the buffer holds one byte more */
  expect_op_error("input shape vs bytes", "HuffDecode(w): packed input 'w/dc_packed' holds");
  setup();
  g_in_dims->data[0] -= 1;
  g_tensors[0].name = ""; /* pack writes packed tensors nameless: named by the tensor decoded */
  expect_op_error("nameless input", "HuffDecode(w): packed input of 'w' holds");
  setup();
  g_tensors[1].type = kTfLiteInt32;
  expect_op_error("dtype mismatch", "does not match output dtype");
  setup();
  g_out_dims->data[1] = 4;
  expect_op_error("shape mismatch", "packed dim 1 is 5");
  setup();
  g_out_dims->size = 2;
  expect_op_error("rank mismatch", "packed rank 3");
  setup();
  g_packed[0] ^= 0xFF;
  expect_op_error("bad magic", "invalid packed tensor");
  setup();
  g_packed[g_tensors[0].bytes - 3] ^= 0x5A;
  expect_op_error("corrupt stream", "HuffDecode(w)");
  setup();
  g_packed[4] = 9; /* format version 9: a newer dc_keras packed it */
  expect_op_error_fix("newer version", "it is version 9, which only a decoder",
                      DC_UNPACK_NEWER_FIX);
  setup();
  g_packed[4] = 0; /* no such version: damage */
  expect_op_error("version 0", "version 0 does not exist");
  setup();
  g_nodes[0].inputs = g_out_list;
  g_nodes[0].outputs = g_out_list;
  g_out_list->data[0] = 7; /* out of range */
  CHECK(op_run() == kTfLiteError && strstr(g_error, "out of range") != NULL, "bad tensor index");
  op_done();
}

static void test_delegate(void) {
  char* keys[1] = {NULL};
  setup();
  TfLiteDelegate* d = tflite_plugin_create_delegate(keys, keys, 0, NULL);
  CHECK(d != NULL && d->Prepare != NULL && d->flags == kTfLiteDelegateFlagsAllowDynamicTensors,
        "create");
  g_replaced_calls = 0;
  CHECK(d->Prepare(&g_ctx, d) == kTfLiteOk, "delegate prepare");
  CHECK(g_replaced_calls == 1 && g_replaced_count == 1 && g_replaced_nodes[0] == 0,
        "claims HuffDecode only");
  CHECK(g_tensors[1].allocation_type == kTfLiteMmapRo && g_tensors[1].data.data != NULL,
        "constant output");
  CHECK(((uintptr_t)g_tensors[1].data.data & 63u) == 0, "64-byte aligned");
  CHECK(
      memcmp(g_tensors[1].data.data, dense_float32_rank3_raw, sizeof dense_float32_rank3_raw) == 0,
      "decoded");
  TfLiteNode kernel_node;
  memset(&kernel_node, 0, sizeof kernel_node);
  kernel_node.outputs = g_out_list;
  kernel_node.delegate = d;
  CHECK(g_kernel.prepare(&g_ctx, &kernel_node) == kTfLiteOk, "kernel prepare ok");
  CHECK(g_kernel.invoke(&g_ctx, &kernel_node) == kTfLiteOk, "kernel invoke ok");
  tflite_plugin_destroy_delegate(d);

  setup(); /* corrupt: the delegate still claims the node; its kernel's Prepare reports why */
  g_packed[g_tensors[0].bytes - 3] ^= 0x5A;
  d = tflite_plugin_create_delegate(keys, keys, 0, NULL);
  CHECK(d->Prepare(&g_ctx, d) == kTfLiteOk && g_replaced_count == 1, "claims corrupt node");
  memset(&kernel_node, 0, sizeof kernel_node);
  kernel_node.outputs = g_out_list;
  kernel_node.delegate = d;
  g_error[0] = '\0';
  char why[512];
  CHECK(DcKerasHuffDecodeDelegateError(d, why, sizeof why) > 0 &&
            strstr(why, "HuffDecode(w): decoding failed") != NULL,
        "the error can be asked for before the kernel's (deferred) Prepare");
  CHECK(g_kernel.prepare(&g_ctx, &kernel_node) == kTfLiteError, "kernel prepare fails");
  CHECK(strstr(g_error, "HuffDecode(w): decoding failed") != NULL, "reason reported");
  CHECK(ends_with(why, DC_UNPACK_CORRUPT_FIX) && ends_with(g_error, DC_UNPACK_CORRUPT_FIX),
        "the fix after the reason (an app's log)");
  tflite_plugin_destroy_delegate(d);

  setup(); /* an intact model: no error, no warning */
  d = tflite_plugin_create_delegate(keys, keys, 0, NULL);
  CHECK(d->Prepare(&g_ctx, d) == kTfLiteOk && g_error[0] == '\0', "no warning when first");
  CHECK(DcKerasHuffDecodeDelegateError(d, why, sizeof why) == 0 && why[0] == '\0', "no error");
  tflite_plugin_destroy_delegate(d);

  setup(); /* applied after another delegate that took the FULLY_CONNECTED: warned, still decodes */
  TfLiteDelegate other;
  memset(&other, 0, sizeof other);
  g_nodes[1].delegate = &other;
  g_regs[1].builtin_code = 51; /* BuiltinOperator DELEGATE: the other delegate's kernel */
  d = tflite_plugin_create_delegate(keys, keys, 0, NULL);
  CHECK(d->Prepare(&g_ctx, d) == kTfLiteOk && g_replaced_count == 1, "decodes after another");
  CHECK(strstr(g_error, "applied after another delegate (1 of") != NULL &&
            strstr(g_error, "apply the HuffDecode delegate first") != NULL,
        "warns about the delegate order");
  CHECK(
      memcmp(g_tensors[1].data.data, dense_float32_rank3_raw, sizeof dense_float32_rank3_raw) == 0,
      "decoded all the same");
  tflite_plugin_destroy_delegate(d);
}

/* ---- one delegate, several graphs on several threads: a fake runtime per graph ---- */

static Graph* graph_new(const char* weight_name) {
  const int zero = 0, one = 1, outdims[3] = {3, 5, 2};
  int n = (int)sizeof dense_float32_rank3_packed;
  Graph* g = (Graph*)calloc(1, sizeof(Graph));
  g->inputs = int_array(1, &zero);
  g->outputs = int_array(1, &one);
  g->in_dims = int_array(1, &n);
  g->out_dims = int_array(3, outdims);
  g->packed = (uint8_t*)malloc((size_t)n);
  memcpy(g->packed, dense_float32_rank3_packed, (size_t)n);
  g->tensors[0].type = kTfLiteUInt8;
  g->tensors[0].data.data = g->packed;
  g->tensors[0].dims = g->in_dims;
  g->tensors[0].allocation_type = kTfLiteMmapRo;
  g->tensors[0].bytes = (size_t)n;
  g->tensors[0].name = "w/dc_packed";
  g->tensors[1].type = kTfLiteFloat32;
  g->tensors[1].dims = g->out_dims;
  g->tensors[1].allocation_type = kTfLiteArenaRw;
  g->tensors[1].bytes = 3 * 5 * 2 * 4;
  g->tensors[1].name = weight_name;
  g->nodes[0].inputs = g->inputs;
  g->nodes[0].outputs = g->outputs;
  g->nodes[1].inputs = g->outputs;
  g->nodes[1].outputs = g->inputs;
  g->regs[0].builtin_code = kTfLiteBuiltinCustom;
  g->regs[0].custom_name = "HuffDecode";
  g->regs[1].builtin_code = 9; /* FULLY_CONNECTED */
  g->plan[0] = 2;
  g->plan[1] = 0;
  g->plan[2] = 1;
  graph_context(g, 2);
  return g;
}

/* The delegate applied, the kernel prepared and invoked: 1 if all went well and the weight is
 * decoded exactly. */
static int graph_load(Graph* g, TfLiteDelegate* d) {
  return d->Prepare(&g->ctx, d) == kTfLiteOk && g->replaced_calls == 1 &&
         g->tensors[1].data.data != NULL &&
         memcmp(g->tensors[1].data.data, dense_float32_rank3_raw, sizeof dense_float32_rank3_raw) ==
             0 &&
         g->kernel.prepare(&g->ctx, &g->kernel_node) == kTfLiteOk &&
         g->kernel.invoke(&g->ctx, &g->kernel_node) == kTfLiteOk;
}

/* The interpreter goes: the runtime frees its kernels, then the graph. */
static void graph_free(Graph* g) {
  if (g->replaced_calls) g->kernel.free(&g->ctx, g->kernel_node.user_data);
  free(g->inputs);
  free(g->outputs);
  free(g->in_dims);
  free(g->out_dims);
  free(g->packed);
  free(g);
}

static char* report_of(const TfLiteDelegate* d) {
  size_t n = DcKerasHuffDecodeDelegateReport(d, NULL, 0);
  char* r = (char*)malloc(n + 1);
  DcKerasHuffDecodeDelegateReport(d, r, n + 1);
  return r;
}

enum { kThreads = 4, kRounds = 25, kAlive = 3 };

typedef struct {
  TfLiteDelegate* d;
  int ok, loaded;
  size_t report_max;
} Worker;

/* Interpreters made and dropped in turn (kAlive alive at a time), reading the report meanwhile. */
static void* worker_run(void* arg) {
  Worker* w = (Worker*)arg;
  Graph* alive[kAlive] = {NULL};
  w->ok = 1;
  for (int k = 0; k < kRounds; ++k) {
    Graph* g = graph_new("w");
    w->ok &= graph_load(g, w->d);
    w->loaded++;
    if (alive[k % kAlive]) graph_free(alive[k % kAlive]);
    alive[k % kAlive] = g;
    size_t n = DcKerasHuffDecodeDelegateReport(w->d, NULL, 0);
    if (n > w->report_max) w->report_max = n;
  }
  for (int k = 0; k < kAlive; ++k) {
    if (alive[k]) w->ok &= alive[k]->kernel.invoke(&alive[k]->ctx, &alive[k]->kernel_node) == 0;
    if (alive[k]) graph_free(alive[k]);
  }
  return NULL;
}

/* One delegate for graphs loaded and dropped on several threads at once (an app passing one
 * load_delegate object to each interpreter): every graph decodes its weight exactly and runs; the
 * report holds the model's lines once, however many interpreters loaded it (it grew by them per
 * interpreter: ~100 B per layer).  Run under ThreadSanitizer it showed the delegate's unguarded
 * state (report, decoded-tensor and error lists, kernel count) written from several threads. */
static void test_shared_delegate_threads(void) {
  char* keys[1] = {"weights"};
  char* values[1] = {"compressed"};
  TfLiteDelegate* d = tflite_plugin_create_delegate(keys, values, 1, NULL);
  Graph* g = graph_new("w");
  CHECK(graph_load(g, d), "one graph");
  char* single = report_of(d);
  CHECK(strlen(single) > 0 && strstr(single, "dense\tw\t") == single, "one graph's report");
  graph_free(g);
  pthread_t tid[kThreads];
  Worker w[kThreads];
  memset(w, 0, sizeof w);
  for (int t = 0; t < kThreads; ++t) {
    w[t].d = d;
    CHECK(pthread_create(&tid[t], NULL, worker_run, &w[t]) == 0, "thread");
  }
  for (int t = 0; t < kThreads; ++t) pthread_join(tid[t], NULL);
  for (int t = 0; t < kThreads; ++t) {
    CHECK(w[t].ok && w[t].loaded == kRounds, "every graph decoded and ran");
    CHECK(w[t].report_max == strlen(single), "the report never grew");
  }
  char* after = report_of(d);
  CHECK(strcmp(after, single) == 0, "the same report after 100 interpreters on 4 threads");
  free(after);
  free(single);
  tflite_plugin_destroy_delegate(d);
}

/* Different models forever through one delegate: the report keeps its first MiB of lines, then
 * one "more" line counting the others; a model seen before adds nothing. */
static void test_report_is_bounded(void) {
  char* keys[1] = {"weights"};
  char* values[1] = {"compressed"};
  enum { kName = 1000, kModels = 1200 };
  TfLiteDelegate* d = tflite_plugin_create_delegate(keys, values, 1, NULL);
  char* names = (char*)malloc((size_t)kModels * (kName + 1));
  size_t line = 0;
  for (int k = 0; k < kModels; ++k) {
    char* name = names + (size_t)k * (kName + 1);
    memset(name, 'a' + k % 26, kName);
    snprintf(name, kName, "layer%05d", k);
    name[strlen(name)] = '_';
    name[kName] = '\0';
    Graph* g = graph_new(name);
    CHECK(graph_load(g, d), "distinct model");
    graph_free(g);
    if (k == 0) line = DcKerasHuffDecodeDelegateReport(d, NULL, 0);
  }
  char* r = report_of(d);
  const size_t kept = (size_t)1 << 20;
  const char* more = strstr(r, "more\t");
  size_t lines = 0, dropped = 0;
  for (const char* c = r; more && c < more; ++c) lines += *c == '\n';
  CHECK(more && (size_t)(more - r) <= kept && (size_t)(more - r) > kept - line, "kept 1 MiB");
  CHECK(more && sscanf(more, "more\t%zu\t", &dropped) == 1 && lines + dropped == kModels &&
            strstr(more, "more lines not kept") != NULL && more[strlen(more) - 1] == '\n',
        "one last line counts the others");
  Graph* g = graph_new(names); /* the first model again */
  CHECK(graph_load(g, d), "first model again");
  graph_free(g);
  g = graph_new(names + (size_t)(kModels - 1) * (kName + 1)); /* the last one, not kept */
  CHECK(graph_load(g, d), "last model again");
  graph_free(g);
  char* again = report_of(d);
  CHECK(strcmp(again, r) == 0, "models seen before add nothing, kept or counted");
  free(again);
  free(r);
  free(names);
  tflite_plugin_destroy_delegate(d);
}

int main(void) {
  test_op_decodes_in_prepare();
  test_op_errors();
  test_delegate();
  test_shared_delegate_threads();
  test_report_is_bounded();
  for (int k = 0; k < g_heap_n; ++k) free(g_heap[k]);
  free(g_in_list);
  free(g_out_list);
  free(g_in_dims);
  free(g_out_dims);
  free(g_packed);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
