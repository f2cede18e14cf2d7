"""FairseqDataclass and the config groups of fairseq's top-level FairseqConfig (the fields a plugin or a
user reads most; the full set of flags lives in fairseq.options, and cfg objects built from parsed
arguments carry all of them)."""
from dataclasses import dataclass, field, fields
from typing import Any, List, Optional


@dataclass
class FairseqDataclass:
    """Base of every config dataclass: `_name` is the registered name (task, model, criterion...)."""

    _name: Optional[str] = None

    @staticmethod
    def name():
        return None

    def _get_all_attributes(self) -> List[str]:
        return [f.name for f in fields(self)]

    def _get_default(self, attribute_name: str) -> Any:
        for f in fields(self):
            if f.name == attribute_name:
                return f.default
        raise AttributeError(attribute_name)

    def _get_help(self, attribute_name: str) -> Optional[str]:
        for f in fields(self):
            if f.name == attribute_name:
                return f.metadata.get("help")
        raise AttributeError(attribute_name)


@dataclass
class CommonConfig(FairseqDataclass):
    no_progress_bar: bool = False
    log_interval: int = 100
    log_format: Optional[str] = None
    log_file: Optional[str] = None
    seed: int = 1
    cpu: bool = False
    tpu: bool = False
    bf16: bool = False
    fp16: bool = False
    user_dir: Optional[str] = field(default=None, metadata={"help": "path to a python module with extensions"})


@dataclass
class DatasetConfig(FairseqDataclass):
    num_workers: int = 1
    max_tokens: Optional[int] = None
    batch_size: Optional[int] = None
    required_batch_size_multiple: int = 8
    train_subset: str = "train"
    valid_subset: str = "valid"
    combine_valid_subsets: Optional[bool] = None
    ignore_unused_valid_subsets: bool = False
    disable_validation: bool = False


@dataclass
class DistributedTrainingConfig(FairseqDataclass):
    distributed_world_size: int = 1
    distributed_rank: Optional[int] = 0
    distributed_backend: str = "nccl"
    ddp_backend: str = "pytorch_ddp"


@dataclass
class OptimizationConfig(FairseqDataclass):
    max_epoch: int = 0
    max_update: int = 0
    clip_norm: float = 0.0
    update_freq: List[int] = field(default_factory=lambda: [1])
    lr: List[float] = field(default_factory=lambda: [0.25])
    stop_min_lr: float = -1.0


@dataclass
class CheckpointConfig(FairseqDataclass):
    save_dir: str = "checkpoints"
    restore_file: str = "checkpoint_last.pt"
    finetune_from_model: Optional[str] = None
    reset_dataloader: bool = False
    reset_lr_scheduler: bool = False
    reset_meters: bool = False
    reset_optimizer: bool = False
    no_save: bool = False
    best_checkpoint_metric: str = "loss"


@dataclass
class EMAConfig(FairseqDataclass):
    """fairseq-train's --store-ema family (fairseq.models.ema.EMA says what each does)."""

    store_ema: bool = field(default=False, metadata={"help": "keep an exponential moving average of the weights "
                                                             "(saved in checkpoints as extra_state['ema'])"})
    ema_decay: float = field(default=0.9999, metadata={"help": "decay for exponential moving average model"})
    ema_start_update: int = field(default=0, metadata={"help": "start EMA update after this many model updates "
                                                                 "(before: the average copies the model)"})
    ema_seed_model: Optional[str] = field(default=None, metadata={
        "help": "start the average from the EMA weights stored in this checkpoint"})
    ema_update_freq: int = field(default=1, metadata={"help": "Do EMA update every this many model updates"})
    ema_fp32: bool = field(default=False, metadata={"help": "If true, store EMA model in fp32 even if model is "
                                                            "in fp16"})


@dataclass
class FairseqConfig(FairseqDataclass):
    common: CommonConfig = field(default_factory=CommonConfig)
    distributed_training: DistributedTrainingConfig = field(default_factory=DistributedTrainingConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    optimization: OptimizationConfig = field(default_factory=OptimizationConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    model: Any = None
    task: Any = None
    criterion: Any = None
    optimizer: Any = None
    lr_scheduler: Any = None
    ema: EMAConfig = field(default_factory=EMAConfig)
