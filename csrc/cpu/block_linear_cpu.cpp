// CPU implementation of amgp::block_linear and its backward.
//
// Strategy: the active blocks of x / weight / grad_y are packed into small contiguous
// matrices (one memcpy per run of adjacent active blocks per row), one BLAS GEMM runs
// on the packed operands, and a fused epilogue (bias + activation, or zero-fill) writes
// the result back into the full-size output. Work and memory traffic scale with the
// active blocks; inactive blocks are only ever written as zeros. When every block of a
// side is active that side is used in place, so at full density this is a plain addmm.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <vector>

#include "block_runs.h"
#include "op_checks.h"
#include "outputs.h"
#include "workspace.h"

#include <cmath>

namespace amgp {
namespace {

using at::Tensor;

constexpr int64_t kRowGrain = 16;  // rows per parallel task in the copy passes

enum class Activation { kNone, kRelu };

Activation parse_activation(c10::string_view name) {
  return is_relu(name, "amgp.block_linear") ? Activation::kRelu : Activation::kNone;
}

void check_inputs(const Tensor& x, const Tensor& weight, const c10::optional<Tensor>& bias,
                  int64_t block_size) {
  check_operands(x, weight, bias, block_size, "amgp.block_linear");
}

// dst[r, :] = concat over runs of src[r, run] (src rows of length src_cols).
template <typename scalar_t>
void pack_columns(const scalar_t* src, int64_t src_cols, int64_t rows, const BlockRuns& runs,
                  scalar_t* dst) {
  const int64_t dst_cols = runs.channels;
  at::parallel_for(0, rows, kRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const scalar_t* s = src + r * src_cols;
      scalar_t* d = dst + r * dst_cols;
      for (const Run& run : runs.runs) {
        std::memcpy(d, s + run.start, run.length * sizeof(scalar_t));
        d += run.length;
      }
    }
  });
}

// The active (row-run x column-run) part of a row-major matrix, packed: (rows.channels, cols.channels).
template <typename scalar_t>
void pack_submatrix(const scalar_t* src, int64_t src_cols, const BlockRuns& rows,
                    const BlockRuns& cols, scalar_t* dst) {
  std::vector<int64_t> src_rows;
  src_rows.reserve(rows.channels);
  for (const Run& run : rows.runs)
    for (int64_t r = run.start; r < run.start + run.length; ++r) src_rows.push_back(r);
  at::parallel_for(0, rows.channels, kRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const scalar_t* s = src + src_rows[i] * src_cols;
      scalar_t* d = dst + i * cols.channels;
      for (const Run& run : cols.runs) {
        std::memcpy(d, s + run.start, run.length * sizeof(scalar_t));
        d += run.length;
      }
    }
  });
}

// Writes one output row from its packed active values: epilogue(v, channel) into the
// active runs, exact zeros everywhere else.
template <typename scalar_t, typename Epilogue>
inline void unpack_row(const scalar_t* packed, const BlockRuns& runs, int64_t cols, scalar_t* out,
                       const Epilogue& epilogue) {
  int64_t c = 0;
  for (const Run& run : runs.runs) {
    if (run.start > c) std::memset(out + c, 0, (run.start - c) * sizeof(scalar_t));
    for (int64_t j = 0; j < run.length; ++j) out[run.start + j] = epilogue(packed[j], run.start + j);
    packed += run.length;
    c = run.start + run.length;
  }
  if (cols > c) std::memset(out + c, 0, (cols - c) * sizeof(scalar_t));
}

// d = (y <= 0) ? 0 : g, as threshold_backward (NaN outputs pass the gradient). Written so the
// compiler vectorises it: no aliasing, a select per element (a branch would mispredict on
// every other element of a ReLU layer).
template <typename scalar_t>
inline void relu_backward(const scalar_t* __restrict__ g, const scalar_t* __restrict__ y, scalar_t* __restrict__ d,
                          int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const scalar_t grad = g[j];  // loaded unconditionally so the select needs no branch
    d[j] = static_cast<float>(y[j]) <= 0.f ? scalar_t(0) : grad;
  }
}

template <typename scalar_t>
inline scalar_t apply_bias_act(scalar_t v, const scalar_t* bias, int64_t c, Activation act) {
  using acc_t = at::opmath_type<scalar_t>;
  acc_t a = static_cast<acc_t>(v);
  if (bias) a += static_cast<acc_t>(bias[c]);
  if (act == Activation::kRelu) a = a < acc_t(0) ? acc_t(0) : a;  // NaN stays NaN, as torch.relu
  return static_cast<scalar_t>(a);
}

