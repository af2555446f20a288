"""amgp.experiment.run_experiment on tiny runs (10 steps of 32 rows, layers 1 or 2 blocks wide): in seconds, what the
experiment itself decides: which methods run with which seeds, that each method spends the MLP FLOPs predicted for
it, where each run is saved, what the progress output names, the recurring stage, workers, bad arguments.
(test_experiment.py runs the same end to end through the command line on larger runs.)"""
import contextlib
import dataclasses
import io

import pytest
import torch

from amgp import experiment
from amgp.experiment import METHODS, equal_flop_budget, method_config, run_experiment
from amgp.data import total_steps
from amgp.engines import make_trainer, train
from amgp.recurring import RecurringConfig, Stages, continue_training
from amgp.train import TrainConfig

# amgp_layers, amgp_cycles, amgp_warmup: not all layers, not the default 2 cycles, a warmup unlike the other
# dense phases, so that a budget computed with the wrong ones (or the arguments shifted) would not fit the runs.
CONFIG = TrainConfig(arch_sparse_feature_size=4, arch_embedding_size=[6, 20], arch_mlp_bot=[13, 16, 4],
                     arch_mlp_top=[16, 8, 1], mini_batch_size=32, num_batches=10, num_test_batches=1, block_size=4,
                     amgp_warmup=3, amgp_final_dense=1, amgp_dense_steps=1, amgp_cycles=3, print_freq=3,
                     progress=False, seed=5)
STEPS = 10
RECURRING = RecurringConfig(steps=2)


def test_an_experiment_of_every_method_two_seeds_and_the_next_day(tmp_path):
    """One experiment, checked in the parts below. (One test, not one per part on a module-scoped fixture:
    the mutation run credits a fixture's calls to the first test that sets it up, and would run only that one.)"""
    config = dataclasses.replace(CONFIG, progress=True, save_model=str(tmp_path / "run.pt"))
    lines, output = [], io.StringIO()
    with contextlib.redirect_stdout(output):
        result = run_experiment(config, METHODS, seeds=2, recurring=RECURRING, write=lines.append)
    saved = {path.name: torch.load(path, weights_only=True) for path in tmp_path.iterdir()}
    assert result["methods"] == list(METHODS) and result["seeds"] == [5, 6]
    assert result["data_generation"] == "synthetic"
    assert lines == [f"-- {m}, seed {s}" for s in (5, 6) for m in METHODS]
    for method in METHODS:
        assert [(r["method"], r["seed"]) for r in result["runs"][method]] == [(method, 5), (method, 6)]
        assert [r["mode"] for r in result["runs"][method]] == [{"static": "static", "amgp": "amgp"}.get(method, "dense")] * 2
    each_method_spends_the_mlp_flops_predicted_for_it(result)
    static_ends_pruned_narrow_ends_small_amgp_and_dense_end_full_size(result)
    each_seed_reaches_the_data_and_the_initialisation(result)
    each_run_is_saved_under_its_method_and_seed(saved, result["budget"])
    the_progress_output_names_each_run(output.getvalue())
    the_next_day_continues_every_final_model(result)
    the_summaries_pair_the_methods(result)


def each_method_spends_the_mlp_flops_predicted_for_it(result):
    budget = result["budget"]
    assert budget == equal_flop_budget(CONFIG, num_tables=2, steps=STEPS)
    predicted = budget["predicted_flop_fraction"]
    for method in METHODS:
        for run in result["runs"][method]:
            counted = run["mlp_flops_computed"] / (run["samples"] * budget["dense_flops_per_sample"])
            assert counted == pytest.approx(predicted[method], rel=1e-12), method
    assert predicted["dense"] == 1 and predicted["amgp"] == budget["amgp_flop_fraction"] < 0.9
    assert predicted["amgp"] <= predicted["static"] < predicted["amgp"] + 0.1  # whole blocks, never less budget
    assert predicted["narrow"] == pytest.approx(predicted["amgp"], abs=0.05)  # whole channels


