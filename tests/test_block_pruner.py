"""BlockPruner on its own: defaults, argument checks naming the layer, Taylor scores summed over steps exactly as
documented (3-D inputs, a short last block), scores only while collecting, restore growth without biases and
across a resume, and a seed space wide enough that different seeds grow differently."""
import pytest
import torch

from amgp import SparseMLP
from amgp.pruner import BlockPruner


def mlp(sizes=(4, 8, 1), bias=True):
    torch.manual_seed(0)
    return SparseMLP(list(sizes), block_size=4, bias=bias)


def test_defaults_keep_half_the_blocks_and_seed_0():
    model, same = mlp(), mlp()
    BlockPruner(model).update(sparse=True, step=0)
    assert int(model.layers[0].out_mask.sum()) == 1
    for m, pruner in ((model, BlockPruner(model)), (same, BlockPruner(same, density=0.5, seed=0))):
        pruner.update(sparse=True, step=3)
        pruner.update(sparse=False, step=4)
    assert torch.equal(model.layers[0].weight, same.layers[0].weight)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"sync": 5}, TypeError, r"^sync must be a callable \(\{name: mask\} -> \{name: mask\}\) or None, got 5$"),
    ({"density": 1.5}, ValueError, r"density for layer 'layers.0' must be in \(0, 1\], got 1.5"),
    ({"density": True}, ValueError, r"density for layer 'layers.0' must be in \(0, 1\], got True"),
    ({"density": "half"}, ValueError, r"density for layer 'layers.0' must be in \(0, 1\], got 'half'"),
    ({"density": {"layers.0": 0}}, ValueError, r"density for layer 'layers.0' must be in \(0, 1\], got 0"),
])
def test_bad_arguments_name_themselves(kwargs, error, message):
    with pytest.raises(error, match=message):
        BlockPruner(mlp(), **kwargs)


def test_taylor_scores_are_the_documented_sums_over_steps():
    model = mlp((3, 10, 2))  # 10 hidden channels in blocks of 4: the last block is short
    pruner = BlockPruner(model, criterion="taylor")
    pruner.collecting_scores = True
    captured = []
    model.layers[0].register_forward_hook(lambda layer, inputs, output: captured.append(output))
    expected = torch.zeros(3, dtype=torch.float64)
    for step in range(2):
        captured.clear()
        x = torch.randn(2, 5, 3)  # 3-D input: every position is a sample
        model(x).pow(2).sum().backward()
        output = captured[0]
        grad = torch.autograd.functional.vjp(lambda h: model.layers[1](h).pow(2).sum(), output.detach())[1]
        per_channel = (output.detach() * grad).reshape(-1, 10).sum(0).abs().double()
        expected += torch.stack([per_channel[0:4].sum(), per_channel[4:8].sum(), per_channel[8:10].sum()])
    torch.testing.assert_close(pruner.state_dict()["taylor"]["layers.0"], expected)


def test_taylor_scores_collect_only_when_asked_and_stop_with_remove_hooks():
    model = mlp()
    pruner = BlockPruner(model, criterion="taylor")
    model(torch.randn(4, 4)).sum().backward()
    assert not pruner.state_dict()["taylor"]["layers.0"].any()  # not collecting by default
    pruner.remove_hooks()
    pruner.remove_hooks()  # twice is harmless
    pruner.collecting_scores = True
    model(torch.randn(4, 4)).sum().backward()
    assert not pruner.state_dict()["taylor"]["layers.0"].any()


@pytest.mark.parametrize("bias", [True, False])
def test_restore_growth_brings_back_the_pruned_weights_also_after_a_resume(bias):
    model = mlp(bias=bias)
    original = model.layers[0].weight.detach().clone()
    pruner = BlockPruner(model, growth="restore")
    pruner.update(sparse=True, step=1)
    assert not torch.equal(model.layers[0].weight, original)
    resumed = BlockPruner(model, growth="restore")
    resumed.load_state_dict(pruner.state_dict())
    resumed.update(sparse=False, step=2)
    assert torch.equal(model.layers[0].weight, original)


def test_different_seeds_grow_different_weights():
    grown = []
    for seed in range(40):
        model = mlp()
        pruner = BlockPruner(model, seed=seed)
        pruner.update(sparse=True, step=5)
        pruner.update(sparse=False, step=6)
        grown.append(tuple(model.layers[0].weight.flatten().tolist()))
    assert len(set(grown)) == 40
