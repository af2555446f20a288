"""amgp.DLRM: embedding bags + bottom MLP + feature interaction + top MLP with a sigmoid head.

Structure and argument names follow facebookresearch/dlrm (dlrm_s_pytorch.py): the bottom MLP maps
the dense features to `arch_sparse_feature_size` (for the "dot" interaction), the top MLP's input
width is computed from the interaction, and its last layer has one output (the click logit).
The MLPs are SparseMLPs (sparse=True) or PlainMLPs of nn.Linear with the same parameter names
(sparse=False), so a trained sparse model's state_dict loads into the plain one.
"""
import numbers

import torch
from torch import nn

from .sparse_linear import SparseLinear
from .sparse_mlp import SparseMLP

INTERACTIONS = ("dot", "cat")


class PlainMLP(nn.Module):
    """nn.Linear layers with ReLU between them: SparseMLP's parameter names, no masks."""

    def __init__(self, sizes, bias=True, device=None, dtype=None):
        super().__init__()
        self.sizes = list(sizes)
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=bias, device=device, dtype=dtype)
                                    for a, b in zip(self.sizes[:-1], self.sizes[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


def _sizes(value, name):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a list of ints, got {value!r}")
    if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in value):
        raise TypeError(f"{name} must be a list of ints, got {list(value)}")
    sizes = [int(v) for v in value]
    if not sizes or any(v <= 0 for v in sizes):
        raise ValueError(f"{name} must list positive widths, got {sizes}")
    return sizes


def check_architecture(arch_embedding_size, arch_sparse_feature_size, arch_mlp_bot, arch_mlp_top,
                       arch_interaction_op="dot", spell=str):
    """(tables, dim, bottom, top) checked: TypeError/ValueError naming the argument as `spell(name)` (the
    command line passes its flag names). arch_embedding_size=None skips the tables (sized elsewhere)."""
    tables = None if arch_embedding_size is None else _sizes(arch_embedding_size, spell("arch_embedding_size"))
    bottom = _sizes(arch_mlp_bot, spell("arch_mlp_bot"))
    top = _sizes(arch_mlp_top, spell("arch_mlp_top"))
    dim = arch_sparse_feature_size
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"{spell('arch_sparse_feature_size')} must be an int, got {dim!r}")
    dim = int(dim)
    if dim <= 0:
        raise ValueError(f"{spell('arch_sparse_feature_size')} must be positive, got {dim}")
    if arch_interaction_op not in INTERACTIONS:
        raise ValueError(f"{spell('arch_interaction_op')} must be one of {INTERACTIONS}, got {arch_interaction_op!r}")
    if len(bottom) < 2:
        raise ValueError(f"{spell('arch_mlp_bot')} must list the input width and at least one layer, got {bottom}")
    if arch_interaction_op == "dot" and bottom[-1] != dim:
        raise ValueError(f"with {spell('arch_interaction_op')} dot the last width of {spell('arch_mlp_bot')} "
                         f"({bottom[-1]}) must equal {spell('arch_sparse_feature_size')} ({dim})")
    if top[-1] != 1:
        raise ValueError(f"{spell('arch_mlp_top')} must end with width 1 (the click logit), got {top}")
    return tables, dim, bottom, top


def top_input_width(num_tables, arch_sparse_feature_size, bottom_output, arch_interaction_op="dot",
                    arch_interaction_itself=False):
    """The top MLP's input width: the bottom MLP's output and the interaction of it with the embeddings."""
    features = num_tables + 1
    if arch_interaction_op == "dot":
        pairs = features * (features + 1) // 2 if arch_interaction_itself else features * (features - 1) // 2
        return bottom_output + pairs
    return bottom_output + num_tables * arch_sparse_feature_size