def static_ends_pruned_narrow_ends_small_amgp_and_dense_end_full_size(result):
    runs, budget = result["runs"], result["budget"]
    assert all(run["final_density"] == 1.0 for run in runs["amgp"] + runs["dense"] + runs["narrow"])
    assert all(run["final_density"] < 1 for run in runs["static"])
    assert [p["kind"] for p in runs["static"][0]["phases"]] == ["warmup", "sparse"]
    assert [p["kind"] for p in runs["amgp"][0]["phases"]] == ["warmup"] + ["sparse", "dense"] * 2 + ["sparse", "final"]
    bottom, top = budget["narrow_arch_mlp_bot"], budget["narrow_arch_mlp_top"]
    assert bottom[0] == 13 and bottom[-1] == 4 and len(bottom) == 3  # input and output kept
    assert len(top) == len(CONFIG.arch_mlp_top) and top[-1] == 1  # as --arch-mlp-top takes it: no input width
    scale = budget["narrow_width_scale"]
    assert 0 < scale < 1 and [bottom[1], top[0], top[1]] == [round(16 * scale), round(16 * scale), round(8 * scale)]
    assert budget["narrow_rounding"].startswith("each hidden width scaled by narrow_width_scale")


def each_seed_reaches_the_data_and_the_initialisation(result):
    """The dense run of seed 5 is the plain run with seed 5; seed 6 starts from another first loss."""
    dense = result["runs"]["dense"]
    alone = train(dataclasses.replace(CONFIG, amgp=False))
    assert dense[0]["history"]["loss"] == alone["history"]["loss"] and dense[0]["test_auc"] == alone["test_auc"]
    assert dense[1]["history"]["loss"][0] != dense[0]["history"]["loss"][0]


def each_run_is_saved_under_its_method_and_seed(saved, budget):
    assert sorted(saved) == sorted(f"run.{m}.seed{s}.pt" for m in METHODS for s in (5, 6))
    for method in METHODS:
        for seed in (5, 6):
            state = saved[f"run.{method}.seed{seed}.pt"]
            config = state["config"]
            assert config["seed"] == seed and state["step"] == STEPS  # the offline run, not the next day's
            assert config["static_prune"] == (method == "static") and config["amgp"] == (method in ("amgp", "static"))
            assert config["arch_mlp_bot"] == (budget["narrow_arch_mlp_bot"] if method == "narrow" else CONFIG.arch_mlp_bot)
            assert config["amgp_density"] == (budget["static_density"] if method == "static" else CONFIG.amgp_density)


def the_progress_output_names_each_run(output):
    for method in METHODS:
        for seed in (5, 6):
            assert f"{method} seed {seed}: step 3/{STEPS}" in output
            assert f"{method} seed {seed}, next day: step 2/2" in output


def the_next_day_continues_every_final_model(result):
    recurring = result["recurring"]
    assert recurring["settings"] == dataclasses.asdict(RECURRING)
    for method in METHODS:
        assert [(r["method"], r["seed"]) for r in recurring["runs"][method]] == [(method, 5), (method, 6)]
        for before, after in zip(result["runs"][method], recurring["runs"][method]):
            assert after["steps"] == 2 and after["mode"] == "recurring"
            assert after["final_density"] == before["final_density"]


def the_summaries_pair_the_methods(result):
    runs = result["runs"]
    for stage in (result, result["recurring"]):
        assert set(stage["summary"]) == set(METHODS) and set(stage["amgp_against"]) == {"dense", "static", "narrow"}
        assert stage["amgp_against"]["static"]["test_auc"]["per_seed"] == pytest.approx(
            [a["test_auc"] - s["test_auc"] for a, s in zip(stage["runs"]["amgp"], stage["runs"]["static"])])
    assert result["summary"]["amgp"]["test_auc_vs_dense"]["per_seed"] == pytest.approx(
        [a["test_auc"] - d["test_auc"] for a, d in zip(runs["amgp"], runs["dense"])])
    assert result["summary"]["static"]["mlp_flop_fraction"]["mean"] == pytest.approx(
        result["budget"]["predicted_flop_fraction"]["static"])
    summary = result["recurring"]["summary"]
    assert "test_auc_gain" in summary["dense"] and summary["amgp"]["mlp_flop_fraction"]["mean"] == 1.0


