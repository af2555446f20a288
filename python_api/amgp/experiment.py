"""The AMGP experiment behind `amgp-dlrm --compare`: dense, AMGP and two baselines that spend the AMGP
run's MLP training FLOPs, on the same data, steps and seeds, each optionally followed by the
recurring-training stage (amgp.recurring); reported per run and summarised over the seeds (mean,
standard deviation, and the paired difference to dense per seed).

Methods: "dense" (no pruning), "amgp" (the --amgp-* schedule), "static" (pruned once after the same
warmup, at the density that spends AMGP's FLOPs, pruned to the end: it ends small) and "narrow" (a
dense model whose hidden widths are scaled to the same FLOPs). The equal budget is computed from the
phase plan and the layer shapes (amgp.flops), before anything trains.
"""
import dataclasses
import functools
import os

from amgp_kernels.checks import check_int

from .dlrm import DLRM
from .flops import flops_per_sample, layer_shapes, mlp_flops_per_sample, narrow_sizes, plan_fraction, static_density
from .data import total_steps
from .engines import make_trainer
from .experiment_stats import VERDICTS, amgp_against, paired, spread, summarize, summarize_recurring, verdict
from .phases import plan_phases
from .recurring import Stages, continue_training
from .workers import in_workers

__all__ = ["DEFAULT_METHODS", "METHODS", "VERDICTS", "compare_report", "comparison", "equal_flop_budget",
           "method_config", "paired", "run_experiment", "spread", "verdict"]

METHODS = ("dense", "amgp", "static", "narrow")
DEFAULT_METHODS = ("dense", "amgp")


def equal_flop_budget(config, num_tables, steps):
    """What the baselines need to spend the MLP training FLOPs of `config`'s AMGP run of `steps` steps
    (every step the same batch size): the static density and the narrow widths, with the fraction of
    the dense MLP training FLOPs each method is predicted to spend."""
    # Only the MLP shapes matter: one-row embedding tables keep this model small.
    model = DLRM([1] * num_tables, config.arch_sparse_feature_size, config.arch_mlp_bot, config.arch_mlp_top,
                 config.arch_interaction_op, config.arch_interaction_itself, block_size=config.block_size)
    shapes = layer_shapes(model, config.amgp_layers)
    amgp_phases = plan_phases(steps, config.amgp_warmup, config.amgp_final_dense, config.amgp_dense_steps,
                              config.amgp_cycles)
    fraction = plan_fraction(shapes, amgp_phases, config.amgp_density)
    static_phases = plan_phases(steps, config.amgp_warmup, 0, 0, 1, end_full_size=False)
    density = static_density(shapes, static_phases, fraction)
    (bottom, top), scale = narrow_sizes([model.bot_l.sizes, model.top_l.sizes], fraction)
    dense = flops_per_sample(shapes)
    return {
        "dense_flops_per_sample": dense,
        "amgp_flop_fraction": fraction,
        "static_density": density,
        "narrow_width_scale": scale,
        "narrow_rounding": "each hidden width scaled by narrow_width_scale, rounded to the nearest channel",
        "narrow_arch_mlp_bot": bottom,
        "narrow_arch_mlp_top": top[1:],  # without the input width, which the interaction computes
        "predicted_flop_fraction": {
            "dense": 1.0, "amgp": fraction, "static": plan_fraction(shapes, static_phases, density),
            "narrow": (mlp_flops_per_sample(bottom) + mlp_flops_per_sample(top)) / dense},
    }


def method_config(config, method, budget):
    """`config` turned into one method's run (see the module docstring)."""
    if method == "dense":
        return dataclasses.replace(config, amgp=False, static_prune=False)
    if method == "amgp":
        return dataclasses.replace(config, amgp=True, static_prune=False)
    if method == "static":
        return dataclasses.replace(config, static_prune=True, amgp_density=budget["static_density"])
    if method == "narrow":
        return dataclasses.replace(config, amgp=False, static_prune=False, arch_mlp_bot=budget["narrow_arch_mlp_bot"],
                                   arch_mlp_top=budget["narrow_arch_mlp_top"])
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def run_path(path, method, seed):
    """Where the run of `method` with `seed` is saved when the experiment is asked to save to `path`."""
    if path is None:
        return None
    stem, extension = os.path.splitext(path)
    return f"{stem}.{method}.seed{seed}{extension}"


