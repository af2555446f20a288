"""The methods a row compares, each as a step(i) callable over pre-made inputs:

dense              torch.nn.functional.linear on the full matrices (what nn.Linear runs)
gather_mm_scatter  index_select of the active channels, mm, index_copy_ into a zero output
compacted          the same GEMM on active sub-matrices sliced and made contiguous beforehand:
                   the limit no kernel over these blocks can beat by much
<backend>          amgp_kernels.block_linear(..., backend=name) for each backend of ours
<backend>_packed   the same with packed activations, as inside SparseMLP: the output holds only the
                   active channels, and so does the input in the in_out case (a hidden layer)

"fwd" runs without autograd; "fwd_bwd" also takes the gradients of x, weight and bias (as in
training) with torch.autograd.grad, so nothing accumulates between iterations.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import amgp_kernels

BASELINES = ("dense", "gather_mm_scatter", "compacted")
PACKED_SUFFIX = "_packed"
# Bytes of rotated input copies per row: enough copies to defeat caches, not enough to exhaust memory.
ROTATION_BUDGET_BYTES = 2 << 30


@dataclass
class Inputs:
    """Weights shared by every method of a shape, and rotated copies of x and of the output gradient."""
    weight: torch.Tensor
    bias: torch.Tensor
    xs: list
    grads: list


def rotation_copies(shape, dtype, requested):
    """How many input copies to rotate through: `requested`, fewer if they would not fit the budget."""
    element = torch.empty((), dtype=dtype).element_size()
    per_copy = shape.batch * (shape.in_features + shape.out_features) * element * 2  # full + compacted x, dy
    return max(1, min(requested, ROTATION_BUDGET_BYTES // max(per_copy, 1)))


def make_inputs(shape, dtype, device, copies, seed=0):
    """Seeded inputs. x, weight and bias require grad, as activations and parameters do in training;
    every method of a row shares them (torch.autograd.grad accumulates nothing)."""
    generator = torch.Generator(device=device).manual_seed(seed)  # on the device: large inputs are made fast

    def rand(*size, scale=1.0, grad=True):
        t = torch.randn(*size, generator=generator, device=device, dtype=dtype) * scale
        return t.requires_grad_(grad)

    scale = shape.in_features ** -0.5
    return Inputs(
        weight=rand(shape.out_features, shape.in_features, scale=scale),
        bias=rand(shape.out_features, scale=scale),
        xs=[rand(shape.batch, shape.in_features) for _ in range(copies)],
        grads=[rand(shape.batch, shape.out_features, grad=False) for _ in range(copies)],
    )


def _activate(y, activation):
    return torch.relu(y) if activation == "relu" else y


def _dense(activation):
    return lambda x, w, b: _activate(F.linear(x, w, b), activation)


def _gather_mm_scatter(problem, activation):
    in_ch, out_ch = problem.in_channels, problem.out_channels
    out_features = problem.shape.out_features

    def run(x, w, b):
        if in_ch is not None:
            x = x.index_select(1, in_ch)
            w = w.index_select(1, in_ch)
        if out_ch is not None:
            w = w.index_select(0, out_ch)
            b = b.index_select(0, out_ch)
        y = _activate(torch.addmm(b, x, w.t()), activation)
        if out_ch is None:
            return y
        return y.new_zeros(y.shape[0], out_features).index_copy_(1, out_ch, y)

    return run


def _ours(backend, problem, activation, packed_in=False, packed_out=False):
    def run(x, w, b):
        return amgp_kernels.block_linear(x, w, b, problem.in_blocks, problem.out_blocks, problem.block_size,
                                         activation, packed_in, packed_out, backend=backend, validate=False)

    return run


@torch.no_grad()
def _compacted_inputs(problem, inputs):
    """Active sub-matrices, sliced and made contiguous outside the timed region (new leaves)."""
    in_ch, out_ch = problem.in_channels, problem.out_channels

    def cols(t, idx):
        return t if idx is None else t.index_select(1, idx)

    def leaf(t, like):
        return t.contiguous().requires_grad_(like.requires_grad) if t is not like else t

    weight = cols(inputs.weight, in_ch)
    weight = weight if out_ch is None else weight.index_select(0, out_ch)
    bias = inputs.bias if out_ch is None else inputs.bias.index_select(0, out_ch)
    return Inputs(weight=leaf(weight, inputs.weight), bias=leaf(bias, inputs.bias),
                  xs=[leaf(cols(x, in_ch), x) for x in inputs.xs],
                  grads=[cols(g, out_ch).contiguous() for g in inputs.grads])


def _packed_inputs(problem, inputs):
    """The full-size weight and bias, with x and the output gradient holding only the active channels."""
    compacted = _compacted_inputs(problem, inputs)
    return Inputs(weight=inputs.weight, bias=inputs.bias, xs=compacted.xs, grads=compacted.grads)


def build_step(method, problem, pass_, inputs, activation="none"):
    """step(i): one timed iteration of `method` on input copy i % copies."""
    if method == "dense":
        run = _dense(activation)
    elif method == "gather_mm_scatter":
        run = _gather_mm_scatter(problem, activation)
    elif method == "compacted":
        run, inputs = _dense(activation), _compacted_inputs(problem, inputs)
    elif method.endswith(PACKED_SUFFIX):  # x is compacted only when its side is pruned (in_out)
        run = _ours(method[:-len(PACKED_SUFFIX)], problem, activation, problem.in_blocks is not None, True)
        inputs = _packed_inputs(problem, inputs)
    else:
        run = _ours(method, problem, activation)
    copies = len(inputs.xs)

    if pass_ == "fwd":
        def forward(i):
            with torch.no_grad():
                return run(inputs.xs[i % copies], inputs.weight, inputs.bias)
        return forward
    if pass_ != "fwd_bwd":
        raise ValueError(f"pass must be 'fwd' or 'fwd_bwd', got {pass_!r}")
    if not all(t.requires_grad for t in (inputs.weight, inputs.bias, *inputs.xs)):
        raise ValueError("fwd_bwd needs inputs whose x, weight and bias require grad (see make_inputs)")

    def forward_backward(i):
        x = inputs.xs[i % copies]
        y = run(x, inputs.weight, inputs.bias)
        return torch.autograd.grad(y, (x, inputs.weight, inputs.bias), inputs.grads[i % copies])

    return forward_backward


def default_backends(device):
    """Backends of ours that run natively on `device` (no Triton interpreter on the CPU: its
    timings mean nothing; the reference only when asked for)."""
    device = torch.device(device)
    native = {"cpu": ("cpu",), "cuda": ("cuda", "triton")}.get(device.type, ())
    return [name for name in amgp_kernels.available_backends() if name in native]
