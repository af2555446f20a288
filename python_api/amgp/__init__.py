"""amgp: alternate model growth and pruning (AMGP) for recommendation models.

SparseLinear / SparseMLP are drop-in nn.Linear / MLP modules whose GEMMs run over active channel
blocks only (kernels in amgp_kernels); prune_blocks prunes them.
"""
from amgp_kernels import available_backends, block_linear, build_info, set_backend

from .masks import mask_to_indices, num_blocks
from .pruning import block_magnitude, prunable_layers, prune_blocks, zero_inactive_
from .sparse_linear import SparseLinear
from .sparse_mlp import SparseMLP
from .dlrm import DLRM
from .meter import CostMeter
from .pruner import BlockPruner
from .schedule import GrowPruneSchedule, Phase, plan_phases
from .sparsify import sparsify

__version__ = "0.1.0"

__all__ = [
    "BlockPruner",
    "CostMeter",
    "DLRM",
    "GrowPruneSchedule",
    "Phase",
    "SparseLinear",
    "SparseMLP",
    "available_backends",
    "block_linear",
    "block_magnitude",
    "build_info",
    "mask_to_indices",
    "num_blocks",
    "plan_phases",
    "prunable_layers",
    "prune_blocks",
    "set_backend",
    "sparsify",
    "zero_inactive_",
]
