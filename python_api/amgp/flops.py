"""MLP training FLOPs predicted from the layer shapes, and the baselines that spend the same budget.

A training step costs 3 x the forward GEMM FLOPs per sample (forward, input gradient, weight gradient):
gemm_training_flops(in, out) = 6 * in * out per layer, the one formula that both these predictions and
the trainer's cost meter (amgp.meter) use. Pruning to density s keeps
blocks_kept(n, s) of a selected layer's n output blocks, so a layer whose outputs are pruned costs
about s of its dense FLOPs, and a hidden layer whose inputs are pruned too about s^2. From this,
without training anything:
- plan_fraction: the fraction of the dense MLP training FLOPs that a phase plan at density s spends;
- static_density: the density at which static pruning (dense warmup, then pruned to the end) spends
  (at least) a given fraction;
- narrow_sizes: the hidden widths, all scaled by one factor, at which dense training spends it.
"""
import dataclasses
import math

from amgp_kernels.blocks import num_blocks

from .pruning import blocks_kept, selected_layers
from .sparse_linear import SparseLinear


def gemm_training_flops(in_features, out_features):
    """Training FLOPs per sample of one in -> out GEMM: forward, input gradient and weight gradient,
    each 2 * in * out multiply-adds."""
    return 6 * in_features * out_features


def active_flops_per_sample(layers):
    """(dense, active) training FLOPs per sample of the SparseLinear `layers`, active with their current
    masks (read on the host: call it when a mask changes, not every step)."""
    dense = active = 0
    for layer in layers:
        layer.refresh_indices()
        dense += gemm_training_flops(layer.in_features, layer.out_features)
        active += gemm_training_flops(int(layer.in_channel_mask.sum()), int(layer.out_channel_mask.sum()))
    return dense, active


@dataclasses.dataclass(frozen=True)
class LayerShape:
    """One SparseLinear layer as the FLOP count sees it."""
    in_features: int
    out_features: int
    block_size: int
    prunes_in: bool   # its inputs are a pruned layer's outputs
    prunes_out: bool  # its own output blocks are pruned

    def flops(self, density=1.0):
        """Training FLOPs per sample with the pruned sides at `density` (blocks kept as the schedule keeps them)."""
        inputs = kept_channels(self.in_features, self.block_size, density) if self.prunes_in else self.in_features
        outputs = kept_channels(self.out_features, self.block_size, density) if self.prunes_out else self.out_features
        return gemm_training_flops(inputs, outputs)


def kept_channels(features, block_size, density):
    """Channels of the blocks kept at `density`, counting every kept block as full (with a short last
    block the true count is lower by less than one block when that block is among the kept)."""
    return min(blocks_kept(num_blocks(features, block_size), density) * block_size, features)


def layer_shapes(model, layers=None):
    """LayerShape of every SparseLinear in `model`, marked as GrowPruneSchedule(model, layers=layers) prunes."""
    selected = selected_layers(model, layers)
    pruned_out = {id(layer) for _, layer, _ in selected}
    pruned_in = {id(consumer) for _, _, consumers in selected for consumer in consumers}
    return [LayerShape(m.in_features, m.out_features, m.block_size, id(m) in pruned_in, id(m) in pruned_out)
            for m in model.modules() if isinstance(m, SparseLinear)]


def flops_per_sample(shapes, density=1.0):
    return sum(shape.flops(density) for shape in shapes)


def mlp_flops_per_sample(sizes):
    """Dense training FLOPs per sample of an MLP with widths `sizes`."""
    return sum(gemm_training_flops(a, b) for a, b in zip(sizes[:-1], sizes[1:]))


def plan_fraction(shapes, phases, density):
    """Fraction of the dense MLP training FLOPs spent by training through `phases` (schedule.Phase list)
    with sparse phases at `density`, every step on the same number of samples."""
    dense = flops_per_sample(shapes)
    sparse = flops_per_sample(shapes, density)
    steps = sum(phase.steps for phase in phases)
    return sum(phase.steps * (sparse if phase.sparse else dense) for phase in phases) / (dense * steps)


def static_density(shapes, phases, fraction):
    """The lowest density at which training through `phases` (dense warmup, then sparse to the end)
    spends at least `fraction` of the dense MLP training FLOPs, so the baseline never gets less budget
    than asked. A layer keeps blocks_kept(n, s) of its n output blocks, so the cost is a step function
    of s (a hidden layer's steps scale with in x out): it only changes at the points (k + 1/2) / n, so
    those points (where round() goes to even) and the middle of each interval between them are all the
    densities there are to try. 1.0 if nothing lower will do."""
    if not any(phase.sparse for phase in phases):
        raise ValueError("the static plan has no sparse steps: the warmup takes the whole training")
    if fraction >= 1 - 1e-12:
        return 1.0
    block_counts = {num_blocks(shape.out_features, shape.block_size) for shape in shapes if shape.prunes_out}
    edges = sorted({(k + 0.5) / n for n in block_counts for k in range(n)} | {0.0, 1.0})
    middles = [(low + high) / 2 for low, high in zip(edges, edges[1:])]
    for density in sorted(set(edges[1:]) | set(middles)):
        if plan_fraction(shapes, phases, density) >= fraction - 1e-12:
            return density
    return 1.0


def narrow_sizes(mlps, fraction):
    """Scale the hidden widths of every MLP in `mlps` (lists of widths; the first and last widths stay)
    by one factor r so that their dense training FLOPs are `fraction` of the original ones: solved on
    the continuous cost, then each width rounded to the nearest channel (at least 1). Returns
    (new width lists, r)."""
    coefficients = [0, 0, 0]
    for sizes in mlps:
        for i in range(len(sizes) - 1):
            hidden_sides = int(i > 0) + int(i + 1 < len(sizes) - 1)
            coefficients[hidden_sides] += gemm_training_flops(sizes[i], sizes[i + 1])
    scale = _solve_increasing(coefficients, fraction * sum(coefficients), "a narrower model")
    narrowed = [[sizes[0]] + [max(1, round(scale * width)) for width in sizes[1:-1]] + [sizes[-1]]
                for sizes in mlps]
    return narrowed, scale


def _solve_increasing(coefficients, target, what):
    """The x in (0, 1] with c0 + c1 x + c2 x^2 = target (1.0 when even x = 1 costs no more than target)."""
    c0, c1, c2 = coefficients
    if target >= c0 + c1 + c2:
        return 1.0
    if target <= c0 or c1 + c2 == 0:
        raise ValueError(f"{what} cannot spend as little as asked: the layers it keeps alone cost "
                         f"{c0 / (c0 + c1 + c2):.1%} of the dense FLOPs")
    if c2 == 0:
        return (target - c0) / c1
    return (-c1 + math.sqrt(c1 * c1 + 4 * c2 * (target - c0))) / (2 * c2)
