"""torch.distributed glue: process-group start-up and model wrapping.

Start-up follows fairseq's launches: torchrun, SLURM, --distributed-world-size N (spawn N local
workers), and --distributed-init-method URL --distributed-rank R (fairseq's multi-node form).

Everything here degrades to single-process behaviour when no process group is initialised, so the
trainer can call these helpers unconditionally.

Gradient semantics (why the DDP/FSDP wrappers are configured the way they are): fairseq SUMS the
per-rank gradients and then divides by the global (all-reduced) sample_size, so N ranks that each
see one batch compute exactly what one process computes on all N batches with ``--update-freq N``.
Torch's DDP and FSDP average by default; we install a summing reduction instead (a DDP comm hook,
FSDP2's gradient divide factor 1), so after ``backward()`` every rank holds the SUM of all ranks'
gradients and the trainer's ``grads /= all_reduce(sample_size)`` gives the single-process result
without any world-size correction.

``--ddp-backend`` values: ``c10d``/``pytorch_ddp`` -> torch DDP (bucketed all-reduce overlapped with
backward); ``legacy_ddp``/``no_c10d`` -> also torch DDP: fairseq's legacy implementation only
differs in how it schedules the all-reduce, the reduced gradients are the same, and torch's DDP
supersedes it; ``fully_sharded`` -> torch FSDP2 (``fully_shard``), with full (unsharded) state dicts
for checkpoints via :func:`model_state_dict` / :func:`load_model_state_dict`.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import os
import re
import socket
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Optional

import torch
import torch.distributed as dist

from fairseq.distributed import faults

logger = logging.getLogger(__name__)

DDP_BACKENDS = ("c10d", "pytorch_ddp", "legacy_ddp", "no_c10d", "fully_sharded")


# ----------------------------------------------------------------------------- queries


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


def _is_fsdp(model) -> bool:
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
    elif _is_fsdp(model):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


# ----------------------------------------------------------------------------- state dicts


def model_state_dict(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """Full (unsharded) model state dict; a collective under FSDP, so EVERY rank must call it.

    Under FSDP every rank receives the full tensors (gathered), moved to CPU; rank 0 writes them.
    """
    inner = unwrap(model)
    if _is_fsdp(inner):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(inner, options=StateDictOptions(full_state_dict=True))
        return {k: v.detach().cpu() for k, v in full.items()}
    return inner.state_dict()


def load_model_state_dict(model: torch.nn.Module, state: Dict[str, torch.Tensor], strict: bool = True):
    """Load a full state dict into a plain, DDP or FSDP model (every rank calls it with the same dict)."""
    inner = unwrap(model)
    if _is_fsdp(inner):
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


@dataclass
class DistInit:
    """How this process joins the job.

    mode: single | torchrun | slurm | spawn (start `nprocs` local workers, ranks rank .. rank+nprocs-1)
    | explicit (this process is rank `rank` of a job rendezvousing at --distributed-init-method).
    """

    mode: str
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 0
    backend: str = "gloo"
    init_method: Optional[str] = None  # --distributed-init-method as given (else derived by `url`)
    nprocs: int = 1

    def url(self) -> str:
        if self.init_method:
            return self.init_method
        if self.mode == "torchrun":
            return "env://"
        return f"tcp://{self.master_addr}:{self.master_port}"


def first_slurm_host(nodelist: str) -> str:
    """First hostname of a SLURM nodelist: 'gpu[003-005,9],cpu1' -> 'gpu003'."""
    m = re.match(r"([^,\[]+)(\[([^\]]+)\])?", nodelist.strip())
    if not m:
        raise ValueError(f"cannot parse SLURM_NODELIST {nodelist!r}")
    prefix, _, ranges = m.groups()
    if not ranges:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def _use_cuda(args) -> bool:
    return torch.cuda.is_available() and not getattr(args, "cpu", False)


def _backend(args) -> str:
    """nccl on CUDA, gloo on CPU (--cpu or no CUDA), whatever --distributed-backend says otherwise."""
    if not _use_cuda(args):
        return "gloo"
    return getattr(args, "distributed_backend", None) or "nccl"


def _explicit_init(args, world: int, backend: str) -> DistInit:
    """fairseq's multi-node launch: every process is given the rendezvous URL, its rank and the world size.

    With --distributed-no-spawn the process is rank --distributed-rank itself (on --device-id). Without
    it, fairseq spawns one worker per local GPU with ranks --distributed-rank + 0, 1, ...; a CPU has no
    GPUs to count, so there the processes must be started one per rank with --distributed-no-spawn.
    """
    rank = int(args.distributed_rank)
    if not 0 <= rank < world:
        raise ValueError(f"--distributed-rank {rank} is outside [0, --distributed-world-size {world})")
    if args.distributed_no_spawn:
        return DistInit(mode="explicit", world_size=world, rank=rank, local_rank=int(args.device_id),
                        backend=backend, init_method=args.distributed_init_method)
    if not _use_cuda(args):
        raise ValueError("--distributed-init-method without --distributed-no-spawn starts one process per local "
                         "GPU (fairseq); on CPU start one process per rank and add --distributed-no-spawn")
    nprocs = min(torch.cuda.device_count(), world)
    if rank + nprocs > world:
        raise ValueError(f"--distributed-rank {rank} + {nprocs} local GPUs exceeds --distributed-world-size {world}")
    return DistInit(mode="spawn", world_size=world, rank=rank, backend=backend,
                    init_method=args.distributed_init_method, nprocs=nprocs)


def infer_init(args, environ: Optional[Dict[str, str]] = None) -> DistInit:
    """Decide how to start from the environment and flags (pure: reads `environ`, starts nothing).

    Priority, as in fairseq's call_main: an explicit --distributed-init-method (multi-node, ranks given
    by flags) > torchrun variables (RANK/WORLD_SIZE/LOCAL_RANK) > SLURM (SLURM_PROCID...) >
    --distributed-world-size N > 1 on one machine (spawn N local workers) > single process.
    """
    env = os.environ if environ is None else environ
    backend = _backend(args)
    port = int(getattr(args, "distributed_port", -1) or -1)
    world = getattr(args, "distributed_world_size", None)
    world = 1 if world is None else int(world)
    if world < 1:
        raise ValueError(f"--distributed-world-size must be >= 1, got {world}")
    if args.distributed_init_method:
        return _explicit_init(args, world, backend)
    if "RANK" in env and "WORLD_SIZE" in env:
        world = int(env["WORLD_SIZE"])
        return DistInit(
            mode="torchrun" if world > 1 else "single",
            world_size=world,
            rank=int(env["RANK"]),
            local_rank=int(env.get("LOCAL_RANK", 0)),
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(env.get("MASTER_PORT", 0)),
            backend=backend,
        )
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env and int(env["SLURM_NTASKS"]) > 1:
        if port <= 0:
            raise ValueError("--distributed-port is required under SLURM (got %d)" % port)
        return DistInit(
            mode="slurm",
            world_size=int(env["SLURM_NTASKS"]),
            rank=int(env["SLURM_PROCID"]),
            local_rank=int(env.get("SLURM_LOCALID", 0)),
            master_addr=first_slurm_host(env.get("SLURM_NODELIST", env.get("SLURM_JOB_NODELIST", "localhost"))),
            master_port=port,
            backend=backend,
        )
    if world > 1:
        if args.distributed_no_spawn:
            raise ValueError("--distributed-no-spawn with --distributed-world-size > 1 needs "
                             "--distributed-init-method (or torchrun/SLURM) so the processes can find each other")
        if _use_cuda(args) and world > torch.cuda.device_count():
            raise ValueError(
                f"--distributed-world-size {world} exceeds the {torch.cuda.device_count()} visible GPUs; "
                "use torchrun or --distributed-init-method for multi-node jobs, or --cpu"
            )
        return DistInit(mode="spawn", world_size=world, master_port=port if port > 0 else 0, backend=backend,
                        nprocs=world)
    return DistInit(mode="single", backend=backend)


def free_port() -> int:
    """A currently free localhost TCP port for a spawned job's rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _record(args, init: DistInit) -> None:
    """Write the resolved topology back into args (fairseq field names) for the rest of the code."""
    args.distributed_world_size = init.world_size
    args.distributed_rank = init.rank
    args.device_id = init.local_rank
    args.local_rank = init.local_rank
    args.distributed_backend = init.backend


