// CPU optimizer steps over the active blocks of a SparseLinear parameter (docs/design.md, "Block-sparse
// optimizer steps"). Pruning zeroes inactive weights, their gradients and optimizer state, so for SGD, Adam(W)
// and Adagrad the update of an inactive entry is exactly a no-op: these kernels touch active entries only,
// in place, one pass over parameter, gradient and state. The formulas are torch.optim's single-tensor ones,
// op by op (scalars rounded to the parameter's dtype as ATen's elementwise ops do).
// Only ATen core headers here: torch/extension.h would cost a minute of compile time for this file.
// The inner loops run over the active entries; each is compiled twice (x86-64-v3: AVX2 + FMA, chosen
// at load time on CPUs that have it, and the baseline), so that they vectorize as ATen's own kernels do, and
// multiply-adds fuse as in ATen's. sqrt vectorizes only without errno, which nothing here reads.
#pragma GCC optimize("no-math-errno")
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

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define AMGP_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define AMGP_VECTOR_CLONES
#endif

// A share of the active part: rows[0..nrows) of a parameter with rows of `width`, columns in `runs`.
struct Span {
  const int64_t* rows;
  int64_t nrows;
  int64_t width;
  const Run* runs;
  int64_t nruns;
};

// Each kernel walks its span itself (one call per parallel task, the loops inlined in its vector clone).
#define AMGP_FOR_ACTIVE(span, offset, n)                                                  \
  for (int64_t row_ = 0; row_ < span.nrows; ++row_)                                       \
    for (int64_t run_ = 0; run_ < span.nruns; ++run_)                                     \
      for (int64_t offset = span.rows[row_] * span.width + span.runs[run_].start,          \
                   n = span.runs[run_].length, once_ = 1; once_; once_ = 0)

template <typename T>
AMGP_VECTOR_CLONES void sgd_plain(Span span, T* p_all, const T* g_all, T neg_lr) {
  AMGP_FOR_ACTIVE(span, offset, n) {
    T* __restrict p = p_all + offset;
    const T* __restrict g = g_all + offset;
    for (int64_t k = 0; k < n; ++k) p[k] = p[k] + neg_lr * g[k];
  }
}

template <typename T>
AMGP_VECTOR_CLONES void sgd_general(Span span, T* p_all, const T* g_all, T* b_all, T wd, T mom, T keep, T neg_lr,
                                    bool decay, bool has_buffer, bool nesterov, bool first_step) {
  AMGP_FOR_ACTIVE(span, offset, n) {
    T* __restrict p = p_all + offset;
    const T* __restrict g = g_all + offset;
    T* __restrict b = has_buffer ? b_all + offset : nullptr;
    for (int64_t k = 0; k < n; ++k) {
      T d = decay ? g[k] + wd * p[k] : g[k];  // not g + 0 * p: an inf weight would give NaN
      if (has_buffer) {
        b[k] = first_step ? d : b[k] * mom + keep * d;  // the first step copies d (torch.optim's clone)
        d = nesterov ? d + mom * b[k] : b[k];
      }
      p[k] = p[k] + neg_lr * d;
    }
  }
}

template <typename T>
AMGP_VECTOR_CLONES void adam_run(Span span, T* p_all, const T* g_all, T* m_all, T* v_all, T wd, T decay, T w1, T b2,
                                 T w2, T e, T neg_step, T bc2, bool decoupled, bool l2, bool small_weight) {
  AMGP_FOR_ACTIVE(span, offset, n) {
    T* __restrict p = p_all + offset;
    const T* __restrict g = g_all + offset;
    T* __restrict m = m_all + offset;
    T* __restrict v = v_all + offset;
    for (int64_t k = 0; k < n; ++k) {
      if (decoupled) p[k] = p[k] * decay;
      const T d = l2 ? g[k] + wd * p[k] : g[k];
      // torch.lerp's two forms (weight < 0.5 or not), as exp_avg.lerp_(d, 1 - beta1).
      m[k] = small_weight ? m[k] + w1 * (d - m[k]) : d - (d - m[k]) * (1 - w1);
      v[k] = v[k] * b2 + w2 * d * d;
      const T denom = std::sqrt(v[k]) / bc2 + e;
      p[k] = p[k] + neg_step * (m[k] / denom);
    }
  }
}

