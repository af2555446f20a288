"""PNG of speedup over dense vs density: one panel per (shape, case, pass), one line per method,
with the ideal 1/d (out only) or 1/d^2 (in+out) curve and the compacted-dense limit."""
import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402

from . import metrics  # noqa: E402

CASE_TITLES = {"out_only": "out only", "in_out": "in+out"}
STYLES = {"compacted": {"color": "black", "linewidth": 2.0, "label": "compacted limit"},
          "gather_mm_scatter": {"color": "grey", "linestyle": "--", "label": "gather+mm+scatter"}}


def _panels(rows):
    """(shape, case, pass) keys in first-seen order, skipping the dense reference rows."""
    keys = []
    for row in rows:
        key = (row["shape"], row["case"], row["pass"])
        if row["case"] and key not in keys:
            keys.append(key)
    return keys


def plot_speedups(rows, path, title=None):
    """Write the figure to `path` (PNG); returns the number of panels drawn."""
    panels = _panels(rows)
    if not panels:
        raise ValueError("no sparse rows to plot (the run had no case/density measurements)")
    shapes = list(dict.fromkeys(key[0] for key in panels))
    columns = list(dict.fromkeys(key[1:] for key in panels))
    fig, axes = plt.subplots(len(shapes), len(columns), figsize=(4.2 * len(columns), 3.4 * len(shapes)),
                             squeeze=False)
    for (shape, case, pass_), ax in ((k, axes[shapes.index(k[0])][columns.index(k[1:])]) for k in panels):
        _draw_panel(ax, [r for r in rows if (r["shape"], r["case"], r["pass"]) == (shape, case, pass_)], case)
        ax.set_title(f"{shape}  {CASE_TITLES.get(case, case)}  {pass_}", fontsize=9)
    for ax in axes.flat:
        if not ax.has_data():
            ax.set_visible(False)
    legend = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend), loc="upper center", ncol=min(6, len(legend)), fontsize=8,
               frameon=False)
    if title:
        fig.suptitle(title, y=0.005, va="bottom", fontsize=8)
    fig.tight_layout(rect=(0, 0.02, 1, 0.93))
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return len(panels)


def _draw_panel(ax, rows, case):
    densities = sorted({r["density"] for r in rows})
    fine = [densities[0] + (densities[-1] - densities[0]) * i / 50 for i in range(51)]
    ideal = {"color": "tab:green", "linestyle": ":", "label": "ideal 1/d"} if case == "out_only" else \
        {"color": "tab:olive", "linestyle": "-.", "label": "ideal 1/d²"}
    ax.plot(fine, [metrics.ideal_speedup(case, d) for d in fine], **ideal)
    ax.axhline(1.0, color="lightgrey", linewidth=1, label="dense nn.Linear")
    # dense is the 1.0 line drawn above; every other method gets its own curve.
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "dense"]
    for method in methods:
        points = sorted((r["density"], r["speedup_vs_dense"]) for r in rows
                        if r["method"] == method and r.get("speedup_vs_dense") is not None)
        if points:
            style = STYLES.get(method, {"marker": "o", "label": f"amgp {method}"})
            ax.plot([p[0] for p in points], [p[1] for p in points], **style)
    ax.set_xlabel("density d (active blocks per side)", fontsize=8)
    ax.set_ylabel("speedup over dense", fontsize=8)
    ax.invert_xaxis()
    ax.set_yscale("log", base=2)  # ratios: 0.5x and 2x equally far from 1x
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)
