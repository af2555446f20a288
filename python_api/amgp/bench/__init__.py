"""amgp.bench: kernel and training-step benchmarks behind the `amgp-bench` command.

cases (shapes, presets, active blocks), methods (dense / gather_mm_scatter / compacted / our
backends), timing, runner (the kernel grid), training (training-step benchmark), metrics (ratios),
machine (context recorded with results), report (markdown + JSON), plot (PNG), cli.
"""
from .cases import CASES, DENSITIES, DLRM_CONFIGS, PASSES, Shape, make_problem, parse_shape, preset_shapes
from .methods import BASELINES, build_step, default_backends, make_inputs
from .runner import KernelBenchConfig, run_kernel_benchmarks
from .timing import Timing, measure

__all__ = [
    "BASELINES", "CASES", "DENSITIES", "DLRM_CONFIGS", "KernelBenchConfig", "PASSES", "Shape", "Timing",
    "build_step", "default_backends", "make_inputs", "make_problem", "measure", "parse_shape", "preset_shapes",
    "run_kernel_benchmarks",
]
