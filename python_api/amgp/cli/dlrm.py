"""`amgp-dlrm`: train a DLRM with alternate model growth and pruning (or densely, or both).

Flags follow facebookresearch/dlrm's dlrm_s_pytorch.py where one exists; AMGP flags start with
--amgp-. This module parses and dispatches: one run (amgp.train), an experiment over methods and
seeds (amgp.experiment), or a warm start on the next day (amgp.recurring). Examples:
    amgp-dlrm --compare                       # dense baseline and AMGP side by side, built-in data
    amgp-dlrm --compare dense,amgp,static,narrow --seeds 3 --recurring
    amgp-dlrm --data-generation dataset --raw-data-file train.txt --max-ind-range 100000
    amgp-dlrm --load-model run.pt --recurring --recurring-steps 100
"""
import argparse
import dataclasses
import json
import sys
import warnings

import torch

import amgp_kernels

from .. import distributed, experiment, recurring
from ..config import ENGINES, OPTIMIZERS, TrainConfig
from ..data import CAPACITY_SETTINGS, DATA_ORDERS, TASKS
from ..engines import train as train_one_run
from ..data.criteo import CriteoFormatError
from ..checkpoint import CheckpointError
from ..interrupt import TrainingInterrupted
from ..pruning import GROWTH_INITS
from ..pruner import CRITERIA
from .argtypes import (checked, dash_list, density, fraction, non_negative_float, non_negative_int,
                       positive_float, positive_int)
from .experiment_table import format_amgp_against, format_budget, format_recurring, format_summary
from .flag_checks import FROM_CHECKPOINT, first_problem
from .header import flag_value, run_header
from .outcome import interrupted_line, skipped_line, stopped_line
from .parser import Parser, flag_names, given_dests, in_flag_spelling

DEFAULTS = TrainConfig()
RECURRING = recurring.RecurringConfig()
# Flags of the command, not of one training run.
CLI_ONLY = ("compare", "seeds", "jobs", "recurring", "recurring_steps", "recurring_drift", "recurring_fraction",
            "recurring_optimizer", "report_json", "plot", "num_threads")


def _int_or_float(text):
    """'40' -> 40 (steps); '0.1' -> 0.1 (a fraction of the training)."""
    return float(text) if any(c in text for c in ".eE") else int(text)


def _method_list(text):
    """'dense,amgp,static' -> ['dense', 'amgp', 'static'] (distinct names from experiment.METHODS)."""
    methods = [m for m in text.split(",") if m]
    if not methods or any(m not in experiment.METHODS for m in methods) or len(set(methods)) != len(methods):
        raise argparse.ArgumentTypeError(f"must be distinct comma-separated methods from "
                                         f"{','.join(experiment.METHODS)}, got {text!r}")
    return methods


_steps_or_fraction = checked(_int_or_float, lambda v: v >= 0 and (isinstance(v, int) or v <= 1),
                              "a step count (e.g. 40) or a fraction in [0, 1] (e.g. 0.1)")


