"""Block masks from user input (amgp.masks.as_block_mask) and the check that a state_dict gives a tied pair's two
mask keys one value (a missing key is all-active), with a message showing both values."""
import pytest
import torch
from torch import nn

from amgp import SparseLinear, sparsify
from amgp.masks import as_block_mask


def test_a_block_mask_is_made_on_the_device_asked_for():
    mask = as_block_mask([True, False, True], 3, "out_mask", device="meta")
    assert mask.device.type == "meta" and mask.dtype == torch.bool and tuple(mask.shape) == (3,)
    assert as_block_mask((True, False), 2, "m").tolist() == [True, False]


@pytest.mark.parametrize("mask, error, message", [
    ([[True], [True, False]], TypeError, r"out_mask must be a bool tensor or a sequence of bools .one entry per "
                                         r"block., got list: "),
    ("ab", TypeError, "out_mask must be a bool tensor or a sequence of bools .*got str"),
    ([1, 0, 1, 1], TypeError, r"out_mask must be a bool tensor .one entry per block., got dtype torch.int64"),
    ([True, False], ValueError, r"out_mask must have shape \(4,\) .one entry per block., got \(2,\)"),
])
def test_bad_masks_name_the_mask_and_what_was_given(mask, error, message):
    layer = SparseLinear(8, 16, block_size=4)
    with pytest.raises(error, match=message):
        layer.set_out_mask(mask)


def chain():
    torch.manual_seed(0)
    return sparsify(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1)),
                    block_size=4)


def test_a_missing_mask_key_is_all_active_and_must_agree_with_its_tied_key():
    state = chain().state_dict()
    assert not any(key.endswith("_mask") for key in state)  # full density: no mask keys
    # The first tied pair has no keys at all (all-active); the second gives only one side, pruned.
    state["2.out_mask"] = torch.tensor([True, False])
    with pytest.raises(RuntimeError) as caught:
        chain().load_state_dict(state)
    message = str(caught.value)
    assert ("2.out_mask and 4.in_mask are one shared mask (tied layers), but the state_dict gives them different "
            "values ([True, False] vs [True, True]; a missing key means all-active)") in message
    assert "0.out_mask" not in message
    # Both sides given, equal: loads; the other side alone, all-active: loads too.
    state["4.in_mask"] = torch.tensor([True, False])
    model = chain()
    model.load_state_dict(state)
    assert model[4].in_mask.tolist() == [True, False]
    del state["2.out_mask"], state["4.in_mask"]
    state["4.in_mask"] = torch.tensor([True, True])
    chain().load_state_dict(state)


def test_tied_keys_of_different_lengths_are_refused_with_both_values():
    state = chain().state_dict()
    state["2.out_mask"] = torch.tensor([True, False])
    state["4.in_mask"] = torch.tensor([True, False, True])
    with pytest.raises(RuntimeError, match=r"different values \(\[True, False\] vs \[True, False, True\]"):
        chain().load_state_dict(state)
