// Op schemas of the `amgp` library and the pybind11 module amgp_kernels._C.
// Device implementations register themselves in csrc/cpu and csrc/cuda.
#include <torch/extension.h>
#include <torch/library.h>

#include "cpu/kept_weight_grads.h"
#include "outputs.h"

#ifndef AMGP_CUDA_ARCHS
#define AMGP_CUDA_ARCHS ""
#endif
#ifndef AMGP_CUDA_VERSION
#define AMGP_CUDA_VERSION ""
#endif
#ifndef AMGP_TORCH_VERSION
#define AMGP_TORCH_VERSION ""
#endif

TORCH_LIBRARY(amgp, m) {
  // y = act(((x * m_in) @ weight.T + bias) * m_out), see docs/design.md, "The op contract".
  // packed_in / packed_out: x / y hold only the active channels, in block order ("The packed form").
  m.def(
      "block_linear(Tensor x, Tensor weight, Tensor? bias, Tensor? in_blocks, "
      "Tensor? out_blocks, int block_size, str activation, bool packed_in=False, "
      "bool packed_out=False) -> Tensor");
  // Gradients of block_linear. `y` is the forward output (needed for relu); grad_y and y are in the
  // output's layout, grad_x comes back in x's layout, grad_weight and grad_bias are full-size.
  // Gradients not asked for by output_mask come back as empty tensors.
  // block_linear that also returns the packed weight its backward would pack again (the active
  // (out x in) part, contiguous), or an empty tensor when there is none to share (every block active,
  // or a backend that reads the weight in place). Autograd (csrc/autograd.cpp) saves it for the backward.
  m.def(
      "_block_linear_forward(Tensor x, Tensor weight, Tensor? bias, Tensor? in_blocks, Tensor? out_blocks, "
      "int block_size, str activation, bool packed_in, bool packed_out) -> (Tensor, Tensor)");
  m.def(
      "block_linear_backward(Tensor grad_y, Tensor x, Tensor weight, Tensor? y, "
      "Tensor? in_blocks, Tensor? out_blocks, int block_size, str activation, "
      "bool packed_in, bool packed_out, bool[3] output_mask, Tensor? packed_weight=None) -> (Tensor, Tensor, Tensor)");
  // Optimizer steps over the active blocks of a parameter only (docs/design.md, "Block-sparse optimizer
  // steps"): param is a weight (out x in; blocks of both sides) or a bias (1-D; in_blocks None). Each is
  // torch.optim's single-tensor update of SGD / Adam(W) / Adagrad applied to the active entries; the caller
  // computes the per-step scalars (bias corrections, decayed lr) as torch.optim does.
  m.def(
      "active_sgd_step_(Tensor(a!) param, Tensor grad, Tensor(b!)? momentum_buffer, Tensor? out_blocks, "
      "Tensor? in_blocks, int block_size, float lr, float weight_decay, float momentum, float dampening, "
      "bool nesterov, bool first_step) -> ()");
  m.def(
      "active_adam_step_(Tensor(a!) param, Tensor grad, Tensor(b!) exp_avg, Tensor(c!) exp_avg_sq, "
      "Tensor? out_blocks, Tensor? in_blocks, int block_size, float beta1, float beta2, float eps, "
      "float weight_decay, float decay_factor, float step_size, float bias_correction2_sqrt) -> ()");
  m.def(
      "active_adagrad_step_(Tensor(a!) param, Tensor grad, Tensor(b!) state_sum, Tensor? out_blocks, "
      "Tensor? in_blocks, int block_size, float clr, float weight_decay, float eps) -> ()");
}

#ifdef AMGP_WITH_CUDA
namespace amgp {
int cuda_runtime_version();  // csrc/cuda/runtime_info.cu
}
#endif

namespace amgp {
std::atomic<bool>& poison_outputs() {
  static std::atomic<bool> flag{false};
  return flag;
}
}  // namespace amgp

namespace {

pybind11::dict build_info() {
  pybind11::dict info;
  pybind11::list backends;
  backends.append("cpu");
#ifdef AMGP_WITH_CUDA
  backends.append("cuda");
#endif
  info["backends"] = backends;
  info["torch_version"] = AMGP_TORCH_VERSION;
  info["cuda_version"] = AMGP_CUDA_VERSION;
  info["cuda_archs"] = AMGP_CUDA_ARCHS;
#ifdef AMGP_WITH_CUDA
  info["cuda_runtime_version"] = amgp::cuda_runtime_version();
#endif
#ifdef _OPENMP
  info["openmp"] = true;
#else
  info["openmp"] = false;
#endif
  return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "amgp compiled kernels: registers the torch.ops.amgp operators";
  m.def("build_info", &build_info, "What this build of amgp_kernels._C contains.");
  m.def("kept_weight_grad_writes", [] {
        auto& kept = amgp::kept_weight_grads();
        return std::make_pair(kept.whole_writes.load(), kept.active_writes.load());
      }, "(whole, active blocks only): how the CPU kernel wrote pruned weight gradients so far.");
  m.def("set_poison_outputs", [](bool on) { amgp::poison_outputs().store(on); },
        "Test mode: fill new outputs with NaN before kernels write them.");
}
