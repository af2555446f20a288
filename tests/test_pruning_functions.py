"""amgp.pruning's functions by their documented values: block magnitude (bias, one or several consumers), the
blocks kept and where, prune_blocks' density range, layer selection by a name prefix, weight density of a model
without SparseLinear, the range of grown weights, and the second moments grown entries start with."""
import math

import pytest
import torch
from torch import nn

from amgp import BlockPruner, SparseLinear, SparseMLP, prune_blocks
from amgp.pruning import block_magnitude, keep_top_blocks, selected_layers, weight_density


def test_block_magnitude_is_incoming_norm_times_the_consumers_norm():
    torch.manual_seed(0)
    layer, a, b = SparseLinear(3, 6, block_size=4), SparseLinear(6, 2, block_size=4), SparseLinear(6, 5, block_size=4)
    blocks = [slice(0, 4), slice(4, 6)]
    rows = layer.weight.pow(2).sum(1) + layer.bias.pow(2)
    cols = a.weight.pow(2).sum(0) + b.weight.pow(2).sum(0)
    expected = torch.stack([rows[s].sum().sqrt() * cols[s].sum().sqrt() for s in blocks])
    torch.testing.assert_close(block_magnitude(layer, (a, b)), expected.detach())
    alone = torch.stack([rows[s].sum().sqrt() * a.weight.pow(2).sum(0)[s].sum().sqrt() for s in blocks])
    torch.testing.assert_close(block_magnitude(layer, a), alone.detach())  # one consumer, not in a tuple
    torch.testing.assert_close(block_magnitude(layer), torch.stack([rows[s].sum().sqrt() for s in blocks]).detach())
    no_bias = SparseLinear(3, 6, bias=False, block_size=4)
    torch.testing.assert_close(block_magnitude(no_bias), torch.stack(
        [no_bias.weight.pow(2).sum(1)[s].sum().sqrt() for s in blocks]).detach())


def test_kept_blocks_are_the_top_scores_on_the_scores_device():
    assert keep_top_blocks(torch.tensor([0.1, 3.0, 2.0, 0.5]), 0.5).tolist() == [False, True, True, False]
    assert keep_top_blocks(torch.tensor([0.1, 3.0, 2.0, 0.5]), 0.01).tolist() == [False, True, False, False]
    assert keep_top_blocks(torch.tensor([1.0, 2.0], device="meta"), 0.5).device.type == "meta"


@pytest.mark.parametrize("density, error, message", [
    (0, ValueError, r"^density must be in \(0, 1\], got 0$"),
    (1.5, ValueError, r"^density must be in \(0, 1\], got 1.5$"),
    ("half", TypeError, "^density must be a number"),
])
def test_prune_blocks_density_range(density, error, message):
    with pytest.raises(error, match=message):
        prune_blocks(SparseMLP([4, 8, 1], block_size=4), density)


def test_prune_blocks_at_density_1_keeps_everything():
    model = SparseMLP([4, 8, 1], block_size=4)
    prune_blocks(model, 1)
    assert bool(model.layers[0].out_mask.all())


def test_layers_are_selected_by_whole_name_prefixes():
    model = nn.ModuleDict({"mlp_a": SparseMLP([4, 8, 1], block_size=4), "mlp_b": SparseMLP([4, 8, 1], block_size=4)})
    assert [name for name, _, _ in selected_layers(model, "mlp_b")] == ["mlp_b.layers.0"]
    assert [name for name, _, _ in selected_layers(model, ["mlp_a", "mlp_b"])] == ["mlp_a.layers.0", "mlp_b.layers.0"]


def test_weight_density_of_a_model_without_sparse_layers_is_one():
    assert weight_density(nn.Linear(3, 2)) == 1.0


def test_grown_incoming_weights_are_uniform_within_one_over_sqrt_in_features():
    torch.manual_seed(0)
    model = SparseMLP([64, 256, 1], block_size=64)
    pruner = BlockPruner(model, density=0.25)
    pruner.update(sparse=True, step=1)
    grown_rows = ~model.layers[0].out_channel_mask
    pruner.update(sparse=False, step=2)
    values = model.layers[0].weight.detach()[grown_rows]
    bound = 1 / math.sqrt(64)
    assert values.abs().max() <= bound and values.min() < -0.9 * bound and values.max() > 0.9 * bound


def test_grown_entries_start_with_the_mean_second_moment_of_the_live_entries():
    torch.manual_seed(0)
    model = SparseMLP([4, 8, 1], block_size=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    pruner = BlockPruner(model, optimizer, density=0.5)

    def step():
        x = torch.randn(16, 4)
        x[:, 0] = 0  # input 0 never varies: its weights get no gradient and keep a zero second moment
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        optimizer.step()

    step()
    pruner.update(sparse=True, step=1)
    step()
    before = optimizer.state[model.layers[0].weight]["exp_avg_sq"].clone()
    grown = ~model.layers[0].weight_mask
    pruner.update(sparse=False, step=2)
    after = optimizer.state[model.layers[0].weight]["exp_avg_sq"]
    live = before[~grown & (before != 0)]
    assert (before[~grown] == 0).any()  # the zero column is among the entries that stayed
    torch.testing.assert_close(after[grown], live.mean().expand(int(grown.sum())), rtol=1e-6, atol=0)
    assert torch.equal(after[~grown], before[~grown])
