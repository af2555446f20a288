"""Training-step benchmarks (forward + loss + backward + optimizer step), dense vs pruned at density d.

"mlp": the bottom and top MLPs of a DLRM config as a SparseMLP stack, the top MLP reading the
bottom MLP's output concatenated with a stand-in for the interaction features (DLRM's layout).
Compared: the same stack of plain nn.Linear + ReLU ("nn_linear"), the SparseMLP stack with every
block active (AMGP's dense phase) and pruned to each density (its sparse phase), and at each density the
compacted limit ("compacted": physically smaller nn.Linear layers holding only the active channels,
see compacted.py) and the contract floor ("contract_floor": the compacted model's forward and backward
plus what full-size parameters cost when nothing skips their inactive blocks: a fresh full-size weight gradient,
zeros included, and the optimizer step over the full-size parameters, every step; the sparse phase's block-sparse
step and kept weight gradients (docs/design.md) can beat it).
"dlrm": the full amgp.DLRM (embeddings, dot interaction, both MLPs), the same three ways
(sparse=False, i.e. nn.Linear MLPs, as the baseline). "top" / "bottom": the config's top or bottom MLP alone.
The sparse phase steps the optimizer over the active blocks only (amgp.active_step, as GrowPruneSchedule does);
"sparse_full_step" is the same pruned model stepped by the optimizer over its full-size parameters.
"""
import copy
import sys

import torch
from torch import nn
from tqdm import tqdm

from .. import DLRM, SparseLinear, SparseMLP, prune_blocks
from ..active_step import install as install_active_step
from ..pruning import weight_density
from . import metrics
from .cases import DLRM_CONFIGS
from .compacted import compacted_model
from .timing import measure_interleaved

MODELS = ("mlp", "dlrm", "top", "bottom")
OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
              "adagrad": torch.optim.Adagrad}
LEARNING_RATE = 0.01
DLRM_TABLES = 26  # Criteo's categorical features
DLRM_TABLE_ROWS = 10_000


class MLPStack(nn.Module):
    """DLRM's bottom MLP -> concat with interaction features -> top MLP (logit out)."""

    def __init__(self, bottom, top):
        super().__init__()
        self.bottom, self.top = bottom, top

    def forward(self, dense, interaction):
        return self.top(torch.cat([self.bottom(dense), interaction], dim=1))


def _torch_mlp(widths, last_relu, device, dtype):
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b, device=device, dtype=dtype))
        if i < len(widths) - 2 or last_relu:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def mlp_stack(config_name, kind, block_size=32, backend=None, device="cpu", dtype=torch.float32):
    """The MLP stack of a DLRM config; kind "torch" (nn.Linear) or "sparse" (SparseMLP)."""
    config = DLRM_CONFIGS[config_name]
    if kind == "torch":
        return MLPStack(_torch_mlp(config["bottom"], True, device, dtype),
                        _torch_mlp(config["top"], False, device, dtype))
    factory = {"block_size": block_size, "backend": backend, "device": device, "dtype": dtype}
    return MLPStack(SparseMLP(config["bottom"], last_activation="relu", **factory),
                    SparseMLP(config["top"], **factory))


def mlp_batches(config_name, batch, copies, device, dtype, seed=0):
    """Pre-made ((dense, interaction), label) batches to rotate through."""
    config = DLRM_CONFIGS[config_name]
    interaction = config["top"][0] - config["bottom"][-1]
    generator = torch.Generator().manual_seed(seed)
    return [((torch.randn(batch, config["bottom"][0], generator=generator).to(device, dtype),
              torch.randn(batch, interaction, generator=generator).to(device, dtype)),
             torch.randint(0, 2, (batch, 1), generator=generator).to(device, dtype)) for _ in range(copies)]


def _logits(model):
    """The model's logit function: DLRM.logits, or the module itself (MLP stacks)."""
    return getattr(model, "logits", model)


def training_step(model, batches, optimizer):
    """step(i): one optimizer step on batch i % len(batches) (BCE-with-logits loss)."""
    loss_fn = nn.BCEWithLogitsLoss()
    logits = _logits(model)

    def step(i):
        inputs, label = batches[i % len(batches)]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(logits(*inputs), label)
        loss.backward()
        optimizer.step()

    return step