@pytest.mark.parametrize("optimizer", ["continue", "fresh"])
def test_the_next_day_starts_from_the_final_model_with_the_optimizer_asked_for(optimizer):
    """The experiment's next-day run is the offline run's model trained on the next day's data, with the offline
    optimizer's state ("continue") or a new optimizer ("fresh")."""
    recurring = RecurringConfig(steps=2, optimizer=optimizer)
    config = dataclasses.replace(CONFIG, amgp=False)
    result = run_experiment(config, ["dense"], recurring=recurring, write=lambda _: None)
    stages = Stages(config, recurring)
    offline = make_trainer(config, data=stages.offline(5))
    offline.run()
    state = offline.optimizer.state_dict() if optimizer == "continue" else None
    alone = continue_training(config, offline.model.state_dict(), stages.next_day(5), 2, optimizer_state=state)
    got = result["recurring"]["runs"]["dense"][0]
    assert (got["test_logloss"], got["before_test_logloss"]) == (alone["test_logloss"], alone["before_test_logloss"])


def test_by_default_one_seed_no_recurring_stage_and_lines_printed(capsys):
    result = run_experiment(dataclasses.replace(CONFIG, amgp=False), ["dense"])
    assert "recurring" not in result and result["amgp_against"] == {} and result["seeds"] == [5]
    assert capsys.readouterr().out.splitlines()[0] == "-- dense, seed 5"


class SerialWorkers:
    """Stands in for amgp.workers.in_workers (which test_experiment.py runs for real): the same calls, in turn."""

    def __init__(self):
        self.calls = []

    def __call__(self, function, items, jobs):
        self.calls.append((list(items), jobs))
        return [function(item) for item in items]


@pytest.mark.parametrize("seeds, jobs, workers", [(3, 2, 2), (2, 5, 2), (2, 1, None), (1, 4, None)])
def test_jobs_run_seeds_in_at_most_one_worker_per_seed_without_progress_bars(monkeypatch, capsys, seeds, jobs,
                                                                              workers):
    pool = SerialWorkers()
    monkeypatch.setattr(experiment, "in_workers", pool)
    config = dataclasses.replace(CONFIG, progress=True)
    result = run_experiment(config, ["static"], seeds=seeds, jobs=jobs, recurring=RecurringConfig(steps=1),
                            write=lambda _: None)
    assert [r["seed"] for r in result["runs"]["static"]] == list(range(5, 5 + seeds))
    assert [r["seed"] for r in result["recurring"]["runs"]["static"]] == list(range(5, 5 + seeds))
    assert all(r["final_density"] < 1 for r in result["runs"]["static"])  # the budget's static density reached it
    assert pool.calls == ([] if workers is None else [(list(range(5, 5 + seeds)), workers)])
    if workers is not None:  # each worker says which run it starts, and draws no progress
        out = capsys.readouterr().out
        assert [line for line in out.splitlines() if line.startswith("-- ")] == [
            f"-- static, seed {s}" for s in range(5, 5 + seeds)]
        assert "seed 5: step" not in out


def test_method_config_turns_the_settings_into_each_methods_run():
    budget = equal_flop_budget(CONFIG, num_tables=2, steps=STEPS)
    static = dataclasses.replace(CONFIG, static_prune=True)
    assert (method_config(static, "dense", budget).mode, method_config(static, "amgp", budget).mode) == ("dense", "amgp")
    assert method_config(dataclasses.replace(CONFIG, amgp=False), "amgp", budget).mode == "amgp"
    assert method_config(CONFIG, "static", budget).amgp_density == budget["static_density"]
    narrow = method_config(static, "narrow", budget)
    assert (narrow.mode, narrow.arch_mlp_bot, narrow.arch_mlp_top) == (
        "dense", budget["narrow_arch_mlp_bot"], budget["narrow_arch_mlp_top"])
    with pytest.raises(ValueError, match=r"^method must be one of .*got 'sparse'"):
        method_config(CONFIG, "sparse", budget)


