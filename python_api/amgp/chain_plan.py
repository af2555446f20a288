"""The thin path of SparseMLP.forward: one check for the whole chain of layers, then each layer's op called
directly. At small batch a SparseLinear call spends ~6 us (warm) to ~15 us (the cold start of a training step)
on Python: the module call, the mask check, its call-plan key. For an MLP most of that is the same question asked
once per layer; asked once per chain it costs ~1.5 us per layer, warm (bench/RESULTS.md, "Issue 21")."""
import torch
from torch.nn.modules import module as _module

import amgp_kernels

from .sparse_linear import SparseLinear

# Module.__call__ runs these for every module: with any of them registered the chain goes layer by layer.
_GLOBAL_HOOKS = (_module._global_forward_hooks, _module._global_forward_pre_hooks, _module._global_backward_hooks,
                 _module._global_backward_pre_hooks)


def _called_plainly(layer):
    """Whether calling `layer` is calling SparseLinear.forward: no hooks, no compiled or replaced forward."""
    if type(layer) is not SparseLinear:
        return False
    hooked = layer._forward_hooks or layer._forward_pre_hooks or layer._backward_hooks or layer._backward_pre_hooks
    return not (hooked or "forward" in layer.__dict__ or getattr(layer, "_compiled_call_impl", None) is not None)


def chain_key(layers, x):
    """Everything the layers' thin paths would check on this call, read once, as a list of plain values
    (parameters by id, masks by storage address: a ChainPlan holds them, so neither is reused while it lives);
    None when the chain must go layer by layer (hooks, tracing, a tensor subclass). A mask is keyed by its
    storage address and version, so an in-place edit is noticed as SparseLinear.refresh_indices notices it (which
    also keys the device: a mask on another device has another address); a mask tied to the previous layer's
    output mask is read once."""
    if type(x) is not torch.Tensor or any(_GLOBAL_HOOKS) or torch._C._get_tracing_state():
        return None
    key = [x.dtype, x.device, x.shape[-1:], amgp_kernels.get_backend()]
    previous_out_mask = None
    for layer in layers:
        if not _called_plainly(layer):
            return None
        params, buffers = layer._parameters, layer._buffers
        weight, in_mask, out_mask = params["weight"], buffers["in_mask"], buffers["out_mask"]
        key += (id(weight), id(params["bias"]), weight.dtype, weight.device, layer.backend)
        if in_mask is not previous_out_mask:
            key += (in_mask.data_ptr(), in_mask._version)
        key += (out_mask.data_ptr(), out_mask._version)
        previous_out_mask = out_mask
    return key


def _keyed_objects(layers):
    return [(layer._parameters["weight"], layer._parameters["bias"], layer._buffers["out_mask"],
             layer._buffers["in_mask"]) for layer in layers]


class ChainPlan:
    """The ops a checked pass through the layers resolved (each layer's own call plan), valid while the
    chain's key is the one it was made under."""

    def __init__(self, key, ops, keyed_objects):
        self.key = key
        self.ops = ops
        self._keyed_objects = keyed_objects  # alive while the key names them by id

    @classmethod
    def after_pass(cls, layers, key):
        """The plan of the pass that just ran through `layers` (each left its call plan), or None where a
        layer took its checked call without making one (a tensor subclass, for example)."""
        ops = [layer._call_plan[1] if layer._call_plan is not None else None for layer in layers]
        if key is None or any(op is None for op in ops):
            return None
        return cls(key, ops, _keyed_objects(layers))

    def run(self, layers, x):
        for layer, op in zip(layers, self.ops):
            params, buffers = layer._parameters, layer._buffers
            x = op(x, params["weight"], params["bias"], buffers["in_index"], buffers["out_index"], layer.block_size,
                   layer.activation, layer.packed_in, layer.packed_out)
        return x
