/*
 * dc_sparse_fc.h -- compressed execution of FULLY_CONNECTED from a packed
 * weight tensor (docs/android.md "Compressed execution").
 *
 * dc_sparse_fc_build() turns the packed bytes of a 2-D weight [rows = output
 * units, cols = input size] into a compact form that the kernels below run
 * directly; the dense weight matrix is never kept.  A sparse tensor
 * (docs/FORMAT.md §6, §11 layout 3, version 2) with a zero background is
 * decoded straight into the form (dc_decode_rows: no dense tensor at all, ~4 ns
 * per entry), and so is a float32 §18 tensor (sparse float planes, version 5) with a
 * ±0 background (dc_decode_value_rows: the value form, or the rows of codes when it
 * holds <= 255 distinct values; a lookup table's with a +0 background or every element an
 * entry); other layouts (§5, §12,
 * §14, version 1, a non-zero background) go through a transient dense copy (dc_decode, scan,
 * free: ~15x slower, and the dense size in transient memory).  Three forms:
 *  - rows (row_ptr, col, code): per non-zero weight a 16-bit column and a 1-byte
 *    value code (float32: index into a codebook of <= 255 non-zero values; int8:
 *    the weight itself), rows delimited by 32-bit offsets: 3 bytes per non-zero
 *    + 4 bytes per row.  Lookup tables, float32 forms whose codebook(s) hold more
 *    than 32 values with a code or that have none (§12, §18 planes), FC layers of 1..3
 *    output units and every form built with the scalar kernels (CPUs without
 *    AVX-512 or AVX2, ARM included).
 *  - tiles (tile_*, below): float32 FC forms of <= 32 codebook values and int8 FC
 *    forms (any values) built while the AVX-512 or the AVX2 tile kernels are in use
 *    (dc_sparse_fc_kernel_name), instead of the rows,
 *    as long as they hold at most DC_SFC_TILE_FILL entries per non-zero (~2 at
 *    10 % density: ~4.1 bytes per non-zero); the ungrouped §6 tensors (the
 *    common case) are decoded straight into them, 16 rows at a time, without
 *    building the rows.  Batch-1 and batched kernels without gathers
 *    (docs/android_design_notes.md "The tile form instead of the rows"), one body per
 *    instruction set: AVX-512 (16 lanes per register) and AVX2 + FMA (two halves of 8), the
 *    same bits (NaN for NaN: where two NaNs meet, which one an FMA passes on is open).
 *  - values (row_ptr, col, value): the rows with the float32 weight itself per non-zero
 *    instead of a code (value != NULL, code NULL, num_values 0): 6 bytes per non-zero + 4
 *    per row, for float32 FC weights (and lookup tables) of more than 255 distinct non-zero values,
 *    pruned but not clustered (§12 and §18 float planes, which hold no codebook; §12 through the transient
 *    dense copy, §18 straight from its entries: 4096x1024 at 10 % in 2.5 ms of CPU and 2.6 MiB
 *    at peak against 11.8 ms and 18.4 MiB through the dense copy, benchmarks/
 *    bench_values_build.py).  The scalar kernels on every CPU, in the scalar row kernels'
 *    summation order (rows of codes and of values of the same weights give the same bits
 *    there).  A lookup table's value form keeps every element but +0.0 (-0.0 and NaN payloads
 *    as stored) and runs up to its caller's limit (dc_sparse_table_build_max).
 * A built form holds one of these (dc_sparse_fc_add_tiles can add tiles next
 * to rows of codes); row_ptr == NULL means the tile form alone.
 *
 * The packed bytes are untrusted: everything is validated (dc_peek/dc_decode
 * checks the format and checksum; the builder checks rank, sizes, value count)
 * and the kernels only index inside the arrays the builder made.
 */
#ifndef DC_SPARSE_FC_H_
#define DC_SPARSE_FC_H_

#include <stddef.h>
#include <stdint.h>

#include "dc_codec.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DC_SFC_MAX_COLS 65536u /* columns are stored as uint16 */
#define DC_SFC_MAX_VALUES 255u /* distinct non-zero float values */
#define DC_SFC_BATCH_TILE 8u   /* batch rows processed together */

