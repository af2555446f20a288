"""Triton backend of amgp_kernels.block_linear (forward, dX, dW, db over active channel blocks).

AVAILABLE: triton imports and can run here (a CUDA device, or TRITON_INTERPRET=1 for CPU tensors).
INTERPRET: running in Triton's interpreter (CPU; slow, for tests). UNAVAILABLE_REASON says why not.
Importing this package never fails: without triton, AVAILABLE is False and block_linear_triton raises.
"""
try:
    import triton  # noqa: F401  (absolute import: the real triton, not this package)
except ImportError as error:
    IMPORT_ERROR = f"{type(error).__name__}: {error}"
else:
    IMPORT_ERROR = None

import torch

if IMPORT_ERROR is None:
    from .configs import INTERPRET
    from .ops import block_linear_triton, block_linear_triton_backward
else:
    INTERPRET = False

    def block_linear_triton(*args, **kwargs):
        raise RuntimeError(f"the triton backend needs the triton package ({IMPORT_ERROR})")

    block_linear_triton_backward = block_linear_triton



def _interpreter_problem():
    """Triton < 3.8's interpreter converts 1-element arrays with int(), an error in NumPy >= 2.x: every
    kernel loop over a runtime bound fails there (an upstream defect, fixed in triton 3.8)."""
    import numpy

    try:
        int(numpy.array([1]))
    except TypeError:
        if tuple(int(part) for part in triton.__version__.split(".")[:2]) < (3, 8):
            return (f"triton {triton.__version__}'s interpreter cannot run loops with NumPy {numpy.__version__}; "
                    "use triton >= 3.8 or a GPU")
    return None


if IMPORT_ERROR is not None:
    UNAVAILABLE_REASON = f"triton is not importable ({IMPORT_ERROR})"
elif INTERPRET:
    UNAVAILABLE_REASON = _interpreter_problem()
else:
    UNAVAILABLE_REASON = None if torch.cuda.is_available() else "no CUDA GPU (and TRITON_INTERPRET is not set)"
AVAILABLE = UNAVAILABLE_REASON is None

__all__ = ["AVAILABLE", "IMPORT_ERROR", "INTERPRET", "UNAVAILABLE_REASON", "block_linear_triton",
           "block_linear_triton_backward"]
