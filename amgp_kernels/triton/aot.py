"""Compile every Triton kernel of the backend for a GPU architecture, without a GPU (ptxas ships
with triton): the check that the compiled path builds, on machines (CI) where only the interpreter
runs. Every kernel variant that compiles prints one "ok" line.

Must run with TRITON_INTERPRET unset (the interpreter replaces the kernels it would compile).
"""
PROG = "python -m amgp_kernels.triton.aot"
import argparse
import itertools
import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from . import configs, fill_kernels, gemm_kernels

# Pointer arguments of each kernel that are not of the operand dtype.
_INDEX_POINTERS = ("in_idx", "out_idx", "row_idx", "col_idx")
_FP32_POINTERS = ("ws_ptr", "ws_db_ptr")


def _jit_function(kernel):
    """The JITFunction under the autotune/heuristics wrappers."""
    while not isinstance(kernel, triton.runtime.jit.JITFunction):
        kernel = kernel.fn
    return kernel


def compile_kernel(kernel, dtype, constexprs, arch, num_warps=4, num_stages=3):
    """Compile like a launch would, pointers specialised as 16-byte aligned; integer arguments are
    left general (a launch may specialise them further)."""
    fn = _jit_function(kernel)
    signature, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in constexprs:
            signature[name] = "constexpr"
        elif name.endswith("_ptr") or name in _INDEX_POINTERS:
            kind = "i32" if name in _INDEX_POINTERS else "fp32" if name in _FP32_POINTERS else dtype
            signature[name] = "*" + kind
            attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            signature[name] = "i32"
    source = ASTSource(fn, signature, constexprs, attrs)
    return triton.compile(source, target=GPUTarget("cuda", arch, 32),
                          options={"num_warps": num_warps, "num_stages": num_stages})


def _runs(block_size, m, n, k):
    run = configs.RUN_HEURISTICS
    args = {"BLOCK_SIZE": block_size, "BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k}
    return {name: rule(args) for name, rule in run.items()}


def compile_all(arch, dtypes, tiles, block_sizes=(32, 24), gather_only=False):
    """Yields (description, shared memory bytes) for each compiled kernel variant: both channel
    sides gathered from block lists, and (unless gather_only) the input side dense."""
    sides = ((False, False),) if gather_only else ((False, False), (True, False))
    for dtype, (m, n, k, stages, warps), block_size, (in_all, out_all) in itertools.product(
            dtypes, tiles, block_sizes, sides):
        runs = _runs(block_size, m, n, k)
        meta = dict(BLOCK_SIZE=block_size, IN_ALL=in_all, OUT_ALL=out_all, UPCAST=False,
                    BLOCK_M=m, BLOCK_N=n, BLOCK_K=k, GROUP_M=8)
        variants = [
            ("forward", gemm_kernels.forward_kernel,
             dict(meta, HAS_BIAS=True, RELU=True, RUN_N=runs["RUN_N"], RUN_K=runs["RUN_K"])),
            ("grad_x", gemm_kernels.grad_x_kernel, dict(meta, RELU=True, RUN_N=runs["RUN_N"], RUN_K=runs["RUN_K"])),
        ] + [
            (f"grad_weight direct={direct}", gemm_kernels.grad_weight_kernel,
             dict(meta, RELU=True, HAS_DB=True, RUN_M=runs["RUN_M"], RUN_N=runs["RUN_N"], DIRECT=direct))
            for direct in (True, False)
        ]
        for name, kernel, constexprs in variants:
            compiled = compile_kernel(kernel, dtype, constexprs, arch, warps, stages)
            yield f"{name} {dtype} tile {m}x{n}x{k} block_size {block_size} in_all={in_all}", compiled.metadata.shared
    for dtype, block_size in itertools.product(dtypes, block_sizes):
        fill = dict(BLOCK_SIZE=block_size, BLOCK_R=configs.FILL_BLOCK_R, BLOCK_C=configs.FILL_BLOCK_C)
        compile_kernel(fill_kernels.zero_inactive_kernel, dtype,
                       dict(fill, ROW_ALL=False, COL_ALL=False, ROW_STEPS=3, COL_STEPS=5), arch)
        compile_kernel(fill_kernels.reduce_scatter_kernel, dtype, dict(fill, ROW_ALL=False, COL_ALL=True), arch)
        yield f"fill kernels {dtype} block_size {block_size}", None


def main(argv=None):
    # The whole docstring as written (its first line alone stops mid-sentence).
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 80 or 90 (default %(default)s)")
    parser.add_argument("--dtypes", default="bf16,fp16,fp32", help="comma-separated (default %(default)s)")
    parser.add_argument("--block-sizes", default="32,24", help="comma-separated channels per block (default %(default)s)")
    parser.add_argument("--all-tiles", action="store_true", help="every autotune tile (slow), not just one small")
    parser.add_argument("--gather-only", action="store_true", help="skip the dense-input variants")
    args = parser.parse_args(argv)
    if configs.INTERPRET:
        sys.exit("unset TRITON_INTERPRET: the interpreter does not compile kernels")
    tiles = configs.GPU_TILES if args.all_tiles else (configs.GPU_TILES[-1],)
    block_sizes = [int(b) for b in args.block_sizes.split(",")]
    for description, shared in compile_all(args.arch, args.dtypes.split(","), tiles, block_sizes, args.gather_only):
        print(f"sm_{args.arch} ok: {description}" + (f" (shared memory {shared} B)" if shared is not None else ""),
              flush=True)


if __name__ == "__main__":
    main()
