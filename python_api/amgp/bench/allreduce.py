"""Gradient all-reduce of DLRM MLPs on 2 gloo ranks: DDP's own (full-size gradients) against amgp.comm_hook
(active blocks only), as bytes per step and training-step time, timed interleaved in the same processes.

    python -m amgp.bench.allreduce --models default,mlperf --batch 64,1024 --densities 1,0.5,0.25 \
        --json bench/results/cpu_allreduce.json

Each rank runs two identical copies of a SparseMLP stack (bottom MLP -> concat with a stand-in for the
interaction features -> top MLP, as amgp.bench.training), one under plain DDP and one under DDP with the
hook, pruned to the same blocks at each density (density 1: every block active, a dense phase). A step is
forward, BCE loss, backward (with the all-reduce) and an SGD step on the rank's share of the batch.
"""
import argparse
import json
import os
import socket
import sys

import torch
import torch.multiprocessing as mp
from torch import nn

from .. import SparseMLP, comm_hook, distributed, prune_blocks
from ..pruning import weight_density
from .cases import DLRM_CONFIGS
from .cli import _density, _list_of
from .timing import measure_interleaved
from .training import MLPStack

WORLD = 2
# amgp-dlrm's default MLPs (TrainConfig; its 26 tables give 26*27/2 dot products) and the MLPerf DLRM's.
WIDTHS = {"default": {"bottom": [13, 512, 256, 64, 16], "top": [27 * 26 // 2 + 16, 1024, 1024, 512, 1]},
          "mlperf": DLRM_CONFIGS["mlperf"]}


def _stack(widths, density, block_size):
    torch.manual_seed(0)  # the same weights, so the same pruned blocks, on every rank and in both copies
    model = MLPStack(SparseMLP(widths["bottom"], block_size=block_size, last_activation="relu"),
                     SparseMLP(widths["top"], block_size=block_size))
    if density < 1:
        prune_blocks(model, density)
    return model


def _step(ddp, model, batches):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.BCEWithLogitsLoss()

    def step(i):
        (dense, interaction), label = batches[i % len(batches)]
        optimizer.zero_grad(set_to_none=True)
        loss_fn(ddp(dense, interaction), label).backward()
        optimizer.step()

    return step


def _measure(name, batch, density, args):
    """One row: both variants of model `name` at `density`, timed interleaved (rank 0's clock)."""
    widths = WIDTHS[name]
    rows = batch // WORLD
    gen = torch.Generator().manual_seed(distributed.rank())
    batches = [((torch.randn(rows, widths["bottom"][0], generator=gen),
                 torch.randn(rows, widths["top"][0] - widths["bottom"][-1], generator=gen)),
                torch.randint(0, 2, (rows, 1), generator=gen).float()) for _ in range(3)]
    plain, hooked = _stack(widths, density, args.block_size), _stack(widths, density, args.block_size)
    ddp_plain, ddp_hooked = nn.parallel.DistributedDataParallel(plain), nn.parallel.DistributedDataParallel(hooked)
    full_count, hook = comm_hook.FullSizeCount(ddp_plain), comm_hook.attach(ddp_hooked)
    steps = {"ddp": _step(ddp_plain, plain, batches), "hook": _step(ddp_hooked, hooked, batches)}
    timings, _ = measure_interleaved(steps, args.warmup, args.repeats)
    hook.pop_counts()
    steps["hook"](0)  # one step alone: the bytes of one step
    sent, full = hook.pop_counts(), full_count.pop_counts()
    result = []
    for variant, counts in (("ddp", full), ("hook", sent)):
        result.append({"model": f"mlp:{name}", "batch": batch, "density": density,
                       "weight_density": weight_density(hooked), "variant": variant,
                       "bytes_per_step": counts["allreduce_bytes"], "mlp_bytes_per_step": counts["mlp_allreduce_bytes"],
                       "full_bytes_per_step": full["allreduce_bytes"], **timings[variant].summary()})
    result[1]["mlp_bytes_fraction"] = sent["mlp_allreduce_bytes"] / full["mlp_allreduce_bytes"]
    result[1]["time_ratio_vs_ddp"] = timings["hook"].median_ms / timings["ddp"].median_ms
    return result


def _worker(rank, port, args, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD))
    torch.set_num_threads(args.threads)
    distributed.init_from_env()
    try:
        rows = [row for name in args.models for batch in args.batch for density in args.densities
                for row in _measure(name, batch, density, args)]
    finally:
        distributed.shutdown()
    if rank == 0:
        torch.save(rows, out)


def format_rows(rows):
    lines = [f"{'model':12} {'batch':>6} {'density':>7} {'w.dens':>6} {'variant':>7} {'MB/step':>8} "
             f"{'MLP MB':>7} {'MLP frac':>8} {'median ms':>9} {'hook/ddp':>8}"]
    for r in rows:
        frac = f"{r['mlp_bytes_fraction']:.3f}" if "mlp_bytes_fraction" in r else ""
        ratio = f"{r['time_ratio_vs_ddp']:.3f}" if "time_ratio_vs_ddp" in r else ""
        lines.append(f"{r['model']:12} {r['batch']:>6} {r['density']:>7g} {r['weight_density']:>6.3f} "
                     f"{r['variant']:>7} {r['bytes_per_step'] / 1e6:>8.3f} {r['mlp_bytes_per_step'] / 1e6:>7.3f} "
                     f"{frac:>8} {r['median_ms']:>9.2f} {ratio:>8}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m amgp.bench.allreduce", description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=_list_of(str, tuple(WIDTHS)), default=list(WIDTHS), metavar="M[,M]",
                        help=f"MLP widths, from {', '.join(WIDTHS)} (default all)")
    parser.add_argument("--batch", type=_list_of(int), default=[64, 1024], metavar="B[,B]",
                        help="global batch, split over the 2 ranks (default 64,1024)")
    parser.add_argument("--densities", type=_list_of(_density), default=[1.0, 0.5, 0.25], metavar="D[,D]")
    parser.add_argument("--block-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank (default 1)")
    parser.add_argument("--json", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    if any(b < WORLD or b % WORLD for b in args.batch):
        parser.error(f"--batch: every batch must be a positive multiple of {WORLD} (the ranks)")
    out = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"amgp-allreduce-{os.getpid()}.pt")
    mp.spawn(_worker, args=(_free_port(), args, out), nprocs=WORLD, join=True)
    rows = torch.load(out)
    os.remove(out)
    print(format_rows(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
