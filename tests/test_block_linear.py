"""Every kernel backend (cpu, cuda, triton) against the pure-PyTorch reference: forward and every gradient,
through the one harness of kernel_harness.py. Each backend has its own case list: the compiled CPU kernels
take every dtype (float64 included) and many shapes; the CUDA cases cross the fast block sizes (16 to 128)
with an odd one and put a short block at the end of every dimension; the Triton cases stay tiny, since
without a GPU they run in Triton's interpreter. Backends this machine cannot run are skipped.
Behaviour that belongs to one backend is tested in test_block_linear_cpu.py, test_cuda_kernels.py and
test_triton.py."""
import itertools

import pytest
import torch

import amgp_kernels
from amgp_kernels import testing
from kernel_harness import (
    KERNELS,
    Case,
    check_against_reference,
    check_case,
    device_of,
    make_inputs,
    over_backends,
    skip_unless_available,
)

F32, F64, F16, BF16 = torch.float32, torch.float64, torch.float16, torch.bfloat16
ALL_BACKENDS = [pytest.param(backend, marks=skip_unless_available(backend)) for backend in KERNELS]
PACKINGS = [(True, False), (False, True), (True, True)]

# ----- the case lists ----------------------------------------------------------------------------

# CPU: (batch shape, in_features, out_features, block_size): tails, batch 1, 3-D x, odd block sizes.
CPU_SHAPES = [((8,), 64, 96, 32), ((1,), 70, 50, 16), ((3, 5), 40, 33, 8), ((17,), 100, 130, 24),
              ((4,), 16, 16, 64)]  # the last: one short block per side
CPU_MASKS = [("all", "all"), ("all", 0.5), (0.5, 0.5), ("single", 0.25), ("none", 0.5), (0.5, "none"),
             (0.25, "single")]
# CUDA: dense, first layer (out only), hidden layer (in+out), extremes.
CUDA_MASKS = [("all", "all"), ("all", 0.5), (0.5, 0.5), ("single", "single"), ("none", 0.5), (0.5, "none"),
              (0.25, "all")]


def cuda_tails(bs, dtype, in_kind, out_kind, *rest):
    """Features that are not multiples of the block size: every dimension ends in a short block."""
    return Case((37,), 3 * bs + 5, 2 * bs + 3, bs, dtype, in_kind, out_kind, *rest)


# Triton: each a few tiles at most.
TRITON = {
    "tails_half_relu_bias": ((8,), 40, 50, 16, 0.5, 0.5, "relu", True),
    "odd_block24_3d_out_only": ((2, 3), 70, 50, 24, "all", 0.5, "none", False),
    "small_blocks_span_tiles": ((5,), 70, 45, 8, 0.5, 0.5, "relu", True),
    "block_wider_than_tile": ((6,), 100, 70, 64, "single", "all", "relu", True),
    "all_active_row_tail": ((33,), 40, 36, 32, "all", "all", "relu", True),
    "no_active_output": ((4,), 40, 30, 16, 0.5, "none", "relu", True),
    "no_active_input": ((4,), 40, 30, 16, "none", 0.5, "relu", True),
    "single_blocks": ((3,), 40, 30, 16, "single", "single", "none", True),
    "vector_input": ((), 40, 30, 16, 0.5, 0.5, "relu", True),
}


def triton_case(name, dtype=F32, packed_in=False, packed_out=False):
    batch, in_f, out_f, bs, in_kind, out_kind, activation, bias = TRITON[name]
    return Case(batch, in_f, out_f, bs, dtype, in_kind, out_kind, activation, bias, "contiguous", packed_in, packed_out)


MATCHES = {
    "cpu": [Case(batch, in_f, out_f, bs, dtype, in_kind, out_kind)
            for (in_kind, out_kind), (batch, in_f, out_f, bs), dtype in itertools.product(
                CPU_MASKS, CPU_SHAPES, [F32, F64, BF16, F16])]
    + [Case((9,), 96, 64, 16, F64, kind, kind) for kind in ["all", "none", "single", 0.5, 0.25]],
    "cuda": [cuda_tails(bs, dtype, in_kind, out_kind) for (in_kind, out_kind), bs, dtype in itertools.product(
        CUDA_MASKS, [16, 32, 64, 128, 24], [F32, F16, BF16])],
    "triton": [triton_case(name) for name in TRITON]
    + [triton_case(name, dtype) for dtype, name in [(F16, "tails_half_relu_bias"), (F16, "odd_block24_3d_out_only"),
                                                    (BF16, "tails_half_relu_bias"), (BF16, "block_wider_than_tile")]],
}

