"""The one harness every kernel test uses: the backends to run over (a list that marks the ones this
machine cannot run as skipped), inputs built from a case, and one case checked against the reference.

Backends: "cpu" (the compiled C++ kernels), "cuda" (the compiled CUDA kernels, GPU only) and "triton"
(on a GPU, or on CPU tensors in Triton's interpreter, which conftest.py turns on when there is no GPU).
"""
import zlib
from typing import NamedTuple

import pytest
import torch

import amgp_kernels
from amgp_kernels import testing
from amgp_kernels import triton as triton_backend
from amgp_kernels.blocks import channel_mask, num_blocks

GPU = torch.cuda.is_available()
KERNELS = ("cpu", "cuda", "triton")
_WHY_NOT = {
    "cpu": "the C++ CPU extension is not built",
    "cuda": "needs a CUDA GPU and the CUDA build of amgp_kernels._C",
    "triton": f"the triton backend cannot run here: {triton_backend.UNAVAILABLE_REASON}",
}


def skip_unless_available(backend):
    """The skip mark for a backend this process cannot run (none for the reference)."""
    return pytest.mark.skipif(backend not in amgp_kernels.available_backends(), reason=_WHY_NOT.get(backend, ""))


def device_of(backend):
    """The device a backend's tests put their tensors on."""
    return "cuda" if backend == "cuda" or (backend == "triton" and GPU) else "cpu"


def interpreted(backend):
    """Whether the backend runs in Triton's interpreter (its float32 -> bfloat16 conversion truncates)."""
    return backend == "triton" and bool(triton_backend.INTERPRET)


class Case(NamedTuple):
    """One block_linear call: shapes, dtype, masks ("all", "none", "single" or a density: see
    testing.random_blocks), activation, bias, the memory layout of x and which sides are packed."""
    batch_shape: tuple
    in_f: int
    out_f: int
    block_size: int
    dtype: torch.dtype
    in_kind: object
    out_kind: object
    activation: str = "relu"
    with_bias: bool = True
    x_layout: str = "contiguous"  # or "transposed" (features first in memory), "strided_rows" (odd offset)
    packed_in: bool = False
    packed_out: bool = False

    def id(self):
        parts = [str(self.dtype).replace("torch.", ""), "x".join(map(str, self.batch_shape)) or "vector",
                 f"{self.in_f}to{self.out_f}", f"bs{self.block_size}", str(self.in_kind), str(self.out_kind),
                 self.activation]
        parts += [name for name, on in (("bias", self.with_bias), (self.x_layout, self.x_layout != "contiguous"),
                                        ("packed_in", self.packed_in), ("packed_out", self.packed_out)) if on]
        return "-".join(parts)


def over_backends(table):
    """pytest params (backend, cases) from {backend: [case or tuple of cases, ...]}, each with its
    backend's skip mark and an id naming the backend and the case."""
    params = []
    for backend, entries in table.items():
        for entry in entries:
            cases = (entry,) if isinstance(entry, Case) else tuple(entry)
            params.append(pytest.param(backend, cases, marks=skip_unless_available(backend),
                                       id=f"{backend}-" + "+".join(case.id() for case in cases)))
    return params


