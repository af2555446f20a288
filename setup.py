"""Builds amgp_kernels._C (C++ always, CUDA when torch has CUDA and a toolkit is found).

Environment switches (each has a default):
  AMGP_CUDA=0|1          force the CUDA sources off / on (default: on when torch.version.cuda
                         is set and a CUDA toolkit is found; no GPU is needed to compile)
  CUDA_HOME              CUDA toolkit (default: CUDA_PATH, else /usr/local/cuda, else the toolkit the nvcc on
                         PATH reports; a toolkit has bin/nvcc and include/cuda_runtime_api.h)
  TORCH_CUDA_ARCH_LIST   archs to compile (default "8.0;9.0" when no GPU is visible)
  MAX_JOBS               parallel compile jobs (ninja)
"""
import glob
import os
import shutil
import subprocess
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCHS = "8.0;9.0"


def _toolkit_of_nvcc_on_path():
    """The toolkit the nvcc on PATH belongs to, as nvcc itself reports it (its TOP directory): an nvcc
    symlink or wrapper script in /usr/local/bin makes torch guess /usr/local, which is no toolkit."""
    nvcc = shutil.which("nvcc")
    if not nvcc:
        return None
    try:
        dry_run = subprocess.run([nvcc, "--dryrun", "-c", "probe.cu"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    for line in (dry_run.stdout + dry_run.stderr).splitlines():
        if line.startswith("#$ TOP="):
            return os.path.realpath(line[len("#$ TOP="):].strip())
    return None


def _is_toolkit(path):
    return bool(path) and all(os.path.exists(os.path.join(path, *part))
                              for part in (("bin", "nvcc"), ("include", "cuda_runtime_api.h")))


def find_cuda_home():
    """CUDA_HOME or CUDA_PATH if set, else /usr/local/cuda, else the toolkit of the nvcc on PATH."""
    for name in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(name) and not _is_toolkit(os.environ[name]):
            print(f"setup.py: {name}={os.environ[name]} has no bin/nvcc and include/cuda_runtime_api.h: ignored",
                  file=sys.stderr)
    for candidate in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if _is_toolkit(candidate):
            return candidate
    found = _toolkit_of_nvcc_on_path()
    return found if _is_toolkit(found) else None


def want_cuda(torch_cuda_version, cuda_home):
    flag = os.environ.get("AMGP_CUDA", "").strip()
    if flag not in ("", "0", "1"):
        sys.exit(f"AMGP_CUDA must be 0 or 1, got {flag!r}")
    if flag == "0":
        return False
    possible = bool(torch_cuda_version) and cuda_home is not None
    if flag == "1" and not possible:
        sys.exit(
            "AMGP_CUDA=1 but CUDA cannot be built: "
            f"torch.version.cuda={torch_cuda_version!r}, CUDA toolkit={cuda_home!r}"
        )
    return possible


cuda_home = find_cuda_home()
if cuda_home:
    # Must be set before torch.utils.cpp_extension is imported: it reads CUDA_HOME once.
    os.environ["CUDA_HOME"] = cuda_home

import torch  # noqa: E402
from torch.utils import cpp_extension  # noqa: E402

with_cuda = want_cuda(torch.version.cuda, cuda_home)
if with_cuda and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
    # Pin the list so build_info() reports what was compiled: the visible GPUs' archs
    # (what torch would pick), or the default list when there is no GPU.
    if torch.cuda.is_available():
        caps = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
        os.environ["TORCH_CUDA_ARCH_LIST"] = ";".join(f"{major}.{minor}" for major, minor in sorted(caps))
    else:
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCHS


def rel(paths):
    return sorted(os.path.relpath(p, HERE) for p in paths)


sources = rel(glob.glob(os.path.join(HERE, "csrc", "*.cpp")) + glob.glob(os.path.join(HERE, "csrc", "cpu", "*.cpp")))
define_macros = [("AMGP_TORCH_VERSION", f'"{torch.__version__}"')]
cxx_flags = ["-O3", "-fopenmp"]  # the C++ standard is left to torch (C++17 for old, C++20 for new)
extra_link_args = ["-fopenmp"]
extension = cpp_extension.CppExtension
extra_compile_args = {"cxx": cxx_flags}

if with_cuda:
    sources += rel(glob.glob(os.path.join(HERE, "csrc", "cuda", "*.cu")) + glob.glob(os.path.join(HERE, "csrc", "cuda", "*.cpp")))
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST", "")
    define_macros += [
        ("AMGP_WITH_CUDA", None),
        ("AMGP_CUDA_VERSION", f'"{torch.version.cuda}"'),
        ("AMGP_CUDA_ARCHS", f'"{archs}"'),
    ]
    extension = cpp_extension.CUDAExtension
    extra_compile_args = {
        "cxx": cxx_flags,
        "nvcc": ["-O3", "--expt-relaxed-constexpr", "-lineinfo"],
    }

setup(
    ext_modules=[
        extension(
            name="amgp_kernels._C",
            sources=sources,
            include_dirs=[os.path.join(HERE, "csrc")],
            define_macros=define_macros,
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
        )
    ],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
