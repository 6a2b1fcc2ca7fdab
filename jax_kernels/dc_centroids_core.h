// The clustered fit step's two CPU kernel loops (issue 16), shared by the JAX backend's XLA FFI
// handlers (dc_centroids.cc) and the TensorFlow backend's custom ops (dc_centroids_tf.cc): one
// implementation, so both backends give the same bits. Header-only, C++17, no framework headers;
// each library includes it once (everything lives in an anonymous namespace).
//
// Gather:  out[i] = idx[i] < n ? centroids[idx[i]] : 0   (idx[i] == n: the zero slot)
// Sums:    sums[j] = the sum of g[i] over i with idx[i] == j, j < n, in dc_keras's part order:
//          the entries are cut into parts of P = SumsPartSize(count) entries (at most kSumsParts
//          parts; P is ceil(count / 8) rounded up to a multiple of 8,192: one part up to 8,192
//          entries); within part k (entries k*P .. k*P+P-1) each centroid's members are added one
//          by one in increasing i, starting from +0.0; then the parts' partial sums are added in
//          part order: ((part0 + part1) + part2) + ... The generic path of every backend
//          computes the same order (dc_keras/train/clustering.py, centroid_sums_reference), so all
//          routes give the same bits. The zero slot's sum is not needed and not kept.
// Both report the first index outside 0..n (the caller raises an error naming it), never reading
// outside the table.
//
// Costs on a LeNet-300-100 fc1 (235,200 entries, 33 slots; x86-64 with AVX-512), each op timed
// alone: the gather is one vpermt2ps per 16 entries (tables of up to 48 slots; a scalar loop
// otherwise), split between the calling thread and one helper thread of the framework's pool
// (~30 us; in a fit step, where the assignments come from L3 or memory, ~2-3x that: it prefetches
// 1,024 entries ahead, ~10 % less there). The sums keep one accumulator per centroid and part in
// memory (~120 us on one thread, ~1 cycle an entry: load-port bound, not a latency chain; two or
// more parts interleaved in one loop, independent accumulators, measured no faster; with 90 % of
// the entries in the zero slot, as after pruning, ~80 us); the parts are what lets two threads share them
// (about half the wall time when the second core is free; on a loaded 2-core machine, pilot
// fit steps, the split did not pay: the JAX binding's split attribute, DC_KERAS_JAX_FFI_SPLIT). (Index order across the whole tensor, used before, allowed one thread only: splitting
// the centroids between two threads did not pay, each thread first picking its entries out of
// all of them.) The adds of dense blocks run in a separate plain (SSE) function, entered after
// vzeroupper: the same loop inlined into the AVX-512 function (VEX encoding, dirty upper register
// state) cost ~25 % more (an isolated fc1 loop: ~190 -> ~150 us; in the fit step ~180 -> ~145).
#ifndef DC_KERAS_DC_CENTROIDS_CORE_H_
#define DC_KERAS_DC_CENTROIDS_CORE_H_

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define DC_HAVE_AVX512_PATH 1
#endif