typedef enum {
  DC_SFC_OK = 0,
  DC_SFC_UNSUPPORTED = 1, /* valid tensor this form cannot hold: use dense */
  DC_SFC_NOMEM = 2,
  DC_SFC_DECODE = 3, /* packed bytes invalid: see *decode_status */
  DC_SFC_ARGUMENT = 4,
  DC_SFC_TOO_DENSE = 5 /* dc_sparse_fc_build_max: more non-zeros than asked for (m->nnz) */
} dc_sfc_status;

typedef struct {
  uint32_t rows, cols;
  uint32_t dtype;      /* DC_DTYPE_FLOAT32 or DC_DTYPE_INT8 */
  uint32_t num_values; /* float32: codebook entries in use (distinct non-zero values coded) */
  uint64_t nnz;
  uint32_t* row_ptr;   /* rows + 1 entries, row_ptr[0] = 0, row_ptr[rows] = nnz; NULL (with col,
                        * code) in a tile form alone */
  uint16_t* col;       /* nnz column indices, < cols, increasing within a row */
  uint8_t* code;       /* nnz value codes */
  int32_t* row_sum;    /* int8: sum of each row's weights; NULL for float */
  uint32_t from_dense; /* 1: built through a transient dense copy; 0: straight from the entries */
  uint32_t table;      /* 1: lookup table (dc_sparse_table_build): -0.0 kept, no row_sum */
  int32_t fill;        /* value of the cells not stored: 0, or for an int8 table its background
                        * (packed background / most common value, e.g. the zero point) */
  float codebook[256]; /* float32: non-zero values by code */
  int32_t packed_file; /* what the builder found about the packed bytes it was given (dc_pages.h,
                        * looked up on its helper thread for large forms): 1 they lie in a
                        * read-only file mapping, 0 they do not, -1 not looked up */
  /* Tile form (NULL tile_e: none), instead of the rows above (or next to them:
   * dc_sparse_fc_add_tiles): rows in groups of 16 (one vector lane each), columns in blocks of
   * 32; a tile (group, block with a non-zero; blocks increasing within a group) holds `steps`
   * steps of 16 entries, step s of lane l being that row's s-th non-zero in the block: column
   * in block | code << 5, or DC_SFC_TILE_EMPTY (a lane's entries first, then empty ones). */
  uint32_t tile_groups;
  uint32_t* tile_ptr;    /* tile_groups + 1 entries: the first tile of each group */
  uint16_t* tile_block;  /* per tile: its block (columns 32 * block ...) */
  uint8_t* tile_steps;   /* per tile: 1..32 */
  uint16_t* tile_e;      /* 16 per step, tiles in order (int8: code = the weight's byte) */
  uint64_t tile_entries; /* entries of tile_e; with tile_e NULL, of a layer dc_sparse_fc_form
                          * says TILES: the count of its tiles, which did not fit (more than
                          * DC_SFC_TILE_FILL per non-zero: the rows instead; with
                          * DC_SFC_TOO_DENSE: would not have fit), or 0 (out of memory for the
                          * tiles: the rows; DC_SFC_TOO_DENSE: they fit) */
  float* value;          /* the value form (above): nnz float32 weights, in the order of col; NULL
                          * in every other form (code then holds the weights' codes) */
} dc_sparse_fc;

#define DC_SFC_TILE_EMPTY 0x8000u
/* dc_sparse_fc_build keeps the tile form (instead of the rows) only while it holds at most this
 * many entries per non-zero (int8: and no more bytes, 2 per entry, than the larger of the dense
 * weight and the rows) (docs/android_design_notes.md "The tile form instead of the rows": beyond
 * it the padding of short rows costs more kernel time and memory than the row kernels' gathers;
 * very sparse or oddly spread layers). */
#define DC_SFC_TILE_FILL 4u

/* Builds *m from a packed tensor.  On DC_SFC_UNSUPPORTED `why` says why (the
 * caller falls back to the dense route); on DC_SFC_DECODE *decode_status holds
 * the decoder's reason.  *m is zeroed on any failure.  A tile form that finds
 * no memory leaves the rows (tile_entries 0), on every route (the direct one
 * decodes again into them); DC_SFC_NOMEM: not even the rows (or the dense
 * copy) found memory. */
DC_API dc_sfc_status dc_sparse_fc_build(const uint8_t* packed, size_t size, dc_sparse_fc* m,
                                        dc_status* decode_status, char* why, size_t why_size);

