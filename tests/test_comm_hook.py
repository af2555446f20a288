"""amgp.comm_hook on two gloo ranks: the active-block all-reduce gives gradients bit-identical to DDP's own
through mask changes (sparse, dense, another sparse pattern), sends only the active blocks of the
SparseLinear weights, and counts the bytes."""
import os
import warnings

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from amgp import SparseMLP, comm_hook, distributed

from process_ranks import free_port, spawn_ranks

WORLD = 2
SIZES = [12, 40, 32, 1]  # 40: a short last block of 8 channels at block_size 16
# Per step: hidden out masks (None: every block active).
MASKS = [[[True, False, True], [False, True]], None, [[False, True, False], [True, True]],
         [[True, True, True], [True, False]]]

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")


def build():
    torch.manual_seed(0)
    return SparseMLP(SIZES, block_size=16)


def set_masks(model, masks):
    for i, layer in enumerate(model.layers[:-1]):
        model.set_out_mask(i, torch.ones(layer.n_out_blocks, dtype=torch.bool) if masks is None
                           else torch.tensor(masks[i]))


def worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD))
    torch.set_num_threads(1)
    distributed.init_from_env()
    try:
        plain, hooked, alone = build(), build(), build()
        # Tiny buckets: several per backward, a weight alone or beside others.
        ddp_plain = DistributedDataParallel(plain, bucket_cap_mb=0.002)
        ddp_hooked = DistributedDataParallel(hooked, bucket_cap_mb=0.002)
        counter = comm_hook.attach(ddp_hooked)
        steps = []
        for step, masks in enumerate(MASKS):
            gen = torch.Generator().manual_seed(100 * step + rank)  # every rank its own data
            x = torch.randn(8, SIZES[0], generator=gen)
            grads = {}
            for name, model, ddp in (("plain", plain, ddp_plain), ("hooked", hooked, ddp_hooked), ("alone", alone, alone)):
                set_masks(model, masks)
                model.zero_grad(set_to_none=True)
                ddp(x).square().sum().backward()
                grads[name] = {n: p.grad.clone() for n, p in model.named_parameters()}
            steps.append({"grads": grads, "counts": counter.pop_counts(),
                          "densities": [layer.density for layer in hooked.layers]})
        del ddp_plain, ddp_hooked
    finally:
        with warnings.catch_warnings(record=True) as caught:  # the hook state (still alive) must not hold the group
            warnings.simplefilter("always")
            distributed.shutdown()
    torch.save({"steps": steps, "shutdown_warnings": [str(w.message) for w in caught]},
               os.path.join(out_dir, f"rank{rank}.pt"))


def test_active_block_all_reduce_is_bit_identical_to_ddp_and_sends_active_blocks_only(tmp_path):
    spawn_ranks(worker, (free_port(), str(tmp_path)), nprocs=WORLD)
    saved = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    assert [s["shutdown_warnings"] for s in saved] == [[]] * WORLD  # the group really went at shutdown
    ranks = [s["steps"] for s in saved]
    model = build()
    weights = {f"layers.{i}.weight": layer for i, layer in enumerate(model.layers)}
    mlp_full = sum(layer.weight.numel() * 4 for layer in model.layers)
    total_full = sum(p.numel() * 4 for p in model.parameters())
    for rank in ranks:
        for step, (result, masks) in enumerate(zip(rank, MASKS)):
            for name, want in result["grads"]["plain"].items():
                got = result["grads"]["hooked"][name]
                assert torch.equal(got.view(torch.int32), want.view(torch.int32)), (step, name)  # bit for bit
            # Averaged over ranks: the same on every rank, where the ranks' own gradients differ.
            for n in weights:
                assert torch.equal(result["grads"]["hooked"][n], ranks[0][step]["grads"]["hooked"][n])
                assert not torch.equal(ranks[0][step]["grads"]["alone"][n], ranks[1][step]["grads"]["alone"][n])
            counts = result["counts"]
            assert counts["allreduce_bytes_full"] == total_full and counts["mlp_allreduce_bytes_full"] == mlp_full
            active = sum(d * layer.weight.numel() * 4 for d, layer in zip(result["densities"], model.layers))
            assert counts["mlp_allreduce_bytes"] == round(active)
            assert counts["allreduce_bytes"] == total_full - mlp_full + round(active)
            if masks is None:
                assert counts["allreduce_bytes"] == total_full
            else:
                assert counts["mlp_allreduce_bytes"] < mlp_full


def test_attach_and_the_meter_refuse_what_they_cannot_count():
    from amgp import CostMeter
    with pytest.raises(TypeError, match="ddp must be a DistributedDataParallel"):
        comm_hook.attach(build())
    assert comm_hook.attach(None) is None  # one process: nothing all-reduced, nothing to count
    meter = CostMeter(build())
    with pytest.raises(ValueError, match="kind must be one of"):
        meter.record_allreduce("sideways", dict.fromkeys(comm_hook.COUNTS, 1))
    meter.record_allreduce("sparse", dict(zip(comm_hook.COUNTS, (1, 4, 1, 3))))
    restored = CostMeter(build())
    restored.load_state_dict(meter.state_dict())
    assert restored.summary()["allreduce_bytes"]["sparse"] == 1
    assert restored.summary()["mlp_allreduce_bytes_full"] == {"warmup": 0, "sparse": 3, "dense": 0, "final": 0}


def test_a_destroyed_group_is_an_error_not_the_default_group():
    class Group:  # stands in for a process group: the state only holds a weak reference to it
        pass

    group = Group()
    state = comm_hook.ActiveBlockAllReduce(SparseMLP([8, 8]), group=group)
    assert state.group is group
    del group
    with pytest.raises(RuntimeError, match="process group .* was destroyed"):
        state.group
    assert comm_hook.ActiveBlockAllReduce(SparseMLP([8, 8])).group is None


def test_the_allreduce_benchmark_counts_the_active_fraction(tmp_path):
    import json
    from amgp.bench import allreduce
    out = tmp_path / "rows.json"
    assert allreduce.main(["--models", "default", "--batch", "4", "--densities", "1,0.5", "--repeats", "1",
                           "--warmup", "0", "--json", str(out)]) == 0
    rows = {(r["density"], r["variant"]): r for r in json.loads(out.read_text())}
    assert set(rows) == {(1.0, "ddp"), (1.0, "hook"), (0.5, "ddp"), (0.5, "hook")}
    sparse = rows[0.5, "hook"]
    assert sparse["mlp_bytes_fraction"] == pytest.approx(sparse["weight_density"]) and sparse["weight_density"] < 0.5
    assert rows[1.0, "hook"]["bytes_per_step"] == rows[1.0, "ddp"]["bytes_per_step"] == sparse["full_bytes_per_step"]
    with pytest.raises(SystemExit):
        allreduce.main(["--batch", "3"])  # not a multiple of the 2 ranks
