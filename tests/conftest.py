import os

import pytest
import torch

# Triton runs on the CPU in its interpreter when there is no GPU. It must be set before triton is
# first imported, so it is done here, before any test module imports amgp_kernels.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="run tests marked slow (long opt-in runs)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: opt in with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def reference_calls(monkeypatch):
    """A list that grows by one entry per call of the reference backend's block_linear."""
    import amgp_kernels

    calls = []
    reference = amgp_kernels.reference.block_linear
    monkeypatch.setattr(amgp_kernels.reference, "block_linear", lambda *args: calls.append(1) or reference(*args))
    return calls
