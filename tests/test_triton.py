"""Behaviour of the Triton backend beyond the common cases of test_block_linear.py: its backward operator,
the split-K weight gradient, its errors, torch.compile, the backend choice, ahead-of-time compilation and
(GPU only) real tile sizes and autotuning. On a machine without a GPU conftest sets TRITON_INTERPRET=1 and
these run on CPU tensors in Triton's interpreter (slow: shapes stay tiny, a few tiles each)."""
import os
import subprocess
import sys

import pytest
import torch

triton = pytest.importorskip("triton")

import amgp  # noqa: E402
import amgp_kernels  # noqa: E402
from amgp_kernels import backends, testing  # noqa: E402
from amgp_kernels import triton as triton_backend  # noqa: E402
from amgp_kernels.blocks import num_blocks  # noqa: E402
from amgp_kernels.triton import launch  # noqa: E402
from kernel_harness import check_against_reference  # noqa: E402

GPU = torch.cuda.is_available()
DEVICE = "cuda" if GPU else "cpu"
INTERPRETED = triton_backend.INTERPRET  # its bfloat16 conversions truncate: see testing.error_bound
gpu_only = pytest.mark.skipif(not GPU, reason="needs a CUDA GPU")


if not triton_backend.AVAILABLE:
    pytest.skip(f"the triton backend cannot run here: {triton_backend.UNAVAILABLE_REASON} "
                "(python -m amgp_kernels.triton.aot still checks the compiled kernels)", allow_module_level=True)


@pytest.fixture(autouse=True)
def poisoned_outputs():
    """Every output and workspace the backend allocates starts as NaN, so unwritten elements show."""
    with testing.poisoned_outputs():
        yield


def _blocks(features, block_size, kind):
    return testing.random_blocks(num_blocks(features, block_size), kind, device=DEVICE)


def _backward_case(dtype=torch.float32, activation="relu"):
    x = torch.randn(40, 40, dtype=dtype, device=DEVICE)
    weight = torch.randn(30, 40, dtype=dtype, device=DEVICE) / 40 ** 0.5
    bias = torch.randn(30, dtype=dtype, device=DEVICE)
    in_blocks = torch.tensor([0, 2], dtype=torch.int32, device=DEVICE)
    out_blocks = torch.tensor([1], dtype=torch.int32, device=DEVICE)
    y = torch.ops.amgp.block_linear_triton(x, weight, bias, in_blocks, out_blocks, 16, activation)
    grad_y = torch.randn_like(y)
    expected = testing.reference_with_grads(x, weight, bias, in_blocks, out_blocks, 16, activation, grad_y, y_actual=y)
    return (grad_y, x, weight, y, in_blocks, out_blocks, 16, activation, False, False), expected


@pytest.mark.parametrize("mask", [[True, False, False], [False, True, False], [False, False, True]])
def test_backward_returns_only_requested_grads(mask):
    args, (_, ref_dx, ref_dw, ref_db) = _backward_case()
    grads = torch.ops.amgp.block_linear_triton_backward(*args, mask)
    for wanted, grad, ref, name in zip(mask, grads, (ref_dx, ref_dw, ref_db), ("grad_x", "grad_weight", "grad_bias")):
        if wanted:
            testing.assert_close_to_reference(grad, ref, torch.float32, name)
        else:
            assert grad.numel() == 0, f"{name} was not asked for but has shape {tuple(grad.shape)}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_split_k_weight_grad(dtype):
    """dW/db summed over the batch in 3 splits (what the GPU does when output tiles are few)."""
    args, (_, _, ref_dw, ref_db) = _backward_case(dtype)
    _, grad_w, grad_b = launch.backward(*args, [False, True, True], split=3)
    testing.assert_close_to_reference(grad_w, ref_dw, dtype, "grad_weight", interpreted=INTERPRETED)
    testing.assert_close_to_reference(grad_b, ref_db, dtype, "grad_bias", interpreted=INTERPRETED)
    _, _, only_b = launch.backward(*args, [False, False, True], split=2)
    testing.assert_close_to_reference(only_b, ref_db, dtype, "grad_bias alone", interpreted=INTERPRETED)


def test_relu_backward_needs_y():
    args, _ = _backward_case()
    grad_y, x, weight, _, *rest = args
    with pytest.raises(ValueError, match="y"):
        launch.backward(grad_y, x, weight, None, *rest, [True, True, True])


def test_float64_is_rejected_with_a_clear_error():
    x = torch.randn(2, 8, dtype=torch.float64, device=DEVICE)
    weight = torch.randn(4, 8, dtype=torch.float64, device=DEVICE)
    with pytest.raises(TypeError, match="triton backend supports"):
        amgp_kernels.block_linear(x, weight, None, None, None, 4, backend="triton")


