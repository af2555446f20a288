"""amgp.sparsify: make any model's MLPs AMGP's, in place.

Every nn.Linear becomes a SparseLinear holding the same Parameter objects (same state_dict keys,
device, dtype; an optimizer built before keeps working). Chains of layers that feed each other get
tied masks (the consumer's in_mask *is* the producer's out_mask), a fused ReLU and packed activations
(only the active channels flow between them), so that GrowPruneSchedule / prune_blocks prune both
sides of every hidden GEMM, as in SparseMLP. Chains are found in pipelines (nn.Sequential, nested or not: Linear, element-wise steps such as ReLU or Dropout,
Linear) and taken from the caller (`chains`) where the wiring is in forward code. A layer whose
output may be read by anything but tied layers keeps its output side dense.
"""
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from amgp_kernels.checks import check_bool, check_int

from .masks import check_tied_mask_keys
from .sparse_linear import SparseLinear

# Steps that act on each channel by itself: a chain may pass through them (a pruned channel is then
# removed from the network, as in SparseMLP).
ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
                       nn.Mish, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus,
                       nn.Identity, nn.Dropout)
ELEMENTWISE_FUNCTIONS = (torch.relu, F.relu, torch.tanh, torch.sigmoid, F.gelu, F.silu)
RELU = (torch.relu, F.relu)

# Module hooks that go with a layer when it is swapped (the same dicts, so the user's handles still work).
_HOOK_DICTS = ("_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_forward_hooks", "_forward_hooks_with_kwargs",
               "_forward_hooks_always_called", "_backward_pre_hooks", "_backward_hooks")


class Step(NamedTuple):
    """One step of a pipeline: `value` (a module or a function) held as `parent.<attr>`."""
    parent: nn.Module
    attr: str
    value: object


def sequential_steps(module):
    """The steps of an nn.Sequential (None for any other module: not a pipeline)."""
    if type(module) is nn.Sequential:
        return list(module._modules.items())
    return None


def sparsify(module, block_size=32, *, chains=None, filter_fn=None, fuse_relu=True, packed=True, backend=None,
             pipeline_steps=sequential_steps):
    """Turn `module`'s nn.Linear layers into SparseLinear in place, tie the masks of chains, fuse ReLUs.

    block_size: channels per block. chains: lists of layer names, e.g. [["mlp.0", "mlp.2"]], whose
    output feeds the next named layer and nothing else (through element-wise steps at most): the
    caller's word for wiring written in forward code. A layer named as producer in several chains
    feeds all of them; every reader of its output must be named. filter_fn(linear, name) -> bool
    chooses the layers to convert (default: all). fuse_relu: an nn.ReLU / torch.relu step right
    after a tied producer runs inside its kernel (the step becomes nn.Identity, no state_dict key
    changes). packed: a tied producer writes, and its consumers read, only the active channels (as
    SparseMLP's hidden activations; a width that is not a multiple of block_size stays full-size); the
    steps between see that narrower tensor, and so does a forward pre-hook on a consumer.
    packed=False keeps every activation full-size (same results). pipeline_steps(module) -> [(attr, step)] or None says which modules run their children
    in order (default: nn.Sequential); integrations extend it (amgp.torchrec).

    Only exact nn.Linear instances are converted: a subclass may compute something else in its
    forward (e.g. MultiheadAttention's out_proj is never called as a module), so it is left alone.
    A layer used at several places of the model, or with forward hooks (which read its output),
    is converted but never tied as a producer. Returns `module` (the new SparseLinear if `module`
    itself is an nn.Linear).
    """
    check_int(block_size, "block_size", minimum=1)
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    if filter_fn is not None and not callable(filter_fn):
        raise TypeError(f"filter_fn must be callable (linear, name) -> bool, got {type(filter_fn).__name__}")
    chains = _check_chains(chains)

    def convert(linear, name):
        return _convertible(linear) and (filter_fn is None or filter_fn(linear, name))

    if isinstance(module, nn.Linear):
        return _to_sparse(module, block_size, backend) if convert(module, "") else module
    _swap_linears(module, "", convert, block_size, backend, {})
    uses = _use_counts(module)
    names = {id(m): n for n, m in module.named_modules()}
    ties = []
    check_bool(packed, "packed")
    for sub in module.modules():
        if pipeline_steps(sub) is not None:
            ties += _tie_pipeline(sub, pipeline_steps, names, uses, fuse_relu, packed)
    for chain in chains:
        ties += _tie_named_chain(module, chain, packed)
    if ties:
        module._register_load_state_dict_pre_hook(_TiedMaskCheck(sorted(set(ties))))
    return module


# ----- swapping --------------------------------------------------------------------------------
def _convertible(module):
    return type(module) is nn.Linear and module.in_features > 0 and module.out_features > 0


def _to_sparse(linear, block_size, backend):
    layer = SparseLinear.from_linear(linear, block_size, backend=backend, share_parameters=True)
    for hooks in _HOOK_DICTS:
        if hasattr(linear, hooks):
            setattr(layer, hooks, getattr(linear, hooks))
    return layer


