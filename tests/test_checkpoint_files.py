"""Checkpoint files at their edges: a flipped bit in tensor data is caught (CRC-32), the messages name the cause,
pickled code is refused, the temporary file is named after the checkpoint in its directory (and a name clash is
retried), and cleaning up leftovers neither signals a live writer nor stops at its file."""
import os
import subprocess
import sys

import pytest
import torch

import amgp.checkpoint as checkpoint
from amgp.checkpoint import CheckpointError, load_checkpoint, restore_rng_state, save_checkpoint


def test_a_flipped_bit_in_tensor_data_is_caught(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"weights": torch.full((256,), 7.0)})
    data = bytearray(path.read_bytes())
    at = data.index(torch.full((4,), 7.0).numpy().tobytes()) + 100  # inside the stored (uncompressed) tensor
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"ckpt.pt' is corrupt: .* fails its CRC-32 check$"):
        load_checkpoint(path)


def test_messages_name_the_cause(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 1})
    (tmp_path / "torn.pt").write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match=r"torn.pt' cannot be read \(truncated or corrupt\?\): BadZipFile: "):
        load_checkpoint(tmp_path / "torn.pt")
    torch.save({"format": checkpoint.FORMAT, "version": 2}, tmp_path / "newer.pt")
    with pytest.raises(CheckpointError, match=r"newer.pt' has version 2, this amgp reads 1$"):
        load_checkpoint(tmp_path / "newer.pt")
    # Pickled code is never run: weights only.
    torch.save({"format": checkpoint.FORMAT, "version": 1, "hook": os.getcwd}, tmp_path / "code.pt")
    with pytest.raises(CheckpointError, match=r"code.pt' cannot be read \(truncated or corrupt\?\): UnpicklingError: "):
        load_checkpoint(tmp_path / "code.pt")


def test_the_temporary_is_named_after_the_checkpoint_in_its_directory(tmp_path, monkeypatch):
    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(checkpoint.os, "replace", lambda src, dst: (replaced.append(src), real_replace(src, dst)))
    tokens = iter(["aaaaaaaa", "aaaaaaaa", "bbbbbbbb"])  # the first name is taken: the save picks another
    monkeypatch.setattr(checkpoint.secrets, "token_hex", lambda n: next(tokens))
    (tmp_path / "sub").mkdir()
    taken = tmp_path / "sub" / f".ckpt.pt.{os.getpid()}.aaaaaaaa.tmp"
    taken.write_bytes(b"")
    save_checkpoint(tmp_path / "sub" / "ckpt.pt", {"step": 3})
    assert replaced == [str(tmp_path / "sub" / f".ckpt.pt.{os.getpid()}.bbbbbbbb.tmp")]
    assert load_checkpoint(tmp_path / "sub" / "ckpt.pt")["step"] == 3


def test_cleanup_keeps_a_live_writers_file_without_signalling_it_and_removes_every_other(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    running = subprocess.Popen([sys.executable, "-c", "import signal, time; time.sleep(60)"])
    try:
        live = f".ckpt.pt.{running.pid}.00000000.tmp"
        stale = [f".ckpt.pt.{dead_pid}.{i:08x}.tmp" for i in range(8)] + [f".ckpt.pt.{os.getpid()}.ffffffff.tmp"]
        for name in [live, *stale]:
            (tmp_path / name).write_bytes(b"partial")
        save_checkpoint(tmp_path / "ckpt.pt", {"step": 2})
        assert sorted(os.listdir(tmp_path)) == sorted([live, "ckpt.pt"])  # this process's own leftover goes too
        with pytest.raises(subprocess.TimeoutExpired):  # probed, not signalled: still running
            running.wait(timeout=2)
    finally:
        running.kill()
        running.wait()


def test_a_writer_this_user_may_not_signal_counts_as_alive(tmp_path, monkeypatch):
    def not_permitted(pid, signal):
        raise PermissionError(1, "Operation not permitted")

    name = ".ckpt.pt.4242.00000000.tmp"
    (tmp_path / name).write_bytes(b"partial")
    monkeypatch.setattr(checkpoint.os, "kill", not_permitted)
    save_checkpoint(tmp_path / "ckpt.pt", {"step": 1})
    assert (tmp_path / name).exists()


def test_a_gpu_runs_rng_state_restores_on_a_machine_without_one():
    state = checkpoint.capture_rng_state()
    if not torch.cuda.is_available():
        state["cuda"] = [torch.get_rng_state()]  # as a GPU machine writes it
    restore_rng_state(state)
    assert torch.equal(torch.get_rng_state(), state["torch"])
