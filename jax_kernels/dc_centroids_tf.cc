// TensorFlow CPU ops for the clustered fit step on the TF backend (issue 16), loaded with the
// public tf.load_op_library by dc_keras/train/_tf_ops.py; built into dc_keras/_native/
// libdc_tf_ops.so by `make tf-ops` (part of `make install`). Without the library the step uses
// XLA-compiled tf.gather / tf.math.unsorted_segment_sum (TF's own kernels for tensors of at most
// 4,096 entries), with bit-identical results.
//
// DcCentroidGather(centroids[n], assignments[...]) -> shared[...]:
//     centroids[assignments], index n being the constant-zero slot
// DcCentroidSums(grads[...], assignments[...], n) -> sums[n]:
//     each centroid's members' gradients summed in dc_keras's part order (dc_centroids_core.h: up
//     to 8 parts, each added one by one in index order from +0.0, then added in part order)
// Both refuse an index outside 0..n with an InvalidArgument error naming it. The loops are the JAX
// FFI kernels' (dc_centroids_core.h): one implementation for both backends. With split=true a
// large gather (its chunks) or sums (its parts) is shared between the calling thread and one task
// on the device's intra-op thread pool, as on JAX (same bits either way); the training step leaves
// it false (one thread): on a loaded
// 2-core machine the split cost more than it saved (LeNet-300-100 fc1, benchmarks/
// bench_centroid_ops.py: ~60-95 us on one thread vs ~100-145 us split, wall and CPU alike), and
// TF's executor already runs the step's independent ops side by side.
#include <cstdint>
#include <utility>

#include "dc_centroids_core.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/lib/core/threadpool.h"

namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::shape_inference::InferenceContext;

class DcCentroidGatherOp : public OpKernel {
 public:
  explicit DcCentroidGatherOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("split", &split_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& centroids = ctx->input(0);
    const Tensor& idx = ctx->input(1);
    OP_REQUIRES(ctx, centroids.dims() == 1,
                absl::InvalidArgumentError("dc_keras centroid gather: the centroids must be a "
                                           "vector, got shape " +
                                           centroids.shape().DebugString()));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, idx.shape(), &out));
    const uint32_t n = static_cast<uint32_t>(centroids.NumElements());
    const int32_t* a = idx.flat<int32_t>().data();
    auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
    tensorflow::thread::ThreadPool* pool = workers ? workers->workers : nullptr;
    const int threads = split_ && pool ? pool->NumThreads() : 1;
    int64_t bad = dc_centroids::Gather(centroids.flat<float>().data(), n, a,
                                       out->flat<float>().data(), idx.NumElements(), threads,
                                       [pool](auto task) { pool->Schedule(std::move(task)); });
    OP_REQUIRES(ctx, bad < 0,
                absl::InvalidArgumentError(dc_centroids::OutOfRangeMessage(a[bad], n)));
  }

 private:
  bool split_ = false;
};

class DcCentroidSumsOp : public OpKernel {
 public:
  explicit DcCentroidSumsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("n", &n_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("split", &split_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& grads = ctx->input(0);
    const Tensor& idx = ctx->input(1);
    const size_t count = idx.NumElements();
    OP_REQUIRES(
        ctx, static_cast<size_t>(grads.NumElements()) == count,
        absl::InvalidArgumentError(dc_centroids::CountMismatchMessage(grads.NumElements(), count)));
    Tensor* sums = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, tensorflow::TensorShape({n_}), &sums));
    const int32_t* a = idx.flat<int32_t>().data();
    const uint32_t n = static_cast<uint32_t>(n_);
    auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
    tensorflow::thread::ThreadPool* pool = workers ? workers->workers : nullptr;
    const int threads = split_ && pool ? pool->NumThreads() : 1;
    int64_t bad =
        dc_centroids::Sums(grads.flat<float>().data(), a, count, sums->flat<float>().data(), n,
                           threads, [pool](auto task) { pool->Schedule(std::move(task)); });
    OP_REQUIRES(ctx, bad < 0,
                absl::InvalidArgumentError(dc_centroids::OutOfRangeMessage(a[bad], n)));
  }

 private:
  int64_t n_ = 0;
  bool split_ = false;
};

}  // namespace

REGISTER_OP("DcCentroidGather")
    .Input("centroids: float")
    .Input("assignments: int32")
    .Attr("split: bool = false")
    .Output("shared: float")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(1));
      return absl::OkStatus();
    });

REGISTER_OP("DcCentroidSums")
    .Input("grads: float")
    .Input("assignments: int32")
    .Attr("n: int >= 1")
    .Attr("split: bool = false")
    .Output("sums: float")
    .SetShapeFn([](InferenceContext* c) {
      int64_t n = 0;
      TF_RETURN_IF_ERROR(c->GetAttr("n", &n));
      c->set_output(0, c->MakeShape({n}));
      return absl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("DcCentroidGather").Device(tensorflow::DEVICE_CPU),
                        DcCentroidGatherOp);
REGISTER_KERNEL_BUILDER(Name("DcCentroidSums").Device(tensorflow::DEVICE_CPU), DcCentroidSumsOp);
