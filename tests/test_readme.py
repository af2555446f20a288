"""README.md as a newcomer reads it: every amgp-dlrm command runs (shrunk), the output table it shows is what
the command prints, its machine-independent numbers are the code's, and its flag table lists every flag.
(The Python blocks run as written through pytest-codeblocks; see pyproject.toml.)"""
import json
import re
import shlex
import tomllib

import pytest
import torch

from amgp import DLRM
from amgp.pruner import BlockPruner
from amgp.cli.dlrm import build_parser, main
from amgp.cli.parser import flag_names
from amgp.experiment import equal_flop_budget
from amgp.pruning import weight_density
from amgp.train import TrainConfig

from criteo_file import write_criteo
from readme_blocks import README, after_marker, commands

TABLES = "-".join(["10"] * 26)  # the Criteo file's 26 categoricals fit any warm start
MODEL = ["--arch-sparse-feature-size", "8", "--arch-mlp-bot", "13-32-8", "--arch-mlp-top", "32-16-1", "--block-size",
         "8", "--amgp-warmup", "2", "--amgp-final-dense", "3", "--amgp-dense-steps", "1"]


def shrunk(argv):
    """`argv` with flags appended (the last of a flag wins) that make it a second's work, leaving out any
    that this run would refuse as ignored (see amgp.cli.flag_checks)."""
    warm = "--load-model" in argv and "--recurring" in argv
    dataset = "dataset" in argv
    extra = ["--mini-batch-size", "64", "--print-freq", "3", "--no-progress"]
    if not warm:
        extra += MODEL
    if not dataset and not warm:
        extra += ["--num-batches", "12", "--arch-embedding-size", TABLES]
    if not dataset:
        extra += ["--num-test-batches", "1"]
    if "--recurring" in argv:
        extra += ["--recurring-steps", "3"]
    if "--seeds" in argv:
        extra += ["--seeds", "2"]
    return argv + extra


def test_every_amgp_dlrm_line_of_the_readme_runs_shrunk(tmp_path, monkeypatch, capsys):
    """In README order, in one folder: day0.pt is saved before the warm starts read it. The TorchRec lines
    run in the TorchRec environment instead (tests/test_torchrec.py)."""
    monkeypatch.chdir(tmp_path)
    for name in ("train.txt", "day1.txt"):
        write_criteo(tmp_path / name, 900)  # 12 batches of 64 after the 10% test split
    lines = [line for line in commands("amgp-dlrm") if "--engine torchrec" not in line]
    assert len(lines) >= 10
    threads = torch.get_num_threads()
    try:
        for line in lines:
            argv = shlex.split(line)[1:]
            assert main(shrunk(argv)) == 0, line
            out = capsys.readouterr().out
            assert out.startswith("data: ") and "\nrun: " in out, line  # the run header comes first
            for flag in ("--report-json", "--plot", "--save-model"):
                if flag in argv:
                    assert (tmp_path / argv[argv.index(flag) + 1]).stat().st_size > 0, (line, flag)
    finally:
        torch.set_num_threads(threads)
    report = json.loads((tmp_path / "experiment.json").read_text())
    assert set(report["experiment"]["methods"]) == {"dense", "amgp", "static", "narrow"}
    assert (tmp_path / "day1.pt").exists() and (tmp_path / "dlrm_curves.png").exists()


def table(text):
    """{(method, column): cell} of the first markdown table in `text`."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|") and not line.startswith("|---")]
    header, body = rows[0], rows[1:]
    return {(row[0], column): cell for row in body for column, cell in zip(header[1:], row[1:])}


def prose():
    """README.md with every run of whitespace made one space (sentences wrap anywhere)."""
    return " ".join(README.read_text().split())


def numbers(cell):
    return [float(n) for n in re.findall(r"[-+]?\d+\.\d+", cell)]


# Columns compared: exact where no float rounding enters, else to the tolerance the README states.
EXACT = ("MLP train GFLOP (of dense)", "final density")
TOLERANT = {"test AUC": 0.001, "test log loss": 0.001, "AUC − dense (paired)": 0.002,
            "log loss − dense (paired)": 0.002}


def test_the_readme_compare_table_is_what_the_command_prints(capsys):
    command = after_marker("readme: shrunk compare command").strip()
    shown = after_marker("readme: shrunk compare output")
    threads = torch.get_num_threads()
    try:
        assert main(shlex.split(command)[1:]) == 0
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    expected, actual = table(shown), table(printed)
    assert {key[0] for key in expected} == {key[0] for key in actual} == {"dense", "amgp"}
    for (method, column), cell in expected.items():
        if column in EXACT:
            assert actual[method, column] == cell, (method, column)
        elif column in TOLERANT:
            assert numbers(actual[method, column]) == pytest.approx(numbers(cell), abs=TOLERANT[column]), \
                (method, column, actual[method, column])
    saving = re.compile(r"MLP FLOP saving (\d+\.\d)%")
    assert saving.search(printed).group(1) == saving.search(shown).group(1)


def test_the_headline_flop_saving_is_the_default_plan():
    """The README's 42.2% (and the experiment's 57.8%) come from the phase plan and the layer shapes alone."""
    config = TrainConfig()
    budget = equal_flop_budget(config, 26, config.num_batches * config.nepochs)
    text = prose()
    assert f"fix it at {1 - budget['amgp_flop_fraction']:.1%} of the MLP training FLOPs" in text
    assert f"at {budget['amgp_flop_fraction']:.1%} of the MLP training FLOPs" in text


def test_the_sparse_phase_weight_density_the_readme_explains():
    config = TrainConfig()
    model = DLRM([1] * 26, config.arch_sparse_feature_size, config.arch_mlp_bot, config.arch_mlp_top)
    BlockPruner(model, density=config.amgp_density, layers=config.amgp_layers).update(True, 0)
    density = f"{weight_density(model):.3f}"
    assert density == "0.350"
    assert f"weight density: {density} in the sparse phases, not {config.amgp_density}" in prose()


def test_the_flag_table_lists_every_flag():
    text = README.read_text()
    start = text.index("| flags (dlrm_s_pytorch.py names")
    flag_table = text[start:text.index("\n\n", start)]
    missing = [flag for flag in flag_names(build_parser()).values() if f"`{flag}" not in flag_table]
    assert missing == []


def test_plots_need_nothing_beyond_the_install():
    project = tomllib.loads((README.parent / "pyproject.toml").read_text())["project"]
    assert any(re.match(r"matplotlib\b", dependency) for dependency in project["dependencies"])
    assert ".[bench]" not in README.read_text()


def test_compare_plot_draws_auc_against_flops_as_the_readme_says(tmp_path, monkeypatch):
    import matplotlib.figure
    drawn = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda figure, *a, **k: drawn.append(figure))
    tiny = ["--arch-embedding-size", "6-40-300", "--num-test-batches", "1", "--num-batches", "12"]
    assert main(MODEL + tiny + ["--no-progress", "--mini-batch-size", "64", "--compare", "--plot",
                                str(tmp_path / "c.png")]) == 0
    labels = [(axis.get_xlabel(), axis.get_ylabel()) for axis in drawn[0].axes]
    assert any("FLOPs" in x and "AUC" in y for x, y in labels)
    assert "`--plot` draws test AUC against MLP training FLOPs" in prose()
