"""The hand-written CUDA kernels against the pure-PyTorch reference: forward and every gradient,
over dtypes, block sizes (fast sizes and an odd one), tails, masks, layouts and the split-K path."""
import pytest
import torch

import amgp_kernels
from amgp_kernels.blocks import num_blocks
from amgp_kernels.testing import (
    assert_close_to_reference,
    pack,
    poisoned_outputs,
    random_blocks,
    reference_with_grads,
)

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or "cuda" not in amgp_kernels.build_info()["compiled_backends"],
    reason="needs a CUDA GPU and the CUDA build of amgp_kernels._C",
)

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
BLOCK_SIZES = [16, 32, 64, 128, 24]
# (in_kind, out_kind): dense, first layer (out only), hidden layer (in+out), extremes.
MASK_CASES = [("all", "all"), ("all", 0.5), (0.5, 0.5), ("single", "single"), ("none", 0.5), (0.5, "none"),
              (0.25, "all")]


def make_inputs(batch_shape, in_f, out_f, bs, dtype, in_kind, out_kind, with_bias=True, seed=0, x_layout="contiguous"):
    gen = torch.Generator().manual_seed(seed)
    dev = "cuda"
    in_blocks = random_blocks(num_blocks(in_f, bs), in_kind, gen, device=dev)
    out_blocks = random_blocks(num_blocks(out_f, bs), out_kind, gen, device=dev)
    if x_layout == "transposed":  # non-contiguous: feature stride != 1, needs a copy
        x = torch.randn(in_f, *batch_shape, generator=gen).to(dev, dtype).movedim(0, -1)
    elif x_layout == "strided_rows":  # row stride > in_f and an odd offset: no 16-byte loads possible
        x = torch.randn(*batch_shape, in_f + 3, generator=gen).to(dev, dtype)[..., 1:in_f + 1]
    else:
        x = torch.randn(*batch_shape, in_f, generator=gen).to(dev, dtype)
    weight = torch.randn(out_f, in_f, generator=gen).to(dev, dtype)
    bias = torch.randn(out_f, generator=gen).to(dev, dtype) if with_bias else None
    grad_y = torch.randn(*batch_shape, out_f, generator=gen).to(dev, dtype)
    return x, weight, bias, in_blocks, out_blocks, grad_y


def check_case(batch_shape, in_f, out_f, bs, dtype, in_kind, out_kind, activation="relu", with_bias=True,
               x_layout="contiguous", seed=0, packed_in=False, packed_out=False):
    x, weight, bias, in_blocks, out_blocks, grad_y = make_inputs(
        batch_shape, in_f, out_f, bs, dtype, in_kind, out_kind, with_bias, seed, x_layout)
    if packed_in:
        x = pack(x, in_blocks, bs)
    if packed_out:
        grad_y = pack(grad_y, out_blocks, bs)
    x.requires_grad_()
    weight.requires_grad_()
    if bias is not None:
        bias.requires_grad_()
    with poisoned_outputs():
        y = amgp_kernels.block_linear(x, weight, bias, in_blocks, out_blocks, bs, activation, packed_in, packed_out,
                                      backend="cuda")
        y.backward(grad_y)
    torch.cuda.synchronize()
    y_ref, gx_ref, gw_ref, gb_ref = reference_with_grads(x, weight, bias, in_blocks, out_blocks, bs, activation,
                                                          grad_y, y_actual=y, packed_in=packed_in,
                                                          packed_out=packed_out)
    assert y.shape == grad_y.shape and y.dtype == dtype and y.device == x.device
    checks = [(y, y_ref, "y"), (x.grad, gx_ref, "grad x"), (weight.grad, gw_ref, "grad weight")]
    if bias is not None:
        checks.append((bias.grad, gb_ref, "grad bias"))
    for got, ref, what in checks:
        assert got.shape == ref.shape, what
        assert_close_to_reference(got.detach(), ref, dtype, what)
        # Inactive outputs and gradient blocks are exact zeros (and were written: outputs were NaN-poisoned).
        zero = ref == 0
        assert bool((got.detach()[zero] == 0).all()), f"{what}: nonzero where the reference is exactly zero"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bs", BLOCK_SIZES)