def run_experiment(config, methods=DEFAULT_METHODS, seeds=1, recurring=None, write=print, jobs=1):
    """Train every method in `methods` with seeds config.seed, config.seed + 1, ... (`seeds` of them),
    then (with a RecurringConfig) continue each final model on the next day. jobs > 1 runs that many
    seeds at once in spawned worker processes (each with its share of the CPU threads; the data, steps
    and seeds are the same; a script that calls this needs the `if __name__ == "__main__":` guard).
    Returns {"methods", "seeds", "budget", "runs": {method: [report per seed]}, "summary": {method: ...},
    "amgp_against": {method: paired difference}} and, with recurring, "recurring": {"settings", "runs",
    "summary", "amgp_against"}."""
    methods = list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown or len(set(methods)) != len(methods):
        raise ValueError(f"methods must be distinct names from {METHODS}, got {methods}")
    check_int(seeds, "seeds", minimum=1)
    check_int(jobs, "jobs", minimum=1)
    seed_list = [config.seed + i for i in range(seeds)]
    stages = Stages(config, recurring)
    first = stages.offline(seed_list[0])
    budget = equal_flop_budget(config, len(first.table_sizes), total_steps(config, first))
    if jobs == 1 or seeds == 1:
        per_seed = [_run_seed(config, methods, budget, stages, recurring, seed, write,
                              data=first if seed == seed_list[0] else None) for seed in seed_list]
    else:  # no progress bars from several processes at once: each run's "-- method, seed" line is printed
        quiet = dataclasses.replace(config, progress=False)
        per_seed = in_workers(functools.partial(_run_seed, quiet, methods, budget, stages, recurring), seed_list,
                              min(jobs, seeds))
    runs = {method: [offline[method] for offline, _ in per_seed] for method in methods}
    result = {"methods": methods, "seeds": seed_list, "data_generation": config.data_generation, "budget": budget,
              "runs": runs, "summary": summarize(runs, budget), "amgp_against": amgp_against(runs)}
    if recurring:
        later = {method: [next_day[method] for _, next_day in per_seed] for method in methods}
        result["recurring"] = {"settings": dataclasses.asdict(recurring), "runs": later,
                               "summary": summarize_recurring(later, budget), "amgp_against": amgp_against(later)}
    return result


def _say(line):
    print(line, flush=True)  # (from a worker process, whose output may be a pipe)


def _run_seed(config, methods, budget, stages, recurring, seed, write=_say, data=None):
    """({method: offline report}, {method: recurring-stage report}) of one seed (data: its offline data, when
    already built)."""
    data = stages.offline(seed) if data is None else data
    next_day = stages.next_day(seed) if recurring else None
    offline, later = {}, {}
    for method in methods:
        run_config = dataclasses.replace(method_config(config, method, budget), seed=seed,
                                         save_model=run_path(config.save_model, method, seed))
        write(f"-- {method}, seed {seed}")
        trainer = make_trainer(run_config, data=data, label=f"{method} seed {seed}")
        offline[method] = {**trainer.run(), "method": method, "seed": seed}
        if recurring:
            optimizer_state = trainer.optimizer.state_dict() if recurring.optimizer == "continue" else None
            report = continue_training(dataclasses.replace(run_config, save_model=None), trainer.model.state_dict(),
                                       next_day, recurring.steps, label=f"{method} seed {seed}, next day",
                                       optimizer_state=optimizer_state)
            later[method] = {**report, "method": method, "seed": seed}
        del trainer
    return offline, later


def comparison(summary):
    """AMGP against dense: the paired AUC difference and its verdict, and the targets: MLP FLOP saving
    >= 40%, AUC not more than 0.002 below dense (with several seeds: the whole 95% CI), wall time lower
    by at least half the FLOP saving."""
    amgp, dense = summary["amgp"], summary["dense"]
    difference = amgp["test_auc_vs_dense"]
    saving = 1 - amgp["mlp_flop_fraction"]["mean"]
    dense_wall = dense["wall_time_s"]["mean"]
    time_cut = 1 - amgp["wall_time_s"]["mean"] / dense_wall if dense_wall > 0 else float("nan")
    lowest = difference["mean"] - (difference["ci95"] or 0.0)
    return {"auc_difference": difference["mean"], "auc_difference_std": difference["std"],
            "auc_difference_ci95": difference["ci95"], "auc_verdict": difference["verdict"],
            "mlp_flops_saving": saving, "wall_time_reduction": time_cut,
            "targets_met": {"flops_saving_at_least_40pct": saving >= 0.40,
                            "auc_within_0.002": lowest >= -0.002,
                            "time_reduction_at_least_half_flops_saving": time_cut >= saving / 2}}


def compare_report(result):
    """The report --report-json writes: the first seed's AMGP run at the top level, its dense run under
    "dense_baseline", the targets under "comparison" (as before there were several methods and seeds),
    and everything under "experiment"."""
    runs = result["runs"]
    report = dict(runs["amgp"][0]) if "amgp" in runs else {}
    if "dense" in runs:
        report["dense_baseline"] = runs["dense"][0]
    if "amgp" in runs and "dense" in runs:
        report["comparison"] = comparison(result["summary"])
    report["experiment"] = result
    return report