PACKED = {
    # two cases each: ReLU with bias in float32, no activation and no bias in bfloat16
    "cpu": [(Case(batch, in_f, out_f, bs, F32, in_kind, out_kind, "relu", True, "contiguous", *packing),
             Case(batch, in_f, out_f, bs, BF16, in_kind, out_kind, "none", False, "contiguous", *packing))
            for (in_kind, out_kind), (batch, in_f, out_f, bs), packing in itertools.product(
                [("all", 0.5), (0.5, 0.5), ("none", 0.5), (0.5, "none"), ("single", 0.25)], CPU_SHAPES, PACKINGS)]
    + [Case((5, 4), 64, 48, 16, F32, 0.5, 0.5, "relu", True, layout, True, True)
       for layout in ["contiguous", "transposed"]],
    "cuda": [(cuda_tails(bs, dtype, in_kind, out_kind, "relu", True, "contiguous", *packing),
              cuda_tails(bs, dtype, in_kind, out_kind, "none", False, "contiguous", *packing))
             for packing, (in_kind, out_kind), bs, dtype in itertools.product(
                 PACKINGS, [("all", 0.5), (0.5, 0.5), ("none", 0.5), (0.5, "none"), (0.5, "all")], [16, 24, 32],
                 [F32, F16, BF16])],
    "triton": [triton_case(name, F32, *packing) for packing, name in itertools.product(
        PACKINGS, ["tails_half_relu_bias", "odd_block24_3d_out_only", "no_active_output", "no_active_input",
                   "vector_input"])],
}

ACTIVATION_BIAS_LAYOUT = {
    "cpu": [Case((6, 3), 48, 80, 16, F32, 0.5, 0.5, activation, bias, layout)
            for layout, bias, activation in itertools.product(["contiguous", "transposed"], [True, False],
                                                              ["none", "relu"])],
    "cuda": [Case((33,), 80, 72, 16, dtype, 0.5, "all", activation, bias)
             for bias, activation, dtype in itertools.product([True, False], ["none", "relu"], [F32, F16, BF16])]
    # transposed: needs a copy; strided_rows: no 16-byte loads possible. Leading dims: one row, and 2-D.
    + [Case(batch, 96, 80, 16, dtype, 0.5, 0.5, "relu", True, layout)
       for batch, layout, dtype in itertools.product([(1,), (4, 6)], ["transposed", "strided_rows"],
                                                     [F32, F16, BF16])],
}


@pytest.mark.parametrize("backend,cases", over_backends(MATCHES))
def test_matches_reference(backend, cases):
    for case in cases:
        check_case(backend, case)


@pytest.mark.parametrize("backend,cases", over_backends(PACKED))
def test_packed_activations(backend, cases):
    """x and/or y holding only the active channels (short last blocks at their real width)."""
    for case in cases:
        check_case(backend, case)


@pytest.mark.parametrize("backend,cases", over_backends(ACTIVATION_BIAS_LAYOUT))
def test_activation_bias_and_layout(backend, cases):
    for case in cases:
        check_case(backend, case)


# ----- cases written out ---------------------------------------------------------------------------


