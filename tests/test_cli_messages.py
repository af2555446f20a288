"""What amgp-dlrm tells its user: the run header, checkpoints, an early stop and how to resume, skipped lines,
Ctrl-C, plain lines (no bar frames) in a log, one summary table for --compare, and every default in --help
(of amgp-demo and amgp-bench too)."""
import json
import os
import re
import shlex
import signal
import subprocess
import sys

import pytest
import torch

from amgp import demo
from amgp.bench import cli as bench_cli
from amgp.checkpoint import load_checkpoint
from amgp.cli.dlrm import build_parser, main

from criteo_file import write_criteo

MODEL = ["--arch-sparse-feature-size", "8", "--arch-mlp-bot", "13-32-8", "--arch-mlp-top", "32-16-1",
         "--mini-batch-size", "64", "--block-size", "8", "--amgp-warmup", "2", "--amgp-final-dense", "3",
         "--amgp-dense-steps", "1", "--print-freq", "3"]
TINY = MODEL + ["--arch-embedding-size", "6-40-300", "--num-batches", "12", "--num-test-batches", "1"]


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_the_run_header_says_data_model_seeds_backend_threads(capsys, keep_threads):
    assert main(TINY + ["--no-progress", "--num-threads", "1", "--seed", "3"]) == 0
    data, model, run = capsys.readouterr().out.splitlines()[:3]
    assert data.startswith("data: built-in synthetic CTR data, 12 batches of 64") and "3 tables of 6..300 rows" in data
    # the top MLP's input: the bottom output (8) and the 6 pairwise products of 4 features
    assert model.startswith("model: 3 embedding tables of dim 8, bottom MLP 13-32-8, interaction dot, top MLP 14-32-16-1")
    assert run.startswith("run: amgp; seed 3; adagrad lr 0.01; engine amgp; cpu with backend ")
    assert run.endswith(", 1 torch thread")


def test_criteo_header_and_skipped_lines_in_summary_and_json(tmp_path, capsys):
    path = tmp_path / "train.txt"
    write_criteo(path, 900)
    with open(path, "a") as f:
        f.write("1\tnot enough fields\n0\t1\t2\n")
    report = tmp_path / "r.json"
    assert main(MODEL + ["--no-progress", "--data-generation", "dataset", "--raw-data-file", str(path),
                         "--skip-malformed-lines", "--report-json", str(report)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"data: Criteo file {path} (26 categoricals hashed into 100000 rows per table")
    assert f"skipped 2 malformed line(s) of {path} (--skip-malformed-lines)" in out
    assert json.loads(report.read_text())["lines_skipped"] == 2


def test_checkpoints_say_where_and_at_which_step(tmp_path, capsys):
    path = tmp_path / "run.pt"
    assert main(TINY + ["--no-progress", "--save-model", str(path), "--checkpoint-freq", "5"]) == 0
    saved = re.findall(r"^checkpoint saved to (.+) \(step (\d+)\)$", capsys.readouterr().out, re.M)
    assert saved == [(str(path), "5"), (str(path), "10"), (str(path), "12")]


def test_a_stopped_run_prints_the_command_that_resumes_it(tmp_path, capsys):
    path = tmp_path / "run.pt"
    argv = TINY + ["--no-progress", "--save-model", str(path), "--stop-at-step", "5"]
    assert main(argv) == 0
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("stopped at step")]
    assert len(line) == 1 and line[0].startswith("stopped at step 5 of 12 (--stop-at-step); resume with: amgp-dlrm ")
    resume = shlex.split(line[0].split("resume with: ", 1)[1])
    assert "--stop-at-step" not in resume and resume[-2:] == ["--load-model", str(path)]
    report = tmp_path / "r.json"
    assert main(resume[1:] + ["--report-json", str(report)]) == 0
    assert json.loads(report.read_text())["steps"] == 12
    assert main(TINY + ["--no-progress", "--stop-at-step", "5"]) == 0
    assert "stopped at step 5 of 12 (--stop-at-step); nothing to resume from" in capsys.readouterr().out


def test_ctrl_c_saves_a_checkpoint_and_exits_with_one_line(tmp_path):
    path = tmp_path / "run.pt"
    argv = MODEL + ["--arch-embedding-size", "6-40-300", "--num-batches", "100000", "--num-test-batches", "1",
                    "--print-freq", "1", "--save-model", str(path)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "amgp.cli.dlrm", *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    for line in process.stdout:  # not a terminal: a plain progress line per step
        if line.startswith("amgp: step 3/"):
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    step = int(re.match(r"amgp-dlrm: interrupted at step (\d+) of 100000; checkpoint saved to ", err).group(1))
    assert step >= 3 and f"checkpoint saved to {path} (step {step})" in out
    assert load_checkpoint(str(path))["step"] == step
    resume = shlex.split(err.split("resume with: ", 1)[1])
    assert resume[0] == "amgp-dlrm" and resume[-2:] == ["--load-model", str(path)]


def test_ctrl_c_without_save_model_says_nothing_was_saved(monkeypatch, capsys):
    """In-process: the second training step presses Ctrl-C (a real SIGINT to this process)."""
    from amgp.train import Trainer
    step = Trainer.train_step

    def pressing_ctrl_c(trainer, batch):
        if trainer.step == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return step(trainer, batch)

    monkeypatch.setattr(Trainer, "train_step", pressing_ctrl_c)
    assert main(TINY + ["--no-progress"]) == 130
    assert capsys.readouterr().err == ("amgp-dlrm: interrupted at step 2 of 12; nothing saved (--save-model keeps the "
                                       "state on Ctrl-C)\n")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C is Ctrl-C again


def test_a_log_gets_plain_lines_not_bar_frames(capsys):
    assert main(TINY + ["--compare"]) == 0  # progress on, but the output is not a terminal
    captured = capsys.readouterr()
    assert "\r" not in captured.out + captured.err
    out = captured.out
    assert "dense seed 0: step 12/12, loss " in out and "amgp seed 0: step 3/12, loss " in out
    assert re.search(r"^step 2: sparse phase 1 \(steps 2\.\.\d+\): pruned layers keep 50\.0% of their output "
                     r"blocks, MLP weight density 0\.\d{3} \(a hidden layer also loses the inputs", out, re.M)


def test_compare_prints_one_summary_table(capsys):
    assert main(TINY + ["--no-progress", "--compare"]) == 0
    out = capsys.readouterr().out
    assert sum(line.startswith("| method |") for line in out.splitlines()) == 1
    assert not re.search(r"^test AUC\s", out, re.M)  # the two-column table of runs is gone
    assert "AMGP vs dense: AUC difference" in out


def option_entries(help_text):
    """{option: its help text} from argparse's --help output."""
    entries, current = {}, None
    for line in help_text.splitlines():
        match = re.match(r"^  (-\S+)", line)
        if match:
            current = match.group(1).rstrip(",")
            entries[current] = line
        elif current and line.startswith("    "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return entries


@pytest.mark.parametrize("parser", [build_parser(), demo.build_parser(), bench_cli.build_parser()],
                         ids=["amgp-dlrm", "amgp-demo", "amgp-bench"])
def test_help_shows_every_default(parser):
    entries = option_entries(parser.format_help())
    for action in parser._actions:
        if action.option_strings and action.default not in (None, False, [], "==SUPPRESS=="):
            entry = entries[action.option_strings[0]]
            assert "default" in entry, entry


def test_the_aot_help_is_whole(capsys):
    pytest.importorskip("triton")
    from amgp_kernels.triton import aot
    with pytest.raises(SystemExit):
        aot.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "on machines (CI) where only the interpreter runs." in text and "(default 90)" in text
