"""The two pure-Python halves of amgp_kernels that every kernel test leans on: the reference op (the oracle of
test_block_linear.py) checked against plain dense PyTorch written from the contract in docs/design.md, and the
fake (meta) implementations that torch.compile traces with, whose shapes must be those of the real op."""
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import amgp_kernels
from amgp_kernels import reference

IN_F, OUT_F, BS = 10, 9, 4  # short last blocks on both sides: 2 and 1 channels


def dense_contract(x, weight, bias, in_keep, out_keep, activation):
    """y = act(((x * m_in) @ W.T + b) * m_out) with 0/1 channel masks, on tensors without inf/NaN."""
    m_in = torch.tensor(in_keep, dtype=x.dtype)
    m_out = torch.tensor(out_keep, dtype=x.dtype)
    y = ((x * m_in) @ (weight * m_out[:, None] * m_in[None, :]).T + (0 if bias is None else bias)) * m_out
    return torch.relu(y) if activation == "relu" else y


def channels(blocks, features):
    return [1.0 if c // BS in blocks else 0.0 for c in range(features)]


@pytest.mark.parametrize("activation", ["none", "relu"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_reference_is_the_masked_dense_layer(activation, with_bias):
    gen = torch.Generator().manual_seed(0)
    x, weight = torch.randn(3, IN_F, generator=gen), torch.randn(OUT_F, IN_F, generator=gen)
    bias = torch.randn(OUT_F, generator=gen) if with_bias else None
    in_blocks, out_blocks = torch.tensor([0, 2]), torch.tensor([1, 2])
    y = reference.block_linear(x, weight, bias, in_blocks, out_blocks, BS, activation)
    want = dense_contract(x, weight, bias, channels([0, 2], IN_F), channels([1, 2], OUT_F), activation)
    torch.testing.assert_close(y, want)
    every = reference.block_linear(x, weight, bias, None, None, BS, activation)
    torch.testing.assert_close(every, dense_contract(x, weight, bias, [1.0] * IN_F, [1.0] * OUT_F, activation))


def test_reference_packed_activations_hold_the_active_channels_in_block_order():
    gen = torch.Generator().manual_seed(1)
    x, weight, bias = torch.randn(2, IN_F, generator=gen), torch.randn(OUT_F, IN_F, generator=gen), torch.randn(OUT_F)
    in_blocks, out_blocks = torch.tensor([0, 2]), torch.tensor([0, 2])
    full = reference.block_linear(x, weight, bias, in_blocks, out_blocks, BS)
    in_mask, out_mask = torch.tensor(channels([0, 2], IN_F)) > 0, torch.tensor(channels([0, 2], OUT_F)) > 0
    packed_x = x[:, in_mask]  # 4 + 2 channels
    both = reference.block_linear(packed_x, weight, bias, in_blocks, out_blocks, BS, packed_in=True, packed_out=True)
    assert both.shape == (2, 5)  # 4 + 1 channels
    torch.testing.assert_close(both, full[:, out_mask])
    torch.testing.assert_close(reference.block_linear(packed_x, weight, bias, in_blocks, out_blocks, BS, packed_in=True),
                               full)
    assert reference.block_linear(x, weight, bias, in_blocks, out_blocks, BS).shape == (2, OUT_F)  # not packed


def test_reference_masks_are_made_on_x_s_device():
    """Every block active (no block list to take a device from): the masks still follow x ("meta" here)."""
    y = reference.block_linear(torch.ones(2, 8, device="meta"), torch.ones(4, 8, device="meta"), None, None, None, 4)
    assert (y.device.type, y.shape) == ("meta", (2, 4))


def test_reference_packs_and_unpacks_batches_of_any_rank():
    gen = torch.Generator().manual_seed(3)
    x, weight = torch.randn(2, 3, IN_F, generator=gen), torch.randn(OUT_F, IN_F, generator=gen)
    in_blocks = torch.tensor([0, 2])
    in_mask = torch.tensor(channels([0, 2], IN_F)) > 0
    packed = reference.block_linear(x[..., in_mask], weight, None, in_blocks, None, BS, packed_in=True)
    torch.testing.assert_close(packed, reference.block_linear(x, weight, None, in_blocks, None, BS))


def test_reference_never_reads_inactive_values():
    x, weight = torch.ones(1, IN_F), torch.ones(OUT_F, IN_F)
    x[0, 4:8] = float("nan")  # block 1 of the input, inactive
    weight[:, 4:8] = float("inf")
    weight[4:8, :] = float("nan")  # block 1 of the output, inactive
    y = reference.block_linear(x, weight, None, torch.tensor([0, 2]), torch.tensor([0, 2]), BS)
    assert y.tolist() == [[6.0] * 4 + [0.0] * 4 + [6.0]]


def test_reference_refuses_an_unknown_activation():
    with pytest.raises(ValueError, match=r"^activation must be one of \('none', 'relu'\), got 'gelu'$"):
        reference.block_linear(torch.ones(1, 4), torch.ones(4, 4), None, None, None, 4, "gelu")


def test_reference_gradients_are_the_dense_layers():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, IN_F, generator=gen, requires_grad=True)
    weight = torch.randn(OUT_F, IN_F, generator=gen, requires_grad=True)
    bias = torch.randn(OUT_F, generator=gen, requires_grad=True)
    reference.block_linear(x, weight, bias, torch.tensor([1]), torch.tensor([0, 2]), BS, "relu").sum().backward()
    got = [t.grad.clone() for t in (x, weight, bias)]
    for t in (x, weight, bias):
        t.grad = None
    dense_contract(x, weight, bias, channels([1], IN_F), channels([0, 2], OUT_F), "relu").sum().backward()
    for mine, want in zip(got, (x.grad, weight.grad, bias.grad)):
        torch.testing.assert_close(mine, want)


needs_ops = pytest.mark.skipif(amgp_kernels.LOAD_ERROR is not None, reason="needs the compiled extension")


@needs_ops
@pytest.mark.parametrize("in_blocks, out_blocks, packed", [
    (None, None, False), ([0, 2], [1], False), ([0, 2], [0, 1], True), ([1], None, True)])
def test_fake_shapes_are_the_real_ops(in_blocks, out_blocks, packed):
    """What torch.compile sees (fake tensors) has the shape the op returns: forward, the CPU forward that shares
    its packed weight with the backward, and the backward's three gradients (empty where not wanted)."""
    in_b = None if in_blocks is None else torch.tensor(in_blocks, dtype=torch.int32)  # the op's index type
    out_b = None if out_blocks is None else torch.tensor(out_blocks, dtype=torch.int32)
    in_f, out_f = 12, 8  # whole blocks: packed widths are known from the metadata
    x = torch.randn(2, 3, in_f if not packed or in_b is None else len(in_blocks) * BS)  # a 3-D batch
    weight, bias = torch.randn(out_f, in_f), torch.randn(out_f)
    args = (in_b, out_b, BS, "relu", packed, packed)
    real = torch.ops.amgp.block_linear(x, weight, bias, *args)
    real_shared = torch.ops.amgp._block_linear_forward(x, weight, bias, *args)
    real_grads = torch.ops.amgp.block_linear_backward(real, x, weight, real, *args, [True, False, True])
    real_weight_grad = torch.ops.amgp.block_linear_backward(real, x, weight, real, *args, [False, True, False])
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        fx, fw, fb, fy = (mode.from_tensor(t) for t in (x, weight, bias, real))
        fake = torch.ops.amgp.block_linear(fx, fw, fb, *args)
        fake_shared = torch.ops.amgp._block_linear_forward(fx, fw, fb, *args)
        fake_grads = torch.ops.amgp.block_linear_backward(fy, fx, fw, fy, *args, [True, False, True])
        fake_weight_grad = torch.ops.amgp.block_linear_backward(fy, fx, fw, fy, *args, [False, True, False])
    assert fake.shape == real.shape
    assert [t.shape for t in fake_shared] == [t.shape for t in real_shared]
    assert [t.shape for t in fake_grads] == [t.shape for t in real_grads]
    assert fake_grads[1].shape == (0,) and fake_grads[2].shape == (out_f,)
    assert [t.shape for t in fake_weight_grad] == [t.shape for t in real_weight_grad] == [(0,), (out_f, in_f), (0,)]
