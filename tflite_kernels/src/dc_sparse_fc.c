/*
 * dc_sparse_fc.c -- compact row-compressed FULLY_CONNECTED weights built from
 * packed bytes, and the float32 / int8 kernels that run on them
 * (dc_sparse_fc.h).  C99 scalar kernels, plus AVX-512 batch-1 kernels picked at
 * run time on x86-64 (GCC/Clang intrinsics); no allocation in the kernels.
 *
 * Why this layout (measured, docs/android_design_notes.md "Which layout, and why"):
 * batch-1 sparse FC is bound by the work per non-zero, not by bytes.  A 16-bit column + 1-byte
 * code per non-zero (3 B) keeps the whole 4096x4096 layer at 10 % in 5 MB and costs
 * one gather of x, one codebook load (L1) and one multiply-add per non-zero.
 * Alternatives measured on 4096x4096 (x86-64, one core, best of 300-400 runs,
 * same process, 2026-11-29): this kernel 0.53-0.61 ns per non-zero at 5, 10
 * and 30 % density (linear in the non-zeros: 0.46-0.50 ms at 5 %, 0.89-1.04 ms
 * at 10 %); 2-byte entries (8-bit column step + 8-bit code, 2 B per non-zero,
 * 33 % less memory) 1.2-1.3x slower (the running column is a serial chain);
 * per row sorted by code (sum x per code, one multiply per code) 2.3x slower
 * (short inner loops mispredict); 64-bit loads of 4 columns, 8 accumulators,
 * two rows interleaved: within 3 % (noise).
 *
 * Build (dc_sparse_fc_build): FORMAT.md §6 / §11 (layout 3) sparse tensors of
 * version 2 with a zero background go straight from their entries into the
 * rows (dc_decode_rows in dc_codec.c): 6.2 ms for the 4096x4096 10 % layer
 * (1.68 M entries, one thread) against 84 ms through a dense copy.  A form of
 * 1 MiB or more is built on two threads (Pipe, Helper below): the caller
 * decodes, a helper maps the pages and places; first build in a fresh process
 * 5.3 -> 3.8 ms wall (median of 12, real-time priority, loaded machine).
 *
 * Tile form (dc_sparse_fc.h; docs/android_design_notes.md "The tile form instead of the rows"):
 * on AVX-512 CPUs a float32 FC layer of <= 32 values or an int8 FC layer keeps it instead of the
 * rows, decoded the same way (the same staged
 * decoder, checks and statuses) but placed into a scratch of rows that becomes tiles 16 rows at
 * a time (tiles_place, emit_group), so the rows are never built whole and load does not pay for
 * both.
 * Pilot 2026-12-01 (loaded 2-CPU guest, best of 9, one thread, CPU time): 4096x4096 at 10 %
 * built in 5.6 ms against 4.4 ms for the rows; batch 1 0.13 ns per non-zero against 0.28,
 * batch 8 0.55 against 1.27 ms; 2.0 entries per non-zero (6.9 MB against 5.1 MB of rows).
 *
 * Value form (dc_sparse_fc.h; docs/android_design_notes.md "Unclustered layers: the value
 * form"): float planes (§12, §18) of more than 255 distinct non-zero values, which no code
 * indexes, keep the weight itself per non-zero (§12: compact_values, after compact_float finds
 * the 256th value in the dense copy; §18: straight from the entries, build_planes_direct), run by
 * the scalar row kernels' loops (float_batch1_values, float_tile8_values) on every CPU.
 */
#if defined(__linux__) || defined(__ANDROID__) || defined(__APPLE__)
#define _POSIX_C_SOURCE 200809L /* sched_yield */
#endif
#include "dc_sparse_fc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dc_codec_internal.h"
#include "dc_pages.h"
#include "dc_parallel.h"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(DC_SFC_NO_SIMD)
#define DC_SFC_X86 1
#include <immintrin.h>
#else
#define DC_SFC_X86 0
#endif

/* The CPU's vector features, CAP_* bits: CAP_AVX512, the AVX-512 kernels (F, BW, VL); CAP_CD,
 * and AVX-512 CD (the tile builder's vector loop); CAP_VNNI, and AVX-512 VNNI (the int8 tile
 * kernels' vpdpwssd); CAP_AVX2, AVX2 and FMA (the AVX2 tile kernels, for CPUs without AVX-512).
 * x86-64: probed on first use into one word (CAP_PROBED set), loaded and stored whole with relaxed
 * atomics, so that threads probing at once store the same value and a reader sees all of one
 * probe or none of it.  (Three plain variables before: gcc 12 -O2 stored the level before the
 * AVX2 flag, so a thread building or running a layer beside the first probe could see "no
 * AVX-512" without "AVX2" and take the scalar kernels, rows instead of tiles, on an AVX2 CPU;
 * ThreadSanitizer reports the race, make test-tsan.)
 * simd_allowed: dc_sparse_fc_use_simd's setting (0, 1, 2, 3, 4). */
enum { CAP_AVX512 = 1, CAP_CD = 2, CAP_VNNI = 4, CAP_AVX2 = 8, CAP_PROBED = 16 };
static int simd_allowed = 1;

static int cpu_caps(void) {
#if DC_SFC_X86
  static int cache = 0;
  int caps = __atomic_load_n(&cache, __ATOMIC_RELAXED);
  if (!caps) {
    __builtin_cpu_init();
    const int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                       __builtin_cpu_supports("avx512vl");
    caps = CAP_PROBED | (avx512 ? CAP_AVX512 : 0) |
           (avx512 && __builtin_cpu_supports("avx512cd") ? CAP_CD : 0) |
           (avx512 && __builtin_cpu_supports("avx512vnni") ? CAP_VNNI : 0) |
           (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? CAP_AVX2 : 0);
    __atomic_store_n(&cache, caps, __ATOMIC_RELAXED);
  }
  return caps;
#else
  return CAP_PROBED;
#endif
}

/* The kernels in use (dc_sparse_fc_kernel_name): scalar, AVX2 tile kernels (the rest scalar), or
 * AVX-512. */
enum { K_SCALAR = 0, K_AVX2 = 1, K_AVX512 = 2 };

static int kernels(void) {
  const int caps = cpu_caps();
  if (!simd_allowed) return K_SCALAR;
  if ((caps & CAP_AVX512) && simd_allowed != 4) return K_AVX512;
  if (caps & CAP_AVX2) return K_AVX2;
  return K_SCALAR;
}

/* The AVX-512 kernels are in use (the row kernels' and the tile builder's vector loops). */
static int simd(void) {
  return kernels() == K_AVX512;
}

/* Vector tile kernels are in use (AVX-512 or AVX2): FC layers take the tile form. */
static int tile_kernels(void) {
  return kernels() != K_SCALAR;
}

#if DC_SFC_X86
/* The int8 tile kernels' VNNI variant is in use. */
static int vnni(void) {
  return simd() && (cpu_caps() & CAP_VNNI) && simd_allowed != 3;
}
#endif

DC_API int dc_sparse_fc_use_simd(int on) {
  int was = simd_allowed;
  simd_allowed = on >= 2 && on <= 4 ? on : on != 0;
  return was;
}

DC_API const char* dc_sparse_fc_kernel_name(void) {
  static const char* const names[] = {"scalar", "avx2", "avx512"};
  return names[kernels()];
}

static void say(char* why, size_t size, const char* fmt, ...) {
  if (!why || !size) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, size, fmt, ap);
  va_end(ap);
}

static void tiles_free(dc_sparse_fc* m) {
  free(m->tile_ptr), free(m->tile_block), free(m->tile_steps), free(m->tile_e);
  m->tile_ptr = NULL, m->tile_block = NULL, m->tile_steps = NULL, m->tile_e = NULL;
  m->tile_groups = 0;
  /* tile_entries stays: a rows form keeps the count of the tiles that did not fit */
}

DC_API void dc_sparse_fc_free(dc_sparse_fc* m) {
  if (!m) return;
  free(m->row_ptr);
  free(m->col);
  free(m->code);
  free(m->row_sum);
  free(m->value);
  tiles_free(m);
  memset(m, 0, sizeof *m);
}

/* Builds the tile form group by group from rows given as (row_ptr, col, code): the whole form's
 * rows (dc_sparse_fc_add_tiles, the dense and grouped routes), or, in the direct build, the rows
 * of the groups decoded so far, placed by the decoder into a small scratch (tiles_place).  The
 * arrays are sized once from bounds that hold for any input: a tile holds at least one non-zero
 * and at most 16 x 32 entries, so tiles <= min(nnz, groups * blocks) and entries <= min(16 nnz,
 * 512 tiles); tile_e is only reserved to that bound (dc_alloc_output: untouched pages cost no
 * memory) and shrunk to what was written at the end (tiles_end).  A group goes through `stage`:
 * 32 steps x 16 lanes for each of DC_SFC_STAGE blocks (all DC_SFC_TILE_EMPTY between uses), see
 * emit_group. */
#define DC_SFC_STAGE 16u /* blocks staged at a time (a power of 2) */
typedef struct {
  dc_sparse_fc* m;
  uint32_t blocks, groups_done;
  uint64_t tiles, entries, nnz; /* written so far (nnz: non-zeros placed into tiles) */
  uint64_t tile_cap, entry_cap; /* the bounds above */
  uint16_t* stage;              /* DC_SFC_STAGE * 512 entries */
  dc_rows* r;                   /* direct build: the decoder's scratch rows, else NULL */
  uint64_t cap;                 /* entries of r->col / r->code */
  int fail;                     /* out of memory, or rows not as the builders make them */
} Tiles;

#define DC_SFC_EMPTY4 0x8000800080008000ull /* four DC_SFC_TILE_EMPTY */

static void fill_empty(uint16_t* e, size_t n) { /* n: a multiple of 16 */
  for (size_t i = 0; i < n; i += 4) {
    const uint64_t v = DC_SFC_EMPTY4;
    memcpy(e + i, &v, sizeof v);
  }
}

/* 1 if the 16 entries at e are all DC_SFC_TILE_EMPTY (the only entries with bit 15 set). */
static int step_empty(const uint16_t* e) {
  uint64_t w[4];
  memcpy(w, e, sizeof w);
  return (w[0] & w[1] & w[2] & w[3] & DC_SFC_EMPTY4) == DC_SFC_EMPTY4;
}

/* Allocates the tile arrays of *m for at most nnz_bound non-zeros; 0 when out of memory. */
static int tiles_begin(Tiles* t, dc_sparse_fc* m, uint64_t nnz_bound) {
  memset(t, 0, sizeof *t);
  t->m = m;
  t->blocks = (m->cols + 31) / 32;
  m->tile_groups = (m->rows + 15) / 16;
  const uint64_t nb = nnz_bound ? nnz_bound : 1, grid = (uint64_t)m->tile_groups * t->blocks;
  t->tile_cap = grid < nb ? grid : nb;
  t->entry_cap = 16 * nb < 512 * t->tile_cap ? 16 * nb : 512 * t->tile_cap;
  if (t->entry_cap > SIZE_MAX / sizeof(uint16_t)) return 0;
  m->tile_ptr = (uint32_t*)malloc(((size_t)m->tile_groups + 1) * sizeof(uint32_t));
  m->tile_block = (uint16_t*)malloc((size_t)t->tile_cap * sizeof(uint16_t));
  m->tile_steps = (uint8_t*)malloc((size_t)t->tile_cap);
  m->tile_e = (uint16_t*)dc_alloc_output((size_t)t->entry_cap * sizeof(uint16_t));
  t->stage = (uint16_t*)malloc((size_t)DC_SFC_STAGE * 512 * sizeof(uint16_t));
  if (!m->tile_ptr || !m->tile_block || !m->tile_steps || !m->tile_e || !t->stage) {
    tiles_free(m);
    free(t->stage);
    t->stage = NULL;
    return 0;
  }
  fill_empty(t->stage, (size_t)DC_SFC_STAGE * 512);
  m->tile_ptr[0] = 0;
  return 1;
}

#if DC_SFC_X86
/* emit_group's stage loop for one row (lane l) on AVX-512 (F, BW, VL, CD): 16 entries per step,
 * each one's step in its block from vpconflictd (the earlier entries of the same block in the
 * vector: contiguous, columns increasing) plus the run carried over from the previous vector,
 * then stored one by one (there is no 16-bit scatter).  Same stage contents as the scalar loop;
 * returns the first entry at or past column lim. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512cd"))) static uint32_t stage_row_avx512(
    const uint16_t* col, const uint8_t* code, uint32_t j, uint32_t end, uint32_t lim, uint32_t b0,
    uint32_t l, uint16_t* stage) {
  const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  const __m512i vlim = _mm512_set1_epi32((int)lim), vb0 = _mm512_set1_epi32((int)b0);
  const __m512i k31 = _mm512_set1_epi32(31), lane = _mm512_set1_epi32((int)l);
  uint32_t prev_b = UINT32_MAX, prev_s = 0;
  while (j < end) {
    const uint32_t left = end - j;
    const __mmask16 k = (__mmask16)(left >= 16 ? 0xffffu : (1u << left) - 1u);
    const __m512i c = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, col + j));
    const __mmask16 kin = _mm512_mask_cmplt_epu32_mask(k, c, vlim); /* a prefix: c increases */
    const uint32_t n = (uint32_t)__builtin_popcount((unsigned)kin);
    if (!n) break;
    const __m512i q = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(kin, code + j));
    const __m512i b = _mm512_srli_epi32(c, 5);
    const __m512i conf = _mm512_maskz_conflict_epi32(kin, b); /* earlier lanes, same block */
    const __m512i low = _mm512_and_si512(conf, _mm512_sub_epi32(_mm512_setzero_si512(), conf));
    /* the run's first lane f = 31 - lzcnt(lowest bit); rank = i - f (0 without an earlier one) */
    __m512i rank = _mm512_maskz_add_epi32(_mm512_test_epi32_mask(conf, conf), iota,
                                          _mm512_sub_epi32(_mm512_lzcnt_epi32(low), k31));
    rank = _mm512_mask_add_epi32(rank, _mm512_cmpeq_epi32_mask(b, _mm512_set1_epi32((int)prev_b)),
                                 rank, _mm512_set1_epi32((int)prev_s + 1));
    const __m512i blk = _mm512_and_si512(_mm512_sub_epi32(b, vb0), _mm512_set1_epi32(15));
    const __m512i idx =
        _mm512_or_si512(_mm512_or_si512(_mm512_slli_epi32(blk, 9),
                                        _mm512_slli_epi32(_mm512_and_si512(rank, k31), 4)),
                        lane);
    const __m512i ent = _mm512_or_si512(_mm512_and_si512(c, k31), _mm512_slli_epi32(q, 5));
    uint32_t ia[16], ea[16], ra[16];
    _mm512_storeu_si512((void*)ia, idx);
    _mm512_storeu_si512((void*)ea, ent);
    _mm512_storeu_si512((void*)ra, rank);
    for (uint32_t i = 0; i < n; ++i) stage[ia[i]] = (uint16_t)ea[i];
    prev_b = (uint32_t)col[j + n - 1] >> 5;
    prev_s = ra[n - 1];
    j += n;
    if (n < 16) break; /* lim reached, or the row's end */
  }
  return j;
}

/* emit_group's copy of a staged block (step 0 not empty) on AVX-512: its steps up to the first
 * all-empty one (or 32) go to out (at most room entries; more: the steps, nothing written past)
 * and back to empty in the stage; returns the steps. */
__attribute__((target("avx512f,avx512bw,avx512vl"))) static uint32_t copy_steps_avx512(
    uint16_t* sb, uint16_t* out, uint64_t room) {
  const __m256i empty = _mm256_set1_epi16((short)DC_SFC_TILE_EMPTY);
  uint32_t s = 0;
  for (; s < 32; ++s) {
    const __m256i v = _mm256_loadu_si256((const __m256i*)(sb + 16 * s));
    if (_mm256_cmpeq_epi16_mask(v, empty) == 0xffffu) break;
    if (16u * (s + 1) <= room) _mm256_storeu_si256((__m256i*)(out + 16 * s), v);
    _mm256_storeu_si256((__m256i*)(sb + 16 * s), empty);
  }
  return s;
}
#endif

/* Appends the tiles of group g: rows 16 g .. 16 g + 15 (those < rows) are [rp[r], rp[r + 1]) of
 * col / code, columns strictly increasing within a row and < cols (what the decoder and every
 * builder make; dc_sparse_fc_add_tiles checks a caller's rows first: rows_ok).  DC_SFC_STAGE
 * blocks at a time (16 KiB of stage: it stays in L1), each row's entries in them go to the
 * stage at (block, step = index among the row's non-zeros in the block, lane), with no branch
 * per entry but the end of the row's run (indices masked: nothing is written out of the stage
 * whatever the rows).  Then, block by block in order, a block with an entry in step 0 becomes a
 * tile of as many steps as its longest lane (steps are filled from 0: the first all-empty step
 * ends it), copied out and its stage steps reset to empty. */
