"""amgp-dlrm's lines about how a run ended, beyond the results table: stopped early and how to resume,
interrupted, and the malformed lines that --skip-malformed-lines skipped."""
import shlex

PROG = "amgp-dlrm"


def resume_command(argv, checkpoint):
    """`argv` without --stop-at-step (and any earlier --load-model), resuming from `checkpoint`."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--stop-at-step", "--load-model"):
            skip = True
            continue
        if arg.startswith(("--stop-at-step=", "--load-model=")):
            continue
        kept.append(arg)
    return shlex.join([PROG, *kept, "--load-model", checkpoint])


def stopped_line(report, argv, checkpoint):
    """For a run that stopped before its last step (--stop-at-step), else None."""
    if report["steps"] >= report["total_steps"]:
        return None
    head = f"stopped at step {report['steps']} of {report['total_steps']} (--stop-at-step)"
    if not checkpoint:
        return f"{head}; nothing to resume from: add --save-model PATH to keep the state"
    return f"{head}; resume with: {resume_command(argv, checkpoint)}"


def interrupted_line(interrupted, argv, resumable):
    """The one line for Ctrl-C during training (an amgp.interrupt.TrainingInterrupted)."""
    line = f"{PROG}: interrupted at step {interrupted.step} of {interrupted.total_steps}"
    if not interrupted.checkpoint:
        return line + "; nothing saved (--save-model keeps the state on Ctrl-C)"
    line += f"; checkpoint saved to {interrupted.checkpoint}"
    return line + (f"; resume with: {resume_command(argv, interrupted.checkpoint)}" if resumable else "")


def skipped_line(report, path):
    return f"skipped {report['lines_skipped']} malformed line(s) of {path} (--skip-malformed-lines)"
