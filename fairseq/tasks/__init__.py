"""Tasks by --task name (fairseq's register_task), their base classes and setup_task. The built-in
tasks register themselves when their modules are imported below."""
from fairseq import registry
from fairseq.tasks.base import (  # noqa: F401
    TASK_DATACLASS_REGISTRY,
    TASK_REGISTRY,
    FairseqTask,
    LegacyFairseqTask,
    logged_metrics,
    register_task,
)
from fairseq.tasks import language_modeling, masked_lm, sentence_prediction, sentence_ranking  # noqa: F401


def get_task(name: str):
    return registry.lookup("task", name)


def setup_task(cfg, **kwargs):
    """The registered task class's setup_task(cfg) (which loads the dictionaries from the data directory).
    cfg: parsed arguments (the name is cfg.task) or a task config (the name is cfg._name)."""
    name = getattr(cfg, "task", None)
    if not isinstance(name, str):
        name = getattr(cfg, "_name", None)
    return registry.lookup("task", name).setup_task(cfg, **kwargs)
