"""The DLRM training loop with alternate growth and pruning (the engine behind `amgp-dlrm`).

`train(config)` builds data, model, optimizer and schedule from a TrainConfig, trains (resuming
from a checkpoint when asked), evaluates on the test split and returns the report dict. The same
loop trains the baselines: dense (amgp=False) and static pruning (static_prune=True).
"""
import dataclasses
import math
import time
from typing import Optional

import torch
from tqdm import tqdm

from . import checkpoint, distributed
from .config_checks import check_train_config
from .data import SyntheticCTR, read_criteo
from .dlrm import DLRM
from .interrupt import TrainingInterrupted, deferred_interrupt
from .metrics import ctr_metrics
from .run_messages import checkpoint_line, phase_line, progress_line
from .schedule import GrowPruneSchedule

OPTIMIZERS = ("sgd", "adagrad", "adam", "adamw")
ENGINES = ("amgp", "torchrec")  # amgp.DLRM under DDP, or TorchRec's DLRM under DMP (amgp.torchrec.engine)
DATA_ORDERS = ("total", "none")  # dlrm's --data-randomize: shuffle the training lines, or keep file order


@dataclasses.dataclass
class TrainConfig:
    # model (facebookresearch/dlrm names)
    arch_sparse_feature_size: int = 16
    arch_embedding_size: Optional[list] = None  # synthetic table sizes (default: built in)
    # MLP-heavy defaults (dlrm's Kaggle bottom MLP, a wider top MLP): MLPs dominate the step time.
    arch_mlp_bot: list = dataclasses.field(default_factory=lambda: [13, 512, 256, 64, 16])
    arch_mlp_top: list = dataclasses.field(default_factory=lambda: [1024, 1024, 512, 1])
    arch_interaction_op: str = "dot"
    arch_interaction_itself: bool = False
    # data
    data_generation: str = "synthetic"
    raw_data_file: Optional[str] = None
    max_ind_range: int = 100_000  # Criteo rows per table (or a list of 26: one per table)
    skip_malformed: bool = False
    data_randomize: str = "total"  # Criteo training lines: reshuffled every epoch from seed, or "none"
    test_fraction: float = 0.1
    num_test_batches: int = 16
    # training
    mini_batch_size: int = 2048
    num_batches: int = 200
    nepochs: int = 1
    optimizer: str = "adagrad"
    learning_rate: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    seed: int = 0
    use_gpu: bool = False
    backend: Optional[str] = None
    engine: str = "amgp"
    # AMGP
    amgp: bool = True
    static_prune: bool = False  # the static baseline: prune once after the warmup, train pruned to the end
    amgp_density: float = 0.5
    amgp_warmup: float = 0.1
    amgp_final_dense: float = 0.2
    amgp_dense_steps: float = 0.05
    amgp_cycles: int = 2
    amgp_criterion: str = "magnitude"
    amgp_growth: str = "function_preserving"
    amgp_layers: Optional[list] = None
    block_size: int = 32
    # reporting and checkpoints
    print_freq: int = 10
    test_freq: int = 0
    save_model: Optional[str] = None
    checkpoint_freq: int = 0
    load_model: Optional[str] = None
    stop_at_step: Optional[int] = None
    progress: bool = True

    def __post_init__(self):
        check_train_config(self)  # a wrong field is a TypeError/ValueError naming it, here, not mid-training

    def architecture(self):
        """The settings a checkpoint must agree with to be resumed."""
        keys = ("arch_sparse_feature_size", "arch_embedding_size", "arch_mlp_bot", "arch_mlp_top",
                "arch_interaction_op", "arch_interaction_itself", "data_generation", "mini_batch_size",
                "num_batches", "nepochs", "optimizer", "seed", "amgp", "static_prune", "data_randomize",
                "amgp_density", "amgp_warmup", "amgp_final_dense", "amgp_dense_steps", "amgp_cycles",
                "amgp_criterion", "amgp_growth", "amgp_layers", "block_size")
        return {key: getattr(self, key) for key in keys}

    @property
    def mode(self):
        """"static" (static_prune), "amgp" or "dense"."""
        return "static" if self.static_prune else "amgp" if self.amgp else "dense"