/* dc_sparse_fc_build for a layer that is to run compressed only with at most max_nnz non-zero
 * weights: a denser one is refused with DC_SFC_TOO_DENSE as soon as its count is known, before
 * any compact form is built; *m is then zeroed but for rows, cols, dtype, nnz (the count) and
 * tile_entries (non-zero: the layer was to take the tile form, which would not have fit, above).
 * When the count came from the transient dense copy (every layout but the direct routes of §6 /
 * §11; §18's direct route is taken only while its stored entries, R >= the non-zeros, are at most
 * max_nnz, so a denser §18 layer is counted on the dense route), that decoded tensor is handed over in *dense (output_bytes bytes, 64-byte aligned, freed with
 * free()) so that the caller can run the layer on it instead of decoding it again; otherwise (or
 * dense == NULL) nothing is handed over and *dense is NULL.  max_nnz = UINT64_MAX: the build. */
DC_API dc_sfc_status dc_sparse_fc_build_max(const uint8_t* packed, size_t size, uint64_t max_nnz,
                                            dc_sparse_fc* m, void** dense, dc_status* decode_status,
                                            char* why, size_t why_size);

/* What dc_sparse_fc_build (table = 0) / dc_sparse_table_build (table = 1) can tell from the
 * packed header alone, without decoding: DC_SFC_UNSUPPORTED with `why` (shape or element type
 * not supported, or a float32 codebook of more than DC_SFC_MAX_VALUES distinct kept values that
 * have a code: entries without one, FORMAT.md §4 length 0, are no values of the tensor),
 * DC_SFC_DECODE for an invalid header, else DC_SFC_OK (the build may still find the tensor
 * unsuitable). */
DC_API dc_sfc_status dc_sparse_fc_check(const uint8_t* packed, size_t size, int table, char* why,
                                        size_t why_size);

/* Which form dc_sparse_fc_build would make of a FULLY_CONNECTED weight, said from the packed
 * header and codebook alone, decoding nothing (for a caller that picks a density limit by form
 * before building: the TFLite delegate's default max_density, docs/android.md):
 *  - DC_SFC_FORM_TILES: float32 of at most 32 distinct non-zero values in its codebook(s), those
 *    of entries with a code (FORMAT.md §4: entries without one, length 0, which no element can
 *    use, are not counted; a sparse layout's background is), or int8 (any values), input size
 *    <= DC_SFC_MAX_COLS, at least 16 / DC_SFC_TILE_FILL = 4 output units (fewer never fit:
 *    16 rows per tile), while the AVX-512 or AVX2 tile kernels are in use
 *    (dc_sparse_fc_kernel_name, dc_sparse_fc_use_simd).  The build still makes the rows instead when the tiles would hold
 *    more than DC_SFC_TILE_FILL entries per non-zero (dc_sparse_fc_set_tile_fill), which only
 *    the decode shows (e.g. 4..15 output units at high density): check m->tile_e, and
 *    m->tile_entries for why not (also after DC_SFC_TOO_DENSE, see dc_sparse_fc).
 *  - DC_SFC_FORM_ROWS: every other tensor the build takes (> 32 coded values in the
 *    codebook(s), also when the tensor uses fewer, 1..3 output units, the scalar kernels, §12
 *    and §18 float planes, which hold no codebook): the build makes the rows of them, on every route
 *    (float planes of more than 255 distinct non-zero values: the value form, rows of values).
 *  - DC_SFC_FORM_NONE: what dc_sparse_fc_check refuses (not 2-D float32 / int8, shape, > 255
 *    values), an invalid header or NULL.
 * Like the build, it depends on the settings of dc_sparse_fc_use_simd and
 * dc_sparse_fc_set_tile_fill (the 4 output units above are 16 / fill; a fill of 0 makes every
 * build try tiles) at the time of the call. */
typedef enum { DC_SFC_FORM_NONE = 0, DC_SFC_FORM_ROWS = 1, DC_SFC_FORM_TILES = 2 } dc_sfc_form;

DC_API dc_sfc_form dc_sparse_fc_form(const uint8_t* packed, size_t size);

/* The same form for a lookup table [rows = entries, cols = row width] of
 * EMBEDDING_LOOKUP / GATHER (axis 0): every stored bit pattern but +0.0 is
 * kept (-0.0 included: a lookup copies values bit for bit), no row sums.
 * int8 tables leave out their background value (m->fill: the packed
 * background, or the most common value), e.g. an asymmetric zero point. */
