"""The DLRM training loop with alternate growth and pruning (the default engine behind `amgp-dlrm`).

Trainer(config) builds data, model, optimizer, schedule and cost meter from a TrainConfig
(amgp.config), trains (resuming from a checkpoint when asked), evaluates on the test split and
returns the report dict (amgp.run_report). The same loop trains the baselines: dense (amgp=False)
and static pruning (static_prune=True). amgp.engines picks the Trainer of an engine.
"""
import math

import torch

from . import checkpoint, comm_hook, distributed, trainer_state
from .config import TrainConfig
from .data import build_data, total_steps
from .interrupt import TrainingInterrupted, deferred_interrupt
from .meter import CostMeter
from .metrics import ctr_metrics
from .progress import ProgressDisplay
from .run_report import run_report
from .trainer_parts import EngineParts, build_model, build_optimizer, build_schedule

__all__ = ["Trainer", "TrainConfig", "build_model", "build_optimizer", "build_schedule", "evaluate"]


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


class Trainer(EngineParts):
    """Everything a run holds; `run()` trains to the end (or to stop_at_step) and reports.

    data: a data set to use instead of building it from `config` (an experiment reads a file once).
    model_state: a model state_dict (weights and masks) to start from (warm start).
    optimizer_state: the optimizer's state_dict to go on from (warm start; None: a new optimizer).
    label: the progress bar's name (default: the mode, "amgp", "static" or "dense").
    """

    def __init__(self, config, data=None, model_state=None, label=None, optimizer_state=None):
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
        self.optimizer = self.build_optimizer()
        trainer_state.warm_start(self, model_state, optimizer_state)
        self.total_steps = total_steps(config, self.data)
        self.schedule = build_schedule(config, self.replicated_module(), self.optimizer, self.total_steps,
                                       self.pruned_layers(), self.stepped_optimizer())
        self.meter = CostMeter(self.replicated_module())
        self.logits = self.parallel_logits()
        # Under several ranks: counts the gradient bytes all-reduced (and sends active blocks only).
        self.allreduce = comm_hook.attach(self.data_parallel_module(), config.full_allreduce)
        self.test_batches = self.data.test_batches()
        self.step = 0
        self.history = {"loss": [], "auc": []}  # (step, value) pairs
        # Losses of the steps since the last print_freq report: checkpointed, so a resume logs the same.
        self.loss_sum, self.loss_count = torch.zeros((), device=self.device), 0
        resume = config.load_model or trainer_state.elastic_resume_path(config)
        if resume:
            self.restore(resume)
            if resume != config.load_model and self.main:
                print(f"restarted: resuming from {resume} (step {self.step})", flush=True)

    # ----- the loop ----------------------------------------------------------------------------
    def save(self, path, shown):
        """The one place a checkpoint is written (atomically, see amgp.checkpoint); by rank 0 only, which
        says so on `shown` (a ProgressDisplay)."""
        state = trainer_state.capture(self)  # on every rank: the loss window is averaged over ranks
        if self.main:
            checkpoint.save_checkpoint(path, state)
            shown.checkpoint(path, self.step)

    def restore(self, path):
        """Continue from checkpoint `path` (see amgp.trainer_state)."""
        trainer_state.restore(self, path)

    def _timed(self, name, work):
        return self.meter.timed(name, work, self.device)

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
        shown = ProgressDisplay(self.label, self.total_steps, self.step, config.progress and self.main, self.main)
        if self.history["loss"]:
            shown.loss = self.history["loss"][-1][1]
        while self.step < stop and not self.stop_request.requested:
            kind = self.schedule.phase.kind
            change = self._timed(kind, self.schedule.before_step)
            if change is not None and config.mode != "dense":
                shown.phase(self.step, change, config.amgp_density, self.schedule.density)
            batch = self._timed("data", lambda: self.data.train_batch(self.step))
            rows = batch.rows
            batch = self._timed("data", lambda: distributed.shard(batch).to(self.device))
            self.loss_sum += self._timed(kind, lambda: self.train_step(batch))
            self.loss_count += 1
            self.schedule.after_step()
            self.meter.record_step(kind, rows)
            if self.allreduce is not None:
                self.meter.record_allreduce(kind, self.allreduce.pop_counts())
            self.step += 1
            shown.advance()
            # The last window may be short at the end of training, not at --stop-at-step: the open window
            # is checkpointed, so a resumed run logs the losses an uninterrupted one does.
            if self.step % config.print_freq == 0 or self.step == self.total_steps:
                self._report_loss(shown)
            if config.test_freq and self.step % config.test_freq == 0 and self.step < self.total_steps:
                self.evaluate_into_history()
            if config.save_model and config.checkpoint_freq and self.step % config.checkpoint_freq == 0:
                self.save(config.save_model, shown)
        shown.close()
        if config.save_model:
            self.save(config.save_model, shown)
        if self.stop_request.requested:
            raise TrainingInterrupted(self.step, self.total_steps, config.save_model)
        return run_report(self, self.evaluate_into_history())

    def _report_loss(self, shown):
        """The mean loss of the steps since the last report (over every rank): into the history and shown."""
        mean_loss = float(distributed.mean_across_ranks(self.loss_sum)) / self.loss_count
        if not math.isfinite(mean_loss):
            raise FloatingPointError(f"training loss is {mean_loss} at step {self.step}: lower --learning-rate")
        self.history["loss"].append((self.step, mean_loss))
        shown.report(self.step, mean_loss, self.schedule.density)
        self.loss_sum, self.loss_count = torch.zeros((), device=self.device), 0

    def evaluate_into_history(self):
        metrics = self._timed("eval", lambda: evaluate(self.model, self.test_batches, self.device))
        self.history["auc"].append((self.step, metrics["auc"]))
        return metrics
