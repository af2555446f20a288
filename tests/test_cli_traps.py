"""amgp-dlrm's traps made errors or made right: a flag the run would ignore, a file that is not there, an
architecture that does not fit the data, a warm start on another data source. Every error is one line
naming the flag as typed."""
import json

import pytest
import torch

from amgp.cli.dlrm import main
from amgp.data.criteo import parse_criteo_line

from criteo_file import write_criteo

MODEL = ["--arch-sparse-feature-size", "8", "--arch-mlp-bot", "13-32-8", "--arch-mlp-top", "32-16-1",
         "--mini-batch-size", "64", "--block-size", "8", "--amgp-warmup", "2", "--amgp-final-dense", "3",
         "--amgp-dense-steps", "1", "--print-freq", "3", "--no-progress"]
SYNTHETIC = ["--num-batches", "12", "--num-test-batches", "1"]


def one_line_error(argv, capsys):
    """(the single stderr line of a failing amgp-dlrm, exit code); argparse's exit is the same as a return."""
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("amgp-dlrm: error: ")
    return lines[0], code


@pytest.fixture
def criteo(tmp_path):
    path = tmp_path / "train.txt"
    write_criteo(path, 900)
    return str(path)


@pytest.mark.parametrize("argv, message", [
    (["--raw-data-file", "missing.txt"], "--raw-data-file is read only with --data-generation dataset"),
    (["--max-ind-range", "50", "--skip-malformed-lines"], "--max-ind-range, --skip-malformed-lines is read only"),
    (["--test-fraction", "0.2"], "--test-fraction is read only with --data-generation dataset"),
    (["--data-randomize", "none"], "--data-randomize is read only"),
    (["--recurring-steps", "5"], "--recurring-steps applies only with --recurring"),
    (["--recurring", "--recurring-fraction", "0.5"], "--recurring-fraction is read only"),
])
def test_flags_the_synthetic_run_would_ignore_are_errors(argv, message, capsys):
    line, code = one_line_error(MODEL + SYNTHETIC + argv, capsys)
    assert code == 2 and message in line


@pytest.mark.parametrize("argv, message", [
    (["--num-test-batches", "2"], "--num-test-batches applies to the built-in synthetic data only"),
    (["--arch-embedding-size", "4-3-2"], "--arch-embedding-size applies to the built-in synthetic data only"),
    (["--recurring", "--recurring-drift", "0.5"], "--recurring-drift applies to the built-in synthetic data"),
])
def test_flags_the_criteo_run_would_ignore_are_errors(argv, message, criteo, capsys):
    line, code = one_line_error(MODEL + ["--data-generation", "dataset", "--raw-data-file", criteo] + argv, capsys)
    assert code == 2 and message in line


def test_missing_files_name_their_flag(tmp_path, capsys):
    missing = str(tmp_path / "nope.txt")
    line, code = one_line_error(MODEL + ["--data-generation", "dataset", "--raw-data-file", missing], capsys)
    assert code == 2 and line.startswith(f"amgp-dlrm: error: --raw-data-file {missing}: no such file")
    line, code = one_line_error(MODEL + SYNTHETIC + ["--load-model", missing], capsys)
    assert code == 2 and f"--load-model {missing}: no such file" in line


@pytest.mark.parametrize("argv, message", [
    (["--arch-mlp-bot", "10-32-8"], "--arch-mlp-bot starts with 10 inputs, but a Criteo file has 13 integer features"),
    (["--arch-mlp-top", "32-2"], "--arch-mlp-top must end with width 1"),
    (["--arch-mlp-bot", "13-32-4"], "the last width of --arch-mlp-bot (4) must equal --arch-sparse-feature-size (8)"),
])
def test_architecture_errors_name_the_flag(argv, message, criteo, capsys):
    line, code = one_line_error(MODEL + ["--data-generation", "dataset", "--raw-data-file", criteo] + argv, capsys)
    assert code == 2 and message in line
    assert "arch_mlp" not in line and "dense_x" not in line


