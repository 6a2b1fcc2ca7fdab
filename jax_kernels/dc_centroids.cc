// XLA CPU kernels for the clustered fit step on the JAX backend (issue 16), called through JAX's
// public FFI (jax.ffi.ffi_call) by dc_keras/train/_jax_ffi.py; built into
// dc_keras/_native/libdc_jax_ffi.so by `make jax-ffi` (part of `make install`). Without the
// library dc_keras uses lax.gather and XLA's scatter-add instead, with bit-identical results.
//
// DcCentroidGather:  out[i] = idx[i] < n ? centroids[idx[i]] : 0   (idx[i] == n: the zero slot)
// DcCentroidSums:    sums[j] = sum of g[i] over i with idx[i] == j, j < n, in dc_keras's part order
//                    (dc_centroids_core.h: up to 8 parts, each in increasing i from +0.0, then added
//                    in part order), the parts shared with one helper thread of XLA's pool with split
// Both refuse an index outside 0..n (an error naming it, never a read outside the table), and a
// result (gather) or gradient (sums) whose size is not the assignments' (a direct ffi_call). The
// loops live in dc_centroids_core.h, shared with the TensorFlow ops (dc_centroids_tf.cc); costs
// there. Compared with XLA's own ops on a LeNet-300-100 fc1, each timed alone: lax.gather ~220 us
// vs ~30 us on two threads; XLA's scatter-add ~220-260 us vs ~120-150 us on one thread, shared
// with a second thread when large (90 % of the entries in the zero slot, as after pruning: ~750 us
// vs ~60-90 us). The `split` attribute (DC_KERAS_JAX_FFI_SPLIT, default off) turns the sharing on.
#include <cstdint>
#include <string>
#include <utility>

#include "dc_centroids_core.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

ffi::Error OutOfRange(int64_t bad, int64_t n) {
  return ffi::Error::InvalidArgument(dc_centroids::OutOfRangeMessage(bad, n));
}

ffi::Error GatherImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> centroids,
                      ffi::Buffer<ffi::S32> idx, ffi::ResultBuffer<ffi::F32> out, bool split) {
  if (out->element_count() != idx.element_count()) {  // a direct ffi_call's result shape
    return ffi::Error::InvalidArgument("dc_keras centroid gather: a result of " +
                                       std::to_string(out->element_count()) + " entries for " +
                                       std::to_string(idx.element_count()) +
                                       " assignments; give it the assignments' shape");
  }
  const uint32_t n = static_cast<uint32_t>(centroids.element_count());
  int64_t bad = dc_centroids::Gather(centroids.typed_data(), n, idx.typed_data(), out->typed_data(),
                                     idx.element_count(), split ? pool.num_threads() : 1,
                                     [&pool](auto task) { pool.Schedule(std::move(task)); });
  return bad < 0 ? ffi::Error::Success() : OutOfRange(idx.typed_data()[bad], n);
}

ffi::Error SumsImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> grads, ffi::Buffer<ffi::S32> idx,
                    ffi::ResultBuffer<ffi::F32> sums, bool split) {
  const uint32_t n = static_cast<uint32_t>(sums->element_count());
  const size_t count = idx.element_count();
  if (grads.element_count() != count) {
    return ffi::Error::InvalidArgument(
        dc_centroids::CountMismatchMessage(grads.element_count(), count));
  }
  int64_t bad = dc_centroids::Sums(grads.typed_data(), idx.typed_data(), count, sums->typed_data(),
                                   n, split ? pool.num_threads() : 1,
                                   [&pool](auto task) { pool.Schedule(std::move(task)); });
  return bad < 0 ? ffi::Error::Success() : OutOfRange(idx.typed_data()[bad], n);
}

}  // namespace

// The two handlers: the library's entry points (built with -fvisibility=hidden).
extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* DcCentroidGather(
    XLA_FFI_CallFrame* frame);
extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* DcCentroidSums(
    XLA_FFI_CallFrame* frame);

XLA_FFI_DEFINE_HANDLER_SYMBOL(DcCentroidGather, GatherImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()        // XLA's intra-op threads
                                  .Arg<ffi::Buffer<ffi::F32>>()  // centroids (n,)
                                  .Arg<ffi::Buffer<ffi::S32>>()  // assignments, any shape
                                  .Ret<ffi::Buffer<ffi::F32>>()  // shared weights, their shape
                                  .Attr<bool>("split")  // share a large one with a pool thread
);

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    DcCentroidSums, SumsImpl,
    ffi::Ffi::Bind()
        .Ctx<ffi::ThreadPool>()        // XLA's intra-op threads
        .Arg<ffi::Buffer<ffi::F32>>()  // upstream gradient, the assignments' shape
        .Arg<ffi::Buffer<ffi::S32>>()  // assignments
        .Ret<ffi::Buffer<ffi::F32>>()  // per-centroid sums (n,)
        .Attr<bool>("split")           // share the parts of a large one with a pool thread
);