DC_API dc_sfc_status dc_sparse_table_build(const uint8_t* packed, size_t size, dc_sparse_fc* m,
                                           dc_status* decode_status, char* why, size_t why_size);

/* dc_sparse_table_build for a table that is to take the value form (float32 planes, §12 / §18,
 * of more than DC_SFC_MAX_VALUES distinct kept values: 6 bytes per kept element + 4 per row)
 * only with at most max_nnz kept elements: a denser one is refused with DC_SFC_TOO_DENSE, *m
 * zeroed but for rows, cols, dtype, nnz, and its decoded tensor handed over in *dense as
 * dc_sparse_fc_build_max does (dense NULL: not).  Rows of codes (<= 255 values, int8) take any
 * count, as dc_sparse_table_build.  A §18 table is built straight from its entries (+0.0
 * background, or -0.0 with gap alphabet 1, tfmot's; at most max_nnz entries: each may keep one),
 * else through the dense copy; the two
 * give the same form byte for byte (dc_sparse_fc_set_direct). */
DC_API dc_sfc_status dc_sparse_table_build_max(const uint8_t* packed, size_t size, uint64_t max_nnz,
                                               dc_sparse_fc* m, void** dense,
                                               dc_status* decode_status, char* why,
                                               size_t why_size);

/* out[i, :] = table row idx[i] for i < n (float32 tables: float rows, int8
 * tables: the int8 values; m->fill where nothing is stored).  idx holds n
 * int32 (idx64 = 0) or int64 (idx64 = 1) indices.  Every index is checked
 * against [0, rows) before anything is written: returns n on success, else
 * the position of the first index out of range (out untouched); 0 when m, idx
 * or out is NULL or m holds no form. */
DC_API size_t dc_sparse_gather(const dc_sparse_fc* m, const void* idx, int idx64, size_t n,
                               void* out);

/* Adds the tile form next to the rows of a float32 FC form of at most 32 codebook values or of an
 * int8 FC form (with its row_sum) when the AVX-512 or AVX2 tile kernels are in use
 * (dc_sparse_fc_kernel_name), whatever its fill (for tests and comparisons: dc_sparse_fc_build
 * keeps one form, see above).  The kernels then run on the tiles while the AVX-512 or AVX2
 * kernels are in use, on the rows otherwise.
 * Returns 1 if built, 0 if not applicable (rows not strictly increasing, columns past cols
 * included, an int8 form without row_sum) or out of memory (the form is unchanged and still
 * complete). */
DC_API int dc_sparse_fc_add_tiles(dc_sparse_fc* m);

/* The distinct non-zero values (bit patterns; +-0 not counted) of n float32 weights w, counted up
 * to DC_SFC_MAX_VALUES + 1 (more: that): at most DC_SFC_MAX_VALUES, an FC layer of them takes a
 * form of codes, else the value form.  For a caller given a decoded weight (dc_sparse_fc_build_max
 * hands one over) that picks a density limit by form.  0 for w NULL. */
DC_API uint32_t dc_sparse_fc_count_values(const float* w, uint64_t n);

DC_API void dc_sparse_fc_free(dc_sparse_fc* m);

/* Bytes held by the compact form (for reports and benchmarks). */
DC_API size_t dc_sparse_fc_bytes(const dc_sparse_fc* m);

/* The two FC kernels below are the hot path and check nothing: m must be a form built by
 * dc_sparse_fc_build (not a zeroed or freed one), x, y (and scratch for batch > 1) must be
 * non-NULL and of the sizes given. */

/* y[b, r] = act(sum_c W[r, c] x[b, c] + bias[r]) for b < batch, clamped to
 * [act_min, act_max].  bias may be NULL.  scratch: cols * DC_SFC_BATCH_TILE
 * floats (unused when batch == 1 or on a tile form, may then be NULL).  A tile
 * form runs on the AVX-512 or AVX2 tile kernels (batch 1; 2..8 batch rows at a
 * time; the two give the same bits), or on the scalar tile kernel after
 * dc_sparse_fc_use_simd(0). */
