"""Block pruning and growth: choose blocks to keep, set masks, zero what was pruned (weights, bias
entries and optimizer state) so that no optimizer can bring it back, and initialise what is grown."""
import math

import torch

from amgp_kernels.checks import check_number

from .sparse_linear import SparseLinear

NOTHING_TO_PRUNE = ("module contains no SparseLinear feeding tied SparseLinear layers (no hidden layer to prune): "
                    "use SparseMLP, or amgp.sparsify(model) to convert a model's nn.Linear chains")


def prunable_layers(module):
    """(layer, consumers) for every SparseLinear in `module` whose output is read by tied SparseLinear
    layers only (consumers: the tuple of layers whose in_mask *is* its out_mask; see
    SparseLinear.tie_in_mask): the hidden layers of SparseMLPs and of models made by amgp.sparsify.
    Pruning such a layer's output blocks prunes both sides of each hidden GEMM. A layer without
    tied consumers (an MLP's output layer, a layer read elsewhere) never has its output pruned."""
    return [(layer, layer.mask_consumers) for layer in module.modules()
            if isinstance(layer, SparseLinear) and layer.mask_consumers]


def selected_layers(model, layers=None):
    """(name, layer, consumers) of every prunable layer of `model` (see prunable_layers) whose
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


def weight_density(module):
    """Active fraction of all SparseLinear weights in `module` (= the fraction of MLP GEMM FLOPs computed);
    1.0 when it has none."""
    layers = [m for m in module.modules() if isinstance(m, SparseLinear)]
    total = sum(layer.weight.numel() for layer in layers)
    return sum(layer.density * layer.weight.numel() for layer in layers) / total if total else 1.0


def block_magnitude(layer, consumers=()):
    """Importance of each output block: L2 norm of its incoming weights (and bias) times the L2
    norm of the weights that read it in `consumers` (a SparseLinear or a sequence of them), if any."""
    bs, n = layer.block_size, layer.n_out_blocks
    rows = layer.weight.detach().float().pow(2).sum(1)
    if layer.bias is not None:
        rows = rows + layer.bias.detach().float().pow(2)
    pad = n * bs - layer.out_features
    score = torch.nn.functional.pad(rows, (0, pad)).view(n, bs).sum(1).sqrt()
    consumers = [consumers] if isinstance(consumers, SparseLinear) else list(consumers or ())
    if consumers:
        cols = sum(consumer.weight.detach().float().pow(2).sum(0) for consumer in consumers)
        score = score * torch.nn.functional.pad(cols, (0, pad)).view(n, bs).sum(1).sqrt()
    return score


def blocks_kept(n_blocks, density):
    """How many of `n_blocks` blocks a layer pruned to `density` keeps: max(1, round(density * n))."""
    return max(1, round(density * n_blocks))


def keep_top_blocks(score, density):
    """Bool mask keeping the blocks_kept(n, density) highest-scoring blocks (-inf: never kept
    unless needed to reach the count)."""
    n = score.numel()
    mask = torch.zeros(n, dtype=torch.bool, device=score.device)
    mask[torch.topk(score, blocks_kept(n, density)).indices] = True
    return mask


@torch.no_grad()
def zero_inactive_(layer, optimizer=None):
    """Zero `layer`'s weights and bias entries in inactive blocks, and the matching entries of every
    optimizer state tensor shaped like them (momentum, Adam moments, Adagrad sums)."""
    layer.refresh_indices()
    masks = [(layer.weight, layer.weight_mask)]
    if layer.bias is not None:
        masks.append((layer.bias, layer.out_channel_mask))
    for param, active in masks:
        param.masked_fill_(~active, 0)
        _zero_optimizer_state_(param, ~active, optimizer)


def prune_blocks(module, density, optimizer=None):
    """Prune every prunable layer of `module` (see prunable_layers) to `density` of its output
    blocks by block magnitude, and zero the pruned weights, bias entries and optimizer state."""
    check_number(density, "density")
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    pairs = prunable_layers(module)
    if not pairs:
        raise ValueError(NOTHING_TO_PRUNE)
    masks = [keep_top_blocks(block_magnitude(layer, consumers).masked_fill(~layer.out_mask, float("-inf")), density)
             for layer, consumers in pairs]
    set_block_masks_(pairs, masks, optimizer)


@torch.no_grad()
def set_block_masks_(pairs, masks, optimizer=None, init="function_preserving", generator=None, snapshots=None):
    """Give each (layer, consumers) pair of `pairs` (see prunable_layers) the output block mask in
    `masks` (same order); the consumers' in_mask is the same tensor.
    Blocks that become inactive are pruned (weights, bias entries and optimizer state zeroed, see
    zero_inactive_); blocks that become active are grown with init_grown_(`init`); `snapshots` maps
    id(layer) -> (weight, bias) for init="restore"."""
    layers = {id(m): m for layer, consumers in pairs for m in (layer, *consumers)}
    old = {key: (m.out_channel_mask, m.in_channel_mask) for key, m in layers.items()}
    for (layer, consumers), mask in zip(pairs, masks):
        layer.set_out_mask(mask)
        for consumer in consumers:
            consumer.refresh_indices()
    for key, layer in layers.items():
        old_out, old_in = old[key]
        layer.refresh_indices()
        if bool((layer.out_channel_mask & ~old_out).any()) or bool((layer.in_channel_mask & ~old_in).any()):
            snapshot = None if snapshots is None else snapshots.get(key)
            init_grown_(layer, old_out, old_in, init, generator, snapshot, optimizer)
        zero_inactive_(layer, optimizer)


GROWTH_INITS = ("function_preserving", "zero", "restore")


# Optimizer state holding running sums / averages of squared gradients (Adagrad, Adam, AdamW).
_SECOND_MOMENTS = ("sum", "exp_avg_sq", "max_exp_avg_sq")


def _zero_optimizer_state_(param, entries, optimizer):
    if optimizer is not None:
        for value in optimizer.state.get(param, {}).values():
            if isinstance(value, torch.Tensor) and value.shape == param.shape:
                value.masked_fill_(entries, 0)


def _start_optimizer_state_(param, grown, optimizer):
    """Optimizer state for grown entries: momentum / first moments zero; squared-gradient
    accumulators set to the mean over the entries that stayed active, so that the grown weights'
    first steps are as large as their neighbours' (from zero they would be sign-sized jumps)."""
    if optimizer is None:
        return
    for key, value in optimizer.state.get(param, {}).items():
        if not (isinstance(value, torch.Tensor) and value.shape == param.shape):
            continue
        kept = value[~grown & (value != 0)]
        fill = kept.mean() if key in _SECOND_MOMENTS and kept.numel() else 0
        value.masked_fill_(grown, fill)


