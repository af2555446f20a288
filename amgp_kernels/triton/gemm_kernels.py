"""The three GEMMs of block_linear over compacted (active-only) coordinates.

forward: y[m, out]   = act(sum_in x[m, in] * w[out, in] + b[out])   tiles (rows, active out), loop active in
dx:      dx[m, in]   = sum_out dy'[m, out] * w[out, in]              tiles (rows, active in), loop active out
dw:      dw[out, in] = sum_m dy'[m, out] * x[m, in]  (+ db[out])    tiles (active out, active in), loop rows,
                                                                     split over rows when tiles are few
Inactive inputs are never read; the kernels write only active outputs (fill_kernels writes the zeros).
PACKED_IN / PACKED_OUT: x (and dx) / y (and dy) hold only the active channels, so their columns are the
compacted offsets themselves instead of the channels those offsets map to.
Meta-parameters: BLOCK_M x BLOCK_N is the output tile, BLOCK_K the reduction step.
"""
import triton
import triton.language as tl

from .configs import GEMM_KEY, GEMM_PRUNING, RUN_HEURISTICS, gemm_configs
from .indexing import active_channels, grad_through_activation, mma, tile_coords


@triton.jit
def row_channel_tile(M, idx_ptr, n_compact, features, BLOCK_SIZE: tl.constexpr, ALL: tl.constexpr,
                     RUN: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """This program's output tile over (batch rows, compacted channels): rows, row_ok, channels, ok and
    the compacted offsets (the columns of a packed activation)."""
    pid_m, pid_n = tile_coords(tl.program_id(0), M, n_compact, BLOCK_M, BLOCK_N, GROUP_M)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    channels, ok = active_channels(idx_ptr, offs, n_compact, features, BLOCK_SIZE, ALL, RUN)
    return rows, rows < M, channels, ok, offs


def _runs(*names):
    return {name: RUN_HEURISTICS[name] for name in names}


@triton.autotune(configs=gemm_configs(), key=GEMM_KEY, prune_configs_by=GEMM_PRUNING)
@triton.heuristics(_runs("RUN_N", "RUN_K"))
@triton.jit
def forward_kernel(x_ptr, w_ptr, bias_ptr, y_ptr, in_idx, out_idx,
                   M, N, K, n_out_compact, n_in_compact,
                   s_xm, s_xk, s_wn, s_wk, s_ym, s_yn,
                   BLOCK_SIZE: tl.constexpr, IN_ALL: tl.constexpr, OUT_ALL: tl.constexpr,
                   HAS_BIAS: tl.constexpr, RELU: tl.constexpr, UPCAST: tl.constexpr,
                   PACKED_IN: tl.constexpr, PACKED_OUT: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
                   RUN_N: tl.constexpr, RUN_K: tl.constexpr):
    rows, row_ok, out_ch, out_ok, out_offs = row_channel_tile(M, out_idx, n_out_compact, N, BLOCK_SIZE, OUT_ALL,
                                                              RUN_N, BLOCK_M, BLOCK_N, GROUP_M)
    x_rows = x_ptr + rows.to(tl.int64)[:, None] * s_xm
    w_cols = w_ptr + out_ch.to(tl.int64)[None, :] * s_wn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, n_in_compact, BLOCK_K):
        in_offs = k0 + tl.arange(0, BLOCK_K)
        in_ch, in_ok = active_channels(in_idx, in_offs, n_in_compact, K, BLOCK_SIZE, IN_ALL, RUN_K)
        x_col = in_offs if PACKED_IN else in_ch
        a = tl.load(x_rows + x_col[None, :] * s_xk, mask=row_ok[:, None] & in_ok[None, :], other=0)
        b = tl.load(w_cols + in_ch[:, None] * s_wk, mask=in_ok[:, None] & out_ok[None, :], other=0)
        acc = mma(a, b, acc, UPCAST)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + out_ch, mask=out_ok, other=0).to(tl.float32)[None, :]
    if RELU:
        acc = tl.where(acc <= 0, 0.0, acc)  # NaN stays NaN, as torch.relu
    y_col = out_offs if PACKED_OUT else out_ch
    y = y_ptr + rows.to(tl.int64)[:, None] * s_ym + y_col[None, :] * s_yn
    tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=row_ok[:, None] & out_ok[None, :])