namespace {
namespace dc_centroids {

inline std::string OutOfRangeMessage(int64_t bad, int64_t n) {
  return "dc_keras centroid gather: assignment " + std::to_string(bad) + " outside 0.." +
         std::to_string(n) + " (" + std::to_string(n) +
         " centroids and the zero slot); the assignments are damaged";
}

inline std::string CountMismatchMessage(size_t grads, size_t count) {
  return "dc_keras centroid sums: " + std::to_string(grads) + " gradients for " +
         std::to_string(count) + " assignments";
}

// Scalar gather of entries [begin, end); returns the first bad index position or -1.
inline int64_t GatherScalar(const float* c, uint32_t n, const int32_t* idx, float* out,
                            size_t begin, size_t end) {
  for (size_t i = begin; i < end; ++i) {
    uint32_t a = static_cast<uint32_t>(idx[i]);
    if (a < n) {
      out[i] = c[a];
    } else if (a == n) {
      out[i] = 0.0f;
    } else {
      return static_cast<int64_t>(i);
    }
  }
  return -1;
}

#ifdef DC_HAVE_AVX512_PATH
// Prefetch distance of the gather, in entries (~1,000 cycles ahead; in a fit step the assignments
// come from L3 or memory: the fc1 gather ~95 -> ~86 us, alone it does not change).
constexpr size_t kGatherAhead = 1024;

// Tables of n + 1 <= 48 slots: three 16-float registers (the zero slot and the padding hold +0.0);
// vpermt2ps picks from slots 0..31, vpermps from 32..47. Returns the bad position or -1.
__attribute__((target("avx512f"))) inline int64_t GatherAvx512(const float* c, uint32_t n,
                                                               const int32_t* idx, float* out,
                                                               size_t begin, size_t end) {
  alignas(64) float table[48] = {0};
  if (n) std::memcpy(table, c, n * sizeof(float));  // no centroids: c may be null
  const __m512 lo = _mm512_load_ps(table), hi = _mm512_load_ps(table + 16),
               top = _mm512_load_ps(table + 32);
  const __m512i limit = _mm512_set1_epi32(static_cast<int32_t>(n)), k32 = _mm512_set1_epi32(32);
  __mmask16 bad = 0;
  size_t i = begin;
  for (; i + 16 <= end; i += 16) {
    const size_t ahead = std::min(i + kGatherAhead, end - 1);  // the lines ahead, in and out
    __builtin_prefetch(idx + ahead), __builtin_prefetch(out + ahead, 1);
    __m512i a = _mm512_loadu_si512(idx + i);
    bad |= _mm512_cmpgt_epu32_mask(a, limit);
    __m512 v = _mm512_permutex2var_ps(lo, a, hi);
    v = _mm512_mask_permutexvar_ps(v, _mm512_cmpge_epu32_mask(a, k32), a, top);
    _mm512_storeu_ps(out + i, v);
  }
  if (bad) return GatherScalar(c, n, idx, out, begin, end);  // finds the first bad position
  return GatherScalar(c, n, idx, out, i, end);
}
#endif

inline int64_t GatherRange(const float* c, uint32_t n, const int32_t* idx, float* out, size_t begin,
                           size_t end) {
#ifdef DC_HAVE_AVX512_PATH
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  if (n + 1 <= 48 && avx512) return GatherAvx512(c, n, idx, out, begin, end);
#endif
  return GatherScalar(c, n, idx, out, begin, end);
}

// Work cut into `parts` pieces that the calling thread and one task on the framework's intra-op
// pool claim from a counter (each piece writes its own output: the result does not depend on who
// runs it). The caller claims every piece still unclaimed, so it only ever waits for a piece the
// helper is running right now: no deadlock when the pool is busy or has no free thread, and a
// helper that starts late finds nothing to do (it holds the job by shared_ptr and never calls
// `piece` then, so never touches the caller's buffers).
struct PartsJob {
  std::function<int64_t(int)> piece;  // runs piece k; returns its first bad position or -1
  int parts = 0;
  std::atomic<int> next{0}, done{0};
  std::atomic<int64_t> bad{-1};

