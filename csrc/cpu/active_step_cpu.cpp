// CPU optimizer steps over the active blocks of a SparseLinear parameter (docs/design.md, "Block-sparse
// optimizer steps"). Pruning zeroes inactive weights, their gradients and optimizer state, so for SGD, Adam(W)
// and Adagrad the update of an inactive entry is exactly a no-op: these kernels touch active entries only,
// in place, one pass over parameter, gradient and state. The formulas are torch.optim's single-tensor ones,
// op by op (scalars rounded to the parameter's dtype as ATen's elementwise ops do).
// Only ATen core headers here: torch/extension.h would cost a minute of compile time for this file.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "block_runs.h"

namespace amgp {
namespace {

using at::Tensor;

// The active part of a weight (rows = output channels, columns = input channels) or of a bias (one column).
struct ActiveRegion {
  std::vector<int64_t> rows;  // active output channels
  BlockRuns cols;             // runs of active input channels
  int64_t width = 1;          // row length of the parameter
};

ActiveRegion active_region(const Tensor& param, const c10::optional<Tensor>& out_blocks,
                           const c10::optional<Tensor>& in_blocks, int64_t block_size, const char* op) {
  TORCH_CHECK(block_size > 0, op, ": block_size must be > 0, got ", block_size);
  TORCH_CHECK(param.dim() == 1 || param.dim() == 2, op, ": param must be 1-D (bias) or 2-D (weight), got ",
              param.dim(), "-D");
  TORCH_CHECK(param.device().is_cpu(), op, ": param must be on the CPU, got ", param.device());
  TORCH_CHECK(param.is_contiguous(), op, ": param must be contiguous");
  const bool is_bias = param.dim() == 1;
  TORCH_CHECK(!is_bias || !(in_blocks.has_value() && in_blocks->defined()), op,
              ": in_blocks must be None for a 1-D param (a bias has no input channels)");
  ActiveRegion region;
  region.width = is_bias ? 1 : param.size(1);
  for (const Run& run : block_runs(out_blocks, param.size(0), block_size, "out_blocks", op).runs)
    for (int64_t r = run.start; r < run.start + run.length; ++r) region.rows.push_back(r);
  region.cols = block_runs(in_blocks, region.width, block_size, "in_blocks", op);
  return region;
}

void check_like(const Tensor& param, const Tensor& other, const char* name, const char* op) {
  TORCH_CHECK(other.sizes() == param.sizes(), op, ": ", name, " must have param's shape ", param.sizes(), ", got ",
              other.sizes());
  TORCH_CHECK(other.scalar_type() == param.scalar_type(), op, ": ", name, " dtype ", other.scalar_type(),
              " differs from param dtype ", param.scalar_type());
  TORCH_CHECK(other.device() == param.device(), op, ": ", name, " is on ", other.device(), ", param on ",
              param.device());
  TORCH_CHECK(other.is_contiguous(), op, ": ", name, " must be contiguous");
}

// Calls f(offset, length) for every contiguous active stretch of the parameter, rows in parallel.
template <typename F>
void for_active(const ActiveRegion& region, const F& f) {
  const int64_t rows = static_cast<int64_t>(region.rows.size());
  const int64_t row_cost = std::max<int64_t>(region.cols.channels, 1);
  const int64_t grain = std::max<int64_t>(1, 16384 / row_cost);  // ~16K elements per task
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t base = region.rows[i] * region.width;
      for (const Run& run : region.cols.runs) f(base + run.start, run.length);
    }
  });
}

void active_sgd_step_cpu(const Tensor& param, const Tensor& grad, const c10::optional<Tensor>& momentum_buffer,
                         const c10::optional<Tensor>& out_blocks, const c10::optional<Tensor>& in_blocks,
                         int64_t block_size, double lr, double weight_decay, double momentum, double dampening,
                         bool nesterov, bool first_step) {
  const char* op = "amgp.active_sgd_step_";
  const ActiveRegion region = active_region(param, out_blocks, in_blocks, block_size, op);
  check_like(param, grad, "grad", op);
  const bool has_buffer = momentum != 0;
  TORCH_CHECK(!has_buffer || (momentum_buffer.has_value() && momentum_buffer->defined()), op,
              ": momentum_buffer is needed when momentum != 0");
  if (has_buffer) check_like(param, *momentum_buffer, "momentum_buffer", op);
  AT_DISPATCH_FLOATING_TYPES(param.scalar_type(), "active_sgd_step_", [&] {
    using T = scalar_t;
    T* p = param.data_ptr<T>();
    const T* g = grad.const_data_ptr<T>();
    T* b = has_buffer ? momentum_buffer->data_ptr<T>() : nullptr;
    const T wd = weight_decay, mom = momentum, keep = 1 - dampening, neg_lr = -lr;
    for_active(region, [&](int64_t offset, int64_t n) {
      for (int64_t k = offset; k < offset + n; ++k) {
        T d = weight_decay != 0 ? g[k] + wd * p[k] : g[k];
        if (has_buffer) {
          b[k] = first_step ? d : b[k] * mom + keep * d;  // the first step copies d (torch.optim's clone)
          d = nesterov ? d + mom * b[k] : b[k];
        }
        p[k] = p[k] + neg_lr * d;
      }
    });
  });
}