static void emit_group(Tiles* t, uint32_t g, const uint32_t* rp, const uint16_t* col,
                       const uint8_t* code) {
  dc_sparse_fc* m = t->m;
  uint16_t* const stage = t->stage;
  uint32_t cur[16], end[16];
  for (uint32_t l = 0; l < 16; ++l) {
    const uint32_t r = 16 * g + l;
    cur[l] = r < m->rows ? rp[r] : 0;
    end[l] = r < m->rows ? rp[r + 1] : 0;
    t->nnz += end[l] - cur[l];
  }
  for (uint32_t b0 = 0; b0 < t->blocks; b0 += DC_SFC_STAGE) {
    const uint32_t b1 = b0 + DC_SFC_STAGE < t->blocks ? b0 + DC_SFC_STAGE : t->blocks;
    const uint32_t lim = 32 * b1;
    uint16_t* const st0 = stage - (size_t)b0 * 512;
    for (uint32_t l = 0; l < 16; ++l) {
#if DC_SFC_X86
      if ((cpu_caps() & CAP_CD) && simd_allowed != 2 && simd()) {
        cur[l] = stage_row_avx512(col, code, cur[l], end[l], lim, b0, l, stage);
        continue;
      }
#endif
      uint32_t j = cur[l], prev = UINT32_MAX, s = 0;
      const uint32_t e = end[l];
      for (; j < e && col[j] < lim; ++j) {
        const uint32_t c = col[j], b = c >> 5;
        s = b == prev ? s + 1 : 0;
        prev = b;
        st0[(size_t)b * 512 + 16 * (s & 31) + l] = (uint16_t)((c & 31u) | ((uint32_t)code[j] << 5));
      }
      cur[l] = j;
    }
    for (uint32_t b = b0; b < b1; ++b) {
      uint16_t* sb = stage + (size_t)(b - b0) * 512;
      if (step_empty(sb)) continue;
      if (t->tiles >= t->tile_cap) { /* cannot be */
        t->fail = 1;
        fill_empty(sb, 512);
        continue;
      }
      uint32_t steps;
#if DC_SFC_X86
      if ((cpu_caps() & CAP_CD) && simd_allowed != 2 && simd()) {
        steps = copy_steps_avx512(sb, m->tile_e + t->entries, t->entry_cap - t->entries);
      } else
#endif
      {
        steps = 1;
        while (steps < 32 && !step_empty(sb + 16 * steps)) ++steps;
        if (t->entries + 16u * steps <= t->entry_cap)
          memcpy(m->tile_e + t->entries, sb, 16u * steps * sizeof(uint16_t));
        fill_empty(sb, 16u * steps);
      }
      if (t->entries + 16u * steps > t->entry_cap) { /* cannot be */
        t->fail = 1;
        fill_empty(sb, 512);
        continue;
      }
      m->tile_block[t->tiles] = (uint16_t)b;
      m->tile_steps[t->tiles] = (uint8_t)steps;
      ++t->tiles;
      t->entries += 16u * steps;
    }
  }
  for (uint32_t l = 0; l < 16; ++l) t->fail |= cur[l] != end[l]; /* cannot be */
  m->tile_ptr[g + 1] = (uint32_t)t->tiles;
}

/* 1 if every row of m has strictly increasing columns < cols (rows given to add_tiles). */
static int rows_ok(const dc_sparse_fc* m) {
  for (uint32_t r = 0; r < m->rows; ++r) {
    if (m->row_ptr[r] > m->row_ptr[r + 1] || m->row_ptr[r + 1] > m->nnz) return 0;
    for (uint32_t j = m->row_ptr[r]; j < m->row_ptr[r + 1]; ++j)
      if (m->col[j] >= m->cols || (j > m->row_ptr[r] && m->col[j] <= m->col[j - 1])) return 0;
  }
  return 1;
}

/* Finishes the form (every group emitted): its size, tile_e shrunk to what was written. */
static void tiles_end(Tiles* t) {
  dc_sparse_fc* m = t->m;
  free(t->stage);
  t->stage = NULL;
  m->tile_entries = t->entries;
  if (t->entries < t->entry_cap) {
    uint16_t* e = (uint16_t*)realloc(m->tile_e, (size_t)(t->entries ? t->entries : 1) * 2);
    if (e) m->tile_e = e;
  }
}

/* The weight of a non-empty int8 tile entry: its code (bits 5..12) as int8. */
static int32_t tile_weight(uint16_t e) {
  return (int8_t)(uint8_t)(e >> 5);
}

/* An int8 tile form's row sums (row_sum: rows entries), from its entries (code = the weight). */
static void tiles_row_sums(dc_sparse_fc* m) {
  const uint16_t* e = m->tile_e;
  for (uint32_t g = 0; g < m->tile_groups; ++g) {
    int32_t sum[16] = {0};
    for (uint32_t t = m->tile_ptr[g]; t < m->tile_ptr[g + 1]; ++t)
      for (uint32_t s = 0; s < m->tile_steps[t]; ++s, e += 16)
        for (uint32_t l = 0; l < 16; ++l)
          if (e[l] != DC_SFC_TILE_EMPTY) sum[l] += tile_weight(e[l]);
    for (uint32_t l = 0; l < 16 && 16 * g + l < m->rows; ++l) m->row_sum[16 * g + l] = sum[l];
  }
}

static size_t tile_bytes(uint64_t groups, uint64_t tiles, uint64_t entries) {
  return (size_t)((groups + 1) * sizeof(uint32_t) + tiles * (sizeof(uint16_t) + 1) +
                  entries * sizeof(uint16_t));
}

/* Which form a float32 FC layer of <= 32 values or an int8 FC layer keeps when the AVX-512
 * kernels are in use (dc_sparse_fc_build): the tile form alone while it has at most DC_SFC_TILE_FILL entries per
 * non-zero, else the rows alone (very sparse or oddly spread layers, where the padding of the
 * tiles would cost more time and memory than the rows' gathers). */
static uint32_t tile_fill = DC_SFC_TILE_FILL;

DC_API uint32_t dc_sparse_fc_set_tile_fill(uint32_t entries_per_nonzero) {
  const uint32_t old = tile_fill;
  tile_fill = entries_per_nonzero;
  return old;
}

/* 1 while a tile form of `entries` entries holding nnz non-zeros of m (its shape and type) is
 * kept instead of the rows: at most tile_fill entries per non-zero (an empty layer: 0 entries);
 * an int8 form besides takes no more memory than the larger of its dense weight and its rows (2
 * bytes per entry against 1 per weight and 3 per non-zero): int8 layers are compressed for their
 * memory (docs/android_design_notes.md "int8 on the tile form"), and 4 entries per non-zero
 * would be 2x the dense weight at 25 %. */
static int tiles_fit(const dc_sparse_fc* m, uint64_t entries, uint64_t nnz) {
  if (tile_fill == 0 || entries > (uint64_t)tile_fill * nnz) return 0;
  if (m->dtype != DC_DTYPE_INT8) return 1;
  const uint64_t dense = (uint64_t)m->rows * m->cols, rows = 3 * nnz;
  return 2 * entries <= (dense > rows ? dense : rows);
}

/* 1 for the weight shapes [rows, cols] a compact form holds (check_shape's test: columns are
 * stored as uint16, rows counted in 32 bits). */
static int shape_ok(uint64_t rows, uint64_t cols) {
  return rows > 0 && rows < 0x7fffffffu && cols > 0 && cols <= DC_SFC_MAX_COLS;
}

/* 1 for a form the tile form can hold (dc_sparse_fc_add_tiles, whatever its fill): FC weights
 * (no lookup table) of a shape a form holds, int8 (any values: an entry's code is the weight
 * itself, code << 5 < 2^13) while vector tile kernels (AVX-512 or AVX2) are in use, or float32 of
 * at most 32 distinct kept values (a step's weights are looked up in registers) while the
 * AVX-512 kernels are in use.  float32 forms keep the rows with the AVX2 kernels: measured on
 * 1024^2 / 4096^2 layers (docs/android_design_notes.md "CPUs without AVX-512: the AVX2
 * kernels"), the AVX2 float tile kernels (four vpermps and three
 * blends per 8 lanes for x) ran batch 1 as fast as the scalar row kernel at 10 % density (1.2x
 * slower at 5 %) and batches of 2..8 1.3-2x slower than its transposed tile of 8, while the tiles
 * take more memory below ~30 %; int8 tiles ran 2-5x faster than the rows. */
static int tiles_hold(uint32_t dtype, uint32_t table, uint32_t num_values, uint64_t rows,
                      uint64_t cols) {
  if (table || !shape_ok(rows, cols)) return 0;
  if (dtype == DC_DTYPE_INT8) return tile_kernels();
  return dtype == DC_DTYPE_FLOAT32 && num_values <= 32 && simd();
}

/* 1 when the build gives a layer the tile form (kept while it fits, tiles_fit; else the rows):
 * tiles_hold holds for the count of its header's codebook(s) (header_tiles), unless it has too
 * few rows for its tiles ever to fit.  Each step of a tile is 16 entries, one per row of its
 * group, so at most min(rows, 16) of them non-zeros: a layer has at least 16 / min(rows, 16)
 * entries per non-zero, and with tile_fill * rows < 16 none with a non-zero fits (1..3 rows at
 * the default fill of 4; an empty one gets the rows too).  A fill of 0 (the fallback's test
 * switch) still makes every such build make tiles, then rows.  The one test of the build and
 * dc_sparse_fc_form, both through header_tiles, so that the two agree by construction. */
static int tile_form(uint32_t dtype, uint32_t table, uint32_t num_values, uint64_t rows,
                     uint64_t cols) {
  const uint64_t lanes = rows < 16 ? rows : 16;
  return tiles_hold(dtype, table, num_values, rows, cols) &&
         (tile_fill == 0 || (uint64_t)tile_fill * lanes >= 16);
}

/* The tile form's entries of rows (row_ptr, col) [rows, cols]: per group of 16 rows and block of
 * 32 columns with a non-zero, 16 x the most non-zeros of one row in the block (what emit_group
 * makes, without making it).  For a layer refused as too dense (dc_sparse_fc_build_max): whether
 * its tiles would have fit. */
static uint64_t rows_tile_entries(const uint32_t* row_ptr, const uint16_t* col, uint32_t rows,
                                  uint32_t cols) {
  uint8_t steps[DC_SFC_MAX_COLS / 32], run[DC_SFC_MAX_COLS / 32];
  const uint32_t blocks = (cols + 31) / 32;
  uint64_t e = 0;
  for (uint32_t g = 0; 16 * g < rows; ++g) {
    memset(steps, 0, blocks);
    for (uint32_t r = 16 * g; r < rows && r < 16 * g + 16; ++r) {
      memset(run, 0, blocks);
      for (uint32_t j = row_ptr[r]; j < row_ptr[r + 1]; ++j) {
        const uint32_t b = col[j] >> 5;
        if (++run[b] > steps[b]) steps[b] = run[b];
      }
    }
    for (uint32_t b = 0; b < blocks; ++b) e += 16u * steps[b];
  }
  return e;
}

/* rows_tile_entries of a dense FC weight: float32 (+-0 not kept) or int8 (0 not kept). */
static uint64_t dense_tile_entries(const void* w, uint32_t dtype, uint32_t rows, uint32_t cols) {
  uint8_t steps[DC_SFC_MAX_COLS / 32];
  const uint32_t blocks = (cols + 31) / 32;
  const int i8 = dtype == DC_DTYPE_INT8;
  uint64_t e = 0;
  for (uint32_t g = 0; 16 * g < rows; ++g) {
    memset(steps, 0, blocks);
    for (uint32_t r = 16 * g; r < rows && r < 16 * g + 16; ++r) {
      const uint32_t* row = (const uint32_t*)w + (size_t)r * cols;
      const int8_t* row8 = (const int8_t*)w + (size_t)r * cols;
      for (uint32_t b = 0; b < blocks; ++b) {
        uint32_t n = 0;
        for (uint32_t c = 32 * b; c < cols && c < 32 * b + 32; ++c)
          n += i8 ? row8[c] != 0 : (row[c] << 1) != 0;
        if (n > steps[b]) steps[b] = (uint8_t)n;
      }
    }
    for (uint32_t b = 0; b < blocks; ++b) e += 16u * steps[b];
  }
  return e;
}

/* The rows of a tile form (the build's fallback when the tiles do not fit): lane l of a group's
 * tiles, in order, is row 16 g + l in column order.  Replaces the tiles; 0 when out of memory
 * (the form is then unchanged). */
static int tiles_to_rows(dc_sparse_fc* m) {
  const size_t n = m->nnz ? (size_t)m->nnz : 1;
  uint32_t* rp = (uint32_t*)malloc(((size_t)m->rows + 1) * sizeof(uint32_t));
  uint16_t* col = (uint16_t*)dc_alloc_output(n * sizeof(uint16_t));
  uint8_t* code = (uint8_t*)dc_alloc_output(n);
  if (!rp || !col || !code) {
    free(rp), free(col), free(code);
    return 0;
  }
  const uint16_t* e = m->tile_e;
  uint32_t k = 0;
  for (uint32_t g = 0; g < m->tile_groups; ++g) {
    uint32_t cnt[16] = {0}, at[16];
    const uint16_t* ge = e;
    for (uint32_t t = m->tile_ptr[g]; t < m->tile_ptr[g + 1]; ++t)
      for (uint32_t s = 0; s < m->tile_steps[t]; ++s, ge += 16)
        for (uint32_t l = 0; l < 16; ++l) cnt[l] += ge[l] != DC_SFC_TILE_EMPTY;
    for (uint32_t l = 0; l < 16 && 16 * g + l < m->rows; ++l) {
      rp[16 * g + l] = k;
      at[l] = k;
      k += cnt[l];
    }
    for (uint32_t t = m->tile_ptr[g]; t < m->tile_ptr[g + 1]; ++t)
      for (uint32_t s = 0; s < m->tile_steps[t]; ++s, e += 16)
        for (uint32_t l = 0; l < 16; ++l) {
          if (e[l] == DC_SFC_TILE_EMPTY) continue;
          col[at[l]] = (uint16_t)(32u * m->tile_block[t] + (e[l] & 31u));
          code[at[l]++] = (uint8_t)(e[l] >> 5);
        }
  }
  rp[m->rows] = k;
  tiles_free(m); /* tile_entries kept: the count of the tiles that did not fit (dc_sparse_fc.h) */
  m->row_ptr = rp, m->col = col, m->code = code;
  return 1;
}

/* The tile form of the rows of *m (all of them, in one go); 0 if not built (out of memory). */
static int rows_to_tiles(dc_sparse_fc* m) {
  Tiles t;
  if (!tiles_begin(&t, m, m->nnz)) return 0;
  for (uint32_t g = 0; g < m->tile_groups && !t.fail; ++g)
    emit_group(&t, g, m->row_ptr, m->col, m->code);
  if (t.fail) {
    tiles_free(m);
    free(t.stage);
    return 0;
  }
  tiles_end(&t);
  return 1;
}

DC_API int dc_sparse_fc_add_tiles(dc_sparse_fc* m) {
  if (!m || m->tile_e || !m->row_ptr || m->value || (m->dtype == DC_DTYPE_INT8 && !m->row_sum) ||
      !tiles_hold(m->dtype, m->table, m->num_values, m->rows, m->cols) || !rows_ok(m))
    return 0;
  return rows_to_tiles(m); /* none built: tile_entries (tiles that did not fit) unchanged */
}

/* After a build of the rows (the dense route, §11's grouped tensors) of a layer the header gives
 * the tile form (`tiles`: header_tiles): the tile form instead when it fits (tiles_fit), else the
 * rows with tile_entries, their count, kept (dc_sparse_fc.h: the tiles did not fit); out of memory
 * for the tiles: the rows, tile_entries 0. */
static void rows_or_tiles(dc_sparse_fc* m, int tiles) {
  if (!tiles || !rows_to_tiles(m)) return;
  if (!tiles_fit(m, m->tile_entries, m->nnz)) {
    tiles_free(m); /* tile_entries kept */
    return;
  }
  free(m->row_ptr), free(m->col), free(m->code);
  m->row_ptr = NULL, m->col = NULL, m->code = NULL;
}

/* Direct build of the tile form (build_direct): the decoder places the entries into scratch rows
 * (t->r: row_ptr for every row, col / code of t->cap entries), and each group of 16 rows becomes
 * tiles as soon as it is complete, so the row form is never built whole.  The scratch holds the
 * group in progress and the chunk being placed; when a chunk would not fit, the entries of the
 * groups already emitted are dropped (the rest moved to the front, row offsets shifted) and, if
 * still needed, the scratch grows.  Room for n more entries: 1, or 0 when out of memory. */
static int tiles_room(Tiles* t, dc_rows_plain_state* s, uint64_t n) {
  dc_rows* r = t->r;
  uint64_t k = s->place.k;
  if (k + n <= t->cap) return 1;
  const uint32_t first = 16 * t->groups_done; /* <= s->place.row: its offset is written */
  const uint32_t off = r->row_ptr[first];
  if (off) {
    memmove(r->col, r->col + off, (size_t)(k - off) * sizeof(uint16_t));
    memmove(r->code, r->code + off, (size_t)(k - off));
    for (uint64_t i = first; i <= s->place.row; ++i) r->row_ptr[i] -= off;
    k -= off;
    s->place.k = k;
  }
  if (k + n <= t->cap) return 1;
  const uint64_t cap = k + n > 2 * t->cap ? k + n : 2 * t->cap;
  uint16_t* c = (uint16_t*)realloc(r->col, (size_t)cap * sizeof(uint16_t));
  if (c) r->col = c;
  uint8_t* q = c ? (uint8_t*)realloc(r->code, (size_t)cap) : NULL;
  if (q) r->code = q;
  if (!c || !q) {
    t->fail = 1;
    return 0;
  }
  t->cap = cap;
  return 1;
}

/* Emits the groups whose rows are all placed (all: every group, after the last entry). */
static void tiles_flush(Tiles* t, const dc_rows_plain_state* s, int all) {
  const uint32_t upto = all ? t->m->tile_groups : (uint32_t)(s->place.row / 16);
  for (; t->groups_done < upto && !t->fail; ++t->groups_done)
    emit_group(t, t->groups_done, t->r->row_ptr, t->r->col, t->r->code);
}

/* dc_rows_plain_place into the scratch, then the completed groups into tiles.  Out of memory:
 * DC_ERR_WORKSPACE with t->fail set (the build returns DC_SFC_NOMEM). */
