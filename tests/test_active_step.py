"""Block-sparse optimizer steps (amgp.active_step, amgp_kernels.active_step): over whole grow/prune runs the
trajectories equal torch.optim's within the derived bound (tests/optimizer_bounds.py) and inactive entries
exactly; state_dicts keep torch.optim's form; unsupported options fall back visibly."""
import copy
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import amgp
from amgp import GrowPruneSchedule, SparseMLP
from amgp.active_step import install
from amgp_kernels.active_step import active_adam_step_, active_sgd_step_

from optimizer_bounds import gamma, step_bound, zero_bounds

OPTIMIZERS = {
    "sgd": lambda params, o: torch.optim.SGD(params, lr=0.1, momentum=o["momentum"], dampening=o["dampening"],
                                             nesterov=o["nesterov"] and o["momentum"] > 0 and o["dampening"] == 0,
                                             weight_decay=o["weight_decay"], foreach=o["foreach"]),
    "adam": lambda params, o: torch.optim.Adam(params, lr=0.01, weight_decay=o["weight_decay"], foreach=o["foreach"]),
    "adamw": lambda params, o: torch.optim.AdamW(params, lr=0.01, weight_decay=o["weight_decay"],
                                                 foreach=o["foreach"]),
    "adagrad": lambda params, o: torch.optim.Adagrad(params, lr=0.05, lr_decay=o["lr_decay"],
                                                     weight_decay=o["weight_decay"],
                                                     initial_accumulator_value=o["initial"], foreach=o["foreach"]),
}
options = st.fixed_dictionaries({
    "momentum": st.sampled_from([0.0, 0.9]), "dampening": st.sampled_from([0.0, 0.3]), "nesterov": st.booleans(),
    "weight_decay": st.sampled_from([0.0, 1e-2]), "foreach": st.sampled_from([None, True]),
    "lr_decay": st.sampled_from([0.0, 0.01]), "initial": st.sampled_from([0.0, 0.1])})


def _pair(kind, opts, dtype, widths, block_size, seed):
    """Model A with torch.optim's own step, model B (the same weights) with the block-sparse step installed by
    its schedule; B's schedule applies A's masks (sync), so both prune and grow the same blocks."""
    torch.manual_seed(seed)
    model_a = SparseMLP(widths, block_size=block_size, dtype=dtype)
    model_b = copy.deepcopy(model_a)
    opt_a, opt_b = (OPTIMIZERS[kind](m.parameters(), opts) for m in (model_a, model_b))
    decided = {}
    schedule_a = GrowPruneSchedule(model_a, 24, opt_a, density=0.5, warmup=3, final_dense=3, dense_steps=3,
                                   cycles=2, sync=lambda masks: decided.update(masks) or masks,
                                   active_block_step=False)
    schedule_b = GrowPruneSchedule(model_b, 24, opt_b, density=0.5, warmup=3, final_dense=3, dense_steps=3,
                                   cycles=2, sync=lambda masks: {k: v.clone() for k, v in decided.items()})
    schedule_b.active_step.min_inactive = 0  # these small layers, too
    return (model_a, opt_a, schedule_a), (model_b, opt_b, schedule_b)


def _after_mask_change(bounds, layers, before, optimizer):
    """Pruned entries are zeroed in both runs (exact); grown ones start from the same drawn weights and zero
    first moments; squared-gradient accumulators from the mean of the kept nonzero entries: within the largest
    bound of those plus the rounding of a mean of that many terms."""
    for layer in layers:
        for name, active in (("weight", layer.weight_mask), ("bias", layer.out_channel_mask)):
            param = getattr(layer, name)
            changed = active != before[id(param)]
            for key, E in bounds[param].items():
                state = optimizer.state.get(param, {}).get(key)
                kept = ~changed & (state != 0) if key in ("exp_avg_sq", "sum") and state is not None else None
                fill = 0.0
                if kept is not None and kept.any():
                    values = optimizer.state[param][key][kept].double()
                    fill = E[kept].max() + gamma(int(kept.sum()), param.dtype) * values.abs().max()
                E[changed] = fill


@settings(max_examples=24, deadline=None)
@given(kind=st.sampled_from(sorted(OPTIMIZERS)), opts=options, dtype=st.sampled_from([torch.float32, torch.float64]),
       block_size=st.sampled_from([3, 4, 8]), hidden=st.integers(6, 20), seed=st.integers(0, 2**16))
