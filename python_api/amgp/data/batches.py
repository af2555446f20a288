"""The batch format shared by every data set, and batching of in-memory tensors."""
from typing import NamedTuple

import torch


class Batch(NamedTuple):
    dense: torch.Tensor   # float32 (B, num_dense)
    sparse: torch.Tensor  # int64 (B, num_tables): one category id per table
    label: torch.Tensor   # float32 (B,): 0 or 1

    def to(self, device):
        return Batch(*(t.to(device, non_blocking=True) for t in self))

    @property
    def rows(self):
        return self.label.shape[0]

