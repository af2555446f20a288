"""The compiled CPU kernel against the pure-PyTorch reference: forward and all gradients."""
import zlib

import pytest
import torch

import amgp_kernels
from amgp_kernels.blocks import channel_mask, num_blocks
from amgp_kernels.testing import (
    assert_close_to_reference,
    poisoned_outputs,
    random_blocks,
    reference_with_grads,
)

pytestmark = pytest.mark.skipif("cpu" not in amgp_kernels.build_info()["compiled_backends"],
                                reason="C++ CPU extension not built")

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
MASK_KINDS = ["all", "none", "single", 0.5, 0.25]
# (batch shape, in_features, out_features, block_size): tails, batch 1, 3-D x, odd block sizes.
SHAPES = [
    ((8,), 64, 96, 32),
    ((1,), 70, 50, 16),
    ((3, 5), 40, 33, 8),
    ((17,), 100, 130, 24),
    ((4,), 16, 16, 64),  # one short block per side
]


def run_case(batch_shape, in_f, out_f, bs, dtype, in_kind, out_kind, activation, with_bias, x_layout="contiguous",
             packed_in=False, packed_out=False):
    # A seed from the case itself that is the same in every process (hash() of strings is not).
    gen = torch.Generator().manual_seed(zlib.crc32(repr((batch_shape, in_f, out_f, bs, in_kind, out_kind)).encode()))
    in_blocks = random_blocks(num_blocks(in_f, bs), in_kind, gen)
    out_blocks = random_blocks(num_blocks(out_f, bs), out_kind, gen)
    x_width = int(channel_mask(in_blocks, in_f, bs).sum()) if packed_in else in_f
    y_width = int(channel_mask(out_blocks, out_f, bs).sum()) if packed_out else out_f
    if x_layout == "transposed":  # non-contiguous x: a transposed view
        x = torch.randn(x_width, *batch_shape, generator=gen, dtype=dtype).movedim(0, -1)
        assert not x.is_contiguous() or x_width <= 1
    else:
        x = torch.randn(*batch_shape, x_width, generator=gen, dtype=dtype)
    x.requires_grad_()
    weight = torch.randn(out_f, in_f, generator=gen, dtype=dtype).requires_grad_()
    bias = torch.randn(out_f, generator=gen, dtype=dtype).requires_grad_() if with_bias else None
    grad_y = torch.randn(*batch_shape, y_width, generator=gen, dtype=dtype)

    with poisoned_outputs():
        y = amgp_kernels.block_linear(x, weight, bias, in_blocks, out_blocks, bs, activation, packed_in, packed_out,
                                      backend="cpu")
        y.backward(grad_y)
    y_ref, gx_ref, gw_ref, gb_ref = reference_with_grads(x, weight, bias, in_blocks, out_blocks, bs, activation,
                                                          grad_y, y_actual=y, packed_in=packed_in,
                                                          packed_out=packed_out)
    assert y.shape == (*batch_shape, y_width) and y.dtype == dtype
    assert_close_to_reference(y, y_ref, dtype, "y")
    assert_close_to_reference(x.grad, gx_ref, dtype, "grad x")
    assert_close_to_reference(weight.grad, gw_ref, dtype, "grad weight")
    if with_bias:
        assert_close_to_reference(bias.grad, gb_ref, dtype, "grad bias")
    # Inactive outputs and gradient blocks are exact zeros, not just small.
    for got, ref in ((y, y_ref), (x.grad, gx_ref), (weight.grad, gw_ref)):
        assert torch.equal(got.detach()[ref == 0] == 0, torch.ones_like(ref[ref == 0], dtype=torch.bool))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("in_kind,out_kind", [("all", "all"), ("all", 0.5), (0.5, 0.5), ("single", 0.25),
                                              ("none", 0.5), (0.5, "none"), (0.25, "single")])
def test_matches_reference(dtype, shape, in_kind, out_kind):
    batch_shape, in_f, out_f, bs = shape
    run_case(batch_shape, in_f, out_f, bs, dtype, in_kind, out_kind, "relu", True)


@pytest.mark.parametrize("activation", ["none", "relu"])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("x_layout", ["contiguous", "transposed"])
def test_activation_bias_layout(activation, with_bias, x_layout):
    run_case((6, 3), 48, 80, 16, torch.float32, 0.5, 0.5, activation, with_bias, x_layout)


PACKED = [(True, False), (False, True), (True, True)]


@pytest.mark.parametrize("packed_in,packed_out", PACKED, ids=lambda p: "packed" if p else "full")
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("in_kind,out_kind", [("all", 0.5), (0.5, 0.5), ("none", 0.5), (0.5, "none"),
                                              ("single", 0.25)])
def test_packed_matches_reference(packed_in, packed_out, shape, in_kind, out_kind):
    """Packed activations (active channels only, short last blocks at their real width) on either side."""
    batch_shape, in_f, out_f, bs = shape
    for activation, with_bias, dtype in (("relu", True, torch.float32), ("none", False, torch.bfloat16)):
        run_case(batch_shape, in_f, out_f, bs, dtype, in_kind, out_kind, activation, with_bias,
                 packed_in=packed_in, packed_out=packed_out)


