"""Every class of bad input gets a clear exception that names the argument (never a crash)."""
import pytest
import torch

import amgp_kernels
from amgp_kernels import BackendUnavailableError
from amgp_kernels.checks import check_int


def good():
    return dict(x=torch.randn(4, 40), weight=torch.randn(24, 40), bias=torch.randn(24),
                in_blocks=torch.tensor([0, 2], dtype=torch.int32), out_blocks=torch.tensor([1], dtype=torch.int32),
                block_size=8, activation="relu")


def call(**changes):
    args = good()
    args.update(changes)
    return amgp_kernels.block_linear(**args)


I32 = torch.int32
CASES = {
    "x not a tensor": (dict(x=[[1.0] * 40]), TypeError, "x must be a torch.Tensor"),
    "x 0-d": (dict(x=torch.tensor(1.0)), ValueError, "x must have at least 1 dimension"),
    "weight not 2-D": (dict(weight=torch.randn(24, 40, 1)), ValueError, "weight must be 2-D"),
    "in_features mismatch": (dict(x=torch.randn(4, 41)), ValueError, r"x.shape\[-1\] \(41\)"),
    "x dtype unsupported": (dict(x=torch.ones(4, 40, dtype=torch.int64)), TypeError, "x dtype"),
    "weight dtype differs": (dict(weight=torch.randn(24, 40, dtype=torch.float64)), TypeError, "weight dtype"),
    "weight device differs": (dict(weight=torch.randn(24, 40, device="meta")), ValueError, "weight is on meta"),
    "bias shape": (dict(bias=torch.randn(23)), ValueError, r"bias must have shape \(24,\)"),
    "bias dtype": (dict(bias=torch.randn(24, dtype=torch.float64)), TypeError, "bias dtype"),
    "bias device": (dict(bias=torch.randn(24, device="meta")), ValueError, "bias is on meta"),
    "indices unsorted": (dict(in_blocks=torch.tensor([2, 0], dtype=I32)), ValueError, "in_blocks must be sorted"),
    "indices duplicated": (dict(out_blocks=torch.tensor([1, 1], dtype=I32)), ValueError, "out_blocks must be sorted"),
    "index out of range": (dict(in_blocks=torch.tensor([0, 5], dtype=I32)), ValueError, "in_blocks contains block 5"),
    "index negative": (dict(out_blocks=torch.tensor([-1], dtype=I32)), ValueError, "out_blocks contains block -1"),
    "indices wrong dtype": (dict(in_blocks=torch.tensor([0, 2])), TypeError, "in_blocks must be int32"),
    "indices wrong device": (dict(out_blocks=torch.tensor([1], dtype=I32, device="meta")), ValueError,
                             "out_blocks must be on x's device"),
    "indices 2-D": (dict(in_blocks=torch.tensor([[0, 2]], dtype=I32)), ValueError, "in_blocks must be 1-D"),
    "block_size zero": (dict(block_size=0), ValueError, "block_size must be > 0"),
    "block_size negative": (dict(block_size=-8), ValueError, "block_size must be > 0"),
    "block_size not int": (dict(block_size=8.0), TypeError, "block_size must be an int"),
    "activation unknown": (dict(activation="gelu"), ValueError, "activation must be one of"),
    "packed_in not bool": (dict(packed_in="yes"), TypeError, "packed_in must be a bool"),
    "packed_out not bool": (dict(packed_out=1), TypeError, "packed_out must be a bool"),
    # in_blocks [0, 2] of 5 blocks of 8: a packed x has 16 channels
    "packed x too wide": (dict(packed_in=True), ValueError, r"x is packed .*x.shape\[-1\] \(40\).*\(16 "),
    "packed x too narrow": (dict(x=torch.randn(4, 8), packed_in=True), ValueError, r"x.shape\[-1\] \(8\)"),
}


@pytest.mark.parametrize("case", CASES)
def test_block_linear_rejects(case):
    changes, error, message = CASES[case]
    with pytest.raises(error, match=message):
        call(**changes)


def test_validation_catches_bad_indices_on_every_backend_that_runs_here():
    for backend in amgp_kernels.available_backends():
        with pytest.raises(ValueError, match="in_blocks must be sorted"):
            call(in_blocks=torch.tensor([2, 0], dtype=I32), backend=backend)


def test_packed_width_with_a_short_last_block_is_checked_exactly():
    """With a short last block (44 channels = 6 blocks of 8, the last 4 wide) the packed width depends on
    whether that block is active: metadata leaves two widths open, the index values decide."""
    weight = torch.randn(24, 44)
    with_short = torch.tensor([0, 5], dtype=I32)  # 8 + 4 channels
    without = torch.tensor([0, 4], dtype=I32)  # 8 + 8 channels
    for backend in amgp_kernels.available_backends():
        assert amgp_kernels.block_linear(torch.randn(3, 12), weight, None, with_short, None, 8, packed_in=True,
                                         backend=backend).shape == (3, 24)
        with pytest.raises(ValueError, match=r"x.shape\[-1\] \(16\) must equal the number of active input "
                                             r"channels \(12\)"):
            amgp_kernels.block_linear(torch.randn(3, 16), weight, None, with_short, None, 8, packed_in=True,
                                      backend=backend)
        with pytest.raises(ValueError, match=r"\(16\)"):
            amgp_kernels.block_linear(torch.randn(3, 12), weight, None, without, None, 8, packed_in=True,
                                      backend=backend)


def test_compiled_op_checks_indices_itself():
    """Calling torch.ops.amgp directly (no Python checks) still raises instead of reading out of bounds."""
    if "cpu" not in amgp_kernels.build_info()["compiled_backends"]:
        pytest.skip("C++ extension not built")
    args = good()
    for blocks, message in [([0, 9], "out of range"), ([2, 1], "sorted and unique")]:
        args["in_blocks"] = torch.tensor(blocks, dtype=I32)
        with pytest.raises(RuntimeError, match=f"in_blocks.*{message}"):
            torch.ops.amgp.block_linear(*args.values())


def test_backend_errors_say_what_is_available():
    with pytest.raises(ValueError, match="backend must be one of"):
        call(backend="gpu")
    with pytest.raises(BackendUnavailableError, match="available here"):
        call(backend="cuda")  # CPU tensors: the CUDA backend cannot take them
    with pytest.raises(ValueError, match="backend"):
        amgp_kernels.set_backend("fast")


def test_amgp_backend_environment_variable(monkeypatch):
    monkeypatch.setenv("AMGP_BACKEND", "reference")
    assert amgp_kernels.get_backend() == "reference"
    monkeypatch.setenv("AMGP_BACKEND", "bogus")
    with pytest.raises(ValueError, match="AMGP_BACKEND"):
        call()


@pytest.mark.parametrize("value, minimum, error, message", [
    (True, None, TypeError, r"steps must be an int, got True \(bool\)"),
    (8.0, 1, TypeError, r"steps must be a positive int, got 8.0 \(float\)"),
    ("3", 0, ValueError, r"steps must be an int >= 0, got '3' \(str\)"),  # the type error is a ValueError too
    (0, 1, ValueError, "steps must be a positive int, got 0"),
    (1, 2, ValueError, "steps must be an int >= 2, got 1"),
])
def test_check_int_names_the_argument(value, minimum, error, message):
    with pytest.raises(error, match=message):
        check_int(value, "steps", minimum=minimum)


def test_check_int_returns_good_values():
    assert check_int(0, "n") == 0 and check_int(-4, "n") == -4 and check_int(2, "n", minimum=2) == 2
