"""The plain lines a training run prints (terminal or log file alike): phase changes, progress where no
bar is drawn, and checkpoints."""
from .phases import describe_phase


def phase_line(step, phase, block_density, weight_density):
    """A phase change. In a sparse phase the share of MLP weights left is below the block density asked
    for: a hidden layer keeps `block_density` of its output blocks but also loses the inputs that its
    pruned predecessor no longer produces (about density² of its weights)."""
    if not phase.sparse:
        return f"step {step}: {describe_phase(phase)}: every block active, MLP weight density {weight_density:.3f}"
    return (f"step {step}: {describe_phase(phase)}: pruned layers keep {block_density:.1%} of their output blocks, "
            f"MLP weight density {weight_density:.3f} (a hidden layer also loses the inputs its pruned "
            f"predecessor no longer produces)")


def progress_line(label, step, total_steps, loss, weight_density):
    return f"{label}: step {step}/{total_steps}, loss {loss:.4f}, MLP weight density {weight_density:.3f}"


def checkpoint_line(path, step):
    return f"checkpoint saved to {path} (step {step})"
