"""--synthetic-task capacity: the built-in task on which MLP capacity pays (amgp.data.tasks)."""
import pytest
import torch

from amgp.cli.dlrm import build_parser, config_from_args
from amgp.cli.parser import given_dests
from amgp.config import TrainConfig
from amgp.data import CAPACITY_SETTINGS, SyntheticCTR, build_data
from amgp.data.tasks import TEACHERS
from amgp.metrics import ctr_metrics


def capacity(**kwargs):
    return SyntheticCTR(batch_size=4096, num_batches=1, num_test_batches=2, **TEACHERS["capacity"], **kwargs)


def test_the_deep_term_carries_most_of_the_signal_and_stays_learnable():
    data = capacity(table_sizes=CAPACITY_SETTINGS["arch_embedding_size"])
    batch = data.train_batch(0)
    deep = data.teacher._deep_logits((batch.dense - data.teacher.dense_center) / data.teacher.dense_scale)
    everything = data.teacher.logits(batch.dense, batch.sparse)
    rest = everything - deep
    assert float(deep.var()) > 2 * float(rest.var())  # two thirds of the logit variance, and more
    labels = torch.cat([b.label for b in data.test_batches()])
    teacher = ctr_metrics(labels, torch.cat([data.teacher_probability(b) for b in data.test_batches()]))
    rate = float(labels.mean())
    base_rate_logloss = -(rate * torch.log(torch.tensor(rate)) + (1 - rate) * torch.log(torch.tensor(1 - rate)))
    assert teacher["logloss"] < 0.6 * float(base_rate_logloss)


def test_the_capacity_teacher_drifts_like_the_default_one():
    today, tomorrow = capacity(), capacity(day=1, drift=0.3)
    for name in today.teacher.deep:
        p, q = getattr(today.teacher, name).flatten(), getattr(tomorrow.teacher, name).flatten()
        if p.numel() > 1 and float(p.std()) > 0:
            assert float(torch.corrcoef(torch.stack([p, q]))[0, 1]) == pytest.approx(0.954, abs=0.05), name
    # the default task has no deep term, and its data do not change
    default = SyntheticCTR(batch_size=64, num_batches=1, num_test_batches=1)
    assert default.teacher.deep == []
    same = build_data(TrainConfig(mini_batch_size=64, num_batches=1, num_test_batches=1))
    assert torch.equal(default.train_batch(0).label, same.train_batch(0).label)


def test_the_command_line_takes_the_task_sizes_where_no_flag_is_given():
    argv = ["--synthetic-task", "capacity", "--mini-batch-size", "128"]
    parser = build_parser()
    config = config_from_args(parser.parse_args(argv), parser, given_dests(build_parser, argv))
    assert config.synthetic_task == "capacity" and config.mini_batch_size == 128
    for name in ("arch_mlp_bot", "arch_mlp_top", "arch_embedding_size", "block_size", "num_batches", "learning_rate"):
        assert getattr(config, name) == CAPACITY_SETTINGS[name], name
    with pytest.raises(ValueError, match="synthetic_task"):
        TrainConfig(synthetic_task="hard")
