/* dc_codec_internal.h -- parsed header of a packed tensor (docs/FORMAT.md), shared by
 * dc_codec.c and the C tests; not part of the public API. */
#ifndef DC_CODEC_INTERNAL_H_
#define DC_CODEC_INTERNAL_H_

#include <stddef.h>
#include <stdint.h>

#include "dc_codec.h"

/* §4 alphabet descriptor. */
typedef struct {
  uint32_t n;             /* alphabet size */
  uint32_t max_len;       /* L: 0 (single zero-bit symbol) .. 12 */
  uint32_t min_len;       /* shortest code length in use (0 if L = 0) */
  uint32_t single;        /* the symbol when L = 0 */
  const uint8_t* lengths; /* ceil(n/2) nibble bytes when L > 0, points into the input */
} dc_alphabet;

/* §18: symbols 0..255 (§12's, with a rest), 256 (the background B), 257 (B, sign flipped). */
#define DC_SPARSE_PLANE_SYMBOLS 258u

/* dc_header.free_run of a §14 tensor whose zero-bit entries can follow each other forever. */
#define DC_FREE_UNBOUNDED 0xFFFFFFFFu

typedef struct {
  dc_tensor_info info;
  uint32_t layout;           /* DC_LAYOUT_* */
  uint32_t sparse;           /* layout has gap/index entries (§6, §11, §14, §18) */
  size_t check_pos;          /* offset of the checksum field(s) (§2) */
  uint32_t check_a, check_b; /* version 1: Fletcher-64 (§8.1) */
  uint32_t check;            /* version 2: CRC-32 (§8) */
  uint32_t k;                /* codebook entries (per group for §11) */
  uint32_t groups;           /* C: codebook tables (1 unless §11) */
  uint32_t axis;             /* §11 */
  uint64_t inner;            /* §11: elements per run of one group (product of dims after axis) */
  uint32_t cb_esize;         /* bytes per codebook value (1 for the sub-byte types, §13) */
  const uint8_t* codebook;   /* groups * k * cb_esize bytes, points into the input */
  uint32_t background;       /* sparse: codebook index */
  uint64_t entries;          /* sparse: E */
  uint64_t stored;           /* §18: R, the entries with a rest (symbol < 256) */
  uint32_t gap_alphabet;     /* sparse: G */
  dc_alphabet gap_code, index_code;   /* index_code: §12/§18's symbol code, §17's class code */
  uint32_t contexts;                  /* §14: index codes C (0 for other layouts) */
  uint64_t seg_start[DC_NUM_STREAMS]; /* §14: first position of each stream's segment */
  const uint8_t* classes;             /* §14: ceil(K/2) class nibbles, points into the input */
  dc_alphabet ctx_code[DC_MAX_INDEX_CONTEXTS]; /* §14: index code of each context */
  uint32_t free_run;  /* §14, §9: most zero-bit entries in a row (DC_FREE_UNBOUNDED: no limit) */
  size_t streams_pos; /* first stream byte (= end of the §8.1 header) */
  size_t stream_start[DC_NUM_STREAMS];
  uint64_t stream_size[DC_NUM_STREAMS];
  uint64_t stream_count[DC_NUM_STREAMS]; /* symbols (dense) or entries (sparse) per stream */
  size_t rest_pos;                       /* §12: raw plane offset */
  uint32_t rest_bytes;                   /* §12: raw bytes per element */
  uint32_t predictor;                    /* §17: 0 base, 1 previous element */
  uint64_t base;                         /* §17: base value; §18: background B (bit patterns) */
  uint32_t elem_lo, elem_hi; /* §17: fewest / most bits of one element (code + extra) */
} dc_header;

/* Parses and validates everything of §2-§7, §9, §11-§13 that needs no decoding. */
dc_status dc_parse(const uint8_t* data, size_t size, dc_header* h);

/* §8.1 (version 1): Fletcher update over `nwords` little-endian 32-bit words at p. */
void dc_checksum_update(uint32_t* a, uint32_t* b, const uint8_t* p, size_t nwords);

/* Compressed rows of a 2-D sparse tensor [rows, cols] (dc_decode_rows). */
typedef struct {
  uint32_t rows, cols;        /* the tensor's dims (cols <= 65536) */
  const uint16_t* value_code; /* per (group, codebook index), group-major: the value's 8-bit
                               * code, or 256 for a value not kept (background, zero) */
  uint64_t value_code_len;    /* entries: >= groups * K (groups: 1 unless §11) */
  uint32_t* row_ptr; /* rows + 1 entries: row r's kept values are [row_ptr[r], row_ptr[r+1]) */
  uint16_t* col;     /* capacity entries: column of each kept value, increasing per row */
  uint8_t* code;     /* capacity entries: value code of each kept value */
  uint64_t capacity; /* >= E (entry count, §6) */
  uint16_t* tables;  /* workspace: 2 << DC_MAX_CODE_LENGTH entries for the two decode tables
                      * (the caller's, so the decoder keeps no 16 KB frame on a small stack) */
  uint32_t* pairs;   /* workspace: 2 << DC_MAX_CODE_LENGTH entries (ungrouped tensors: the
                      * gap + index pair table, then a chunk of decoded entries) */
  uint64_t nnz;      /* out: kept values */
  int crc_checked;   /* 1: the caller checks §8's CRC itself (dc_crc_ok) before it uses the rows
                      * (e.g. on another thread during the decode); 0: dc_decode_rows does, first */
  uint32_t* value;   /* dc_decode_value_rows: capacity entries, the bit pattern of each kept value
                      * (instead of code and value_code, unused there); NULL for dc_decode_rows */
  int table;         /* dc_decode_value_rows: 1 a lookup table's rows (only +0.0 left out: -0.0
                      * kept, background +0.0 only, capacity > E), 0 an FC weight's (±0 left out) */
} dc_rows;

