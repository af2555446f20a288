"""CTR data sets for amgp-dlrm: built-in synthetic data and the Criteo Kaggle text format."""
from .batches import Batch
from .criteo import CriteoData, CriteoFormatError, parse_criteo_line, read_criteo, read_criteo_rows, split_latest
from .synthetic import DEFAULT_TABLE_SIZES, SyntheticCTR

__all__ = ["Batch", "CriteoData", "CriteoFormatError", "DEFAULT_TABLE_SIZES", "SyntheticCTR", "parse_criteo_line",
           "read_criteo", "read_criteo_rows", "split_latest"]
