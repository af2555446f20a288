"""amgp_kernels: block_linear over active channel blocks (C++ CPU, CUDA, Triton and reference backends)."""
import torch

from . import reference
from ._extension import LOAD_ERROR, _C
from .api import block_linear
from .backends import BACKENDS, BackendUnavailableError, available_backends, get_backend, set_backend
from .backends import resolve as resolve_backend

if _C is not None:  # autograd of the compiled ops is registered in C++ (csrc/autograd.cpp)
    from .autograd import register_fakes as _register_fakes

    _register_fakes("amgp::block_linear", "amgp::block_linear_backward", "amgp::_block_linear_forward")
    for _name in ("active_sgd_step_", "active_adam_step_", "active_adagrad_step_"):  # in place, return nothing
        torch.library.register_fake(f"amgp::{_name}")(lambda *args: None)

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "available_backends",
    "block_linear",
    "build_info",
    "get_backend",
    "reference",
    "resolve_backend",
    "set_backend",
]


def build_info():
    """What this installation contains: compiled backends, CUDA archs, versions, usable backends."""
    info = dict(_C.build_info()) if _C is not None else {"backends": []}
    info["compiled_backends"] = info.pop("backends")
    info["extension_loaded"] = _C is not None
    info["extension_error"] = LOAD_ERROR
    info["torch_runtime_version"] = torch.__version__
    info["available_backends"] = available_backends()
    info["default_backend"] = get_backend()
    return info