static dc_status tiles_place(Tiles* t, dc_rows_plain_state* s, const uint32_t* words, size_t n) {
  if (!tiles_room(t, s, n)) return DC_ERR_WORKSPACE;
  dc_status st = dc_rows_plain_place(s, words, n);
  if (st == DC_OK) tiles_flush(t, s, 0);
  return t->fail ? DC_ERR_WORKSPACE : st;
}

/* dc_rows_plain_end (the last entries, placed one by one, and the end checks) into the scratch,
 * then the remaining groups. */
static dc_status tiles_finish(Tiles* t, dc_rows_plain_state* s, const dc_header* h) {
  if (!tiles_room(t, s, h->entries - s->dec.j)) return DC_ERR_WORKSPACE;
  dc_status st = dc_rows_plain_end(s);
  if (st == DC_OK) tiles_flush(t, s, 1);
  return t->fail ? DC_ERR_WORKSPACE : st;
}

DC_API size_t dc_sparse_fc_bytes(const dc_sparse_fc* m) {
  if (!m || (!m->row_ptr && !m->tile_e)) return 0;
  size_t b = sizeof *m;
  if (m->row_ptr)
    b += ((size_t)m->rows + 1) * sizeof(uint32_t) +
         (size_t)m->nnz * (sizeof(uint16_t) + (m->value ? sizeof(float) : sizeof(uint8_t)));
  if (m->row_sum) b += (size_t)m->rows * sizeof(int32_t);
  if (m->tile_e) b += tile_bytes(m->tile_groups, m->tile_ptr[m->tile_groups], m->tile_entries);
  return b;
}

/* A float that the compact form leaves out: +-0 for FC (contributes nothing); only +0 for a
 * lookup table (dc_sparse_table_build), whose rows are copied bit for bit (-0 is kept). */
static int omitted(uint32_t bits, uint32_t table) {
  return table ? bits == 0 : (bits << 1) == 0;
}

/* Codebook index of a non-zero float (by bit pattern); -1 when full. */
typedef struct {
  uint32_t key[512];
  int16_t val[512];
} ValueMap;

static int value_code(ValueMap* vm, dc_sparse_fc* m, uint32_t bits) {
  uint32_t h = (bits * 2654435761u) >> 23; /* 9 bits */
  for (;;) {
    if (vm->val[h] < 0) {
      if (m->num_values >= DC_SFC_MAX_VALUES) return -1;
      vm->key[h] = bits;
      vm->val[h] = (int16_t)m->num_values;
      memcpy(&m->codebook[m->num_values], &bits, sizeof bits);
      return (int)m->num_values++;
    }
    if (vm->key[h] == bits) return vm->val[h];
    h = (h + 1) & 511u;
  }
}

/* The fix said with "more than 255 distinct non-zero values": a codebook of more values (an FC
 * layer or a lookup table clustered to 8 bits or more, without a zero cluster).  Weights and
 * tables pruned but not clustered pack as float planes (§12, §18) and take the value form instead
 * (dc_sparse_fc.h). */
#define DC_SFC_VALUES_FIX                                                                  \
  ": cluster the weights to at most 255 values (dc_keras.cluster, bits <= 7) to run them " \
  "compressed"

static dc_sfc_status compact_float(const float* w, dc_sparse_fc* m, char* why, size_t why_size) {
  ValueMap vm;
  memset(vm.val, 0xff, sizeof vm.val); /* -1 = empty */
  uint32_t last_bits = 0;
  int last_code = -1;
  uint32_t k = 0;
  const uint32_t rows = m->rows, cols = m->cols;
  uint16_t* const col = m->col;
  uint8_t* const code = m->code;
  uint32_t* const row_ptr = m->row_ptr;
  for (uint32_t r = 0; r < rows; ++r) {
    const uint32_t* row = (const uint32_t*)(const void*)(w + (size_t)r * cols);
    row_ptr[r] = k;
    for (uint32_t c = 0; c < cols; ++c) {
      uint32_t bits = row[c];
      if (omitted(bits, m->table)) continue;
      if (bits != last_bits || last_code < 0) {
        last_code = value_code(&vm, m, bits);
        last_bits = bits;
        if (last_code < 0) {
          say(why, why_size, "more than %u distinct non-zero values" DC_SFC_VALUES_FIX,
              DC_SFC_MAX_VALUES);
          return DC_SFC_UNSUPPORTED;
        }
      }
      col[k] = (uint16_t)c;
      code[k] = (uint8_t)last_code;
      ++k;
    }
  }
  row_ptr[rows] = k;
  return DC_SFC_OK;
}

/* The value form (dc_sparse_fc.h) of a float32 FC weight or lookup table that compact_float found
 * to hold more than DC_SFC_MAX_VALUES distinct kept values, built on its rows (row_ptr, col:
 * rewritten whole): the 1-byte codes give way to the weights themselves (a table's -0.0s kept, as
 * omitted says).  The codebook is emptied.  DC_SFC_NOMEM when the values find no memory (the form
 * is then freed by the caller). */
static dc_sfc_status compact_values(const float* w, dc_sparse_fc* m) {
  free(m->code);
  m->code = NULL;
  m->num_values = 0;
  memset(m->codebook, 0, sizeof m->codebook);
  m->value = (float*)dc_alloc_output((size_t)(m->nnz ? m->nnz : 1) * sizeof(float));
  if (!m->value) return DC_SFC_NOMEM;
  uint32_t k = 0;
  const uint32_t rows = m->rows, cols = m->cols;
  for (uint32_t r = 0; r < rows; ++r) {
    const uint32_t* row = (const uint32_t*)(const void*)(w + (size_t)r * cols);
    m->row_ptr[r] = k;
    for (uint32_t c = 0; c < cols; ++c) {
      const uint32_t bits = row[c];
      if (omitted(bits, m->table)) continue;
      m->col[k] = (uint16_t)c;
      memcpy(&m->value[k], &bits, sizeof bits);
      ++k;
    }
  }
  m->row_ptr[rows] = k;
  return DC_SFC_OK;
}

/* dc_sparse_fc_count_values, of the values `table` keeps (omitted). */
static uint32_t count_values(const float* w, uint64_t n, uint32_t table) {
  ValueMap vm;
  dc_sparse_fc probe; /* value_code's count and codebook */
  uint32_t last = 0;
  if (!w) return 0;
  memset(vm.val, 0xff, sizeof vm.val);
  probe.num_values = 0;
  for (uint64_t i = 0; i < n; ++i) {
    uint32_t bits;
    memcpy(&bits, w + i, sizeof bits);
    if (omitted(bits, table) || (bits == last && probe.num_values)) continue;
    last = bits;
    if (value_code(&vm, &probe, bits) < 0) return DC_SFC_MAX_VALUES + 1;
  }
  return probe.num_values;
}

DC_API uint32_t dc_sparse_fc_count_values(const float* w, uint64_t n) {
  return count_values(w, n, 0);
}

static void compact_int8(const int8_t* w, dc_sparse_fc* m) {
  uint32_t k = 0;
  const uint32_t rows = m->rows, cols = m->cols;
  uint16_t* const col = m->col;
  uint8_t* const code = m->code;
  for (uint32_t r = 0; r < rows; ++r) {
    const int8_t* row = w + (size_t)r * cols;
    int32_t sum = 0;
    m->row_ptr[r] = k;
    for (uint32_t c = 0; c < cols; ++c) {
      if (row[c] == m->fill) continue;
      col[k] = (uint16_t)c;
      code[k] = (uint8_t)row[c];
      sum += row[c];
      ++k;
    }
    if (m->row_sum) m->row_sum[r] = sum;
  }
  m->row_ptr[rows] = k;
}

static uint64_t count_nonzero(const void* w, uint32_t dtype, uint64_t n, uint32_t table,
                              int32_t fill) {
  uint64_t nnz = 0;
  if (dtype == DC_DTYPE_FLOAT32) {
    const uint32_t* f = (const uint32_t*)w;
    for (uint64_t i = 0; i < n; ++i) nnz += !omitted(f[i], table);
  } else {
    const int8_t* q = (const int8_t*)w;
    for (uint64_t i = 0; i < n; ++i) nnz += (q[i] != fill);
  }
  return nnz;
}

static dc_sfc_status check_shape(const dc_tensor_info* info, char* why, size_t why_size) {
  if (info->dtype != DC_DTYPE_FLOAT32 && info->dtype != DC_DTYPE_INT8) {
    say(why, why_size, "weights are neither float32 nor int8");
    return DC_SFC_UNSUPPORTED;
  }
  if (info->rank != 2) {
    say(why, why_size, "weights are not 2-D");
    return DC_SFC_UNSUPPORTED;
  }
  if (!shape_ok(info->dims[0], info->dims[1])) {
    say(why, why_size, "weight shape %llux%llu out of range (input size 1..%u)",
        (unsigned long long)info->dims[0], (unsigned long long)info->dims[1], DC_SFC_MAX_COLS);
    return DC_SFC_UNSUPPORTED;
  }
  return DC_SFC_OK;
}

/* Forms from this size on are built with a helper thread (dc_task_start) beside the decode;
 * smaller ones in the caller alone (a thread costs more than it saves).  Tests and fuzzing
 * lower it (dc_sparse_fc_set_helper_bytes) to run the two-thread build on small tensors. */
#define DC_SFC_HELPER_BYTES ((size_t)1 << 20)
static size_t helper_bytes = DC_SFC_HELPER_BYTES;

DC_API size_t dc_sparse_fc_set_helper_bytes(size_t bytes) {
  size_t old = helper_bytes;
  helper_bytes = bytes;
  return old;
}

/* Two-thread build of an ungrouped §6 tensor (the common case): the caller decodes chunks of
 * entries (dc_rows_plain_decode) into a ring of DC_SFC_RING chunks, the helper places them
 * into the rows (dc_rows_plain_place) in order; then the caller finishes (dc_rows_plain_end).
 * Same entries, checks and statuses as one thread (dc_decode_rows); a placing error stops both.
 * Placing is shared, not handed over: whichever side holds the place lock places the oldest
 * decoded chunk, and the caller places itself when the ring is full or it has decoded
 * everything, so a helper that gets no CPU (other processes, one core) delays nothing but its
 * own chunks -- the build then runs at one-thread speed.  The two sides share only the ring, the
 * lock (a mutex, held while placing a chunk) and the counters below (GCC / Clang
 * atomics: release when a chunk is handed over or placed, acquire before it is read); a side
 * with nothing to do spins briefly, then yields its CPU.  4096x4096 at 10 %: decoding ~57 % and placing ~43 % of the one-thread time. */
#if defined(__GNUC__) || defined(__clang__)
#define DC_SFC_PIPE 1
#include <pthread.h>
#include <sched.h>
#define DC_SFC_RING 8u
typedef struct {
  unsigned long v;
  char pad_[64 - sizeof(unsigned long)];
} Counter;
typedef struct {
  dc_rows_plain_state s;    /* s.place: only with the lock held */
  uint32_t* ring;           /* DC_SFC_RING * DC_ROWS_CHUNK words */
  size_t len[DC_SFC_RING];  /* entries of each decoded chunk */
  Counter produced, placed; /* chunks decoded, chunks placed (placed: under the lock) */
  Counter closed, failed;   /* 0/1 */
  pthread_mutex_t lock;     /* placing (a mutex: on aarch64 gcc makes an atomic exchange a libgcc
                             * call needing glibc's __getauxval, which Android lacks) */
  dc_status place_status;   /* under the lock */
  pthread_t caller;         /* the helper places only on its own thread */
  Tiles* tiles;             /* the tile form's direct build (tiles_place), or NULL: rows */
} Pipe;

static unsigned long ld_acq(const Counter* c) {
  return __atomic_load_n(&c->v, __ATOMIC_ACQUIRE);
}
static void st_rel(Counter* c, unsigned long v) {
  __atomic_store_n(&c->v, v, __ATOMIC_RELEASE);
}
static void wait_step(unsigned* spins) {
  if (++*spins < 512) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  } else {
    sched_yield();
  }
}

/* Places the decoded chunks not placed yet, at most `max` of them (waiting for the lock if the
 * other side holds it: it is placing a chunk); returns how many it placed. */
static unsigned long place_some(Pipe* p, unsigned long max) {
  unsigned long done = 0;
  if (ld_acq(&p->placed) >= ld_acq(&p->produced)) return 0; /* nothing to place: no lock */
  pthread_mutex_lock(&p->lock);
  unsigned long c = p->placed.v;
  const unsigned long end = ld_acq(&p->produced);
  for (; c < end && done < max && !p->failed.v; ++c, ++done) {
    const unsigned slot = (unsigned)(c % DC_SFC_RING);
    const uint32_t* words = p->ring + (size_t)slot * DC_ROWS_CHUNK;
    dc_status st = p->tiles ? tiles_place(p->tiles, &p->s, words, p->len[slot])
                            : dc_rows_plain_place(&p->s, words, p->len[slot]);
    if (st != DC_OK) {
      p->place_status = st;
      st_rel(&p->failed, 1);
      break;
    }
    st_rel(&p->placed, c + 1);
  }
  pthread_mutex_unlock(&p->lock);
  return done;
}

/* The helper's side: places chunks, one at a time, until the caller closes the pipe. */
static void pipe_place(Pipe* p) {
  unsigned spins = 0;
  while (!ld_acq(&p->closed) && !ld_acq(&p->failed)) {
    if (place_some(p, 1)) {
      spins = 0;
    } else {
      wait_step(&spins);
    }
  }
}

typedef struct Helper_ Helper;
static void helper_checks(Helper* w);

/* The caller's side, after dc_rows_plain_begin: decodes every chunk (placing the oldest one
 * itself when the ring is full), closes the pipe, does the helper's checks (CRC, file mapping:
 * helper_checks) and places what is left.  DC_OK or the placing error. */
static dc_status pipe_decode(Pipe* p, Helper* w) {
  unsigned long c;
  unsigned spins = 0;
  for (c = 0; !ld_acq(&p->failed); ++c) {
    const unsigned slot = (unsigned)(c % DC_SFC_RING);
    while (c - ld_acq(&p->placed) >= DC_SFC_RING && !ld_acq(&p->failed)) {
      if (!place_some(p, 1)) wait_step(&spins);
    }
    /* helper_bytes 0 (tests, fuzzing): chunks of 8 entries go round the ring many times */
    size_t n = dc_rows_plain_decode(&p->s, p->ring + (size_t)slot * DC_ROWS_CHUNK,
                                    helper_bytes ? DC_ROWS_CHUNK : 8);
    if (!n) break;
    p->len[slot] = n;
    st_rel(&p->produced, c + 1);
  }
  st_rel(&p->closed, 1);
  helper_checks(w);
  while (ld_acq(&p->placed) < ld_acq(&p->produced) && !ld_acq(&p->failed)) {
    if (!place_some(p, DC_SFC_RING)) wait_step(&spins);
  }
  pthread_mutex_lock(&p->lock); /* the helper is out of s.place */
  pthread_mutex_unlock(&p->lock);
  return ld_acq(&p->failed) ? p->place_status : DC_OK;
}
#else
#define DC_SFC_PIPE 0
typedef struct {
  int unused_;
} Pipe;
#endif

/* The helper's work, none of which the decode waits for: map the form's arrays (page allocation
 * and zeroing, the kernel's part of their first writes), check the packed bytes' CRC (§8) and
 * whether they lie in a read-only file mapping (dc_pages.h, /proc/self/maps).  With a Pipe it
 * maps the arrays, then places decoded entries; the caller does the checks once it has decoded
 * (4096x4096 at 10 %, first build in a process, CPU time: decode 3.2 ms, place 2.5, page
 * mapping 1.1, CRC + maps 0.2; the caller places while the helper maps pages).  The caller uses nothing of the form before
 * dc_task_join, and returns the checksum error if the CRC does not match, whatever the decode
 * found: the same statuses as checking it first. */
struct Helper_ {
  void* col;
  size_t col_bytes;
  void* code;
  size_t code_bytes;
  const dc_header* h; /* CRC to check, or NULL */
  const uint8_t* packed;
  size_t size;
  int crc_ok, file;
  Pipe* pipe; /* entries to place, or NULL */
};
#if !DC_SFC_PIPE
typedef struct Helper_ Helper;
#endif

static void helper_checks(Helper* w) {
  if (w->h) w->crc_ok = dc_crc_ok(w->h, w->packed, w->size);
  w->file = dc_file_pages_readonly(w->packed, w->size);
}

static void helper_run(void* arg) {
  Helper* w = (Helper*)arg;
#if DC_SFC_PIPE
  if (w->pipe && !pthread_equal(pthread_self(), w->pipe->caller)) {
    if (!ld_acq(&w->pipe->closed)) dc_populate_pages(w->col, w->col_bytes);
    if (!ld_acq(&w->pipe->closed)) dc_populate_pages(w->code, w->code_bytes);
    pipe_place(w->pipe); /* the caller does the checks */
    return;
  }
#endif
  dc_populate_pages(w->col, w->col_bytes);
  dc_populate_pages(w->code, w->code_bytes);
  helper_checks(w);
}

/* The arrays of a form of `nnz` non-zeros.  col and code come from dc_alloc_output (2 MiB and
 * larger blocks huge-page advised); their pages are mapped writable up front (the builders write
 * them front to back).  A large form starts the helper (*task, NULL if it ran in the caller;
 * w->h: the CRC it checks) and learns m->packed_file from it; the caller joins the task
 * (dc_task_join) before it frees, shrinks or reads the arrays. */
/* An int8 FC form's row sums (m->row_sum, rows entries; float32 forms and lookup tables have
 * none); 0 when out of memory. */
