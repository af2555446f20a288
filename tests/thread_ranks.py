"""Several ranks as threads of this process, on torch's threaded test process group (the one torch's own
distributed tests use): collective helpers run on real ranks in a fraction of a second, and every call is seen
by this process (coverage, the mutation run), where test_differing_state.py's ranks are processes.
It is torch-internal test machinery: `available()` is False where this torch lacks it."""
import sys
import threading

import torch
import torch.distributed as dist


def available():
    try:
        from torch.testing._internal.distributed import multi_threaded_pg  # noqa: F401
    except ImportError:
        return False
    return dist.is_available() and hasattr(torch._C._distributed_c10d, "_set_thread_isolation_mode")


def run_ranks(function, world=2):
    """[function(rank) for each rank], every rank in its own thread inside a process group of `world` ranks;
    the first rank's exception is raised here. `function` leaves the group itself (amgp.distributed.shutdown)."""
    from torch.testing._internal.distributed.multi_threaded_pg import _install_threaded_pg, _uninstall_threaded_pg

    results, errors = [None] * world, [None] * world
    store = dist.HashStore()

    def rank_main(rank):
        try:
            dist.init_process_group("threaded", rank=rank, world_size=world, store=store)
            results[rank] = function(rank)
        except BaseException:  # noqa: BLE001 (re-raised in the caller's thread)
            errors[rank] = sys.exc_info()[1]
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()

    torch._C._distributed_c10d._set_thread_isolation_mode(True)
    _install_threaded_pg()
    try:
        threads = [threading.Thread(target=rank_main, args=(rank,), daemon=True) for rank in range(world)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        if any(thread.is_alive() for thread in threads):
            raise TimeoutError("a rank did not finish within 60 s (a collective that not every rank called?)")
    finally:
        _uninstall_threaded_pg()
        torch._C._distributed_c10d._set_thread_isolation_mode(False)
    for error in errors:
        if error is not None:
            raise error
    return results
