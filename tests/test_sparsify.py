"""amgp.sparsify on models written without amgp: layers swapped in place, chains tied and ReLU fused, so that
prune_blocks / GrowPruneSchedule prune both sides of every hidden GEMM and never an untied output."""
import copy
import io

import pytest
import torch
from torch import nn

import amgp
from amgp import CostMeter, GrowPruneSchedule, SparseLinear, SparseMLP, prunable_layers, prune_blocks, sparsify


def stock_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.0),
                         nn.Linear(32, 1))


def test_sequential_mlp_is_converted_in_place_with_tied_masks_and_fused_relu():
    model = stock_mlp()
    reference = copy.deepcopy(model)
    weights = [model[i].weight for i in (0, 2, 5)]
    x = torch.randn(7, 12)
    assert sparsify(model, block_size=8) is model
    assert [type(m).__name__ for m in model] == ["SparseLinear", "Identity", "SparseLinear", "Identity", "Dropout",
                                                 "SparseLinear"]
    assert [model[i].weight for i in (0, 2, 5)] == weights  # the same Parameter objects
    assert [model[i].activation for i in (0, 2, 5)] == ["relu", "relu", "none"]
    assert model[2].in_mask is model[0].out_mask and model[5].in_mask is model[2].out_mask
    assert model[0].mask_consumers == (model[2],) and model[5].mask_producer is model[2]
    torch.testing.assert_close(model(x), reference(x))
    assert [(layer, consumers) for layer, consumers in prunable_layers(model)] == [
        (model[0], (model[2],)), (model[2], (model[5],))]


def test_hidden_activations_pass_packed_with_the_same_results_as_full_size():
    packed, full = sparsify(stock_mlp(), block_size=8), sparsify(stock_mlp(), block_size=8, packed=False)
    assert (packed[0].packed_out, packed[2].packed_in, packed[2].packed_out, packed[5].packed_in) == (True,) * 4
    assert not packed[0].packed_in and not packed[5].packed_out  # the model's input and output stay full-size
    assert not any(m.packed_in or m.packed_out for m in full if isinstance(m, SparseLinear))
    widths = []
    packed[4].register_forward_hook(lambda module, inputs, output: widths.append(output.shape[-1]))  # the Dropout
    for model in (packed, full):
        prune_blocks(model, 0.5)
    x = torch.randn(6, 12)
    torch.testing.assert_close(packed(x), full(x), rtol=0, atol=0)
    assert widths == [16]  # 2 of the 4 blocks of 8 channels: only the active ones flow between the layers
    odd = sparsify(nn.Sequential(nn.Linear(4, 12), nn.ReLU(), nn.Linear(12, 3)), block_size=8)
    assert not odd[0].packed_out and odd[2].mask_producer is odd[0]  # 12 channels: a short block, kept full-size
    with pytest.raises(TypeError, match="packed"):
        sparsify(stock_mlp(), packed="yes")


def test_state_dict_loads_into_the_stock_model_and_back_strictly_at_full_density():
    model = sparsify(stock_mlp(), block_size=8)
    stock = stock_mlp(seed=1)
    assert set(model.state_dict()) == set(stock.state_dict())
    stock.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(5, 12)
    torch.testing.assert_close(stock(x), model(x))
    again = sparsify(stock_mlp(seed=2), block_size=8)
    again.load_state_dict(stock.state_dict(), strict=True)
    torch.testing.assert_close(again(x), model(x))


def test_pruning_removes_both_sides_of_hidden_gemms_never_the_output_layer():
    model = sparsify(stock_mlp(), block_size=8)
    prune_blocks(model, 0.5)
    assert model[0].out_mask.sum() == 4 and model[2].out_mask.sum() == 2
    assert bool(model[5].out_mask.all())  # output layer: untied, never pruned
    for producer, consumer in ((model[0], model[2]), (model[2], model[5])):
        dead = ~producer.out_channel_mask
        assert torch.equal(producer.weight[dead], torch.zeros_like(producer.weight[dead]))
        assert torch.equal(consumer.weight[:, dead], torch.zeros_like(consumer.weight[:, dead]))
    # A pruned model's state_dict carries its masks and loads back into a fresh sparsified model.
    clone = sparsify(stock_mlp(seed=3), block_size=8)
    clone.load_state_dict(model.state_dict())
    assert clone[2].in_mask is clone[0].out_mask and torch.equal(clone[0].out_mask, model[0].out_mask)
    x = torch.randn(4, 12)
    torch.testing.assert_close(clone(x), model(x))


