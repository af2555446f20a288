"""Multi-process training (torchrun): rank and world from the environment, the process group, each
rank's shard of a global batch, and block masks decided once and identical on every rank.

Under `torchrun --nproc_per_node=N` every rank runs the same program. DistributedDataParallel averages
the gradients, so weights stay identical as long as every rank applies the same mask changes: mask
decisions (pruning scores may come from rank-local statistics) are made on rank 0 and broadcast.
Outside torchrun (WORLD_SIZE unset or 1) every helper is a no-op for a single process.
"""
import datetime
import gc
import importlib
import os
import time
import warnings
import weakref

import torch
import torch.distributed as dist
from torch import nn


# How long shutdown() lets the group's worker threads take the GIL before destroying the group (see there).
_RELEASE_WAIT_S = 0.05


def is_distributed():
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank():
    """This process's rank: from the process group, else (before it is joined or after it is left)
    from torchrun's environment, else 0."""
    if is_distributed():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if launched_with_several_ranks() else 0


def world_size():
    return dist.get_world_size() if is_distributed() else 1


def is_main():
    """Rank 0 (or a single process): the one that prints, writes reports and checkpoints."""
    return rank() == 0


def launched_with_several_ranks():
    """True inside a multi-process launch (torchrun sets WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def restarted():
    """True in a worker that torchrun started again after a failure (torchrun --max-restarts N)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def init_from_env(use_gpu=False, timeout_s=1800):
    """Join the process group torchrun describes (gloo on CPU, nccl on GPU) and return this rank's
    device; in a single process just return the device."""
    if not launched_with_several_ranks():
        return torch.device("cuda" if use_gpu else "cpu")
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    device = torch.device("cpu")
    if use_gpu:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend, timeout = "nccl" if use_gpu else "gloo", datetime.timedelta(seconds=timeout_s)
        if restarted():
            init_process_group(backend, timeout=timeout, **_fresh_store(timeout))
        else:
            init_process_group(backend, timeout=timeout)
    return device


def _fresh_store(timeout):
    """store/rank/world_size for a worker torchrun restarted: torchrun's store still holds the keys the
    failed attempt wrote (gloo would connect to the dead ranks' addresses and fail), so every attempt
    works under its own key prefix."""
    store, rank_, world = next(dist.rendezvous("env://", timeout=timeout))
    prefix = f"amgp/attempt_{os.environ['TORCHELASTIC_RESTART_COUNT']}"
    return {"store": dist.PrefixStore(prefix, store), "rank": rank_, "world_size": world}


def init_process_group(backend, **kwargs):
    """dist.init_process_group, so that shutdown() can end the group for real.

    torch.distributed.nn.functional takes `group=group.WORLD` as a default argument, evaluated at import;
    torch imports it lazily (with torch._dynamo, e.g. at the first optimizer), and after the group exists
    that default would keep the group alive for good, so shutdown() could not stop its worker threads.
    Imported first, the default is None."""
    importlib.import_module("torch.distributed.nn.functional")
    dist.init_process_group(backend, **kwargs)


def shutdown():
    """Leave the process group and stop its worker threads before the interpreter exits.

    A gloo worker thread releases a finished collective's tensors just after the caller has moved on,
    and releasing a tensor that has a Python object takes the GIL. If that happens while the
    interpreter finalizes, the thread is unwound through a noexcept destructor and the process aborts
    ("terminate called without an active exception"), more often the busier the CPU. The group's
    destructor waits for its threads, so the group must really be gone when this returns:
    destroy_process_group() drops torch's references; a live DistributedDataParallel holds another.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    group = weakref.ref(dist.group.WORLD)
    gc.collect()  # DistributedDataParallel wrappers in reference cycles hold the group
    # A worker thread may still be releasing the tensors of a collective that has completed (a comm hook's,
    # made in Python): it needs the GIL for that, and the group's destructor below waits for the thread while
    # holding the GIL, a deadlock (seen once in CI under torch 2.5). Sleeping lets such a thread take the GIL.
    time.sleep(_RELEASE_WAIT_S)
    dist.destroy_process_group()
    if group() is not None:
        warnings.warn("the torch.distributed process group is still referenced after amgp.distributed.shutdown() "
                      "(a DistributedDataParallel module still in use?): its worker threads outlive it and may "
                      "abort the process at exit", RuntimeWarning, stacklevel=2)


def shard(batch):
    """This rank's contiguous share of a global batch (a tuple / NamedTuple of tensors sharing dim 0).
    Shares are equal when the rows divide by the world size; then DDP's mean of per-rank mean
    gradients is exactly the global batch's mean gradient."""
    world = world_size()
    if world == 1:
        return batch
    r = rank()
    parts = [t.tensor_split(world)[r] for t in batch]
    return type(batch)(*parts) if hasattr(batch, "_fields") else type(batch)(parts)  # NamedTuple or tuple


def mean_across_ranks(value):
    """The mean over ranks of a tensor (a copy; the value itself in a single process)."""
    if not is_distributed():
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / world_size()


def broadcast_masks(masks, src=0):
    """{name: bool block mask} with rank `src`'s values on every rank (same names on every rank)."""
    if not is_distributed():
        return masks
    result = {}
    for name in sorted(masks):
        mask = masks[name]
        wire = mask.to(torch.uint8).contiguous()  # not every backend broadcasts bool tensors
        if dist.get_backend() == "nccl":
            wire = wire.cuda()
        dist.broadcast(wire, src)
        result[name] = wire.to(device=mask.device, dtype=torch.bool)
    return {name: result[name] for name in masks}


def decided_on_rank(decide, src=0):
    """Wrap a mask decision function (-> {name: bool mask}) so that every rank still runs it (so any
    state it keeps stays in step) but every rank gets rank `src`'s masks."""
    def decide_everywhere(*args, **kwargs):
        return broadcast_masks(decide(*args, **kwargs), src)

    decide_everywhere.__doc__ = decide.__doc__
    return decide_everywhere


def differing_state(module, src=0):
    """Names in module.state_dict() whose value on this rank is not bit-identical to rank `src`'s
    (empty in a single process). Collective: every rank must call it."""
    if not is_distributed():
        return []
    # Parameters and buffers, not state_dict(): it leaves all-active masks out, so its keys could
    # differ between ranks exactly when something is wrong. Index lists derive from the masks.
    tensors = list(module.named_parameters()) + [
        (name, buffer) for name, buffer in module.named_buffers() if not name.endswith("_index")]
    differ = []
    for name, value in tensors:
        reference = value.detach().clone().contiguous()
        wire = reference.view(torch.uint8) if reference.dtype == torch.bool else reference
        dist.broadcast(wire, src)
        if not torch.equal(reference, value):
            differ.append(name)
    return differ


class _CallMethod(nn.Module):
    """DistributedDataParallel hooks forward(); this forward() calls another method (e.g. logits)."""

    def __init__(self, module, method):
        super().__init__()
        self.module = module
        self.method = method

    def forward(self, *args, **kwargs):
        return getattr(self.module, self.method)(*args, **kwargs)


def data_parallel(model, method="forward"):
    """A callable running model.<method> that, across several ranks, goes through
    DistributedDataParallel (gradients averaged over ranks); in one process the method itself."""
    if not is_distributed():
        return getattr(model, method)
    device = next(model.parameters()).device
    wrapped = model if method == "forward" else _CallMethod(model, method)
    return nn.parallel.DistributedDataParallel(wrapped, device_ids=[device.index] if device.type == "cuda" else None)
