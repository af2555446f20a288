"""What a training run shows while it trains: a progress bar on a terminal, and plain lines (phase
changes, checkpoints, and where no bar is drawn one progress line per report) everywhere."""
from tqdm import tqdm

from .run_messages import checkpoint_line, phase_line, progress_line


class ProgressDisplay:
    """shown: False for no progress at all (progress off, or not rank 0); phase and checkpoint lines are
    printed by rank 0 whatever `shown` is."""

    def __init__(self, label, total_steps, step, shown, main):
        self.label, self.total_steps, self.shown, self.main = label, total_steps, shown, main
        # disable=None: tqdm draws only on a terminal; a log gets the plain lines of report() instead.
        self.bar = tqdm(total=total_steps, initial=step, disable=None if shown else True, desc=label, unit="step",
                        dynamic_ncols=True)
        self.loss = None  # the last reported mean loss (none before the first report)

    def phase(self, step, change, block_density, weight_density):
        if self.main:
            self.bar.write(phase_line(step, change, block_density, weight_density))
            self._postfix(weight_density)

    def advance(self):
        self.bar.update(1)

    def report(self, step, loss, weight_density):
        self.loss = loss
        self._postfix(weight_density)
        if self.bar.disable and self.shown:
            self.bar.write(progress_line(self.label, step, self.total_steps, loss, weight_density))

    def checkpoint(self, path, step):
        self.bar.write(checkpoint_line(path, step))

    def close(self):
        self.bar.close()

    def _postfix(self, weight_density):
        shown = {} if self.loss is None else {"loss": f"{self.loss:.4f}"}
        self.bar.set_postfix(**shown, density=f"{weight_density:.2f}")
