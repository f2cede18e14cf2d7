"""Optimizers and learning-rate schedules, built by name through fairseq.registry."""
from fairseq import registry


def build_optimizer(args, params):
    return registry.lookup("optimizer", args.optimizer)(args, params)


def build_lr_scheduler(args, optimizer):
    return registry.lookup("lr-scheduler", args.lr_scheduler)(args, optimizer)
