"""The cost meter: what training has spent, counted by whoever runs the steps (amgp's Trainer).

Per phase kind: steps and wall time; over the run: samples and MLP training FLOPs, dense (every block
active) and computed (the active blocks only), with the one formula of amgp.flops. FLOPs per sample
are re-read from the masks only when a mask has changed, so counting a step never syncs with a GPU.
Under several ranks, per phase kind: the gradient bytes all-reduced and those DDP's own all-reduce would
have sent (counted by amgp.comm_hook), in total and for the SparseLinear weights ("mlp_").
"""
import time

import torch

from .comm_hook import COUNTS as ALLREDUCE_COUNTS
from .flops import active_flops_per_sample
from .phases import PHASE_KINDS
from .sparse_linear import SparseLinear

_COUNTERS = ("samples", "flops_dense", "flops_computed")


class CostMeter:
    """Counts the training of `model`'s SparseLinear layers: call record_step(kind, samples) after
    every step (kind: the phase kind of the step, see amgp.phases) and add_time(name, seconds) for the
    wall time of a phase kind's steps or of anything else (data loading, evaluation)."""

    def __init__(self, model):
        self.layers = [m for m in model.modules() if isinstance(m, SparseLinear)]
        self.samples = self.flops_dense = self.flops_computed = 0
        self.phase_steps = dict.fromkeys(PHASE_KINDS, 0)
        self.phase_times = dict.fromkeys(PHASE_KINDS, 0.0)
        self.other_times = {}
        self.allreduce = {name: dict.fromkeys(PHASE_KINDS, 0) for name in ALLREDUCE_COUNTS}
        self._mask_versions = None
        self._per_sample = (0, 0)

    def flops_per_sample(self):
        """(dense, active) MLP training FLOPs per sample with the masks as they are now."""
        versions = tuple(layer.mask_version for layer in self.layers)
        if versions != self._mask_versions:
            self._per_sample = active_flops_per_sample(self.layers)
            self._mask_versions = versions
        return self._per_sample

    def record_step(self, kind, samples):
        """One finished training step of `samples` samples in a phase of `kind`."""
        if kind not in PHASE_KINDS:
            raise ValueError(f"kind must be one of {PHASE_KINDS}, got {kind!r}")
        dense, active = self.flops_per_sample()
        self.samples += samples
        self.flops_dense += dense * samples
        self.flops_computed += active * samples
        self.phase_steps[kind] += 1

    def record_allreduce(self, kind, counts):
        """Gradient bytes all-reduced by a step in a phase of `kind`: {name: bytes} for ALLREDUCE_COUNTS."""
        if kind not in PHASE_KINDS:
            raise ValueError(f"kind must be one of {PHASE_KINDS}, got {kind!r}")
        for name in ALLREDUCE_COUNTS:
            self.allreduce[name][kind] += counts[name]

    def add_time(self, name, seconds):
        """`seconds` more spent in the steps of phase kind `name`, or on the activity `name`."""
        times = self.phase_times if name in PHASE_KINDS else self.other_times
        times[name] = times.get(name, 0.0) + seconds

    def timed(self, name, work, device):
        """work(), with its wall time (the GPU's work included) added under `name`."""
        started = time.perf_counter()
        result = work()
        if device.type == "cuda":
            torch.cuda.synchronize()
        self.add_time(name, time.perf_counter() - started)
        return result

    @property
    def flops_saving(self):
        return 0.0 if self.flops_dense == 0 else 1.0 - self.flops_computed / self.flops_dense

    def summary(self):
        return {
            "mlp_flops_dense": self.flops_dense,
            "mlp_flops_computed": self.flops_computed,
            "mlp_flops_saving": self.flops_saving,
            "samples": self.samples,
            "phase_times_s": dict(self.phase_times),
            "phase_steps": dict(self.phase_steps),
            **{name: dict(per_kind) for name, per_kind in self.allreduce.items()},
        }

    def state_dict(self):
        return {**{key: getattr(self, key) for key in _COUNTERS}, "phase_steps": dict(self.phase_steps),
                "phase_times": dict(self.phase_times), "other_times": dict(self.other_times),
                "allreduce": {name: dict(per_kind) for name, per_kind in self.allreduce.items()}}

    def load_state_dict(self, state):
        for key in _COUNTERS:
            setattr(self, key, state.get(key, 0))
        self.phase_steps = dict(state["phase_steps"])
        self.phase_times = dict(state["phase_times"])
        self.other_times = dict(state.get("other_times", {}))
        saved = state.get("allreduce", {})  # none in checkpoints from before the hook
        self.allreduce = {name: {**dict.fromkeys(PHASE_KINDS, 0), **saved.get(name, {})} for name in ALLREDUCE_COUNTS}