def test_ties_survive_moves_copies_and_pickling():
    model = sparsify(stock_mlp(), block_size=8)
    prune_blocks(model, 0.5)
    moved = [copy.deepcopy(model), model.to(torch.float64), copy.deepcopy(model).to("meta")]
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    moved.append(torch.load(buffer, weights_only=False))
    for m in moved:
        assert m[2].in_mask is m[0].out_mask and m[5].in_mask is m[2].out_mask
        assert m[0].mask_consumers == (m[2],)
    copied = moved[0]
    copied[0].set_out_mask(torch.ones(8, dtype=torch.bool))
    assert bool(copied[2].in_mask.all()) and not bool(model[2].in_mask.all())  # the copy's tie, not the original's


def test_schedule_on_a_sparsified_mlp_trains_exactly_like_sparse_mlp():
    """A sparsified nn.Sequential MLP and a SparseMLP with the same weights go through the same grow/prune
    schedule step for step (same masks, same weights, same FLOP accounting) and end full-size."""
    stock = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 4))
    ours = SparseMLP([12, 32, 24, 4], block_size=4)
    ours.load_state_dict(stock.state_dict(), strict=False)
    for i, layer in enumerate(ours.layers):
        layer.load_state_dict(stock[2 * i].state_dict())
    model = sparsify(stock, block_size=4)
    runs = []
    for net in (model, ours):
        optimizer = torch.optim.Adagrad(net.parameters(), lr=0.05)
        schedule = GrowPruneSchedule(net, 12, optimizer, density=0.5, warmup=2, final_dense=2, dense_steps=2, cycles=2)
        meter = CostMeter(net)
        generator = torch.Generator().manual_seed(0)
        densities = []
        for _ in range(12):
            kind = schedule.phase.kind
            schedule.before_step()
            x = torch.randn(16, 12, generator=generator)
            optimizer.zero_grad()
            net(x).pow(2).mean().backward()
            optimizer.step()
            schedule.after_step()
            meter.record_step(kind, 16)
            densities.append(schedule.density)
        runs.append((densities, meter.summary()["mlp_flops_saving"], [p.detach().clone() for p in net.parameters()]))
    assert runs[0][0] == runs[1][0] and min(runs[0][0]) < 0.5 and runs[0][0][-1] == 1.0
    assert runs[0][1] == runs[1][1] > 0.2
    for a, b in zip(runs[0][2], runs[1][2]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


class Branches(nn.Module):
    """A trunk whose output feeds two heads (a Linear with two consumers), wired in forward code."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Linear(10, 32)
        self.head_a = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 1))
        self.head_b = nn.Sequential(nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 2))

    def forward(self, x):
        h = torch.relu(self.trunk(x))
        return torch.cat([self.head_a(h), self.head_b(h)], dim=1)


def test_a_layer_feeding_several_consumers_keeps_its_output_dense_unless_all_are_tied():
    torch.manual_seed(0)
    model = sparsify(Branches(), block_size=8)
    assert isinstance(model.trunk, SparseLinear) and model.trunk.mask_consumers == ()
    assert [id(layer) for layer, _ in prunable_layers(model)] == [id(model.head_a[0]), id(model.head_b[0])]
    prune_blocks(model, 0.5)
    assert bool(model.trunk.out_mask.all())

    torch.manual_seed(0)
    model = sparsify(Branches(), block_size=8, chains=[["trunk", "head_a.0"], ["trunk", "head_b.0"]])
    assert model.trunk.mask_consumers == (model.head_a[0], model.head_b[0])
    assert model.head_a[0].in_mask is model.trunk.out_mask is model.head_b[0].in_mask
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    schedule = GrowPruneSchedule(model, 6, optimizer, density=0.5, warmup=1, final_dense=1, dense_steps=0, cycles=1)
    for step in range(6):
        schedule.before_step()
        optimizer.zero_grad()
        model(torch.randn(8, 10)).pow(2).mean().backward()
        optimizer.step()
        schedule.after_step()
        if step == 3:  # sparse phase: the trunk's pruned channels are gone from both heads
            dead = ~model.trunk.out_channel_mask
            assert model.trunk.out_mask.sum() == 2
            for head in (model.head_a[0], model.head_b[0]):
                assert torch.equal(head.weight[:, dead], torch.zeros_like(head.weight[:, dead]))
    assert schedule.density == 1.0


def test_what_is_not_converted_or_not_tied():
    torch.manual_seed(0)
    shared = nn.Linear(16, 16)
    attention = nn.MultiheadAttention(16, 2)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), shared, nn.ReLU(), shared, nn.Linear(16, 4),
                          nn.LayerNorm(4), nn.Linear(4, 4))
    model.add_module("attention", attention)
    seen = []
    model[5].register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    sparsify(model, block_size=4, filter_fn=lambda linear, name: name != "7")
    assert type(attention.out_proj) is not SparseLinear  # an nn.Linear subclass, never called as a module
    assert type(model[7]) is nn.Linear  # filtered out
    assert model[2] is model[4] and isinstance(model[2], SparseLinear)  # one layer at two places
    assert model[2].mask_producer is None and model[2].mask_consumers == ()  # used twice: never tied
    assert model[5].mask_consumers == ()  # a LayerNorm (mixes channels) and a forward hook follow it
    assert model[5]._forward_hooks and isinstance(model[1], nn.ReLU)
    model[:6](torch.randn(3, 8))
    assert seen == [torch.Size([3, 4])]  # the user's hook went with the layer


def test_an_optimizer_built_before_sparsify_keeps_training_the_model():
    model = stock_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sparsify(model, block_size=8)
    before = model[0].weight.detach().clone()
    model(torch.randn(4, 12)).sum().backward()
    optimizer.step()
    assert not torch.equal(model[0].weight, before)


def test_a_bare_linear_is_returned_converted():
    linear = nn.Linear(6, 5)
    layer = sparsify(linear, block_size=2)
    assert isinstance(layer, SparseLinear) and layer.weight is linear.weight and layer.bias is linear.bias


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(block_size=0), ValueError, "block_size"),
    (dict(chains="mlp.0"), TypeError, "chains"),
    (dict(chains=[["0"]]), TypeError, "chains"),
    (dict(chains=[["0", "nope"]]), ValueError, "'nope'"),
    (dict(chains=[["0", "1"]]), ValueError, "'1', a Identity, not an nn.Linear"),
    (dict(chains=[["4", "2"]]), ValueError, "does not match"),
    (dict(chains=[["0", "4"]]), ValueError, "'0' -> '4'.*already tied"),
    (dict(chains=[["2", "2"]]), ValueError, "its own output"),
    (dict(filter_fn="all"), TypeError, "filter_fn"),
])
def test_bad_arguments_name_themselves(kwargs, error, message):
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    with pytest.raises(error, match=message):
        sparsify(model, **{"block_size": 4, **kwargs})
    with pytest.raises(TypeError, match="module"):
        sparsify("model")


def test_a_state_dict_with_different_values_for_one_tied_mask_is_refused():
    model = sparsify(stock_mlp(), block_size=8)
    prune_blocks(model, 0.5)
    state = model.state_dict()
    state["2.in_mask"] = ~state["0.out_mask"]
    with pytest.raises(RuntimeError, match="0.out_mask and 2.in_mask are one shared mask"):
        sparsify(stock_mlp(), block_size=8).load_state_dict(state)


def test_amgp_exports_sparsify():
    assert amgp.sparsify is sparsify
