"""The CUDA GEMM's index math on the CPU, no GPU needed: cuda_tile_emulation.py replays block_gemm.cu's tile
loads (both load paths, both shared-memory layouts), the ldmatrix lane addresses and the mma / SIMT fragment
reads, and checks every warp's fragments against the true operand tiles. Keep the emulation in step with
csrc/cuda/block_gemm.cu when changing the tile code."""
import pytest

pytest.importorskip("numpy")
from cuda_tile_emulation import run  # noqa: E402

# Each seed draws an element size (2: the tensor-core path, 4: the fp32 SIMT path), block lists, tails, a
# block size and leading dimensions; the operand layouts cycle with the seed. These six seeds cover every
# element size x layout pair; the other seeds (about 1.5 s each) run with --runslow.
COVERING_SEEDS = [0, 1, 2, 4, 6, 11]


def test_tile_fragments_match_the_operands():
    paths = {run(seed)[:3] for seed in COVERING_SEEDS}  # (element size, A K-contiguous, B K-contiguous)
    layouts = [(True, True), (True, False), (False, False)]
    assert paths == {(esize, *layout) for esize in (2, 4) for layout in layouts}, "a path is left unchecked"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [seed for seed in range(40) if seed not in COVERING_SEEDS])
def test_tile_fragments_match_the_operands_more_seeds(seed):
    run(seed)
