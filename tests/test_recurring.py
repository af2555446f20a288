"""amgp.recurring without the full experiment: RecurringConfig's checks, the next day's data per seed, and
continue_training's promises (the given steps, one pass, no growth or pruning, no file loaded, its label)."""
import dataclasses

import pytest
import torch

from amgp.checkpoint import CheckpointError, save_checkpoint
from amgp.recurring import RecurringConfig, Stages, continue_training, warm_start
from amgp.train import TrainConfig, Trainer

CONFIG = TrainConfig(arch_sparse_feature_size=4, arch_embedding_size=[6, 20], arch_mlp_bot=[13, 16, 4],
                     arch_mlp_top=[16, 8, 1], mini_batch_size=32, num_batches=6, num_test_batches=1, block_size=4,
                     amgp=False, print_freq=1, progress=False)


def test_recurring_config_checks_name_the_setting():
    assert RecurringConfig(steps=1).steps == 1
    assert RecurringConfig(drift=0.0, fraction=1.0).fraction == 1.0 and RecurringConfig(drift=1.0).drift == 1.0
    for kwargs, name in (({"steps": "3"}, "^recurring steps must be"), ({"drift": "x"}, "^recurring drift must be"),
                         ({"fraction": None}, "^recurring fraction must be")):
        with pytest.raises(TypeError, match=name):
            RecurringConfig(**kwargs)
    with pytest.raises(ValueError, match=r"recurring fraction must be in \(0, 1\], got 1.5"):
        RecurringConfig(fraction=1.5)
    with pytest.raises(ValueError, match=r"recurring drift must be in \[0, 1\], got 1.5"):
        RecurringConfig(drift=1.5)
    with pytest.raises(ValueError, match="^recurring steps must be"):
        RecurringConfig(steps=0)
    with pytest.raises(ValueError, match=r"recurring drift must be in \[0, 1\]"):
        RecurringConfig(drift=-0.1)
    with pytest.raises(ValueError, match=r"recurring fraction must be in \(0, 1\]"):
        RecurringConfig(fraction=0)


def test_the_next_day_has_its_steps_and_depends_on_the_seed():
    with pytest.raises(ValueError, match="^next_day needs a recurring configuration$"):
        Stages(CONFIG).next_day(0)
    stages = Stages(CONFIG, RecurringConfig(steps=3, drift=0.5))
    day0, day0_again, day1 = stages.next_day(0), stages.next_day(0), stages.next_day(1)
    assert day0.num_batches == 3 and day0.day == 1 and day0.drift == 0.5
    first = [d.train_batch(0).dense for d in (day0, day0_again, day1)]
    assert torch.equal(first[0], first[1]) and not torch.equal(first[0], first[2])


def test_offline_data_per_seed_and_a_criteo_file_split_between_the_stages(tmp_path):
    stages = Stages(CONFIG)
    assert stages.offline(3).seed == 3 and stages.offline(4).seed == 4
    assert not torch.equal(stages.offline(3).train_batch(0).dense, stages.offline(4).train_batch(0).dense)
    criteo = tmp_path / "days.txt"
    criteo.write_text("".join("\t".join([str(i % 2)] + [str(i)] * 13 + ["a1"] * 26) + "\n" for i in range(20)))
    on_criteo = dataclasses.replace(CONFIG, data_generation="dataset", raw_data_file=str(criteo), mini_batch_size=4)
    assert Stages(on_criteo).offline(0).train.rows == 18  # no recurring stage: every line is offline
    whole = Stages(on_criteo, RecurringConfig(fraction=1.0))
    with pytest.raises(ValueError, match="^recurring fraction 1 makes the whole file the next day: no lines are left "
                                         "for the offline stage$"):
        whole.offline(0)


def test_continue_training_runs_the_given_steps_once_without_pruning_or_loading(tmp_path, capsys):
    offline = Trainer(CONFIG)
    offline.run()
    state = offline.model.state_dict()
    # Settings of the offline run that must not carry over: pruning, other batch and epoch counts, a file to load,
    # an early stop.
    config = dataclasses.replace(CONFIG, static_prune=True, num_batches=2, nepochs=3, stop_at_step=1,
                                 load_model=str(tmp_path / "missing.pt"), progress=True)
    data = Stages(CONFIG, RecurringConfig(steps=4)).next_day(0)
    capsys.readouterr()
    report = continue_training(config, state, data, 4, label="day two")
    assert report["mode"] == "recurring" and report["steps"] == 4 and report["samples"] == 4 * 32
    assert report["final_density"] == 1.0 and report["mlp_flops_saving"] == 0
    out = capsys.readouterr()
    assert "day two: step 4/4" in out.out + out.err
    continue_training(config, state, data, 4)
    out = capsys.readouterr()
    assert "recurring: step 4/4" in out.out + out.err


def test_warm_start_names_the_checkpoint_that_cannot_be_used(tmp_path):
    saved = tmp_path / "offline.pt"
    Trainer(dataclasses.replace(CONFIG, save_model=str(saved))).run()
    criteo = tmp_path / "day.txt"
    criteo.write_text("\t".join(["1"] + ["3"] * 13 + ["a1"] * 26) + "\n")
    on_criteo = dataclasses.replace(CONFIG, data_generation="dataset", raw_data_file=str(criteo))
    with pytest.raises(ValueError, match=rf"the model in {saved} \(--load-model\) has 2 embedding tables"):
        warm_start(on_criteo, str(saved), RecurringConfig(steps=2))
    bare = tmp_path / "bare.pt"
    save_checkpoint(str(bare), {"model": torch.load(saved, weights_only=True)["model"]})
    with pytest.raises(CheckpointError, match=r"lacks \['config'\]"):
        warm_start(CONFIG, str(bare), RecurringConfig(steps=2))