Tensor forward_2d(const Tensor& x, const Tensor& weight, const c10::optional<Tensor>& bias_opt,
                  const BlockRuns& in_runs, const BlockRuns& out_runs, Activation act) {
  const int64_t batch = x.size(0), in_f = x.size(1), out_f = weight.size(0);
  Tensor bias = bias_opt.has_value() ? *bias_opt : Tensor();
  if (bias.defined()) bias = bias.contiguous();

  Tensor y = new_output({batch, out_f}, x.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "block_linear_cpu", [&] {
    const scalar_t* b = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
    Tensor x_p = x, w_p = weight;
    if (!in_runs.all) {
      x_p = scratch(Scratch::kInput, batch, in_runs.channels, x.options());
      pack_columns(x.const_data_ptr<scalar_t>(), in_f, batch, in_runs, x_p.mutable_data_ptr<scalar_t>());
    }
    if (!in_runs.all || !out_runs.all) {
      w_p = scratch(Scratch::kWeight, out_runs.channels, in_runs.channels, weight.options());
      pack_submatrix(weight.const_data_ptr<scalar_t>(), in_f, out_runs, in_runs,
                     w_p.mutable_data_ptr<scalar_t>());
    }
    if (out_runs.all) {
      // Dense output: one addmm (bias fused by BLAS), activation in place.
      if (b != nullptr) at::addmm_out(y, bias, x_p, w_p.t());
      else at::mm_out(y, x_p, w_p.t());
      if (act == Activation::kRelu) y.relu_();
      return;
    }
    Tensor y_p = scratch(Scratch::kOutput, batch, out_runs.channels, x.options());
    at::mm_out(y_p, x_p, w_p.t());
    const scalar_t* yp = y_p.const_data_ptr<scalar_t>();
    scalar_t* out = y.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, batch, kRowGrain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r)
        unpack_row(yp + r * out_runs.channels, out_runs, out_f, out + r * out_f,
                   [&](scalar_t v, int64_t c) { return apply_bias_act(v, b, c, act); });
    });
  });
  return y;
}

Tensor block_linear_cpu(const Tensor& x, const Tensor& weight, const c10::optional<Tensor>& bias,
                        const c10::optional<Tensor>& in_blocks,
                        const c10::optional<Tensor>& out_blocks, int64_t block_size,
                        c10::string_view activation) {
  check_inputs(x, weight, bias, block_size);
  const Activation act = parse_activation(activation);
  const int64_t in_f = weight.size(1), out_f = weight.size(0);
  const BlockRuns in_runs = block_runs(in_blocks, in_f, block_size, "in_blocks");
  const BlockRuns out_runs = block_runs(out_blocks, out_f, block_size, "out_blocks");

  std::vector<int64_t> out_shape(x.sizes().begin(), x.sizes().end());
  out_shape.back() = out_f;
  const Tensor x2 = x.reshape({-1, in_f}).contiguous();
  Tensor y = forward_2d(x2, weight.contiguous(), bias, in_runs, out_runs, act);
  return y.view(out_shape);
}

