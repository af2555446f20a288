"""Behaviour of the hand-written CUDA kernels beyond the common cases of test_block_linear.py: several
output tiles and K-steps, the split-K weight gradient, dense layers kept on the block kernels, the generic
path of unusual block sizes, gradients not asked for, streams and the compiled op's own argument checks."""
import pytest
import torch

import amgp_kernels
from amgp_kernels.testing import assert_close_to_reference, reference_with_grads
from kernel_harness import Case, check_case, make_inputs

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or "cuda" not in amgp_kernels.build_info()["compiled_backends"],
    reason="needs a CUDA GPU and the CUDA build of amgp_kernels._C",
)

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def inputs(*case):
    """x, weight, bias, in_blocks, out_blocks, grad_y of a Case on the GPU."""
    return make_inputs(Case(*case), "cuda")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("density", [1.0, 0.5], ids=str)
def test_packed_multi_tile_and_split_k(monkeypatch, dtype, density):
    """Packed hidden layer over several tiles, dense included through the block kernels, and a split-K dW."""
    monkeypatch.setenv("AMGP_CUDA_DENSE_ATEN", "0")
    kind = "all" if density == 1.0 else density
    check_case("cuda", Case((300,), 700, 512, 32, dtype, kind, kind, packed_in=True, packed_out=True))
    check_case("cuda", Case((4096,), 64, 96, 32, dtype, 0.5, 0.5, "none", packed_in=True, packed_out=True))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [((300,), 700, 520, 32), ((2, 129), 1024, 256, 64), ((257,), 384, 640, 128)],
                         ids=str)
@pytest.mark.parametrize("density", [1.0, 0.5], ids=str)
def test_multi_tile_shapes(monkeypatch, dtype, shape, density):
    """Several output tiles and more K-steps than pipeline stages (dense too: through the block kernels)."""
    monkeypatch.setenv("AMGP_CUDA_DENSE_ATEN", "0")
    batch_shape, in_f, out_f, bs = shape
    kind = "all" if density == 1.0 else density
    check_case("cuda", Case(batch_shape, in_f, out_f, bs, dtype, kind, kind))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bs", [16, 24])
@pytest.mark.parametrize("activation", ["none", "relu"])
def test_dense_through_block_kernels(monkeypatch, dtype, bs, activation):
    """All blocks active normally goes to ATen/cuBLAS; AMGP_CUDA_DENSE_ATEN=0 keeps it on our kernels."""
    monkeypatch.setenv("AMGP_CUDA_DENSE_ATEN", "0")
    check_case("cuda", Case((37,), 3 * bs + 5, 2 * bs + 3, bs, dtype, "all", "all", activation))


@pytest.mark.parametrize("bs", [1, 3, 8, 200])
def test_unusual_block_sizes(bs):
    """Generic path: block sizes below the vector width, odd, and larger than the features."""
    check_case("cuda", Case((19,), 50, 45, bs, torch.float16, 0.5 if bs < 50 else "all", "single"))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_split_k_weight_gradient(dtype):
    """Few dW tiles and a long batch: the weight gradient is split over K and reduced."""
    check_case("cuda", Case((4096,), 64, 96, 32, dtype, 0.5, "all", "none"))


def test_gradients_not_asked_for_are_empty():
    x, w, _, in_b, out_b, gy = inputs((8,), 64, 48, 16, torch.float32, 0.5, 0.5)
    y = torch.ops.amgp.block_linear(x, w, None, in_b, out_b, 16, "relu")
    gx, gw, gb = torch.ops.amgp.block_linear_backward(gy, x, w, y, in_b, out_b, 16, "relu", False, False,
                                                      [False, True, False])
    assert gx.numel() == 0 and gb.numel() == 0 and gw.shape == w.shape
    _, _, ref_gw, _ = reference_with_grads(x, w, None, in_b, out_b, 16, "relu", gy, y_actual=y)
    assert_close_to_reference(gw, ref_gw, torch.float32, "grad weight")


def test_runs_on_the_current_stream():
    x, w, b, in_b, out_b, _ = inputs((64,), 128, 96, 32, torch.bfloat16, 0.5, 0.5)
    expected = torch.ops.amgp.block_linear(x, w, b, in_b, out_b, 32, "relu")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        got = torch.ops.amgp.block_linear(x, w, b, in_b, out_b, 32, "relu")
    torch.cuda.current_stream().wait_stream(side)
    assert torch.equal(got, expected)


def test_bad_input_on_cuda():
    x, w, b, in_b, out_b, _ = inputs((4,), 40, 24, 8, torch.float32, 0.5, 0.5)
    with pytest.raises(RuntimeError, match="in_blocks must be on x's device"):
        torch.ops.amgp.block_linear(x, w, b, in_b.cpu(), out_b, 8, "none")
    with pytest.raises(RuntimeError, match="out_blocks must be int32"):
        torch.ops.amgp.block_linear(x, w, b, in_b, out_b.long(), 8, "none")
    with pytest.raises(RuntimeError, match="weight is on"):
        torch.ops.amgp.block_linear(x, w.cpu(), b, in_b, out_b, 8, "none")
    with pytest.raises(RuntimeError, match="dtype"):
        torch.ops.amgp.block_linear(x.double(), w.double(), None, in_b, out_b, 8, "none")
    with pytest.raises(RuntimeError, match="block_size must be > 0"):
        torch.ops.amgp.block_linear(x, w, b, in_b, out_b, 0, "none")
    with pytest.raises(RuntimeError, match="in_blocks has 9 entries"):
        torch.ops.amgp.block_linear(x, w, b, torch.arange(9, dtype=torch.int32, device="cuda"), out_b, 8, "none")
    with pytest.raises(ValueError, match="in_blocks must be on x's device"):  # the Python front door
        amgp_kernels.block_linear(x, w, b, in_b.cpu(), out_b, 8, backend="cuda")
