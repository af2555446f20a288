"""amgp.flops: FLOPs predicted from the layer shapes equal what the cost meter counts under a GrowPruneSchedule, and the
static density / narrow widths that spend a given fraction of the dense MLP training FLOPs."""
import pytest

from amgp.dlrm import DLRM
from amgp.flops import (flops_per_sample, kept_channels, layer_shapes, mlp_flops_per_sample, narrow_sizes,
                        plan_fraction, static_density)
from amgp.meter import CostMeter
from amgp.schedule import GrowPruneSchedule, Phase, plan_phases

TABLES = [5, 7, 3]


def model(bottom=(4, 32, 16, 8), top=(48, 24, 1), block_size=8):
    return DLRM(TABLES, 8, list(bottom), list(top), block_size=block_size)


def counted_fraction(net, steps, density, **plan):
    """Train-free run of the schedule: the fraction of the dense FLOPs it counts over `steps` steps."""
    schedule = GrowPruneSchedule(net, steps, density=density, **plan)
    meter = CostMeter(net)
    for _ in range(steps):
        kind = schedule.phase.kind
        schedule.before_step()
        schedule.after_step()
        meter.record_step(kind, 16)
    return meter.flops_computed / meter.flops_dense


def test_layer_shapes_mark_the_layers_the_schedule_prunes():
    shapes = layer_shapes(model())
    # bottom 4-32-16-8 and top (8 + 6)-48-24-1: hidden layers prune their outputs, the next layer's inputs follow.
    assert [(s.in_features, s.out_features, s.prunes_in, s.prunes_out) for s in shapes] == [
        (4, 32, False, True), (32, 16, True, True), (16, 8, True, False),
        (14, 48, False, True), (48, 24, True, True), (24, 1, True, False)]
    top_only = layer_shapes(model(), layers=["top_l"])
    assert [s.prunes_out for s in top_only] == [False, False, False, True, True, False]
    assert flops_per_sample(shapes) == 6 * (4 * 32 + 32 * 16 + 16 * 8 + 14 * 48 + 48 * 24 + 24)


@pytest.mark.parametrize("density, plan", [
    (0.5, dict(warmup=2, final_dense=3, dense_steps=1, cycles=2)),
    (0.3, dict(warmup=0.1, final_dense=0.2, dense_steps=0.05, cycles=3)),
    (0.7, dict(warmup=4, final_dense=0, dense_steps=0, cycles=1, end_full_size=False)),  # static
])
def test_predicted_fraction_is_what_the_schedule_counts(density, plan):
    net = model()
    steps = 40
    phases = plan_phases(steps, **plan)
    predicted = plan_fraction(layer_shapes(net), phases, density)
    assert predicted == pytest.approx(counted_fraction(net, steps, density, **plan), rel=1e-12)
    assert predicted < 1


def test_static_density_is_the_lowest_whole_block_density_that_spends_the_budget():
    shapes = layer_shapes(model())
    static = plan_phases(50, warmup=5, final_dense=0, dense_steps=0, cycles=1, end_full_size=False)
    for target in (0.3, 0.45, 0.6, 0.8):
        density = static_density(shapes, static, target)
        assert plan_fraction(shapes, static, density) >= target
        # A lower density either keeps the same blocks or spends less than the target.
        for lower in (s / 200 for s in range(1, round(density * 200))):
            spent = plan_fraction(shapes, static, lower)
            assert spent < target or spent == plan_fraction(shapes, static, density)
    assert static_density(shapes, static, 1.0) == 1.0
    with pytest.raises(ValueError, match="no sparse steps"):
        static_density(shapes, [Phase(0, "warmup", 0, 5)], 0.5)


def test_hidden_layers_cost_scales_with_in_times_out_density():
    """Widths that are whole blocks at density 1/2: the middle layer costs a quarter, the edges half."""
    shapes = layer_shapes(DLRM([3], 8, [4, 64, 8], [64, 64, 1], block_size=8))
    assert kept_channels(64, 8, 0.5) == 32
    dense, half = flops_per_sample(shapes), flops_per_sample(shapes, 0.5)
    top_in = 8 + 1
    expected = 6 * (4 * 32 + 32 * 8 + top_in * 32 + 32 * 32 + 32 * 1)
    assert half == expected and dense == 6 * (4 * 64 + 64 * 8 + top_in * 64 + 64 * 64 + 64)


def test_narrow_sizes_keep_input_and_output_widths_and_match_the_fraction():
    mlps = [[13, 512, 256, 64, 16], [367, 1024, 1024, 512, 1]]
    for fraction in (0.3, 0.54, 0.9):
        narrowed, scale = narrow_sizes(mlps, fraction)
        assert [m[0] for m in narrowed] == [13, 367] and [m[-1] for m in narrowed] == [16, 1]
        assert narrowed[1][1] == round(1024 * scale)
        spent = sum(mlp_flops_per_sample(m) for m in narrowed) / sum(mlp_flops_per_sample(m) for m in mlps)
        assert spent == pytest.approx(fraction, rel=0.01)  # rounding to whole channels
    assert narrow_sizes(mlps, 1.0) == (mlps, 1.0)
    with pytest.raises(ValueError, match="cannot spend as little"):
        narrow_sizes([[1000, 1000], [4, 4, 4]], 0.5)

