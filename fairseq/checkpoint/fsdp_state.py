"""Full (unsharded) model and optimizer state under FSDP2, for checkpoints that load anywhere.

A checkpoint holds full tensors in single-process parameter order whatever the --ddp-backend, so a
file written by 8 FSDP ranks resumes on 1 process and vice versa. Under FSDP gathering is a collective
(every rank calls these with the same arguments); without FSDP they are identities.
"""
from __future__ import annotations

from typing import Dict

import torch

from fairseq.distributed.wrap import is_fsdp, unwrap


def model_state_dict(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """Full (unsharded) model state dict; a collective under FSDP, so EVERY rank must call it.

    Under FSDP every rank receives the full tensors (gathered), moved to CPU; rank 0 writes them.
    """
    inner = unwrap(model)
    if is_fsdp(inner):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(inner, options=StateDictOptions(full_state_dict=True))
        return {k: v.detach().cpu() for k, v in full.items()}
    return inner.state_dict()


def load_model_state_dict(model: torch.nn.Module, state: Dict[str, torch.Tensor], strict: bool = True):
    """Load a full state dict into a plain, DDP or FSDP model (every rank calls it with the same dict)."""
    inner = unwrap(model)
    if is_fsdp(inner):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        return set_model_state_dict(inner, state, options=StateDictOptions(full_state_dict=True, strict=strict))
    return inner.load_state_dict(state, strict=strict)


def _is_dtensor(t) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover
        return False
    return isinstance(t, DTensor)


def full_optimizer_state(state: dict) -> dict:
    """A torch optimizer state_dict with every FSDP-sharded (DTensor) entry gathered to a full CPU tensor.

    A collective under FSDP (every rank calls it); identity otherwise. Parameter indices follow
    model.parameters() order, the same as a single process's, so the result loads anywhere.
    """
    if not any(_is_dtensor(v) for s in state.get("state", {}).values() for v in s.values()):
        return state
    gathered = {i: {k: (v.full_tensor().cpu() if _is_dtensor(v) else v) for k, v in s.items()}
                for i, s in state["state"].items()}
    return {**state, "state": gathered}


def shard_optimizer_state(params, state: dict) -> dict:
    """Inverse of full_optimizer_state for this rank: re-shard full tensors like their (DTensor) params.

    `params` is the optimizer's parameter list in order; entries of non-DTensor params are unchanged.
    Every rank calls it with the same full state.
    """
    params = list(params)
    if not any(_is_dtensor(p) for p in params):
        return state
    from torch.distributed.tensor import distribute_tensor

    out = {}
    for i, s in state.get("state", {}).items():
        p = params[int(i)]
        out[i] = {k: (distribute_tensor(v.to(p.device), p.device_mesh, p.placements)
                      if _is_dtensor(p) and torch.is_tensor(v) and v.shape == p.shape else v)
                  for k, v in s.items()}
    return {**state, "state": out}


# ----------------------------------------------------------------------------- start-up
