"""CostMeter's report and checkpoint state: the summary a run report shows, times per phase kind and per
activity, and a state_dict that resumes counting exactly (older states without every key load as zeros)."""
import torch

from amgp import SparseMLP
from amgp.meter import CostMeter
from amgp.phases import PHASE_KINDS


def counted_meter():
    torch.manual_seed(0)
    model = SparseMLP([8, 16, 1], block_size=4)
    meter = CostMeter(model)
    meter.record_step("dense", 10)
    model.set_out_mask(0, torch.tensor([True, False, False, True]))
    meter.record_step("sparse", 10)
    meter.add_time("dense", 1.5)
    meter.add_time("dense", 0.5)
    meter.add_time("evaluation", 2.0)
    meter.add_time("evaluation", 1.0)
    return model, meter


def test_summary_reports_flops_samples_and_time_per_phase_kind():
    _, meter = counted_meter()
    dense = 6 * (8 * 16 + 16 * 1)  # forward + backward, per sample
    sparse = 6 * (8 * 8 + 8 * 1)
    assert meter.summary() == {
        "mlp_flops_dense": 20 * dense, "mlp_flops_computed": 10 * dense + 10 * sparse,
        "mlp_flops_saving": 1 - (dense + sparse) / (2 * dense), "samples": 20,
        "phase_times_s": {**dict.fromkeys(PHASE_KINDS, 0.0), "dense": 2.0},
        "phase_steps": {**dict.fromkeys(PHASE_KINDS, 0), "dense": 1, "sparse": 1},
        # one process: no gradient all-reduce, so none of its bytes
        **{name: dict.fromkeys(PHASE_KINDS, 0) for name in ("allreduce_bytes", "allreduce_bytes_full",
                                                            "mlp_allreduce_bytes", "mlp_allreduce_bytes_full")}}
    assert meter.other_times == {"evaluation": 3.0}


def test_state_dict_resumes_counting_exactly():
    model, meter = counted_meter()
    resumed = CostMeter(model)
    resumed.load_state_dict(meter.state_dict())
    assert resumed.state_dict() == meter.state_dict()
    assert resumed.summary() == meter.summary() and resumed.other_times == {"evaluation": 3.0}
    for m in (meter, resumed):
        m.record_step("sparse", 5)
        m.add_time("evaluation", 1.0)
    assert resumed.state_dict() == meter.state_dict()
    # The loaded meter has its own counters: changing the state it came from changes nothing.
    state = meter.state_dict()
    again = CostMeter(model)
    again.load_state_dict(state)
    state["phase_steps"]["dense"] = 99
    state["other_times"]["evaluation"] = 99.0
    assert again.state_dict() == meter.state_dict()


def test_a_state_without_the_newer_keys_loads_as_zeros():
    model, meter = counted_meter()
    meter.load_state_dict({"phase_steps": dict.fromkeys(PHASE_KINDS, 0), "phase_times": dict.fromkeys(PHASE_KINDS, 0.0)})
    assert meter.samples == meter.flops_dense == meter.flops_computed == 0 and meter.other_times == {}
    meter.record_step("dense", 2)
    meter.add_time("evaluation", 1.0)
    assert meter.samples == 2 and meter.other_times == {"evaluation": 1.0}
