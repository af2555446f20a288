"""The experiment behind amgp-dlrm --compare: methods at equal MLP training FLOPs, several seeds, paired
statistics, the recurring stage and warm starts (tiny models and few steps)."""
import dataclasses
import json

import pytest
import torch

from amgp.cli.dlrm import main
from amgp.data import SyntheticCTR
from amgp.experiment import METHODS, paired, run_experiment, spread
from amgp.recurring import RecurringConfig, Stages, continue_training
from amgp.engines import make_trainer, train
from amgp.train import TrainConfig, evaluate
from amgp.dlrm import DLRM

# Every pruned width is a whole number of blocks, so predicted and counted FLOPs agree exactly.
TINY = ["--arch-sparse-feature-size", "8", "--arch-embedding-size", "6-40-300", "--arch-mlp-bot", "13-32-8",
        "--arch-mlp-top", "32-16-1", "--mini-batch-size", "64", "--num-batches", "12", "--num-test-batches", "2",
        "--block-size", "8", "--amgp-warmup", "2", "--amgp-final-dense", "3", "--amgp-dense-steps", "1",
        "--print-freq", "3", "--no-progress"]
TINY_CONFIG = TrainConfig(arch_sparse_feature_size=8, arch_embedding_size=[6, 40, 300], arch_mlp_bot=[13, 32, 8],
                          arch_mlp_top=[32, 16, 1], mini_batch_size=64, num_batches=12, num_test_batches=2,
                          block_size=8, amgp_warmup=2, amgp_final_dense=3, amgp_dense_steps=1, print_freq=3,
                          progress=False)


@pytest.fixture(scope="module")
def everything(tmp_path_factory):
    """One CLI run of all four methods, two seeds and the recurring stage; its JSON report."""
    folder = tmp_path_factory.mktemp("experiment")
    report_path, plot_path = folder / "report.json", folder / "plot.png"
    assert main(TINY + ["--compare", "dense,amgp,static,narrow", "--seeds", "2", "--recurring", "--recurring-steps",
                        "3", "--report-json", str(report_path), "--plot", str(plot_path)]) == 0
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return json.loads(report_path.read_text())


def test_every_method_spends_the_flops_predicted_for_it(everything):
    result = everything["experiment"]
    budget = result["budget"]
    assert result["methods"] == list(METHODS) and result["seeds"] == [0, 1]
    for method in METHODS:
        for run in result["runs"][method]:
            counted = run["mlp_flops_computed"] / (run["samples"] * budget["dense_flops_per_sample"])
            assert counted == pytest.approx(budget["predicted_flop_fraction"][method], rel=1e-12), method
    predicted = budget["predicted_flop_fraction"]
    assert predicted["dense"] == 1 and 0.4 < predicted["amgp"] < 0.8
    assert predicted["amgp"] <= predicted["static"] < predicted["amgp"] + 0.1  # whole blocks, never less budget
    assert predicted["narrow"] == pytest.approx(predicted["amgp"], abs=0.02)  # whole channels


def test_amgp_ends_full_size_static_and_narrow_end_small(everything):
    runs = everything["experiment"]["runs"]
    budget = everything["experiment"]["budget"]
    assert all(run["final_density"] == 1.0 for run in runs["amgp"] + runs["dense"])
    assert all(run["final_density"] < 1.0 and run["mode"] == "static" for run in runs["static"])
    assert budget["narrow_arch_mlp_bot"][0] == 13 and budget["narrow_arch_mlp_bot"][-1] == 8
    assert budget["narrow_arch_mlp_top"][-1] == 1 and budget["narrow_arch_mlp_top"][0] < 32
    assert [p["kind"] for p in runs["static"][0]["phases"]] == ["warmup", "sparse"]


def test_seeds_change_init_and_data_and_the_summary_pairs_them_with_dense(everything):
    result = everything["experiment"]
    dense = result["runs"]["dense"]
    assert dense[0]["history"]["loss"] != dense[1]["history"]["loss"]
    for method in ("amgp", "static", "narrow"):
        runs = result["runs"][method]
        difference = result["summary"][method]["test_auc_vs_dense"]
        assert difference["per_seed"] == pytest.approx([r["test_auc"] - d["test_auc"] for r, d in zip(runs, dense)])
        assert difference["mean"] == pytest.approx(sum(difference["per_seed"]) / 2)
    assert "test_auc_vs_dense" not in result["summary"]["dense"]
    auc = result["summary"]["amgp"]["test_auc"]
    assert auc["mean"] == pytest.approx(sum(r["test_auc"] for r in result["runs"]["amgp"]) / 2)


