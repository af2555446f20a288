"""The alternate grow/prune schedule: warmup (dense) -> sparse -> dense -> ... -> sparse -> final dense.

At the first step of a sparse phase every selected layer is pruned to its target density (by the
chosen importance criterion); at the first step of a dense phase every block is grown back (by the
chosen growth init). Masks and index lists change only at these phase boundaries. The schedule also
counts MLP training FLOPs (dense vs computed) and wall time per phase.
"""
import dataclasses

import torch

from .pruning import (GROWTH_INITS, NOTHING_TO_PRUNE, block_magnitude, keep_top_blocks, prunable_layers,
                      set_block_masks_, weight_density)
from .sparse_linear import SparseLinear

CRITERIA = ("magnitude", "taylor")
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
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps <= 0:
        raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
    if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 0:
        raise ValueError(f"cycles must be an int >= 0, got {cycles!r}")
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


def selected_layers(model, layers=None):
    """(name, layer, consumers) of every prunable layer of `model` (see pruning.prunable_layers) whose
    name starts with one of the prefixes in `layers` (None: all)."""
    names = {id(m): name for name, m in model.named_modules()}
    pairs = all_pairs = [(names[id(layer)], layer, consumers) for layer, consumers in prunable_layers(model)]
    if not pairs:
        raise ValueError(NOTHING_TO_PRUNE)
    if layers is not None:
        prefixes = [layers] if isinstance(layers, str) else list(layers)
        pairs = [p for p in pairs if any(p[0].startswith(prefix) for prefix in prefixes)]
        if not pairs:
            raise ValueError(f"layers {prefixes} match no prunable layer; prunable layers: "
                             f"{[name for name, _, _ in all_pairs]}")
    return pairs


