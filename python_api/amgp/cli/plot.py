"""PNG of training loss and test AUC over steps, sparse phases shaded, for one or more runs."""


def plot_runs(reports, path):
    """reports: {label: report dict from amgp.train}; writes a PNG to `path`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axis, auc_axis) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    for label, report in reports.items():
        loss = report["history"]["loss"]
        auc = report["history"]["auc"]
        if loss:
            loss_axis.plot(*zip(*loss), label=label)
        if auc:
            auc_axis.plot(*zip(*auc), marker="o", label=label)
    shaded = False
    for report in reports.values():
        for phase in report["phases"]:
            if phase["kind"] == "sparse":
                for axis in (loss_axis, auc_axis):
                    axis.axvspan(phase["start"], phase["end"], color="tab:orange", alpha=0.12,
                                 label=None if shaded or axis is auc_axis else "sparse (pruned) phase")
                shaded = True
    loss_axis.set_ylabel("train log loss")
    auc_axis.set_ylabel("test AUC")
    auc_axis.set_xlabel("step")
    loss_axis.legend()
    auc_axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
