/*
 * dc_unpack.h -- turn a packed .tflite (HuffDecode ops, docs/FORMAT.md) into a
 * plain .tflite on the device: no TensorFlow, no Python, no flatbuffers
 * library.  For runtimes and accelerator delegates (GPU, NPU) that take no
 * custom op: unpack once (e.g. at an app's first launch), cache the result,
 * load the cached file as any other model.  See docs/android.md.
 *
 * How (docs/FORMAT.md §15): the input flatbuffer is copied unchanged except
 * for in-place edits, and new Buffer tables holding the decoded bytes are
 * appended after it (16-byte aligned data):
 *   - each HuffDecode op is removed from its subgraph's operator list;
 *   - its output tensor's buffer entry points to a new Buffer with the
 *     decoded bytes (the tensor keeps its index, name, type, shape and
 *     quantization, so signatures and tensor indices are unchanged);
 *   - trailing HuffDecode operator codes are dropped.
 * The packed uint8 tensors stay in the file, unused and (when their data are
 * the file's tail, as dc_keras.export.pack writes them) without data: the
 * result is dc_keras.export.unpack's size plus ~90 B of tables per packed
 * tensor (docs/FORMAT.md §15); for files packed before that layout the packed
 * bytes stay too.  The Python unpacker rewrites the whole flatbuffer.  Every tensor's
 * contents equal dc_keras.export.unpack's, so outputs are bit-identical.
 * A zip of associated files after the model (TFLite metadata's labels / vocabularies, as
 * MetadataPopulator appends them) is moved to the end of the result, same members, its offsets
 * rewritten to count from the result's start (docs/FORMAT.md §15); one that cannot be moved
 * is DC_UNPACK_UNSUPPORTED (dc_align_packed moves it the same way).
 * Not handled (clear error, use dc_keras.export.unpack): a HuffDecode output
 * tensor without a buffer of its own (a DENSIFY output its file gave none;
 * TFLite's converter gives it one, so its EXPERIMENTAL_SPARSITY files unpack), or
 * a buffer shared by tensors that decode to different bytes.
 */
#ifndef DC_UNPACK_H_
#define DC_UNPACK_H_

#include <stddef.h>
#include <stdint.h>

