"""AMGP on TorchRec: amgp.torchrec.sparsify on torchrec.models.dlrm.DLRM (state_dict round trips, ties, fused
ReLU), GrowPruneSchedule on it, DistributedModelParallel with the fused embedding optimizer, and
`amgp-dlrm --engine torchrec` in one process, under torchrun with 2 gloo ranks, and with --compare.

These need TorchRec; CI runs them in a second environment with the pinned set (.ci/torchrec.sh). Without
TorchRec only the last test runs: asking for the engine is a clear command-line error."""
import copy
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest
import torch
from torch import nn

from amgp import CostMeter, GrowPruneSchedule, SparseLinear, prunable_layers
from amgp.cli.dlrm import main

HAVE_TORCHREC = importlib.util.find_spec("torchrec") is not None
needs_torchrec = pytest.mark.skipif(not HAVE_TORCHREC, reason="needs torchrec (run by .ci/torchrec.sh)")

BOTTOM, TOP = [13, 32, 24, 8], [48, 16, 1]
TABLES = [5, 40, 300]


def stock_dlrm(seed=0):
    from torchrec import EmbeddingBagCollection, EmbeddingBagConfig
    from torchrec.models.dlrm import DLRM
    torch.manual_seed(seed)
    tables = [EmbeddingBagConfig(name=f"table_{i}", embedding_dim=BOTTOM[-1], num_embeddings=n,
                                 feature_names=[f"cat_{i}"]) for i, n in enumerate(TABLES)]
    return DLRM(EmbeddingBagCollection(tables=tables), dense_in_features=BOTTOM[0], dense_arch_layer_sizes=BOTTOM[1:],
                over_arch_layer_sizes=TOP)


def batch(rows=16, seed=0):
    from amgp.torchrec.engine import to_kjt
    generator = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randint(0, n, (rows,), generator=generator) for n in TABLES], dim=1)
    return torch.randn(rows, BOTTOM[0], generator=generator), to_kjt(ids, [f"cat_{i}" for i in range(len(TABLES))])


LINEARS = ["dense_arch.model._mlp.0._linear", "dense_arch.model._mlp.1._linear", "dense_arch.model._mlp.2._linear",
           "over_arch.model.0._mlp.0._linear", "over_arch.model.0._mlp.1._linear", "over_arch.model.1"]


@needs_torchrec
def test_sparsify_converts_every_mlp_layer_ties_chains_and_fuses_relu():
    from amgp.torchrec import sparsify
    stock = stock_dlrm()
    model = sparsify(copy.deepcopy(stock), block_size=8)
    layers = {name: model.get_submodule(name) for name in LINEARS}
    assert all(isinstance(layer, SparseLinear) for layer in layers.values())
    tied = [(layer, consumers) for layer, consumers in prunable_layers(model)]
    names = {id(m): n for n, m in model.named_modules()}
    assert [(names[id(p)], [names[id(c)] for c in cs]) for p, cs in tied] == [
        (LINEARS[0], [LINEARS[1]]), (LINEARS[1], [LINEARS[2]]), (LINEARS[3], [LINEARS[4]]), (LINEARS[4], [LINEARS[5]])]
    # Tied producers run their ReLU in the kernel; the bottom MLP's last layer feeds the interaction: kept as is.
    assert [layers[n].activation for n in LINEARS] == ["relu", "relu", "none", "relu", "relu", "none"]
    assert model.dense_arch.model._mlp[2]._activation_fn is torch.relu
    assert [(layers[n].packed_in, layers[n].packed_out) for n in LINEARS] == [
        (False, True), (True, True), (True, False), (False, True), (True, True), (True, False)]
    assert isinstance(model.over_arch.model[0]._mlp[1]._activation_fn, nn.Identity)
    dense, kjt = batch()
    torch.testing.assert_close(model(dense, kjt), stock(dense, kjt))


@needs_torchrec
def test_state_dict_round_trips_strictly_with_the_stock_model_at_full_density():
    from amgp.torchrec import sparsify
    model = sparsify(stock_dlrm(seed=1), block_size=8)
    stock = stock_dlrm(seed=2)
    assert list(model.state_dict()) == list(stock.state_dict())
    stock.load_state_dict(model.state_dict(), strict=True)
    back = sparsify(stock_dlrm(seed=3), block_size=8)
    back.load_state_dict(stock.state_dict(), strict=True)
    dense, kjt = batch()
    torch.testing.assert_close(back(dense, kjt), model(dense, kjt))
    torch.testing.assert_close(stock(dense, kjt), model(dense, kjt))


