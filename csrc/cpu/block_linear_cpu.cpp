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
#include "kept_weight_grads.h"
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

// The active entries of a per-channel vector, packed (bias).
template <typename scalar_t>
Tensor pack_vector(const Tensor& v, const BlockRuns& runs) {
  Tensor packed = at::empty({runs.channels}, v.options());
  const scalar_t* s = v.const_data_ptr<scalar_t>();
  scalar_t* d = packed.mutable_data_ptr<scalar_t>();
  for (const Run& run : runs.runs) {
    std::memcpy(d, s + run.start, run.length * sizeof(scalar_t));
    d += run.length;
  }
  return packed;
}

// x (batch, in) or packed x (batch, active in), as the packed operand of the GEMMs.
template <typename scalar_t>
Tensor packed_input(const Tensor& x2, const BlockRuns& in_runs, bool packed_in) {
  if (packed_in || in_runs.all) return x2;
  Tensor x_p = scratch(Scratch::kInput, x2.size(0), in_runs.channels, x2.options());
  pack_columns(x2.const_data_ptr<scalar_t>(), x2.size(1), x2.size(0), in_runs, x_p.mutable_data_ptr<scalar_t>());
  return x_p;
}

// The active (out x in) part of the weight, packed (the weight itself when every block is active), in
// this thread's scratch, or in a tensor of its own when it is `kept` for the backward.
template <typename scalar_t>
Tensor packed_weight(const Tensor& w, const BlockRuns& in_runs, const BlockRuns& out_runs, bool kept = false) {
  if (in_runs.all && out_runs.all) return w;
  Tensor w_p = kept ? at::empty({out_runs.channels, in_runs.channels}, w.options())
                    : scratch(Scratch::kWeight, out_runs.channels, in_runs.channels, w.options());
  pack_submatrix(w.const_data_ptr<scalar_t>(), w.size(1), out_runs, in_runs, w_p.mutable_data_ptr<scalar_t>());
  return w_p;
}

// Packed rows (rows, runs.channels) written into a new full-size (rows, features) tensor: the
// active channels through `epilogue`, exact zeros elsewhere.
template <typename scalar_t, typename Epilogue>
Tensor unpack_columns(const Tensor& packed, const BlockRuns& runs, int64_t features, const Epilogue& epilogue) {
  const int64_t rows = packed.size(0);
  Tensor out = new_output({rows, features}, packed.options());
  const scalar_t* s = packed.const_data_ptr<scalar_t>();
  scalar_t* o = out.mutable_data_ptr<scalar_t>();
  at::parallel_for(0, rows, kRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) unpack_row(s + r * runs.channels, runs, features, o + r * features, epilogue);
  });
  return out;
}

template <typename scalar_t>
scalar_t identity(scalar_t v, int64_t) {
  return v;
}

// y = act(x_p @ W_p^T + b) in the output's layout. With `kept_weight`, W_p is returned there for the
// backward (undefined when every block is active: the backward uses the weight itself).
Tensor forward_2d(const Tensor& x, const Tensor& weight, const c10::optional<Tensor>& bias_opt,
                  const BlockRuns& in_runs, const BlockRuns& out_runs, Activation act, bool packed_in,
                  bool packed_out, Tensor* kept_weight) {
  const int64_t batch = x.size(0), out_f = weight.size(0);
  Tensor bias = bias_opt.has_value() ? *bias_opt : Tensor();
  if (bias.defined()) bias = bias.contiguous();

  Tensor y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "block_linear_cpu", [&] {
    const Tensor x_p = packed_input<scalar_t>(x, in_runs, packed_in);
    const Tensor w_p = packed_weight<scalar_t>(weight, in_runs, out_runs, kept_weight != nullptr);
    if (kept_weight != nullptr && !(in_runs.all && out_runs.all)) *kept_weight = w_p;
    if (out_runs.all || packed_out) {
      // The output is the GEMM's own layout: one addmm (bias fused by BLAS), activation in place.
      y = new_output({batch, out_runs.channels}, x.options());
      if (bias.defined()) at::addmm_out(y, out_runs.all ? bias : pack_vector<scalar_t>(bias, out_runs), x_p, w_p.t());
      else at::mm_out(y, x_p, w_p.t());
      if (act == Activation::kRelu) y.relu_();
      return;
    }
    Tensor y_p = scratch(Scratch::kOutput, batch, out_runs.channels, x.options());
    at::mm_out(y_p, x_p, w_p.t());
    const scalar_t* b = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
    y = unpack_columns<scalar_t>(y_p, out_runs, out_f,
                                 [&](scalar_t v, int64_t c) { return apply_bias_act(v, b, c, act); });
  });
  return y;
}

