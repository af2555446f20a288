"""Backend choice for block_linear.

Backends: "cpu" and "cuda" (the compiled amgp_kernels._C ops, chosen by x's device), "triton"
(amgp_kernels.triton, CUDA tensors, or CPU tensors under TRITON_INTERPRET=1) and "reference" (pure
PyTorch, always there).

The "auto" rule, by x's device:
- CPU tensors: "cpu" when the C++ extension is built, else "reference" (never the Triton
  interpreter, which is for tests).
- CUDA tensors: "cuda" when the CUDA kernels were compiled, else "triton" when triton is importable,
  else "reference".
Both GPU backends compute the same contract. The intended rule is "the faster of CUDA and Triton per
the GPU benchmarks" (amgp-bench --device cuda, bench/RESULTS.md); neither backend could be timed on a
GPU when this was written, so auto prefers the compiled kernels (no JIT compile or autotuning pause on
first use). Revisit this rule with GPU benchmark numbers.

Precedence: the `backend=` argument of a call, then set_backend(), then $AMGP_BACKEND, then "auto".
"""
import os

import torch

from . import reference
from ._extension import LOAD_ERROR, compiled_backends

BACKENDS = ("auto", "cuda", "triton", "cpu", "reference")
_chosen = None  # set_backend(); None defers to $AMGP_BACKEND


class BackendUnavailableError(RuntimeError):
    """The requested backend was not built or cannot run on the given device."""


def _check_name(name, argument):
    if name not in BACKENDS:
        raise ValueError(f"{argument} must be one of {BACKENDS}, got {name!r}")
    return name


def set_backend(name):
    """Set the process-wide default backend (None: back to $AMGP_BACKEND / "auto")."""
    global _chosen
    _chosen = None if name is None else _check_name(name, "backend")


def get_backend():
    """The process-wide default backend name."""
    if _chosen is not None:
        return _chosen
    return _check_name(os.environ.get("AMGP_BACKEND", "auto") or "auto", "AMGP_BACKEND")


def _triton_module():
    try:
        from . import triton as triton_backend
    except ImportError:
        return None
    return triton_backend if triton_backend.AVAILABLE else None


def available_backends():
    """Backends usable in this process, besides "auto": compiled ones whose device is present (a CUDA
    build on a machine without a GPU lists "cpu" only; build_info() says what was compiled)."""
    names = [name for name in compiled_backends() if name != "cuda" or torch.cuda.is_available()]
    if _triton_module() is not None:
        names.append("triton")
    return names + ["reference"]


def _unavailable(name, why):
    built = ", ".join(available_backends())
    detail = f" (extension load error: {LOAD_ERROR})" if LOAD_ERROR and name in ("cpu", "cuda") else ""
    return BackendUnavailableError(f"backend {name!r} {why}; available here: {built}{detail}")


def _compiled_op(name, device):
    if name not in compiled_backends():
        raise _unavailable(name, "was not built")
    if device.type != name:
        raise _unavailable(name, f"runs on {name} tensors but x is on {device}")
    return torch.ops.amgp.block_linear


def _triton_op(device):
    module = _triton_module()
    if module is None:
        try:
            from . import triton as triton_backend
            why = triton_backend.UNAVAILABLE_REASON
        except ImportError as error:
            why = str(error)
        raise _unavailable("triton", f"is not available ({why})")
    if device.type != "cuda" and not module.INTERPRET:
        raise _unavailable("triton", f"runs on CUDA tensors (or on CPU under TRITON_INTERPRET=1) but x is on {device}")
    return module.block_linear_triton


def resolve(name, device):
    """The callable op(x, weight, bias, in_blocks, out_blocks, block_size, activation) for a backend."""
    name = get_backend() if name is None else _check_name(name, "backend")
    if name == "auto":
        name = auto_backend(device)
    if name == "reference":
        return reference.block_linear
    if name == "triton":
        return _triton_op(device)
    return _compiled_op(name, device)


def auto_backend(device):
    compiled = compiled_backends()
    if device.type == "cpu":
        return "cpu" if "cpu" in compiled else "reference"
    if device.type == "cuda":
        if "cuda" in compiled:
            return "cuda"
        return "triton" if _triton_module() is not None else "reference"
    return "reference"