class DLRM(nn.Module):
    """Deep Learning Recommendation Model.

    arch_embedding_size: rows of each embedding table (one table per categorical feature).
    arch_sparse_feature_size: embedding dimension.
    arch_mlp_bot: bottom MLP widths, dense-feature count first, e.g. [13, 512, 256, 64]; with
        interaction "dot" the last width must equal arch_sparse_feature_size.
    arch_mlp_top: top MLP widths after its (computed) input width, last width 1, e.g. [512, 256, 1].
    arch_interaction_op: "dot" (pairwise dot products of the bottom output and the embeddings,
        concatenated with the bottom output) or "cat" (plain concatenation).
    arch_interaction_itself: include each vector's dot product with itself.
    sparse: SparseMLP (True) or PlainMLP of nn.Linear (False) for both MLPs.
    sparse_grad: sparse embedding gradients (for SGD / Adagrad on large tables).

    forward(dense_x, sparse_index) -> click probability (B,); logits(...) -> the logit.
    dense_x: float (B, len(dense features)); sparse_index: int64 (B, n_tables) with one id per table,
    or (B, n_tables, L) for bags of L ids (summed).
    """

    def __init__(self, arch_embedding_size, arch_sparse_feature_size, arch_mlp_bot, arch_mlp_top,
                 arch_interaction_op="dot", arch_interaction_itself=False, block_size=32, sparse=True,
                 sparse_grad=False, backend=None, device=None, dtype=None):
        super().__init__()
        tables, dim, bottom, top = check_architecture(arch_embedding_size, arch_sparse_feature_size, arch_mlp_bot,
                                                      arch_mlp_top, arch_interaction_op)
        if tables is None:
            raise TypeError("arch_embedding_size must be a list of table sizes, got None")
        self.arch_embedding_size = tables
        self.arch_sparse_feature_size = dim
        self.arch_interaction_op = arch_interaction_op
        self.arch_interaction_itself = bool(arch_interaction_itself)
        self.num_dense_features = bottom[0]
        factory = {"device": device, "dtype": dtype}
        self.emb_l = nn.ModuleList(nn.EmbeddingBag(n, dim, mode="sum", sparse=sparse_grad, **factory) for n in tables)
        for table in self.emb_l:
            bound = (1.0 / table.num_embeddings) ** 0.5  # dlrm's uniform init
            nn.init.uniform_(table.weight, -bound, bound)
        features = len(tables) + 1
        top = [top_input_width(len(tables), dim, bottom[-1], arch_interaction_op, arch_interaction_itself)] + top
        if sparse:
            mlp = dict(block_size=block_size, activation="relu", backend=backend, **factory)
            self.bot_l = SparseMLP(bottom, last_activation="relu", **mlp)
            self.top_l = SparseMLP(top, **mlp)
        else:
            self.bot_l = _PlainBottom(bottom, **factory)
            self.top_l = PlainMLP(top, **factory)
        offset = 0 if arch_interaction_itself else -1
        rows, cols = torch.tril_indices(features, features, offset=offset, device=device)
        # The pairs as positions in the flattened (features x features) Gram matrix: index_select's backward
        # (index_add) costs less than half of advanced indexing's (index_put with accumulation).
        self.register_buffer("_tril_flat", rows * features + cols, persistent=False)

    @property
    def sparse(self):
        return isinstance(self.bot_l, SparseMLP)

    def embed(self, sparse_index):
        if sparse_index.dim() not in (2, 3) or sparse_index.shape[1] != len(self.emb_l):
            raise ValueError(f"sparse_index must have shape (batch, {len(self.emb_l)}) or (batch, {len(self.emb_l)}, "
                             f"bag), got {tuple(sparse_index.shape)}")
        bags = sparse_index if sparse_index.dim() == 3 else sparse_index.unsqueeze(-1)
        return [table(bags[:, t]) for t, table in enumerate(self.emb_l)]

    def interact(self, x, embeddings):
        if self.arch_interaction_op == "cat":
            return torch.cat([x] + embeddings, dim=1)
        stacked = torch.stack([x] + embeddings, dim=1)  # (B, features, dim)
        gram = torch.bmm(stacked, stacked.transpose(1, 2))
        return torch.cat([x, gram.flatten(1).index_select(1, self._tril_flat)], dim=1)

    def logits(self, dense_x, sparse_index):
        if dense_x.dim() != 2 or dense_x.shape[1] != self.num_dense_features:
            raise ValueError(f"dense_x must have shape (batch, {self.num_dense_features}), got {tuple(dense_x.shape)}")
        x = self.bot_l(dense_x)
        return self.top_l(self.interact(x, self.embed(sparse_index))).squeeze(-1)

    def forward(self, dense_x, sparse_index):
        return torch.sigmoid(self.logits(dense_x, sparse_index))

    def config(self):
        """Constructor arguments that rebuild this architecture (see to_dense)."""
        return dict(arch_embedding_size=self.arch_embedding_size, arch_sparse_feature_size=self.arch_sparse_feature_size,
                    arch_mlp_bot=list(self.bot_l.sizes), arch_mlp_top=list(self.top_l.sizes[1:]),
                    arch_interaction_op=self.arch_interaction_op,
                    arch_interaction_itself=self.arch_interaction_itself)

    def to_dense(self):
        """A DLRM of plain nn.Linear layers computing this model's function (inactive blocks as zeros)."""
        plain = DLRM(**self.config(), sparse=False, device=self._tril_flat.device,
                     dtype=self.emb_l[0].weight.dtype)
        state = self.state_dict()
        for name, module in self.named_modules():
            if isinstance(module, SparseLinear):
                linear = module.to_linear()
                state[f"{name}.weight"] = linear.weight.detach()
                if linear.bias is not None:
                    state[f"{name}.bias"] = linear.bias.detach()
                state.pop(f"{name}.out_mask", None)
                state.pop(f"{name}.in_mask", None)
        plain.load_state_dict(state)
        return plain


class _PlainBottom(PlainMLP):
    """The bottom MLP also ends in a ReLU (as in dlrm)."""

    def forward(self, x):
        return torch.relu(super().forward(x))
