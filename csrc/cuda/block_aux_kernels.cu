// Memory-bound helpers around the block GEMM: zeros in inactive blocks, the ReLU-backward /
// gather pass over grad_y (which also yields the bias gradient's column sums), and the final
// bias-gradient reduction. All are launched on the caller's stream and read block lists on the
// device only.
#include <cuda_runtime.h>

#include <algorithm>

#include "device_utils.cuh"

namespace amgp {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kZeroRowsPerCta = 16;

// Each thread owns one column unit (16 bytes, or one element when 16-byte stores are unsafe)
// and walks kZeroRowsPerCta rows per step; row activity is looked up once per row per CTA.
template <typename Unit>
__global__ void zero_inactive_kernel(const ZeroArgs a, int64_t units_per_row, int elems_per_unit) {
  __shared__ bool row_active[kZeroRowsPerCta];
  const int64_t unit = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const bool in_range = unit < units_per_row;
  bool col_active = true;
  if (in_range && !a.all_cols_active)
    col_active = contains_block(a.col_blocks, a.n_col_blocks, unit * elems_per_unit / a.col_block_size);
  char* base = static_cast<char*>(a.data) + unit * static_cast<int64_t>(sizeof(Unit));
  const int64_t row_bytes = a.ld * a.elem_bytes;

  for (int64_t r0 = blockIdx.y * static_cast<int64_t>(kZeroRowsPerCta); r0 < a.rows;
       r0 += static_cast<int64_t>(gridDim.y) * kZeroRowsPerCta) {
    if (!a.all_rows_active) {
      __syncthreads();  // previous step's readers are done
      if (threadIdx.x < kZeroRowsPerCta) {
        const int64_t r = r0 + threadIdx.x;
        row_active[threadIdx.x] =
            r < a.rows && contains_block(a.row_blocks, a.n_row_blocks, r / a.row_block_size);
      }
      __syncthreads();
    }
    if (!in_range) continue;
    const int64_t r_end = min(a.rows, r0 + kZeroRowsPerCta);
    for (int64_t r = r0; r < r_end; ++r) {
      const bool active = col_active && (a.all_rows_active || row_active[r - r0]);
      if (!active) *reinterpret_cast<Unit*>(base + r * row_bytes) = Unit{};
    }
  }
}

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

cudaError_t launch_zero_inactive(const ZeroArgs& a, cudaStream_t stream) {
  if (a.rows == 0 || a.cols == 0 || (a.all_rows_active && a.all_cols_active)) return cudaSuccess;
  const int vec = 16 / a.elem_bytes;
  const bool vectorized = reinterpret_cast<uintptr_t>(a.data) % 16 == 0 && a.cols % vec == 0 &&
                          a.ld % vec == 0 && (a.all_cols_active || a.col_block_size % vec == 0);
  const int64_t units = vectorized ? a.cols / vec : a.cols;
  const int64_t row_steps = (a.rows + kZeroRowsPerCta - 1) / kZeroRowsPerCta;
  const dim3 grid(ceil_div_grid(units, kThreads), static_cast<unsigned>(std::min<int64_t>(row_steps, 65535)));
  if (grid.x > INT32_MAX) return cudaErrorInvalidValue;
  if (vectorized)
    zero_inactive_kernel<uint4><<<grid, kThreads, 0, stream>>>(a, units, vec);
  else if (a.elem_bytes == 2)
    zero_inactive_kernel<uint16_t><<<grid, kThreads, 0, stream>>>(a, units, 1);
  else
    zero_inactive_kernel<uint32_t><<<grid, kThreads, 0, stream>>>(a, units, 1);
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
