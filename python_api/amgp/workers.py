"""Independent runs in worker processes, each with its share of the CPU threads (small models train
faster as one process per core than as one process using every core)."""
import multiprocessing
import warnings
from concurrent.futures import ProcessPoolExecutor

import torch


def _start_worker(threads, warning_filters):
    torch.set_num_threads(threads)
    warnings.filters[:] = warning_filters  # what the caller silenced stays silent in its workers


def in_workers(function, items, jobs):
    """[function(item) for item in items], `jobs` at a time in spawned processes (function and items
    must pickle); the results in the order of `items`."""
    threads = max(1, torch.get_num_threads() // jobs)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                             initargs=(threads, list(warnings.filters))) as pool:
        return list(pool.map(function, items))