template <typename T>
AMGP_VECTOR_CLONES void adagrad_run(Span span, T* p_all, const T* g_all, T* s_all, T wd, T e, T neg_clr,
                                    bool decay) {
  AMGP_FOR_ACTIVE(span, offset, n) {
    T* __restrict p = p_all + offset;
    const T* __restrict g = g_all + offset;
    T* __restrict s = s_all + offset;
    for (int64_t k = 0; k < n; ++k) {
      const T d = decay ? g[k] + wd * p[k] : g[k];
      s[k] = s[k] + d * d;
      p[k] = p[k] + neg_clr * (d / (std::sqrt(s[k]) + e));
    }
  }
}

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

// Calls f(span) for shares of the active rows, in parallel.
template <typename F>
void for_active(const ActiveRegion& region, const F& f) {
  const int64_t rows = static_cast<int64_t>(region.rows.size());
  const int64_t row_cost = std::max<int64_t>(region.cols.channels, 1);
  const int64_t grain = std::max<int64_t>(1, 16384 / row_cost);  // ~16K elements per task
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    f(Span{region.rows.data() + begin, end - begin, region.width, region.cols.runs.data(),
           static_cast<int64_t>(region.cols.runs.size())});
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
    T* p_all = param.data_ptr<T>();
    const T* g_all = grad.const_data_ptr<T>();
    T* b_all = has_buffer ? momentum_buffer->data_ptr<T>() : nullptr;
    const T wd = weight_decay, mom = momentum, keep = 1 - dampening, neg_lr = -lr;
    const bool decay = weight_decay != 0;
    for_active(region, [&](Span span) {
      if (!has_buffer && !decay)  // plain SGD, the common case
        sgd_plain<T>(span, p_all, g_all, neg_lr);
      else
        sgd_general<T>(span, p_all, g_all, b_all, wd, mom, keep, neg_lr, decay, has_buffer, nesterov, first_step);
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
    T* p_all = param.data_ptr<T>();
    const T* g_all = grad.const_data_ptr<T>();
    T* m_all = exp_avg.data_ptr<T>();
    T* v_all = exp_avg_sq.data_ptr<T>();
    // weight_decay: L2 decay added to the gradient (Adam); decay_factor: 1 - lr * weight_decay for the
    // decoupled decay of AdamW (then weight_decay is 0), else 1.
    const T wd = weight_decay, decay = decay_factor, w1 = 1 - beta1, b2 = beta2, w2 = 1 - beta2;
    const T e = eps, neg_step = -step_size, bc2 = bias_correction2_sqrt;
    const bool l2 = weight_decay != 0, decoupled = decay_factor != 1;
    const bool small_weight = std::abs(w1) < T(0.5);
    for_active(region, [&](Span span) {
      adam_run<T>(span, p_all, g_all, m_all, v_all, wd, decay, w1, b2, w2, e, neg_step, bc2, decoupled, l2,
                  small_weight);
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
    T* p_all = param.data_ptr<T>();
    const T* g_all = grad.const_data_ptr<T>();
    T* s_all = state_sum.data_ptr<T>();
    const T wd = weight_decay, e = eps, neg_clr = -clr;
    const bool decay = weight_decay != 0;
    for_active(region, [&](Span span) { adagrad_run<T>(span, p_all, g_all, s_all, wd, e, neg_clr, decay); });
  });
}

}  // namespace
}  // namespace amgp

TORCH_LIBRARY_IMPL(amgp, CPU, m) {
  m.impl("active_sgd_step_", &amgp::active_sgd_step_cpu);
  m.impl("active_adam_step_", &amgp::active_adam_step_cpu);
  m.impl("active_adagrad_step_", &amgp::active_adagrad_step_cpu);
}
