"""SparseMLP mask tying and prune_blocks: pruned blocks stay exactly zero under every common optimizer."""
import copy

import pytest
import torch

from amgp import SparseLinear, SparseMLP, prune_blocks
from amgp_kernels import reference


def test_mlp_chains_layers_with_fused_activation():
    mlp = SparseMLP([20, 32, 16, 4], block_size=8)
    assert [layer.activation for layer in mlp.layers] == ["relu", "relu", "none"]
    x = torch.randn(5, 20)
    expected = x
    for layer in mlp.layers:
        expected = reference.block_linear(expected, layer.weight, layer.bias, None, None, 8, layer.activation)
    torch.testing.assert_close(mlp(x), expected)
    assert SparseMLP([4, 8, 1], last_activation="relu").layers[-1].activation == "relu"
    with pytest.raises(ValueError, match="sizes"):
        SparseMLP([4])


def test_masks_are_tied_and_stay_tied_after_moves():
    mlp = SparseMLP([16, 32, 24, 8], block_size=8)
    mlp.set_out_mask(0, torch.tensor([True, False, True, False]))
    assert mlp.layers[1].in_mask is mlp.layers[0].out_mask
    assert torch.equal(mlp.layers[1].in_index, torch.tensor([0, 2], dtype=torch.int32))
    for moved in (copy.deepcopy(mlp), mlp.to(torch.float64)):
        assert moved.layers[1].in_mask is moved.layers[0].out_mask
        moved.set_out_mask(0, torch.tensor([True, True, True, False]))
        assert torch.equal(moved.layers[1].in_mask, torch.tensor([True, True, True, False]))
    x = torch.randn(3, 16, dtype=torch.float64)
    mlp.set_out_mask(0, torch.tensor([True, False, True, False]))
    h = torch.relu(reference.block_linear(x, mlp.layers[0].weight, mlp.layers[0].bias, None,
                                          torch.tensor([0, 2], dtype=torch.int32), 8))
    assert torch.equal(h[:, 8:16], torch.zeros(3, 8, dtype=torch.float64))
    # The hidden activation is packed: blocks 0 and 2 only.
    assert torch.equal(mlp.layers[0](x), torch.cat([h[:, 0:8], h[:, 16:24]], dim=1))


def _grads(module):
    return {name: p.grad.clone() for name, p in module.named_parameters()}


