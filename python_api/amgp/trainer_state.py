"""What a Trainer checkpoints and how it is restored (the file itself is written and checked by
amgp.checkpoint), and the states a warm start begins from. Resuming continues bit-exactly: model,
optimizer, schedule, cost meter, random number generators, history and the open loss window."""
import os

from . import checkpoint, distributed

REQUIRED = ("config", "step", "model", "optimizer", "schedule", "rng")
# Resume settings newer than some checkpoints, with the value those checkpoints were trained with.
SETTINGS_ADDED_LATER = {"synthetic_task": "default"}


def capture(trainer):
    """The trainer's state. Collective under torchrun (the loss window is averaged over ranks)."""
    return {**capture_loop(trainer), "model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict()}


def capture_loop(trainer):
    """All but model and optimizer: what every rank holds alike (the TorchRec engine saves its sharded model
    and optimizer apart). Collective under torchrun."""
    return {
        "config": trainer.config.resume_settings(),
        "step": trainer.step,
        "schedule": trainer.schedule.state_dict(),
        "meter": trainer.meter.state_dict(),
        "rng": checkpoint.capture_rng_state(),
        "history": trainer.history,
        "loss_window": (float(distributed.mean_across_ranks(trainer.loss_sum)), trainer.loss_count),
    }


def warm_start(trainer, model_state=None, optimizer_state=None):
    """Start `trainer` from a model state_dict (weights and masks) and an optimizer state_dict (None: as
    built); ValueError, without a traceback, when one does not fit what the settings build."""
    if model_state is not None:
        try:
            trainer.model.load_state_dict(model_state)
        except RuntimeError as error:  # shapes or names that do not fit
            raise ValueError(f"model_state does not fit the model these settings build: {error}") from None
    if optimizer_state is not None:
        try:
            trainer.optimizer.load_state_dict(optimizer_state)
        except (ValueError, KeyError) as error:  # another optimizer or parameter layout
            raise ValueError(f"optimizer_state does not fit the {trainer.config.optimizer} optimizer of this model: "
                             f"{error}") from None


def restore(trainer, path):
    """Load checkpoint `path` into `trainer`; CheckpointError when it was written with other settings."""
    if os.path.isdir(path):
        raise checkpoint.CheckpointError(f"checkpoint {path!r} is a directory: a checkpoint of --engine torchrec "
                                         "(this run's engine writes one file)")
    state = checkpoint.load_checkpoint(path, map_location=trainer.device, required=REQUIRED)
    check_settings(trainer, state, path)
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    restore_loop(trainer, state)


def check_settings(trainer, state, path):
    """CheckpointError when checkpoint `path` (its loaded `state`) was written with other settings."""
    settings = trainer.config.resume_settings()
    saved = {**SETTINGS_ADDED_LATER, **state["config"]}
    if saved != settings:
        differ = sorted(k for k, v in settings.items() if saved.get(k) != v)
        raise checkpoint.CheckpointError(f"checkpoint {path!r} was written with different settings: {differ}")


def restore_loop(trainer, state):
    """Restore what capture_loop captured."""
    trainer.schedule.load_state_dict(state["schedule"])
    trainer.meter.load_state_dict(state["meter"] if "meter" in state else _meter_before_split(state))
    checkpoint.restore_rng_state(state["rng"])
    trainer.step = state["step"]
    trainer.history = state["history"]
    loss_sum, trainer.loss_count = state.get("loss_window", (0.0, 0))
    trainer.loss_sum.fill_(loss_sum)


def _meter_before_split(state):
    """Checkpoints written before the cost meter existed kept its counters in the schedule's state and
    the data and evaluation clocks under "times"."""
    times = state.get("times", {})
    return {**state["schedule"], "other_times": {"data": times.get("data_s", 0.0), "eval": times.get("eval_s", 0.0)}}


def elastic_resume_path(config):
    """In a worker torchrun restarted after a failure: the run's own latest checkpoint (save_model), if one
    was written (a TorchRec engine directory may be at PATH.old after a save killed midway)."""
    path = config.save_model
    if path and distributed.restarted() and (os.path.exists(path) or os.path.isdir(f"{path}.old")):
        return path
    return None