// t as a (rows, last dimension) matrix; works for a last dimension of 0 (a packed side with no
// active channel), where reshape({-1, 0}) cannot infer the rows.
Tensor as_matrix(const Tensor& t) {
  if (t.dim() == 2 && t.is_contiguous()) return t;  // the common case, without a dispatched reshape
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < t.dim(); ++d) rows *= t.size(d);
  return t.reshape({rows, t.size(-1)}).contiguous();
}

// Shapes and block runs of one call, checked.
struct Problem {
  Activation act;
  int64_t in_f, out_f;
  BlockRuns in_runs, out_runs;
};

Problem prepare(const Tensor& x, const Tensor& weight, const c10::optional<Tensor>& bias,
                const c10::optional<Tensor>& in_blocks, const c10::optional<Tensor>& out_blocks,
                int64_t block_size, c10::string_view activation, bool packed_in, const char* op) {
  check_operands(x, weight, bias, block_size, packed_in, op);
  Problem p{parse_activation(activation), weight.size(1), weight.size(0), {}, {}};
  p.in_runs = block_runs(in_blocks, p.in_f, block_size, "in_blocks");
  p.out_runs = block_runs(out_blocks, p.out_f, block_size, "out_blocks");
  check_width(x.size(-1), p.in_f, p.in_runs.channels, packed_in, "x", op);
  return p;
}

std::tuple<Tensor, Tensor> forward_cpu(const Tensor& x, const Tensor& weight, const c10::optional<Tensor>& bias,
                                       const c10::optional<Tensor>& in_blocks, const c10::optional<Tensor>& out_blocks,
                                       int64_t block_size, c10::string_view activation, bool packed_in,
                                       bool packed_out, bool keep_weight) {
  const Problem p = prepare(x, weight, bias, in_blocks, out_blocks, block_size, activation, packed_in,
                            "amgp.block_linear");
  std::vector<int64_t> out_shape(x.sizes().begin(), x.sizes().end());
  out_shape.back() = packed_out ? p.out_runs.channels : p.out_f;
  const Tensor x2 = as_matrix(x);
  Tensor kept;
  Tensor y = forward_2d(x2, weight.contiguous(), bias, p.in_runs, p.out_runs, p.act, packed_in, packed_out,
                        keep_weight ? &kept : nullptr);
  return {x.dim() == 2 ? y : y.view(out_shape), kept.defined() ? kept : at::empty({0}, x.options())};
}

Tensor block_linear_cpu(const Tensor& x, const Tensor& weight, const c10::optional<Tensor>& bias,
                        const c10::optional<Tensor>& in_blocks, const c10::optional<Tensor>& out_blocks,
                        int64_t block_size, c10::string_view activation, bool packed_in, bool packed_out) {
  return std::get<0>(
      forward_cpu(x, weight, bias, in_blocks, out_blocks, block_size, activation, packed_in, packed_out, false));
}

std::tuple<Tensor, Tensor> block_linear_forward_cpu(const Tensor& x, const Tensor& weight,
                                                    const c10::optional<Tensor>& bias,
                                                    const c10::optional<Tensor>& in_blocks,
                                                    const c10::optional<Tensor>& out_blocks, int64_t block_size,
                                                    c10::string_view activation, bool packed_in, bool packed_out) {
  return forward_cpu(x, weight, bias, in_blocks, out_blocks, block_size, activation, packed_in, packed_out, true);
}

