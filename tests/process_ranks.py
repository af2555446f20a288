"""Ranks as processes for the multi-process tests: a free port for their rendezvous, and torch's spawn with a
deadline, so that a rank that hangs (a deadlock at process-group teardown was seen once) fails its test within
minutes instead of running CI out of its time."""
import socket
import time

import pytest
import torch.multiprocessing as mp

RANKS_TIMEOUT_S = 600  # the slowest of these tests takes ~30 s on a busy 2-core machine


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_ranks(worker, args, nprocs, timeout_s=RANKS_TIMEOUT_S):
    """torch.multiprocessing.spawn(worker, args, nprocs) and wait for every rank; a rank's exception is raised as
    spawn raises it; ranks still running after timeout_s are killed and the test fails."""
    context = mp.spawn(worker, args=args, nprocs=nprocs, join=False)
    deadline = time.monotonic() + timeout_s
    while not context.join(timeout=max(0.0, deadline - time.monotonic())):
        if time.monotonic() >= deadline:
            hung = [rank for rank, process in enumerate(context.processes) if process.is_alive()]
            for process in context.processes:
                process.kill()
            pytest.fail(f"ranks {hung} of {nprocs} still running after {timeout_s} s (hung: py-spy dump --native "
                        f"--pid <rank's pid> shows where)")
