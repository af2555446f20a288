"""amgp.distributed outside torchrun: every helper is a no-op for a single process, and before the process group
exists the rank comes from torchrun's environment (see test_differing_state.py for two real ranks)."""
import pytest
import torch

from amgp import SparseMLP, distributed


def test_a_single_process_is_rank_0_of_1_and_every_helper_passes_through(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert not distributed.is_distributed() and not distributed.launched_with_several_ranks()
    assert distributed.init_from_env() == torch.device("cpu")
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