  void Work() {
    for (int k; (k = next.fetch_add(1)) < parts;) {
      int64_t b = piece(k), seen = bad.load();
      while (b >= 0 && (seen < 0 || b < seen) && !bad.compare_exchange_weak(seen, b)) {
      }
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

constexpr int kSpinLimit = 1 << 12;  // pause instructions: ~100 us

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Runs piece(0..parts) (each returning its first bad position or -1) and returns the first bad
// position of all, or -1. `schedule(task)` runs a task on a helper thread; used only when `split`.
template <typename Schedule>
int64_t RunParts(int parts, bool split, Schedule schedule, std::function<int64_t(int)> piece) {
  if (!split || parts < 2) {
    for (int k = 0; k < parts; ++k) {  // pieces in index order: the first bad one is the first
      int64_t b = piece(k);
      if (b >= 0) return b;
    }
    return -1;
  }
  auto job = std::make_shared<PartsJob>();
  job->piece = std::move(piece), job->parts = parts;
  schedule([job] { job->Work(); });
  job->Work();
  // The helper's last piece takes microseconds: spin for it (~100 us at most) rather than yield
  // at once; on a loaded machine a yield can hand the core to another process for milliseconds.
  for (int spins = 0; job->done.load(std::memory_order_acquire) < job->parts; ++spins) {
    if (spins < kSpinLimit) {
      CpuRelax();
    } else {
      std::this_thread::yield();
    }
  }
  return job->bad.load();
}

constexpr size_t kParallelMin = 1 << 16, kChunk = 1 << 14;  // entries (multiples of 16)

// The gather of `count` entries, in chunks of kChunk shared with one helper thread when large and
// `threads` >= 2. Returns the first bad position or -1.
template <typename Schedule>
int64_t Gather(const float* c, uint32_t n, const int32_t* idx, float* out, size_t count,
               int threads, Schedule schedule) {
  if (count < kParallelMin || threads < 2) return GatherRange(c, n, idx, out, 0, count);
  const int chunks = static_cast<int>((count + kChunk - 1) / kChunk);
  return RunParts(chunks, true, schedule, [=](int k) {
    size_t begin = k * kChunk, end = std::min(count, begin + kChunk);
    return GatherRange(c, n, idx, out, begin, end);
  });
}

// Adds g[i] to s[a[i]] for i in [begin, end), in order; s has n + 1 slots (slot n: the zero
// slot's scratch). Returns the first bad position or -1. Four entries a step through base +
// offset addresses (micro-fused with VEX encoding too); never inlined into the AVX-512 code (see
// the top of this file).
__attribute__((noinline)) inline int64_t SumsScalar(const float* g, const int32_t* a, size_t begin,
                                                    size_t end, float* s, uint32_t n) {
  size_t i = begin;
  for (const float* gp = g + i; i + 4 <= end; i += 4, gp += 4) {
    const int32_t* ap = a + i;
    uint32_t j0 = ap[0], j1 = ap[1], j2 = ap[2], j3 = ap[3];
    if (j0 > n || j1 > n || j2 > n || j3 > n) break;  // the loop below finds which
    s[j0] += gp[0], s[j1] += gp[1], s[j2] += gp[2], s[j3] += gp[3];
  }
  for (; i < end; ++i) {
    uint32_t j = static_cast<uint32_t>(a[i]);
    if (j > n) return static_cast<int64_t>(i);
    s[j] += g[i];
  }
  return -1;
}

#ifdef DC_HAVE_AVX512_PATH
// Adds g[i] to s[a[i]] for i in [begin, end), in order, with every a[i] known to be in range
// (checked before): no compare per entry, and the assignments read two per 64-bit load. Plain
// (SSE) code, never inlined into the AVX-512 code (see the top of this file).
__attribute__((noinline)) inline void SumsInRange(const float* g, const int32_t* a, size_t i,
                                                  size_t end, float* s) {
  for (; i + 8 <= end; i += 8) {
    uint64_t p0, p1, p2, p3;  // named, not an array: an array goes through the stack
    std::memcpy(&p0, a + i, 8), std::memcpy(&p1, a + i + 2, 8);
    std::memcpy(&p2, a + i + 4, 8), std::memcpy(&p3, a + i + 6, 8);
    s[static_cast<uint32_t>(p0)] += g[i], s[p0 >> 32] += g[i + 1];
    s[static_cast<uint32_t>(p1)] += g[i + 2], s[p1 >> 32] += g[i + 3];
    s[static_cast<uint32_t>(p2)] += g[i + 4], s[p2 >> 32] += g[i + 5];
    s[static_cast<uint32_t>(p3)] += g[i + 6], s[p3 >> 32] += g[i + 7];
  }
  for (; i < end; ++i) s[a[i]] += g[i];
}

// With pruned weights most entries point at the zero slot, and adding them all to one scratch
// accumulator is a chain of dependent adds (90 % zeros: ~5x slower than none). Blocks whose first
// 64 entries hold at least 8 zero-slot ones ("sparse") are first compressed to their other entries
// (kept in order, in an L1 buffer), which alone are added; the other ("dense") blocks are
// range-checked with vector max first and then take SumsInRange (SumsScalar's compare per entry
// and 32-bit loads cost ~15 % more on an isolated fc1). Parts start at multiples of kSumsBlock.
// The block loop itself is plain code calling small AVX-512 functions (each returns with
// vzeroupper): the SSE loops never run with dirty upper register state, and no vector register
// lives across a call to them (GCC restored one before the call when the loop was AVX-512 code).
constexpr size_t kSumsBlock = 1024;
enum BlockKind { kDenseBlock, kSparseBlock, kBadBlock };

__attribute__((target("avx512f"), noinline)) inline BlockKind ClassifyBlock(const int32_t* a,
                                                                            uint32_t n) {
  const __m512i zero_slot = _mm512_set1_epi32(static_cast<int32_t>(n));
  const __mmask16 all = 0xffff;  // maskz_max: plain _mm512_max_epu32 trips GCC 12's
                                 // -Wmaybe-uninitialized
  __m512i m0 = _mm512_loadu_si512(a), m1 = _mm512_loadu_si512(a + 16),
          m2 = _mm512_loadu_si512(a + 32), m3 = _mm512_loadu_si512(a + 48);
  int zeros = __builtin_popcount(_mm512_cmpeq_epi32_mask(m0, zero_slot)) +
              __builtin_popcount(_mm512_cmpeq_epi32_mask(m1, zero_slot)) +
              __builtin_popcount(_mm512_cmpeq_epi32_mask(m2, zero_slot)) +
              __builtin_popcount(_mm512_cmpeq_epi32_mask(m3, zero_slot));
  if (zeros >= 8) return kSparseBlock;            // SumsSparseBlock checks the range
  for (size_t k = 64; k < kSumsBlock; k += 64) {  // four running maxima: load-bound, not latency
    m0 = _mm512_maskz_max_epu32(all, m0, _mm512_loadu_si512(a + k));
    m1 = _mm512_maskz_max_epu32(all, m1, _mm512_loadu_si512(a + k + 16));
    m2 = _mm512_maskz_max_epu32(all, m2, _mm512_loadu_si512(a + k + 32));
    m3 = _mm512_maskz_max_epu32(all, m3, _mm512_loadu_si512(a + k + 48));
  }
  m0 = _mm512_maskz_max_epu32(all, _mm512_maskz_max_epu32(all, m0, m1),
                              _mm512_maskz_max_epu32(all, m2, m3));
  return _mm512_cmpgt_epu32_mask(m0, zero_slot) ? kBadBlock : kDenseBlock;  // unsigned: < 0 too
}

// The block of kSumsBlock entries at a + i, mostly zero slot: its other entries compressed, then
// added. Returns false (and adds nothing) when an assignment is out of range.
__attribute__((target("avx512f"), noinline)) inline bool SumsSparseBlock(const float* g,
                                                                         const int32_t* a, float* s,
                                                                         uint32_t n) {
  const __m512i zero_slot = _mm512_set1_epi32(static_cast<int32_t>(n));
  alignas(64) int32_t kept_a[kSumsBlock + 16];
  alignas(64) float kept_g[kSumsBlock + 16];
  size_t kept = 0;
  __mmask16 bad = 0;
  for (size_t k = 0; k < kSumsBlock; k += 16) {
    __m512i x = _mm512_loadu_si512(a + k);
    bad |= _mm512_cmpgt_epu32_mask(x, zero_slot);
    __mmask16 m = _mm512_cmpneq_epi32_mask(x, zero_slot);
    _mm512_storeu_si512(kept_a + kept, _mm512_maskz_compress_epi32(m, x));
    _mm512_storeu_ps(kept_g + kept, _mm512_maskz_compress_ps(m, _mm512_loadu_ps(g + k)));
    kept += __builtin_popcount(m);
  }
  if (bad) return false;
  for (size_t k = 0; k < kept; ++k) s[kept_a[k]] += kept_g[k];  // all in range: checked above
  return true;
}

inline int64_t SumsAvx512(const float* g, const int32_t* a, size_t begin, size_t end, float* s,
                          uint32_t n) {
  size_t i = begin;
  for (; i + kSumsBlock <= end; i += kSumsBlock) {
    BlockKind kind = ClassifyBlock(a + i, n);
    if (kind == kDenseBlock) {
      SumsInRange(g, a, i, i + kSumsBlock, s);
    } else if (kind == kBadBlock || !SumsSparseBlock(g + i, a + i, s, n)) {
      return SumsScalar(g, a, i, i + kSumsBlock, s, n);  // finds the bad position
    }
  }
  return SumsScalar(g, a, i, end, s, n);
}
#else
constexpr size_t kSumsBlock = 1024;
#endif

// The sums' parts (see the top of this file): at most kSumsParts parts of SumsPartSize(count)
// entries, a multiple of kSumsPartQuantum (itself a multiple of kSumsBlock).
constexpr size_t kSumsParts = 8, kSumsPartQuantum = 8192;

inline size_t SumsPartSize(size_t count) {
  size_t per = (count + kSumsParts - 1) / kSumsParts;
  return std::max<size_t>(1, (per + kSumsPartQuantum - 1) / kSumsPartQuantum) * kSumsPartQuantum;
}

inline int64_t SumsRange(const float* g, const int32_t* a, size_t begin, size_t end, float* s,
                         uint32_t n) {
#ifdef DC_HAVE_AVX512_PATH
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  if (avx512) return SumsAvx512(g, a, begin, end, s, n);
#endif
  return SumsScalar(g, a, begin, end, s, n);
}

// sums[0..n) of the `count` gradients `g` by assignment `a` (see the top of this file): the parts
// are shared with one helper thread when large and `threads` >= 2 (same bits either way). Returns
// the first bad position or -1 (then `sums` is left untouched).
template <typename Schedule>
int64_t Sums(const float* g, const int32_t* a, size_t count, float* sums, uint32_t n, int threads,
             Schedule schedule) {
  const size_t part = SumsPartSize(count), slots = n + 1;
  const int parts = static_cast<int>(std::max<size_t>(1, (count + part - 1) / part));
  std::vector<float> acc(parts * slots, 0.0f);  // each part's sums from +0.0 (slot n: scratch)
  float* acc_data = acc.data();
  int64_t bad = RunParts(parts, count >= kParallelMin && threads >= 2, schedule, [=](int k) {
    size_t begin = k * part, end = std::min(count, begin + part);
    return SumsRange(g, a, begin, end, acc_data + k * slots, n);
  });
  if (bad >= 0) return bad;
  for (uint32_t j = 0; j < n; ++j) {
    float total = acc_data[j];
    for (int k = 1; k < parts; ++k) total += acc_data[k * slots + j];  // in part order
    sums[j] = total;
  }
  return -1;
}

}  // namespace dc_centroids
}  // namespace

#endif  // DC_KERAS_DC_CENTROIDS_CORE_H_