def contract_floor_step(compacted, pruned, batches, optimizer_class=torch.optim.SGD):
    """step(i): the compacted model's forward and backward, then one SGD step over its parameters outside the
    MLPs (embeddings) and over full-size stand-ins of the pruned model's MLP parameters, each given a fresh
    full-size zero gradient: the MLP parameters, their gradients and the optimizer's work at their full size."""
    loss_fn = nn.BCEWithLogitsLoss()
    logits = _logits(compacted)
    mlp_names = {f"{module_name}.{name}".lstrip(".") for module_name, module in pruned.named_modules()
                 if isinstance(module, SparseLinear) for name, _ in module.named_parameters(recurse=False)}
    others = [compacted.get_parameter(name) for name, _ in pruned.named_parameters() if name not in mlp_names]
    full_size = [torch.zeros_like(p) for name, p in pruned.named_parameters() if name in mlp_names]
    optimizer = optimizer_class(others + full_size, lr=LEARNING_RATE)

    def step(i):
        inputs, label = batches[i % len(batches)]
        for p in compacted.parameters():
            p.grad = None
        loss_fn(logits(*inputs), label).backward()
        for p in full_size:
            p.grad = torch.zeros_like(p)
        optimizer.step()

    return step


def _step(method, model, batches, optimizer="sgd"):
    optimizer_class = OPTIMIZERS[optimizer]
    if method == "contract_floor":
        return contract_floor_step(*model, batches, optimizer_class)
    step_optimizer = optimizer_class(model.parameters(), lr=LEARNING_RATE)
    if method == "sparse_phase":
        install_active_step(step_optimizer, model)
    return training_step(model, batches, step_optimizer)


def _variants(dense_sparse, densities, torch_model=None):
    """(method, density, model, MLP weight density): the nn.Linear baseline, the dense phase, and each sparse
    phase with its compacted limit and contract floor (whose model is the pair (compacted, pruned))."""
    variants = [("nn_linear", 1.0, torch_model, 1.0)] if torch_model is not None else []
    variants.append(("dense_phase", 1.0, dense_sparse, 1.0))
    for density in densities:
        if density < 1.0:
            pruned = copy.deepcopy(dense_sparse)
            prune_blocks(pruned, density)
            active = weight_density(pruned)
            limit = compacted_model(pruned)
            # Its own copy: a variant timed right after another on the same model would find it in cache.
            variants += [("sparse_phase", density, pruned, active),
                         ("sparse_full_step", density, copy.deepcopy(pruned), active),
                         ("compacted", density, limit, active), ("contract_floor", density, (limit, pruned), active)]
    return variants


def _models_and_batches(kind, config_name, batch, copies, device, dtype, block_size, backend, seed):
    """(sparse model, nn.Linear baseline, batches) of one model kind."""
    if kind == "mlp":
        torch.manual_seed(seed)
        sparse = mlp_stack(config_name, "sparse", block_size, backend, device, dtype)
        baseline = mlp_stack(config_name, "torch", device=device, dtype=dtype)
        return sparse, baseline, mlp_batches(config_name, batch, copies, device, dtype, seed)
    if kind == "dlrm":
        return dlrm_model_and_batches(config_name, batch, copies, device, dtype, block_size, backend, seed)
    if kind in ("top", "bottom"):
        return single_mlp_and_batches(config_name, kind, batch, copies, device, dtype, block_size, backend, seed)
    raise ValueError(f"training model must be one of {MODELS}, got {kind!r}")


