"""`amgp-dlrm --engine torchrec`: TorchRec's own DLRM (torchrec.models.dlrm.DLRM) trained with AMGP under
DistributedModelParallel, by amgp's training loop (same data, flags, schedule, report).

The model: an EmbeddingBagCollection with one table per categorical feature, sharded table-wise with
fbgemm's fused kernels and a fused optimizer applied in backward; the dense part (bottom and over
MLPs) sparsified by amgp.torchrec.sparsify before DMP wraps it, and trained data-parallel by DMP with a
dense optimizer beside the fused one (a CombinedOptimizer, which the schedule gets, so pruned blocks'
optimizer state is zeroed). Batches are amgp's (dense features, one id per table), each rank's shard
turned into a KeyedJaggedTensor.
"""
import contextlib
import logging
import warnings

import torch
import torch.distributed as dist
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
from torchrec.distributed.utils import optimizer_type_to_emb_opt_type
from torchrec.models.dlrm import DLRM
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter

from .. import distributed
from ..train import Trainer, build_optimizer
from . import checkpoint
from .sparsify import sparsify

# Fused (in-backward) embedding optimizers fbgemm provides; AdamW's decoupled decay has none, so its
# tables use Adam (and no weight decay on embeddings for any optimizer, as dlrm's training does).
MLP_NAMES = {"bot_l": "dense_arch", "top_l": "over_arch"}  # amgp.DLRM's MLPs in TorchRec's DLRM
EMBEDDING_OPTIMIZERS = {"sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad, "adam": torch.optim.Adam,
                        "adamw": torch.optim.Adam}


def check_config(config):
    """ValueError for settings TorchRec's DLRM cannot express, or this engine does not support."""
    if config.arch_interaction_op != "dot" or config.arch_interaction_itself:
        raise ValueError("--engine torchrec trains TorchRec's DLRM, whose interaction is 'dot' without self products "
                         "(--arch-interaction-op dot, no --arch-interaction-itself)")
    if config.arch_mlp_bot[-1] != config.arch_sparse_feature_size:
        raise ValueError(f"--engine torchrec: the last width of --arch-mlp-bot ({config.arch_mlp_bot[-1]}) must equal "
                         f"--arch-sparse-feature-size ({config.arch_sparse_feature_size})")
    if len(config.arch_mlp_top) < 2:
        raise ValueError("--engine torchrec: TorchRec's over arch needs at least 2 widths in --arch-mlp-top")
    if config.optimizer in ("adam", "adamw") and not config.use_gpu:
        raise ValueError(f"--engine torchrec on the CPU: fbgemm's CPU embedding kernels have no fused Adam, so "
                         f"--optimizer {config.optimizer} needs --use-gpu (on the CPU: sgd or adagrad)")


def to_kjt(ids, keys):
    """(batch, tables) ids, or (batch, tables, bag) bags of ids, as a KeyedJaggedTensor (one key per table)."""
    bags = ids.unsqueeze(-1) if ids.dim() == 2 else ids
    rows, tables, bag = bags.shape
    if tables != len(keys):
        raise ValueError(f"sparse ids must have {len(keys)} tables in dim 1, got shape {tuple(ids.shape)}")
    lengths = torch.full((tables * rows,), bag, dtype=torch.int32, device=ids.device)
    return KeyedJaggedTensor(keys=keys, values=bags.transpose(0, 1).reshape(-1), lengths=lengths)


class KJTModel(nn.Module):
    """amgp's model interface over a DMP-wrapped TorchRec DLRM: logits(dense, ids) and forward (the click
    probability), the ids turned into a KeyedJaggedTensor."""

    def __init__(self, dmp, keys):
        super().__init__()
        self.dmp = dmp
        self.keys = list(keys)

    def logits(self, dense, sparse):
        return self.dmp(dense, to_kjt(sparse, self.keys)).squeeze(-1)

    def forward(self, dense, sparse):
        return torch.sigmoid(self.logits(dense, sparse))


def build_dlrm(config, table_sizes, device):
    """TorchRec's DLRM with amgp's architecture flags, tables built on `device` (so that their seeded
    initialisation is the same whatever the number of ranks) and the MLPs sparsified."""
    tables = [EmbeddingBagConfig(name=f"table_{i}", embedding_dim=config.arch_sparse_feature_size, num_embeddings=n,
                                 feature_names=[f"cat_{i}"]) for i, n in enumerate(table_sizes)]
    model = DLRM(EmbeddingBagCollection(tables=tables, device=device), dense_in_features=config.arch_mlp_bot[0],
                 dense_arch_layer_sizes=list(config.arch_mlp_bot[1:]), over_arch_layer_sizes=list(config.arch_mlp_top),
                 dense_device=device)
    return sparsify(model, config.block_size, backend=config.backend)


def ensure_process_group(device):
    """DMP needs a process group: in a single process, a one-rank group in memory (no port)."""
    if not dist.is_initialized():
        distributed.init_process_group("nccl" if device.type == "cuda" else "gloo", store=dist.HashStore(), rank=0,
                                       world_size=1)


