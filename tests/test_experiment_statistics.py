"""An experiment's statistics and report from hand-made run reports (no training): per-method spreads, paired
differences to dense and to AMGP with their 95% intervals and verdicts, the targets in "comparison", and the
--report-json layout (amgp.experiment_stats, amgp.experiment.comparison / compare_report)."""
import math

import pytest

from amgp.experiment import compare_report, comparison
from amgp.experiment_stats import amgp_against, paired, spread, summarize, summarize_recurring, verdict

T_975_ONE_DEGREE = 12.706204736174694  # Student t, 97.5% quantile, 1 degree of freedom (two seeds)
BUDGET = {"dense_flops_per_sample": 100.0}


def report(auc, logloss, flops=50.0, samples=2, wall=1.0, density=1.0, accuracy=0.7, **extra):
    return {"test_auc": auc, "test_logloss": logloss, "test_accuracy": accuracy, "mlp_flops_computed": flops,
            "samples": samples, "wall_time_s": wall, "final_density": density, **extra}


RUNS = {"dense": [report(0.70, 0.50, flops=200.0, wall=4.0), report(0.72, 0.48, flops=200.0, wall=2.0)],
        "amgp": [report(0.71, 0.45, flops=120.0, wall=3.0), report(0.75, 0.46, flops=100.0, wall=1.0, density=0.5)],
        "static": [report(0.69, 0.52, flops=80.0), report(0.70, 0.51, flops=80.0)]}


