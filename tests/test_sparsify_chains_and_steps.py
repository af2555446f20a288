"""amgp.sparsify on wiring it cannot see (chains named by the caller) and on element-wise steps other than ReLU:
named chains pass their activations packed like pipelines do, and Tanh / GELU / Sigmoid / Dropout between two
Linears stay exactly the steps the model had (only a ReLU is fused into the producer)."""
import copy

import pytest
import torch
from torch import nn

from amgp import SparseLinear, prune_blocks, sparsify


class ForwardWired(nn.Module):
    """Layers wired in forward code, not in an nn.Sequential: only the caller can name the chain."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.first, self.second, self.out = nn.Linear(10, 32), nn.Linear(32, 16), nn.Linear(16, 2)

    def forward(self, x):
        return self.out(torch.relu(self.second(torch.tanh(self.first(x)))))


def widths_seen_by(model, names):
    """The input width each named layer receives in one forward pass (through a forward pre-hook)."""
    seen = {}
    handles = [model.get_submodule(name).register_forward_pre_hook(
        lambda module, args, name=name: seen.__setitem__(name, args[0].shape[-1])) for name in names]
    output = model(torch.randn(4, 10))
    for handle in handles:
        handle.remove()
    return seen, output


@pytest.mark.parametrize("packed", [True, False])
def test_named_chains_run_packed_and_compute_what_full_size_activations_do(packed):
    stock = ForwardWired()
    model = sparsify(copy.deepcopy(stock), block_size=8, chains=[["first", "second", "out"]], packed=packed)
    assert model.second.mask_producer is model.first and model.out.mask_producer is model.second
    prune_blocks(model, 0.5)
    active = {"second": int(model.first.out_mask.sum()) * 8, "out": int(model.second.out_mask.sum()) * 8}
    assert active == {"second": 16, "out": 8}

    torch.manual_seed(1)
    seen, output = widths_seen_by(model, ["second", "out"])
    # Packed: only the active channels flow between the named layers; otherwise the full width.
    assert seen == (active if packed else {"second": 32, "out": 16})
    torch.manual_seed(1)
    x = torch.randn(4, 10)
    first, second, out = (layer.to_linear() for layer in (model.first, model.second, model.out))
    torch.testing.assert_close(output, out(torch.relu(second(torch.tanh(first(x))))))


STEPS = {"tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid, "dropout": lambda: nn.Dropout(0.5)}


@pytest.mark.parametrize("step", list(STEPS))
def test_non_relu_steps_between_linears_are_left_exactly_as_they_were(step):
    torch.manual_seed(0)
    stock = nn.Sequential(nn.Linear(10, 32), STEPS[step](), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 1))
    original_step = stock[1]
    model = sparsify(stock, block_size=8)  # the real thing, in place on the stock model
    assert model[1] is original_step and type(model[1]) is type(original_step)
    assert model[0].activation == "none"  # nothing fused into the producer
    assert model[2].mask_producer is model[0]  # the chain still passes through the step
    assert model[2].activation == "relu" and isinstance(model[3], nn.Identity)  # the ReLU alone is fused

    reference = copy.deepcopy(model)
    reference[0], reference[2], reference[4] = (reference[i].to_linear() for i in (0, 2, 4))
    reference[3] = nn.ReLU()
    for train in (False, True):  # Dropout draws the same mask when the RNG is reseeded
        model.train(train), reference.train(train)
        x = torch.randn(6, 10)
        torch.manual_seed(7)
        got = model(x)
        torch.manual_seed(7)
        torch.testing.assert_close(got, reference(x))
    # Pruned: the step sees only the surviving channels and still acts on them the same way.
    prune_blocks(model, 0.5)
    assert model[1] is original_step
    reference[0], reference[2] = model[0].to_linear(), model[2].to_linear()
    model.eval(), reference.eval()
    x = torch.randn(6, 10)
    torch.testing.assert_close(model(x), reference(x))
