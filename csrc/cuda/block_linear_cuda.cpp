// CUDA implementations of amgp::block_linear and amgp::block_linear_backward (torch glue).
//
// Checks arguments, turns tensors into the torch-free launch structs of kernel_args.h and
// launches on PyTorch's current stream. Outputs come from new_output (NaN-filled in test mode).
// Only metadata (shapes, strides, numel of the block lists) is used on the host: block indices
// stay on the device, so there is no host sync.
// A block list with every block of its dimension (numel == number of blocks; contents are
// sorted and unique by contract) is treated like None. With every block of both sides active
// the op is a dense linear layer and goes to ATen (cuBLAS), as the CPU implementation does.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "op_checks.h"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "kernel_args.h"
#include "outputs.h"

namespace amgp {
namespace {

using at::Tensor;
using cuda::ChannelMap;
using cuda::DType;

constexpr int64_t kMaxIndex = std::numeric_limits<int32_t>::max() / 2;  // slots stay in int32

DType dtype_of(const Tensor& t, const char* op) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::kFloat32;
    case at::kHalf: return DType::kFloat16;
    case at::kBFloat16: return DType::kBFloat16;
    default:
      TORCH_CHECK(false, op, " (CUDA): x dtype ", t.scalar_type(),
                  " is not supported; use float32, float16 or bfloat16");
  }
  return DType::kFloat32;  // unreachable
}

ChannelMap identity_map(int64_t features) {
  ChannelMap m;
  m.extent = static_cast<int32_t>(features);
  m.features = static_cast<int32_t>(features);
  return m;
}

// One channel dimension (in or out) and its active blocks.
struct Side {
  Tensor blocks;          // contiguous int32 on the device; undefined when all are active
  int64_t features = 0;
  int32_t block_size = 1;  // clamped to [1, features]: same block numbers, no oversized slots
  int64_t n_blocks = 0;
  int64_t n_active = 0;
  bool all() const { return !blocks.defined(); }
  const int32_t* data() const { return all() ? nullptr : blocks.const_data_ptr<int32_t>(); }

  ChannelMap map() const {
    if (all()) return identity_map(features);
    ChannelMap m;
    m.blocks = data();
    m.extent = static_cast<int32_t>(n_active * block_size);
    m.features = static_cast<int32_t>(features);
    m.block_size = block_size;
    m.shift = (block_size & (block_size - 1)) == 0 ? __builtin_ctz(static_cast<unsigned>(block_size)) : -1;
    return m;
  }

  // Active channels: the width of a packed activation. Only a short last block (features not a multiple
  // of the block size) makes it depend on the list's contents: then its last entry is read (a host sync).
  int64_t active_channels() const {
    if (all()) return features;
    if (n_active == 0 || features % block_size == 0) return n_active * block_size;
    const int64_t last = blocks.select(0, n_active - 1).item<int32_t>();
    return n_active * block_size - (last == n_blocks - 1 ? block_size - features % block_size : 0);
  }

  // The slot map of an activation on this side: channels through the block list, or packed columns.
  ChannelMap activation_map(bool packed) const { return packed ? identity_map(active_channels()) : map(); }
};

Side make_side(const c10::optional<Tensor>& blocks, int64_t features, int64_t block_size, const Tensor& x,
               const char* name, const char* op) {
  TORCH_CHECK(features <= kMaxIndex, op, " (CUDA): ", name, " dimension has ", features,
              " features; at most ", kMaxIndex, " are supported");
  Side s;
  s.features = features;
  s.block_size = static_cast<int32_t>(std::max<int64_t>(1, std::min(block_size, features)));
  s.n_blocks = features == 0 ? 0 : (features - 1) / block_size + 1;  // no overflow for huge block sizes
  s.n_active = s.n_blocks;
  if (!blocks.has_value() || !blocks->defined()) return s;
  const Tensor& b = *blocks;
  TORCH_CHECK(b.dim() == 1, op, ": ", name, " must be 1-D, got ", b.dim(), "-D");
  TORCH_CHECK(b.scalar_type() == at::kInt, op, ": ", name, " must be int32, got ", b.scalar_type());
  TORCH_CHECK(b.device() == x.device(), op, ": ", name, " must be on x's device ", x.device(), ", got ",
              b.device());
  TORCH_CHECK(b.numel() <= s.n_blocks, op, ": ", name, " has ", b.numel(), " entries but there are only ",
              s.n_blocks, " blocks (indices must be unique)");
  s.n_active = b.numel();
  if (s.n_active < s.n_blocks) s.blocks = b.contiguous();
  return s;
}

