"""Block-sparse optimizer steps through the user's own torch.optim optimizer (docs/design.md,
"Block-sparse optimizer steps").

Pruning (amgp.pruning.set_block_masks_, which GrowPruneSchedule and BlockPruner call with the optimizer)
zeroes inactive weights and every optimizer state entry shaped like them, and the kernels give inactive
blocks exactly zero gradient. For SGD (momentum, dampening, nesterov, weight decay), Adagrad, Adam and
AdamW the update of an inactive entry is then exactly a no-op, so `install(optimizer, model)` makes each
step update only the active blocks of every pruned SparseLinear weight (amgp_kernels.active_step), and
leaves every other parameter (biases included: their full-size update is cheaper than a call), and everything
in dense phases, to the optimizer's own step. Param groups,
hyper-parameters (read at every step: LR schedulers work), state and state_dict stay torch.optim's.
Options whose update is not that no-op (amsgrad, maximize) or that torch.optim computes differently
(fused, capturable, differentiable, tensor hyper-parameters), other optimizer classes, closures, sparse
or complex gradients fall back to the optimizer's own step, with a one-time warning naming the reason.
"""
import warnings

import torch

from amgp_kernels.checks import check_int
from amgp_kernels.active_step import active_adagrad_step_, active_adam_step_, active_sgd_step_

from .sparse_linear import SparseLinear

__all__ = ["ActiveBlockStep", "install"]

_FLAGS_OFF = {  # group options that must be off (False / None) for the block-sparse step
    torch.optim.SGD: ("maximize", "fused", "differentiable"),
    torch.optim.Adam: ("amsgrad", "maximize", "fused", "capturable", "differentiable"),
    torch.optim.AdamW: ("amsgrad", "maximize", "fused", "capturable", "differentiable"),
    torch.optim.Adagrad: ("maximize", "fused", "differentiable"),
}
_SCALARS = ("lr", "betas", "weight_decay", "momentum", "dampening", "eps", "lr_decay")
# Skipping fewer inactive entries than this saves less than the call costs (10-25 us of Python and dispatch): a
# full-size SGD update costs ~0.2-0.4 ns per entry on a CPU (its data in cache after the backward), so SGD gains from
# 32 K. Adam's and Adagrad's updates cost several times that: a 512x13 weight with 3-5 K inactive entries taken out
# of torch.optim's foreach step shortened the step by 15-30 us, and no threshold measured no worse than 1 K or 2 K.
# Measured on a quiet 2-core CPU (issue 21, bench/RESULTS.md).
MIN_INACTIVE = {torch.optim.SGD: 32768, torch.optim.Adam: 0, torch.optim.AdamW: 0, torch.optim.Adagrad: 0}


def install(optimizer, model, min_inactive=None):
    """Make `optimizer.step()` update only the active blocks of `model`'s pruned SparseLinear weights
    (see the module docstring); returns the ActiveBlockStep (its remove() undoes this). min_inactive: weights
    with fewer inactive entries keep the optimizer's own step (default: MIN_INACTIVE of the optimizer's class;
    both are exact, this only chooses the faster)."""
    return ActiveBlockStep(optimizer, model, min_inactive)