def test_grow_prune_run_matches_torch_optim(kind, opts, dtype, block_size, hidden, seed):
    widths = [5, hidden, hidden + 3, 2]
    (model_a, opt_a, sched_a), (model_b, opt_b, sched_b) = _pair(kind, opts, dtype, widths, block_size, seed)
    layers_a = [m for m in model_a.modules() if isinstance(m, amgp.SparseLinear)]
    params_a, params_b = list(model_a.parameters()), list(model_b.parameters())
    bounds = {p: zero_bounds(opt_a, p) for p in params_a}
    generator = torch.Generator().manual_seed(seed)
    sparse_steps = 0
    for step in range(24):
        before = {id(getattr(l, n)): m for l in layers_a for n, m in (("weight", l.weight_mask),
                                                                      ("bias", l.out_channel_mask))}
        if sched_a.before_step() is not None:
            _after_mask_change(bounds, layers_a, before, opt_a)
        sched_b.before_step()
        x = torch.randn(16, widths[0], generator=generator, dtype=dtype)
        opt_a.zero_grad()
        model_a(x).tanh().square().mean().backward()  # bounded: training never diverges
        for pa, pb in zip(params_a, params_b):
            pb.grad = pa.grad.clone()  # the same gradients: only the optimizer arithmetic differs
        bounds = {p: step_bound(opt_a, p, bounds[p]) for p in params_a}
        opt_a.step()
        opt_b.step()
        sparse_steps += sched_a.phase.sparse
        sched_a.after_step()
        sched_b.after_step()
        for layer_a, pa, pb in zip((l for l in layers_a for _ in range(2)), params_a, params_b):
            inactive = ~(layer_a.weight_mask if pa.dim() == 2 else layer_a.out_channel_mask)
            assert torch.equal(pa[inactive], pb[inactive]) and not pa[inactive].any()
            assert ((pa.double() - pb.double()).abs() <= 2 * bounds[pa]["param"]).all(), f"step {step}"
            state_a, state_b = opt_a.state[pa], opt_b.state[pb]
            assert state_a.keys() == state_b.keys()
            for key, value in state_a.items():
                if key == "step":
                    assert torch.equal(value, state_b[key])
                else:
                    assert torch.equal(value[inactive], state_b[key][inactive])
                    assert ((value.double() - state_b[key].double()).abs() <= 2 * bounds[pa][key]).all(), key
    assert sparse_steps > 0 and sched_b.active_step.fallback_reasons == set()
    assert sched_b.active_step.used
    # state_dict: torch.optim's form, loadable into a fresh optimizer of the same kind.
    fresh = OPTIMIZERS[kind](model_b.parameters(), opts)
    fresh.load_state_dict(opt_b.state_dict())
    assert opt_b.state_dict()["param_groups"] == opt_a.state_dict()["param_groups"]
    assert fresh.state_dict()["state"].keys() == opt_a.state_dict()["state"].keys()


def _sparse_model(seed=0):
    torch.manual_seed(seed)
    model = SparseMLP([6, 16, 16, 3], block_size=4)
    amgp.prune_blocks(model, 0.5)
    return model


def _train(model, optimizer, steps=3):
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(8, 6, generator=generator)).square().sum().backward()
        optimizer.step()


@pytest.mark.parametrize("make, reason", [
    (lambda p: torch.optim.Adam(p, amsgrad=True), "amsgrad=True"),
    (lambda p: torch.optim.SGD(p, lr=0.1, maximize=True), "maximize=True"),
    (lambda p: torch.optim.Adam(p, fused=True), "fused=True"),
    (lambda p: torch.optim.SGD(p, lr=torch.tensor(0.1)), "a tensor lr"),
    (lambda p: torch.optim.RMSprop(p), "RMSprop is not one of"),
])
def test_unsupported_options_fall_back_to_the_optimizers_own_step(make, reason):
    model_a, model_b = _sparse_model(), _sparse_model()
    opt_a, opt_b = make(model_a.parameters()), make(model_b.parameters())
    with pytest.warns(UserWarning, match=reason):
        handle = install(opt_b, model_b, min_inactive=0)
        _train(model_b, opt_b)
    _train(model_a, opt_a)
    assert any(reason in r for r in handle.fallback_reasons)
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(pa, pb)  # the optimizer's own step, bit for bit


def test_fallback_warns_once_and_a_closure_falls_back():
    model = _sparse_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    install(optimizer, model, min_inactive=0)
    x = torch.randn(4, 6)

    def closure():
        optimizer.zero_grad()
        loss = model(x).sum()
        loss.backward()
        return loss

    with pytest.warns(UserWarning, match="closure"):
        optimizer.step(closure)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optimizer.step(closure)  # already warned


