// lenet_ops.h -- the ops the LeNet-300-100 firmwares (firmware.cc, firmware_edited.cc) register with
// TFLM: the reference kernels the float32 and int8 LeNet need, and HuffDecode in a decode mode.
// Development only, like those firmwares (needs TFLM's source tree).
#ifndef DC_KERAS_TOOLS_MCU_TFLM_M4_LENET_OPS_H_
#define DC_KERAS_TOOLS_MCU_TFLM_M4_LENET_OPS_H_

#include "huffdecode_tflm_register.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

using LenetResolver = tflite::MicroMutableOpResolver<10>;

// mode -1: no HuffDecode (the unpacked model); 0 / 1: HuffDecode decoding once / at every invoke.
inline void AddLenetOps(LenetResolver& r, int mode) {
  r.AddFullyConnected();
  r.AddSoftmax();
  r.AddReshape();
  r.AddShape();
  r.AddPack();
  r.AddStridedSlice();
  r.AddQuantize();
  r.AddDequantize();
  if (mode >= 0) r.AddCustom("HuffDecode", dc_keras::Register_HUFFDECODE((DcTflmDecodeMode)mode));
}

#endif  // DC_KERAS_TOOLS_MCU_TFLM_M4_LENET_OPS_H_
