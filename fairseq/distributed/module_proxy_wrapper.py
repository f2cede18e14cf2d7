"""fairseq.distributed.ModuleProxyWrapper: makes a data-parallel wrapper transparent to the code around it.

Criteria, tasks and checkpoint code reach into the model (`model.encoder`, `model.args`, its state dict
keys); wrapped in DistributedDataParallel they would see DDP's attributes and `module.`-prefixed keys.
This wrapper goes around such a wrapper (anything with a `.module`) and sends attribute lookups that
neither it nor the wrapper answers, and state_dict / load_state_dict, to the innermost model.
"""
from __future__ import annotations

from torch import nn


class ModuleProxyWrapper(nn.Module):
    def __init__(self, module: nn.Module):
        super().__init__()
        if not hasattr(module, "module"):
            raise ValueError("ModuleProxyWrapper expects a wrapper of another module (with a .module attribute)")
        self.module = module

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)  # this module's own parameters, buffers and submodules
        except AttributeError:
            try:
                return getattr(self.module, name)  # the data-parallel wrapper's
            except AttributeError:
                return getattr(self.module.module, name)  # the model's

    def state_dict(self, *args, **kwargs):
        return self.module.module.state_dict(*args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        return self.module.module.load_state_dict(*args, **kwargs)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)
