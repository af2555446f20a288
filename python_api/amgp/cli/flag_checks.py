"""amgp-dlrm's checks across flags, before anything trains: a flag the chosen run would ignore is an error
(a user who passes --raw-data-file believes the run reads it), and so are files that are not there,
an architecture that does not fit the data, and phases that do not fit the steps. Each problem is one
line naming the flags as typed."""
import os

import torch

from ..data.criteo import NUM_INTEGER
from ..dlrm import check_architecture
from ..phases import plan_phases

DATASET_ONLY = ("raw_data_file", "max_ind_range", "skip_malformed", "test_fraction", "data_randomize")
# What a warm start (--load-model with --recurring) takes from the checkpoint, or sets itself.
FROM_CHECKPOINT = ("arch_sparse_feature_size", "arch_embedding_size", "arch_mlp_bot", "arch_mlp_top",
                   "arch_interaction_op", "arch_interaction_itself", "block_size", "max_ind_range", "num_batches",
                   "nepochs", "stop_at_step", "checkpoint_freq")


def _warm_start(args):
    return bool(args.recurring and args.load_model)


def _experiment(args):
    return bool(args.compare or args.seeds > 1 or args.recurring)


# (dests, is it ignored in this run?, why): the first rule with a given dest is the error. Only data and
# checkpoint flags: schedule flags stay allowed with --no-amgp, so one flag set builds both a run and its baseline.
IGNORED = (
    (("recurring_steps", "recurring_drift", "recurring_fraction", "recurring_optimizer"), lambda a: not a.recurring,
     "applies only with --recurring"),
    (("jobs",), lambda a: a.seeds == 1, "runs seeds at once: it applies only with --seeds above 1"),
    (FROM_CHECKPOINT, _warm_start,
     "is not used by a warm start (--load-model with --recurring: the model comes from the checkpoint, with its "
     "embedding tables, and trains --recurring-steps steps); leave it out"),
    (DATASET_ONLY + ("recurring_fraction",), lambda a: a.data_generation != "dataset",
     "is read only with --data-generation dataset; without it the run trains on the built-in synthetic data"),
    (("arch_embedding_size", "num_test_batches", "recurring_drift", "synthetic_task"),
     lambda a: a.data_generation == "dataset",
     "applies to the built-in synthetic data only (a Criteo file has 26 tables of --max-ind-range rows, its test "
     "split is --test-fraction, its next day --recurring-fraction)"),
)


def ignored_flag(args, given, flags):
    """The error for the first given flag this run would ignore, or None."""
    for dests, ignored, why in IGNORED:
        present = [flags[dest] for dest in dests if dest in given]
        if present and ignored(args):
            return f"{', '.join(present)} {why}"
    return None


def missing_file(args):
    """(A --raw-data-file that the run would not read is ignored_flag's error instead.)"""
    raw = args.raw_data_file if args.data_generation == "dataset" else None
    if raw is not None and not os.path.isfile(raw):
        return f"--raw-data-file {raw}: no such file" + (" (it is a directory)" if os.path.isdir(raw) else "")
    path = args.load_model
    if path is None or os.path.exists(path) or os.path.isdir(f"{path}.old"):
        return None  # (a checkpoint of the other engine is refused on load, naming it)
    return f"--load-model {path}: no such " + ("checkpoint directory" if args.engine == "torchrec" else "file")


def architecture_problem(args, flags):
    """The DLRM's own checks in flag spelling, and the Criteo file's fixed feature counts."""
    if _warm_start(args):
        return None  # the architecture comes from the checkpoint
    try:
        check_architecture(args.arch_embedding_size, args.arch_sparse_feature_size, args.arch_mlp_bot,
                           args.arch_mlp_top, args.arch_interaction_op, spell=flags.get)
    except (TypeError, ValueError) as error:
        return str(error)
    if args.data_generation == "dataset":
        if args.arch_mlp_bot[0] != NUM_INTEGER:
            return (f"--arch-mlp-bot starts with {args.arch_mlp_bot[0]} inputs, but a Criteo file has {NUM_INTEGER} "
                    f"integer features: start it with {NUM_INTEGER}")
    return None


def schedule_problem(args):
    """Synthetic data has a known step count: check that the phases fit before building anything."""
    if args.data_generation != "synthetic" or _warm_start(args) or not (args.amgp or args.compare):
        return None
    if args.num_batches == 0:
        return "--num-batches 0 (every line of a --raw-data-file) needs --data-generation dataset"
    total = args.num_batches * args.nepochs
    try:
        if args.static_prune:
            plan_phases(total, args.amgp_warmup, 0, 0, 1, end_full_size=False)
        else:
            plan_phases(total, args.amgp_warmup, args.amgp_final_dense, args.amgp_dense_steps, args.amgp_cycles)
    except (TypeError, ValueError) as error:
        return (f"--amgp-warmup {args.amgp_warmup}, --amgp-final-dense {args.amgp_final_dense}, --amgp-dense-steps "
                f"{args.amgp_dense_steps} and --amgp-cycles {args.amgp_cycles} do not fit in {total} steps "
                f"(--num-batches x --nepochs): {error}")
    return None


def first_problem(args, given, flags):
    """The first cross-flag problem of parsed `args` (`given`: the dests the user typed; `flags`: dest ->
    flag), as one line, or None."""
    if args.use_gpu and not torch.cuda.is_available():
        return "--use-gpu: no CUDA GPU is visible to torch here"
    if args.stop_at_step is not None and _experiment(args):
        return "--stop-at-step stops one run for a later --load-model, which an experiment (--compare, --seeds, " \
               "--recurring) cannot resume"
    for check in (lambda: missing_file(args), lambda: ignored_flag(args, given, flags),
                  lambda: architecture_problem(args, flags), lambda: schedule_problem(args)):
        problem = check()
        if problem:
            return problem
    return None