def run_training_benchmarks(model_kinds, config_name, batch, densities, device="cpu", dtype=torch.float32,
                            block_size=32, backend=None, warmup=3, repeats=10, copies=3, seed=0, progress=True,
                            optimizer="sgd"):
    """Rows of training-step timings for each model kind in `model_kinds` (see MODELS), every model
    trained by `optimizer` (see OPTIMIZERS); the variants of one model are timed interleaved."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
    if "dlrm" in model_kinds and optimizer in ("adam", "adamw"):
        raise ValueError(f"the DLRM's embedding tables have sparse gradients, which {optimizer} does not take: "
                         "use sgd or adagrad, or the MLP models")
    rows = []
    with tqdm(total=len(model_kinds), desc="amgp-bench training", unit="model", file=sys.stderr,
              disable=None if progress else True) as bar:  # None: a bar on a terminal only
        for kind in model_kinds:
            bar.set_postfix_str(f"{kind}:{config_name}")
            sparse, baseline, batches = _models_and_batches(kind, config_name, batch, copies, device, dtype,
                                                            block_size, backend, seed)
            variants = {f"{method}@{density:g}": (method, density, model, active)
                        for method, density, model, active in _variants(sparse, densities, baseline)}
            steps = {name: _step(method, model, batches, optimizer) for name, (method, _, model, _) in variants.items()}
            timings, _ = measure_interleaved(steps, warmup, repeats, device)
            group = [{"model": f"{kind}:{config_name}", "batch": batch, "method": method, "density": density,
                      "weight_density": active, "dtype": str(dtype).replace("torch.", ""),
                      "block_size": block_size, "backend": backend or "auto", "optimizer": optimizer, "error": None,
                      **timings[name].summary()}
                     for name, (method, density, model, active) in variants.items()]
            _add_training_ratios(group)
            rows += group
            bar.update()
    return rows


def _add_training_ratios(group):
    """Speedups over the nn.Linear model and the dense phase; fractions of the compacted limit and of the
    contract floor at the row's density (the nn.Linear model is both at density 1)."""
    by_method = {r["method"]: r["median_ms"] for r in group if r["density"] == 1.0}
    limits = {r["density"]: r["median_ms"] for r in group if r["method"] == "compacted"}
    floors = {r["density"]: r["median_ms"] for r in group if r["method"] == "contract_floor"}
    limits[1.0] = floors[1.0] = by_method.get("nn_linear")
    for row in group:
        row["speedup_vs_nn_linear"] = metrics.speedup(by_method.get("nn_linear"), row["median_ms"])
        row["speedup_vs_dense_phase"] = metrics.speedup(by_method.get("dense_phase"), row["median_ms"])
        row["fraction_of_limit"] = metrics.fraction_of_limit(limits.get(row["density"]), row["median_ms"])
        row["fraction_of_floor"] = metrics.fraction_of_limit(floors.get(row["density"]), row["median_ms"])


def dlrm_model_and_batches(config_name, batch, copies, device, dtype, block_size, backend, seed):
    """amgp.DLRM of the config, sparse (SparseMLP) and plain (nn.Linear) with the same weights, and
    pre-made batches. The embedding tables are small (DLRM_TABLE_ROWS rows each, sparse gradients):
    what is measured here is the MLPs' share of a step, not the memory traffic of real tables."""
    config = DLRM_CONFIGS[config_name]
    arguments = dict(arch_embedding_size=[DLRM_TABLE_ROWS] * DLRM_TABLES,
                     arch_sparse_feature_size=config["bottom"][-1], arch_mlp_bot=config["bottom"],
                     arch_mlp_top=config["top"][1:], arch_interaction_op="dot", sparse_grad=True,
                     device=device, dtype=dtype)
    torch.manual_seed(seed)
    sparse = DLRM(**arguments, sparse=True, block_size=block_size, backend=backend)
    plain = DLRM(**arguments, sparse=False)
    plain.load_state_dict(sparse.state_dict())
    generator = torch.Generator().manual_seed(seed)
    batches = [((torch.randn(batch, config["bottom"][0], generator=generator).to(device, dtype),
                 torch.randint(0, DLRM_TABLE_ROWS, (batch, DLRM_TABLES), generator=generator).to(device)),
                torch.randint(0, 2, (batch,), generator=generator).to(device, dtype)) for _ in range(copies)]
    return sparse, plain, batches


def single_mlp_and_batches(config_name, kind, batch, copies, device, dtype, block_size, backend, seed):
    """The config's top MLP (logit out) or bottom MLP (ReLU out) alone: SparseMLP and nn.Sequential with the
    same weights, and pre-made (input, label) batches (labels shaped like the output)."""
    widths = DLRM_CONFIGS[config_name][kind]
    torch.manual_seed(seed)
    sparse = SparseMLP(widths, last_activation="relu" if kind == "bottom" else "none", block_size=block_size,
                       backend=backend, device=device, dtype=dtype)
    plain = _torch_mlp(widths, kind == "bottom", device, dtype)
    for linear, layer in zip([m for m in plain if isinstance(m, nn.Linear)], sparse.layers):
        linear.load_state_dict(layer.to_linear().state_dict())
    generator = torch.Generator().manual_seed(seed)
    batches = [((torch.randn(batch, widths[0], generator=generator).to(device, dtype),),
                torch.randint(0, 2, (batch, widths[-1]), generator=generator).to(device, dtype))
               for _ in range(copies)]
    return sparse, plain, batches
