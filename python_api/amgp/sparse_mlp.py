"""SparseMLP: a chain of SparseLinear layers with fused activations and tied block masks."""
import torch
from torch import nn

from amgp_kernels.checks import check_bool

from .chain_plan import ChainPlan, chain_key
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

    _chain_plan = None  # see forward; a class default, so modules pickled before it existed load

    def forward(self, x):
        # The thin path (amgp/chain_plan.py): when nothing the layers' own checks look at has changed since
        # the last pass, their ops are called directly, the same calls the layers would make.
        if torch.compiler.is_compiling():
            return self._layer_by_layer(x)
        layers = self.layers._modules.values()
        key = chain_key(layers, x)
        plan = self._chain_plan
        if plan is not None and plan.key == key:
            return plan.run(layers, x)
        y = self._layer_by_layer(x)
        self._chain_plan = ChainPlan.after_pass(layers, key)
        return y

    def _layer_by_layer(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def __getstate__(self):
        # The plan holds ops (not picklable, and re-made by the next call anyway).
        state = self.__dict__.copy()
        state.pop("_chain_plan", None)
        return state