static int alloc_row_sums(dc_sparse_fc* m) {
  if (m->dtype != DC_DTYPE_INT8 || m->table) return 1;
  m->row_sum = (int32_t*)malloc((size_t)m->rows * sizeof(int32_t));
  return m->row_sum != NULL;
}

static dc_sfc_status alloc_form(dc_sparse_fc* m, uint64_t nnz, Helper* w, dc_task** task) {
  size_t n = nnz ? (size_t)nnz : 1;
  *task = NULL;
  m->nnz = nnz;
  m->row_ptr = (uint32_t*)malloc(((size_t)m->rows + 1) * sizeof(uint32_t));
  m->col = (uint16_t*)dc_alloc_output(n * sizeof(uint16_t));
  m->code = (uint8_t*)dc_alloc_output(n);
  if (!m->row_ptr || !m->col || !m->code || !alloc_row_sums(m)) {
    return DC_SFC_NOMEM;
  }
  w->col = m->col;
  w->col_bytes = n * sizeof(uint16_t);
  w->code = m->code;
  w->code_bytes = n;
  if (n * 3 >= helper_bytes) {
    *task = dc_task_start(helper_run, w);
    m->packed_file = -2; /* set from w->file once joined */
  } else {
    w->h = NULL; /* the caller checks the CRC */
    w->pipe = NULL;
    dc_populate_pages(m->col, w->col_bytes);
    dc_populate_pages(m->code, n);
  }
  return DC_SFC_OK;
}

/* alloc_form for the tile form's direct build (tiles_place): the tile arrays (tiles_begin, the
 * bounds of `entries` non-zeros), and the decoder's scratch rows in *r: row_ptr of every row,
 * col / code for the group in progress plus two chunks (or every entry, if fewer; tiles_room
 * grows it if ever needed).  The helper
 * maps the first pages of tile_e (2 entries per decoded entry: ~10 % density), as alloc_form's
 * does col / code.  The caller frees r's arrays. */
static dc_sfc_status alloc_tiles(dc_sparse_fc* m, uint64_t entries, Helper* w, dc_task** task,
                                 Tiles* t, dc_rows* r) {
  /* helper_bytes 0 (tests, fuzzing): a scratch of 64 entries, so that small tensors exercise
   * tiles_room's moves and growth */
  const uint64_t n = entries ? entries : 1,
                 room = helper_bytes ? 16 * (uint64_t)m->cols + 2 * DC_ROWS_CHUNK : 64;
  *task = NULL;
  if (!tiles_begin(t, m, n)) return DC_SFC_NOMEM;
  m->nnz = entries;
  t->r = r;
  t->cap = n < room ? n : room;
  r->row_ptr = (uint32_t*)malloc(((size_t)m->rows + 1) * sizeof(uint32_t));
  r->col = (uint16_t*)malloc((size_t)t->cap * sizeof(uint16_t));
  r->code = (uint8_t*)malloc((size_t)t->cap);
  if (!r->row_ptr || !r->col || !r->code || !alloc_row_sums(m))
    return DC_SFC_NOMEM; /* tiles_row_sums */
  w->col = m->tile_e;
  w->col_bytes = (size_t)(2 * n < t->entry_cap ? 2 * n : t->entry_cap) * sizeof(uint16_t);
  w->code = NULL;
  w->code_bytes = 0;
  if (n * 3 >= helper_bytes) {
    *task = dc_task_start(helper_run, w);
    m->packed_file = -2; /* set from w->file once joined */
  } else {
    w->h = NULL; /* the decoder checks the CRC (dc_rows_plain_begin) */
    w->pipe = NULL;
  }
  return DC_SFC_OK;
}

/* Joins the helper of alloc_form (if any) and takes its findings. */
static void helper_join(dc_sparse_fc* m, Helper* w, dc_task* task) {
#if DC_SFC_PIPE
  if (w->pipe) st_rel(&w->pipe->closed, 1); /* the helper stops waiting for entries */
#endif
  dc_task_join(task);
  if (m->packed_file == -2) m->packed_file = w->file;
}

/* 1 if codebook index i (< K; of every group's table for §11) can occur in the tensor of h: it
 * has a code in its index code (FORMAT.md §4: a length > 0, or the only symbol of a zero-bit
 * code), in one of §14's C index codes, or it is a sparse layout's background (§6, §11, §14: the
 * elements not stored, and the fillers).  An entry without a code (length 0: no element uses it,
 * e.g. values clustered but pruned away, written by another encoder; dc_keras's writes none) is
 * not a value of the tensor: the header's count of values (codebook_values, so the form said and
 * built on every route) and the direct route's value codes (value_codes) leave it out. */
static int index_coded(const dc_header* h, uint32_t i) {
  if (h->sparse && i == h->background) return 1;
  const uint32_t n = h->contexts ? h->contexts : 1;
  for (uint32_t c = 0; c < n; ++c) {
    const dc_alphabet* a = h->contexts ? &h->ctx_code[c] : &h->index_code;
    if (a->max_len == 0 ? i == a->single : ((a->lengths[i / 2] >> (4 * (i & 1))) & 15u) != 0)
      return 1;
  }
  return 0;
}

/* The bit pattern of float32 codebook entry i (little-endian, FORMAT.md §3). */
static uint32_t codebook_bits(const dc_header* h, uint64_t i) {
  const uint8_t* b = h->codebook + 4 * i;
  return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* Value codes of a sparse tensor's codebook(s) (FORMAT.md §3, §11: groups * K entries,
 * group-major) for dc_decode_rows: float32 -> code of its bit pattern in m->codebook, int8 ->
 * the weight itself; 256 for +-0 (not stored) and for a float32 entry without a code
 * (index_coded: no element decodes to it, so m->codebook holds the values codebook_values
 * counts, and a tile form's codes stay below 32).  0 when the direct route does not apply (the
 * background is not zero in every group, or more than 255 distinct non-zero floats). */
static uint16_t* value_codes(const dc_header* h, dc_sparse_fc* m, uint64_t len) {
  uint16_t* vc = (uint16_t*)malloc((size_t)len * sizeof(uint16_t));
  ValueMap vm;
  if (!vc) return NULL;
  memset(vm.val, 0xff, sizeof vm.val);
  /* int8 table: the background (e.g. the zero point of an asymmetric table) is not stored */
  if (m->table && m->dtype == DC_DTYPE_INT8) m->fill = (int8_t)h->codebook[h->background];
  for (uint64_t i = 0; i < len; ++i) {
    if (m->dtype == DC_DTYPE_INT8) {
      uint8_t q = h->codebook[i];
      vc[i] = (int8_t)q != m->fill ? q : 256;
    } else {
      const uint32_t bits = codebook_bits(h, i);
      const int c = omitted(bits, m->table) || !index_coded(h, (uint32_t)(i % h->k))
                        ? 256
                        : value_code(&vm, m, bits);
      if (c < 0) break;
      vc[i] = (uint16_t)c;
    }
    if (i % h->k == h->background && vc[i] != 256) break; /* background must be zero */
    if (i + 1 == len) return vc;
  }
  free(vc);
  m->num_values = 0;
  return NULL;
}

/* *m emptied for a build of the tensor of h (header checked): its shape and type, nothing else. */
static void form_begin(dc_sparse_fc* m, const dc_header* h, uint32_t table) {
  dc_sparse_fc_free(m);
  m->packed_file = -1;
  m->table = table;
  m->rows = (uint32_t)h->info.dims[0];
  m->cols = (uint32_t)h->info.dims[1];
  m->dtype = h->info.dtype;
}

/* build_direct's one attempt; `tiled`: the tile form straight from the entries (else the rows,
 * then rows_or_tiles). */
static dc_sfc_status build_direct_as(const uint8_t* packed, size_t size, const dc_header* h,
                                     dc_sparse_fc* m, dc_status* decode_status, uint64_t max_nnz,
                                     int tiles, int tiled) {
  const uint64_t len = (h->layout == DC_LAYOUT_GROUPED_SPARSE ? h->groups : 1) * (uint64_t)h->k;
  uint16_t* vc = value_codes(h, m, len);
  if (!vc) return DC_SFC_UNSUPPORTED;
  Tiles tl;
  dc_rows r = {.rows = m->rows,
               .cols = m->cols,
               .value_code = vc,
               .value_code_len = len,
               .capacity = h->entries ? h->entries : 1, /* tiled: tiles_room keeps the room */
               .crc_checked = 0};
  dc_task* task = NULL;
  Helper w = {NULL, 0, NULL, 0, h, packed, size, 0, 0, NULL};
#if DC_SFC_PIPE
  Pipe pipe;
  uint32_t* ring = NULL;
  if (h->layout == DC_LAYOUT_SPARSE && (h->entries ? h->entries : 1) * 3 >= helper_bytes)
    ring = (uint32_t*)malloc(sizeof(uint32_t) * DC_SFC_RING * DC_ROWS_CHUNK);
  if (ring) { /* else one thread decodes and places */
    memset(&pipe, 0, sizeof pipe);
    pipe.ring = ring;
    pipe.caller = pthread_self();
    pipe.tiles = tiled ? &tl : NULL;
    if (pthread_mutex_init(&pipe.lock, NULL) == 0) {
      w.pipe = &pipe;
    } else {
      free(ring);
      ring = NULL;
    }
  }
#endif
  dc_sfc_status s; /* arrays for h->entries: an upper bound, shrunk below */
  if (tiled) {
    s = alloc_tiles(m, h->entries, &w, &task, &tl, &r);
  } else {
    s = alloc_form(m, h->entries, &w, &task);
    r.row_ptr = m->row_ptr, r.col = m->col, r.code = m->code;
  }
  /* decode workspace: two 2^12-entry u16 tables, then 2 * 2^12 u32 (pair table, scratch) */
  uint16_t* tables =
      s == DC_SFC_OK ? (uint16_t*)malloc(sizeof(uint16_t) * (6u << DC_MAX_CODE_LENGTH)) : NULL;
  if (!tables) {
    helper_join(m, &w, task);
#if DC_SFC_PIPE
    if (ring) pthread_mutex_destroy(&pipe.lock);
    free(ring);
#endif
    if (tiled) free(r.row_ptr), free(r.col), free(r.code), free(tl.stage);
    free(vc);
    return s != DC_SFC_OK ? s : DC_SFC_NOMEM;
  }
  r.tables = tables;
  r.pairs = (uint32_t*)(void*)(tables + (2u << DC_MAX_CODE_LENGTH));
  r.crc_checked = w.h != NULL;
  dc_status st;
#if DC_SFC_PIPE
  if (w.pipe && task) { /* the helper runs on its own thread: it places, this thread decodes */
    st = dc_rows_plain_begin(packed, size, h, &r, &pipe.s);
    if (st == DC_OK) {
      st = pipe_decode(&pipe, &w);
    } else {
      helper_checks(&w);
    }
    if (st == DC_OK) st = tiled ? tiles_finish(&tl, &pipe.s, h) : dc_rows_plain_end(&pipe.s);
  } else
#endif
      if (tiled) { /* one thread: decode a chunk, place it (as dc_decode_rows), and so on */
    dc_rows_plain_state ps;
    uint32_t* chunk = r.pairs + ((size_t)1 << DC_MAX_CODE_LENGTH); /* after the pair table */
    size_t n;
    st = dc_rows_plain_begin(packed, size, h, &r, &ps);
    while (st == DC_OK && (n = dc_rows_plain_decode(&ps, chunk, DC_ROWS_CHUNK)) > 0)
      st = tiles_place(&tl, &ps, chunk, n);
    if (st == DC_OK) st = tiles_finish(&tl, &ps, h);
  } else {
    st = dc_decode_rows(packed, size, h, &r);
  }
  helper_join(m, &w, task);
#if DC_SFC_PIPE
  if (ring) pthread_mutex_destroy(&pipe.lock);
  free(ring);
#endif
  if (w.h && !w.crc_ok) st = DC_ERR_CHECKSUM; /* §8: as if checked first */
  free(tables);
  free(vc);
  if (tiled) {
    free(r.row_ptr), free(r.col), free(r.code), free(tl.stage);
    tl.stage = NULL;
    if (tl.fail && st != DC_ERR_CHECKSUM) return DC_SFC_NOMEM;
    r.nnz = tl.nnz; /* the scratch's count is that of the last groups */
  }
  if (st != DC_OK) {
    if (decode_status) *decode_status = st;
    return DC_SFC_DECODE;
  }
  m->nnz = r.nnz;
  if (r.nnz > max_nnz) { /* build() frees the form, keeping the count of tiles that do not fit */
    const uint64_t e = tiled   ? tl.entries
                       : tiles ? rows_tile_entries(m->row_ptr, m->col, m->rows, m->cols)
                               : 0;
    m->tile_entries = tiles_fit(m, e, r.nnz) ? 0 : e;
    return DC_SFC_TOO_DENSE;
  }
  if (tiled) {
    tiles_end(&tl);
    if (m->row_sum) tiles_row_sums(m);
    /* tiles that do not fit: the rows (out of memory: the tiles stay, a complete form) */
    if (!tiles_fit(m, m->tile_entries, m->nnz)) (void)tiles_to_rows(m);
    return DC_SFC_OK;
  }
  if (r.nnz && r.nnz < h->entries) { /* give back the fillers' and zeros' room */
    uint16_t* c = (uint16_t*)realloc(m->col, (size_t)r.nnz * sizeof(uint16_t));
    uint8_t* q = (uint8_t*)realloc(m->code, (size_t)r.nnz);
    if (c) m->col = c;
    if (q) m->code = q;
  }
  if (m->row_sum) {
    for (uint32_t row = 0; row < m->rows; ++row) {
      int32_t sum = 0;
      for (uint32_t j = m->row_ptr[row]; j < m->row_ptr[row + 1]; ++j) sum += (int8_t)m->code[j];
      m->row_sum[row] = sum;
    }
  }
  rows_or_tiles(m, tiles); /* §11's grouped tensors (or no memory for tiles_place): rows first */
  return DC_SFC_OK;
}

/* A form built as values (row_ptr, col, value of nnz non-zeros: build_planes_direct) of at most
 * DC_SFC_MAX_VALUES distinct values turned into rows of codes, as the dense route's compact_float
 * makes them (the values coded in the order they first occur, row by row: the same codebook); of
 * more, the value form as the dense route's compact_values leaves it (no codebook).  DC_SFC_NOMEM
 * when the codes find no memory. */
static dc_sfc_status values_or_codes(dc_sparse_fc* m) {
  ValueMap vm;
  uint32_t last_bits = 0;
  int last_code = -1;
  const uint32_t* bits = (const uint32_t*)(const void*)m->value;
  memset(vm.val, 0xff, sizeof vm.val); /* -1 = empty */
  m->num_values = 0;
  for (uint64_t k = 0; k < m->nnz; ++k) {
    if (bits[k] != last_bits || last_code < 0) {
      last_code = value_code(&vm, m, bits[k]);
      last_bits = bits[k];
      if (last_code < 0) { /* the 256th value: the value form */
        m->num_values = 0;
        memset(m->codebook, 0, sizeof m->codebook);
        return DC_SFC_OK;
      }
    }
  }
  m->code = (uint8_t*)dc_alloc_output((size_t)(m->nnz ? m->nnz : 1));
  if (!m->code) return DC_SFC_NOMEM;
  for (uint64_t k = 0; k < m->nnz; ++k) m->code[k] = (uint8_t)value_code(&vm, m, bits[k]);
  free(m->value);
  m->value = NULL;
  return DC_SFC_OK;
}

/* dc_sparse_fc_set_direct's setting: 1 the direct routes (build_direct), 0 the dense one only. */
static int direct_allowed = 1;

DC_API int dc_sparse_fc_set_direct(int on) {
  const int old = direct_allowed;
  direct_allowed = on != 0;
  return old;
}

/* Direct route of a float32 FC weight in FORMAT.md §18 (sparse float planes, version 5: pruned but
 * unclustered) whose background is +0.0 or -0.0 (the encoder's for pruned weights), at most
 * max_nnz stored entries (R): dc_decode_value_rows walks the entries straight into rows of values
 * (row_ptr, col, value; R + 1 slots, R being at least the non-zero count), no dense tensor.  A
 * lookup table (m->table) the same way with a +0.0 background, or a -0.0 one with G = 1 (every
 * element an entry, tfmot's; with gaps, -0.0 elements it keeps lie between the entries), at most
 * max_nnz entries (E: each may keep one, -0.0 entries not stored included; E + 1 slots) and -0.0
 * kept (dc_rows.table); then
 * the values stay (more than DC_SFC_MAX_VALUES distinct ones: the value form) or become codes
 * (values_or_codes), the form the dense route makes of the same weight, byte for byte.  A form of
 * helper_bytes or more (6 bytes per slot) starts the helper thread (helper_run: it maps the
 * arrays' pages, checks the CRC and the file mapping while this thread decodes; a CRC mismatch
 * gives DC_ERR_CHECKSUM whatever the decode found, as checking it first); smaller ones are
 * decoded after the CRC in this thread.  DC_SFC_UNSUPPORTED (nothing built) for a background
 * other than ±0 (a table's: -0.0 with G > 1 too; its elements are kept) and R > max_nnz (a table's
 * E > max_nnz, its value form's limit: dc_sparse_table_build_max): the dense route then
 * counts the non-zeros (stored ±0s are none) and hands its decoded tensor over to a layer too
 * dense to run compressed (dc_sparse_fc_build_max), which is then decoded once.  Measured:
 * benchmarks/bench_values_build.py. */
