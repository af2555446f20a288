"""Tests of the benchmark code itself (amgp.bench): argument parsing, ratio math, the cases and
baselines computing the right thing, and a tiny end-to-end run writing JSON and PNG. No timing
is asserted."""
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

import amgp_kernels
from amgp.bench import cases, cli, metrics, report
from amgp.bench.methods import build_step, default_backends, make_inputs, rotation_copies
from amgp.bench.runner import KernelBenchConfig, run_kernel_benchmarks
from amgp.bench.timing import Timing, measure, measure_interleaved
from amgp.bench.training import run_training_benchmarks
from amgp.pruning import weight_density

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPORT_SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "report.py"


def _bench_report_script():
    spec = importlib.util.spec_from_file_location("bench_report", REPORT_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----- argument parsing ---------------------------------------------------------------------------
def test_parse_defaults_on_cpu():
    args = cli.parse_args(["--device", "cpu"])
    assert args.dtype == "float32"
    assert args.densities == [1.0, 0.75, 0.5, 0.25]
    assert args.cases == ["out_only", "in_out"] and args.passes == ["fwd", "fwd_bwd"]
    assert args.shape_list == [cases.Shape(2048, 1024, 1024)]
    assert args.backend_list == default_backends("cpu")
    assert "triton" not in args.backend_list and "reference" not in args.backend_list
    assert (args.warmup, args.repeats) == cli.DEFAULT_COUNTS["cpu"]


def test_parse_shapes_batch_and_preset_combine():
    args = cli.parse_args(["--device", "cpu", "--shapes", "64x32x48,8x16x16", "--batch", "4,8", "--in", "40",
                           "--out", "24", "--block-size", "16", "--densities", "0.5,1", "--cases", "in_out",
                           "--passes", "fwd", "--warmup", "0", "--repeats", "2", "--backends", "reference"])
    assert args.shape_list == [cases.Shape(64, 32, 48), cases.Shape(8, 16, 16), cases.Shape(4, 40, 24),
                               cases.Shape(8, 40, 24)]
    assert args.densities == [0.5, 1.0] and args.block_size == 16 and args.backend_list == ["reference"]
    assert (args.warmup, args.repeats) == (0, 2)
    assert cli.parse_args(["--device", "cpu", "--warmup", "0"]).warmup == 0
    preset = cli.parse_args(["--device", "cpu", "--preset", "kaggle", "--batch", "4096"])
    assert preset.shape_list == cases.preset_shapes("kaggle", [4096])


def test_parse_quick_sets_small_counts():
    args = cli.parse_args(["--device", "cpu", "--quick"])
    assert (args.warmup, args.repeats) == (cli.QUICK["warmup"], cli.QUICK["repeats"])
    assert args.shape_list == cli.QUICK["cpu_shapes"]
    assert cli.parse_args(["--device", "cpu", "--quick", "--repeats", "7"]).repeats == 7


@pytest.mark.parametrize("argv, message", [
    (["--densities", "0"], "density must be in (0, 1]"),
    (["--densities", "1.5"], "density must be in (0, 1]"),
    (["--densities", "half"], "density must be a number"),
    (["--shapes", "12x34"], "BxINxOUT"),
    (["--shapes", "0x4x4"], "positive"),
    (["--cases", "out_only,diagonal"], "'diagonal' is not one of"),
    (["--passes", "bwd"], "'bwd' is not one of"),
    (["--backends", "tpu"], "'tpu' is not one of"),
    (["--block-size", "0"], "positive integer"),
    (["--repeats", "-1"], "positive integer"),
    (["--warmup", "x"], "an integer >= 0"),
    (["--warmup", "-1"], "an integer >= 0"),
    (["--training", "--backends", "cpu,reference"], "one backend"),
    (["--dtype", "int8"], "invalid choice"),
    (["--in", "8"], "--in and --out go together"),
    (["--in", "8", "--out", "8"], "--in/--out need --batch"),
    (["--batch", "8"], "--batch needs"),
    (["--preset", "criteo"], "invalid choice"),
    (["--training", "--plot", "x.png"], "--plot draws the kernel benchmarks"),
    (["--training", "--shapes", "8x8x8"], "--training times a DLRM config"),
    (["--backends", "cuda"], "'cuda'"),
])
def test_bad_arguments_are_argparse_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["--device", "cpu", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


# ----- ratios and limits ----------------------------------------------------------------------------
def test_ratio_math():
    assert metrics.speedup(10.0, 4.0) == pytest.approx(2.5)
    assert metrics.fraction_of_limit(3.0, 4.0) == pytest.approx(0.75)
    assert metrics.speedup(None, 4.0) is None and metrics.speedup(10.0, None) is None
    assert metrics.speedup(10.0, 0.0) is None
    assert metrics.ideal_speedup("out_only", 0.25) == pytest.approx(4.0)
    assert metrics.ideal_speedup("in_out", 0.25) == pytest.approx(16.0)
    assert metrics.ideal_speedup("in_out", 1.0) == 1.0
    with pytest.raises(ValueError, match="density"):
        metrics.ideal_speedup("in_out", 0.0)
    with pytest.raises(ValueError, match="case"):
        metrics.ideal_speedup("diagonal", 0.5)


def test_timing_summary_and_counts():
    timing = Timing((4.0, 1.0, 3.0, 2.0, 100.0))
    assert timing.median_ms == 3.0 and timing.min_ms == 1.0 and timing.max_ms == 100.0
    assert timing.q1_ms == 2.0 and timing.q3_ms == 4.0
    calls = []
    result = measure(calls.append, warmup=2, repeats=3)
    assert calls == [0, 1, 2, 3, 4] and len(result.samples_ms) == 3  # step(i) gets fresh indices to rotate
    with pytest.raises(ValueError, match="repeats"):
        measure(calls.append, warmup=0, repeats=0)


def test_interleaved_timing_rotates_order_and_drops_failures():
    order = []

    def failing(i):
        raise RuntimeError("no kernel for this dtype")

    steps = {"a": lambda i: order.append(("a", i)), "b": lambda i: order.append(("b", i)), "bad": failing}
    timings, failed = measure_interleaved(steps, warmup=1, repeats=3, errors=(RuntimeError,))
    assert set(timings) == {"a", "b"} and list(failed) == ["bad"]
    assert all(len(t.samples_ms) == 3 for t in timings.values())
    assert order == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("b", 2), ("a", 2), ("a", 3), ("b", 3)]
    with pytest.raises(RuntimeError):  # errors not listed are not swallowed
        measure_interleaved({"bad": failing}, warmup=0, repeats=1)


# ----- cases and presets --------------------------------------------------------------------------
def test_presets_follow_dlrm_configs():
    kaggle = cases.preset_shapes("kaggle", [2048])
    # bottom 13-512-256-64-16, top (27*26/2 + 16 = 367)-512-256-1; narrow layers left out
    assert [(s.in_features, s.out_features) for s in kaggle] == [(512, 256), (256, 64), (367, 512)]
    assert all(s.batch == 2048 for s in kaggle)
    assert len(cases.preset_shapes("terabyte", [2048, 16384])) == 2 * len(cases.preset_shapes("terabyte"))
    with pytest.raises(ValueError, match="preset"):
        cases.preset_shapes("criteo")


@pytest.mark.parametrize("case", ["out_only", "in_out"])
@pytest.mark.parametrize("density", [1.0, 0.75, 0.5, 0.25])
def test_problem_blocks_match_density(case, density):
    problem = cases.make_problem(cases.Shape(8, 256, 320), case, density, block_size=32, seed=3)
    expected_out = 10 if density == 1.0 else round(density * 10)
    assert problem.active_out == expected_out * 32
    if case == "out_only":
        assert problem.in_blocks is None and problem.active_in == 256
    else:
        assert problem.active_in == (8 if density == 1.0 else round(density * 8)) * 32
    assert problem.weight_density == pytest.approx(problem.active_in * problem.active_out / (256 * 320))
    again = cases.make_problem(cases.Shape(8, 256, 320), case, density, block_size=32, seed=3)
    for a, b in ((problem.out_blocks, again.out_blocks), (problem.in_blocks, again.in_blocks)):
        assert (a is None and b is None) or torch.equal(a, b)  # seeded: the same blocks every run


def test_channels_of_a_tail_block():
    problem = cases.make_problem(cases.Shape(2, 70, 70), "in_out", 0.5, block_size=32, seed=0)
    problem.in_blocks = torch.tensor([0, 2], dtype=torch.int32)
    assert problem.in_channels.tolist() == list(range(32)) + [64, 65, 66, 67, 68, 69]


def test_rotation_copies_respect_budget():
    assert rotation_copies(cases.Shape(8, 8, 8), torch.float32, 3) == 3
    assert rotation_copies(cases.Shape(1 << 20, 4096, 4096), torch.float32, 3) == 1


# ----- every method computes the op it stands for --------------------------------------------------
@pytest.mark.parametrize("case", ["out_only", "in_out"])
@pytest.mark.parametrize("pass_", ["fwd", "fwd_bwd"])
def test_methods_agree_with_reference(case, pass_):
    shape = cases.Shape(6, 72, 80)  # tails: 72 and 80 are not multiples of 32
    problem = cases.make_problem(shape, case, 0.5, block_size=32, seed=1)
    inputs = make_inputs(shape, torch.float64, "cpu", copies=2, seed=1)
    x, w, b, g = (inputs.xs[1].detach().clone().requires_grad_(), inputs.weight.detach().clone().requires_grad_(),
                  inputs.bias.detach().clone().requires_grad_(), inputs.grads[1])
    y = amgp_kernels.reference.block_linear(x, w, b, problem.in_blocks, problem.out_blocks, 32, "relu")
    expected = torch.autograd.grad(y, (x, w, b), g) if pass_ == "fwd_bwd" else (y,)
    out_ch, in_ch = problem.out_channels, problem.in_channels
    backends = ["reference", *default_backends("cpu")]
    methods = ["gather_mm_scatter", "compacted", *backends, *(name + "_packed" for name in backends)]
    for method in methods:
        result = build_step(method, problem, pass_, inputs, activation="relu")(1)
        result = result if isinstance(result, tuple) else (result,)
        if method.endswith("_packed"):  # y (and x, when its side is pruned) hold only the active channels
            expected_p = (expected[0][:, out_ch],) if pass_ == "fwd" else (
                expected[0] if in_ch is None else expected[0][:, in_ch], *expected[1:])
            assert len(result) == len(expected_p)
            for got, want in zip(result, expected_p):
                torch.testing.assert_close(got, want, msg=lambda m: f"{method}: {m}")
            continue
        if method == "compacted":  # only the active sub-matrices exist there
            full_in = in_ch if in_ch is not None else torch.arange(shape.in_features)
            if pass_ == "fwd":
                expected_c = (expected[0][:, out_ch],)
            else:
                expected_c = (expected[0][:, full_in], expected[1][out_ch][:, full_in], expected[2][out_ch])
            assert len(result) == len(expected_c)
            for got, want in zip(result, expected_c):
                torch.testing.assert_close(got, want, msg=lambda m: f"{method}: {m}")
            continue
        assert len(result) == len(expected)
        for got, want in zip(result, expected):
            torch.testing.assert_close(got, want, msg=lambda m: f"{method}: {m}")
    dense = build_step("dense", problem, pass_, inputs, activation="relu")(1)
    full = torch.relu(torch.nn.functional.linear(x, w, b))
    if pass_ == "fwd":
        torch.testing.assert_close(dense, full.detach())
    else:
        for got, want in zip(dense, torch.autograd.grad(full, (x, w, b), g)):
            torch.testing.assert_close(got, want)


# ----- end to end ------------------------------------------------------------------------------------
def _finite_numbers(value):
    if isinstance(value, dict):
        return all(_finite_numbers(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite_numbers(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


def test_tiny_run_writes_json_table_and_png(tmp_path, capsys):
    json_path, png_path = tmp_path / "result.json", tmp_path / "speedup.png"
    status = cli.main(["--device", "cpu", "--shapes", "16x64x96", "--block-size", "16", "--warmup", "0",
                       "--repeats", "1", "--copies", "2", "--backends", "reference", "--json", str(json_path),
                       "--plot", str(png_path), "--no-progress"])
    assert status == 0
    stdout = capsys.readouterr().out
    assert "| shape BxINxOUT | case | pass | density | method | median ms |" in stdout
    assert "| shape BxINxOUT | case | pass | method | d=1 | d=0.75 | d=0.5 | d=0.25 |" in stdout  # summary
    assert "| 16x64x96 | in_out | fwd_bwd | *ideal* | 1.00x | 1.78x | 4.00x | 16.00x |" in stdout
    document = json.loads(json_path.read_text())
    assert document["schema"] == report.SCHEMA
    for key in ("date", "command", "cpu", "num_threads", "torch", "triton", "amgp_build_info", "device", "dtype",
                "backends", "warmup", "repeats"):
        assert key in document["meta"], key
    assert document["meta"]["command"].startswith("amgp-bench --device cpu --shapes 16x64x96")
    rows = document["kernel"]
    # 2 passes x 2 cases x 4 densities x (3 baselines + 1 backend with full-size and packed activations)
    assert len(rows) == 2 * 2 * 4 * 5
    assert {r["method"] for r in rows} == {"dense", "gather_mm_scatter", "compacted", "reference", "reference_packed"}
    for row in rows:
        for key in ("shape", "case", "pass", "density", "weight_density", "method", "median_ms", "q1_ms", "q3_ms",
                    "speedup_vs_dense", "fraction_of_limit", "ideal_speedup", "error"):
            assert key in row, key
        assert row["error"] is None and row["median_ms"] > 0
    assert _finite_numbers(document)
    compacted = [r for r in rows if r["method"] == "compacted"]
    assert all(r["fraction_of_limit"] == pytest.approx(1.0) for r in compacted)
    for row in rows:  # each row's ratios refer to the dense and compacted rows of its own group
        group = [r for r in rows if (r["pass"], r["case"], r["density"]) == (row["pass"], row["case"], row["density"])]
        dense_ms = next(r["median_ms"] for r in group if r["method"] == "dense")
        compacted_ms = next(r["median_ms"] for r in group if r["method"] == "compacted")
        assert row["speedup_vs_dense"] == pytest.approx(dense_ms / row["median_ms"])
        assert row["fraction_of_limit"] == pytest.approx(compacted_ms / row["median_ms"])
        assert row["ideal_speedup"] == pytest.approx(metrics.ideal_speedup(row["case"], row["density"]))
    png = png_path.read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 10_000
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width > 400 and height > 200
    # the RESULTS.md path (bench/report.py) renders the same document as a titled section
    capsys.readouterr()
    assert _bench_report_script().main([str(json_path), "--title", "tiny"]) == 0
    section = capsys.readouterr().out
    assert section.startswith("## tiny\n") and report.kernel_table(rows) in section
    assert "- command: `amgp-bench --device cpu --shapes 16x64x96" in section


def test_failing_method_is_recorded_not_fatal():
    config = KernelBenchConfig(shapes=[cases.Shape(4, 32, 32)], backends=["cuda"], device="cpu",
                               cases=("in_out",), passes=("fwd",), densities=(0.5,), warmup=0, repeats=1)
    rows = run_kernel_benchmarks(config, progress=False)
    failed = [r for r in rows if r["method"] == "cuda"]
    assert failed and failed[0]["error"] and failed[0]["median_ms"] is None and failed[0]["speedup_vs_dense"] is None
    assert "Failed measurements" in report.render_markdown(report.make_document({}, rows))


def test_read_json_rejects_other_files(tmp_path):
    path = tmp_path / "other.json"
    path.write_text('{"benchmarks": []}')
    with pytest.raises(ValueError, match="not an amgp-bench result"):
        report.read_json(path)


def test_training_benchmark_rows(monkeypatch):
    small = {"bottom": [13, 64, 32], "top": [32 + 24, 64, 1]}
    monkeypatch.setitem(cases.DLRM_CONFIGS, "tiny", small)
    rows = run_training_benchmarks(["mlp"], "tiny", batch=8, densities=[1.0, 0.5], block_size=16, warmup=0,
                                   repeats=1, copies=1, progress=False)
    assert [r["method"] for r in rows] == ["nn_linear", "dense_phase", "sparse_phase", "sparse_full_step", "compacted",
                                           "contract_floor"]
    sparse, limit, floor = rows[2], rows[4], rows[5]
    assert rows[3]["fraction_of_limit"] == pytest.approx(limit["median_ms"] / rows[3]["median_ms"])
    assert sparse["density"] == 0.5 and 0 < sparse["weight_density"] < 1
    assert limit["density"] == 0.5 and limit["weight_density"] == sparse["weight_density"]
    assert rows[1]["weight_density"] == 1.0
    assert rows[0]["speedup_vs_nn_linear"] == pytest.approx(1.0)
    assert sparse["speedup_vs_dense_phase"] == pytest.approx(rows[1]["median_ms"] / sparse["median_ms"])
    assert sparse["fraction_of_limit"] == pytest.approx(limit["median_ms"] / sparse["median_ms"])
    assert sparse["fraction_of_floor"] == pytest.approx(floor["median_ms"] / sparse["median_ms"])
    assert rows[1]["fraction_of_limit"] == pytest.approx(rows[0]["median_ms"] / rows[1]["median_ms"])
    table = report.training_table(rows)
    assert "speedup vs dense phase" in table and "fraction of limit" in table and "fraction of floor" in table


def test_compacted_model_is_the_pruned_model_with_smaller_layers():
    """The training benchmark's limit computes what the pruned model computes, with only its active weights."""
    from amgp import SparseMLP, prune_blocks
    from amgp.bench.compacted import compacted_model
    from amgp.bench.training import MLPStack

    torch.manual_seed(0)
    model = MLPStack(SparseMLP([13, 64, 48, 32], block_size=16, last_activation="relu"),
                     SparseMLP([32 + 8, 64, 32, 1], block_size=16))
    prune_blocks(model, 0.5)
    limit = compacted_model(model)
    dense, interaction = torch.randn(6, 13), torch.randn(6, 8)
    torch.testing.assert_close(limit(dense, interaction), model(dense, interaction))
    linears = [m for m in limit.modules() if isinstance(m, torch.nn.Linear)]
    layers = [*model.bottom.layers, *model.top.layers]
    assert [tuple(m.weight.shape) for m in linears] == [
        (int(layer.out_channel_mask.sum()), int(layer.in_channel_mask.sum())) for layer in layers]
    assert linears[1].weight.shape[1] == 32 < 64  # a hidden side really shrank
    assert isinstance(model.bottom, SparseMLP)  # the pruned model itself is left alone


def test_contract_floor_step_runs_the_compacted_backward():
    from amgp import SparseMLP, prune_blocks
    from amgp.bench.compacted import compacted_model
    from amgp.bench.training import contract_floor_step

    torch.manual_seed(0)
    pruned = SparseMLP([12, 64, 1], block_size=16)
    prune_blocks(pruned, 0.5)
    limit = compacted_model(pruned)
    batches = [((torch.randn(8, 12),), torch.randint(0, 2, (8, 1)).float())]
    contract_floor_step(limit, pruned, batches)(0)
    # the compacted GEMMs really ran, forward and backward (their gradients exist, at the compacted shapes)
    assert all(p.grad is not None and p.grad.shape == p.shape and bool(p.grad.abs().sum() > 0)
               for p in limit.parameters())


def test_weight_density_of_a_pruned_stack():
    from amgp import SparseMLP, prune_blocks

    mlp = SparseMLP([32, 64, 32], block_size=16)
    prune_blocks(mlp, 0.5)  # hidden layer: 4 -> 2 output blocks, so half of both weights
    assert weight_density(mlp) == pytest.approx(0.5)


def test_training_dlrm_rows(monkeypatch):
    """The DLRM training benchmark against amgp.DLRM's interface (constructor names of
    facebookresearch/dlrm, .logits); needs the DLRM wrapper."""
    monkeypatch.setitem(cases.DLRM_CONFIGS, "tiny", {"bottom": [13, 64, 16], "top": [27 * 26 // 2 + 16, 64, 1]})
    rows = run_training_benchmarks(["dlrm"], "tiny", batch=8, densities=[0.5], block_size=16, warmup=0, repeats=1,
                                   copies=1, progress=False)
    assert [r["method"] for r in rows] == ["nn_linear", "dense_phase", "sparse_phase", "sparse_full_step", "compacted",
                                           "contract_floor"]
    assert rows[0]["model"] == "dlrm:tiny" and 0 < rows[2]["weight_density"] < 1
    with pytest.raises(ValueError, match="sparse gradients"):
        run_training_benchmarks(["dlrm"], "tiny", batch=8, densities=[0.5], optimizer="adam", progress=False)


@pytest.mark.parametrize("kind, widths", [("top", [24, 64, 32, 1]), ("bottom", [13, 64, 32])])
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adagrad"])
def test_training_one_mlp_with_each_optimizer(monkeypatch, kind, widths, optimizer):
    """--training-model top / bottom time the config's MLP alone; --optimizer trains every variant with it."""
    monkeypatch.setitem(cases.DLRM_CONFIGS, "tiny", {"bottom": [13, 64, 32], "top": [24, 64, 32, 1]})
    rows = run_training_benchmarks([kind], "tiny", batch=8, densities=[0.5], block_size=16, warmup=0, repeats=1,
                                   copies=1, progress=False, optimizer=optimizer)
    assert {r["model"] for r in rows} == {f"{kind}:tiny"} and {r["optimizer"] for r in rows} == {optimizer}
    assert all(r["error"] is None and r["median_ms"] > 0 for r in rows)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        run_training_benchmarks([kind], "tiny", batch=8, densities=[0.5], optimizer="lbfgs", progress=False)


def test_training_command_line_prints_the_table_and_writes_json(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(cases.DLRM_CONFIGS, "tiny", {"bottom": [13, 64, 16], "top": [27 * 26 // 2 + 16, 64, 1]})
    json_path = tmp_path / "training.json"
    assert cli.main(["--device", "cpu", "--training", "--preset", "tiny", "--batch", "8,16", "--densities", "1,0.5",
                     "--block-size", "16", "--warmup", "0", "--repeats", "1", "--copies", "1", "--no-progress",
                     "--json", str(json_path)]) == 0
    out = capsys.readouterr().out
    assert "speedup vs dense phase" in out
    document = json.loads(json_path.read_text())
    assert document["meta"]["mode"] == "training" and document["meta"]["batches"] == [8, 16]
    rows = document["training"]
    assert {(r["model"], r["batch"]) for r in rows} == {(m, b) for m in ("mlp:tiny", "dlrm:tiny") for b in (8, 16)}
    for row in rows:
        assert row["error"] is None and row["median_ms"] > 0
    assert {r["method"] for r in rows} == {"nn_linear", "dense_phase", "sparse_phase", "sparse_full_step", "compacted",
                                           "contract_floor"}
    assert all(0 < r["weight_density"] < 1 for r in rows if r["method"] == "sparse_phase")