@pytest.mark.parametrize("x_layout", ["contiguous", "transposed"])
def test_packed_strided_input(x_layout):
    run_case((5, 4), 64, 48, 16, torch.float32, 0.5, 0.5, "relu", True, x_layout, packed_in=True, packed_out=True)


def test_packed_is_the_full_size_result_without_its_zeros():
    """Packed in and out give exactly the active columns of the full-size result, and gradients too."""
    gen = torch.Generator().manual_seed(5)
    in_blocks, out_blocks = torch.tensor([0, 2, 3], dtype=torch.int32), torch.tensor([1, 3], dtype=torch.int32)
    m_in, m_out = channel_mask(in_blocks, 60, 16), channel_mask(out_blocks, 52, 16)
    x = torch.randn(7, 60, generator=gen).masked_fill(~m_in, 0).requires_grad_()
    w = torch.randn(52, 60, generator=gen, requires_grad=True)
    b = torch.randn(52, generator=gen, requires_grad=True)
    y = amgp_kernels.block_linear(x, w, b, in_blocks, out_blocks, 16, "relu", backend="cpu")
    x_packed = x.detach()[:, m_in].requires_grad_()
    w2, b2 = w.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    y_packed = amgp_kernels.block_linear(x_packed, w2, b2, in_blocks, out_blocks, 16, "relu", True, True,
                                         backend="cpu")
    assert y_packed.shape == (7, int(m_out.sum())) == (7, 20)  # block 3 is 4 channels wide
    assert torch.equal(y_packed, y[:, m_out])
    grad = torch.randn(7, 52, generator=gen)
    y.backward(grad)
    y_packed.backward(grad[:, m_out])
    assert torch.equal(x_packed.grad, x.grad[:, m_in])
    assert torch.equal(w2.grad, w.grad) and torch.equal(b2.grad, b.grad)


def test_packed_width_mismatch_is_a_clear_error():
    in_blocks = torch.tensor([1], dtype=torch.int32)
    w = torch.randn(8, 40)
    with pytest.raises(ValueError, match=r"x is packed .*x.shape\[-1\] \(16\).*\(8"):
        amgp_kernels.block_linear(torch.randn(2, 16), w, None, in_blocks, None, 8, packed_in=True, backend="cpu")
    with pytest.raises(RuntimeError, match=r"x is packed, so x.shape\[-1\] \(16\) must equal .* \(8\)"):
        torch.ops.amgp.block_linear(torch.randn(2, 16), w, None, in_blocks, None, 8, "none", True, False)
    with pytest.raises(TypeError, match="packed_out must be a bool"):
        amgp_kernels.block_linear(torch.randn(2, 40), w, None, None, None, 8, packed_out=1, backend="cpu")


@pytest.mark.parametrize("kind", MASK_KINDS, ids=str)
def test_random_masks_float64(kind):
    run_case((9,), 96, 64, 16, torch.float64, kind, kind, "relu", True)


def test_empty_batch():
    x = torch.randn(0, 32, requires_grad=True)
    w = torch.randn(48, 32, requires_grad=True)
    y = amgp_kernels.block_linear(x, w, None, None, torch.tensor([1], dtype=torch.int32), 16, backend="cpu")
    assert y.shape == (0, 48)
    y.sum().backward()
    assert torch.equal(w.grad, torch.zeros_like(w))


def test_nonfinite_inputs_propagate_only_through_active_blocks():
    x = torch.randn(4, 32)
    w = torch.randn(32, 32)
    x[:, 20] = float("inf")  # channel 20 lies in block 1 (block_size 16): inactive below
    w[3, 5] = float("nan")  # row 3 (out block 0, active), column 5 (in block 0, active)
    in_blocks = torch.tensor([0], dtype=torch.int32)
    y = amgp_kernels.block_linear(x, w, None, in_blocks, None, 16, backend="cpu")
    ref = amgp_kernels.reference.block_linear(x, w, None, in_blocks, None, 16)
    assert torch.isnan(y[:, 3]).all()  # like nn.Linear: NaN weight in an active block propagates
    torch.testing.assert_close(y, ref, equal_nan=True)


