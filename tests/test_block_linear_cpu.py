"""Behaviour of the compiled CPU kernels beyond matching the reference (test_block_linear.py checks that):
packed and full-size results agree exactly, float64 gradcheck, the forward handing its packed weight to
the backward, autograd in C++."""
import pytest
import torch

import amgp_kernels
from amgp_kernels.blocks import channel_mask, num_blocks
from amgp_kernels.testing import random_blocks

pytestmark = pytest.mark.skipif("cpu" not in amgp_kernels.build_info()["compiled_backends"],
                                reason="C++ CPU extension not built")

PACKED = [(True, False), (False, True), (True, True)]


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