def test_spread_is_mean_and_sample_standard_deviation():
    assert spread([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0}
    assert spread(iter([5.0])) == {"mean": 5.0, "std": None}


def test_paired_difference_with_its_interval_over_two_seeds():
    difference = paired([0.8, 1.0], [0.5, 0.5])
    assert difference["per_seed"] == pytest.approx([0.3, 0.5])
    assert (difference["mean"], difference["std"]) == pytest.approx((0.4, math.sqrt(0.02)))
    assert difference["ci95"] == pytest.approx(T_975_ONE_DEGREE * math.sqrt(0.02) / math.sqrt(2))
    assert difference["verdict"] == "not distinguishable"
    assert paired([1.0], [0.5]) == {"mean": 0.5, "std": None, "ci95": None, "per_seed": [0.5],
                                    "verdict": "one seed: no verdict"}


def test_a_verdict_needs_the_whole_interval_on_one_side_of_zero():
    assert verdict(0.5, 0.5) == verdict(-0.5, 0.5) == "not distinguishable"  # the interval touches 0
    assert verdict(0.5, 0.4) == "better" and verdict(-0.5, 0.4) == "worse"
    assert verdict(0.5, 0.4, higher_is_better=False) == "worse"
    assert verdict(-0.5, 0.4, higher_is_better=False) == "better"
    assert verdict(0.5, None) == "one seed: no verdict"


def test_summary_per_method_with_the_paired_differences_to_dense():
    summary = summarize(RUNS, BUDGET)
    assert set(summary) == {"dense", "amgp", "static"}
    amgp = summary["amgp"]
    assert set(amgp) == {"test_auc", "test_logloss", "test_accuracy", "mlp_flops_computed", "wall_time_s",
                         "final_density", "mlp_flop_fraction", "test_auc_vs_dense", "test_logloss_vs_dense"}
    assert amgp["test_auc"]["mean"] == pytest.approx(0.73) and amgp["final_density"] == spread([1.0, 0.5])
    assert amgp["wall_time_s"] == spread([3.0, 1.0]) and amgp["mlp_flops_computed"] == spread([120.0, 100.0])
    assert amgp["test_accuracy"] == {"mean": 0.7, "std": 0.0}
    # FLOPs / (samples * dense FLOPs per sample): 120 / 200 and 100 / 200
    assert amgp["mlp_flop_fraction"] == spread([0.6, 0.5])
    assert amgp["test_auc_vs_dense"]["per_seed"] == pytest.approx([0.01, 0.03])
    assert amgp["test_logloss_vs_dense"]["per_seed"] == pytest.approx([-0.05, -0.02])
    # lower log loss is better: both seeds lower, but two seeds' interval still crosses 0
    assert paired([0.45, 0.46], [0.50, 0.48], higher_is_better=False)["verdict"] == \
        amgp["test_logloss_vs_dense"]["verdict"] == "not distinguishable"
    assert set(summary["dense"]) == set(amgp) - {"test_auc_vs_dense", "test_logloss_vs_dense"}
    without_dense = summarize({"amgp": RUNS["amgp"]}, BUDGET)
    assert "test_auc_vs_dense" not in without_dense["amgp"]


def test_logloss_differences_are_judged_lower_is_better():
    runs = {"dense": [report(0.7, 0.50), report(0.7, 0.50), report(0.7, 0.50)],
            "amgp": [report(0.7, 0.40), report(0.7, 0.41), report(0.7, 0.39)]}
    assert summarize(runs, BUDGET)["amgp"]["test_logloss_vs_dense"]["verdict"] == "better"
    assert summarize(runs, BUDGET)["amgp"]["test_auc_vs_dense"]["verdict"] == "not distinguishable"  # std 0, mean 0
    assert amgp_against(runs)["dense"]["test_logloss"]["verdict"] == "better"
    higher = {"dense": runs["dense"], "amgp": [report(0.8 + d, 0.5) for d in (0.01, 0.02, 0.015)]}
    assert summarize(higher, BUDGET)["amgp"]["test_auc_vs_dense"]["verdict"] == "better"
    assert amgp_against(higher)["dense"]["test_auc"]["verdict"] == "better"
    assert paired([0.81, 0.82, 0.815], [0.80, 0.80, 0.80])["verdict"] == "better"  # higher is better by default


def test_amgp_is_paired_against_every_other_method():
    against = amgp_against(RUNS)
    assert set(against) == {"dense", "static"}
    assert set(against["static"]) == {"test_auc", "test_logloss"}
    assert against["static"]["test_auc"]["per_seed"] == pytest.approx([0.02, 0.05])
    assert against["dense"]["test_logloss"]["per_seed"] == pytest.approx([-0.05, -0.02])
    assert amgp_against({"dense": RUNS["dense"]}) == {}


def test_the_recurring_summary_adds_before_and_gain():
    runs = {"dense": [report(0.72, 0.48, before_test_auc=0.70, before_test_logloss=0.50),
                      report(0.75, 0.45, before_test_auc=0.71, before_test_logloss=0.49)],
            "amgp": [report(0.74, 0.47, before_test_auc=0.71, before_test_logloss=0.49),
                     report(0.76, 0.44, before_test_auc=0.70, before_test_logloss=0.48)]}
    summary = summarize_recurring(runs, BUDGET)
    dense = summary["dense"]
    assert dense["before_test_auc"] == spread([0.70, 0.71]) and dense["before_test_logloss"] == spread([0.50, 0.49])
    assert dense["test_auc_gain"]["per_seed"] == pytest.approx([0.02, 0.04])
    assert dense["test_logloss_gain"]["per_seed"] == pytest.approx([-0.02, -0.04])
    assert summary["amgp"]["test_auc_vs_dense"]["per_seed"] == pytest.approx([0.02, 0.01])
    # the loss fell on both seeds by more than its spread: lower is better
    assert summary["amgp"]["test_logloss_gain"]["verdict"] == paired(
        [0.47, 0.44], [0.49, 0.48], higher_is_better=False)["verdict"]
    three = {"dense": [report(0.7 + d, 0.5 - d, before_test_auc=0.7, before_test_logloss=0.5) for d in (0.1, 0.11, 0.12)]}
    assert summarize_recurring(three, BUDGET)["dense"]["test_logloss_gain"]["verdict"] == "better"
    assert summarize_recurring(three, BUDGET)["dense"]["test_auc_gain"]["verdict"] == "better"


def summary_for(fraction, amgp_wall, dense_wall, auc_mean, auc_ci95):
    return {"amgp": {"test_auc_vs_dense": {"mean": auc_mean, "std": 0.001, "ci95": auc_ci95, "verdict": "v"},
                     "mlp_flop_fraction": {"mean": fraction}, "wall_time_s": {"mean": amgp_wall}},
            "dense": {"wall_time_s": {"mean": dense_wall}}}


def test_comparison_reports_the_targets_met_at_their_edges():
    edge = comparison(summary_for(0.6, 3.0, 5.0, -0.001, 0.001))  # 40% saving, time cut 40%, AUC low end -0.002
    assert edge["mlp_flops_saving"] == pytest.approx(0.4) and edge["wall_time_reduction"] == pytest.approx(0.4)
    assert (edge["auc_difference"], edge["auc_difference_std"], edge["auc_difference_ci95"], edge["auc_verdict"]) == (
        -0.001, 0.001, 0.001, "v")
    assert edge["targets_met"] == {"flops_saving_at_least_40pct": True, "auc_within_0.002": True,
                                   "time_reduction_at_least_half_flops_saving": True}
    half = comparison(summary_for(0.5, 3.0, 4.0, 0.0, None))  # time cut 25% = half of the 50% saving
    assert half["targets_met"]["time_reduction_at_least_half_flops_saving"]
    short = comparison(summary_for(0.5, 0.31, 0.4, 0.0, None))  # time cut 22.5% < 25%, on runs under a second
    assert short["wall_time_reduction"] == pytest.approx(0.225)
    assert not short["targets_met"]["time_reduction_at_least_half_flops_saving"]
    below = comparison(summary_for(0.61, 4.9, 5.0, -0.0015, 0.001))
    assert below["targets_met"] == {"flops_saving_at_least_40pct": False, "auc_within_0.002": False,
                                    "time_reduction_at_least_half_flops_saving": False}
    # one seed (no interval): the mean alone is held to the AUC target
    assert comparison(summary_for(0.5, 1.0, 2.0, -0.0019, None))["targets_met"]["auc_within_0.002"]
    assert not comparison(summary_for(0.5, 1.0, 2.0, -0.0021, None))["targets_met"]["auc_within_0.002"]


def test_comparison_with_no_dense_wall_time_has_no_time_cut():
    result = comparison(summary_for(0.5, 1.0, 0.0, 0.0, None))
    assert math.isnan(result["wall_time_reduction"])
    assert not result["targets_met"]["time_reduction_at_least_half_flops_saving"]


def test_report_json_layout():
    result = {"runs": RUNS, "summary": summarize(RUNS, BUDGET)}
    report = compare_report(result)
    assert report["test_auc"] == 0.71 and report["dense_baseline"] is RUNS["dense"][0]
    assert report["comparison"] == comparison(result["summary"]) and report["experiment"] is result
    assert "dense_baseline" not in RUNS["amgp"][0]  # the run's own report is left as it was
    no_dense = compare_report({"runs": {"amgp": RUNS["amgp"]}})
    assert no_dense["test_auc"] == 0.71 and "dense_baseline" not in no_dense and "comparison" not in no_dense
    no_amgp = compare_report({"runs": {"dense": RUNS["dense"]}})
    assert set(no_amgp) == {"dense_baseline", "experiment"}
