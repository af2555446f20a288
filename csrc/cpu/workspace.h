// Reusable scratch buffers for packed operands. Fresh multi-MB allocations are returned to the OS
// on free, so every call would pay page faults on first touch (about as much as the copies
// themselves); a grow-only buffer per thread and slot pays them once.
#pragma once

#include <ATen/ATen.h>

#include <array>

namespace amgp {

enum class Scratch { kInput, kWeight, kOutput, kGrad, kCount };

// A (rows, cols) tensor of `options`' dtype backed by this thread's buffer for `slot`. Valid until
// the next call with the same slot on this thread: use only for intermediates, never for results.
inline at::Tensor scratch(Scratch slot, int64_t rows, int64_t cols, const at::TensorOptions& options) {
  thread_local std::array<at::Tensor, static_cast<size_t>(Scratch::kCount)> buffers;
  at::Tensor& buffer = buffers[static_cast<size_t>(slot)];
  const int64_t bytes = rows * cols * static_cast<int64_t>(c10::elementSize(options.dtype().toScalarType()));
  if (!buffer.defined() || buffer.numel() < bytes) buffer = at::empty({std::max<int64_t>(bytes, 1)}, at::kByte);
  // A view made without dispatched ops (narrow + view + view cost ~3 us per call at small batch); the
  // buffer outlives it (thread_local), and nothing but this thread's next call reuses its bytes.
  return at::from_blob(buffer.mutable_data_ptr(), {rows, cols}, options.device(at::kCPU));
}

}  // namespace amgp
