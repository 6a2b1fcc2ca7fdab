/*
 * dc_codec.h -- public C99 API of the dc_keras packed-tensor decoder.
 *
 * The byte format is specified in docs/FORMAT.md; every function here cites
 * the section it implements.  No TensorFlow headers, no allocation: the
 * caller owns every buffer.  Safe on any input: a malformed or hostile
 * buffer yields an error code, never an out-of-bounds read or write.
 *
 * Threads: every function is reentrant and may run on several threads at once (the only global
 * state written is, on x86-64, a cache of CPU features that every thread sets to the same value),
 * except dc_codec_use_simd and dc_codec_portable_fast, which set process-wide switches without
 * synchronization: call them before other threads decode.  Errors: a function
 * that returns a dc_status leaves its output parameters (*info, *bytes) unwritten unless it
 * returns DC_OK; dc_strerror never returns NULL.
 *
 * Two entry points decode:
 *  - dc_decode_ws (microcontrollers, and anything with a small stack): decode
 *    tables live in a caller-provided workspace of dc_workspace_size() bytes
 *    (at most DC_MAX_WORKSPACE, sized to the tensor's real code lengths); no
 *    function of the decoder uses more than 4 KiB of stack on this path (gcc
 *    -fstack-usage, -O2: largest frame 784 B on x86-64 with gcc 12.2, measured
 *    2026-12-01; Cortex-M4 frames and the painted high-water mark (~1.1 KB):
 *    docs/microcontrollers.md; make test-mcu fails past 4 KiB).
 *  - dc_decode (host convenience): the same, with the workspace on its own
 *    stack: DC_MAX_WORKSPACE bytes (~16.5 KB); DC_FAST_WORKSPACE (~48 KB) on
 *    x86-64, where it buys the §6 and §14 pair-table paths and the §5
 *    spread-codebook loop; ~24.5 KB on other 64-bit targets (the spread loop).
 *
 * Build options (flash, for microcontrollers): each -D below leaves some decode loops out of
 * dc_codec.c; a packed tensor that needs one is refused by dc_peek, dc_verify,
 * dc_workspace_size and dc_decode(_ws) with DC_ERR_UNSUPPORTED (its dc_strerror names the
 * options of the build).  The default (none) decodes everything.  Savings for Cortex-M4:
 * docs/microcontrollers.md ("Code size").
 *  - DC_CODEC_NO_64BIT: element types int64, uint64, float64 (§16).
 *  - DC_CODEC_NO_SUBBYTE: int4, int2, uint4 (§13).
 *  - DC_CODEC_NO_GROUPED: layouts 2 and 3, per-channel codebooks (§11).
 *  - DC_CODEC_NO_FLOAT_PLANES: layout 4 (§12).
 *  - DC_CODEC_NO_CONTEXT: layout 5, the context-modelled sparse layout (§14).
 *  - DC_CODEC_NO_INT_PLANES: layout 6, integer planes of unclustered wide integers (§17).
 *  - DC_CODEC_NO_SPARSE_PLANES: layout 7, sparse float planes of pruned unclustered floats (§18).
 *  - DC_CODEC_NO_SPREAD: not a format feature but a speed path: the §5 float32 spread-codebook
 *    loops, which 32-bit targets take only when dc_codec_portable_fast(2) forces them (then the
 *    reference loop runs instead).  No tensor is refused.
 *  - DC_CODEC_MINIMAL: all of the above; left: layouts 0 and 1 (§5, §6) of the 1, 2 and 4 byte
 *    element types, i.e. what pack(version=1) writes.
 * DC_CRC_SMALL_TABLE (dc_codec_crc.h) also saves flash, at the cost of CRC speed.
 */
#ifndef DC_CODEC_H_
#define DC_CODEC_H_

