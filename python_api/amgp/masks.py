"""Block masks (one bool per channel block) and the int32 index lists the kernels take."""
import torch

from amgp_kernels.reference import channel_mask, num_blocks

__all__ = ["as_block_mask", "channel_mask", "mask_to_indices", "num_blocks"]


def as_block_mask(mask, n_blocks, name, device=None) -> torch.Tensor:
    """A bool tensor of n_blocks entries from a bool tensor / sequence; clear errors otherwise."""
    try:
        mask = torch.as_tensor(mask, device=device)
    except (TypeError, ValueError, RuntimeError) as error:  # None, strings, ragged lists...
        raise TypeError(f"{name} must be a bool tensor or a sequence of bools (one entry per block), "
                        f"got {type(mask).__name__}: {error}") from None
    if mask.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor (one entry per block), got dtype {mask.dtype}")
    if tuple(mask.shape) != (n_blocks,):
        raise ValueError(f"{name} must have shape ({n_blocks},) (one entry per block), got {tuple(mask.shape)}")
    return mask


def mask_to_indices(mask: torch.Tensor):
    """Sorted int32 indices of the active blocks, or None when every block is active (the dense
    fast path). Reads the mask on the host: call it when a mask changes, not per step."""
    if bool(mask.all()):
        return None
    return torch.nonzero(mask).flatten().to(torch.int32)
