"""differing_state across two CPU ranks (gloo): it names exactly what differs from rank 0 — a pruned mask, a
weight — and nothing on ranks in sync. The same two ranks check the other collective helpers' results: rank and
world size, each rank's shard of a batch, the mean over ranks, and masks decided on rank 0."""
import os

import pytest
import torch
import torch.distributed as dist

from amgp import SparseMLP, distributed
from process_ranks import free_port, spawn_ranks

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")


def worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    device = distributed.init_from_env()
    try:
        torch.manual_seed(0)
        model = SparseMLP([6, 16, 16, 1], block_size=4)
        in_sync = distributed.differing_state(model)
        if rank == 1:  # this rank alone prunes a block of the second hidden layer and nudges a weight
            model.set_out_mask(1, torch.tensor([True, False, True, True]))
            with torch.no_grad():
                model.layers[0].weight[0, 0] += 1e-6
        apart = distributed.differing_state(model)
        helpers = {
            "joined": (device, dist.get_backend()),
            "rank": (distributed.rank(), distributed.world_size(), distributed.is_main()),
            "shard": distributed.shard((torch.arange(5), torch.arange(5) * 10)),
            "mean": distributed.mean_across_ranks(torch.tensor([float(rank), 4.0])),
            "masks": distributed.decided_on_rank(lambda: {"b": torch.tensor([rank == 0, True]),
                                                          "a": torch.tensor([rank == 1])})(),
        }
    finally:
        distributed.shutdown()
    torch.save({"in_sync": in_sync, "apart": apart, **helpers}, os.path.join(out_dir, f"rank{rank}.pt"))


def test_differing_state_names_the_mask_and_weight_that_differ_from_rank_0(tmp_path):
    spawn_ranks(worker, (free_port(), str(tmp_path)), nprocs=2)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert (rank0["in_sync"], rank0["apart"]) == ([], [])  # rank 0 is the reference
    assert rank1["in_sync"] == []
    # layers.2.in_mask is the same tensor as layers.1.out_mask (tied): one name for it.
    assert rank1["apart"] == ["layers.0.weight", "layers.1.out_mask"]

    for r, result in enumerate((rank0, rank1)):
        assert result["joined"] == (torch.device("cpu"), "gloo")
        assert result["rank"] == (r, 2, r == 0)
        assert [t.tolist() for t in result["shard"]] == [[[0, 1, 2], [0, 10, 20]], [[3, 4], [30, 40]]][r]
        assert result["mean"].tolist() == [0.5, 4.0]
        # Rank 0's decision on both ranks, names in the order the decision gave them.
        assert list(result["masks"]) == ["b", "a"]
        assert result["masks"]["b"].tolist() == [True, True] and result["masks"]["a"].tolist() == [False]
        assert result["masks"]["a"].dtype == torch.bool
