"""Loads the compiled extension softly: a missing or broken build never breaks `import amgp_kernels`."""
import torch  # noqa: F401  (the extension links against torch; load it first)

try:
    from amgp_kernels import _C
except ImportError as error:  # not built, or built against another torch
    _C = None
    LOAD_ERROR = f"{type(error).__name__}: {error}"
else:
    LOAD_ERROR = None

# Read once: backend choice runs on every call (and inside torch.compile traces).
COMPILED_BACKENDS = tuple(_C.build_info()["backends"]) if _C is not None else ()


def compiled_backends():
    """Backends compiled into _C ("cpu", and "cuda" when the CUDA sources were built)."""
    return list(COMPILED_BACKENDS)