@needs_torchrec
def test_schedule_on_a_sparsified_torchrec_dlrm_prunes_hidden_gemms_and_ends_full_size():
    from amgp.torchrec import sparsify
    model = sparsify(stock_dlrm(), block_size=8)
    optimizer = torch.optim.Adagrad(model.parameters(), lr=0.05)
    schedule = GrowPruneSchedule(model, 10, optimizer, density=0.5, warmup=2, final_dense=2, dense_steps=0, cycles=1)
    meter = CostMeter(model)
    output_layer = model.over_arch.model[1]
    for step in range(10):
        kind = schedule.phase.kind
        schedule.before_step()
        dense, kjt = batch(seed=step)
        optimizer.zero_grad()
        model(dense, kjt).pow(2).mean().backward()
        optimizer.step()
        schedule.after_step()
        meter.record_step(kind, 16)
        if step == 5:
            assert schedule.density < 0.7 and bool(output_layer.out_mask.all())
            for producer, consumers in prunable_layers(model):
                dead = ~producer.out_channel_mask
                assert dead.any() and torch.equal(producer.weight[dead], torch.zeros_like(producer.weight[dead]))
                for consumer in consumers:
                    assert torch.equal(consumer.weight[:, dead], torch.zeros_like(consumer.weight[:, dead]))
                    assert torch.equal(optimizer.state[consumer.weight]["sum"][:, dead],
                                       torch.zeros_like(consumer.weight[:, dead]))
    assert schedule.density == 1.0 and meter.flops_saving > 0.2


@needs_torchrec
def test_meta_dense_layers_are_refused_before_dmp_would_zero_the_masks():
    from amgp.torchrec import sparsify
    with torch.device("meta"):
        model = stock_dlrm()
    with pytest.raises(ValueError, match="meta device"):
        sparsify(model)


# Both MLPs pruned (--amgp-layers all; the default is the top MLP alone), so every layer kind is exercised.
TINY = ["--arch-sparse-feature-size", "8", "--arch-embedding-size", "50-40-30", "--arch-mlp-bot", "13-32-8",
        "--arch-mlp-top", "32-16-1", "--mini-batch-size", "64", "--num-batches", "24", "--num-test-batches", "1",
        "--block-size", "8", "--amgp-warmup", "4", "--amgp-dense-steps", "2", "--amgp-final-dense", "4",
        "--amgp-cycles", "3", "--print-freq", "1", "--no-progress", "--engine", "torchrec", "--amgp-layers", "all"]


