"""The lines amgp-dlrm prints before training: which data, which model, which seeds, where it runs, so a
log says what produced its numbers."""
import torch

import amgp_kernels
from amgp_kernels.backends import auto_backend

from ..data.criteo import NUM_CATEGORICAL
from ..data.synthetic import DEFAULT_TABLE_SIZES
from ..dlrm import top_input_width


def flag_value(value):
    """A value as typed on the command line: lists dash-joined (13-512-256)."""
    return "-".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def data_line(args):
    if args.data_generation == "dataset":
        if args.recurring and args.load_model:
            tables = f"hashed into the tables of the model in {args.load_model}"
        else:
            tables = f"hashed into {args.max_ind_range} rows per table"
        order = "reshuffled every epoch" if args.data_randomize == "total" else "in file order"
        return (f"data: Criteo file {args.raw_data_file} ({NUM_CATEGORICAL} categoricals {tables}; test split: the "
                f"latest {args.test_fraction:.0%} of the lines; training lines {order})")
    task = "" if args.synthetic_task == "default" else f" (task: {args.synthetic_task})"
    if args.recurring and args.load_model:
        return (f"data: the next day of the built-in synthetic CTR data{task} (teacher drifted by {args.recurring_drift}), "
                f"{args.recurring_steps} batches of {args.mini_batch_size}, {args.num_test_batches} test batches, "
                f"ids over the tables of the model in {args.load_model}")
    tables = args.arch_embedding_size or DEFAULT_TABLE_SIZES
    return (f"data: built-in synthetic CTR data{task}, {args.num_batches} batches of {args.mini_batch_size} per epoch x "
            f"{args.nepochs}, {args.num_test_batches} test batches; {len(tables)} tables of "
            f"{min(tables)}..{max(tables)} rows")


def model_line(args):
    if args.recurring and args.load_model:
        return f"model: the one saved in {args.load_model} (architecture, weights and masks)"
    tables = NUM_CATEGORICAL if args.data_generation == "dataset" else len(args.arch_embedding_size or
                                                                          DEFAULT_TABLE_SIZES)
    top_in = top_input_width(tables, args.arch_sparse_feature_size, args.arch_mlp_bot[-1], args.arch_interaction_op,
                             args.arch_interaction_itself)
    return (f"model: {tables} embedding tables of dim {args.arch_sparse_feature_size}, bottom MLP "
            f"{flag_value(args.arch_mlp_bot)}, interaction {args.arch_interaction_op}, top MLP "
            f"{flag_value([top_in] + list(args.arch_mlp_top))}, blocks of {args.block_size} channels")


def run_line(args, what):
    seeds = [args.seed + i for i in range(args.seeds)]
    device = torch.device("cuda" if args.use_gpu else "cpu")
    name = args.backend or amgp_kernels.get_backend()
    backend = f"auto ({auto_backend(device)})" if name == "auto" else name
    jobs = min(args.jobs, len(seeds))
    threads = max(1, torch.get_num_threads() // jobs)  # (amgp.workers' share per worker)
    at_once = f"{jobs} seeds at once, " if jobs > 1 else ""
    return (f"run: {what}; seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}; {args.optimizer} "
            f"lr {args.learning_rate}; engine {args.engine}; {device.type} with backend {backend}, "
            f"{at_once}{threads} torch thread{'s' if threads > 1 else ''}{' each' if jobs > 1 else ''}")


def run_header(args, what):
    """The header lines; `what` says what the command does (e.g. "dense and amgp, side by side")."""
    return "\n".join([data_line(args), model_line(args), run_line(args, what)])
