// Autograd of amgp::block_linear for the compiled backends (CPU, CUDA), in C++: a training step
// runs no Python per layer call. The forward redispatches below autograd to the device kernel; the
// backward is one call of amgp::block_linear_backward, so torch.compile traces both like any op.
// When x's gradient will be needed, the forward runs as amgp::_block_linear_forward, which also returns
// the packed weight it built, and the backward reuses it instead of packing the weight again.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <string>

namespace amgp {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using ForwardSchema = Tensor(const Tensor&, const Tensor&, const c10::optional<Tensor>&, const c10::optional<Tensor>&,
                             const c10::optional<Tensor>&, int64_t, c10::string_view, bool, bool);
using SharingForwardSchema = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const c10::optional<Tensor>&,
                                                        const c10::optional<Tensor>&, const c10::optional<Tensor>&,
                                                        int64_t, c10::string_view, bool, bool);
using BackwardSchema = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&,
                                                          const c10::optional<Tensor>&, const c10::optional<Tensor>&,
                                                          const c10::optional<Tensor>&, int64_t, c10::string_view,
                                                          bool, bool, std::array<bool, 3>,
                                                          const c10::optional<Tensor>&);

const c10::TypedOperatorHandle<ForwardSchema>& forward_op() {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("amgp::block_linear", "").typed<ForwardSchema>();
  return op;
}

const c10::TypedOperatorHandle<SharingForwardSchema>& sharing_forward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("amgp::_block_linear_forward", "")
                             .typed<SharingForwardSchema>();
  return op;
}

const c10::TypedOperatorHandle<BackwardSchema>& backward_op() {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("amgp::block_linear_backward", "").typed<BackwardSchema>();
  return op;
}

c10::optional<Tensor> defined_or_none(const Tensor& t) {
  return t.defined() ? c10::optional<Tensor>(t) : c10::nullopt;
}

class BlockLinearFunction : public torch::autograd::Function<BlockLinearFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& weight, const c10::optional<Tensor>& bias,
                        const c10::optional<Tensor>& in_blocks, const c10::optional<Tensor>& out_blocks,
                        int64_t block_size, c10::string_view activation, bool packed_in, bool packed_out,
                        bool share_weight) {
    Tensor y, packed_weight;
    {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      if (share_weight)
        std::tie(y, packed_weight) = sharing_forward_op().call(x, weight, bias, in_blocks, out_blocks, block_size,
                                                               activation, packed_in, packed_out);
      else
        y = forward_op().call(x, weight, bias, in_blocks, out_blocks, block_size, activation, packed_in, packed_out);
    }
    const bool relu = activation == "relu";
    // ReLU's backward needs the output; 'none' needs only the GEMM operands.
    ctx->save_for_backward({x, weight, relu ? y : Tensor(), in_blocks.value_or(Tensor()),
                            out_blocks.value_or(Tensor()), packed_weight});
    ctx->saved_data["block_size"] = block_size;
    ctx->saved_data["activation"] = std::string(activation);
    ctx->saved_data["packed_in"] = packed_in;
    ctx->saved_data["packed_out"] = packed_out;
    ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    // Edges follow the tensor arguments that were given: x, weight, then bias when there is one.
    const std::array<bool, 3> wanted = {ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                                        has_bias && ctx->needs_input_grad(2)};
    const std::string activation = ctx->saved_data["activation"].toStringRef();
    auto [grad_x, grad_weight, grad_bias] = backward_op().call(
        grad_outputs[0], saved[0], saved[1], defined_or_none(saved[2]), defined_or_none(saved[3]),
        defined_or_none(saved[4]), ctx->saved_data["block_size"].toInt(), activation,
        ctx->saved_data["packed_in"].toBool(), ctx->saved_data["packed_out"].toBool(), wanted,
        defined_or_none(saved[5]));
    // One entry per forward argument; the non-tensor and index arguments get none.
    return {wanted[0] ? grad_x : Tensor(), wanted[1] ? grad_weight : Tensor(), wanted[2] ? grad_bias : Tensor(),
            Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

Tensor block_linear_autograd(const Tensor& x, const Tensor& weight, const c10::optional<Tensor>& bias,
                             const c10::optional<Tensor>& in_blocks, const c10::optional<Tensor>& out_blocks,
                             int64_t block_size, c10::string_view activation, bool packed_in, bool packed_out) {
  // Only x's gradient (dx = dy' @ W_p) reads the packed weight again.
  const bool share_weight = at::GradMode::is_enabled() && x.requires_grad();
  return BlockLinearFunction::apply(x, weight, bias, in_blocks, out_blocks, block_size, activation, packed_in,
                                    packed_out, share_weight);
}

}  // namespace
}  // namespace amgp

TORCH_LIBRARY_IMPL(amgp, Autograd, m) { m.impl("block_linear", &amgp::block_linear_autograd); }
