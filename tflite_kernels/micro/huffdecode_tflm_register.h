// huffdecode_tflm_register.h -- C++ declaration of the HuffDecode registration for TFLM
// applications (definition: huffdecode_tflm_register.cc; usage: huffdecode_tflm.h), and
// CheckCustomOps (inline), which names a custom op the resolver lacks.
#ifndef DC_HUFFDECODE_TFLM_REGISTER_H_
#define DC_HUFFDECODE_TFLM_REGISTER_H_

#include <string.h>

#include "huffdecode_tflm.h"
#include "tensorflow/lite/micro/micro_common.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/micro_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace dc_keras {

// Pass to MicroMutableOpResolver::AddCustom("HuffDecode", ...).  Per-layer overrides: the op's
// custom options (tools/mcu/set_decode_mode.py).
const TFLMRegistration* Register_HUFFDECODE(DcTflmDecodeMode mode = DC_TFLM_DECODE_ONCE);

// Before constructing the interpreter: true when `resolver` has every custom op `model` uses;
// otherwise false, with one MicroPrintf per missing op naming it and the fix (for HuffDecode the
// AddCustom line above).  TFLM itself reports a missing custom op only as "Failed to get
// registration from op code CUSTOM", in AllocateTensors, naming neither (builtin ops it names).
//   if (!dc_keras::CheckCustomOps(model, resolver)) return;  // docs/microcontrollers.md
// Inline: nothing of it (code or strings) is in an image that does not call it.
inline bool CheckCustomOps(const tflite::Model* model, const tflite::MicroOpResolver& resolver) {
  const auto* codes = model == nullptr ? nullptr : model->operator_codes();
  bool ok = true;
  if (codes == nullptr) return model != nullptr;
  for (const auto* code : *codes) {
    if (code == nullptr || code->custom_code() == nullptr) continue;
    // TFLM's GetBuiltinCode: the larger of the two fields (files before schema 3a wrote only the
    // deprecated one)
    const int builtin = code->builtin_code() > code->deprecated_builtin_code()
                            ? static_cast<int>(code->builtin_code())
                            : static_cast<int>(code->deprecated_builtin_code());
    if (builtin != tflite::BuiltinOperator_CUSTOM) continue;
    const char* name = code->custom_code()->c_str();
    if (resolver.FindOp(name) != nullptr) continue;
    ok = false;
    if (strcmp(name, DC_TFLM_HUFFDECODE_NAME) == 0) {
      MicroPrintf(
          "the model's custom op HuffDecode is not registered: add "
          "resolver.AddCustom(\"HuffDecode\", "
          "dc_keras::Register_HUFFDECODE()) (huffdecode_tflm_register.h), one resolver slot more");
    } else {
      MicroPrintf("the model's custom op %s is not registered: add it with resolver.AddCustom",
                  name);
    }
  }
  return ok;
}

}  // namespace dc_keras

#endif  // DC_HUFFDECODE_TFLM_REGISTER_H_
