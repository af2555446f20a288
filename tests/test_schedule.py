"""GrowPruneSchedule: phase plan, pruning/growth at boundaries, zeroed optimizer state; the cost meter's counters."""
import pytest
import torch

import amgp
from amgp.meter import CostMeter
from amgp.schedule import GrowPruneSchedule, Phase, plan_phases

OPTIMIZERS = {
    "sgd_momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=0.05, weight_decay=1e-3),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-3),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
}


def tiny_model():
    return torch.nn.Sequential(amgp.SparseMLP([12, 32, 24, 16], block_size=4, last_activation="relu"),
                               amgp.SparseMLP([16, 20, 1], block_size=4))


def train_steps(model, optimizer, schedule, steps, on_change=None, meter=None):
    for _ in range(steps):
        kind = schedule.phase.kind
        change = schedule.before_step()
        if change is not None and on_change is not None:
            on_change(change)
        x = torch.randn(16, 12)
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        optimizer.step()
        schedule.after_step()
        if meter is not None:
            meter.record_step(kind, 16)


def test_plan_phases_alternates_and_covers_all_steps():
    phases = plan_phases(100, warmup=0.1, final_dense=0.15, dense_steps=0.05, cycles=2)
    assert [p.kind for p in phases] == ["warmup", "sparse", "dense", "sparse", "final"]
    assert [(p.start, p.end) for p in phases] == [(0, 10), (10, 45), (45, 50), (50, 85), (85, 100)]
    assert plan_phases(50, warmup=5, final_dense=5, dense_steps=0, cycles=1) == [
        Phase(0, "warmup", 0, 5), Phase(1, "sparse", 5, 45), Phase(2, "final", 45, 50)]
    assert plan_phases(7, cycles=0) == [Phase(0, "dense", 0, 7)]
    odd = plan_phases(11, warmup=1, final_dense=1, dense_steps=1, cycles=2)
    assert [p.steps for p in odd if p.sparse] == [4, 4] and odd[-1].end == 11


@pytest.mark.parametrize("kwargs, message", [
    (dict(final_dense=0), "final_dense"),
    (dict(warmup=0.6, final_dense=0.5), "does not fit"),
    (dict(warmup=1.5), "warmup"),
    (dict(dense_steps=-1), "dense_steps"),
    (dict(cycles=-1), "cycles"),
])
def test_plan_phases_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan_phases(20, **kwargs)


def test_schedule_rejects_bad_arguments():
    model = tiny_model()
    with pytest.raises(ValueError, match="criterion"):
        GrowPruneSchedule(model, 10, criterion="random")
    with pytest.raises(ValueError, match="growth"):
        GrowPruneSchedule(model, 10, growth="copy")
    with pytest.raises(ValueError, match="density"):
        GrowPruneSchedule(model, 10, density=0.0)
    with pytest.raises(ValueError, match="unknown layers"):
        GrowPruneSchedule(model, 10, density={"nope": 0.5})
    with pytest.raises(ValueError, match="match no prunable layer"):
        GrowPruneSchedule(model, 10, layers=["nope"])
    with pytest.raises(ValueError, match="no SparseLinear"):
        GrowPruneSchedule(torch.nn.Linear(3, 3), 10)


def test_masks_change_only_at_phase_boundaries_and_end_full_size():
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    schedule = GrowPruneSchedule(model, 20, optimizer, density=0.5, warmup=2, final_dense=3, dense_steps=2, cycles=2)
    changes, densities = [], []
    for step in range(20):
        change = schedule.before_step()
        if change is not None:
            changes.append((step, change.kind))
        densities.append(schedule.density)
        optimizer.zero_grad()
        model(torch.randn(8, 12)).sum().backward()
        optimizer.step()
        schedule.after_step()
    assert changes == [(0, "warmup"), (2, "sparse"), (9, "dense"), (11, "sparse"), (17, "final")]
    sparse_steps = {p for phase in schedule.phases if phase.sparse for p in range(phase.start, phase.end)}
    assert all((d < 0.6) == (step in sparse_steps) for step, d in enumerate(densities))
    assert len({densities[s] for s in sparse_steps}) == 1  # no change inside a phase
    assert schedule.density == 1.0
    assert all(layer.out_index is None and layer.in_index is None for layer in schedule.linear_layers)


def test_flop_counters_match_active_blocks():
    mlp = amgp.SparseMLP([8, 16, 4], block_size=4)
    schedule = GrowPruneSchedule(mlp, 4, density=0.5, warmup=1, final_dense=1, dense_steps=0, cycles=1)
    meter = CostMeter(mlp)
    dense_per_sample = 6 * (8 * 16 + 16 * 4)
    sparse_per_sample = 6 * (8 * 8 + 8 * 4)  # half of the hidden channels stay
    for _ in range(4):
        kind = schedule.phase.kind
        schedule.before_step()
        schedule.after_step()
        meter.record_step(kind, 10)
    assert meter.flops_dense == 4 * 10 * dense_per_sample
    assert meter.flops_computed == 10 * (2 * dense_per_sample + 2 * sparse_per_sample)
    assert meter.summary()["mlp_flops_saving"] == pytest.approx(1 - meter.flops_computed / meter.flops_dense)