#include "dc_codec.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Statuses of the functions below.  The values are part of the ABI and never change; new
 * statuses are only appended, so treat any value other than DC_UNPACK_OK as an error (`why`
 * says what is wrong).  DC_UNPACK_ARGUMENT is the caller's mistake, not the data's (as
 * dc_codec.h's DC_ERR_ARGUMENT): an app should fix the call, not re-fetch or delete the file;
 * the other errors are about the model bytes (or memory). */
typedef enum {
  DC_UNPACK_OK = 0,
  DC_UNPACK_MALFORMED = 1,   /* not a readable .tflite flatbuffer */
  DC_UNPACK_BAD_PACKED = 2,  /* a HuffDecode op or its packed tensor is invalid */
  DC_UNPACK_UNSUPPORTED = 3, /* valid, but this unpacker cannot rewrite it (see above) */
  DC_UNPACK_TOO_LARGE = 4,   /* the result would pass max_output (2 GiB: flatbuffer offsets) */
  DC_UNPACK_NO_MEMORY = 5,
  DC_UNPACK_ARGUMENT = 6 /* a NULL pointer, an out-of-range argument or an environment variable
                          * DC_KERAS_DECODE_THREADS it cannot read; nothing was read */
} dc_unpack_status;

/* The fix a DC_UNPACK_MALFORMED or DC_UNPACK_BAD_PACKED `why` ends with (after "; "), in the
 * words of dc_keras/_flatbuffer.py's CORRUPT_FIX and NEWER_FIX (tests/test_c_tools.py compares
 * them): the file is damaged (truncated, a checksum mismatch, a bad header or HuffDecode op), or
 * a packed tensor is of a format version newer than DC_VERSION_MAX (its `why` names that version:
 * "it is version 9, which only a decoder with DC_VERSION_MAX >= 9 reads").  An app can tell the
 * two apart with strstr(why, DC_UNPACK_NEWER_FIX): fetch the file again, or update the library. */
#define DC_UNPACK_CORRUPT_FIX \
  "the file is truncated or corrupt: export it again or copy it again from its source"
#define DC_UNPACK_NEWER_FIX                                                                        \
  "it was packed by a newer dc_keras: update dc_keras (and the HuffDecode library an app ships), " \
  "or have that dc_keras write a version this decoder reads: dc-keras unpack, then "               \
  "pack --format-version N (docs/FORMAT.md \xc2\xa7"                                               \
  "10)" /* UTF-8 */

/* `why` / `why_n` of every function below: when why is not NULL and why_n > 0 it is always
 * NUL-terminated: "" on DC_UNPACK_OK, else the reason cut to why_n - 1 bytes.  The fix
 * (DC_UNPACK_CORRUPT_FIX / DC_UNPACK_NEWER_FIX) is appended only when it fits whole, so give at
 * least 512 bytes when the app tells the two apart with strstr.
 * Threads: the functions keep no state between calls and may run on several threads at once
 * (each call starts and joins its own decode threads); they read the environment variable
 * DC_KERAS_DECODE_THREADS with getenv, so do not setenv/putenv it while one runs. */

/* Unpacks `packed` (n bytes; never modified) into a new malloc'd buffer
 * (*out, *out_n; release with dc_unpack_free).  A model without HuffDecode
 * ops comes back as an identical copy.  On error *out is NULL and `why`
 * (why_n bytes, may be NULL) says what is wrong, naming the tensor and the
 * fix (MALFORMED and BAD_PACKED: DC_UNPACK_CORRUPT_FIX or DC_UNPACK_NEWER_FIX
 * above).  Packed tensors are decoded in parallel (dc_decode_many, threads as
 * dc_decode_threads(0)); DC_KERAS_DECODE_THREADS set to anything but a whole
 * number from 0 to 64 is DC_UNPACK_ARGUMENT (dc_decode_threads_check). */
DC_API dc_unpack_status dc_unpack(const uint8_t* packed, size_t n, uint8_t** out, size_t* out_n,
                                  char* why, size_t why_n);

/* Same with a bound on the result's size in bytes (<= 2 GiB - 1): for
 * memory-bounded callers and the fuzz harness. */
DC_API dc_unpack_status dc_unpack_bounded(const uint8_t* packed, size_t n, size_t max_output,
                                          uint8_t** out, size_t* out_n, char* why, size_t why_n);

DC_API void dc_unpack_free(uint8_t* out);

/* One HuffDecode op of a model, as dc_list_huffdecode finds it (checked like dc_unpack does,
 * not decoded): its packed bytes (pointing into the model) and its output tensor. */
typedef struct {
  const uint8_t* packed;
  size_t packed_size;
  size_t output_bytes;
  uint32_t rank;
  int32_t dims[DC_MAX_RANK];
  char name[96]; /* output tensor name (truncated); a nameless one (pack(strip_strings=True)):
                  * "(unnamed tensor N)", N its index in its subgraph (", subgraph S" after N
                  * past the first subgraph), as the library's messages name it */
} dc_huffdecode_op;

/* Lists every HuffDecode op of a .tflite in subgraph/operator order into a malloc'd array
 * (*ops, *num_ops; free()).  Used by the LiteRT CompiledModel kernel (dc_litert_op.c), which
 * must give output shapes without seeing tensor data.  Errors as dc_unpack. */
DC_API dc_unpack_status dc_list_huffdecode(const uint8_t* model, size_t n, dc_huffdecode_op** ops,
                                           size_t* num_ops, char* why, size_t why_n);

/* A copy of a packed .tflite whose packed tensors' bytes start on `alignment` (a power of 2,
 * 16..4096) offsets of the file: each misaligned one is appended again, aligned, and its Buffer
 * entry pointed there (the model grows by those bytes).  LiteRT's CompiledModel hands a custom
 * op's constant input over as a host buffer and refuses one that is not 64-byte aligned
 * ("Unaligned host memory pointer"), while .tflite writers align data to 16: use 64 before
 * the custom-op route (dc_litert_op.c), and load the result from 64-byte aligned memory.
 * *out is malloc'd (release with dc_unpack_free); NULL on error, with `why` as dc_unpack's. */
DC_API dc_unpack_status dc_align_packed(const uint8_t* model, size_t n, size_t alignment,
                                        uint8_t** out, size_t* out_n, char* why, size_t why_n);

#ifdef __cplusplus
}
#endif

#endif /* DC_UNPACK_H_ */
