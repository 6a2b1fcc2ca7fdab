// The clustered fit step's kernel loops (jax_kernels/dc_centroids_core.h) on their own, built and
// run by `make test-sanitize` under AddressSanitizer + UndefinedBehaviorSanitizer (`all`: every
// size and table class, one thread and two) and by `make test-tsan` under ThreadSanitizer
// (`threads`: the two-thread gather and sums only). Each case compares the gather with a plain
// loop and the sums bit for bit with the part order (dc_keras/train/clustering.py's SUMS_PARTS),
// then puts one bad assignment (n + 1, -1, INT32_MIN) first / mid / last and checks that both
// report the first bad position and leave the sums untouched. Inputs start one float past an
// aligned allocation (the kernels load unaligned); a table of no centroids passes a null pointer.
// A helper thread that starts after the call returned ("late") must find nothing to do: under
// ASan any touch of the call's freed buffers is an error.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "../dc_centroids_core.h"

namespace {

int failures = 0;

#define CHECK(cond, ...)                               \
  do {                                                 \
    if (!(cond)) {                                     \
      ++failures;                                      \
      std::printf("FAIL %s:%d: ", __FILE__, __LINE__); \
      std::printf(__VA_ARGS__);                        \
      std::printf("\n");                               \
    }                                                  \
  } while (0)

// The helper-thread tasks of one call: run at once on a thread of their own, or ("late") kept and
// run only after the call returned.
struct Helpers {
  bool late = false;
  std::vector<std::thread> threads;
  std::vector<std::function<void()>> kept;
  void Schedule(std::function<void()> task) {
    if (late) {
      kept.push_back(std::move(task));
    } else {
      threads.emplace_back(std::move(task));
    }
  }
  void Finish() {
    for (auto& t : threads) t.join();
    threads.clear();
    for (auto& task : kept) task();
    kept.clear();
  }
};

std::vector<float> PartOrderSums(const std::vector<float>& g, const std::vector<int32_t>& a,
                                 uint32_t n) {
  const size_t part = dc_centroids::SumsPartSize(a.size()), slots = n + 1;
  std::vector<float> acc(dc_centroids::kSumsParts * slots, 0.0f);
  for (size_t i = 0; i < a.size(); ++i) acc[(i / part) * slots + a[i]] += g[i];
  std::vector<float> sums(n);
  for (uint32_t j = 0; j < n; ++j) {
    float total = acc[j];
    for (size_t k = 1; k < dc_centroids::kSumsParts; ++k) total += acc[k * slots + j];
    sums[j] = total;
  }
  return sums;
}

// One call of each kernel on `a` (bad entries included); returns nothing, counts failures.
void RunCase(const std::vector<float>& c, const std::vector<int32_t>& a,
             const std::vector<float>& g, int threads, bool late) {
  const uint32_t n = static_cast<uint32_t>(c.size());
  const size_t count = a.size();
  int64_t first_bad = -1;
  for (size_t i = 0; i < count && first_bad < 0; ++i) {
    if (static_cast<uint32_t>(a[i]) > n) first_bad = static_cast<int64_t>(i);
  }
  Helpers helpers;
  helpers.late = late;
  auto schedule = [&helpers](std::function<void()> task) { helpers.Schedule(std::move(task)); };
  {
    // Heap copies one float past the allocation's start, freed before a late helper runs.
    std::vector<int32_t> a_buf(count + 1);
    std::vector<float> g_buf(count + 1), out_buf(count + 1);
    if (count) {
      std::memcpy(a_buf.data() + 1, a.data(), count * sizeof(int32_t));
      std::memcpy(g_buf.data() + 1, g.data(), count * sizeof(float));
    }
    const float* table = n ? c.data() : nullptr;
    int64_t bad = dc_centroids::Gather(table, n, a_buf.data() + 1, out_buf.data() + 1, count,
                                       threads, schedule);
    CHECK(bad == first_bad, "gather: count %zu, n %u, threads %d: bad at %lld, expected %lld",
          count, n, threads, static_cast<long long>(bad), static_cast<long long>(first_bad));
    for (size_t i = 0; first_bad < 0 && i < count; ++i) {
      const float want = static_cast<uint32_t>(a[i]) < n ? c[a[i]] : 0.0f;
      if (std::memcmp(&want, &out_buf[i + 1], sizeof(float)) != 0) {
        CHECK(false, "gather: count %zu, n %u: entry %zu differs", count, n, i);
        break;
      }
    }
    std::vector<float> sums(n + 1, 12345.0f);  // one slot past n: never written
    bad = dc_centroids::Sums(g_buf.data() + 1, a_buf.data() + 1, count, sums.data(), n, threads,
                             schedule);
    CHECK(bad == first_bad, "sums: count %zu, n %u, threads %d: bad at %lld, expected %lld", count,
          n, threads, static_cast<long long>(bad), static_cast<long long>(first_bad));
    if (first_bad < 0) {
      const std::vector<float> want = PartOrderSums(g, a, n);
      CHECK(n == 0 || std::memcmp(want.data(), sums.data(), n * sizeof(float)) == 0,
            "sums: count %zu, n %u, threads %d: not the part order's bits", count, n, threads);
    } else {
      for (uint32_t j = 0; j < n; ++j) CHECK(sums[j] == 12345.0f, "sums: written despite an error");
    }
    CHECK(sums[n] == 12345.0f, "sums: the slot past n written");
    if (!late) helpers.Finish();
  }
  helpers.Finish();  // late: the call's buffers are gone
}

void Cases(size_t count, uint32_t n, double zero_share, int threads, bool late, std::mt19937& rng) {
  std::vector<float> c(n), g(count);
  std::vector<int32_t> a(count);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<double> share;
  std::uniform_int_distribution<int32_t> slot(0, static_cast<int32_t>(n));
  for (auto& x : c) x = normal(rng);
  for (auto& x : g) x = normal(rng);
  for (auto& x : a) x = share(rng) < zero_share ? static_cast<int32_t>(n) : slot(rng);
  RunCase(c, a, g, threads, late);
  if (!count) return;
  const size_t where[] = {0, count / 2, count - 1};
  const int32_t bad[] = {static_cast<int32_t>(n) + 1, -1, INT32_MIN};
  for (int k = 0; k < 3; ++k) {
    std::vector<int32_t> damaged = a;
    damaged[where[k]] = bad[k];
    if (k == 0 && count > 2) damaged[count - 1] = -5;  // a later bad one: the first is reported
    RunCase(c, damaged, g, threads, late);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bool threads_only = argc > 1 && std::strcmp(argv[1], "threads") == 0;
  if (argc > 1 && !threads_only && std::strcmp(argv[1], "all") != 0) {
    std::fprintf(stderr, "usage: %s [all|threads]\n", argv[0]);
    return 2;
  }
  std::mt19937 rng(44);
  // 16: the gather's vector width; 1,024: the sums' blocks; 8,192: a part; 65,536: the two-thread
  // minimum; n + 1 <= 48: the AVX-512 register-table gather (when the CPU has AVX-512).
  const std::vector<size_t> all_counts = {0,    1,    15,   16,   17,    1023,  1024,
                                          1025, 8191, 8192, 8193, 65536, 70001, 262145};
  const std::vector<size_t> thread_counts = {65536, 70001, 262145};
  const std::vector<uint32_t> all_ns = {0, 1, 4, 32, 47, 48, 49, 4096};
  const std::vector<uint32_t> thread_ns = {4, 47, 300};
  for (size_t count : threads_only ? thread_counts : all_counts) {
    for (uint32_t n : threads_only ? thread_ns : all_ns) {
      for (double zero_share : {0.0, 0.9}) {
        if (!threads_only) Cases(count, n, zero_share, 1, false, rng);
        Cases(count, n, zero_share, 2, false, rng);
        Cases(count, n, zero_share, 2, true, rng);
      }
    }
  }
  std::printf("test_centroids_core %s: %s\n", threads_only ? "threads" : "all",
              failures ? "FAILED" : "ok");
  return failures ? 1 : 0;
}
