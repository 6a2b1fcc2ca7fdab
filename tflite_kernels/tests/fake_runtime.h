/* fake_runtime.h -- the fake TFLite runtime pieces test_huffdecode_op.c and test_threads.c share
 * (no TFLite needed): int_array builds a malloc'd TfLiteIntArray; graph_context sets a graph's
 * context: its tensors and the callbacks ReportError (into g->error), GetExecutionPlan (g->plan),
 * GetNodeAndRegistration (g->nodes, g->regs) and ReplaceNodeSubsetsWithDelegateKernels (as the
 * runtime: the kernel's init with TfLiteDelegateParams {d, nodes, g->inputs, g->outputs}, once per
 * claimed partition; the kernel and its node kept in g->kernel, g->kernel_node).  Include it after
 * the test's `Graph` typedef: a struct whose first member is its TfLiteContext ctx (the callbacks
 * reach the graph from the context) with the members named above and int replaced_calls. */
#ifndef DC_FAKE_RUNTIME_H
#define DC_FAKE_RUNTIME_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tflite_abi.h"

static inline TfLiteIntArray* int_array(int n, const int* v) {
  TfLiteIntArray* a =
      (TfLiteIntArray*)malloc(sizeof(TfLiteIntArray) + sizeof(int) * (size_t)(n ? n : 1));
  a->size = n;
  for (int k = 0; k < n; ++k) a->data[k] = v[k];
  return a;
}

static void graph_report(TfLiteContext* c, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(((Graph*)c)->error, sizeof((Graph*)c)->error, fmt, ap);
  va_end(ap);
}

static TfLiteStatus graph_plan(TfLiteContext* c, TfLiteIntArray** plan) {
  *plan = (TfLiteIntArray*)((Graph*)c)->plan;
  return kTfLiteOk;
}

static TfLiteStatus graph_node(TfLiteContext* c, int i, TfLiteNode** n, TfLiteRegistration** r) {
  *n = &((Graph*)c)->nodes[i];
  *r = &((Graph*)c)->regs[i];
  return kTfLiteOk;
}

static TfLiteStatus graph_replace(TfLiteContext* c, TfLiteRegistration reg,
                                  const TfLiteIntArray* nodes, TfLiteDelegate* d) {
  Graph* g = (Graph*)c;
  TfLiteDelegateParams params = {d, (TfLiteIntArray*)nodes, g->inputs, g->outputs};
  g->replaced_calls++;
  g->kernel = reg;
  memset(&g->kernel_node, 0, sizeof g->kernel_node);
  g->kernel_node.outputs = g->outputs;
  g->kernel_node.delegate = d;
  g->kernel_node.user_data = reg.init(c, (const char*)&params, 0);
  return kTfLiteOk;
}

/* g's context: its tensors (the first n of g->tensors) and the callbacks above. */
static void graph_context(Graph* g, int n) {
  g->ctx.tensors_size = (size_t)n;
  g->ctx.tensors = g->tensors;
  g->ctx.ReportError = graph_report;
  g->ctx.GetExecutionPlan = graph_plan;
  g->ctx.GetNodeAndRegistration = graph_node;
  g->ctx.ReplaceNodeSubsetsWithDelegateKernels = graph_replace;
}

#endif /* DC_FAKE_RUNTIME_H */