def test_gradients_are_given_back_after_the_step():
    model = _sparse_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    install(optimizer, model, min_inactive=0)
    model(torch.randn(4, 6)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    optimizer.step()
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    assert all("momentum_buffer" in optimizer.state[p] for p in model.parameters())


def test_remove_and_schedule_switch():
    model = _sparse_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = GrowPruneSchedule(model, 10, optimizer, active_block_step=False)
    assert schedule.active_step is None
    with pytest.raises(TypeError, match="active_block_step"):
        GrowPruneSchedule(model, 10, optimizer, active_block_step="yes")
    schedule = GrowPruneSchedule(model, 10, optimizer)
    assert schedule.active_step is not None
    schedule.remove_hooks()
    assert schedule.active_step is None and not optimizer._optimizer_step_pre_hooks


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("contiguous", [True, False])
def test_kernel_touches_active_entries_only(dtype, contiguous):
    """Sentinels in inactive entries of param, gradient and state stay as they are (compiled kernel for
    contiguous float32/64, the torch-ops path otherwise)."""
    def tensor(values):
        return values.to(dtype) if contiguous else values.to(dtype).t().contiguous().t()

    out_blocks, in_blocks = torch.tensor([0, 2], dtype=torch.int32), torch.tensor([1], dtype=torch.int32)
    param, grad, m, v = (tensor(torch.rand(10, 7) + 1) for _ in range(4))
    active = torch.zeros(10, 7, dtype=torch.bool)
    active[[0, 1, 2, 3, 8, 9]] = True
    active[:, :4] = False  # input block 1: channels 4..6
    originals = [t.clone() for t in (param, m, v)]
    active_adam_step_(param, grad, m, v, out_blocks, in_blocks, 4, 0.9, 0.999, 1e-8, 0.0, 1.0, 0.1, 0.5)
    for new, old in zip((param, m, v), originals):
        assert torch.equal(new[~active], old[~active])
    assert (param[active] != originals[0][active]).all()


def test_kernel_bad_input_names_the_argument():
    param, grad = torch.zeros(8, 8), torch.zeros(8, 8)
    with pytest.raises(ValueError, match="momentum_buffer"):
        active_sgd_step_(param, grad, torch.zeros(8, 4), None, None, 4, 0.1, 0.0, 0.9, 0.0, False, False)
    with pytest.raises(TypeError, match="out_blocks"):
        active_sgd_step_(param, grad, None, torch.tensor([0]), None, 4, 0.1, 0.0, 0.0, 0.0, False, False)
    with pytest.raises(ValueError, match="in_blocks"):
        active_sgd_step_(param[0], grad[0], None, None, torch.tensor([0], dtype=torch.int32), 4, 0.1, 0.0, 0.0,
                         0.0, False, False)
    with pytest.raises(RuntimeError, match="out_blocks"):
        active_sgd_step_(param, grad, None, torch.tensor([5], dtype=torch.int32), None, 4, 0.1, 0.0, 0.0, 0.0,
                         False, False)


def test_opcheck_of_the_compiled_optimizer_ops():
    """Schemas (which arguments are mutated), fake implementations and dispatch of the compiled ops."""
    if not hasattr(torch.ops.amgp, "active_sgd_step_"):
        pytest.skip("amgp_kernels._C is not built")
    out_blocks, in_blocks = torch.tensor([1], dtype=torch.int32), torch.tensor([0, 2], dtype=torch.int32)

    def tensors(n):
        return [torch.rand(12, 10) for _ in range(n)]

    torch.library.opcheck(torch.ops.amgp.active_sgd_step_.default,
                          (*tensors(3), out_blocks, in_blocks, 4, 0.1, 0.01, 0.9, 0.1, False, False))
    torch.library.opcheck(torch.ops.amgp.active_adam_step_.default,
                          (*tensors(4), out_blocks, in_blocks, 4, 0.9, 0.999, 1e-8, 0.0, 0.99, 0.1, 0.5))
    torch.library.opcheck(torch.ops.amgp.active_adagrad_step_.default,
                          (*tensors(3), out_blocks, None, 4, 0.1, 0.0, 1e-10))


def test_min_inactive_chooses_the_optimizers_own_step_for_small_layers():
    model = _sparse_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    handle = install(optimizer, model)  # default: 32768 inactive entries for SGD, these layers have far fewer
    _train(model, optimizer)
    assert not handle.used
    handle.remove()
    handle = install(optimizer, model, min_inactive=0)
    _train(model, optimizer)
    assert handle.used
    with pytest.raises(ValueError, match="min_inactive"):
        install(optimizer, model, min_inactive=-1)


def test_param_groups_changed_between_steps_are_followed(monkeypatch):
    """The hook remembers which of a group's parameters are SparseLinear weights; a group given more parameters
    (add_param_group, or its list edited in place) is looked at again, and matches torch.optim's own steps."""
    import amgp.active_step as active_step
    stepped = []
    real = active_step.active_sgd_step_
    monkeypatch.setattr(active_step, "active_sgd_step_", lambda param, *args, **kwargs: (
        stepped.append(param), real(param, *args, **kwargs)))
    model = _sparse_model()
    reference = copy.deepcopy(model)
    first, second, last = model.layers
    ref_first, ref_second, ref_last = reference.layers
    optimizer = torch.optim.SGD([first.weight], lr=0.1)
    ref_optimizer = torch.optim.SGD([ref_first.weight], lr=0.1)
    hook = install(optimizer, model, min_inactive=0)
    _train(model, optimizer, steps=1)
    _train(reference, ref_optimizer, steps=1)
    assert stepped == [first.weight]
    optimizer.add_param_group({"params": [second.weight]})
    ref_optimizer.add_param_group({"params": [ref_second.weight]})
    optimizer.param_groups[0]["params"].append(last.weight)  # edited in place: same list, one more parameter
    ref_optimizer.param_groups[0]["params"].append(ref_last.weight)
    stepped.clear()
    _train(model, optimizer, steps=2)
    _train(reference, ref_optimizer, steps=2)
    assert {id(p) for p in stepped} == {id(first.weight), id(second.weight), id(last.weight)}
    for layer, ref_layer in zip(model.layers, reference.layers):
        torch.testing.assert_close(layer.weight, ref_layer.weight, rtol=1e-6, atol=1e-7)
        assert torch.equal(layer.weight[~layer.weight_mask], torch.zeros_like(layer.weight[~layer.weight_mask]))
    optimizer.param_groups[:] = optimizer.param_groups[1:]  # a group dropped: the hook forgets it
    _train(model, optimizer, steps=1)
    assert len(hook._group_weights) == 1


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_state_dict_round_trip_resumes_bit_identically(kind):
    """An optimizer saved mid sparse phase and loaded into a fresh one (block-sparse step installed again)
    continues exactly as the original."""
    opts = {"momentum": 0.9, "dampening": 0.0, "nesterov": True, "weight_decay": 1e-2, "foreach": None,
            "lr_decay": 0.01, "initial": 0.1}
    model = _sparse_model()
    optimizer = OPTIMIZERS[kind](model.parameters(), opts)
    install(optimizer, model, min_inactive=0)
    _train(model, optimizer, steps=2)
    twin = copy.deepcopy(model)
    restored = OPTIMIZERS[kind](twin.parameters(), opts)
    restored.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    handle = install(restored, twin, min_inactive=0)
    _train(model, optimizer, steps=3)
    _train(twin, restored, steps=3)
    assert handle.used
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)


