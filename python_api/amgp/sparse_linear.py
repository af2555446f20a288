"""SparseLinear: a drop-in nn.Linear whose GEMMs run over active channel blocks only."""
import math

import torch
from torch import nn

import amgp_kernels
from amgp_kernels.checks import check_bool, check_int

from .masks import as_block_mask, channel_mask, mask_to_indices, num_blocks

_MASKS = ("out_mask", "in_mask")


class _MaskTies:
    """Which layers share masks with a SparseLinear. Kept in a plain object, not as module attributes,
    so that the tied layers are not registered as submodules (no extra state_dict keys or modules)."""

    def __init__(self):
        self.producer = None
        self.consumers = []


class SparseLinear(nn.Module):
    """y = act(x @ weight.T + bias) over the active blocks of `in_mask` (input channels) and
    `out_mask` (output channels). Inactive output channels are exact zeros, inactive weight blocks
    get exactly zero gradient.

    Same parameter names, shapes and default init as nn.Linear. Masks are bool buffers with one entry
    per block of `block_size` channels (the last block may be shorter); an all-active mask is left out
    of state_dict, so a full-density layer's state_dict is exactly nn.Linear's, and a missing mask loads
    as all-active. Change masks with set_out_mask / set_in_mask (an in-place edit of a mask buffer is
    noticed too in eager mode; under torch.compile call refresh_indices() after one, since a compiled
    forward uses the cached lists); the int32 index lists the kernels use are rebuilt only when a mask
    changes.

    packed_in / packed_out (default False): the input / output holds only the active channels, in block
    order (its width changes with the mask). For chains of layers whose masks are tied:
    tie_in_mask(producer, packed=True) sets them (SparseMLP and sparsify do, on every hidden activation).
    """

    packed_in = packed_out = False  # class defaults: modules pickled before these existed still load
    _index_generation = 0  # bumped whenever an index list is rebuilt
    _call_plan = None  # (key, op): what the last checked call resolved, see forward

    def __init__(self, in_features, out_features, bias=True, block_size=32, device=None, dtype=None,
                 activation="none", backend=None, packed_in=False, packed_out=False):
        super().__init__()
        check_int(in_features, "in_features", minimum=1)
        check_int(out_features, "out_features", minimum=1)
        check_int(block_size, "block_size", minimum=1)
        if activation not in ("none", "relu"):
            raise ValueError(f"activation must be 'none' or 'relu', got {activation!r}")
        if backend is not None and backend not in amgp_kernels.BACKENDS:
            raise ValueError(f"backend must be one of {amgp_kernels.BACKENDS} or None, got {backend!r}")
        check_bool(packed_in, "packed_in")
        check_bool(packed_out, "packed_out")
        factory = {"device": device, "dtype": dtype}
        self.in_features = in_features
        self.out_features = out_features
        self.block_size = block_size
        self.activation = activation
        self.backend = backend
        self.packed_in = packed_in
        self.packed_out = packed_out
        self.weight = nn.Parameter(torch.empty((out_features, in_features), **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, **factory))
        else:
            self.register_parameter("bias", None)
        self.register_buffer("out_mask", torch.ones(num_blocks(out_features, block_size), dtype=torch.bool, device=device))
        self.register_buffer("in_mask", torch.ones(num_blocks(in_features, block_size), dtype=torch.bool, device=device))
        # Cached active block lists (None = all active); rebuilt when a mask changes.
        self.register_buffer("out_index", None, persistent=False)
        self.register_buffer("in_index", None, persistent=False)
        self._index_keys = {}
        self._mask_ties = _MaskTies()
        self.reset_parameters()

    def reset_parameters(self):
        """nn.Linear's default initialisation."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_features
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    # ----- masks -------------------------------------------------------------------------------
    @property
    def n_out_blocks(self):
        return num_blocks(self.out_features, self.block_size)

    @property
    def n_in_blocks(self):
        return num_blocks(self.in_features, self.block_size)

    def set_out_mask(self, mask):
        """Activate exactly the output blocks where `mask` (bool, one per block) is True."""
        self._set_mask("out_mask", mask)

    def set_in_mask(self, mask):
        """Activate exactly the input blocks where `mask` (bool, one per block) is True."""
        self._set_mask("in_mask", mask)

    def _set_mask(self, name, mask):
        buffer = getattr(self, name)
        mask = as_block_mask(mask, buffer.numel(), name, device=buffer.device)
        with torch.no_grad():
            buffer.copy_(mask)  # in place: keeps masks tied across layers (SparseMLP)
        self.refresh_indices()

    def tie_in_mask(self, producer, packed=False):
        """Make this layer's in_mask *be* `producer`'s out_mask (one tensor), for a layer that reads
        `producer`'s output (through element-wise steps at most): pruning a block of the producer's
        output then removes the channel and every weight that reads it. Ties survive .to() / .cuda() /
        deepcopy / pickling; a producer may feed several tied consumers, a consumer reads one producer.

        packed: the producer passes this layer its output packed (active channels only), unless that width
        is not a multiple of block_size: then it would depend on whether the short last block is active,
        which the GPU backends and torch.compile could only learn by reading the mask back, and the
        activation stays full-size."""
        check_bool(packed, "packed")
        if not isinstance(producer, SparseLinear):
            raise TypeError(f"producer must be a SparseLinear, got {type(producer).__name__}")
        if producer is self:
            raise ValueError("a layer cannot read its own output (producer is this layer)")
        if producer.out_features != self.in_features or producer.block_size != self.block_size:
            raise ValueError(
                f"producer's output ({producer.out_features} channels, block_size {producer.block_size}) does not "
                f"match this layer's input ({self.in_features} channels, block_size {self.block_size})")
        current = self._mask_ties.producer
        if current is not None and current is not producer:
            raise ValueError("this layer's in_mask is already tied to another producer")
        self._mask_ties.producer = producer
        if not any(c is self for c in producer._mask_ties.consumers):
            producer._mask_ties.consumers.append(self)
        self._buffers["in_mask"] = producer.out_mask
        producer.packed_out = self.packed_in = packed and producer.out_features % producer.block_size == 0
        self.refresh_indices()

    @property
    def mask_producer(self):
        """The SparseLinear whose out_mask is this layer's in_mask, or None."""
        return self._mask_ties.producer

    @property
    def mask_consumers(self):
        """The SparseLinear layers whose in_mask is this layer's out_mask (a tuple, maybe empty)."""
        return tuple(self._mask_ties.consumers)

    def _apply(self, fn, *args, **kwargs):
        # .to()/.cuda() replace buffers one by one, which would untie shared masks: tie them again.
        # Whichever of producer and consumer is moved last leaves both on the producer's new tensor.
        result = super()._apply(fn, *args, **kwargs)
        ties = self._mask_ties
        if ties.producer is not None:
            self._buffers["in_mask"] = ties.producer.out_mask
        for consumer in ties.consumers:
            consumer._buffers["in_mask"] = self.out_mask
        return result

    def _mask_key(self, name):
        mask = self._buffers[name]
        return (mask.data_ptr(), mask.device, mask._version)

    @property
    def mask_version(self):
        """A key that changes whenever either mask changes (its tensor or an in-place edit): caches of
        anything derived from the masks compare it instead of reading the masks."""
        return self._mask_key("out_mask"), self._mask_key("in_mask")

    def refresh_indices(self, force=False):
        """Rebuild the cached index lists of masks that changed since they were built."""
        for name, index_name in zip(_MASKS, ("out_index", "in_index")):
            key = self._mask_key(name)
            if force or self._index_keys.get(name) != key:
                mask = getattr(self, name)
                setattr(self, index_name, mask_to_indices(mask))
                self._index_keys[name] = key
                self._index_generation += 1

    @property
    def out_channel_mask(self):
        """Bool (out_features,): True for active output channels."""
        self.refresh_indices()  # the mask may have changed in place since the last call
        return channel_mask(self.out_index, self.out_features, self.block_size, self.weight.device)

    @property
    def in_channel_mask(self):
        """Bool (in_features,): True for active input channels."""
        self.refresh_indices()  # a tied producer's set_out_mask changes this layer's in_mask
        return channel_mask(self.in_index, self.in_features, self.block_size, self.weight.device)

    @property
    def weight_mask(self):
        """Bool (out_features, in_features): True where the weight is active."""
        return self.out_channel_mask[:, None] & self.in_channel_mask[None, :]

    @property
    def density(self):
        """Fraction of weight entries in active blocks (1.0 = dense)."""
        self.refresh_indices()
        return float(self.out_channel_mask.sum()) * float(self.in_channel_mask.sum()) / (
            self.out_features * self.in_features)

    # ----- forward -----------------------------------------------------------------------------
    def forward(self, x):
        if torch.compiler.is_compiling() or torch._C._get_tracing_state():
            return self._checked_call(x)  # a trace records the op, the same on every call
        self.refresh_indices()
        # The thin path: block_linear's argument checks and backend choice depend only on what this key
        # holds, so a call with the key of the last checked call goes straight to the op (~10 us less per
        # call at small batch). Tensor subclasses (DTensor, __torch_function__) always take the checked call.
        params, buffers = self._parameters, self._buffers
        weight, bias = params["weight"], params["bias"]
        key = (type(x), x.dtype, x.device, x.shape[-1:], id(weight), id(bias), weight.dtype, weight.device,
               self._index_generation, self.backend, amgp_kernels.get_backend())
        plan = self._call_plan
        if plan is not None and plan[0] == key:
            return plan[1](x, weight, bias, buffers["in_index"], buffers["out_index"], self.block_size,
                           self.activation, self.packed_in, self.packed_out)
        y = self._checked_call(x)
        plain = type(x) is torch.Tensor and type(weight) is nn.Parameter and type(y) is torch.Tensor
        self._call_plan = (key, self._plain_call(x.device)) if plain else None
        return y

    def _plain_call(self, device):
        """The op for the thin path. With every block active the CPU kernel is one addmm (and a ReLU): then
        F.linear itself, which saves the op's ~5 us of autograd and checks per call (dense phases at small batch)."""
        op = amgp_kernels.resolve_backend(self.backend, device)
        if device.type == "cpu" and op is torch.ops.amgp.block_linear and self.out_index is None \
                and self.in_index is None:
            return _dense_call
        return op

    def __getstate__(self):
        # The call plan holds an op and types (not picklable, and re-made by the first call anyway).
        state = self.__dict__.copy()
        state.pop("_call_plan", None)
        return state

    def _checked_call(self, x):
        return amgp_kernels.block_linear(
            x, self.weight, self.bias, self.in_index, self.out_index, self.block_size, self.activation,
            self.packed_in, self.packed_out, backend=self.backend, validate=False,
        )

    def extra_repr(self):
        act = f", activation={self.activation}" if self.activation != "none" else ""
        packed = "".join(f", {name}=True" for name in ("packed_in", "packed_out") if getattr(self, name))
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"block_size={self.block_size}, density={self.density:.3f}{act}{packed}")

    # ----- conversion --------------------------------------------------------------------------
    @classmethod
    def from_linear(cls, linear, block_size=32, activation="none", backend=None, share_parameters=False):
        """A SparseLinear (all blocks active) with `linear`'s weights, device and dtype: copies of them,
        or (share_parameters=True) the same Parameter objects, so that an optimizer built on `linear`
        goes on updating the new layer."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        device = "meta" if share_parameters else linear.weight.device
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, block_size=block_size,
                    device=device, dtype=linear.weight.dtype, activation=activation, backend=backend)
        layer.train(linear.training)
        if share_parameters:
            layer.weight, layer.bias = linear.weight, linear.bias
            for name in _MASKS:
                layer._buffers[name] = torch.ones_like(getattr(layer, name), device=linear.weight.device)
            layer.refresh_indices(force=True)
            return layer
        with torch.no_grad():
            layer.weight.copy_(linear.weight)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer

    def to_linear(self):
        """An nn.Linear computing this layer's function (inactive blocks as zeros). The fused
        activation, if any, is not part of nn.Linear: apply it after."""
        self.refresh_indices()
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(self.weight.masked_fill(~self.weight_mask, 0))
            if self.bias is not None:
                linear.bias.copy_(self.bias.masked_fill(~self.out_channel_mask, 0))
        return linear

    # ----- state_dict: masks only when something is pruned ------------------------------------
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for name in _MASKS:
            if bool(getattr(self, name).all()):
                destination.pop(prefix + name, None)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        absent = [name for name in _MASKS if prefix + name not in state_dict]
        for name in _MASKS:
            key = prefix + name
            if key in state_dict:
                value = state_dict[key]
                if isinstance(value, torch.Tensor) and value.dtype != torch.bool:
                    error_msgs.append(f"{key} must be a bool mask, got dtype {value.dtype}")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        for name in absent:
            if prefix + name in missing_keys:
                missing_keys.remove(prefix + name)
            with torch.no_grad():
                getattr(self, name).fill_(True)
        self.refresh_indices(force=True)


def _dense_call(x, weight, bias, in_index, out_index, block_size, activation, packed_in, packed_out):
    """block_linear with every block active (both layouts are the full one): what the CPU kernel computes."""
    y = nn.functional.linear(x, weight, bias)
    return torch.relu(y) if activation == "relu" else y
