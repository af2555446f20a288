"""Host side of the Triton backend: shapes, compacted sizes, grids and launches. No host sync:
everything is decided from tensor metadata (the number of active blocks is an index list's length)."""
import functools
import math

import torch
import triton

from .._outputs import new_output
from ..blocks import active_channels, num_blocks
from . import configs
from .fill_kernels import reduce_scatter_kernel, zero_inactive_kernel
from .gemm_kernels import forward_kernel, grad_weight_kernel, grad_x_kernel

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _check_launchable(x):
    if x.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"the triton backend supports x dtypes {SUPPORTED_DTYPES}, got {x.dtype} "
                        "(use backend='cpu' or 'reference' for float64)")
    if x.device.type != "cuda" and not configs.INTERPRET:
        raise ValueError(f"the triton backend runs on CUDA tensors (or on CPU under TRITON_INTERPRET=1), "
                         f"but x is on {x.device}")


def _upcast(dtype):
    return configs.INTERPRET and dtype != torch.float32


class _Side:
    """One channel dimension: its index list (None = all blocks) and compacted size."""

    def __init__(self, blocks, features, block_size):
        self.all = blocks is None
        self.features = features
        self.n_active = num_blocks(features, block_size) if self.all else blocks.numel()
        self.compact = features if self.all else self.n_active * block_size
        self.blocks = blocks
        self.block_size = block_size

    def pointer(self, dummy):
        return dummy if self.all else self.blocks

    @property
    def search_steps(self):
        return 0 if self.all else self.n_active.bit_length()

    def width(self, packed):
        """Channels of an activation on this side: all features, or only the active ones when packed
        (reads the last block index when the last block is short: a host sync for CUDA indices)."""
        return active_channels(self.blocks, self.features, self.block_size) if packed else self.features


def _zero_inactive(out2d, rows, cols, block_size, dummy):
    """Zeros in out2d (R, C) wherever the row or the column block is inactive."""
    R, C = out2d.shape
    if R == 0 or C == 0 or (rows.all and cols.all):
        return
    grid = (triton.cdiv(R, configs.FILL_BLOCK_R), triton.cdiv(C, configs.FILL_BLOCK_C))
    zero_inactive_kernel[grid](
        out2d, R, C, out2d.stride(0), out2d.stride(1),
        rows.pointer(dummy), rows.n_active, cols.pointer(dummy), cols.n_active,
        BLOCK_SIZE=block_size, ROW_ALL=rows.all, COL_ALL=cols.all,
        ROW_STEPS=rows.search_steps, COL_STEPS=cols.search_steps,
        BLOCK_R=configs.FILL_BLOCK_R, BLOCK_C=configs.FILL_BLOCK_C, num_warps=configs.FILL_WARPS,
    )


def _gemm_grid(rows, cols):
    return lambda meta: (triton.cdiv(rows, meta["BLOCK_M"]) * triton.cdiv(cols, meta["BLOCK_N"]),)


def _as_matrix(t):
    """t as (rows, last dimension), also when the last dimension is 0 (a packed side with nothing active)."""
    return t.reshape(math.prod(t.shape[:-1]), t.shape[-1])


def _check_width(t, side, packed, name):
    expected = side.width(packed)
    if t.shape[-1] != expected:
        layout = "packed, so it must hold the active channels" if packed else "full-size"
        raise ValueError(f"{name} is {layout}: {name}.shape[-1] must be {expected}, got {t.shape[-1]}")


