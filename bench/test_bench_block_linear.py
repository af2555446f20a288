"""pytest-benchmark cases for block_linear, built from amgp.bench's case and method definitions.

Run: python -m pytest bench --benchmark-only  (add --benchmark-json PATH to keep the numbers)

The Foundation CPU case: B=2048, 1024->1024, float32, forward+backward, densities 1/0.75/0.5/0.25,
"out only" and "in+out", dense nn.Linear vs gather+mm+scatter vs the compacted limit vs each backend
of ours. On a CUDA machine the GPU case (B=8192, 1024->1024, bfloat16) is added. Results are grouped
per (shape, case, density) so pytest-benchmark's table compares the methods of one row.
"""
import itertools

import pytest
import torch

from amgp.bench import BASELINES, DENSITIES, Shape, build_step, default_backends, make_inputs, make_problem

SETTINGS = [("cpu", Shape(2048, 1024, 1024), torch.float32)]
if torch.cuda.is_available():
    SETTINGS.append(("cuda", Shape(8192, 1024, 1024), torch.bfloat16))
BLOCK_SIZE = 32
PASS = "fwd_bwd"
COPIES = 3


def _params():
    # Methods innermost: the methods of one group run back to back, so drift on a shared machine
    # shifts them alike.
    for device, shape, dtype in SETTINGS:
        for case in ("out_only", "in_out"):
            for density in DENSITIES:
                for method in [*BASELINES, *default_backends(device)]:
                    name = f"{device}-{shape}-{case}-d{density:g}-{method}"
                    yield pytest.param(device, shape, dtype, case, density, method, id=name)


@pytest.fixture(scope="module")
def inputs_cache():
    return {}


@pytest.mark.parametrize("device,shape,dtype,case,density,method", list(_params()))
def test_block_linear(benchmark, inputs_cache, device, shape, dtype, case, density, method):
    key = (device, shape, dtype)
    if key not in inputs_cache:
        inputs_cache.clear()  # one shape's inputs alive at a time
        inputs_cache[key] = make_inputs(shape, dtype, device, COPIES)
    problem = make_problem(shape, case, density, BLOCK_SIZE, device=device)
    step = build_step(method, problem, PASS, inputs_cache[key])
    counter = itertools.count()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run():
        step(next(counter))
        sync()

    benchmark.group = f"{device} {shape} {dtype} {PASS} {case} d={density:g}"
    benchmark.extra_info.update(method=method, case=case, density=density, weight_density=problem.weight_density,
                                threads=torch.get_num_threads())
    benchmark.pedantic(run, warmup_rounds=2, rounds=5, iterations=1)