// A 2-D (rows x cols) view with unit column stride; copies only when no such view exists.
struct Rows {
  Tensor t;
  int64_t rows = 0, cols = 0, ld = 0;
};

Rows as_rows(const Tensor& t, int64_t cols) {
  Rows r;
  r.cols = cols;
  r.rows = cols == 0 ? 1 : t.numel() / cols;
  if (cols == 0)
    for (int64_t d = 0; d + 1 < t.dim(); ++d) r.rows *= t.size(d);
  r.t = t.reshape({r.rows, cols});
  if (!(cols <= 1 || r.t.stride(1) == 1)) r.t = r.t.contiguous();
  r.ld = r.rows <= 1 ? cols : r.t.stride(0);
  return r;
}

cuda::Operand operand(const void* data, int64_t ld, ChannelMap rows, ChannelMap ks, bool k_contiguous,
                      DType dtype) {
  cuda::Operand o;
  o.data = data;
  o.ld = ld;
  o.rows = rows;
  o.ks = ks;
  o.k_contiguous = k_contiguous;
  o.vectorizable = cuda::vector_friendly(data, ld, k_contiguous ? ks : rows, dtype);
  return o;
}

// Every block of both sides active: the op is a dense nn.Linear, and cuBLAS (through ATen) is
// the fastest GEMM there. AMGP_CUDA_DENSE_ATEN=0 sends it through the block kernels instead.
bool dense_through_aten(const Side& in, const Side& out) {
  if (!in.all() || !out.all()) return false;
  const char* flag = std::getenv("AMGP_CUDA_DENSE_ATEN");
  return flag == nullptr || std::string(flag) != "0";
}

c10::Device cuda_device_of(const Tensor& x, const char* op) {
  TORCH_CHECK(x.is_cuda(), op, " (CUDA): x must be a CUDA tensor, got ", x.device());
  return x.device();
}

// What forward and backward share: checked arguments, both channel sides, x and weight as rows, and
// the slot maps of the activations (x: in_act, y / grad_y: out_act), packed or not.
struct Problem {
  bool relu = false;
  int64_t in_f = 0, out_f = 0;
  DType dtype = DType::kFloat32;
  Side in, out;
  Rows xr, wr;
  ChannelMap in_act, out_act;
};

Problem prepare(const Tensor& x, const Tensor& weight, const c10::optional<Tensor>& bias,
                const c10::optional<Tensor>& in_blocks,
                const c10::optional<Tensor>& out_blocks, int64_t block_size, c10::string_view activation,
                bool packed_in, bool packed_out, const char* op) {
  check_operands(x, weight, bias, block_size, packed_in, op);
  Problem pr;
  pr.dtype = dtype_of(x, op);
  pr.relu = is_relu(activation, op);
  pr.in_f = weight.size(1);
  pr.out_f = weight.size(0);
  pr.in = make_side(in_blocks, pr.in_f, block_size, x, "in_blocks", op);
  pr.out = make_side(out_blocks, pr.out_f, block_size, x, "out_blocks", op);
  pr.in_act = pr.in.activation_map(packed_in);
  pr.out_act = pr.out.activation_map(packed_out);
  check_width(x.size(-1), pr.in_f, pr.in_act.features, packed_in, "x", op);
  pr.xr = as_rows(x, x.size(-1));
  pr.wr = as_rows(weight, pr.in_f);
  TORCH_CHECK(pr.xr.rows <= kMaxIndex, op, " (CUDA): at most ", kMaxIndex, " rows are supported, got ",
              pr.xr.rows);
  return pr;
}

cuda::ZeroArgs zero_args(const Tensor& out, int64_t rows, int64_t cols, const Side* row_side, const Side* col_side) {
  cuda::ZeroArgs z;
  z.data = out.mutable_data_ptr();
  z.elem_bytes = static_cast<int>(out.element_size());
  z.rows = rows;
  z.cols = cols;
  z.ld = cols;
  if (row_side != nullptr && !row_side->all()) {
    z.all_rows_active = false;
    z.row_blocks = row_side->data();
    z.n_row_blocks = static_cast<int32_t>(row_side->n_active);
    z.row_block_size = row_side->block_size;
  }
  if (col_side != nullptr && !col_side->all()) {
    z.all_cols_active = false;
    z.col_blocks = col_side->data();
    z.n_col_blocks = static_cast<int32_t>(col_side->n_active);
    z.col_block_size = col_side->block_size;
  }
  return z;
}

