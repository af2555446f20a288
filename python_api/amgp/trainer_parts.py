"""What a Trainer builds from its TrainConfig: the DLRM, the optimizer, the grow/prune schedule, and the
engine-specific parts that amgp.torchrec.engine.TorchRecTrainer overrides (its model, optimizer, parallel
forward and layer names)."""
import torch

from . import distributed
from .config import OPTIMIZERS
from .dlrm import DLRM
from .schedule import GrowPruneSchedule


def sparse_embedding_grad(config):
    """Sparse embedding gradients where the optimizer applies them exactly (plain SGD, Adagrad), in a
    single process (DistributedDataParallel over NCCL averages dense gradients only)."""
    if distributed.launched_with_several_ranks():
        return False
    return config.weight_decay == 0 and (config.optimizer == "adagrad"
                                          or (config.optimizer == "sgd" and config.momentum == 0))


def build_model(config, data, device, sparse=True):
    if config.arch_mlp_bot[0] != data.num_dense:  # else the first forward fails on dense_x's shape
        raise ValueError(f"arch_mlp_bot starts with {config.arch_mlp_bot[0]} inputs, but the data has "
                         f"{data.num_dense} dense features")
    return DLRM(data.table_sizes, config.arch_sparse_feature_size, config.arch_mlp_bot, config.arch_mlp_top,
                config.arch_interaction_op, config.arch_interaction_itself, block_size=config.block_size,
                sparse=sparse, sparse_grad=sparse_embedding_grad(config), backend=config.backend, device=device)


def build_optimizer(config, model):
    """The optimizer for `model`'s parameters (or for `model`, an iterable of parameters)."""
    params = model.parameters() if isinstance(model, torch.nn.Module) else model
    lr, wd = config.learning_rate, config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=wd)
    if config.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=wd)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {config.optimizer!r}")


def build_schedule(config, model, optimizer, total_steps, layers=None, stepped_optimizer=None):
    """AMGP schedule; static pruning (warmup, then one sparse phase to the end); or (config.amgp False)
    a single dense phase. Rank 0 decides every mask change and broadcasts it, so masks and weights
    never diverge across ranks. layers: the prefixes of `model`'s layers to prune (default
    config.amgp_layers, which name amgp.DLRM's layers). stepped_optimizer: the torch.optim optimizer whose step
    updates `model` when `optimizer` wraps it (made block-sparse in sparse phases; default `optimizer`)."""
    if config.static_prune:
        phases = dict(final_dense=0, dense_steps=0, cycles=1, end_full_size=False)
    else:
        phases = dict(final_dense=config.amgp_final_dense, dense_steps=config.amgp_dense_steps,
                      cycles=config.amgp_cycles if config.amgp else 0)
    return GrowPruneSchedule(model, total_steps, optimizer, density=config.amgp_density, warmup=config.amgp_warmup,
                             criterion=config.amgp_criterion, growth=config.amgp_growth,
                             layers=config.amgp_layers if layers is None else layers,
                             seed=config.seed, sync=distributed.broadcast_masks,
                             active_block_step=True if stepped_optimizer is None else stepped_optimizer, **phases)


class EngineParts:
    """amgp's own engine: amgp.DLRM under DistributedDataParallel (the Trainer's config, data, device,
    model and logits are set by amgp.train.Trainer)."""

    def build_model(self):
        return build_model(self.config, self.data, self.device)

    def build_optimizer(self):
        return build_optimizer(self.config, self.model)

    def stepped_optimizer(self):
        """The torch.optim optimizer whose step updates replicated_module() (the schedule makes it block-sparse)."""
        return self.optimizer

    def parallel_logits(self):
        """(dense, sparse) -> logits, training across ranks (gradients averaged)."""
        return distributed.data_parallel(self.model, "logits")

    def pruned_layers(self):
        """config.amgp_layers in the names of replicated_module()'s layers."""
        return self.config.amgp_layers

    def data_parallel_module(self):
        """The DistributedDataParallel module that all-reduces the gradients, or None (one process)."""
        return self.logits if isinstance(self.logits, torch.nn.parallel.DistributedDataParallel) else None

    def replicated_module(self):
        """The part of the model every rank holds whole: the schedule prunes its MLPs and the report
        compares its state across ranks."""
        return self.model