def shard_tables(model, device, optimizer_class, optimizer_kwargs):
    """DistributedModelParallel over `model`: every table placed whole on one rank (table-wise, fused
    kernels, `optimizer_class` fused into the backward), the dense part data-parallel. The tables keep the
    values they had (DMP re-initialises them otherwise)."""
    tables = model.sparse_arch.embedding_bag_collection
    initial = {name: value.detach().clone() for name, value in tables.state_dict().items()}
    # The fused optimizer is given to the sharder, not by apply_optimizer_in_backward: that one keeps every table
    # parameter in a global weak-key map whose value (the parameter's grad accumulator) holds the key, so the
    # parameters, the sharded module and its process group would outlive the training, and the group's gloo
    # threads would still run at interpreter exit (an abort, see amgp.distributed.shutdown).
    # fbgemm's name for the learning rate is learning_rate.
    fused = {"optimizer": optimizer_type_to_emb_opt_type(optimizer_class),
             **{"learning_rate" if key == "lr" else key: value for key, value in optimizer_kwargs.items()}}
    sharders = [EmbeddingBagCollectionSharder(fused_params=fused)]
    constraints = {config.name: ParameterConstraints(sharding_types=["table_wise"], compute_kernels=["fused"])
                   for config in tables.embedding_bag_configs()}
    planner = EmbeddingShardingPlanner(topology=Topology(world_size=dist.get_world_size(), compute_device=device.type),
                                       constraints=constraints)
    with _quiet():
        plan = planner.collective_plan(model, sharders, dist.GroupMember.WORLD)
        dmp = DistributedModelParallel(model, device=device, plan=plan, sharders=sharders)
    _copy_into_shards(dmp.module.sparse_arch.embedding_bag_collection.state_dict(), initial)
    return dmp


@contextlib.contextmanager
def _quiet():
    """Planning and wrapping log a screenful of advice meant for TorchRec's developers (and warn about
    their own deprecations); keep the command's output readable. Errors still show."""
    loggers = [logging.getLogger(), logging.getLogger("torchrec")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@torch.no_grad()
def _copy_into_shards(sharded_state, full_tables):
    """Write each table's values (full_tables: name -> tensor) into this rank's shards of it."""
    missing = sorted(set(full_tables) - set(sharded_state))
    if missing:
        raise RuntimeError(f"the sharded model has no {missing}: cannot give its tables their initial values")
    for name, value in sharded_state.items():
        if name in full_tables:
            for shard in value.local_shards():
                rows, cols = shard.metadata.shard_offsets
                height, width = shard.metadata.shard_sizes
                shard.tensor.copy_(full_tables[name][rows:rows + height, cols:cols + width])


class TorchRecTrainer(Trainer):
    """amgp's Trainer with TorchRec's DLRM under DMP (see the module docstring)."""

    def __init__(self, config, data=None, model_state=None, label=None, optimizer_state=None):
        check_config(config)
        if model_state is not None or optimizer_state is not None:
            raise ValueError("--engine torchrec does not warm-start from a model state yet (--recurring, "
                             "--load-model): sharded tables need torch.distributed.checkpoint")
        super().__init__(config, data=data, label=label)

    def build_model(self):
        ensure_process_group(self.device)
        dlrm = build_dlrm(self.config, self.data.table_sizes, self.device)
        self.dense_part = nn.ModuleDict({"dense_arch": dlrm.dense_arch, "over_arch": dlrm.over_arch})
        kwargs = {"lr": self.config.learning_rate}
        dmp = shard_tables(dlrm, self.device, EMBEDDING_OPTIMIZERS[self.config.optimizer], kwargs)
        return KJTModel(dmp, dlrm.sparse_arch.sparse_feature_names)

    def build_optimizer(self):
        dmp = self.model.dmp
        self.dense_optimizer = None  # the torch optimizer inside the keyed wrapper: its state is checkpointed

        def make_dense(params):
            self.dense_optimizer = build_optimizer(self.config, params)
            return self.dense_optimizer

        dense = KeyedOptimizerWrapper(dict(in_backward_optimizer_filter(dmp.named_parameters())), make_dense)
        return CombinedOptimizer([("embeddings", dmp.fused_optimizer), ("dense", dense)])

    def stepped_optimizer(self):
        return self.dense_optimizer  # CombinedOptimizer.step() calls it: its step can be made block-sparse

    def save(self, path, shown):
        """A checkpoint directory on torch.distributed.checkpoint (amgp.torchrec.checkpoint). Collective."""
        checkpoint.save(self, path)
        if self.main:
            shown.checkpoint(path, self.step)

    def restore(self, path):
        checkpoint.restore(self, path)

    def parallel_logits(self):
        return self.model.logits  # DMP already trains the dense part data-parallel

    def data_parallel_module(self):
        """DMP wraps the dense part in DistributedDataParallel (where it does: under several ranks)."""
        return next((m for m in self.model.dmp.modules() if isinstance(m, nn.parallel.DistributedDataParallel)), None)

    def replicated_module(self):
        return self.dense_part  # names as in the DLRM: dense_arch.model._mlp.0._linear, over_arch.model.1, ...

    def pruned_layers(self):
        """config.amgp_layers with amgp.DLRM's MLP names in TorchRec's (bot_l: dense_arch, top_l: over_arch);
        any other prefix is taken as a TorchRec name."""
        layers = self.config.amgp_layers
        if layers is None:
            return None
        return [MLP_NAMES.get(prefix, prefix) for prefix in ([layers] if isinstance(layers, str) else layers)]


__all__ = ["KJTModel", "TorchRecTrainer", "build_dlrm", "shard_tables", "to_kjt"]
