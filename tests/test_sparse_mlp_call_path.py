"""SparseMLP's thin path (docs/design.md, "The per-call path"): after a pass through its layers, a call checks
the whole chain once and calls the layers' ops directly; every change a layer's own checks would see is still
seen, and a chain with hooks, a tensor subclass or a compiled layer goes layer by layer. (The backend setting:
test_sparse_linear_call_path.py.)"""
import copy
import pickle
import warnings

import pytest
import torch

import amgp_kernels
from amgp import SparseLinear, SparseMLP


def _mlp():
    torch.manual_seed(0)
    mlp = SparseMLP([16, 12, 8, 4], block_size=4)
    mlp.set_out_mask(0, torch.tensor([True, False, True]))
    return mlp


@pytest.fixture
def layer_calls(monkeypatch):
    """How many times SparseLinear.forward ran (the chain's thin path does not run it)."""
    calls = []
    forward = SparseLinear.forward
    monkeypatch.setattr(SparseLinear, "forward", lambda self, x: calls.append(self) or forward(self, x))
    return calls


def _reference_output(mlp, x):
    """The chain's function, from its masks as they are now."""
    for layer in mlp.layers:
        layer.refresh_indices()
        x = amgp_kernels.reference.block_linear(x, layer.weight, layer.bias, layer.in_index, layer.out_index,
                                                layer.block_size, layer.activation, layer.packed_in,
                                                layer.packed_out)
    return x


def test_repeated_calls_take_the_thin_path_with_the_same_values_and_gradients(layer_calls):
    mlp, twin = _mlp(), _mlp()
    for step in range(3):
        x = torch.randn(5, 16)
        y, expected = mlp(x), twin._layer_by_layer(x)
        assert torch.equal(y, expected)
        y.square().sum().backward()
        expected.square().sum().backward()
        for a, b in zip(mlp.parameters(), twin.parameters()):
            assert torch.equal(a.grad, b.grad)
    layers = len(mlp.layers)
    assert len(layer_calls) == layers + 3 * layers  # the first call's pass, then the twin's passes only


def test_mask_changes_are_seen_in_place_or_through_set_out_mask(layer_calls):
    mlp, x = _mlp(), torch.randn(5, 16)
    mlp(x)
    mlp.layers[0].out_mask[1] = True  # an in-place edit of a tied mask
    torch.testing.assert_close(mlp(x), _reference_output(mlp, x))
    mlp.set_out_mask(1, torch.tensor([False, True]))
    torch.testing.assert_close(mlp(x), _reference_output(mlp, x))
    mlp.layers[0].in_mask[2] = False  # the first layer's input mask, tied to nothing
    torch.testing.assert_close(mlp(x), _reference_output(mlp, x))
    mlp.layers[0].in_mask.data = torch.tensor([True, True, True, False])  # new storage, same tensor
    torch.testing.assert_close(mlp(x), _reference_output(mlp, x))
    mlp.layers[0].in_mask = torch.tensor([True, True, False, True])  # a new tensor
    torch.testing.assert_close(mlp(x), _reference_output(mlp, x))
    mlp.layers[0].out_mask.data = torch.tensor([False, True, True])  # the tied mask, new storage
    torch.testing.assert_close(mlp(x), _reference_output(mlp, x))
    y = mlp(x)
    x_changed = x.clone()
    x_changed[:, 8:12] = 1e6  # channels of the inactive input block
    assert torch.equal(mlp(x_changed), y)


def test_parameter_dtype_attribute_and_layer_changes_are_seen():
    mlp, x = _mlp(), torch.randn(5, 16)
    mlp(x)
    mlp.double()
    assert mlp(x.double()).dtype == torch.float64
    mlp.float()
    mlp(x)
    mlp.layers[1] = SparseLinear(12, 8, block_size=4, activation="relu")  # untied: it reads a full-size input
    mlp.layers[0].packed_out = False
    torch.testing.assert_close(mlp(x), _reference_output(mlp, x))
    mlp.layers[2].weight = torch.nn.Parameter(torch.zeros(4, 8))
    torch.testing.assert_close(mlp(x), mlp.layers[2].bias.expand(5, 4).detach())
    mlp.layers[2].activation = "relu"
    with torch.no_grad():
        mlp.layers[2].bias.fill_(-1.0)
    assert torch.equal(mlp(x), torch.zeros(5, 4))


def test_a_layer_changed_after_thin_calls_gets_the_checked_errors():
    mlp, x = _mlp(), torch.randn(5, 16)
    mlp(x)
    mlp(x)
    mlp.layers[1].double()  # a parameter's dtype, x's unchanged
    with pytest.raises(TypeError, match="dtype"):
        mlp(x)
    mlp.layers[1].float()
    mlp(x)
    mlp.layers[2].weight = torch.nn.Parameter(torch.zeros(4, 6))
    with pytest.raises(ValueError, match="active input channels"):
        mlp(x)


def test_hooks_registered_later_run(layer_calls):
    mlp, x = _mlp(), torch.randn(5, 16)
    mlp(x)
    mlp(x)
    seen = []
    handle = mlp.layers[1].register_forward_hook(lambda module, args, out: seen.append(out.shape))
    mlp(x)
    assert seen == [torch.Size([5, 8])]
    handle.remove()
    handle = torch.nn.modules.module.register_module_forward_hook(lambda module, args, out: seen.append(module))
    try:
        mlp(x)
    finally:
        handle.remove()
    assert list(mlp.layers) == seen[1:4]
    for register in ("register_forward_pre_hook", "register_full_backward_pre_hook", "register_full_backward_hook"):
        mlp(x)
        handle = getattr(mlp.layers[2], register)(lambda *args: seen.append(register) and None)
        mlp(x).sum().backward()
        handle.remove()
        assert seen[-1] == register
    before = len(layer_calls)
    mlp(x)  # a pass that makes the plan again
    mlp(x)
    assert len(layer_calls) == before + len(mlp.layers)


