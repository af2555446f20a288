"""The Triton backend as PyTorch operators: amgp::block_linear_triton and its backward, with fake
(meta) implementations and autograd from amgp_kernels.autograd, so torch.compile and opcheck work."""
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .. import autograd
from . import launch


@torch.library.custom_op("amgp::block_linear_triton", mutates_args=())
def block_linear_triton(x: Tensor, weight: Tensor, bias: Optional[Tensor], in_blocks: Optional[Tensor],
                        out_blocks: Optional[Tensor], block_size: int, activation: str, packed_in: bool = False,
                        packed_out: bool = False) -> Tensor:
    """amgp_kernels.block_linear (the op contract of docs/design.md) with Triton kernels."""
    return launch.forward(x, weight, bias, in_blocks, out_blocks, block_size, activation, packed_in, packed_out)


@torch.library.custom_op("amgp::block_linear_triton_backward", mutates_args=())
def block_linear_triton_backward(grad_y: Tensor, x: Tensor, weight: Tensor, y: Optional[Tensor],
                                 in_blocks: Optional[Tensor], out_blocks: Optional[Tensor], block_size: int,
                                 activation: str, packed_in: bool, packed_out: bool,
                                 output_mask: List[bool]) -> Tuple[Tensor, Tensor, Tensor]:
    """(grad_x, grad_weight, grad_bias) of block_linear_triton; those not in output_mask are empty."""
    return launch.backward(grad_y, x, weight, y, in_blocks, out_blocks, block_size, activation, packed_in,
                           packed_out, output_mask)


autograd.register("amgp::block_linear_triton", "amgp::block_linear_triton_backward")
