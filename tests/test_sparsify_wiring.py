"""amgp.sparsify's reach: nested pipelines, pipelines given by pipeline_steps with plain functions as steps,
every Linear wherever it sits (a None child, filter_fn's arguments), the backend, what is left alone, adjacent
Linears, and the tied-mask check of every pipeline and named chain. Arguments are checked by name."""
import pytest
import torch
from torch import nn

from amgp import SparseLinear, sparsify
from amgp.sparsify import sequential_steps


def test_nested_pipelines_are_one_pipeline():
    torch.manual_seed(0)
    model = sparsify(nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.ReLU(), nn.Linear(8, 8)), nn.ReLU(),
                                   nn.Linear(8, 1)), block_size=4)
    assert model[1][1].mask_producer is model[0] and model[2 + 1].mask_producer is model[1][1]
    assert model[0].activation == "relu" and isinstance(model[1][0], nn.Identity)


class Pipe(nn.Module):
    """A pipeline written as attributes, one of them a plain function."""

    def __init__(self, act):
        super().__init__()
        self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 2)
        self.act = act

    def forward(self, x):
        return self.b(self.act(self.a(x)))


def pipe_steps(module):
    if isinstance(module, Pipe):
        return [("a", module.a), ("act", module.act), ("b", module.b)]
    return sequential_steps(module)


def test_pipeline_steps_may_be_functions():
    tanh = sparsify(Pipe(torch.tanh), block_size=4, pipeline_steps=pipe_steps)
    assert tanh.b.mask_producer is tanh.a and tanh.act is torch.tanh and tanh.a.activation == "none"
    relu = sparsify(Pipe(torch.relu), block_size=4, pipeline_steps=pipe_steps)
    assert relu.b.mask_producer is relu.a and isinstance(relu.act, nn.Identity) and relu.a.activation == "relu"
    flipped = sparsify(Pipe(lambda x: x.flip(-1)), block_size=4, pipeline_steps=pipe_steps)
    assert flipped.b.mask_producer is None  # not element-wise: channels move, no tie


def test_adjacent_linears_are_tied_and_a_non_elementwise_step_breaks_a_chain_only_there():
    model = sparsify(nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 8), nn.Linear(8, 8), nn.ReLU(),
                                   nn.Linear(8, 1)), block_size=4)
    assert model[2].mask_producer is None  # LayerNorm mixes channels
    assert model[3].mask_producer is model[2] and model[5].mask_producer is model[3]
    assert model[2].activation == "none" and model[3].activation == "relu"


def test_every_linear_is_reached_with_its_name_and_the_backend():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 8)))
    model.register_module("nothing", None)
    model.add_module("last", nn.Linear(8, 1))
    seen = []
    sparsify(model, block_size=4, backend="reference",
             filter_fn=lambda linear, name: seen.append((name, linear.out_features)) or True)
    assert seen == [("0", 8), ("2.0", 8), ("last", 1)]
    assert [m.backend for m in model.modules() if isinstance(m, SparseLinear)] == ["reference"] * 3
    bare = sparsify(nn.Linear(4, 4), block_size=2, backend="reference",
                    filter_fn=lambda linear, name: seen.append(name) or True)
    assert isinstance(bare, SparseLinear) and bare.backend == "reference" and seen[-1] == ""
    kept = nn.Linear(4, 4)
    assert sparsify(kept, filter_fn=lambda linear, name: False) is kept


def test_zero_width_layers_are_left_alone_and_single_channels_converted():
    model = sparsify(nn.Sequential(nn.Linear(0, 4), nn.Linear(4, 0), nn.Linear(1, 1)), block_size=4)
    assert [type(m) for m in model] == [nn.Linear, nn.Linear, SparseLinear]


def test_defaults_and_block_size_edges():
    model = sparsify(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1)))
    assert model[0].block_size == 32 and model[2].mask_producer is model[0] and model[0].packed_out
    assert sparsify(nn.Sequential(nn.Linear(3, 2)), block_size=1)[0].block_size == 1
    with pytest.raises(ValueError, match="^block_size must be"):
        sparsify(nn.ReLU(), block_size=0)


@pytest.mark.parametrize("args, kwargs, error, message", [
    (("model",), {}, TypeError, "^module must be an nn.Module, got str$"),
    ((nn.ReLU(),), {"filter_fn": 3}, TypeError, r"^filter_fn must be callable \(linear, name\) -> bool, got int$"),
    ((nn.Sequential(nn.Linear(2, 2)),), {"packed": "yes"}, TypeError, "^packed must be a bool"),
    ((nn.Sequential(nn.Linear(2, 2), nn.ReLU()),), {"chains": [["0", "1"]]}, ValueError,
     r"names '1', a ReLU, not an nn.Linear that sparsify converted \(exact nn.Linear, accepted by filter_fn\)$"),
])
def test_bad_arguments_name_themselves(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        sparsify(*args, **kwargs)


class TwoParts(nn.Module):
    def __init__(self):
        super().__init__()
        self.x = nn.ModuleDict({"p": nn.Linear(4, 8), "q": nn.Linear(8, 8), "r": nn.Linear(8, 2)})
        self.y = nn.ModuleDict({"p": nn.Linear(4, 8), "q": nn.Linear(8, 2)})
        self.seq_a = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        self.seq_b = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


@pytest.mark.parametrize("key", ["x.q.in_mask", "x.r.in_mask", "y.q.in_mask", "seq_a.2.in_mask", "seq_b.2.in_mask"])
def test_every_tied_pair_of_every_chain_and_pipeline_is_checked_on_load(key):
    def build():
        return sparsify(TwoParts(), block_size=4, chains=[["x.p", "x.q", "x.r"], ["y.p", "y.q"]])

    state = build().state_dict()
    state[key] = torch.tensor([True, False])  # its producer's out_mask is absent: all-active
    with pytest.raises(RuntimeError, match=f"{key} are one shared mask"):
        build().load_state_dict(state)
