"""amgp.torchrec.sparsify: amgp.sparsify that also sees through TorchRec's MLP building blocks.

A torchrec.modules.mlp.MLP is an nn.Sequential (`_mlp`) of Perceptrons, and a Perceptron computes
`_activation_fn(_linear(x))`: both are pipelines, so consecutive Perceptrons' Linears are tied (and their
ReLU fused, `_activation_fn` becoming nn.Identity: no state_dict key changes), and so is the last
Perceptron of an over arch (nn.Sequential(MLP, Linear)) with the Linear after it.
"""
from torch import nn
from torchrec.modules.mlp import MLP, Perceptron

from ..sparsify import sequential_steps, sparsify as sparsify_any


def pipeline_steps(module):
    """amgp.sparsify.sequential_steps, plus TorchRec's MLP and Perceptron run as pipelines."""
    if isinstance(module, Perceptron):
        return [("_linear", module._linear), ("_activation_fn", module._activation_fn)]
    if isinstance(module, MLP):
        return [("_mlp", module._mlp)]
    return sequential_steps(module)


def sparsify(model, block_size=32, **kwargs):
    """amgp.sparsify(model, block_size, **kwargs) with TorchRec's MLPs understood (see module docstring).

    Call it before DistributedModelParallel wraps the model, with the dense part on a real device:
    DMP initialises what is left on the meta device itself, buffers as zeros, which would switch every
    block off (embedding tables may stay on meta)."""
    meta = [name for name, m in model.named_modules() if type(m) is nn.Linear and m.weight.is_meta]
    if meta:
        raise ValueError(f"model has nn.Linear layers on the meta device ({', '.join(meta[:3])}): build the dense "
                         "part on a real device (e.g. DLRM(..., dense_device=torch.device('cpu'))) before sparsify")
    return sparsify_any(model, block_size, pipeline_steps=pipeline_steps, **kwargs)
