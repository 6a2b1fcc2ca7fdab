/*
 * dc_codec.h -- public C99 API of the dc_keras packed-tensor decoder.
 *
 * The byte format is specified in docs/FORMAT.md; every function here cites
 * the section it implements.  No TensorFlow headers, no allocation: the
 * caller owns every buffer.  Safe on any input: a malformed or hostile
 * buffer yields an error code, never an out-of-bounds read or write.
 */
#ifndef DC_CODEC_H_
#define DC_CODEC_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define DC_API __declspec(dllexport)
#else
#define DC_API __attribute__((visibility("default")))
#endif

/* Element types: numerically equal to the TensorType enum of the TFLite flatbuffer schema
 * (schema.fbs). Note that the runtime's TfLiteType enum numbers some types differently
 * (float32 is 1 and float16 is 10 there), so the op maps between the two explicitly. */
enum {
  DC_DTYPE_FLOAT32 = 0,
  DC_DTYPE_FLOAT16 = 1,
  DC_DTYPE_INT32 = 2,
  DC_DTYPE_UINT8 = 3,
  DC_DTYPE_INT16 = 7,
  DC_DTYPE_INT8 = 9
};

#define DC_MAX_RANK 8

/* Other limits of format version 1 (docs/FORMAT.md section 1). */
#define DC_MAX_ELEMENTS 2147483647u /* element count <= 2^31 - 1            */
#define DC_MAX_SYMBOLS 4096u        /* codebook size and gap alphabet size  */
#define DC_MAX_CODE_LENGTH 12u      /* Huffman code length limit            */
#define DC_NUM_STREAMS 4u           /* interleaved bit streams              */
#define DC_MAX_ZERO_BIT_OUTPUT (1u << 24) /* output bytes if all codes are zero-bit */

typedef enum {
  DC_OK = 0,
  DC_ERR_TRUNCATED = 1,      /* buffer shorter than a size it declares     */
  DC_ERR_MAGIC = 2,          /* not a packed tensor                        */
  DC_ERR_VERSION = 3,        /* unsupported format version                 */
  DC_ERR_DTYPE = 4,          /* unknown element type                       */
  DC_ERR_SHAPE = 5,          /* rank/dims invalid or element count overflow */
  DC_ERR_CODEBOOK = 6,       /* codebook size invalid                      */
  DC_ERR_LAYOUT = 7,         /* unknown layout or bad layout parameters    */
  DC_ERR_CODE_LENGTHS = 8,   /* Huffman code lengths do not form a code    */
  DC_ERR_STREAM = 9,         /* bit stream invalid, overrun or underrun    */
  DC_ERR_SIZE_MISMATCH = 10, /* declared sizes disagree with each other    */
  DC_ERR_CHECKSUM = 11,      /* decoded content fails the checksum         */
  DC_ERR_OUTPUT_SIZE = 12,   /* caller's output buffer has the wrong size  */
  DC_ERR_ARGUMENT = 13       /* NULL pointer or other API misuse           */
} dc_status;

/* Header facts needed before decoding (to size the output). */
typedef struct {
  uint32_t version;
  uint32_t dtype;          /* DC_DTYPE_* */
  uint32_t rank;           /* 0..DC_MAX_RANK */
  uint64_t dims[DC_MAX_RANK];
  uint64_t num_elements;   /* product of dims (1 for rank 0) */
  uint64_t element_size;   /* bytes per element */
  uint64_t output_bytes;   /* num_elements * element_size */
} dc_tensor_info;

/* Parse and validate the header (docs/FORMAT.md section "Header").  Checks
 * everything that can be checked without decoding, including that the
 * declared sizes fit inside `size`; sets *info on success. */
DC_API dc_status dc_peek(const uint8_t* data, size_t size, dc_tensor_info* info);

/* Decode the whole tensor into `out` (exactly info.output_bytes bytes,
 * little-endian elements, C order; any alignment), verifying the checksum
 * (docs/FORMAT.md sections 5-9).  On error the content of `out` is
 * unspecified but nothing outside it was written.  Uses about 34 KB of stack
 * (decode tables and codebook), allocates nothing, is reentrant. */
DC_API dc_status dc_decode(const uint8_t* data, size_t size, void* out,
                           size_t out_size);

/* Static English description of a status code. */
DC_API const char* dc_strerror(dc_status status);

#ifdef __cplusplus
}
#endif
#endif /* DC_CODEC_H_ */
