"""TrainConfig: every setting of one training run (the fields of `amgp-dlrm`'s flags)."""
import dataclasses
from typing import Optional

from .config_checks import check_train_config

OPTIMIZERS = ("sgd", "adagrad", "adam", "adamw")
DEFAULT_PRUNED_LAYERS = ("top_l",)  # amgp.DLRM's top MLP (the TorchRec engine's over_arch)
ENGINES = ("amgp", "torchrec")  # amgp.DLRM under DDP, or TorchRec's DLRM under DMP (amgp.torchrec.engine)

# The settings that build the model: a warm start builds its model from a checkpoint's.
MODEL_KEYS = ("arch_sparse_feature_size", "arch_embedding_size", "arch_mlp_bot", "arch_mlp_top",
              "arch_interaction_op", "arch_interaction_itself", "block_size")
# The settings a checkpoint must agree with to be resumed: the model's and all that decides the steps.
RESUME_KEYS = MODEL_KEYS + (
    "data_generation", "synthetic_task", "mini_batch_size", "num_batches", "nepochs", "optimizer", "seed", "amgp", "static_prune",
    "data_randomize", "amgp_density", "amgp_warmup", "amgp_final_dense", "amgp_dense_steps", "amgp_cycles",
    "amgp_criterion", "amgp_growth", "amgp_layers")


@dataclasses.dataclass
class TrainConfig:
    # model (facebookresearch/dlrm names)
    arch_sparse_feature_size: int = 16
    arch_embedding_size: Optional[list] = None  # synthetic table sizes (default: built in)
    # MLP-heavy defaults (dlrm's Kaggle bottom MLP, a wider top MLP): MLPs dominate the step time.
    arch_mlp_bot: list = dataclasses.field(default_factory=lambda: [13, 512, 256, 64, 16])
    arch_mlp_top: list = dataclasses.field(default_factory=lambda: [1024, 1024, 512, 1])
    arch_interaction_op: str = "dot"
    arch_interaction_itself: bool = False
    # data
    data_generation: str = "synthetic"
    synthetic_task: str = "default"  # the built-in data's teacher (amgp.data.tasks): "default" or "capacity"
    raw_data_file: Optional[str] = None
    max_ind_range: int = 100_000  # Criteo rows per table (or a list of 26: one per table)
    skip_malformed: bool = False
    data_randomize: str = "total"  # Criteo training lines: reshuffled every epoch from seed, or "none"
    test_fraction: float = 0.1
    num_test_batches: int = 16
    # training
    mini_batch_size: int = 2048
    num_batches: int = 200
    nepochs: int = 1
    optimizer: str = "adagrad"
    learning_rate: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    seed: int = 0
    use_gpu: bool = False
    backend: Optional[str] = None
    engine: str = "amgp"
    full_allreduce: bool = False  # several ranks: DDP's own all-reduce of full-size gradients (amgp.comm_hook)
    # AMGP
    amgp: bool = True
    static_prune: bool = False  # the static baseline: prune once after the warmup, train pruned to the end
    amgp_density: float = 0.5
    amgp_warmup: float = 0.1
    amgp_final_dense: float = 0.2
    amgp_dense_steps: float = 0.05
    amgp_cycles: int = 2
    amgp_criterion: str = "magnitude"
    amgp_growth: str = "function_preserving"
    # Layer-name prefixes to prune (None: every MLP layer). The top MLP only: the bottom MLP reads the dense
    # features, costs a few % of the MLP FLOPs, and pruning it cost the most quality (bench/RESULTS.md).
    amgp_layers: Optional[list] = dataclasses.field(default_factory=lambda: list(DEFAULT_PRUNED_LAYERS))
    block_size: int = 32
    # reporting and checkpoints
    print_freq: int = 10
    test_freq: int = 0
    save_model: Optional[str] = None
    checkpoint_freq: int = 0
    load_model: Optional[str] = None
    stop_at_step: Optional[int] = None
    progress: bool = True

    def __post_init__(self):
        check_train_config(self)  # a wrong field is a TypeError/ValueError naming it, here, not mid-training

    def resume_settings(self):
        """The settings a checkpoint must agree with to be resumed (RESUME_KEYS)."""
        return {key: getattr(self, key) for key in RESUME_KEYS}

    @property
    def mode(self):
        """"static" (static_prune), "amgp" or "dense"."""
        return "static" if self.static_prune else "amgp" if self.amgp else "dense"
