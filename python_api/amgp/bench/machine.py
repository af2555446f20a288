"""Where and how a result was produced: machine, versions, build, threads, date and command."""
import datetime
import os
import platform
import shlex
import sys

import torch

import amgp_kernels


def cpu_model():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def triton_version():
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def command_line(argv=None):
    """The command as typed (program name and arguments), shell-quoted."""
    argv = sys.argv if argv is None else argv
    program = os.path.basename(argv[0]) if argv else "amgp-bench"
    if program in ("__main__.py", "cli.py"):
        program = "python -m amgp.bench"
    return " ".join([program] + [shlex.quote(a) for a in argv[1:]])


def describe(device, argv=None):
    """Everything recorded with a result."""
    device = torch.device(device)
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(argv),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "num_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": triton_version(),
        "amgp_build_info": _jsonable(amgp_kernels.build_info()),
        "device": str(device),
        "gpu": None,
    }
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        info["gpu"] = torch.cuda.get_device_name(index)
        info["gpu_capability"] = ".".join(map(str, torch.cuda.get_device_capability(index)))
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "AMGP_BACKEND", "TRITON_INTERPRET"):
        if variable in os.environ:
            info.setdefault("environment", {})[variable] = os.environ[variable]
    return info
