// Torch-free interface between the CUDA kernels (block_gemm.cu, block_aux_kernels.cu) and the
// torch glue (block_linear_cuda.cpp): plain structs of raw device pointers, launched on a stream.
//
// "Compacted" coordinates: a channel dimension with a list of active blocks is seen as
// n_active * block_size consecutive slots; slot j is channel blocks[j / bs] * bs + j % bs, which
// is a real channel only when it is < features (the last block may be short). Kernels walk
// slots, so no expanded channel table is built and nothing is read back to the host.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace amgp {
namespace cuda {

enum class DType { kFloat32, kFloat16, kBFloat16 };

inline int dtype_bytes(DType t) { return t == DType::kFloat32 ? 4 : 2; }

// Slot j -> real channel (or -1 when j is out of range or lands past the features).
struct ChannelMap {
  const int32_t* blocks = nullptr;  // sorted active blocks on the device; nullptr = identity
  int32_t extent = 0;               // number of slots
  int32_t features = 0;             // real channels
  int32_t block_size = 1;           // >= 1, at most max(features, 1)
  int32_t shift = -1;               // log2(block_size) when a power of two, else -1
};

// One GEMM operand: element (r, k) of the logical (rows x K) operand is at
// data[rows(r) * ld + ks(k)] when k_contiguous, else at data[ks(k) * ld + rows(r)].
struct Operand {
  const void* data = nullptr;
  int64_t ld = 0;
  ChannelMap rows;
  ChannelMap ks;
  bool k_contiguous = true;
  bool vectorizable = false;  // 16-byte loads are safe (see vector_friendly)
};

// Writes zeros at (r, c) of a rows x cols matrix wherever row r or column c lies in an
// inactive block. A side with all_*_active set has no list; otherwise its list holds the
// n_*_blocks active blocks (possibly none: then the pointer is not read).
struct ZeroArgs {
  void* data = nullptr;
  int elem_bytes = 4;
  int64_t rows = 0, cols = 0, ld = 0;
  bool all_rows_active = true;
  const int32_t* row_blocks = nullptr;
  int32_t n_row_blocks = 0, row_block_size = 1;
  bool all_cols_active = true;
  const int32_t* col_blocks = nullptr;
  int32_t n_col_blocks = 0, col_block_size = 1;
  // Work plan, filled by plan_zero_fill: each work item is 256 column units x 16 rows, a unit
  // being 16 bytes when such stores are safe, else one element.
  int unit_bytes = 0;
  int64_t units_per_row = 0;
  int64_t work_items = 0;  // 0: nothing to write
};

constexpr int kZeroThreads = 256;
constexpr int kZeroRowsPerItem = 16;

inline void plan_zero_fill(ZeroArgs& a) {
  a.work_items = 0;
  if (a.rows <= 0 || a.cols <= 0 || (a.all_rows_active && a.all_cols_active)) return;
  const int vec = 16 / a.elem_bytes;
  const bool vectorized = reinterpret_cast<uintptr_t>(a.data) % 16 == 0 && a.cols % vec == 0 &&
                          a.ld % vec == 0 && (a.all_cols_active || a.col_block_size % vec == 0);
  a.unit_bytes = vectorized ? 16 : a.elem_bytes;
  a.units_per_row = vectorized ? a.cols / vec : a.cols;
  a.work_items = ((a.units_per_row + kZeroThreads - 1) / kZeroThreads) *
                 ((a.rows + kZeroRowsPerItem - 1) / kZeroRowsPerItem);
}

// out[out_rows(m), out_cols(n)] = act(sum_k a(m, k) * b(n, k) + bias[out_cols(n)]) in slot space
// m < m_slots, n < n_slots, k < k_slots. With splits > 1 the K range is cut in `splits` parts
// whose fp32 partial sums go to workspace (splits x m x n) and are reduced by a second kernel.
struct GemmArgs {
  DType dtype = DType::kFloat32;
  int32_t m = 0, n = 0, k = 0;
  Operand a, b;
  void* out = nullptr;
  int64_t ld_out = 0;
  ChannelMap out_rows, out_cols;
  const void* bias = nullptr;  // nullptr = none; element bias_cols(n) is added to output column n
  ChannelMap bias_cols;        // out_cols, except for a packed output (then the real channels)
  bool relu = false;
  int32_t splits = 1;
  float* workspace = nullptr;
  // Zeros of the inactive blocks of out, written by zero_ctas extra CTAs of the same launch
  // (planned with plan_zero_fill; disjoint from the elements the GEMM writes).
  ZeroArgs zero;
  int32_t zero_ctas = 0;
};


// dy' = dy through the ReLU backward (kept where !(y <= 0)), gathered into slot space:
// dyc[r, j] (width columns, zeros in tail/padding slots) and/or per-split column sums
// partial[split, j] (for the bias gradient).
struct GradPrepArgs {
  DType dtype = DType::kFloat32;
  const void* dy = nullptr;
  int64_t ld_dy = 0;
  const void* y = nullptr;  // forward output; nullptr = no activation
  int64_t ld_y = 0;
  int64_t rows = 0;
  ChannelMap cols;
  int32_t width = 0;     // slots written per row (>= cols.extent)
  void* dyc = nullptr;   // rows x width, row stride width; nullptr = not wanted
  float* partial = nullptr;  // splits x width; nullptr = not wanted
  int32_t splits = 1;
  int64_t rows_per_split = 0;
};

// db[cols(j)] = sum over splits of partial[split, j].
struct BiasGradArgs {
  DType dtype = DType::kFloat32;
  const float* partial = nullptr;
  int32_t splits = 1;
  int32_t width = 0;
  ChannelMap cols;
  void* db = nullptr;
};

// Tile sizes the host needs to plan grids and split-K.
constexpr int kGemmTileM = 128;
constexpr int kGemmTileN = 128;
inline int gemm_tile_k(DType t) { return t == DType::kFloat32 ? 16 : 32; }

// True when every 16-byte chunk of the operand's contiguous dimension, starting at a slot that
// is a multiple of the vector width, maps to 16 contiguous, aligned bytes that are either all
// valid or all invalid.
inline bool vector_friendly(const void* data, int64_t ld, const ChannelMap& contiguous, DType t) {
  const int vec = 16 / dtype_bytes(t);
  if (reinterpret_cast<uintptr_t>(data) % 16 != 0 || ld % vec != 0) return false;
  if (contiguous.features % vec != 0) return false;
  if (contiguous.blocks != nullptr) return contiguous.block_size % vec == 0;
  return contiguous.extent % vec == 0;
}

cudaError_t launch_block_gemm(const GemmArgs& args, cudaStream_t stream);
cudaError_t launch_zero_inactive(const ZeroArgs& args, cudaStream_t stream);
cudaError_t launch_grad_prep(const GradPrepArgs& args, cudaStream_t stream);
cudaError_t launch_bias_grad_finish(const BiasGradArgs& args, cudaStream_t stream);

}  // namespace cuda
}  // namespace amgp