def test_the_schedule_can_make_an_inner_optimizers_step_block_sparse():
    """A wrapper whose step calls a torch.optim optimizer (TorchRec's CombinedOptimizer): naming the inner one
    as active_block_step makes the wrapper's steps block-sparse, exactly as torch.optim's own."""

    class Wrapper(torch.optim.Optimizer):
        def __init__(self, inner):
            self.inner = inner
            super().__init__(inner.param_groups[0]["params"], {})
            self.param_groups, self.state = inner.param_groups, inner.state

        def step(self, closure=None):
            return self.inner.step(closure)

    torch.manual_seed(0)
    model = SparseMLP([64, 128, 128, 1], block_size=16)
    twin = copy.deepcopy(model)
    inner = torch.optim.Adam(model.parameters(), lr=0.01)
    twin_optimizer = torch.optim.Adam(twin.parameters(), lr=0.01)
    schedule = GrowPruneSchedule(model, 12, Wrapper(inner), warmup=2, active_block_step=inner)
    twin_schedule = GrowPruneSchedule(twin, 12, twin_optimizer, warmup=2, active_block_step=False)
    assert schedule.active_step.optimizer is inner and not schedule.active_step.fallback_reasons
    x = torch.randn(32, 64)
    for _ in range(12):
        for net, sched, opt in ((model, schedule, schedule.optimizer), (twin, twin_schedule, twin_optimizer)):
            sched.before_step()
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
            sched.after_step()
    assert schedule.active_step.used
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="active_block_step names an optimizer"):
        GrowPruneSchedule(model, 12, None, active_block_step=inner)


def test_parameters_off_the_cpu_keep_the_optimizers_own_step_visibly():
    """Only the CPU has a block-sparse step kernel: elsewhere (a GPU, here the meta device) every step is the
    optimizer's own, with a one-time warning that says why (the gathered-index fallback would sync with the host)."""
    model = _sparse_model().to("meta")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    handle = install(optimizer, model, min_inactive=0)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    with pytest.warns(UserWarning, match="no block-sparse step kernel for meta tensors"):
        optimizer.step()
    assert not handle.used and any("meta" in reason for reason in handle.fallback_reasons)