def test_torch_compile_fullgraph_sparse_linear():
    layer = amgp.SparseLinear(40, 30, block_size=16, activation="relu", backend="triton", device=DEVICE)
    layer.set_out_mask(torch.tensor([True, False], device=DEVICE))
    layer.set_in_mask(torch.tensor([True, False, True], device=DEVICE))
    compiled = torch.compile(layer, fullgraph=True)
    x = torch.randn(6, 40, device=DEVICE, requires_grad=True)
    y = compiled(x)
    grad_y = torch.randn_like(y)
    y.backward(grad_y)
    ref_y, ref_dx, ref_dw, ref_db = testing.reference_with_grads(x, layer.weight, layer.bias, layer.in_index,
                                                                layer.out_index, 16, "relu", grad_y, y_actual=y)
    testing.assert_close_to_reference(y, ref_y, torch.float32, "y")
    testing.assert_close_to_reference(x.grad, ref_dx, torch.float32, "grad_x")
    testing.assert_close_to_reference(layer.weight.grad, ref_dw, torch.float32, "grad_weight")
    testing.assert_close_to_reference(layer.bias.grad, ref_db, torch.float32, "grad_bias")


# ----- backend choice --------------------------------------------------------------------------


@pytest.fixture
def triton_calls(monkeypatch):
    """Counts forward launches of the Triton backend."""
    calls = []
    forward = launch.forward

    def counting_forward(*args):
        calls.append(1)
        return forward(*args)

    monkeypatch.setattr(launch, "forward", counting_forward)
    return calls


@pytest.fixture
def default_backend():
    yield
    amgp_kernels.set_backend(None)


def test_triton_is_available_here():
    assert triton_backend.AVAILABLE
    assert triton_backend.INTERPRET or GPU
    assert "triton" in amgp_kernels.available_backends()


def test_set_backend_and_environment_choose_triton(triton_calls, default_backend, monkeypatch):
    x, weight = torch.randn(2, 16, device=DEVICE), torch.randn(8, 16, device=DEVICE)
    amgp_kernels.set_backend("triton")
    amgp_kernels.block_linear(x, weight, None, None, None, 8)
    assert len(triton_calls) == 1
    amgp_kernels.set_backend(None)
    monkeypatch.setenv("AMGP_BACKEND", "triton")
    amgp_kernels.block_linear(x, weight, None, None, None, 8)
    assert len(triton_calls) == 2
    amgp_kernels.block_linear(x, weight, None, None, None, 8, backend="reference")  # the argument wins
    assert len(triton_calls) == 2


def test_sparse_mlp_backend_argument(triton_calls):
    mlp = amgp.SparseMLP([16, 24, 8], block_size=8, backend="triton", device=DEVICE)
    mlp.set_out_mask(0, torch.tensor([True, False, True], device=DEVICE))
    x = torch.randn(3, 16, device=DEVICE)
    y = mlp(x)
    assert len(triton_calls) == 2
    reference = amgp.SparseMLP([16, 24, 8], block_size=8, backend="reference", device=DEVICE)
    reference.load_state_dict(mlp.state_dict())
    torch.testing.assert_close(y, reference(x))


def test_auto_rule_on_gpu_tensors():
    # auto_backend only reads build/availability info: checkable without a GPU.
    expected = "cuda" if "cuda" in amgp_kernels._extension.compiled_backends() else "triton"
    assert backends.auto_backend(torch.device("cuda")) == expected
    assert backends.auto_backend(torch.device("cpu")) != "triton"


def test_unavailable_triton_raises_a_clear_error(monkeypatch):
    x, weight = torch.randn(2, 16), torch.randn(8, 16)
    monkeypatch.setattr(backends, "_triton_module", lambda: None)
    with pytest.raises(amgp_kernels.BackendUnavailableError, match=r"'triton' is not available.*available here: "):
        amgp_kernels.block_linear(x, weight, None, None, None, 8, backend="triton")


def test_cpu_tensors_need_the_interpreter(monkeypatch):
    monkeypatch.setattr(triton_backend, "INTERPRET", False)
    with pytest.raises(amgp_kernels.BackendUnavailableError, match="TRITON_INTERPRET"):
        amgp_kernels.block_linear(torch.randn(2, 16), torch.randn(8, 16), None, None, None, 8, backend="triton")