class GrowPruneSchedule:
    """Alternate model growth and pruning over every SparseLinear / SparseMLP in `model`.

    Call `before_step()` before each training step (it applies a phase change when one starts at
    this step and returns the new Phase, else None) and `after_step(batch_size)` after the
    optimizer step. `density` is the fraction of output channel blocks each pruned layer keeps in
    sparse phases: one float, or {layer name: float} (layers not named stay dense). `layers`
    limits pruning to layers whose name starts with one of the given prefixes. Phase lengths are
    steps (int) or fractions of total_steps (float); see plan_phases.

    criterion: "magnitude" (block's incoming weight norm x outgoing weight norm) or "taylor"
    (|sum over the batch of activation x gradient| per channel, summed over the block, accumulated
    over the dense steps before each pruning). growth: "function_preserving" (default), "zero",
    "restore" (see pruning.init_grown_). With `optimizer`, pruned optimizer state is zeroed.
    end_full_size=False lets the plan end in a sparse phase (final_dense=0; see plan_phases).
    """

    def __init__(self, model, total_steps, optimizer=None, density=0.5, warmup=0.1, final_dense=0.2,
                 dense_steps=0.05, cycles=2, criterion="magnitude", growth="function_preserving", layers=None,
                 seed=0, end_full_size=True):
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
        if growth not in GROWTH_INITS:
            raise ValueError(f"growth must be one of {GROWTH_INITS}, got {growth!r}")
        self.model = model
        self.optimizer = optimizer
        self.criterion = criterion
        self.growth = growth
        self.seed = seed
        self.total_steps = total_steps
        self.phases = plan_phases(total_steps, warmup, final_dense, dense_steps, cycles, end_full_size)
        # A plan without sparse phases never touches the masks: it only counts (a pruned model stays pruned).
        self.changes_masks = any(phase.sparse for phase in self.phases)
        self.pairs, self.densities = self._select_layers(model, density, layers)
        self.linear_layers = [m for m in model.modules() if isinstance(m, SparseLinear)]
        self.step_count = 0
        self.samples = 0
        self.flops_dense = 0
        self.flops_computed = 0
        self.phase_times = {kind: 0.0 for kind in PHASE_KINDS}
        self.phase_steps = {kind: 0 for kind in PHASE_KINDS}
        self._applied_phase = None  # index of the phase whose masks the model holds
        self._snapshots = {}  # name -> (weight, bias) at pruning time, for growth="restore"
        # Kept on the layer's device: accumulating must not sync with the host every step.
        self._taylor = {name: torch.zeros(layer.n_out_blocks, dtype=torch.float64, device=layer.weight.device)
                        for name, layer, _ in self.pairs}
        self._hooks = [layer.register_forward_hook(self._taylor_hook(name))
                       for name, layer, _ in self.pairs] if criterion == "taylor" else []
        self._refresh_flops()

    # ----- layer selection ---------------------------------------------------------------------
    @staticmethod
    def _select_layers(model, density, layers):
        pairs = selected_layers(model, layers)
        if isinstance(density, dict):
            unknown = sorted(set(density) - {name for name, _, _ in pairs})
            if unknown:
                raise ValueError(f"density names unknown layers {unknown}; prunable layers: {[p[0] for p in pairs]}")
            densities = {name: density.get(name, 1.0) for name, _, _ in pairs}
        else:
            densities = {name: density for name, _, _ in pairs}
        for name, value in densities.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise ValueError(f"density for layer {name!r} must be in (0, 1], got {value!r}")
        return pairs, densities

    # ----- the step protocol -------------------------------------------------------------------
    def phase_at(self, step):
        for phase in self.phases:
            if phase.start <= step < phase.end:
                return phase
        return self.phases[-1]

    @property
    def phase(self):
        """The phase of the next (or current) step."""
        return self.phase_at(self.step_count)

    def before_step(self):
        """Apply the masks of the phase this step belongs to if the model does not hold them yet;
        return that Phase on a change, else None."""
        phase = self.phase
        if self._applied_phase == phase.index:
            return None
        if not self.changes_masks:
            self._applied_phase = phase.index
            return None
        self.apply_masks(self.decide_masks(phase))
        self._applied_phase = phase.index
        if phase.sparse:
            self._reset_taylor()
        return phase

    def after_step(self, batch_size, seconds=None):
        """Count one finished training step of `batch_size` samples (and its wall time, if given)."""
        kind = self.phase.kind
        self.samples += batch_size
        self.flops_dense += self._dense_flops_per_sample * batch_size
        self.flops_computed += self._active_flops_per_sample * batch_size
        self.phase_steps[kind] += 1
        if seconds is not None:
            self.phase_times[kind] += seconds
        self.step_count += 1

    # ----- decisions: decide_masks reads only this rank's model (and Taylor scores); under DDP run
    # it on rank 0, broadcast the masks, and call apply_masks on every rank (its growth draws are
    # seeded by (seed, step), so every rank grows the same weights). ------------------------------
    @torch.no_grad()
    def decide_masks(self, phase):
        """{layer name: bool block mask} for `phase`: all-active in dense phases; in sparse phases
        the top blocks by the criterion (scored on the current, dense, weights)."""
        masks = {}
        for name, layer, consumers in self.pairs:
            if not phase.sparse or self.densities[name] >= 1.0:
                masks[name] = torch.ones(layer.n_out_blocks, dtype=torch.bool, device=layer.out_mask.device)
                continue
            if self.criterion == "taylor" and bool(self._taylor[name].any()):
                score = self._taylor[name].to(layer.out_mask.device)
            else:
                score = block_magnitude(layer, consumers)
            masks[name] = keep_top_blocks(score, self.densities[name])
        return masks

    def apply_masks(self, masks):
        """Set the masks decided by decide_masks: prune (zero weights, bias, optimizer state) and
        grow (init per `growth`) as needed. The only place masks change."""
        layers = self._involved_layers()
        if self.growth == "restore" and any(not bool(mask.all()) for mask in masks.values()):
            self._snapshots = {name: (m.weight.detach().clone(), None if m.bias is None else m.bias.detach().clone())
                               for name, m in layers.items()}
        # Seeded by (seed, step): every rank, and a resumed run, draws the same grown weights.
        generator = torch.Generator().manual_seed(hash((self.seed, self.step_count)) % (2**63))
        set_block_masks_([(layer, consumers) for _, layer, consumers in self.pairs],
                         [masks[name] for name, _, _ in self.pairs],
                         self.optimizer, self.growth, generator,
                         {id(layers[name]): value for name, value in self._snapshots.items()})
        self._refresh_flops()

    def _involved_layers(self):
        names = {id(m): name for name, m in self.model.named_modules()}
        return {names[id(m)]: m for _, layer, consumers in self.pairs for m in (layer, *consumers)}

    # ----- taylor scores -----------------------------------------------------------------------
    def _collecting_taylor(self):
        phase = self.phase
        return not phase.sparse and any(p.sparse for p in self.phases[phase.index + 1:])

    def _taylor_hook(self, name):
        def hook(layer, inputs, output):
            if not (torch.is_grad_enabled() and output.requires_grad and self._collecting_taylor()):
                return

            def accumulate(grad):
                per_channel = (output.detach() * grad).reshape(-1, output.shape[-1]).sum(0).abs().double()
                pad = layer.n_out_blocks * layer.block_size - layer.out_features
                blocks = torch.nn.functional.pad(per_channel, (0, pad)).view(layer.n_out_blocks, -1).sum(1)
                self._taylor[name] += blocks

            output.register_hook(accumulate)
        return hook

    def _reset_taylor(self):
        for scores in self._taylor.values():
            scores.zero_()

    def remove_hooks(self):
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    # ----- counters ----------------------------------------------------------------------------
    def _refresh_flops(self):
        """Training FLOPs per sample = 3 x forward GEMM FLOPs (forward, input grad, weight grad)."""
        dense = active = 0
        for layer in self.linear_layers:
            layer.refresh_indices()
            dense += 6 * layer.in_features * layer.out_features
            active += 6 * int(layer.in_channel_mask.sum()) * int(layer.out_channel_mask.sum())
        self._dense_flops_per_sample, self._active_flops_per_sample = dense, active

    @property
    def density(self):
        """Fraction of all MLP weights (every SparseLinear in the model) that are active."""
        return weight_density(self.model)

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
            "phases": [dataclasses.asdict(p) for p in self.phases],
        }

    # ----- checkpointing -----------------------------------------------------------------------
    def state_dict(self):
        return {
            "step_count": self.step_count,
            "samples": self.samples,
            "flops_dense": self.flops_dense,
            "flops_computed": self.flops_computed,
            "phase_times": dict(self.phase_times),
            "phase_steps": dict(self.phase_steps),
            "applied_phase": self._applied_phase,
            "phases": [dataclasses.asdict(p) for p in self.phases],
            "taylor": {name: t.clone() for name, t in self._taylor.items()},
            "snapshots": self._snapshots,
        }

    def load_state_dict(self, state):
        phases = [Phase(**p) for p in state["phases"]]
        if phases != self.phases:
            raise ValueError(f"checkpointed schedule has phases {phases}, this schedule has {self.phases}: "
                             "resume with the same total steps and phase settings")
        self.step_count = state["step_count"]
        self.samples = state.get("samples", 0)
        self.flops_dense = state["flops_dense"]
        self.flops_computed = state["flops_computed"]
        self.phase_times = dict(state["phase_times"])
        self.phase_steps = dict(state["phase_steps"])
        self._applied_phase = state["applied_phase"]
        for name, t in state["taylor"].items():
            self._taylor[name].copy_(t)
        self._snapshots = state["snapshots"]
        self._refresh_flops()


def describe_phase(phase):
    return f"{phase.kind} phase {phase.index} (steps {phase.start}..{phase.end - 1})"

