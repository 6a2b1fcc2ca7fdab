/* Tests of the HuffDecode op and delegate against a fake TfLiteContext (no TFLite needed):
 * decoding into the output, re-Prepare, every validation error with its message, and the
 * delegate's claim-decode-constant path.  Packed inputs come from codec_vectors.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_vectors.h"
#include "dc_codec.h"
#include "tflite_abi.h"

const TfLiteRegistration* DcKerasHuffDecodeRegistration(void);
TfLiteDelegate* tflite_plugin_create_delegate(char**, char**, size_t, void (*)(const char*));
void tflite_plugin_destroy_delegate(TfLiteDelegate*);
size_t DcKerasHuffDecodeDelegateError(TfLiteDelegate*, char*, size_t);

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

static TfLiteIntArray* int_array(int n, const int* v) {
  TfLiteIntArray* a =
      (TfLiteIntArray*)malloc(sizeof(TfLiteIntArray) + sizeof(int) * (size_t)(n ? n : 1));
  a->size = n;
  for (int k = 0; k < n; ++k) a->data[k] = v[k];
  return a;
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

static void expect_op_error(const char* what, const char* needle) {
  CHECK(op_run() == kTfLiteError, what);
  CHECK(strstr(g_error, needle) != NULL, needle);
  op_done();
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
  g_nodes[0].inputs = g_out_list;
  g_nodes[0].outputs = g_out_list;
  g_out_list->data[0] = 7; /* out of range */
  expect_op_error("bad tensor index", "out of range");
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

int main(void) {
  test_op_decodes_in_prepare();
  test_op_errors();
  test_delegate();
  for (int k = 0; k < g_heap_n; ++k) free(g_heap[k]);
  free(g_in_list);
  free(g_out_list);
  free(g_in_dims);
  free(g_out_dims);
  free(g_packed);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
