"""amgp.distributed outside torchrun: every helper is a no-op for a single process, and before the process group
exists the rank comes from torchrun's environment (see test_differing_state.py for two real ranks)."""
import datetime
import os
import warnings

import pytest
import torch
import torch.distributed as dist

from amgp import SparseMLP, distributed
from process_ranks import free_port


def test_a_single_process_is_rank_0_of_1_and_every_helper_passes_through(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert not distributed.is_distributed() and not distributed.launched_with_several_ranks()
    assert distributed.init_from_env() == torch.device("cpu")
    assert distributed.init_from_env(use_gpu=True) == torch.device("cuda")  # (a device name: no GPU needed)
    batch = (torch.arange(4), torch.ones(4))
    assert distributed.shard(batch) is batch
    value = torch.tensor([1.0, 2.0])
    assert distributed.mean_across_ranks(value) is value
    masks = {"a": torch.tensor([True, False])}
    assert distributed.broadcast_masks(masks) is masks
    assert distributed.decided_on_rank(lambda: masks)() is masks
    model = SparseMLP([4, 8, 1], block_size=4)
    assert distributed.differing_state(model) == []
    assert distributed.data_parallel(model) == model.forward
    assert distributed.data_parallel(model, "extra_repr") == model.extra_repr
    distributed.shutdown()  # no group: nothing to end


def test_before_the_group_exists_the_rank_comes_from_torchruns_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert distributed.launched_with_several_ranks() and distributed.rank() == 3 and not distributed.is_main()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not distributed.launched_with_several_ranks() and distributed.rank() == 0


def test_decided_on_rank_keeps_the_decision_functions_doc():
    def decide():
        """Pick blocks."""
        return {}

    assert distributed.decided_on_rank(decide).__doc__ == "Pick blocks."


def test_a_worker_knows_whether_torchrun_restarted_it(monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    assert not distributed.restarted()
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    assert not distributed.restarted()
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert distributed.restarted()


def test_a_restarted_attempt_keeps_its_keys_apart_from_the_failed_ones(monkeypatch):
    """torchrun's store still holds the keys of the attempt that failed: a restarted worker's keys go under a
    prefix of its own attempt, so it never reads the dead ranks' addresses."""
    port = free_port()
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "2")
    fresh = distributed._fresh_store(datetime.timedelta(seconds=30))
    assert (fresh["rank"], fresh["world_size"]) == (0, 1)
    fresh["store"].set("address", "this attempt")
    plain = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=datetime.timedelta(seconds=30))
    assert plain.get("amgp/attempt_2/address") == b"this attempt"


SHUTDOWN_WARNING = (
    "the torch.distributed process group is still referenced after amgp.distributed.shutdown() (a "
    "DistributedDataParallel module still in use?): its worker threads outlive it and may abort the process at exit")


def test_a_one_rank_group_is_a_single_process_and_shutdown_ends_it():
    distributed.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    assert dist.is_initialized() and dist.get_backend() == "gloo"
    assert not distributed.is_distributed() and distributed.world_size() == 1
    batch = (torch.arange(4),)
    assert distributed.shard(batch) is batch
    held = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 1))
    with pytest.warns(RuntimeWarning) as caught:
        distributed.shutdown()
    assert [str(w.message) for w in caught] == [SHUTDOWN_WARNING]
    assert not caught[0].filename.endswith(os.path.join("amgp", "distributed.py"))  # points at the caller
    assert not dist.is_initialized()
    del held
    distributed.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing holds the group: no warning
        distributed.shutdown()
    assert not dist.is_initialized()


def test_without_rank_in_the_environment_a_launched_process_is_rank_0(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    assert distributed.rank() == 0


def test_several_ranks_without_torch_distributed_is_an_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(dist, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"^WORLD_SIZE > 1 but this torch build has no torch\.distributed$"):
        distributed.init_from_env()
