"""Two CPU processes (gloo): masks decided on rank 0 and broadcast stay bit-identical on every rank
through prune/grow cycles under DistributedDataParallel, and the loss matches one process training on
the same global batches."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from amgp import SparseMLP, distributed, zero_inactive_

WORLD = 2
SIZES = [12, 32, 32, 1]
STEPS = 12
MASK_STEPS = {3: 0.5, 6: 1.0, 8: 0.25, 10: 1.0}  # step -> density of hidden blocks (1.0 = grow back)
GLOBAL_BATCH = 16

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def global_batch(step):
    gen = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(GLOBAL_BATCH, SIZES[0], generator=gen)
    return x, (x[:, :1] * x[:, 1:2] > 0).float()


def decide(model, density, seed):
    """Random hidden masks from a generator seeded per rank: ranks disagree unless broadcast."""
    gen = torch.Generator().manual_seed(seed)
    masks = {}
    for i, layer in enumerate(model.layers[:-1]):
        keep = max(1, round(density * layer.n_out_blocks))
        mask = torch.zeros(layer.n_out_blocks, dtype=torch.bool)
        mask[torch.randperm(layer.n_out_blocks, generator=gen)[:keep]] = True
        masks[f"layers.{i}"] = mask
    return masks


def train(model, optimizer, decide_masks, forward, take_shard, mean_loss):
    """Train STEPS steps; (per-step global loss, hidden masks after each mask change)."""
    losses, snapshots = [], []
    for step in range(STEPS):
        if step in MASK_STEPS:
            for name, mask in decide_masks(model, MASK_STEPS[step]).items():
                model.set_out_mask(int(name.split(".")[1]), mask)
            for layer in model.layers:
                zero_inactive_(layer, optimizer)
            snapshots.append([layer.out_mask.clone() for layer in model.layers[:-1]])
        x, y = take_shard(global_batch(step))
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(forward(x).squeeze(-1), y.squeeze(-1))
        loss.backward()
        optimizer.step()
        losses.append(float(mean_loss(loss.detach())))
    return losses, snapshots


def build():
    torch.manual_seed(0)
    model = SparseMLP(SIZES, block_size=8)
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    distributed.init_from_env()
    try:
        model, optimizer = build()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        decide_masks = distributed.decided_on_rank(lambda m, density: decide(m, density, seed=rank))
        losses, snapshots = train(model, optimizer, decide_masks, ddp, distributed.shard,
                                  distributed.mean_across_ranks)
        differ = distributed.differing_state(model)
        torch.save({"losses": losses, "differ": differ, "snapshots": snapshots, "state": model.state_dict()},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        distributed.shutdown()


def test_two_ranks_keep_identical_masks_and_weights_and_match_one_process(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    torch.set_num_threads(1)
    model, optimizer = build()  # one process, whole global batches, rank 0's decisions
    single, snapshots = train(model, optimizer, lambda m, density: decide(m, density, seed=0), model, lambda b: b,
                   lambda loss: loss)

    # Without the broadcast the ranks would have pruned different blocks.
    assert any(not torch.equal(a, b) for a, b in zip(decide(model, 0.5, 0).values(), decide(model, 0.5, 1).values()))
    for result in results:
        assert result["differ"] == []  # bit-identical parameters and masks on every rank
        assert len(result["snapshots"]) == len(MASK_STEPS)
        for got, want in zip(result["snapshots"], snapshots):
            assert all(torch.equal(a, b) for a, b in zip(got, want))
        torch.testing.assert_close(torch.tensor(result["losses"]), torch.tensor(single), atol=1e-5, rtol=1e-5)
    for a, b in zip(results[0]["state"].values(), results[1]["state"].values()):
        assert torch.equal(a, b)