@pytest.mark.parametrize("in_kind,out_kind", MASK_CASES, ids=str)
def test_matches_reference(dtype, bs, in_kind, out_kind):
    # Features are not multiples of the block size: every dimension ends in a short block.
    check_case((37,), 3 * bs + 5, 2 * bs + 3, bs, dtype, in_kind, out_kind, seed=bs)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bs", [16, 24, 32])
@pytest.mark.parametrize("in_kind,out_kind", [("all", 0.5), (0.5, 0.5), ("none", 0.5), (0.5, "none"), (0.5, "all")],
                         ids=str)
@pytest.mark.parametrize("packed_in,packed_out", [(True, False), (False, True), (True, True)])
def test_packed_activations(dtype, bs, in_kind, out_kind, packed_in, packed_out):
    """x and/or y holding only the active channels (short last blocks at their real width, odd block sizes)."""
    for activation, with_bias in (("relu", True), ("none", False)):
        check_case((37,), 3 * bs + 5, 2 * bs + 3, bs, dtype, in_kind, out_kind, activation, with_bias, seed=bs,
                   packed_in=packed_in, packed_out=packed_out)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("density", [1.0, 0.5], ids=str)
def test_packed_multi_tile_and_split_k(monkeypatch, dtype, density):
    """Packed hidden layer over several tiles, dense included through the block kernels, and a split-K dW."""
    monkeypatch.setenv("AMGP_CUDA_DENSE_ATEN", "0")
    kind = "all" if density == 1.0 else density
    check_case((300,), 700, 512, 32, dtype, kind, kind, seed=3, packed_in=True, packed_out=True)
    check_case((4096,), 64, 96, 32, dtype, 0.5, 0.5, "none", seed=7, packed_in=True, packed_out=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [((300,), 700, 520, 32), ((2, 129), 1024, 256, 64), ((257,), 384, 640, 128)],
                         ids=str)
@pytest.mark.parametrize("density", [1.0, 0.5], ids=str)
def test_multi_tile_shapes(monkeypatch, dtype, shape, density):
    """Several output tiles and more K-steps than pipeline stages (dense too: through the block kernels)."""
    monkeypatch.setenv("AMGP_CUDA_DENSE_ATEN", "0")
    batch_shape, in_f, out_f, bs = shape
    kind = "all" if density == 1.0 else density
    check_case(batch_shape, in_f, out_f, bs, dtype, kind, kind, seed=in_f)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bs", [16, 24])
@pytest.mark.parametrize("activation", ["none", "relu"])
def test_dense_through_block_kernels(monkeypatch, dtype, bs, activation):
    """All blocks active normally goes to ATen/cuBLAS; AMGP_CUDA_DENSE_ATEN=0 keeps it on our kernels."""
    monkeypatch.setenv("AMGP_CUDA_DENSE_ATEN", "0")
    check_case((37,), 3 * bs + 5, 2 * bs + 3, bs, dtype, "all", "all", activation, seed=bs)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("x_layout", ["transposed", "strided_rows"])