DC_API void dc_sparse_fc_float(const dc_sparse_fc* m, const float* x, size_t batch,
                               const float* bias, float act_min, float act_max, float* y,
                               float* scratch);

/* Quantized int8 (TFLite full-integer FC, weight zero point 0):
 * acc = sum_c W[r,c] (x[b,c] - input_zp) + bias[r];
 * y = clamp(rint((float)acc * scale[r]) + output_zp, qmin, qmax),
 * the fp32 requantization of XNNPACK (round half to even).  scale has rows
 * entries (per-tensor: all equal); bias may be NULL.  scratch: cols *
 * DC_SFC_BATCH_TILE int32 (unused when batch == 1 or on a tile form, may then
 * be NULL).  A tile form runs as dc_sparse_fc_float's does; the outputs are
 * the same bytes on every form and kernel. */
DC_API void dc_sparse_fc_int8(const dc_sparse_fc* m, const int8_t* x, size_t batch,
                              int32_t input_zp, const int32_t* bias, const float* scale,
                              int32_t output_zp, int32_t qmin, int32_t qmax, int8_t* y,
                              int32_t* scratch);

/* The kernels in use, probed at run time: "avx512" (x86-64 with AVX-512 F/BW/VL: row and tile
 * kernels, 16 lanes per step, see dc_sparse_fc.c), "avx2" (x86-64 with AVX2 and FMA but no
 * AVX-512, e.g. Intel Haswell..Comet Lake and Alder Lake and later client cores, AMD Zen 1..3: the tile
 * kernels in AVX2, the row kernels scalar; or forced by dc_sparse_fc_use_simd(4)) or "scalar"
 * (every other CPU, ARM included).  FC layers take the tile form with "avx512" and "avx2".  Same
 * results up to float summation order (the AVX2 and AVX-512 tile kernels: the same bits), int8
 * identical. */
DC_API const char* dc_sparse_fc_kernel_name(void);

/* Forms of at least `bytes` bytes (3 per stored entry) are built with a helper thread beside
 * the caller (default 1 MiB; on more than one CPU); returns the previous setting.  For tests and
 * fuzzing: 0 builds every form so, and the two threads then hand entries over in chunks of 8
 * (instead of 4096), so that small tensors exercise the whole hand-over.  Not thread-safe: set
 * it before building. */
DC_API size_t dc_sparse_fc_set_helper_bytes(size_t bytes);

/* on = 0 makes every later build take the transient dense copy (dc_decode, scan, free), also for
 * the tensors built straight from their entries by default (§6, §11, §18 above); 1 (default) the
 * direct routes; returns the previous setting.  For tests and benchmarks: the two routes give the
 * same non-zeros (and m->from_dense says which one ran); a §18 weight's form is the same bytes
 * (row_ptr, col, value or codes and codebook), a §6 / §11 weight's codes may number its values in
 * another order.  Not thread-safe: set it before building. */
DC_API int dc_sparse_fc_set_direct(int on);

/* The tile form's limit of dc_sparse_fc_build (default DC_SFC_TILE_FILL entries per non-zero);
 * returns the previous setting.  For tests and fuzzing: 0 makes every build that made tiles turn
 * them into rows (the fallback path).  Not thread-safe: set it before building. */
DC_API uint32_t dc_sparse_fc_set_tile_fill(uint32_t entries_per_nonzero);

/* on = 0 makes every later call use the scalar kernels (tests, comparisons), 1 (default) lets
 * dc_sparse_fc_kernel_name() choose, 2 as 1 but the tile form is built with the portable loop
 * instead of its AVX-512 CD one (tests: the same form), 3 as 1 but the int8 tile kernels run
 * without AVX-512 VNNI on CPUs that have it (tests: the same bytes), 4 as 1 as if the CPU had no
 * AVX-512: the AVX2 kernels (and the builder's portable loop) on CPUs with AVX2 and FMA, AVX-512
 * ones included, else the scalar ones (tests and benchmarks of what CPUs without AVX-512 run);
 * other values act as 1; returns the previous setting.  It applies to builds too: a
 * form built with it at 0 holds rows only; a tile form built before runs on the scalar tile
 * kernel.  Not thread-safe: set it before any build or kernel runs. */
DC_API int dc_sparse_fc_use_simd(int on);

#ifdef __cplusplus
}
#endif
#endif /* DC_SPARSE_FC_H_ */
