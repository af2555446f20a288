"""Ctrl-C during training: stop at the next step boundary instead of wherever the signal lands, so that
the checkpoint written on the way out is a consistent state a run can resume from bit-exactly."""
import contextlib
import signal
import threading


class TrainingInterrupted(Exception):
    """Training stopped on Ctrl-C after `step` of `total_steps` steps; `checkpoint` is the path saved then
    (None without save_model)."""

    def __init__(self, step, total_steps, checkpoint=None):
        self.step, self.total_steps, self.checkpoint = step, total_steps, checkpoint
        saved = f"; checkpoint saved to {checkpoint}" if checkpoint else "; nothing saved (no save_model)"
        super().__init__(f"interrupted at step {step} of {total_steps}{saved}")


class StopRequest:
    """`requested` becomes True on the first Ctrl-C (SIGINT) while `deferred_interrupt` is active."""

    def __init__(self):
        self.requested = False


@contextlib.contextmanager
def deferred_interrupt(enabled=True):
    """While active, the first SIGINT only sets the yielded StopRequest; a second one interrupts at once
    (KeyboardInterrupt), for a user who does not want to wait for the step. Only the main thread can
    handle signals: elsewhere, or with enabled=False (several ranks, whose launcher stops them), the
    request never comes and Ctrl-C keeps its usual effect."""
    request = StopRequest()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum, frame):
        if request.requested:
            raise KeyboardInterrupt
        request.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)
