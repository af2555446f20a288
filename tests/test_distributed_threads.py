"""amgp.distributed's collective helpers on two ranks that are threads of this process (tests/thread_ranks.py):
differing_state names exactly what differs from the source rank, masks decided on one rank reach every rank,
shards, means over ranks, the data-parallel wrapper. test_differing_state.py checks the same on two processes."""
import collections
import pytest
import torch
from torch import nn

from amgp import SparseMLP, distributed

from thread_ranks import available, run_ranks

pytestmark = pytest.mark.skipif(not available(), reason="this torch has no threaded test process group")

Batch = collections.namedtuple("Batch", "dense label")


def same_model():
    """Built before the ranks start: the ranks' threads share torch's random generator."""
    torch.manual_seed(0)
    return SparseMLP([6, 16, 16, 1], block_size=4)


def apart_on_rank_one(model, rank):
    """Rank 1 prunes a block of the second hidden layer and nudges a weight."""
    if rank == 1:
        model.set_out_mask(1, torch.tensor([True, False, True, True]))
        with torch.no_grad():
            model.layers[0].weight[0, 0] += 1e-6
    return model


def test_differing_state_names_what_differs_from_the_source_rank():
    models = [same_model(), same_model()]

    def check(rank):
        in_sync = distributed.differing_state(models[rank])
        model = apart_on_rank_one(models[rank], rank)
        return in_sync, distributed.differing_state(model), distributed.differing_state(model, src=1)

    rank0, rank1 = run_ranks(check)
    assert rank0[0] == rank1[0] == []
    # layers.2.in_mask is the same tensor as layers.1.out_mask (tied): one name; index lists are not compared.
    assert (rank0[1], rank1[1]) == ([], ["layers.0.weight", "layers.1.out_mask"])
    assert (rank0[2], rank1[2]) == (["layers.0.weight", "layers.1.out_mask"], [])


def test_each_rank_knows_its_place_and_its_shard():
    def check(rank):
        odd = distributed.shard((torch.arange(5), torch.arange(5) * 10))
        named = distributed.shard(Batch(torch.arange(4), torch.ones(4)))
        return (distributed.rank(), distributed.world_size(), distributed.is_main(),
                distributed.is_distributed()), odd, named

    for rank, (place, odd, named) in enumerate(run_ranks(check)):
        assert place == (rank, 2, rank == 0, True)
        assert type(odd) is tuple and [t.tolist() for t in odd] == [[[0, 1, 2], [0, 10, 20]], [[3, 4], [30, 40]]][rank]
        assert type(named) is Batch and named.dense.tolist() == [[0, 1], [2, 3]][rank] and named.label.tolist() == [1, 1]


def test_mean_across_ranks_leaves_the_value_as_it_was():
    def check(rank):
        value = torch.tensor([float(rank), 4.0])
        return distributed.mean_across_ranks(value), value

    for rank, (mean, value) in enumerate(run_ranks(check)):
        assert mean.tolist() == [0.5, 4.0] and value.tolist() == [float(rank), 4.0]


def test_every_rank_decides_but_all_get_the_source_ranks_masks():
    def check(rank):
        calls = []

        def decide(step, *, scale):
            calls.append(step * scale)
            return {"b": torch.tensor([rank == 0, True]), "a": torch.tensor([rank == 1])}

        from_0 = distributed.decided_on_rank(decide)(7, scale=1)
        from_1 = distributed.decided_on_rank(decide, src=1)(4, scale=2)
        direct = distributed.broadcast_masks({"c": torch.tensor([rank == 1, False, True])}, src=1)
        default = distributed.broadcast_masks({"d": torch.tensor([rank == 1])})  # from rank 0
        return calls, from_0, from_1, direct, default

    for calls, from_0, from_1, direct, default in run_ranks(check):
        assert default["d"].tolist() == [False]
        assert calls == [7, 8]  # any state the decision keeps stays in step on every rank
        assert list(from_0) == ["b", "a"]  # in the order the decision gave them
        assert from_0["b"].tolist() == [True, True] and from_0["a"].tolist() == [False]
        assert from_1["b"].tolist() == [False, True] and from_1["a"].tolist() == [True]
        assert direct["c"].tolist() == [True, False, True]
        assert all(mask.dtype == torch.bool for result in (from_0, from_1, direct) for mask in result.values())


class Scaled(nn.Linear):
    def scaled(self, x, factor):
        return factor * self(x)


@pytest.mark.parametrize("method, kwargs", [("forward", {}), ("scaled", {"factor": 2.0})])
def test_data_parallel_runs_the_method_with_rank_0s_weights(method, kwargs):
    """(The averaged gradients are checked on real processes: test_distributed.py; on thread ranks DDP's
    gradient all-reduce is not reliably finished when backward returns.)"""
    torch.manual_seed(0)
    models = [Scaled(3, 2), Scaled(3, 2)]  # different weights: DistributedDataParallel starts from rank 0's

    def check(rank):
        call = distributed.data_parallel(models[rank], method)
        # forward: the model itself is wrapped (its parameter names under the wrapper stay "module.<name>")
        wrapped = isinstance(call, nn.parallel.DistributedDataParallel) and (
            (call.module is models[rank]) == (method == "forward"))
        return call(torch.full((1, 3), float(rank + 1)), **kwargs).detach(), wrapped  # positional and keyword

    (out0, wrapped0), (out1, wrapped1) = run_ranks(check)
    assert wrapped0 and wrapped1
    assert torch.equal(out0, getattr(models[0], method)(torch.ones(1, 3), **kwargs).detach())
    assert torch.equal(out1, getattr(models[0], method)(torch.full((1, 3), 2.0), **kwargs).detach())
