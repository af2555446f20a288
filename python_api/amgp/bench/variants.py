"""AMGP's method variants measured with the experiment's harness (amgp.experiment), paired over seeds:

    python -m amgp.bench.variants --seeds 10 --jobs 2 --variants default,restore --methods amgp,static,narrow \\
        --recurring --json variants.json

Each variant is a set of `--amgp-*` settings (VARIANTS); the task is the capacity task (amgp.data.tasks)
unless --task says otherwise. Dense does not depend on the AMGP settings, so it trains once and every
variant's AMGP run is paired with it; static and narrow are sized to each variant's own FLOPs, so they train
per variant. One markdown row per variant: FLOPs, AMGP − dense offline, and (with --recurring) AMGP − static
and AMGP − narrow after the recurring stage, each with its 95% CI and verdict.
"""
import argparse
import dataclasses
import json

from ..config import TrainConfig
from ..data.tasks import CAPACITY_SETTINGS, TASKS
from ..experiment import run_experiment
from ..experiment_stats import paired
from ..recurring import RecurringConfig

EVERY_LAYER = {"amgp_layers": None}  # the default before the top MLP alone was (bench/RESULTS.md)
TOP_ONLY = {"amgp_layers": ["top_l"]}
VARIANTS = {
    "default": {},
    "every_layer": EVERY_LAYER,
    "restore": {**EVERY_LAYER, "amgp_growth": "restore"},
    "taylor": {**EVERY_LAYER, "amgp_criterion": "taylor"},
    "taylor_restore": {**EVERY_LAYER, "amgp_criterion": "taylor", "amgp_growth": "restore"},
    "one_cycle": {**EVERY_LAYER, "amgp_cycles": 1},
    "four_cycles_restore": {**EVERY_LAYER, "amgp_cycles": 4, "amgp_growth": "restore"},
    "short_final": {**EVERY_LAYER, "amgp_final_dense": 0.1},
    "density_0.4": {**EVERY_LAYER, "amgp_density": 0.4},
    "restore_d0.4_final0.1": {**EVERY_LAYER, "amgp_growth": "restore", "amgp_density": 0.4, "amgp_final_dense": 0.1},
    "d0.25_final0.4_one_cycle": {**EVERY_LAYER, "amgp_density": 0.25, "amgp_final_dense": 0.4, "amgp_cycles": 1},
    "d0.25_final0.4_one_cycle_restore": {**EVERY_LAYER, "amgp_density": 0.25, "amgp_final_dense": 0.4,
                                         "amgp_cycles": 1, "amgp_growth": "restore"},
    "d0.25_final0.4": {**EVERY_LAYER, "amgp_density": 0.25, "amgp_final_dense": 0.4},
    "d0.3_final0.3_one_cycle": {**EVERY_LAYER, "amgp_density": 0.3, "amgp_final_dense": 0.3, "amgp_cycles": 1},
    "top_only": TOP_ONLY,
    "top_only_short_final": {**TOP_ONLY, "amgp_final_dense": 0.1},
    "top_only_d0.4": {**TOP_ONLY, "amgp_density": 0.4},
    "top_only_d0.35_final0.1": {**TOP_ONLY, "amgp_density": 0.35, "amgp_final_dense": 0.1},
}


def base_config(task):
    sizes = CAPACITY_SETTINGS if task == "capacity" else {}
    return TrainConfig(synthetic_task=task, progress=False, print_freq=10**9, **sizes)


def _pairs(stage, dense_runs, methods):
    """AMGP − dense (offline) and AMGP − each other method, test AUC, paired over the seeds."""
    auc = lambda runs: [r["test_auc"] for r in runs]  # noqa: E731
    rows = {"dense": paired(auc(stage["runs"]["amgp"]), auc(dense_runs))}
    rows.update({m: paired(auc(stage["runs"]["amgp"]), auc(stage["runs"][m])) for m in methods if m != "amgp"})
    return rows


def measure(config, variants, methods, seeds, jobs=1, recurring=False, write=print):
    """{variant: {"settings", "flop_fraction", "offline": {method: paired AUC difference}, "recurring": {...}}}
    for `config`'s data and model; `write` gets each variant's markdown row as it is measured."""
    settings = RecurringConfig() if recurring else None
    dense = run_experiment(config, ["dense"], seeds, settings, jobs=jobs)
    results = {}
    for name in variants:
        result = run_experiment(dataclasses.replace(config, **VARIANTS[name]), methods, seeds, settings, jobs=jobs)
        entry = {"settings": VARIANTS[name], "flop_fraction": result["summary"]["amgp"]["mlp_flop_fraction"]["mean"],
                 "offline": _pairs(result, dense["runs"]["dense"], methods)}
        if recurring:
            entry["recurring"] = _pairs(result["recurring"], dense["recurring"]["runs"]["dense"], methods)
        results[name] = entry
        write(row(name, entry))
    return results


def _cell(difference):
    return f"{difference['mean']:+.4f} ± {difference['ci95']:.4f} ({difference['verdict']})"


def row(name, entry):
    cells = [name, f"{1 - entry['flop_fraction']:.1%}"] + [_cell(d) for d in entry["offline"].values()]
    cells += [_cell(d) for d in entry.get("recurring", {}).values()]
    return "| " + " | ".join(cells) + " |"


def header(methods, recurring):
    others = [m for m in methods if m != "amgp"]
    names = ["variant", "MLP FLOPs saved"] + [f"AMGP − {m}" for m in ["dense", *others]]
    if recurring:
        names += [f"after recurring: AMGP − {m}" for m in ["dense", *others]]
    return "| " + " | ".join(names) + " |\n|" + "---|" * len(names)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m amgp.bench.variants", description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="default", help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--methods", default="amgp", help="amgp and any of static, narrow (default %(default)s)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--task", choices=TASKS, default="capacity")
    parser.add_argument("--recurring", action="store_true")
    parser.add_argument("--json", help="write every paired difference here")
    args = parser.parse_args(argv)
    variants, methods = args.variants.split(","), args.methods.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {unknown}; known: {', '.join(VARIANTS)}")
    if "amgp" not in methods or "dense" in methods:
        parser.error("--methods must list amgp, and not dense (dense trains once for every variant)")
    print(header(methods, args.recurring), flush=True)
    results = measure(base_config(args.task), variants, methods, args.seeds, args.jobs, args.recurring,
                      write=lambda line: print(line, flush=True))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
