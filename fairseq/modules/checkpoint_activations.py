"""Activation checkpointing (fairseq.modules.checkpoint_activations): recompute a module's forward in
the backward pass instead of keeping its activations.

One implementation for both users: `checkpoint_wrapper(module)` (fairseq's API, for plugins) and the
RoBERTa encoder's --checkpoint-activations (model.layer_call) call `checkpointed`. It is torch's
non-reentrant checkpoint, which restores the CPU and CUDA RNG states before recomputing, so dropout
masks and therefore losses and gradients equal the run without checkpointing.
"""
from __future__ import annotations

import functools

import torch
from torch.utils.checkpoint import checkpoint


def checkpointed(fn, *args, **kwargs):
    """fn(*args, **kwargs), with its activations recomputed in backward instead of stored."""
    return checkpoint(fn, *args, use_reentrant=False, **kwargs)


def checkpoint_wrapper(m: torch.nn.Module, offload_to_cpu: bool = False) -> torch.nn.Module:
    """Make `m.forward` checkpointed (while training with grad enabled); returns `m` itself.

    offload_to_cpu (fairseq: keep the saved inputs in CPU memory) moves the tensors that autograd
    saves to the CPU and back for the backward pass; on a CPU device it changes nothing.
    """
    original_forward = m.forward

    @functools.wraps(original_forward)
    def forward(*args, **kwargs):
        if not (m.training and torch.is_grad_enabled()):
            return original_forward(*args, **kwargs)
        if offload_to_cpu:
            with torch.autograd.graph.save_on_cpu(pin_memory=torch.cuda.is_available()):
                return checkpointed(original_forward, *args, **kwargs)
        return checkpointed(original_forward, *args, **kwargs)

    m.forward = forward
    m.precheckpoint_forward = original_forward  # fairseq keeps the unwrapped forward under this name
    return m


def unwrap_checkpoint(m: torch.nn.Module) -> torch.nn.Module:
    """Undo checkpoint_wrapper on m and its submodules (fairseq does this before saving a model)."""
    for module in m.modules():
        if hasattr(module, "precheckpoint_forward"):
            module.forward = module.precheckpoint_forward
            del module.precheckpoint_forward
    return m
