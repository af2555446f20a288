"""Crash safety of amgp-dlrm: a training process SIGKILLed while it writes a checkpoint resumes from the
last good checkpoint and ends bit-identical to a run that never crashed; damaged checkpoints and
malformed Criteo files give clear errors (exit code 2 from the command line, no traceback)."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from amgp.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from amgp.data.criteo import CriteoFormatError, read_criteo

# Embedding tables big enough (~5 MB of weights and Adagrad state) that a checkpoint write takes a
# while, so the kill lands inside one; 30 steps cross warmup, two sparse phases and the final phase.
RUN = ["--arch-sparse-feature-size", "16", "--arch-embedding-size", "20000-20000", "--arch-mlp-bot", "13-32-16",
       "--arch-mlp-top", "32-16-1", "--mini-batch-size", "64", "--num-batches", "30", "--num-test-batches", "1",
       "--block-size", "8", "--amgp-warmup", "4", "--amgp-dense-steps", "4", "--amgp-final-dense", "4",
       "--amgp-cycles", "2", "--print-freq", "2", "--no-progress"]


def dlrm(*args, **popen):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread: bit-reproducible and gentle on shared CPUs
    return subprocess.Popen([sys.executable, "-m", "amgp.cli.dlrm", *RUN, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def finish(process, timeout=300):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return out


def kill_during_checkpoint_write(process, directory, name, writes_before_kill):
    """SIGKILL `process` as soon as it has started its n-th checkpoint write (its temporary file is
    there). Returns True if the kill came while a write was still unfinished."""
    seen = set()
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        temporaries = [f for f in os.listdir(directory) if f.startswith(f".{name}.") and f.endswith(".tmp")]
        seen.update(temporaries)
        if len(seen) >= writes_before_kill and temporaries:
            process.send_signal(signal.SIGKILL)
            process.wait()
            left = [f for f in os.listdir(directory) if f.startswith(f".{name}.") and f.endswith(".tmp")]
            return bool(left)
        time.sleep(0.0005)
    raise AssertionError(f"the run ended (rc {process.returncode}) before its {writes_before_kill}th checkpoint")


def test_sigkill_while_checkpointing_then_resume_loses_nothing(tmp_path):
    reference = tmp_path / "reference.pt"
    finish(dlrm("--save-model", str(reference)))
    expected = load_checkpoint(reference)

    torn_writes, kills = 0, 0
    for writes_before_kill in (6, 17, 11, 23):
        if kills >= 2 and torn_writes:  # two crash/resume cycles, at least one inside a write
            break
        kills += 1
        directory = tmp_path / f"crash{writes_before_kill}"
        directory.mkdir()
        path = directory / "ckpt.pt"
        run = dlrm("--save-model", str(path), "--checkpoint-freq", "1")
        torn_writes += kill_during_checkpoint_write(run, directory, "ckpt.pt", writes_before_kill)
        survived = load_checkpoint(path)  # the last good checkpoint, never a torn one
        assert writes_before_kill - 1 <= survived["step"] < 30  # (polling may miss a short write)
        finish(dlrm("--save-model", str(path), "--checkpoint-freq", "1", "--load-model", str(path)))
        assert os.listdir(directory) == ["ckpt.pt"]  # the killed write's temporary file is gone
        resumed = load_checkpoint(path)
        assert resumed["step"] == expected["step"] == 30
        for key, value in expected["model"].items():
            assert torch.equal(resumed["model"][key], value), key
        assert resumed["history"]["loss"] == expected["history"]["loss"]
    assert torn_writes >= 1, "no kill landed inside a checkpoint write"


def test_damaged_checkpoints_give_clear_errors(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 7, "weights": torch.randn(20000)})
    data = path.read_bytes()
    damaged = {
        "empty": b"",
        "truncated": data[: len(data) // 3],
        "tail cut": data[:-20],
        "garbage": os.urandom(4096),
    }
    for offset in (0.3, 0.5, 0.8):  # one flipped bit inside the tensor data: torch.load alone reads it silently
        flipped = bytearray(data)
        flipped[int(len(data) * offset)] ^= 0x10
        damaged[f"bit flip at {offset:.0%}"] = bytes(flipped)
    for name, blob in damaged.items():
        bad = tmp_path / f"{name.replace(' ', '_')}.pt"
        bad.write_bytes(blob)
        with pytest.raises(CheckpointError, match=f"{bad.name}.*(cannot be read|corrupt)"):
            load_checkpoint(bad)
    assert load_checkpoint(path)["step"] == 7


def test_cli_refuses_a_damaged_checkpoint_without_traceback(tmp_path):
    path = tmp_path / "ckpt.pt"
    finish(dlrm("--save-model", str(path), "--stop-at-step", "3"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    run = dlrm("--load-model", str(path))
    _, err = run.communicate(timeout=300)
    assert run.returncode == 2
    assert "ckpt.pt" in err and "corrupt" in err and "Traceback" not in err


GOOD = "\t".join(["1"] + [str(i) for i in range(13)] + [f"{i * 7919:08x}" for i in range(26)])


def line(label="1", integers=None, categoricals=None):
    integers = integers or ["3"] * 13
    categoricals = categoricals or ["a1b2"] * 26
    return "\t".join([label, *integers, *categoricals])


MALFORMED = {  # name -> (line bytes, what the message must say)
    "too few fields": (b"1\t2\t3", "expected 40 tab-separated fields, got 3"),
    "empty line": (b"", "expected 40 tab-separated fields, got 1"),
    "label not 0/1": (line(label="2").encode(), "label must be 0 or 1"),
    "integer not integer": (line(integers=["1.5"] + ["1"] * 12).encode(), "integer feature I1 is not an integer"),
    "integer with NUL": (line(integers=["1\x00"] + ["1"] * 12).encode(), "integer feature I1"),
    "integer of 5000 digits": (line(integers=["9" * 5000] + ["1"] * 12).encode(), "integer feature I1"),
    "non-UTF-8 integer": (line().encode().replace(b"\t3\t", b"\t\xff\xfe\t", 1), "integer feature I1"),
    "non-UTF-8 categorical": (line().encode()[:-2] + b"\xc3\x28", "categorical feature C26 is not hexadecimal"),
    "categorical not hex": (line(categoricals=["zz"] + ["a"] * 25).encode(), "categorical feature C1"),
}


def write_lines(path, lines):
    path.write_bytes(b"\n".join(lines) + b"\n")


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_criteo_line_is_named_or_skipped(tmp_path, case):
    bad, message = MALFORMED[case]
    path = tmp_path / "day.txt"
    write_lines(path, [GOOD.encode(), bad, GOOD.encode(), GOOD.encode()])
    with pytest.raises(CriteoFormatError, match=f"day.txt:2: malformed Criteo line: .*{message}"):
        read_criteo(path, 100, 2)
    data = read_criteo(path, 100, 2, skip_malformed=True)
    assert data.lines_skipped == 1 and data.train.rows + data.test.rows == 3
    assert len(str(pytest.raises(CriteoFormatError, read_criteo, path, 100, 2).value)) < 400  # stays readable


def test_criteo_empty_fields_and_huge_integers_are_valid(tmp_path):
    path = tmp_path / "day.txt"
    empty = "\t".join(["0"] + [""] * 39)
    huge = line(integers=["9" * 30, "9" * 400, "-5"] + ["1"] * 10, categoricals=["f" * 500] + ["a"] * 25)
    write_lines(path, [GOOD.encode(), empty.encode(), huge.encode(), GOOD.encode()])
    data = read_criteo(path, 100, 2, test_fraction=0.25)
    dense, sparse = data.train.dense, data.train.sparse
    assert torch.equal(dense[1], torch.zeros(13)) and torch.equal(sparse[1], torch.zeros(26, dtype=torch.int64))
    assert torch.isfinite(dense).all()
    torch.testing.assert_close(dense[2, :3], torch.tensor([30 * 2.302585, 400 * 2.302585, 0.0]), rtol=1e-5, atol=1e-5)
    assert 1 <= int(sparse[2, 0]) < 100


def test_cli_reports_malformed_criteo_without_traceback(tmp_path):
    path = tmp_path / "day.txt"
    write_lines(path, [GOOD.encode()] * 3 + [line(integers=["9" * 400, "x"] + ["1"] * 11).encode()])
    run = subprocess.run([sys.executable, "-m", "amgp.cli.dlrm", "--data-generation", "dataset", "--raw-data-file",
                          str(path), "--no-progress"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert "day.txt:4" in run.stderr and "I2" in run.stderr and "Traceback" not in run.stderr
