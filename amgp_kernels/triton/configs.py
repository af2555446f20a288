"""Tile configurations: autotuned on GPU, a single small one under the interpreter (the interpreter
runs every config it is given, and several configs fail there), or one fixed tile on GPU when
AMGP_TRITON_TILE="BLOCK_M,BLOCK_N,BLOCK_K,num_stages,num_warps" is set: a check that runs a hundred
new shapes in minutes cannot afford to compile and time every tile for each of them."""
import os

import triton


def interpreting():
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


INTERPRET = interpreting()

# (BLOCK_M, BLOCK_N, BLOCK_K, num_stages, num_warps): output rows, output columns, reduction.
# Mostly the shapes that win for bf16/fp16 GEMMs on A100/H100, plus small ones for few active blocks.
GPU_TILES = (
    (128, 256, 64, 3, 8),
    (256, 128, 64, 3, 8),
    (128, 128, 64, 4, 8),
    (128, 128, 32, 4, 4),
    (128, 64, 32, 4, 4),
    (64, 128, 32, 4, 4),
    (64, 64, 32, 5, 4),
)
# float32 tiles (exact fp32 dots) need twice the shared memory per element: the big ones do not fit.
_MAX_FP32_TILE = (128 * 128, 32)
_INTERPRETER_TILE = (32, 32, 32, 1, 4)


def fixed_tile(text):
    """The tile AMGP_TRITON_TILE names ("" or unset: None, autotune); ValueError naming the variable otherwise."""
    if not text or not text.strip():
        return None
    try:
        tile = tuple(int(part) for part in text.split(","))
    except ValueError:
        tile = ()
    powers = all(v > 0 and v & (v - 1) == 0 for v in tile[:3] + tile[4:])
    if len(tile) != 5 or not powers or tile[3] < 1 or tile[0] < 16 or tile[1] < 16 or tile[2] < 16:
        raise ValueError(f"AMGP_TRITON_TILE must be BLOCK_M,BLOCK_N,BLOCK_K,num_stages,num_warps (tile sides powers of "
                         f"two >= 16, num_warps a power of two, num_stages >= 1), e.g. 64,64,32,4,4; got {text!r}")
    return tile


def gemm_configs():
    tile = fixed_tile(os.environ.get("AMGP_TRITON_TILE"))
    tiles = (_INTERPRETER_TILE,) if INTERPRET else (tile,) if tile else GPU_TILES
    return [
        triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "GROUP_M": 8}, num_stages=s, num_warps=w)
        for m, n, k, s, w in tiles
    ]


def prune_for_dtype(configs, named_args, **kwargs):
    """Drop the tiles that cannot fit for float32 operands (saves compiling them at autotune time)."""
    element_size = next(arg.element_size() for arg in named_args.values() if hasattr(arg, "element_size"))
    if element_size < 4:
        return configs
    area, depth = _MAX_FP32_TILE
    kept = [c for c in configs if c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"] <= area and c.kwargs["BLOCK_K"] <= depth]
    return kept or configs[-1:]


GEMM_PRUNING = {"early_config_prune": prune_for_dtype}


def _run(block_size, tile):
    """Largest power of two dividing both block_size and the (power-of-two) tile width."""
    return min(block_size & -block_size, tile)


# Contiguity runs of each tile axis over compacted channels (see indexing.active_channels).
RUN_HEURISTICS = {
    "RUN_M": lambda args: _run(args["BLOCK_SIZE"], args["BLOCK_M"]),
    "RUN_N": lambda args: _run(args["BLOCK_SIZE"], args["BLOCK_N"]),
    "RUN_K": lambda args: _run(args["BLOCK_SIZE"], args["BLOCK_K"]),
}

# Every GEMM is retuned when the batch, the layer or the number of active blocks changes (masks
# change rarely: at growth/pruning steps). The dtypes are part of the key automatically.
GEMM_KEY = ["M", "N", "K", "n_out_compact", "n_in_compact"]

# Fixed tiles of the memory-bound fill kernels (zero fill, split-K reduction).
FILL_BLOCK_R = 32
FILL_BLOCK_C = 128
FILL_WARPS = 4
