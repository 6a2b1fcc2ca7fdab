/*
 * huffdecode_tflm.h -- the HuffDecode custom op for TensorFlow Lite Micro (C99, no
 * allocation outside the TFLM arena, no TFLM headers needed: tflm_abi.h).
 *
 * A packed model (dc_keras.export.pack) feeds each packed weight, a constant uint8 1-D
 * tensor holding docs/FORMAT.md bytes, through a "HuffDecode" node whose output is the
 * original weight tensor.  Two ways to run that node (docs/microcontrollers.md):
 *
 *  DC_TFLM_DECODE_ONCE (default): Prepare allocates a persistent arena buffer for the
 *      decoded tensor and points the output at it, so TFLM's memory planner gives the output
 *      no planned memory, checks the packed bytes' CRC and asks for the decoder's workspace as
 *      a scratch buffer (planned for this op alone: it shares memory with tensors not alive
 *      here); the first Invoke decodes, the later ones do nothing.  Arena cost: the decoded
 *      bytes for the interpreter's lifetime.  Fastest after the first Invoke, which carries
 *      the decode.  A tensor that needs no workspace, and a format version 1 tensor (whose
 *      checksum covers the decoded bytes) with a persistent workspace, decode in Prepare.
 *  DC_TFLM_DECODE_EACH_INVOKE: every Invoke decodes into the output's planned memory
 *      (shared with other tensors whose lifetimes do not overlap: the packer puts each
 *      HuffDecode right before the weight's consumer) with the workspace in a scratch
 *      buffer.  Arena cost: the largest decoded layer instead of the sum; costs the decode
 *      time at every inference.  Prepare checks the packed bytes' CRC (docs/FORMAT.md §8), so
 *      corrupt data fails AllocateTensors in this mode too, not each Invoke.
 *
 * Per layer: a HuffDecode operator whose custom options are the single byte 0 or 1
 * decodes once / every invoke whatever the registration's default (empty options: the
 * default; tools/mcu/set_decode_mode.py writes them).
 *
 * Registering (C++ TFLM application, with huffdecode_tflm_register.cc compiled in):
 *     tflite::MicroMutableOpResolver<N> resolver;
 *     resolver.AddCustom("HuffDecode", dc_keras::Register_HUFFDECODE());
 * PyPI tflite-micro wheel (Python): load libdc_huffdecode_tflm.so with RTLD_GLOBAL, then
 *     tflite_micro.runtime.Interpreter.from_bytes(model,
 *         custom_op_registerers=["DcKerasRegisterHuffDecodeTflm"])
 * (or "DcKerasRegisterHuffDecodeTflmEachInvoke"); huffdecode_tflm_wheel.c.
 */
#ifndef DC_HUFFDECODE_TFLM_H_
#define DC_HUFFDECODE_TFLM_H_

#include "tflm_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { DC_TFLM_DECODE_ONCE = 0, DC_TFLM_DECODE_EACH_INVOKE = 1 } DcTflmDecodeMode;

/* The op's registration with the given default mode (static storage, never NULL; the resolver
 * copies it).  Its layout is TFLM's TFLMRegistration (asserted in huffdecode_tflm_register.cc).
 * Any number of interpreters, on any threads, may use it: each node keeps its state in its own
 * interpreter's arena.  Errors (a bad or too-new packed tensor, a layout left out of this
 * dc_codec.c build, corrupt packed bytes, an arena too small) fail AllocateTensors: in Prepare with
 * a message through the interpreter's error reporter naming the output tensor and the fix, each
 * under 256 characters (TFLM's Cortex-M logger's line), or, for an arena too small for the planned
 * tensors and scratch buffers (the workspace, in both modes), in TFLM's planner with its message.
 * The packed input's data pointer must be what TFLM gives a constant: the elements of the
 * flatbuffer's data vector, right after its u32 element count, which the kernel checks against
 * the input's shape (TFLM passes no buffer size); an output with data before the first Prepare (a
 * constant of the flatbuffer) is refused.  A host driver with its own context (fuzz/tflm_stand_in.h,
 * tools/mcu/tflm_mock_ctx.c) lays the packed bytes out the same way. */
const DcTflmRegistration* DcTflmHuffDecodeRegistration(DcTflmDecodeMode default_mode);

/* What DcTflmCheckModel found. */
typedef enum {
  DC_TFLM_MODEL_OK = 0,
  DC_TFLM_MODEL_MISSING = 1,          /* NULL, or fewer than 8 bytes */
  DC_TFLM_MODEL_MISALIGNED = 2,       /* not at a 16-byte aligned address */
  DC_TFLM_MODEL_NOT_TFLITE = 3,       /* no "TFL3" file identifier at bytes 4-7 */
  DC_TFLM_MODEL_DAMAGED = 4,          /* an offset points outside the SIZE bytes */
  DC_TFLM_MODEL_SCHEMA_VERSION = 5,   /* Model.version is not 3 */
  DC_TFLM_MODEL_EXTERNAL_BUFFERS = 6, /* a Buffer's data stored after the flatbuffer */
  DC_TFLM_MODEL_NO_SUBGRAPH = 7       /* no subgraph */
} DcTflmModelCheck;

/* huffdecode_tflm_check.c (optional: compile it in to call these).  Checks, before
 * tflite::GetModel(model), what TFLM itself does not and would fault or misread on
 * (docs/microcontrollers.md, *Checking the model array*): the array's alignment (TFLM reads the
 * flatbuffer and the raw constants in place with word and float loads: a misaligned array
 * HardFaults in AllocateTensors on Cortex-M, with no message), the file identifier, that the
 * Model table, its vtable, its subgraph and buffer vectors and every Buffer's data lie inside the
 * SIZE bytes (a truncated or overwritten image, or the size of something else), the schema version
 * and data stored after the flatbuffer (pack --buffers external).  Not a full flatbuffer
 * verification (operators and tensors are not walked) and no checksum of raw constants: packed
 * tensors carry their own CRC, which HuffDecode's Prepare checks.  Reads only, byte by byte (any
 * alignment, any byte order); O(number of buffers).  Usage:
 *     DcTflmModelCheck c = DcTflmCheckModel(g_model, g_model_len);
 *     if (c != DC_TFLM_MODEL_OK) { MicroPrintf("%s", DcTflmModelCheckMessage(c)); return; }
 *     const tflite::Model* model = tflite::GetModel(g_model); */
DcTflmModelCheck DcTflmCheckModel(const void* model, size_t size);

/* The check's message (under 256 characters, naming the problem and the fix); "" with
 * TF_LITE_STRIP_ERROR_STRINGS defined (TFLM's BUILD_TYPE=release), where only the code remains. */
const char* DcTflmModelCheckMessage(DcTflmModelCheck check);

/* The op name the packer writes into the model. */
#define DC_TFLM_HUFFDECODE_NAME "HuffDecode"

#ifdef __cplusplus
}
#endif
#endif /* DC_HUFFDECODE_TFLM_H_ */