@triton.autotune(configs=gemm_configs(), key=GEMM_KEY, prune_configs_by=GEMM_PRUNING)
@triton.heuristics(_runs("RUN_N", "RUN_K"))
@triton.jit
def grad_x_kernel(dy_ptr, y_ptr, w_ptr, dx_ptr, in_idx, out_idx,
                  M, N, K, n_out_compact, n_in_compact,
                  s_dym, s_dyn, s_ym, s_yn, s_wn, s_wk, s_dxm, s_dxk,
                  BLOCK_SIZE: tl.constexpr, IN_ALL: tl.constexpr, OUT_ALL: tl.constexpr,
                  RELU: tl.constexpr, UPCAST: tl.constexpr, PACKED_IN: tl.constexpr, PACKED_OUT: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
                  RUN_N: tl.constexpr, RUN_K: tl.constexpr):
    rows, row_ok, in_ch, in_ok, in_offs = row_channel_tile(M, in_idx, n_in_compact, K, BLOCK_SIZE, IN_ALL, RUN_N,
                                                           BLOCK_M, BLOCK_N, GROUP_M)
    rows64 = rows.to(tl.int64)[:, None]
    w_cols = w_ptr + in_ch.to(tl.int64)[None, :] * s_wk
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for n0 in range(0, n_out_compact, BLOCK_K):
        out_offs = n0 + tl.arange(0, BLOCK_K)
        out_ch, out_ok = active_channels(out_idx, out_offs, n_out_compact, N, BLOCK_SIZE, OUT_ALL, RUN_K)
        dy_col = out_offs if PACKED_OUT else out_ch
        g = grad_through_activation(dy_ptr, y_ptr, rows64 * s_dym + dy_col[None, :] * s_dyn,
                                    rows64 * s_ym + dy_col[None, :] * s_yn, row_ok[:, None] & out_ok[None, :],
                                    RELU)
        b = tl.load(w_cols + out_ch[:, None] * s_wn, mask=out_ok[:, None] & in_ok[None, :], other=0)
        acc = mma(g, b, acc, UPCAST)
    dx_col = in_offs if PACKED_IN else in_ch
    dx = dx_ptr + rows64 * s_dxm + dx_col[None, :] * s_dxk
    tl.store(dx, acc.to(dx_ptr.dtype.element_ty), mask=row_ok[:, None] & in_ok[None, :])


@triton.autotune(configs=gemm_configs(), key=GEMM_KEY + ["SPLIT"], prune_configs_by=GEMM_PRUNING)
@triton.heuristics(dict(_runs("RUN_M", "RUN_N"), DIRECT=lambda args: args["SPLIT"] == 1))
@triton.jit
def grad_weight_kernel(dy_ptr, y_ptr, x_ptr, dw_ptr, db_ptr, ws_ptr, ws_db_ptr, in_idx, out_idx,
                       M, N, K, n_out_compact, n_in_compact, SPLIT,
                       s_dym, s_dyn, s_ym, s_yn, s_xm, s_xk, s_dwn, s_dwk,
                       BLOCK_SIZE: tl.constexpr, IN_ALL: tl.constexpr, OUT_ALL: tl.constexpr,
                       RELU: tl.constexpr, HAS_DB: tl.constexpr, UPCAST: tl.constexpr,
                       PACKED_IN: tl.constexpr, PACKED_OUT: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
                       RUN_M: tl.constexpr, RUN_N: tl.constexpr, DIRECT: tl.constexpr):
    """Program (tile, split) sums its share of the rows. DIRECT (one split): writes dw/db in place.
    Otherwise: fp32 partial sums into ws[split] / ws_db[split], in compacted coordinates, for
    fill_kernels.reduce_scatter_kernel to add up."""
    pid_o, pid_i = tile_coords(tl.program_id(0), n_out_compact, n_in_compact, BLOCK_M, BLOCK_N, GROUP_M)
    split = tl.program_id(1)
    out_offs = pid_o * BLOCK_M + tl.arange(0, BLOCK_M)
    in_offs = pid_i * BLOCK_N + tl.arange(0, BLOCK_N)
    out_ch, out_ok = active_channels(out_idx, out_offs, n_out_compact, N, BLOCK_SIZE, OUT_ALL, RUN_M)
    in_ch, in_ok = active_channels(in_idx, in_offs, n_in_compact, K, BLOCK_SIZE, IN_ALL, RUN_N)
    dy_col = out_offs if PACKED_OUT else out_ch
    x_col = in_offs if PACKED_IN else in_ch

    rows_per_split = tl.cdiv(tl.cdiv(M, SPLIT), BLOCK_K) * BLOCK_K
    row_start = split * rows_per_split
    row_end = min(row_start + rows_per_split, M)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    db = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for m0 in range(row_start, row_end, BLOCK_K):
        rows = m0 + tl.arange(0, BLOCK_K)
        row_ok = rows < row_end
        rows64 = rows.to(tl.int64)[:, None]
        g = grad_through_activation(dy_ptr, y_ptr, rows64 * s_dym + dy_col[None, :] * s_dyn,
                                    rows64 * s_ym + dy_col[None, :] * s_yn, row_ok[:, None] & out_ok[None, :],
                                    RELU)
        a = tl.load(x_ptr + rows64 * s_xm + x_col[None, :] * s_xk, mask=row_ok[:, None] & in_ok[None, :],
                    other=0)
        acc = mma(tl.trans(g), a, acc, UPCAST)
        if HAS_DB:
            db += tl.sum(g.to(tl.float32), axis=0)

    if DIRECT:
        dw = dw_ptr + out_ch.to(tl.int64)[:, None] * s_dwn + in_ch[None, :] * s_dwk
        tl.store(dw, acc.to(dw_ptr.dtype.element_ty), mask=out_ok[:, None] & in_ok[None, :])
        if HAS_DB:
            if pid_i == 0:  # one program per output-channel tile writes db
                tl.store(db_ptr + out_ch, db.to(db_ptr.dtype.element_ty), mask=out_ok)
    else:
        o_in = out_offs < n_out_compact
        i_in = in_offs < n_in_compact
        ws = ws_ptr + (split * n_out_compact + out_offs).to(tl.int64)[:, None] * n_in_compact + in_offs[None, :]
        tl.store(ws, acc, mask=o_in[:, None] & i_in[None, :])
        if HAS_DB:
            if pid_i == 0:
                tl.store(ws_db_ptr + split * n_out_compact + out_offs, db, mask=o_in)