#ifdef DC_CODEC_MINIMAL
#ifndef DC_CODEC_NO_64BIT
#define DC_CODEC_NO_64BIT
#endif
#ifndef DC_CODEC_NO_SUBBYTE
#define DC_CODEC_NO_SUBBYTE
#endif
#ifndef DC_CODEC_NO_GROUPED
#define DC_CODEC_NO_GROUPED
#endif
#ifndef DC_CODEC_NO_FLOAT_PLANES
#define DC_CODEC_NO_FLOAT_PLANES
#endif
#ifndef DC_CODEC_NO_CONTEXT
#define DC_CODEC_NO_CONTEXT
#endif
#ifndef DC_CODEC_NO_INT_PLANES
#define DC_CODEC_NO_INT_PLANES
#endif
#ifndef DC_CODEC_NO_SPARSE_PLANES
#define DC_CODEC_NO_SPARSE_PLANES
#endif
#ifndef DC_CODEC_NO_SPREAD
#define DC_CODEC_NO_SPREAD
#endif
#endif

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The one export macro of the library (also used by huffdecode_op.c's entry points). */
#ifndef DC_API
#if defined(_WIN32)
#define DC_API __declspec(dllexport)
#else
#define DC_API __attribute__((visibility("default")))
#endif
#endif

/* §2: the first 4 bytes of every packed tensor, and the versions this decoder reads (§10). */
#define DC_MAGIC "DCHF"
#define DC_VERSION_MIN 1u
#define DC_VERSION_MAX 5u

/* §2 layouts (header byte 7); §10 gives the first version that allows each. */
enum {
  DC_LAYOUT_DENSE = 0,          /* §5, version >= 1 */
  DC_LAYOUT_SPARSE = 1,         /* §6, version >= 1 */
  DC_LAYOUT_GROUPED_DENSE = 2,  /* §11, version >= 2 */
  DC_LAYOUT_GROUPED_SPARSE = 3, /* §11, version >= 2 */
  DC_LAYOUT_FLOAT_PLANES = 4,   /* §12, version >= 2 */
  DC_LAYOUT_CONTEXT_SPARSE = 5, /* §14, version >= 2 */
  DC_LAYOUT_INT_PLANES = 6,     /* §17, version >= 4 */
  DC_LAYOUT_SPARSE_PLANES = 7   /* §18, version >= 5 */
};

/* Element types (§2): numerically equal to the TensorType enum of the TFLite flatbuffer schema
 * (schema.fbs). Note that the runtime's TfLiteType enum numbers some types differently
 * (float32 is 1 and float16 is 10 there), so the op maps between the two explicitly.
 * INT4, INT2 and UINT4 are sub-byte types (§13): the output is packed as TFLite stores them.
 * Version 3 (§16) adds INT64, BOOL, FLOAT64, UINT64, UINT32, UINT16; the 8-byte ones use layouts
 * 0, 1 and 5, BOOL layouts 0 and 1 (codebook values 0 or 1), UINT32/UINT16 all but layout 4.
 * Version 4 (§17) adds layout 6 for INT16, UINT16, INT32, UINT32, INT64, UINT64; version 5 (§18)
 * adds layout 7 for FLOAT32, FLOAT16, BFLOAT16. */
enum {
  DC_DTYPE_FLOAT32 = 0,   /* version >= 1 */
  DC_DTYPE_FLOAT16 = 1,   /* version >= 1 */
  DC_DTYPE_INT32 = 2,     /* version >= 1 */
  DC_DTYPE_UINT8 = 3,     /* version >= 1 */
  DC_DTYPE_INT16 = 7,     /* version >= 1 */
  DC_DTYPE_INT8 = 9,      /* version >= 1 */
  DC_DTYPE_INT4 = 17,     /* version >= 2, §13 */
  DC_DTYPE_BFLOAT16 = 18, /* version >= 2 */
  DC_DTYPE_INT2 = 19,     /* version >= 2, §13 */
  DC_DTYPE_UINT4 = 20,    /* version >= 2, §13 */
  DC_DTYPE_INT64 = 4,     /* version >= 3, §16 (8-byte elements) */
  DC_DTYPE_BOOL = 6,      /* version >= 3, §16 (one byte, 0 or 1) */
  DC_DTYPE_FLOAT64 = 10,  /* version >= 3, §16 */
  DC_DTYPE_UINT64 = 12,   /* version >= 3, §16 */
  DC_DTYPE_UINT32 = 15,   /* version >= 3, §16 */
  DC_DTYPE_UINT16 = 16    /* version >= 3, §16 */
};

#define DC_MAX_RANK 8

/* Other limits (docs/FORMAT.md section 1). */
#define DC_MAX_ELEMENTS 2147483647u       /* element count <= 2^31 - 1            */
#define DC_MAX_SYMBOLS 4096u              /* codebook size and gap alphabet size  */
#define DC_MAX_CODE_LENGTH 12u            /* Huffman code length limit            */
#define DC_NUM_STREAMS 4u                 /* interleaved bit streams              */
#define DC_MAX_ZERO_BIT_OUTPUT (1u << 24) /* output bytes if all codes are zero-bit */
#define DC_MAX_INDEX_CONTEXTS 8u     /* §14: index codes of the context-modelled sparse layout */
#define DC_MAX_TABLE_ENTRIES 8192u   /* §14: decode-table entries of all codes of one tensor */
#define DC_MAX_CONTEXT_SYMBOLS 1024u /* §14: codebook size limit of the context layout */
/* Largest workspace dc_workspace_size() can ask for: two 2^12-entry u16 tables + alignment
 * (§14 keeps all its tables within the same 2 * 2^12 entries). */
#define DC_MAX_WORKSPACE (2u * 2u * (1u << DC_MAX_CODE_LENGTH) + 16u)
/* A workspace of this size (>= DC_MAX_WORKSPACE) lets dc_decode_ws take its fastest paths (x86-64:
 * §6 float32 with a 2^12-entry gap + index pair table after the index table, §14 float32 with
 * two such tables after its tables (<= 2^13 entries); x86-64 and other 64-bit targets: §5 float32
 * with K <= 256 and >= 8 K elements with a 64 K-byte spread codebook after the index table);
 * dc_decode uses it on x86-64.  48 KB (24 KB before §14's tables: a workspace of that size still
 * takes the other fast paths). */
#define DC_FAST_WORKSPACE \
  (2u * 2u * (1u << DC_MAX_CODE_LENGTH) + 8u * (1u << DC_MAX_CODE_LENGTH) + 16u)

typedef enum {
  DC_OK = 0,
  DC_ERR_TRUNCATED = 1,      /* buffer shorter than a size it declares     */
  DC_ERR_MAGIC = 2,          /* not a packed tensor                        */
  DC_ERR_VERSION = 3,        /* unsupported format version                 */
  DC_ERR_DTYPE = 4,          /* unknown element type (for this version/layout) */
  DC_ERR_SHAPE = 5,          /* rank/dims invalid or element count overflow */
  DC_ERR_CODEBOOK = 6,       /* codebook size or value invalid             */
  DC_ERR_LAYOUT = 7,         /* unknown layout or bad layout parameters    */
  DC_ERR_CODE_LENGTHS = 8,   /* Huffman code lengths do not form a code    */
  DC_ERR_STREAM = 9,         /* bit stream invalid, overrun or underrun    */
  DC_ERR_SIZE_MISMATCH = 10, /* declared sizes disagree with each other    */
  DC_ERR_CHECKSUM = 11,      /* content fails the checksum                 */
  DC_ERR_OUTPUT_SIZE = 12,   /* caller's output buffer has the wrong size  */
  DC_ERR_ARGUMENT = 13,      /* NULL pointer or other API misuse           */
  DC_ERR_WORKSPACE = 14,     /* workspace smaller than dc_workspace_size() */
  DC_ERR_UNSUPPORTED = 15    /* type/layout left out of this build: DC_CODEC_NO_* */
} dc_status;

/* Header facts needed before decoding (to size the output). */
typedef struct {
  uint32_t version;
  uint32_t dtype; /* DC_DTYPE_* */
  uint32_t rank;  /* 0..DC_MAX_RANK */
  uint64_t dims[DC_MAX_RANK];
  uint64_t num_elements; /* product of dims (1 for rank 0) */
  uint64_t element_size; /* bytes per element (1 for the sub-byte types, 8 for 64-bit ones) */
  uint64_t output_bytes; /* num_elements * element_bits / 8, rounded up */
  uint32_t layout;       /* DC_LAYOUT_* */
  uint32_t element_bits; /* 2, 4, 8, 16, 32 or 64 */
} dc_tensor_info;

/* Parse and validate the header (docs/FORMAT.md §2-§7, §9, §11-§14, §16-§18).  Checks
 * everything that can be checked without decoding, including that the
 * declared sizes fit inside `size`; sets *info on success (only then).  Does not verify
 * the checksum (dc_decode / dc_decode_ws do).  DC_ERR_ARGUMENT if info is NULL; DC_ERR_VERSION for
 * a version outside DC_VERSION_MIN..DC_VERSION_MAX (header byte 4 holds it); DC_ERR_UNSUPPORTED
 * for a type/layout this build leaves out (DC_CODEC_NO_*). */
DC_API dc_status dc_peek(const uint8_t* data, size_t size, dc_tensor_info* info);

/* dc_peek's checks plus, for versions 2 to 5, the CRC of the packed bytes (§8), decoding nothing:
 * DC_OK, DC_ERR_CHECKSUM or dc_peek's error.  Version 1's checksum covers the decoded output, so
 * for it this is dc_peek (dc_decode checks it). */
DC_API dc_status dc_verify(const uint8_t* data, size_t size);

/* Workspace bytes dc_decode_ws needs for this tensor (2 bytes per decode-table entry, 2^L
 * entries per Huffman code of max length L, plus alignment slack; <= DC_MAX_WORKSPACE), in *bytes
 * on DC_OK only; dc_peek's errors otherwise (DC_ERR_ARGUMENT if bytes is NULL). */
DC_API dc_status dc_workspace_size(const uint8_t* data, size_t size, size_t* bytes);

/* Decode the whole tensor into `out` (exactly info.output_bytes bytes,
 * little-endian elements, C order; any alignment), verifying the checksum
 * (docs/FORMAT.md sections 5-18; versions 2 to 5 check the input's CRC before
 * decoding).  `workspace` (any alignment) must hold dc_workspace_size() bytes.
 * On error the content of `out` is unspecified but nothing outside it was
 * written.  Allocates nothing, is reentrant, <= 4 KiB of stack. */
DC_API dc_status dc_decode_ws(const uint8_t* data, size_t size, void* out, size_t out_size,
                              void* workspace, size_t workspace_size);

/* dc_decode_ws with a workspace on the stack (host convenience): DC_FAST_WORKSPACE bytes on
 * x86-64 (gcc/clang), ~24.5 KB on other 64-bit targets, DC_MAX_WORKSPACE elsewhere. */
DC_API dc_status dc_decode(const uint8_t* data, size_t size, void* out, size_t out_size);

/* §8: CRC-32 (zlib's crc32: ISO-HDLC polynomial, reflected, init and final xor 0xFFFFFFFF)
 * of `len` bytes, continuing from `crc` (0 to start). */
DC_API uint32_t dc_crc32(uint32_t crc, const uint8_t* p, size_t len);

/* The x86-64 fast paths (CRC-32 by carry-less multiplication, §5/§6 32-bit decode with BMI2
 * (§5 with a spread codebook), §6 with AVX2 or AVX-512 stores; used where the CPU has them): off (0) runs the portable code
 * only, 2 allows all but the AVX-512 ones, for tests and benchmarks that compare them.
 * Process-wide; returns the previous setting (default 1: all). */
DC_API int dc_codec_use_simd(int on);

/* The portable (plain C) §5 float32 spread-codebook loop, taken when the workspace has room for
 * its codebook (dc_decode on 64-bit targets; never with dc_workspace_size's exact size):
 * 0 off (the reference loop), 1 (default) on 64-bit targets where no x86-64 BMI2 loop runs and
 * dc_codec_use_simd is not 0, 2 forced on any target, before the BMI2 loops and whatever
 * dc_codec_use_simd says, for tests and benchmarks that compare it with the reference
 * (dc_codec_use_simd(0), or this set to 0).  Process-wide; returns the previous setting.
 * A DC_CODEC_NO_SPREAD build has no such loop: every setting runs the reference loop. */
DC_API int dc_codec_portable_fast(int mode);

/* Static English description of a status code (never NULL; "unknown status code" for a value
 * not in dc_status).  The string is constant: do not free it. */
DC_API const char* dc_strerror(dc_status status);

/* What a front end calls a tensor dc_peek refused, before dc_strerror's text: a newer format
 * version or a feature this build leaves out is not a corrupt tensor. */
#define DC_PEEK_FAILURE(st)                                                                   \
  (((st) == DC_ERR_VERSION || (st) == DC_ERR_UNSUPPORTED) ? "packed tensor not readable here" \
                                                          : "invalid packed tensor")

#ifdef __cplusplus
}
#endif
#endif /* DC_CODEC_H_ */
