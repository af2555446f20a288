"""The data of a training run, built from its settings (a TrainConfig, or anything with its fields)."""
from .criteo import CriteoData, read_criteo_rows
from .synthetic import SyntheticCTR
from .tasks import teacher_settings

DATA_ORDERS = ("total", "none")  # dlrm's --data-randomize: shuffle the training lines, or keep file order


def criteo_rows(config):
    """(every valid line of config.raw_data_file in file order, lines skipped): see read_criteo_rows."""
    if not config.raw_data_file:
        raise ValueError("data_generation 'dataset' needs raw_data_file (--raw-data-file)")
    return read_criteo_rows(config.raw_data_file, config.max_ind_range, config.skip_malformed)


def build_data(config, day=0, drift=0.0, rows=None):
    """The run's data set. Synthetic data of a later `day` comes from a teacher drifted by `drift` per day
    (see amgp.data.synthetic). A Criteo file is read whole, unless `rows` = (rows, lines skipped) gives
    the lines to use (a part of a file read once, see amgp.recurring)."""
    if config.data_generation == "synthetic":
        return SyntheticCTR(seed=config.seed, batch_size=config.mini_batch_size, num_batches=config.num_batches,
                            num_test_batches=config.num_test_batches, table_sizes=config.arch_embedding_size,
                            num_dense=config.arch_mlp_bot[0], day=day, drift=drift,
                            **teacher_settings(config.synthetic_task))
    if config.data_generation == "dataset":
        lines, skipped = criteo_rows(config) if rows is None else rows
        return CriteoData.from_rows(lines, config.mini_batch_size, config.max_ind_range, config.test_fraction,
                                    skipped, shuffle_seed(config))
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
