// Memory-bound helpers around the block GEMM: zeros in inactive blocks, the ReLU-backward /
// gather pass over grad_y (which also yields the bias gradient's column sums), and the final
// bias-gradient reduction. All are launched on the caller's stream and read block lists on the
// device only.
#include <cuda_runtime.h>

#include <algorithm>

#include "device_utils.cuh"
#include "zero_fill.cuh"

namespace amgp {
namespace cuda {
namespace {

constexpr int kThreads = 256;

__global__ void zero_inactive_kernel(const ZeroArgs a) { zero_fill_ctas(a, blockIdx.x, gridDim.x); }

template <typename T>
__global__ void grad_prep_kernel(const GradPrepArgs a) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (j >= a.width) return;
  const int32_t c = map_channel(a.cols, j);  // -1: tail or padding slot, written as zero
  const T* dy = static_cast<const T*>(a.dy);
  const T* y = static_cast<const T*>(a.y);
  T* dyc = static_cast<T*>(a.dyc);
  const int64_t r_begin = blockIdx.y * a.rows_per_split;
  const int64_t r_end = min(a.rows, r_begin + a.rows_per_split);
  float sum = 0.f;
#pragma unroll 4
  for (int64_t r = r_begin; r < r_end; ++r) {
    float v = 0.f;
    if (c >= 0) {
      v = to_float(dy[r * a.ld_dy + c]);
      // As threshold_backward: the gradient passes where !(y <= 0), NaN included.
      if (y != nullptr && to_float(y[r * a.ld_y + c]) <= 0.f) v = 0.f;
    }
    if (dyc != nullptr) dyc[r * a.width + j] = from_float<T>(v);  // exact: v came from a T
    sum += v;
  }
  if (a.partial != nullptr) a.partial[blockIdx.y * static_cast<int64_t>(a.width) + j] = sum;
}

template <typename T>
__global__ void bias_grad_finish_kernel(const BiasGradArgs a) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int32_t c = map_channel(a.cols, j);
  if (c < 0) return;
  float sum = 0.f;
  for (int z = 0; z < a.splits; ++z) sum += a.partial[static_cast<int64_t>(z) * a.width + j];
  static_cast<T*>(a.db)[c] = from_float<T>(sum);
}

unsigned ceil_div_grid(int64_t n, int64_t d) { return static_cast<unsigned>((n + d - 1) / d); }

}  // namespace

cudaError_t launch_zero_inactive(const ZeroArgs& args, cudaStream_t stream) {
  ZeroArgs a = args;
  plan_zero_fill(a);
  if (a.work_items == 0) return cudaSuccess;
  const unsigned ctas = static_cast<unsigned>(std::min<int64_t>(a.work_items, 8192));
  zero_inactive_kernel<<<ctas, kZeroThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t launch_grad_prep(const GradPrepArgs& a, cudaStream_t stream) {
  if (a.width == 0) return cudaSuccess;
  if (a.splits < 1 || a.splits > 65535) return cudaErrorInvalidValue;
  return dispatch_dtype(a.dtype, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    grad_prep_kernel<T><<<dim3(ceil_div_grid(a.width, kThreads), a.splits), kThreads, 0, stream>>>(a);
    return cudaGetLastError();
  });
}

cudaError_t launch_bias_grad_finish(const BiasGradArgs& a, cudaStream_t stream) {
  if (a.width == 0) return cudaSuccess;
  return dispatch_dtype(a.dtype, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    bias_grad_finish_kernel<T><<<ceil_div_grid(a.width, kThreads), kThreads, 0, stream>>>(a);
    return cudaGetLastError();
  });
}

}  // namespace cuda
}  // namespace amgp
