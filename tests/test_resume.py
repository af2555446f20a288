"""Resuming from a checkpoint ends bit-identical to a run that never stopped, wherever it stops: in each
phase kind, with the state that only matters later (Taylor scores accumulated before a pruning,
weight snapshots for growth="restore") and with the global RNG feeding the training loop."""
import dataclasses

import pytest
import torch

import amgp
from amgp import checkpoint
from amgp.train import TrainConfig, Trainer

# 14 steps: warmup [0, 2), sparse [2, 5), dense [5, 7), sparse [7, 10), final [10, 14). Taylor scores
# accumulate in the warmup and dense phases and decide the next pruning; growth="restore" grows from
# the snapshot taken at the previous pruning.
TAYLOR_RESTORE = TrainConfig(
    arch_sparse_feature_size=8, arch_embedding_size=[6, 40, 300], arch_mlp_bot=[13, 32, 8], arch_mlp_top=[32, 16, 1],
    mini_batch_size=64, num_batches=14, num_test_batches=1, block_size=8, amgp_warmup=2, amgp_final_dense=4,
    amgp_dense_steps=2, amgp_cycles=2, amgp_criterion="taylor", amgp_growth="restore", optimizer="adam",
    learning_rate=0.01, print_freq=2, progress=False)
STOPS = {"warmup": 1, "sparse": 4, "dense": 6, "final": 12}  # a step inside each phase kind


def assert_same_tensors(expected, actual):
    """Two {name: tensor} dicts with the same keys and bit-identical values."""
    assert sorted(expected) == sorted(actual)
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key


@pytest.fixture(scope="module")
def uninterrupted():
    trainer = Trainer(TAYLOR_RESTORE)
    return trainer.run(), trainer.model.state_dict()


@pytest.mark.parametrize("kind", STOPS)
def test_resume_in_each_phase_kind_is_bit_exact(tmp_path, uninterrupted, kind):
    report, state = uninterrupted
    path = str(tmp_path / "ckpt.pt")
    first = Trainer(dataclasses.replace(TAYLOR_RESTORE, save_model=path, stop_at_step=STOPS[kind]))
    first.run()
    assert first.schedule.phase_at(STOPS[kind] - 1).kind == kind
    resumed = Trainer(dataclasses.replace(TAYLOR_RESTORE, load_model=path))
    resumed_report = resumed.run()
    assert_same_tensors(state, resumed.model.state_dict())
    assert resumed_report["history"]["loss"] == report["history"]["loss"]
    assert resumed_report["test_auc"] == report["test_auc"]
    assert resumed_report["mlp_flops_computed"] == report["mlp_flops_computed"]


# ----- a user's own training loop: dropout and inputs from the global RNG -------------------------
STEPS, STOP = 16, 6  # stop inside the first sparse phase (steps 3..7)


def build():
    model = torch.nn.Sequential(amgp.SparseMLP([12, 32, 24], block_size=4), torch.nn.Dropout(0.2),
                                amgp.SparseMLP([24, 16, 1], block_size=4))
    optimizer = torch.optim.Adagrad(model.parameters(), lr=0.05)
    schedule = amgp.GrowPruneSchedule(model, STEPS, optimizer, density=0.5, warmup=3, final_dense=3, dense_steps=2,
                                      cycles=2, criterion="taylor", growth="restore")
    return model, optimizer, schedule


def train(model, optimizer, schedule, steps):
    losses = []
    for _ in range(steps):
        schedule.before_step()
        x = torch.randn(16, 12)  # the global RNG, as in most training scripts (and the dropout draws too)
        optimizer.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        optimizer.step()
        schedule.after_step()
        losses.append(loss.item())
    return losses


def test_resume_of_a_training_loop_restores_the_global_rng(tmp_path):
    torch.manual_seed(0)
    model, optimizer, schedule = build()
    expected_losses = train(model, optimizer, schedule, STEPS)
    expected_state = model.state_dict()

    torch.manual_seed(0)
    model, optimizer, schedule = build()
    losses = train(model, optimizer, schedule, STOP)
    checkpoint.save_checkpoint(tmp_path / "ckpt.pt", {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
        "rng": checkpoint.capture_rng_state()})

    torch.manual_seed(1)  # a new process: other seed, and building the model draws from the global RNG
    model, optimizer, schedule = build()
    state = checkpoint.load_checkpoint(tmp_path / "ckpt.pt")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    checkpoint.restore_rng_state(state["rng"])
    losses += train(model, optimizer, schedule, STEPS - STOP)

    assert losses == expected_losses
    assert_same_tensors(expected_state, model.state_dict())