// SM count of the current device (ATen/cuda/CUDAContext.h would pull in cuBLAS/cuSPARSE headers,
// which minimal toolkits lack).
int64_t sm_count() {
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  thread_local int cached_device = -1, cached_count = 0;  // one lookup per thread and device
  if (device != cached_device) {
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&cached_count, cudaDevAttrMultiProcessorCount, device));
    cached_device = device;
  }
  return cached_count;
}

// Split-K factor for a GEMM with few output tiles and a long K (dW: K = batch).
int32_t split_k(int64_t m, int64_t n, int64_t k, DType dtype) {
  const int64_t tiles = ((m + cuda::kGemmTileM - 1) / cuda::kGemmTileM) * ((n + cuda::kGemmTileN - 1) / cuda::kGemmTileN);
  const int64_t sms = sm_count();
  if (tiles == 0 || tiles >= sms) return 1;
  const int64_t k_steps = (k + cuda::gemm_tile_k(dtype) - 1) / cuda::gemm_tile_k(dtype);
  const int64_t wanted = (2 * sms + tiles - 1) / tiles;
  const int64_t most = std::max<int64_t>(1, k_steps / 8);  // keep >= 8 K-steps per split
  const int64_t splits = std::min<int64_t>({wanted, most, 32});
  const int64_t per_split = (k_steps + splits - 1) / splits;
  return static_cast<int32_t>((k_steps + per_split - 1) / per_split);  // no empty split
}

// out (2-D, contiguous) [out_rows(m), out_cols(n)] = act(a(m, :) . b(n, :) + bias): m over a's
// rows, n over b's rows, K over a's (= b's) K slots; `zero` (the inactive blocks of out) is
// written by the same launch.
void run_gemm(const cuda::Operand& a, const cuda::Operand& b, const Tensor& out, const ChannelMap& out_rows,
              const ChannelMap& out_cols, const void* bias, const ChannelMap& bias_cols, bool relu,
              const cuda::ZeroArgs& zero, cudaStream_t stream) {
  cuda::GemmArgs g;
  g.dtype = dtype_of(out, "amgp.block_linear");
  g.m = a.rows.extent;
  g.n = b.rows.extent;
  g.k = a.ks.extent;
  g.a = a;
  g.b = b;
  g.out = out.mutable_data_ptr();
  g.ld_out = out.size(1);
  g.out_rows = out_rows;
  g.out_cols = out_cols;
  g.bias = bias;
  g.bias_cols = bias_cols;
  g.relu = relu;
  if (g.m == 0 || g.n == 0) {  // nothing active to compute: zeros only
    C10_CUDA_CHECK(cuda::launch_zero_inactive(zero, stream));
    return;
  }
  g.zero = zero;
  cuda::plan_zero_fill(g.zero);
  g.zero_ctas = static_cast<int32_t>(std::min<int64_t>(g.zero.work_items, 2 * sm_count()));
  g.splits = split_k(g.m, g.n, g.k, g.dtype);
  Tensor workspace;
  if (g.splits > 1) {
    workspace = at::empty({g.splits, g.m, g.n}, out.options().dtype(at::kFloat));
    g.workspace = workspace.mutable_data_ptr<float>();
  }
  C10_CUDA_CHECK(cuda::launch_block_gemm(g, stream));
}

Tensor block_linear_cuda(const Tensor& x, const Tensor& weight, const c10::optional<Tensor>& bias_opt,
                         const c10::optional<Tensor>& in_blocks, const c10::optional<Tensor>& out_blocks,
                         int64_t block_size, c10::string_view activation, bool packed_in, bool packed_out) {
  const char* op = "amgp.block_linear";
  const c10::cuda::CUDAGuard guard(cuda_device_of(x, op));
  const Problem pr = prepare(x, weight, bias_opt, in_blocks, out_blocks, block_size, activation, packed_in,
                             packed_out, op);
  const int64_t out_width = pr.out_act.features;
  const DType dtype = pr.dtype;
  const bool relu = pr.relu;
  const Side &in = pr.in, &out = pr.out;
  Tensor bias;
  if (bias_opt.has_value() && bias_opt->defined()) bias = bias_opt->contiguous();

  const Rows &xr = pr.xr, &wr = pr.wr;
  std::vector<int64_t> out_shape(x.sizes().begin(), x.sizes().end());
  out_shape.back() = out_width;
  if (dense_through_aten(in, out)) {
    Tensor y = bias.defined() ? at::addmm(bias, xr.t, wr.t.t()) : at::mm(xr.t, wr.t.t());
    if (relu) y.relu_();
    return y.view(out_shape);
  }
  Tensor y = new_output({xr.rows, out_width}, x.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.device().index()).stream();

  const ChannelMap in_map = in.map(), out_map = out.map(), batch = identity_map(xr.rows);
  run_gemm(operand(xr.t.const_data_ptr(), xr.ld, batch, pr.in_act, true, dtype),
           operand(wr.t.const_data_ptr(), wr.ld, out_map, in_map, true, dtype), y, batch, pr.out_act,
           bias.defined() ? bias.const_data_ptr() : nullptr, out_map, relu,
           zero_args(y, xr.rows, out_width, nullptr, packed_out ? nullptr : &out), stream);
  return y.view(out_shape);
}

