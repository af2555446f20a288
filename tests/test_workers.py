"""amgp.workers.in_workers (an experiment's seeds run in parallel): results in the order of the items, each
worker with its share of the CPU threads, and the caller's warning filters in force in every worker."""
import warnings

import pytest
import torch

from amgp.workers import in_workers


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
