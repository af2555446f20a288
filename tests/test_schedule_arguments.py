"""GrowPruneSchedule passes every argument on (plan, seed, sync), warns where a caller still hands after_step a
batch size, grows each boundary from its own draw, and resumes from its state_dict (older layout included)
without re-applying the phase it was in."""
import os
import warnings

import pytest
import torch

from amgp import SparseMLP
from amgp.schedule import GrowPruneSchedule, plan_phases


def mlp():
    torch.manual_seed(0)
    model = SparseMLP([4, 8, 1], block_size=4)
    with torch.no_grad():
        model.layers[0].weight[:4] *= 100  # block 0 always wins: every pruning drops block 1
    return model


def run(schedule, steps):
    """Steps without training (weights change only by pruning and growth); the hidden weights after each."""
    weights = []
    for _ in range(steps):
        schedule.before_step()
        schedule.after_step()
        weights.append(schedule.model.layers[0].weight.detach().clone())
    return weights


def test_the_default_plan_and_total_steps():
    schedule = GrowPruneSchedule(mlp(), 100)
    assert schedule.total_steps == 100 and schedule.phases == plan_phases(100, 0.1, 0.2, 0.05, 2)
    assert [p.kind for p in schedule.phases] == ["warmup", "sparse", "dense", "sparse", "final"]
    with pytest.raises(ValueError, match="final_dense must be at least 1 step"):
        GrowPruneSchedule(mlp(), 100, final_dense=0)  # training ends full-size unless asked otherwise
    assert GrowPruneSchedule(mlp(), 100, final_dense=0, cycles=1, end_full_size=False).phases[-1].kind == "sparse"


def test_each_growth_draws_from_the_seed_and_its_own_step():
    plan = {"warmup": 1, "final_dense": 1, "dense_steps": 1, "cycles": 2}
    default = run(GrowPruneSchedule(mlp(), 6, **plan), 6)  # phases: warmup, sparse 1-2, dense 3, sparse 4, final 5
    seeded = run(GrowPruneSchedule(mlp(), 6, seed=0, **plan), 6)
    other = run(GrowPruneSchedule(mlp(), 6, seed=1, **plan), 6)
    assert all(torch.equal(a, b) for a, b in zip(default, seeded))  # seed 0 is the default
    grown = slice(4, 8)  # block 1's incoming weights: pruned at steps 1 and 4, grown at steps 3 and 5
    assert torch.equal(default[1][grown], torch.zeros(4, 4)) and torch.equal(default[4][grown], torch.zeros(4, 4))
    assert not torch.equal(default[3][grown], other[3][grown])  # the seed reaches the growth
    assert not torch.equal(default[3][grown], default[5][grown])  # each boundary has its own draw


def test_sync_decides_the_masks_every_rank_applies():
    calls = []

    def keep_everything(masks):
        calls.append(sorted(masks))
        return {name: torch.ones_like(mask) for name, mask in masks.items()}

    schedule = GrowPruneSchedule(mlp(), 6, warmup=1, final_dense=1, dense_steps=1, cycles=2, sync=keep_everything)
    run(schedule, 2)  # the warmup (all grown) and the first sparse step
    assert calls == [["layers.0"]] * 2 and bool(schedule.model.layers[0].out_mask.all())


def test_decide_masks_of_a_phase():
    schedule = GrowPruneSchedule(mlp(), 6, warmup=1, final_dense=1, dense_steps=1, cycles=2)
    sparse, dense = schedule.phases[1], schedule.phases[2]
    assert schedule.decide_masks(sparse)["layers.0"].tolist() == [True, False]
    assert schedule.decide_masks(dense)["layers.0"].tolist() == [True, True]


def test_after_step_warns_only_when_given_a_batch_size_or_seconds():
    schedule = GrowPruneSchedule(mlp(), 6, warmup=1, final_dense=1, dense_steps=1, cycles=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        schedule.after_step()
    message = ("^GrowPruneSchedule.after_step\\(\\) takes no batch size or seconds any more: count FLOPs, samples "
               "and time with amgp.CostMeter$")
    for kwargs in ({"seconds": 1.0}, {"batch_size": 16}):
        with pytest.warns(DeprecationWarning, match=message) as caught:
            schedule.after_step(**kwargs)
        # Points at the caller, not into amgp (the caller's own line, unless a wrapper such as mutmut's sits between).
        assert not caught[0].filename.endswith(os.path.join("amgp", "schedule.py"))
    assert schedule.step_count == 3


def test_resuming_mid_phase_does_not_apply_the_phase_again():
    plan = {"warmup": 1, "final_dense": 1, "dense_steps": 1, "cycles": 2}
    schedule = GrowPruneSchedule(mlp(), 6, **plan)
    run(schedule, 2)  # inside the first sparse phase
    state = schedule.state_dict()
    resumed = GrowPruneSchedule(mlp(), 6, **plan)
    resumed.load_state_dict(state)
    assert resumed.before_step() is None  # still the sparse phase it was in: no change to apply
    older = {key: value for key, value in state.items() if key != "pruner"} | state["pruner"]
    from_older = GrowPruneSchedule(mlp(), 6, **plan)
    from_older.load_state_dict(older)  # checkpoints written before the pruner was split out
    assert from_older.step_count == 2 and from_older.before_step() is None
    with pytest.raises(ValueError, match=r"this schedule has .*: resume with the same total steps and phase settings$"):
        GrowPruneSchedule(mlp(), 7, **plan).load_state_dict(state)
