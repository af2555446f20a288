"""SparseMLP: a chain of SparseLinear layers with fused activations and tied block masks."""
from torch import nn

from amgp_kernels.checks import check_bool

from .masks import check_tied_mask_keys
from .sparse_linear import SparseLinear


class SparseMLP(nn.Module):
    """MLP of SparseLinear layers: sizes=[d0, d1, ..., dn] gives n layers.

    Hidden layers use `activation` (fused into the kernel); the last layer uses `last_activation`
    (None or "none": linear output). Layer l+1's in_mask *is* layer l's out_mask (one shared tensor),
    so pruning a hidden block removes both the channel and every weight that reads it.

    packed (default True): hidden activations hold only their active channels (docs/design.md, "The
    packed form"): the first layer reads the full input, the last writes the full output, and nothing in
    between is full-size. A hidden width that is not a multiple of block_size stays full-size (see
    SparseLinear.tie_in_mask). packed=False keeps every activation full-size; the results are the same.
    """

    def __init__(self, sizes, block_size=32, activation="relu", last_activation=None, bias=True, device=None,
                 dtype=None, backend=None, packed=True):
        super().__init__()
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes must list at least 2 widths (input and output), got {sizes}")
        last_activation = "none" if last_activation is None else last_activation
        self.sizes = sizes
        self.layers = nn.ModuleList(
            SparseLinear(sizes[i], sizes[i + 1], bias=bias, block_size=block_size, device=device, dtype=dtype,
                         activation=activation if i < len(sizes) - 2 else last_activation, backend=backend)
            for i in range(len(sizes) - 1)
        )
        check_bool(packed, "packed")
        for producer, consumer in zip(self.layers[:-1], self.layers[1:]):
            consumer.tie_in_mask(producer, packed=packed)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        check_tied_mask_keys(state_dict, [(f"{prefix}layers.{i}", f"{prefix}layers.{i + 1}")
                                          for i in range(len(self.layers) - 1)], error_msgs)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def set_out_mask(self, layer, mask):
        """Set hidden layer `layer`'s output blocks (and so layer+1's input blocks)."""
        if not 0 <= layer < len(self.layers):
            raise IndexError(f"layer must be in [0, {len(self.layers)}), got {layer}")
        self.layers[layer].set_out_mask(mask)
        if layer + 1 < len(self.layers):
            self.layers[layer + 1].refresh_indices()

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x
