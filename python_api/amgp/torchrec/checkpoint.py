"""Checkpoints of the TorchRec engine: a directory written with torch.distributed.checkpoint (DCP).

Every rank writes its own shards of the tables and of the fused embedding optimizer's state (nothing is
gathered onto rank 0), with the dense MLP weights; rank 0 adds `trainer.pt` (amgp.checkpoint's format)
with what every rank holds alike: masks, the dense optimizer's state, schedule, pruner, cost meter, RNG,
history and loss window. DCP reshards on load, so a checkpoint saved on 2 ranks loads on 1.

Atomic: all of it goes to `PATH.partial` first, `trainer.pt` last (its presence marks a complete
checkpoint); then rank 0 moves an existing PATH aside to `PATH.old`, renames `PATH.partial` to PATH and
deletes `PATH.old`. A crash at any point leaves the previous checkpoint loadable: at PATH, or (killed
between the two renames) at `PATH.old`, which loading falls back to when PATH is missing.
"""
import os
import shutil

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException

from .. import checkpoint, trainer_state
from ..sparse_linear import SparseLinear

TRAINER_FILE = "trainer.pt"
ENGINE = "torchrec"


def _sharded_state(trainer):
    """What DCP saves / loads in place: model without masks (masks are in trainer.pt, so the keys do not
    depend on which layers are pruned now) and the fused embedding optimizer's state."""
    model = {k: v for k, v in trainer.model.dmp.state_dict().items() if not k.endswith(("out_mask", "in_mask"))}
    return {"model": model, "embedding_optimizer": trainer.model.dmp.fused_optimizer.state_dict()}


def _masks(trainer):
    return {f"{name}.{side}": getattr(layer, side).clone() for name, layer in trainer.replicated_module().named_modules()
            if isinstance(layer, SparseLinear) for side in ("out_mask", "in_mask")}


def save(trainer, path):
    """Write the checkpoint directory `path` atomically (see the module docstring). Collective."""
    path = os.path.abspath(os.fspath(path))
    partial, old = path + ".partial", path + ".old"
    main = dist.get_rank() == 0
    if main and os.path.exists(partial):
        shutil.rmtree(partial)  # what a killed save left
    dist.barrier()
    state = {**trainer_state.capture_loop(trainer), "engine": ENGINE, "masks": _masks(trainer),
             "dense_optimizer": trainer.dense_optimizer.state_dict()}
    dcp.save(_sharded_state(trainer), checkpoint_id=partial)  # every rank its shards; rank 0 the metadata
    if main:
        checkpoint.save_checkpoint(os.path.join(partial, TRAINER_FILE), state)
        if os.path.exists(path):
            shutil.rmtree(old, ignore_errors=True)  # left by a save killed after its last rename: PATH is complete
            os.rename(path, old)
        os.rename(partial, path)
        checkpoint._fsync_directory(os.path.dirname(path))
        shutil.rmtree(old, ignore_errors=True)
    dist.barrier()  # no rank goes on (or saves again) before the checkpoint is in place


def _complete_directory(path):
    """`path`, or the previous checkpoint a save killed between its renames left at `path`.old."""
    if not os.path.exists(path) and os.path.isdir(path + ".old"):
        return path + ".old"
    if os.path.isfile(path):
        raise checkpoint.CheckpointError(f"checkpoint {path!r} is a file: a checkpoint of --engine amgp (--engine "
                                         "torchrec writes a directory)")
    if not os.path.isdir(path):
        raise checkpoint.CheckpointError(f"checkpoint {path!r} does not exist")
    for name in (".metadata", TRAINER_FILE):
        if not os.path.isfile(os.path.join(path, name)):
            raise checkpoint.CheckpointError(f"checkpoint directory {path!r} lacks {name}: truncated or not a "
                                             "checkpoint of --engine torchrec")
    return path


def restore(trainer, path):
    """Load checkpoint directory `path` into `trainer` (any number of ranks); CheckpointError when it is
    missing, truncated, of the other engine or written with other settings. Collective."""
    path = _complete_directory(os.path.abspath(os.fspath(path)))
    state = checkpoint.load_checkpoint(os.path.join(path, TRAINER_FILE), map_location=trainer.device,
                                       required=("engine", "masks", "dense_optimizer", "config", "step", "schedule", "rng"))
    if state["engine"] != ENGINE:
        raise checkpoint.CheckpointError(f"checkpoint {path!r} was written by --engine {state['engine']}")
    trainer_state.check_settings(trainer, state, path)
    sharded = _sharded_state(trainer)
    try:
        dcp.load(sharded, checkpoint_id=path)  # in place, into this rank's shards
    except (Exception, CheckpointException) as error:  # missing or torn shard files (DCP's is a BaseException)
        raise checkpoint.CheckpointError(f"checkpoint directory {path!r} cannot be read (truncated or corrupt?): "
                                         f"{type(error).__name__}: {error}") from error
    trainer.model.dmp.load_state_dict(sharded["model"], strict=False)  # masks are not in it: set all-active...
    with torch.no_grad():  # ... and set here
        for name, mask in state["masks"].items():
            trainer.replicated_module().get_buffer(name).copy_(mask)  # tied masks: the same value twice
    for layer in trainer.replicated_module().modules():
        if isinstance(layer, SparseLinear):
            layer.refresh_indices()
    trainer.model.dmp.fused_optimizer.load_state_dict(sharded["embedding_optimizer"])
    trainer.dense_optimizer.load_state_dict(state["dense_optimizer"])
    # torch's load_state_dict replaces the optimizer's state dict and param groups; TorchRec's keyed wrapper
    # (which the schedule zeroes pruned state through) would keep the old ones.
    keyed = dict(trainer.optimizer.optimizers)["dense"]
    keyed.state, keyed.param_groups = trainer.dense_optimizer.state, trainer.dense_optimizer.param_groups
    trainer_state.restore_loop(trainer, state)