def test_report_keeps_the_two_run_layout_at_the_top(everything):
    """--compare's JSON as before: AMGP's first-seed run at the top, dense under dense_baseline."""
    runs = everything["experiment"]["runs"]
    assert everything["test_auc"] == runs["amgp"][0]["test_auc"] and everything["mode"] == "amgp"
    assert everything["dense_baseline"]["test_auc"] == runs["dense"][0]["test_auc"]
    comparison = everything["comparison"]
    assert comparison["auc_difference"] == pytest.approx(
        everything["experiment"]["summary"]["amgp"]["test_auc_vs_dense"]["mean"])
    assert set(comparison["targets_met"]) == {"flops_saving_at_least_40pct", "auc_within_0.002",
                                              "time_reduction_at_least_half_flops_saving"}


def test_recurring_stage_continues_each_model_at_its_size(everything):
    recurring = everything["experiment"]["recurring"]
    budget = everything["experiment"]["budget"]
    offline = everything["experiment"]["runs"]
    for method in METHODS:
        for before, after in zip(offline[method], recurring["runs"][method]):
            assert after["steps"] == 3 and after["mode"] == "recurring"
            assert after["final_density"] == before["final_density"]  # no growth, no pruning
            assert 0 <= after["before_test_auc"] <= 1
    fraction = recurring["summary"]["static"]["mlp_flop_fraction"]["mean"]
    assert fraction == pytest.approx(recurring["summary"]["static"]["final_density"]["mean"], abs=0.2) and fraction < 1
    assert recurring["summary"]["amgp"]["mlp_flop_fraction"]["mean"] == 1.0
    assert recurring["summary"]["narrow"]["mlp_flop_fraction"]["mean"] == pytest.approx(
        budget["predicted_flop_fraction"]["narrow"])
    gain = recurring["summary"]["dense"]["test_auc_gain"]
    runs = recurring["runs"]["dense"]
    assert gain["per_seed"] == pytest.approx([r["test_auc"] - r["before_test_auc"] for r in runs])


def test_the_experiment_run_is_the_plain_run():
    """Handing the data in (read once per experiment) changes nothing: same seed, same result."""
    config = dataclasses.replace(TINY_CONFIG, num_batches=6, amgp_warmup=1, amgp_final_dense=1)
    result = run_experiment(config, ["amgp"], seeds=1, write=lambda _: None)
    assert result["runs"]["amgp"][0]["test_auc"] == train(config)["test_auc"]