std::tuple<Tensor, Tensor, Tensor> block_linear_backward_cpu(
    const Tensor& grad_y, const Tensor& x, const Tensor& weight, const c10::optional<Tensor>& y_opt,
    const c10::optional<Tensor>& in_blocks, const c10::optional<Tensor>& out_blocks,
    int64_t block_size, c10::string_view activation, std::array<bool, 3> output_mask) {
  check_inputs(x, weight, c10::nullopt, block_size);
  const Activation act = parse_activation(activation);
  const int64_t in_f = weight.size(1), out_f = weight.size(0);
  const BlockRuns in_runs = block_runs(in_blocks, in_f, block_size, "in_blocks");
  const BlockRuns out_runs = block_runs(out_blocks, out_f, block_size, "out_blocks");
  TORCH_CHECK(grad_y.size(-1) == out_f && grad_y.numel() / std::max<int64_t>(out_f, 1) ==
                                              x.numel() / std::max<int64_t>(in_f, 1),
              "amgp.block_linear_backward: grad_y shape ", grad_y.sizes(),
              " does not match the forward output");
  const bool relu = act == Activation::kRelu;
  TORCH_CHECK(!relu || (y_opt.has_value() && y_opt->defined()),
              "amgp.block_linear_backward: y (the forward output) is required for activation 'relu'");

  const Tensor x2 = x.reshape({-1, in_f}).contiguous();
  const Tensor dy = grad_y.reshape({-1, out_f}).contiguous();
  const Tensor w = weight.contiguous();
  const int64_t batch = x2.size(0);
  Tensor grad_x = at::empty({0}, x.options()), grad_w = at::empty({0}, x.options()),
         grad_b = at::empty({0}, x.options());

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "block_linear_backward_cpu", [&] {
    // dy' = dy through the activation, restricted to the active output channels.
    Tensor dy_p = dy;
    if (relu || !out_runs.all) {
      dy_p = scratch(Scratch::kGrad, batch, out_runs.channels, dy.options());
      const scalar_t* g = dy.const_data_ptr<scalar_t>();
      const Tensor y2 = relu ? y_opt->reshape({-1, out_f}).contiguous() : Tensor();
      const scalar_t* yv = relu ? y2.const_data_ptr<scalar_t>() : nullptr;
      scalar_t* d = dy_p.mutable_data_ptr<scalar_t>();
      at::parallel_for(0, batch, kRowGrain, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          scalar_t* dr = d + r * out_runs.channels;
          for (const Run& run : out_runs.runs) {
            const scalar_t* gr = g + r * out_f + run.start;
            if (yv == nullptr) {
              std::memcpy(dr, gr, run.length * sizeof(scalar_t));
            } else {
              relu_backward(gr, yv + r * out_f + run.start, dr, run.length);
            }
            dr += run.length;
          }
        }
      });
    }

    if (output_mask[0]) {
      const Tensor w_p = (in_runs.all && out_runs.all) ? w : [&] {
        Tensor t = scratch(Scratch::kWeight, out_runs.channels, in_runs.channels, w.options());
        pack_submatrix(w.const_data_ptr<scalar_t>(), in_f, out_runs, in_runs, t.mutable_data_ptr<scalar_t>());
        return t;
      }();
      if (in_runs.all) {
        grad_x = at::mm(dy_p, w_p);
      } else {
        Tensor dx_p = scratch(Scratch::kOutput, batch, in_runs.channels, x.options());
        at::mm_out(dx_p, dy_p, w_p);
        grad_x = new_output({batch, in_f}, x.options());
        const scalar_t* s = dx_p.const_data_ptr<scalar_t>();
        scalar_t* o = grad_x.mutable_data_ptr<scalar_t>();
        at::parallel_for(0, batch, kRowGrain, [&](int64_t begin, int64_t end) {
          for (int64_t r = begin; r < end; ++r)
            unpack_row(s + r * in_runs.channels, in_runs, in_f, o + r * in_f,
                       [](scalar_t v, int64_t) { return v; });
        });
      }
      grad_x = grad_x.view(x.sizes());
    }

    if (output_mask[1]) {
      Tensor x_p = x2;
      if (!in_runs.all) {
        x_p = scratch(Scratch::kInput, batch, in_runs.channels, x.options());
        pack_columns(x2.const_data_ptr<scalar_t>(), in_f, batch, in_runs, x_p.mutable_data_ptr<scalar_t>());
      }
      if (in_runs.all && out_runs.all) {
        grad_w = at::mm(dy_p.t(), x_p);
      } else {
        Tensor dw_p = scratch(Scratch::kOutput, out_runs.channels, in_runs.channels, w.options());
        at::mm_out(dw_p, dy_p.t(), x_p);
        grad_w = new_output({out_f, in_f}, w.options());
        const scalar_t* s = dw_p.const_data_ptr<scalar_t>();
        scalar_t* o = grad_w.mutable_data_ptr<scalar_t>();
        // Row i of dw_p is output channel out_channel[i]; other rows are zero.
        std::vector<int64_t> packed_row(out_f, -1);
        int64_t i = 0;
        for (const Run& run : out_runs.runs)
          for (int64_t r = run.start; r < run.start + run.length; ++r) packed_row[r] = i++;
        at::parallel_for(0, out_f, kRowGrain, [&](int64_t begin, int64_t end) {
          for (int64_t r = begin; r < end; ++r) {
            if (packed_row[r] < 0) {
              std::memset(o + r * in_f, 0, in_f * sizeof(scalar_t));
            } else {
              unpack_row(s + packed_row[r] * in_runs.channels, in_runs, in_f, o + r * in_f,
                         [](scalar_t v, int64_t) { return v; });
            }
          }
        });
      }
    }

    if (output_mask[2]) {
      Tensor db_p = dy_p.sum(0);
      if (out_runs.all) {
        grad_b = db_p;
      } else {
        grad_b = at::zeros({out_f}, x.options());
        const scalar_t* s = db_p.const_data_ptr<scalar_t>();
        scalar_t* o = grad_b.mutable_data_ptr<scalar_t>();
        for (const Run& run : out_runs.runs) {
          std::memcpy(o + run.start, s, run.length * sizeof(scalar_t));
          s += run.length;
        }
      }
    }
  });
  return {grad_x, grad_w, grad_b};
}

}  // namespace
}  // namespace amgp

TORCH_LIBRARY_IMPL(amgp, CPU, m) {
  m.impl("block_linear", &amgp::block_linear_cpu);
  m.impl("block_linear_backward", &amgp::block_linear_backward_cpu);
}
