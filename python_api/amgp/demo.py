"""amgp-demo: train a SparseMLP, prune its hidden channel blocks (--density of them kept), keep training, and
print the measured training-step speedup. A short CPU demo of what the kernels buy."""
import statistics
import time

import torch
from tqdm import tqdm

import amgp_kernels

from .cli.argtypes import dash_list, density, positive_int
from .cli.parser import Parser
from .pruning import prune_blocks, weight_density
from .sparse_mlp import SparseMLP


def build_parser():
    parser = Parser(prog="amgp-demo", description=__doc__)
    parser.add_argument("--sizes", type=dash_list, default=[256, 1024, 1024, 1024, 1],
                        help="MLP widths, dash-separated: input, hidden..., output")
    parser.add_argument("--batch", type=positive_int, default=2048, help="samples per training step")
    parser.add_argument("--steps", type=positive_int, default=30, help="training steps per phase")
    parser.add_argument("--density", type=density, default=0.5,
                        help="fraction of each hidden layer's output blocks kept")
    parser.add_argument("--block-size", type=positive_int, default=32, help="channels per block")
    parser.add_argument("--backend", choices=amgp_kernels.BACKENDS, default=None,
                        help="block_linear backend (default: $AMGP_BACKEND or auto)")
    parser.add_argument("--seed", type=int, default=0, help="weights, data and teacher")
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if len(args.sizes) < 3:
        parser.error("--sizes needs at least 3 positive widths (input, hidden..., output)")
    if args.backend:
        try:  # the demo trains on the CPU: refuse a backend that cannot run there now, not mid-run
            amgp_kernels.backends.resolve(args.backend, torch.device("cpu"))
        except amgp_kernels.BackendUnavailableError as error:
            parser.error(f"--backend {args.backend}: {error}")
    return args


def train_phase(model, optimizer, inputs, targets, steps, label):
    """Train `steps` steps; return (final loss, median seconds per step)."""
    times, loss = [], float("nan")
    for step in tqdm(range(steps), desc=label, leave=False, disable=None):  # a bar on a terminal only
        x, y = inputs[step % len(inputs)], targets[step % len(targets)]
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        batch_loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        batch_loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
        loss = batch_loss.item()
    return loss, statistics.median(times[2:] or times)  # the first steps warm caches and allocators


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    if args.backend:
        amgp_kernels.set_backend(args.backend)
    sizes = args.sizes
    teacher = torch.nn.Sequential(torch.nn.Linear(sizes[0], 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    inputs = [torch.randn(args.batch, sizes[0]) for _ in range(4)]
    with torch.no_grad():
        targets = [(teacher(x) > 0).float() for x in inputs]

    model = SparseMLP(sizes, block_size=args.block_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    print(f"amgp demo: MLP {'-'.join(map(str, sizes))}, batch {args.batch}, block size {args.block_size}, "
          f"backend {amgp_kernels.backends.auto_backend(torch.device('cpu')) if not args.backend else args.backend}, "
          f"{torch.get_num_threads()} threads")
    dense_loss, dense_time = train_phase(model, optimizer, inputs, targets, args.steps, "dense")
    prune_blocks(model, args.density, optimizer)
    flop_fraction = weight_density(model)  # of the dense MLP's GEMM FLOPs
    sparse_loss, sparse_time = train_phase(model, optimizer, inputs, targets, args.steps, "pruned")

    print(f"dense  phase: loss {dense_loss:.4f}, {dense_time * 1e3:7.1f} ms/step")
    print(f"pruned phase: loss {sparse_loss:.4f}, {sparse_time * 1e3:7.1f} ms/step "
          f"(hidden blocks kept: {args.density:.0%}, MLP FLOPs: {flop_fraction:.0%} of dense)")
    print(f"measured training-step speedup: {dense_time / sparse_time:.2f}x "
          f"(FLOP bound: {1 / flop_fraction:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