def build_parser():
    d = DEFAULTS
    parser = Parser(
        prog="amgp-dlrm", usage="%(prog)s [options]",
        description="Train a DLRM with alternate model growth and pruning (AMGP): sparse phases prune MLP "
                    "channel blocks (GEMMs over active blocks only), dense phases grow them back, and training "
                    "ends with a full-size model.")
    model = parser.add_argument_group("model (facebookresearch/dlrm names)")
    model.add_argument("--arch-sparse-feature-size", type=positive_int, default=d.arch_sparse_feature_size,
                       help="embedding dimension (default %(default)s)")
    model.add_argument("--arch-embedding-size", type=dash_list, default=None,
                       help="rows per embedding table of the synthetic data, e.g. 4-3-2 (default: 26 built-in "
                            "sizes; a Criteo file has 26 tables of --max-ind-range rows)")
    model.add_argument("--arch-mlp-bot", type=dash_list, default=d.arch_mlp_bot,
                       help="bottom MLP widths, dense-feature count first (a Criteo file has 13)")
    model.add_argument("--arch-mlp-top", type=dash_list, default=d.arch_mlp_top,
                       help="top MLP widths after its computed input width, ending in 1")
    model.add_argument("--arch-interaction-op", choices=("dot", "cat"), default=d.arch_interaction_op,
                       help="dot: pairwise dot products of the features; cat: concatenation")
    model.add_argument("--arch-interaction-itself", action="store_true", help="dot: include self products")
    data = parser.add_argument_group("data")
    data.add_argument("--data-generation", choices=("synthetic", "dataset"), default=d.data_generation,
                      help="synthetic: built-in learnable CTR data; dataset: a Criteo-format --raw-data-file")
    data.add_argument("--synthetic-task", choices=TASKS, default=d.synthetic_task,
                      help="the built-in data's teacher: default, or capacity (a task where MLP capacity pays; it "
                           "brings its own model and data sizes for every flag not given: "
                           + ", ".join(f"--{k.replace('_', '-')} {flag_value(v)}" for k, v in CAPACITY_SETTINGS.items())
                           + "; default %(default)s)")
    data.add_argument("--raw-data-file",
                      help="Criteo Kaggle text file (label, 13 integer, 26 hex fields, tabs); needs --data-generation "
                           "dataset")
    data.add_argument("--max-ind-range", type=positive_int, default=d.max_ind_range,
                      help="rows per embedding table for hashed Criteo categoricals")
    data.add_argument("--skip-malformed-lines", dest="skip_malformed", action="store_true",
                      help="count and skip malformed Criteo lines instead of stopping with an error (the count is "
                           "printed and in the JSON as lines_skipped)")
    data.add_argument("--test-fraction", type=fraction, default=d.test_fraction,
                      help="Criteo: last fraction of the lines used as test split (default %(default)s)")
    data.add_argument("--data-randomize", choices=DATA_ORDERS, default=d.data_randomize,
                      help="Criteo training lines: total = a fresh random order each epoch, drawn from --seed; "
                           "none = file order (the test split is the latest lines either way)")
    data.add_argument("--num-test-batches", type=positive_int, default=d.num_test_batches,
                      help="synthetic: test batches (default %(default)s)")
    train = parser.add_argument_group("training")
    train.add_argument("--mini-batch-size", type=positive_int, default=d.mini_batch_size,
                       help="samples per training step (the global batch under torchrun)")
    train.add_argument("--num-batches", type=non_negative_int, default=d.num_batches,
                       help="batches per epoch (synthetic: the training set size; dataset: 0 = all lines)")
    train.add_argument("--nepochs", type=positive_int, default=d.nepochs, help="passes over the training batches")
    train.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer, help="for every parameter")
    train.add_argument("--learning-rate", type=positive_float, default=d.learning_rate, help="the optimizer's")
    train.add_argument("--momentum", type=non_negative_float, default=d.momentum, help="sgd momentum")
    train.add_argument("--weight-decay", type=non_negative_float, default=d.weight_decay, help="L2 / decoupled decay")
    train.add_argument("--seed", "--numpy-rand-seed", dest="seed", type=int, default=d.seed,
                       help="model init, growth draws, synthetic samples, Criteo training order")
    train.add_argument("--use-gpu", action="store_true", help="train on the CUDA GPU")
    train.add_argument("--num-threads", type=positive_int, default=None,
                       help="CPU threads for torch (default: torch's choice; 1 gives steadier timings on a busy machine)")
    train.add_argument("--backend", choices=("auto", "cpu", "cuda", "triton", "reference"), default=None,
                       help="block_linear backend (default: $AMGP_BACKEND or auto)")
    train.add_argument("--engine", choices=ENGINES, default=d.engine,
                       help="amgp: amgp.DLRM under DDP; torchrec: TorchRec's DLRM under DistributedModelParallel "
                            "(needs amgp[torchrec]) (default %(default)s)")
    train.add_argument("--full-allreduce", action="store_true",
                       help="under torchrun: all-reduce full-size gradients (DDP's own hook) instead of the active "
                            "blocks of the sparse MLP weights only")
    amgp = parser.add_argument_group("AMGP (phase lengths: steps like 40, or fractions of training like 0.1)")
    amgp.add_argument("--no-amgp", dest="amgp", action="store_false", help="dense baseline: no pruning")
    amgp.add_argument("--static-prune", action="store_true",
                      help="the static baseline alone: prune once after --amgp-warmup to --amgp-density, train "
                           "pruned to the end (ends small)")
    amgp.add_argument("--amgp-density", type=density, default=d.amgp_density,
                      help="fraction of output channel blocks each pruned layer keeps in sparse phases (a hidden "
                           "layer also loses inputs, so about density^2 of its weights stay)")
    amgp.add_argument("--amgp-warmup", type=_steps_or_fraction, default=d.amgp_warmup, help="dense warmup")
    amgp.add_argument("--amgp-final-dense", type=_steps_or_fraction, default=d.amgp_final_dense,
                      help="final dense phase (at least 1 step)")
    amgp.add_argument("--amgp-dense-steps", type=_steps_or_fraction, default=d.amgp_dense_steps,
                      help="each dense phase between two sparse phases")
    amgp.add_argument("--amgp-cycles", type=positive_int, default=d.amgp_cycles, help="number of sparse phases")
    amgp.add_argument("--amgp-criterion", choices=CRITERIA, default=d.amgp_criterion,
                      help="block importance: weight magnitude, or Taylor scores gathered in the dense steps before")
    amgp.add_argument("--amgp-growth", choices=GROWTH_INITS, default=d.amgp_growth,
                      help="how grown blocks start: function_preserving (no jump in the output), zero, or restore "
                           "(the values they had when pruned)")
    amgp.add_argument("--amgp-layers", default=",".join(d.amgp_layers),
                      help="comma-separated layer-name prefixes to prune: top_l (the top MLP), bot_l (the bottom MLP), "
                           "top_l.2, ...; all: every MLP layer (default %(default)s: the bottom MLP costs a few %% of "
                           "the FLOPs and pruning it costs the most quality)")
    amgp.add_argument("--block-size", type=positive_int, default=d.block_size, help="channels per block")
    exp = parser.add_argument_group("experiment (several methods and seeds, recurring training)")
    exp.add_argument("--compare", nargs="?", const=list(experiment.DEFAULT_METHODS), type=_method_list, default=None,
                     metavar="METHODS",
                     help="train several methods on the same data, steps and seeds and report them side by side: "
                          "dense, amgp, static (pruned once, at AMGP's MLP training FLOPs), narrow (a dense model "
                          "with hidden widths scaled to AMGP's FLOPs); default dense,amgp")
    exp.add_argument("--seeds", type=positive_int, default=1,
                     help="train every method with seeds --seed, --seed+1, ...; report mean, std and the paired "
                          "difference to dense (default 1)")
    exp.add_argument("--jobs", type=positive_int, default=1,
                     help="with --seeds: train this many seeds at once in worker processes, each with its share of "
                          "the CPU threads (small models train faster that way; default %(default)s)")
    exp.add_argument("--recurring", action="store_true",
                     help="after training, continue each final model on the next day (no pruning; see "
                          "--recurring-optimizer) "
                          "and report newest-data AUC before and after; with --load-model: warm start from that "
                          "checkpoint's model")
    exp.add_argument("--recurring-steps", type=positive_int, default=RECURRING.steps,
                     help="steps on the next day (Criteo: at most one pass; default %(default)s)")
    exp.add_argument("--recurring-drift", type=checked(float, lambda v: 0 <= v <= 1, "a number in [0, 1]"),
                     default=RECURRING.drift, help="synthetic data: the teacher's drift to the next day "
                                                    "(default %(default)s)")
    exp.add_argument("--recurring-fraction", type=density, default=RECURRING.fraction,
                     help="Criteo: the latest fraction of the file is the next day; offline training uses the "
                          "lines before it (1: the whole file, for --load-model; default %(default)s)")
    exp.add_argument("--recurring-optimizer", choices=recurring.OPTIMIZER_STATES, default=RECURRING.optimizer,
                     help="continue: the offline optimizer's state goes on (a warm start takes the checkpoint's "
                          "optimizer); fresh: a new optimizer (default %(default)s)")
    out = parser.add_argument_group("reporting and checkpoints")
    out.add_argument("--print-freq", type=positive_int, default=d.print_freq, help="loss averaging interval")
    out.add_argument("--test-freq", type=non_negative_int, default=d.test_freq,
                     help="evaluate every N steps (0: only at the end)")
    out.add_argument("--save-model", help="checkpoint path, written at the end (and every --checkpoint-freq)")
    out.add_argument("--checkpoint-freq", type=non_negative_int, default=0,
                     help="checkpoint every N steps (0: only at the end)")
    out.add_argument("--load-model", help="resume from this checkpoint (same settings)")
    out.add_argument("--stop-at-step", type=positive_int, default=None,
                     help="stop after this many steps, as if interrupted (resume with --load-model)")
    out.add_argument("--report-json", help="write the report as JSON here")
    out.add_argument("--plot", help="write a PNG here: one run: loss and AUC over steps (sparse phases shaded); "
                                    "--compare: test AUC against MLP training FLOPs per method")
    out.add_argument("--no-progress", dest="progress", action="store_false",
                     help="no progress (a bar on a terminal, a line per --print-freq steps in a log)")
    return parser


