"""The HuffDecode delegate's call into the runtime, checked for each architecture's calling
convention (the library is C talking to a C++ runtime through a hand-written ABI header).

``delegate_prepare`` calls ``context->ReplaceNodeSubsetsWithDelegateKernels(context, registration,
nodes, delegate)`` with a ``TfLiteRegistration`` passed *by value*.  Here the runtime side of that
call is a separate C file compiled with TFLite's own declaration of the struct (the field list of
upstream ``tensorflow/lite/core/c/common.h``, TF 2.21); it records the arguments it receives.
The library, built for x86_64 / aarch64 / armv7, runs its real ``tflite_plugin_create_delegate``
and ``Prepare`` against a context with one ``HuffDecode`` node (whose input is not a packed tensor,
so decoding is skipped; the node is still claimed) and the program checks what arrived.

On armv7 (AAPCS) a by-value struct is laid out on the stack ahead of the arguments that follow
it, so if the library's struct were larger than upstream's (as ``tflite_abi.h`` had it, padded
with a reserve, until commit 5fa4648), ``nodes`` and ``delegate`` would arrive as garbage (this
test showed NULL / a wrong pointer).  x86_64 and aarch64 pass such structs through memory by
reference and would not notice."""
import subprocess

import pytest

from arm_helpers import ARCHS, KERNELS, built

COMPILERS = {"host": "gcc", "aarch64": "aarch64-linux-gnu-gcc", "armv7": "arm-linux-gnueabihf-gcc"}

RUNTIME_SIDE = r"""
#include <stddef.h>
#include <stdint.h>
/* TFLite's TfLiteRegistration (upstream common.h), opaque pointers where the types do not matter. */
typedef struct UpstreamRegistration {
  void* (*init)(void* context, const char* buffer, size_t length);
  void (*free)(void* context, void* buffer);
  int (*prepare)(void* context, void* node);
  int (*invoke)(void* context, void* node);
  const char* (*profiling_string)(const void* context, const void* node);
  int32_t builtin_code;
  const char* custom_name;
  int version;
  void* registration_external;
  void* (*async_kernel)(void* context, void* node);
  uint64_t inplace_operator;
} UpstreamRegistration;
typedef struct { int size; int data[]; } IntArray;
/* The runtime copies what it needs during the call (the caller frees `nodes` afterwards). */
int g_nodes_size = -1, g_node0 = -1; void* g_delegate; void* g_context; UpstreamRegistration g_reg;
int runtime_replace(void* context, UpstreamRegistration reg, const IntArray* nodes, void* delegate) {
  g_context = context; g_reg = reg; g_delegate = delegate;
  if (nodes) { g_nodes_size = nodes->size; if (nodes->size > 0) g_node0 = nodes->data[0]; }
  return 0;
}
"""

LIBRARY_SIDE = r"""
#include <stdio.h>
#include <string.h>
#include "tflite_abi.h"
TfLiteDelegate* tflite_plugin_create_delegate(char**, char**, size_t, void (*)(const char*));
void tflite_plugin_destroy_delegate(TfLiteDelegate*);
extern int g_nodes_size, g_node0; extern void* g_delegate; extern void* g_context;
int runtime_replace(void);  /* real signature in runtime.c; called only through the context */

static TfLiteTensor tensors[2];
static struct { int size; int data[1]; } plan = {1, {0}}, ins = {1, {0}}, outs = {1, {1}};
static TfLiteNode node;
static TfLiteRegistration reg;
static TfLiteStatus get_plan(TfLiteContext* c, TfLiteIntArray** p) {
  (void)c; *p = (TfLiteIntArray*)(void*)&plan; return kTfLiteOk;
}
static TfLiteStatus get_node(TfLiteContext* c, int i, TfLiteNode** n, TfLiteRegistration** r) {
  (void)c; if (i != 0) return kTfLiteError; *n = &node; *r = &reg; return kTfLiteOk;
}
static void report(TfLiteContext* c, const char* fmt, ...) { (void)c; (void)fmt; }

int main(void) {
  TfLiteContext ctx;
  TfLiteDelegate* d;
  void (*fn)(void) = (void (*)(void))runtime_replace;
  memset(&ctx, 0, sizeof ctx);
  tensors[0].type = kTfLiteFloat32;  /* not a packed (uint8) tensor: decoding is skipped */
  tensors[1].type = kTfLiteFloat32;
  node.inputs = (TfLiteIntArray*)(void*)&ins;
  node.outputs = (TfLiteIntArray*)(void*)&outs;
  reg.builtin_code = kTfLiteBuiltinCustom;
  reg.custom_name = "HuffDecode";
  reg.version = 1;
  ctx.tensors_size = 2;
  ctx.tensors = tensors;
  ctx.GetExecutionPlan = get_plan;
  ctx.GetNodeAndRegistration = get_node;
  ctx.ReportError = report;
  memcpy(&ctx.ReplaceNodeSubsetsWithDelegateKernels, &fn, sizeof fn);
  d = tflite_plugin_create_delegate(NULL, NULL, 0, NULL);
  if (!d) { puts("no delegate"); return 2; }
  d->Prepare(&ctx, d);
  printf("context %s, delegate %s, nodes %s\n", g_context == (void*)&ctx ? "ok" : "WRONG",
         g_delegate == (void*)d ? "ok" : "WRONG",
         g_nodes_size < 0 ? "NULL" : (g_nodes_size == 1 && g_node0 == 0) ? "ok" : "WRONG");
  {
    int ok = g_context == (void*)&ctx && g_delegate == (void*)d && g_nodes_size == 1 &&
             g_node0 == 0;
    tflite_plugin_destroy_delegate(d);
    return ok ? 0 : 1;
  }
}
"""


@pytest.mark.parametrize("arch", ["host", "aarch64", "armv7"])
def test_replace_node_subsets_receives_its_arguments(arm_env, arch, tmp_path):
    (tmp_path / "runtime.c").write_text(RUNTIME_SIDE)
    (tmp_path / "main.c").write_text(LIBRARY_SIDE)
    lib = built(arch, "libdc_huffdecode.so")
    exe = tmp_path / "delegate_abi"
    subprocess.run([COMPILERS[arch], "-std=c99", "-O1", f"-I{KERNELS / 'include'}",
                    str(tmp_path / "main.c"), str(tmp_path / "runtime.c"), "-o", str(exe),
                    f"-L{lib.parent}", "-ldc_huffdecode", f"-Wl,-rpath,{lib.parent}"],
                   check=True, capture_output=True, text=True)
    proc = subprocess.run([*ARCHS[arch][1], str(exe)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
