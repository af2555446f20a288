"""Pure-PyTorch reference of the block_linear op contract (docs/design.md): every kernel is tested
against it.

y = act(((x * m_in) @ weight.T + bias) * m_out), with m_in / m_out the channel masks expanded from
the active block lists. Masking is done by selection (masked_fill), not multiplication, so values in
inactive blocks (even inf/NaN) never reach the result, exactly as kernels that never read them.
Packed activations (packed_in / packed_out) hold only the active channels, in block order; the
reference scatters a packed x into the full layout and gathers a packed y from it.
Autograd through this function gives the gradients of the contract.
"""
import torch

from .blocks import channel_mask

ACTIVATIONS = ("none", "relu")


def unpack(packed, mask):
    """A packed activation (..., active channels) in the full layout (..., len(mask)), zeros elsewhere."""
    full = packed.new_zeros((*packed.shape[:-1], mask.numel()))
    full[..., mask] = packed
    return full


def block_linear(x, weight, bias, in_blocks, out_blocks, block_size, activation="none", packed_in=False,
                 packed_out=False):
    out_features, in_features = weight.shape
    m_in = channel_mask(in_blocks, in_features, block_size, x.device)
    m_out = channel_mask(out_blocks, out_features, block_size, x.device)
    if packed_in:
        x = unpack(x, m_in)
    x_active = x.masked_fill(~m_in, 0)
    w_active = weight.masked_fill(~(m_out[:, None] & m_in[None, :]), 0)
    y = torch.nn.functional.linear(x_active, w_active, bias)
    y = y.masked_fill(~m_out, 0)
    if activation == "relu":
        y = torch.relu(y)
    elif activation != "none":
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    return y[..., m_out] if packed_out else y
