"""Block pruning: choose blocks to keep, set masks, and zero what was pruned (weights, bias
entries and optimizer state) so that no optimizer can bring it back."""
import torch

from .sparse_linear import SparseLinear
from .sparse_mlp import SparseMLP


def prunable_layers(module):
    """(layer, next_layer_or_None) pairs whose output blocks may be pruned: every hidden layer of
    each SparseMLP (not its output layer), and each SparseLinear outside a SparseMLP."""
    pairs, inside_mlp = [], set()
    for sub in module.modules():
        if isinstance(sub, SparseMLP):
            layers = list(sub.layers)
            inside_mlp.update(id(layer) for layer in layers)
            pairs += [(layers[i], layers[i + 1]) for i in range(len(layers) - 1)]
    for sub in module.modules():
        if isinstance(sub, SparseLinear) and id(sub) not in inside_mlp:
            pairs.append((sub, None))
    return pairs


def block_magnitude(layer, next_layer=None):
    """Importance of each output block: L2 norm of its incoming weights (and bias) times the L2
    norm of the weights that read it in the next layer, if any."""
    bs, n = layer.block_size, layer.n_out_blocks
    rows = layer.weight.detach().float().pow(2).sum(1)
    if layer.bias is not None:
        rows = rows + layer.bias.detach().float().pow(2)
    pad = n * bs - layer.out_features
    score = torch.nn.functional.pad(rows, (0, pad)).view(n, bs).sum(1).sqrt()
    if next_layer is not None:
        cols = next_layer.weight.detach().float().pow(2).sum(0)
        score = score * torch.nn.functional.pad(cols, (0, pad)).view(n, bs).sum(1).sqrt()
    return score


def keep_top_blocks(score, density):
    """Bool mask keeping the max(1, round(density * n)) highest-scoring blocks (-inf: never kept
    unless needed to reach the count)."""
    n = score.numel()
    keep = max(1, round(density * n))
    mask = torch.zeros(n, dtype=torch.bool, device=score.device)
    mask[torch.topk(score, keep).indices] = True
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
        if optimizer is not None:
            for value in optimizer.state.get(param, {}).values():
                if isinstance(value, torch.Tensor) and value.shape == param.shape:
                    value.masked_fill_(~active, 0)


def prune_blocks(module, density, optimizer=None):
    """Prune every prunable layer of `module` (see prunable_layers) to `density` of its output
    blocks by block magnitude, and zero the pruned weights, bias entries and optimizer state."""
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    pairs = prunable_layers(module)
    if not pairs:
        raise ValueError("module contains no SparseLinear or SparseMLP layer to prune")
    for layer, next_layer in pairs:
        score = block_magnitude(layer, next_layer).masked_fill(~layer.out_mask, float("-inf"))
        layer.set_out_mask(keep_top_blocks(score, density))
        if next_layer is not None:
            next_layer.refresh_indices()
    for layer in {id(m): m for pair in pairs for m in pair if m is not None}.values():
        zero_inactive_(layer, optimizer)
