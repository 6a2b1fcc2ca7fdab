// firmware_align.cc -- where a model array may sit for TFLM compiled for Cortex-M4 (qemu
// mps2-an386), development only: needs TFLM's source tree (never committed), see run_align.sh.
//
// docs/microcontrollers.md (*Alignment*) says to declare the model array aligned (alignas(16), as
// TFLM's generate_cc_arrays.py writes it). This firmware copies each model of align_models.S
// (the packed int8 and float models and the unpacked int8 one) into RAM at offsets 0, 4, 8 and
// 12 of a 16-byte aligned buffer, runs AllocateTensors and one Invoke (decode once and every
// invoke) and requires the same output bytes as at offset 0; then it runs the first model at
// offset MISALIGN (default 1), which on Cortex-M4 ends in a fault (run_align.sh checks which),
// or, if it ran, prints TFLM_M4_ALIGN_MISALIGNED_RAN. Before each run a TFLM_M4_ALIGN_CHECK line:
// what DcTflmCheckModel (huffdecode_tflm_check.c) says of that copy. Exits with the failure count.
#include <stdio.h>
#include <string.h>

#include "huffdecode_tflm.h"
#include "lenet_ops.h"
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

#ifndef MISALIGN
#define MISALIGN 1
#endif

extern "C" const unsigned char int8_packed[], int8_packed_end[];
extern "C" const unsigned char float_packed[], float_packed_end[];
extern "C" const unsigned char int8_plain[], int8_plain_end[];

namespace {
constexpr size_t kArenaSize = 1200 * 1024;
alignas(16) uint8_t g_arena[kArenaSize];
alignas(16) uint8_t g_model[1024 * 1024];
int g_failures = 0;

void Log(const char* s) {
  fputs(s, stdout);
}

// FNV-1a of the output bytes after one invoke on a fixed input, or 0 on failure.
unsigned Run(const char* name, const unsigned char* begin, const unsigned char* end, int mode,
             size_t offset) {
  const size_t n = (size_t)(end - begin);
  if (n + offset > sizeof g_model) {
    printf("FAIL %s: model of %u bytes too large for the copy buffer\n", name, (unsigned)n);
    g_failures++;
    return 0;
  }
  memcpy(g_model + offset, begin, n);
  // what a firmware runs before GetModel (docs/microcontrollers.md, *Checking the model array*);
  // run here and then ignored, to see what TFLM does with what it refuses
  const DcTflmModelCheck check = DcTflmCheckModel(g_model + offset, n);
  printf("TFLM_M4_ALIGN_CHECK %s mode %d offset %u: %d %s\n", name, mode, (unsigned)offset,
         (int)check, DcTflmModelCheckMessage(check));
  const tflite::Model* model = tflite::GetModel(g_model + offset);
  LenetResolver resolver;
  AddLenetOps(resolver, mode);
  tflite::MicroInterpreter interp(model, resolver, g_arena, kArenaSize);
  printf("TFLM_M4_ALIGN %s mode %d offset %u: ", name, mode, (unsigned)offset);
  fflush(stdout);  // a fault below ends the run after this line
  if (interp.AllocateTensors() != kTfLiteOk) {
    printf("allocate failed\n");
    g_failures++;
    return 0;
  }
  TfLiteTensor* in = interp.input(0);
  for (size_t i = 0; i < in->bytes; ++i) in->data.uint8[i] = (uint8_t)(i * 7u);
  if (interp.Invoke() != kTfLiteOk) {
    printf("invoke failed\n");
    g_failures++;
    return 0;
  }
  const TfLiteTensor* out = interp.output(0);
  unsigned h = 2166136261u;
  for (size_t i = 0; i < out->bytes; ++i) h = (h ^ out->data.uint8[i]) * 16777619u;
  printf("output %08x\n", h);
  return h;
}
}  // namespace

int main(void) {
  RegisterDebugLogCallback(Log);
  struct {
    const char* name;
    const unsigned char *begin, *end;
    int mode;
  } const models[] = {{"int8_packed", int8_packed, int8_packed_end, 0},
                      {"int8_packed", int8_packed, int8_packed_end, 1},
                      {"float_packed", float_packed, float_packed_end, 0},
                      {"int8_plain", int8_plain, int8_plain_end, -1}};
  for (const auto& m : models) {
    const unsigned ref = Run(m.name, m.begin, m.end, m.mode, 0);
    for (size_t offset = 4; offset < 16; offset += 4) {
      const unsigned h = Run(m.name, m.begin, m.end, m.mode, offset);
      if (h != ref) {
        printf("FAIL %s mode %d offset %u: output differs from offset 0\n", m.name, m.mode,
               (unsigned)offset);
        g_failures++;
      }
    }
  }
  printf("TFLM_M4_ALIGN_ALIGNED_DONE %d\n", g_failures);
  Run(models[0].name, models[0].begin, models[0].end, models[0].mode, MISALIGN);
  printf("TFLM_M4_ALIGN_MISALIGNED_RAN\n");
  return g_failures;
}
