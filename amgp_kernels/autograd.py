"""Autograd wiring shared by every compiled/Triton block_linear op: the forward op's gradients come
from its companion backward op, which fuses the activation backward and returns exact zeros in
inactive blocks."""
import torch


def setup_context(ctx, inputs, output):
    x, weight, bias, in_blocks, out_blocks, block_size, activation = inputs
    # ReLU backward needs the output; 'none' needs nothing beyond the GEMM operands.
    saved_y = output if activation == "relu" else None
    ctx.save_for_backward(x, weight, saved_y, in_blocks, out_blocks)
    ctx.block_size = block_size
    ctx.activation = activation
    ctx.has_bias = bias is not None


def make_backward(backward_op):
    """Autograd backward for a forward op whose gradients `backward_op` computes."""

    def backward(ctx, grad_y):
        x, weight, y, in_blocks, out_blocks = ctx.saved_tensors
        wanted = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        grad_x, grad_weight, grad_bias = backward_op(
            grad_y, x, weight, y, in_blocks, out_blocks, ctx.block_size, ctx.activation, wanted
        )
        return (
            grad_x if wanted[0] else None,
            grad_weight if wanted[1] else None,
            grad_bias if wanted[2] else None,
            None,
            None,
            None,
            None,
        )

    return backward


def fake_forward(x, weight, bias, in_blocks, out_blocks, block_size, activation):
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


def fake_backward(grad_y, x, weight, y, in_blocks, out_blocks, block_size, activation, output_mask):
    empty = x.new_empty((0,))
    return (
        x.new_empty(x.shape) if output_mask[0] else empty,
        weight.new_empty(weight.shape) if output_mask[1] else empty,
        weight.new_empty((weight.shape[0],)) if output_mask[2] else empty,
    )


def register(forward_name, backward_name):
    """register_fake for both ops and register_autograd for the forward op."""
    torch.library.register_fake(forward_name)(fake_forward)
    torch.library.register_fake(backward_name)(fake_backward)
    backward_op = getattr(torch.ops.amgp, backward_name.split("::")[1])
    torch.library.register_autograd(forward_name, make_backward(backward_op), setup_context=setup_context)
