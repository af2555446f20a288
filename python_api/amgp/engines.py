"""The training engines behind `amgp-dlrm --engine`: amgp's own DLRM under DDP (amgp.train.Trainer) or
TorchRec's DLRM under DistributedModelParallel (amgp.torchrec.engine.TorchRecTrainer, imported only
when asked for, so the core never needs torchrec). Both share the Trainer interface: run() -> report."""
from .config import ENGINES
from .train import Trainer


def make_trainer(config, **kwargs):
    """The Trainer of config.engine; kwargs go to it (data, model_state, label, optimizer_state)."""
    if config.engine == "torchrec":
        from .torchrec.engine import TorchRecTrainer
        return TorchRecTrainer(config, **kwargs)
    if config.engine != "amgp":
        raise ValueError(f"engine must be one of {ENGINES}, got {config.engine!r}")
    return Trainer(config, **kwargs)


def train(config):
    """Train per `config` and return the report dict (see amgp.run_report)."""
    return make_trainer(config).run()