@pytest.mark.parametrize("fake_triton, why", [
    ("None", "import of triton halted"),  # None in sys.modules makes `import triton` raise ImportError
    ("types.SimpleNamespace(__version__='3.0.0')", "triton 3.0.0 is installed; the triton backend needs triton >= 3.6"),
])
def test_without_a_usable_triton_the_backend_is_reported_unavailable(fake_triton, why):
    """Import never fails because triton is missing or too old (torch 2.4 brings 3.0): the backend is just not
    available."""
    code = (
        f"import sys, types; sys.modules['triton'] = {fake_triton}\n"
        "import torch, amgp_kernels, amgp_kernels.triton as t\n"
        f"assert not t.AVAILABLE and {why!r} in t.IMPORT_ERROR, t.IMPORT_ERROR\n"
        "assert 'triton' not in amgp_kernels.available_backends()\n"
        "try:\n"
        "    amgp_kernels.block_linear(torch.ones(2, 8), torch.ones(4, 8), None, None, None, 4, backend='triton')\n"
        "except amgp_kernels.BackendUnavailableError as error:\n"
        "    print('unavailable:', error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "unavailable: backend 'triton' is not available" in result.stdout


def test_unknown_backend_name():
    with pytest.raises(ValueError, match="backend must be one of"):
        amgp_kernels.block_linear(torch.randn(2, 16), torch.randn(8, 16), None, None, None, 8, backend="tritonn")


def test_kernels_compile_for_sm90_without_a_gpu():
    """The interpreter never compiles: check that the real (compiled) kernels build for sm_90, with
    gathered channels on both sides, bf16 and exact fp32, an odd block size. No GPU needed."""
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    command = [sys.executable, "-m", "amgp_kernels.triton.aot", "--arch", "90", "--dtypes", "bf16,fp32",
               "--block-sizes", "24", "--gather-only"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert result.stdout.count("sm_90 ok:") == 10, result.stdout


def test_a_fixed_tile_replaces_autotuning_on_gpu():
    """AMGP_TRITON_TILE gives every GEMM one tile (a GPU check cannot autotune a hundred new shapes); a
    malformed value is an error naming the variable, at import, not a kernel failing later."""
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    code = ("from amgp_kernels.triton.configs import gemm_configs; (c,) = gemm_configs(); "
            "print(*(c.kwargs[k] for k in ('BLOCK_M', 'BLOCK_N', 'BLOCK_K')), c.num_stages, c.num_warps)")
    result = subprocess.run([sys.executable, "-c", code], env={**env, "AMGP_TRITON_TILE": "64,128,32,3,4"},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.split() == ["64", "128", "32", "3", "4"], result.stderr
    for bad in ("64,64", "64,48,32,4,4", "64,64,32,0,4", "a,b,c,d,e"):
        result = subprocess.run([sys.executable, "-c", code], env={**env, "AMGP_TRITON_TILE": bad},
                                capture_output=True, text=True, timeout=300)
        assert result.returncode != 0 and "AMGP_TRITON_TILE must be" in result.stderr, (bad, result.stderr[-500:])


# ----- GPU only: real tile sizes, autotuning, the automatic split-K ---------------------------


# Each case autotunes (compiles every tile config of three kernels): keep the list short.
GPU_CASES = [(torch.bfloat16, 0.5, 0.5), (torch.float32, "all", 0.25), (torch.float16, "all", "all")]


@gpu_only
@pytest.mark.parametrize("dtype,in_kind,out_kind", GPU_CASES)
def test_gpu_larger_shapes(dtype, in_kind, out_kind):
    in_f, out_f, block_size = 1000, 768, 32
    x = torch.randn(1024, in_f, dtype=dtype, device=DEVICE)
    weight = torch.randn(out_f, in_f, dtype=dtype, device=DEVICE) / in_f ** 0.5
    bias = torch.randn(out_f, dtype=dtype, device=DEVICE)
    check_against_reference("triton", x, weight, bias, _blocks(in_f, block_size, in_kind),
                            _blocks(out_f, block_size, out_kind), block_size, "relu")


@gpu_only
def test_gpu_automatic_split_k():
    """A narrow layer under a large batch: few dW tiles, so the batch reduction is split."""
    in_blocks = _blocks(256, 32, 0.5)
    out_blocks = _blocks(256, 32, 0.25)
    out = launch._Side(out_blocks, 256, 32)
    inp = launch._Side(in_blocks, 256, 32)
    assert launch.weight_grad_split(16384, out, inp, torch.device(DEVICE)) > 1
    x = torch.randn(16384, 256, device=DEVICE, dtype=torch.bfloat16)
    weight = torch.randn(256, 256, device=DEVICE, dtype=torch.bfloat16) / 16
    check_against_reference("triton", x, weight, torch.randn(256, device=DEVICE, dtype=torch.bfloat16), in_blocks,
                            out_blocks, 32, "relu")
