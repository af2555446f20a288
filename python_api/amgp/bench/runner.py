"""Runs the kernel microbenchmark grid (shape x pass x case x density x method) and returns one
result row (a JSON-ready dict) per measurement, ratios filled in."""
import sys
from dataclasses import dataclass

import torch
from tqdm import tqdm

from . import metrics
from .cases import CASES, DENSITIES, PASSES, make_problem
from .methods import BASELINES, PACKED_SUFFIX, build_step, make_inputs, rotation_copies
from .timing import measure_interleaved

# Failures a method may have on some configuration (a backend without this dtype, out of memory):
# recorded in its row instead of ending the run.
METHOD_ERRORS = (RuntimeError, ValueError, TypeError)


@dataclass
class KernelBenchConfig:
    shapes: list
    backends: list
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    cases: tuple = CASES
    passes: tuple = PASSES
    densities: tuple = DENSITIES
    block_size: int = 32
    activation: str = "none"
    warmup: int = 3
    repeats: int = 10
    copies: int = 3
    seed: int = 0

    @property
    def methods(self):
        """Baselines, then each backend of ours with full-size and with packed activations."""
        return list(BASELINES) + list(self.backends) + [name + PACKED_SUFFIX for name in self.backends]

    def group_count(self):
        """Rows groups (shape, pass, case, density); every method of a group is timed together."""
        return len(self.shapes) * len(self.passes) * len(self.cases) * len(self.densities)


def _row(config, problem, pass_, method):
    shape = problem.shape
    return {
        "shape": str(shape), "batch": shape.batch, "in_features": shape.in_features,
        "out_features": shape.out_features, "case": problem.case, "pass": pass_, "density": problem.density,
        "weight_density": problem.weight_density, "method": method,
        "kind": "baseline" if method in BASELINES else "backend", "dtype": str(config.dtype).replace("torch.", ""),
        "block_size": config.block_size, "activation": config.activation, "error": None,
    }


def _error_text(error):
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}"


def _measure_group(config, problem, pass_, inputs):
    """Rows of every method on one problem, timed interleaved, ratios filled in."""
    steps, failed = {}, {}
    for method in config.methods:
        try:
            steps[method] = build_step(method, problem, pass_, inputs, config.activation)
        except METHOD_ERRORS as error:
            failed[method] = error
    timings, failed_timing = measure_interleaved(steps, config.warmup, config.repeats, config.device, METHOD_ERRORS)
    failed.update(failed_timing)
    if failed and torch.device(config.device).type == "cuda":
        torch.cuda.empty_cache()  # an out-of-memory failure should not starve the next rows
    dense_ms = timings["dense"].median_ms if "dense" in timings else None
    compacted_ms = timings["compacted"].median_ms if "compacted" in timings else None
    rows = []
    for method in config.methods:
        row = _row(config, problem, pass_, method)
        row["copies"] = len(inputs.xs)
        if method in timings:
            row.update(timings[method].summary())
        else:
            row.update(median_ms=None, q1_ms=None, q3_ms=None, min_ms=None, max_ms=None, repeats=0,
                       error=_error_text(failed[method]))
        row.update(dense_ms=dense_ms, compacted_ms=compacted_ms,
                   speedup_vs_dense=metrics.speedup(dense_ms, row["median_ms"]),
                   fraction_of_limit=metrics.fraction_of_limit(compacted_ms, row["median_ms"]),
                   ideal_speedup=metrics.ideal_speedup(problem.case, problem.density))
        rows.append(row)
    return rows


def run_kernel_benchmarks(config, progress=True):
    """All rows of the grid: per (shape, pass, case, density) one row per method, all methods on the
    same active blocks and inputs, their ratios taken against that group's own dense and compacted
    measurements."""
    rows = []
    # disable=None: tqdm draws only on a terminal, so a redirected log gets no carriage-return frames.
    bar = tqdm(total=config.group_count(), desc="amgp-bench", unit="row", file=sys.stderr,
               disable=None if progress else True, dynamic_ncols=True)
    with bar:
        for shape in config.shapes:
            copies = rotation_copies(shape, config.dtype, config.copies)
            inputs = make_inputs(shape, config.dtype, config.device, copies, config.seed)
            for pass_ in config.passes:
                for case in config.cases:
                    for density in config.densities:
                        bar.set_postfix_str(f"{shape} {pass_} {case} d={density:g}")
                        problem = make_problem(shape, case, density, config.block_size, config.seed, config.device)
                        rows += _measure_group(config, problem, pass_, inputs)
                        bar.update()
            del inputs
    return rows
