"""A torchrun entry for tests/test_distributed.py: amgp-dlrm, except that in the first attempt rank 1 kills
itself with SIGKILL just before training step $AMGP_TEST_KILL_AT_STEP (a crashed node, not a clean exit)."""
import os
import signal
import sys

from amgp.cli.dlrm import main
from amgp.train import Trainer

if os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0" and os.environ.get("RANK") == "1":
    kill_at = int(os.environ["AMGP_TEST_KILL_AT_STEP"])
    train_step = Trainer.train_step

    def train_step_or_die(self, batch):
        if self.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return train_step(self, batch)

    Trainer.train_step = train_step_or_die

if __name__ == "__main__":
    sys.exit(main())
