"""Tasks, built by --task name through fairseq.registry."""
from fairseq import registry
from fairseq.tasks.fairseq_task import LegacyFairseqTask  # noqa: F401  (placeholder, see file)


def setup_task(args):
    """The task class's setup_task(args) (loads the dictionary from the data directory)."""
    return registry.lookup("task", args.task).setup_task(args)
