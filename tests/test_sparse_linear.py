"""SparseLinear as a drop-in nn.Linear: numerics, state_dict, device/dtype moves, copies, masks."""
import copy
import io
import pickle

import pytest
import torch
from torch import nn

from amgp import SparseLinear
from amgp_kernels import reference


def make_pair(in_f=40, out_f=24, bias=True, block_size=8):
    torch.manual_seed(0)
    dense = nn.Linear(in_f, out_f, bias=bias)
    sparse = SparseLinear.from_linear(dense, block_size=block_size)
    return dense, sparse


@pytest.mark.parametrize("bias", [True, False])
def test_full_density_equals_nn_linear(bias):
    dense, sparse = make_pair(bias=bias)
    x = torch.randn(2, 7, 40)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = dense(x1), sparse(x2)
    torch.testing.assert_close(y2, y1)
    g = torch.randn_like(y1)
    y1.backward(g)
    y2.backward(g)
    torch.testing.assert_close(x2.grad, x1.grad)
    torch.testing.assert_close(sparse.weight.grad, dense.weight.grad)
    if bias:
        torch.testing.assert_close(sparse.bias.grad, dense.bias.grad)


def test_same_parameters_and_default_init_as_nn_linear():
    torch.manual_seed(5)
    dense = nn.Linear(33, 17)
    torch.manual_seed(5)
    sparse = SparseLinear(33, 17, block_size=4)
    assert [n for n, _ in sparse.named_parameters()] == ["weight", "bias"]
    assert torch.equal(sparse.weight, dense.weight) and torch.equal(sparse.bias, dense.bias)
    assert SparseLinear(8, 4, bias=False).bias is None


def test_masked_forward_matches_reference():
    _, sparse = make_pair()
    sparse.set_out_mask(torch.tensor([True, False, True]))
    sparse.set_in_mask(torch.tensor([False, True, True, False, True]))
    x = torch.randn(5, 40)
    ref = reference.block_linear(x, sparse.weight, sparse.bias, sparse.in_index, sparse.out_index, 8)
    torch.testing.assert_close(sparse(x), ref)
    assert torch.equal(sparse(x)[:, 8:16], torch.zeros(5, 8))


def test_assigning_weight_data_works():
    _, sparse = make_pair()
    new = torch.randn(24, 40)
    sparse.weight.data = new
    x = torch.randn(3, 40)
    torch.testing.assert_close(sparse(x), x @ new.T + sparse.bias)


def test_in_place_mask_edit_is_noticed():
    _, sparse = make_pair()
    x = torch.randn(3, 40)
    sparse(x)
    sparse.out_mask[1] = False  # bypassing set_out_mask
    assert torch.equal(sparse(x)[:, 8:16], torch.zeros(3, 8))


def test_state_dict_round_trips_with_nn_linear():
    dense, sparse = make_pair()
    # Full density: exactly nn.Linear's keys, loads strictly both ways.
    assert set(sparse.state_dict()) == {"weight", "bias"}
    target = nn.Linear(40, 24)
    target.load_state_dict(sparse.state_dict())
    assert torch.equal(target.weight, sparse.weight)
    fresh = SparseLinear(40, 24, block_size=8)
    fresh.set_out_mask(torch.tensor([True, False, False]))
    fresh.load_state_dict(dense.state_dict())  # masks absent: all active
    assert bool(fresh.out_mask.all()) and fresh.out_index is None
    x = torch.randn(4, 40)
    torch.testing.assert_close(fresh(x), dense(x))


def test_pruned_state_dict_keeps_masks():
    _, sparse = make_pair()
    sparse.set_out_mask(torch.tensor([True, False, True]))
    state = sparse.state_dict()
    assert "out_mask" in state and "in_mask" not in state
    restored = SparseLinear(40, 24, block_size=8)
    restored.load_state_dict(state)
    assert torch.equal(restored.out_mask, sparse.out_mask)
    x = torch.randn(2, 40)
    torch.testing.assert_close(restored(x), sparse(x))
    with pytest.raises(RuntimeError, match="out_mask"):
        nn.Linear(40, 24).load_state_dict(state)  # a pruned layer is not silently dense


def test_to_dtype_half_and_back():
    _, sparse = make_pair()
    sparse.set_out_mask(torch.tensor([True, False, True]))
    double = copy.deepcopy(sparse).to(torch.float64)
    assert double.weight.dtype == torch.float64 and double.out_mask.dtype == torch.bool
    assert double.out_index.dtype == torch.int32
    x = torch.randn(3, 40, dtype=torch.float64)
    torch.testing.assert_close(double(x), sparse(x.float()).double(), atol=1e-5, rtol=1e-5)
    bf16 = copy.deepcopy(sparse).bfloat16()
    assert bf16(x.bfloat16()).dtype == torch.bfloat16


def test_deepcopy_and_pickle():
    _, sparse = make_pair()
    sparse.set_in_mask(torch.tensor([True, True, False, True, False]))
    x = torch.randn(3, 40)
    for clone in (copy.deepcopy(sparse), pickle.loads(pickle.dumps(sparse))):
        torch.testing.assert_close(clone(x), sparse(x))
        assert torch.equal(clone.in_mask, sparse.in_mask)
    buffer = io.BytesIO()
    torch.save(sparse, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    torch.testing.assert_close(loaded(x), sparse(x))


def test_extra_repr_shows_block_size_and_density():
    _, sparse = make_pair()
    sparse.set_out_mask(torch.tensor([True, False, True]))
    text = repr(sparse)
    assert "block_size=8" in text and "density=0.667" in text


def test_to_linear_computes_the_same_function():
    _, sparse = make_pair()
    sparse.set_out_mask(torch.tensor([False, True, True]))
    sparse.set_in_mask(torch.tensor([True, False, True, True, True]))
    x = torch.randn(6, 40)
    torch.testing.assert_close(sparse.to_linear()(x), sparse(x))


def test_bad_constructor_and_mask_arguments():
    with pytest.raises(ValueError, match="block_size"):
        SparseLinear(8, 8, block_size=0)
    with pytest.raises(ValueError, match="in_features"):
        SparseLinear(0, 8)
    with pytest.raises(ValueError, match="backend"):
        SparseLinear(8, 8, backend="gpu")
    layer = SparseLinear(40, 24, block_size=8)
    with pytest.raises(ValueError, match="out_mask"):
        layer.set_out_mask(torch.ones(4, dtype=torch.bool))
    with pytest.raises(TypeError, match="in_mask"):
        layer.set_in_mask(torch.ones(5))
    with pytest.raises(TypeError, match="linear"):
        SparseLinear.from_linear(nn.Conv1d(1, 1, 1))


def test_torch_compile_fullgraph_runs_and_trains():
    torch._dynamo.reset()
    _, sparse = make_pair()
    sparse.set_out_mask(torch.tensor([True, False, True]))
    compiled = torch.compile(sparse, fullgraph=True, backend="aot_eager")
    x = torch.randn(4, 40, requires_grad=True)
    y = compiled(x)
    torch.testing.assert_close(y, sparse(x))
    y.sum().backward()
    assert torch.equal(sparse.weight.grad[8:16], torch.zeros(8, 40))