def test_spread_and_paired_statistics():
    assert spread([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0}
    assert spread([5.0]) == {"mean": 5.0, "std": None}
    difference = paired([0.81, 0.82, 0.84], [0.80, 0.80, 0.80])
    assert difference["per_seed"] == pytest.approx([0.01, 0.02, 0.04])
    assert difference["mean"] == pytest.approx(0.07 / 3)
    assert difference["ci95"] == pytest.approx(4.302653 * difference["std"] / 3 ** 0.5, rel=1e-6)
    assert paired([1.0], [0.5])["ci95"] is None


def test_experiment_rejects_bad_arguments():
    with pytest.raises(ValueError, match="methods"):
        run_experiment(TINY_CONFIG, ["dense", "pruned"])
    with pytest.raises(ValueError, match="methods"):
        run_experiment(TINY_CONFIG, ["dense", "dense"])
    with pytest.raises(ValueError, match="seeds"):
        run_experiment(TINY_CONFIG, ["dense"], seeds=0)
    with pytest.raises(ValueError, match="drift"):
        RecurringConfig(drift=2.0)
    with pytest.raises(ValueError, match="steps"):
        RecurringConfig(steps=0)
    with pytest.raises(ValueError, match="optimizer"):
        RecurringConfig(optimizer="reset")


def test_criteo_next_day_is_the_latest_slice(tmp_path):
    lines = ["\t".join([str(i % 2)] + [str(i)] * 13 + ["a1b2"] * 26) for i in range(40)]
    path = tmp_path / "days.txt"
    path.write_text("\n".join(lines) + "\n")
    config = dataclasses.replace(TINY_CONFIG, data_generation="dataset", raw_data_file=str(path), mini_batch_size=4,
                                 test_fraction=0.2)
    stages = Stages(config, RecurringConfig(steps=2, fraction=0.5))
    first = lambda batch: round(float(torch.expm1(batch.dense[0, 0])))  # noqa: E731 (the line's integer)
    offline, next_day = stages.offline(0), stages.next_day(0)
    assert (offline.train.rows, offline.test.rows, first(offline.test)) == (16, 4, 16)
    assert (next_day.train.rows, next_day.test.rows, first(next_day.test)) == (16, 4, 36)
    whole = Stages(config, RecurringConfig(fraction=1.0))
    assert whole.next_day(0).train.rows == 32
    with pytest.raises(ValueError, match="no lines are left"):
        whole.offline(0)


def test_warm_start_from_a_saved_model_keeps_its_architecture_and_masks(tmp_path, capsys):
    saved = tmp_path / "static.pt"
    narrow = ["--arch-mlp-top", "24-1"]  # not the default architecture: the warm start takes the checkpoint's
    assert main(TINY + narrow + ["--static-prune", "--amgp-density", "0.5", "--save-model", str(saved)]) == 0
    report_path = tmp_path / "warm.json"
    assert main(["--mini-batch-size", "64", "--num-test-batches", "2", "--no-progress", "--load-model", str(saved),
                 "--recurring", "--recurring-steps", "4", "--recurring-drift", "0.5", "--report-json",
                 str(report_path)]) == 0
    assert "newest-data test AUC" in capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert report["mode"] == "recurring" and report["steps"] == 4
    assert report["final_density"] < 1 and report["mlp_flops_saving"] > 0  # still pruned: it stays small
    # "before" is the saved model on the next day's test split
    state = torch.load(saved, weights_only=True)
    model = DLRM([6, 40, 300], 8, [13, 32, 8], [24, 1], block_size=8)
    model.load_state_dict(state["model"])
    next_day = SyntheticCTR(seed=0, batch_size=64, num_batches=4, num_test_batches=2, table_sizes=[6, 40, 300],
                            day=1, drift=0.5)
    assert report["before_test_auc"] == pytest.approx(evaluate(model, next_day.test_batches(), "cpu")["auc"])


def test_criteo_experiment_with_recurring_stage_runs_end_to_end(tmp_path):
    lines = ["\t".join([str(int(i % 3 == 0))] + [str(i % 17 - 2)] * 13 + [format(i % 29, "x")] * 26)
             for i in range(240)]
    path = tmp_path / "days.txt"
    path.write_text("\n".join(lines) + "\n")
    report_path = tmp_path / "report.json"
    synthetic_only = TINY.index("--num-test-batches")  # (and --arch-embedding-size, TINY[2:4])
    args = TINY[:2] + TINY[4:synthetic_only] + TINY[synthetic_only + 2:] + [
        "--data-generation", "dataset", "--raw-data-file", str(path), "--max-ind-range", "40", "--mini-batch-size",
        "16", "--compare", "amgp,static", "--recurring", "--recurring-steps", "20", "--report-json", str(report_path)]
    assert main(args) == 0
    result = json.loads(report_path.read_text())["experiment"]
    # 240 lines: the latest 60 are the next day (54 train, 6 test); offline: the first 180 (162 train, 18 test)
    assert result["runs"]["amgp"][0]["samples"] == 162  # --num-batches 12 > 11 batches: one pass
    assert [r["samples"] for r in result["recurring"]["runs"]["static"]] == [54]  # 20 steps > 4 batches: one pass


def test_verdicts_come_from_the_paired_interval_not_the_mean():
    assert paired([0.81, 0.82, 0.815], [0.80, 0.80, 0.80])["verdict"] == "better"
    assert paired([0.79, 0.78, 0.785], [0.80, 0.80, 0.80])["verdict"] == "worse"
    # a positive mean whose interval crosses 0 is no win
    noisy = paired([0.83, 0.79, 0.82], [0.80, 0.80, 0.80])
    assert noisy["mean"] > 0 and noisy["ci95"] > noisy["mean"] and noisy["verdict"] == "not distinguishable"
    # lower log loss is better
    assert paired([0.40, 0.41, 0.39], [0.45, 0.46, 0.45], higher_is_better=False)["verdict"] == "better"
    assert paired([0.9], [0.1])["verdict"] == "one seed: no verdict"


def test_amgp_is_paired_against_every_other_method(everything):
    result = everything["experiment"]
    for stage in (result, result["recurring"]):
        against = stage["amgp_against"]
        assert set(against) == {"dense", "static", "narrow"}
        for method, entry in against.items():
            amgp_auc = [r["test_auc"] for r in stage["runs"]["amgp"]]
            other_auc = [r["test_auc"] for r in stage["runs"][method]]
            assert entry["test_auc"]["per_seed"] == pytest.approx([a - b for a, b in zip(amgp_auc, other_auc)])
            assert entry["test_auc"]["verdict"] in ("better", "worse", "not distinguishable")
    assert everything["comparison"]["auc_verdict"] == result["summary"]["amgp"]["test_auc_vs_dense"]["verdict"]


def test_continuing_the_optimizer_is_training_on_without_a_break():
    """The recurring stage with the offline optimizer's state (the default) trains exactly as one run
    that never stopped: a dense run of two epochs equals one epoch, then one more epoch continued."""
    one_epoch = dataclasses.replace(TINY_CONFIG, amgp=False, num_batches=4)
    data = SyntheticCTR(seed=0, batch_size=64, num_batches=4, num_test_batches=2, table_sizes=[6, 40, 300])
    first = make_trainer(one_epoch, data=data)
    first.run()
    continued = continue_training(one_epoch, first.model.state_dict(), data, 4,
                                  optimizer_state=first.optimizer.state_dict())
    fresh = continue_training(one_epoch, first.model.state_dict(), data, 4)
    whole = make_trainer(dataclasses.replace(one_epoch, nepochs=2), data=data).run()
    assert continued["test_auc"] == whole["test_auc"] and continued["test_logloss"] == whole["test_logloss"]
    assert fresh["test_logloss"] != whole["test_logloss"]


def test_a_warm_start_continues_the_checkpoints_optimizer_or_starts_fresh(tmp_path):
    saved = tmp_path / "day0.pt"
    assert main(TINY + ["--no-amgp", "--optimizer", "adam", "--save-model", str(saved)]) == 0
    warm = ["--mini-batch-size", "64", "--num-test-batches", "2", "--no-progress", "--load-model", str(saved), "--recurring", "--recurring-steps", "3"]
    reports = {}
    for choice in ("continue", "fresh"):
        path = tmp_path / f"{choice}.json"
        assert main(warm + ["--recurring-optimizer", choice, "--report-json", str(path)]) == 0
        reports[choice] = json.loads(path.read_text())
    assert reports["continue"]["before_test_auc"] == reports["fresh"]["before_test_auc"]
    assert reports["continue"]["test_logloss"] != reports["fresh"]["test_logloss"]
    # the checkpoint's optimizer (adam) goes on, though this command line did not name it
    state = torch.load(saved, weights_only=True)
    assert "exp_avg" in next(iter(state["optimizer"]["state"].values()))


def test_parallel_seeds_give_the_runs_of_serial_seeds():
    config = dataclasses.replace(TINY_CONFIG, num_batches=6, amgp_warmup=1, amgp_final_dense=1)
    serial = run_experiment(config, ["dense", "amgp"], seeds=2, write=lambda _: None)
    parallel = run_experiment(config, ["dense", "amgp"], seeds=2, jobs=2)
    for method in ("dense", "amgp"):
        assert [r["seed"] for r in parallel["runs"][method]] == [0, 1]
        assert [r["test_auc"] for r in parallel["runs"][method]] == pytest.approx(
            [r["test_auc"] for r in serial["runs"][method]], abs=1e-6)
    with pytest.raises(ValueError, match="jobs"):
        run_experiment(config, ["dense"], seeds=2, jobs=0)
