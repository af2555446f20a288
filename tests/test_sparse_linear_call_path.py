"""SparseLinear's thin per-call path (docs/design.md, "The per-call path"): after a checked call, calls go straight
to the op, yet every change that the checks or the backend choice depend on is still seen. (SparseMLP's chain check:
test_sparse_mlp_call_path.py.)"""
import pytest
import torch

import amgp_kernels
from amgp import SparseLinear, SparseMLP


def _layer():
    torch.manual_seed(0)
    return SparseLinear(16, 12, block_size=4)


def _model(module):
    return _layer() if module == "SparseLinear" else SparseMLP([16, 12, 8], block_size=4)


@pytest.mark.parametrize("module", ["SparseLinear", "SparseMLP"])
def test_bad_input_after_fast_calls_still_names_the_argument(module):
    model, x = _model(module), torch.randn(3, 16)
    model(x)
    model(x)
    with pytest.raises(ValueError, match=r"x.shape\[-1\]"):
        model(torch.randn(3, 15))
    with pytest.raises(TypeError, match="dtype"):
        model(x.double())
    model(x)  # and the good call works again


def test_mask_dtype_and_parameter_changes_are_seen():
    layer, x = _layer(), torch.randn(3, 16)
    layer(x)
    layer.set_out_mask(torch.tensor([True, False, True]))
    assert torch.equal(layer(x)[:, 4:8], torch.zeros(3, 4))
    layer.out_mask[1] = True  # an in-place edit of the mask
    assert layer(x)[:, 4:8].abs().sum() > 0
    layer.double()
    assert layer(x.double()).dtype == torch.float64
    layer.weight = torch.nn.Parameter(torch.zeros(12, 16, dtype=torch.float64))
    torch.testing.assert_close(layer(x.double()), layer.bias.expand(3, 12).detach())


@pytest.mark.parametrize("module", ["SparseLinear", "SparseMLP"])
def test_backend_choice_is_read_at_every_call(module, reference_calls):
    """After thin calls, a backend set for the process is used from the next call on, and unset again."""
    model = _model(module)
    layers = 1 if module == "SparseLinear" else len(model.layers)
    x = torch.randn(3, 16)
    expected = model(x)
    model(x)
    amgp_kernels.set_backend("reference")
    try:
        torch.testing.assert_close(model(x), expected)
        model(x)
    finally:
        amgp_kernels.set_backend(None)
    assert len(reference_calls) == 2 * layers
    model(x)
    assert len(reference_calls) == 2 * layers  # back on the compiled op


@pytest.mark.parametrize("activation", ["none", "relu"])
def test_a_full_size_layer_computes_exactly_what_nn_linear_computes_and_prunes_when_masked(activation):
    """Dense phases: every repeated call (the thin path) gives nn.Linear's output and gradients bit for bit;
    the first call after a mask change is pruned again."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 12)
    layer = SparseLinear.from_linear(linear, block_size=4, activation=activation)
    act = torch.relu if activation == "relu" else (lambda t: t)
    for _ in range(3):
        x = torch.randn(5, 16, requires_grad=True)
        x_twin = x.detach().clone().requires_grad_()
        y, expected = layer(x), act(linear(x_twin))
        assert torch.equal(y, expected)
        y.square().sum().backward()
        expected.square().sum().backward()
        assert torch.equal(x.grad, x_twin.grad) and torch.equal(layer.weight.grad, linear.weight.grad)
        layer.zero_grad(), linear.zero_grad()
    layer.set_out_mask(torch.tensor([True, False, True]))
    assert torch.equal(layer(torch.randn(5, 16))[:, 4:8], torch.zeros(5, 4))