def test_copies_and_pickles_work_and_leave_the_plan_behind():
    mlp, x = _mlp(), torch.randn(5, 16)
    expected = mlp(x)
    for twin in (copy.deepcopy(mlp), pickle.loads(pickle.dumps(mlp))):
        assert twin._chain_plan is None
        torch.testing.assert_close(twin(x), expected)
        torch.testing.assert_close(twin(x), expected)
        twin.set_out_mask(0, torch.tensor([True, True, True]))
        assert not torch.equal(twin(x), expected)
        torch.testing.assert_close(mlp(x), expected)  # the original is not affected


def test_a_tensor_subclass_input_goes_layer_by_layer(layer_calls):
    class Tagged(torch.Tensor):
        pass

    mlp, x = _mlp(), torch.randn(5, 16)
    mlp(x)
    y = mlp(x.as_subclass(Tagged))
    assert len(layer_calls) == 2 * len(mlp.layers)
    assert type(y) is Tagged
    torch.testing.assert_close(y.as_subclass(torch.Tensor), mlp(x))


def test_a_layer_moved_to_another_device_or_given_a_bad_bias_raises_the_checked_error():
    mlp, x = _mlp(), torch.randn(5, 16)
    mlp(x)
    with pytest.raises(ValueError, match="x is on meta"):
        mlp(x.to("meta"))
    # The same Parameters moved in place, the masks left: what Module.to does to the parameters
    mlp.layers[2]._apply(lambda t: t.to("meta") if t.is_floating_point() else t)
    with pytest.raises(ValueError, match="weight is on meta"):
        mlp(x)
    mlp.layers[2]._apply(lambda t: torch.zeros_like(t, device="cpu") if t.is_floating_point() else t)
    mlp(x)
    mlp.layers[2].bias = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="bias"):
        mlp(x)


def test_a_layer_backend_an_own_forward_or_a_subclass_is_followed(reference_calls, layer_calls):
    mlp, x = _mlp(), torch.randn(5, 16)
    mlp(x)
    mlp.layers[1].backend = "reference"
    mlp(x)
    mlp(x)
    assert len(reference_calls) == 2
    mlp.layers[1].backend = None
    mlp(x)
    mlp(x)
    own = []
    mlp.layers[2].forward = lambda x: own.append(x) or torch.zeros(5, 4)
    assert torch.equal(mlp(x), torch.zeros(5, 4)) and len(own) == 1
    del mlp.layers[2].forward

    class Doubled(SparseLinear):
        def forward(self, x):
            return 2 * super().forward(x)

    last = Doubled(8, 4, block_size=4)
    last.load_state_dict(mlp.layers[2].state_dict())
    last.tie_in_mask(mlp.layers[1], packed=True)
    expected = mlp(x)
    mlp.layers[2] = last
    torch.testing.assert_close(mlp(x), 2 * expected)
    torch.testing.assert_close(mlp(x), 2 * expected)


def test_a_layer_that_makes_no_plan_keeps_the_chain_layer_by_layer(layer_calls):
    class Tagged(torch.nn.Parameter):
        pass

    mlp, x = _mlp(), torch.randn(5, 16)
    mlp.layers[1].weight = Tagged(mlp.layers[1].weight.detach())
    for _ in range(3):
        mlp(x)
    assert len(layer_calls) == 3 * len(mlp.layers)


def test_a_compiled_layer_runs_compiled(layer_calls):
    runs = []

    def counting_backend(graph_module, example_inputs):
        return lambda *args: runs.append(1) or graph_module(*args)

    mlp, x = _mlp(), torch.randn(5, 16)
    expected = mlp(x)
    mlp.layers[1].compile(backend=counting_backend)
    for _ in range(3):
        torch.testing.assert_close(mlp(x), expected)
    assert len(runs) == 3


@pytest.mark.parametrize("module", ["SparseLinear", "SparseMLP"])
def test_tracing_records_each_layer_in_its_scope_and_passes_the_trace_check(module):
    """torch.jit.trace runs a fresh module twice and compares the graphs: the second call's thin path must not
    change the op (a full-size layer's plan is F.linear, the first call's the compiled op)."""
    mlp, x = _mlp(), torch.randn(5, 16)
    model = mlp if module == "SparseMLP" else SparseLinear(16, 12, block_size=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace is deprecated in newer torch
        traced = torch.jit.trace(model, x)
    graph = str(traced.inlined_graph)
    if module == "SparseMLP":
        assert all(f"scope: __module.layers.{i}" in graph for i in range(len(mlp.layers)))
    torch.testing.assert_close(traced(x), model(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: a CPU tensor's data moves in place only "
                                                           "to another dense device")
def test_a_parameter_moved_in_place_to_the_gpu_is_seen():
    mlp, x = _mlp(), torch.randn(5, 16)
    mlp(x)
    weight = mlp.layers[2].weight
    weight.data = weight.data.cuda()  # what Module.to does to each parameter, the masks left on the CPU
    with pytest.raises(ValueError, match="weight is on cuda"):
        mlp(x)
