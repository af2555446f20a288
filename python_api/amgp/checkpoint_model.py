"""A run's settings made to fit the model saved in a checkpoint, for a warm start on other data.

The MLP shapes come from the checkpoint's settings, the embedding tables from its weights: a model
trained on the built-in data (26 tables of 4..20000 rows) warm-starts on a Criteo file by hashing each
categorical into its own table's rows, and a Criteo model (26 tables of --max-ind-range rows) on the
built-in data by drawing ids over those tables. What cannot fit is one ValueError naming the flag.
"""
import dataclasses
import re

from .config import MODEL_KEYS
from .data.criteo import NUM_CATEGORICAL, NUM_INTEGER

# The settings that make a checkpoint's model, besides its tables (which its weights give).
ARCHITECTURE = tuple(key for key in MODEL_KEYS if key != "arch_embedding_size")
_TABLE = re.compile(r"emb_l\.(\d+)\.weight")


def saved_table_sizes(model_state):
    """Rows of each embedding table in a DLRM state_dict, in table order."""
    sizes = {int(match.group(1)): value.shape[0] for key, value in model_state.items()
             if (match := _TABLE.fullmatch(key))}
    return [sizes[i] for i in range(len(sizes))]


def fit_config_to_checkpoint(config, saved, path):
    """`config` with the architecture of the checkpoint `saved` (a load_checkpoint dict with "config" and
    "model") read from `path`; ValueError when its model cannot read config's data."""
    architecture = {key: saved["config"][key] for key in ARCHITECTURE if key in saved["config"]}
    tables = saved_table_sizes(saved["model"])
    if config.data_generation == "dataset":
        bottom = architecture.get("arch_mlp_bot", config.arch_mlp_bot)
        if len(tables) != NUM_CATEGORICAL:
            raise ValueError(f"the model in {path} (--load-model) has {len(tables)} embedding tables, but a Criteo file "
                             f"has {NUM_CATEGORICAL} categorical features: warm-start it on data with {len(tables)} "
                             f"tables, or train the first model with {NUM_CATEGORICAL}")
        if bottom[0] != NUM_INTEGER:
            raise ValueError(f"the model in {path} (--load-model): its bottom MLP takes {bottom[0]} dense features, but a Criteo "
                             f"file has {NUM_INTEGER} (--arch-mlp-bot of the first run)")
        if min(tables) < 2:
            raise ValueError(f"the model in {path} (--load-model): a Criteo table needs at least 2 rows, the checkpoint's smallest "
                             f"has {min(tables)}")
        return dataclasses.replace(config, load_model=None, max_ind_range=tables, **architecture)
    return dataclasses.replace(config, load_model=None, arch_embedding_size=tables, **architecture)
