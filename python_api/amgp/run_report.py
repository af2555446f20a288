"""The report of a training run: test metrics, what training cost (the cost meter), the phase plan,
where it ran, and whether the ranks agree. Its keys are what `--report-json` writes."""
import dataclasses

import amgp_kernels
from amgp_kernels.backends import auto_backend

from . import distributed


def run_report(trainer, metrics):
    """The report dict of `trainer` after training, with `metrics` measured on its test split."""
    costs = trainer.meter.summary()
    other_times = trainer.meter.other_times
    return {
        "mode": trainer.config.mode,
        "engine": trainer.config.engine,
        "steps": trainer.step,
        "total_steps": trainer.total_steps,
        "test_auc": metrics["auc"],
        "test_logloss": metrics["logloss"],
        "test_accuracy": metrics["accuracy"],
        **costs,
        "phases": [dataclasses.asdict(p) for p in trainer.schedule.phases],
        "wall_time_s": sum(costs["phase_times_s"].values()),
        "data_time_s": other_times.get("data", 0.0),
        "eval_time_s": other_times.get("eval", 0.0),
        "final_density": trainer.schedule.density,
        "lines_skipped": getattr(trainer.data, "lines_skipped", 0),  # malformed Criteo lines (skip_malformed)
        "backend": backend_name(trainer.config.backend, trainer.device),
        "device": str(trainer.device),
        "world_size": distributed.world_size(),
        # Bit-for-bit comparison of every parameter and mask with rank 0's (empty: in sync).
        "ranks_differing_state": distributed.differing_state(trainer.replicated_module()),
        "history": trainer.history,
    }


def backend_name(requested, device):
    """The block_linear backend that runs on `device` when `requested` (None: the process default)."""
    name = requested or amgp_kernels.get_backend()
    return auto_backend(device) if name == "auto" else name