/* A §7 bit reader (dc_codec.c's `bitreader`): the next stream bits, LSB = next bit, of which the
 * low `count` are valid; pos: next byte to load (absolute offset; may pass `end`). */
typedef struct {
  uint64_t bits;
  uint32_t count;
  size_t pos;
  size_t start, end;
} dc_bitreader;

/* dc_decode_rows of an ungrouped tensor (§6, layout 1) in stages, so that decoding the entries
 * and placing them into the rows can run on two threads (dc_sparse_fc.c): dc_rows_plain_begin,
 * then chunks of at most DC_ROWS_CHUNK entries, each decoded by dc_rows_plain_decode into a
 * buffer and placed by dc_rows_plain_place in the same order, then dc_rows_plain_end.  The
 * decode side touches only `dec`, the place side only `place` and r's arrays (64 bytes apart).
 * Same entries, checks and statuses as dc_decode_rows. */
#define DC_ROWS_CHUNK 4096u
typedef struct {
  struct {
    dc_bitreader br[4];
    uint64_t j; /* entries decoded */
    const uint8_t* data;
    const dc_header* h;
    const uint16_t* itab;
    const uint32_t* pairs;
    const uint16_t* vc;
  } dec;
  char pad_[64];
  struct {
    uint64_t q, k, rend, base, row; /* position + 1 of the last entry, kept values, row state */
    uint64_t n;                     /* the tensor's elements (§6: q <= n) */
    dc_rows* r;
  } place;
} dc_rows_plain_state;

/* Checks and prepares as dc_decode_rows (its statuses: the arguments, then the CRC unless
 * r->crc_checked); DC_ERR_ARGUMENT also for a tensor that is not ungrouped (§11: use
 * dc_decode_rows).  r->tables and r->pairs hold the decode tables until dc_rows_plain_end. */
dc_status dc_rows_plain_begin(const uint8_t* data, size_t size, const dc_header* h, dc_rows* r,
                              dc_rows_plain_state* s);
/* Decodes the next chunk of entries into words[0 .. return value) (at most max, a multiple of 8
 * up to DC_ROWS_CHUNK); 0 when the chunked part is done (the rest is dc_rows_plain_end's). */
size_t dc_rows_plain_decode(dc_rows_plain_state* s, uint32_t* words, size_t max);
/* Places n decoded entries; DC_ERR_STREAM for a position past the tensor (§6). */
dc_status dc_rows_plain_place(dc_rows_plain_state* s, const uint32_t* words, size_t n);
/* The last entries (decoded and placed one by one), §6's and §7's end checks, r->nnz. */
dc_status dc_rows_plain_end(dc_rows_plain_state* s);

/* §8: the CRC-32 of a version 2 tensor parsed into *h from the same bytes matches its field. */
int dc_crc_ok(const dc_header* h, const uint8_t* data, size_t size);

/* Decodes a version >= 2 sparse tensor (§6, or §11 layout 3) of rank 2, already parsed into *h
 * by dc_parse from the same bytes, straight into compressed rows: no dense tensor.  Same checks
 * and statuses as dc_decode_ws (CRC first, §8; then §6/§7/§9); DC_ERR_ARGUMENT for a tensor it
 * does not handle (other layout or version, rank, sizes). */
dc_status dc_decode_rows(const uint8_t* data, size_t size, const dc_header* h, dc_rows* r);

/* Decodes a float32 §18 tensor (layout 7) of rank 2 whose background B is +0.0 or -0.0, already
 * parsed into *h by dc_parse from the same bytes, straight into rows of its non-zero elements
 * (bit patterns x with x << 1 != 0: every ±0, stored or not, left out), each with its bit pattern
 * in r->value (r->code, r->value_code and r->pairs unused): no dense tensor.  The walk of
 * dc_decode's §18 loop (sparse_planes_body), with its checks and statuses (CRC first unless
 * r->crc_checked, §8); r->capacity must exceed R (h->stored: the decoder writes one entry past the
 * last value it keeps), r->tables hold 2 << DC_MAX_CODE_LENGTH entries.  r->table = 1 (a lookup
 * table, copied bit for bit): every element but +0.0 is kept, -0.0 included (stored, or an entry
 * of symbol 256 / 257), B must be +0.0, or -0.0 with G = 1 (every element an entry: tfmot's
 * tensors, whose -0.0s may outnumber their +0.0s), and r->capacity exceed E (h->entries: each
 * entry may keep one).  DC_ERR_ARGUMENT for a tensor it does not handle (other layout or dtype,
 * rank, sizes, a background other than ±0, or a table's -0.0 with G > 1), and in a build without §18
 * (DC_CODEC_NO_SPARSE_PLANES, DC_CODEC_MINIMAL: its loop is left out). */
dc_status dc_decode_value_rows(const uint8_t* data, size_t size, const dc_header* h, dc_rows* r);

/* Whether dc_decode_value_rows walks h's entries (given the rows' arrays): a float32 §18 tensor
 * whose background is ±0 (a table's (`table` 1): +0.0, or -0.0 with G = 1, every element an
 * entry); the callers' one rule (dc_sparse_fc.c's direct route tries nothing else). */
static inline int dc_value_rows_take(const dc_header* h, int table) {
  return h->layout == DC_LAYOUT_SPARSE_PLANES && h->info.dtype == DC_DTYPE_FLOAT32 &&
         (uint32_t)((uint32_t)h->base << 1) == 0 &&
         !(table && (uint32_t)h->base != 0 && h->gap_alphabet != 1);
}

#endif /* DC_CODEC_INTERNAL_H_ */
