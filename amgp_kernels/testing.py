"""Testing utilities shared by every backend's tests: random masks and inputs, poisoned outputs,
per-dtype tolerances, and a comparison against amgp_kernels.reference."""
import contextlib

import torch

from . import _outputs, reference
from ._extension import _C

# (atol, rtol) per dtype for a kernel vs the fp64-accumulated reference, K up to a few thousand.
TOLERANCES = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-4, 1e-4),
    torch.float16: (2e-2, 1e-2),
    torch.bfloat16: (1e-1, 2e-2),
}


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
    return t[..., reference.channel_mask(blocks, t.shape[-1], block_size, t.device)].contiguous()


@contextlib.contextmanager
def poisoned_outputs():
    """Every backend (compiled and Triton) fills each new output and workspace with NaN before writing
    it, so unwritten elements show."""
    if _C is not None:
        _C.set_poison_outputs(True)
    _outputs.poison = True
    try:
        yield
    finally:
        _outputs.poison = False
        if _C is not None:
            _C.set_poison_outputs(False)


def assert_close_to_reference(actual, expected, dtype, what="output"):
    atol, rtol = TOLERANCES[dtype]
    torch.testing.assert_close(actual.double(), expected.double(), atol=atol, rtol=rtol, equal_nan=True,
                               msg=lambda m: f"{what} ({dtype}): {m}")


def reference_with_grads(x, weight, bias, in_blocks, out_blocks, block_size, activation, grad_y, y_actual=None,
                         packed_in=False, packed_out=False):
    """Reference output and gradients, computed in float64 from the given (possibly low-precision) inputs.

    With `y_actual` (the kernel's output) the ReLU gate of the backward is taken from it: in low precision an
    output within rounding of zero may fall on either side, and the gate must match the output the kernel saved.
    packed_in / packed_out: the layouts of x (and its gradient) and of y / grad_y, as in block_linear.
    """
    x64 = x.detach().double().requires_grad_()
    w64 = weight.detach().double().requires_grad_()
    b64 = bias.detach().double().requires_grad_() if bias is not None else None
    pre = reference.block_linear(x64, w64, b64, in_blocks, out_blocks, block_size, "none", packed_in, packed_out)
    if activation == "relu":
        gate = (y_actual.detach() > 0) if y_actual is not None else (pre.detach() > 0)
        pre.backward(grad_y.double() * gate)
        y = torch.relu(pre)
    else:
        pre.backward(grad_y.double())
        y = pre
    return y.detach(), x64.grad, w64.grad, (b64.grad if b64 is not None else None)
