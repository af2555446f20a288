"""amgp-dlrm command line: a tiny end-to-end run, the JSON report, argument errors."""
import dataclasses
import io
import json
import sys

import pytest

from amgp.cli.dlrm import CLI_ONLY, build_parser, config_from_args, main
from amgp.experiment import equal_flop_budget
from amgp.train import TrainConfig
from amgp.data.criteo import NUM_FIELDS

# A tiny model and schedule for any data; TINY adds the synthetic data's sizes.
TINY_MODEL = ["--arch-sparse-feature-size", "8", "--arch-mlp-bot", "13-32-8", "--arch-mlp-top", "32-16-1",
              "--mini-batch-size", "64", "--num-batches", "12", "--block-size", "8", "--amgp-warmup", "2",
              "--amgp-final-dense", "3", "--amgp-dense-steps", "1", "--print-freq", "3", "--no-progress"]
TINY = TINY_MODEL + ["--arch-embedding-size", "6-40-300", "--num-test-batches", "1"]

REQUIRED_KEYS = {"test_auc", "test_logloss", "test_accuracy", "mlp_flops_dense", "mlp_flops_computed",
                 "mlp_flops_saving", "wall_time_s", "phase_times_s", "final_density", "backend"}


def test_compare_smoke_run_writes_report_and_plot(tmp_path, capsys):
    report_path, plot_path = tmp_path / "report.json", tmp_path / "curves.png"
    assert main(TINY + ["--compare", "--test-freq", "6", "--report-json", str(report_path),
                        "--plot", str(plot_path)]) == 0
    out = capsys.readouterr().out
    assert "dense" in out and "amgp" in out and "MLP FLOP saving" in out and "AMGP vs dense" in out
    report = json.loads(report_path.read_text())
    assert REQUIRED_KEYS <= report.keys() and REQUIRED_KEYS <= report["dense_baseline"].keys()
    assert report["final_density"] == 1.0 and report["dense_baseline"]["final_density"] == 1.0
    parser = build_parser()
    config = config_from_args(parser.parse_args(TINY), parser)
    predicted = 1 - equal_flop_budget(config, 3, 12)["amgp_flop_fraction"]  # the plan and the shapes fix it
    assert report["mlp_flops_saving"] == pytest.approx(predicted, rel=1e-12) and predicted > 0.1
    assert report["dense_baseline"]["mlp_flops_saving"] == 0
    assert report["mlp_flops_dense"] == report["dense_baseline"]["mlp_flops_dense"]
    assert report["phase_times_s"]["sparse"] > 0 and report["backend"] in ("cpu", "reference")
    assert 0 <= report["test_auc"] <= 1 and report["steps"] == 12
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_terminal_shows_no_loss_before_the_first_report(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    args = [a for a in TINY if a != "--no-progress"] + ["--compare"]
    assert main(args) == 0
    bar = terminal.getvalue()
    assert "density=1.00" in bar and "loss=" in bar  # the phase change at step 0, later the averaged loss
    assert "nan" not in bar


def test_phase_messages_and_criteo_file(tmp_path, capsys):
    line = "\t".join(["1"] + ["3"] * 13 + ["a1b2c3d4"] * 26)
    other = "\t".join(["0"] + [""] * 13 + ["0f"] * 26)
    data = tmp_path / "day.txt"
    data.write_text("\n".join([line, other] * 40) + "\n")
    args = TINY_MODEL + ["--nepochs", "6", "--data-generation", "dataset", "--raw-data-file", str(data),
                         "--max-ind-range", "50", "--num-batches", "0"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "sparse phase" in captured.out + captured.err
    assert "final density" in captured.out


def test_malformed_criteo_line_is_a_clear_error_or_skipped(tmp_path, capsys):
    good = "\t".join(["1"] + ["3"] * 13 + ["a1b2c3d4"] * 26)
    data = tmp_path / "bad.txt"
    data.write_text("\n".join([good] * 3 + ["1\tnot enough fields"] + [good] * 20) + "\n")
    args = TINY_MODEL + ["--data-generation", "dataset", "--raw-data-file", str(data), "--mini-batch-size", "4",
                         "--nepochs", "2"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{data}:4" in err and f"expected {NUM_FIELDS}" in err
    assert main(args + ["--skip-malformed-lines"]) == 0


@pytest.mark.parametrize("args, message", [
    (["--amgp-density", "0"], "--amgp-density"),
    (["--amgp-density", "1.5"], "--amgp-density"),
    (["--mini-batch-size", "-4"], "--mini-batch-size"),
    (["--arch-mlp-bot", "13-x-4"], "--arch-mlp-bot"),
    (["--amgp-warmup", "1.5"], "--amgp-warmup"),
    (["--amgp-criterion", "random"], "--amgp-criterion"),
    (["--learning-rate", "nan"], "--learning-rate"),
    (["--data-generation", "dataset"], "--raw-data-file"),
    (["--checkpoint-freq", "5"], "--save-model"),
    (["--num-threads", "0"], "--num-threads"),
    (["--compare", "dense,pruned"], "--compare"),
    (["--compare", "amgp,amgp"], "--compare"),
    (["--seeds", "0"], "--seeds"),
    (["--recurring-drift", "1.5"], "--recurring-drift"),
    (["--recurring-fraction", "0"], "--recurring-fraction"),
    (["--recurring-steps", "-1"], "--recurring-steps"),
    (["--data-randomize", "day"], "--data-randomize"),
    (["--seeds", "2", "--load-model", "run.pt"], "--load-model"),
    (["--compare", "--load-model", "run.pt"], "--load-model"),
    (["--static-prune", "--compare"], "--static-prune"),
])
def test_bad_values_are_argparse_errors(args, message, capsys):
    parser = build_parser()
    with pytest.raises(SystemExit) as exit_info:
        config_from_args(parser.parse_args(args), parser)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_every_flag_reaches_the_config():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(vars(build_parser().parse_args([]))) - set(CLI_ONLY) <= fields


def test_compare_defaults_to_dense_and_amgp():
    parser = build_parser()
    assert parser.parse_args(["--compare"]).compare == ["dense", "amgp"]
    assert parser.parse_args(["--compare", "static,dense"]).compare == ["static", "dense"]
    assert parser.parse_args([]).compare is None


def test_flags_map_to_the_config():
    parser = build_parser()
    config = config_from_args(parser.parse_args(
        ["--no-amgp", "--amgp-warmup", "40", "--amgp-final-dense", "0.2", "--amgp-layers", "top_l,bot_l.layers.0",
         "--numpy-rand-seed", "7", "--num-threads", "1"]), parser)
    assert config.amgp is False and config.amgp_warmup == 40 and config.amgp_final_dense == 0.2
    assert config.amgp_layers == ["top_l", "bot_l.layers.0"] and config.seed == 7
