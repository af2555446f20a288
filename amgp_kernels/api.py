"""The public op: argument checks, backend choice, then the chosen kernel."""
import torch

from . import backends
from .checks import check_arguments, check_block_indices, check_packed_widths, validation_requested


def block_linear(x, weight, bias, in_blocks, out_blocks, block_size, activation="none", packed_in=False,
                 packed_out=False, *, backend=None, validate=None):
    """y = act(((x * m_in) @ weight.T + bias) * m_out) over active channel blocks (docs/design.md).

    x: (..., in_features); weight: (out_features, in_features); bias: (out_features,) or None.
    in_blocks / out_blocks: sorted unique int32 block indices on x's device, or None for all blocks.
    block_size: channels per block (the last block of a dimension may be shorter).
    activation: "none" or "relu" (fused).
    packed_in: x holds only the active input channels, in block order: (..., active in channels).
    packed_out: y holds only the active output channels, in block order. Gradients come back in the
        layout of their input; dweight and dbias are always full-size (zeros outside active blocks).
    backend: "auto", "cpu", "cuda", "triton" or "reference" (default: see amgp_kernels.set_backend).
    validate: check index contents (sorted, unique, in range). Default: for CPU indices, or when
        AMGP_VALIDATE=1. Checking CUDA indices reads them on the host (a sync).
    """
    check_arguments(x, weight, bias, in_blocks, out_blocks, block_size, activation, packed_in, packed_out)
    if validate is None:
        validate = x.device.type == "cpu" or validation_requested()
    if validate and not torch.compiler.is_compiling():
        check_block_indices(in_blocks, weight.shape[1], block_size, "in_blocks")
        check_block_indices(out_blocks, weight.shape[0], block_size, "out_blocks")
        check_packed_widths(x, weight, in_blocks, block_size, packed_in)
    op = backends.resolve(backend, x.device)
    return op(x, weight, bias, in_blocks, out_blocks, block_size, activation, packed_in, packed_out)
