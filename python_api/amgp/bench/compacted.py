"""The compacted limit of a pruned model: the same model with every SparseMLP replaced by an nn.Sequential
of physically smaller nn.Linear layers (+ ReLU) holding only the active channels. What a pruned MLP's
training step cannot beat: the same GEMMs on pre-sliced contiguous weights, with no masks, packing or
zeros, and an optimizer over the active parameters only."""
import copy

import torch
from torch import nn

from ..sparse_mlp import SparseMLP


@torch.no_grad()
def compacted_layer(layer):
    """nn.Linear holding a SparseLinear's active (out x in) weights and active bias entries."""
    rows, cols = layer.out_channel_mask, layer.in_channel_mask
    linear = nn.Linear(int(cols.sum()), int(rows.sum()), bias=layer.bias is not None, device=layer.weight.device,
                       dtype=layer.weight.dtype)
    linear.weight.copy_(layer.weight[rows][:, cols])
    if layer.bias is not None:
        linear.bias.copy_(layer.bias[rows])
    return linear


def compacted_mlp(mlp):
    """An nn.Sequential computing `mlp`'s active part: its first input and last output stay full-size (their
    sides are never pruned), every hidden activation has only the active channels."""
    modules = []
    for layer in mlp.layers:
        modules.append(compacted_layer(layer))
        if layer.activation == "relu":
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)


def compacted_model(model):
    """A copy of `model` with every SparseMLP (the model itself included) replaced by its compacted_mlp."""
    if isinstance(model, SparseMLP):
        return compacted_mlp(model)
    model = copy.deepcopy(model)
    for name, child in list(model.named_children()):
        setattr(model, name, compacted_model(child))
    return model
