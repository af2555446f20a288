// Zeros in inactive blocks, as a block-level device routine: used by the standalone
// zero_inactive_kernel and by the extra CTAs of the GEMM launch (same-launch zero fill).
#pragma once

#include "device_utils.cuh"

namespace amgp {
namespace cuda {

// One work item: kZeroThreads column units x kZeroRowsPerItem rows. Row activity is looked up
// once per row per item (shared memory), column activity once per thread.
template <typename Unit>
__device__ void zero_fill_item(const ZeroArgs& a, int64_t item, bool* row_active) {
  const int64_t col_groups = (a.units_per_row + kZeroThreads - 1) / kZeroThreads;
  const int64_t unit = (item % col_groups) * kZeroThreads + threadIdx.x;
  const int64_t r0 = (item / col_groups) * kZeroRowsPerItem;
  const int elems_per_unit = static_cast<int>(sizeof(Unit)) / a.elem_bytes;
  if (!a.all_rows_active) {
    __syncthreads();  // the previous item's readers are done
    if (threadIdx.x < kZeroRowsPerItem) {
      const int64_t r = r0 + threadIdx.x;
      row_active[threadIdx.x] = r < a.rows && contains_block(a.row_blocks, a.n_row_blocks, r / a.row_block_size);
    }
    __syncthreads();
  }
  if (unit >= a.units_per_row) return;
  // A unit never straddles blocks: 16-byte units are used only when block_size is a multiple.
  const bool col_active =
      a.all_cols_active || contains_block(a.col_blocks, a.n_col_blocks, unit * elems_per_unit / a.col_block_size);
  char* base = static_cast<char*>(a.data) + unit * static_cast<int64_t>(sizeof(Unit));
  const int64_t row_bytes = a.ld * a.elem_bytes;
  const int64_t r_end = min(a.rows, r0 + kZeroRowsPerItem);
  for (int64_t r = r0; r < r_end; ++r) {
    const bool active = col_active && (a.all_rows_active || row_active[r - r0]);
    if (!active) *reinterpret_cast<Unit*>(base + r * row_bytes) = Unit{};
  }
}

// Work items cta, cta + n_ctas, ... of a planned ZeroArgs (blockDim.x == kZeroThreads).
__device__ __forceinline__ void zero_fill_ctas(const ZeroArgs& a, int64_t cta, int64_t n_ctas) {
  __shared__ bool row_active[kZeroRowsPerItem];
  for (int64_t item = cta; item < a.work_items; item += n_ctas) {
    if (a.unit_bytes == 16) zero_fill_item<uint4>(a, item, row_active);
    else if (a.unit_bytes == 2) zero_fill_item<uint16_t>(a, item, row_active);
    else zero_fill_item<uint32_t>(a, item, row_active);
  }
}

}  // namespace cuda
}  // namespace amgp
