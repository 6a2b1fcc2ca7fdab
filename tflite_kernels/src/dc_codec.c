/*
 * dc_codec.c -- C99 decoder of the packed tensor format, docs/FORMAT.md (version 1).
 *
 * Portable: no intrinsics, no unaligned accesses (byte loads that compilers merge), no
 * allocation (tables live on the stack, ~16 KB), output in the caller's buffer.  Safe on any
 * input: all sizes are validated (§9) before work proportional to them, bit reads past the end
 * of a stream read zeros and are detected afterwards, every sparse position is bounds-checked.
 *
 * Speed: four interleaved streams (§7) decoded in lock step, a 64-bit bit buffer refilled
 * branch-free while at least 8 bytes of each stream remain, one 2^L-entry table lookup per
 * symbol (§4, L <= 12), the codebook lookup and the store.
 */
#include "dc_codec.h"

#include <string.h>

#include "dc_codec_internal.h"

/* ---------------------------------------------------------------------------------------- */
/* Little-endian loads (§1): byte assembly, which gcc/clang turn into one load where legal.  */
/* ---------------------------------------------------------------------------------------- */
static inline uint32_t ld16(const uint8_t* p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }
static inline uint32_t ld32(const uint8_t* p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t ld64(const uint8_t* p) {
  return (uint64_t)ld32(p) | ((uint64_t)ld32(p + 4) << 32);
}

const char* dc_strerror(dc_status status) {
  switch (status) {
    case DC_OK: return "ok";
    case DC_ERR_TRUNCATED: return "truncated: the buffer is shorter than the sizes it declares";
    case DC_ERR_MAGIC: return "not a packed tensor (bad magic)";
    case DC_ERR_VERSION: return "unsupported packed tensor format version";
    case DC_ERR_DTYPE: return "unknown element type";
    case DC_ERR_SHAPE: return "invalid rank or dimensions, or element count too large";
    case DC_ERR_CODEBOOK: return "invalid codebook size";
    case DC_ERR_LAYOUT: return "unknown layout or invalid layout parameters";
    case DC_ERR_CODE_LENGTHS: return "Huffman code lengths do not form a valid code";
    case DC_ERR_STREAM: return "corrupt bit stream (overrun, spare bytes, bad padding or position)";
    case DC_ERR_SIZE_MISMATCH: return "declared sizes disagree with each other";
    case DC_ERR_CHECKSUM: return "checksum mismatch: decoded content is corrupt";
    case DC_ERR_OUTPUT_SIZE: return "output buffer size differs from the tensor's byte size";
    case DC_ERR_ARGUMENT: return "invalid argument (NULL pointer)";
  }
  return "unknown status code";
}

static uint32_t element_size(uint32_t dtype) {
  switch (dtype) {
    case DC_DTYPE_FLOAT32: case DC_DTYPE_INT32: return 4;
    case DC_DTYPE_FLOAT16: case DC_DTYPE_INT16: return 2;
    case DC_DTYPE_UINT8: case DC_DTYPE_INT8: return 1;
    default: return 0;
  }
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

static inline uint32_t alph_len(const dc_alphabet* a, uint32_t s) {
  return a->max_len == 0 ? 0 : (a->lengths[s / 2] >> ((s & 1) * 4)) & 15u;
}

/* Builds the 2^L single-level table of §4: entry = symbol << 4 | length. */
static void build_table(const dc_alphabet* a, uint16_t* table) {
  uint32_t L = a->max_len, s, l;
  uint32_t bl_count[DC_MAX_CODE_LENGTH + 1], next_code[DC_MAX_CODE_LENGTH + 2], code = 0;
  if (L == 0) {
    table[0] = (uint16_t)(a->single << 4);
    return;
  }
  memset(bl_count, 0, sizeof bl_count);
  for (s = 0; s < a->n; ++s) bl_count[alph_len(a, s)]++;
  bl_count[0] = 0;
  for (l = 1; l <= L; ++l) {
    code = (code + bl_count[l - 1]) << 1;
    next_code[l] = code;
  }
  for (s = 0; s < a->n; ++s) {
    uint32_t len = alph_len(a, s), c, r = 0, b, step, k;
    if (len == 0) continue;
    c = next_code[len]++;
    for (b = 0; b < len; ++b) r |= ((c >> b) & 1u) << (len - 1 - b);
    step = 1u << len;
    for (k = r; k < (1u << L); k += step) table[k] = (uint16_t)((s << 4) | len);
  }
}

/* ---------------------------------------------------------------------------------------- */
/* §2-§7 header                                                                              */
/* ---------------------------------------------------------------------------------------- */
static uint64_t ceil_div8(uint64_t bits) { return (bits + 7) / 8; }

dc_status dc_parse(const uint8_t* data, size_t size, dc_header* h) {
  size_t pos = 0;
  uint32_t r, s;
  uint64_t n = 1;
  dc_status st;
  if (data == NULL || h == NULL) return DC_ERR_ARGUMENT;
  memset(h, 0, sizeof *h);
  if (size < 8) return size >= 4 && memcmp(data, "DCHF", 4) != 0 ? DC_ERR_MAGIC : DC_ERR_TRUNCATED;
  if (memcmp(data, "DCHF", 4) != 0) return DC_ERR_MAGIC;
  h->info.version = data[4];
  if (h->info.version != 1) return DC_ERR_VERSION;
  h->info.dtype = data[5];
  h->info.element_size = element_size(data[5]);
  if (h->info.element_size == 0) return DC_ERR_DTYPE;
  h->info.rank = data[6];
  if (h->info.rank > DC_MAX_RANK) return DC_ERR_SHAPE;
  h->layout = data[7];
  if (h->layout > 1) return DC_ERR_LAYOUT;
  pos = 8;
  if (size - pos < 4u * h->info.rank) return DC_ERR_TRUNCATED;
  for (r = 0; r < h->info.rank; ++r) {
    uint64_t d = ld32(data + pos);
    pos += 4;
    h->info.dims[r] = d;
    /* n <= 2^31 - 1 before the multiply and d < 2^32: the product fits in 64 bits. */
    n *= d;
    if (n > DC_MAX_ELEMENTS) {
      /* a later dim of 0 would make n = 0, but the format limits every prefix product too */
      return DC_ERR_SHAPE;
    }
  }
  h->prefix_len = pos;
  h->info.num_elements = n;
  if (n > (uint64_t)(SIZE_MAX / h->info.element_size)) return DC_ERR_SHAPE;
  h->info.output_bytes = n * h->info.element_size;
  if (size - pos < 10) return DC_ERR_TRUNCATED;
  h->check_a = ld32(data + pos);
  h->check_b = ld32(data + pos + 4);
  h->k = ld16(data + pos + 8);
  pos += 10;
  if (n == 0) {
    if (h->k != 0) return DC_ERR_CODEBOOK;
    if (h->layout != 0) return DC_ERR_LAYOUT;
    if (size != pos) return DC_ERR_SIZE_MISMATCH;
    h->streams_pos = pos;
    return DC_OK;
  }
  if (h->k == 0 || h->k > DC_MAX_SYMBOLS) return DC_ERR_CODEBOOK;
  if (size - pos < (size_t)h->k * h->info.element_size) return DC_ERR_TRUNCATED;
  h->codebook = data + pos;
  pos += (size_t)h->k * h->info.element_size;
  if (h->layout == 0) {
    st = parse_alphabet(data, size, &pos, h->k, &h->index_code);
    if (st != DC_OK) return st;
  } else {
    if (size - pos < 8) return DC_ERR_TRUNCATED;
    h->background = ld16(data + pos);
    h->entries = ld32(data + pos + 2);
    h->gap_alphabet = ld16(data + pos + 6);
    pos += 8;
    if (h->background >= h->k) return DC_ERR_LAYOUT;
    if (h->entries > n) return DC_ERR_LAYOUT;
    if (h->gap_alphabet == 0 || h->gap_alphabet > DC_MAX_SYMBOLS) return DC_ERR_LAYOUT;
    /* §6: each entry covers <= G elements and fewer than G trail: N < (E + 1) * G. */
    if (n >= (h->entries + 1) * h->gap_alphabet) return DC_ERR_SIZE_MISMATCH;
    st = parse_alphabet(data, size, &pos, h->gap_alphabet, &h->gap_code);
    if (st != DC_OK) return st;
    st = parse_alphabet(data, size, &pos, h->k, &h->index_code);
    if (st != DC_OK) return st;
  }
  if (size - pos < 4 * DC_NUM_STREAMS) return DC_ERR_TRUNCATED;
  {
    uint64_t total = 0;
    uint64_t count = h->layout == 0 ? n : h->entries;
    uint32_t lo = h->layout == 0 ? h->index_code.min_len : h->gap_code.min_len + h->index_code.min_len;
    uint32_t hi = h->layout == 0 ? h->index_code.max_len : h->gap_code.max_len + h->index_code.max_len;
    for (s = 0; s < DC_NUM_STREAMS; ++s) {
      uint64_t cs = count > s ? (count - s + DC_NUM_STREAMS - 1) / DC_NUM_STREAMS : 0;
      h->stream_size[s] = ld32(data + pos + 4 * s);
      h->stream_count[s] = cs;
      total += h->stream_size[s];
    }
    pos += 4 * DC_NUM_STREAMS;
    if (total > size - pos) return DC_ERR_TRUNCATED;
    if (total < size - pos) return DC_ERR_SIZE_MISMATCH;
    h->streams_pos = pos;
    for (s = 0; s < DC_NUM_STREAMS; ++s) {
      /* §9: ceil(count*lo/8) <= size <= ceil(count*hi/8); count < 2^31, lengths <= 24. */
      if (h->stream_size[s] < ceil_div8(h->stream_count[s] * lo) ||
          h->stream_size[s] > ceil_div8(h->stream_count[s] * hi))
        return DC_ERR_SIZE_MISMATCH;
      h->stream_start[s] = pos;
      pos += h->stream_size[s];
    }
    /* §9: a tensor whose codes are all zero-bit is not bounded by its streams. */
    if (hi == 0 && h->info.output_bytes > DC_MAX_ZERO_BIT_OUTPUT) return DC_ERR_SIZE_MISMATCH;
  }
  return DC_OK;
}

dc_status dc_peek(const uint8_t* data, size_t size, dc_tensor_info* info) {
  dc_header h;
  dc_status st;
  if (info == NULL) return DC_ERR_ARGUMENT;
  st = dc_parse(data, size, &h);
  if (st == DC_OK) *info = h.info;
  return st;
}

/* ---------------------------------------------------------------------------------------- */
/* §7 bit reader                                                                             */
/* ---------------------------------------------------------------------------------------- */
typedef struct {
  uint64_t bits;  /* next stream bits, LSB = next bit; valid: the low `count` bits */
  uint32_t count; /* 0..64 */
  size_t pos;     /* next byte to load (absolute offset in data; may pass `end`) */
  size_t start, end;
} bitreader;

static void br_init(bitreader* b, size_t start, size_t size) {
  b->bits = 0;
  b->count = 0;
  b->pos = start;
  b->start = start;
  b->end = start + size;
}

/* Branch-free refill (needs pos + 8 <= end): afterwards count is 56..63. */
#define BR_REFILL_FAST(b, data)                                  \
  do {                                                           \
    (b).bits |= ld64((data) + (b).pos) << (b).count;             \
    (b).pos += (63u - (b).count) >> 3;                           \
    (b).count |= 56u;                                            \
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

static inline uint64_t min_u64(uint64_t x, uint64_t y) { return x < y ? x : y; }

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

/* Running checksum of the output, advanced while the freshly written bytes are in cache. */
typedef struct {
  uint32_t a, b;
  size_t done; /* output bytes already summed (a multiple of 4) */
} cksum;

static void ck_upto(cksum* c, const uint8_t* out, size_t upto) {
  if (upto > c->done + 3) {
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

/* §8: the rest of the output, then the header (up to the streams) with the checksum fields as
 * zeros. */
static int checksum_finish(cksum* c, const dc_header* h, const uint8_t* data, const uint8_t* out) {
  static const uint8_t zeros[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  checksum_bytes(&c->a, &c->b, out + c->done, h->info.output_bytes - c->done);
  dc_checksum_update(&c->a, &c->b, data, h->prefix_len / 4);
  dc_checksum_update(&c->a, &c->b, zeros, 2);
  checksum_bytes(&c->a, &c->b, data + h->prefix_len + 8, h->streams_pos - h->prefix_len - 8);
  return c->a == h->check_a && c->b == h->check_b;
}

/* Fills elements [from, to) of `out` with the element `v` (esz bytes). */
static void fill_elements(uint8_t* out, uint64_t from, uint64_t to, const uint8_t* v, size_t esz) {
  uint8_t* dst = out + from * esz;
  size_t total = (size_t)(to - from) * esz, done;
  size_t i;
  int same = 1;
  if (from >= to) return;
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

#define DEC(b, table, mask, sym)                 \
  do {                                           \
    uint32_t e_ = (table)[(b).bits & (mask)];    \
    (sym) = e_ >> 4;                             \
    (b).bits >>= (e_ & 15u);                     \
    (b).count -= (e_ & 15u);                     \
  } while (0)

/* Iterations between checksum updates (dense: 16 K elements). */
#define DC_CHUNK_ITERS 1024u
/* Sparse: elements filled with the background ahead of the entries at a time. */
#define DC_FILL_CHUNK 16384u

/* ---------------------------------------------------------------------------------------- */
/* §5 dense and §6 sparse decoding, one instance per element size                           */
/* ---------------------------------------------------------------------------------------- */
#define DEFINE_DECODERS(SUFFIX, T)                                                              \
  static dc_status dense_##SUFFIX(const uint8_t* data, const dc_header* h, const uint16_t* tab, \
                                  const T* cb, uint8_t* out, cksum* ck) {                       \
    bitreader b0, b1, b2, b3, br[4];                                                            \
    const uint64_t mask = (1u << h->index_code.max_len) - 1u;                                   \
    const uint64_t n = h->info.num_elements, rounds = n / 4;                                    \
    uint64_t k = 0, it;                                                                         \
    uint32_t s, sym;                                                                            \
    dc_status st;                                                                               \
    br_init(&b0, h->stream_start[0], h->stream_size[0]);                                        \
    br_init(&b1, h->stream_start[1], h->stream_size[1]);                                        \
    br_init(&b2, h->stream_start[2], h->stream_size[2]);                                        \
    br_init(&b3, h->stream_start[3], h->stream_size[3]);                                        \
    /* Each iteration: 1 refill and 4 symbols (4 * 12 <= 56 bits) per stream.  `it` is a       \
     * number of iterations that cannot reach past any stream's end. */                         \
    while ((it = min_u64(min_u64(min_u64(br_safe_refills(&b0), br_safe_refills(&b1)),          \
                                 min_u64(br_safe_refills(&b2), br_safe_refills(&b3))),          \
                         min_u64((rounds - k) / 4, DC_CHUNK_ITERS))) > 0) {                     \
      for (; it > 0; --it) {                                                                    \
        uint8_t* o = out + k * 4 * sizeof(T);                                                   \
        uint32_t r;                                                                             \
        BR_REFILL_FAST(b0, data);                                                               \
        BR_REFILL_FAST(b1, data);                                                               \
        BR_REFILL_FAST(b2, data);                                                               \
        BR_REFILL_FAST(b3, data);                                                               \
        for (r = 0; r < 4; ++r) {                                                               \
          uint32_t s0, s1, s2, s3;                                                              \
          DEC(b0, tab, mask, s0);                                                               \
          DEC(b1, tab, mask, s1);                                                               \
          DEC(b2, tab, mask, s2);                                                               \
          DEC(b3, tab, mask, s3);                                                               \
          memcpy(o + (4 * r + 0) * sizeof(T), &cb[s0], sizeof(T));                              \
          memcpy(o + (4 * r + 1) * sizeof(T), &cb[s1], sizeof(T));                              \
          memcpy(o + (4 * r + 2) * sizeof(T), &cb[s2], sizeof(T));                              \
          memcpy(o + (4 * r + 3) * sizeof(T), &cb[s3], sizeof(T));                              \
        }                                                                                       \
        k += 4;                                                                                 \
      }                                                                                         \
      ck_upto(ck, out, (size_t)(k * 4 * sizeof(T)));                                            \
    }                                                                                           \
    /* Tail: each stream on its own with the safe refill. */                                    \
    br[0] = b0; br[1] = b1; br[2] = b2; br[3] = b3;                                             \
    for (s = 0; s < 4; ++s) {                                                                   \
      bitreader* b = &br[s];                                                                    \
      uint64_t i;                                                                               \
      for (i = k * 4 + s; i < n; i += 4) {                                                      \
        br_refill_safe(b, data);                                                                \
        DEC(*b, tab, mask, sym);                                                                \
        memcpy(out + i * sizeof(T), &cb[sym], sizeof(T));                                       \
      }                                                                                         \
      st = br_finish(b, data);                                                                  \
      if (st != DC_OK) return st;                                                               \
    }                                                                                           \
    return DC_OK;                                                                               \
  }                                                                                             \
                                                                                                \
  static dc_status sparse_##SUFFIX(const uint8_t* data, const dc_header* h,                     \
                                   const uint16_t* gtab, const uint16_t* itab, const T* cb,     \
                                   uint8_t* out, cksum* ck) {                                   \
    bitreader b0, b1, b2, b3, br[4];                                                            \
    const uint64_t gmask = (1u << h->gap_code.max_len) - 1u;                                    \
    const uint64_t imask = (1u << h->index_code.max_len) - 1u;                                  \
    const uint64_t n = h->info.num_elements, e = h->entries, G = h->gap_alphabet;               \
    const uint8_t* bgv = (const uint8_t*)&cb[h->background];                                    \
    uint64_t j = 0, p = 0, filled = 0, it;                                                      \
    uint32_t s;                                                                                 \
    dc_status st;                                                                               \
    br_init(&b0, h->stream_start[0], h->stream_size[0]);                                        \
    br_init(&b1, h->stream_start[1], h->stream_size[1]);                                        \
    br_init(&b2, h->stream_start[2], h->stream_size[2]);                                        \
    br_init(&b3, h->stream_start[3], h->stream_size[3]);                                        \
    /* Each iteration: 1 refill and 2 entries (2 * (12 + 12) <= 56 bits) per stream, so 8    \
     * entries advancing p by at most 8 G; the background is filled just ahead of p. */         \
    while ((it = min_u64(min_u64(min_u64(br_safe_refills(&b0), br_safe_refills(&b1)),          \
                                 min_u64(br_safe_refills(&b2), br_safe_refills(&b3))),          \
                         min_u64((e - j) / 8, DC_CHUNK_ITERS))) > 0) {                          \
      uint64_t reach;                                                                           \
      if (it * 8 * G > DC_FILL_CHUNK) it = DC_FILL_CHUNK / (8 * G) + 1;                         \
      reach = min_u64(n, p + it * 8 * G);                                                       \
      if (filled < reach) {                                                                     \
        uint64_t to = min_u64(n, filled + DC_FILL_CHUNK > reach ? filled + DC_FILL_CHUNK : reach); \
        fill_elements(out, filled, to, bgv, sizeof(T));                                         \
        filled = to;                                                                            \
      }                                                                                         \
      for (; it > 0; --it) {                                                                    \
        uint32_t r;                                                                             \
        BR_REFILL_FAST(b0, data);                                                               \
        BR_REFILL_FAST(b1, data);                                                               \
        BR_REFILL_FAST(b2, data);                                                               \
        BR_REFILL_FAST(b3, data);                                                               \
        for (r = 0; r < 2; ++r) {                                                               \
          uint32_t g0, g1, g2, g3, i0, i1, i2, i3;                                              \
          DEC(b0, gtab, gmask, g0);                                                             \
          DEC(b1, gtab, gmask, g1);                                                             \
          DEC(b2, gtab, gmask, g2);                                                             \
          DEC(b3, gtab, gmask, g3);                                                             \
          DEC(b0, itab, imask, i0);                                                             \
          DEC(b1, itab, imask, i1);                                                             \
          DEC(b2, itab, imask, i2);                                                             \
          DEC(b3, itab, imask, i3);                                                             \
          p += g0; if (p >= n) return DC_ERR_STREAM;                                            \
          memcpy(out + p * sizeof(T), &cb[i0], sizeof(T)); p++;                                 \
          p += g1; if (p >= n) return DC_ERR_STREAM;                                            \
          memcpy(out + p * sizeof(T), &cb[i1], sizeof(T)); p++;                                 \
          p += g2; if (p >= n) return DC_ERR_STREAM;                                            \
          memcpy(out + p * sizeof(T), &cb[i2], sizeof(T)); p++;                                 \
          p += g3; if (p >= n) return DC_ERR_STREAM;                                            \
          memcpy(out + p * sizeof(T), &cb[i3], sizeof(T)); p++;                                 \
        }                                                                                       \
        j += 8;                                                                                 \
      }                                                                                         \
      ck_upto(ck, out, (size_t)(p * sizeof(T)));                                                \
    }                                                                                           \
    br[0] = b0; br[1] = b1; br[2] = b2; br[3] = b3;                                             \
    for (; j < e; ++j) {                                                                        \
      bitreader* bb = &br[j & 3];                                                               \
      uint32_t g, i;                                                                            \
      br_refill_safe(bb, data);                                                                 \
      DEC(*bb, gtab, gmask, g);                                                                 \
      DEC(*bb, itab, imask, i);                                                                 \
      p += g;                                                                                   \
      if (p >= n) return DC_ERR_STREAM;                                                         \
      if (filled <= p) {                                                                        \
        uint64_t to = min_u64(n, p + G + DC_FILL_CHUNK);                                        \
        fill_elements(out, filled, to, bgv, sizeof(T));                                         \
        filled = to;                                                                            \
      }                                                                                         \
      memcpy(out + p * sizeof(T), &cb[i], sizeof(T));                                           \
      p++;                                                                                      \
    }                                                                                           \
    if (n - p >= G) return DC_ERR_STREAM; /* §6: trailing background < G */                     \
    fill_elements(out, filled, n, bgv, sizeof(T));                                              \
    for (s = 0; s < 4; ++s) {                                                                   \
      st = br_finish(&br[s], data);                                                             \
      if (st != DC_OK) return st;                                                               \
    }                                                                                           \
    return DC_OK;                                                                               \
  }

DEFINE_DECODERS(u8, uint8_t)
DEFINE_DECODERS(u16, uint16_t)
DEFINE_DECODERS(u32, uint32_t)

/* ---------------------------------------------------------------------------------------- */
/* dc_decode                                                                                 */
/* ---------------------------------------------------------------------------------------- */
dc_status dc_decode(const uint8_t* data, size_t size, void* out_v, size_t out_size) {
  dc_header h;
  dc_status st = DC_OK;
  uint8_t* out = (uint8_t*)out_v;
  uint16_t itab[1u << DC_MAX_CODE_LENGTH], gtab[1u << DC_MAX_CODE_LENGTH];
  /* codebook copied to aligned, host-typed storage holding the little-endian bytes */
  union {
    uint32_t u32[DC_MAX_SYMBOLS];
    uint16_t u16[DC_MAX_SYMBOLS];
    uint8_t u8[DC_MAX_SYMBOLS];
  } cb;
  cksum ck;
  ck.a = 1;
  ck.b = 0;
  ck.done = 0;
  if (data == NULL || (out == NULL && out_size != 0)) return DC_ERR_ARGUMENT;
  st = dc_parse(data, size, &h);
  if (st != DC_OK) return st;
  if (out_size != h.info.output_bytes) return DC_ERR_OUTPUT_SIZE;
  if (h.info.num_elements > 0) {
    size_t esz = h.info.element_size;
    memcpy(cb.u8, h.codebook, (size_t)h.k * esz);
    build_table(&h.index_code, itab);
    if (h.layout == 0 && h.index_code.max_len == 0) {
      fill_elements(out, 0, h.info.num_elements, cb.u8 + (size_t)h.index_code.single * esz, esz);
    } else if (h.layout == 0) {
      st = esz == 4   ? dense_u32(data, &h, itab, cb.u32, out, &ck)
           : esz == 2 ? dense_u16(data, &h, itab, cb.u16, out, &ck)
                      : dense_u8(data, &h, itab, cb.u8, out, &ck);
    } else {
      build_table(&h.gap_code, gtab);
      st = esz == 4   ? sparse_u32(data, &h, gtab, itab, cb.u32, out, &ck)
           : esz == 2 ? sparse_u16(data, &h, gtab, itab, cb.u16, out, &ck)
                      : sparse_u8(data, &h, gtab, itab, cb.u8, out, &ck);
    }
    if (st != DC_OK) return st;
  }
  if (!checksum_finish(&ck, &h, data, out)) return DC_ERR_CHECKSUM;
  return DC_OK;
}
