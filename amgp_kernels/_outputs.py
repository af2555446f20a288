"""Output allocation of the Python-launched backends (Triton), with the same test mode as the compiled
ones (csrc/outputs.h): under testing.poisoned_outputs() new outputs start as NaN, so unwritten elements show."""
import torch

poison = False  # set only by amgp_kernels.testing.poisoned_outputs()


def new_output(shape, dtype, device):
    if poison:
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)
