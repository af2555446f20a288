#!/usr/bin/env python
# Usage: OMP_NUM_THREADS=1 python bench/gradient_writes.py PRESET top|bottom BATCH DENSITY [PAIRS]
"""What the full-size weight-gradient writes cost at small batch: a sparse-phase training step (block-sparse
optimizer step) against writing zeros over every MLP weight gradient's full size (an upper bound of what writing
inactive gradient blocks at most once per phase could save), interleaved in one process."""
import sys, time, statistics, torch
from torch import nn
import amgp
from amgp.bench.training import single_mlp_and_batches, training_step, LEARNING_RATE
from amgp.active_step import install

preset, kind, batch, density = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
sparse, _, batches = single_mlp_and_batches(preset, kind, batch, 3, "cpu", torch.float32, 32, None, 0)
amgp.prune_blocks(sparse, density)
opt = torch.optim.SGD(sparse.parameters(), lr=LEARNING_RATE)
install(opt, sparse)
step = training_step(sparse, batches, opt)
weights = [m.weight for m in sparse.modules() if isinstance(m, amgp.SparseLinear)]
inactive = sum(int((~m.weight_mask).sum()) for m in sparse.modules() if isinstance(m, amgp.SparseLinear))
total = sum(w.numel() for w in weights)
def zero_writes(i):
    for w in weights:
        torch.zeros_like(w)
times = {"step": [], "zeros": []}
for i in range(5):
    step(i); zero_writes(i)
for i in range(int(sys.argv[5]) if len(sys.argv) > 5 else 60):
    for name, f in (("step", step), ("zeros", zero_writes)) if i % 2 else (("zeros", zero_writes), ("step", step)):
        t = time.perf_counter(); f(i); times[name].append(time.perf_counter() - t)
s, z = statistics.median(times["step"]), statistics.median(times["zeros"])
print(f"{kind}:{preset} B={batch} d={density}: step {s*1e3:.3f} ms, full-size zero writes of {total*4/1e6:.1f} MB of "
      f"weight gradients {z*1e3:.3f} ms = {z/s:.2f} of the step; inactive share {inactive/total:.2f} "
      f"-> at most {z*inactive/total/s:.2f} of the step for writing inactive blocks")