def apply_task_sizes(args, given):
    """--synthetic-task capacity: its model and data sizes (amgp.data.tasks) for every flag not typed.
    A warm start's model comes from its checkpoint, so its sizes are left alone."""
    if args.synthetic_task != "capacity" or args.data_generation != "synthetic":
        return
    for dest, value in CAPACITY_SETTINGS.items():
        if dest not in given and not (args.recurring and args.load_model and dest in FROM_CHECKPOINT):
            setattr(args, dest, value)


def config_from_args(args, parser, given=None):
    """The TrainConfig of parsed `args`; a parser error (one line, naming the flag) for settings that cannot
    run or that the run would silently ignore. `given`: the dests typed on the command line (default: those
    whose value differs from the default)."""
    if given is None:
        given = {dest for dest, value in vars(args).items() if value != parser.get_default(dest)}
    if args.data_generation == "dataset" and not args.raw_data_file:
        parser.error("--data-generation dataset needs --raw-data-file")
    if (args.compare or args.seeds > 1) and args.load_model:
        parser.error("--compare and --seeds cannot be combined with --load-model (resume or --recurring warm start)")
    if args.static_prune and (args.compare or args.seeds > 1 or args.recurring):
        parser.error("--static-prune is one run at --amgp-density; in an experiment list 'static' in --compare "
                     "(sized to AMGP's MLP training FLOPs)")
    if args.checkpoint_freq and not args.save_model:
        parser.error("--checkpoint-freq needs --save-model")
    if args.max_ind_range < 2:
        parser.error("--max-ind-range must be at least 2")
    apply_task_sizes(args, given)
    problem = first_problem(args, given, flag_names(parser))
    if problem:
        parser.error(problem)
    if args.backend and (torch.cuda.is_available() or not args.use_gpu):  # (no GPU for --use-gpu: said later)
        try:  # refuse a backend that cannot run on the training device now, not mid-run
            amgp_kernels.backends.resolve(args.backend, torch.device("cuda" if args.use_gpu else "cpu"))
        except amgp_kernels.BackendUnavailableError as error:
            parser.error(f"--backend {args.backend}: {error}")
    if args.engine == "torchrec":
        if args.recurring:
            parser.error("--engine torchrec does not support --recurring yet (a warm start of sharded tables)")
        try:
            import amgp.torchrec  # noqa: F401
        except ImportError as error:
            parser.error(f"--engine torchrec: {error}")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    values["amgp_layers"] = None if args.amgp_layers == "all" else [p for p in args.amgp_layers.split(",") if p]
    return TrainConfig(**values)


