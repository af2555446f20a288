"""Checks of a TrainConfig's fields when it is made: a wrong type is a TypeError and a value out of range a
ValueError, each naming the field (TrainConfig(amgp_density="0.5") says so at once, not deep inside
training with Python's bare "'<' not supported"). Choices that the training code defines (optimizer,
engine, data_randomize) are checked where they are used, naming the field too."""
import math
import numbers
import os

from amgp_kernels.checks import check_bool, check_number

from .data.criteo import table_rows
from .data.tasks import TASKS
from .dlrm import INTERACTIONS
from .pruning import GROWTH_INITS
from .pruner import CRITERIA

POSITIVE_INTS = ("arch_sparse_feature_size", "num_test_batches", "mini_batch_size", "nepochs", "amgp_cycles",
                 "block_size", "print_freq")
NON_NEGATIVE_INTS = ("num_batches", "test_freq", "checkpoint_freq")
BOOLS = ("arch_interaction_itself", "skip_malformed", "use_gpu", "amgp", "static_prune", "progress",
         "full_allreduce")
PHASE_LENGTHS = ("amgp_warmup", "amgp_final_dense", "amgp_dense_steps")  # steps (int) or a fraction (float)
PATHS = ("raw_data_file", "save_model", "load_model")
CHOICES = {"arch_interaction_op": INTERACTIONS, "data_generation": ("synthetic", "dataset"), "amgp_criterion": CRITERIA,
           "amgp_growth": GROWTH_INITS, "synthetic_task": TASKS}


def _int(config, name, low, optional=False):
    value = getattr(config, name)
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"TrainConfig.{name} must be an int, got {value!r} ({type(value).__name__})")
    if low is not None and value < low:
        raise ValueError(f"TrainConfig.{name} must be >= {low}, got {value}")


def _number(config, name, accept, what):
    value = getattr(config, name)
    check_number(value, f"TrainConfig.{name}")
    if not (math.isfinite(value) and accept(value)):
        raise ValueError(f"TrainConfig.{name} must be {what}, got {value}")


def _int_list(config, name, optional=False):
    value = getattr(config, name)
    if optional and value is None:
        return
    if (isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple))
            or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in value)):
        raise TypeError(f"TrainConfig.{name} must be a list of ints, got {value!r}")
    if not value or min(value) <= 0:
        raise ValueError(f"TrainConfig.{name} must list positive ints, got {list(value)}")


def check_train_config(config):
    """TypeError / ValueError naming the first TrainConfig field that cannot be right."""
    for name in POSITIVE_INTS:
        _int(config, name, 1)
    for name in NON_NEGATIVE_INTS:
        _int(config, name, 0)
    _int(config, "seed", None)
    if isinstance(config.max_ind_range, (list, tuple)):
        table_rows(config.max_ind_range)  # one per Criteo table
    else:
        _int(config, "max_ind_range", 2)
    _int(config, "stop_at_step", 1, optional=True)
    for name in BOOLS:
        check_bool(getattr(config, name), f"TrainConfig.{name}")
    _number(config, "learning_rate", lambda v: v > 0, "a positive number")
    _number(config, "momentum", lambda v: v >= 0, "a number >= 0")
    _number(config, "weight_decay", lambda v: v >= 0, "a number >= 0")
    _number(config, "amgp_density", lambda v: 0 < v <= 1, "in (0, 1]")
    _number(config, "test_fraction", lambda v: 0 <= v < 1, "in [0, 1)")
    for name in PHASE_LENGTHS:
        _number(config, name, lambda v: v >= 0 and (isinstance(v, numbers.Integral) or v <= 1),
                "a step count >= 0 (int) or a fraction of the training in [0, 1] (float)")
    _int_list(config, "arch_mlp_bot")
    _int_list(config, "arch_mlp_top")
    _int_list(config, "arch_embedding_size", optional=True)
    for name, choices in CHOICES.items():
        if getattr(config, name) not in choices:
            raise ValueError(f"TrainConfig.{name} must be one of {choices}, got {getattr(config, name)!r}")
    for name in PATHS:
        value = getattr(config, name)
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"TrainConfig.{name} must be a path (str), got {value!r}")
    layers = config.amgp_layers
    if layers is not None and not isinstance(layers, str) and (
            not isinstance(layers, (list, tuple)) or not all(isinstance(p, str) for p in layers)):
        raise TypeError(f"TrainConfig.amgp_layers must be a list of layer-name prefixes (str), got {layers!r}")
