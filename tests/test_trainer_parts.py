"""What a Trainer builds from its settings (amgp.trainer_parts): the optimizer asked for with its settings, sparse
embedding gradients only where the optimizer applies them exactly, the model's check against the data, and the
schedule of each mode (AMGP, static pruning, dense)."""
import dataclasses
import types

import pytest
import torch

from amgp.config import TrainConfig
from amgp.dlrm import DLRM
from amgp import distributed
from amgp.trainer_parts import EngineParts, build_model, build_optimizer, build_schedule, sparse_embedding_grad

CONFIG = TrainConfig(arch_sparse_feature_size=4, arch_embedding_size=[6, 20], arch_mlp_bot=[13, 16, 4],
                     arch_mlp_top=[16, 8, 1], block_size=4, learning_rate=0.05, momentum=0.5, weight_decay=0.02,
                     amgp_warmup=2, amgp_final_dense=3, amgp_dense_steps=1, amgp_cycles=2, amgp_density=0.5,
                     progress=False)
DATA = types.SimpleNamespace(num_dense=13, table_sizes=[6, 20])


@pytest.mark.parametrize("name, kind, settings", [
    ("sgd", torch.optim.SGD, {"lr": 0.05, "momentum": 0.5, "weight_decay": 0.02}),
    ("adagrad", torch.optim.Adagrad, {"lr": 0.05, "weight_decay": 0.02}),
    ("adam", torch.optim.Adam, {"lr": 0.05, "weight_decay": 0.02}),
    ("adamw", torch.optim.AdamW, {"lr": 0.05, "weight_decay": 0.02}),  # (not AdamW's default 0.01)
])
def test_the_optimizer_asked_for_with_its_settings(name, kind, settings):
    model = torch.nn.Linear(3, 2)
    for target in (model, list(model.parameters())):  # a module, or its parameters
        optimizer = build_optimizer(dataclasses.replace(CONFIG, optimizer=name), target)
        assert type(optimizer) is kind
        group = optimizer.param_groups[0]
        assert {key: group[key] for key in settings} == settings
        assert group["params"] == list(model.parameters())


def test_an_unknown_optimizer_is_an_error_naming_it():
    config = dataclasses.replace(CONFIG)
    object.__setattr__(config, "optimizer", "lamb")  # (past TrainConfig's own check)
    with pytest.raises(ValueError, match=r"^optimizer must be one of \('sgd', 'adagrad', 'adam', 'adamw'\), got 'lamb'$"):
        build_optimizer(config, torch.nn.Linear(2, 1))


@pytest.mark.parametrize("settings, sparse", [
    ({"optimizer": "adagrad", "weight_decay": 0.0}, True),
    ({"optimizer": "sgd", "momentum": 0.0, "weight_decay": 0.0}, True),
    ({"optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.0}, False),  # momentum would be wrong on rows not seen
    ({"optimizer": "adagrad", "weight_decay": 0.01}, False),  # decay applies to every row
    ({"optimizer": "adam", "weight_decay": 0.0}, False),
])
def test_sparse_embedding_gradients_only_where_the_update_stays_exact(monkeypatch, settings, sparse):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    config = dataclasses.replace(CONFIG, **settings)
    assert sparse_embedding_grad(config) is sparse
    model = build_model(config, DATA, torch.device("cpu"))
    assert all(table.sparse is sparse for table in model.modules() if isinstance(table, torch.nn.EmbeddingBag))
    monkeypatch.setenv("WORLD_SIZE", "2")  # several ranks: DDP averages dense gradients only
    assert sparse_embedding_grad(config) is False


def test_the_model_is_the_configured_one_and_must_fit_the_data():
    model = build_model(CONFIG, DATA, torch.device("cpu"))
    assert isinstance(model, DLRM)
    assert model.bot_l.sizes == [13, 16, 4] and model.top_l.sizes[1:] == [16, 8, 1]
    assert {layer.block_size for layer in model.bot_l.layers} == {4}
    assert [table.num_embeddings for table in model.modules() if isinstance(table, torch.nn.EmbeddingBag)] == [6, 20]
    itself = build_model(dataclasses.replace(CONFIG, arch_interaction_itself=True, backend="reference"), DATA,
                         torch.device("cpu"))
    assert itself.top_l.sizes[0] == DLRM([6, 20], 4, [13, 16, 4], [16, 8, 1], "dot", True).top_l.sizes[0] \
        != model.top_l.sizes[0]
    assert {layer.backend for layer in itself.top_l.layers} == {"reference"} and model.top_l.layers[0].backend is None
    plain = build_model(CONFIG, DATA, torch.device("cpu"), sparse=False)  # no block-sparse layers
    assert not any(type(m).__name__ == "SparseLinear" for m in plain.modules())
    with pytest.raises(ValueError, match=r"^arch_mlp_bot starts with 13 inputs, but the data has 11 dense features$"):
        build_model(CONFIG, types.SimpleNamespace(num_dense=11, table_sizes=[6, 20]), torch.device("cpu"))


@pytest.mark.parametrize("mode, kinds", [
    ({"amgp": True}, ["warmup", "sparse", "dense", "sparse", "final"]),
    ({"static_prune": True}, ["warmup", "sparse"]),
    ({"amgp": False}, ["dense"]),
])
def test_each_mode_gets_its_schedule(mode, kinds):
    config = dataclasses.replace(CONFIG, amgp_criterion="taylor", amgp_growth="zero", seed=3, **mode)
    model = build_model(config, DATA, torch.device("cpu"))
    optimizer = build_optimizer(config, model)
    schedule = build_schedule(config, model, optimizer, 20)
    pruner = schedule.pruner
    assert (schedule.optimizer, pruner.criterion, pruner.growth, pruner.seed) == (optimizer, "taylor", "zero", 3)
    assert pruner.sync is distributed.broadcast_masks  # rank 0 decides every mask change
    assert [phase.kind for phase in schedule.phases] == kinds
    assert schedule.phases[0].steps == (2 if len(kinds) > 1 else 20)
    if mode == {"amgp": True}:
        assert [phase.steps for phase in schedule.phases] == [2, 7, 1, 7, 3]
    assert [name for name, *_ in schedule.pruner.pairs] == ["top_l.layers.0", "top_l.layers.1"]  # the default layers
    every = build_schedule(config, model, None, 20, layers=["bot_l", "top_l"])
    assert every.phases == schedule.phases and [name for name, *_ in every.pruner.pairs][0] == "bot_l.layers.0"
    assert set(schedule.pruner.densities.values()) == {0.5}


def test_the_trainer_trains_through_the_models_logits():
    parts = EngineParts()
    parts.config, parts.model = CONFIG, build_model(CONFIG, DATA, torch.device("cpu"))
    parts.logits = parts.parallel_logits()
    assert parts.logits == parts.model.logits  # (one process: the method itself, no DistributedDataParallel)
    assert parts.data_parallel_module() is None and parts.replicated_module() is parts.model
    assert parts.pruned_layers() == ["top_l"]
