// Output allocation shared by every device implementation. In test mode ("poisoned outputs") new
// outputs are filled with NaN first, so any element a kernel fails to write shows up in the tests.
#pragma once

#include <ATen/ATen.h>

#include <atomic>
#include <limits>

namespace amgp {

std::atomic<bool>& poison_outputs();  // defined in csrc/ops.cpp

inline at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor out = at::empty(sizes, options);
  if (poison_outputs().load(std::memory_order_relaxed))
    out.fill_(std::numeric_limits<double>::quiet_NaN());
  return out;
}

}  // namespace amgp