@pytest.mark.parametrize("batch_shape", [(1,), (4, 6)], ids=str)
def test_layouts_and_leading_dims(dtype, x_layout, batch_shape):
    check_case(batch_shape, 96, 80, 16, dtype, 0.5, 0.5, x_layout=x_layout)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("activation", ["none", "relu"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_activation_and_bias(dtype, activation, with_bias):
    check_case((33,), 80, 72, 16, dtype, 0.5, "all", activation, with_bias)


@pytest.mark.parametrize("bs", [1, 3, 8, 200])
def test_unusual_block_sizes(bs):
    """Generic path: block sizes below the vector width, odd, and larger than the features."""
    check_case((19,), 50, 45, bs, torch.float16, 0.5 if bs < 50 else "all", "single", seed=bs)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_split_k_weight_gradient(dtype):
    """Few dW tiles and a long batch: the weight gradient is split over K and reduced."""
    check_case((4096,), 64, 96, 32, dtype, 0.5, "all", "none", seed=7)


def test_empty_batch_and_zero_features():
    x = torch.randn(0, 32, device="cuda", requires_grad=True)
    w = torch.randn(48, 32, device="cuda", requires_grad=True)
    b = torch.randn(48, device="cuda", requires_grad=True)
    y = amgp_kernels.block_linear(x, w, b, None, torch.tensor([1], dtype=torch.int32, device="cuda"), 16,
                                  backend="cuda")
    assert y.shape == (0, 48)
    y.sum().backward()
    assert torch.equal(w.grad, torch.zeros_like(w)) and torch.equal(b.grad, torch.zeros_like(b))
    x2 = torch.randn(5, 0, device="cuda")
    y2 = amgp_kernels.block_linear(x2, torch.randn(8, 0, device="cuda"), torch.ones(8, device="cuda"), None, None,
                                   4, "relu", backend="cuda")
    assert torch.equal(y2, torch.ones(5, 8, device="cuda"))


def test_gradients_not_asked_for_are_empty():
    x, w, _, in_b, out_b, gy = make_inputs((8,), 64, 48, 16, torch.float32, 0.5, 0.5)
    y = torch.ops.amgp.block_linear(x, w, None, in_b, out_b, 16, "relu")
    gx, gw, gb = torch.ops.amgp.block_linear_backward(gy, x, w, y, in_b, out_b, 16, "relu", False, False,
                                                      [False, True, False])
    assert gx.numel() == 0 and gb.numel() == 0 and gw.shape == w.shape
    _, _, ref_gw, _ = reference_with_grads(x, w, None, in_b, out_b, 16, "relu", gy, y_actual=y)
    assert_close_to_reference(gw, ref_gw, torch.float32, "grad weight")


def test_runs_on_the_current_stream():
    x, w, b, in_b, out_b, _ = make_inputs((64,), 128, 96, 32, torch.bfloat16, 0.5, 0.5)
    expected = torch.ops.amgp.block_linear(x, w, b, in_b, out_b, 32, "relu")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        got = torch.ops.amgp.block_linear(x, w, b, in_b, out_b, 32, "relu")
    torch.cuda.current_stream().wait_stream(side)
    assert torch.equal(got, expected)


def _opcheck_samples():
    samples = []
    for in_kind, out_kind, act, with_bias, dtype in [("all", "all", "none", True, torch.float32),
                                                     (0.5, 0.5, "relu", True, torch.bfloat16),
                                                     ("single", "all", "relu", False, torch.float16),
                                                     ("none", 0.5, "none", True, torch.float32)]:
        x, w, b, in_b, out_b, _ = make_inputs((3, 5), 40, 24, 8, dtype, in_kind, out_kind, with_bias)
        x.requires_grad_()
        w.requires_grad_()
        if b is not None:
            b.requires_grad_()
        samples.append((x, w, b, in_b, out_b, 8, act))
    return samples


@pytest.mark.parametrize("index", range(4))
def test_opcheck(index):
    torch.library.opcheck(torch.ops.amgp.block_linear.default, _opcheck_samples()[index])


def test_opcheck_backward_op():
    x, w, _, in_b, out_b, gy = make_inputs((6,), 40, 24, 8, torch.float32, 0.5, 0.5)
    y = torch.ops.amgp.block_linear(x, w, None, in_b, out_b, 8, "relu")
    torch.library.opcheck(torch.ops.amgp.block_linear_backward.default,
                          (gy, x, w, y, in_b, out_b, 8, "relu", False, False, [True, True, False]))


def test_bad_input_on_cuda():
    x, w, b, in_b, out_b, _ = make_inputs((4,), 40, 24, 8, torch.float32, 0.5, 0.5)
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
