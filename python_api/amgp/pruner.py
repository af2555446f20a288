"""The block pruner: which layers are pruned, to what density, which blocks go (the criterion), how
grown blocks start (the growth init), and the one place where masks change.

It knows nothing of steps or phases beyond what it is told: `update(sparse, step)` prunes every
selected layer to its density (sparse=True) or grows every block back (sparse=False). The phase plan
(amgp.phases) and GrowPruneSchedule decide when.
"""
import torch

from .pruning import GROWTH_INITS, block_magnitude, keep_top_blocks, selected_layers, set_block_masks_

CRITERIA = ("magnitude", "taylor")


def _agree_locally(masks):
    return masks


class BlockPruner:
    """Prunes and grows the output blocks of every prunable layer of `model` (see
    pruning.prunable_layers) whose name starts with one of the prefixes in `layers` (None: all).

    density: the fraction of output blocks each layer keeps when pruned: one float, or {layer name:
    float} (layers not named stay dense). criterion: "magnitude" (the block's incoming weight norm x
    outgoing weight norm) or "taylor" (|sum over the batch of activation x gradient| per channel, summed
    over the block, accumulated while `collecting_scores` is set). growth: "function_preserving",
    "zero" or "restore" (see pruning.init_grown_). With `optimizer`, pruned optimizer state is zeroed.
    seed: grown weights are drawn from (seed, step), so every rank and a resumed run grow the same.
    sync: {name: mask} -> {name: mask} agreed by every rank (e.g. amgp.distributed.broadcast_masks:
    rank 0's decision everywhere); decisions read this rank's weights and scores only.
    """

    def __init__(self, model, optimizer=None, density=0.5, layers=None, criterion="magnitude",
                 growth="function_preserving", seed=0, sync=None):
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
        if growth not in GROWTH_INITS:
            raise ValueError(f"growth must be one of {GROWTH_INITS}, got {growth!r}")
        if sync is not None and not callable(sync):
            raise TypeError(f"sync must be a callable ({{name: mask}} -> {{name: mask}}) or None, got {sync!r}")
        self.model = model
        self.optimizer = optimizer
        self.criterion = criterion
        self.growth = growth
        self.seed = seed
        self.sync = sync or _agree_locally
        self.pairs = selected_layers(model, layers)
        self.densities = self._densities(density)
        self.collecting_scores = False  # Taylor scores accumulate only while set (the dense steps before a pruning)
        self._snapshots = {}  # name -> (weight, bias) at pruning time, for growth="restore"
        # Kept on the layer's device: accumulating must not sync with the host every step.
        self._taylor = {name: torch.zeros(layer.n_out_blocks, dtype=torch.float64, device=layer.weight.device)
                        for name, layer, _ in self.pairs}
        self._hooks = [layer.register_forward_hook(self._taylor_hook(name))
                       for name, layer, _ in self.pairs] if criterion == "taylor" else []

    def _densities(self, density):
        names = [name for name, _, _ in self.pairs]
        if isinstance(density, dict):
            unknown = sorted(set(density) - set(names))
            if unknown:
                raise ValueError(f"density names unknown layers {unknown}; prunable layers: {names}")
            densities = {name: density.get(name, 1.0) for name in names}
        else:
            densities = dict.fromkeys(names, density)
        for name, value in densities.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise ValueError(f"density for layer {name!r} must be in (0, 1], got {value!r}")
        return densities

    # ----- decide, agree, apply ----------------------------------------------------------------
    def update(self, sparse, step):
        """Prune to the densities (sparse=True) or grow every block back (sparse=False), at `step`."""
        self.apply_masks(self.sync(self.decide_masks(sparse)), step)
        if sparse:
            self.reset_scores()

    @torch.no_grad()
    def decide_masks(self, sparse):
        """{layer name: bool block mask}: all-active unless `sparse`; then the top blocks by the
        criterion (scored on the current, dense, weights). Reads only this rank's model and scores."""
        masks = {}
        for name, layer, consumers in self.pairs:
            if not sparse or self.densities[name] >= 1.0:
                masks[name] = torch.ones(layer.n_out_blocks, dtype=torch.bool, device=layer.out_mask.device)
                continue
            if self.criterion == "taylor" and bool(self._taylor[name].any()):
                score = self._taylor[name].to(layer.out_mask.device)
            else:
                score = block_magnitude(layer, consumers)
            masks[name] = keep_top_blocks(score, self.densities[name])
        return masks

    def apply_masks(self, masks, step):
        """Set `masks`: prune (zero weights, bias, optimizer state) and grow (init per `growth`) as needed."""
        layers = self._involved_layers()
        if self.growth == "restore" and any(not bool(mask.all()) for mask in masks.values()):
            self._snapshots = {name: (m.weight.detach().clone(), None if m.bias is None else m.bias.detach().clone())
                               for name, m in layers.items()}
        # Seeded by (seed, step): every rank, and a resumed run, draws the same grown weights.
        generator = torch.Generator().manual_seed(hash((self.seed, step)) % (2**63))
        set_block_masks_([(layer, consumers) for _, layer, consumers in self.pairs],
                         [masks[name] for name, _, _ in self.pairs],
                         self.optimizer, self.growth, generator,
                         {id(layers[name]): value for name, value in self._snapshots.items()})

    def _involved_layers(self):
        names = {id(m): name for name, m in self.model.named_modules()}
        return {names[id(m)]: m for _, layer, consumers in self.pairs for m in (layer, *consumers)}

    # ----- Taylor scores -----------------------------------------------------------------------
    def _taylor_hook(self, name):
        def hook(layer, inputs, output):
            if not (self.collecting_scores and torch.is_grad_enabled() and output.requires_grad):
                return

            def accumulate(grad):
                per_channel = (output.detach() * grad).reshape(-1, output.shape[-1]).sum(0).abs().double()
                pad = layer.n_out_blocks * layer.block_size - layer.out_features
                blocks = torch.nn.functional.pad(per_channel, (0, pad)).view(layer.n_out_blocks, -1).sum(1)
                self._taylor[name] += blocks

            output.register_hook(accumulate)
        return hook

    def reset_scores(self):
        for scores in self._taylor.values():
            scores.zero_()

    def remove_hooks(self):
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    # ----- checkpointing -----------------------------------------------------------------------
    def state_dict(self):
        return {"taylor": {name: t.clone() for name, t in self._taylor.items()}, "snapshots": self._snapshots}

    def load_state_dict(self, state):
        for name, t in state["taylor"].items():
            self._taylor[name].copy_(t)
        self._snapshots = state["snapshots"]
