"""Triton backend of amgp_kernels.block_linear (forward, dX, dW, db over active channel blocks).

AVAILABLE: triton imports and can run here (a CUDA device, or TRITON_INTERPRET=1 for CPU tensors).
INTERPRET: running in Triton's interpreter (CPU; slow, for tests). Importing this package never
fails: without triton (or with a triton older than 3.6), AVAILABLE is False and block_linear_triton raises.
"""
import re

OLDEST_TRITON = (3, 6)  # as pyproject's "triton" extra says: older releases are not tested

try:
    import triton  # noqa: F401  (absolute import: the real triton, not this package)
except ImportError as error:
    IMPORT_ERROR = f"{type(error).__name__}: {error}"
else:
    IMPORT_ERROR = None
    if tuple(int(part) for part in re.findall(r"\d+", triton.__version__)[:2]) < OLDEST_TRITON:
        # e.g. torch 2.4 brings triton 3.0
        IMPORT_ERROR = f"triton {triton.__version__} is installed; the triton backend needs triton >= 3.6"

import torch

if IMPORT_ERROR is None:
    from .configs import INTERPRET
    from .ops import block_linear_triton, block_linear_triton_backward
else:
    INTERPRET = False

    def block_linear_triton(*args, **kwargs):
        raise RuntimeError(f"the triton backend is unavailable: {IMPORT_ERROR}")

    block_linear_triton_backward = block_linear_triton

AVAILABLE = IMPORT_ERROR is None and (INTERPRET or torch.cuda.is_available())

__all__ = ["AVAILABLE", "IMPORT_ERROR", "INTERPRET", "block_linear_triton", "block_linear_triton_backward"]