static dc_sfc_status build_planes_direct(const uint8_t* packed, size_t size, const dc_header* h,
                                         dc_sparse_fc* m, dc_status* decode_status,
                                         uint64_t max_nnz) {
  const uint64_t most = m->table ? h->entries : h->stored; /* kept elements, at most */
  if (!dc_value_rows_take(h, (int)m->table) || most > max_nnz || most >= SIZE_MAX / sizeof(float))
    return DC_SFC_UNSUPPORTED;
  const size_t slots = (size_t)most + 1; /* dc_decode_value_rows writes one past the last */
  dc_rows r;
  memset(&r, 0, sizeof r);
  m->row_ptr = (uint32_t*)malloc(((size_t)m->rows + 1) * sizeof(uint32_t));
  m->col = (uint16_t*)dc_alloc_output(slots * sizeof(uint16_t));
  m->value = (float*)dc_alloc_output(slots * sizeof(float));
  /* decode workspace: the symbol and gap tables, 2^12 u16 entries each */
  uint16_t* tables = (uint16_t*)malloc(sizeof(uint16_t) * (2u << DC_MAX_CODE_LENGTH));
  if (!m->row_ptr || !m->col || !m->value || !tables) {
    free(tables);
    return DC_SFC_NOMEM; /* build() frees the form */
  }
  dc_task* task = NULL;
  Helper w = {
      m->col, slots * sizeof(uint16_t), m->value, slots * sizeof(float), h, packed, size, 0, 0,
      NULL};
  if (slots * (sizeof(uint16_t) + sizeof(float)) >= helper_bytes) {
    task = dc_task_start(helper_run, &w); /* NULL: it ran here, checks done */
    m->packed_file = -2;                  /* set from w.file once joined */
  } else {
    w.h = NULL; /* the decoder checks the CRC */
    dc_populate_pages(w.col, w.col_bytes);
    dc_populate_pages(w.code, w.code_bytes);
  }
  r.rows = m->rows;
  r.cols = m->cols;
  r.row_ptr = m->row_ptr;
  r.col = m->col;
  r.value = (uint32_t*)(void*)m->value;
  r.capacity = slots;
  r.tables = tables;
  r.crc_checked = w.h != NULL;
  r.table = (int)m->table;
  dc_status st = dc_decode_value_rows(packed, size, h, &r);
  helper_join(m, &w, task);
  free(tables);
  if (w.h && !w.crc_ok) st = DC_ERR_CHECKSUM; /* §8: as if checked first */
  if (st != DC_OK) {
    if (decode_status) *decode_status = st;
    return DC_SFC_DECODE;
  }
  m->nnz = r.nnz;
  if (r.nnz + 1 < slots) { /* stored ±0s (not the encoder's), a table's +0 entries: room back */
    uint16_t* c = (uint16_t*)realloc(m->col, (size_t)(r.nnz ? r.nnz : 1) * sizeof(uint16_t));
    float* v = (float*)realloc(m->value, (size_t)(r.nnz ? r.nnz : 1) * sizeof(float));
    if (c) m->col = c;
    if (v) m->value = v;
  }
  return values_or_codes(m);
}

/* Direct route (FORMAT.md §6, §11 layout 3, version 2): the entries go straight into the rows
 * through dc_decode_rows, the dense tensor is never built; on AVX-512, an ungrouped float32
 * tensor the header gives the tile form (`tiles`: header_tiles) goes through the same staged
 * decoder into the tile form instead (alloc_tiles, tiles_place: the rows are never built whole;
 * dc_rows_plain_begin checks what dc_decode_rows checks), kept if it fits (tiles_fit), else
 * turned into rows.  Out of memory on that way (its arrays are sized for any fill, its scratch
 * grows): decoded again into the rows, then tiles made of them if memory allows (rows_or_tiles),
 * as the dense route does -- else the rows with tile_entries 0 (dc_sparse_fc.h: out of memory for
 * the tiles) instead of a failed build.  Returns DC_SFC_UNSUPPORTED (with *m zeroed) when the
 * route does not apply, so the caller takes the dense route. */
static dc_sfc_status build_direct(const uint8_t* packed, size_t size, const dc_header* h,
                                  dc_sparse_fc* m, dc_status* decode_status, uint64_t max_nnz,
                                  int tiles) {
  if (!direct_allowed) return DC_SFC_UNSUPPORTED;
  if (h->layout == DC_LAYOUT_SPARSE_PLANES)
    return build_planes_direct(packed, size, h, m, decode_status, max_nnz);
  if (m->table) max_nnz = UINT64_MAX; /* a table's limit holds for its value form only */
  if (h->info.version < 2 ||
      (h->layout != DC_LAYOUT_SPARSE && h->layout != DC_LAYOUT_GROUPED_SPARSE) ||
      (h->layout == DC_LAYOUT_GROUPED_SPARSE ? h->groups : 1) * (uint64_t)h->k > (1u << 22))
    return DC_SFC_UNSUPPORTED;
  const int tiled = h->layout == DC_LAYOUT_SPARSE && tiles;
  const dc_sfc_status s = build_direct_as(packed, size, h, m, decode_status, max_nnz, tiles, tiled);
  if (s != DC_SFC_NOMEM || !tiled) return s;
  form_begin(m, h, m->table);
  return build_direct_as(packed, size, h, m, decode_status, max_nnz, tiles, 0);
}

static int8_t most_common_int8(const void* w, uint64_t n) {
  uint64_t count[256] = {0};
  const uint8_t* q = (const uint8_t*)w;
  for (uint64_t i = 0; i < n; ++i) count[q[i]]++;
  unsigned best = 0;
  for (unsigned v = 1; v < 256; ++v) {
    if (count[v] > count[best]) best = v;
  }
  return (int8_t)best;
}

/* codebook_values of a tensor without a float32 codebook (int8, §12's and §18's float planes). */
#define DC_SFC_NO_CODEBOOK UINT32_MAX

/* Distinct kept bit patterns (omitted: not counted) of the coded entries (index_coded) of the
 * float32 codebook(s) of h (every layout but §12's and §18's float planes stores its values there; the
 * tensor holds only such values), counted up to DC_SFC_MAX_VALUES + 1 (more: that);
 * DC_SFC_NO_CODEBOOK when h holds no float32 codebook. */
static uint32_t codebook_values(const dc_header* h, uint32_t table) {
  if (h->info.dtype != DC_DTYPE_FLOAT32 || h->layout == DC_LAYOUT_FLOAT_PLANES || !h->codebook ||
      h->cb_esize != 4)
    return DC_SFC_NO_CODEBOOK;
  const uint64_t len = (uint64_t)(h->groups ? h->groups : 1) * h->k;
  ValueMap vm;
  dc_sparse_fc probe; /* value_code's count and codebook */
  memset(vm.val, 0xff, sizeof vm.val);
  probe.num_values = 0;
  for (uint64_t i = 0; i < len; ++i) {
    const uint32_t bits = codebook_bits(h, i);
    if (!omitted(bits, table) && index_coded(h, (uint32_t)(i % h->k)) &&
        value_code(&vm, &probe, bits) < 0)
      return DC_SFC_MAX_VALUES + 1; /* value_code: -1 past DC_SFC_MAX_VALUES */
  }
  return probe.num_values;
}

/* What the header alone tells about a compact form of h (dc_sparse_fc_build, dc_sparse_fc_check
 * and dc_sparse_fc_form all ask this): DC_SFC_UNSUPPORTED with `why` for a shape or element type
 * no form holds (check_shape) or a float32 codebook of more than DC_SFC_MAX_VALUES distinct kept
 * coded values (said before anything is decoded: a transient dense copy of a large layer costs as much
 * as its decode), else DC_SFC_OK.  values: NULL, or where to put codebook_values (the codebook is
 * then walked whatever its size; without it only a codebook that can exceed the limit is). */
static dc_sfc_status check_header(const dc_header* h, uint32_t table, uint32_t* values, char* why,
                                  size_t why_size) {
  const dc_sfc_status s = check_shape(&h->info, why, why_size);
  if (s != DC_SFC_OK) return s;
  const uint64_t len = (uint64_t)(h->groups ? h->groups : 1) * h->k;
  const uint32_t n = values || len > DC_SFC_MAX_VALUES ? codebook_values(h, table) : 0;
  if (values) *values = n;
  if (n == DC_SFC_NO_CODEBOOK || n <= DC_SFC_MAX_VALUES) return DC_SFC_OK;
  say(why, why_size, "more than %u distinct non-zero values (in its codebook)" DC_SFC_VALUES_FIX,
      DC_SFC_MAX_VALUES);
  return DC_SFC_UNSUPPORTED;
}

DC_API dc_sfc_status dc_sparse_fc_check(const uint8_t* packed, size_t size, int table, char* why,
                                        size_t why_size) {
  dc_header h;
  if (!packed) return DC_SFC_ARGUMENT;
  if (dc_parse(packed, size, &h) != DC_OK) return DC_SFC_DECODE;
  return check_header(&h, table != 0, NULL, why, why_size);
}

/* Whether the build gives the layer of header h the tile form (tile_form), from the header alone:
 * `values` is codebook_values of its codebook(s) (the coded entries: index_coded),
 * DC_SFC_NO_CODEBOOK for int8 (the tiles whatever its values) and §12's / §18's float planes (more than
 * 32: the rows).  The build follows
 * it on every route, dc_sparse_fc_form says it: the two agree by construction and the form does
 * not depend on the route.  The direct route's form codes the values of the coded entries
 * (value_codes), the dense route's those the tensor uses (a subset): both hold tiles where the
 * header says so.  (Coded entries the tensor does not use, or §12 planes of <= 32 values, could
 * hold tiles too: only the decode shows it, so they get the rows on every route.) */
static int header_tiles(const dc_header* h, uint32_t table, uint32_t values) {
  return tile_form(h->info.dtype, table, values, h->info.dims[0], h->info.dims[1]);
}

DC_API dc_sfc_form dc_sparse_fc_form(const uint8_t* packed, size_t size) {
  dc_header h;
  uint32_t values;
  if (!packed || dc_parse(packed, size, &h) != DC_OK ||
      check_header(&h, 0, &values, NULL, 0) != DC_SFC_OK)
    return DC_SFC_FORM_NONE;
  return header_tiles(&h, 0, values) ? DC_SFC_FORM_TILES : DC_SFC_FORM_ROWS;
}

/* A form refused as too dense (dc_sparse_fc_build_max): zeroed but for its shape, type, count
 * and tile_entries (the count of tiles that would not have fit, else 0). */
static dc_sfc_status too_dense(dc_sparse_fc* m) {
  const uint32_t rows = m->rows, cols = m->cols, dtype = m->dtype;
  const uint64_t nnz = m->nnz, entries = m->tile_entries;
  dc_sparse_fc_free(m);
  m->rows = rows, m->cols = cols, m->dtype = dtype, m->nnz = nnz, m->tile_entries = entries;
  return DC_SFC_TOO_DENSE;
}

static dc_sfc_status build(const uint8_t* packed, size_t size, dc_sparse_fc* m,
                           dc_status* decode_status, char* why, size_t why_size, uint32_t table,
                           uint64_t max_nnz, void** dense_out) {
  dc_header h;
  if (dense_out) *dense_out = NULL;
  if (decode_status) *decode_status = DC_OK;
  if (!m) return DC_SFC_ARGUMENT;
  memset(m, 0, sizeof *m);
  m->packed_file = -1;
  m->table = table;
  if (!packed) return DC_SFC_ARGUMENT;
#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && \
    __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  /* The forms hold codebook values and compute in the host's byte order, taken from the
   * little-endian decoded tensor (FORMAT.md §1) as it is: right on little-endian hosts only (on
   * s390x, under qemu, they gave wrong rows and outputs). The caller decodes instead. */
  say(why, why_size, "the sparse kernels run on little-endian hosts only; this host is big-endian");
  return DC_SFC_UNSUPPORTED;
#endif
  dc_status st = dc_parse(packed, size, &h);
  if (st != DC_OK) {
    if (decode_status) *decode_status = st;
    return DC_SFC_DECODE;
  }
  uint32_t values;
  dc_sfc_status s = check_header(&h, table, &values, why, why_size);
  if (s != DC_SFC_OK) return s;
  const int tiles = header_tiles(&h, table, values);
  form_begin(m, &h, table);
  s = build_direct(packed, size, &h, m, decode_status, max_nnz, tiles);
  if (s == DC_SFC_TOO_DENSE) return too_dense(m);
  if (s != DC_SFC_UNSUPPORTED) {
    if (s != DC_SFC_OK) dc_sparse_fc_free(m);
    return s;
  }
  form_begin(m, &h, table);
  /* Dense route (§5, §12, §14, version 1, non-zero background (a table's: -0.0 with G > 1), §18
   * layers of more stored entries than max_nnz (tables: entries); every tensor after
   * dc_sparse_fc_set_direct(0)): a transient
   * dense copy, decoded, scanned twice, freed (never kept). */
  m->from_dense = 1;
  void* dense = dc_alloc_output((size_t)h.info.output_bytes); /* aligned: it may be handed over */
  if (!dense) return DC_SFC_NOMEM;
  st = dc_decode(packed, size, dense, (size_t)h.info.output_bytes);
  if (st != DC_OK) {
    free(dense);
    if (decode_status) *decode_status = st;
    return DC_SFC_DECODE;
  }
  if (table && h.info.dtype == DC_DTYPE_INT8)
    m->fill = most_common_int8(dense, h.info.num_elements);
  dc_task* task = NULL;
  Helper w = {NULL, 0, NULL, 0, NULL, packed, size, 0, 0, NULL}; /* dc_decode checked the CRC */
  const uint64_t nnz = count_nonzero(dense, h.info.dtype, h.info.num_elements, table, m->fill);
  /* a lookup table's limit holds for its value form only (float planes of more than
   * DC_SFC_MAX_VALUES kept values; dc_sparse_table_build_max): its rows of codes take any count */
  if (nnz > max_nnz &&
      (!table || (h.info.dtype == DC_DTYPE_FLOAT32 && values == DC_SFC_NO_CODEBOOK &&
                  count_values((const float*)dense, h.info.num_elements, 1) > DC_SFC_MAX_VALUES))) {
    m->nnz = nnz;
    if (tiles) { /* the count of its tiles, if they would not have fit */
      const uint64_t e = dense_tile_entries(dense, h.info.dtype, m->rows, m->cols);
      m->tile_entries = tiles_fit(m, e, nnz) ? 0 : e;
    }
    if (dense_out) {
      *dense_out = dense;
    } else {
      free(dense);
    }
    return too_dense(m);
  }
  s = alloc_form(m, nnz, &w, &task);
  int value_form = 0; /* the values instead of the codes (dc_sparse_fc.h) */
  if (s == DC_SFC_OK) {
    if (h.info.dtype == DC_DTYPE_FLOAT32) {
      s = compact_float((const float*)dense, m, why, why_size);
      /* more than DC_SFC_MAX_VALUES values: only float planes (§12, §18), whose values have no
       * codebook to say so from the header (check_header refuses larger codebooks); FC weights
       * and lookup tables alike (a table's -0.0s kept) */
      value_form = s == DC_SFC_UNSUPPORTED && values == DC_SFC_NO_CODEBOOK;
    } else {
      compact_int8((const int8_t*)dense, m);
    }
  }
  helper_join(m, &w, task);
  if (value_form) {
    s = compact_values((const float*)dense, m);
    if (why && why_size) why[0] = '\0'; /* compact_float's reason no longer applies */
  }
  free(dense);
  if (s != DC_SFC_OK) dc_sparse_fc_free(m);
  if (s == DC_SFC_OK) rows_or_tiles(m, tiles);
  return s;
}

DC_API dc_sfc_status dc_sparse_fc_build(const uint8_t* packed, size_t size, dc_sparse_fc* m,
                                        dc_status* decode_status, char* why, size_t why_size) {
  return build(packed, size, m, decode_status, why, why_size, 0, UINT64_MAX, NULL);
}

DC_API dc_sfc_status dc_sparse_fc_build_max(const uint8_t* packed, size_t size, uint64_t max_nnz,
                                            dc_sparse_fc* m, void** dense, dc_status* decode_status,
                                            char* why, size_t why_size) {
  return build(packed, size, m, decode_status, why, why_size, 0, max_nnz, dense);
}

DC_API dc_sfc_status dc_sparse_table_build(const uint8_t* packed, size_t size, dc_sparse_fc* m,
                                           dc_status* decode_status, char* why, size_t why_size) {
  return build(packed, size, m, decode_status, why, why_size, 1, UINT64_MAX, NULL);
}

DC_API dc_sfc_status dc_sparse_table_build_max(const uint8_t* packed, size_t size, uint64_t max_nnz,
                                               dc_sparse_fc* m, void** dense,
                                               dc_status* decode_status, char* why,
                                               size_t why_size) {
  return build(packed, size, m, decode_status, why, why_size, 1, max_nnz, dense);
}

/* --------------------------------------------------------------- gather */

static int64_t index_at(const void* idx, int idx64, size_t i) {
  if (idx64) return ((const int64_t*)idx)[i];
  return ((const int32_t*)idx)[i];
}

