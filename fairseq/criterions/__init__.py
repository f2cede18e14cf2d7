"""Criteria, built by --criterion name through fairseq.registry (default: cross_entropy, as in fairseq)."""
from fairseq import registry


def build_criterion(args, task):
    return registry.lookup("criterion", args.criterion)(args, task)