def build_data(config, day=0, drift=0.0):
    """The run's data set. Synthetic data of a later `day` comes from a teacher drifted by `drift` per day
    (see amgp.data.synthetic); the Criteo path reads the whole file."""
    if config.data_generation == "synthetic":
        return SyntheticCTR(seed=config.seed, batch_size=config.mini_batch_size, num_batches=config.num_batches,
                            num_test_batches=config.num_test_batches, table_sizes=config.arch_embedding_size,
                            num_dense=config.arch_mlp_bot[0], day=day, drift=drift)
    if config.data_generation == "dataset":
        if not config.raw_data_file:
            raise ValueError("data_generation 'dataset' needs raw_data_file (--raw-data-file)")
        return read_criteo(config.raw_data_file, config.max_ind_range, config.mini_batch_size,
                           config.test_fraction, config.skip_malformed, shuffle_seed=shuffle_seed(config))
    raise ValueError(f"data_generation must be 'synthetic' or 'dataset', got {config.data_generation!r}")


def shuffle_seed(config):
    """The seed of the Criteo training order (None: file order)."""
    if config.data_randomize not in DATA_ORDERS:
        raise ValueError(f"data_randomize must be one of {DATA_ORDERS}, got {config.data_randomize!r}")
    return config.seed if config.data_randomize == "total" else None


def total_steps(config, data):
    """Training steps of a run: num_batches (0: every batch of `data`, and never more) per epoch."""
    per_epoch = min(config.num_batches, data.num_batches) if config.num_batches > 0 else data.num_batches
    return per_epoch * config.nepochs


def sparse_embedding_grad(config):
    """Sparse embedding gradients where the optimizer applies them exactly (plain SGD, Adagrad), in a
    single process (DistributedDataParallel over NCCL averages dense gradients only)."""
    if distributed.launched_with_several_ranks():
        return False
    return config.weight_decay == 0 and (config.optimizer == "adagrad"
                                          or (config.optimizer == "sgd" and config.momentum == 0))


def build_model(config, data, device, sparse=True):
    if config.arch_mlp_bot[0] != data.num_dense:  # else the first forward fails on dense_x's shape
        raise ValueError(f"arch_mlp_bot starts with {config.arch_mlp_bot[0]} inputs, but the data has "
                         f"{data.num_dense} dense features")
    return DLRM(data.table_sizes, config.arch_sparse_feature_size, config.arch_mlp_bot, config.arch_mlp_top,
                config.arch_interaction_op, config.arch_interaction_itself, block_size=config.block_size,
                sparse=sparse, sparse_grad=sparse_embedding_grad(config), backend=config.backend, device=device)


def build_optimizer(config, model):
    """The optimizer for `model`'s parameters (or for `model`, an iterable of parameters)."""
    params = model.parameters() if isinstance(model, torch.nn.Module) else model
    lr, wd = config.learning_rate, config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=wd)
    if config.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=wd)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {config.optimizer!r}")


def build_schedule(config, model, optimizer, total_steps):
    """AMGP schedule; static pruning (warmup, then one sparse phase to the end); or (config.amgp False)
    a single dense phase that only counts FLOPs and time."""
    if config.static_prune:
        phases = dict(final_dense=0, dense_steps=0, cycles=1, end_full_size=False)
    else:
        phases = dict(final_dense=config.amgp_final_dense, dense_steps=config.amgp_dense_steps,
                      cycles=config.amgp_cycles if config.amgp else 0)
    return GrowPruneSchedule(model, total_steps, optimizer, density=config.amgp_density, warmup=config.amgp_warmup,
                             criterion=config.amgp_criterion, growth=config.amgp_growth, layers=config.amgp_layers,
                             seed=config.seed, **phases)


@torch.no_grad()
def evaluate(model, batches, device):
    was_training = model.training
    model.eval()
    labels, probabilities = [], []
    for batch in batches:
        batch = batch.to(device)
        probabilities.append(model(batch.dense, batch.sparse).float().cpu())
        labels.append(batch.label.cpu())
    model.train(was_training)
    return ctr_metrics(torch.cat(labels), torch.cat(probabilities))


