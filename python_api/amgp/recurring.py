"""The recurring-training stage: after offline training a model keeps learning on newer data.

The newer data is "the next day": synthetic data from the teacher drifted by `drift`
(amgp.data.synthetic), or the latest `fraction` of a time-ordered Criteo file (the offline stage
then trains and tests on the lines before it; each stage's test split is its own latest lines).
The model is warm-started: its weights and masks, no growth or pruning. So an AMGP model (full-size
at the end of its training) goes on with full capacity, while a statically pruned or a narrow model
keeps its size. The optimizer goes on from the offline stage's state by default ("continue", as
incremental production training does: Adagrad's accumulated squares keep the step sizes the model
ended with); "fresh" starts a new optimizer at the full learning rate, which on real next-day data
undoes part of what the offline stage learned (bench/RESULTS.md).
"""
import copy
import dataclasses

from amgp_kernels.checks import check_int, check_number

from .checkpoint import load_checkpoint
from .checkpoint_model import fit_config_to_checkpoint
from .data import build_data, criteo_rows, split_latest
from .engines import make_trainer
from .train import evaluate


OPTIMIZER_STATES = ("continue", "fresh")


@dataclasses.dataclass(frozen=True)
class RecurringConfig:
    steps: int = 50         # training steps on the next day (Criteo: at most one pass over its training lines)
    drift: float = 0.3      # synthetic data: how far the teacher moves to the next day (see amgp.data.synthetic)
    fraction: float = 0.25  # Criteo: the latest fraction of the file's lines is the next day (1: the whole file)
    optimizer: str = "continue"  # the offline stage's optimizer state goes on, or "fresh": a new optimizer

    def __post_init__(self):
        if self.optimizer not in OPTIMIZER_STATES:
            raise ValueError(f"recurring optimizer must be one of {OPTIMIZER_STATES}, got {self.optimizer!r}")
        check_int(self.steps, "recurring steps", minimum=1)
        check_number(self.drift, "recurring drift")
        check_number(self.fraction, "recurring fraction")
        if not 0 <= self.drift <= 1:
            raise ValueError(f"recurring drift must be in [0, 1], got {self.drift}")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"recurring fraction must be in (0, 1], got {self.fraction}")


class Stages:
    """The data of the offline stage and of the next day (recurring=None: offline only), per seed;
    a Criteo file is read once."""

    def __init__(self, config, recurring=None):
        self.config, self.recurring = config, recurring
        if config.data_generation != "dataset":
            return
        rows, self.lines_skipped = criteo_rows(config)
        if recurring is None:
            self._offline_rows, self._next_rows = rows, None
        elif recurring.fraction == 1:
            self._offline_rows, self._next_rows = None, rows
        else:
            self._offline_rows, self._next_rows = split_latest(rows, recurring.fraction)

    def offline(self, seed):
        config = dataclasses.replace(self.config, seed=seed)
        if config.data_generation != "dataset":
            return build_data(config)
        return self._criteo(self._offline_rows, config, "the offline stage")

    def next_day(self, seed):
        if self.recurring is None:
            raise ValueError("next_day needs a recurring configuration")
        config = dataclasses.replace(self.config, seed=seed, num_batches=self.recurring.steps)
        if config.data_generation != "dataset":
            return build_data(config, day=1, drift=self.recurring.drift)
        return self._criteo(self._next_rows, config, "the next day")

    def _criteo(self, rows, config, stage):
        if rows is None:
            raise ValueError(f"recurring fraction 1 makes the whole file the next day: no lines are left for {stage}")
        return build_data(config, rows=(rows, self.lines_skipped))


def continue_training(config, model_state, data, steps, label="recurring", optimizer_state=None):
    """Warm start on `data`: the model of `config`'s architecture with `model_state` (weights and
    masks) and the optimizer state `optimizer_state` (None: a new optimizer), no growth or pruning,
    trained `steps` steps (Criteo: at most one pass). Returns the run's report (mode "recurring";
    test_* after training) with the test metrics on the same split before the first step as
    before_test_auc / before_test_logloss."""
    run = dataclasses.replace(config, amgp=False, static_prune=False, num_batches=steps, nepochs=1, load_model=None,
                              stop_at_step=None)
    trainer = make_trainer(run, data=data, model_state=model_state, label=label,
                           optimizer_state=copy.deepcopy(optimizer_state))
    before = evaluate(trainer.model, trainer.test_batches, trainer.device)
    report = trainer.run()
    return {**report, "mode": "recurring", "before_test_auc": before["auc"], "before_test_logloss": before["logloss"]}


def warm_start(config, path, recurring):
    """`amgp-dlrm --load-model PATH --recurring`: the model saved in checkpoint PATH (its architecture,
    weights and masks, and with recurring.optimizer "continue" its optimizer and that optimizer's
    state; not its schedule) trained recurring.steps steps on the next day of `config`'s data
    (config.save_model, if set, receives the result)."""
    saved = load_checkpoint(path, required=("config", "model"))
    config = fit_config_to_checkpoint(config, saved, path)  # its architecture and tables, on config's data
    optimizer_state = None
    if recurring.optimizer == "continue":
        if "optimizer" not in saved:
            raise ValueError(f"{path} (--load-model) holds no optimizer state to continue: use --recurring-optimizer "
                             "fresh")
        optimizer_state = saved["optimizer"]
        config = dataclasses.replace(config, optimizer=saved["config"]["optimizer"])
    data = Stages(config, recurring).next_day(config.seed)
    return continue_training(config, saved["model"], data, recurring.steps, optimizer_state=optimizer_state)
