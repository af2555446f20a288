"""Argument checks for block_linear: a clear exception naming the argument, never a crash.

`check_arguments` looks only at metadata (cheap, no host sync). `check_block_indices` reads index
values, so it runs where indices are built, for CPU indices, or when validation is asked for.
"""
import numbers
import os

import torch

from .blocks import active_channels, num_blocks, possible_packed_widths
from .reference import ACTIVATIONS

SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def validation_requested() -> bool:
    return os.environ.get("AMGP_VALIDATE", "0") not in ("", "0")


class NotAnIntError(TypeError, ValueError):
    """A non-int (a bool included) where an int is required. A TypeError, and a ValueError as well: the
    module and data constructors raised ValueError for it, and callers catching that keep working."""


def check_int(value, name, minimum=None):
    """`value` itself if it is an int (a bool is not) and at least `minimum` (None: any int); otherwise
    an error naming the argument: NotAnIntError for the type, ValueError for the range."""
    wanted = "an int" if minimum is None else "a positive int" if minimum == 1 else f"an int >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise NotAnIntError(f"{name} must be {wanted}, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return value


def check_bool(value, name):
    """TypeError naming the argument unless `value` is a bool (1 or "yes" are refused, not read as True)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")


def check_number(value, name):
    """TypeError naming the argument unless `value` is a real number (an int or float, not a bool or a
    string such as "0.5"), so that range checks after it never raise Python's bare comparison TypeError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")


def _require_tensor(value, name):
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")


def check_block_index_metadata(blocks, name, device):
    if blocks is None:
        return
    _require_tensor(blocks, name)
    if blocks.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(blocks.shape)}")
    if blocks.dtype != torch.int32:
        raise TypeError(f"{name} must be int32, got {blocks.dtype}")
    if blocks.device != device:
        raise ValueError(f"{name} must be on x's device {device}, got {blocks.device}")


def check_packed_widths(x, weight, in_blocks, block_size, packed_in):
    """x's width against the exact active channel count (reads index values)."""
    if packed_in:
        expected = active_channels(in_blocks, weight.shape[1], block_size)
        if x.shape[-1] != expected:
            raise ValueError(f"x is packed (packed_in=True), so x.shape[-1] ({x.shape[-1]}) must equal the number "
                             f"of active input channels ({expected})")


def check_arguments(x, weight, bias, in_blocks, out_blocks, block_size, activation, packed_in=False,
                    packed_out=False):
    _require_tensor(x, "x")
    _require_tensor(weight, "weight")
    check_int(block_size, "block_size")
    if block_size <= 0:  # the compiled op's wording (csrc/op_checks.h)
        raise ValueError(f"block_size must be > 0, got {block_size}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {tuple(weight.shape)}")
    if x.dim() < 1:
        raise ValueError("x must have at least 1 dimension (..., in_features)")
    check_bool(packed_in, "packed_in")
    check_bool(packed_out, "packed_out")
    if not packed_in and x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"x.shape[-1] ({x.shape[-1]}) must equal weight.shape[1] (in_features={weight.shape[1]})"
        )
    if x.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"x dtype {x.dtype} is not supported; use one of {SUPPORTED_DTYPES}")
    if weight.dtype != x.dtype:
        raise TypeError(f"weight dtype {weight.dtype} differs from x dtype {x.dtype}")
    if weight.device != x.device:
        raise ValueError(f"weight is on {weight.device} but x is on {x.device}")
    if bias is not None:
        _require_tensor(bias, "bias")
        if tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
        if bias.dtype != x.dtype:
            raise TypeError(f"bias dtype {bias.dtype} differs from x dtype {x.dtype}")
        if bias.device != x.device:
            raise ValueError(f"bias is on {bias.device} but x is on {x.device}")
    check_block_index_metadata(in_blocks, "in_blocks", x.device)
    check_block_index_metadata(out_blocks, "out_blocks", x.device)
    if packed_in and x.shape[-1] not in possible_packed_widths(in_blocks, weight.shape[1], block_size):
        widths = " or ".join(map(str, possible_packed_widths(in_blocks, weight.shape[1], block_size)))
        raise ValueError(f"x is packed (packed_in=True), so x.shape[-1] ({x.shape[-1]}) must equal the number of "
                         f"active input channels ({widths} for these in_blocks)")


def check_block_indices(blocks, features, block_size, name):
    """Index contents: sorted, unique, within [0, num_blocks). Reads the values (host sync on GPU)."""
    if blocks is None or blocks.numel() == 0:
        return
    limit = num_blocks(features, block_size)
    values = blocks.detach().cpu().long()
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= limit:
        bad = low if low < 0 else high
        raise ValueError(f"{name} contains block {bad}, outside [0, {limit}) for {features} features "
                         f"in blocks of {block_size}")
    if values.numel() > 1 and not bool((values[1:] > values[:-1]).all()):
        raise ValueError(f"{name} must be sorted in increasing order without duplicates")