def _swap_linears(module, prefix, convert, block_size, backend, swapped):
    """Replace convertible nn.Linear children in place, recursively; a layer used at several places
    becomes one SparseLinear used at all of them (`swapped`: id(linear) -> its SparseLinear)."""
    for attr, child in list(module._modules.items()):
        if child is None:
            continue
        name = f"{prefix}{attr}"
        if id(child) in swapped:
            setattr(module, attr, swapped[id(child)])
        elif isinstance(child, nn.Linear) and convert(child, name):
            swapped[id(child)] = _to_sparse(child, block_size, backend)
            setattr(module, attr, swapped[id(child)])
        else:
            _swap_linears(child, f"{name}.", convert, block_size, backend, swapped)


def _use_counts(module):
    """id(submodule) -> how many places of the module tree hold it."""
    counts = {}
    for _, sub in module.named_modules(remove_duplicate=False):
        counts[id(sub)] = counts.get(id(sub), 0) + 1
    return counts


# ----- chains ----------------------------------------------------------------------------------
def _flatten(parent, pipeline_steps):
    """The steps of pipeline `parent` with nested pipelines expanded in place."""
    steps = []
    for attr, value in pipeline_steps(parent):
        inner = pipeline_steps(value) if isinstance(value, nn.Module) else None
        steps += _flatten(value, pipeline_steps) if inner is not None else [Step(parent, attr, value)]
    return steps


def _is_elementwise(value):
    if isinstance(value, nn.Module):
        return isinstance(value, ELEMENTWISE_MODULES) and not value._forward_hooks
    return any(value is f for f in ELEMENTWISE_FUNCTIONS)


def _is_relu(value):
    return (type(value) is nn.ReLU and not value._forward_hooks) or any(value is f for f in RELU)


def _tie_pipeline(pipeline, pipeline_steps, names, uses, fuse_relu, packed):
    """Tie every SparseLinear of the pipeline to the next SparseLinear when only element-wise steps lie
    between them; fuse a ReLU right after the producer. Returns the (producer, consumer) names tied
    (`names`: id(module) -> its name in the model; `uses`: id(module) -> places that hold it)."""
    steps = _flatten(pipeline, pipeline_steps)
    ties = []
    for i, step in enumerate(steps):
        producer = step.value
        if not isinstance(producer, SparseLinear) or uses[id(producer)] > 1 or producer._forward_hooks:
            continue
        j = i + 1
        while j < len(steps) and _is_elementwise(steps[j].value):
            j += 1
        consumer = steps[j].value if j < len(steps) else None
        if (not isinstance(consumer, SparseLinear) or uses[id(consumer)] > 1
                or (consumer.in_features, consumer.block_size) != (producer.out_features, producer.block_size)):
            continue
        consumer.tie_in_mask(producer, packed=packed)
        if fuse_relu and j > i + 1 and _is_relu(steps[i + 1].value) and producer.activation == "none":
            relu = steps[i + 1]
            setattr(relu.parent, relu.attr, nn.Identity())
            producer.activation = "relu"
        ties.append((names[id(producer)], names[id(consumer)]))
    return ties


def _check_chains(chains):
    if chains is None:
        return []
    if isinstance(chains, (str, bytes)) or not all(
            not isinstance(c, (str, bytes)) and len(c) >= 2 and all(isinstance(n, str) for n in c) for c in chains):
        raise TypeError(f"chains must be a list of lists of at least 2 layer names, e.g. [['mlp.0', 'mlp.2']], "
                        f"got {chains!r}")
    return [list(chain) for chain in chains]


def _tie_named_chain(root, chain, packed):
    layers = []
    for name in chain:
        try:
            layer = root.get_submodule(name)
        except AttributeError:
            raise ValueError(f"chains: {chain} names {name!r}, which is not a module of the model") from None
        if not isinstance(layer, SparseLinear):
            raise ValueError(f"chains: {chain} names {name!r}, a {type(layer).__name__}, not an nn.Linear that "
                             "sparsify converted (exact nn.Linear, accepted by filter_fn)")
        layers.append(layer)
    for (producer_name, producer), (consumer_name, consumer) in zip(zip(chain, layers), zip(chain[1:], layers[1:])):
        try:
            consumer.tie_in_mask(producer, packed=packed)
        except ValueError as error:
            raise ValueError(f"chains: cannot tie {producer_name!r} -> {consumer_name!r}: {error}") from None
    return list(zip(chain, chain[1:]))


class _TiedMaskCheck:
    """load_state_dict pre-hook of a sparsified model: a tied pair's two mask keys must agree."""

    def __init__(self, ties):
        self.ties = ties

    def __call__(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                 error_msgs):
        check_tied_mask_keys(state_dict, [(prefix + p, prefix + c) for p, c in self.ties], error_msgs)
