"""Fake (meta) implementations of the block_linear ops, and the autograd wiring of the Triton op.

The compiled ops (amgp::block_linear on CPU/CUDA) have their autograd in C++ (csrc/autograd.cpp);
the Triton op, launched from Python anyway, gets the same wiring here: the forward op's gradients come
from its companion backward op, which fuses the activation backward and returns exact zeros in
inactive blocks.
"""
import torch


def packed_width(blocks, features, block_size):
    """Width of a packed activation: its active channel count, read from metadata only. A block list
    leaves it open only when the last block is short (features % block_size != 0) and might be in
    the list; then the width is a data-dependent size (as for nonzero) under fake tensors."""
    if blocks is None:
        return features
    if features % block_size == 0:
        return blocks.shape[0] * block_size
    return torch.library.get_ctx().new_dynamic_size()


def fake_forward(x, weight, bias, in_blocks, out_blocks, block_size, activation, packed_in=False,
                 packed_out=False):
    out_features = weight.shape[0]
    width = packed_width(out_blocks, out_features, block_size) if packed_out else out_features
    return x.new_empty((*x.shape[:-1], width))


def fake_sharing_forward(x, weight, bias, in_blocks, out_blocks, block_size, activation, packed_in, packed_out):
    """_block_linear_forward: the output, and the packed weight the CPU kernel hands to its backward (empty
    when every block is active, and on CUDA, whose kernels read the weight in place)."""
    y = fake_forward(x, weight, bias, in_blocks, out_blocks, block_size, activation, packed_in, packed_out)
    if x.device.type != "cpu" or (in_blocks is None and out_blocks is None):
        return y, x.new_empty((0,))
    out_features, in_features = weight.shape
    return y, x.new_empty((packed_width(out_blocks, out_features, block_size),
                           packed_width(in_blocks, in_features, block_size)))


def fake_backward(grad_y, x, weight, y, in_blocks, out_blocks, block_size, activation, packed_in, packed_out,
                  output_mask, packed_weight=None):
    empty = x.new_empty((0,))
    return (
        x.new_empty(x.shape) if output_mask[0] else empty,
        weight.new_empty(weight.shape) if output_mask[1] else empty,
        weight.new_empty((weight.shape[0],)) if output_mask[2] else empty,
    )


def setup_context(ctx, inputs, output):
    x, weight, bias, in_blocks, out_blocks, block_size, activation, packed_in, packed_out = inputs
    # ReLU backward needs the output; 'none' needs nothing beyond the GEMM operands.
    saved_y = output if activation == "relu" else None
    ctx.save_for_backward(x, weight, saved_y, in_blocks, out_blocks)
    ctx.arguments = (block_size, activation, packed_in, packed_out)
    ctx.has_bias = bias is not None


def make_backward(backward_op):
    """Autograd backward for a forward op whose gradients `backward_op` computes."""

    def backward(ctx, grad_y):
        x, weight, y, in_blocks, out_blocks = ctx.saved_tensors
        wanted = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        grads = backward_op(grad_y, x, weight, y, in_blocks, out_blocks, *ctx.arguments, wanted)
        return (*(grad if want else None for grad, want in zip(grads, wanted)), None, None, None, None, None, None)

    return backward


def register_fakes(forward_name, backward_name, sharing_forward_name=None):
    torch.library.register_fake(forward_name)(fake_forward)
    torch.library.register_fake(backward_name)(fake_backward)
    if sharing_forward_name is not None:
        torch.library.register_fake(sharing_forward_name)(fake_sharing_forward)


def register(forward_name, backward_name):
    """register_fake for both ops and register_autograd for the forward op (Python-launched backends)."""
    register_fakes(forward_name, backward_name)
    backward_op = getattr(torch.ops.amgp, backward_name.split("::")[1])
    torch.library.register_autograd(forward_name, make_backward(backward_op), setup_context=setup_context)
