"""FairseqOptimizer and the --optimizer table (fairseq's register_optimizer).

An optimizer is built as `cls(cfg, params)`; it wraps a torch optimizer (`self.optimizer`, which a
fairseq plugin sets as `self._optimizer`) and offers what the trainer calls: get_lr/set_lr, step,
zero_grad and (de)serialisable state."""
from __future__ import annotations

from fairseq import registry
from fairseq.dataclass.flags import add_registered_args

OPTIMIZER_REGISTRY = registry.setup_registry("optimizer").classes
OPTIMIZER_DATACLASS_REGISTRY = registry.REGISTRIES["optimizer"].dataclasses


class FairseqOptimizer:
    def __init__(self, cfg):
        self.cfg = cfg
        self.args = cfg

    @classmethod
    def add_args(cls, parser):
        add_registered_args(cls, parser, "optimizer")

    @property
    def optimizer(self):
        return self._optimizer

    @optimizer.setter
    def optimizer(self, value):
        self._optimizer = value

    @property
    def params(self):
        for group in self.optimizer.param_groups:
            yield from group["params"]

    def get_lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def backward(self, loss) -> None:
        loss.backward()

    def step(self, closure=None) -> None:
        self.optimizer.step()

    def zero_grad(self) -> None:
        """Gradients become None (not zeros): unused parameters stay out of the update, as in fairseq."""
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict, optimizer_overrides=None) -> None:
        """The saved state, hyper-parameters included (as torch and fairseq restore them); then
        `optimizer_overrides` (a dict such as {"lr": 1e-4}) on every parameter group."""
        self.optimizer.load_state_dict(state)
        for group in self.optimizer.param_groups if optimizer_overrides else ():
            group.update(optimizer_overrides)


class LegacyFairseqOptimizer(FairseqOptimizer):
    """fairseq's base for optimizers that take an argparse Namespace (here every cfg is one)."""

    def __init__(self, args):
        super().__init__(args)


def first_lr(args) -> float:
    """The lr an optimizer starts at: the first of --lr's values (the schedule sets it from then on)."""
    return float(args.lr[0]) if isinstance(args.lr, (list, tuple)) else float(args.lr)


def backward(optimizer, loss) -> None:
    """What a task's train_step calls: optimizer.backward(loss) where the optimizer has one (the
    trainer's StepOptimizer applies the loss scale there), else loss.backward() (a bare torch optimizer
    or None, as a plugin's test may pass)."""
    if optimizer is not None and hasattr(optimizer, "backward"):
        optimizer.backward(loss)
    else:
        loss.backward()


def register_optimizer(name: str, dataclass=None):
    """Class decorator: `--optimizer name` builds this class (a FairseqOptimizer) as cls(cfg, params)."""
    return registry.REGISTRIES["optimizer"].register(name, dataclass)


registry.REGISTRIES["optimizer"].base_class = FairseqOptimizer
