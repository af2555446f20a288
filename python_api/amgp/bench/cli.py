"""amgp-bench: kernel microbenchmarks (and --training: training-step benchmarks) as a markdown table
on stdout, with optional JSON and PNG. See `amgp-bench --help`."""
import argparse
import sys

import torch

import amgp_kernels

from ..cli.argtypes import non_negative_int, positive_int
from ..cli.parser import Parser, RawDescriptionDefaultsFormatter
from . import cases, machine, report
from .cases import CASES, DENSITIES, DLRM_CONFIGS, PASSES, Shape
from .methods import default_backends
from .runner import KernelBenchConfig, run_kernel_benchmarks

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
OUR_BACKENDS = ("cpu", "cuda", "triton", "reference")
# --quick: small enough to finish in well under 2 minutes on a busy 2-core CPU.
QUICK = {"warmup": 1, "repeats": 3, "cpu_shapes": [Shape(2048, 1024, 1024)], "cuda_shapes": [Shape(8192, 1024, 1024)]}
DEFAULT_SHAPES = {"cpu": [Shape(2048, 1024, 1024)], "cuda": [Shape(8192, 1024, 1024), Shape(8192, 4096, 4096)]}
DEFAULT_COUNTS = {"cpu": (3, 10), "cuda": (10, 50)}  # (warmup, repeats)


def _list_of(kind, allowed=None):
    """argparse type: a comma-separated list of `kind` values (each in `allowed`, if given)."""
    def parse(text):
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        values = []
        for item in items:
            try:
                value = kind(item)
            except ValueError as error:
                raise argparse.ArgumentTypeError(str(error)) from None
            if allowed is not None and value not in allowed:
                raise argparse.ArgumentTypeError(f"{item!r} is not one of {', '.join(allowed)}")
            values.append(value)
        return values
    return parse


def _density(text):
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"density must be a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise ValueError(f"density must be in (0, 1], got {text!r}")
    return value


