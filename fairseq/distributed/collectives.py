"""Collectives that degrade to single-process behaviour when no process group is initialised.

The trainer, criteria and checkpoint code call these unconditionally: with one process they are
no-ops (rank 0 of a world of 1), with gloo they reduce CPU tensors and with NCCL CUDA tensors.
"""
from __future__ import annotations

from typing import Any, Dict

import torch
import torch.distributed as dist


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_master() -> bool:
    return get_rank() == 0


def barrier() -> None:
    """Wait for all ranks (no-op single-process); used around rank-0-only checkpoint writes."""
    if get_world_size() > 1:
        dist.barrier()


def _comm_device() -> torch.device:
    """NCCL only reduces CUDA tensors; gloo reduces CPU tensors."""
    if is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ----------------------------------------------------------------------------- collectives


def all_reduce_sum_(tensor: torch.Tensor, group=None) -> torch.Tensor:
    """Sum `tensor` over ranks in place and return it (no-op with one process).

    A tensor living on the wrong device for the backend (CPU tensor under NCCL) is reduced through
    a temporary copy, so callers such as TokenImportance need not care where their table lives.
    """
    if get_world_size() == 1:
        return tensor
    dev = _comm_device()
    if tensor.device == dev:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
    else:
        tmp = tensor.to(dev)
        dist.all_reduce(tmp, op=dist.ReduceOp.SUM, group=group)
        tensor.copy_(tmp)
    return tensor


def all_reduce_dict(d: Dict[str, Any], group=None) -> Dict[str, float]:
    """Sum a name->number dict over ranks; keys missing on a rank (e.g. a dummy batch) count as 0.

    Values are reduced in float64 so large token counts stay exact. Returns plain python floats.
    """
    local = {k: float(v.item() if torch.is_tensor(v) else v) for k, v in d.items()}
    if get_world_size() == 1:
        return local
    key_lists = [None] * get_world_size()
    dist.all_gather_object(key_lists, sorted(local), group=group)
    keys = sorted(set().union(*key_lists))
    buf = torch.tensor([local.get(k, 0.0) for k in keys], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(buf, op=dist.ReduceOp.SUM, group=group)
    return dict(zip(keys, buf.cpu().tolist()))


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Return rank `src`'s `obj` on every rank (identity single-process)."""
    if get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


# ----------------------------------------------------------------------------- model wrapping
