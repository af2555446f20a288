"""The Python API names the argument of a wrong type or value (a TypeError or ValueError saying which), never
Python's bare "'<' not supported between instances"."""
import pytest

from amgp import DLRM, SparseMLP, prune_blocks
from amgp.recurring import RecurringConfig
from amgp.engines import train
from amgp.train import TrainConfig

from criteo_file import write_criteo


@pytest.mark.parametrize("make, error, name", [
    (lambda: prune_blocks(SparseMLP([13, 64, 64, 1], block_size=8), density="0.5"), TypeError, "density"),
    (lambda: TrainConfig(amgp_density="0.5"), TypeError, "amgp_density"),
    (lambda: TrainConfig(learning_rate="0.1"), TypeError, "learning_rate"),
    (lambda: TrainConfig(mini_batch_size="64"), TypeError, "mini_batch_size"),
    (lambda: TrainConfig(mini_batch_size=0), ValueError, "mini_batch_size"),
    (lambda: TrainConfig(amgp_warmup="0.1"), TypeError, "amgp_warmup"),
    (lambda: TrainConfig(amgp_warmup=1.5), ValueError, "amgp_warmup"),
    (lambda: TrainConfig(arch_mlp_bot="13-64"), TypeError, "arch_mlp_bot"),
    (lambda: TrainConfig(use_gpu="yes"), TypeError, "use_gpu"),
    (lambda: TrainConfig(max_ind_range=[100] * 3), ValueError, "max_ind_range"),
    (lambda: TrainConfig(data_generation="criteo"), ValueError, "data_generation"),
    (lambda: RecurringConfig(drift="0.3"), TypeError, "drift"),
    (lambda: RecurringConfig(fraction="0.5"), TypeError, "fraction"),
    (lambda: DLRM([4, 5], 8, [13, 8], "4-1"), TypeError, "arch_mlp_top"),
    (lambda: DLRM([4, 5], "8", [13, 8], [4, 1]), TypeError, "arch_sparse_feature_size"),
    (lambda: DLRM([4, 5], 8, [13, 8], [4, 2]), ValueError, "arch_mlp_top must end with width 1"),
])
def test_wrong_arguments_name_themselves(make, error, name):
    with pytest.raises(error, match=name) as info:
        make()
    assert "not supported between" not in str(info.value)


def test_a_checked_config_still_takes_what_it_always_took():
    config = TrainConfig(amgp_warmup=40, amgp_final_dense=0.2, amgp_layers=["top_l"], max_ind_range=[50] * 26,
                         stop_at_step=5, arch_embedding_size=[6, 40, 300])
    assert config.amgp_warmup == 40 and config.max_ind_range == [50] * 26


def test_a_bottom_mlp_that_does_not_fit_the_data_is_named_before_training(tmp_path):
    path = tmp_path / "train.txt"
    write_criteo(path, 40)
    config = TrainConfig(data_generation="dataset", raw_data_file=str(path), arch_mlp_bot=[10, 32, 16],
                         mini_batch_size=8, progress=False)
    with pytest.raises(ValueError, match="arch_mlp_bot starts with 10 inputs, but the data has 13 dense features"):
        train(config)
