"""The exact words of amgp_kernels' argument errors (test_bad_input.py checks which error each bad input raises):
each names the argument and shows the value that is wrong, as the user passed it; and the edge values that are
valid (block_size 1, a 1-D x) pass."""
import pytest
import torch

from amgp_kernels import block_linear
from amgp_kernels.checks import check_bool, check_block_indices, check_number, validation_requested

X, W = torch.ones(2, 3, 8), torch.ones(6, 8)  # a 3-D x: its last dimension differs from its second
BLOCKS = torch.tensor([0], dtype=torch.int32)


@pytest.mark.parametrize("kwargs, message", [
    ({"x": [1.0]}, r"^x must be a torch\.Tensor, got list$"),
    ({"weight": (1.0,)}, r"^weight must be a torch\.Tensor, got tuple$"),
    ({"bias": 1.0}, r"^bias must be a torch\.Tensor, got float$"),
    ({"in_blocks": [0]}, r"^in_blocks must be a torch\.Tensor, got list$"),
    ({"packed_in": 1}, r"^packed_in must be a bool, got int$"),
])
def test_a_wrong_type_is_named_with_the_type_given(kwargs, message):
    arguments = {"x": X, "weight": W, "bias": None, "in_blocks": None, "out_blocks": None, "block_size": 4,
                 **kwargs}
    with pytest.raises(TypeError, match=message):
        block_linear(**arguments)


def test_shape_errors_show_x_s_last_dimension():
    with pytest.raises(ValueError, match=r"^x\.shape\[-1\] \(8\) must equal weight\.shape\[1\] \(in_features=5\)$"):
        block_linear(X, torch.ones(6, 5), None, None, None, 4)
    with pytest.raises(ValueError, match=r"^x must have at least 1 dimension \(\.\.\., in_features\)$"):
        block_linear(torch.tensor(1.0), W, None, None, None, 4)


def test_a_packed_x_of_the_wrong_width_is_told_the_widths_it_may_have():
    short = torch.ones(6, 10)  # 10 inputs in blocks of 4: the last block has 2 channels
    blocks = torch.tensor([0, 2], dtype=torch.int32)
    with pytest.raises(ValueError, match=r"^x is packed \(packed_in=True\), so x\.shape\[-1\] \(3\) must equal the "
                                         r"number of active input channels \(8 or 6 for these in_blocks\)$"):
        block_linear(torch.ones(2, 5, 3), short, None, blocks, None, 4, packed_in=True)
    # 8 fits the metadata but not the index values (the short block is listed): the exact count is named
    with pytest.raises(ValueError, match=r"^x is packed \(packed_in=True\), so x\.shape\[-1\] \(8\) must equal the "
                                         r"number of active input channels \(6\)$"):
        block_linear(torch.ones(2, 3, 8), short, None, blocks, None, 4, packed_in=True)


def test_edge_values_that_are_valid_pass():
    y = block_linear(torch.ones(8), W, None, None, None, 1)  # a 1-D x, blocks of one channel
    assert y.shape == (6,) and y.tolist() == [8.0] * 6


def test_block_lists_out_of_range_or_unsorted_are_named_with_the_offending_block():
    with pytest.raises(ValueError, match=r"^in_blocks contains block -1, outside \[0, 3\) for 10 features in blocks "
                                         r"of 4$"):
        check_block_indices(torch.tensor([-1, 5]), 10, 4, "in_blocks")
    with pytest.raises(ValueError, match=r"^out_blocks contains block 3, outside \[0, 3\)"):
        check_block_indices(torch.tensor([0, 3]), 10, 4, "out_blocks")
    with pytest.raises(ValueError, match=r"^in_blocks must be sorted in increasing order without duplicates$"):
        check_block_indices(torch.tensor([0, 2, 1]), 10, 4, "in_blocks")
    check_block_indices(torch.tensor([2]), 10, 4, "in_blocks")  # one block is sorted


def test_bool_and_number_checks_name_the_argument_and_the_type_given():
    with pytest.raises(TypeError, match=r"^packed_out must be a bool, got str$"):
        check_bool("yes", "packed_out")
    check_number(0.5, "drift")
    check_number(2, "drift")
    for value, type_name in (("0.5", "str"), (True, "bool"), (None, "NoneType")):
        with pytest.raises(TypeError, match=rf"^drift must be a number, got {value!r} \({type_name}\)$"):
            check_number(value, "drift")


@pytest.mark.parametrize("value, asked", [(None, False), ("", False), ("0", False), ("1", True), ("yes", True)])
def test_amgp_validate_asks_for_validation_unless_unset_empty_or_0(monkeypatch, value, asked):
    if value is None:
        monkeypatch.delenv("AMGP_VALIDATE", raising=False)
    else:
        monkeypatch.setenv("AMGP_VALIDATE", value)
    assert validation_requested() is asked


def test_validate_false_skips_reading_the_index_values():
    unsorted = torch.tensor([1, 0], dtype=torch.int32)
    with pytest.raises(ValueError, match=r"^in_blocks must be sorted in increasing order without duplicates$"):
        block_linear(X, W, None, unsorted, None, 4)  # CPU indices: checked by default
    y = block_linear(X, W, None, unsorted, None, 4, backend="reference", validate=False)  # the caller vouches
    assert y.shape == (2, 3, 6)
