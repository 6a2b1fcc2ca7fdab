// firmware_cnn.cc -- the int8 CNNs of tests/test_micro_cnn.py (DS-CNN, conv autoencoder) in
// TFLM compiled for Cortex-M4 (qemu mps2-an386), development only: needs TFLM's source tree (never
// committed), see run_cnn.sh.  Each model runs unpacked, then packed (HuffDecode decode once /
// every invoke); every output must equal the x86 TFLM wheel's for the unpacked model bit for bit.
// Prints arena bytes used and instructions (qemu -icount shift=0, tools/mcu/mcu.h): AllocateTensors,
// the first invoke (where decode once decodes a tensor that needs a workspace) and the mean of
// the later invokes.
#include <stdio.h>
#include <string.h>

#include "cnn_data.h"
#include "huffdecode_tflm_register.h"
#include "mcu.h"
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {
constexpr size_t kArenaSize = 256 * 1024;
alignas(16) uint8_t g_arena[kArenaSize];
int g_failures = 0;

void Log(const char* s) {
  fputs(s, stdout);
}

using Resolver = tflite::MicroMutableOpResolver<12>;

// mode -1: unpacked model (no HuffDecode); 0 / 1: packed, decode once / every invoke
void Run(const char* name, const unsigned char* model_data, int mode, const float* x, int n_in,
         const uint32_t* expected, int n_out) {
  Resolver r;
  r.AddConv2D();
  r.AddDepthwiseConv2D();
  r.AddTransposeConv();
  r.AddMean();
  r.AddFullyConnected();
  r.AddShape();
  r.AddStridedSlice();
  r.AddPack();
  r.AddQuantize();
  r.AddDequantize();
  if (mode >= 0 && r.AddCustom("HuffDecode", dc_keras::Register_HUFFDECODE(
                                                 (DcTflmDecodeMode)mode)) != kTfLiteOk) {
    printf("FAIL %s: AddCustom\n", name);
    g_failures++;
    return;
  }
  tflite::MicroInterpreter interp(tflite::GetModel(model_data), r, g_arena, kArenaSize);
  mcu_counter_start();
  if (interp.AllocateTensors() != kTfLiteOk) {
    printf("FAIL %s: AllocateTensors\n", name);
    g_failures++;
    return;
  }
  unsigned long prepare_insns = (unsigned long)mcu_counter_ticks() * MCU_INSNS_PER_TICK;
  unsigned long first_insns = 0, invoke_insns = 0;
  int mismatches = 0;
  for (int i = 0; i < kInputs; ++i) {
    memcpy(interp.input(0)->data.f, x + i * n_in, n_in * sizeof(float));
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
    if (memcmp(expected + i * n_out, interp.output(0)->data.f, n_out * sizeof(float)) != 0)
      mismatches++;
  }
  if (mismatches) g_failures++;
  printf(
      "TFLM_M4 %s arena_used %u prepare_insns %lu first_invoke_insns %lu invoke_insns_avg %lu "
      "mismatches %d\n",
      name, (unsigned)interp.arena_used_bytes(), prepare_insns, first_insns,
      invoke_insns / (kInputs - 1), mismatches);
}
}  // namespace

int main(void) {
  RegisterDebugLogCallback(Log);
  for (int mode = -1; mode <= 1; ++mode) {
    static const char* const kDs[] = {"ds_cnn", "ds_cnn.packed.once", "ds_cnn.packed.each"};
    static const char* const kAe[] = {"autoencoder", "autoencoder.packed.once",
                                      "autoencoder.packed.each"};
    Run(kDs[mode + 1], mode < 0 ? ds_cnn : ds_cnn_packed, mode, k_ds_cnn_x, k_ds_cnn_in, k_ds_cnn_y,
        k_ds_cnn_out);
    Run(kAe[mode + 1], mode < 0 ? autoencoder : autoencoder_packed, mode, k_autoencoder_x,
        k_autoencoder_in, k_autoencoder_y, k_autoencoder_out);
  }
  printf("TFLM_M4_DONE %d\n", g_failures);
  return g_failures;
}
