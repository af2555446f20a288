#!/usr/bin/env python
# Usage: OMP_NUM_THREADS=1 python bench/per_call.py IN_FEATURES OUT_FEATURES
"""Per-call cost of SparseLinear at B=128 (no grad and fwd+bwd), interleaved in one process: nn.Linear, the thin
path (layer(x)), the checked call every call (the path before issue 21: refresh + block_linear's checks and backend
choice), and the bare op."""
import statistics, sys, time, torch
torch.set_num_threads(1)
from amgp import SparseLinear
torch.manual_seed(0)
IN, OUT = int(sys.argv[1]), int(sys.argv[2])
lin = torch.nn.Linear(IN, OUT)
layer = SparseLinear.from_linear(lin)
x = torch.randn(128, IN)
op = torch.ops.amgp.block_linear
def checked(x):
    layer.refresh_indices()
    return layer._checked_call(x)
fns = {"nn.Linear": lin, "SparseLinear (thin path)": layer, "checked call (old path)": checked,
       "bare op": lambda x: op(x, layer.weight, layer.bias, None, None, 32, "none", False, False)}
for grad in (False, True):
    T = {k: [] for k in fns}
    names = list(fns)
    for i in range(3000):
        k = names[i % len(names)]
        f = fns[k]
        t = time.perf_counter()
        if grad:
            f(x).sum().backward()
        else:
            with torch.no_grad():
                f(x)
        T[k].append(time.perf_counter() - t)
    base = statistics.median(T["nn.Linear"])
    print(("fwd+bwd" if grad else "fwd (no grad)") + f", 128x{IN}->{OUT}, medians: " + "; ".join(
        f"{k} {statistics.median(v)*1e6:.1f} us ({base/statistics.median(v):.2f} of nn.Linear)" for k, v in T.items()))
