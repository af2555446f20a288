"""SparseLinear's public surface, each promise checked by its result: constructor arguments and defaults
(dtype, meta device, bool masks), errors that name the argument, the backend a forward uses, state_dict loading
errors and keep_vars, repr, from_linear / to_linear, nn.Linear's init for a single input, and tie_in_mask."""
import pytest
import torch
from torch import nn

from amgp import SparseLinear


def test_constructor_arguments_and_defaults():
    layer = SparseLinear(64, 40)
    assert layer.block_size == 32 and (layer.n_in_blocks, layer.n_out_blocks) == (2, 2)
    assert layer.activation == "none" and layer.backend is None and not layer.packed_in and not layer.packed_out
    double = SparseLinear(6, 8, block_size=4, dtype=torch.float64, backend="reference")
    assert double.weight.dtype == double.bias.dtype == torch.float64 and double.backend == "reference"
    assert double.out_mask.dtype == double.in_mask.dtype == torch.bool
    meta = SparseLinear(6, 8, block_size=4, device="meta")
    assert all(t.is_meta for t in (meta.weight, meta.bias, meta.out_mask, meta.in_mask))
    assert meta.in_mask.dtype == torch.bool and tuple(meta.in_mask.shape) == (2,)
    single = SparseLinear(1, 1, block_size=1)  # the smallest layer
    assert single(torch.ones(2, 1)).shape == (2, 1)


def test_a_single_input_gets_nn_linears_bias_range():
    torch.manual_seed(0)
    bias = SparseLinear(1, 64, block_size=8).bias.detach()
    assert bias.abs().max() <= 1 and bias.abs().max() > 0.5  # uniform(-1/sqrt(1), 1/sqrt(1))


@pytest.mark.parametrize("kwargs, error, message", [
    ({"in_features": 0}, ValueError, "^in_features must be"),
    ({"out_features": 0}, ValueError, "^out_features must be"),
    ({"out_features": 2.0}, TypeError, "^out_features must be"),
    ({"block_size": 0}, ValueError, "^block_size must be"),
    ({"activation": "gelu"}, ValueError, r"^activation must be 'none' or 'relu', got 'gelu'$"),
    ({"packed_in": "yes"}, TypeError, "^packed_in must be a bool"),
    ({"packed_out": 1}, TypeError, "^packed_out must be a bool"),
])
def test_bad_arguments_name_themselves(kwargs, error, message):
    with pytest.raises(error, match=message):
        SparseLinear(**{"in_features": 8, "out_features": 8, "block_size": 4, **kwargs})


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_forward_runs_on_the_backend_asked_for():
    layer = SparseLinear(8, 8, block_size=4, backend="cuda")
    with pytest.raises(Exception, match="cuda"):
        layer(torch.randn(2, 8))


def test_state_dict_loading_errors_and_keep_vars():
    layer = SparseLinear(8, 8, block_size=4)
    assert layer.state_dict(keep_vars=True)["weight"] is layer.weight
    state = layer.state_dict()
    with pytest.raises(RuntimeError, match="out_mask must be a bool mask, got dtype torch.float32"):
        SparseLinear(8, 8, block_size=4).load_state_dict({**state, "out_mask": torch.ones(2)})
    with pytest.raises(RuntimeError, match=r"Unexpected key\(s\) in state_dict: \"extra\""):
        SparseLinear(8, 8, block_size=4).load_state_dict({**state, "extra": torch.ones(1)})
    with pytest.raises(RuntimeError, match="size mismatch for weight"):
        SparseLinear(8, 8, block_size=4).load_state_dict({**state, "weight": torch.ones(3, 3)})


def test_repr_shows_what_differs_from_a_plain_linear():
    plain = SparseLinear(8, 16, block_size=4)
    assert repr(plain) == "SparseLinear(in_features=8, out_features=16, bias=True, block_size=4, density=1.000)"
    fused = SparseLinear(8, 16, bias=False, block_size=4, activation="relu", packed_in=True, packed_out=True)
    assert repr(fused) == ("SparseLinear(in_features=8, out_features=16, bias=False, block_size=4, density=1.000, "
                           "activation=relu, packed_in=True, packed_out=True)")


def test_from_linear_copies_everything_asked_for():
    linear = nn.Linear(64, 8, dtype=torch.float64)
    layer = SparseLinear.from_linear(linear, activation="relu", backend="reference")
    assert layer.block_size == 32 and layer.activation == "relu" and layer.backend == "reference"
    assert layer.weight.dtype == torch.float64 and layer.weight is not linear.weight  # a copy by default
    assert torch.equal(layer.weight, linear.weight) and torch.equal(layer.bias, linear.bias)
    shared = SparseLinear.from_linear(linear, block_size=4, share_parameters=True)
    assert shared.weight is linear.weight and not shared.out_mask.is_meta and bool(shared.out_mask.all())
    with pytest.raises(TypeError, match="^linear must be an nn.Linear, got Conv1d$"):
        SparseLinear.from_linear(nn.Conv1d(1, 1, 1))


def test_to_linear_without_bias_has_none():
    layer = SparseLinear(8, 4, bias=False, block_size=4)
    linear = layer.to_linear()
    assert linear.bias is None
    x = torch.randn(3, 8)
    torch.testing.assert_close(linear(x), layer(x))


def test_tie_in_mask_defaults_and_errors():
    producer, consumer = SparseLinear(4, 8, block_size=4), SparseLinear(8, 2, block_size=4)
    consumer.tie_in_mask(producer)
    assert not producer.packed_out and not consumer.packed_in  # full-size activations unless asked
    with pytest.raises(TypeError, match="^packed must be a bool"):
        SparseLinear(8, 2, block_size=4).tie_in_mask(producer, packed="yes")
    with pytest.raises(TypeError, match="^producer must be a SparseLinear, got Linear$"):
        consumer.tie_in_mask(nn.Linear(4, 8))
    square = SparseLinear(8, 8, block_size=4)
    with pytest.raises(ValueError, match=r"^a layer cannot read its own output \(producer is this layer\)$"):
        square.tie_in_mask(square)
    with pytest.raises(ValueError, match="^this layer's in_mask is already tied to another producer$"):
        consumer.tie_in_mask(SparseLinear(4, 8, block_size=4))
