"""amgp_kernels.testing.error_bound, the tolerance every backend's tests use: a correct kernel is inside
it at every K, and an output a little off is outside it in the half types (bfloat16: 1.5%, float16:
0.2%), for the output and each gradient."""
import pytest
import torch

import amgp_kernels
from amgp_kernels.testing import assert_close_to_reference, random_blocks, reference_with_grads

BACKENDS = [name for name in ("cpu", "reference") if name in amgp_kernels.available_backends()]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype, off", [(torch.bfloat16, 1.015), (torch.float16, 1.002)], ids=str)
@pytest.mark.parametrize("k", [16, 256, 1024])
def test_a_correct_kernel_passes_and_a_slightly_scaled_result_fails(backend, dtype, off, k):
    gen = torch.Generator().manual_seed(k)
    in_blocks, out_blocks = random_blocks(k // 16, 0.5, gen), random_blocks(6, 0.5, gen)
    x = torch.randn(64, k, generator=gen).to(dtype).requires_grad_()
    weight = (torch.randn(96, k, generator=gen) / k ** 0.5).to(dtype).requires_grad_()
    bias = torch.randn(96, generator=gen).to(dtype).requires_grad_()
    grad_y = torch.randn(64, 96, generator=gen).to(dtype)
    y = amgp_kernels.block_linear(x, weight, bias, in_blocks, out_blocks, 16, "relu", backend=backend)
    y.backward(grad_y)
    expected = reference_with_grads(x, weight, bias, in_blocks, out_blocks, 16, "relu", grad_y, y_actual=y)
    for got, want, what in zip((y, x.grad, weight.grad, bias.grad), expected, ("y", "grad x", "grad weight",
                                                                              "grad bias")):
        assert_close_to_reference(got, want, dtype, what)
        with pytest.raises(AssertionError, match="outside the error bound"):
            assert_close_to_reference(got.detach() * off, want, dtype, what)


def test_the_bound_grows_with_k_and_the_data_scale():
    def bound(k, scale):
        gen = torch.Generator().manual_seed(0)
        x = scale * torch.randn(8, k, generator=gen)
        weight = torch.randn(4, k, generator=gen)
        y = reference_with_grads(x, weight, None, None, None, 4, "none", None)[0]
        return amgp_kernels.testing.error_bound(y, torch.float32).mean()

    assert bound(64, 1.0) < bound(1024, 1.0)  # more terms summed: more rounding
    torch.testing.assert_close(bound(64, 8.0), 8 * bound(64, 1.0))  # proportional to the data


def test_only_reference_results_carry_a_bound():
    with pytest.raises(TypeError, match="reference_with_grads"):
        assert_close_to_reference(torch.ones(3), torch.ones(3), torch.float32)