void active_adam_step_cpu(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                          const c10::optional<Tensor>& out_blocks, const c10::optional<Tensor>& in_blocks,
                          int64_t block_size, double beta1, double beta2, double eps, double weight_decay,
                          double decay_factor, double step_size, double bias_correction2_sqrt) {
  const char* op = "amgp.active_adam_step_";
  const ActiveRegion region = active_region(param, out_blocks, in_blocks, block_size, op);
  check_like(param, grad, "grad", op);
  check_like(param, exp_avg, "exp_avg", op);
  check_like(param, exp_avg_sq, "exp_avg_sq", op);
  AT_DISPATCH_FLOATING_TYPES(param.scalar_type(), "active_adam_step_", [&] {
    using T = scalar_t;
    T* p = param.data_ptr<T>();
    const T* g = grad.const_data_ptr<T>();
    T* m = exp_avg.data_ptr<T>();
    T* v = exp_avg_sq.data_ptr<T>();
    // weight_decay: L2 decay added to the gradient (Adam); decay_factor: 1 - lr * weight_decay for the
    // decoupled decay of AdamW (then weight_decay is 0), else 1.
    const T wd = weight_decay, decay = decay_factor, w1 = 1 - beta1, b2 = beta2, w2 = 1 - beta2;
    const T e = eps, neg_step = -step_size, bc2 = bias_correction2_sqrt;
    const bool l2 = weight_decay != 0, decoupled = decay_factor != 1;
    for_active(region, [&](int64_t offset, int64_t n) {
      for (int64_t k = offset; k < offset + n; ++k) {
        if (decoupled) p[k] = p[k] * decay;
        const T d = l2 ? g[k] + wd * p[k] : g[k];
        // torch.lerp's two forms (weight < 0.5 or not), as exp_avg.lerp_(d, 1 - beta1).
        m[k] = std::abs(w1) < T(0.5) ? m[k] + w1 * (d - m[k]) : d - (d - m[k]) * (1 - w1);
        v[k] = v[k] * b2 + w2 * d * d;
        const T denom = std::sqrt(v[k]) / bc2 + e;
        p[k] = p[k] + neg_step * (m[k] / denom);
      }
    });
  });
}

void active_adagrad_step_cpu(const Tensor& param, const Tensor& grad, const Tensor& state_sum,
                             const c10::optional<Tensor>& out_blocks, const c10::optional<Tensor>& in_blocks,
                             int64_t block_size, double clr, double weight_decay, double eps) {
  const char* op = "amgp.active_adagrad_step_";
  const ActiveRegion region = active_region(param, out_blocks, in_blocks, block_size, op);
  check_like(param, grad, "grad", op);
  check_like(param, state_sum, "state_sum", op);
  AT_DISPATCH_FLOATING_TYPES(param.scalar_type(), "active_adagrad_step_", [&] {
    using T = scalar_t;
    T* p = param.data_ptr<T>();
    const T* g = grad.const_data_ptr<T>();
    T* s = state_sum.data_ptr<T>();
    const T wd = weight_decay, e = eps, neg_clr = -clr;
    for_active(region, [&](int64_t offset, int64_t n) {
      for (int64_t k = offset; k < offset + n; ++k) {
        const T d = weight_decay != 0 ? g[k] + wd * p[k] : g[k];
        s[k] = s[k] + d * d;
        p[k] = p[k] + neg_clr * (d / (std::sqrt(s[k]) + e));
      }
    });
  });
}

}  // namespace
}  // namespace amgp

TORCH_LIBRARY_IMPL(amgp, CPU, m) {
  m.impl("active_sgd_step_", &amgp::active_sgd_step_cpu);
  m.impl("active_adam_step_", &amgp::active_adam_step_cpu);
  m.impl("active_adagrad_step_", &amgp::active_adagrad_step_cpu);
}