std::tuple<Tensor, Tensor, Tensor> block_linear_backward_cuda(
    const Tensor& grad_y, const Tensor& x, const Tensor& weight, const c10::optional<Tensor>& y_opt,
    const c10::optional<Tensor>& in_blocks, const c10::optional<Tensor>& out_blocks, int64_t block_size,
    c10::string_view activation, bool packed_in, bool packed_out, std::array<bool, 3> output_mask,
    const c10::optional<Tensor>& /*packed_weight: the kernels read the weight in place, none is shared*/) {
  const char* op = "amgp.block_linear_backward";
  const c10::cuda::CUDAGuard guard(cuda_device_of(x, op));
  const Problem pr = prepare(x, weight, c10::nullopt, in_blocks, out_blocks, block_size, activation, packed_in,
                             packed_out, op);
  const int64_t in_f = pr.in_f, out_f = pr.out_f, in_width = pr.in_act.features, out_width = pr.out_act.features;
  const DType dtype = pr.dtype;
  const bool relu = pr.relu;
  const Side &in = pr.in, &out = pr.out;
  const Rows &xr = pr.xr, &wr = pr.wr;
  TORCH_CHECK(grad_y.device() == x.device() && grad_y.scalar_type() == x.scalar_type(), op,
              ": grad_y must be on ", x.device(), " with dtype ", x.scalar_type(), ", got ", grad_y.device(),
              " / ", grad_y.scalar_type());
  TORCH_CHECK(grad_y.dim() >= 1, op, ": grad_y must have at least 1 dimension");
  check_width(grad_y.size(-1), out_f, out_width, packed_out, "grad_y", op);
  const Rows dyr = as_rows(grad_y, out_width);
  TORCH_CHECK(dyr.rows == xr.rows, op, ": grad_y shape ", grad_y.sizes(), " does not match the forward output");
  Rows yr;
  if (relu) {
    TORCH_CHECK(y_opt.has_value() && y_opt->defined(), op,
                ": y (the forward output) is required for activation 'relu'");
    TORCH_CHECK(y_opt->device() == x.device() && y_opt->scalar_type() == x.scalar_type() &&
                    y_opt->numel() == grad_y.numel() && y_opt->size(-1) == out_width,
                op, ": y must match grad_y (shape, dtype, device)");
    yr = as_rows(*y_opt, out_width);
  }
  if (dense_through_aten(in, out)) {
    const Tensor dyp = relu ? at::threshold_backward(dyr.t, yr.t, 0) : dyr.t;
    const Tensor empty = at::empty({0}, x.options());
    return {output_mask[0] ? at::mm(dyp, wr.t).view(x.sizes()) : empty,
            output_mask[1] ? at::mm(dyp.t(), xr.t) : empty,
            output_mask[2] ? dyp.sum(0) : empty};
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.device().index()).stream();
  const int64_t batch = xr.rows;
  const ChannelMap in_map = in.map(), out_map = out.map(), batch_map = identity_map(batch);

  // dy' (through the ReLU, over the active output slots): grad_y itself when that is already
  // it, else a gathered copy of width `width` (padded for 16-byte loads). The same pass sums
  // columns for the bias gradient.
  const bool need_dyc = (output_mask[0] || output_mask[1]) && (relu || !(out.all() || packed_out)) && batch > 0;
  const int32_t width = need_dyc ? (pr.out_act.extent + 7) / 8 * 8 : pr.out_act.extent;
  Tensor dyc, partial;
  const int64_t sms = sm_count();
  cuda::GradPrepArgs prep;
  prep.dtype = dtype;
  prep.dy = dyr.t.const_data_ptr();
  prep.ld_dy = dyr.ld;
  prep.y = relu ? yr.t.const_data_ptr() : nullptr;
  prep.ld_y = relu ? yr.ld : 0;
  prep.rows = batch;
  prep.cols = pr.out_act;
  prep.width = width;
  const int64_t col_ctas = (width + 255) / 256;
  prep.splits = static_cast<int32_t>(std::clamp<int64_t>(std::min((4 * sms + col_ctas - 1) / std::max<int64_t>(col_ctas, 1),
                                                                   (batch + 15) / 16), 1, 65535));
  prep.rows_per_split = (batch + prep.splits - 1) / prep.splits;
  if (need_dyc) {
    dyc = at::empty({batch, width}, x.options());
    prep.dyc = dyc.mutable_data_ptr();
  }
  if (output_mask[2]) {
    partial = at::empty({prep.splits, width}, x.options().dtype(at::kFloat));
    prep.partial = partial.mutable_data_ptr<float>();
  }
  if (prep.dyc != nullptr || prep.partial != nullptr) C10_CUDA_CHECK(cuda::launch_grad_prep(prep, stream));
  const void* dy_data = need_dyc ? dyc.const_data_ptr() : dyr.t.const_data_ptr();
  const int64_t dy_ld = need_dyc ? width : dyr.ld;
  const ChannelMap dy_slots = identity_map(need_dyc ? width : out_width);  // columns of dy_data

  Tensor grad_x = at::empty({0}, x.options()), grad_w = at::empty({0}, x.options()),
         grad_b = at::empty({0}, x.options());
  if (output_mask[0]) {  // dx[b, in] = sum_o dy'[b, o] W[o, in], in x's layout
    grad_x = new_output({batch, in_width}, x.options());
    run_gemm(operand(dy_data, dy_ld, batch_map, dy_slots, true, dtype),
             operand(wr.t.const_data_ptr(), wr.ld, in_map, out_map, false, dtype), grad_x, batch_map, pr.in_act,
             nullptr, in_map, false, zero_args(grad_x, batch, in_width, nullptr, packed_in ? nullptr : &in), stream);
    grad_x = grad_x.view(x.sizes());
  }
  if (output_mask[1]) {  // dW[o, in] = sum_b dy'[b, o] x[b, in], full-size
    grad_w = new_output({out_f, in_f}, weight.options());
    run_gemm(operand(dy_data, dy_ld, dy_slots, batch_map, false, dtype),
             operand(xr.t.const_data_ptr(), xr.ld, pr.in_act, batch_map, false, dtype), grad_w, out_map, in_map,
             nullptr, in_map, false, zero_args(grad_w, out_f, in_f, &out, &in), stream);
  }
  if (output_mask[2]) {  // db[o] = sum_b dy'[b, o]
    grad_b = new_output({out_f}, weight.options());
    cuda::BiasGradArgs b;
    b.dtype = dtype;
    b.partial = partial.const_data_ptr<float>();
    b.splits = prep.splits;
    b.width = width;
    b.cols = out_map;
    b.db = grad_b.mutable_data_ptr();
    C10_CUDA_CHECK(cuda::launch_bias_grad_finish(b, stream));
    C10_CUDA_CHECK(cuda::launch_zero_inactive(zero_args(grad_b, 1, out_f, nullptr, &out), stream));
  }
  return {grad_x, grad_w, grad_b};
}

// The kernels read the weight in place: there is no packed weight to hand to the backward.
std::tuple<Tensor, Tensor> block_linear_forward_cuda(const Tensor& x, const Tensor& weight,
                                                     const c10::optional<Tensor>& bias,
                                                     const c10::optional<Tensor>& in_blocks,
                                                     const c10::optional<Tensor>& out_blocks, int64_t block_size,
                                                     c10::string_view activation, bool packed_in, bool packed_out) {
  Tensor y = block_linear_cuda(x, weight, bias, in_blocks, out_blocks, block_size, activation, packed_in, packed_out);
  return {y, at::empty({0}, x.options())};
}

}  // namespace
}  // namespace amgp

TORCH_LIBRARY_IMPL(amgp, CUDA, m) {
  m.impl("block_linear", &amgp::block_linear_cuda);
  m.impl("_block_linear_forward", &amgp::block_linear_forward_cuda);
  m.impl("block_linear_backward", &amgp::block_linear_backward_cuda);
}