def _train_step(model, x):
    model.zero_grad()
    y = model(x)
    (y * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
    return y.detach()


@pytest.mark.parametrize("sizes,block_size", [([24, 64, 96, 32, 5], 16), ([20, 50, 64, 7], 16),
                                              ([10, 40, 40], 8)])
def test_packed_hidden_activations_give_the_full_size_results_bit_for_bit(sizes, block_size):
    """SparseMLP's packed hidden activations change the layout only: outputs and gradients are exactly those
    of the full-size path, dense, pruned, and after regrowth."""
    torch.manual_seed(0)
    packed = SparseMLP(sizes, block_size=block_size)
    full = SparseMLP(sizes, block_size=block_size, packed=False)
    hidden = sizes[1:-1]
    assert [layer.packed_out for layer in packed.layers[:-1]] == [w % block_size == 0 for w in hidden]
    assert not any(layer.packed_in or layer.packed_out for layer in full.layers)
    x = torch.randn(9, sizes[0])
    for step in ("dense", "pruned", "regrown"):
        if step == "pruned":
            prune_blocks(packed, 0.5)
        if step == "regrown":
            for i in range(len(packed.layers) - 1):
                packed.set_out_mask(i, torch.ones_like(packed.layers[i].out_mask))
        full.load_state_dict(packed.state_dict())
        assert torch.equal(_train_step(packed, x), _train_step(full, x)), step
        assert all(torch.equal(a, b) for a, b in zip(_grads(packed).values(), _grads(full).values())), step


def test_hidden_activations_are_packed_to_their_active_channels():
    mlp = SparseMLP([12, 64, 32, 3], block_size=16)
    mlp.set_out_mask(0, torch.tensor([True, False, False, True]))
    mlp.set_out_mask(1, torch.tensor([False, True]))
    widths = []
    for layer in mlp.layers:
        layer.register_forward_hook(lambda module, args, out: widths.append(out.shape[-1]))
    assert mlp(torch.randn(4, 12)).shape == (4, 3)
    assert widths == [32, 16, 3]


def test_full_density_mlp_matches_nn_sequential_bit_for_bit():
    """The dense phase computes exactly what the nn.Linear + ReLU model computes, gradients included."""
    torch.manual_seed(0)
    mlp = SparseMLP([30, 64, 48, 1], block_size=16)
    plain = torch.nn.Sequential(torch.nn.Linear(30, 64), torch.nn.ReLU(), torch.nn.Linear(64, 48), torch.nn.ReLU(),
                                torch.nn.Linear(48, 1))
    state = mlp.state_dict()
    plain.load_state_dict({f"{2 * i}.{p}": state[f"layers.{i}.{p}"] for i in range(3) for p in ("weight", "bias")})
    x = torch.randn(17, 30)
    assert torch.equal(_train_step(mlp, x), _train_step(plain, x))
    for i in range(3):
        for p in ("weight", "bias"):
            assert torch.equal(getattr(mlp.layers[i], p).grad, getattr(plain[2 * i], p).grad), (i, p)


def test_state_dict_round_trip_keeps_ties():
    mlp = SparseMLP([16, 32, 8], block_size=8)
    prune_blocks(mlp, 0.5)
    clone = SparseMLP([16, 32, 8], block_size=8)
    clone.load_state_dict(mlp.state_dict())
    assert clone.layers[1].in_mask is clone.layers[0].out_mask
    x = torch.randn(4, 16)
    torch.testing.assert_close(clone(x), mlp(x))


def test_prune_blocks_keeps_density_and_the_largest_blocks():
    mlp = SparseMLP([16, 64, 8], block_size=8)
    with torch.no_grad():
        mlp.layers[0].weight[:32] *= 100  # blocks 0..3 dominate
    prune_blocks(mlp, 0.5)
    assert mlp.layers[0].out_mask.tolist() == [True] * 4 + [False] * 4
    assert bool(mlp.layers[1].out_mask.all())  # the output layer is never pruned
    assert torch.equal(mlp.layers[0].weight[32:], torch.zeros(32, 16))
    assert torch.equal(mlp.layers[0].bias[32:], torch.zeros(32))
    assert torch.equal(mlp.layers[1].weight[:, 32:], torch.zeros(8, 32))
    with pytest.raises(ValueError, match="density"):
        prune_blocks(mlp, 1.5)
    with pytest.raises(ValueError, match="no SparseLinear"):
        prune_blocks(torch.nn.Linear(2, 2), 0.5)


OPTIMIZERS = {
    "sgd_momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=0.1),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_pruned_blocks_stay_exactly_zero_while_training(name):
    torch.manual_seed(0)
    model = torch.nn.Sequential(SparseMLP([12, 48, 32, 1], block_size=8), SparseLinear(1, 16, block_size=4))
    optimizer = OPTIMIZERS[name](model.parameters())
    x, target = torch.randn(64, 12), torch.randn(64, 16)

    def train(steps):
        for _ in range(steps):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x), target).backward()
            optimizer.step()

    train(3)  # optimizer state exists before pruning
    prune_blocks(model, 0.5, optimizer)
    layers = [m for m in model.modules() if isinstance(m, SparseLinear)]
    inactive = {id(layer): ~layer.weight_mask for layer in layers}
    for layer in layers:
        for state in optimizer.state[layer.weight].values():
            if isinstance(state, torch.Tensor) and state.shape == layer.weight.shape:
                assert torch.equal(state[inactive[id(layer)]], torch.zeros_like(state[inactive[id(layer)]]))
    before = [layer.weight.detach().clone() for layer in layers]
    train(5)
    for layer, old in zip(layers, before):
        dead = inactive[id(layer)]
        assert dead.any() == (layer in layers[:3])  # output layers (untied) are never pruned
        assert torch.equal(layer.weight[dead], torch.zeros_like(layer.weight[dead]))
        assert not torch.equal(layer.weight[~dead], old[~dead])  # the active part still trains
        if layer.bias is not None:
            off = ~layer.out_channel_mask
            assert torch.equal(layer.bias[off], torch.zeros_like(layer.bias[off]))