DC_API size_t dc_sparse_gather(const dc_sparse_fc* m, const void* idx, int idx64, size_t n,
                               void* out) {
  if (!m || !idx || !out || !m->row_ptr) return 0; /* nothing done: < n (or n == 0) */
  for (size_t i = 0; i < n; ++i) {                 /* all checked before anything is written */
    int64_t r = index_at(idx, idx64, i);
    if (r < 0 || r >= (int64_t)m->rows) return i;
  }
  const size_t cols = m->cols;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t r = (uint32_t)index_at(idx, idx64, i);
    const uint32_t end = m->row_ptr[r + 1];
    if (m->dtype == DC_DTYPE_FLOAT32) {
      float* y = (float*)out + i * cols;
      memset(y, 0, cols * sizeof(float));
      if (m->value) { /* the value form: the bits as stored (NaN payloads, -0.0) */
        for (uint32_t j = m->row_ptr[r]; j < end; ++j)
          memcpy(&y[m->col[j]], &m->value[j], sizeof(float));
        continue;
      }
      for (uint32_t j = m->row_ptr[r]; j < end; ++j) y[m->col[j]] = m->codebook[m->code[j]];
    } else {
      int8_t* y = (int8_t*)out + i * cols;
      memset(y, (uint8_t)m->fill, cols);
      for (uint32_t j = m->row_ptr[r]; j < end; ++j) y[m->col[j]] = (int8_t)m->code[j];
    }
  }
  return n;
}

/* ---------------------------------------------------------------- float */

static float clampf(float v, float lo, float hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

/* The weight of non-zero j: its codebook entry (rows of codes), or its own float (the value form,
 * `values`: m->value).  The kernels below are one body each for both forms, specialised by the
 * constant `values` (the same loads and order otherwise: rows of codes and of values of the same
 * weights give the same bits). */
#if defined(__GNUC__)
#define DC_SFC_BODY static inline __attribute__((always_inline))
#else
#define DC_SFC_BODY static inline
#endif
#define DC_SFC_W(j) (values ? v[j] : cb[code[j]])

DC_SFC_BODY void float_batch1_body(const dc_sparse_fc* m, const float* x, const float* bias,
                                   float lo, float hi, float* y, const int values) {
  const uint16_t* col = m->col;
  const uint8_t* code = m->code;
  const float* cb = m->codebook;
  const float* v = m->value;
  for (uint32_t r = 0; r < m->rows; ++r) {
    uint32_t j = m->row_ptr[r], end = m->row_ptr[r + 1];
    float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
    for (; j + 4 <= end; j += 4) {
      a0 += DC_SFC_W(j) * x[col[j]];
      a1 += DC_SFC_W(j + 1) * x[col[j + 1]];
      a2 += DC_SFC_W(j + 2) * x[col[j + 2]];
      a3 += DC_SFC_W(j + 3) * x[col[j + 3]];
    }
    for (; j < end; ++j) a0 += DC_SFC_W(j) * x[col[j]];
    float acc = (a0 + a1) + (a2 + a3);
    if (bias) acc += bias[r];
    y[r] = clampf(acc, lo, hi);
  }
}

static void float_batch1(const dc_sparse_fc* m, const float* x, const float* bias, float lo,
                         float hi, float* y) {
  float_batch1_body(m, x, bias, lo, hi, y, 0);
}

/* float_batch1 on the value form.  Every CPU runs the value form on the scalar kernels: an
 * AVX-512 batch-1 kernel (float_batch1_avx512's gathers of x, the weights loaded 16 at a time)
 * was 1.3-1.45x slower than this loop at 5-40 % density on 784x300 and 1024x1024 layers on the
 * AMD Zen 4 test host (benchmarks/bench_values.py, 2026-12-07: gathers are its limit), so it is
 * not shipped. */
static void float_batch1_values(const dc_sparse_fc* m, const float* x, const float* bias, float lo,
                                float hi, float* y) {
  float_batch1_body(m, x, bias, lo, hi, y, 1);
}

/* x86-64 with AVX-512 (F, BW, VL; chosen at run time): 16 non-zeros per step, their columns
 * and codes widened from one 32 B and one 16 B load, x gathered (vgatherdps), the weights looked
 * up in registers (vpermt2ps over the first 32 codebook entries, or gathered from the codebook
 * when there are more), one FMA per 16 non-zeros into 16 lanes; a row's last < 16 non-zeros
 * are masked (masked loads: nothing read past the row's arrays).  Summation order: lane l of
 * a row holds the non-zeros at offsets = l (mod 16) from the row start (two accumulators
 * alternate in blocks of 16), lanes added pairwise at the end, then the bias.  4096x4096 at
 * 10 % (1.68 M non-zeros, one core, 2026-11-30): 0.23 ns per non-zero against 0.58 ns for
 * the scalar loop below; gathering the weights too: 0.41 ns; AVX2 (8 lanes, 2 gathers): 0.44 ns
 * (not shipped: slower than scalar where gathers are microcoded, e.g. older AMD cores). */
#if DC_SFC_X86
#define DC_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
DC_AVX512 static inline __m512 weights16(__m512i q, __m512 c0, __m512 c1, const float* cb,
                                         int perm) {
  return perm ? _mm512_permutex2var_ps(c0, q, c1) : _mm512_i32gather_ps(q, cb, 4);
}

DC_AVX512 static void float_batch1_avx512(const dc_sparse_fc* m, const float* x, const float* bias,
                                          float lo, float hi, float* y) {
  const uint16_t* col = m->col;
  const uint8_t* code = m->code;
  const float* cb = m->codebook;
  const int perm = m->num_values <= 32;
  const __m512 c0 = _mm512_loadu_ps(cb), c1 = _mm512_loadu_ps(cb + 16);
  for (uint32_t r = 0; r < m->rows; ++r) {
    uint32_t j = m->row_ptr[r];
    const uint32_t end = m->row_ptr[r + 1];
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    for (; j + 32 <= end; j += 32) {
      __m512i c = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(col + j)));
      __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(code + j)));
      __m512i c2 = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(col + j + 16)));
      __m512i q2 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(code + j + 16)));
      a0 = _mm512_fmadd_ps(weights16(q, c0, c1, cb, perm), _mm512_i32gather_ps(c, x, 4), a0);
      a1 = _mm512_fmadd_ps(weights16(q2, c0, c1, cb, perm), _mm512_i32gather_ps(c2, x, 4), a1);
    }
    for (; j < end; j += 16) {
      const uint32_t left = end - j;
      const __mmask16 k = (__mmask16)(left >= 16 ? 0xffffu : (1u << left) - 1u);
      __m512i c = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, col + j));
      __m512i q = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(k, code + j));
      __m512 xv = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k, c, x, 4);
      a0 = _mm512_mask3_fmadd_ps(weights16(q, c0, c1, cb, perm), xv, a0, k);
    }
    float acc = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    if (bias) acc += bias[r];
    y[r] = clampf(acc, lo, hi);
  }
}

/* The output parameters of the float32 tile kernels: y = clamp(sums + bias, lo, hi). */
typedef struct {
  const float* bias; /* or NULL */
  float lo, hi;
} f_out;

/* The float32 tile kernels (dc_sfc_tiles.h), once per instruction set, on the types and
 * operations below.
 *
 * AVX-512: a step's 16 lanes in one register; per tile x's 32 columns of the block sit in two
 * registers and each step takes x (vpermt2ps by the entry's low 5 bits) and the weight (vpermt2ps
 * by code = entry >> 5) with no gather, empty lanes masked.  1024^2 at 10 % on an AMD Zen 4
 * core: 0.14 ns per non-zero against 0.44 ns for float_batch1_avx512
 * (docs/android_design_notes.md "AMD Zen 4: the gather is the limit, the tile form"). */
typedef struct {
  __m512 c0, c1;
} f_cb_avx512;
typedef struct {
  __m512 l, h;
} f_x_avx512;
typedef __m512i f_e_avx512;
typedef __m512 f_w_avx512, f_acc_avx512;

DC_AVX512 static inline f_cb_avx512 f_codebook_avx512(const dc_sparse_fc* m) {
  const f_cb_avx512 cb = {_mm512_loadu_ps(m->codebook), _mm512_loadu_ps(m->codebook + 16)};
  return cb;
}

/* x's 32 columns of a block; a partial last block of `part` columns is read masked (zeros past
 * it), so that no x is read past the row. */
DC_AVX512 static inline f_x_avx512 f_block_x_avx512(const float* xb, uint32_t part) {
  f_x_avx512 r;
  if (part) {
    const __mmask16 ml = (__mmask16)(part >= 16 ? 0xffffu : (1u << part) - 1u);
    const __mmask16 mh = (__mmask16)(part > 16 ? (1u << (part - 16)) - 1u : 0u);
    r.l = _mm512_maskz_loadu_ps(ml, xb);
    r.h = _mm512_maskz_loadu_ps(mh, xb + 16);
  } else {
    r.l = _mm512_loadu_ps(xb);
    r.h = _mm512_loadu_ps(xb + 16);
  }
  return r;
}

DC_AVX512 static inline f_e_avx512 f_entries_avx512(const uint16_t* e) {
  return _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)e));
}

DC_AVX512 static inline f_w_avx512 f_weights_avx512(f_cb_avx512 cb, f_e_avx512 v) {
  return _mm512_permutex2var_ps(cb.c0, _mm512_srli_epi32(v, 5), cb.c1);
}

DC_AVX512 static inline f_acc_avx512 f_zero_avx512(void) {
  return _mm512_setzero_ps();
}

DC_AVX512 static inline f_acc_avx512 f_add_avx512(f_acc_avx512 a, f_acc_avx512 b) {
  return _mm512_add_ps(a, b);
}

DC_AVX512 static inline f_acc_avx512 f_fma_avx512(f_acc_avx512 a, f_w_avx512 w, f_e_avx512 v,
                                                  f_x_avx512 x) {
  const __mmask16 k = _mm512_testn_epi32_mask(v, _mm512_set1_epi32((int)DC_SFC_TILE_EMPTY));
  return _mm512_mask3_fmadd_ps(w, _mm512_permutex2var_ps(x.l, v, x.h), a, k);
}

DC_AVX512 static inline void f_store16_avx512(const dc_sparse_fc* m, uint32_t g, f_acc_avx512 acc,
                                              const f_out* o, float* y) {
  const uint32_t left = m->rows - 16 * g;
  const __mmask16 k = (__mmask16)(left >= 16 ? 0xffffu : (1u << left) - 1u);
  const float lo = o->lo, hi = o->hi;
  if (o->bias) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(k, o->bias + 16 * g));
  /* max(lo, acc) then min(hi, .): NaN stays NaN, as clampf (VMAXPS/VMINPS return the second
   * operand when one is NaN) */
  _mm512_mask_storeu_ps(y + 16 * g, k,
                        _mm512_min_ps(_mm512_set1_ps(hi), _mm512_max_ps(_mm512_set1_ps(lo), acc)));
}

#define DC_TILE_TARGET DC_AVX512
#define DC_TILE_NAME(base) float_##base##_avx512
#define DC_TILE_X float
#define DC_TILE_Y float
#define DC_TILE_OUT f_out
#define DC_T(op) f_##op##_avx512
#define DC_TILE_ACC(acc, w, v, x) f_fma_avx512(acc, w, v, x)
#include "dc_sfc_tiles.h"

/* AVX2 + FMA (CPUs without AVX-512: Intel client cores since Alder Lake, AMD before Zen 4): the
 * 16 lanes of a step as two halves of 8 (lanes 0..7, 8..15), the x block in four registers of 8
 * columns, a lookup by 5 bits being four vpermps (low 3 bits) and a blend tree on bits 3 and 4
 * (moved to the sign bit); the weights likewise from the codebook (fewer registers for <= 8 and
 * <= 16 values).  An empty lane's weight and x are zeroed instead of masking the FMA: acc + (+0)
 * * (+0) is acc, as no accumulator is ever -0 (it starts at +0, and a sum of round-to-nearest is
 * -0 only when both addends are), so the bits are those of the AVX-512 kernels. */
#define DC_AVX2 __attribute__((target("avx2,fma")))
typedef struct {
  __m256 c[4];
  uint32_t n;
} f_cb_avx2;
typedef struct {
  __m256 q[4];
} f_x_avx2;
typedef struct {
  __m256i l, h;
} f_e_avx2;
typedef struct {
  __m256 l, h;
} f_w_avx2;
typedef struct {
  __m256 p[2]; /* lanes 0..7, 8..15 */
} f_acc_avx2;

/* t[i] for i < 32 from four registers of 8: idx's low 3 bits, bit 3 of the index in b3's sign
 * bit, bit 4 in b4's. */
DC_AVX2 static inline __m256 lookup32_avx2(const __m256 t[4], __m256i idx, __m256i b3, __m256i b4) {
  const __m256 lo = _mm256_blendv_ps(_mm256_permutevar8x32_ps(t[0], idx),
                                     _mm256_permutevar8x32_ps(t[1], idx), _mm256_castsi256_ps(b3));
  const __m256 hi = _mm256_blendv_ps(_mm256_permutevar8x32_ps(t[2], idx),
                                     _mm256_permutevar8x32_ps(t[3], idx), _mm256_castsi256_ps(b3));
  return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(b4));
}

/* All ones in the lanes of 8 entries that are DC_SFC_TILE_EMPTY (the only ones with bit 15). */
DC_AVX2 static inline __m256i empty8_avx2(__m256i v) {
  return _mm256_cmpgt_epi32(v, _mm256_set1_epi32(0x7fff));
}

DC_AVX2 static inline f_cb_avx2 f_codebook_avx2(const dc_sparse_fc* m) {
  f_cb_avx2 cb;
  for (int i = 0; i < 4; ++i) cb.c[i] = _mm256_loadu_ps(m->codebook + 8 * i);
  cb.n = m->num_values;
  return cb;
}

DC_AVX2 static inline f_x_avx2 f_block_x_avx2(const float* xb, uint32_t part) {
  float pad[32];
  if (part) { /* zeros past the last column: nothing read past the row */
    memset(pad, 0, sizeof pad);
    memcpy(pad, xb, part * sizeof(float));
    xb = pad;
  }
  f_x_avx2 r;
  for (int i = 0; i < 4; ++i) r.q[i] = _mm256_loadu_ps(xb + 8 * i);
  return r;
}

DC_AVX2 static inline f_e_avx2 f_entries_avx2(const uint16_t* e) {
  const f_e_avx2 v = {_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)e)),
                      _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)(e + 8)))};
  return v;
}

/* The weights of 8 entries (code = entry >> 5: bits 3 and 4 of it are the entry's bits 8, 9),
 * 0 in empty lanes. */
DC_AVX2 static inline __m256 weights8_avx2(const f_cb_avx2* cb, __m256i v) {
  const __m256i q = _mm256_srli_epi32(v, 5);
  __m256 w;
  if (cb->n <= 8) {
    w = _mm256_permutevar8x32_ps(cb->c[0], q);
  } else if (cb->n <= 16) {
    w = _mm256_blendv_ps(_mm256_permutevar8x32_ps(cb->c[0], q),
                         _mm256_permutevar8x32_ps(cb->c[1], q),
                         _mm256_castsi256_ps(_mm256_slli_epi32(v, 23)));
  } else {
    w = lookup32_avx2(cb->c, q, _mm256_slli_epi32(v, 23), _mm256_slli_epi32(v, 22));
  }
  return _mm256_andnot_ps(_mm256_castsi256_ps(empty8_avx2(v)), w);
}

DC_AVX2 static inline f_w_avx2 f_weights_avx2(f_cb_avx2 cb, f_e_avx2 v) {
  const f_w_avx2 w = {weights8_avx2(&cb, v.l), weights8_avx2(&cb, v.h)};
  return w;
}

/* zero() and add(a, b) of a pair of registers {p[0], p[1]} (the AVX2 sums: 16 lanes). */
#define DC_AVX2_PAIR_OPS(T, zero_fn, add_fn, setzero, vadd)     \
  DC_AVX2 static inline T zero_fn(void) {                       \
    const T r = {{setzero(), setzero()}};                       \
    return r;                                                   \
  }                                                             \
  DC_AVX2 static inline T add_fn(T a, T b) {                    \
    const T r = {{vadd(a.p[0], b.p[0]), vadd(a.p[1], b.p[1])}}; \
    return r;                                                   \
  }
DC_AVX2_PAIR_OPS(f_acc_avx2, f_zero_avx2, f_add_avx2, _mm256_setzero_ps, _mm256_add_ps)

/* a + w * x[column of v] in 8 lanes, x 0 in empty lanes (w is too: f_weights_avx2). */
DC_AVX2 static inline __m256 fma8_avx2(__m256 a, __m256 w, __m256i v, const f_x_avx2* x) {
  const __m256 xv = lookup32_avx2(x->q, v, _mm256_slli_epi32(v, 28), _mm256_slli_epi32(v, 27));
  return _mm256_fmadd_ps(w, _mm256_andnot_ps(_mm256_castsi256_ps(empty8_avx2(v)), xv), a);
}

DC_AVX2 static inline f_acc_avx2 f_fma_avx2(f_acc_avx2 a, f_w_avx2 w, f_e_avx2 v, f_x_avx2 x) {
  const f_acc_avx2 r = {{fma8_avx2(a.p[0], w.l, v.l, &x), fma8_avx2(a.p[1], w.h, v.h, &x)}};
  return r;
}

DC_AVX2 static inline void f_store16_avx2(const dc_sparse_fc* m, uint32_t g, f_acc_avx2 acc,
                                          const f_out* o, float* y) {
  const uint32_t left = m->rows - 16 * g, n = left < 16 ? left : 16;
  const float lo = o->lo, hi = o->hi;
  float b[16], out[16];
  if (o->bias) {
    const float* bp = o->bias + 16 * g;
    if (n < 16) { /* nothing read past the bias */
      memset(b, 0, sizeof b);
      memcpy(b, bp, n * sizeof(float));
      bp = b;
    }
    acc.p[0] = _mm256_add_ps(acc.p[0], _mm256_loadu_ps(bp));
    acc.p[1] = _mm256_add_ps(acc.p[1], _mm256_loadu_ps(bp + 8));
  }
  const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  float* yp = n < 16 ? out : y + 16 * g;
  _mm256_storeu_ps(yp, _mm256_min_ps(vhi, _mm256_max_ps(vlo, acc.p[0]))); /* as the AVX-512 one */
  _mm256_storeu_ps(yp + 8, _mm256_min_ps(vhi, _mm256_max_ps(vlo, acc.p[1])));
  if (n < 16) memcpy(y + 16 * g, out, n * sizeof(float));
}

