"""The phase plan of alternate growth and pruning: warmup (dense) -> sparse -> dense -> ... -> final dense.

A plan is a list of Phases covering steps [0, total_steps). It says only *when* the model is pruned
(the first step of each sparse phase) and grown back (the first step of each later dense phase); what
is pruned and how it grows is the block pruner's job (amgp.pruner).
"""
import dataclasses

from amgp_kernels.checks import check_int

PHASE_KINDS = ("warmup", "sparse", "dense", "final")  # all but "sparse" train the full model


@dataclasses.dataclass(frozen=True)
class Phase:
    """Steps [start, end) of one phase; kind is one of PHASE_KINDS (only "sparse" is pruned)."""
    index: int
    kind: str
    start: int
    end: int

    @property
    def sparse(self):
        return self.kind == "sparse"

    @property
    def steps(self):
        return self.end - self.start


def phase_steps(value, total_steps, name):
    """A phase length given as steps (int >= 0) or as a fraction of total_steps (float in [0, 1])."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be an int (steps) or a float fraction of the training, got {value!r}")
    if isinstance(value, float):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} as a fraction must be in [0, 1], got {value}")
        return round(value * total_steps)
    if value < 0:
        raise ValueError(f"{name} must be >= 0 steps, got {value}")
    return value


def plan_phases(total_steps, warmup=0.1, final_dense=0.2, dense_steps=0.05, cycles=2, end_full_size=True):
    """The phase list: warmup, then `cycles` sparse phases of equal length separated by dense
    phases of `dense_steps`, then the final dense phase (at least one step, so that training ends
    full-size). Empty phases are left out. cycles=0: one dense phase (the dense baseline).
    end_full_size=False allows final_dense=0: training ends pruned (the static-pruning baseline is
    cycles=1, final_dense=0: prune once after the warmup, train pruned to the end)."""
    check_int(total_steps, "total_steps", minimum=1)
    check_int(cycles, "cycles", minimum=0)
    if cycles == 0:
        return [Phase(0, "dense", 0, total_steps)]
    warm = phase_steps(warmup, total_steps, "warmup")
    final = phase_steps(final_dense, total_steps, "final_dense")
    between = phase_steps(dense_steps, total_steps, "dense_steps")
    if final < 1 and end_full_size:
        raise ValueError(f"final_dense must be at least 1 step so that training ends full-size, got {final_dense!r}")
    sparse_total = total_steps - warm - final - (cycles - 1) * between
    if sparse_total < cycles:
        raise ValueError(
            f"the schedule does not fit in {total_steps} steps: warmup {warm} + final dense {final} + "
            f"{cycles - 1} dense phases of {between} leave {sparse_total} steps for {cycles} sparse phases")
    kinds_and_lengths = [("warmup", warm)]
    for cycle in range(cycles):
        length = sparse_total // cycles + (1 if cycle < sparse_total % cycles else 0)
        kinds_and_lengths.append(("sparse", length))
        if cycle < cycles - 1:
            kinds_and_lengths.append(("dense", between))
    kinds_and_lengths.append(("final", total_steps - sum(length for _, length in kinds_and_lengths)))
    phases, start = [], 0
    for kind, length in kinds_and_lengths:
        if length > 0:
            phases.append(Phase(len(phases), kind, start, start + length))
            start += length
    return phases


def phase_at(phases, step):
    """The phase of `phases` that holds `step` (the last one for steps past the end)."""
    for phase in phases:
        if phase.start <= step < phase.end:
            return phase
    return phases[-1]


def describe_phase(phase):
    return f"{phase.kind} phase {phase.index} (steps {phase.start}..{phase.end - 1})"