@pytest.mark.parametrize("packed_in,packed_out", [(False, False)] + PACKED)
@pytest.mark.parametrize("activation", ["none", "relu"])
@pytest.mark.parametrize("in_kind,out_kind", [("all", "all"), (0.5, 0.5), ("all", "single"), ("none", 0.5)])
def test_gradcheck_float64(activation, in_kind, out_kind, packed_in, packed_out):
    gen = torch.Generator().manual_seed(1)
    in_f, out_f, bs = 20, 28, 8
    in_blocks = random_blocks(num_blocks(in_f, bs), in_kind, gen)
    out_blocks = random_blocks(num_blocks(out_f, bs), out_kind, gen)
    x_width = int(channel_mask(in_blocks, in_f, bs).sum()) if packed_in else in_f
    x = torch.randn(2, 3, x_width, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(out_f, in_f, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(out_f, dtype=torch.float64, generator=gen, requires_grad=True)

    def fn(x, w, b):
        return amgp_kernels.block_linear(x, w, b, in_blocks, out_blocks, bs, activation, packed_in, packed_out,
                                         backend="cpu")

    assert torch.autograd.gradcheck(fn, (x, w, b))


def _opcheck_samples():
    gen = torch.Generator().manual_seed(2)
    samples = []
    # out_features 24 or 20 (a short last block: a packed output's width is data-dependent under fake tensors)
    for in_kind, out_kind, act, with_bias, packed_in, packed_out, out_f in [
            ("all", "all", "none", True, False, False, 24), (0.5, 0.5, "relu", True, False, False, 24),
            ("single", "all", "relu", False, False, False, 24), ("none", 0.5, "none", True, False, False, 24),
            (0.5, 0.5, "relu", True, True, True, 24), (0.5, 0.67, "none", True, True, True, 20),
            ("all", 0.5, "relu", False, False, True, 20), (0.5, "all", "relu", True, True, False, 24)]:
        in_blocks, out_blocks = random_blocks(5, in_kind, gen), random_blocks(3, out_kind, gen)
        x_width = int(channel_mask(in_blocks, 40, 8).sum()) if packed_in else 40
        x = torch.randn(3, 5, x_width, generator=gen, requires_grad=True)
        w = torch.randn(out_f, 40, generator=gen, requires_grad=True)
        b = torch.randn(out_f, generator=gen, requires_grad=True) if with_bias else None
        samples.append((x, w, b, in_blocks, out_blocks, 8, act, packed_in, packed_out))
    return samples


@pytest.mark.parametrize("args", _opcheck_samples())
def test_opcheck(args):
    torch.library.opcheck(torch.ops.amgp.block_linear.default, args)


def test_opcheck_backward_op():
    gen = torch.Generator().manual_seed(3)
    x, w = torch.randn(6, 40, generator=gen), torch.randn(24, 40, generator=gen)
    in_b, out_b = random_blocks(5, 0.5, gen), random_blocks(3, 0.5, gen)
    y = torch.ops.amgp.block_linear(x, w, None, in_b, out_b, 8, "relu")
    torch.library.opcheck(torch.ops.amgp.block_linear_backward.default,
                          (torch.randn_like(y), x, w, y, in_b, out_b, 8, "relu", False, False, [True, True, False]))


def test_forward_hands_its_packed_weight_to_the_backward():
    """_block_linear_forward (what autograd runs when x needs a gradient) returns the packed weight; the
    backward given it computes exactly what it computes when it packs the weight itself."""
    gen = torch.Generator().manual_seed(4)
    in_blocks, out_blocks = random_blocks(5, 0.6, gen), random_blocks(4, 0.5, gen)
    x = torch.randn(6, int(channel_mask(in_blocks, 40, 8).sum()), generator=gen)
    w = torch.randn(28, 40, generator=gen)
    y, packed = torch.ops.amgp._block_linear_forward(x, w, None, in_blocks, out_blocks, 8, "relu", True, True)
    assert torch.equal(y, torch.ops.amgp.block_linear(x, w, None, in_blocks, out_blocks, 8, "relu", True, True))
    rows, cols = channel_mask(out_blocks, 28, 8), channel_mask(in_blocks, 40, 8)
    assert torch.equal(packed, w[rows][:, cols])
    grad = torch.randn_like(y)
    args = (grad, x, w, y, in_blocks, out_blocks, 8, "relu", True, True, [True, True, True])
    for shared, own in zip(torch.ops.amgp.block_linear_backward(*args, packed),
                           torch.ops.amgp.block_linear_backward(*args)):
        assert torch.equal(shared, own)
    torch.library.opcheck(torch.ops.amgp._block_linear_forward.default,
                          (x, w, None, in_blocks, out_blocks, 8, "relu", True, True))
    torch.library.opcheck(torch.ops.amgp.block_linear_backward.default, (*args, packed))
    with pytest.raises(RuntimeError, match="packed_weight must be the contiguous active"):
        torch.ops.amgp.block_linear_backward(*args, packed.t())
    _, none = torch.ops.amgp._block_linear_forward(x[:, :0].new_zeros(6, 40), w, None, None, None, 8, "none",
                                                  False, False)
    assert none.numel() == 0  # every block active: the backward uses the weight itself


def test_autograd_runs_in_cpp():
    """The compiled op's backward is a C++ autograd node (no Python runs in a training step's backward);
    without grad mode no graph is recorded."""
    x = torch.randn(3, 16, requires_grad=True)
    w = torch.randn(8, 16, requires_grad=True)
    y = amgp_kernels.block_linear(x, w, None, None, torch.tensor([1], dtype=torch.int32), 4, backend="cpu")
    assert "BlockLinearFunction" in y.grad_fn.name()
    with torch.no_grad():
        assert amgp_kernels.block_linear(x, w, None, None, None, 4, backend="cpu").grad_fn is None
