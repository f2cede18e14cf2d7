"""fairseq.tasks.fairseq_task: fairseq's module path for the task base classes (defined in fairseq.tasks.base)."""
from fairseq.tasks.base import FairseqTask, LegacyFairseqTask  # noqa: F401
