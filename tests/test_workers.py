"""amgp.workers.in_workers (an experiment's seeds run in parallel): results in the order of the items, each
worker with its share of the CPU threads, and the caller's warning filters in force in every worker."""
import os
import time
import warnings

import pytest
import torch

from amgp.workers import in_workers


CALLER_STATE = []  # what the caller put here in memory; a spawned worker imports this module afresh


def pid_and_caller_state(_):
    time.sleep(0.3)  # long enough that a second worker, if there were one, would take an item
    return os.getpid(), list(CALLER_STATE)


def doubled_with_threads_and_filter(item):
    """(2 * item, this worker's torch threads, whether the caller's filter reached it); runs in a spawned worker."""
    silenced = any(action == "ignore" and message is not None and message.pattern == "a test filter"
                   for action, message, *_ in warnings.filters)
    return 2 * item, torch.get_num_threads(), silenced


@pytest.fixture
def four_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(before)


def test_results_keep_the_items_order_and_workers_share_the_threads(four_threads):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="a test filter")
        results = in_workers(doubled_with_threads_and_filter, [3, 1, 2], jobs=2)
    assert results == [(6, 2, True), (2, 2, True), (4, 2, True)]


def test_more_jobs_than_threads_still_give_each_worker_one_thread(four_threads):
    assert in_workers(doubled_with_threads_and_filter, [5], jobs=8) == [(10, 1, False)]


def test_workers_start_fresh_and_there_are_no_more_of_them_than_jobs():
    """Spawned, not forked: a worker does not inherit the caller's memory (nor its torch threads' state)."""
    CALLER_STATE.append("set in the caller")
    try:
        results = in_workers(pid_and_caller_state, [1, 2, 3], jobs=1)
    finally:
        CALLER_STATE.clear()
    assert [state for _, state in results] == [[], [], []]
    assert len({pid for pid, _ in results}) == 1 and results[0][0] != os.getpid()