@torch.no_grad()
def init_grown_(layer, old_out_channels, old_in_channels, init="function_preserving", generator=None,
                snapshot=None, optimizer=None):
    """Initialise the weights of `layer` that became active since its channel masks were
    `old_out_channels` / `old_in_channels` (bool, per channel); its masks already hold the new,
    larger active set.

    function_preserving: weights from previously active inputs into newly active output channels are
    drawn like nn.Linear's init (uniform +-1/sqrt(in_features), bias too); weights that read newly
    active input channels (the grown blocks' outgoing weights) are zero, so the output is unchanged.
    zero: every grown weight and bias entry is zero (the ablation: under ReLU such blocks get no gradient).
    restore: grown entries get back the values in `snapshot` = (weight, bias or None), taken when they
    were pruned. Optimizer state of grown entries: see _start_optimizer_state_."""
    if init not in GROWTH_INITS:
        raise ValueError(f"init must be one of {GROWTH_INITS}, got {init!r}")
    layer.refresh_indices()
    device = layer.weight.device
    old_out, old_in = old_out_channels.to(device), old_in_channels.to(device)
    grown = layer.weight_mask & ~(old_out[:, None] & old_in[None, :])
    grown_bias = layer.out_channel_mask & ~old_out
    if init == "restore":
        if snapshot is None:
            raise ValueError("init='restore' needs the snapshot taken when the blocks were pruned")
        weight_values, bias_values = snapshot
    elif init == "zero":
        weight_values, bias_values = torch.zeros_like(layer.weight), torch.zeros(grown_bias.shape)
    else:
        bound = 1 / math.sqrt(layer.in_features)
        weight_values = _uniform_like(layer.weight, bound, generator).masked_fill_(~old_in[None, :], 0)
        bias_values = _uniform_like(grown_bias, bound, generator)
    layer.weight.copy_(torch.where(grown, weight_values.to(layer.weight), layer.weight))
    _start_optimizer_state_(layer.weight, grown, optimizer)
    if layer.bias is not None:
        layer.bias.copy_(torch.where(grown_bias, bias_values.to(layer.bias), layer.bias))
        _start_optimizer_state_(layer.bias, grown_bias, optimizer)


def _uniform_like(tensor, bound, generator):
    """Uniform(-bound, bound) values shaped like `tensor`, drawn on the CPU from `generator` (so a
    seeded generator gives the same values on every device and every rank)."""
    values = torch.empty(tensor.shape, dtype=torch.float32).uniform_(-bound, bound, generator=generator)
    return values.to(device=tensor.device)