def init_process_group(args, init: DistInit) -> None:
    """Join the process group described by `init` and select this rank's device."""
    if init.backend == "nccl":
        torch.cuda.set_device(init.local_rank)
    elif not _use_cuda(args) and init.world_size > 1:
        # CPU workers share the machine's cores; give each its share so they do not oversubscribe.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, min(init.world_size, os.cpu_count() or 1))))
    logger.info(f"distributed init (rank {init.rank}): {init.url()}")
    # Every collective (and the rendezvous) waits at most --heartbeat-timeout for a peer: see faults.py.
    dist.init_process_group(backend=init.backend, init_method=init.url(), world_size=init.world_size,
                            rank=init.rank, timeout=faults.process_group_timeout(args))
    logger.info(f"initialized host {socket.gethostname()} as rank {init.rank}")
    _record(args, init)


def _spawn_worker(index: int, args, main_fn: Callable, init: DistInit, worker_init, kwargs: dict) -> None:
    """Local worker `index` of a spawned job: rank = first rank + index, device = index (fairseq)."""
    mine = replace(init, rank=init.rank + index, local_rank=index, nprocs=1)
    _run_in_group(args, mine, main_fn, worker_init, kwargs)


def _run_in_group(args, init: DistInit, main_fn: Callable, worker_init, kwargs: dict):
    _record(args, init)
    if worker_init is not None:
        worker_init(args)
    init_process_group(args, init)
    try:
        result = main_fn(args, **kwargs)
        # Every rank's last collective completes before any rank closes its connections: gloo aborts
        # (SIGABRT) a rank whose peer tears down a pair it is still using. Not on the error path,
        # where the peers may never arrive.
        barrier()
        return result
    finally:
        if is_initialized():
            dist.destroy_process_group()


