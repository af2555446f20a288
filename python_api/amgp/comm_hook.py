"""Gradient all-reduce over the active blocks only: a DistributedDataParallel communication hook.

In a sparse phase the inactive blocks of every SparseLinear weight gradient are exact zeros on every rank
(the op contract) and masks are identical on every rank (rank 0 decides and broadcasts), so summing them
over the network is wasted traffic. For each bucket the hook packs the active blocks of the SparseLinear
weights in it, and every other gradient in full, scales by 1/world as DDP's own path does, all-reduces the
packed buffer and scatters it back (inactive blocks come back as zeros). With every block of a bucket
active it all-reduces the bucket as it stands, DDP's default work. It counts the bytes it all-reduced
against those DDP would have, in total and for the SparseLinear weights alone ("mlp").

Exactness: every element sees the same scaling and the same additions as under DDP's default hook, so
with 2 ranks (a + b = b + a) the averaged gradients are bit-identical; with more ranks the backend may
add the ranks' values in another order for an element that moved in the buffer (a rounding difference).
"""
import collections
import weakref

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .sparse_linear import SparseLinear

COUNTS = ("allreduce_bytes", "allreduce_bytes_full", "mlp_allreduce_bytes", "mlp_allreduce_bytes_full")

# keep: int64 positions in the bucket's flat buffer that are sent (None: everything); counts: byte counts.
_Plan = collections.namedtuple("_Plan", "keep counts")
_MAX_PLANS = 64  # bucket layouts x mask states kept; more only after many mask changes


def _weights(module):
    """{id(weight): layer} of the SparseLinear layers in `module`."""
    return {id(m.weight): m for m in module.modules() if isinstance(m, SparseLinear)}


class ActiveBlockAllReduce:
    """The hook's state: which parameters are SparseLinear weights, the packing plan of each bucket
    layout and mask state, and the byte counts since the last pop_counts()."""

    def __init__(self, module, group=None):
        # Weakly: a hook state that kept the group alive past amgp.distributed.shutdown() would let its worker
        # threads outlive it, and a gloo thread finishing a callback at exit deadlocks or aborts the process.
        self._group = None if group is None else weakref.ref(group)
        self.layers = _weights(module)
        self._plans = {}
        self.counts = dict.fromkeys(COUNTS, 0)

    @property
    def group(self):
        """The process group the gradients are all-reduced over (None: the default group)."""
        if self._group is None:
            return None
        group = self._group()
        if group is None:  # not the default group in its stead: that would average over other ranks
            raise RuntimeError("amgp.comm_hook: the process group this hook all-reduces over was destroyed")
        return group

    def pop_counts(self):
        """{name: bytes} all-reduced since the last call (see COUNTS), and start again from zero."""
        counts, self.counts = self.counts, dict.fromkeys(COUNTS, 0)
        return counts

    def _plan(self, bucket):
        params = bucket.parameters()
        layers = [self.layers.get(id(p)) for p in params]
        # mask_version changes with every mask change, so a new mask state gets a new plan.
        key = (tuple(id(p) for p in params), tuple(None if layer is None else layer.mask_version for layer in layers))
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()
            plan = self._plans[key] = _make_plan(bucket.buffer(), bucket.gradients(), layers)
        return plan

    def all_reduce(self, bucket):
        """DDP's hook contract: a Future of the bucket's averaged flat gradient."""
        buffer = bucket.buffer()
        plan = self._plan(bucket)
        for name, value in plan.counts.items():
            self.counts[name] += value
        scale = 1.0 / dist.get_world_size(self.group)  # a multiply, as DDP's reducer does (not a divide)
        if plan.keep is None:
            wire = buffer.mul_(scale)
            return dist.all_reduce(wire, group=self.group, async_op=True).get_future().then(lambda f: f.value()[0])
        wire = buffer.index_select(0, plan.keep).mul_(scale)  # a gather: cheaper than masked_select

        def unpack(future):
            return buffer.zero_().index_copy_(0, plan.keep, future.value()[0])

        return dist.all_reduce(wire, group=self.group, async_op=True).get_future().then(unpack)


def _make_plan(buffer, gradients, layers):
    keep = torch.ones(buffer.numel(), dtype=torch.bool, device=buffer.device)
    size = buffer.element_size()
    mlp_full = mlp_sent = 0
    for grad, layer in zip(gradients, layers):
        if layer is None:
            continue
        start = (grad.data_ptr() - buffer.data_ptr()) // size  # its place in the flat buffer
        layer.refresh_indices()
        mask = layer.weight_mask.flatten()
        keep[start:start + mask.numel()] = mask
        mlp_full += mask.numel()
        mlp_sent += int(mask.sum())
    sent = int(keep.sum())
    counts = {"allreduce_bytes": sent * size, "allreduce_bytes_full": buffer.numel() * size,
              "mlp_allreduce_bytes": mlp_sent * size, "mlp_allreduce_bytes_full": mlp_full * size}
    return _Plan(None if sent == buffer.numel() else keep.nonzero().flatten(), counts)


def _hook(state, bucket):
    return state.all_reduce(bucket)


class FullSizeCount:
    """The byte counts of DDP's own all-reduce (no hook): every gradient in full, every step."""

    def __init__(self, ddp):
        ignored = getattr(ddp, "parameters_to_ignore", ())  # e.g. TorchRec's sharded tables
        params = [p for name, p in ddp.module.named_parameters() if p.requires_grad and name not in ignored]
        weights = _weights(ddp.module)
        total = sum(p.numel() * p.element_size() for p in params)
        mlp = sum(p.numel() * p.element_size() for p in params if id(p) in weights)
        self.step_counts = dict(zip(COUNTS, (total, total, mlp, mlp)))

    def pop_counts(self):
        return dict(self.step_counts)


def attach(ddp, full_allreduce=False):
    """The byte counter of DistributedDataParallel module `ddp` (None: no DDP, nothing all-reduced): the
    active-block hook, registered on it, or with full_allreduce=True DDP's own all-reduce, counted."""
    if ddp is None:
        return None
    if not isinstance(ddp, DistributedDataParallel):
        raise TypeError(f"ddp must be a DistributedDataParallel module or None, got {type(ddp).__name__}")
    if full_allreduce:
        return FullSizeCount(ddp)
    state = ActiveBlockAllReduce(ddp.module, group=ddp.process_group)
    ddp.register_comm_hook(state, _hook)
    return state
