/*
 * dc_codec.c -- C99 decoder of the packed tensor format, docs/FORMAT.md (versions 1 to 5).
 *
 * Portable: no intrinsics, no unaligned accesses (byte loads that compilers merge), no
 * allocation: decode tables live in the caller's workspace (dc_decode_ws, sized by
 * dc_workspace_size to the tensor's real code lengths) and the codebook is read in place from
 * the input, so no function here needs more than a few hundred bytes of stack (dc_decode, the
 * host convenience, adds a DC_MAX_WORKSPACE buffer).  Safe on any input: all sizes are
 * validated (§9) before work proportional to them, bit reads past the end of a stream read
 * zeros and are detected afterwards, every sparse position is bounds-checked.  Version 2
 * checks the CRC-32 of the input (§8) before decoding; version 1 checks the Fletcher-64 of the
 * output (§8.1) while decoding.
 *
 * Speed: four interleaved streams (§7) decoded in lock step, a 64-bit bit buffer refilled
 * branch-free while at least 8 bytes of each stream remain, one 2^L-entry table lookup per
 * symbol (§4, L <= 12), the codebook lookup and the store.  Each layout's loop is one
 * `static inline` body (dense_body, sparse_body, planes_body, int_planes_body,
 * sparse_planes_body) specialised by
 * thin wrappers per element size, as zstd does, so that debuggers and sanitizers see real source
 * lines.
 */
#include "dc_codec.h"

#include <string.h>

#include "dc_codec_crc.h"
#include "dc_codec_internal.h"

/* Build options (dc_codec.h): 1 where the feature is compiled in.  A left-out feature's loops are
 * not instantiated, its dispatch entries are NULL, and dc_parse refuses it (DC_ERR_UNSUPPORTED)
 * before anything could reach them. */
#ifdef DC_CODEC_NO_64BIT
#define DC_HAS_64BIT 0
#define DC_OMIT_64BIT " DC_CODEC_NO_64BIT"
#else
#define DC_HAS_64BIT 1
#define DC_OMIT_64BIT ""
#endif
#ifdef DC_CODEC_NO_SUBBYTE
#define DC_HAS_SUBBYTE 0
#define DC_OMIT_SUBBYTE " DC_CODEC_NO_SUBBYTE"
#else
#define DC_HAS_SUBBYTE 1
#define DC_OMIT_SUBBYTE ""
#endif
#ifdef DC_CODEC_NO_GROUPED
#define DC_HAS_GROUPED 0
#define DC_OMIT_GROUPED " DC_CODEC_NO_GROUPED"
#else
#define DC_HAS_GROUPED 1
#define DC_OMIT_GROUPED ""
#endif
#ifdef DC_CODEC_NO_FLOAT_PLANES
#define DC_HAS_PLANES 0
#define DC_OMIT_PLANES " DC_CODEC_NO_FLOAT_PLANES"
#else
#define DC_HAS_PLANES 1
#define DC_OMIT_PLANES ""
#endif
#ifdef DC_CODEC_NO_CONTEXT
#define DC_HAS_CONTEXT 0
#define DC_OMIT_CONTEXT " DC_CODEC_NO_CONTEXT"
#else
#define DC_HAS_CONTEXT 1
#define DC_OMIT_CONTEXT ""
#endif
/* dc_strerror's list of this build's options: kept short, since TFLM logs a line of 255 chars */
#ifdef DC_CODEC_NO_INT_PLANES
#define DC_HAS_INT_PLANES 0
#define DC_OMIT_INT_PLANES " DC_CODEC_NO_INT_PLANES"
#else
#define DC_HAS_INT_PLANES 1
#define DC_OMIT_INT_PLANES ""
#endif
#ifdef DC_CODEC_NO_SPARSE_PLANES
#define DC_HAS_SPARSE_PLANES 0
#define DC_OMIT_SPARSE_PLANES " DC_CODEC_NO_SPARSE_PLANES"
#else
#define DC_HAS_SPARSE_PLANES 1
#define DC_OMIT_SPARSE_PLANES ""
#endif

#ifdef DC_CODEC_MINIMAL
#define DC_OMITTED " DC_CODEC_MINIMAL"
#else
#define DC_OMITTED                                                                                \
  DC_OMIT_64BIT DC_OMIT_SUBBYTE DC_OMIT_GROUPED DC_OMIT_PLANES DC_OMIT_CONTEXT DC_OMIT_INT_PLANES \
      DC_OMIT_SPARSE_PLANES
#endif

/* §8's CRC by carry-less multiplication on x86-64 (gcc/clang, chosen at run time: crc_clmul);
 * -DDC_NO_SIMD keeps the portable table code only. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(DC_NO_SIMD) && \
    !defined(DC_CRC_SMALL_TABLE)
#define DC_CRC_CLMUL 1
#include <immintrin.h>
#else
#define DC_CRC_CLMUL 0
#endif
/* §5's most common case (32-bit elements, ungrouped) has a second loop for x86-64 CPUs with BMI2
 * (dense_e4_bmi2, chosen at run time), same flags. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(DC_NO_SIMD)
#define DC_DENSE_BMI2 1
#include <immintrin.h>
#else
#define DC_DENSE_BMI2 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define DC_INLINE static inline __attribute__((always_inline))
#else
#define DC_INLINE static inline
#endif
/* The per-size decoder instances: never inlined into their caller, whose frame (the parsed
 * header) would otherwise also hold the decode loop's locals for the whole decode (stack). */
#if defined(__GNUC__) || defined(__clang__)
#define DC_NOINLINE static __attribute__((noinline))
#else
#define DC_NOINLINE static
#endif

