"""amgp_kernels.blocks, the block geometry every layer shares: block counts with a short last block, the bool
channel mask of a block list on the device asked for, and the widths a packed activation can have.
("meta" tensors stand in for a second device on a CPU-only machine.)"""
import pytest
import torch

from amgp_kernels.blocks import active_channels, channel_mask, num_blocks, possible_packed_widths


def test_block_counts_round_up_to_a_short_last_block():
    assert [num_blocks(features, 4) for features in (1, 4, 8, 9, 10)] == [1, 1, 2, 3, 3]


def test_channel_mask_marks_the_channels_of_the_listed_blocks():
    mask = channel_mask(torch.tensor([0, 2]), 10, 4)
    assert mask.dtype == torch.bool and mask.tolist() == [True] * 4 + [False] * 4 + [True] * 2
    every = channel_mask(None, 5, 2)
    assert every.dtype == torch.bool and every.tolist() == [True] * 5


@pytest.mark.parametrize("blocks", [None, torch.tensor([1])])
def test_channel_mask_is_made_on_the_device_asked_for(blocks):
    mask = channel_mask(blocks, 6, 4, device="meta")
    assert (mask.device.type, mask.dtype, mask.shape) == ("meta", torch.bool, (6,))


def test_channel_mask_defaults_to_the_blocks_device():
    assert channel_mask(torch.tensor([1], device="meta"), 6, 4).device.type == "meta"
    assert channel_mask(None, 6, 4).device.type == "cpu"


def test_packed_widths_depend_on_whether_the_short_last_block_may_be_active():
    assert possible_packed_widths(None, 10, 4) == (10,)
    assert possible_packed_widths(torch.tensor([0, 1]), 8, 4) == (8,)  # no short block
    assert possible_packed_widths(torch.tensor([0, 2]), 9, 4) == (8, 5)  # last block: 1 channel
    assert possible_packed_widths(torch.tensor([0, 2]), 10, 4) == (8, 6)
    assert possible_packed_widths(torch.tensor([], dtype=torch.long), 10, 4) == (0,)


def test_active_channels_counts_the_short_last_block_only_when_it_is_listed():
    assert active_channels(None, 10, 4) == 10
    assert active_channels(torch.tensor([0, 2]), 10, 4) == 6
    assert active_channels(torch.tensor([0, 1]), 10, 4) == 8
    assert active_channels(torch.tensor([1]), 8, 4) == 4