#define DC_TILE_TARGET DC_AVX2
#define DC_TILE_NAME(base) float_##base##_avx2
#define DC_TILE_X float
#define DC_TILE_Y float
#define DC_TILE_OUT f_out
#define DC_T(op) f_##op##_avx2
#define DC_TILE_ACC(acc, w, v, x) f_fma_avx2(acc, w, v, x)
#include "dc_sfc_tiles.h"

/* Batch 2..8 on the float tile form with AVX2 when the caller gives scratch (the delegate always
 * does) and every x is finite (x_transpose): x transposed once per call (xt[c * 8 + b], zeros
 * past the batch rows: as the rows' float_tile8), then per entry one broadcast weight times the
 * 8 batch rows' x at its column, one FMA into that lane's 8 sums -- no lookup by permutes (which
 * cost four vpermps and three blends per 8 lanes and batch row), 8 lanes' sums at a time (a
 * group's lanes in two halves, its tiles read twice).  An empty entry adds 0 * x[column 0 of the
 * block] = +-0 (x finite), which leaves every sum as it is (no sum is ever -0, see f_fma_avx2).
 * Summation order: a row's non-zeros in column order into one accumulator per batch row, then
 * the bias -- float_tiles_batch's, so the same bits. */
#ifndef DC_SFC_XT_MIN
#define DC_SFC_XT_MIN 6 /* batch rows from which float_tiles_xt_avx2 runs instead */
#endif
DC_AVX2 static void float_tiles_xt_avx2(const dc_sparse_fc* m, const float* xt, uint32_t nb,
                                        const f_out* o, float* y) {
  const float* bias = o->bias;
  const float lo = o->lo, hi = o->hi;
  float wt[33];
  memcpy(wt, m->codebook, 32 * sizeof(float));
  wt[32] = 0.f; /* an empty entry's weight */
  const size_t rows = m->rows;
  const uint16_t* eg = m->tile_e; /* the group's first entry */
  for (uint32_t g = 0; g < m->tile_groups; ++g) {
    const uint32_t t0 = m->tile_ptr[g], t1 = m->tile_ptr[g + 1];
    float out[16][8];
    const uint16_t* e = eg;
    for (uint32_t half = 0; half < 2; ++half) {
      __m256 a[8];
      for (int l = 0; l < 8; ++l) a[l] = _mm256_setzero_ps();
      e = eg;
      for (uint32_t t = t0; t < t1; ++t) {
        const float* xb = xt + (size_t)m->tile_block[t] * 256;
        for (uint32_t s = m->tile_steps[t]; s > 0; --s, e += 16) {
#pragma GCC unroll 8
          for (int l = 0; l < 8; ++l) {
            const uint32_t v = e[8 * half + l], q = v >> 5;
            a[l] = _mm256_fmadd_ps(_mm256_set1_ps(wt[q < 32 ? q : 32]),
                                   _mm256_loadu_ps(xb + (v & 31u) * 8), a[l]);
          }
        }
      }
      for (int l = 0; l < 8; ++l) _mm256_storeu_ps(out[8 * half + l], a[l]);
    }
    eg = e;
    const uint32_t left = (uint32_t)(rows - 16 * g), n = left < 16 ? left : 16;
    for (uint32_t l = 0; l < n; ++l) { /* + bias, clamped: f_store16's operations */
      const size_t r = 16 * (size_t)g + l;
      for (uint32_t b = 0; b < nb; ++b) {
        float v = out[l][b];
        if (bias) v += bias[r];
        v = lo > v ? lo : v; /* VMAXPS (lo, v) then VMINPS (hi, .): NaN stays NaN */
        y[b * rows + r] = hi < v ? hi : v;
      }
    }
  }
}
#endif

/* The tile form on the scalar kernels (a form built with the AVX-512 kernels in use, run after
 * dc_sparse_fc_use_simd(0)): per group 16 rows x 2 accumulators, steps alternating between them
 * as float_tiles_b1_avx512 (products rounded before the add: results within float rounding of the
 * AVX-512 kernel's FMAs, not bit-equal), then the bias; batch rows one after the other. */
static float clampf(float v, float lo, float hi);
static void float_tiles_scalar(const dc_sparse_fc* m, const float* x, const float* bias, float lo,
                               float hi, float* y) {
  const uint16_t* e = m->tile_e;
  const float* cb = m->codebook;
  for (uint32_t g = 0; g < m->tile_groups; ++g) {
    float a[2][16];
    memset(a, 0, sizeof a);
    for (uint32_t t = m->tile_ptr[g]; t < m->tile_ptr[g + 1]; ++t) {
      const float* xb = x + 32u * m->tile_block[t];
      for (uint32_t s = 0; s < m->tile_steps[t]; ++s, e += 16) {
        for (uint32_t l = 0; l < 16; ++l) {
          if (e[l] == DC_SFC_TILE_EMPTY) continue;
          a[s & 1][l] += cb[e[l] >> 5] * xb[e[l] & 31u];
        }
      }
    }
    for (uint32_t l = 0; l < 16 && 16 * g + l < m->rows; ++l) {
      float acc = a[0][l] + a[1][l];
      if (bias) acc += bias[16 * g + l];
      y[16 * g + l] = clampf(acc, lo, hi);
    }
  }
}

/* Full tile of 8: the 8 sums stay in registers.  With GCC/Clang the two
 * halves are 4-lane vectors (SSE / NEON through generic vector extensions;
 * unaligned loads through memcpy); otherwise plain C. */
#if defined(__GNUC__)
typedef float dc_v4f __attribute__((vector_size(16)));
DC_SFC_BODY void float_tile8_body(const dc_sparse_fc* m, const float* xt, uint32_t T,
                                  const float* bias, float lo, float hi, float* y,
                                  const int values) {
  const float* cb = m->codebook;
  const float* v = m->value;
  const uint16_t* col = m->col;
  const uint8_t* code = m->code;
  const uint32_t rows = m->rows;
  for (uint32_t r = 0; r < rows; ++r) {
    dc_v4f a0 = {0.f, 0.f, 0.f, 0.f}, a1 = a0;
    const uint32_t end = m->row_ptr[r + 1];
    for (uint32_t j = m->row_ptr[r]; j < end; ++j) {
      const float w = DC_SFC_W(j);
      const dc_v4f wv = {w, w, w, w};
      dc_v4f x0, x1;
      memcpy(&x0, xt + (size_t)col[j] * 8, sizeof x0);
      memcpy(&x1, xt + (size_t)col[j] * 8 + 4, sizeof x1);
      a0 += wv * x0;
      a1 += wv * x1;
    }
    float a[8];
    memcpy(a, &a0, sizeof a0);
    memcpy(a + 4, &a1, sizeof a1);
    const float bv = bias ? bias[r] : 0.f;
    for (uint32_t b = 0; b < T; ++b) y[(size_t)b * rows + r] = clampf(a[b] + bv, lo, hi);
  }
}
#else
DC_SFC_BODY void float_tile8_body(const dc_sparse_fc* m, const float* xt, uint32_t T,
                                  const float* bias, float lo, float hi, float* y,
                                  const int values) {
  const float* cb = m->codebook;
  const float* v = m->value;
  const uint8_t* code = m->code;
  const uint32_t rows = m->rows;
  for (uint32_t r = 0; r < rows; ++r) {
    float a[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    for (uint32_t j = m->row_ptr[r]; j < m->row_ptr[r + 1]; ++j) {
      const float w = DC_SFC_W(j);
      const float* xp = xt + (size_t)m->col[j] * 8;
      for (int b = 0; b < 8; ++b) a[b] += w * xp[b];
    }
    const float bv = bias ? bias[r] : 0.f;
    for (uint32_t b = 0; b < T; ++b) y[(size_t)b * rows + r] = clampf(a[b] + bv, lo, hi);
  }
}
#endif
static void float_tile8(const dc_sparse_fc* m, const float* xt, uint32_t T, const float* bias,
                        float lo, float hi, float* y) {
  float_tile8_body(m, xt, T, bias, lo, hi, y, 0);
}
/* float_tile8 on the value form (the weight from m->value; the same order). */
static void float_tile8_values(const dc_sparse_fc* m, const float* xt, uint32_t T,
                               const float* bias, float lo, float hi, float* y) {
  float_tile8_body(m, xt, T, bias, lo, hi, y, 1);
}
#undef DC_SFC_W

/* scratch[c * 8 + b] = x[b, c] for b < T, 0 for T <= b < 8 (the rows' tile of 8 and
 * float_tiles_xt_avx2); 1 when every x is finite (neither inf nor NaN). */
static int x_transpose(const float* x, size_t cols, uint32_t T, float* scratch) {
  uint32_t bad = 0;
  for (size_t c = 0; c < cols; ++c) {
    for (uint32_t b = 0; b < 8; ++b) {
      const float v = b < T ? x[b * cols + c] : 0.f;
      uint32_t bits;
      memcpy(&bits, &v, sizeof bits);
      bad |= (bits & 0x7f800000u) == 0x7f800000u;
      scratch[c * 8 + b] = v;
    }
  }
  return !bad;
}

DC_API void dc_sparse_fc_float(const dc_sparse_fc* m, const float* x, size_t batch,
                               const float* bias, float act_min, float act_max, float* y,
                               float* scratch) {
  const size_t cols = m->cols, rows = m->rows;
  if (m->tile_e &&
      (tile_kernels() || !m->row_ptr)) { /* the tile form (alone, or next to the rows) */
    for (size_t b0 = 0; b0 < batch;) {
      const size_t left = batch - b0;
#if DC_SFC_X86
      const int k = kernels();
      if (k != K_SCALAR) {
        const uint32_t T = left < DC_SFC_BATCH_TILE ? (uint32_t)left : DC_SFC_BATCH_TILE;
        const float* xb = x + b0 * cols;
        float* yb = y + b0 * rows;
        const f_out o = {bias, act_min, act_max};
        if (k == K_AVX512 && T == 1) {
          float_tiles_b1_avx512(m, xb, &o, yb);
        } else if (k == K_AVX512) {
          float_tiles_batch_avx512(m, xb, T, &o, yb);
        } else if (T == 1) {
          float_tiles_b1_avx2(m, xb, &o, yb);
        } else if (scratch && T >= DC_SFC_XT_MIN && x_transpose(xb, cols, T, scratch)) {
          float_tiles_xt_avx2(m, scratch, T, &o, yb);
        } else {
          float_tiles_batch_avx2(m, xb, T, &o, yb);
        }
        b0 += T;
        continue;
      }
#endif
      (void)left;
      float_tiles_scalar(m, x + b0 * cols, bias, act_min, act_max, y + b0 * rows);
      ++b0;
    }
    return;
  }
  for (size_t b0 = 0; b0 < batch;) {
    size_t left = batch - b0;
    if (left == 1 || !scratch) {
#if DC_SFC_X86
      if (simd() && !m->value) { /* the value form: the scalar kernel (float_batch1_values) */
        float_batch1_avx512(m, x + b0 * cols, bias, act_min, act_max, y + b0 * rows);
        ++b0;
        continue;
      }
#endif
      (m->value ? float_batch1_values : float_batch1)(m, x + b0 * cols, bias, act_min, act_max,
                                                      y + b0 * rows);
      ++b0;
      continue;
    }
    /* tile of T <= 8 batch rows, transposed: scratch[c * 8 + b], zeros past T */
    uint32_t T = left < DC_SFC_BATCH_TILE ? (uint32_t)left : DC_SFC_BATCH_TILE;
    (void)x_transpose(x + b0 * cols, cols, T, scratch);
    (m->value ? float_tile8_values : float_tile8)(m, scratch, T, bias, act_min, act_max,
                                                  y + b0 * rows);
    b0 += T;
  }
}

/* ----------------------------------------------------------------- int8 */

/* XNNPACK's fp32 requantization: scale in float, clamp, round half to even
 * (the 1.5 * 2^23 trick is exact for |v| <= 2^22; v is clamped to a few
 * hundred first). */
static int8_t requantize(int32_t acc, float scale, int32_t zp, int32_t qmin, int32_t qmax) {
  float v = (float)acc * scale;
  const float lo = (float)(qmin - zp), hi = (float)(qmax - zp);
  v = v < lo ? lo : (v > hi ? hi : v);
  volatile float t = v + 12582912.0f; /* volatile: no reassociation */
  float rounded = t - 12582912.0f;
  return (int8_t)((int32_t)rounded + zp);
}

/* int32 sums wrap like the int32 accumulators of TFLite/XNNPACK (each
 * product sum is < 2^30 in magnitude; only these additions can overflow). */
static int32_t wrap_add(int32_t a, int32_t b) {
  return (int32_t)((uint32_t)a + (uint32_t)b);
}

/* bias[r] - input_zp * sum_c W[r, c] */
static int32_t offset(const dc_sparse_fc* m, uint32_t r, int32_t izp, const int32_t* bias) {
  uint32_t off = (uint32_t)(bias ? bias[r] : 0);
  off -= (uint32_t)izp * (uint32_t)m->row_sum[r];
  return (int32_t)off;
}

static void int8_batch1(const dc_sparse_fc* m, const int8_t* x, int32_t izp, const int32_t* bias,
                        const float* scale, int32_t ozp, int32_t qmin, int32_t qmax, int8_t* y) {
  for (uint32_t r = 0; r < m->rows; ++r) {
    int32_t acc = 0;
    for (uint32_t j = m->row_ptr[r]; j < m->row_ptr[r + 1]; ++j) {
      acc += (int32_t)(int8_t)m->code[j] * (int32_t)x[m->col[j]];
    }
    y[r] = requantize(wrap_add(acc, offset(m, r, izp, bias)), scale[r], ozp, qmin, qmax);
  }
}

#if DC_SFC_X86
/* AVX-512 int8 batch 1: 16 non-zeros per step, x gathered as 32-bit words at byte offsets
 * (x[c..c+3], the low byte sign-extended), so a step runs only while its last column is
 * < cols - 3 (columns increase along a row); the rest of the row is scalar.  Integer sums:
 * identical to int8_batch1 in any order. */
DC_AVX512 static void int8_batch1_avx512(const dc_sparse_fc* m, const int8_t* x, int32_t izp,
                                         const int32_t* bias, const float* scale, int32_t ozp,
                                         int32_t qmin, int32_t qmax, int8_t* y) {
  const uint16_t* col = m->col;
  const uint8_t* code = m->code;
  const uint32_t safe = m->cols > 3 ? m->cols - 3 : 0; /* columns whose 4-byte word is in x */
  for (uint32_t r = 0; r < m->rows; ++r) {
    uint32_t j = m->row_ptr[r];
    const uint32_t end = m->row_ptr[r + 1];
    __m512i a = _mm512_setzero_si512();
    while (j < end) {
      const uint32_t n = end - j < 16 ? end - j : 16;
      if (col[j + n - 1] >= safe) break;
      const __mmask16 k = (__mmask16)(n == 16 ? 0xffffu : (1u << n) - 1u);
      __m512i c = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, col + j));
      __m512i w = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(k, code + j));
      __m512i xv = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), k, c, x, 1);
      xv = _mm512_srai_epi32(_mm512_slli_epi32(xv, 24), 24);
      a = _mm512_add_epi32(a, _mm512_mullo_epi32(w, xv)); /* masked lanes: 0 * 0 */
      j += n;
    }
    int32_t acc = _mm512_reduce_add_epi32(a);
    for (; j < end; ++j) acc += (int32_t)(int8_t)code[j] * (int32_t)x[col[j]];
    y[r] = requantize(wrap_add(acc, offset(m, r, izp, bias)), scale[r], ozp, qmin, qmax);
  }
}
#endif

/* int8 on the tile form (dc_sfc_tiles.h), once per variant, on the types and operations
 * below.  Integer sums: identical to int8_batch1 in any order; requantization as `requantize`,
 * 16 rows at a time, the same float operations in the same order (so the same bytes).
 *
 * AVX-512: as the float tile kernels, lane l of a group's accumulator holding row 16 g + l; per
 * tile, x's 32 int8 columns of the block sit in two registers as int32 lanes holding the value as
 * int16 in their low half and 0 in the high half; per step x is taken by vpermt2d on the entry's
 * low 5 bits and the weight is the entry's code, sign-extended from bits 5..12 (an empty entry,
 * 0x8000, gives weight 0: no mask), and one vpmaddwd makes the 16 exact products (w's high half
 * times x's high half, 0, adds nothing).  No gather: 1024^2 at 10 % on an AMD Zen 4 core 0.16 ns
 * per non-zero (17.0 us) against 0.56 ns for int8_batch1_avx512 (59.1 us;
 * docs/android_design_notes.md "int8 on the tile form"). */
#if DC_SFC_X86
/* The output parameters of the int8 tile kernels (dc_sparse_fc_int8's). */
typedef struct {
  int32_t izp;
  const int32_t* bias; /* or NULL */
  const float* scale;
  int32_t ozp, qmin, qmax;
} i8_out;

typedef int i8_cb; /* no codebook: an entry's code is the weight */

static inline i8_cb i8_codebook(const dc_sparse_fc* m) {
  (void)m;
  return 0;
}

typedef struct {
  __m512i l, h;
} i8_x_avx512;
typedef __m512i i8_e_avx512, i8_w_avx512, i8_acc_avx512;
#define i8_codebook_avx512 i8_codebook
#define i8_cb_avx512 i8_cb

