"""fairseq's configuration dataclasses: the FairseqDataclass base and the top-level config groups.

A task, model or criterion registered with `dataclass=SomeConfig` gets one command-line flag per field
(fairseq.dataclass.flags); `fairseq.dataclass.utils.convert_namespace_to_omegaconf` turns parsed
arguments into fairseq's grouped omegaconf config.
"""
from fairseq.dataclass.configs import (  # noqa: F401
    CheckpointConfig,
    CommonConfig,
    DatasetConfig,
    DistributedTrainingConfig,
    EMAConfig,
    FairseqConfig,
    FairseqDataclass,
    OptimizationConfig,
)
from fairseq.dataclass.constants import ChoiceEnum  # noqa: F401
