"""Testing utilities shared by every backend's tests: random masks and inputs, poisoned outputs, the
float64 reference with per-element error bounds, and the contract written out independently of it."""
import contextlib

import torch

from . import _outputs, reference
from .blocks import channel_mask
from ._extension import _C

# Unit roundoff (half an ulp at 1) of each dtype.
UNIT_ROUNDOFF = {torch.float64: 2.0**-53, torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


def error_bound(expected, dtype, truncating=False):
    """Largest |kernel - exact| per element that a correct kernel of `dtype` can show for `expected` (a
    tensor from reference_with_grads), whose elements each sum `terms` products (fp32 accumulation for
    float16/bfloat16, `dtype` itself otherwise):

    - rounding to `dtype`, at most twice: the GEMM result (the value before the bias and activation) and
      the value after the bias/ReLU epilogue, each by at most u(dtype) of itself (2u when the conversion
      truncates, as Triton's interpreter does for bfloat16);
    - accumulation: terms x 2u(accumulator) x the sum of |products| and |bias|. The classic bound is
      (terms - 1) u; 2u also covers accumulators that truncate (tensor cores) and the float64
      reference's own rounding.

    The inputs are exact in `dtype` (the reference reads the same values), so they add no error.
    For bfloat16 the rounding term dominates: 2^-8 relative, so an output 1.5% off fails.
    """
    rounded, magnitude, terms = expected.error_terms
    accumulator = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    per_rounding = UNIT_ROUNDOFF[dtype] * (2 if truncating else 1)
    return per_rounding * rounded + terms * 2 * UNIT_ROUNDOFF[accumulator] * magnitude


def random_blocks(n_blocks, kind, generator=None, device="cpu"):
    """Sorted int32 block indices. kind: "all" (None), "none" (empty), "single", or a density in (0, 1)."""
    if kind == "all":
        return None
    if kind == "none":
        return torch.empty(0, dtype=torch.int32, device=device)
    count = 1 if kind == "single" else max(1, round(float(kind) * n_blocks))
    chosen = torch.randperm(n_blocks, generator=generator)[:count]
    return chosen.sort().values.to(torch.int32).to(device)


def pack(t, blocks, block_size):
    """The packed layout of a full-size activation t (..., features): its active channels only, in order."""
    return t[..., channel_mask(blocks, t.shape[-1], block_size, t.device)].contiguous()


def _set_poison(on):
    if _C is not None:
        _C.set_poison_outputs(on)
    _outputs.poison = on


@contextlib.contextmanager
def poisoned_outputs():
    """Every backend (compiled and Triton) fills each new output and workspace with NaN before writing
    it, so unwritten elements show. Nests: the state before is restored on exit."""
    before = _outputs.poison  # the compiled flag is only ever set together with it
    _set_poison(True)
    try:
        yield
    finally:
        _set_poison(before)


def assert_close_to_reference(actual, expected, dtype, what="output", *, interpreted=False):
    """`actual` (a kernel's result in `dtype`) is within error_bound of `expected`, a tensor returned by
    reference_with_grads. interpreted: `actual` comes from Triton's interpreter, whose float32 -> bfloat16
    conversion truncates (on a GPU it rounds to nearest)."""
    if getattr(expected, "error_terms", None) is None:
        raise TypeError("expected must be a tensor returned by testing.reference_with_grads (it carries what its "
                        "error bound needs); compare other tensors with torch.testing.assert_close")
    bound = error_bound(expected, dtype, truncating=interpreted and dtype == torch.bfloat16).cpu()
    assert actual.shape == expected.shape, f"{what} ({dtype}): shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
    error = (actual - expected).abs()
    same_nan = actual.isnan() & expected.isnan()
    same_inf = (actual == expected) & expected.isinf()
    bad = ~((error <= bound) | same_nan | same_inf)
    if bool(bad.any()):
        worst = (error - bound).masked_fill(~bad, float("-inf")).argmax()
        index = tuple(int(i) for i in torch.unravel_index(worst, expected.shape)) if expected.dim() else ()
        raise AssertionError(
            f"{what} ({dtype}): {int(bad.sum())} of {expected.numel()} elements outside the error bound; worst at "
            f"{index}: got {actual.flatten()[worst].item()!r}, expected {expected.flatten()[worst].item()!r}, "
            f"error {error.flatten()[worst].item():.3g} > bound {bound.flatten()[worst].item():.3g}")


def _reference_pass(x, weight, bias, in_blocks, out_blocks, block_size, activation, grad_y, y_actual, packed):
    """The reference before its activation, in float64, and (with grad_y) the gradients of x, weight
    and bias by autograd, and grad_y through the activation's gate. packed: (packed_in, packed_out)."""
    x64 = x.detach().double().requires_grad_()
    w64 = weight.detach().double().requires_grad_()
    b64 = bias.detach().double().requires_grad_() if bias is not None else None
    pre = reference.block_linear(x64, w64, b64, in_blocks, out_blocks, block_size, "none", *packed)
    if grad_y is None:
        return pre.detach(), None, None, None, None
    grad = grad_y.double()
    if activation == "relu":
        grad = grad * ((y_actual.detach() > 0) if y_actual is not None else (pre.detach() > 0))
    pre.backward(grad)
    return pre.detach(), x64.grad, w64.grad, (b64.grad if b64 is not None else None), grad


def reference_with_grads(x, weight, bias, in_blocks, out_blocks, block_size, activation, grad_y, y_actual=None,
                         packed_in=False, packed_out=False):
    """Reference output and gradients, computed in float64 from the given (possibly low-precision) inputs;
    each carries `error_terms`, what error_bound (and so assert_close_to_reference) needs.
    grad_y None: the output only (the gradients are None).

    With `y_actual` (the kernel's output) the ReLU gate of the backward is taken from it: in low precision an
    output within rounding of zero may fall on either side, and the gate must match the output the kernel saved.
    packed_in / packed_out: the layouts of x (and its gradient) and of y / grad_y, as in block_linear.
    """
    packed = (packed_in, packed_out)
    pre, grad_x, grad_w, grad_b, grad = _reference_pass(x, weight, bias, in_blocks, out_blocks, block_size,
                                                        activation, grad_y, y_actual, packed)
    y = torch.relu(pre) if activation == "relu" else pre
    gemm = _reference_pass(x, weight, None, in_blocks, out_blocks, block_size, "none", None, None, packed)[0]
    # The same sums over absolute values: the magnitude of the terms behind every element.
    absolute = lambda t: None if t is None else t.detach().abs()  # noqa: E731
    magnitudes = _reference_pass(absolute(x), absolute(weight), absolute(bias), in_blocks, out_blocks, block_size,
                                 "none", absolute(grad), None, packed)
    out_f, in_f = weight.shape
    rows = x.shape[:-1].numel()
    outputs = ((y, gemm, in_f + 1), (grad_x, grad_x, out_f), (grad_w, grad_w, rows), (grad_b, grad_b, rows))
    for (value, gemm_part, terms), magnitude in zip(outputs, magnitudes):
        if value is not None:  # what error_bound needs
            value.error_terms = (value.abs() + gemm_part.abs(), magnitude, terms)
    return y, grad_x, grad_w, grad_b


def contract_with_grads(x, weight, bias, in_blocks, out_blocks, block_size, activation, grad_y, packed_in=False,
                        packed_out=False):
    """The op contract of docs/design.md written out in float64 dense math, with explicit channel masks and the
    gradient formulas by hand (dx = (dy' m_out) W m_in, dW = (m_out m_in^T)(dy'^T x), db = m_out sum dy'):
    an oracle independent of amgp_kernels.reference, to test that with. Finite inputs only. Packed
    activations hold the active channels only (x and grad x with packed_in, y and grad_y with packed_out)."""
    out_f, in_f = weight.shape

    def channels(blocks, features):
        mask = torch.zeros(features, dtype=torch.float64)
        for block in range(-(-features // block_size)) if blocks is None else blocks.tolist():
            mask[block * block_size:(block + 1) * block_size] = 1
        return mask.to(x.device)

    def full(t, mask):  # a packed activation in the full layout
        columns = t.new_zeros(t.shape[0], mask.numel())
        columns[:, mask.bool()] = t
        return columns

    m_in, m_out = channels(in_blocks, in_f), channels(out_blocks, out_f)
    rows = x.shape[:-1].numel()
    x2 = x.detach().double().reshape(rows, x.shape[-1])
    x2 = full(x2, m_in) if packed_in else x2
    w = weight.detach().double()
    pre = (x2 * m_in) @ (w * m_out[:, None] * m_in[None, :]).T
    if bias is not None:
        pre = pre + bias.detach().double()
    pre = pre * m_out
    y = pre.clamp_min(0) if activation == "relu" else pre
    dy = grad_y.detach().double().reshape(rows, grad_y.shape[-1])
    dy = (full(dy, m_out) if packed_out else dy) * m_out
    if activation == "relu":
        dy = dy * (pre > 0)
    grad_x = (dy @ w) * m_in
    grad_w = (m_out[:, None] * m_in[None, :]) * (dy.T @ x2)
    grad_b = m_out * dy.sum(0) if bias is not None else None
    y = y[:, m_out.bool()] if packed_out else y
    grad_x = grad_x[:, m_in.bool()] if packed_in else grad_x
    return y.reshape(*x.shape[:-1], y.shape[-1]), grad_x.reshape(x.shape), grad_w, grad_b


def kept_weight_grad_writes():
    """How the C++ CPU kernel has written pruned layers' full-size weight gradients in this process:
    {"whole": n, "active_blocks": n} (see csrc/cpu/kept_weight_grads.h); None without the extension."""
    if _C is None:
        return None
    whole, active = _C.kept_weight_grad_writes()
    return {"whole": whole, "active_blocks": active}
