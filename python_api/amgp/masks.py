"""Block masks (one bool per channel block) and the int32 index lists the kernels take."""
import torch

from amgp_kernels.blocks import channel_mask, num_blocks

__all__ = ["as_block_mask", "channel_mask", "check_tied_mask_keys", "mask_to_indices", "num_blocks"]


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


def check_tied_mask_keys(state_dict, tied, error_msgs):
    """For each (producer key prefix, consumer key prefix) in `tied`, whose producer.out_mask and
    consumer.in_mask are one shared tensor: a state_dict giving the two keys different values would
    silently keep whichever loads last, so report it in `error_msgs`. An absent key means all-active."""
    for producer, consumer in tied:
        keys = (f"{producer}.out_mask", f"{consumer}.in_mask")
        values = [state_dict.get(key) for key in keys]
        if all(v is None for v in values) or not all(isinstance(v, torch.Tensor) or v is None for v in values):
            continue
        shape = next(v.shape for v in values if v is not None)
        values = [torch.ones(shape, dtype=torch.bool) if v is None else v.detach().cpu() for v in values]
        if values[0].shape != values[1].shape or not torch.equal(values[0], values[1]):
            error_msgs.append(f"{keys[0]} and {keys[1]} are one shared mask (tied layers), but the state_dict "
                              f"gives them different values ({values[0].tolist()} vs {values[1].tolist()}; "
                              "a missing key means all-active)")
