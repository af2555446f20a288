"""Checkpoints: atomic writes, clear errors for bad files, and bit-exact resume of a training run."""
import dataclasses
import os
import stat
import subprocess
import sys

import pytest
import torch

from amgp import checkpoint
from amgp.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from amgp.train import TrainConfig, Trainer

# Steps 0..11: warmup 2, sparse 3, dense 1, sparse 3, final 3 -> stopping at 4 is inside a sparse
# phase and at 7 inside the second one, so a resume crosses phase changes.
TINY = TrainConfig(arch_sparse_feature_size=8, arch_embedding_size=[6, 40, 300], arch_mlp_bot=[13, 32, 8],
                   arch_mlp_top=[32, 16, 1], mini_batch_size=64, num_batches=12, num_test_batches=1, block_size=8,
                   amgp_warmup=2, amgp_final_dense=3, amgp_dense_steps=1, amgp_cycles=2, print_freq=2,
                   progress=False)


def test_save_is_atomic_and_round_trips(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 3, "weights": torch.arange(4.0)})
    save_checkpoint(path, {"step": 4, "weights": torch.arange(5.0)})  # replaces in place
    state = load_checkpoint(path, required=("step",))
    assert state["step"] == 4 and torch.equal(state["weights"], torch.arange(5.0))
    assert os.listdir(tmp_path) == ["ckpt.pt"]  # no temporary file left behind


def test_failed_save_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 1})

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert os.listdir(tmp_path) == ["ckpt.pt"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002], ids=oct)
def test_file_permissions_follow_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "ckpt.pt", {"step": 1})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "ckpt.pt").st_mode) == 0o666 & ~umask


def test_next_save_removes_temporaries_of_killed_writes(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)  # a process that has exited
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = [f".ckpt.pt.{dead_pid}.1a2b3c4d.tmp", ".ckpt.pt.k3x9_q2.tmp"]  # the latter: mkstemp's names
        kept = [f".ckpt.pt.{running.pid}.5e6f7a8b.tmp",  # a write still going on in another process
                f".other.pt.{dead_pid}.1a2b3c4d.tmp", "notes.tmp"]  # not this checkpoint's
        for name in stale + kept:
            (tmp_path / name).write_bytes(b"partial")
        save_checkpoint(tmp_path / "ckpt.pt", {"step": 2})
        assert sorted(os.listdir(tmp_path)) == sorted(kept + ["ckpt.pt"])
        assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 2
    finally:
        running.kill()
        running.wait()


def test_truncated_corrupt_and_foreign_files_give_clear_errors(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 1, "weights": torch.randn(1000)})
    data = path.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pt.*cannot be read"):
        load_checkpoint(tmp_path / "truncated.pt")
    (tmp_path / "garbage.pt").write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="garbage.pt.*cannot be read"):
        load_checkpoint(tmp_path / "garbage.pt")
    torch.save({"step": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an amgp checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="lacks"):
        load_checkpoint(path, required=("model",))


def test_rng_state_round_trip():
    state = checkpoint.capture_rng_state()
    expected = (torch.rand(3), __import__("random").random())
    checkpoint.restore_rng_state(state)
    assert torch.equal(torch.rand(3), expected[0]) and __import__("random").random() == expected[1]


def final_state(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


@pytest.mark.parametrize("optimizer, stop", [("adagrad", 4), ("adam", 7), ("sgd", 7)])
def test_resume_is_bit_exact(tmp_path, optimizer, stop):
    config = dataclasses.replace(TINY, optimizer=optimizer, momentum=0.9 if optimizer == "sgd" else 0.0,
                                 amgp_criterion="taylor" if optimizer == "adam" else "magnitude",
                                 learning_rate=0.01)
    straight = Trainer(config)
    straight_report = straight.run()
    path = str(tmp_path / "ckpt.pt")
    first = Trainer(dataclasses.replace(config, save_model=path, stop_at_step=stop))
    assert first.run()["steps"] == stop
    resumed = Trainer(dataclasses.replace(config, load_model=path))
    assert resumed.step == stop
    resumed_report = resumed.run()
    expected, actual = final_state(straight), final_state(resumed)
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    assert resumed_report["test_auc"] == straight_report["test_auc"]
    assert resumed_report["mlp_flops_computed"] == straight_report["mlp_flops_computed"]
    assert resumed_report["final_density"] == 1.0


def test_resume_with_other_settings_is_refused(tmp_path):
    path = str(tmp_path / "ckpt.pt")
    Trainer(dataclasses.replace(TINY, save_model=path, stop_at_step=3)).run()
    with pytest.raises(CheckpointError, match="amgp_density"):
        Trainer(dataclasses.replace(TINY, load_model=path, amgp_density=0.25))
