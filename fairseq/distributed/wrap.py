"""Model wrapping for data parallelism (--ddp-backend) with fairseq's gradient semantics.

fairseq SUMS the per-rank gradients and then divides by the global (all-reduced) sample_size, so N
ranks that each see one batch compute exactly what one process computes on all N batches with
``--update-freq N``. Torch's DDP and FSDP average by default; we install a summing reduction instead
(a DDP comm hook, FSDP2's gradient divide factor 1), so after ``backward()`` every rank holds the SUM
of all ranks' gradients and the trainer's ``grads /= all_reduce(sample_size)`` gives the
single-process result without any world-size correction.

``--ddp-backend`` values: ``c10d``/``pytorch_ddp`` -> torch DDP (bucketed all-reduce overlapped with
backward); ``legacy_ddp``/``no_c10d`` -> also torch DDP: fairseq's legacy implementation only differs
in how it schedules the all-reduce, the reduced gradients are the same, and torch's DDP supersedes
it; ``fully_sharded`` -> torch FSDP2 (``fully_shard``), with full (unsharded) state dicts for
checkpoints (fairseq.checkpoint.fsdp_state).
"""
from __future__ import annotations

import contextlib
import inspect

import torch
import torch.distributed as dist

from fairseq.distributed.collectives import get_world_size

DDP_BACKENDS = ("c10d", "pytorch_ddp", "legacy_ddp", "no_c10d", "fully_sharded")




def _sum_allreduce_hook(process_group, bucket):
    """DDP comm hook: all-reduce each gradient bucket with SUM and no division (fairseq semantics)."""
    group = process_group if process_group is not None else dist.group.WORLD
    fut = dist.all_reduce(bucket.buffer(), op=dist.ReduceOp.SUM, group=group, async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


class _ProxyDDP(torch.nn.parallel.DistributedDataParallel):
    """DDP that forwards unknown attributes and state dicts to the wrapped model.

    Criteria and tasks reach into the model (model.encoder, model.args, ...), and checkpoints need
    fairseq's key names without DDP's "module." prefix, so the wrapper should be transparent.
    """

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("module"), name)

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        return self.module.load_state_dict(*args, **kwargs)


def is_fsdp(model) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - very old torch
        return False
    return isinstance(model, FSDPModule)


def wrap_model(model: torch.nn.Module, args) -> torch.nn.Module:
    """Wrap for data parallelism according to --ddp-backend; returns `model` itself when world==1.

    The model must already be on its device. Gradients of the wrapped model are SUMMED over ranks
    (see module docstring); divide by the all-reduced sample_size to get fairseq's update.
    """
    if get_world_size() == 1:
        return model
    backend = getattr(args, "ddp_backend", "pytorch_ddp") or "pytorch_ddp"
    if backend not in DDP_BACKENDS:
        raise ValueError(f"unknown --ddp-backend {backend!r}; choose from: {', '.join(DDP_BACKENDS)}")
    if backend == "fully_sharded":
        return _wrap_fsdp(model, args)
    on_cuda = next(model.parameters()).is_cuda
    kwargs = dict(
        device_ids=[torch.cuda.current_device()] if on_cuda else None,
        output_device=torch.cuda.current_device() if on_cuda else None,
        bucket_cap_mb=float(getattr(args, "bucket_cap_mb", 25) or 25),
        find_unused_parameters=bool(getattr(args, "find_unused_parameters", False)),
    )
    # --broadcast-buffers (fairseq default off); newer torch renamed the knob (buffers are identical
    # at init anyway, since every rank builds the model from the same seed).
    sync = bool(getattr(args, "broadcast_buffers", False))
    if "forward_sync_buffers" in inspect.signature(torch.nn.parallel.DistributedDataParallel.__init__).parameters:
        kwargs["forward_sync_buffers"] = sync
    else:
        kwargs["broadcast_buffers"] = sync
    ddp = _ProxyDDP(model, **kwargs)
    ddp.register_comm_hook(None, _sum_allreduce_hook)
    return ddp


def _wrap_fsdp(model: torch.nn.Module, args) -> torch.nn.Module:
    """FSDP2: shard each transformer layer and the root; gradients reduce-scattered as sums.

    Parameters stay fp32 here: the trainer's fp16/bf16 handling (autocast) applies on top.
    """
    from torch.distributed.fsdp import fully_shard

    # --find-unused-parameters needs nothing here: FSDP gives unused sharded params zero gradients.
    layers = _find_layers(model)
    for layer in layers:
        fully_shard(layer)
    fully_shard(model)
    for m in [model, *layers]:
        m.set_gradient_divide_factor(1.0)  # no averaging: gradients are summed over ranks
        m.set_force_sum_reduction_for_comms(True)  # plain SUM collectives (gloo has no PREMUL_SUM)
    return model


def _find_layers(model: torch.nn.Module):
    """The repeated transformer layers (RoBERTa's sentence_encoder.layers), else none."""
    enc = getattr(getattr(model, "encoder", None), "sentence_encoder", None)
    layers = getattr(enc, "layers", None)
    return list(layers) if layers is not None else []


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The user model inside a DDP wrapper (FSDP2 shards in place, so it is the model itself)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    while isinstance(model, DDP):
        model = model.module
    return model


@contextlib.contextmanager
def maybe_no_sync(model: torch.nn.Module, enabled: bool):
    """Skip the gradient all-reduce for this backward (all but the last micro-batch of --update-freq)."""
    if not enabled or get_world_size() == 1:
        yield
        return
    if hasattr(model, "no_sync"):
        with model.no_sync():
            yield
    elif is_fsdp(model):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield
