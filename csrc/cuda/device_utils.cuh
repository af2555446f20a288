// Device helpers shared by the CUDA kernels: slot -> channel maps, block lookups, conversions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernel_args.h"

namespace amgp {
namespace cuda {

// Real channel of slot j, or -1 (past the slots, or in the missing part of a short last block).
__device__ __forceinline__ int32_t map_channel(const ChannelMap& map, int64_t j) {
  if (j < 0 || j >= map.extent) return -1;
  if (map.blocks == nullptr) return static_cast<int32_t>(j);
  const int32_t slot = static_cast<int32_t>(j);
  int32_t block, offset;
  if (map.shift >= 0) {
    block = slot >> map.shift;
    offset = slot & (map.block_size - 1);
  } else {
    block = slot / map.block_size;
    offset = slot - block * map.block_size;
  }
  const int64_t channel = static_cast<int64_t>(__ldg(map.blocks + block)) * map.block_size + offset;
  return channel < map.features ? static_cast<int32_t>(channel) : -1;
}

// Whether `block` is in the sorted list blocks[0, n).
__device__ __forceinline__ bool contains_block(const int32_t* blocks, int32_t n, int64_t block) {
  int32_t lo = 0, hi = n;
  while (lo < hi) {
    const int32_t mid = (lo + hi) >> 1;
    if (__ldg(blocks + mid) < block) lo = mid + 1;
    else hi = mid;
  }
  return lo < n && __ldg(blocks + lo) == block;
}

template <typename T> __device__ __forceinline__ float to_float(T v);
template <> __device__ __forceinline__ float to_float<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_float<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// ReLU as the CPU kernel and torch.relu: NaN passes through.
__device__ __forceinline__ float relu_keep_nan(float v) { return (v > 0.f || v != v) ? v : 0.f; }

// Calls f with the element type for a DType (the only dispatch in the torch-free code).
template <typename F>
__host__ cudaError_t dispatch_dtype(DType t, F&& f) {
  switch (t) {
    case DType::kFloat32: return f(float{});
    case DType::kFloat16: return f(__half{});
    case DType::kBFloat16: return f(__nv_bfloat16{});
  }
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace amgp
