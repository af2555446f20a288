"""Memory-bound kernels over a 2-D output whose rows and columns are each either all channels
(ROW_ALL / COL_ALL) or channel blocks from a sorted active list:

zero_inactive_kernel    writes exact zeros where the row or the column is inactive (nothing else);
reduce_scatter_kernel   adds up the split-K partial sums (compacted coordinates) into the active part.
"""
import triton
import triton.language as tl

from .indexing import active_channels, block_is_active


@triton.jit
def zero_inactive_kernel(out_ptr, R, C, s_r, s_c, row_idx, n_row_active, col_idx, n_col_active,
                         BLOCK_SIZE: tl.constexpr, ROW_ALL: tl.constexpr, COL_ALL: tl.constexpr,
                         ROW_STEPS: tl.constexpr, COL_STEPS: tl.constexpr,
                         BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    if ROW_ALL:
        row_on = rows >= 0
    else:
        row_on = block_is_active(row_idx, n_row_active, rows // BLOCK_SIZE, ROW_STEPS)
    if COL_ALL:
        col_on = cols >= 0
    else:
        col_on = block_is_active(col_idx, n_col_active, cols // BLOCK_SIZE, COL_STEPS)
    inactive = (row_on[:, None] & col_on[None, :]) == 0
    mask = (rows < R)[:, None] & (cols < C)[None, :] & inactive
    out = out_ptr + rows.to(tl.int64)[:, None] * s_r + cols[None, :] * s_c
    tl.store(out, tl.zeros((BLOCK_R, BLOCK_C), dtype=out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def reduce_scatter_kernel(ws_ptr, SPLIT, n_row_compact, n_col_compact, out_ptr, R, C, s_r, s_c,
                          row_idx, col_idx,
                          BLOCK_SIZE: tl.constexpr, ROW_ALL: tl.constexpr, COL_ALL: tl.constexpr,
                          BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """out[row_channel(i), col_channel(j)] = sum_s ws[s, i, j] over compacted (i, j)."""
    row_offs = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    col_offs = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    row_ch, row_ok = active_channels(row_idx, row_offs, n_row_compact, R, BLOCK_SIZE, ROW_ALL, 1)
    col_ch, col_ok = active_channels(col_idx, col_offs, n_col_compact, C, BLOCK_SIZE, COL_ALL, 1)
    mask = row_ok[:, None] & col_ok[None, :]
    partial = ws_ptr + row_offs.to(tl.int64)[:, None] * n_col_compact + col_offs[None, :]
    total = tl.zeros((BLOCK_R, BLOCK_C), dtype=tl.float32)
    for s in range(0, SPLIT):
        total += tl.load(partial + s * n_row_compact * n_col_compact, mask=mask, other=0)
    out = out_ptr + row_ch.to(tl.int64)[:, None] * s_r + col_ch[None, :] * s_c
    tl.store(out, total.to(out_ptr.dtype.element_ty), mask=mask)
