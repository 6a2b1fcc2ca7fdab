/*
 * huffdecode_tflm_wheel.c -- registerers for the PyPI tflite-micro wheel's Python interpreter
 * (tflite_micro.runtime.Interpreter(..., custom_op_registerers=[NAME])).
 *
 * The wheel looks NAME up with dlsym(RTLD_DEFAULT) (so load this library with RTLD_GLOBAL
 * first) and calls it as `bool NAME(tflite::PythonOpsResolver*)`.  The resolver's AddCustom is
 * an inline C++ template member the wheel does not export, so this file does what it does on
 * the resolver's memory, whose layout (tflm_abi.h, DcTflmPythonOpsResolver) is pinned to the
 * commit the wheel records (DC_TFLM_WHEEL_VERSION).  Before writing anything it checks that the
 * memory looks like that layout: registration count within bounds, and the builtin-code table
 * agreeing entry by entry with the builtin registrations; any mismatch fails cleanly with a
 * message naming the wheel version this library was built for.
 */
#include <stdio.h>
#include <string.h>

#include "huffdecode_tflm.h"

#define DC_EXPORT __attribute__((visibility("default")))

#if defined(__LP64__) || defined(_LP64)
static int layout_ok(const DcTflmPythonOpsResolver* r) {
  unsigned i, builtins = 0;
  if (r->vtable == NULL || r->registrations_len > kDcTflmPythonResolverOps ||
      r->num_builtin_ops > r->registrations_len)
    return 0;
  for (i = 0; i < r->registrations_len; ++i) {
    const DcTflmRegistration* g = &r->registrations[i];
    if (g->builtin_code < 0 || g->builtin_code > 1000) return 0;
    if (g->builtin_code == kDcTflmBuiltinCustom) {
      if (g->custom_name == NULL) return 0;
    } else {
      if (builtins >= r->num_builtin_ops || r->builtin_codes[builtins] != g->builtin_code) return 0;
      builtins++;
    }
  }
  return builtins == r->num_builtin_ops;
}

static int add_custom(void* resolver, const DcTflmRegistration* reg) {
  DcTflmPythonOpsResolver* r = (DcTflmPythonOpsResolver*)resolver;
  unsigned i;
  if (r == NULL || !layout_ok(r)) {
    fprintf(stderr,
            "HuffDecode: the tflite-micro resolver does not have the layout this library "
            "was built for (tflite-micro==%s, commit %.7s); install that wheel version\n",
            DC_TFLM_WHEEL_VERSION, DC_TFLM_COMMIT);
    return 0;
  }
  for (i = 0; i < r->registrations_len; ++i) {
    const DcTflmRegistration* g = &r->registrations[i];
    if (g->builtin_code == kDcTflmBuiltinCustom && strcmp(g->custom_name, reg->custom_name) == 0) {
      fprintf(stderr, "HuffDecode: op already registered with this resolver\n");
      return 0;
    }
  }
  if (r->registrations_len >= kDcTflmPythonResolverOps) {
    fprintf(stderr, "HuffDecode: the resolver is full (%d ops)\n", kDcTflmPythonResolverOps);
    return 0;
  }
  r->registrations[r->registrations_len] = *reg;
  r->registrations_len++;
  return 1;
}

DC_EXPORT bool DcKerasRegisterHuffDecodeTflm(void* resolver) {
  return add_custom(resolver, DcTflmHuffDecodeRegistration(DC_TFLM_DECODE_ONCE)) != 0;
}

DC_EXPORT bool DcKerasRegisterHuffDecodeTflmEachInvoke(void* resolver) {
  return add_custom(resolver, DcTflmHuffDecodeRegistration(DC_TFLM_DECODE_EACH_INVOKE)) != 0;
}

/* The wheel version this library's layout is pinned to (checked by the Python side first). */
DC_EXPORT const char* DcKerasTflmWheelVersion(void) {
  return DC_TFLM_WHEEL_VERSION;
}
#else
#error "huffdecode_tflm_wheel.c is for the 64-bit PyPI wheel; MCU builds use huffdecode_tflm.c only"
#endif
