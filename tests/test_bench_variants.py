"""python -m amgp.bench.variants: AMGP variants paired with one dense run over the same seeds."""
import dataclasses

import pytest

from amgp.bench.variants import VARIANTS, header, main, measure
from amgp.config import TrainConfig
from amgp.experiment import run_experiment

TINY = TrainConfig(arch_sparse_feature_size=8, arch_embedding_size=[6, 40], arch_mlp_bot=[13, 16, 8],
                   arch_mlp_top=[16, 8, 1], mini_batch_size=32, num_batches=8, num_test_batches=2, block_size=4,
                   amgp_warmup=1, amgp_final_dense=2, amgp_dense_steps=1, progress=False, print_freq=100)


def test_each_variant_is_its_own_schedule_paired_with_the_shared_dense_runs():
    rows = []
    results = measure(TINY, ["default", "restore"], ["amgp", "static"], seeds=2, write=rows.append)
    assert list(results) == ["default", "restore"] and len(rows) == 2
    dense = run_experiment(TINY, ["dense"], seeds=2, write=lambda _: None)["runs"]["dense"]
    restore = run_experiment(dataclasses.replace(TINY, **VARIANTS["restore"]), ["amgp", "static"], seeds=2,
                             write=lambda _: None)["runs"]
    offline = results["restore"]["offline"]
    assert offline["dense"]["per_seed"] == pytest.approx(
        [a["test_auc"] - d["test_auc"] for a, d in zip(restore["amgp"], dense)])
    assert offline["static"]["per_seed"] == pytest.approx(
        [a["test_auc"] - s["test_auc"] for a, s in zip(restore["amgp"], restore["static"])])
    assert rows[1].startswith("| restore | ") and rows[1].count("|") == header(["amgp", "static"], False).split(
        "\n")[0].count("|")


def test_bad_variant_or_method_lists_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["--variants", "default,best"])
    assert "unknown ['best']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--methods", "dense,amgp"])