@needs_torchrec
def test_dmp_model_matches_the_unsharded_dlrm_and_the_schedule_zeroes_combined_optimizer_state():
    """One process: the DMP-wrapped, table-wise sharded model computes what the plain DLRM with the same
    weights computes; after pruning, the dense optimizer (beside the fused embedding one) holds zeros."""
    import torch.distributed as dist
    from amgp.cli.dlrm import build_parser, config_from_args
    from amgp.torchrec.engine import TorchRecTrainer, build_dlrm
    parser = build_parser()
    config = config_from_args(parser.parse_args(TINY + ["--stop-at-step", "7"]), parser)
    try:
        trainer = TorchRecTrainer(config)
        torch.manual_seed(config.seed)
        plain = build_dlrm(config, trainer.data.table_sizes, torch.device("cpu"))  # same seed: same weights
        test = trainer.test_batches[0]
        with torch.no_grad():
            from amgp.torchrec.engine import to_kjt
            expected = plain(test.dense, to_kjt(test.sparse, trainer.model.keys)).squeeze(-1)
            torch.testing.assert_close(trainer.model.logits(test.dense, test.sparse), expected)
        report = trainer.run()
        assert report["steps"] == 7 and report["engine"] == "torchrec"
        pairs = prunable_layers(trainer.dense_part)
        assert len(pairs) == 3  # bottom 0 -> 1, over 0 -> 1, over 1 -> over_arch.model.1
        for producer, consumers in pairs:
            assert not bool(producer.out_mask.all())  # step 7 is in the first sparse phase
            for layer in (producer, *consumers):
                state = trainer.optimizer.state[layer.weight]
                assert torch.equal(state["sum"][~layer.weight_mask], torch.zeros_like(state["sum"][~layer.weight_mask]))
                assert torch.equal(layer.weight[~layer.weight_mask], torch.zeros_like(layer.weight[~layer.weight_mask]))
        assert any(name.startswith("embeddings") for name in trainer.optimizer.state_dict()["state"])
        # The block-sparse step is installed on the torch optimizer inside the CombinedOptimizer, not refused.
        active_step = trainer.schedule.active_step
        assert active_step.optimizer is trainer.dense_optimizer and not active_step.fallback_reasons
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_cli(tmp_path, name, launcher, extra=(), entry=("-m", "amgp.cli.dlrm"), env=None):
    report = tmp_path / f"{name}.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    result = subprocess.run([*launcher, *entry, *TINY, *extra, "--report-json", str(report)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    # Every process group was really released at the end (its gloo threads would otherwise still run at
    # interpreter exit, which aborts the process now and then): amgp.distributed.shutdown warns when not.
    assert "still referenced after amgp.distributed.shutdown" not in result.stderr
    return json.loads(report.read_text()), result.stdout


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """amgp-dlrm runs to step 20 (inside the third sparse phase) on 1 process and 2 gloo ranks, each saving a
    checkpoint directory; the same stopped at step 12 and resumed to 20; and 2 ranks with --full-allreduce."""
    if not HAVE_TORCHREC:
        pytest.skip("needs torchrec (run by .ci/torchrec.sh)")
    tmp = tmp_path_factory.mktemp("torchrec_runs")
    result = {"dir": tmp}
    for name, launcher in (("single", [sys.executable]), ("multi", TORCHRUN)):
        ckpt, part = str(tmp / f"{name}.ckpt"), str(tmp / f"{name}_part.ckpt")
        result[name] = run_cli(tmp, name, launcher, ["--stop-at-step", "20", "--save-model", ckpt])
        run_cli(tmp, f"{name}_part", launcher, ["--stop-at-step", "12", "--save-model", part])
        result[f"{name}_resumed"] = run_cli(tmp, f"{name}_resumed", launcher, ["--stop-at-step", "20", "--load-model",
                                                                               part, "--save-model", part])
    result["full"] = run_cli(tmp, "full", TORCHRUN, ["--stop-at-step", "20", "--full-allreduce"])
    # Rank 1 SIGKILLed before step 10 (tests/elastic_kill_once.py); torchrun restarts both ranks.
    restartable = [*TORCHRUN[:3], "--max-restarts", "1", *TORCHRUN[3:]]
    result["elastic"] = run_cli(tmp, "elastic", restartable, ["--stop-at-step", "20", "--checkpoint-freq", "4",
                                                              "--save-model", str(tmp / "elastic.ckpt")],
                                entry=[os.path.join(os.path.dirname(__file__), "elastic_kill_once.py")],
                                env={"AMGP_TEST_KILL_AT_STEP": "10"})
    return result