def format_report(reports):
    """Text table of one or more reports (columns = runs)."""
    rows = [("test AUC", "test_auc", "{:.5f}"), ("test log loss", "test_logloss", "{:.5f}"),
            ("test accuracy", "test_accuracy", "{:.5f}"), ("MLP GFLOPs (dense)", "mlp_flops_dense", "{:.1f}"),
            ("MLP GFLOPs (computed)", "mlp_flops_computed", "{:.1f}"), ("MLP FLOP saving", "mlp_flops_saving", "{:.1%}"),
            ("train wall time (s)", "wall_time_s", "{:.1f}"), ("final density", "final_density", "{:.3f}"),
            ("steps", "steps", "{}"), ("backend", "backend", "{}")]
    names = list(reports)
    width = max(12, *(len(n) for n in names))
    lines = ["".ljust(24) + "".join(n.rjust(width + 2) for n in names)]
    for title, key, fmt in rows:
        cells = []
        for name in names:
            value = reports[name][key]
            value = value / 1e9 if key.startswith("mlp_flops_") and key != "mlp_flops_saving" else value
            cells.append(fmt.format(value).rjust(width + 2))
        lines.append(title.ljust(24) + "".join(cells))
    for name, report in reports.items():
        times = ", ".join(f"{k} {v:.1f}s" for k, v in report["phase_times_s"].items() if report["phase_steps"][k])
        lines.append(f"{name} phase times: {times}")
    return "\n".join(lines)