/* ---------------------------------------------------------------------------------------- */
/* Little-endian loads (§1): byte assembly, which gcc/clang turn into one load where legal.  */
/* ---------------------------------------------------------------------------------------- */
static inline uint32_t ld16(const uint8_t* p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8);
}
static inline uint32_t ld32(const uint8_t* p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t ld64(const uint8_t* p) {
  return (uint64_t)ld32(p) | ((uint64_t)ld32(p + 4) << 32);
}
static inline uint64_t min_u64(uint64_t x, uint64_t y) {
  return x < y ? x : y;
}

const char* dc_strerror(dc_status status) {
  switch (status) {
    case DC_OK: return "ok";
    case DC_ERR_TRUNCATED: return "truncated: the buffer is shorter than the sizes it declares";
    case DC_ERR_MAGIC: return "not a packed tensor (bad magic)";
    case DC_ERR_VERSION:
      return "unsupported packed tensor format version (newer than this decoder?)";
    case DC_ERR_DTYPE: return "unknown element type (for this format version)";
    case DC_ERR_SHAPE: return "invalid rank or dimensions, or element count too large";
    case DC_ERR_CODEBOOK: return "invalid codebook size or value";
    case DC_ERR_LAYOUT:
      return "unknown layout, or a layout parameter out of range (e.g. more entries than elements)";
    case DC_ERR_CODE_LENGTHS: return "Huffman code lengths do not form a valid code";
    case DC_ERR_STREAM: return "corrupt bit stream (overrun, spare bytes, bad padding or position)";
    case DC_ERR_SIZE_MISMATCH: return "declared sizes disagree with each other";
    case DC_ERR_CHECKSUM: return "checksum mismatch: the packed data is corrupt";
    case DC_ERR_OUTPUT_SIZE: return "output buffer size differs from the tensor's byte size";
    case DC_ERR_ARGUMENT: return "invalid argument (NULL pointer)";
    case DC_ERR_WORKSPACE: return "workspace smaller than dc_workspace_size() asks for";
    case DC_ERR_UNSUPPORTED:
      return sizeof DC_OMITTED > 1 ? "type or layout left out of this build by" DC_OMITTED
                                     ": rebuild the decoder without it"
                                   : "type or layout left out of this decoder build";
  }
  return "unknown status code";
}

/* §2 element types: bits per element, 0 if unknown for this version. */
static uint32_t element_bits(uint32_t dtype, uint32_t version) {
  switch (dtype) {
    case DC_DTYPE_FLOAT32:
    case DC_DTYPE_INT32: return 32;
    case DC_DTYPE_FLOAT16:
    case DC_DTYPE_INT16: return 16;
    case DC_DTYPE_UINT8:
    case DC_DTYPE_INT8: return 8;
    case DC_DTYPE_BFLOAT16: return version >= 2 ? 16 : 0;
    case DC_DTYPE_INT4:
    case DC_DTYPE_UINT4: return version >= 2 ? 4 : 0;
    case DC_DTYPE_INT2: return version >= 2 ? 2 : 0;
    case DC_DTYPE_INT64:
    case DC_DTYPE_UINT64:
    case DC_DTYPE_FLOAT64: return version >= 3 ? 64 : 0; /* §16 */
    case DC_DTYPE_UINT32: return version >= 3 ? 32 : 0;
    case DC_DTYPE_UINT16: return version >= 3 ? 16 : 0;
    case DC_DTYPE_BOOL: return version >= 3 ? 8 : 0;
    default: return 0;
  }
}

static int is_float(uint32_t dtype) {
  return dtype == DC_DTYPE_FLOAT32 || dtype == DC_DTYPE_FLOAT16 || dtype == DC_DTYPE_BFLOAT16;
}

/* §17: the integer types of 16, 32 or 64 bits (layout 6). */
static int is_wide_int(uint32_t dtype) {
  return dtype == DC_DTYPE_INT16 || dtype == DC_DTYPE_UINT16 || dtype == DC_DTYPE_INT32 ||
         dtype == DC_DTYPE_UINT32 || dtype == DC_DTYPE_INT64 || dtype == DC_DTYPE_UINT64;
}

/* ---------------------------------------------------------------------------------------- */
/* §4 alphabet descriptors                                                                   */
/* ---------------------------------------------------------------------------------------- */
static dc_status parse_alphabet(const uint8_t* data, size_t size, size_t* pos, uint32_t n,
                                dc_alphabet* a) {
  size_t p = *pos;
  if (size - p < 1) return DC_ERR_TRUNCATED;
  a->n = n;
  a->max_len = data[p++];
  if (a->max_len > DC_MAX_CODE_LENGTH) return DC_ERR_CODE_LENGTHS;
  if (a->max_len == 0) {
    if (size - p < 2) return DC_ERR_TRUNCATED;
    a->single = ld16(data + p);
    p += 2;
    if (a->single >= n) return DC_ERR_CODE_LENGTHS;
    a->lengths = NULL;
    a->min_len = 0;
    *pos = p;
    return DC_OK;
  }
  {
    size_t nbytes = ((size_t)n + 1) / 2, i;
    uint32_t kraft = 0, min_len = 99, max_seen = 0, L = a->max_len;
    if (size - p < nbytes) return DC_ERR_TRUNCATED;
    a->lengths = data + p;
    for (i = 0; i < n; ++i) {
      uint32_t l = (data[p + i / 2] >> ((i & 1) * 4)) & 15u;
      if (l == 0) continue;
      if (l > L) return DC_ERR_CODE_LENGTHS;
      kraft += 1u << (L - l); /* <= 4096 * 2^11: no overflow */
      if (l < min_len) min_len = l;
      if (l > max_seen) max_seen = l;
    }
    if ((n & 1) && (data[p + nbytes - 1] >> 4) != 0) return DC_ERR_CODE_LENGTHS;
    if (max_seen != L || kraft != (1u << L)) return DC_ERR_CODE_LENGTHS;
    a->min_len = min_len;
    a->single = 0;
    *pos = p + nbytes;
  }
  return DC_OK;
}

/* Nibble i of a §4 lengths array or a §14 class map (index 2i in the low nibble of byte i). */
static inline uint32_t nibble(const uint8_t* bytes, uint32_t i) {
  return (bytes[i / 2] >> ((i & 1) * 4)) & 15u;
}

static inline uint32_t alph_len(const dc_alphabet* a, uint32_t s) {
  return a->max_len == 0 ? 0 : nibble(a->lengths, s);
}

#define CLS_SYM(s) (classes ? (s) << 2 | ((classes[(s) >> 1] >> (((s)&1u) << 2)) & 3u) : (s))
/* The `len` low bits of canonical code c in reverse order (§7: the stream holds a code's most
 * significant bit first, the bit reader returns the oldest bit lowest); len <= 16. */
static inline uint32_t rev_code(uint32_t c, uint32_t len) {
  c = ((c & 0x5555u) << 1) | ((c >> 1) & 0x5555u);
  c = ((c & 0x3333u) << 2) | ((c >> 2) & 0x3333u);
  c = ((c & 0x0F0Fu) << 4) | ((c >> 4) & 0x0F0Fu);
  c = ((c & 0x00FFu) << 8) | ((c >> 8) & 0x00FFu);
  return c >> (16u - len);
}

/* §17 table entry of class c with a code of length len: nb = c - 1 extra bits (0 if c <= 1) in
 * bits 8-13, c > 0 in bit 15; in bits 0-5 the element's bits t = len + nb, or len with bit 7 set
 * if t > 56 (8-byte types only), so that one lookup gives the shift past the whole element
 * (int_planes_body). */
#define IP_NB(c) ((c) > 1 ? (c)-1u : 0u)
#define IP_ENTRY(c, len)                           \
  ((IP_NB(c) << 8) | ((uint32_t)((c) > 0) << 15) | \
   ((len) + IP_NB(c) > 56 ? 128u | (len) : (len) + IP_NB(c)))

/* Entries of every code of length lo..hi into the first 2^top entries (a code of length len
 * fills every 2^len-th entry from its reversed code); `next` holds each length's next code.
 * ip: §17 entries (IP_ENTRY) instead of symbol << 4 | length, in a loop of their own so that the
 * other layouts' tables cost no per-symbol test. */
#define DC_FILL_LOOP(ENTRY)                                                                     \
  for (s = 0; s < a->n; ++s) {                                                                  \
    uint32_t len = alph_len(a, s);                                                              \
    uint16_t entry;                                                                             \
    if (len < lo || len > hi) continue;                                                         \
    /* computed once: the stores below may alias `classes` (a byte pointer) for the compiler */ \
    entry = (uint16_t)(ENTRY);                                                                  \
    for (k = rev_code(next[len]++, len); k < end; k += 1u << len) table[k] = entry;             \
  }
static void fill_codes(const dc_alphabet* a, uint16_t* table, const uint8_t* classes,
                       uint32_t* next, uint32_t lo, uint32_t hi, uint32_t top, const int ip) {
  uint32_t s, k, end = 1u << top;
  if (DC_HAS_INT_PLANES && ip) {
    DC_FILL_LOOP(IP_ENTRY(s, len))
  } else {
    DC_FILL_LOOP((CLS_SYM(s) << 4) | len)
  }
}
#undef DC_FILL_LOOP

/* Builds the 2^L single-level table of §4: entry = symbol << 4 | length; with a §14 class map
 * (K <= 1024) entry = (symbol << 2 | class) << 4 | length.  Codes of length <= m go into the
 * first 2^m entries, which doubling copies repeat up to 2^L (a code of length <= m repeats with
 * period 2^m); the longer codes are then stored at each of their entries.  m minimises the
 * stores: 2^m, plus the entries of the longer codes, plus the copies (counted as 1/4 store per
 * entry).  The parse (§4) checked the lengths form a complete code, so every entry is set. */
static void build_table_cls(const dc_alphabet* a, uint16_t* table, const uint8_t* classes,
                            const int ip) {
  uint32_t L = a->max_len, s, l, m = 1, code = 0, count[DC_MAX_CODE_LENGTH + 1];
  uint32_t next[DC_MAX_CODE_LENGTH + 1], size, best = 0xFFFFFFFFu, tail = 0;
  if (L == 0) {
    table[0] =
        (uint16_t)(DC_HAS_INT_PLANES && ip ? IP_ENTRY(a->single, 0u) : CLS_SYM(a->single) << 4);
    return;
  }
  memset(count, 0, sizeof count);
  for (s = 0; s < a->n; ++s) count[alph_len(a, s)]++;
  count[0] = 0;
  for (l = 1; l <= L; ++l) { /* §4 canonical codes: first code of each length */
    code = (code + count[l - 1]) << 1;
    next[l] = code;
  }
  for (l = L; l >= 1; --l) { /* tail: entries of the codes longer than l */
    uint32_t cost = (1u << l) + tail + (((1u << L) - (1u << l)) >> 2);
    if (cost <= best) {
      best = cost;
      m = l;
    }
    tail += count[l] << (L - l);
  }
  fill_codes(a, table, classes, next, 1, m, m, ip);
  for (size = 1u << m; size < (1u << L); size *= 2)
    memcpy(table + size, table, size * sizeof *table);
  if (m < L) fill_codes(a, table, classes, next, m + 1, L, L, ip);
}

#undef CLS_SYM

static void build_table(const dc_alphabet* a, uint16_t* table) {
  build_table_cls(a, table, NULL, 0);
}

/* ---------------------------------------------------------------------------------------- */
/* §2-§7, §11-§13 header                                                                     */
/* ---------------------------------------------------------------------------------------- */
static uint64_t ceil_div8(uint64_t bits) {
  return (bits + 7) / 8;
}

/* §2 up to and including the checksum field(s); §10 version / layout / dtype rules. */
static dc_status parse_prefix(const uint8_t* data, size_t size, dc_header* h, size_t* pos_io) {
  size_t pos;
  uint32_t r, bits, v;
  uint64_t n = 1;
  if (size < 8)
    return size >= 4 && memcmp(data, DC_MAGIC, 4) != 0 ? DC_ERR_MAGIC : DC_ERR_TRUNCATED;
  if (memcmp(data, DC_MAGIC, 4) != 0) return DC_ERR_MAGIC;
  v = h->info.version = data[4];
  if (v < DC_VERSION_MIN || v > DC_VERSION_MAX) return DC_ERR_VERSION;
  h->info.dtype = data[5];
  bits = element_bits(data[5], v);
  if (bits == 0) return DC_ERR_DTYPE;
  h->info.element_bits = bits;
  h->info.element_size = bits >= 8 ? bits / 8 : 1;
  h->cb_esize = (uint32_t)h->info.element_size;
  h->info.rank = data[6];
  if (h->info.rank > DC_MAX_RANK) return DC_ERR_SHAPE;
  h->layout = h->info.layout = data[7];
  if (h->layout > (v == 1  ? DC_LAYOUT_SPARSE
                   : v < 4 ? DC_LAYOUT_CONTEXT_SPARSE
                   : v < 5 ? DC_LAYOUT_INT_PLANES
                           : DC_LAYOUT_SPARSE_PLANES))
    return DC_ERR_LAYOUT;
  /* §13/§16: sub-byte types and bool use §5/§6 only; §12 and §18 are for float32/16/bfloat16
   * only; §16: 64-bit types have no grouped layouts (§11). */
  if ((bits < 8 || h->info.dtype == DC_DTYPE_BOOL) && h->layout > DC_LAYOUT_SPARSE)
    return DC_ERR_LAYOUT;
  if ((h->layout == DC_LAYOUT_FLOAT_PLANES || h->layout == DC_LAYOUT_SPARSE_PLANES) &&
      !is_float(h->info.dtype))
    return DC_ERR_LAYOUT;
  if (h->layout == DC_LAYOUT_INT_PLANES && !is_wide_int(h->info.dtype)) return DC_ERR_LAYOUT;
  if (bits == 64 && (h->layout == DC_LAYOUT_GROUPED_DENSE || h->layout == DC_LAYOUT_GROUPED_SPARSE))
    return DC_ERR_LAYOUT;
  h->sparse = h->layout == DC_LAYOUT_SPARSE || h->layout == DC_LAYOUT_GROUPED_SPARSE ||
              h->layout == DC_LAYOUT_CONTEXT_SPARSE || h->layout == DC_LAYOUT_SPARSE_PLANES;
  pos = 8;
  if (size - pos < 4u * h->info.rank) return DC_ERR_TRUNCATED;
  for (r = 0; r < h->info.rank; ++r) {
    uint64_t d = ld32(data + pos);
    pos += 4;
    h->info.dims[r] = d;
    /* n <= 2^31 - 1 before the multiply and d < 2^32: the product fits in 64 bits.  The format
     * limits every prefix product, so a later dim of 0 cannot excuse an overflow. */
    n *= d;
    if (n > DC_MAX_ELEMENTS) return DC_ERR_SHAPE;
  }
  h->info.num_elements = n;
  h->info.output_bytes = (n * bits + 7) / 8; /* < 2^37: fits size_t on 64-bit hosts */
  if (h->info.output_bytes > (uint64_t)SIZE_MAX) return DC_ERR_SHAPE;
  h->check_pos = pos;
  if (v == 1) {
    if (size - pos < 8) return DC_ERR_TRUNCATED;
    h->check_a = ld32(data + pos);
    h->check_b = ld32(data + pos + 4);
    pos += 8;
  } else {
    if (size - pos < 4) return DC_ERR_TRUNCATED;
    h->check = ld32(data + pos);
    pos += 4;
  }
  *pos_io = pos;
  return DC_OK;
}

/* §3, §11, §13: [axis,] K and the codebook(s). */
static dc_status parse_codebook(const uint8_t* data, size_t size, dc_header* h, size_t* pos_io) {
  size_t pos = *pos_io, i;
  uint64_t cb_bytes;
  h->groups = 1;
  h->inner = h->info.num_elements;
  if (h->layout == DC_LAYOUT_GROUPED_DENSE || h->layout == DC_LAYOUT_GROUPED_SPARSE) {
    uint32_t r;
    if (size - pos < 1) return DC_ERR_TRUNCATED;
    h->axis = data[pos++];
    if (h->axis >= h->info.rank) return DC_ERR_LAYOUT;
    h->groups = (uint32_t)h->info.dims[h->axis]; /* >= 1 since N > 0 */
    h->inner = 1;
    for (r = h->axis + 1; r < h->info.rank; ++r) h->inner *= h->info.dims[r];
  }
  if (size - pos < 2) return DC_ERR_TRUNCATED;
  h->k = ld16(data + pos);
  pos += 2;
  if (h->k == 0 || h->k > DC_MAX_SYMBOLS) return DC_ERR_CODEBOOK;
  cb_bytes = (uint64_t)h->groups * h->k * h->cb_esize; /* < 2^31 * 2^12 * 8 */
  if ((uint64_t)(size - pos) < cb_bytes) return DC_ERR_TRUNCATED;
  h->codebook = data + pos;
  if (h->info.element_bits < 8) { /* §13: each value holds element_bits bits, the rest zero */
    for (i = 0; i < h->k; ++i)
      if (h->codebook[i] >> h->info.element_bits) return DC_ERR_CODEBOOK;
  }
  if (h->info.dtype == DC_DTYPE_BOOL) { /* §16: 0 or 1 (ungrouped: layouts 0, 1 only) */
    for (i = 0; i < h->k; ++i)
      if (h->codebook[i] > 1) return DC_ERR_CODEBOOK;
  }
  *pos_io = pos + (size_t)cb_bytes;
  return DC_OK;
}

/* §6's rules on E and G (also §11, §14, §18), then the gap code. */
static dc_status parse_entries(const uint8_t* data, size_t size, dc_header* h, size_t* pos_io) {
  const uint64_t n = h->info.num_elements;
  if (h->entries > n) return DC_ERR_LAYOUT;
  if (h->gap_alphabet == 0 || h->gap_alphabet > DC_MAX_SYMBOLS) return DC_ERR_LAYOUT;
  /* §6: each entry covers <= G elements and fewer than G trail: N < (E + 1) * G. */
  if (n >= (h->entries + 1) * h->gap_alphabet) return DC_ERR_SIZE_MISMATCH;
  return parse_alphabet(data, size, pos_io, h->gap_alphabet, &h->gap_code);
}

/* §6, §11: background, E, G and the gap code. */
static dc_status parse_sparse(const uint8_t* data, size_t size, dc_header* h, size_t* pos_io) {
  size_t pos = *pos_io;
  if (size - pos < 8) return DC_ERR_TRUNCATED;
  h->background = ld16(data + pos);
  h->entries = ld32(data + pos + 2);
  h->gap_alphabet = ld16(data + pos + 6);
  pos += 8;
  if (h->background >= h->k) return DC_ERR_LAYOUT;
  *pos_io = pos;
  return parse_entries(data, size, h, pos_io);
}

/* Table entries (u16) of a code: 2^L, or 1 for the zero-bit code. */
static size_t table_entries(const dc_alphabet* a) {
  return (size_t)1 << a->max_len;
}

/* §9 for §14: with a zero-bit gap code (the same gap g before every entry) the context of an
 * entry is 2 * class[previous index] + (g == 0), so an entry whose context has a zero-bit index
 * code costs no bits, and that code's one symbol fixes the next context. The most such entries in
 * a row: 0 when none can occur, at most C/2 (the contexts of that parity), or DC_FREE_UNBOUNDED
 * when they can follow each other forever (a cycle of zero-bit contexts). */
static uint32_t context_free_run(const dc_header* h) {
  uint32_t z, c, longest = 0;
  if (h->gap_code.max_len != 0) return 0; /* every entry has >= 1 bit of gap code */
  z = h->gap_code.single == 0;
  for (c = z; c < h->contexts; c += 2) {
    uint32_t cur = c, run = 0;
    while (h->ctx_code[cur].max_len == 0) {
      uint32_t sym = h->ctx_code[cur].single;
      if (++run > h->contexts / 2) return DC_FREE_UNBOUNDED; /* a context seen twice */
      cur = 2 * nibble(h->classes, sym) + z;
    }
    if (run > longest) longest = run;
  }
  return longest;
}

/* §14: C, the class map and the C index codes; index_code gets their shortest and longest
 * lengths for the §9 stream bounds, free_run the longest run of zero-bit entries. */
static dc_status parse_contexts(const uint8_t* data, size_t size, dc_header* h, size_t* pos_io) {
  size_t pos = *pos_io, nbytes = ((size_t)h->k + 1) / 2, total;
  uint32_t c, i, lo = 99, hi = 0;
  dc_status st;
  if (size - pos < 13) return DC_ERR_TRUNCATED;
  h->seg_start[0] = 0;
  for (c = 1; c < 4; ++c) { /* segment starts: nondecreasing, <= N */
    h->seg_start[c] = ld32(data + pos + 4 * (c - 1));
    if (h->seg_start[c] < h->seg_start[c - 1] || h->seg_start[c] > h->info.num_elements)
      return DC_ERR_LAYOUT;
  }
  pos += 12;
  h->contexts = data[pos++];
  if (h->k > DC_MAX_CONTEXT_SYMBOLS) return DC_ERR_CODEBOOK;
  if (h->contexts < 2 || h->contexts > DC_MAX_INDEX_CONTEXTS || (h->contexts & 1))
    return DC_ERR_LAYOUT;
  if (size - pos < nbytes) return DC_ERR_TRUNCATED;
  h->classes = data + pos;
  for (i = 0; i < h->k; ++i)
    if (nibble(h->classes, i) >= h->contexts / 2) return DC_ERR_LAYOUT;
  if ((h->k & 1) && (h->classes[nbytes - 1] >> 4) != 0) return DC_ERR_LAYOUT;
  pos += nbytes;
  for (c = 0; c < h->contexts; ++c) {
    st = parse_alphabet(data, size, &pos, h->k, &h->ctx_code[c]);
    if (st != DC_OK) return st;
    if (h->ctx_code[c].min_len < lo) lo = h->ctx_code[c].min_len;
    if (h->ctx_code[c].max_len > hi) hi = h->ctx_code[c].max_len;
  }
  total = table_entries(&h->gap_code) + ((size_t)h->contexts << hi); /* §14 table budget */
  if (total > DC_MAX_TABLE_ENTRIES) return DC_ERR_LAYOUT;
  h->index_code = h->ctx_code[0];
  h->index_code.min_len = lo;
  h->index_code.max_len = hi;
  h->free_run = context_free_run(h);
  *pos_io = pos;
  return DC_OK;
}

/* §7 stream sizes and bounds, §12 / §18 raw plane, §9 zero-bit rule. */
static dc_status parse_streams(const uint8_t* data, size_t size, dc_header* h, size_t pos) {
  uint64_t total = 0, tail;
  uint64_t count = h->sparse ? h->entries : h->info.num_elements;
  uint32_t lo = h->index_code.min_len + (h->sparse ? h->gap_code.min_len : 0);
  uint32_t hi = h->index_code.max_len + (h->sparse ? h->gap_code.max_len : 0);
  if (h->layout == DC_LAYOUT_INT_PLANES) { /* §17: code and extra bits of one element */
    lo = h->elem_lo;
    hi = h->elem_hi;
  }
  uint32_t s;
  if (size - pos < 4 * DC_NUM_STREAMS) return DC_ERR_TRUNCATED;
  for (s = 0; s < DC_NUM_STREAMS; ++s) {
    h->stream_size[s] = ld32(data + pos + 4 * s);
    h->stream_count[s] = count > s ? (count - s + DC_NUM_STREAMS - 1) / DC_NUM_STREAMS : 0;
    total += h->stream_size[s];
  }
  pos += 4 * DC_NUM_STREAMS;
  /* §12: a rest per element; §18: per stored entry (R <= E <= N) */
  h->rest_bytes = h->layout == DC_LAYOUT_FLOAT_PLANES || h->layout == DC_LAYOUT_SPARSE_PLANES
                      ? (uint32_t)h->info.element_size - 1
                      : 0;
  tail = total + (h->layout == DC_LAYOUT_SPARSE_PLANES ? h->stored : h->info.num_elements) *
                     h->rest_bytes; /* < 2^34 + 2^33 */
  if (tail > size - pos) return DC_ERR_TRUNCATED;
  if (tail < size - pos) return DC_ERR_SIZE_MISMATCH;
  h->streams_pos = pos;
  for (s = 0; s < DC_NUM_STREAMS; ++s) {
    /* §9: ceil(count*lo/8) <= size <= ceil(count*hi/8); count < 2^31, lengths <= 24 (§17:
     * <= 12 + 63 bits per element). */
    if (h->stream_size[s] < ceil_div8(h->stream_count[s] * lo) ||
        h->stream_size[s] > ceil_div8(h->stream_count[s] * hi))
      return DC_ERR_SIZE_MISMATCH;
    h->stream_start[s] = pos;
    pos += (size_t)h->stream_size[s];
  }
  h->rest_pos = pos;
  /* §9: a tensor whose codes are all zero-bit is not bounded by its streams (§12 is bounded by
   * its raw plane, §18's only by R), nor a §14 tensor whose zero-bit entries can repeat forever. */
  if ((hi == 0 || h->free_run == DC_FREE_UNBOUNDED) && h->layout != DC_LAYOUT_FLOAT_PLANES &&
      h->info.output_bytes > DC_MAX_ZERO_BIT_OUTPUT)
    return DC_ERR_SIZE_MISMATCH;
  if (lo == 0 && hi != 0 &&
      h->free_run != DC_FREE_UNBOUNDED) /* §14: >= 1 bit per free_run + 1 entries */
    for (s = 0; s < DC_NUM_STREAMS; ++s)
      if (h->stream_count[s] >= (uint64_t)(h->free_run + 1) * (8 * h->stream_size[s] + 1))
        return DC_ERR_SIZE_MISMATCH;
  return DC_OK;
}

/* A valid prefix whose type or layout a DC_CODEC_NO_* option left out of this build. */
static int left_out(const dc_header* h) {
  const uint32_t bits = h->info.element_bits, lay = h->layout;
  return (!DC_HAS_64BIT && bits == 64) || (!DC_HAS_SUBBYTE && bits < 8) ||
         (!DC_HAS_GROUPED && (lay == DC_LAYOUT_GROUPED_DENSE || lay == DC_LAYOUT_GROUPED_SPARSE)) ||
         (!DC_HAS_PLANES && lay == DC_LAYOUT_FLOAT_PLANES) ||
         (!DC_HAS_CONTEXT && lay == DC_LAYOUT_CONTEXT_SPARSE) ||
         (!DC_HAS_INT_PLANES && lay == DC_LAYOUT_INT_PLANES) ||
         (!DC_HAS_SPARSE_PLANES && lay == DC_LAYOUT_SPARSE_PLANES);
}

/* §17: predictor, base, the class code (n = W + 1) and the bits one element takes. */
static dc_status parse_int_planes(const uint8_t* data, size_t size, dc_header* h, size_t* pos_io) {
  size_t pos = *pos_io;
  const uint32_t w = h->info.element_bits, esz = w / 8;
  uint32_t i, s;
  dc_status st;
  if (size - pos < 1 + (size_t)esz) return DC_ERR_TRUNCATED;
  h->predictor = data[pos];
  if (h->predictor > 1) return DC_ERR_LAYOUT;
  h->base = 0;
  for (i = 0; i < esz; ++i) h->base |= (uint64_t)data[pos + 1 + i] << (8 * i);
  pos += 1 + esz;
  st = parse_alphabet(data, size, &pos, w + 1, &h->index_code);
  if (st != DC_OK) return st;
  h->elem_lo = 99;
  h->elem_hi = 0;
  for (s = 0; s <= w; ++s) {
    const uint32_t len = alph_len(&h->index_code, s);
    const uint32_t bits = len + (s > 1 ? s - 1 : 0);
    if (h->index_code.max_len == 0 ? s != h->index_code.single : len == 0) continue; /* unused */
    if (bits < h->elem_lo) h->elem_lo = bits;
    if (bits > h->elem_hi) h->elem_hi = bits;
  }
  *pos_io = pos;
  return DC_OK;
}

/* §18: background B, E, R, G, the gap code (n = G) and the symbol code (n = 258). */
static dc_status parse_sparse_planes(const uint8_t* data, size_t size, dc_header* h,
                                     size_t* pos_io) {
  size_t pos = *pos_io;
  const uint32_t esz = (uint32_t)h->info.element_size; /* 4 or 2 (parse_prefix: floats only) */
  dc_status st;
  if (size - pos < esz + 10u) return DC_ERR_TRUNCATED;
  h->base = esz == 4 ? ld32(data + pos) : ld16(data + pos);
  pos += esz;
  h->entries = ld32(data + pos);
  h->stored = ld32(data + pos + 4);
  h->gap_alphabet = ld16(data + pos + 8);
  pos += 10;
  if (h->stored > h->entries) return DC_ERR_LAYOUT;
  st = parse_entries(data, size, h, &pos);
  if (st != DC_OK) return st;
  st = parse_alphabet(data, size, &pos, DC_SPARSE_PLANE_SYMBOLS, &h->index_code);
  *pos_io = pos;
  return st;
}

dc_status dc_parse(const uint8_t* data, size_t size, dc_header* h) {
  size_t pos = 0;
  dc_status st;
  if (data == NULL || h == NULL) return DC_ERR_ARGUMENT;
  memset(h, 0, sizeof *h);
  st = parse_prefix(data, size, h, &pos);
  if (st != DC_OK) return st;
  if (left_out(h)) return DC_ERR_UNSUPPORTED;
  if (h->info.num_elements == 0) { /* §2: K = 0, dense layout, nothing more */
    if (size - pos < 2) return DC_ERR_TRUNCATED;
    if (ld16(data + pos) != 0) return DC_ERR_CODEBOOK;
    if (h->layout != DC_LAYOUT_DENSE) return DC_ERR_LAYOUT;
    pos += 2;
    if (size != pos) return DC_ERR_SIZE_MISMATCH;
    h->streams_pos = h->rest_pos = pos;
    return DC_OK;
  }
  if (h->layout == DC_LAYOUT_FLOAT_PLANES) { /* §12: the symbol alphabet has 256 entries */
    st = parse_alphabet(data, size, &pos, 256, &h->index_code);
    if (st != DC_OK) return st;
    return parse_streams(data, size, h, pos);
  }
  if (h->layout == DC_LAYOUT_SPARSE_PLANES) { /* §18: no codebook */
    st = parse_sparse_planes(data, size, h, &pos);
    if (st != DC_OK) return st;
    return parse_streams(data, size, h, pos);
  }
  if (h->layout == DC_LAYOUT_INT_PLANES) { /* §17: no codebook */
    st = parse_int_planes(data, size, h, &pos);
    if (st != DC_OK) return st;
    return parse_streams(data, size, h, pos);
  }
  st = parse_codebook(data, size, h, &pos);
  if (st != DC_OK) return st;
  if (h->sparse) {
    st = parse_sparse(data, size, h, &pos);
    if (st != DC_OK) return st;
  }
  st = DC_HAS_CONTEXT && h->layout == DC_LAYOUT_CONTEXT_SPARSE
           ? parse_contexts(data, size, h, &pos)
           : parse_alphabet(data, size, &pos, h->k, &h->index_code);
  if (st != DC_OK) return st;
  return parse_streams(data, size, h, pos);
}

dc_status dc_peek(const uint8_t* data, size_t size, dc_tensor_info* info) {
  dc_header h;
  dc_status st;
  if (info == NULL) return DC_ERR_ARGUMENT;
  st = dc_parse(data, size, &h);
  if (st == DC_OK) *info = h.info;
  return st;
}

/* §14's decode tables (u16 entries): the gap table, then one 2^Lmax-entry table per context. */
static size_t context_entries(const dc_header* h) {
  return table_entries(&h->gap_code) + (size_t)h->contexts * table_entries(&h->index_code);
}

static size_t workspace_bytes(const dc_header* h) {
  size_t e = 0;
  if (h->info.num_elements > 0 && h->contexts > 0) { /* §14 */
    e = context_entries(h);
  } else if (h->info.num_elements > 0) {
    e = table_entries(&h->index_code);
    if (h->sparse) e += table_entries(&h->gap_code);
  }
  return 2 * e + 2; /* + 2: alignment of the u16 tables in a workspace of any alignment */
}

dc_status dc_workspace_size(const uint8_t* data, size_t size, size_t* bytes) {
  dc_header h;
  dc_status st;
  if (bytes == NULL) return DC_ERR_ARGUMENT;
  st = dc_parse(data, size, &h);
  if (st == DC_OK) *bytes = workspace_bytes(&h);
  return st;
}

/* ---------------------------------------------------------------------------------------- */
/* §8 CRC-32 (slice-by-8 in 4 lanes, tables in dc_codec_crc.h)                                          */
/* ---------------------------------------------------------------------------------------- */
/* One slice-by-8 step: 8 bytes at p into the (conditioned) register c. */
#define DC_CRC8(c, p)                                                                \
  do {                                                                               \
    uint32_t lo_ = (c) ^ ld32(p), hi_ = ld32((p) + 4);                               \
    (c) = t[7][lo_ & 0xFFu] ^ t[6][(lo_ >> 8) & 0xFFu] ^ t[5][(lo_ >> 16) & 0xFFu] ^ \
          t[4][lo_ >> 24] ^ t[3][hi_ & 0xFFu] ^ t[2][(hi_ >> 8) & 0xFFu] ^           \
          t[1][(hi_ >> 16) & 0xFFu] ^ t[0][hi_ >> 24];                               \
  } while (0)

#ifndef DC_CRC_SMALL_TABLE
/* a * b modulo the CRC polynomial (bit-reflected: bit 31 is x^0). */
static uint32_t crc_mulmod(uint32_t a, uint32_t b) {
  uint32_t m = 1u << 31, prod = 0;
  for (; m != 0; m >>= 1) {
    if (a & m) prod ^= b;
    b = (b & 1u) ? (b >> 1) ^ 0xEDB88320u : b >> 1;
  }
  return prod;
}

/* CRC of A followed by B from crc(A), crc(B) and len(B) (the CRC is linear: crc(A) advanced over
 * len(B) zero bytes, xor crc(B)). */
static uint32_t crc_combine(uint32_t crc_a, uint32_t crc_b, size_t len_b) {
  uint32_t x = 1u << 31; /* x^0 */
  unsigned k = 3;        /* len_b bytes = len_b * 2^3 bits */
  for (; len_b != 0; len_b >>= 1, ++k)
    if (len_b & 1) x = crc_mulmod(dc_crc_x2n[k & 31], x);
  return crc_mulmod(x, crc_a) ^ crc_b;
}
#endif

static int simd_allowed = 1; /* dc_codec_use_simd: 0 none, 1 all, 2 all but AVX-512 */

/* The CPU-feature caches below (x86-64, GCC / Clang): probed on first use by whichever threads
 * decode first, each storing the same value; relaxed atomic loads and stores make that defined
 * (plain ones are a data race, which ThreadSanitizer reports: make test-tsan). */
#define DC_CACHE_LOAD(v) __atomic_load_n(&(v), __ATOMIC_RELAXED)
#define DC_CACHE_STORE(v, x) __atomic_store_n(&(v), (x), __ATOMIC_RELAXED)

int dc_codec_use_simd(int on) {
  int was = simd_allowed;
  simd_allowed = on == 2 ? 2 : on != 0;
  return was;
}

#if DC_CRC_CLMUL
/* x86-64 with PCLMULQDQ: carry-less multiplication folds 64 bytes per step in four 128-bit lanes
 * (the method of Intel's "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ", 2009;
 * constants for the reflected polynomial 0xEDB88320: x^(512+32) and x^(512-32) mod P for the
 * four-lane fold, x^(128+32), x^(128-32) for the fold into one lane, bit-reflected, shifted left
 * by one).  Folding keeps the message's residue mod P, so the last 128-bit lane, stored as 16
 * bytes, has the CRC the folded prefix had: the table code below finishes it and the tail.
 * About 3x the table code's four lanes (benchmarks/bench_crc.py).  Returns the
 * conditioned register after the first `*used` bytes (a multiple of 16, at least 64). */
__attribute__((target("pclmul,sse2"))) static uint32_t crc_clmul(uint32_t c, const uint8_t* p,
                                                                 size_t len, size_t* used) {
  const __m128i k4 = _mm_set_epi64x(0x1c6e41596LL, 0x154442bd4LL);
  const __m128i k1 = _mm_set_epi64x(0x0ccaa009eLL, 0x1751997d0LL);
  __m128i x0 = _mm_loadu_si128((const __m128i*)p), x1 = _mm_loadu_si128((const __m128i*)(p + 16));
  __m128i x2 = _mm_loadu_si128((const __m128i*)(p + 32)),
          x3 = _mm_loadu_si128((const __m128i*)(p + 48));
  uint8_t last[16];
  size_t i = 64;
  x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)c));
#define DC_FOLD(x, k, next) \
  x = _mm_xor_si128(        \
      _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11)), next)
  for (; i + 64 <= len; i += 64) {
    DC_FOLD(x0, k4, _mm_loadu_si128((const __m128i*)(p + i)));
    DC_FOLD(x1, k4, _mm_loadu_si128((const __m128i*)(p + i + 16)));
    DC_FOLD(x2, k4, _mm_loadu_si128((const __m128i*)(p + i + 32)));
    DC_FOLD(x3, k4, _mm_loadu_si128((const __m128i*)(p + i + 48)));
  }
  DC_FOLD(x0, k1, x1);
  DC_FOLD(x0, k1, x2);
  DC_FOLD(x0, k1, x3);
  for (; i + 16 <= len; i += 16) DC_FOLD(x0, k1, _mm_loadu_si128((const __m128i*)(p + i)));
#undef DC_FOLD
  _mm_storeu_si128((__m128i*)last, x0);
  *used = i;
  c = 0;
  for (int b = 0; b < 16; ++b) c = dc_crc_table[0][(c ^ last[b]) & 0xFFu] ^ (c >> 8);
  return c;
}

static int crc_clmul_ok(void) {
  static int cache = -1; /* DC_CACHE_LOAD */
  int level = DC_CACHE_LOAD(cache);
  if (level < 0) {
    __builtin_cpu_init();
    level = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse2");
    DC_CACHE_STORE(cache, level);
  }
  return level && simd_allowed;
}
#endif