def call_main(args, main_fn: Callable, worker_init: Optional[Callable] = None, **kwargs):
    """Run `main_fn(args, **kwargs)` once per rank of the job implied by env + flags.

    `worker_init(args)` runs first in every process that trains, with args.distributed_rank set: a
    spawned worker is a fresh interpreter that inherits none of the parent's set-up (logging
    handlers and levels in particular), so per-process set-up belongs there, not in the parent.

    Single process: a plain call. torchrun/SLURM/--distributed-no-spawn: join the group, run, leave.
    Otherwise spawn the local workers (main_fn must be picklable, i.e. a module-level function), on a
    free localhost port unless --distributed-init-method/--distributed-port says where; the parent
    returns None once all workers finish, or raises ProcessExitedException with the exit status of
    the first worker that failed (a worker killed by signal S counts as 128 + S); see faults.supervise.
    """
    init = infer_init(args)
    if init.mode == "single":
        _record(args, init)
        if worker_init is not None:
            worker_init(args)
        return main_fn(args, **kwargs)
    if init.mode == "spawn":
        if init.init_method is None and init.master_port <= 0:
            init.master_port = free_port()
        context = torch.multiprocessing.start_processes(
            _spawn_worker, args=(args, main_fn, init, worker_init, kwargs), nprocs=init.nprocs, join=False)
        failed = faults.supervise(context, first_rank=init.rank)
        if failed is not None:
            index, pid, status = failed
            raise torch.multiprocessing.ProcessExitedException(
                f"rank {init.rank + index} (pid {pid}) ended with status {status}", index, pid, status)
        return None
    return _run_in_group(args, init, main_fn, worker_init, kwargs)


def add_distributed_args(parser) -> None:
    """fairseq 0.12's distributed_training flags (for options.py to call if it lacks them)."""
    g = parser.add_argument_group("distributed_training")
    add = g.add_argument
    add("--distributed-world-size", type=int, default=max(1, torch.cuda.device_count()))
    add("--distributed-rank", type=int, default=0)
    add("--distributed-backend", default="nccl")
    add("--distributed-init-method", default=None)
    add("--distributed-port", type=int, default=-1)
    add("--device-id", "--local_rank", "--local-rank", dest="device_id", type=int, default=0)
    add("--distributed-no-spawn", action="store_true")
    add("--ddp-backend", default="pytorch_ddp", choices=list(DDP_BACKENDS))
    add("--bucket-cap-mb", type=int, default=25)
    add("--fix-batches-to-gpus", action="store_true")
    add("--find-unused-parameters", action="store_true")
    add("--broadcast-buffers", action="store_true")
    add("--heartbeat-timeout", type=int, default=-1, metavar="N",
        help="a collective that waits more than N seconds for a peer ends the job; -1: "
             f"{faults.DEFAULT_HEARTBEAT_TIMEOUT_S} (docs/faults.md)")