def forward(x, weight, bias, in_blocks, out_blocks, block_size, activation, packed_in=False, packed_out=False):
    _check_launchable(x)
    out_f, in_f = weight.shape
    inp, out = _Side(in_blocks, in_f, block_size), _Side(out_blocks, out_f, block_size)
    _check_width(x, inp, packed_in, "x")
    x2 = _as_matrix(x)
    M = x2.shape[0]
    width = out.width(packed_out)
    y = new_output((M, width), x.dtype, x.device)
    if M > 0 and out.compact > 0:
        forward_kernel[_gemm_grid(M, out.compact)](
            x2, weight, bias.contiguous() if bias is not None else weight, y, inp.pointer(x2), out.pointer(x2),
            M, out_f, in_f, out.compact, inp.compact,
            x2.stride(0), x2.stride(1), weight.stride(0), weight.stride(1), y.stride(0), y.stride(1),
            BLOCK_SIZE=block_size, IN_ALL=inp.all, OUT_ALL=out.all, HAS_BIAS=bias is not None,
            RELU=activation == "relu", UPCAST=_upcast(x.dtype), PACKED_IN=packed_in, PACKED_OUT=packed_out,
        )
    if not packed_out:
        _zero_inactive(y, _Side(None, M, block_size), out, block_size, y)
    return y.view(*x.shape[:-1], width)


