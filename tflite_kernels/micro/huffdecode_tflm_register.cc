// huffdecode_tflm_register.cc -- registration of the HuffDecode kernel for C++ TFLM applications.
//
// Compile this file inside your TFLM build (it includes TFLM's headers) together with
// huffdecode_tflm.c and ../src/dc_codec.c (C99), then:
//
//   tflite::MicroMutableOpResolver<8> resolver;
//   resolver.AddFullyConnected();  // ... the model's other ops
//   resolver.AddCustom("HuffDecode", dc_keras::Register_HUFFDECODE());
//   // or, to decode on every invoke into planned memory (RAM-tight parts):
//   resolver.AddCustom("HuffDecode",
//                      dc_keras::Register_HUFFDECODE(DC_TFLM_DECODE_EACH_INVOKE));
//
// The static_asserts check, against the TFLM headers you build with, every struct field the
// C kernel reads or writes through tflm_abi.h: a TFLM whose layout changed fails to compile here
// instead of misbehaving at run time.
#include "huffdecode_tflm_register.h"

#include <stddef.h>

#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/micro_common.h"

#if !defined(TF_LITE_STATIC_MEMORY)
#error "TFLM builds define TF_LITE_STATIC_MEMORY; tflm_abi.h declares that layout"
#endif

#define DC_SAME(T, DT, f)                                                                         \
  static_assert(                                                                                  \
      offsetof(T, f) == offsetof(DT, f) && sizeof(((T*)nullptr)->f) == sizeof(((DT*)nullptr)->f), \
      #T "::" #f " differs from tflm_abi.h")

static_assert(sizeof(TFLMRegistration) == sizeof(DcTflmRegistration), "TFLMRegistration size");
DC_SAME(TFLMRegistration, DcTflmRegistration, init);
DC_SAME(TFLMRegistration, DcTflmRegistration, prepare);
DC_SAME(TFLMRegistration, DcTflmRegistration, invoke);
DC_SAME(TFLMRegistration, DcTflmRegistration, reset);
DC_SAME(TFLMRegistration, DcTflmRegistration, builtin_code);
DC_SAME(TFLMRegistration, DcTflmRegistration, custom_name);
static_assert(sizeof(TfLiteEvalTensor) == sizeof(DcTflmEvalTensor), "TfLiteEvalTensor size");
DC_SAME(TfLiteEvalTensor, DcTflmEvalTensor, data);
DC_SAME(TfLiteEvalTensor, DcTflmEvalTensor, dims);
DC_SAME(TfLiteEvalTensor, DcTflmEvalTensor, type);
static_assert(sizeof(TfLiteTensor) == sizeof(DcTflmTensor), "TfLiteTensor size");
DC_SAME(TfLiteTensor, DcTflmTensor, data);
DC_SAME(TfLiteTensor, DcTflmTensor, dims);
DC_SAME(TfLiteTensor, DcTflmTensor, bytes);
DC_SAME(TfLiteTensor, DcTflmTensor, type);
DC_SAME(TfLiteTensor, DcTflmTensor, allocation_type);
DC_SAME(TfLiteNode, DcTflmNode, inputs);
DC_SAME(TfLiteNode, DcTflmNode, outputs);
DC_SAME(TfLiteNode, DcTflmNode, user_data);
DC_SAME(TfLiteNode, DcTflmNode, custom_initial_data);
DC_SAME(TfLiteNode, DcTflmNode, custom_initial_data_size);
DC_SAME(TfLiteContext, DcTflmContext, ReportError);
DC_SAME(TfLiteContext, DcTflmContext, AllocatePersistentBuffer);
DC_SAME(TfLiteContext, DcTflmContext, RequestScratchBufferInArena);
DC_SAME(TfLiteContext, DcTflmContext, GetScratchBuffer);
DC_SAME(TfLiteContext, DcTflmContext, GetTensor);
DC_SAME(TfLiteContext, DcTflmContext, GetEvalTensor);
static_assert(sizeof(TfLiteIntArray) == sizeof(DcTflmIntArray), "TfLiteIntArray size");
static_assert((int)kTfLiteUInt8 == (int)kDcTflmUInt8 && (int)kTfLiteInt8 == (int)kDcTflmInt8 &&
                  (int)kTfLiteFloat32 == (int)kDcTflmFloat32 &&
                  (int)kTfLiteFloat16 == (int)kDcTflmFloat16 &&
                  (int)kTfLiteInt16 == (int)kDcTflmInt16 &&
                  (int)kTfLiteInt32 == (int)kDcTflmInt32 &&
                  (int)kTfLiteInt64 == (int)kDcTflmInt64 && (int)kTfLiteBool == (int)kDcTflmBool &&
                  (int)kTfLiteMmapRo == (int)kDcTflmMmapRo && (int)kTfLiteOk == (int)kDcTflmOk,
              "TfLiteType / status values differ from tflm_abi.h");
#undef DC_SAME

namespace dc_keras {

const TFLMRegistration* Register_HUFFDECODE(DcTflmDecodeMode mode) {
  return reinterpret_cast<const TFLMRegistration*>(DcTflmHuffDecodeRegistration(mode));
}

}  // namespace dc_keras
