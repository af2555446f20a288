"""Optimizer updates over the active blocks of a block-sparse layer's parameter (docs/design.md,
"Block-sparse optimizer steps").

Each function applies torch.optim's single-tensor update of one optimizer, in place, to the active entries
of `param` and its state only: the rows of the output blocks `out_blocks` and, for a weight, the columns of
the input blocks `in_blocks` (None: every block of that side; a 1-D bias has output blocks only). The
caller computes the per-step scalars as torch.optim does (bias corrections, decayed learning rate).
CPU float32 / float64 contiguous tensors go to the compiled kernel (one in-place pass over the active
entries); anything else to the same formulas in torch ops on the gathered active entries.
"""
import torch

from ._extension import _C
from .blocks import channel_mask, num_blocks
from .checks import check_int

_COMPILED_DTYPES = (torch.float32, torch.float64)


def _check(param, others, out_blocks, in_blocks, block_size):
    if not isinstance(param, torch.Tensor) or param.dim() not in (1, 2):
        raise TypeError(f"param must be a 1-D (bias) or 2-D (weight) tensor, got {_describe(param)}")
    for name, tensor in others.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name} must be a tensor, got {type(tensor).__name__}")
        if tensor.shape != param.shape or tensor.dtype != param.dtype or tensor.device != param.device:
            raise ValueError(f"{name} must have param's shape, dtype and device {tuple(param.shape)}, "
                             f"{param.dtype}, {param.device}; got {tuple(tensor.shape)}, {tensor.dtype}, "
                             f"{tensor.device}")
    check_int(block_size, "block_size", minimum=1)
    for name, blocks in (("out_blocks", out_blocks), ("in_blocks", in_blocks)):
        if blocks is not None and not (isinstance(blocks, torch.Tensor) and blocks.dtype == torch.int32
                                       and blocks.dim() == 1):
            raise TypeError(f"{name} must be a 1-D int32 tensor of block indices or None, got {_describe(blocks)}")
    if param.dim() == 1 and in_blocks is not None:
        raise ValueError("in_blocks must be None for a 1-D param (a bias has no input channels)")


def _describe(value):
    if isinstance(value, torch.Tensor):
        return f"a {value.dim()}-D {value.dtype} tensor"
    return type(value).__name__


def _compiled(param, tensors):
    return (_C is not None and param.device.type == "cpu" and param.dtype in _COMPILED_DTYPES
            and all(t.is_contiguous() for t in (param, *tensors)))


def _active_index(param, out_blocks, in_blocks, block_size):
    """Advanced index of the active entries (rows x columns of a weight, rows of a bias)."""
    def channels(blocks, features):
        if blocks is None:
            return torch.arange(features, device=param.device)
        if blocks.numel() and not 0 <= int(blocks.min()) <= int(blocks.max()) < num_blocks(features, block_size):
            raise ValueError(f"block indices must be in [0, {num_blocks(features, block_size)}) for {features} "
                             f"channels of block_size {block_size}")
        return torch.nonzero(channel_mask(blocks, features, block_size, param.device)).flatten()

    rows = channels(out_blocks, param.shape[0])
    if param.dim() == 1:
        return (rows,)
    return rows[:, None], channels(in_blocks, param.shape[1])[None, :]


def active_sgd_step_(param, grad, momentum_buffer, out_blocks, in_blocks, block_size, lr, weight_decay, momentum,
                     dampening, nesterov, first_step, *, check=True):
    """SGD: d = grad + weight_decay * param; with momentum buf = d on the first step (first_step), else
    buf * momentum + (1 - dampening) * d, and d = d + momentum * buf (nesterov) or buf; param -= lr * d."""
    tensors = {"grad": grad} if momentum == 0 else {"grad": grad, "momentum_buffer": momentum_buffer}
    if check:
        _check(param, tensors, out_blocks, in_blocks, block_size)
    if _compiled(param, tensors.values()):
        torch.ops.amgp.active_sgd_step_(param, grad, momentum_buffer if momentum != 0 else None, out_blocks,
                                        in_blocks, block_size, lr, weight_decay, momentum, dampening, nesterov,
                                        first_step)
        return
    index = _active_index(param, out_blocks, in_blocks, block_size)
    p, d = param[index], grad[index]
    if weight_decay != 0:
        d = d.add(p, alpha=weight_decay)
    if momentum != 0:
        buf = d.clone() if first_step else momentum_buffer[index].mul_(momentum).add_(d, alpha=1 - dampening)
        momentum_buffer[index] = buf
        d = d.add(buf, alpha=momentum) if nesterov else buf
    param[index] = p.add_(d, alpha=-lr)


def active_adam_step_(param, grad, exp_avg, exp_avg_sq, out_blocks, in_blocks, block_size, beta1, beta2, eps,
                      weight_decay, decay_factor, step_size, bias_correction2_sqrt, *, check=True):
    """Adam / AdamW: param *= decay_factor (AdamW's decoupled decay, else 1); d = grad + weight_decay * param
    (Adam's L2 decay, 0 for AdamW); exp_avg.lerp_(d, 1 - beta1); exp_avg_sq = exp_avg_sq * beta2 +
    (1 - beta2) * d * d; param -= step_size * exp_avg / (sqrt(exp_avg_sq) / bias_correction2_sqrt + eps)."""
    tensors = {"grad": grad, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
    if check:
        _check(param, tensors, out_blocks, in_blocks, block_size)
    if _compiled(param, tensors.values()):
        torch.ops.amgp.active_adam_step_(param, grad, exp_avg, exp_avg_sq, out_blocks, in_blocks, block_size, beta1,
                                         beta2, eps, weight_decay, decay_factor, step_size, bias_correction2_sqrt)
        return
    index = _active_index(param, out_blocks, in_blocks, block_size)
    p, d, m, v = param[index], grad[index], exp_avg[index], exp_avg_sq[index]
    if decay_factor != 1:
        p.mul_(decay_factor)
    if weight_decay != 0:
        d = d.add(p, alpha=weight_decay)
    m.lerp_(d, 1 - beta1)
    v.mul_(beta2).addcmul_(d, d, value=1 - beta2)
    p.addcdiv_(m, (v.sqrt() / bias_correction2_sqrt).add_(eps), value=-step_size)
    param[index], exp_avg[index], exp_avg_sq[index] = p, m, v


def active_adagrad_step_(param, grad, state_sum, out_blocks, in_blocks, block_size, clr, weight_decay, eps, *,
                         check=True):
    """Adagrad: d = grad + weight_decay * param; state_sum += d * d; param -= clr * d / (sqrt(state_sum) + eps)
    (clr: the learning rate decayed for this step)."""
    tensors = {"grad": grad, "state_sum": state_sum}
    if check:
        _check(param, tensors, out_blocks, in_blocks, block_size)
    if _compiled(param, tensors.values()):
        torch.ops.amgp.active_adagrad_step_(param, grad, state_sum, out_blocks, in_blocks, block_size, clr,
                                            weight_decay, eps)
        return
    index = _active_index(param, out_blocks, in_blocks, block_size)
    p, d, s = param[index], grad[index], state_sum[index]
    if weight_decay != 0:
        d = d.add(p, alpha=weight_decay)
    s.addcmul_(d, d, value=1)
    p.addcdiv_(d, s.sqrt().add_(eps), value=-clr)
    param[index], state_sum[index] = p, s
