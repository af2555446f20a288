"""CTR data sets for amgp-dlrm: built-in synthetic data and the Criteo Kaggle text format."""
from .batches import Batch
from .build import DATA_ORDERS, build_data, criteo_rows, shuffle_seed, total_steps
from .criteo import CriteoData, CriteoFormatError, parse_criteo_line, read_criteo, read_criteo_rows, split_latest
from .synthetic import DEFAULT_TABLE_SIZES, SyntheticCTR
from .tasks import CAPACITY_SETTINGS, CAPACITY_TABLE_SIZES, TASKS

__all__ = ["Batch", "CAPACITY_SETTINGS", "CAPACITY_TABLE_SIZES", "CriteoData", "CriteoFormatError", "DATA_ORDERS", "DEFAULT_TABLE_SIZES", "SyntheticCTR",
           "build_data", "criteo_rows", "parse_criteo_line", "read_criteo", "read_criteo_rows", "shuffle_seed",
           "split_latest", "TASKS", "total_steps"]