def checkpoint_tensors(path):
    """Every tensor of a TorchRec engine checkpoint directory, read whole without a process group."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
    flat = path + ".pt"
    dcp_to_torch_save(path, flat)
    state = torch.load(flat, weights_only=False)
    trainer = torch.load(os.path.join(path, "trainer.pt"), weights_only=False)
    state.update(masks=trainer["masks"], dense_optimizer=trainer["dense_optimizer"]["state"])
    return state


def assert_same_tensors(a, b, where=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


@needs_torchrec
def test_two_gloo_ranks_under_torchrun_stay_identical_and_match_one_process(runs):
    (single, _), (multi, stdout) = runs["single"], runs["multi"]
    assert multi["world_size"] == 2 and single["world_size"] == 1
    assert multi["ranks_differing_state"] == []  # every dense parameter and mask bit-identical across ranks
    assert stdout.count("test AUC") == 1  # rank 0 alone reports
    assert multi["mlp_flops_computed"] == single["mlp_flops_computed"]  # the same masks at every step
    assert multi["final_density"] == single["final_density"] < 1
    torch.testing.assert_close(torch.tensor(multi["history"]["loss"]), torch.tensor(single["history"]["loss"]),
                               atol=1e-4, rtol=1e-4)
    assert abs(multi["test_auc"] - single["test_auc"]) < 1e-3


@needs_torchrec
def test_active_block_all_reduce_of_the_dense_part_is_exact_and_sends_active_blocks_only(runs):
    (multi, _), (full, _) = runs["multi"], runs["full"]
    # DMP's data-parallel dense part all-reduces the active MLP blocks only (amgp.comm_hook), exactly:
    # the same losses bit for bit as with DDP's own full-size all-reduce.
    assert multi["mlp_allreduce_bytes"]["sparse"] < 0.8 * multi["mlp_allreduce_bytes_full"]["sparse"]
    assert multi["allreduce_bytes"]["warmup"] == multi["allreduce_bytes_full"]["warmup"] > 0
    assert full["history"]["loss"] == multi["history"]["loss"] and full["test_auc"] == multi["test_auc"]
    assert full["mlp_allreduce_bytes"] == full["mlp_allreduce_bytes_full"] == multi["mlp_allreduce_bytes_full"]


@needs_torchrec
@pytest.mark.parametrize("name", ["single", "multi"])
def test_a_resumed_run_ends_bit_identical_to_an_uninterrupted_one(runs, name):
    (whole, _), (resumed, _) = runs[name], runs[f"{name}_resumed"]
    assert resumed["history"] == whole["history"] and resumed["test_auc"] == whole["test_auc"]
    assert resumed["phase_steps"] == whole["phase_steps"] and resumed["allreduce_bytes"] == whole["allreduce_bytes"]
    # Tables, fused Adagrad state of the tables, dense weights, masks and dense optimizer state.
    state = checkpoint_tensors(str(runs["dir"] / f"{name}.ckpt"))
    assert any(not bool(mask.all()) for mask in state["masks"].values())  # stopped inside a sparse phase
    assert_same_tensors(checkpoint_tensors(str(runs["dir"] / f"{name}_part.ckpt")), state)


@needs_torchrec
def test_a_rank_killed_mid_training_restarts_from_the_latest_checkpoint_and_ends_the_same(runs):
    (multi, _), (elastic, stdout) = runs["multi"], runs["elastic"]
    assert "restarted: resuming from" in stdout and "(step 8)" in stdout
    assert elastic["history"] == multi["history"] and elastic["test_auc"] == multi["test_auc"]
    assert elastic["phase_steps"] == multi["phase_steps"]
    assert_same_tensors(checkpoint_tensors(str(runs["dir"] / "elastic.ckpt")),
                        checkpoint_tensors(str(runs["dir"] / "multi.ckpt")))


@needs_torchrec
def test_a_checkpoint_saved_on_two_ranks_loads_on_one(runs):
    import torch.distributed as dist
    from amgp.config import TrainConfig
    from amgp.torchrec.engine import TorchRecTrainer
    path = str(runs["dir"] / "multi.ckpt")
    config = TrainConfig(arch_sparse_feature_size=8, arch_embedding_size=[50, 40, 30], arch_mlp_bot=[13, 32, 8],
                         arch_mlp_top=[32, 16, 1], mini_batch_size=64, num_batches=24, num_test_batches=1, block_size=8,
                         amgp_warmup=4, amgp_dense_steps=2, amgp_final_dense=4, amgp_cycles=3, print_freq=1,
                         progress=False, engine="torchrec", load_model=path, amgp_layers=None)
    try:
        trainer = TorchRecTrainer(config)
        assert trainer.step == 20
        assert [list(p) for p in trainer.history["loss"]] == runs["multi"][0]["history"]["loss"]
        saved = checkpoint_tensors(path)
        for key, value in trainer.model.dmp.state_dict().items():
            if not key.endswith("_mask"):
                local = value.local_shards()[0].tensor if hasattr(value, "local_shards") else value
                assert torch.equal(local, saved["model"][key]), key
        for key, mask in saved["masks"].items():
            assert torch.equal(trainer.dense_part.get_buffer(key), mask), key
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@needs_torchrec
def test_compare_on_the_torchrec_engine_reports_like_the_amgp_engine(tmp_path):
    torchrec_report, stdout = run_cli(tmp_path, "torchrec", [sys.executable], ["--compare"])
    assert "AMGP vs dense" in stdout
    amgp_args = [a for a in TINY if a not in ("--engine", "torchrec")]
    assert main(amgp_args + ["--compare", "--report-json", str(tmp_path / "amgp.json")]) == 0
    amgp_report = json.loads((tmp_path / "amgp.json").read_text())
    assert torchrec_report.keys() == amgp_report.keys()
    assert torchrec_report["dense_baseline"].keys() == amgp_report["dense_baseline"].keys()
    assert torchrec_report["engine"] == "torchrec" and amgp_report["engine"] == "amgp"
    assert torchrec_report["final_density"] == torchrec_report["dense_baseline"]["final_density"] == 1.0
    # Same MLP shapes and schedule: the same FLOP accounting on both engines.
    assert torchrec_report["mlp_flops_dense"] == amgp_report["mlp_flops_dense"]
    assert torchrec_report["mlp_flops_saving"] == amgp_report["mlp_flops_saving"] > 0.2
    assert torchrec_report["comparison"].keys() == amgp_report["comparison"].keys()


@needs_torchrec
@pytest.mark.parametrize("args, message", [
    (["--arch-interaction-op", "cat"], "interaction"),
    (["--compare", "dense,amgp", "--recurring"], "--recurring"),
    (["--optimizer", "adam"], "no fused Adam"),  # fbgemm's CPU kernels (it used to fail inside fbgemm)
])
def test_settings_torchrec_cannot_run_are_clear_errors(args, message, capsys):
    try:
        code = main(TINY + args)
    except SystemExit as exit_info:  # argparse's error
        code = exit_info.code
    assert code == 2
    assert message in capsys.readouterr().err


@needs_torchrec
def test_the_readme_torchrec_snippet_runs_as_a_script(tmp_path):
    """README's "Your own TorchRec model" block, saved as a file and run as a user would."""
    from readme_blocks import blocks
    snippets = [code for _, code, _ in blocks("python") if "from amgp.torchrec import" in code]
    assert len(snippets) == 1
    script = tmp_path / "snippet.py"
    script.write_text(snippets[0])
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"MLP FLOP saving \d+\.\d%, final density 1\.0", result.stdout), result.stdout


