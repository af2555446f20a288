"""amgp.phases: phase lengths as steps or fractions (edges included), the phase of a step past the end, the
text describing a phase, and errors that name the argument and the numbers that do not fit."""
import pytest

from amgp.phases import Phase, describe_phase, phase_at, plan_phases


def test_fractions_at_the_edges_and_steps():
    assert [(p.kind, p.steps) for p in plan_phases(10, warmup=0.0, final_dense=0.5, dense_steps=0, cycles=1)] == [
        ("sparse", 5), ("final", 5)]
    phases = plan_phases(20, warmup=0.1, final_dense=0.2, dense_steps=1, cycles=2)
    assert [(p.kind, p.start, p.end) for p in phases] == [("warmup", 0, 2), ("sparse", 2, 9), ("dense", 9, 10),
                                                          ("sparse", 10, 16), ("final", 16, 20)]
    assert plan_phases(1, cycles=0) == [Phase(0, "dense", 0, 1)]


def test_a_fraction_of_one_is_the_whole_training():
    with pytest.raises(ValueError, match=r"the schedule does not fit in 8 steps: warmup 8 \+ final dense 1 \+ "
                                         r"0 dense phases of 0 leave -1 steps for 1 sparse phases"):
        plan_phases(8, warmup=1.0, final_dense=1, dense_steps=0, cycles=1)
    with pytest.raises(ValueError, match=r"3 dense phases of 2 leave"):
        plan_phases(8, warmup=1, final_dense=1, dense_steps=2, cycles=4)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"total_steps": 0}, ValueError, "^total_steps must be"),
    ({"total_steps": 5.0}, TypeError, "^total_steps must be"),
    ({"cycles": -1}, ValueError, "^cycles must be"),
    ({"cycles": "2"}, TypeError, "^cycles must be"),
    ({"warmup": 1.5}, ValueError, r"warmup as a fraction must be in \[0, 1\], got 1.5"),
    ({"warmup": -1}, ValueError, "warmup must be >= 0 steps, got -1"),
    ({"warmup": True}, TypeError, "warmup must be an int .steps. or a float fraction of the training, got True"),
    ({"warmup": "2"}, TypeError, "warmup must be an int"),
    ({"final_dense": 1.01}, ValueError, "final_dense as a fraction"),
    ({"final_dense": None}, TypeError, "final_dense must be an int"),
    ({"final_dense": 0}, ValueError, "final_dense must be at least 1 step"),
    ({"dense_steps": -0.5}, ValueError, "dense_steps as a fraction"),
    ({"dense_steps": [1]}, TypeError, "dense_steps must be an int"),
])
def test_bad_arguments_name_themselves(kwargs, error, message):
    with pytest.raises(error, match=message):
        plan_phases(**{"total_steps": 100, **kwargs})


def test_the_phase_of_a_step_and_its_description():
    phases = plan_phases(20, warmup=2, final_dense=4, dense_steps=1, cycles=2)
    assert phase_at(phases, 0) is phases[0] and phase_at(phases, 9).kind == "dense"
    assert phase_at(phases, 20) is phases[-1] and phase_at(phases, 500).kind == "final"
    assert describe_phase(phases[1]) == "sparse phase 1 (steps 2..8)"
    assert describe_phase(phases[-1]) == "final phase 4 (steps 16..19)"


def test_the_default_plan():
    """Defaults: warmup 10%, two sparse phases with 5% dense between them, final dense 20%."""
    assert [(p.kind, p.start, p.end) for p in plan_phases(100)] == [
        ("warmup", 0, 10), ("sparse", 10, 43), ("dense", 43, 48), ("sparse", 48, 80), ("final", 80, 100)]