def make_inputs(case, device):
    """x, weight, bias, in_blocks, out_blocks, grad_y of a case, from a seed that is the case itself (the
    same in every process, unlike hash() of strings). x and grad_y have the packed widths when packed."""
    gen = torch.Generator().manual_seed(zlib.crc32(repr(case).encode()))
    in_blocks = testing.random_blocks(num_blocks(case.in_f, case.block_size), case.in_kind, gen, device)
    out_blocks = testing.random_blocks(num_blocks(case.out_f, case.block_size), case.out_kind, gen, device)
    x_width = int(channel_mask(in_blocks, case.in_f, case.block_size).sum()) if case.packed_in else case.in_f
    y_width = int(channel_mask(out_blocks, case.out_f, case.block_size).sum()) if case.packed_out else case.out_f

    def randn(*shape):  # in the case's dtype, on the device (views are taken there, so that they stay views)
        return torch.randn(*shape, generator=gen, dtype=case.dtype).to(device)

    if case.x_layout == "transposed":  # features first in memory: x.stride(-1) != 1
        x = randn(x_width, *case.batch_shape).movedim(0, -1)
        assert not x.is_contiguous() or x_width <= 1 or not case.batch_shape
    elif case.x_layout == "strided_rows":  # row stride > width and an odd offset: no 16-byte loads possible
        x = randn(*case.batch_shape, x_width + 3)[..., 1:x_width + 1]
    else:
        x = randn(*case.batch_shape, x_width)
    weight = randn(case.out_f, case.in_f)
    bias = randn(case.out_f) if case.with_bias else None
    grad_y = randn(*case.batch_shape, y_width)
    return x, weight, bias, in_blocks, out_blocks, grad_y


def check_case(backend, case):
    """A case built by make_inputs, checked by check_against_reference."""
    x, weight, bias, in_blocks, out_blocks, grad_y = make_inputs(case, device_of(backend))
    check_against_reference(backend, x, weight, bias, in_blocks, out_blocks, case.block_size, case.activation, grad_y,
                            case.packed_in, case.packed_out)


def _assert_zero_where(t, zero, what, why):
    t = t.detach()
    assert bool((t.masked_select(zero.expand_as(t)) == 0).all()), f"{what}: nonzero {why}"


def check_against_reference(backend, x, weight, bias, in_blocks, out_blocks, block_size, activation, grad_y=None,
                            packed_in=False, packed_out=False, reference_zeros=True):
    """block_linear on `backend`, forward and backward with poisoned outputs (unwritten elements show as
    NaN), against the float64 reference: the output and every gradient within testing.error_bound, and
    exact zeros in inactive outputs and gradient blocks. reference_zeros: also exact zeros wherever the
    reference is exactly zero (ReLU-clamped outputs included); the fuzz turns it off, as a fresh random
    case may put a ReLU input within rounding of zero, on the other side of it in the kernel.
    x (packed when packed_in), weight and bias keep their memory layout. grad_y None: a random one.
    Returns the reference output and gradients."""
    dtype = x.dtype
    x, weight = x.detach().requires_grad_(), weight.detach().requires_grad_()
    bias = bias.detach().requires_grad_() if bias is not None else None
    with testing.poisoned_outputs():
        y = amgp_kernels.block_linear(x, weight, bias, in_blocks, out_blocks, block_size, activation, packed_in,
                                      packed_out, backend=backend)
        grad_y = torch.randn_like(y) if grad_y is None else grad_y
        y.backward(grad_y)
    if y.is_cuda:
        torch.cuda.synchronize()
    assert y.shape == grad_y.shape and y.dtype == dtype and y.device == x.device
    expected = testing.reference_with_grads(x, weight, bias, in_blocks, out_blocks, block_size, activation, grad_y,
                                            y_actual=y, packed_in=packed_in, packed_out=packed_out)
    out_f, in_f = weight.shape
    m_in = channel_mask(in_blocks, in_f, block_size, x.device)
    m_out = channel_mask(out_blocks, out_f, block_size, x.device)
    # (result, its reference, name, its inactive elements: None for a packed activation, which has none)
    results = [(y, expected[0], "y", None if packed_out else ~m_out),
               (x.grad, expected[1], "grad x", None if packed_in else ~m_in),
               (weight.grad, expected[2], "grad weight", ~(m_out[:, None] & m_in[None, :]))]
    if bias is not None:
        results.append((bias.grad, expected[3], "grad bias", ~m_out))
    for got, ref, what, inactive in results:
        testing.assert_close_to_reference(got, ref, dtype, what, interpreted=interpreted(backend))
        if inactive is not None:
            _assert_zero_where(got, inactive, what, "in an inactive block")
        if reference_zeros:
            _assert_zero_where(got, ref == 0, what, "where the reference is exactly zero")
    return expected