def test_a_schedule_that_does_not_fit_names_its_flags(capsys):
    line, code = one_line_error(MODEL + ["--num-batches", "4", "--num-test-batches", "1"], capsys)
    assert code == 2 and "--amgp-warmup 2, --amgp-final-dense 3" in line and "do not fit in 4 steps" in line


def test_argparse_errors_are_one_line_not_the_usage(capsys):
    line, code = one_line_error(["--amgp-density", "0"], capsys)
    assert code == 2 and "--amgp-density" in line and "usage" not in line


def saved_tables(path):
    state = torch.load(path, weights_only=True)["model"]
    return [state[f"emb_l.{i}.weight"].shape[0] for i in range(len([k for k in state if k.startswith("emb_l.")]))]


def test_warm_start_from_synthetic_onto_criteo_uses_the_checkpoint_tables(tmp_path, criteo, capsys):
    day0, day1 = str(tmp_path / "day0.pt"), str(tmp_path / "day1.pt")
    tables = [3 + i for i in range(26)]  # each table its own size: the Criteo ids must follow each
    assert main(MODEL + SYNTHETIC + ["--arch-embedding-size", "-".join(map(str, tables)), "--save-model", day0]) == 0
    report_path = tmp_path / "day1.json"
    assert main(["--load-model", day0, "--recurring", "--data-generation", "dataset", "--raw-data-file", criteo,
                 "--recurring-fraction", "1", "--recurring-steps", "3", "--mini-batch-size", "64", "--no-progress",
                 "--save-model", day1, "--report-json", str(report_path)]) == 0
    assert "hashed into the tables of the model in" in capsys.readouterr().out
    assert saved_tables(day1) == saved_tables(day0) == tables
    assert json.loads(report_path.read_text())["steps"] == 3


def test_warm_start_from_criteo_onto_synthetic_data(tmp_path, criteo):
    day0 = str(tmp_path / "day0.pt")
    assert main(MODEL + ["--data-generation", "dataset", "--raw-data-file", criteo, "--max-ind-range", "50",
                         "--save-model", day0]) == 0
    assert main(["--load-model", day0, "--recurring", "--recurring-steps", "3", "--mini-batch-size", "64",
                 "--num-test-batches", "1", "--no-progress"]) == 0
    assert saved_tables(day0) == [50] * 26


def test_warm_start_that_cannot_read_a_criteo_file_is_one_line(tmp_path, criteo, capsys):
    day0 = str(tmp_path / "day0.pt")
    assert main(MODEL + SYNTHETIC + ["--arch-embedding-size", "4-3-2", "--save-model", day0]) == 0
    capsys.readouterr()
    line, code = one_line_error(["--load-model", day0, "--recurring", "--data-generation", "dataset",
                                 "--raw-data-file", criteo, "--recurring-fraction", "1", "--no-progress"], capsys)
    assert code == 2 and "has 3 embedding tables, but a Criteo file has 26" in line and "--load-model" in line
    line, code = one_line_error(["--load-model", day0, "--recurring", "--arch-mlp-bot", "13-8"], capsys)
    assert code == 2 and "--arch-mlp-bot is not used by a warm start" in line


def test_criteo_ids_hash_into_each_tables_rows():
    line = "\t".join(["1"] + ["2"] * 13 + ["ffffffff"] * 26)
    rows = [2 + i for i in range(26)]
    _, _, ids = parse_criteo_line(line, rows)
    assert ids == [1 + 0xFFFFFFFF % (n - 1) for n in rows] and all(i < n for i, n in zip(ids, rows))


def test_resuming_with_other_settings_names_the_flags(tmp_path, capsys):
    path = str(tmp_path / "run.pt")
    assert main(MODEL + SYNTHETIC + ["--save-model", path, "--stop-at-step", "4"]) == 0
    capsys.readouterr()
    other = [a if a != "32-16-1" else "32-1" for a in MODEL]
    line, code = one_line_error(other + SYNTHETIC + ["--load-model", path, "--seed", "5"], capsys)
    assert code == 2 and "different settings: ['--arch-mlp-top', '--seed']" in line
