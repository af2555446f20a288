"""PNGs of amgp-dlrm runs: loss and test AUC over steps (sparse phases shaded), and for an experiment
test AUC against MLP training FLOPs per method (mean ± std over seeds) and the recurring stage."""


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _shade_sparse_phases(axes, reports):
    """Shade the sparse phases of the first report that has any (labelled once, on the first axis)."""
    for report in reports.values():
        sparse = [phase for phase in report["phases"] if phase["kind"] == "sparse"]
        for i, phase in enumerate(sparse):
            for axis in axes:
                axis.axvspan(phase["start"], phase["end"], color="tab:orange", alpha=0.12,
                             label=f"sparse phase ({report['mode']})" if i == 0 and axis is axes[0] else None)
        if sparse:
            return


def _loss_curves(axis, reports):
    for label, report in reports.items():
        if report["history"]["loss"]:
            axis.plot(*zip(*report["history"]["loss"]), label=label)
    axis.set_ylabel("train log loss")
    axis.set_xlabel("step")


def plot_runs(reports, path):
    """reports: {label: report dict from amgp.train}; writes a PNG to `path`."""
    plt = _pyplot()
    figure, (loss_axis, auc_axis) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    _loss_curves(loss_axis, reports)
    for label, report in reports.items():
        if report["history"]["auc"]:
            auc_axis.plot(*zip(*report["history"]["auc"]), marker="o", label=label)
    _shade_sparse_phases((loss_axis, auc_axis), reports)
    loss_axis.set_xlabel("")
    auc_axis.set_ylabel("test AUC")
    auc_axis.set_xlabel("step")
    loss_axis.legend()
    auc_axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _against_flops(axis, summary, key, ylabel, title):
    """One point per method (its colour: C0, C1, ... in summary order): summary[method][key] (mean ± std)
    against its MLP training FLOPs."""
    for i, (method, entry) in enumerate(summary.items()):
        if key not in entry:
            continue
        x, y = 100 * entry["mlp_flop_fraction"]["mean"], entry[key]["mean"]
        axis.errorbar(x, y, yerr=entry[key]["std"] or 0, xerr=100 * (entry["mlp_flop_fraction"]["std"] or 0),
                      marker="o", capsize=4, linestyle="none", color=f"C{i}", label=method)
        axis.annotate(method, (x, y), textcoords="offset points", xytext=(6, 4))
    axis.set_xlabel("MLP training FLOPs (% of the dense model's)")
    axis.set_ylabel(ylabel)
    axis.set_title(title)


def _recurring(axis, summary):
    methods = list(summary)
    for offset, (key, label) in enumerate((("before_test_auc", "before"), ("test_auc", "after"))):
        means = [summary[m][key]["mean"] for m in methods]
        errors = [summary[m][key]["std"] or 0 for m in methods]
        axis.errorbar([i + 0.15 * (2 * offset - 1) for i in range(len(methods))], means, yerr=errors, marker="o",
                      capsize=4, linestyle="none", label=label)
    axis.set_xticks(range(len(methods)), methods)
    axis.set_ylabel("newest-data test AUC")
    axis.set_title("recurring stage: before and after")
    axis.legend()


def plot_experiment(result, path):
    """result: amgp.experiment.run_experiment's; writes a PNG to `path`: loss curves of the first seed;
    test AUC against MLP training FLOPs, one point per method with error bars over the seeds; with a
    dense method, the paired difference to it (the seeds draw the test data too, so this is where a
    real gap shows); with a recurring stage, the newest-data AUC before and after it."""
    plt = _pyplot()
    summary, seeds = result["summary"], len(result["seeds"])
    panels = [lambda axis: _against_flops(axis, summary, "test_auc", "test AUC (mean ± std over seeds)",
                                          f"offline training, {seeds} seed(s)")]
    if "dense" in summary and len(summary) > 1:
        def paired(axis):
            axis.axhline(0, color=f"C{list(summary).index('dense')}", linestyle="--", label="dense")
            _against_flops(axis, summary, "test_auc_vs_dense", "test AUC − dense, same seed (mean ± std)",
                           "paired difference to dense")
        panels.append(paired)
    if "recurring" in result:
        panels.append(lambda axis: _recurring(axis, result["recurring"]["summary"]))
    rows, columns = (2, 2) if len(panels) == 3 else (1, len(panels) + 1)
    figure, axes = plt.subplots(rows, columns, figsize=(6 * columns, 4.6 * rows), squeeze=False)
    axes = axes.flatten()
    first = {method: runs[0] for method, runs in result["runs"].items()}
    _loss_curves(axes[0], first)
    _shade_sparse_phases((axes[0],), first)
    axes[0].set_yscale("log")  # the first steps' loss would flatten everything after them
    axes[0].set_title(f"training loss, seed {result['seeds'][0]}")
    axes[0].legend()
    for axis, draw in zip(axes[1:], panels):
        draw(axis)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