def test_meter_notices_masks_changed_by_hand():
    """FLOPs per sample follow the masks whoever changes them, not only the schedule."""
    mlp = amgp.SparseMLP([8, 16, 4], block_size=4)
    meter = CostMeter(mlp)
    meter.record_step("dense", 1)
    mlp.set_out_mask(0, torch.tensor([True, False, False, False]))
    meter.record_step("sparse", 1)
    assert meter.flops_computed == 6 * (8 * 16 + 16 * 4) + 6 * (8 * 4 + 4 * 4)
    with pytest.raises(ValueError, match="kind"):
        meter.record_step("pruned", 1)
    meter.add_time("sparse", 0.5)
    meter.add_time("data", 0.25)
    assert meter.summary()["phase_times_s"]["sparse"] == 0.5 and meter.other_times == {"data": 0.25}


def test_after_step_with_a_batch_size_says_where_counting_went():
    schedule = GrowPruneSchedule(tiny_model(), 4)
    with pytest.warns(DeprecationWarning, match="CostMeter"):
        schedule.after_step(16)
    assert schedule.step_count == 1


def test_per_layer_density_and_layer_selection():
    model = tiny_model()
    schedule = GrowPruneSchedule(model, 5, density={"0.layers.0": 0.25}, warmup=0, final_dense=1, cycles=1)
    schedule.before_step()
    assert model[0].layers[0].out_mask.sum() == 2  # 8 blocks -> 2
    assert model[0].layers[1].out_mask.all() and model[1].layers[0].out_mask.all()
    model = tiny_model()
    schedule = GrowPruneSchedule(model, 5, density=0.5, layers=["1."], warmup=0, final_dense=1, cycles=1)
    schedule.before_step()
    assert model[0].layers[0].out_mask.all() and model[1].layers[0].out_mask.sum() == 2


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_pruned_weights_and_optimizer_state_stay_zero(name):
    model = tiny_model()
    optimizer = OPTIMIZERS[name](model.parameters())
    schedule = GrowPruneSchedule(model, 12, optimizer, density=0.5, warmup=3, final_dense=2, dense_steps=0, cycles=1)
    train_steps(model, optimizer, schedule, 3)  # dense warmup: every optimizer state is non-zero
    for _ in range(7):  # the sparse phase
        train_steps(model, optimizer, schedule, 1)
        assert schedule.phase_at(schedule.step_count - 1).sparse
        for layer in schedule.linear_layers:
            inactive = ~layer.weight_mask
            assert inactive.any()
            assert (layer.weight[inactive] == 0).all()
            assert (layer.bias[~layer.out_channel_mask] == 0).all()
            for param, mask in ((layer.weight, inactive), (layer.bias, ~layer.out_channel_mask)):
                for value in optimizer.state[param].values():
                    if isinstance(value, torch.Tensor) and value.shape == param.shape:
                        assert (value[mask] == 0).all()


@pytest.mark.parametrize("criterion", ["magnitude", "taylor"])
def test_function_preserving_growth_keeps_the_output(criterion):
    model = tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    schedule = GrowPruneSchedule(model, 10, optimizer, density=0.5, warmup=3, final_dense=3, dense_steps=0, cycles=1,
                                 criterion=criterion)
    train_steps(model, optimizer, schedule, 7)
    x = torch.randn(32, 12)
    before_weights = [layer.weight.detach().clone() for layer in schedule.linear_layers]
    with torch.no_grad():
        before = model(x)
    change = schedule.before_step()
    assert change.kind == "final" and schedule.density == 1.0
    with torch.no_grad():
        after = model(x)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)
    grown_rows = schedule.linear_layers[0].weight[~torch.isin(torch.arange(32), torch.nonzero(
        before_weights[0].abs().sum(1)).flatten())]
    assert grown_rows.abs().sum() > 0  # incoming weights of grown blocks are re-initialised


@pytest.mark.parametrize("criterion, kept", [("taylor", [True, False]), ("magnitude", [False, True])])
def test_taylor_criterion_uses_accumulated_activation_gradients(criterion, kept):
    # Hidden block 1 has large weights but a dead ReLU (bias -100): large magnitude, zero Taylor score.
    mlp = amgp.SparseMLP([4, 8, 1], block_size=4)
    with torch.no_grad():
        mlp.layers[0].weight.copy_(torch.cat([0.01 * torch.ones(4, 4), 10 * torch.ones(4, 4)]))
        mlp.layers[0].bias.copy_(torch.tensor([0.0] * 4 + [-100.0] * 4))
        mlp.layers[1].weight.copy_(torch.tensor([[0.5] * 4 + [1.0] * 4]))
    optimizer = torch.optim.SGD(mlp.parameters(), lr=0.0)
    schedule = GrowPruneSchedule(mlp, 4, optimizer, density=0.5, warmup=2, final_dense=1, dense_steps=0, cycles=1,
                                 criterion=criterion)
    for _ in range(2):
        schedule.before_step()
        optimizer.zero_grad()
        mlp(torch.rand(8, 4)).sum().backward()
        optimizer.step()
        schedule.after_step()
    assert schedule.before_step().sparse
    assert mlp.layers[0].out_mask.tolist() == kept


