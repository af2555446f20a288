"""Weight gradients kept between steps (CPU kernel, docs/design.md "Weight gradients kept between steps"): a pruned
layer's full-size weight gradient reuses one buffer whose inactive blocks are written once per mask. What a user
depends on is that this is invisible: every gradient equals the reference backend's, whatever zero_grad mode,
accumulation, held references, in-place writes, mask changes or repeated layer calls happen around it."""
import pytest
import torch

import amgp_kernels
from amgp import SparseLinear
from amgp_kernels.testing import kept_weight_grad_writes

pytestmark = pytest.mark.skipif("cpu" not in amgp_kernels.available_backends(), reason="needs the C++ CPU kernels")

MASKS = {"out": [True, False, True, False], "in": [False, True, True]}  # 4 output blocks, 3 input blocks of 8


def _pair(out_mask=MASKS["out"], in_mask=MASKS["in"], dtype=torch.float64):
    """The same layer twice: on the C++ CPU kernel, and on the reference backend (fresh tensors every call)."""
    torch.manual_seed(0)
    ours = SparseLinear(24, 32, block_size=8, backend="cpu", dtype=dtype)
    reference = SparseLinear(24, 32, block_size=8, backend="reference", dtype=dtype)
    reference.load_state_dict(ours.state_dict())
    for layer in (ours, reference):
        _mask(layer, out_mask, in_mask)
    return ours, reference


def _mask(layer, out_mask, in_mask):
    layer.set_out_mask(torch.tensor(out_mask))
    layer.set_in_mask(torch.tensor(in_mask))


def _backward(layers, x, set_to_none=True, zero=True):
    for layer in layers:
        if zero:
            layer.zero_grad(set_to_none=set_to_none)
        layer(x).square().sum().backward()


def _assert_same_grads(ours, reference):
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad, rtol=1e-12, atol=1e-12)
    inactive = ~(ours.out_channel_mask[:, None] & ours.in_channel_mask[None, :])
    assert torch.equal(ours.weight.grad[inactive], torch.zeros_like(ours.weight.grad[inactive]))


def test_every_step_of_a_set_to_none_loop_equals_the_reference_and_reuses_one_buffer():
    ours, reference = _pair()
    addresses = set()
    for step in range(5):
        _backward((ours, reference), torch.randn(6, 24, dtype=torch.float64) * (step + 1))
        _assert_same_grads(ours, reference)
        addresses.add(ours.weight.grad.data_ptr())
    assert len(addresses) == 1, "the kept buffer should be reused while nothing else holds it"


def _writes_during(run):
    before = kept_weight_grad_writes()
    run()
    after = kept_weight_grad_writes()
    return {kind: after[kind] - before[kind] for kind in after}


def test_inactive_blocks_are_written_once_per_mask_with_set_to_none():
    ours, _ = _pair()
    x = torch.randn(6, 24, dtype=torch.float64)
    assert _writes_during(lambda: [_backward((ours,), x) for _ in range(4)]) == {"whole": 1, "active_blocks": 3}
    _mask(ours, [False, True, True, True], MASKS["in"])  # a new mask: written whole once more
    assert _writes_during(lambda: [_backward((ours,), x) for _ in range(3)]) == {"whole": 1, "active_blocks": 2}


def test_a_gradient_the_user_holds_is_never_overwritten():
    ours, reference = _pair()
    _backward((ours, reference), torch.randn(6, 24, dtype=torch.float64))
    held, expected = ours.weight.grad, ours.weight.grad.clone()
    for _ in range(3):
        _backward((ours, reference), torch.randn(6, 24, dtype=torch.float64))
        _assert_same_grads(ours, reference)
    assert torch.equal(held, expected)
    assert held.data_ptr() != ours.weight.grad.data_ptr()


@pytest.mark.parametrize("write", ["add_", "fill_", "copy_"])
def test_in_place_writes_into_a_gradient_do_not_leak_into_the_next_one(write):
    ours, reference = _pair()
    _backward((ours, reference), torch.randn(6, 24, dtype=torch.float64))
    grad = ours.weight.grad
    {"add_": lambda: grad.add_(1.0), "fill_": lambda: grad.fill_(3.0),
     "copy_": lambda: grad.copy_(torch.ones_like(grad))}[write]()
    del grad
    _backward((ours, reference), torch.randn(6, 24, dtype=torch.float64))
    _assert_same_grads(ours, reference)


def test_accumulation_over_micro_batches_and_zero_grad_without_set_to_none():
    ours, reference = _pair()
    for set_to_none in (True, False, False, True):
        for layer in (ours, reference):
            layer.zero_grad(set_to_none=set_to_none)
        for micro in range(3):
            _backward((ours, reference), torch.randn(4, 24, dtype=torch.float64) + micro, zero=False)
        _assert_same_grads(ours, reference)


def test_blocks_that_turn_inactive_come_back_as_exact_zeros():
    ours, reference = _pair()
    _backward((ours, reference), torch.randn(6, 24, dtype=torch.float64))
    for out_mask, in_mask in (([False, True, True, False], [True, True, False]),
                              ([True, True, True, True], [True, True, True]),  # dense again
                              (MASKS["out"], MASKS["in"])):
        for layer in (ours, reference):
            _mask(layer, out_mask, in_mask)
        _backward((ours, reference), torch.randn(6, 24, dtype=torch.float64))
        _assert_same_grads(ours, reference)


def test_a_layer_called_twice_in_one_graph_gets_the_sum_of_both_gradients():
    torch.manual_seed(1)
    square_ours = SparseLinear(24, 24, block_size=8, backend="cpu", dtype=torch.float64)
    square_reference = SparseLinear(24, 24, block_size=8, backend="reference", dtype=torch.float64)
    square_reference.load_state_dict(square_ours.state_dict())
    for layer in (square_ours, square_reference):
        _mask(layer, [True, False, True], [False, True, True])
    x = torch.randn(5, 24, dtype=torch.float64)
    for _ in range(2):
        for layer in (square_ours, square_reference):
            layer.zero_grad(set_to_none=True)
            layer(torch.relu(layer(x))).sum().backward()
        _assert_same_grads(square_ours, square_reference)


def test_autograd_grad_results_stay_independent():
    ours, reference = _pair()
    x = torch.randn(6, 24, dtype=torch.float64)
    first = torch.autograd.grad(ours(x).sum(), ours.weight)[0]
    kept = first.clone()
    second = torch.autograd.grad(ours(2 * x).sum(), ours.weight)[0]
    expected = torch.autograd.grad(reference(2 * x).sum(), reference.weight)[0]
    assert torch.equal(first, kept)
    torch.testing.assert_close(second, expected, rtol=1e-12, atol=1e-12)


def test_float32_and_bfloat16_gradients_follow_the_same_rules():
    for dtype in (torch.float32, torch.bfloat16):
        ours, reference = _pair(dtype=dtype)
        for step in range(3):
            x = torch.randn(6, 24, dtype=dtype)
            _backward((ours, reference), x)
            inactive = ~(ours.out_channel_mask[:, None] & ours.in_channel_mask[None, :])
            assert not ours.weight.grad[inactive].any()
            tolerance = 1e-4 if dtype == torch.float32 else 5e-2
            torch.testing.assert_close(ours.weight.grad.float(), reference.weight.grad.float(),
                                       rtol=tolerance, atol=tolerance * ours.weight.grad.abs().max().item())
