"""Statistics of an experiment's runs (amgp.experiment): spreads over seeds, paired differences with
their 95% confidence interval, and the verdict that interval supports."""
import math
import statistics

from scipy import stats


def spread(values):
    """{"mean", "std"} of `values` (sample standard deviation; None for a single value)."""
    values = list(values)
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None}


def paired(values, baseline, higher_is_better=True):
    """The per-seed differences values - baseline: mean, std, the half-width of the 95% confidence
    interval of the mean (Student t; None for one seed) and the verdict it supports (see verdict)."""
    differences = [a - b for a, b in zip(values, baseline)]
    summary = spread(differences)
    n = len(differences)
    summary["ci95"] = None if n < 2 else float(stats.t.ppf(0.975, n - 1)) * summary["std"] / math.sqrt(n)
    summary["per_seed"] = differences
    summary["verdict"] = verdict(summary["mean"], summary["ci95"], higher_is_better)
    return summary


VERDICTS = ("better", "worse", "not distinguishable", "one seed: no verdict")


def verdict(mean, ci95, higher_is_better=True):
    """"better" or "worse" only when the paired 95% confidence interval mean ± ci95 excludes 0; never
    from the mean alone (one seed has no interval, so no verdict)."""
    if ci95 is None:
        return VERDICTS[3]
    if abs(mean) <= ci95:
        return VERDICTS[2]
    return VERDICTS[0] if (mean > 0) == higher_is_better else VERDICTS[1]


def _flop_fraction(report, budget):
    """The run's MLP training FLOPs as a fraction of the full dense model's on the same samples."""
    return report["mlp_flops_computed"] / (report["samples"] * budget["dense_flops_per_sample"])


def summarize(runs, budget):
    """Per method: test metrics, MLP FLOPs, wall time and final density over the seeds; with a dense
    method, the paired differences of test AUC and log loss to it."""
    dense = runs.get("dense")
    summary = {}
    for method, reports in runs.items():
        entry = {key: spread(r[key] for r in reports)
                 for key in ("test_auc", "test_logloss", "test_accuracy", "mlp_flops_computed", "wall_time_s",
                             "final_density")}
        entry["mlp_flop_fraction"] = spread(_flop_fraction(r, budget) for r in reports)
        if dense and method != "dense":
            for key in ("test_auc", "test_logloss"):
                entry[f"{key}_vs_dense"] = paired([r[key] for r in reports], [r[key] for r in dense],
                                                  higher_is_better=key == "test_auc")
        summary[method] = entry
    return summary


def amgp_against(runs):
    """{method: paired test AUC and log loss of AMGP minus that method} for every other method (the
    claim: AMGP ends above the methods that spend its FLOPs); {} without an AMGP run."""
    if "amgp" not in runs:
        return {}
    amgp = runs["amgp"]
    return {method: {key: paired([r[key] for r in amgp], [r[key] for r in reports], higher_is_better=key == "test_auc")
                     for key in ("test_auc", "test_logloss")}
            for method, reports in runs.items() if method != "amgp"}


def summarize_recurring(runs, budget):
    """Per method: newest-data AUC and log loss before and after the recurring stage, the gain, and
    (with dense) the paired difference of the after-AUC to dense's; the stage's FLOPs and time."""
    summary = summarize(runs, budget)
    for method, reports in runs.items():
        entry = summary[method]
        for key in ("test_auc", "test_logloss"):
            before = [r[f"before_{key}"] for r in reports]
            entry[f"before_{key}"] = spread(before)
            entry[f"{key}_gain"] = paired([r[key] for r in reports], before, higher_is_better=key == "test_auc")
    return summary


