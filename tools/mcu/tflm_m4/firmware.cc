// firmware.cc -- end-to-end check of the HuffDecode kernel in TFLM compiled for Cortex-M4
// (qemu mps2-an386), development only: needs TFLM's source tree (never committed), see run.sh.
//
// For the float32 and the int8 LeNet-300-100 (model_data.h): runs the unpacked model and the
// packed model (HuffDecode decode-once and decode-every-invoke) on the same images; the packed
// outputs must equal the unpacked ones bit for bit, and the int8 ones also the x86 TFLM wheel's.
// Prints arena bytes used and instructions (qemu -icount shift=0, tools/mcu/mcu.h): AllocateTensors,
// the first invoke (where decode once decodes a tensor that needs a workspace) and the mean of
// the later invokes.
#include <stdio.h>
#include <string.h>

#include "lenet_ops.h"
#include "mcu.h"
#include "model_data.h"
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {
constexpr size_t kArenaSize = 1200 * 1024;
alignas(16) uint8_t g_arena[kArenaSize];
float g_ref[16][10];
int g_failures = 0;

void Log(const char* s) {
  fputs(s, stdout);
}

// mode -1: unpacked model (no HuffDecode); 0 / 1: packed, decode once / every invoke
void Run(const char* name, const unsigned char* model_data, int mode, bool is_ref,
         const uint32_t* expected_bits) {
  const tflite::Model* model = tflite::GetModel(model_data);
  LenetResolver resolver;
  AddLenetOps(resolver, mode);
  tflite::MicroInterpreter interp(model, resolver, g_arena, kArenaSize);
  mcu_counter_start();
  if (interp.AllocateTensors() != kTfLiteOk) {
    printf("FAIL %s: AllocateTensors\n", name);
    g_failures++;
    return;
  }
  unsigned long prepare_insns = (unsigned long)mcu_counter_ticks() * MCU_INSNS_PER_TICK;
  unsigned long first_insns = 0, invoke_insns = 0;
  int mismatches = 0;
  for (int i = 0; i < kImages; ++i) {
    TfLiteTensor* in = interp.input(0);
    memcpy(in->data.f, &kImageData[i * 784], 784 * sizeof(float));
    mcu_counter_start();
    if (interp.Invoke() != kTfLiteOk) {
      printf("FAIL %s: Invoke\n", name);
      g_failures++;
      return;
    }
    const unsigned long insns = (unsigned long)mcu_counter_ticks() * MCU_INSNS_PER_TICK;
    if (i == 0) {
      first_insns = insns;  // decode once decodes here
    } else {
      invoke_insns += insns;
    }
    const float* out = interp.output(0)->data.f;
    if (is_ref) {
      memcpy(g_ref[i], out, sizeof g_ref[i]);
    } else if (memcmp(g_ref[i], out, sizeof g_ref[i]) != 0) {
      mismatches++;
    }
    if (expected_bits && memcmp(expected_bits + 10 * i, out, 10 * sizeof(float)) != 0) mismatches++;
  }
  if (mismatches) g_failures++;
  printf(
      "TFLM_M4 %s arena_used %u prepare_insns %lu first_invoke_insns %lu invoke_insns_avg %lu "
      "mismatches %d\n",
      name, (unsigned)interp.arena_used_bytes(), prepare_insns, first_insns,
      invoke_insns / (kImages - 1), mismatches);
}
}  // namespace

int main(void) {
  RegisterDebugLogCallback(Log);
  Run("float", float_model, -1, true, nullptr);
  Run("float.packed.once", float_packed_model, 0, false, nullptr);
  Run("float.packed.each", float_packed_model, 1, false, nullptr);
  Run("int8", int8_model, -1, true, kExpectedInt8Bits);
  Run("int8.packed.once", int8_packed_model, 0, false, kExpectedInt8Bits);
  Run("int8.packed.each", int8_packed_model, 1, false, kExpectedInt8Bits);
  printf("TFLM_M4_DONE %d\n", g_failures);
  return g_failures;
}