class ActiveBlockStep:
    """Step pre-hook: block-sparse updates of pruned SparseLinear weights, whose gradients it then hides
    (None) from the optimizer's own step; the post-hook gives them back. `fallback_reasons`: why some
    step was left to the optimizer in full (each also warned once); `used`: whether a block-sparse update ran."""

    def __init__(self, optimizer, model, min_inactive=None):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.optimizer = optimizer
        # weight -> its SparseLinear. Biases are left to the optimizer's own step: a full-size update of a bias
        # costs less than a call of the block-sparse one.
        self.layers = {layer.weight: layer for layer in model.modules() if isinstance(layer, SparseLinear)}
        if min_inactive is not None:
            check_int(min_inactive, "min_inactive", minimum=0)
        self.min_inactive = MIN_INACTIVE.get(type(optimizer), 0) if min_inactive is None else min_inactive
        self._inactive = {}  # id(layer) -> (its index generation, inactive entries)
        self._group_weights = {}  # id(param group) -> (ids of its params, [(weight, layer)])
        self.fallback_reasons = set()
        self.used = False  # whether a block-sparse update has run
        self._hidden = []  # (param, grad) hidden from the optimizer's own step
        self._update = {torch.optim.SGD: self._sgd, torch.optim.Adam: self._adam, torch.optim.AdamW: self._adam,
                        torch.optim.Adagrad: self._adagrad}.get(type(optimizer))
        if self._update is None:
            self._fall_back(f"{type(optimizer).__name__} is not one of SGD, Adam, AdamW, Adagrad")
        self._handles = [optimizer.register_step_pre_hook(self._before), optimizer.register_step_post_hook(self._after)]

    def remove(self):
        """Uninstall: later steps are the optimizer's own."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _fall_back(self, reason):
        if reason not in self.fallback_reasons:
            self.fallback_reasons.add(reason)
            warnings.warn(f"amgp.active_step: {reason}: the optimizer's own step updates every entry of the "
                          "pruned layers (exact, not block-sparse)", stacklevel=4)

    def _group_reason(self, group):
        for flag in _FLAGS_OFF[type(self.optimizer)]:
            if group.get(flag):
                return f"{type(self.optimizer).__name__}({flag}=True)"
        for name in _SCALARS:
            value = group.get(name)
            if isinstance(value, torch.Tensor) or (isinstance(value, tuple) and
                                                   any(isinstance(v, torch.Tensor) for v in value)):
                return f"a tensor {name}"
        return None

    def _before(self, optimizer, args, kwargs):
        self._after(optimizer, args, kwargs)  # a step that raised left gradients hidden
        if self._update is None:
            return
        closure = args[1] if len(args) > 1 else kwargs.get("closure")  # args[0] is the optimizer
        if closure is not None:
            self._fall_back("a step with a closure (the gradients are computed inside the step)")
            return
        with torch.no_grad():  # step pre-hooks run outside the step's no_grad
            for group in optimizer.param_groups:
                self._step_group(group)
        if len(self._group_weights) > len(optimizer.param_groups):  # groups were replaced: forget the old ones
            current = {id(group) for group in optimizer.param_groups}
            self._group_weights = {key: value for key, value in self._group_weights.items() if key in current}

    def _step_group(self, group):
        reason = None
        for param, layer in self._weights_of(group):
            grad = param.grad
            if grad is None:
                continue
            out_blocks, in_blocks = layer._buffers["out_index"], layer._buffers["in_index"]
            if out_blocks is None and in_blocks is None:
                continue  # every block active
            if param.device.type != "cpu":  # the torch-ops path reads indices back: host syncs every step
                self._fall_back(f"no block-sparse step kernel for {param.device.type} tensors yet")
                continue
            if self._inactive_entries(layer) < self.min_inactive:
                continue  # too few inactive entries to be worth a call
            reason = reason or self._group_reason(group) or "ok"
            if reason != "ok":
                self._fall_back(reason)
                return
            if grad.is_sparse or param.is_complex() or grad.dtype != param.dtype:
                self._fall_back("a sparse, complex or differently typed gradient")
                continue
            self._update(group, param, grad, out_blocks, in_blocks, layer.block_size)
            self._hidden.append((param, grad))
            self.used = True
            param.grad = None

    def _weights_of(self, group):
        """(weight, its SparseLinear) for the group's SparseLinear weights, in the group's order: found once while
        the group holds the same parameters (a DLRM's groups also hold its embedding tables and every bias, and a
        lookup keyed by a tensor runs Python's Tensor.__hash__)."""
        params = group["params"]
        key = tuple(map(id, params))
        cached = self._group_weights.get(id(group))
        if cached is None or cached[0] != key:
            cached = self._group_weights[id(group)] = (key, [(p, self.layers[p]) for p in params if p in self.layers])
        return cached[1]

    def _inactive_entries(self, layer):
        cached = self._inactive.get(id(layer))
        if cached is None or cached[0] != layer._index_generation:  # read once per mask change
            active = int(layer.out_channel_mask.sum()) * int(layer.in_channel_mask.sum())
            cached = self._inactive[id(layer)] = (layer._index_generation, layer.weight.numel() - active)
        return cached[1]

    def _after(self, optimizer, args, kwargs):
        for param, grad in self._hidden:
            param.grad = grad
        self._hidden = []

    # ----- one parameter, as torch.optim's single-tensor step computes it -------------------------
    def _sgd(self, group, param, grad, out_blocks, in_blocks, block_size):
        momentum = group["momentum"]
        buffer = None
        first = False
        if momentum != 0:
            state = self.optimizer.state[param]
            buffer = state.get("momentum_buffer")
            first = buffer is None
            if first:  # torch.optim's first step stores a copy of the gradient: zero in inactive entries
                buffer = state["momentum_buffer"] = torch.zeros_like(grad, memory_format=torch.preserve_format)
        active_sgd_step_(param, grad, buffer, out_blocks, in_blocks, block_size, group["lr"], group["weight_decay"],
                         momentum, group["dampening"], group["nesterov"], first, check=False)

    def _adam(self, group, param, grad, out_blocks, in_blocks, block_size):
        state = self.optimizer.state[param]
        if len(state) == 0:
            state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["step"] += 1
        step = state["step"].item()
        lr, (beta1, beta2), weight_decay = group["lr"], group["betas"], group["weight_decay"]
        # torch >= 2.6 marks AdamW's groups decoupled_weight_decay=True; older AdamW has no such key but decouples
        decoupled = group.get("decoupled_weight_decay", isinstance(self.optimizer, torch.optim.AdamW)) \
            and weight_decay != 0
        active_adam_step_(param, grad, state["exp_avg"], state["exp_avg_sq"], out_blocks, in_blocks, block_size,
                          beta1, beta2, group["eps"], 0.0 if decoupled else weight_decay,
                          1 - lr * weight_decay if decoupled else 1.0, lr / (1 - beta1**step),
                          (1 - beta2**step) ** 0.5, check=False)

    def _adagrad(self, group, param, grad, out_blocks, in_blocks, block_size):
        state = self.optimizer.state[param]  # Adagrad makes its state in __init__
        state["step"] += 1
        step = state["step"].item()
        clr = group["lr"] / (1 + (step - 1) * group["lr_decay"])
        active_adagrad_step_(param, grad, state["sum"], out_blocks, in_blocks, block_size, clr, group["weight_decay"],
                             group["eps"], check=False)


def _scalar_dtype():
    """The dtype torch.optim gives its step counters."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
