"""amgp.flops at the edges of its budgets: narrow widths solved exactly on the continuous cost (linear and
quadratic, with layers that keep their width), the error when a budget cannot be met, the cost of layers whose
outputs are not pruned, and static densities that spend exactly an attainable fraction."""
import math

import pytest

from amgp.dlrm import DLRM
from amgp.flops import LayerShape, gemm_training_flops, layer_shapes, mlp_flops_per_sample, narrow_sizes, \
    plan_fraction, static_density
from amgp.phases import Phase, plan_phases


def cost(mlps, scale):
    """The continuous dense cost of `mlps` with every hidden width scaled by `scale`."""
    total = 0
    for sizes in mlps:
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            total += gemm_training_flops(a, b) * scale ** (int(i > 0) + int(i + 2 < len(sizes)))
    return total


def test_mlp_flops_count_every_layer():
    assert mlp_flops_per_sample([10, 20, 1]) == 6 * (10 * 20 + 20 * 1)
    assert mlp_flops_per_sample([7, 3]) == 6 * 21


@pytest.mark.parametrize("mlps", [
    [[10, 20, 1]],                  # no hidden-to-hidden layer: linear in the scale
    [[10, 1], [10, 20, 1]],         # plus a layer that keeps its width
    [[10, 1], [4, 8, 8, 1]],        # quadratic, with a kept layer
    [[1, 2, 2, 1]],                 # linear and quadratic parts of equal size
])
@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.9])
def test_narrow_scale_spends_exactly_the_fraction(mlps, fraction):
    narrowed, scale = narrow_sizes(mlps, fraction)
    assert 0 < scale < 1
    assert cost(mlps, scale) == pytest.approx(fraction * cost(mlps, 1.0), rel=1e-12)
    for sizes, new in zip(mlps, narrowed):
        assert new == [sizes[0]] + [max(1, round(scale * w)) for w in sizes[1:-1]] + [sizes[-1]]


def test_narrow_widths_never_drop_below_one_channel():
    narrowed, scale = narrow_sizes([[10, 3, 1]], 0.1)
    assert narrowed == [[10, 1, 1]] and scale == pytest.approx(0.1)
    assert narrow_sizes([[10, 20, 1]], 1.0) == ([[10, 20, 1]], 1.0)


def test_a_budget_below_what_the_kept_layers_cost_is_refused():
    # c0 = 60 (the kept 10 -> 1 layer), c1 = 240, c2 = 384: the kept layer alone is 60 / 684 = 8.8%.
    with pytest.raises(ValueError, match=r"^a narrower model cannot spend as little as asked: the layers it keeps "
                                         r"alone cost 8\.8% of the dense FLOPs$"):
        narrow_sizes([[10, 1], [4, 8, 8, 1]], 0.05)
    # Exactly the kept layers' cost (1320 of 2640) leaves the narrowed layers nothing: refused too.
    with pytest.raises(ValueError, match=r"alone cost 50\.0% of the dense FLOPs$"):
        narrow_sizes([[220, 1], [10, 20, 1]], 0.5)


def test_a_layer_whose_outputs_are_not_pruned_keeps_its_output_cost():
    output_layer = LayerShape(8, 16, 4, prunes_in=True, prunes_out=False)
    assert output_layer.flops(0.5) == gemm_training_flops(4, 16) and output_layer.flops() == gemm_training_flops(8, 16)
    first_layer = LayerShape(8, 16, 4, prunes_in=False, prunes_out=True)
    assert first_layer.flops(0.5) == gemm_training_flops(8, 8)


def test_static_density_spends_exactly_an_attainable_fraction_at_the_lowest_density():
    shapes = layer_shapes(DLRM([5, 7, 3], 8, [4, 32, 16, 8], [48, 24, 1], block_size=8))
    static = plan_phases(50, warmup=5, final_dense=0, dense_steps=0, cycles=1, end_full_size=False)
    for kept in (0.25, 0.5, 0.75):
        fraction = plan_fraction(shapes, static, kept)  # attainable exactly
        density = static_density(shapes, static, fraction)
        assert plan_fraction(shapes, static, density) == fraction
        assert all(plan_fraction(shapes, static, s / 1000) < fraction for s in range(1, math.floor(density * 1000)))
    # The cheapest plan: one block per layer, reached from the lowest densities up.
    tiny = static_density(shapes, static, 0.01)
    assert plan_fraction(shapes, static, tiny) == plan_fraction(shapes, static, 1e-6) and tiny <= 1 / 8
    assert static_density(shapes, static, 1.0) == 1.0
    with pytest.raises(ValueError, match="^the static plan has no sparse steps: the warmup takes the whole training$"):
        static_density(shapes, [Phase(0, "warmup", 0, 5)], 0.5)


def test_static_density_for_a_budget_near_the_full_cost_is_a_density():
    # One pruned layer of 3 blocks: round(3 s) keeps all 3 only above s = 5/6.
    shapes = [LayerShape(8, 24, 8, prunes_in=False, prunes_out=True), LayerShape(24, 1, 8, prunes_in=True,
                                                                                 prunes_out=False)]
    static = plan_phases(10, warmup=1, final_dense=0, dense_steps=0, cycles=1, end_full_size=False)
    density = static_density(shapes, static, 0.999)
    assert 5 / 6 < density <= 1 and plan_fraction(shapes, static, density) >= 0.999
