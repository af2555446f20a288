"""Two CPU processes (gloo): masks decided on rank 0 and broadcast stay bit-identical on every rank
through prune/grow cycles under DistributedDataParallel, and the loss matches one process training on
the same global batches: for SparseMLP with amgp.distributed's helpers, and for amgp-dlrm under torchrun."""
import json
import os
import subprocess
import sys
import warnings

import pytest
import torch
import torch.distributed as dist

from amgp import SparseMLP, distributed, zero_inactive_
from amgp.checkpoint import load_checkpoint
from process_ranks import free_port, spawn_ranks

WORLD = 2
SIZES = [12, 32, 32, 1]
STEPS = 12
MASK_STEPS = {3: 0.5, 6: 1.0, 8: 0.25, 10: 1.0}  # step -> density of hidden blocks (1.0 = grow back)
GLOBAL_BATCH = 16

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")


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


def native_threads():
    """Names of this process's OS threads (Linux), C++ ones included; None where /proc is missing."""
    tasks = f"/proc/{os.getpid()}/task"
    if not os.path.isdir(tasks):
        return None
    names = []
    for task in os.listdir(tasks):
        try:
            with open(f"{tasks}/{task}/comm") as f:
                names.append(f.read().strip())
        except OSError:  # the thread ended meanwhile
            pass
    return names


def train_rank(rank):
    model, optimizer = build()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    decide_masks = distributed.decided_on_rank(lambda m, density: decide(m, density, seed=rank))
    losses, snapshots = train(model, optimizer, decide_masks, ddp, distributed.shard, distributed.mean_across_ranks)
    return {"losses": losses, "differ": distributed.differing_state(model), "snapshots": snapshots,
            "state": model.state_dict()}


def worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    distributed.init_from_env()
    try:
        result = train_rank(rank)
    finally:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            distributed.shutdown()
    # A gloo worker thread still running at interpreter exit can abort the process (see shutdown()).
    result.update(shutdown_warnings=[str(w.message) for w in caught], threads_after_shutdown=native_threads())
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))


def test_two_ranks_keep_identical_masks_and_weights_and_match_one_process(tmp_path):
    spawn_ranks(worker, (free_port(), str(tmp_path)), nprocs=WORLD)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    torch.set_num_threads(1)
    model, optimizer = build()  # one process, whole global batches, rank 0's decisions
    single, snapshots = train(model, optimizer, lambda m, density: decide(m, density, seed=0), model, lambda b: b,
                   lambda loss: loss)

    # Without the broadcast the ranks would have pruned different blocks.
    assert any(not torch.equal(a, b) for a, b in zip(decide(model, 0.5, 0).values(), decide(model, 0.5, 1).values()))
    for result in results:
        assert result["shutdown_warnings"] == []
        assert not any("gloo" in name for name in result["threads_after_shutdown"] or [])
        assert result["differ"] == []  # bit-identical parameters and masks on every rank
        assert len(result["snapshots"]) == len(MASK_STEPS)
        for got, want in zip(result["snapshots"], snapshots):
            assert len(got) == len(want) and all(torch.equal(a, b) for a, b in zip(got, want))
        torch.testing.assert_close(torch.tensor(result["losses"]), torch.tensor(single), atol=1e-5, rtol=1e-5)
    assert sorted(results[0]["state"]) == sorted(results[1]["state"])
    for key, value in results[0]["state"].items():
        assert torch.equal(value, results[1]["state"][key]), key


# ----- amgp-dlrm under torchrun --------------------------------------------------------------
# Steps 0..23: warmup 4, sparse 4, dense 2, sparse 4, dense 2, sparse 4, final 4 (3 prune/grow cycles);
# stopping at 20 ends inside the third sparse phase.
DLRM_RUN = ["--arch-sparse-feature-size", "8", "--arch-embedding-size", "50-40-30", "--arch-mlp-bot", "13-32-8",
            "--arch-mlp-top", "32-16-1", "--mini-batch-size", "64", "--num-batches", "24", "--num-test-batches", "1",
            "--block-size", "8", "--amgp-warmup", "4", "--amgp-dense-steps", "2", "--amgp-final-dense", "4",
            "--amgp-cycles", "3", "--print-freq", "1", "--no-progress", "--stop-at-step", "20"]