// dy' = dy through the activation, over the active output channels only: (batch, out active).
template <typename scalar_t>
Tensor grad_through_activation(const Tensor& dy, const Tensor& y, const BlockRuns& out_runs, bool packed_out) {
  const bool relu = y.defined();
  if (!relu && (packed_out || out_runs.all)) return dy;
  const int64_t batch = dy.size(0), width = dy.size(1);
  Tensor dy_p = scratch(Scratch::kGrad, batch, out_runs.channels, dy.options());
  const scalar_t* g = dy.const_data_ptr<scalar_t>();
  const scalar_t* yv = relu ? y.const_data_ptr<scalar_t>() : nullptr;
  scalar_t* d = dy_p.mutable_data_ptr<scalar_t>();
  at::parallel_for(0, batch, kRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      scalar_t* dr = d + r * out_runs.channels;
      if (packed_out || out_runs.all) {  // same layout: one pass over the row
        relu_backward(g + r * width, yv + r * width, dr, width);
        continue;
      }
      for (const Run& run : out_runs.runs) {
        const scalar_t* gr = g + r * width + run.start;
        if (yv == nullptr) std::memcpy(dr, gr, run.length * sizeof(scalar_t));
        else relu_backward(gr, yv + r * width + run.start, dr, run.length);
        dr += run.length;
      }
    }
  });
  return dy_p;
}

// The packed weight gradient dw_p (active rows x active columns) into the full-size `grad_w`: its active
// blocks, and exact zeros everywhere else unless `zeros_kept` says they are there from an earlier write.
template <typename scalar_t>
void write_weight_grad(const Tensor& dw_p, const BlockRuns& out_runs, const BlockRuns& in_runs, bool zeros_kept,
                       const Tensor& grad_w) {
  const int64_t out_f = grad_w.size(0), in_f = grad_w.size(1);
  const scalar_t* s = dw_p.const_data_ptr<scalar_t>();
  scalar_t* o = grad_w.mutable_data_ptr<scalar_t>();
  // Row i of dw_p is output channel out_channel[i]; other rows are zero.
  std::vector<int64_t> packed_row(out_f, -1);
  int64_t i = 0;
  for (const Run& run : out_runs.runs)
    for (int64_t r = run.start; r < run.start + run.length; ++r) packed_row[r] = i++;
  at::parallel_for(0, out_f, kRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      scalar_t* row = o + r * in_f;
      if (packed_row[r] < 0) {
        if (!zeros_kept) std::memset(row, 0, in_f * sizeof(scalar_t));
        continue;
      }
      const scalar_t* packed = s + packed_row[r] * in_runs.channels;
      if (!zeros_kept) {
        unpack_row(packed, in_runs, in_f, row, identity<scalar_t>);
      } else {
        for (const Run& run : in_runs.runs) {
          std::memcpy(row + run.start, packed, run.length * sizeof(scalar_t));
          packed += run.length;
        }
      }
    }
  });
}