uint32_t dc_crc32(uint32_t crc, const uint8_t* p, size_t len) {
  const uint32_t(*t)[256] = dc_crc_table;
#if DC_CRC_CLMUL
  if (len >= 256 && crc_clmul_ok()) {
    size_t used = 0;
    crc = crc_clmul(~crc, p, len, &used);
    p += used;
    len -= used;
    for (; len > 0; --len, ++p) crc = t[0][(crc ^ *p) & 0xFFu] ^ (crc >> 8);
    return ~crc;
  }
#endif
#ifndef DC_CRC_SMALL_TABLE
  /* Long inputs: four lanes of equal length in one loop (independent dependency chains, so the
   * table loads of the four overlap), combined at the end. */
  if (len >= 4096) {
    const size_t lane = (len / 32) * 8, steps = lane / 8;
    const uint8_t *p1 = p + lane, *p2 = p + 2 * lane, *p3 = p + 3 * lane;
    uint32_t c0 = ~crc, c1 = ~0u, c2 = ~0u, c3 = ~0u;
    size_t i;
    for (i = 0; i < steps; ++i, p += 8, p1 += 8, p2 += 8, p3 += 8) {
      DC_CRC8(c0, p);
      DC_CRC8(c1, p1);
      DC_CRC8(c2, p2);
      DC_CRC8(c3, p3);
    }
    crc = crc_combine(~c0, ~c1, lane);
    crc = crc_combine(crc, ~c2, lane);
    crc = crc_combine(crc, ~c3, lane);
    p = p3;
    len -= 4 * lane;
  }
  crc = ~crc;
  for (; len >= 8; len -= 8, p += 8) DC_CRC8(crc, p);
#else
  crc = ~crc;
#endif
  for (; len > 0; --len, ++p) crc = t[0][(crc ^ *p) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}
#undef DC_CRC8

/* §8: CRC-32 of every byte but the 4 of the check field. */
static int crc_ok(const dc_header* h, const uint8_t* data, size_t size) {
  uint32_t c = dc_crc32(0, data, h->check_pos);
  c = dc_crc32(c, data + h->check_pos + 4, size - h->check_pos - 4);
  return c == h->check;
}

int dc_crc_ok(const dc_header* h, const uint8_t* data, size_t size) {
  return crc_ok(h, data, size);
}

dc_status dc_verify(const uint8_t* data, size_t size) {
  dc_header h;
  dc_status st = dc_parse(data, size, &h);
  if (st != DC_OK) return st;
  return h.info.version >= 2 && !crc_ok(&h, data, size) ? DC_ERR_CHECKSUM : DC_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* §7 bit reader                                                                             */
/* ---------------------------------------------------------------------------------------- */
/* bits: next stream bits, LSB = next bit, valid: the low `count` (0..64); pos: next byte to
 * load (absolute offset in data; may pass `end`).  Declared in dc_codec_internal.h (the staged
 * row decode keeps its readers between calls). */
typedef dc_bitreader bitreader;

static void br_init(bitreader* b, size_t start, size_t size) {
  b->bits = 0;
  b->count = 0;
  b->pos = start;
  b->start = start;
  b->end = start + size;
}

/* Branch-free refill (needs pos + 8 <= end): afterwards count is 56..63. */
#define BR_REFILL_FAST(b, data)                      \
  do {                                               \
    (b).bits |= ld64((data) + (b).pos) << (b).count; \
    (b).pos += (63u - (b).count) >> 3;               \
    (b).count |= 56u;                                \
  } while (0)

/* Safe refill: bytes past the end read as zero (overrun is detected by br_finish). */
static inline void br_refill_safe(bitreader* b, const uint8_t* data) {
  while (b->count <= 56) {
    uint64_t byte = b->pos < b->end ? data[b->pos] : 0;
    b->bits |= byte << b->count;
    b->count += 8;
    b->pos++;
  }
}

/* §7: the symbols used exactly the stream's bytes (last byte partly) and the padding is zero. */
static dc_status br_finish(bitreader* b, const uint8_t* data) {
  uint64_t avail = (uint64_t)(b->end - b->start) * 8;
  uint64_t used, pad;
  if ((uint64_t)(b->pos - b->start) * 8 < b->count) return DC_ERR_STREAM; /* cannot happen */
  used = (uint64_t)(b->pos - b->start) * 8 - b->count;
  if (used > avail) return DC_ERR_STREAM;
  pad = avail - used;
  if (pad >= 8) return DC_ERR_STREAM;
  br_refill_safe(b, data);
  if (pad && (b->bits & ((1u << pad) - 1u)) != 0) return DC_ERR_STREAM;
  return DC_OK;
}

/* Refills that stay inside the stream from the current position: each fast refill advances
 * pos by at most 7 bytes and loads 8. */
static inline uint64_t br_safe_refills(const bitreader* b) {
  return b->pos + 8 <= b->end ? (b->end - 8 - b->pos) / 7 + 1 : 0;
}

/* Puts a fresh reader (br_init) at absolute bit position q, as a position-based loop left it. */
static inline void br_seek(bitreader* b, const uint8_t* data, uint64_t q) {
  const uint32_t r = (uint32_t)(q & 7u);
  b->pos = (size_t)(q >> 3);
  b->bits = 0;
  b->count = 0;
  br_refill_safe(b, data);
  b->bits >>= r;
  b->count -= r;
}

#if DC_DENSE_BMI2

/* Iterations of a position-based loop that loads 8 bytes at q / 8 and then advances q by at most
 * 48 bits (4 symbols of <= 12 bits: q / 8 by <= 6 bytes) with every load inside the stream. */
static inline uint64_t pos_safe_iters(uint64_t q, size_t end) {
  const uint64_t byte = q >> 3;
  return byte + 8 <= end ? (end - 8 - byte) / 6 + 1 : 0;
}
#endif

/* ---------------------------------------------------------------------------------------- */
/* §8 checksum                                                                               */
/* ---------------------------------------------------------------------------------------- */
#define DC_P 0xFFFFFFFFu

static inline uint64_t fold(uint64_t x) { /* x mod (2^32 - 1), up to one final subtract */
  x = (x & 0xFFFFFFFFu) + (x >> 32);
  return (x & 0xFFFFFFFFu) + (x >> 32);
}

void dc_checksum_update(uint32_t* a_io, uint32_t* b_io, const uint8_t* p, size_t nwords) {
  uint64_t a = *a_io, b = *b_io;
  /* Blocks of R = 4K words as 4 independent lanes (ILP; 8 accumulators fit the registers of
   * x86-64 and aarch64): sum_{i<R} (R - i) w_i = 4 sum_j B_j - sum_j j A_j, with lane sums
   * A_j and lane Fletcher sums B_j.  K <= 1024 keeps every partial sum below 2^57. */
  while (nwords >= 4) {
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
    uint64_t steps = min_u64(nwords / 4, 1024), k, sa, sb, sj;
    for (k = 0; k < steps; ++k, p += 16) {
      a0 += ld32(p);
      a1 += ld32(p + 4);
      a2 += ld32(p + 8);
      a3 += ld32(p + 12);
      b0 += a0;
      b1 += a1;
      b2 += a2;
      b3 += a3;
    }
    sa = a0 + a1 + a2 + a3;
    sb = b0 + b1 + b2 + b3;
    sj = a1 + 2 * a2 + 3 * a3;
    b = fold(b + 4 * steps * a + 4 * sb) + ((uint64_t)DC_P << 15) - sj;
    a = fold(a + sa);
    b = fold(b);
    nwords -= 4 * steps;
  }
  for (; nwords > 0; --nwords, p += 4) {
    a += ld32(p);
    b += a;
  }
  a = fold(a);
  b = fold(b);
  if (a >= DC_P) a -= DC_P;
  if (b >= DC_P) b -= DC_P;
  *a_io = (uint32_t)a;
  *b_io = (uint32_t)b;
}

/* Running checksum of a version 1 output (§8.1), advanced while the freshly written bytes are
 * in cache.  NULL for version 2, whose CRC covers the input instead. */
typedef struct {
  uint32_t a, b;
  size_t done; /* output bytes already summed (a multiple of 4) */
} cksum;

static void ck_upto(cksum* c, const uint8_t* out, size_t upto) {
  if (c != NULL && upto > c->done + 3) {
    size_t w = (upto - c->done) / 4;
    dc_checksum_update(&c->a, &c->b, out + c->done, w);
    c->done += 4 * w;
  }
}

/* Adds `len` bytes, zero-padded to whole words. */
static void checksum_bytes(uint32_t* a, uint32_t* b, const uint8_t* p, size_t len) {
  size_t full = len / 4, rest = len % 4;
  dc_checksum_update(a, b, p, full);
  if (rest) {
    uint8_t last[4] = {0, 0, 0, 0};
    memcpy(last, p + full * 4, rest);
    dc_checksum_update(a, b, last, 1);
  }
}

/* §8.1: the rest of the output, then the header (up to the streams) with the checksum fields
 * as zeros. */
static int checksum_v1_finish(cksum* c, const dc_header* h, const uint8_t* data,
                              const uint8_t* out) {
  static const uint8_t zeros[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  /* (an empty tensor may come with out == NULL: NULL + 0 is undefined in C, so no pointer sum) */
  if (h->info.output_bytes > c->done)
    checksum_bytes(&c->a, &c->b, out + c->done, h->info.output_bytes - c->done);
  dc_checksum_update(&c->a, &c->b, data, h->check_pos / 4);
  dc_checksum_update(&c->a, &c->b, zeros, 2);
  checksum_bytes(&c->a, &c->b, data + h->check_pos + 8, h->streams_pos - h->check_pos - 8);
  return c->a == h->check_a && c->b == h->check_b;
}

/* ---------------------------------------------------------------------------------------- */
/* Element stores (§3, §13)                                                                  */
/* ---------------------------------------------------------------------------------------- */
/* Element i := value v (esz bytes; for sub-byte types, bits < 8, the low bits of v[0], which
 * §13 guarantees are the only ones set).  Sub-byte stores read-modify-write their byte. */
DC_INLINE void put1(uint8_t* out, uint64_t i, const uint8_t* v, const size_t esz,
                    const unsigned bits) {
  if (bits == 4 || bits == 2) {
    const unsigned per = 8 / bits, sh = (unsigned)(i % per) * bits;
    uint8_t* o = out + i / per;
    *o = (uint8_t)((*o & ~(((1u << bits) - 1u) << sh)) | ((unsigned)v[0] << sh));
  } else {
    memcpy(out + i * esz, v, esz);
  }
}

/* Elements i..i+3 (i a multiple of 4, so sub-byte elements fill whole bytes). */
DC_INLINE void put4(uint8_t* out, uint64_t i, const uint8_t* v0, const uint8_t* v1,
                    const uint8_t* v2, const uint8_t* v3, const size_t esz, const unsigned bits) {
  if (bits == 4) {
    out[i / 2] = (uint8_t)(v0[0] | (v1[0] << 4));
    out[i / 2 + 1] = (uint8_t)(v2[0] | (v3[0] << 4));
  } else if (bits == 2) {
    out[i / 4] = (uint8_t)(v0[0] | (v1[0] << 2) | (v2[0] << 4) | (v3[0] << 6));
  } else {
    memcpy(out + i * esz, v0, esz);
    memcpy(out + (i + 1) * esz, v1, esz);
    memcpy(out + (i + 2) * esz, v2, esz);
    memcpy(out + (i + 3) * esz, v3, esz);
  }
}

/* Fills elements [from, to) with the value v (an ungrouped background or constant). */
static void fill_elements(uint8_t* out, uint64_t from, uint64_t to, const uint8_t* v, size_t esz,
                          unsigned bits) {
  uint8_t* dst;
  size_t total, done, i;
  int same = 1;
  if (from >= to) return;
  if (bits < 8) { /* whole bytes get the replicated pattern, partial ones element by element */
    const unsigned per = 8 / bits;
    uint8_t pat = 0;
    for (i = 0; i < per; ++i) pat = (uint8_t)(pat | (v[0] << (i * bits)));
    for (; from < to && from % per; ++from) put1(out, from, v, 1, bits);
    for (; to > from && to % per; --to) put1(out, to - 1, v, 1, bits);
    if (from < to) memset(out + from / per, pat, (size_t)((to - from) / per));
    return;
  }
  dst = out + from * esz;
  total = (size_t)(to - from) * esz;
  for (i = 1; i < esz; ++i) same &= v[i] == v[0];
  if (same) {
    memset(dst, v[0], total);
    return;
  }
  memcpy(dst, v, esz);
  for (done = esz; done < total;) { /* doubling copies */
    size_t n = done < total - done ? done : total - done;
    memcpy(dst + done, dst, n);
    done += n;
  }
}

/* §11: fills every element with its group's entry `index` (background or the zero-bit code's
 * symbol): one period of C * inner elements, then doubling copies of it. */
static void fill_grouped(uint8_t* out, const dc_header* h, uint32_t index) {
  const size_t esz = h->cb_esize;
  const uint64_t n = h->info.num_elements, period = min_u64(n, h->groups * h->inner);
  const size_t total = (size_t)n * esz, pbytes = (size_t)period * esz;
  uint64_t p = 0;
  uint32_t g;
  size_t done;
  for (g = 0; p < period; ++g) {
    uint64_t to = min_u64(period, p + h->inner);
    fill_elements(out, p, to, h->codebook + ((size_t)g * h->k + index) * esz, esz,
                  8 * (unsigned)esz);
    p = to;
  }
  for (done = pbytes; done < total;) { /* multiples of the period keep the pattern */
    size_t m = done < total - done ? done : total - done;
    memcpy(out + done, out, m);
    done += m;
  }
}

#define DEC(b, table, mask, sym)              \
  do {                                        \
    uint32_t e_ = (table)[(b).bits & (mask)]; \
    (sym) = e_ >> 4;                          \
    (b).bits >>= (e_ & 15u);                  \
    (b).count -= (e_ & 15u);                  \
  } while (0)

/* Every fast loop keeps the four interleaved streams (§7) in locals b0..b3. */
#define BR_LOAD4(src) \
  do {                \
    b0 = (src)[0];    \
    b1 = (src)[1];    \
    b2 = (src)[2];    \
    b3 = (src)[3];    \
  } while (0)
#define BR_STORE4(dst) \
  do {                 \
    (dst)[0] = b0;     \
    (dst)[1] = b1;     \
    (dst)[2] = b2;     \
    (dst)[3] = b3;     \
  } while (0)
/* One fast refill of each stream (needs safe_iters' guarantee: 8 bytes left in each). */
#define BR_REFILL4(data)      \
  do {                        \
    BR_REFILL_FAST(b0, data); \
    BR_REFILL_FAST(b1, data); \
    BR_REFILL_FAST(b2, data); \
    BR_REFILL_FAST(b3, data); \
  } while (0)
/* One symbol from each stream, in stream order. */
#define DEC4(table, mask, s0, s1, s2, s3) \
  do {                                    \
    DEC(b0, table, mask, s0);             \
    DEC(b1, table, mask, s1);             \
    DEC(b2, table, mask, s2);             \
    DEC(b3, table, mask, s3);             \
  } while (0)

/* Iterations between checksum updates (dense: 16 K elements). */
#define DC_CHUNK_ITERS 1024u
/* Sparse: elements filled with the background ahead of the entries at a time. */
#define DC_FILL_CHUNK 16384u

/* §11: codebook entry `sym` of element i's group. */
DC_INLINE const uint8_t* group_value(const dc_header* h, uint64_t i, uint32_t sym, size_t esz) {
  uint64_t q = h->inner == 1 ? i : i / h->inner;
  if (q >= h->groups) q %= h->groups;
  return h->codebook + ((size_t)q * h->k + sym) * esz;
}

static void streams_init(bitreader br[4], const dc_header* h) {
  uint32_t s;
  for (s = 0; s < 4; ++s) br_init(&br[s], h->stream_start[s], (size_t)h->stream_size[s]);
}

/* §6 tail (one entry at a time): the background filled ahead of an entry's position `at`. */
static inline void fill_ahead(uint8_t* out, uint64_t* filled, uint64_t at, uint64_t n, uint64_t G,
                              const uint8_t* bgv, size_t esz, unsigned bits) {
  if (at < n && *filled <= at) {
    uint64_t to = min_u64(n, at + G + DC_FILL_CHUNK);
    fill_elements(out, *filled, to, bgv, esz, bits);
    *filled = to;
  }
}

/* Every stream ends exactly at its declared size (br_finish on each, first error wins). */
static dc_status streams_finish(bitreader br[4], const uint8_t* data) {
  uint32_t s;
  for (s = 0; s < 4; ++s) {
    dc_status st = br_finish(&br[s], data);
    if (st != DC_OK) return st;
  }
  return DC_OK;
}

static inline uint64_t safe_iters(const bitreader* b0, const bitreader* b1, const bitreader* b2,
                                  const bitreader* b3) {
  return min_u64(min_u64(br_safe_refills(b0), br_safe_refills(b1)),
                 min_u64(br_safe_refills(b2), br_safe_refills(b3)));
}

/* ---------------------------------------------------------------------------------------- */
/* §5 dense and §11 grouped dense                                                            */
/* ---------------------------------------------------------------------------------------- */
DC_INLINE dc_status dense_body(const uint8_t* data, const dc_header* h, const uint16_t* tab,
                               uint8_t* out, cksum* ck, const size_t esz, const unsigned bits,
                               const int grouped) {
  bitreader b0, b1, b2, b3, br[4];
  const uint64_t mask = (1u << h->index_code.max_len) - 1u;
  const uint64_t n = h->info.num_elements, rounds = n / 4;
  const uint8_t* cb = h->codebook;
  /* grouped: gb is the current group's table, rem the elements left in its run */
  const uint8_t* gb = cb;
  const uint8_t* const cb_end = cb + (size_t)h->groups * h->k * esz;
  const size_t gstep = (size_t)h->k * esz;
  uint64_t k = 0, it, rem = h->inner;
  uint32_t s, sym;
  dc_status st;
  streams_init(br, h);
  BR_LOAD4(br);
#define DC_NEXT_ELEMENT()        \
  do {                           \
    if (grouped && --rem == 0) { \
      rem = h->inner;            \
      gb += gstep;               \
      if (gb == cb_end) gb = cb; \
    }                            \
  } while (0)
  /* Each iteration: 1 refill and 4 symbols (4 * 12 <= 56 bits) per stream.  `it` is a number
   * of iterations that cannot reach past any stream's end. */
  while ((it = min_u64(safe_iters(&b0, &b1, &b2, &b3), min_u64((rounds - k) / 4, DC_CHUNK_ITERS))) >
         0) {
    for (; it > 0; --it) {
      uint32_t r;
      BR_REFILL4(data);
      for (r = 0; r < 4; ++r) {
        uint32_t s0, s1, s2, s3;
        const uint8_t *v0, *v1, *v2, *v3;
        DEC4(tab, mask, s0, s1, s2, s3);
        if (grouped) {
          v0 = gb + s0 * esz;
          DC_NEXT_ELEMENT();
          v1 = gb + s1 * esz;
          DC_NEXT_ELEMENT();
          v2 = gb + s2 * esz;
          DC_NEXT_ELEMENT();
          v3 = gb + s3 * esz;
          DC_NEXT_ELEMENT();
        } else {
          v0 = cb + s0 * esz;
          v1 = cb + s1 * esz;
          v2 = cb + s2 * esz;
          v3 = cb + s3 * esz;
        }
        put4(out, 4 * (k + r), v0, v1, v2, v3, esz, bits);
      }
      k += 4;
    }
    ck_upto(ck, out, (size_t)(k * 4 * esz));
  }
#undef DC_NEXT_ELEMENT
  /* Tail: each stream on its own with the safe refill. */
  BR_STORE4(br);
  if (bits < 8)
    memset(out + k * 4 * bits / 8, 0, (size_t)(h->info.output_bytes - k * 4 * bits / 8));
  for (s = 0; s < 4; ++s) {
    bitreader* b = &br[s];
    uint64_t i;
    for (i = k * 4 + s; i < n; i += 4) {
      br_refill_safe(b, data);
      DEC(*b, tab, mask, sym);
      put1(out, i, grouped ? group_value(h, i, sym, esz) : cb + sym * esz, esz, bits);
    }
    st = br_finish(b, data);
    if (st != DC_OK) return st;
  }
  return DC_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* §6 sparse and §11 grouped sparse                                                          */
/* ---------------------------------------------------------------------------------------- */
/* One entry: p += gap, bounds check, store, p += 1. */
#define DC_ENTRY(g, i)                                                             \
  do {                                                                             \
    p += (g);                                                                      \
    if (p >= n) return DC_ERR_STREAM;                                              \
    put1(out, p, grouped ? group_value(h, p, (i), esz) : cb + (i)*esz, esz, bits); \
    p++;                                                                           \
  } while (0)

DC_INLINE dc_status sparse_body(const uint8_t* data, const dc_header* h, const uint16_t* gtab,
                                const uint16_t* itab, uint8_t* out, cksum* ck, const size_t esz,
                                const unsigned bits, const int grouped) {
  bitreader b0, b1, b2, b3, br[4];
  const uint64_t gmask = (1u << h->gap_code.max_len) - 1u;
  const uint64_t imask = (1u << h->index_code.max_len) - 1u;
  const uint64_t n = h->info.num_elements, e = h->entries, G = h->gap_alphabet;
  const uint8_t* cb = h->codebook;
  const uint8_t* bgv = cb + (size_t)h->background * esz;
  uint64_t j = 0, p = 0, filled = 0, it;
  streams_init(br, h);
  BR_LOAD4(br);
  if (grouped) { /* each group has its own background value: fill everything up front */
    fill_grouped(out, h, h->background);
    filled = n;
  }
  /* Each iteration: 1 refill and 2 entries (2 * (12 + 12) <= 56 bits) per stream, so 8
   * entries advancing p by at most 8 G; the background is filled just ahead of p. */
  while ((it = min_u64(safe_iters(&b0, &b1, &b2, &b3), min_u64((e - j) / 8, DC_CHUNK_ITERS))) > 0) {
    uint64_t reach;
    if (it * 8 * G > DC_FILL_CHUNK) it = DC_FILL_CHUNK / (8 * G) + 1;
    reach = min_u64(n, p + it * 8 * G);
    if (filled < reach) {
      uint64_t to = min_u64(n, filled + DC_FILL_CHUNK > reach ? filled + DC_FILL_CHUNK : reach);
      fill_elements(out, filled, to, bgv, esz, bits);
      filled = to;
    }
    for (; it > 0; --it) {
      uint32_t r;
      BR_REFILL4(data);
      for (r = 0; r < 2; ++r) {
        uint32_t g0, g1, g2, g3, i0, i1, i2, i3;
        DEC4(gtab, gmask, g0, g1, g2, g3);
        DEC4(itab, imask, i0, i1, i2, i3);
        DC_ENTRY(g0, i0);
        DC_ENTRY(g1, i1);
        DC_ENTRY(g2, i2);
        DC_ENTRY(g3, i3);
      }
      j += 8;
    }
    ck_upto(ck, out, (size_t)(p * esz));
  }
  BR_STORE4(br);
  for (; j < e; ++j) {
    bitreader* bb = &br[j & 3];
    uint32_t g, i;
    br_refill_safe(bb, data);
    DEC(*bb, gtab, gmask, g);
    DEC(*bb, itab, imask, i);
    fill_ahead(out, &filled, p + g, n, G, bgv, esz, bits);
    DC_ENTRY(g, i);
  }
  if (n - p >= G) return DC_ERR_STREAM; /* §6: trailing background < G */
  fill_elements(out, filled, n, bgv, esz, bits);
  return streams_finish(br, data);
}
#undef DC_ENTRY

/* ---------------------------------------------------------------------------------------- */
/* §6 sparse and §11 grouped sparse (layouts 1, 3) straight to compressed rows               */
/* ---------------------------------------------------------------------------------------- */
/* dc_decode_rows (dc_codec_internal.h): the entries of §6 are walked exactly as sparse_body
 * walks them (same stream order, same checks: p < N per entry, N - p < G at the end, §7's
 * stream rules), but instead of storing codebook[index] at element p of a dense [rows, cols]
 * tensor, each entry appends (p mod cols, value_code[q][index]) to row p / cols, q being its
 * §11 group (0 ungrouped; the row for axis 0, the column for axis 1).  value codes > 255 mark
 * values the caller does not keep (the background, zeros): they append nothing.  The dense
 * tensor is never materialised. mode: 0 ungrouped, 1 grouped by row, 2 grouped by column. */
#define DC_ROW_ENTRY(g, i)                                     \
  do {                                                         \
    uint32_t c_, v_;                                           \
    p += (g);                                                  \
    if (p >= n) return DC_ERR_STREAM;                          \
    if (p >= rend) { /* next row(s); p < N keeps row < rows */ \
      do {                                                     \
        rp[++row] = (uint32_t)k;                               \
        rend += cols;                                          \
      } while (p >= rend);                                     \
      if (mode == 1) vrow = vc + (size_t)row * K;              \
    }                                                          \
    c_ = (uint32_t)(p - (rend - cols));                        \
    v_ = (mode == 2 ? vc + (size_t)c_ * K : vrow)[(i)];        \
    col[k] = (uint16_t)c_;                                     \
    code[k] = (uint8_t)v_;                                     \
    k += (v_ >> 8) ^ 1u; /* kept: < 256; skipped: 256 */       \
    p++;                                                       \
  } while (0)

DC_INLINE dc_status rows_body(const uint8_t* data, const dc_header* h, const uint16_t* gtab,
                              const uint16_t* itab, dc_rows* r, const int mode) {
  bitreader b0, b1, b2, b3, br[4];
  const uint64_t gmask = (1u << h->gap_code.max_len) - 1u;
  const uint64_t imask = (1u << h->index_code.max_len) - 1u;
  const uint64_t n = h->info.num_elements, e = h->entries, G = h->gap_alphabet;
  const uint64_t cols = r->cols;
  const size_t K = h->k;
  const uint16_t* vc = r->value_code;
  const uint16_t* vrow = vc;
  uint32_t* rp = r->row_ptr;
  uint16_t* col = r->col;
  uint8_t* code = r->code;
  uint64_t j = 0, p = 0, k = 0, rend = cols, it, row = 0;
  dc_status st;
  streams_init(br, h);
  BR_LOAD4(br);
  rp[0] = 0;
  /* 1 refill and 2 entries (2 * (12 + 12) <= 56 bits) per stream per iteration, as §6's
   * decoder; k <= j < E, so the appends stay inside the caller's E-entry arrays. */
  while ((it = min_u64(safe_iters(&b0, &b1, &b2, &b3), (e - j) / 8)) > 0) {
    j += 8 * it;
    for (; it > 0; --it) {
      uint32_t rr;
      BR_REFILL4(data);
      for (rr = 0; rr < 2; ++rr) {
        uint32_t g0, g1, g2, g3, i0, i1, i2, i3;
        DEC4(gtab, gmask, g0, g1, g2, g3);
        DEC4(itab, imask, i0, i1, i2, i3);
        DC_ROW_ENTRY(g0, i0);
        DC_ROW_ENTRY(g1, i1);
        DC_ROW_ENTRY(g2, i2);
        DC_ROW_ENTRY(g3, i3);
      }
    }
  }
  BR_STORE4(br);
  for (; j < e; ++j) {
    bitreader* bb = &br[j & 3];
    uint32_t g, i;
    br_refill_safe(bb, data);
    DEC(*bb, gtab, gmask, g);
    DEC(*bb, itab, imask, i);
    DC_ROW_ENTRY(g, i);
  }
  if (n - p >= G) return DC_ERR_STREAM; /* §6: trailing background < G */
  st = streams_finish(br, data);
  if (st != DC_OK) return st;
  while (row < r->rows) rp[++row] = (uint32_t)k;
  r->nnz = k;
  return DC_OK;
}
#undef DC_ROW_ENTRY

/* Ungrouped tensors (§6, the common case) take a pair table: one lookup decodes a whole entry
 * when its gap code and index code both end inside the next DC_PAIR_BITS stream bits (94 % of
 * the entries of a 4096x4096 layer at 10 % density), giving gap + 1, the value code and the
 * bits used; otherwise it gives the gap and the index takes its own lookup.  Entry: (gap + 1)
 * << 16 | value code << 7 | both << 6 | bits used (bits 4-5 zero).  The index is looked up in
 * the bits after the gap with the window's missing high bits as zeros: a code that fits in the
 * bits present is the stream's (codes are prefix-free), a longer one is not used.  Same
 * entries, positions, checks and statuses as rows_body; with the two passes below 1.1-1.15x
 * its speed on that layer (x86-64, loaded machine, best of 30: 5.57 -> 4.95 ms incl. the CRC). */
#define DC_PAIR_BITS 12u
#define DC_PAIR_BOTH (1u << 6)
static void build_pairs(const uint16_t* gtab, uint32_t gmask, const uint16_t* itab, uint32_t imask,
                        const uint16_t* vc, uint32_t* pairs) {
  uint32_t w;
  for (w = 0; w < (1u << DC_PAIR_BITS); ++w) {
    const uint32_t ge = gtab[w & gmask], lg = ge & 15u;
    const uint32_t ie = itab[(w >> lg) & imask], li = ie & 15u;
    const uint32_t gap1 = ((uint32_t)ge >> 4) + 1u;
    pairs[w] = lg + li <= DC_PAIR_BITS
                   ? gap1 << 16 | (uint32_t)vc[ie >> 4] << 7 | DC_PAIR_BOTH | (lg + li)
                   : gap1 << 16 | lg;
  }
}

/* Decoding and placing are two passes over chunks of DC_ROWS_CHUNK entries (the decode loop keeps
 * four streams' state in registers, the placing loop the row state): pass 1 stores each entry
 * as a pair-table word (gap + 1, value code) in a buffer (rows_plain: r->pairs's scratch part;
 * dc_sparse_fc.c's two-thread build: a ring that the other thread places from), pass 2 appends
 * it. */
/* the pair table and a chunk fit the 2 << DC_MAX_CODE_LENGTH words of r->pairs */
typedef char dc_pair_workspace_fits
    [DC_PAIR_BITS <= DC_MAX_CODE_LENGTH && DC_ROWS_CHUNK <= (1u << DC_MAX_CODE_LENGTH) ? 1 : -1];
#define DC_PAIR_RAW(b, out)                                       \
  do {                                                            \
    uint32_t pe_ = pairs[(b).bits & ((1u << DC_PAIR_BITS) - 1u)]; \
    (b).bits >>= (pe_ & 15u);                                     \
    (b).count -= (pe_ & 15u);                                     \
    if (!(pe_ & DC_PAIR_BOTH)) {                                  \
      uint32_t i_;                                                \
      DEC(b, itab, imask, i_);                                    \
      pe_ = (pe_ & 0xFFFF0000u) | (uint32_t)vc[i_] << 7;          \
    }                                                             \
    (out) = pe_;                                                  \
  } while (0)
/* Appends entry word w: q = position + 1 of the entry (q <= rend: inside the current row). */
#define DC_PAIR_PLACE(w)                                       \
  do {                                                         \
    const uint32_t w_ = (w), v_ = (w_ >> 7) & 0x1FFu;          \
    q += w_ >> 16;                                             \
    if (q > rend) { /* next row(s); q <= N keeps row < rows */ \
      if (q > n) return DC_ERR_STREAM;                         \
      do {                                                     \
        rp[++row] = (uint32_t)k;                               \
        rend += cols;                                          \
      } while (q > rend);                                      \
      base = rend - cols + 1u;                                 \
    }                                                          \
    col[k] = (uint16_t)(q - base);                             \
    code[k] = (uint8_t)v_;                                     \
    k += (v_ >> 8) ^ 1u; /* kept: < 256; skipped: 256 */       \
  } while (0)

/* The staged form of rows_plain (dc_codec_internal.h). */
static void rows_plain_init(dc_rows_plain_state* s, const uint8_t* data, const dc_header* h,
                            const uint16_t* itab, dc_rows* r) {
  memset(s, 0, sizeof *s);
  streams_init(s->dec.br, h);
  s->dec.data = data;
  s->dec.h = h;
  s->dec.itab = itab;
  s->dec.pairs = r->pairs;
  s->dec.vc = r->value_code;
  s->place.rend = r->cols;
  s->place.base = 1;
  s->place.n = h->info.num_elements;
  s->place.r = r;
  r->row_ptr[0] = 0;
}

size_t dc_rows_plain_decode(dc_rows_plain_state* s, uint32_t* words, size_t max) {
  const uint8_t* data = s->dec.data;
  const uint16_t* itab = s->dec.itab;
  const uint32_t* pairs = s->dec.pairs;
  const uint16_t* vc = s->dec.vc;
  const uint64_t imask = (1u << s->dec.h->index_code.max_len) - 1u;
  bitreader b0 = s->dec.br[0], b1 = s->dec.br[1], b2 = s->dec.br[2], b3 = s->dec.br[3];
  /* as rows_body: 1 refill and 2 entries (<= 2 * 24 bits) per stream per iteration */
  const uint64_t it =
      min_u64(min_u64(safe_iters(&b0, &b1, &b2, &b3), (s->dec.h->entries - s->dec.j) / 8),
              min_u64(max, DC_ROWS_CHUNK) / 8);
  uint32_t* o = words;
  uint64_t x;
  for (x = it; x > 0; --x, o += 8) {
    BR_REFILL4(data);
    DC_PAIR_RAW(b0, o[0]);
    DC_PAIR_RAW(b1, o[1]);
    DC_PAIR_RAW(b2, o[2]);
    DC_PAIR_RAW(b3, o[3]);
    DC_PAIR_RAW(b0, o[4]);
    DC_PAIR_RAW(b1, o[5]);
    DC_PAIR_RAW(b2, o[6]);
    DC_PAIR_RAW(b3, o[7]);
  }
  BR_STORE4(s->dec.br);
  s->dec.j += 8 * it;
  return (size_t)(8 * it);
}

dc_status dc_rows_plain_place(dc_rows_plain_state* s, const uint32_t* words, size_t count) {
  dc_rows* r = s->place.r;
  const uint64_t n = s->place.n, cols = r->cols;
  uint32_t* rp = r->row_ptr;
  uint16_t* col = r->col;
  uint8_t* code = r->code;
  uint64_t q = s->place.q, k = s->place.k, rend = s->place.rend, base = s->place.base;
  uint64_t row = s->place.row;
  size_t x;
  for (x = 0; x < count; ++x) DC_PAIR_PLACE(words[x]);
  s->place.q = q;
  s->place.k = k;
  s->place.rend = rend;
  s->place.base = base;
  s->place.row = row;
  return DC_OK;
}

dc_status dc_rows_plain_end(dc_rows_plain_state* s) {
  const uint8_t* data = s->dec.data;
  const dc_header* h = s->dec.h;
  const uint16_t* itab = s->dec.itab;
  const uint32_t* pairs = s->dec.pairs;
  const uint16_t* vc = s->dec.vc;
  const uint64_t imask = (1u << h->index_code.max_len) - 1u;
  const uint64_t e = h->entries, G = h->gap_alphabet;
  dc_rows* r = s->place.r;
  uint64_t j;
  uint32_t t;
  dc_status st;
  for (j = s->dec.j; j < e; ++j) {
    bitreader* bb = &s->dec.br[j & 3];
    uint32_t w;
    br_refill_safe(bb, data);
    DC_PAIR_RAW(*bb, w);
    st = dc_rows_plain_place(s, &w, 1);
    if (st != DC_OK) return st;
  }
  if (h->info.num_elements - s->place.q >= G)
    return DC_ERR_STREAM; /* §6: trailing background < G */
  for (t = 0; t < 4; ++t) {
    st = br_finish(&s->dec.br[t], data);
    if (st != DC_OK) return st;
  }
  while (s->place.row < r->rows) r->row_ptr[++s->place.row] = (uint32_t)s->place.k;
  r->nnz = s->place.k;
  return DC_OK;
}

/* One thread: decode a chunk into the scratch part of r->pairs, place it, and so on. */
DC_NOINLINE dc_status rows_plain(const uint8_t* data, const dc_header* h, const uint16_t* itab,
                                 dc_rows* r) {
  uint32_t* const raw = r->pairs + ((size_t)1 << DC_PAIR_BITS);
  dc_rows_plain_state s;
  size_t n;
  rows_plain_init(&s, data, h, itab, r);
  while ((n = dc_rows_plain_decode(&s, raw, DC_ROWS_CHUNK)) > 0) {
    dc_status st = dc_rows_plain_place(&s, raw, n);
    if (st != DC_OK) return st;
  }
  return dc_rows_plain_end(&s);
}
#undef DC_PAIR_RAW
#undef DC_PAIR_PLACE

DC_NOINLINE dc_status rows_by_row(const uint8_t* d, const dc_header* h, const uint16_t* gt,
                                  const uint16_t* it, dc_rows* r) {
  return rows_body(d, h, gt, it, r, 1);
}
DC_NOINLINE dc_status rows_by_col(const uint8_t* d, const dc_header* h, const uint16_t* gt,
                                  const uint16_t* it, dc_rows* r) {
  return rows_body(d, h, gt, it, r, 2);
}

/* dc_decode_rows's checks (arguments, then §8's CRC unless the caller checks it) and its two
 * decode tables in r->tables (index table, then gap table). */
static dc_status rows_prepare(const uint8_t* data, size_t size, const dc_header* h, dc_rows* r) {
  uint16_t* ws; /* index and gap tables, <= 2^12 entries each, in r->tables */
  uint64_t groups_needed;
  if (!data || !h || !r || !r->row_ptr || !r->col || !r->code || !r->value_code || !r->tables ||
      !r->pairs)
    return DC_ERR_ARGUMENT;
  ws = r->tables;
  /* version 1's check covers the decoded tensor (§8.1): only dc_decode_ws can verify it */
  if (h->info.version < 2 || h->info.rank != 2 || h->info.num_elements == 0 ||
      (h->layout != DC_LAYOUT_SPARSE && h->layout != DC_LAYOUT_GROUPED_SPARSE) ||
      r->rows != h->info.dims[0] || r->cols != h->info.dims[1] || r->capacity < h->entries ||
      r->cols > 65536u)
    return DC_ERR_ARGUMENT;
  groups_needed = h->layout == DC_LAYOUT_GROUPED_SPARSE ? h->groups : 1;
  if (r->value_code_len < groups_needed * h->k) return DC_ERR_ARGUMENT;
  if (!r->crc_checked && !crc_ok(h, data, size)) return DC_ERR_CHECKSUM; /* §8: first */
  build_table(&h->index_code, ws);
  build_table(&h->gap_code, ws + ((size_t)1 << DC_MAX_CODE_LENGTH));
  return DC_OK;
}

dc_status dc_rows_plain_begin(const uint8_t* data, size_t size, const dc_header* h, dc_rows* r,
                              dc_rows_plain_state* s) {
  dc_status st;
  if (!s || !h || h->layout != DC_LAYOUT_SPARSE) return DC_ERR_ARGUMENT;
  st = rows_prepare(data, size, h, r);
  if (st != DC_OK) return st;
  build_pairs(r->tables + ((size_t)1 << DC_MAX_CODE_LENGTH), (1u << h->gap_code.max_len) - 1u,
              r->tables, (1u << h->index_code.max_len) - 1u, r->value_code, r->pairs);
  rows_plain_init(s, data, h, r->tables, r);
  return DC_OK;
}

dc_status dc_decode_rows(const uint8_t* data, size_t size, const dc_header* h, dc_rows* r) {
  dc_status st = rows_prepare(data, size, h, r);
  uint16_t *ws, *gtab;
  if (st != DC_OK) return st;
  ws = r->tables;
  gtab = ws + ((size_t)1 << DC_MAX_CODE_LENGTH);
  if (h->layout == DC_LAYOUT_SPARSE) {
    build_pairs(gtab, (1u << h->gap_code.max_len) - 1u, ws, (1u << h->index_code.max_len) - 1u,
                r->value_code, r->pairs);
    return rows_plain(data, h, ws, r);
  }
  return h->axis == 0 ? rows_by_row(data, h, gtab, ws, r) : rows_by_col(data, h, gtab, ws, r);
}

/* ---------------------------------------------------------------------------------------- */
/* §14 context-modelled sparse                                                               */
/* ---------------------------------------------------------------------------------------- */
/* Entry of a segment: gap g, then the index code chosen by the context 2 * class of the
 * segment's previous index + (g == 0); the table entry carries the class in bits 4-5 (§14 tables
 * are built with the class map), so no other load sits in the chain.  Stored as §6. */
#define DC_CTX_ENTRY(b, g, p, q, e)                  \
  do {                                               \
    const uint32_t c_ = ((q) << 1) + ((g) == 0);     \
    uint32_t i_;                                     \
    DEC(b, itab + ((size_t)c_ << ilen), imask, i_);  \
    (p) += (g);                                      \
    if ((p) >= (e)) return DC_ERR_STREAM;            \
    put1(out, (p), cb + (i_ >> 2) * esz, esz, bits); \
    (p)++;                                           \
    (q) = i_ & 3u;                                   \
  } while (0)

/* Background ahead of a segment's position: at least `ahead` elements (within the segment). */
DC_INLINE void ctx_fill(uint8_t* out, uint64_t* filled, uint64_t p, uint64_t end, uint64_t ahead,
                        const uint8_t* bgv, const size_t esz, const unsigned bits) {
  uint64_t reach = min_u64(end, p + ahead);
  if (*filled < reach) {
    uint64_t to = min_u64(end, *filled + DC_FILL_CHUNK > reach ? *filled + DC_FILL_CHUNK : reach);
    fill_elements(out, *filled, to, bgv, esz, bits);
    *filled = to;
  }
}

DC_INLINE dc_status context_body(const uint8_t* data, const dc_header* h, const uint16_t* gtab,
                                 const uint16_t* itab, uint8_t* out, const size_t esz,
                                 const unsigned bits) {
  bitreader b0, b1, b2, b3, br[4];
  const uint32_t ilen = h->index_code.max_len; /* every context's table has 2^ilen entries */
  const uint64_t imask = (1u << ilen) - 1u;
  const uint64_t gmask = (1u << h->gap_code.max_len) - 1u;
  const uint64_t n = h->info.num_elements, G = h->gap_alphabet;
  const uint8_t* cb = h->codebook;
  const uint8_t* bgv = cb + (size_t)h->background * esz;
  const uint32_t bgc = (h->classes[h->background >> 1] >> ((h->background & 1u) << 2)) & 3u;
  /* segment s covers positions [seg_start[s], end s); p = position, q = previous class */
  const uint64_t e0 = h->seg_start[1], e1 = h->seg_start[2], e2 = h->seg_start[3], e3 = n;
  uint64_t p0 = 0, p1 = e0, p2 = e1, p3 = e2, left = h->stream_count[3], done = 0, it;
  uint64_t pos[4], end[4], filled[4];
  uint32_t q0 = bgc, q1 = bgc, q2 = bgc, q3 = bgc, q[4], s;
  dc_status st;
  streams_init(br, h);
  for (s = 0; s < 4; ++s) filled[s] = h->seg_start[s];
  BR_LOAD4(br);
  /* 1 refill and 2 entries (<= 2 * (12 + 12) bits) per stream per iteration; the four segments
   * are independent chains. `left`: entries of the shortest stream (3) not yet decoded. */
  while ((it = min_u64(safe_iters(&b0, &b1, &b2, &b3), min_u64(left / 2, DC_CHUNK_ITERS))) > 0) {
    if (it * 2 * G > DC_FILL_CHUNK) it = DC_FILL_CHUNK / (2 * G) + 1;
    ctx_fill(out, &filled[0], p0, e0, it * 2 * G, bgv, esz, bits);
    ctx_fill(out, &filled[1], p1, e1, it * 2 * G, bgv, esz, bits);
    ctx_fill(out, &filled[2], p2, e2, it * 2 * G, bgv, esz, bits);
    ctx_fill(out, &filled[3], p3, e3, it * 2 * G, bgv, esz, bits);
    left -= 2 * it;
    done += 2 * it;
    for (; it > 0; --it) {
      uint32_t r;
      BR_REFILL4(data);
      for (r = 0; r < 2; ++r) {
        uint32_t g0, g1, g2, g3;
        DEC4(gtab, gmask, g0, g1, g2, g3);
        DC_CTX_ENTRY(b0, g0, p0, q0, e0);
        DC_CTX_ENTRY(b1, g1, p1, q1, e1);
        DC_CTX_ENTRY(b2, g2, p2, q2, e2);
        DC_CTX_ENTRY(b3, g3, p3, q3, e3);
      }
    }
  }
  BR_STORE4(br);
  pos[0] = p0;
  pos[1] = p1;
  pos[2] = p2;
  pos[3] = p3;
  end[0] = e0;
  end[1] = e1;
  end[2] = e2;
  end[3] = e3;
  q[0] = q0;
  q[1] = q1;
  q[2] = q2;
  q[3] = q3;
  for (s = 0; s < 4; ++s) {
    bitreader* bb = &br[s];
    uint64_t k;
    for (k = done; k < h->stream_count[s]; ++k) {
      uint32_t g;
      br_refill_safe(bb, data);
      DEC(*bb, gtab, gmask, g);
      ctx_fill(out, &filled[s], pos[s], end[s], (uint64_t)g + 1, bgv, esz, bits);
      DC_CTX_ENTRY(*bb, g, pos[s], q[s], end[s]);
    }
    /* §14: a segment ends where the next starts; the last leaves fewer than G */
    if (s < 3 ? pos[s] != end[s] : end[s] - pos[s] >= G) return DC_ERR_STREAM;
    fill_elements(out, filled[s], end[s], bgv, esz, bits);
    st = br_finish(bb, data);
    if (st != DC_OK) return st;
  }
  return DC_OK;
}
#undef DC_CTX_ENTRY

/* ---------------------------------------------------------------------------------------- */
/* §12 float planes                                                                          */
/* ---------------------------------------------------------------------------------------- */
/* Element i from its symbol (the 8 bits below the sign) and its raw bytes (the other bits, the
 * sign on top), W = 8 * esz bits: x = (rest & M) | sym << (W - 9) | (rest >> (W - 9)) << (W - 1). */
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define DC_LITTLE_ENDIAN 1 /* host order = format order: whole-word memcpy loads and stores */
#else
#define DC_LITTLE_ENDIAN 0
#endif

/* §12's bit pattern from a symbol (< 256) and a rest v (its W/8 - 1 bytes as a number). */
DC_INLINE uint32_t plane_word(uint32_t sym, uint32_t v, const size_t esz) {
  return esz == 4 ? (v & 0x7FFFFFu) | (sym << 23) | ((v >> 23) << 31)
                  : (v & 0x7Fu) | (sym << 7) | ((v >> 7) << 15);
}

/* The rest at r: 3 bytes (esz 4) or 1.  `wide`: a 4-byte load at r stays inside the input. */
DC_INLINE uint32_t load_rest(const uint8_t* r, const size_t esz, const int wide) {
  uint32_t v;
  if (esz != 4) return r[0];
  if (DC_LITTLE_ENDIAN && wide) {
    memcpy(&v, r, 4);
    return v & 0xFFFFFFu;
  }
  return (uint32_t)r[0] | ((uint32_t)r[1] << 8) | ((uint32_t)r[2] << 16);
}

/* Element i (esz = 2 or 4 bytes) := the low 8 * esz bits of x, little-endian. */
DC_INLINE void put_word(uint8_t* out, uint64_t i, uint32_t x, const size_t esz) {
  if (DC_LITTLE_ENDIAN && esz == 4) {
    memcpy(out + i * 4, &x, 4);
  } else if (DC_LITTLE_ENDIAN) {
    const uint16_t v = (uint16_t)x;
    memcpy(out + i * 2, &v, 2);
  } else {
    size_t j;
    for (j = 0; j < esz; ++j) out[i * esz + j] = (uint8_t)(x >> (8 * j));
  }
}

/* `wide`: element i is not the last one, so a 4-byte load of its 3 rest bytes stays inside the
 * input (the rest plane ends the input, §12). */
DC_INLINE void put_plane(uint8_t* out, uint64_t i, uint32_t sym, const uint8_t* rest,
                         const size_t esz, const int wide) {
  put_word(out, i, plane_word(sym, load_rest(rest + i * (esz - 1), esz, wide), esz), esz);
}

DC_INLINE dc_status planes_body(const uint8_t* data, const dc_header* h, const uint16_t* tab,
                                uint8_t* out, const size_t esz) {
  bitreader b0, b1, b2, b3, br[4];
  const uint64_t mask = (1u << h->index_code.max_len) - 1u;
  const uint64_t n = h->info.num_elements, rounds = n / 4;
  const uint8_t* rest = data + h->rest_pos;
  uint64_t k = 0, it, i;
  uint32_t s, sym;
  dc_status st;
  if (h->index_code.max_len == 0) { /* one exponent for all: no stream bits */
    for (i = 0; i < n; ++i) put_plane(out, i, h->index_code.single, rest, esz, i + 1 < n);
    return DC_OK;
  }
  streams_init(br, h);
  BR_LOAD4(br);
  /* the last round is left to the tail: elements of the fast loop are never the last (wide) */
  while ((it = min_u64(safe_iters(&b0, &b1, &b2, &b3), (rounds - k - (rounds > k)) / 4)) > 0) {
    for (; it > 0; --it) {
      uint32_t r;
      BR_REFILL4(data);
      for (r = 0; r < 4; ++r) {
        uint32_t s0, s1, s2, s3;
        const uint64_t e = 4 * (k + r);
        DEC4(tab, mask, s0, s1, s2, s3);
        put_plane(out, e, s0, rest, esz, 1);
        put_plane(out, e + 1, s1, rest, esz, 1);
        put_plane(out, e + 2, s2, rest, esz, 1);
        put_plane(out, e + 3, s3, rest, esz, 1);
      }
      k += 4;
    }
  }
  BR_STORE4(br);
  for (s = 0; s < 4; ++s) {
    bitreader* b = &br[s];
    for (i = k * 4 + s; i < n; i += 4) {
      br_refill_safe(b, data);
      DEC(*b, tab, mask, sym);
      put_plane(out, i, sym, rest, esz, i + 1 < n);
    }
    st = br_finish(b, data);
    if (st != DC_OK) return st;
  }
  return DC_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* §17 integer planes                                                                        */
/* ---------------------------------------------------------------------------------------- */
/* Element i (esz = 2, 4 or 8 bytes) stored little-endian at out + i * esz: memcpy on
 * little-endian hosts (any alignment), bytes otherwise. */
DC_INLINE void put_int(uint8_t* out, uint64_t i, uint64_t x, const size_t esz) {
  if (DC_LITTLE_ENDIAN) {
    if (esz == 2) {
      const uint16_t v = (uint16_t)x;
      memcpy(out + i * 2, &v, 2);
    } else if (esz == 4) {
      const uint32_t v = (uint32_t)x;
      memcpy(out + i * 4, &v, 4);
    } else {
      memcpy(out + i * 8, &x, 8);
    }
  } else {
    size_t j;
    for (j = 0; j < esz; ++j) out[i * esz + j] = (uint8_t)(x >> (8 * j));
  }
}

/* Zigzag value z of an element from the stream bits w at its start and its table entry e (not
 * a long one, bit 7 clear): the extra bits are w's bits l..t-1 (l = code length = t - nb), and
 * w >> t is what follows the element, so
 *   z = 2^nb * (c > 0) + extra = (w >> l) ^ (((w >> t) ^ (c > 0)) << nb)
 * (w >> l has w >> t above its low nb bits: the xor clears them and sets bit nb if c > 0).  The
 * shift counts are taken & 63, which x86-64's shifts do for free. */
#define DC_IP_SHORT(w, e, z)                                                         \
  do {                                                                               \
    const uint32_t nb_ = (e) >> 8; /* bit 7: c > 0, above the 6 bits a shift uses */ \
    const uint64_t rest_ = (w) >> ((e)&63u);                                         \
    (z) = ((w) >> (((e)-nb_) & 63u)) ^ ((rest_ ^ ((e) >> 15)) << (nb_ & 63u));       \
    (w) = rest_;                                                                     \
  } while (0)
/* Element i from its zigzag value z and prediction p: x = p + unzigzag(z) mod 2^W (the bits above
 * W of the sum are never stored, so it is left unmasked). */
#define DC_IP_PUT(i, z, p)                                    \
  do {                                                        \
    const uint64_t x_ = (p) + (((z) >> 1) ^ (0u - ((z)&1u))); \
    put_int(out, (i), x_, esz);                               \
    prev = x_;                                                \
  } while (0)

/* Each stream is a bit position q (4 registers instead of 12 for bit readers: x86-64 would spill
 * them).  LOAD(q): >= 57 stream bits from bit q on, LSB first.  The element at q, whose first bits
 * are w (>= 57 of them, loaded at q or left there by the previous element): one lookup, then
 * DC_IP_SHORT; a long element (more than 56 bits, 8-byte types only) takes its extra bits from
 * two more loads at its position: 32 at q + len, the other nb - 32 (<= 31) at q + len + 32. */
#define DC_IP_LOAD(q) (ld64(data + ((q) >> 3)) >> ((q)&7u))
#define DC_IP_SAFE(q) ip_load_safe(data, (q), end)
#define DC_IP_ZQ(w, q, z, LOAD)                                                                    \
  do {                                                                                             \
    const uint32_t e_ = tab[(w)&mask];                                                             \
    if (esz == 8 && (e_ & 128u)) {                                                                 \
      const uint32_t nb_ = (e_ >> 8) & 63u, l_ = e_ & 63u;                                         \
      (z) = LOAD((q) + l_) & 0xFFFFFFFFu;                                                          \
      (z) |=                                                                                       \
          ((LOAD((q) + l_ + 32) & (((uint64_t)1 << (nb_ - 32)) - 1u)) | (uint64_t)1 << (nb_ - 32)) \
          << 32;                                                                                   \
      (q) += l_ + nb_;                                                                             \
    } else {                                                                                       \
      (q) += e_ & 63u;                                                                             \
      DC_IP_SHORT(w, e_, z);                                                                       \
    }                                                                                              \
  } while (0)

/* DC_IP_LOAD with the bytes from `end` on read as zero (§7: the caller checks
 * afterwards that no element used them). */
static inline uint64_t ip_load_safe(const uint8_t* data, uint64_t q, size_t end) {
  const uint64_t byte = q >> 3;
  uint64_t v = 0;
  uint32_t k;
  if (byte + 8 <= end) return ld64(data + byte) >> (q & 7u);
  for (k = 0; k < 8 && byte + k < end; ++k) v |= (uint64_t)data[byte + k] << (8 * k);
  return v >> (q & 7u);
}

/* Rounds of the position-based loop whose loads stay inside a stream from bit q on: a round
 * advances q by <= 56 bits (7 bytes) and loads 8 bytes at q / 8; with elements of up to 75 bits
 * (slow, 8-byte types) by <= 75 bits (10 bytes) with loads at <= q / 8 + 6. */
static inline uint64_t ip_safe_rounds(uint64_t q, size_t end, int slow) {
  const uint64_t byte = q >> 3, need = slow ? 14 : 8, step = slow ? 10 : 7;
  return byte + need <= end ? (end - need - byte) / step + 1 : 0;
}

/* Rounds of 4 elements (element i from stream i mod 4) while every stream has the bytes for
 * them, `per_load` rounds per load of each stream: as many as the longest element allows (its
 * bits <= 56 / per_load: 2 for 2-byte types, up to 4 for short elements); then one element at a
 * time with safe loads; then §7's end checks (br_finish on readers put at the final positions). */
DC_INLINE dc_status int_planes_body(const uint8_t* data, const dc_header* h, const uint16_t* tab,
                                    uint8_t* out, const size_t esz) {
  bitreader br[4];
  const uint64_t mask = (1u << h->index_code.max_len) - 1u, n = h->info.num_elements;
  const uint64_t base = h->base;
  const uint32_t hi = h->elem_hi, per_load = hi <= 14 ? 4 : hi <= 18 ? 3 : hi <= 28 ? 2 : 1;
  const int slow = esz == 8 && hi > 56, previous = h->predictor == 1;
  uint64_t i = 0, it, prev = base, q[4], q0, q1, q2, q3;
  uint32_t s;
  streams_init(br, h);
  q0 = (uint64_t)br[0].start * 8u;
  q1 = (uint64_t)br[1].start * 8u;
  q2 = (uint64_t)br[2].start * 8u;
  q3 = (uint64_t)br[3].start * 8u;
  while ((it = min_u64(min_u64(min_u64(ip_safe_rounds(q0, br[0].end, slow),
                                       ip_safe_rounds(q1, br[1].end, slow)),
                               min_u64(ip_safe_rounds(q2, br[2].end, slow),
                                       ip_safe_rounds(q3, br[3].end, slow))),
                       (n - i) / (4 * per_load))) > 0) {
    for (; it > 0; --it) {
      uint64_t w0 = DC_IP_LOAD(q0), w1 = DC_IP_LOAD(q1), w2 = DC_IP_LOAD(q2), w3 = DC_IP_LOAD(q3);
      uint32_t r;
      for (r = 0; r < per_load; ++r, i += 4) {
        uint64_t z0, z1, z2, z3;
        DC_IP_ZQ(w0, q0, z0, DC_IP_LOAD);
        DC_IP_ZQ(w1, q1, z1, DC_IP_LOAD);
        DC_IP_ZQ(w2, q2, z2, DC_IP_LOAD);
        DC_IP_ZQ(w3, q3, z3, DC_IP_LOAD);
        DC_IP_PUT(i, z0, previous ? prev : base);
        DC_IP_PUT(i + 1, z1, previous ? prev : base);
        DC_IP_PUT(i + 2, z2, previous ? prev : base);
        DC_IP_PUT(i + 3, z3, previous ? prev : base);
      }
    }
  }
  q[0] = q0;
  q[1] = q1;
  q[2] = q2;
  q[3] = q3;
  for (; i < n; ++i) {
    const size_t end = br[i & 3u].end;
    uint64_t w = DC_IP_SAFE(q[i & 3u]), z;
    DC_IP_ZQ(w, q[i & 3u], z, DC_IP_SAFE);
    DC_IP_PUT(i, z, previous ? prev : base);
  }
  for (s = 0; s < 4; ++s) br_seek(&br[s], data, q[s]);
  return streams_finish(br, data);
}
#undef DC_IP_ZQ
#undef DC_IP_SHORT
#undef DC_IP_LOAD
#undef DC_IP_PUT

/* ---------------------------------------------------------------------------------------- */
/* §18 sparse float planes                                                                   */
/* ---------------------------------------------------------------------------------------- */
/* One §18 entry (gap g, symbol s): p += g; require p < N; element p := §12's word of s and the
 * r-th rest (then r += 1) if s < 256, else B (256) or B with its sign bit flipped (257).  No
 * branch on s (a pruned tfmot kernel's stored values and -0.0s alternate at random): every entry
 * loads a rest and keeps it or not by a mask.  `safe` (the caller knows that the block's entries
 * stay below N and that more than its entry count of rests are left, so every load at r, 4 bytes
 * wide, is inside the plane): no checks.  Otherwise p < N is checked, and the rest is read from
 * the plane while r + 1 < R (esz 4: a 4-byte load of 3 rest bytes stays in the input, which the
 * plane ends; esz 2: r < R), else from `last` (the plane's last rest, or zeros); a stored entry at
 * r >= R leaves r > R, which is checked after each block (the loads never leave the input).
 * `to_rows` (dc_decode_value_rows, B = ±0): instead of the store, DC_SP7_ROW (1: an FC weight's
 * rows, ±0 left out) or DC_SP7_TABLE_ROW (2: a lookup table's, only +0 left out). */
#define DC_SP7_ENTRY(g, s, safe)                                                         \
  do {                                                                                   \
    const uint32_t kept_ = ((s) >> 8) ^ 1u, keep_ = 0u - kept_;                          \
    const uint8_t* src_ = (safe) || r + (esz == 4) < R ? rest + r * (esz - 1) : last;    \
    const uint32_t x_ = plane_word((s), load_rest(src_, esz, 1), esz);                   \
    p += (g);                                                                            \
    if (!(safe) && p >= n) return DC_ERR_STREAM;                                         \
    if (to_rows == 2) {                                                                  \
      DC_SP7_TABLE_ROW(x_, kept_, (s), safe);                                            \
    } else if (to_rows) {                                                                \
      DC_SP7_ROW(x_, kept_, safe);                                                       \
    } else {                                                                             \
      put_word(out, p, (x_ & keep_) | ((bg ^ ((s)&1u) << (8 * esz - 1)) & ~keep_), esz); \
    }                                                                                    \
    r += kept_;                                                                          \
    p++;                                                                                 \
  } while (0)
/* The row form of the entry at p whose word (if stored) is x: rows before p's closed (row_ptr),
 * then its column and word written at the next slot k, which it takes (k += 1) only if it is a
 * stored entry (kept), a valid one (r < R: a stored entry past the R-th is an error, found after
 * the block; so k <= r <= R and the writes stay in the R + 1 slots) and non-zero (x << 1 != 0:
 * ±0 is no non-zero).  Without a branch on any of the three (a tfmot kernel's stored values and
 * -0.0s alternate at random). */
#define DC_SP7_ROW(x, kept, safe) \
  DC_SP7_PUT(x, (kept) & (uint32_t)((safe) || r < R) & (uint32_t)(((x) << 1) != 0))
/* Both row macros' store: rows before p's closed (row_ptr), then p's column and word w at slot k,
 * which the element takes (k += take, 0 or 1) without a branch. */
#define DC_SP7_PUT(w, take)                  \
  do {                                       \
    while (p >= rend) {                      \
      vrow_ptr[++row] = (uint32_t)k;         \
      rend += cols;                          \
    }                                        \
    vcol[k] = (uint16_t)(p - (rend - cols)); \
    vval[k] = (w);                           \
    k += (take);                             \
  } while (0)
/* DC_SP7_ROW for a lookup table (to_rows 2; B = +0.0, or -0.0 with G = 1: no background between
 * entries): the element at p is the stored word x, or for an entry not stored B (symbol 256) or B
 * with its sign flipped (257); it takes slot k unless it is +0.0 (-0.0 is kept: a lookup copies
 * bits) or a stored entry past the R-th (found after the block).  Every entry may take a slot:
 * k <= j <= E, the caller's E + 1 slots. */
#define DC_SP7_TABLE_ROW(x, kept, s, safe)                                               \
  do {                                                                                   \
    const uint32_t w_ = ((x) & (0u - (kept))) | ((bg ^ (((s)&1u) << 31)) & ((kept)-1u)); \
    DC_SP7_PUT(w_, (((kept) ^ 1u) | (uint32_t)((safe) || r < R)) & (uint32_t)(w_ != 0)); \
  } while (0)
/* Leading zero bits of w != 0 (63 - the marker's bit). */
static inline uint32_t lead_zeros(uint64_t w) {
#if defined(__GNUC__) || defined(__clang__)
  return (uint32_t)__builtin_clzll(w);
#else
  uint32_t c = 63, step;
  for (step = 32; step > 0; step >>= 1)
    if (w >> step) {
      w >>= step;
      c -= step;
    }
  return c;
#endif
}

/* Each stream is a bit position q (4 registers instead of a bit reader's 12: x86-64 would spill
 * them, as §17's loop notes): an 8-byte load at q / 8 gives 57 bits w, with a marker bit above
 * them (as sparse_e4_bmi2's); an iteration's 2 entries use <= 2 * (12 + 12) of them, and q then
 * advances by the bits consumed, which the marker's new place tells (leading zeros - 6). */
#define DC_SP7_LOAD(q) \
  (((ld64(data + ((q) >> 3)) >> ((q)&7u)) & (((uint64_t)1 << 57) - 1u)) | ((uint64_t)1 << 57))
#define DC_SP7_DEC(w, table, mask, sym)        \
  do {                                         \
    const uint32_t e_ = (table)[(w) & (mask)]; \
    (w) >>= e_ & 15u;                          \
    (sym) = e_ >> 4;                           \
  } while (0)
#define DC_SP7_ITER(safe)                                                      \
  do {                                                                         \
    uint64_t w0 = DC_SP7_LOAD(q0), w1 = DC_SP7_LOAD(q1), w2 = DC_SP7_LOAD(q2), \
             w3 = DC_SP7_LOAD(q3);                                             \
    uint32_t k_;                                                               \
    for (k_ = 0; k_ < 2; ++k_) {                                               \
      uint32_t g0, g1, g2, g3, s0, s1, s2, s3;                                 \
      DC_SP7_DEC(w0, gtab, gmask, g0);                                         \
      DC_SP7_DEC(w1, gtab, gmask, g1);                                         \
      DC_SP7_DEC(w2, gtab, gmask, g2);                                         \
      DC_SP7_DEC(w3, gtab, gmask, g3);                                         \
      DC_SP7_DEC(w0, stab, smask, s0);                                         \
      DC_SP7_DEC(w1, stab, smask, s1);                                         \
      DC_SP7_DEC(w2, stab, smask, s2);                                         \
      DC_SP7_DEC(w3, stab, smask, s3);                                         \
      DC_SP7_ENTRY(g0, s0, safe);                                              \
      DC_SP7_ENTRY(g1, s1, safe);                                              \
      DC_SP7_ENTRY(g2, s2, safe);                                              \
      DC_SP7_ENTRY(g3, s3, safe);                                              \
    }                                                                          \
    q0 += lead_zeros(w0) - 6u;                                                 \
    q1 += lead_zeros(w1) - 6u;                                                 \
    q2 += lead_zeros(w2) - 6u;                                                 \
    q3 += lead_zeros(w3) - 6u;                                                 \
  } while (0)
/* G = 1 (then E = N and every gap is 0: the gap code is zero-bit): entry i is element i, in
 * stream i mod 4 as §12's symbols, so a load serves 4 entries of <= 12 bits. */
#define DC_SP7_ITER1(safe)                                                     \
  do {                                                                         \
    uint64_t w0 = DC_SP7_LOAD(q0), w1 = DC_SP7_LOAD(q1), w2 = DC_SP7_LOAD(q2), \
             w3 = DC_SP7_LOAD(q3);                                             \
    uint32_t k_;                                                               \
    for (k_ = 0; k_ < 4; ++k_) {                                               \
      uint32_t s0, s1, s2, s3;                                                 \
      DC_SP7_DEC(w0, stab, smask, s0);                                         \
      DC_SP7_DEC(w1, stab, smask, s1);                                         \
      DC_SP7_DEC(w2, stab, smask, s2);                                         \
      DC_SP7_DEC(w3, stab, smask, s3);                                         \
      DC_SP7_ENTRY(0u, s0, safe);                                              \
      DC_SP7_ENTRY(0u, s1, safe);                                              \
      DC_SP7_ENTRY(0u, s2, safe);                                              \
      DC_SP7_ENTRY(0u, s3, safe);                                              \
    }                                                                          \
    q0 += lead_zeros(w0) - 6u;                                                 \
    q1 += lead_zeros(w1) - 6u;                                                 \
    q2 += lead_zeros(w2) - 6u;                                                 \
    q3 += lead_zeros(w3) - 6u;                                                 \
  } while (0)

/* The loop without checks: 64-bit targets only (5-7 % faster on x86-64 for tfmot's G = 1
 * tensors); 32-bit ones, microcontrollers among them, keep the flash of one loop per size. */
#if UINTPTR_MAX > 0xFFFFFFFFu
#define DC_SP7_UNCHECKED 1
#else
#define DC_SP7_UNCHECKED 0
#endif

/* §6's walk over the entries in §7's stream order, each entry as DC_SP7_ENTRY: blocks of
 * iterations (8 entries each, the background filled just ahead of p by ctx_fill) while every
 * stream has the bytes (ip_safe_rounds: <= 56 bits per iteration); a block that stays below N
 * (8 G per iteration) with more rests left than it has entries runs without checks (64-bit
 * targets); then one
 * entry at a time with bit readers put at the positions reached; then §6's end rule N - p < G,
 * §18's r = R, and §7's stream ends. */
DC_INLINE dc_status sparse_planes_body(const uint8_t* data, const dc_header* h,
                                       const uint16_t* gtab, const uint16_t* stab, uint8_t* out,
                                       dc_rows* vr, const size_t esz, const int to_rows) {
  bitreader br[4];
  const uint64_t gmask = (1u << h->gap_code.max_len) - 1u;
  const uint64_t smask = (1u << h->index_code.max_len) - 1u;
  const uint64_t n = h->info.num_elements, e = h->entries, G = h->gap_alphabet, R = h->stored;
  const uint32_t bg = (uint32_t)h->base;
  const unsigned bits = 8u * (unsigned)esz;
  const uint8_t* rest = data + h->rest_pos;
  uint8_t bgv[4], last[4] = {0, 0, 0, 0};
  /* G = 1: N < (E + 1) G makes every element an entry (tfmot's files, whose -0.0s break the runs
   * of +0.0), so no background is filled ahead */
  uint64_t j = 0, p = 0, r = 0, filled = G == 1 ? n : 0, it, q0, q1, q2, q3;
  /* to_rows: the rows (row r: positions [rend - cols, rend)), k values kept so far */
  uint32_t* const vrow_ptr = to_rows ? vr->row_ptr : NULL;
  uint16_t* const vcol = to_rows ? vr->col : NULL;
  uint32_t* const vval = to_rows ? vr->value : NULL;
  const uint64_t cols = to_rows ? vr->cols : 1;
  uint64_t k = 0, row = 0, rend = cols;
  if (to_rows) vrow_ptr[0] = 0;
  put_word(bgv, 0, bg, esz);
  if (esz == 4 && R > 0) memcpy(last, rest + (R - 1) * 3, 3);
  streams_init(br, h);
  q0 = (uint64_t)br[0].start * 8u;
  q1 = (uint64_t)br[1].start * 8u;
  q2 = (uint64_t)br[2].start * 8u;
  q3 = (uint64_t)br[3].start * 8u;
  /* G = 1 on 64-bit targets: 16 entries per iteration, one lookup each (the general loop below
   * then has nothing left to do; its tail takes the last entries) */
  while (DC_SP7_UNCHECKED && G == 1 &&
         (it = min_u64(
              min_u64(min_u64(ip_safe_rounds(q0, br[0].end, 0), ip_safe_rounds(q1, br[1].end, 0)),
                      min_u64(ip_safe_rounds(q2, br[2].end, 0), ip_safe_rounds(q3, br[3].end, 0))),
              min_u64((e - j) / 16, DC_CHUNK_ITERS))) > 0) {
    j += 16 * it;
    if (R - r > it * 16) { /* (p + 16 it <= E = N) */
      for (; it > 0; --it) DC_SP7_ITER1(1);
    } else {
      for (; it > 0; --it) DC_SP7_ITER1(0);
      if (r > R) return DC_ERR_STREAM;
    }
  }
  while ((it = min_u64(
              min_u64(min_u64(ip_safe_rounds(q0, br[0].end, 0), ip_safe_rounds(q1, br[1].end, 0)),
                      min_u64(ip_safe_rounds(q2, br[2].end, 0), ip_safe_rounds(q3, br[3].end, 0))),
              min_u64((e - j) / 8, DC_CHUNK_ITERS))) > 0) {
    if (it * 8 * G > DC_FILL_CHUNK) it = DC_FILL_CHUNK / (8 * G) + 1;
    if (!to_rows) ctx_fill(out, &filled, p, n, it * 8 * G, bgv, esz, bits);
    j += 8 * it;
    if (DC_SP7_UNCHECKED && p + it * 8 * G <= n && R - r > it * 8) {
      for (; it > 0; --it) DC_SP7_ITER(1);
    } else {
      for (; it > 0; --it) DC_SP7_ITER(0);
      if (r > R) return DC_ERR_STREAM;
    }
  }
  br_seek(&br[0], data, q0);
  br_seek(&br[1], data, q1);
  br_seek(&br[2], data, q2);
  br_seek(&br[3], data, q3);
  for (; j < e; ++j) {
    bitreader* bb = &br[j & 3];
    uint32_t g, sym;
    br_refill_safe(bb, data);
    DEC(*bb, gtab, gmask, g);
    DEC(*bb, stab, smask, sym);
    if (!to_rows) fill_ahead(out, &filled, p + g, n, G, bgv, esz, bits);
    DC_SP7_ENTRY(g, sym, 0);
    if (r > R) return DC_ERR_STREAM;
  }
  if (n - p >= G) return DC_ERR_STREAM;    /* §6: trailing background < G */
  if (r != R) return DC_ERR_SIZE_MISMATCH; /* §18: R stored entries, as the plane's size says */
  if (to_rows) {
    while (row < vr->rows) vrow_ptr[++row] = (uint32_t)k;
    vr->nnz = k;
  } else {
    fill_elements(out, filled, n, bgv, esz, bits);
  }
  return streams_finish(br, data);
}
#undef DC_SP7_UNCHECKED
#undef DC_SP7_ROW
#undef DC_SP7_PUT
#undef DC_SP7_TABLE_ROW
#undef DC_SP7_ITER1
#undef DC_SP7_ITER
#undef DC_SP7_DEC
#undef DC_SP7_LOAD
#undef DC_SP7_ENTRY

#if DC_DENSE_BMI2
/* §5 dense, 32-bit elements, ungrouped, for CPUs with BMI2: the same symbols in the same order
 * as dense_body, in fewer instructions per symbol.  Each stream is a bit position q instead of
 * a bit buffer + count: per iteration one 8-byte load at q / 8 gives its next 57 bits w, with a
 * marker bit above them; each of its 4 symbols is a BZHI-masked table lookup, a shift of w
 * (SHRX) and the codebook copy, and q then advances by the bits consumed, which the marker's
 * new place tells (leading zeros - 6).  The tail is dense_body's. */
#define DC_BMI2_SYM(w, o)                       \
  do {                                          \
    const uint64_t e_ = tab[_bzhi_u64((w), L)]; \
    (w) >>= e_ & 15u;                           \
    memcpy((o), cb + (e_ >> 4) * 4u, 4u);       \
  } while (0)
#define DC_BMI2_LOAD(q) ((_bzhi_u64(ld64(data + ((q) >> 3)) >> ((q)&7u), 57)) | ((uint64_t)1 << 57))
__attribute__((target("bmi,bmi2"))) DC_NOINLINE dc_status dense_e4_bmi2(const uint8_t* data,
                                                                        const dc_header* h,
                                                                        const uint16_t* tab,
                                                                        uint8_t* out, cksum* ck) {
  bitreader br[4];
  const uint32_t L = h->index_code.max_len;
  const uint64_t n = h->info.num_elements, rounds = n / 4;
  const uint8_t* cb = h->codebook;
  uint64_t k = 0, it, q[4];
  uint32_t s;
  streams_init(br, h);
  for (s = 0; s < 4; ++s) q[s] = (uint64_t)br[s].start * 8u;
  while ((it = min_u64(
              min_u64(min_u64(pos_safe_iters(q[0], br[0].end), pos_safe_iters(q[1], br[1].end)),
                      min_u64(pos_safe_iters(q[2], br[2].end), pos_safe_iters(q[3], br[3].end))),
              min_u64((rounds - k) / 4, DC_CHUNK_ITERS))) > 0) {
    uint64_t q0 = q[0], q1 = q[1], q2 = q[2], q3 = q[3];
    uint8_t* o = out + k * 16u;
    k += 4 * it;
    for (; it > 0; --it, o += 64) {
      uint64_t w0 = DC_BMI2_LOAD(q0), w1 = DC_BMI2_LOAD(q1), w2 = DC_BMI2_LOAD(q2),
               w3 = DC_BMI2_LOAD(q3);
      uint32_t r;
      for (r = 0; r < 4; ++r) {
        DC_BMI2_SYM(w0, o + 16 * r);
        DC_BMI2_SYM(w1, o + 16 * r + 4);
        DC_BMI2_SYM(w2, o + 16 * r + 8);
        DC_BMI2_SYM(w3, o + 16 * r + 12);
      }
      q0 += (uint64_t)__builtin_clzll(w0) - 6u; /* w != 0: the marker is at bit >= 57 - 48 */
      q1 += (uint64_t)__builtin_clzll(w1) - 6u;
      q2 += (uint64_t)__builtin_clzll(w2) - 6u;
      q3 += (uint64_t)__builtin_clzll(w3) - 6u;
    }
    q[0] = q0;
    q[1] = q1;
    q[2] = q2;
    q[3] = q3;
    ck_upto(ck, out, (size_t)(k * 16u));
  }
  for (s = 0; s < 4; ++s) { /* the tail, each stream on its own with the safe refill */
    bitreader* b = &br[s];
    const uint64_t mask = (1u << L) - 1u;
    uint64_t i;
    uint32_t sym;
    dc_status st;
    br_seek(b, data, q[s]);
    for (i = k * 4 + s; i < n; i += 4) {
      br_refill_safe(b, data);
      DEC(*b, tab, mask, sym);
      put1(out, i, cb + sym * 4u, 4, 32);
    }
    st = br_finish(b, data);
    if (st != DC_OK) return st;
  }
  return DC_OK;
}
#undef DC_BMI2_SYM

/* §6 sparse, 32-bit elements, ungrouped, with BMI2: sparse_body's walk (same streams, entries,
 * checks and background fill) with dense_e4_bmi2's position-based streams: per iteration one load
 * per stream feeds its 2 entries (gap and index symbols, <= 48 bits). */
#define DC_BMI2_DEC(w, table, bits, sym)               \
  do {                                                 \
    const uint64_t e_ = (table)[_bzhi_u64((w), bits)]; \
    (w) >>= e_ & 15u;                                  \
    (sym) = (uint32_t)(e_ >> 4);                       \
  } while (0)
#define DC_BMI2_ENTRY(g, i)                        \
  do {                                             \
    p += (g);                                      \
    if (p >= n) return DC_ERR_STREAM;              \
    memcpy(out + p * 4u, cb + (size_t)(i)*4u, 4u); \
    p++;                                           \
  } while (0)
__attribute__((target("bmi,bmi2"))) DC_NOINLINE dc_status sparse_e4_bmi2(const uint8_t* data,
                                                                         const dc_header* h,
                                                                         const uint16_t* gtab,
                                                                         const uint16_t* itab,
                                                                         uint8_t* out, cksum* ck) {
  bitreader br[4];
  const uint32_t Lg = h->gap_code.max_len, Li = h->index_code.max_len;
  const uint64_t gmask = (1u << Lg) - 1u, imask = (1u << Li) - 1u;
  const uint64_t n = h->info.num_elements, e = h->entries, G = h->gap_alphabet;
  const uint8_t* cb = h->codebook;
  const uint8_t* bgv = cb + (size_t)h->background * 4u;
  uint64_t j = 0, p = 0, filled = 0, it, q[4];
  uint32_t s;
  streams_init(br, h);
  for (s = 0; s < 4; ++s) q[s] = (uint64_t)br[s].start * 8u;
  while ((it = min_u64(
              min_u64(min_u64(pos_safe_iters(q[0], br[0].end), pos_safe_iters(q[1], br[1].end)),
                      min_u64(pos_safe_iters(q[2], br[2].end), pos_safe_iters(q[3], br[3].end))),
              min_u64((e - j) / 8, DC_CHUNK_ITERS))) > 0) {
    uint64_t reach, q0 = q[0], q1 = q[1], q2 = q[2], q3 = q[3];
    if (it * 8 * G > DC_FILL_CHUNK) it = DC_FILL_CHUNK / (8 * G) + 1;
    reach = min_u64(n, p + it * 8 * G);
    if (filled < reach) {
      uint64_t to = min_u64(n, filled + DC_FILL_CHUNK > reach ? filled + DC_FILL_CHUNK : reach);
      fill_elements(out, filled, to, bgv, 4, 32);
      filled = to;
    }
    j += 8 * it;
    for (; it > 0; --it) {
      uint64_t w0 = DC_BMI2_LOAD(q0), w1 = DC_BMI2_LOAD(q1), w2 = DC_BMI2_LOAD(q2),
               w3 = DC_BMI2_LOAD(q3);
      uint32_t r;
      for (r = 0; r < 2; ++r) {
        uint32_t g0, g1, g2, g3, i0, i1, i2, i3;
        DC_BMI2_DEC(w0, gtab, Lg, g0);
        DC_BMI2_DEC(w1, gtab, Lg, g1);
        DC_BMI2_DEC(w2, gtab, Lg, g2);
        DC_BMI2_DEC(w3, gtab, Lg, g3);
        DC_BMI2_DEC(w0, itab, Li, i0);
        DC_BMI2_DEC(w1, itab, Li, i1);
        DC_BMI2_DEC(w2, itab, Li, i2);
        DC_BMI2_DEC(w3, itab, Li, i3);
        DC_BMI2_ENTRY(g0, i0);
        DC_BMI2_ENTRY(g1, i1);
        DC_BMI2_ENTRY(g2, i2);
        DC_BMI2_ENTRY(g3, i3);
      }
      q0 += (uint64_t)__builtin_clzll(w0) - 6u;
      q1 += (uint64_t)__builtin_clzll(w1) - 6u;
      q2 += (uint64_t)__builtin_clzll(w2) - 6u;
      q3 += (uint64_t)__builtin_clzll(w3) - 6u;
    }
    q[0] = q0;
    q[1] = q1;
    q[2] = q2;
    q[3] = q3;
    ck_upto(ck, out, (size_t)(p * 4u));
  }
  for (s = 0; s < 4; ++s) br_seek(&br[s], data, q[s]);
  for (; j < e; ++j) { /* the tail: sparse_body's */
    bitreader* bb = &br[j & 3];
    uint32_t g, i;
    br_refill_safe(bb, data);
    DEC(*bb, gtab, gmask, g);
    DEC(*bb, itab, imask, i);
    fill_ahead(out, &filled, p + g, n, G, bgv, 4, 32);
    DC_BMI2_ENTRY(g, i);
  }
  if (n - p >= G) return DC_ERR_STREAM; /* §6: trailing background < G */
  fill_elements(out, filled, n, bgv, 4, 32);
  return streams_finish(br, data);
}
#undef DC_BMI2_DEC
#undef DC_BMI2_ENTRY

#if DC_HAS_CONTEXT
/* §14, 32-bit elements: the tail of context_e4_pairs -- from each stream's
 * bit position q[s], segment position pos[s], context c[s] (2 x the class of its previous index)
 * and background filled[s] after `done` entries, the rest of each stream one entry at a time with
 * the safe refill, then §14's segment end checks, the background left and §7's stream ends. */
static dc_status context_e4_tail(const uint8_t* data, const dc_header* h, const uint16_t* gtab,
                                 const uint16_t* itab, uint8_t* out, bitreader br[4],
                                 const uint64_t q[4], uint64_t pos[4], uint32_t c[4],
                                 uint64_t filled[4], uint64_t done) {
  const uint32_t Li = h->index_code.max_len;
  const uint64_t gmask = (1u << h->gap_code.max_len) - 1u, imask = (1u << Li) - 1u;
  const uint64_t G = h->gap_alphabet;
  const uint8_t* cb = h->codebook;
  const uint8_t* bgv = cb + (size_t)h->background * 4u;
  uint64_t end[4];
  uint32_t s;
  end[0] = h->seg_start[1];
  end[1] = h->seg_start[2];
  end[2] = h->seg_start[3];
  end[3] = h->info.num_elements;
  for (s = 0; s < 4; ++s) { /* the tail, each stream on its own with the safe refill */
    bitreader* bb = &br[s];
    uint64_t k;
    dc_status st;
    br_seek(bb, data, q[s]);
    for (k = done; k < h->stream_count[s]; ++k) {
      uint32_t g, i;
      br_refill_safe(bb, data);
      DEC(*bb, gtab, gmask, g);
      ctx_fill(out, &filled[s], pos[s], end[s], (uint64_t)g + 1, bgv, 4, 32);
      i = itab[((size_t)(c[s] + (g == 0)) << Li) + (size_t)(bb->bits & imask)];
      bb->bits >>= i & 15u;
      bb->count -= i & 15u;
      pos[s] += g;
      if (pos[s] >= end[s]) return DC_ERR_STREAM;
      memcpy(out + pos[s] * 4u, cb + ((i >> 4) & ~3u), 4u);
      pos[s]++;
      c[s] = (i >> 3) & 6u;
    }
    /* §14: a segment ends where the next starts; the last leaves fewer than G */
    if (s < 3 ? pos[s] != end[s] : end[s] - pos[s] >= G) return DC_ERR_STREAM;
    fill_elements(out, filled[s], end[s], bgv, 4, 32);
    st = br_finish(bb, data);
    if (st != DC_OK) return st;
  }
  return DC_OK;
}

#endif

#undef DC_BMI2_LOAD

/* §6 sparse, 32-bit elements, ungrouped, x86-64 with BMI2 and AVX2, when the caller's workspace
 * has room for a pair table (DC_FAST_WORKSPACE bytes; dc_decode gives it): the same entries,
 * positions, checks and statuses as sparse_body, decoded as follows.
 *  - One lookup per entry: a 2^12-entry table indexed by the next 12 stream bits gives gap + 1,
 *    the index and the bits used when the entry's gap code and index code both end inside them
 *    (91-95 % of the entries of the 8 %-dense LeNet-300-100 layers), else gap + 1 and the gap
 *    code's length, and the index takes its own lookup (a rarely taken branch).
 *  - Four entries per stream per 8-byte load (57 bits): entries use 8 bits on average; the
 *    third and fourth are checked after decoding and, rarely, decoded again after a reload.
 *  - The background is written by a fixed number of 32- or 64-byte stores per iteration just
 *    ahead of the entries' reach, after prefetches for writing further ahead, interleaved with
 *    the decoding (the output's cache traffic overlaps the table lookups instead of following
 *    them as one memset); a chunked fill catches up when the entries outrun it (sparse
 *    stretches).
 * Pair word: (gap + 1) << 19 | index << 7 | both << 6 | bits used (a shift by the word uses its
 * low 6 bits, the length). */
#define DC_SP_BITS 12u
#define DC_SP_BOTH 64u
/* Pair word of window r | x << lg (gap symbol s of code length lg, reversed code r): the index
 * code read from x (its bits above `room` = 12 - lg missing, as zeros) if it fits, else none. */
static inline uint32_t sp_word(uint32_t base, const uint16_t* itab, uint32_t imask, uint32_t x,
                               uint32_t room) {
  const uint32_t ie = itab[x & imask], li = ie & 15u;
  const uint32_t hit = (uint32_t)(ie >> 4) << 7 | DC_SP_BOTH | li;
  return base + (hit & (0u - (uint32_t)(li <= room))); /* branch-free: hits, misses interleave */
}

/* Canonical codes (§4) of alphabet g: next[l] = first code of length l. */
static void sp_first_codes(const dc_alphabet* g, uint32_t next[DC_MAX_CODE_LENGTH + 1]) {
  uint32_t count[DC_MAX_CODE_LENGTH + 1], code = 0, l, s;
  memset(count, 0, sizeof count);
  for (s = 0; s < g->n; ++s) count[alph_len(g, s)]++;
  count[0] = 0;
  next[0] = 0;
  for (l = 1; l <= g->max_len; ++l) {
    code = (code + count[l - 1]) << 1;
    next[l] = code;
  }
}

/* §14's pair word (context_e4_pairs): as §6's, but the index (K <= 1024) in bits 7-16 and the
 * class of the index (0 or 1: C <= 4) in bit 18, the bit that selects the next entry's table. */
static inline uint32_t cp_word(uint32_t base, const uint16_t* itab, uint32_t imask, uint32_t x,
                               uint32_t room) {
  const uint32_t ie = itab[x & imask], li = ie & 15u;
  const uint32_t hit =
      (uint32_t)(ie >> 6) << 7 | (uint32_t)((ie >> 4) & 1u) << 18 | DC_SP_BOTH | li;
  return base + (hit & (0u - (uint32_t)(li <= room)));
}
/* The 2^12 pair words.  A window's word depends only on its low lg + li bits when both codes fit
 * in DC_SP_FIRST bits: the first 2^DC_SP_FIRST words are built, doubling copies repeat them, and
 * only the windows that need more bits (a longer gap code, or an index code longer than the
 * first bits leave) are then written one by one: ~2x fewer words computed than one per window
 * (the build is ~8 % of decoding an 18.8 K-entry tensor). */
#define DC_SP_WORD(base, itab, imask, x, room) \
  (ctx ? cp_word(base, itab, imask, x, room) : sp_word(base, itab, imask, x, room))
#define DC_SP_FIRST 9u
/* ctx = 0: §6 (itz = itn = the index table); ctx = 1: §14, itz the index table of the context of
 * gap 0, itn that of the other gaps (the previous index's class fixed). */
DC_INLINE void pairs_build(const dc_alphabet* g, const uint16_t* itz, const uint16_t* itn,
                           uint32_t imask, uint32_t* pairs, const int ctx) {
  uint32_t next[DC_MAX_CODE_LENGTH + 1], first[DC_MAX_CODE_LENGTH + 1], s, x, size;
  if (g->max_len == 0) { /* one gap value, zero bits */
    const uint32_t base = (g->single + 1u) << 19;
    const uint16_t* itab = g->single == 0 ? itz : itn;
    for (x = 0; x < (1u << DC_SP_BITS); ++x)
      pairs[x] = DC_SP_WORD(base, itab, imask, x, DC_SP_BITS);
    return;
  }
  sp_first_codes(g, next);
  memcpy(first, next, sizeof first);
  for (s = 0; s < g->n; ++s) { /* the first 2^F windows (words of longer codes: fixed below) */
    const uint32_t lg = alph_len(g, s), base = (s + 1u) << 19 | lg;
    const uint16_t* itab = s == 0 ? itz : itn;
    uint32_t r;
    if (lg == 0 || lg > DC_SP_FIRST) continue;
    r = rev_code(next[lg]++, lg);
    for (x = 0; x < (1u << (DC_SP_FIRST - lg)); ++x)
      pairs[r | x << lg] = DC_SP_WORD(base, itab, imask, x, DC_SP_FIRST - lg);
  }
  for (size = 1u << DC_SP_FIRST; size < (1u << DC_SP_BITS); size *= 2)
    memcpy(pairs + size, pairs, size * sizeof *pairs);
  for (s = 0; s < g->n; ++s) {
    const uint32_t lg = alph_len(g, s), base = (s + 1u) << 19 | lg, room = DC_SP_BITS - lg;
    const uint16_t* itab = s == 0 ? itz : itn;
    uint32_t r, y, z;
    if (lg == 0) continue;
    r = rev_code(first[lg]++, lg);
    if (lg > DC_SP_FIRST) {
      for (x = 0; x < (1u << room); ++x)
        pairs[r | x << lg] = DC_SP_WORD(base, itab, imask, x, room);
      continue;
    }
    /* y: the first bits after the gap code; an index code longer than they hold (the lookup
     * of y alone then gives a length beyond them) needs every extension z of y */
    for (y = 0; y < (1u << (DC_SP_FIRST - lg)); ++y) {
      if ((itab[y & imask] & 15u) <= DC_SP_FIRST - lg) continue;
      /* windows r | y << lg | z << F: x = y | z << (F - lg) */
      uint32_t* pw = pairs + (r | y << lg);
      const uint32_t xs = 1u << (DC_SP_FIRST - lg);
      for (z = 0; z < (1u << (DC_SP_BITS - DC_SP_FIRST)); ++z)
        pw[z << DC_SP_FIRST] = DC_SP_WORD(base, itab, imask, y + z * xs, room);
    }
  }
}
DC_NOINLINE void build_sparse_pairs(const dc_alphabet* g, const uint16_t* itab, uint32_t imask,
                                    uint32_t* pairs) {
  pairs_build(g, itab, itab, imask, pairs, 0);
}
#if DC_HAS_CONTEXT
DC_NOINLINE void build_context_pairs(const dc_alphabet* g, const uint16_t* itz, const uint16_t* itn,
                                     uint32_t imask, uint32_t* pairs) {
  pairs_build(g, itz, itn, imask, pairs, 1);
}
#endif
#undef DC_SP_WORD
#undef DC_SP_FIRST

#define DC_SP_LOAD(q) ((_bzhi_u64(ld64(data + ((q) >> 3)) >> ((q)&7u), 57)) | ((uint64_t)1 << 57))
/* One entry from stream word w (marker-terminated as in dense_e4_bmi2) into word x. */
#define DC_SP_DEC(w, x)                                   \
  do {                                                    \
    uint32_t e_ = pairs[_bzhi_u64((w), DC_SP_BITS)];      \
    (w) >>= e_ & 63u;                                     \
    if (__builtin_expect(!(e_ & DC_SP_BOTH), 0)) {        \
      const uint32_t i_ = itab[_bzhi_u64((w), Li)];       \
      (w) >>= i_ & 15u;                                   \
      e_ = (e_ & 0xFFF80000u) | (uint32_t)(i_ >> 4) << 7; \
    }                                                     \
    (x) = e_;                                             \
  } while (0)
/* An entry that may not fit in the bits left before the marker: decoded anyway; if it used
 * the marker (w is then 0), decoded again from a reload at its stream position (rare: entries
 * use 8 bits on average, the third and fourth start after 16 and 25). */
#define DC_SP_DEC_LATE(w, x, q)                    \
  do {                                             \
    const uint64_t was_ = (w);                     \
    DC_SP_DEC(w, x);                               \
    if (__builtin_expect((w) == 0, 0)) {           \
      (q) += (uint64_t)__builtin_clzll(was_) - 6u; \
      (w) = DC_SP_LOAD(q);                         \
      DC_SP_DEC(w, x);                             \
    }                                              \
  } while (0)
#define DC_SP_PUT(x, CHECK)                                      \
  do {                                                           \
    p += (x) >> 19;                                              \
    if ((CHECK) && p > n) return DC_ERR_STREAM;                  \
    memcpy(out + (p - 1) * 4u, cb + (((x) >> 5) & 0x3FFCu), 4u); \
  } while (0)
/* One round: an entry of each stream, in entry order (entry j is stream j mod 4's); DEC is
 * DC_SP_DEC_EARLY (the entry lies inside the stream's load) or DC_SP_DEC_LATE (checked). */
#define DC_SP_DEC_EARLY(w, x, q) DC_SP_DEC(w, x)
#define DC_SP_ROUND(DEC, CHECK) \
  do {                          \
    DEC(w0, x0, q0);            \
    DEC(w1, x1, q1);            \
    DEC(w2, x2, q2);            \
    DEC(w3, x3, q3);            \
    DC_SP_PUT(x0, CHECK);       \
    DC_SP_PUT(x1, CHECK);       \
    DC_SP_PUT(x2, CHECK);       \
    DC_SP_PUT(x3, CHECK);       \
  } while (0)
#define DC_SP_ITER(CHECK)                                                                        \
  do {                                                                                           \
    uint64_t w0 = DC_SP_LOAD(q0), w1 = DC_SP_LOAD(q1), w2 = DC_SP_LOAD(q2), w3 = DC_SP_LOAD(q3); \
    uint32_t x0, x1, x2, x3;                                                                     \
    DC_SP_ROUND(DC_SP_DEC_EARLY, CHECK);                                                         \
    DC_SP_ROUND(DC_SP_DEC_EARLY, CHECK);                                                         \
    DC_SP_ROUND(DC_SP_DEC_LATE, CHECK);                                                          \
    DC_SP_ROUND(DC_SP_DEC_LATE, CHECK);                                                          \
    q0 += (uint64_t)__builtin_clzll(w0) - 6u;                                                    \
    q1 += (uint64_t)__builtin_clzll(w1) - 6u;                                                    \
    q2 += (uint64_t)__builtin_clzll(w2) - 6u;                                                    \
    q3 += (uint64_t)__builtin_clzll(w3) - 6u;                                                    \
  } while (0)
/* Iterations of the loop below from bit position q with every load inside the stream: an
 * iteration advances <= 4 * 24 bits (12 bytes) and loads at most 9 bytes past its start. */
static inline uint64_t sp_safe_iters(uint64_t q, size_t end) {
  const uint64_t byte = q >> 3;
  return byte + 17 <= end ? (end - 17 - byte) / 12 + 1 : 0;
}

/* Background stores: 64 bytes (AVX-512 instance, `wide`) or 32 (AVX2). */
typedef uint32_t dc_v64 __attribute__((vector_size(64), aligned(1), may_alias));
typedef uint32_t dc_v32 __attribute__((vector_size(32), aligned(1), may_alias));

__attribute__((target("bmi,bmi2,lzcnt,avx2"), always_inline)) static inline dc_status
sparse_e4_pairs_body(const uint8_t* data, const dc_header* h, const uint16_t* itab,
                     const uint32_t* pairs, uint8_t* out, cksum* ck, const int wide) {
  bitreader br[4];
  const uint32_t Li = h->index_code.max_len;
  const uint64_t n = h->info.num_elements, e = h->entries, G = h->gap_alphabet;
  const uint64_t reach = 16 * G; /* elements an iteration's 16 entries can advance p by */
  const uint8_t* cb = h->codebook;
  const uint8_t* bgv = cb + (size_t)h->background * 4u;
  /* background stores per iteration: groups of 128 bytes (32 elements), the mean advance
   * (16 n / e elements) + 1 group, at most 16 (sparser stretches take the chunked fill; more
   * stores, idle in denser stretches, measured slower) */
  const uint64_t ng = min_u64(16, (16 * 4 * n) / (4 * 32 * (e | 1)) + 1), step = 32 * ng;
  uint64_t j = 0, p = 0, filled = 0, it, q[4];
  uint32_t bg32, s;
  dc_v64 bg;
  dc_v32 bgh;
  memcpy(&bg32, bgv, 4);
  bg = (dc_v64){0} + bg32;
  bgh = (dc_v32){0} + bg32;
  streams_init(br, h);
  for (s = 0; s < 4; ++s) q[s] = (uint64_t)br[s].start * 8u;
  while ((it = min_u64(
              min_u64(min_u64(sp_safe_iters(q[0], br[0].end), sp_safe_iters(q[1], br[1].end)),
                      min_u64(sp_safe_iters(q[2], br[2].end), sp_safe_iters(q[3], br[3].end))),
              min_u64((e - j) / 16, DC_CHUNK_ITERS))) > 0) {
    uint64_t q0 = q[0], q1 = q[1], q2 = q[2], q3 = q[3], need = min_u64(n, p + reach), soft;
    if (filled < need) { /* the start, or the entries outran the stores: fill a stretch */
      const uint64_t to = min_u64(n, need + 16 * step);
      fill_elements(out, filled, to, bgv, 4, 32);
      filled = to;
    }
    soft = (n - filled) / step; /* iterations whose stores stay inside the output */
    if (soft > 0) {
      /* filled >= p + reach <= n before each iteration: its entries land below n unchecked */
      j += 16 * it;
      for (; it > 0; --it) {
        uint8_t* o = out + filled * 4u;
        if (filled < p + reach || soft-- == 0) break;
        DC_SP_ITER(0);
        /* ng groups of 128 bytes, unrolled (a jump into the sequence, the same every time);
         * the prefetches are for the lines a few iterations ahead: their fetch overlaps the
         * decoding instead of holding these stores (and the decoding behind them) up */
#define DC_SP_GROUP(g)                         \
  do {                                         \
    uint8_t* const og_ = o + 128 * (g);        \
    __builtin_prefetch(og_ + 1024, 1, 3);      \
    __builtin_prefetch(og_ + 1024 + 64, 1, 3); \
    if (wide) {                                \
      *(dc_v64*)og_ = bg;                      \
      *(dc_v64*)(og_ + 64) = bg;               \
    } else {                                   \
      *(dc_v32*)og_ = bgh;                     \
      *(dc_v32*)(og_ + 32) = bgh;              \
      *(dc_v32*)(og_ + 64) = bgh;              \
      *(dc_v32*)(og_ + 96) = bgh;              \
    }                                          \
  } while (0)
        switch (ng) {
          case 16: DC_SP_GROUP(15); /* fall through */
          case 15: DC_SP_GROUP(14); /* fall through */
          case 14: DC_SP_GROUP(13); /* fall through */
          case 13: DC_SP_GROUP(12); /* fall through */
          case 12: DC_SP_GROUP(11); /* fall through */
          case 11: DC_SP_GROUP(10); /* fall through */
          case 10: DC_SP_GROUP(9);  /* fall through */
          case 9: DC_SP_GROUP(8);   /* fall through */
          case 8: DC_SP_GROUP(7);   /* fall through */
          case 7: DC_SP_GROUP(6);   /* fall through */
          case 6: DC_SP_GROUP(5);   /* fall through */
          case 5: DC_SP_GROUP(4);   /* fall through */
          case 4: DC_SP_GROUP(3);   /* fall through */
          case 3: DC_SP_GROUP(2);   /* fall through */
          case 2: DC_SP_GROUP(1);   /* fall through */
          default: DC_SP_GROUP(0);
        }
#undef DC_SP_GROUP
        filled += filled < p + reach + step ? step : 0;
      }
      j -= 16 * it; /* the iterations not run */
    } else {        /* the output's end: all of it filled, entries checked */
      fill_elements(out, filled, n, bgv, 4, 32);
      filled = n;
      j += 16 * it;
      for (; it > 0; --it) DC_SP_ITER(1);
    }
    q[0] = q0;
    q[1] = q1;
    q[2] = q2;
    q[3] = q3;
    ck_upto(ck, out, (size_t)(p * 4u));
  }
  for (s = 0; s < 4; ++s) br_seek(&br[s], data, q[s]);
  for (; j < e; ++j) { /* the tail, one stream at a time with the safe refill */
    bitreader* bb = &br[j & 3];
    uint32_t x, g;
    br_refill_safe(bb, data);
    x = pairs[bb->bits & ((1u << DC_SP_BITS) - 1u)];
    bb->bits >>= x & 63u;
    bb->count -= x & 63u;
    if (!(x & DC_SP_BOTH)) {
      const uint32_t i_ = itab[bb->bits & ((1u << Li) - 1u)];
      bb->bits >>= i_ & 15u;
      bb->count -= i_ & 15u;
      x = (x & 0xFFF80000u) | (uint32_t)(i_ >> 4) << 7;
    }
    g = (x >> 19) - 1u;
    fill_ahead(out, &filled, p + g, n, G, bgv, 4, 32);
    DC_SP_PUT(x, 1);
  }
  if (n - p >= G) return DC_ERR_STREAM; /* §6: trailing background < G */
  fill_elements(out, filled, n, bgv, 4, 32);
  return streams_finish(br, data);
}
__attribute__((target("bmi,bmi2,lzcnt,avx2"))) DC_NOINLINE dc_status
sparse_e4_pairs_avx2(const uint8_t* data, const dc_header* h, const uint16_t* itab,
                     const uint32_t* pairs, uint8_t* out, cksum* ck) {
  return sparse_e4_pairs_body(data, h, itab, pairs, out, ck, 0);
}
/* AVX-512 CPUs (all with PREFETCHW): 64-byte stores, prefetches for writing. */
__attribute__((target("bmi,bmi2,lzcnt,avx2,avx512f,prfchw"))) DC_NOINLINE dc_status
sparse_e4_pairs_avx512(const uint8_t* data, const dc_header* h, const uint16_t* itab,
                       const uint32_t* pairs, uint8_t* out, cksum* ck) {
  return sparse_e4_pairs_body(data, h, itab, pairs, out, ck, 1);
}
#if DC_HAS_CONTEXT
/* §14, 32-bit elements, C <= 4, x86-64 with BMI2, when the caller's workspace has room for two
 * pair tables after the §14 tables (DC_FAST_WORKSPACE; dc_decode gives it): context_body's
 * segments, contexts, checks and statuses with sparse_e4_pairs_body's entries -- one lookup per
 * entry in a 2^12-word table indexed by the next 12 stream bits, here the table of the class of
 * the segment's previous index (pairs: class 0, pairs + 2^12: class 1), built with the two index
 * codes that class leads to (gap 0 or not); an entry whose two codes do not fit in 12 bits
 * takes the index from its context's table.  The class sits in the word (cp_word, bit 18), so
 * the next table is one AND away from the lookup, beside the stream shift: the chain per entry
 * is §6's.  Four entries per stream per 8-byte load, as there; the background by ctx_fill. */
#define DC_CP_DEC(w, x, t)                                                                   \
  do {                                                                                       \
    uint32_t e_ = (t)[_bzhi_u64((w), DC_SP_BITS)];                                           \
    (w) >>= e_ & 63u;                                                                        \
    if (__builtin_expect(!(e_ & DC_SP_BOTH), 0)) {                                           \
      const uint32_t c_ = (uint32_t)((t) != pairs) * 2u + ((e_ >> 19) == 1u); /* context */  \
      const uint32_t i_ = itab[((size_t)c_ << Li) + (size_t)_bzhi_u64((w), Li)];             \
      (w) >>= i_ & 15u;                                                                      \
      e_ = (e_ & 0xFFF80000u) | (uint32_t)(i_ >> 6) << 7 | (uint32_t)((i_ >> 4) & 1u) << 18; \
    }                                                                                        \
    (x) = e_;                                                                                \
  } while (0)
#define DC_CP_DEC_LATE(w, x, q, t)                 \
  do {                                             \
    const uint64_t was_ = (w);                     \
    DC_CP_DEC(w, x, t);                            \
    if (__builtin_expect((w) == 0, 0)) {           \
      (q) += (uint64_t)__builtin_clzll(was_) - 6u; \
      (w) = DC_SP_LOAD(q);                         \
      DC_CP_DEC(w, x, t);                          \
    }                                              \
  } while (0)
#define DC_CP_DEC_EARLY(w, x, q, t) DC_CP_DEC(w, x, t)
#define DC_CP_PUT(x, p, e, t, CHECK)                             \
  do {                                                           \
    (t) = pairs + (((x) >> 6) & (1u << DC_SP_BITS));             \
    (p) += (x) >> 19;                                            \
    if ((CHECK) && (p) > (e)) return DC_ERR_STREAM;              \
    memcpy(out + ((p)-1u) * 4u, cb + (((x) >> 5) & 0xFFCu), 4u); \
  } while (0)
#define DC_CP_ROUND(DEC, CHECK)       \
  do {                                \
    DEC(w0, x0, q0, t0);              \
    DEC(w1, x1, q1, t1);              \
    DEC(w2, x2, q2, t2);              \
    DEC(w3, x3, q3, t3);              \
    DC_CP_PUT(x0, p0, e0, t0, CHECK); \
    DC_CP_PUT(x1, p1, e1, t1, CHECK); \
    DC_CP_PUT(x2, p2, e2, t2, CHECK); \
    DC_CP_PUT(x3, p3, e3, t3, CHECK); \
  } while (0)
#define DC_CP_ITER(CHECK)                                                                        \
  do {                                                                                           \
    uint64_t w0 = DC_SP_LOAD(q0), w1 = DC_SP_LOAD(q1), w2 = DC_SP_LOAD(q2), w3 = DC_SP_LOAD(q3); \
    uint32_t x0, x1, x2, x3;                                                                     \
    DC_CP_ROUND(DC_CP_DEC_EARLY, CHECK);                                                         \
    DC_CP_ROUND(DC_CP_DEC_EARLY, CHECK);                                                         \
    DC_CP_ROUND(DC_CP_DEC_LATE, CHECK);                                                          \
    DC_CP_ROUND(DC_CP_DEC_LATE, CHECK);                                                          \
    q0 += (uint64_t)__builtin_clzll(w0) - 6u;                                                    \
    q1 += (uint64_t)__builtin_clzll(w1) - 6u;                                                    \
    q2 += (uint64_t)__builtin_clzll(w2) - 6u;                                                    \
    q3 += (uint64_t)__builtin_clzll(w3) - 6u;                                                    \
  } while (0)
__attribute__((target("bmi,bmi2,lzcnt"))) DC_NOINLINE dc_status
context_e4_pairs(const uint8_t* data, const dc_header* h, const uint16_t* gtab,
                 const uint16_t* itab, const uint32_t* pairs, uint8_t* out) {
  bitreader br[4];
  const uint32_t Li = h->index_code.max_len;
  const uint64_t n = h->info.num_elements, G = h->gap_alphabet;
  const uint8_t* cb = h->codebook;
  const uint8_t* bgv = cb + (size_t)h->background * 4u;
  const uint32_t bgc = (h->classes[h->background >> 1] >> ((h->background & 1u) << 2)) & 3u;
  const uint64_t e0 = h->seg_start[1], e1 = h->seg_start[2], e2 = h->seg_start[3], e3 = n;
  const uint32_t* const t_bg = pairs + ((size_t)bgc << DC_SP_BITS);
  const uint32_t *t0 = t_bg, *t1 = t_bg, *t2 = t_bg, *t3 = t_bg;
  uint64_t p0 = 0, p1 = e0, p2 = e1, p3 = e2, left = h->stream_count[3], done = 0, it;
  uint64_t q[4], pos[4], filled[4];
  uint32_t c[4], s;
  streams_init(br, h);
  for (s = 0; s < 4; ++s) {
    q[s] = (uint64_t)br[s].start * 8u;
    filled[s] = h->seg_start[s];
  }
  /* `left`: entries of the shortest stream (3) not yet decoded */
  while ((it = min_u64(
              min_u64(min_u64(sp_safe_iters(q[0], br[0].end), sp_safe_iters(q[1], br[1].end)),
                      min_u64(sp_safe_iters(q[2], br[2].end), sp_safe_iters(q[3], br[3].end))),
              min_u64(left / 4, DC_CHUNK_ITERS))) > 0) {
    uint64_t q0 = q[0], q1 = q[1], q2 = q[2], q3 = q[3];
    if (it * 4 * G > DC_FILL_CHUNK) it = DC_FILL_CHUNK / (4 * G) + 1;
    ctx_fill(out, &filled[0], p0, e0, it * 4 * G, bgv, 4, 32);
    ctx_fill(out, &filled[1], p1, e1, it * 4 * G, bgv, 4, 32);
    ctx_fill(out, &filled[2], p2, e2, it * 4 * G, bgv, 4, 32);
    ctx_fill(out, &filled[3], p3, e3, it * 4 * G, bgv, 4, 32);
    left -= 4 * it;
    done += 4 * it;
    /* an iteration moves each position by <= 4 G: where every segment has room for `it` of
     * them (the common case: segments are N / 4 long), no entry needs its end check */
    if (p0 + it * 4 * G <= e0 && p1 + it * 4 * G <= e1 && p2 + it * 4 * G <= e2 &&
        p3 + it * 4 * G <= e3) {
      for (; it > 0; --it) DC_CP_ITER(0);
    } else {
      for (; it > 0; --it) DC_CP_ITER(1);
    }
    q[0] = q0;
    q[1] = q1;
    q[2] = q2;
    q[3] = q3;
  }
  pos[0] = p0;
  pos[1] = p1;
  pos[2] = p2;
  pos[3] = p3;
  c[0] = (uint32_t)(t0 != pairs) * 2u;
  c[1] = (uint32_t)(t1 != pairs) * 2u;
  c[2] = (uint32_t)(t2 != pairs) * 2u;
  c[3] = (uint32_t)(t3 != pairs) * 2u;
  return context_e4_tail(data, h, gtab, itab, out, br, q, pos, c, filled, done);
}
#undef DC_CP_DEC
#undef DC_CP_DEC_LATE
#undef DC_CP_DEC_EARLY
#undef DC_CP_PUT
#undef DC_CP_ROUND
#undef DC_CP_ITER
#endif
#undef DC_SP_LOAD
#undef DC_SP_DEC
#undef DC_SP_DEC_LATE
#undef DC_SP_DEC_EARLY
#undef DC_SP_PUT
#undef DC_SP_ROUND
#undef DC_SP_ITER

static int dense_bmi2_ok(void) {
  static int cache = -1; /* DC_CACHE_LOAD */
  int level = DC_CACHE_LOAD(cache);
  if (level < 0) {
    __builtin_cpu_init();
    level = __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
    DC_CACHE_STORE(cache, level);
  }
  return level && simd_allowed;
}

/* 0: no pair path, 1: AVX2, 2: AVX-512 (every x86-64 CPU with BMI2 and AVX2 has LZCNT, every one
 * with AVX-512 PREFETCHW: the instances also use them). */
static int sparse_pairs_level(void) {
  static int cache = -1; /* DC_CACHE_LOAD */
  int level = DC_CACHE_LOAD(cache);
  if (level < 0) {
    __builtin_cpu_init();
    level = !(__builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2") &&
              __builtin_cpu_supports("avx2"))
                ? 0
            : __builtin_cpu_supports("avx512f") ? 2
                                                : 1;
    DC_CACHE_STORE(cache, level);
  }
  return simd_allowed == 0 ? 0 : simd_allowed == 2 && level > 1 ? 1 : level;
}
#endif

/* ---------------------------------------------------------------------------------------- */
/* §5 dense, 32-bit elements, ungrouped, K <= 256: the spread-codebook loop                  */
/* ---------------------------------------------------------------------------------------- */
/* Given 64 K + 63 bytes of workspace after the index table (dc_decode's DC_FAST_WORKSPACE has
 * them; dc_workspace_size's exact size keeps the loops above): the same symbols in fewer
 * dependent steps.  The table entry is symbol << 6 | length, so the shift of the stream bits
 * takes the entry as it is (x86-64 and aarch64 shifts count modulo 64: the `& 63` costs
 * nothing), and the element's value is read at the entry itself as a byte offset into a
 * "spread" copy of the codebook (the value of symbol s at byte 64 s + its code length): per
 * symbol mask, table load, shift, value load, store, of which mask, load, shift chain one symbol
 * of a stream to the next.  Each stream's bits w carry a marker bit above the valid ones (their
 * count is its position, read once per refill, not counted per symbol); a refill adds the next
 * 8 bytes above them (one load whose address depends on the previous refill only) and keeps
 * 56..63 valid bits, which feed S = 56 / L symbols (4..7).  Plain C99 (dense_e4_spread_p*, for
 * every 64-bit target: aarch64 phones, x86-64 without BMI2), also compiled for BMI2 on x86-64
 * (dense_e4_spread*, where the mask is BZHI and the shift SHRX).  MobileNetV2's weights
 * (K = 256, codes of 7..9 bits, 6 symbols a refill) decode with 20-23 % less CPU than with
 * dense_e4_bmi2 (BMI2 instances); the portable instances' figures are in
 * docs/android_design_notes.md "The portable loops (what phones run)". */
#define DC_SPREAD_K 256u
/* Below this many elements building the spread codebook costs more than it saves (MobileNetV2:
 * 864 elements, 5.0 us with dense_e4_bmi2, 6.7 us with it); the fuzz build lowers it so that
 * short inputs reach the loop. */
#ifndef DC_SPREAD_MIN_ELEMENTS
#define DC_SPREAD_MIN_ELEMENTS 8192u
#endif
/* Whether the portable instances are the default where no BMI2 loop runs: on 64-bit targets
 * (one register holds the stream bits); 32-bit ones (armv7, Cortex-M) keep dense_body, whose
 * 64-bit shifts cost the same there and which was not measured slower on such a CPU. */
#ifndef DC_PORTABLE_SPREAD_DEFAULT
#if UINTPTR_MAX > 0xFFFFFFFFu
#define DC_PORTABLE_SPREAD_DEFAULT 1
#else
#define DC_PORTABLE_SPREAD_DEFAULT 0
#endif
#endif
static int portable_fast = 1; /* dc_codec_portable_fast: 0 off, 1 default targets, 2 forced */

int dc_codec_portable_fast(int mode) {
  int was = portable_fast;
  portable_fast = mode == 2 ? 2 : mode != 0;
  return was;
}

static void build_spread(const dc_header* h, uint16_t* tab, uint8_t* spread) {
  const size_t entries = (size_t)1 << h->index_code.max_len;
  size_t i;
  uint32_t s;
  for (i = 0; i < entries; ++i) tab[i] = (uint16_t)((tab[i] >> 4) << 6 | (tab[i] & 15u));
  for (s = 0; s < h->k; ++s) {
    const uint32_t len = alph_len(&h->index_code, s);
    if (len) memcpy(spread + 64u * s + len, h->codebook + 4u * s, 4u);
  }
}

static inline uint64_t mark_safe(uint64_t pos, size_t end) {
  return pos + 8 <= end ? (end - 8 - pos) / 7 + 1 : 0;
}

/* One symbol: table entry, shift (the entry's low 6 bits, unmasked by x86-64/aarch64 shifts),
 * the value read at the entry as a byte offset into the spread codebook, stored at o. */
#define DC_SPREAD_SYM(w, o)                   \
  do {                                        \
    const uint32_t e_ = tab[DC_SP_LOW(w, L)]; \
    (w) >>= e_ & 63u;                         \
    memcpy((o), spread + e_, 4u);             \
  } while (0)
/* The refill: c = 63 - z valid bits below the marker (bit c); adding (next 8 bytes - 1) << c
 * puts the bytes above the valid bits and removes the marker in one step (modulo 2^64); the
 * stream advances by z / 8 bytes, and then the marker goes to bit c | 56 = 63 - z % 8 and the
 * bits from there up are cleared.  Portable: shifting left by z % 8 puts that bit at bit 63,
 * which is set, and shifting back clears what was above it (3 operations on a 64-bit target, no
 * mask to build).  BMI2: BZHI and the marker's OR, as measured first. */
#define DC_MARK_REFILL_PORTABLE(w, pos)                          \
  do {                                                           \
    const uint32_t z_ = lead_zeros(w);                           \
    (w) += (ld64(data + (pos)) - 1u) << (63u - z_);              \
    (pos) += z_ >> 3;                                            \
    (w) = (((w) << (z_ & 7u)) | (uint64_t)1 << 63) >> (z_ & 7u); \
  } while (0)
#define DC_SP_BODY dense_e4_spread_body
#define DC_SP_ATTR
#define DC_SP_LOW(w, n) ((w) & (((uint64_t)1 << (n)) - 1u))
#define DC_SP_REFILL DC_MARK_REFILL_PORTABLE
#include "dc_codec_spread.h"
#if DC_DENSE_BMI2
#define DC_MARK_REFILL_BMI2(w, pos)               \
  do {                                            \
    const uint32_t c_ = 63u - lead_zeros(w);      \
    const uint32_t n_ = c_ | 56u;                 \
    (w) += (ld64(data + (pos)) - 1u) << c_;       \
    (pos) += (63u - c_) >> 3;                     \
    (w) = _bzhi_u64((w), n_) | (uint64_t)1 << n_; \
  } while (0)
#define DC_SP_BODY dense_e4_spread_body_bmi2
#define DC_SP_ATTR __attribute__((target("bmi,bmi2")))
#define DC_SP_LOW(w, n) _bzhi_u64((w), (n))
#define DC_SP_REFILL DC_MARK_REFILL_BMI2
#include "dc_codec_spread.h"
#undef DC_MARK_REFILL_BMI2
#endif
#undef DC_MARK_REFILL_PORTABLE
#undef DC_SPREAD_SYM
#define DC_SPREAD(NAME, ATTR, BODY, S)                                                     \
  ATTR DC_NOINLINE dc_status NAME(const uint8_t* d, const dc_header* h, const uint16_t* t, \
                                  const uint8_t* sp, uint8_t* o, cksum* c) {               \
    return BODY(d, h, t, sp, o, c, S);                                                     \
  }
#define DC_PORTABLE /* no target attribute */
DC_SPREAD(dense_e4_spread_p4, DC_PORTABLE, dense_e4_spread_body, 4)
DC_SPREAD(dense_e4_spread_p5, DC_PORTABLE, dense_e4_spread_body, 5)
DC_SPREAD(dense_e4_spread_p6, DC_PORTABLE, dense_e4_spread_body, 6)
DC_SPREAD(dense_e4_spread_p7, DC_PORTABLE, dense_e4_spread_body, 7)
#if DC_DENSE_BMI2
#define DC_BMI2 __attribute__((target("bmi,bmi2")))
DC_SPREAD(dense_e4_spread4, DC_BMI2, dense_e4_spread_body_bmi2, 4)
DC_SPREAD(dense_e4_spread5, DC_BMI2, dense_e4_spread_body_bmi2, 5)
DC_SPREAD(dense_e4_spread6, DC_BMI2, dense_e4_spread_body_bmi2, 6)
DC_SPREAD(dense_e4_spread7, DC_BMI2, dense_e4_spread_body_bmi2, 7)
#undef DC_BMI2
#endif
#undef DC_PORTABLE
#undef DC_SPREAD

/* The spread loop for a tensor of max code length L (12 >= L >= 1): S * L <= 56 bits a refill;
 * bmi2: the BMI2 instances (x86-64 CPUs that have it), else the portable ones. */
static dc_status dense_e4_spread(const uint8_t* data, const dc_header* h, uint16_t* tab,
                                 uint8_t* spread, uint8_t* out, cksum* ck, int bmi2) {
  const uint32_t L = h->index_code.max_len;
  build_spread(h, tab, spread);
#if DC_DENSE_BMI2
  if (bmi2)
    return L <= 8    ? dense_e4_spread7(data, h, tab, spread, out, ck)
           : L == 9  ? dense_e4_spread6(data, h, tab, spread, out, ck)
           : L <= 11 ? dense_e4_spread5(data, h, tab, spread, out, ck)
                     : dense_e4_spread4(data, h, tab, spread, out, ck);
#else
  (void)bmi2;
#endif
  return L <= 8    ? dense_e4_spread_p7(data, h, tab, spread, out, ck)
         : L == 9  ? dense_e4_spread_p6(data, h, tab, spread, out, ck)
         : L <= 11 ? dense_e4_spread_p5(data, h, tab, spread, out, ck)
                   : dense_e4_spread_p4(data, h, tab, spread, out, ck);
}

/* ---------------------------------------------------------------------------------------- */
/* Thin wrappers: one instance of each body per element size (constants fold away)          */
/* ---------------------------------------------------------------------------------------- */
#define DC_DENSE(NAME, ESZ, BITS, GROUPED)                                                        \
  DC_NOINLINE dc_status NAME(const uint8_t* d, const dc_header* h, const uint16_t* t, uint8_t* o, \
                             cksum* c) {                                                          \
    return dense_body(d, h, t, o, c, ESZ, BITS, GROUPED);                                         \
  }
#define DC_SPARSE(NAME, ESZ, BITS, GROUPED)                                            \
  DC_NOINLINE dc_status NAME(const uint8_t* d, const dc_header* h, const uint16_t* gt, \
                             const uint16_t* it, uint8_t* o, cksum* c) {               \
    return sparse_body(d, h, gt, it, o, c, ESZ, BITS, GROUPED);                        \
  }
DC_DENSE(dense_e1, 1, 8, 0)
DC_DENSE(dense_e2, 2, 16, 0)
DC_DENSE(dense_e4, 4, 32, 0)
DC_SPARSE(sparse_e1, 1, 8, 0)
DC_SPARSE(sparse_e2, 2, 16, 0)
DC_SPARSE(sparse_e4, 4, 32, 0)
/* The build options' loops (dc_codec.h); DC_IF(DC_HAS_x, f): the dispatch entry, NULL when left
 * out. */
#define DC_IF_1(f) f
#define DC_IF_0(f) NULL
#define DC_IF_(has, f) DC_IF_##has(f)
#define DC_IF(has, f) DC_IF_(has, f)
#if DC_HAS_SUBBYTE
DC_DENSE(dense_b2, 1, 2, 0)
DC_DENSE(dense_b4, 1, 4, 0)
DC_SPARSE(sparse_b2, 1, 2, 0)
DC_SPARSE(sparse_b4, 1, 4, 0)
#endif
#if DC_HAS_64BIT
DC_DENSE(dense_e8, 8, 64, 0)
DC_SPARSE(sparse_e8, 8, 64, 0)
#endif
#if DC_HAS_GROUPED
DC_DENSE(dense_g1, 1, 8, 1)
DC_DENSE(dense_g2, 2, 16, 1)
DC_DENSE(dense_g4, 4, 32, 1)
DC_SPARSE(sparse_g1, 1, 8, 1)
DC_SPARSE(sparse_g2, 2, 16, 1)
DC_SPARSE(sparse_g4, 4, 32, 1)
#endif
#define DC_CONTEXT(NAME, ESZ)                                                          \
  DC_NOINLINE dc_status NAME(const uint8_t* d, const dc_header* h, const uint16_t* gt, \
                             const uint16_t* t, uint8_t* o) {                          \
    return context_body(d, h, gt, t, o, ESZ, 8 * ESZ);                                 \
  }
#if DC_HAS_CONTEXT
DC_CONTEXT(context_e1, 1)
DC_CONTEXT(context_e2, 2)
DC_CONTEXT(context_e4, 4)
#if DC_HAS_64BIT
DC_CONTEXT(context_e8, 8)
#endif
#endif
/* One noinline specialisation of a §12 / §17 body per element size. */
#define DC_PLANES_FN(NAME, BODY, ESZ)                                                 \
  DC_NOINLINE dc_status NAME(const uint8_t* d, const dc_header* h, const uint16_t* t, \
                             uint8_t* o) {                                            \
    return BODY(d, h, t, o, ESZ);                                                     \
  }
#if DC_HAS_PLANES
DC_PLANES_FN(planes_e2, planes_body, 2)
DC_PLANES_FN(planes_e4, planes_body, 4)
#endif
#if DC_HAS_SPARSE_PLANES
DC_NOINLINE dc_status sparse_planes_e2(const uint8_t* d, const dc_header* h, const uint16_t* gt,
                                       const uint16_t* st, uint8_t* o) {
  return sparse_planes_body(d, h, gt, st, o, NULL, 2, 0);
}
DC_NOINLINE dc_status sparse_planes_e4(const uint8_t* d, const dc_header* h, const uint16_t* gt,
                                       const uint16_t* st, uint8_t* o) {
  return sparse_planes_body(d, h, gt, st, o, NULL, 4, 0);
}
/* dc_decode_value_rows's loop: float32 only (the compact forms hold no other float type). */
DC_NOINLINE dc_status sparse_planes_rows_e4(const uint8_t* d, const dc_header* h,
                                            const uint16_t* gt, const uint16_t* st, dc_rows* r) {
  return sparse_planes_body(d, h, gt, st, NULL, r, 4, 1);
}
/* The same for a lookup table's rows (r->table: -0.0 kept). */
DC_NOINLINE dc_status sparse_planes_table_rows_e4(const uint8_t* d, const dc_header* h,
                                                  const uint16_t* gt, const uint16_t* st,
                                                  dc_rows* r) {
  return sparse_planes_body(d, h, gt, st, NULL, r, 4, 2);
}
#endif

dc_status dc_decode_value_rows(const uint8_t* data, size_t size, const dc_header* h, dc_rows* r) {
#if DC_HAS_SPARSE_PLANES
  uint16_t* ws; /* symbol and gap tables, <= 2^12 entries each, in r->tables */
  if (!data || !h || !r || !r->row_ptr || !r->col || !r->value || !r->tables)
    return DC_ERR_ARGUMENT;
  if (!dc_value_rows_take(h, r->table) || h->info.rank != 2 || h->info.num_elements == 0 ||
      r->rows != h->info.dims[0] || r->cols != h->info.dims[1] || r->cols > 65536u ||
      r->capacity <= (r->table ? h->entries : h->stored))
    return DC_ERR_ARGUMENT;
  if (!r->crc_checked && !crc_ok(h, data, size)) return DC_ERR_CHECKSUM; /* §8: first */
  ws = r->tables;
  build_table(&h->index_code, ws);
  build_table(&h->gap_code, ws + ((size_t)1 << DC_MAX_CODE_LENGTH));
  return (r->table ? sparse_planes_table_rows_e4 : sparse_planes_rows_e4)(
      data, h, ws + ((size_t)1 << DC_MAX_CODE_LENGTH), ws, r);
#else
  (void)data, (void)size, (void)h, (void)r;
  return DC_ERR_ARGUMENT; /* no §18 in this build: dc_parse refuses it */
#endif
}
#if DC_HAS_INT_PLANES
DC_PLANES_FN(int_planes_e2, int_planes_body, 2)
DC_PLANES_FN(int_planes_e4, int_planes_body, 4)
#if DC_HAS_64BIT
DC_PLANES_FN(int_planes_e8, int_planes_body, 8)
#endif
#endif
#undef DC_PLANES_FN

typedef dc_status (*dense_fn)(const uint8_t*, const dc_header*, const uint16_t*, uint8_t*, cksum*);
typedef dc_status (*sparse_fn)(const uint8_t*, const dc_header*, const uint16_t*, const uint16_t*,
                               uint8_t*, cksum*);

/* Index by element_bits: 2, 4, 8, 16, 32, 64 -> 0..5. */
static int size_slot(uint32_t bits) {
  return bits == 2 ? 0 : bits == 4 ? 1 : bits == 8 ? 2 : bits == 16 ? 3 : bits == 32 ? 4 : 5;
}

/* §14: the workspace holds the gap table, then one table per context, each of 2^Lmax entries
 * (Lmax: the longest index code), so the context picks its table by a shift, no load. */
#if DC_HAS_CONTEXT
static dc_status decode_context(const uint8_t* data, const dc_header* h, uint16_t* ws,
                                uint32_t* pairs, uint8_t* out) {
  const size_t size = (size_t)1 << h->index_code.max_len;
  uint16_t* t = ws + table_entries(&h->gap_code);
  uint32_t c;
  build_table(&h->gap_code, ws);
  for (c = 0; c < h->contexts; ++c) {
    uint16_t* tc = t + c * size;
    size_t done = table_entries(&h->ctx_code[c]);
    build_table_cls(&h->ctx_code[c], tc, h->classes, 0);
    for (; done < size; done *= 2) memcpy(tc + done, tc, done * sizeof *tc); /* period 2^L */
  }
  switch (h->cb_esize) {
    case 1: return context_e1(data, h, ws, t, out);
    case 2: return context_e2(data, h, ws, t, out);
    case 4:
#if DC_DENSE_BMI2
      /* two pair tables (pairs: dc_decode_ws found room for them after the tables), C <= 4 */
      if (pairs != NULL && h->contexts <= 4 && sparse_pairs_level() > 0) {
        const uint32_t imask = (uint32_t)size - 1u;
        build_context_pairs(&h->gap_code, t + size, t, imask, pairs); /* class 0: contexts 1, 0 */
        if (h->contexts > 2)
          build_context_pairs(&h->gap_code, t + 3 * size, t + 2 * size, imask,
                              pairs + ((size_t)1 << DC_SP_BITS)); /* class 1: contexts 3, 2 */
        return context_e4_pairs(data, h, ws, t, pairs, out);
      }
#else
      (void)pairs;
#endif
      return context_e4(data, h, ws, t, out);
#if DC_HAS_64BIT
    default: return context_e8(data, h, ws, t, out);
#else
    default: return DC_ERR_UNSUPPORTED; /* dc_parse refused it */
#endif
  }
}
#endif

static dc_status decode_body(const uint8_t* data, const dc_header* h, uint16_t* itab,
                             uint16_t* gtab, uint32_t* pairs, uint8_t* spread, uint8_t* out,
                             cksum* ck) {
  /* grouped 64-bit: none (§16, dc_parse refuses it) */
  static const dense_fn dense[2][6] = {
      {DC_IF(DC_HAS_SUBBYTE, dense_b2), DC_IF(DC_HAS_SUBBYTE, dense_b4), dense_e1, dense_e2,
       dense_e4, DC_IF(DC_HAS_64BIT, dense_e8)},
      {NULL, NULL, DC_IF(DC_HAS_GROUPED, dense_g1), DC_IF(DC_HAS_GROUPED, dense_g2),
       DC_IF(DC_HAS_GROUPED, dense_g4), NULL}};
  static const sparse_fn sparse[2][6] = {
      {DC_IF(DC_HAS_SUBBYTE, sparse_b2), DC_IF(DC_HAS_SUBBYTE, sparse_b4), sparse_e1, sparse_e2,
       sparse_e4, DC_IF(DC_HAS_64BIT, sparse_e8)},
      {NULL, NULL, DC_IF(DC_HAS_GROUPED, sparse_g1), DC_IF(DC_HAS_GROUPED, sparse_g2),
       DC_IF(DC_HAS_GROUPED, sparse_g4), NULL}};
  const int slot = size_slot(h->info.element_bits);
  const int grouped = DC_HAS_GROUPED && (h->layout == DC_LAYOUT_GROUPED_DENSE ||
                                         h->layout == DC_LAYOUT_GROUPED_SPARSE);
  const size_t esz = h->cb_esize;
#ifdef DC_CODEC_NO_SPREAD
  spread = NULL; /* the spread-codebook loops are left out of this build (dc_codec.h) */
#endif
  /* §13: the padding bits of the last byte are zero; stores below never touch them */
  if (h->info.element_bits < 8) out[h->info.output_bytes - 1] = 0;
#if DC_HAS_CONTEXT
  if (h->layout == DC_LAYOUT_CONTEXT_SPARSE) return decode_context(data, h, itab, pairs, out);
#endif
  build_table_cls(&h->index_code, itab, NULL,
                  h->layout == DC_LAYOUT_INT_PLANES); /* §17: IP_ENTRY */
#if DC_HAS_PLANES
  if (h->layout == DC_LAYOUT_FLOAT_PLANES)
    return esz == 4 ? planes_e4(data, h, itab, out) : planes_e2(data, h, itab, out);
#endif
#if DC_HAS_SPARSE_PLANES
  if (h->layout == DC_LAYOUT_SPARSE_PLANES) { /* §18: the gap table after the symbol table */
    build_table(&h->gap_code, gtab);
    return esz == 4 ? sparse_planes_e4(data, h, gtab, itab, out)
                    : sparse_planes_e2(data, h, gtab, itab, out);
  }
#endif
#if DC_HAS_INT_PLANES
  if (h->layout == DC_LAYOUT_INT_PLANES) {
    if (esz == 2) return int_planes_e2(data, h, itab, out);
    if (esz == 4) return int_planes_e4(data, h, itab, out);
#if DC_HAS_64BIT
    return int_planes_e8(data, h, itab, out);
#else
    return DC_ERR_UNSUPPORTED;          /* dc_parse refused it */
#endif
  }
#endif
  if (!h->sparse && h->index_code.max_len == 0) { /* constant (per group): no stream bits */
    if (grouped)
      fill_grouped(out, h, h->index_code.single);
    else
      fill_elements(out, 0, h->info.num_elements, h->codebook + (size_t)h->index_code.single * esz,
                    esz, h->info.element_bits);
    return DC_OK;
  }
  if (!h->sparse && !grouped && slot == 4 && h->index_code.max_len <= 12) {
    /* §5 32-bit: forced portable spread loop (tests, benchmarks), else the BMI2 loops where the
     * CPU has them, else the portable spread loop on the targets where it is the default */
    if (spread != NULL && portable_fast == 2)
      return dense_e4_spread(data, h, itab, spread, out, ck, 0);
#if DC_DENSE_BMI2
    if (dense_bmi2_ok())
      return spread != NULL ? dense_e4_spread(data, h, itab, spread, out, ck, 1)
                            : dense_e4_bmi2(data, h, itab, out, ck);
#endif
    if (spread != NULL && portable_fast == 1 && simd_allowed && DC_PORTABLE_SPREAD_DEFAULT)
      return dense_e4_spread(data, h, itab, spread, out, ck, 0);
  }
  if (!h->sparse) return dense[grouped][slot](data, h, itab, out, ck);
#if DC_DENSE_BMI2
  if (pairs != NULL && !grouped && slot == 4 && sparse_pairs_level() > 0) {
    build_sparse_pairs(&h->gap_code, itab, (1u << h->index_code.max_len) - 1u, pairs);
    return sparse_pairs_level() == 2 ? sparse_e4_pairs_avx512(data, h, itab, pairs, out, ck)
                                     : sparse_e4_pairs_avx2(data, h, itab, pairs, out, ck);
  }
#else
  (void)pairs;
#endif
  build_table(&h->gap_code, gtab);
#if DC_DENSE_BMI2
  if (!grouped && slot == 4 && h->index_code.max_len <= 12 && h->gap_code.max_len <= 12 &&
      dense_bmi2_ok())
    return sparse_e4_bmi2(data, h, gtab, itab, out, ck);
#endif
  return sparse[grouped][slot](data, h, gtab, itab, out, ck);
}

/* ---------------------------------------------------------------------------------------- */
/* dc_decode_ws, dc_decode                                                                   */
/* ---------------------------------------------------------------------------------------- */
dc_status dc_decode_ws(const uint8_t* data, size_t size, void* out_v, size_t out_size,
                       void* workspace, size_t workspace_size) {
  dc_header h;
  dc_status st;
  uint8_t* out = (uint8_t*)out_v;
  uint16_t *itab, *gtab;
  uint32_t* pairs;
  uint8_t* spread;
  uintptr_t ws, pt;
  cksum ck;
  if (data == NULL || (out == NULL && out_size != 0)) return DC_ERR_ARGUMENT;
  st = dc_parse(data, size, &h);
  if (st != DC_OK) return st;
  if (out_size != h.info.output_bytes) return DC_ERR_OUTPUT_SIZE;
  if (workspace_size < workspace_bytes(&h)) return DC_ERR_WORKSPACE;
  if (workspace == NULL && h.info.num_elements > 0) return DC_ERR_ARGUMENT;
  /* §8: version 2 checks the packed bytes before decoding anything. */
  if (h.info.version >= 2 && !crc_ok(&h, data, size)) return DC_ERR_CHECKSUM;
  ck.a = 1;
  ck.b = 0;
  ck.done = 0;
  if (h.info.num_elements > 0) {
    ws = ((uintptr_t)workspace + 1u) & ~(uintptr_t)1u; /* u16 alignment (2 spare bytes) */
    itab = (uint16_t*)ws;
    gtab = itab + table_entries(&h.index_code);
    /* §6 float32 on x86-64: a pair table after the index table if the workspace has room; §14:
     * two after its tables (the gap table, then one per context) */
    pt = ((uintptr_t)gtab + 3u) & ~(uintptr_t)3u;
    pairs = h.sparse && pt - (uintptr_t)workspace + (4u << DC_MAX_CODE_LENGTH) <= workspace_size
                ? (uint32_t*)pt
                : NULL;
#if DC_DENSE_BMI2 && DC_HAS_CONTEXT /* (only x86-64 has §14's pair loop) */
    if (h.contexts > 0) {
      pt = ((uintptr_t)(itab + context_entries(&h)) + 3u) & ~(uintptr_t)3u;
      pairs = pt - (uintptr_t)workspace + (8u << DC_MAX_CODE_LENGTH) <= workspace_size
                  ? (uint32_t*)pt
                  : NULL;
    }
#endif
    spread = NULL;
    /* §5 float32: a spread codebook after the index table if K <= 256 and it fits */
    pt = ((uintptr_t)gtab + 63u) & ~(uintptr_t)63u;
    if (h.layout == DC_LAYOUT_DENSE && h.k <= DC_SPREAD_K &&
        h.info.num_elements >= DC_SPREAD_MIN_ELEMENTS &&
        pt - (uintptr_t)workspace + 64u * h.k <= workspace_size)
      spread = (uint8_t*)pt;
    st = decode_body(data, &h, itab, gtab, pairs, spread, out, h.info.version == 1 ? &ck : NULL);
    if (st != DC_OK) return st;
  }
  if (h.info.version == 1 && !checksum_v1_finish(&ck, &h, data, out)) return DC_ERR_CHECKSUM;
  return DC_OK;
}

/* dc_decode's stack workspace: room for the x86-64 pair tables (§6, §14) and the spread codebook
 * only where those paths run by default (other 64-bit targets: the spread codebook only, in the
 * 24 KB DC_FAST_WORKSPACE was before §14's pair tables) */
#if DC_DENSE_BMI2
#define DC_DECODE_WORKSPACE DC_FAST_WORKSPACE
#elif DC_PORTABLE_SPREAD_DEFAULT
#define DC_DECODE_WORKSPACE \
  (2u * (1u << DC_MAX_CODE_LENGTH) + 4u * (1u << DC_MAX_CODE_LENGTH) + 16u)
#else
#define DC_DECODE_WORKSPACE DC_MAX_WORKSPACE
#endif
dc_status dc_decode(const uint8_t* data, size_t size, void* out, size_t out_size) {
  uint16_t ws[DC_DECODE_WORKSPACE / 2];
  return dc_decode_ws(data, size, out, out_size, ws, sizeof ws);
}