@pytest.mark.parametrize("growth", ["zero", "restore"])
def test_zero_and_restore_growth(growth):
    mlp = amgp.SparseMLP([6, 16, 3], block_size=4)
    optimizer = torch.optim.SGD(mlp.parameters(), lr=0.0)  # weights do not move: restore must give them back
    original = [layer.weight.detach().clone() for layer in mlp.layers]
    schedule = GrowPruneSchedule(mlp, 4, optimizer, density=0.5, warmup=1, final_dense=1, dense_steps=0, cycles=1,
                                 growth=growth)
    for _ in range(3):
        schedule.before_step()
        schedule.after_step()
    pruned = ~mlp.layers[0].out_channel_mask
    schedule.before_step()
    if growth == "restore":
        torch.testing.assert_close(mlp.layers[0].weight, original[0], rtol=0, atol=0)
        torch.testing.assert_close(mlp.layers[1].weight, original[1], rtol=0, atol=0)
    else:
        assert (mlp.layers[0].weight[pruned] == 0).all() and (mlp.layers[1].weight[:, pruned] == 0).all()


def test_state_dict_round_trip():
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    schedule = GrowPruneSchedule(model, 10, optimizer, criterion="taylor", growth="restore")
    meter = CostMeter(model)
    train_steps(model, optimizer, schedule, 4, meter=meter)
    other = GrowPruneSchedule(tiny_model(), 10, criterion="taylor", growth="restore")
    other.load_state_dict(schedule.state_dict())
    other_meter = CostMeter(other.model)
    other_meter.load_state_dict(meter.state_dict())
    assert other.step_count == 4 and other_meter.flops_computed == meter.flops_computed > 0
    assert other.phase == schedule.phase
    with pytest.raises(ValueError, match="same total steps"):
        GrowPruneSchedule(tiny_model(), 11).load_state_dict(schedule.state_dict())


@pytest.mark.parametrize("name", ["adagrad", "adam"])
def test_grown_entries_start_with_neighbouring_second_moments(name):
    model = tiny_model()
    optimizer = OPTIMIZERS[name](model.parameters())
    schedule = GrowPruneSchedule(model, 8, optimizer, density=0.5, warmup=2, final_dense=2, dense_steps=0, cycles=1)
    train_steps(model, optimizer, schedule, 6)
    layer = schedule.linear_layers[1]
    pruned = ~layer.weight_mask
    key = "sum" if name == "adagrad" else "exp_avg_sq"
    kept = optimizer.state[layer.weight][key][~pruned]
    kept_mean = kept[kept != 0].mean()  # entries that never had a gradient do not count
    assert kept_mean > 0
    assert schedule.before_step().kind == "final"
    state = optimizer.state[layer.weight]
    # Second moments are ~1e-6 (Adam) or ~1e-3 (Adagrad): compare relative to them, not to a fixed atol.
    torch.testing.assert_close(state[key][pruned], kept_mean.expand(int(pruned.sum())), rtol=1e-5, atol=0)
    if name == "adam":
        assert (state["exp_avg"][pruned] == 0).all()


def test_static_plan_ends_pruned_only_when_asked():
    assert plan_phases(20, warmup=4, final_dense=0, dense_steps=0, cycles=1, end_full_size=False) == [
        Phase(0, "warmup", 0, 4), Phase(1, "sparse", 4, 20)]
    with pytest.raises(ValueError, match="final_dense"):
        plan_phases(20, warmup=4, final_dense=0, dense_steps=0, cycles=1)
    model = tiny_model()
    optimizer = torch.optim.Adagrad(model.parameters(), lr=0.05)
    schedule = GrowPruneSchedule(model, 10, optimizer, density=0.5, warmup=3, final_dense=0, dense_steps=0, cycles=1,
                                 end_full_size=False)
    meter = CostMeter(model)
    train_steps(model, optimizer, schedule, 10, meter=meter)
    assert schedule.density < 1 and meter.phase_steps == {"warmup": 3, "sparse": 7, "dense": 0, "final": 0}
    assert meter.samples == 160 and meter.summary()["samples"] == 160


def test_a_plan_without_sparse_phases_leaves_a_pruned_model_as_it_is():
    """Warm-starting a pruned model with a dense (cycles=0) schedule keeps its masks and counts its real FLOPs."""
    model = tiny_model()
    amgp.prune_blocks(model, 0.5)
    masks = [m.out_mask.clone() for m in model.modules() if isinstance(m, amgp.SparseLinear)]
    optimizer = torch.optim.Adagrad(model.parameters(), lr=0.05)
    schedule = GrowPruneSchedule(model, 4, optimizer, cycles=0)
    meter = CostMeter(model)
    train_steps(model, optimizer, schedule, 4, meter=meter)
    assert all(torch.equal(m.out_mask, old) for m, old in
               zip((m for m in model.modules() if isinstance(m, amgp.SparseLinear)), masks))
    assert 0 < meter.flops_saving < 1