DC_AVX512 static inline i8_x_avx512 i8_block_x_avx512(const int8_t* xb, uint32_t part) {
  const __mmask32 k = part ? (__mmask32)((1u << part) - 1u) : (__mmask32)0xffffffffu;
  const __m512i x16 = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(k, xb));
  const i8_x_avx512 r = {_mm512_cvtepu16_epi32(_mm512_castsi512_si256(x16)),
                         _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(x16, 1))};
  return r;
}

DC_AVX512 static inline i8_e_avx512 i8_entries_avx512(const uint16_t* e) {
  return _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)e));
}

/* tile_weight of 16 entries widened to int32 lanes (an empty entry, 0x8000: 0). */
DC_AVX512 static inline i8_w_avx512 i8_weights_avx512(i8_cb cb, i8_e_avx512 v) {
  (void)cb;
  return _mm512_srai_epi32(_mm512_slli_epi32(v, 19), 24);
}

DC_AVX512 static inline i8_acc_avx512 i8_zero_avx512(void) {
  return _mm512_setzero_si512();
}

DC_AVX512 static inline i8_acc_avx512 i8_add_avx512(i8_acc_avx512 a, i8_acc_avx512 b) {
  return _mm512_add_epi32(a, b);
}

/* The 16 outputs of group g from its sums acc (rows past `rows` masked off). */
DC_AVX512 static inline void i8_store16_avx512(const dc_sparse_fc* m, uint32_t g, i8_acc_avx512 acc,
                                               const i8_out* o, int8_t* y) {
  const int32_t izp = o->izp, ozp = o->ozp, qmin = o->qmin, qmax = o->qmax;
  const int32_t* bias = o->bias;
  const float* scale = o->scale;
  const uint32_t left = m->rows - 16 * g;
  const __mmask16 k = (__mmask16)(left >= 16 ? 0xffffu : (1u << left) - 1u);
  const __m512i b = bias ? _mm512_maskz_loadu_epi32(k, bias + 16 * g) : _mm512_setzero_si512();
  const __m512i off = _mm512_sub_epi32(
      b,
      _mm512_mullo_epi32(_mm512_set1_epi32(izp), _mm512_maskz_loadu_epi32(k, m->row_sum + 16 * g)));
  __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(acc, off)),
                           _mm512_maskz_loadu_ps(k, scale + 16 * g));
  /* v < lo ? lo : (v > hi ? hi : v), for any lo, hi (VMINPS returns v when v is NaN) */
  const __m512 lo = _mm512_set1_ps((float)(qmin - ozp));
  v = _mm512_mask_mov_ps(_mm512_min_ps(_mm512_set1_ps((float)(qmax - ozp)), v),
                         _mm512_cmp_ps_mask(v, lo, _CMP_LT_OQ), lo);
  const __m512 magic = _mm512_set1_ps(12582912.0f);
  v = _mm512_sub_ps(_mm512_add_ps(v, magic), magic);
  _mm512_mask_cvtepi32_storeu_epi8(
      y + 16 * g, k, _mm512_add_epi32(_mm512_cvttps_epi32(v), _mm512_set1_epi32(ozp)));
}

/* vpmaddwd + vpaddd, and vpdpwssd on CPUs with AVX-512 VNNI (Ice Lake, Zen 4 and later).  Same
 * process, alternating, median of 300 / 60 invokes, Zen 4, load ~1.3, 2026-12-05: batch 1
 * 1024^2 at 5/10/20 % 11.5/16.6/25.6 -> 10.1/14.5/22.1 us (12-13.5 % less), 4096^2 2.4-11 %
 * less; batch 8 3-5 % less. */
#define DC_TILE_X int8_t
#define DC_TILE_Y int8_t
#define DC_TILE_OUT i8_out
#define DC_TILE_TARGET DC_AVX512
#define DC_TILE_NAME(base) int8_##base##_avx512
#define DC_T(op) i8_##op##_avx512
#define DC_TILE_ACC(acc, w, v, x) \
  _mm512_add_epi32(acc, _mm512_madd_epi16(w, _mm512_permutex2var_epi32(x.l, v, x.h)))
#include "dc_sfc_tiles.h"

#define DC_TILE_X int8_t
#define DC_TILE_Y int8_t
#define DC_TILE_OUT i8_out
#define DC_TILE_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define DC_TILE_NAME(base) int8_##base##_vnni
#define DC_T(op) i8_##op##_avx512
#define DC_TILE_ACC(acc, w, v, x) \
  _mm512_dpwssd_epi32(acc, w, _mm512_permutex2var_epi32(x.l, v, x.h))
#include "dc_sfc_tiles.h"

/* AVX2: a step's 16 entries stay 16-bit lanes.  The x block is its two halves of 16 bytes, each
 * in both 128-bit lanes of a register; x of an entry is looked up by vpshufb on its column's low
 * 4 bits into the lane's high byte (of both halves, blended by bit 4: vpblendvb), sign-extended
 * by an arithmetic shift; the weight is the entry's bits 5..12 sign-extended by two 16-bit shifts
 * (an empty entry, 0x8000, gives 0).  vpmaddwd adds the products of neighbouring lanes, so the
 * weights go in twice, once with the odd lanes' zeroed and once the even lanes': two sums of 8
 * int32 (rows 2 i and 2 i + 1 of the group), interleaved back at the end.  Exact products (|w x|
 * <= 2^14), so the same sums as every other kernel. */
typedef struct {
  __m256i l, h;
} i8_x_avx2;
typedef __m256i i8_e_avx2;
typedef struct {
  __m256i e, o; /* the weights of the even lanes (odd ones 0), of the odd lanes (even ones 0) */
} i8_w_avx2;
typedef struct {
  __m256i p[2]; /* the sums of the even rows, of the odd rows */
} i8_acc_avx2;
#define i8_codebook_avx2 i8_codebook
#define i8_cb_avx2 i8_cb

DC_AVX2 static inline i8_x_avx2 i8_block_x_avx2(const int8_t* xb, uint32_t part) {
  int8_t pad[32];
  if (part) { /* zeros past the last column: nothing read past the row */
    memset(pad, 0, sizeof pad);
    memcpy(pad, xb, part);
    xb = pad;
  }
  const i8_x_avx2 r = {_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)xb)),
                       _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)(xb + 16)))};
  return r;
}

DC_AVX2 static inline i8_e_avx2 i8_entries_avx2(const uint16_t* e) {
  return _mm256_loadu_si256((const __m256i*)e);
}

DC_AVX2 static inline i8_w_avx2 i8_weights_avx2(i8_cb cb, i8_e_avx2 v) {
  (void)cb;
  const __m256i w = _mm256_srai_epi16(_mm256_slli_epi16(v, 3), 8);
  const i8_w_avx2 r = {_mm256_and_si256(w, _mm256_set1_epi32(0xffff)),
                       _mm256_and_si256(w, _mm256_set1_epi32((int)0xffff0000u))};
  return r;
}

DC_AVX2_PAIR_OPS(i8_acc_avx2, i8_zero_avx2, i8_add_avx2, _mm256_setzero_si256, _mm256_add_epi32)

DC_AVX2 static inline i8_acc_avx2 i8_acc_avx2_step(i8_acc_avx2 a, i8_w_avx2 w, i8_e_avx2 v,
                                                   i8_x_avx2 x) {
  /* index: the column's bits 0..3 in each lane's high byte (bit 7 clear), 0 in the low byte
   * (its x is shifted out); bit 4 of the column to the high byte's sign bit */
  const __m256i idx = _mm256_and_si256(_mm256_slli_epi16(v, 8), _mm256_set1_epi16(0x0f00));
  const __m256i hx = _mm256_blendv_epi8(_mm256_shuffle_epi8(x.l, idx),
                                        _mm256_shuffle_epi8(x.h, idx), _mm256_slli_epi16(v, 11));
  const __m256i x16 = _mm256_srai_epi16(hx, 8);
  const i8_acc_avx2 r = {{_mm256_add_epi32(a.p[0], _mm256_madd_epi16(w.e, x16)),
                          _mm256_add_epi32(a.p[1], _mm256_madd_epi16(w.o, x16))}};
  return r;
}

DC_AVX2 static inline void i8_store16_avx2(const dc_sparse_fc* m, uint32_t g, i8_acc_avx2 acc,
                                           const i8_out* o, int8_t* y) {
  const int32_t izp = o->izp, ozp = o->ozp, qmin = o->qmin, qmax = o->qmax;
  const int32_t* bias = o->bias;
  const float* scale = o->scale;
  const uint32_t left = m->rows - 16 * g, n = left < 16 ? left : 16;
  const int32_t* rs = m->row_sum + 16 * g;
  const int32_t* bp = bias ? bias + 16 * g : NULL;
  const float* sp = scale + 16 * g;
  int32_t rs_pad[16], b_pad[16], out[16];
  float s_pad[16];
  if (n < 16) { /* nothing read past the arrays */
    memset(rs_pad, 0, sizeof rs_pad), memset(b_pad, 0, sizeof b_pad);
    memset(s_pad, 0, sizeof s_pad);
    memcpy(rs_pad, rs, n * sizeof(int32_t)), memcpy(s_pad, sp, n * sizeof(float));
    if (bp) memcpy(b_pad, bp, n * sizeof(int32_t)), bp = b_pad;
    rs = rs_pad, sp = s_pad;
  }
  /* rows 0..3 | 8..11 and 4..7 | 12..15, then 0..7 and 8..15 */
  const __m256i lo4 = _mm256_unpacklo_epi32(acc.p[0], acc.p[1]);
  const __m256i hi4 = _mm256_unpackhi_epi32(acc.p[0], acc.p[1]);
  const __m256i r8[2] = {_mm256_permute2x128_si256(lo4, hi4, 0x20),
                         _mm256_permute2x128_si256(lo4, hi4, 0x31)};
  const __m256 lo = _mm256_set1_ps((float)(qmin - ozp)), hi = _mm256_set1_ps((float)(qmax - ozp));
  const __m256 magic = _mm256_set1_ps(12582912.0f);
  for (int h = 0; h < 2; ++h) { /* the operations of i8_store16_avx512 */
    const __m256i b =
        bp ? _mm256_loadu_si256((const __m256i*)(bp + 8 * h)) : _mm256_setzero_si256();
    const __m256i off =
        _mm256_sub_epi32(b, _mm256_mullo_epi32(_mm256_set1_epi32(izp),
                                               _mm256_loadu_si256((const __m256i*)(rs + 8 * h))));
    __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(r8[h], off)),
                             _mm256_loadu_ps(sp + 8 * h));
    v = _mm256_blendv_ps(_mm256_min_ps(hi, v), lo, _mm256_cmp_ps(v, lo, _CMP_LT_OQ));
    v = _mm256_sub_ps(_mm256_add_ps(v, magic), magic);
    _mm256_storeu_si256((__m256i*)(out + 8 * h),
                        _mm256_add_epi32(_mm256_cvttps_epi32(v), _mm256_set1_epi32(ozp)));
  }
  for (uint32_t l = 0; l < n; ++l) y[16 * g + l] = (int8_t)out[l]; /* the low byte, as vpmovdb */
}

#define DC_TILE_X int8_t
#define DC_TILE_Y int8_t
#define DC_TILE_OUT i8_out
#define DC_TILE_TARGET DC_AVX2
#define DC_TILE_NAME(base) int8_##base##_avx2
#define DC_T(op) i8_##op##_avx2
#define DC_TILE_ACC(acc, w, v, x) i8_acc_avx2_step(acc, w, v, x)
#include "dc_sfc_tiles.h"
#endif

/* The int8 tile form on the scalar kernels (a form built with the AVX-512 kernels in use, run
 * after dc_sparse_fc_use_simd(0)): the same integer sums, one batch row at a time. */
static void int8_tiles_scalar(const dc_sparse_fc* m, const int8_t* x, int32_t izp,
                              const int32_t* bias, const float* scale, int32_t ozp, int32_t qmin,
                              int32_t qmax, int8_t* y) {
  const uint16_t* e = m->tile_e;
  for (uint32_t g = 0; g < m->tile_groups; ++g) {
    int32_t a[16] = {0};
    for (uint32_t t = m->tile_ptr[g]; t < m->tile_ptr[g + 1]; ++t) {
      const int8_t* xb = x + 32u * m->tile_block[t];
      for (uint32_t s = 0; s < m->tile_steps[t]; ++s, e += 16) {
        for (uint32_t l = 0; l < 16; ++l) {
          if (e[l] == DC_SFC_TILE_EMPTY) continue;
          a[l] += tile_weight(e[l]) * (int32_t)xb[e[l] & 31u];
        }
      }
    }
    for (uint32_t l = 0; l < 16 && 16 * g + l < m->rows; ++l) {
      const uint32_t r = 16 * g + l;
      y[r] = requantize(wrap_add(a[l], offset(m, r, izp, bias)), scale[r], ozp, qmin, qmax);
    }
  }
}

/* Tile of T <= 8 batch rows; xt[c * 8 + b] = x as int32, zeros past T. */
#if defined(__GNUC__)
typedef int32_t dc_v4i __attribute__((vector_size(16)));
#endif
static void int8_tile8(const dc_sparse_fc* m, const int32_t* xt, uint32_t T, int32_t izp,
                       const int32_t* bias, const float* scale, int32_t ozp, int32_t qmin,
                       int32_t qmax, int8_t* y) {
  const uint16_t* col = m->col;
  const uint8_t* code = m->code;
  const uint32_t rows = m->rows;
  for (uint32_t r = 0; r < rows; ++r) {
    int32_t acc[8];
    const uint32_t end = m->row_ptr[r + 1];
#if defined(__GNUC__)
    dc_v4i a0 = {0, 0, 0, 0}, a1 = a0;
    for (uint32_t j = m->row_ptr[r]; j < end; ++j) {
      const int32_t w = (int8_t)code[j];
      const dc_v4i wv = {w, w, w, w};
      dc_v4i x0, x1;
      memcpy(&x0, xt + (size_t)col[j] * 8, sizeof x0);
      memcpy(&x1, xt + (size_t)col[j] * 8 + 4, sizeof x1);
      a0 += wv * x0; /* |sum| < 2^30: no overflow */
      a1 += wv * x1;
    }
    memcpy(acc, &a0, sizeof a0);
    memcpy(acc + 4, &a1, sizeof a1);
#else
    for (int b = 0; b < 8; ++b) acc[b] = 0;
    for (uint32_t j = m->row_ptr[r]; j < end; ++j) {
      const int32_t w = (int8_t)code[j];
      const int32_t* xp = xt + (size_t)col[j] * 8;
      for (int b = 0; b < 8; ++b) acc[b] += w * xp[b];
    }
#endif
    const int32_t off = offset(m, r, izp, bias);
    for (uint32_t b = 0; b < T; ++b) {
      y[(size_t)b * rows + r] = requantize(wrap_add(acc[b], off), scale[r], ozp, qmin, qmax);
    }
  }
}

DC_API void dc_sparse_fc_int8(const dc_sparse_fc* m, const int8_t* x, size_t batch,
                              int32_t input_zp, const int32_t* bias, const float* scale,
                              int32_t output_zp, int32_t qmin, int32_t qmax, int8_t* y,
                              int32_t* scratch) {
  const size_t cols = m->cols, rows = m->rows;
  if (m->tile_e &&
      (tile_kernels() || !m->row_ptr)) { /* the tile form (alone, or next to the rows) */
    for (size_t b0 = 0; b0 < batch;) {
      const size_t left = batch - b0;
#if DC_SFC_X86
      const int k = kernels();
      if (k != K_SCALAR) {
        const uint32_t T = left < DC_SFC_BATCH_TILE ? (uint32_t)left : DC_SFC_BATCH_TILE;
        const int8_t* xb = x + b0 * cols;
        int8_t* yb = y + b0 * rows;
        const i8_out o = {input_zp, bias, scale, output_zp, qmin, qmax};
        if (k == K_AVX2 && T == 1) {
          int8_tiles_b1_avx2(m, xb, &o, yb);
        } else if (k == K_AVX2) {
          int8_tiles_batch_avx2(m, xb, T, &o, yb);
        } else if (vnni() && T == 1) {
          int8_tiles_b1_vnni(m, xb, &o, yb);
        } else if (vnni()) {
          int8_tiles_batch_vnni(m, xb, T, &o, yb);
        } else if (T == 1) {
          int8_tiles_b1_avx512(m, xb, &o, yb);
        } else {
          int8_tiles_batch_avx512(m, xb, T, &o, yb);
        }
        b0 += T;
        continue;
      }
#endif
      (void)left;
      int8_tiles_scalar(m, x + b0 * cols, input_zp, bias, scale, output_zp, qmin, qmax,
                        y + b0 * rows);
      ++b0;
    }
    return;
  }
  for (size_t b0 = 0; b0 < batch;) {
    size_t left = batch - b0;
    if (left == 1 || !scratch) {
#if DC_SFC_X86
      if (simd()) {
        int8_batch1_avx512(m, x + b0 * cols, input_zp, bias, scale, output_zp, qmin, qmax,
                           y + b0 * rows);
        ++b0;
        continue;
      }
#endif
      int8_batch1(m, x + b0 * cols, input_zp, bias, scale, output_zp, qmin, qmax, y + b0 * rows);
      ++b0;
      continue;
    }
    uint32_t T = left < DC_SFC_BATCH_TILE ? (uint32_t)left : DC_SFC_BATCH_TILE;
    for (size_t c = 0; c < cols; ++c) {
      for (uint32_t b = 0; b < 8; ++b) {
        scratch[c * 8 + b] = b < T ? x[(b0 + b) * cols + c] : 0;
      }
    }
    int8_tile8(m, scratch, T, input_zp, bias, scale, output_zp, qmin, qmax, y + b0 * rows);
    b0 += T;
  }
}