class Trainer:
    """Everything a run holds; `run()` trains to the end (or to stop_at_step) and reports.

    data: a data set to use instead of building it from `config` (an experiment reads a file once).
    model_state: a model state_dict (weights and masks) to start from, with a new optimizer (warm start).
    label: the progress bar's name (default: the mode, "amgp", "static" or "dense").
    """

    def __init__(self, config, data=None, model_state=None, label=None):
        self.config = config
        self.label = label or config.mode
        if config.use_gpu and not torch.cuda.is_available():
            raise ValueError("use_gpu was requested but no CUDA GPU is available")
        # Under torchrun: join the process group; each rank trains on its shard of every global batch.
        self.device = distributed.init_from_env(config.use_gpu)
        self.main = distributed.is_main()
        torch.manual_seed(config.seed)
        self.data = build_data(config) if data is None else data
        self.model = self.build_model()
        if model_state is not None:
            try:
                self.model.load_state_dict(model_state)
            except RuntimeError as error:  # shapes or names that do not fit: say so without a traceback
                raise ValueError(f"model_state does not fit the model these settings build: {error}") from None
        self.optimizer = self.build_optimizer()
        self.total_steps = total_steps(config, self.data)
        self.schedule = build_schedule(config, self.replicated_module(), self.optimizer, self.total_steps)
        # Rank 0 decides every mask change and broadcasts it, so masks and weights never diverge.
        self.schedule.decide_masks = distributed.decided_on_rank(self.schedule.decide_masks)
        self.logits = self.parallel_logits()
        self.test_batches = self.data.test_batches()
        self.step = 0
        self.history = {"loss": [], "auc": []}  # (step, value) pairs
        self.times = {"data_s": 0.0, "eval_s": 0.0}
        # Losses of the steps since the last print_freq report: checkpointed, so a resume logs the same.
        self.loss_sum, self.loss_count = torch.zeros((), device=self.device), 0
        if config.load_model:
            self.load(config.load_model)

    # ----- what the engine builds (amgp.torchrec.engine.TorchRecTrainer overrides these) ---------
    def build_model(self):
        return build_model(self.config, self.data, self.device)

    def build_optimizer(self):
        return build_optimizer(self.config, self.model)

    def parallel_logits(self):
        """(dense, sparse) -> logits, training across ranks (gradients averaged)."""
        return distributed.data_parallel(self.model, "logits")

    def replicated_module(self):
        """The part of the model every rank holds whole: the schedule prunes its MLPs and the report
        compares its state across ranks."""
        return self.model

    # ----- checkpoints -------------------------------------------------------------------------
    def state(self):
        return {
            "config": self.config.architecture(),
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "rng": checkpoint.capture_rng_state(),
            "history": self.history,
            "times": self.times,
            "loss_window": (float(distributed.mean_across_ranks(self.loss_sum)), self.loss_count),
        }

    def save(self, path):
        """The one place a checkpoint is written (atomically, see amgp.checkpoint); by rank 0 only."""
        state = self.state()  # on every rank: the loss window is averaged over ranks
        if self.main:
            checkpoint.save_checkpoint(path, state)
            tqdm.write(checkpoint_line(path, self.step))

    def load(self, path):
        state = checkpoint.load_checkpoint(path, map_location=self.device,
                                           required=("config", "step", "model", "optimizer", "schedule", "rng"))
        if state["config"] != self.config.architecture():
            differ = sorted(k for k, v in self.config.architecture().items() if state["config"].get(k) != v)
            raise checkpoint.CheckpointError(f"checkpoint {path!r} was written with different settings: {differ}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        checkpoint.restore_rng_state(state["rng"])
        self.step = state["step"]
        self.history = state["history"]
        self.times = state["times"]
        loss_sum, self.loss_count = state.get("loss_window", (0.0, 0))
        self.loss_sum = torch.tensor(loss_sum, dtype=self.loss_sum.dtype, device=self.device)

    # ----- the loop ----------------------------------------------------------------------------
    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def train_step(self, batch):
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.logits(batch.dense, batch.sparse)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch.label)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def run(self):
        """Train to the end (or to stop_at_step) and report. Ctrl-C stops at the next step boundary, saves a
        checkpoint (with save_model) and raises amgp.interrupt.TrainingInterrupted. Under torchrun the
        launcher handles Ctrl-C (stopping every rank at one step would need a collective per step)."""
        with deferred_interrupt(enabled=distributed.world_size() == 1) as self.stop_request:
            return self._train()

    def _train(self):
        config = self.config
        stop = self.total_steps if config.stop_at_step is None else min(config.stop_at_step, self.total_steps)
        # disable=None: tqdm draws only on a terminal; a log gets the plain lines of _log_progress instead.
        bar = tqdm(total=self.total_steps, initial=self.step, disable=None if config.progress and self.main else True,
                   desc=self.label, unit="step", dynamic_ncols=True)
        mean_loss = self.history["loss"][-1][1] if self.history["loss"] else None  # none before the first report
        while self.step < stop and not self.stop_request.requested:
            started = time.perf_counter()
            change = self.schedule.before_step()
            if change is not None and config.mode != "dense" and self.main:
                bar.write(phase_line(self.step, change, config.amgp_density, self.schedule.density))
                self._show(bar, mean_loss)
            mask_time = time.perf_counter() - started
            started = time.perf_counter()
            batch = self.data.train_batch(self.step)
            global_rows = batch.rows
            batch = distributed.shard(batch).to(self.device)
            self._sync()
            self.times["data_s"] += time.perf_counter() - started
            started = time.perf_counter()
            self.loss_sum += self.train_step(batch)
            self.loss_count += 1
            self._sync()
            self.schedule.after_step(global_rows, mask_time + time.perf_counter() - started)
            self.step += 1
            bar.update(1)
            # The last window may be short at the end of training, not at --stop-at-step: the open window
            # is checkpointed, so a resumed run logs the losses an uninterrupted one does.
            if self.step % config.print_freq == 0 or self.step == self.total_steps:
                mean_loss = float(distributed.mean_across_ranks(self.loss_sum)) / self.loss_count
                if not math.isfinite(mean_loss):
                    raise FloatingPointError(f"training loss is {mean_loss} at step {self.step}: lower --learning-rate")
                self.history["loss"].append((self.step, mean_loss))
                self._show(bar, mean_loss)
                self._log_progress(bar, mean_loss)
                self.loss_sum, self.loss_count = torch.zeros((), device=self.device), 0
            if config.test_freq and self.step % config.test_freq == 0 and self.step < self.total_steps:
                self._evaluate_into_history()
            if config.save_model and config.checkpoint_freq and self.step % config.checkpoint_freq == 0:
                self.save(config.save_model)
        bar.close()
        if config.save_model:
            self.save(config.save_model)
        if self.stop_request.requested:
            raise TrainingInterrupted(self.step, self.total_steps, config.save_model)
        return self.report()

    def _show(self, bar, loss):
        shown = {} if loss is None else {"loss": f"{loss:.4f}"}
        bar.set_postfix(**shown, density=f"{self.schedule.density:.2f}")

    def _log_progress(self, bar, loss):
        """Where no bar is drawn (not a terminal) but progress was asked for: one plain line per report."""
        if bar.disable and self.config.progress and self.main:
            bar.write(progress_line(self.label, self.step, self.total_steps, loss, self.schedule.density))

    def _evaluate_into_history(self):
        started = time.perf_counter()
        metrics = evaluate(self.model, self.test_batches, self.device)
        self.times["eval_s"] += time.perf_counter() - started
        self.history["auc"].append((self.step, metrics["auc"]))
        return metrics

    def report(self):
        metrics = self._evaluate_into_history()
        summary = self.schedule.summary()
        wall = sum(summary["phase_times_s"].values())
        return {
            "mode": self.config.mode,
            "engine": self.config.engine,
            "steps": self.step,
            "total_steps": self.total_steps,
            "test_auc": metrics["auc"],
            "test_logloss": metrics["logloss"],
            "test_accuracy": metrics["accuracy"],
            **summary,
            "wall_time_s": wall,
            "data_time_s": self.times["data_s"],
            "eval_time_s": self.times["eval_s"],
            "final_density": self.schedule.density,
            "lines_skipped": getattr(self.data, "lines_skipped", 0),  # malformed Criteo lines (skip_malformed)
            "backend": self.backend_name(),
            "device": str(self.device),
            "world_size": distributed.world_size(),
            # Bit-for-bit comparison of every parameter and mask with rank 0's (empty: in sync).
            "ranks_differing_state": distributed.differing_state(self.replicated_module()),
            "history": self.history,
        }

    def backend_name(self):
        import amgp_kernels
        from amgp_kernels.backends import auto_backend
        name = self.config.backend or amgp_kernels.get_backend()
        return auto_backend(self.device) if name == "auto" else name


def make_trainer(config, **kwargs):
    """The Trainer of config.engine (TorchRec's is imported only when asked for); kwargs go to it."""
    if config.engine == "torchrec":
        from .torchrec.engine import TorchRecTrainer
        return TorchRecTrainer(config, **kwargs)
    if config.engine != "amgp":
        raise ValueError(f"engine must be one of {ENGINES}, got {config.engine!r}")
    return Trainer(config, **kwargs)


def train(config):
    """Train per `config` and return the report dict (see Trainer.report)."""
    return make_trainer(config).run()
