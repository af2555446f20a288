"""Block geometry: how `features` channels split into blocks of `block_size` (the last block may be
shorter), the channel mask of a block list, and the widths of packed activations (active channels only,
in block order). The op's checks, the reference, the Triton launcher and the module API all use it."""
import torch


def num_blocks(features: int, block_size: int) -> int:
    """Number of channel blocks; the last block may be shorter than block_size."""
    return -(-features // block_size)


def channel_mask(blocks, features: int, block_size: int, device=None) -> torch.Tensor:
    """Bool mask over `features` channels, True in the listed blocks (None = all blocks)."""
    if blocks is None:
        return torch.ones(features, dtype=torch.bool, device=device)
    block_of_channel = torch.arange(features, device=blocks.device) // block_size
    active = torch.zeros(num_blocks(features, block_size), dtype=torch.bool, device=blocks.device)
    active[blocks.long()] = True
    return active[block_of_channel].to(device if device is not None else blocks.device)


def possible_packed_widths(blocks, features, block_size):
    """The widths a packed activation can have, from metadata: one, or two when the last block is short
    and might be active (which of the two needs the index values)."""
    if blocks is None:
        return (features,)
    full = blocks.shape[0] * block_size
    short = features % block_size
    return (full,) if short == 0 or blocks.shape[0] == 0 else (full, full - block_size + short)


def active_channels(blocks, features, block_size):
    """Number of active channels of a side (reads the last index: a host sync for CUDA indices)."""
    if blocks is None:
        return features
    widths = possible_packed_widths(blocks, features, block_size)
    if len(widths) == 1:
        return widths[0]
    last_is_short = int(blocks[-1]) == num_blocks(features, block_size) - 1
    return widths[1] if last_is_short else widths[0]
