"""GrowPruneSchedule: alternate model growth and pruning in one line, around any training loop.

It composes the phase plan (amgp.phases: when to prune and grow) with a block pruner (amgp.pruner:
what to prune and how to grow). At the first step of a sparse phase every selected layer is pruned
to its density; at the first step of a dense phase every block is grown back. Masks and index lists
change only at these boundaries. What training costs is counted by the trainer (amgp.meter).
"""
import dataclasses
import warnings

import torch

from .active_step import install as install_active_step
from .phases import PHASE_KINDS, Phase, describe_phase, phase_at, plan_phases
from .pruner import CRITERIA, BlockPruner
from .pruning import weight_density
from .sparse_linear import SparseLinear

__all__ = ["CRITERIA", "PHASE_KINDS", "GrowPruneSchedule", "Phase", "describe_phase", "plan_phases"]


class GrowPruneSchedule:
    """Alternate model growth and pruning over every SparseLinear / SparseMLP in `model`.

    Call `before_step()` before each training step (it applies a phase change when one starts at
    this step and returns the new Phase, else None) and `after_step()` after the optimizer step.
    Phase lengths are steps (int) or fractions of total_steps (float); see amgp.phases.plan_phases.
    end_full_size=False lets the plan end in a sparse phase (final_dense=0).

    density, layers, criterion, growth, seed and sync are the block pruner's (see amgp.pruner.BlockPruner):
    `density` is the fraction of output channel blocks each pruned layer keeps in sparse phases (one
    float, or {layer name: float}); `layers` limits pruning to names with the given prefixes; with
    `optimizer`, pruned optimizer state is zeroed; `sync` makes every rank apply the same masks
    (amgp.distributed.broadcast_masks: rank 0 decides).

    active_block_step (default True, with `optimizer`): in sparse phases `optimizer.step()` updates only the
    active blocks of the pruned layers (exact for SGD, Adam, AdamW, Adagrad; other optimizers and options
    fall back to the optimizer's own step with a warning; see amgp.active_step). A torch.optim optimizer here
    makes that one's step block-sparse instead: the optimizer inside a wrapper whose step calls it (TorchRec's
    CombinedOptimizer around the dense parameters' optimizer).
    """

    def __init__(self, model, total_steps, optimizer=None, density=0.5, warmup=0.1, final_dense=0.2,
                 dense_steps=0.05, cycles=2, criterion="magnitude", growth="function_preserving", layers=None,
                 seed=0, end_full_size=True, sync=None, active_block_step=True):
        self.model = model
        self.total_steps = total_steps
        self.phases = plan_phases(total_steps, warmup, final_dense, dense_steps, cycles, end_full_size)
        self.pruner = BlockPruner(model, optimizer, density, layers, criterion, growth, seed, sync)
        stepped = _stepped_optimizer(active_block_step, optimizer)
        # The pruner zeroes pruned optimizer state: what makes skipping inactive blocks in the step exact.
        self.active_step = install_active_step(stepped, model) if stepped is not None else None
        # A plan without sparse phases never touches the masks (a pruned model stays pruned).
        self.changes_masks = any(phase.sparse for phase in self.phases)
        self.linear_layers = [m for m in model.modules() if isinstance(m, SparseLinear)]
        self.step_count = 0
        self._applied_phase = None  # index of the phase whose masks the model holds
        self._follow_phase()

    # ----- the step protocol -------------------------------------------------------------------
    def phase_at(self, step):
        return phase_at(self.phases, step)

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
        self._applied_phase = phase.index
        self._follow_phase()
        if not self.changes_masks:
            return None
        self.pruner.update(phase.sparse, self.step_count)
        return phase

    def after_step(self, batch_size=None, seconds=None):
        """Count one finished training step."""
        if batch_size is not None or seconds is not None:
            warnings.warn("GrowPruneSchedule.after_step() takes no batch size or seconds any more: count FLOPs, "
                          "samples and time with amgp.CostMeter", DeprecationWarning, stacklevel=2)
        self.step_count += 1

    def _follow_phase(self):
        """Taylor scores are collected in the dense steps that precede a pruning."""
        phase = self.phase
        self.pruner.collecting_scores = not phase.sparse and any(p.sparse for p in self.phases[phase.index + 1:])

    # ----- what the pruner owns, under the names users know -------------------------------------
    @property
    def optimizer(self):
        return self.pruner.optimizer

    def decide_masks(self, phase):
        """{layer name: bool block mask} for `phase` on this rank (see BlockPruner.decide_masks)."""
        return self.pruner.decide_masks(phase.sparse)

    def remove_hooks(self):
        """Remove the Taylor-score hooks and the block-sparse optimizer step."""
        self.pruner.remove_hooks()
        if self.active_step is not None:
            self.active_step.remove()
            self.active_step = None

    @property
    def density(self):
        """Fraction of all MLP weights (every SparseLinear in the model) that are active."""
        return weight_density(self.model)

    # ----- checkpointing -----------------------------------------------------------------------
    def state_dict(self):
        return {"step_count": self.step_count, "applied_phase": self._applied_phase,
                "phases": [dataclasses.asdict(p) for p in self.phases], "pruner": self.pruner.state_dict()}

    def load_state_dict(self, state):
        phases = [Phase(**p) for p in state["phases"]]
        if phases != self.phases:
            raise ValueError(f"checkpointed schedule has phases {phases}, this schedule has {self.phases}: "
                             "resume with the same total steps and phase settings")
        self.step_count = state["step_count"]
        self._applied_phase = state["applied_phase"]
        # Checkpoints written before the pruner was split out hold its state at the top level.
        self.pruner.load_state_dict(state.get("pruner", state))
        self._follow_phase()


def _stepped_optimizer(active_block_step, optimizer):
    """The optimizer whose step GrowPruneSchedule makes block-sparse (see its docstring), or None."""
    if isinstance(active_block_step, torch.optim.Optimizer):
        if optimizer is None:
            raise ValueError("active_block_step names an optimizer, but the schedule has none (optimizer=None): "
                             "its pruned state would not be zeroed, which the block-sparse step relies on")
        return active_block_step
    if not isinstance(active_block_step, bool):
        raise TypeError("active_block_step must be a bool or a torch.optim.Optimizer, "
                        f"got {type(active_block_step).__name__}")
    return optimizer if active_block_step else None