def test_the_budget_follows_the_density_and_the_schedule():
    """A lower AMGP density lowers AMGP's FLOP fraction and the baselines' with it; a longer final dense phase
    raises them (the static density moves in whole blocks, the narrow widths in whole channels: they may stay)."""
    budget = equal_flop_budget(CONFIG, num_tables=2, steps=total_steps(CONFIG, Stages(CONFIG).offline(5)))
    lower = equal_flop_budget(dataclasses.replace(CONFIG, amgp_density=0.25), num_tables=2, steps=STEPS)
    longer_dense = equal_flop_budget(dataclasses.replace(CONFIG, amgp_final_dense=2), num_tables=2, steps=STEPS)
    for method in ("amgp", "static", "narrow"):  # static and narrow move in whole blocks and channels
        assert lower["predicted_flop_fraction"][method] <= budget["predicted_flop_fraction"][method], method
        assert longer_dense["predicted_flop_fraction"][method] >= budget["predicted_flop_fraction"][method], method
    assert lower["predicted_flop_fraction"]["amgp"] < budget["predicted_flop_fraction"]["amgp"]
    assert lower["predicted_flop_fraction"]["static"] < budget["predicted_flop_fraction"]["static"]
    assert lower["static_density"] < budget["static_density"] <= longer_dense["static_density"]
    # the budget is that of the model the runs build: a wider interaction widens the top MLP's input
    itself = equal_flop_budget(dataclasses.replace(CONFIG, arch_interaction_itself=True), num_tables=2, steps=STEPS)
    assert itself["dense_flops_per_sample"] > budget["dense_flops_per_sample"]
    assert longer_dense["predicted_flop_fraction"]["amgp"] > budget["predicted_flop_fraction"]["amgp"]
    assert longer_dense["predicted_flop_fraction"]["narrow"] > budget["predicted_flop_fraction"]["narrow"]


def test_a_criteo_experiment_trains_offline_on_the_lines_before_the_next_day(tmp_path):
    """The offline runs see only the offline lines (the file is read once, then split), the next day the latest."""
    lines = ["\t".join([str(i % 2)] + [str(i)] * 13 + ["a1b2"] * 26) for i in range(40)]
    path = tmp_path / "days.txt"
    path.write_text("\n".join(lines) + "\n")
    config = dataclasses.replace(CONFIG, data_generation="dataset", raw_data_file=str(path), mini_batch_size=2,
                                 num_batches=0, test_fraction=0.2, max_ind_range=10, amgp_warmup=0.1,
                                 amgp_final_dense=0.1, amgp_dense_steps=0.1)
    result = run_experiment(config, ["amgp"], recurring=RecurringConfig(steps=100, fraction=0.5), write=lambda _: None)
    # 40 lines: the latest 20 are the next day (16 train, 4 test); offline the first 20 (16 train, 4 test)
    assert result["data_generation"] == "dataset"
    assert result["runs"]["amgp"][0]["samples"] == 16 and result["recurring"]["runs"]["amgp"][0]["samples"] == 16
    assert result["runs"]["amgp"][0]["steps"] == 8


@pytest.mark.parametrize("kwargs, message", [
    ({"methods": []}, r"^methods must be distinct names"),
    ({"methods": ["dense", "pruned"]}, r"^methods must be distinct names"),
    ({"methods": ["dense", "dense"]}, r"^methods must be distinct names"),
    ({"seeds": 0}, r"^seeds must be a positive int"),
    ({"jobs": 0}, r"^jobs must be a positive int"),
])
def test_bad_arguments_are_errors_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        run_experiment(CONFIG, **{"methods": ["dense"], **kwargs})
