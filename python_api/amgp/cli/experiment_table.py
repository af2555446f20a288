"""Markdown tables of an experiment's summary (amgp.experiment.run_experiment): one row per method."""


def _number(value, digits):
    return "n/a" if value is None else f"{value:.{digits}f}"


def _mean_std(entry, digits=5):
    if entry["std"] is None:
        return _number(entry["mean"], digits)
    return f"{_number(entry['mean'], digits)} ± {_number(entry['std'], digits)}"


def _difference(entry, digits=5):
    """Paired difference: mean ± std (95% CI of the mean ± half-width), and the verdict of that CI."""
    if entry is None:
        return "—"
    text = f"{entry['mean']:+.{digits}f}"
    if entry["std"] is not None:
        text += f" ± {entry['std']:.{digits}f} (CI ±{entry['ci95']:.{digits}f}, {entry['verdict']})"
    return text


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _flops(entry):
    return f"{entry['mlp_flops_computed']['mean'] / 1e9:.1f} ({entry['mlp_flop_fraction']['mean']:.1%})"


def format_summary(result):
    """The offline table: test metrics (mean ± std over the seeds), paired differences to dense,
    MLP training FLOPs (and their fraction of the full dense model's), wall time, final density."""
    rows = []
    for method, entry in result["summary"].items():
        rows.append([method, _flops(entry), _mean_std(entry["test_auc"]),
                     _difference(entry.get("test_auc_vs_dense")), _mean_std(entry["test_logloss"]),
                     _difference(entry.get("test_logloss_vs_dense")), _mean_std(entry["wall_time_s"], 1),
                     _number(entry["final_density"]["mean"], 3)])
    seeds = result["seeds"]
    header = ["method", "MLP train GFLOP (of dense)", "test AUC", "AUC − dense (paired)", "test log loss",
              "log loss − dense (paired)", "train wall s", "final density"]
    return f"{len(seeds)} seed(s): {', '.join(map(str, seeds))}; mean ± std over seeds\n\n" + _table(header, rows)


def format_recurring(result):
    """The recurring-stage table: AUC on the newest data before and after, the gain, the paired
    difference of the after-AUC to dense, the stage's FLOPs and the model's density."""
    rows = []
    for method, entry in result["recurring"]["summary"].items():
        rows.append([method, _flops(entry), _mean_std(entry["before_test_auc"]), _mean_std(entry["test_auc"]),
                     _difference(entry["test_auc_gain"]), _difference(entry.get("test_auc_vs_dense")),
                     _mean_std(entry["test_logloss"]), _number(entry["final_density"]["mean"], 3)])
    settings = result["recurring"]["settings"]
    next_day = (f"the latest {settings['fraction']:.0%} of the file" if result["data_generation"] == "dataset"
                else f"the teacher drifted by {settings['drift']}")
    header = ["method", "recurring GFLOP (of dense)", "newest AUC before", "newest AUC after", "gain (paired)",
              "after − dense (paired)", "log loss after", "model density"]
    return (f"recurring stage: {settings['steps']} steps on the next day ({next_day})\n\n" + _table(header, rows))


def format_amgp_against(against, stage):
    """AMGP against every other method, paired over the seeds: the difference, its CI and the verdict."""
    if not against:
        return ""
    rows = [[f"amgp − {method}", _difference(entry["test_auc"]), _difference(entry["test_logloss"])]
            for method, entry in against.items()]
    return f"AMGP against each method, {stage} (paired over seeds; verdict from the 95% CI)\n\n" + _table(
        ["", "test AUC", "test log loss"], rows)


def format_budget(budget, methods):
    """One line per baseline: how it was sized to AMGP's MLP training FLOPs."""
    predicted = budget["predicted_flop_fraction"]
    lines = [f"equal-FLOP budget: AMGP spends {budget['amgp_flop_fraction']:.1%} of the dense MLP training FLOPs"]
    if "static" in methods:
        lines.append(f"  static: density {budget['static_density']:.3f} of each pruned layer's output blocks after "
                     f"the warmup (predicted {predicted['static']:.1%}, after rounding to whole blocks)")
    if "narrow" in methods:
        bottom = "-".join(map(str, budget["narrow_arch_mlp_bot"]))
        top = "-".join(map(str, budget["narrow_arch_mlp_top"]))
        lines.append(f"  narrow: --arch-mlp-bot {bottom} --arch-mlp-top {top} (hidden widths x "
                     f"{budget['narrow_width_scale']:.3f}, rounded to the nearest channel; predicted "
                     f"{predicted['narrow']:.1%})")
    return "\n".join(lines)
