"""Each seed of an experiment reaches the model's initialisation as well as the data: the experiment's run with
seed s is the plain run with seed s (same first loss, same end), and differs from the other seeds' runs."""
import dataclasses

from amgp.data import build_data
from amgp.engines import train
from amgp.experiment import run_experiment
from amgp.train import TrainConfig, Trainer

CONFIG = TrainConfig(arch_sparse_feature_size=4, arch_embedding_size=[6, 20], arch_mlp_bot=[13, 16, 4],
                     arch_mlp_top=[16, 8, 1], mini_batch_size=32, num_batches=6, num_test_batches=1, block_size=4,
                     amgp_warmup=1, amgp_final_dense=1, amgp_dense_steps=1, print_freq=1, progress=False, seed=5)


def test_each_seed_initialises_the_model_as_the_plain_run_with_that_seed_does():
    result = run_experiment(CONFIG, ["amgp"], seeds=2, write=lambda _: None)
    assert result["seeds"] == [5, 6]
    runs = result["runs"]["amgp"]
    for seed, run in zip([5, 6], runs):
        alone = train(dataclasses.replace(CONFIG, seed=seed))
        # The first loss is computed before any update: it reads the initial weights and the first batch.
        assert run["seed"] == seed
        assert run["history"]["loss"] == alone["history"]["loss"], seed
        assert run["test_auc"] == alone["test_auc"], seed
    assert runs[0]["history"]["loss"][0] != runs[1]["history"]["loss"][0]


def test_the_seed_alone_changes_the_initialisation():
    """Same data for two seeds (handed in), different first loss: the seed reached the weights."""
    first = train(CONFIG)
    data = build_data(CONFIG)
    other = Trainer(dataclasses.replace(CONFIG, seed=6), data=data).run()
    same = Trainer(CONFIG, data=data).run()
    assert same["history"]["loss"] == first["history"]["loss"]
    assert other["history"]["loss"][0] != first["history"]["loss"][0]