std::tuple<Tensor, Tensor, Tensor> block_linear_backward_cpu(
    const Tensor& grad_y, const Tensor& x, const Tensor& weight, const c10::optional<Tensor>& y_opt,
    const c10::optional<Tensor>& in_blocks, const c10::optional<Tensor>& out_blocks, int64_t block_size,
    c10::string_view activation, bool packed_in, bool packed_out, std::array<bool, 3> output_mask,
    const c10::optional<Tensor>& saved_weight) {
  const char* op = "amgp.block_linear_backward";
  const Problem p = prepare(x, weight, c10::nullopt, in_blocks, out_blocks, block_size, activation, packed_in, op);
  const BlockRuns &in_runs = p.in_runs, &out_runs = p.out_runs;
  const int64_t in_f = p.in_f, out_f = p.out_f;
  TORCH_CHECK(grad_y.dim() >= 1, op, ": grad_y must have at least 1 dimension");
  check_width(grad_y.size(-1), out_f, out_runs.channels, packed_out, "grad_y", op);
  const Tensor x2 = as_matrix(x);
  const Tensor dy = as_matrix(grad_y);
  const int64_t batch = x2.size(0);
  TORCH_CHECK(dy.size(0) == batch, op, ": grad_y shape ", grad_y.sizes(), " does not match the forward output");
  const bool relu = p.act == Activation::kRelu;
  TORCH_CHECK(!relu || (y_opt.has_value() && y_opt->defined()), op,
              ": y (the forward output) is required for activation 'relu'");
  if (relu) TORCH_CHECK(y_opt->sizes() == grad_y.sizes(), op, ": y must have grad_y's shape ", grad_y.sizes());

  const Tensor y2 = relu ? as_matrix(*y_opt) : Tensor();
  const Tensor w = weight.contiguous();
  Tensor grad_x, grad_w, grad_b;  // those not asked for come back empty (the schema returns three tensors)

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "block_linear_backward_cpu", [&] {
    const Tensor dy_p = grad_through_activation<scalar_t>(dy, y2, out_runs, packed_out);

    if (output_mask[0]) {  // dx = dy' @ W, in x's layout
      const bool shared = saved_weight.has_value() && saved_weight->numel() > 0;
      if (shared)
        TORCH_CHECK(saved_weight->sizes() == at::IntArrayRef({out_runs.channels, in_runs.channels}) &&
                        saved_weight->is_contiguous() && saved_weight->scalar_type() == w.scalar_type(),
                    op, ": packed_weight must be the contiguous active (", out_runs.channels, " x ",
                    in_runs.channels, ") part of the weight, got ", saved_weight->sizes());
      const Tensor w_p = shared ? *saved_weight : packed_weight<scalar_t>(w, in_runs, out_runs);
      if (in_runs.all || packed_in) {
        grad_x = new_output({batch, in_runs.channels}, x.options());
        at::mm_out(grad_x, dy_p, w_p);
      } else {
        Tensor dx_p = scratch(Scratch::kOutput, batch, in_runs.channels, x.options());
        at::mm_out(dx_p, dy_p, w_p);
        grad_x = unpack_columns<scalar_t>(dx_p, in_runs, in_f, identity<scalar_t>);
      }
      if (x.dim() != 2) grad_x = grad_x.view(x.sizes());
    }

    if (output_mask[1]) {  // dW = dy'^T @ x, full-size with zeros outside the active blocks
      const Tensor x_p = packed_input<scalar_t>(x2, in_runs, packed_in);
      if (in_runs.all && out_runs.all) {
        kept_weight_grads().release(weight);
        grad_w = new_output({out_f, in_f}, w.options());
        at::mm_out(grad_w, dy_p.t(), x_p);
      } else {
        Tensor dw_p = scratch(Scratch::kOutput, out_runs.channels, in_runs.channels, w.options());
        at::mm_out(dw_p, dy_p.t(), x_p);
        const WeightGradTarget target = kept_weight_grads().target(weight, out_runs, in_runs);
        write_weight_grad<scalar_t>(dw_p, out_runs, in_runs, target.zeros_kept, target.tensor);
        grad_w = target.tensor;
      }
    }

    if (output_mask[2]) {  // db = sum over the batch of dy', full-size
      const Tensor db_p = dy_p.sum(0);
      grad_b = out_runs.all ? db_p
                            : unpack_columns<scalar_t>(db_p.view({1, out_runs.channels}), out_runs, out_f,
                                                       identity<scalar_t>).view({out_f});
    }
  });
  const auto or_empty = [&](const Tensor& t) { return t.defined() ? t : at::empty({0}, x.options()); };
  return {or_empty(grad_x), or_empty(grad_w), or_empty(grad_b)};
}

}  // namespace
}  // namespace amgp

TORCH_LIBRARY_IMPL(amgp, CPU, m) {
  m.impl("block_linear", &amgp::block_linear_cpu);
  m.impl("_block_linear_forward", &amgp::block_linear_forward_cpu);
  m.impl("block_linear_backward", &amgp::block_linear_backward_cpu);
}
