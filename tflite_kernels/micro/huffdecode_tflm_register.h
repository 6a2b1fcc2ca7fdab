// huffdecode_tflm_register.h -- C++ declaration of the HuffDecode registration for TFLM
// applications (definition: huffdecode_tflm_register.cc; usage: huffdecode_tflm.h).
#ifndef DC_HUFFDECODE_TFLM_REGISTER_H_
#define DC_HUFFDECODE_TFLM_REGISTER_H_

#include "huffdecode_tflm.h"
#include "tensorflow/lite/micro/micro_common.h"

namespace dc_keras {

// Pass to MicroMutableOpResolver::AddCustom("HuffDecode", ...).  Per-layer overrides: the op's
// custom options (tools/mcu/set_decode_mode.py).
const TFLMRegistration* Register_HUFFDECODE(DcTflmDecodeMode mode = DC_TFLM_DECODE_ONCE);

}  // namespace dc_keras

#endif  // DC_HUFFDECODE_TFLM_REGISTER_H_
