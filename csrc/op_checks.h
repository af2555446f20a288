// Device-independent argument checks of amgp::block_linear(_backward), shared by every device
// implementation, so a direct torch.ops.amgp call with bad arguments raises instead of crashing.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace amgp {

// True for "relu", false for "none"; anything else is an error naming the argument.
inline bool is_relu(c10::string_view activation, const char* op) {
  if (activation == "none") return false;
  TORCH_CHECK(activation == "relu", op, ": activation must be 'none' or 'relu', got '", std::string(activation),
              "'");
  return true;
}

// Everything but x's width when x is packed (that needs the active channel count: check_width).
inline void check_operands(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                           int64_t block_size, bool packed_in, const char* op) {
  TORCH_CHECK(block_size > 0, op, ": block_size must be > 0, got ", block_size);
  TORCH_CHECK(x.dim() >= 1, op, ": x must have at least 1 dimension");
  TORCH_CHECK(weight.dim() == 2, op, ": weight must be 2-D, got ", weight.dim(), "-D");
  TORCH_CHECK(packed_in || x.size(-1) == weight.size(1), op, ": x.shape[-1] (", x.size(-1),
              ") must equal weight.shape[1] (", weight.size(1), ")");
  TORCH_CHECK(weight.scalar_type() == x.scalar_type(), op, ": weight dtype ", weight.scalar_type(),
              " differs from x dtype ", x.scalar_type());
  TORCH_CHECK(weight.device() == x.device(), op, ": weight is on ", weight.device(), " but x is on ", x.device());
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(0), op, ": bias must have shape (",
                weight.size(0), ",), got ", bias->sizes());
    TORCH_CHECK(bias->scalar_type() == x.scalar_type(), op, ": bias dtype ", bias->scalar_type(),
                " differs from x dtype ", x.scalar_type());
    TORCH_CHECK(bias->device() == x.device(), op, ": bias is on ", bias->device(), " but x is on ", x.device());
  }
}

// The last dimension of an activation (x, y or grad_y) in its layout: `active` channels when packed.
inline void check_width(int64_t width, int64_t features, int64_t active, bool packed, const char* name,
                        const char* op) {
  if (packed) {
    TORCH_CHECK(width == active, op, ": ", name, " is packed, so ", name, ".shape[-1] (", width,
                ") must equal the number of active channels (", active, ")");
  } else {
    TORCH_CHECK(width == features, op, ": ", name, ".shape[-1] (", width, ") must equal ", features);
  }
}

}  // namespace amgp
