"""AMGP on TorchRec models: `sparsify` turns every TorchRec MLP (Perceptron chains, and the over arch's
last Linear) into block-sparse layers in place; `engine` trains torchrec.models.dlrm.DLRM under
DistributedModelParallel for `amgp-dlrm --engine torchrec`.

Optional: importing this package needs torchrec (and fbgemm-gpu); the rest of amgp never imports it.
"""
try:
    import torchrec  # noqa: F401
except ImportError as error:  # a clear message instead of a bare ModuleNotFoundError deep in a stack
    raise ImportError(
        "amgp.torchrec needs TorchRec: pip install 'amgp[torchrec]' (CPU machines: see the README section "
        f"'Training at scale with TorchRec' for the working version set). Import failed with: {error}") from error

from .sparsify import pipeline_steps, sparsify

__all__ = ["pipeline_steps", "sparsify"]
