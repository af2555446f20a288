"""Timing of step(i) callables: warmup, then `repeats` timed calls each (CUDA events on GPU, a
monotonic clock on CPU), summarised by median, quartiles and min/max.

Several steps are timed interleaved (round-robin, rotating who goes first), so a slow spell of a
shared machine hits every method of a row alike instead of skewing one of them.
"""
import time
from dataclasses import dataclass

import numpy as np
import torch

from amgp_kernels.checks import check_int


@dataclass(frozen=True)
class Timing:
    samples_ms: tuple

    @property
    def median_ms(self):
        return float(np.median(self.samples_ms))

    @property
    def q1_ms(self):
        return float(np.percentile(self.samples_ms, 25))

    @property
    def q3_ms(self):
        return float(np.percentile(self.samples_ms, 75))

    @property
    def min_ms(self):
        return float(min(self.samples_ms))

    @property
    def max_ms(self):
        return float(max(self.samples_ms))

    def summary(self):
        return {"median_ms": self.median_ms, "q1_ms": self.q1_ms, "q3_ms": self.q3_ms, "min_ms": self.min_ms,
                "max_ms": self.max_ms, "repeats": len(self.samples_ms)}


def _check_counts(warmup, repeats):
    check_int(warmup, "warmup", minimum=0)
    check_int(repeats, "repeats", minimum=1)


class _Clock:
    """Brackets calls with CUDA events (read after one final sync) or with perf_counter."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"
        if self.cuda:
            torch.cuda.synchronize()

    def call(self, step, i):
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step(i)
            end.record()
            return lambda: start.elapsed_time(end)
        start = time.perf_counter()
        step(i)
        elapsed = (time.perf_counter() - start) * 1e3
        return lambda: elapsed

    def finish(self):
        if self.cuda:
            torch.cuda.synchronize()


def measure_interleaved(steps, warmup, repeats, device="cpu", errors=()):
    """Time each step(i) of the dict `steps` (i = 0, 1, ... per step, for input rotation).

    Returns ({name: Timing}, {name: exception}): a step raising one of `errors` is dropped and its
    exception returned instead of ending the measurement of the others.
    """
    _check_counts(warmup, repeats)
    failed, live = {}, dict(steps)

    def attempt(name, fn):
        try:
            return fn()
        except errors as error:
            failed[name] = error
            live.pop(name, None)
            return None

    for name, step in list(live.items()):
        attempt(name, lambda: [step(i) for i in range(warmup)])
    clock = _Clock(device)
    readers = {name: [] for name in live}
    for r in range(repeats):
        order = list(live)
        order = order[r % len(order):] + order[:r % len(order)] if order else order
        for name in order:
            reader = attempt(name, lambda: clock.call(live[name], warmup + r))
            if reader is not None:
                readers[name].append(reader)
    clock.finish()
    timings = {name: Timing(tuple(read() for read in readers[name])) for name in live}
    return timings, failed


def measure(step, warmup, repeats, device="cpu"):
    """Time one step(i): `warmup` untimed calls, then `repeats` timed ones."""
    timings, _ = measure_interleaved({"step": step}, warmup, repeats, device)
    return timings["step"]