@pytest.mark.skipif(HAVE_TORCHREC, reason="checks the message shown when torchrec is absent")
def test_engine_torchrec_without_torchrec_is_a_command_line_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(TINY)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--engine torchrec" in err and "amgp[torchrec]" in err


def resume_cli(load, engine="torchrec"):
    """amgp-dlrm resumed from `load` (train nothing more: --stop-at-step 20); (exit code, stderr)."""
    import contextlib
    import io
    args = [a for a in TINY if a not in ("--engine", "torchrec")] + ["--engine", engine]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(args + ["--stop-at-step", "20", "--load-model", str(load)])
        except SystemExit as exit_info:
            code = exit_info.code
    return code, err.getvalue()


@needs_torchrec
def test_damaged_or_foreign_checkpoints_are_clear_errors_and_a_killed_save_leaves_the_previous_one(runs, tmp_path):
    import shutil
    source = runs["dir"] / "multi.ckpt"
    amgp_file = tmp_path / "amgp.pt"
    amgp_file.write_bytes(b"not read")
    code, err = resume_cli(amgp_file)
    assert code == 2 and "a checkpoint of --engine amgp" in err
    code, err = resume_cli(source, engine="amgp")
    assert code == 2 and "a checkpoint of --engine torchrec" in err
    code, err = resume_cli(tmp_path / "none.ckpt")
    assert code == 2 and "no such checkpoint directory" in err
    for lost in ("trainer.pt", ".metadata", "__1_0.distcp"):  # truncated: a file of rank 0, the metadata, rank 1's shards
        damaged = tmp_path / f"without{lost}"
        shutil.copytree(source, damaged)
        (damaged / lost).unlink()
        code, err = resume_cli(damaged)
        assert code == 2 and str(damaged) in err and ("truncated" in err), (lost, err)
    # A save killed between moving the previous checkpoint aside and putting the new one in place (and one
    # killed while writing: its PATH.partial) leaves the previous checkpoint loadable.
    killed = tmp_path / "killed.ckpt"
    shutil.copytree(source, f"{killed}.old")
    (tmp_path / "killed.ckpt.partial").mkdir()
    code, err = resume_cli(killed)
    assert code == 0, err