def describe(args):
    """What the command does, for the run header."""
    if args.recurring and args.load_model:
        return f"warm start from {args.load_model}, {args.recurring_steps} steps on the next day"
    if args.compare or args.seeds > 1 or args.recurring:
        methods = ", ".join(args.compare or [TrainConfig(amgp=args.amgp, static_prune=args.static_prune).mode])
        return f"{methods} on the same data and steps" + (", then the recurring stage" if args.recurring else "")
    mode = TrainConfig(amgp=args.amgp, static_prune=args.static_prune).mode
    return mode + (f", resuming from {args.load_model}" if args.load_model else "")


def run(args, config):
    """(report for --report-json, {column: run report} for the text table, experiment result or None)."""
    settings = recurring.RecurringConfig(args.recurring_steps, args.recurring_drift, args.recurring_fraction,
                                         args.recurring_optimizer)
    if args.recurring and args.load_model:
        report = recurring.warm_start(config, args.load_model, settings)
        return report, {"recurring": report}, None
    if args.compare or args.seeds > 1 or args.recurring:
        result = experiment.run_experiment(config, args.compare or [config.mode], args.seeds,
                                           settings if args.recurring else None, jobs=args.jobs)
        return experiment.compare_report(result), {m: runs[0] for m, runs in result["runs"].items()}, result
    report = train_one_run(config)
    return report, {report["mode"]: report}, None


def show(report, reports, result, args, argv):
    """The summary: one table (a run's column, or the experiment's table of methods over the seeds), then
    the lines about how the run ended."""
    if result is None:
        print(format_report(reports))
    else:
        print("\n" + format_budget(result["budget"], result["methods"]))
        print("\n" + format_summary(result))
        _show_amgp_against(result, result["amgp_against"], "offline")
        if "recurring" in result:
            print("\n" + format_recurring(result))
            _show_amgp_against(result, result["recurring"]["amgp_against"], "after the recurring stage")
    if "before_test_auc" in report:
        print(f"newest-data test AUC: {report['before_test_auc']:.5f} before, {report['test_auc']:.5f} after "
              f"{report['steps']} steps")
    if result is not None and "comparison" in report:
        c = report["comparison"]
        spread = " (one seed: no verdict)" if c["auc_difference_std"] is None else \
            f" (paired std {c['auc_difference_std']:.5f}, 95% CI ±{c['auc_difference_ci95']:.5f}: {c['auc_verdict']})"
        print(f"\nAMGP vs dense: AUC difference {c['auc_difference']:+.5f}{spread}, MLP FLOP saving "
              f"{c['mlp_flops_saving']:.1%}, wall-time reduction {c['wall_time_reduction']:.1%}")
    if args.skip_malformed:
        print(skipped_line(report, args.raw_data_file))
    if result is None:
        stopped = stopped_line(report, argv, args.save_model)
        if stopped:
            print(stopped)


def _show_amgp_against(result, against, stage):
    if len(result["seeds"]) > 1 and against:  # one seed has no paired spread to show
        print("\n" + format_amgp_against(against, stage))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    config = config_from_args(args, parser, given_dests(build_parser, argv))
    # torch's sparse Adagrad path warns on every run about a debug option; it is noise here.
    warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
    if args.num_threads is not None:
        torch.set_num_threads(args.num_threads)
    if distributed.is_main():
        print(run_header(args, describe(args)), flush=True)
    try:
        report, reports, result = run(args, config)
    except TrainingInterrupted as interrupted:
        resumable = not (args.compare or args.seeds > 1 or args.recurring)
        print(interrupted_line(interrupted, argv, resumable), file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("amgp-dlrm: interrupted", file=sys.stderr)
        return 130
    except (CriteoFormatError, CheckpointError, FileNotFoundError, FloatingPointError, ValueError) as error:
        print(f"amgp-dlrm: error: {in_flag_spelling(str(error), flag_names(parser))}", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown()
    if not distributed.is_main():
        return 0  # under torchrun rank 0 reports
    show(report, reports, result, args, argv)
    if args.report_json:
        with open(args.report_json, "w") as f:
            json.dump(report, f, indent=2)
    if args.plot:
        from .plot import plot_experiment, plot_runs
        if result is None:
            plot_runs(reports, args.plot)
        else:
            plot_experiment(result, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