@functools.lru_cache(maxsize=None)
def _multiprocessors(device_index):
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def weight_grad_split(M, out, inp, device):
    """Split the batch reduction of dW across programs when too few output tiles fill the GPU."""
    if device.type != "cuda":
        return 1
    tiles = triton.cdiv(out.compact, 128) * triton.cdiv(inp.compact, 128)
    if tiles == 0:
        return 1
    sms = _multiprocessors(device.index if device.index is not None else torch.cuda.current_device())
    return max(1, min(sms // tiles, M // 1024, 16))


def backward(grad_y, x, weight, y, in_blocks, out_blocks, block_size, activation, packed_in, packed_out,
             output_mask, split=None):
    """(grad_x, grad_weight, grad_bias); those not asked for in output_mask are empty tensors.
    grad_y and y are in the output's layout, grad_x comes back in x's; dW and db are full-size.
    split: batch-reduction split of dW (None: weight_grad_split's choice)."""
    _check_launchable(x)
    out_f, in_f = weight.shape
    relu = activation == "relu"
    if relu and y is None:
        raise ValueError("y (the forward output) is required for activation 'relu'")
    inp, out = _Side(in_blocks, in_f, block_size), _Side(out_blocks, out_f, block_size)
    _check_width(x, inp, packed_in, "x")
    _check_width(grad_y, out, packed_out, "grad_y")
    x2, dy = _as_matrix(x), _as_matrix(grad_y)
    M = x2.shape[0]
    if dy.shape[0] != M:
        raise ValueError(f"grad_y shape {tuple(grad_y.shape)} does not match the forward output")
    if relu and tuple(y.shape) != tuple(grad_y.shape):
        raise ValueError(f"y must have grad_y's shape {tuple(grad_y.shape)}, got {tuple(y.shape)}")
    y2 = _as_matrix(y) if relu else dy
    rows = _Side(None, M, block_size)
    want_x, want_w, want_b = (bool(v) for v in output_mask)
    common = dict(BLOCK_SIZE=block_size, RELU=relu, UPCAST=_upcast(x.dtype), PACKED_IN=packed_in,
                  PACKED_OUT=packed_out)

    grad_x = x.new_empty((0,))  # each unwanted grad its own empty tensor: op outputs may not alias
    if want_x:
        dx = new_output((M, x2.shape[1]), x.dtype, x.device)
        if M > 0 and inp.compact > 0:
            grad_x_kernel[_gemm_grid(M, inp.compact)](
                dy, y2, weight, dx, inp.pointer(x2), out.pointer(x2),
                M, out_f, in_f, out.compact, inp.compact,
                dy.stride(0), dy.stride(1), y2.stride(0), y2.stride(1), weight.stride(0), weight.stride(1),
                dx.stride(0), dx.stride(1), IN_ALL=inp.all, OUT_ALL=out.all, **common,
            )
        if not packed_in:
            _zero_inactive(dx, rows, inp, block_size, dx)
        grad_x = dx.view(x.shape)

    grad_w = new_output(weight.shape, x.dtype, x.device) if want_w else x.new_empty((0,))
    grad_b = new_output((out_f,), x.dtype, x.device) if want_b else x.new_empty((0,))
    if want_w or want_b:
        _weight_and_bias_grads(dy, y2, x2, grad_w if want_w else None, grad_b if want_b else None,
                               inp, out, split, common)
        if want_w:
            _zero_inactive(grad_w, out, inp, block_size, grad_w)
        if want_b:
            _zero_inactive(grad_b.view(1, out_f), _Side(None, 1, block_size), out, block_size, grad_b)
    return grad_x, grad_w, grad_b


def _weight_and_bias_grads(dy, y2, x2, grad_w, grad_b, inp, out, split, common):
    """Active blocks of dW and db (the zero fill writes the rest)."""
    if out.compact == 0:
        return
    if x2.shape[0] == 0:  # an empty batch: every gradient is zero
        for grad in (grad_w, grad_b):
            if grad is not None:
                grad.zero_()
        return
    if grad_b is not None and (grad_w is None or inp.compact == 0):
        # db without dW work: the dW kernel over one (full-size) input column, its dW thrown away.
        scratch = new_output((out.features, 1), x2.dtype, x2.device)
        column = x2[:, :1] if x2.shape[1] else x2.new_zeros((x2.shape[0], 1))
        _grad_weight(dy, y2, column, scratch, grad_b, _Side(None, 1, common["BLOCK_SIZE"]), out, split,
                     {**common, "PACKED_IN": False})
    elif grad_w is not None and inp.compact > 0:
        _grad_weight(dy, y2, x2, grad_w, grad_b, inp, out, split, common)


def _grad_weight(dy, y2, x2, grad_w, grad_b, inp, out, split, common):
    M = x2.shape[0]
    split = weight_grad_split(M, out, inp, x2.device) if split is None else max(1, min(int(split), M))
    if split > 1:
        ws = new_output((split, out.compact, inp.compact), torch.float32, x2.device)
        ws_db = new_output((split, out.compact), torch.float32, x2.device)
    else:
        ws = ws_db = grad_w
    db = grad_b if grad_b is not None else grad_w
    grid = lambda meta: (  # noqa: E731
        triton.cdiv(out.compact, meta["BLOCK_M"]) * triton.cdiv(inp.compact, meta["BLOCK_N"]), split)
    grad_weight_kernel[grid](
        dy, y2, x2, grad_w, db, ws, ws_db, inp.pointer(x2), out.pointer(x2),
        M, out.features, inp.features, out.compact, inp.compact, split,
        dy.stride(0), dy.stride(1), y2.stride(0), y2.stride(1), x2.stride(0), x2.stride(1),
        grad_w.stride(0), grad_w.stride(1), IN_ALL=inp.all, OUT_ALL=out.all, HAS_DB=grad_b is not None, **common,
    )
    if split > 1:
        _reduce_scatter(ws, split, grad_w, out, inp, x2, common["BLOCK_SIZE"])
        if grad_b is not None:
            one = _Side(None, 1, common["BLOCK_SIZE"])
            _reduce_scatter(ws_db, split, grad_b.view(-1, 1), out, one, x2, common["BLOCK_SIZE"])


def _reduce_scatter(ws, split, dst, rows, cols, dummy, block_size):
    """dst[active rows, active cols] = ws.sum(0), ws in compacted coordinates."""
    grid = (triton.cdiv(rows.compact, configs.FILL_BLOCK_R), triton.cdiv(cols.compact, configs.FILL_BLOCK_C))
    reduce_scatter_kernel[grid](
        ws, split, rows.compact, cols.compact, dst, dst.shape[0], dst.shape[1], dst.stride(0), dst.stride(1),
        rows.pointer(dummy), cols.pointer(dummy),
        BLOCK_SIZE=block_size, ROW_ALL=rows.all, COL_ALL=cols.all,
        BLOCK_R=configs.FILL_BLOCK_R, BLOCK_C=configs.FILL_BLOCK_C, num_warps=configs.FILL_WARPS,
    )
