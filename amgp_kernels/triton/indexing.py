"""Triton device helpers shared by the kernels: compacted coordinates, block lookups, tile order.

Compacted coordinates: the active channels of a dimension, laid end to end in blocks of BLOCK_SIZE.
Compacted offset j is channel blocks[j // BLOCK_SIZE] * BLOCK_SIZE + j % BLOCK_SIZE; it is a real
channel only when j < n_compact (= len(blocks) * BLOCK_SIZE) and the channel is < features (the
last block of a dimension may be short). With ALL (blocks is None) compacted offset == channel.
"""
import triton
import triton.language as tl


@triton.jit
def active_channels(idx_ptr, offs, n_compact, features, BLOCK_SIZE: tl.constexpr, ALL: tl.constexpr,
                    RUN: tl.constexpr):
    """(channel, valid) for compacted offsets `offs` (a tile starting at a multiple of RUN).

    RUN is a power of two dividing both BLOCK_SIZE and the tile width, so every aligned group of
    RUN offsets maps to RUN consecutive channels starting at a multiple of RUN: telling the compiler
    lets it vectorise the gathered loads and stores.
    """
    if ALL:
        channels = offs
        valid = offs < features
    else:
        in_list = offs < n_compact
        block = tl.load(idx_ptr + offs // BLOCK_SIZE, mask=in_list, other=0)
        channels = block * BLOCK_SIZE + offs % BLOCK_SIZE
        if RUN > 1:
            channels = tl.max_contiguous(tl.multiple_of(channels, RUN), RUN)
        valid = in_list & (channels < features)
    return channels, valid


@triton.jit
def block_is_active(idx_ptr, n_active, blocks, SEARCH_STEPS: tl.constexpr):
    """Whether each entry of `blocks` is in the sorted list idx_ptr[0:n_active] (binary search;
    SEARCH_STEPS = n_active.bit_length() halvings close every interval)."""
    lo = tl.zeros_like(blocks)
    hi = lo + n_active
    for _ in tl.static_range(SEARCH_STEPS):
        open_ = lo < hi
        mid = (lo + hi) // 2
        value = tl.load(idx_ptr + mid, mask=open_, other=0)
        go_right = open_ & (value < blocks)
        hi = tl.where(open_ & (value >= blocks), mid, hi)
        lo = tl.where(go_right, mid + 1, lo)
    inside = lo < n_active
    return inside & (tl.load(idx_ptr + lo, mask=inside, other=-1) == blocks)


@triton.jit
def tile_coords(pid, n_rows, n_cols, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, GROUP: tl.constexpr):
    """Row/column tile of program `pid`, in groups of GROUP row tiles so that programs running
    together share operand tiles in L2."""
    tiles_r = tl.cdiv(n_rows, BLOCK_R)
    tiles_c = tl.cdiv(n_cols, BLOCK_C)
    per_group = GROUP * tiles_c
    first_r = (pid // per_group) * GROUP
    group_rows = min(tiles_r - first_r, GROUP)
    local = pid % per_group
    return first_r + local % group_rows, local // group_rows


@triton.jit
def grad_through_activation(dy_ptr, y_ptr, offsets_dy, offsets_y, mask, RELU: tl.constexpr):
    """dy' = dy through the activation (ReLU: zero where the saved output y <= 0, as
    torch's threshold_backward), zeros where masked."""
    g = tl.load(dy_ptr + offsets_dy, mask=mask, other=0)
    if RELU:
        y = tl.load(y_ptr + offsets_y, mask=mask, other=0)
        g = tl.where(y <= 0, tl.zeros_like(g), g)
    return g


@triton.jit
def mma(a, b, acc, UPCAST: tl.constexpr):
    """acc += a @ b with fp32 accumulation; float32 inputs stay exact fp32 (no TF32).
    UPCAST (interpreter only) computes low-precision dots in fp32: the interpreter's bf16 dot is wrong."""
    if UPCAST:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    if a.dtype == tl.float32:
        acc = tl.dot(a, b, acc, input_precision="ieee")
    else:
        acc = tl.dot(a, b, acc)
    return acc