def run_dlrm(tmp_path, name, launcher, *extra, entry=("-m", "amgp.cli.dlrm"), env=None):
    report, ckpt = tmp_path / f"{name}.json", tmp_path / f"{name}.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    result = subprocess.run([*launcher, *entry, *DLRM_RUN, *extra, "--report-json", str(report),
                             "--save-model", str(ckpt)], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(report.read_text()), load_checkpoint(ckpt), result.stdout


def test_amgp_dlrm_under_torchrun_two_ranks_matches_one_process(tmp_path):
    single, single_ckpt, _ = run_dlrm(tmp_path, "single", [sys.executable])
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(WORLD)]
    multi, multi_ckpt, stdout = run_dlrm(tmp_path, "multi", torchrun)

    assert multi["world_size"] == WORLD and single["world_size"] == 1
    assert multi["ranks_differing_state"] == []  # every parameter and mask bit-identical across ranks
    assert stdout.count("test AUC") == 1  # rank 0 alone reports
    masks = {k: v for k, v in multi_ckpt["model"].items() if k.endswith("_mask")}
    assert masks and any(not bool(m.all()) for m in masks.values())  # stopped inside a sparse phase
    for key, value in multi_ckpt["model"].items():
        if key.endswith("_mask"):
            assert torch.equal(value, single_ckpt["model"][key]), key
        else:
            torch.testing.assert_close(value, single_ckpt["model"][key], atol=1e-4, rtol=1e-4, msg=key)
    losses = [loss for _, loss in multi["history"]["loss"]]
    assert len(losses) == 20
    torch.testing.assert_close(torch.tensor(losses), torch.tensor([loss for _, loss in single["history"]["loss"]]),
                               atol=1e-4, rtol=1e-4)
    assert multi["mlp_flops_dense"] == single["mlp_flops_dense"]  # global batches counted once

    # The active-block all-reduce (amgp.comm_hook, on by default) against DDP's own: the same model bit for
    # bit, fewer MLP gradient bytes in sparse phases (the hook counts them per phase kind), the same in dense.
    full, full_ckpt, _ = run_dlrm(tmp_path, "full", torchrun, "--full-allreduce")
    assert full["history"]["loss"] == multi["history"]["loss"]
    for key, value in full_ckpt["model"].items():
        assert torch.equal(value, multi_ckpt["model"][key]), key
    assert multi["mlp_allreduce_bytes"]["sparse"] < 0.8 * full["mlp_allreduce_bytes"]["sparse"]
    assert full["mlp_allreduce_bytes"] == full["mlp_allreduce_bytes_full"] == multi["mlp_allreduce_bytes_full"]
    for kind in ("warmup", "dense"):  # (stopped before the final phase)
        assert multi["allreduce_bytes"][kind] == multi["allreduce_bytes_full"][kind] > 0
    assert single["allreduce_bytes"]["sparse"] == 0  # one process: nothing all-reduced

    # Elastic: rank 1 is SIGKILLed before step 10; torchrun restarts both ranks, which resume from the latest
    # complete checkpoint (step 8, --checkpoint-freq 4) and end with the same model and report.
    restartable = [*torchrun[:3], "--max-restarts", "1", *torchrun[3:]]
    elastic, elastic_ckpt, elastic_out = run_dlrm(
        tmp_path, "elastic", restartable, "--checkpoint-freq", "4", entry=[os.path.join(os.path.dirname(__file__),
                                                                           "elastic_kill_once.py")],
        env={"AMGP_TEST_KILL_AT_STEP": "10"})
    assert "restarted: resuming from" in elastic_out and "(step 8)" in elastic_out
    assert elastic["history"] == multi["history"] and elastic["test_auc"] == multi["test_auc"]
    assert elastic["phase_steps"] == multi["phase_steps"] and elastic["mlp_flops_computed"] == multi["mlp_flops_computed"]
    for key, value in elastic_ckpt["model"].items():
        assert torch.equal(value, multi_ckpt["model"][key]), key