def _blocks(*blocks, device):
    return torch.tensor(blocks, dtype=torch.int32, device=device)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_non_contiguous_inputs(backend):
    """Column-major x and weight and a strided bias; a 3-D x whose flattening must copy."""
    device = device_of(backend)
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(40, 9, generator=gen).to(device).t()  # (9, 40) column-major
    assert not x.is_contiguous()
    weight = torch.randn(40, 30, generator=gen).to(device).t()  # (30, 40) column-major
    bias = torch.randn(60, generator=gen).to(device)[::2]
    check_against_reference(backend, x, weight, bias, _blocks(0, 2, device=device), _blocks(1, device=device), 16,
                            "relu")
    x = torch.randn(3, 40, 4, generator=gen).to(device).transpose(1, 2)  # (3, 4, 40)
    check_against_reference(backend, x, torch.randn(30, 40, generator=gen).to(device), None,
                            _blocks(0, 2, device=device), None, 16, "none")


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_empty_batch_and_zero_features(backend):
    device = device_of(backend)
    for with_bias in (False, True):
        x = torch.randn(0, 32, device=device, requires_grad=True)
        w = torch.randn(48, 32, device=device, requires_grad=True)
        b = torch.randn(48, device=device, requires_grad=True) if with_bias else None
        y = amgp_kernels.block_linear(x, w, b, None, _blocks(1, device=device), 16, backend=backend)
        assert y.shape == (0, 48)
        y.sum().backward()
        assert torch.equal(w.grad, torch.zeros_like(w))
        assert b is None or torch.equal(b.grad, torch.zeros_like(b))
    check_case(backend, Case((0,), 40, 30, 16, F32, 0.5, 0.5))
    y = amgp_kernels.block_linear(torch.randn(5, 0, device=device), torch.randn(8, 0, device=device),
                                  torch.ones(8, device=device), None, None, 4, "relu", backend=backend)
    assert torch.equal(y, torch.ones(5, 8, device=device))  # no input channels: the bias alone


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_non_finite_inactive_inputs_are_never_read(backend):
    """inf/NaN in inactive blocks of x and weight must not reach the output (kernels never read them)."""
    device = device_of(backend)
    in_blocks, out_blocks = _blocks(0, 2, device=device), _blocks(1, device=device)
    x = torch.randn(4, 40, device=device)
    weight = torch.randn(30, 40, device=device)
    x[:, 16:32] = float("nan")
    weight[:16] = float("inf")
    weight[:, 16:32] = float("nan")
    y = amgp_kernels.block_linear(x, weight, None, in_blocks, out_blocks, 16, backend=backend)
    ref = testing.reference_with_grads(x, weight, None, in_blocks, out_blocks, 16, "none", None)[0]
    assert bool(torch.isfinite(y).all())
    testing.assert_close_to_reference(y, ref, torch.float32)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_non_finite_active_inputs_propagate(backend):
    """Like nn.Linear: a NaN weight in an active block reaches its output; an inf in an inactive channel
    does not."""
    device = device_of(backend)
    x = torch.randn(4, 32, device=device)
    w = torch.randn(32, 32, device=device)
    x[:, 20] = float("inf")  # channel 20 lies in block 1 (block_size 16): inactive below
    w[3, 5] = float("nan")  # row 3 (out block 0, active), column 5 (in block 0, active)
    in_blocks = _blocks(0, device=device)
    y = amgp_kernels.block_linear(x, w, None, in_blocks, None, 16, backend=backend)
    ref = amgp_kernels.reference.block_linear(x, w, None, in_blocks, None, 16)
    assert torch.isnan(y[:, 3]).all()
    torch.testing.assert_close(y, ref, equal_nan=True)


# ----- operator registration ---------------------------------------------------------------------


def _ops(backend):
    """The forward and backward operators a backend registers."""
    if backend == "triton":
        return torch.ops.amgp.block_linear_triton, torch.ops.amgp.block_linear_triton_backward
    return torch.ops.amgp.block_linear, torch.ops.amgp.block_linear_backward  # one per device, by dispatch


# out_features 24 or 20 (a short last block: a packed output's width is data-dependent under fake tensors)
OPCHECK = {
    "cpu": [Case((3, 5), 40, out_f, 8, F32, in_kind, out_kind, act, bias, "contiguous", packed_in, packed_out)
            for in_kind, out_kind, act, bias, packed_in, packed_out, out_f in [
                ("all", "all", "none", True, False, False, 24), (0.5, 0.5, "relu", True, False, False, 24),
                ("single", "all", "relu", False, False, False, 24), ("none", 0.5, "none", True, False, False, 24),
                (0.5, 0.5, "relu", True, True, True, 24), (0.5, 0.67, "none", True, True, True, 20),
                ("all", 0.5, "relu", False, False, True, 20), (0.5, "all", "relu", True, True, False, 24)]],
    "cuda": [Case((3, 5), 40, 24, 8, dtype, in_kind, out_kind, act, bias)
             for in_kind, out_kind, act, bias, dtype in [
                 ("all", "all", "none", True, F32), (0.5, 0.5, "relu", True, BF16),
                 ("single", "all", "relu", False, F16), ("none", 0.5, "none", True, F32)]],
    "triton": [Case((6,), 40, 30, 16, F32, 0.5, 0.5, "relu", True)],
}


@pytest.mark.parametrize("backend,cases", over_backends(OPCHECK))
def test_opcheck(backend, cases):
    (case,) = cases
    x, w, b, in_blocks, out_blocks, _ = make_inputs(case, device_of(backend))
    args = (x.requires_grad_(), w.requires_grad_(), b.requires_grad_() if b is not None else None, in_blocks,
            out_blocks, case.block_size, case.activation, case.packed_in, case.packed_out)
    torch.library.opcheck(_ops(backend)[0].default, args)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_opcheck_backward_op(backend):
    forward, backward = _ops(backend)
    x, w, _, in_blocks, out_blocks, _ = make_inputs(Case((6,), 40, 24, 8, F32, 0.5, 0.5), device_of(backend))
    y = forward(x, w, None, in_blocks, out_blocks, 8, "relu")
    for wanted in ([True, True, False], [True, True, True]):
        torch.library.opcheck(backward.default,
                              (torch.randn_like(y), x, w, y, in_blocks, out_blocks, 8, "relu", False, False, wanted))
