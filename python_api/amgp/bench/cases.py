"""What gets measured: GEMM shapes (custom and DLRM presets), the sparsity cases, and the seeded
active block sets a density maps to (the same blocks for every method of a row)."""
import re
from dataclasses import dataclass

import torch

from amgp_kernels.blocks import num_blocks
from amgp_kernels.testing import random_blocks

CASES = ("out_only", "in_out")  # first layer (dense input) / hidden layer (both sides pruned)
PASSES = ("fwd", "fwd_bwd")
DENSITIES = (1.0, 0.75, 0.5, 0.25)

# MLP widths of facebookresearch/dlrm's run scripts. The top MLP's first width is the interaction
# output dlrm_s_pytorch.py prepends: 27 features (26 sparse + dense) give 27*26/2 pairwise dots,
# plus the bottom MLP's output width.
DLRM_CONFIGS = {
    "kaggle": {"bottom": [13, 512, 256, 64, 16], "top": [27 * 26 // 2 + 16, 512, 256, 1]},
    "terabyte": {"bottom": [13, 512, 256, 64], "top": [27 * 26 // 2 + 64, 512, 512, 256, 1]},
    "mlperf": {"bottom": [13, 512, 256, 128], "top": [27 * 26 // 2 + 128, 1024, 1024, 512, 256, 1]},
}
PRESET_BATCH = 2048
# Layers narrower than this on either side (13 dense features in, 16/1-wide heads out) are left out
# of the kernel presets: a handful of blocks is no block-sparsity benchmark.
MIN_PRESET_WIDTH = 64


@dataclass(frozen=True)
class Shape:
    batch: int
    in_features: int
    out_features: int

    def __str__(self):
        return f"{self.batch}x{self.in_features}x{self.out_features}"


def parse_shape(text):
    """'BxINxOUT' -> Shape; ValueError with the offending text otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"shape must look like BxINxOUT (e.g. 2048x1024x1024), got {text!r}")
    shape = Shape(*(int(g) for g in match.groups()))
    if min(shape.batch, shape.in_features, shape.out_features) <= 0:
        raise ValueError(f"shape sizes must be positive, got {text!r}")
    return shape


def mlp_layers(widths):
    """(in, out) of each Linear of an MLP with these widths."""
    return list(zip(widths[:-1], widths[1:]))


def preset_shapes(name, batches=(PRESET_BATCH,)):
    """Distinct layer shapes of a DLRM config's bottom and top MLPs, one set per batch size."""
    if name not in DLRM_CONFIGS:
        raise ValueError(f"preset must be one of {sorted(DLRM_CONFIGS)}, got {name!r}")
    config = DLRM_CONFIGS[name]
    layers = []
    for in_f, out_f in mlp_layers(config["bottom"]) + mlp_layers(config["top"]):
        if min(in_f, out_f) >= MIN_PRESET_WIDTH and (in_f, out_f) not in layers:
            layers.append((in_f, out_f))
    return [Shape(batch, in_f, out_f) for batch in batches for in_f, out_f in layers]


def active_blocks(n_blocks, density, generator, device):
    """Seeded random sorted int32 block list for a density (None at 1.0: all blocks)."""
    return random_blocks(n_blocks, "all" if density >= 1.0 else density, generator=generator, device=device)


@dataclass
class Problem:
    """One row's sparsity pattern: the active blocks every method of the row uses."""
    shape: Shape
    case: str
    density: float
    block_size: int
    in_blocks: torch.Tensor = None  # None = all active
    out_blocks: torch.Tensor = None

    def channels(self, blocks, features):
        """int64 channel index of the listed blocks (None = all channels)."""
        if blocks is None:
            return None
        starts = blocks.long()[:, None] * self.block_size
        idx = (starts + torch.arange(self.block_size, device=blocks.device)).flatten()
        return idx[idx < features]

    @property
    def in_channels(self):
        return self.channels(self.in_blocks, self.shape.in_features)

    @property
    def out_channels(self):
        return self.channels(self.out_blocks, self.shape.out_features)

    @property
    def active_in(self):
        return self.shape.in_features if self.in_blocks is None else self.in_channels.numel()

    @property
    def active_out(self):
        return self.shape.out_features if self.out_blocks is None else self.out_channels.numel()

    @property
    def weight_density(self):
        """Fraction of the weight actually active (block rounding makes it differ from nominal)."""
        return self.active_in * self.active_out / (self.shape.in_features * self.shape.out_features)


def make_problem(shape, case, density, block_size, seed=0, device="cpu"):
    """The active blocks of a (shape, case, density) row, seeded so reruns pick the same blocks."""
    if case not in CASES:
        raise ValueError(f"case must be one of {CASES}, got {case!r}")
    generator = torch.Generator().manual_seed(seed)
    n_out = num_blocks(shape.out_features, block_size)
    n_in = num_blocks(shape.in_features, block_size)
    out_blocks = active_blocks(n_out, density, generator, device)
    in_blocks = active_blocks(n_in, density, generator, device) if case == "in_out" else None
    return Problem(shape, case, density, block_size, in_blocks, out_blocks)

