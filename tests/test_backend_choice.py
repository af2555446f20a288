"""Which block_linear backend runs (amgp_kernels.backends): the "auto" rule per device and build, the precedence
backend= > set_backend() > $AMGP_BACKEND > "auto", and the error that names the backend asked for, why it cannot
run, what can, and the extension's load error. Builds and devices this machine lacks are stood in for by
replacing what the module reads (compiled_backends, the Triton module, LOAD_ERROR)."""
import sys
import types

import pytest
import torch

from amgp_kernels import backends, reference
from amgp_kernels.backends import BackendUnavailableError

CPU, CUDA, META = torch.device("cpu"), torch.device("cuda"), torch.device("meta")  # (device names: no GPU needed)
FAKE_TRITON = types.SimpleNamespace(AVAILABLE=True, INTERPRET=False, block_linear_triton=object())


@pytest.fixture
def build(monkeypatch):
    """build(compiled, triton=None, gpu=False, load_error=None): pretend this is what the machine has."""
    monkeypatch.setattr(backends, "_chosen", None)
    monkeypatch.delenv("AMGP_BACKEND", raising=False)

    def pretend(compiled, triton=None, gpu=False, load_error=None):
        monkeypatch.setattr(backends, "compiled_backends", lambda: tuple(compiled))
        monkeypatch.setattr(backends, "_triton_module", lambda: triton)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
        monkeypatch.setattr(backends, "LOAD_ERROR", load_error)

    return pretend


def test_auto_picks_the_compiled_kernels_then_triton_then_the_reference(build):
    build(["cpu", "cuda"], triton=FAKE_TRITON, gpu=True)
    assert [backends.auto_backend(d) for d in (CPU, CUDA, META)] == ["cpu", "cuda", "reference"]
    build(["cpu"], triton=FAKE_TRITON)
    assert backends.auto_backend(CUDA) == "triton"
    build([])
    assert [backends.auto_backend(d) for d in (CPU, CUDA)] == ["reference", "reference"]
    assert backends.resolve("auto", META) is reference.block_linear and backends.resolve(None, META) is reference.block_linear


def test_available_backends_list_only_what_can_run_here(build):
    build(["cpu", "cuda"], triton=FAKE_TRITON, gpu=False)
    assert backends.available_backends() == ["cpu", "triton", "reference"]  # a CUDA build without a GPU
    build(["cpu", "cuda"], gpu=True)
    assert backends.available_backends() == ["cpu", "cuda", "reference"]


def test_the_backend_asked_for_wins_over_set_backend_over_the_environment(build, monkeypatch):
    build(["cpu"])
    assert backends.get_backend() == "auto"
    monkeypatch.setenv("AMGP_BACKEND", "")
    assert backends.get_backend() == "auto"
    monkeypatch.setenv("AMGP_BACKEND", "reference")
    assert backends.get_backend() == "reference" and backends.resolve(None, CPU) is reference.block_linear
    backends.set_backend("cpu")
    assert backends.get_backend() == "cpu"
    assert backends.resolve("reference", CPU) is reference.block_linear
    backends.set_backend(None)
    assert backends.get_backend() == "reference"
    monkeypatch.setenv("AMGP_BACKEND", "fast")
    with pytest.raises(ValueError, match=r"^AMGP_BACKEND must be one of \('auto', 'cuda', 'triton', 'cpu', 'reference'\), "
                                         r"got 'fast'$"):
        backends.get_backend()
    with pytest.raises(ValueError, match=r"^backend must be one of .*, got 'fast'$"):
        backends.set_backend("fast")
    with pytest.raises(ValueError, match=r"^backend must be one of .*, got 'gpu'$"):
        backends.resolve("gpu", CPU)


def test_an_unavailable_backend_says_why_and_what_is_available(build):
    build(["cpu"], load_error="ImportError: no CUDA build")
    with pytest.raises(BackendUnavailableError, match=r"^backend 'cuda' was not built; available here: cpu, reference "
                                                      r"\(extension load error: ImportError: no CUDA build\)$"):
        backends.resolve("cuda", CPU)
    with pytest.raises(BackendUnavailableError, match=r"^backend 'cpu' runs on cpu tensors but x is on meta; "
                                                      r"available here: cpu, reference \(extension load error"):
        backends.resolve("cpu", META)
    with pytest.raises(BackendUnavailableError, match=r"^backend 'triton' is not available \(.+\); available here: "
                                                      r"cpu, reference$"):  # no load error: not the extension's fault
        backends.resolve("triton", CUDA)
    build(["cpu"], triton=FAKE_TRITON)
    with pytest.raises(BackendUnavailableError, match=r"^backend 'triton' runs on CUDA tensors \(or on CPU under "
                                                      r"TRITON_INTERPRET=1\) but x is on cpu; available here: cpu, "
                                                      r"triton, reference$"):
        backends.resolve("triton", CPU)
    assert backends.resolve("triton", CUDA) is FAKE_TRITON.block_linear_triton
    assert backends.resolve("cpu", CPU) is torch.ops.amgp.block_linear


def test_the_triton_backend_counts_only_where_it_can_run(monkeypatch):
    triton_backend = pytest.importorskip("amgp_kernels.triton")
    monkeypatch.setattr(triton_backend, "AVAILABLE", False)
    assert backends._triton_module() is None
    monkeypatch.setattr(triton_backend, "AVAILABLE", True)
    assert backends._triton_module() is triton_backend


def test_triton_unavailable_says_why(build, monkeypatch):
    build(["cpu"])  # no usable Triton module
    triton_backend = pytest.importorskip("amgp_kernels.triton")
    monkeypatch.setattr(triton_backend, "UNAVAILABLE_REASON", "a reason of its own")
    with pytest.raises(BackendUnavailableError, match=r"^backend 'triton' is not available \(a reason of its own\)"):
        backends.resolve("triton", CUDA)
    # Triton not even importable: the import error is the reason
    import amgp_kernels
    monkeypatch.delattr(amgp_kernels, "triton")
    monkeypatch.setitem(sys.modules, "amgp_kernels.triton", None)
    with pytest.raises(BackendUnavailableError, match=r"^backend 'triton' is not available \(import of "
                                                      r"amgp_kernels\.triton halted"):
        backends.resolve("triton", CUDA)