def build_parser():
    parser = Parser(
        prog="amgp-bench",
        description="Benchmark amgp's block-sparse linear kernels against dense nn.Linear, gather+mm+scatter\n"
                    "and the compacted-dense limit (or, with --training, DLRM training steps, dense vs pruned).",
        epilog="examples:\n"
               "  amgp-bench --quick\n"
               "  amgp-bench --device cpu --shapes 2048x1024x1024 --json cpu.json --plot cpu.png\n"
               "  amgp-bench --preset terabyte --batch 2048,16384 --passes fwd_bwd\n"
               "  amgp-bench --training --preset kaggle --batch 2048 --densities 1,0.5",
        formatter_class=RawDescriptionDefaultsFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available, else cpu")
    parser.add_argument("--dtype", choices=tuple(DTYPES), help="default: float32 on cpu, bfloat16 on cuda")
    shapes = parser.add_argument_group(
        "shapes", "combine freely; default 2048x1024x1024 on cpu, 8192x1024x1024 and 8192x4096x4096 on cuda")
    shapes.add_argument("--shapes", type=_list_of(cases.parse_shape), default=[], metavar="BxINxOUT[,...]")
    shapes.add_argument("--batch", type=_list_of(positive_int), metavar="B[,B...]",
                        help="with --in/--out: one more shape per batch; with --preset or --training: their batch")
    shapes.add_argument("--in", dest="in_features", type=positive_int, metavar="IN")
    shapes.add_argument("--out", dest="out_features", type=positive_int, metavar="OUT")
    shapes.add_argument("--preset", choices=sorted(DLRM_CONFIGS),
                        help="layers of a facebookresearch/dlrm config's bottom+top MLPs (batch 2048 unless --batch)")
    parser.add_argument("--block-size", type=positive_int, default=32, help="channels per block (default 32)")
    parser.add_argument("--densities", type=_list_of(_density), default=list(DENSITIES), metavar="D[,D...]",
                        help="fraction of active blocks per pruned side, in (0, 1] (default 1,0.75,0.5,0.25)")
    parser.add_argument("--cases", type=_list_of(str, CASES), default=list(CASES), metavar="CASE[,CASE]",
                        help="out_only (first layer: output blocks pruned, input dense) and/or in_out (hidden "
                             "layer: both pruned); default both")
    parser.add_argument("--passes", type=_list_of(str, PASSES), default=list(PASSES), metavar="PASS[,PASS]",
                        help="fwd and/or fwd_bwd (forward + grads of x, weight and bias); default both")
    parser.add_argument("--backends", type=_list_of(str, OUR_BACKENDS), metavar="NAME[,NAME...]",
                        help=f"backends of ours to time, from {', '.join(OUR_BACKENDS)} (default: every available "
                             "one native to the device: cpu on CPU, cuda and triton on GPU)")
    parser.add_argument("--activation", choices=("none", "relu"), default="none",
                        help="activation after the GEMM (fused in our kernels, a separate op in the baselines)")
    parser.add_argument("--warmup", type=non_negative_int, help="untimed calls first (default: 3 cpu, 10 cuda)")
    parser.add_argument("--repeats", type=positive_int, help="timed calls (default: 10 cpu, 50 cuda)")
    parser.add_argument("--copies", type=positive_int, default=3, help="input copies rotated through (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random active blocks and inputs")
    parser.add_argument("--quick", action="store_true", help="one small shape, 1 warmup, 3 repeats (< 2 min on CPU)")
    parser.add_argument("--json", metavar="PATH", help="write every result and its context as JSON")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG of speedup vs density (kernel benchmarks)")
    parser.add_argument("--training", action="store_true",
                        help="training-step benchmark (forward+backward+SGD step) of --preset's DLRM config "
                             "(default kaggle) at each --batch, instead of kernel benchmarks")
    parser.add_argument("--training-model", choices=("mlp", "dlrm", "both", "top", "bottom"), default="both",
                        help="with --training: the SparseMLP stack of the config, the amgp.DLRM, both, or the "
                             "config's top or bottom MLP alone")
    parser.add_argument("--optimizer", choices=("sgd", "adam", "adamw", "adagrad"), default="sgd",
                        help="with --training: the torch.optim optimizer every variant trains with (default sgd)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def _device(args, parser):
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is visible to torch here")
    return device


def _shapes(args, parser, device):
    shapes = list(args.shapes)
    given = (args.in_features is not None, args.out_features is not None)
    if any(given) and not all(given):
        parser.error("--in and --out go together (and need --batch)")
    if all(given):
        if not args.batch:
            parser.error("--in/--out need --batch")
        shapes += [Shape(b, args.in_features, args.out_features) for b in args.batch]
    elif args.batch and not args.preset and not args.training:
        parser.error("--batch needs --in/--out, --preset or --training")
    if args.preset:
        shapes += cases.preset_shapes(args.preset, args.batch or (cases.PRESET_BATCH,))
    if not shapes:
        shapes = list((QUICK[f"{device}_shapes"] if args.quick else DEFAULT_SHAPES[device]))
    return list(dict.fromkeys(shapes))


def _backends(args, parser, device):
    if args.backends is None:
        return default_backends(device)
    available = amgp_kernels.available_backends()
    for name in args.backends:
        if name not in available:
            parser.error(f"--backends: {name!r} is not available here (available: {', '.join(available)})")
        if name in ("cpu", "cuda") and name != device:
            parser.error(f"--backends: {name!r} runs on {name} tensors, but --device is {device}")
    return list(dict.fromkeys(args.backends))


def parse_args(argv=None):
    """Parsed and cross-checked arguments, with device-dependent defaults filled in."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.device = _device(args, parser)
    args.dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    args.shape_list = _shapes(args, parser, args.device)
    args.backend_list = _backends(args, parser, args.device)
    warmup, repeats = (QUICK["warmup"], QUICK["repeats"]) if args.quick else DEFAULT_COUNTS[args.device]
    args.warmup = warmup if args.warmup is None else args.warmup
    args.repeats = repeats if args.repeats is None else args.repeats
    if args.training and args.plot:
        parser.error("--plot draws the kernel benchmarks; it does not go with --training")
    if args.training and (args.shapes or args.in_features):
        parser.error("--training times a DLRM config: give --preset and --batch, not --shapes/--in/--out")
    if args.training and args.backends and len(args.backend_list) > 1:
        parser.error("--training runs the sparse models on one backend: give --backends NAME")
    return args


def _run_meta(args, argv):
    meta = machine.describe(args.device, None if argv is None else ["amgp-bench", *argv])
    meta.update(dtype=args.dtype, block_size=args.block_size, warmup=args.warmup, repeats=args.repeats,
                copies=args.copies, backends=args.backend_list, densities=args.densities, cases=args.cases,
                passes=args.passes, activation=args.activation, seed=args.seed, quick=args.quick,
                mode="training" if args.training else "kernel")
    if args.training:
        meta.update(preset=args.preset or "kaggle", batches=args.batch or [cases.PRESET_BATCH],
                    training_model=args.training_model, optimizer=args.optimizer)
    else:
        meta.update(preset=args.preset, shapes=[str(shape) for shape in args.shape_list])
    return meta


def _run_training(args):
    from .training import run_training_benchmarks

    kinds = ["mlp", "dlrm"] if args.training_model == "both" else [args.training_model]
    backend = args.backend_list[0] if args.backend_list else None  # the device's first native backend
    rows = []
    for batch in args.batch or [cases.PRESET_BATCH]:
        rows += run_training_benchmarks(kinds, args.preset or "kaggle", batch, args.densities, args.device,
                                        DTYPES[args.dtype], args.block_size, backend, args.warmup, args.repeats,
                                        args.copies, args.seed, progress=not args.no_progress,
                                        optimizer=args.optimizer)
    return rows


def main(argv=None):
    args = parse_args(argv)
    meta = _run_meta(args, argv)
    if args.training:
        document = report.make_document(meta, training_rows=_run_training(args))
    else:
        config = KernelBenchConfig(
            shapes=args.shape_list, backends=args.backend_list, device=args.device, dtype=DTYPES[args.dtype],
            cases=tuple(args.cases), passes=tuple(args.passes), densities=tuple(args.densities),
            block_size=args.block_size, activation=args.activation, warmup=args.warmup, repeats=args.repeats,
            copies=args.copies, seed=args.seed)
        document = report.make_document(meta, kernel_rows=run_kernel_benchmarks(config, progress=not args.no_progress))
    sys.stdout.write(report.render_markdown(document))
    if args.json:
        report.write_json(args.json, document)
    if args.plot:
        from .plot import plot_speedups

        plot_speedups(document["kernel"], args.plot, title=meta["command"])
    return 0
