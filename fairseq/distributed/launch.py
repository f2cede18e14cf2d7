"""Starting a distributed job the ways fairseq does, and running the training function in it.

torchrun, SLURM, --distributed-world-size N (spawn N local workers), and --distributed-init-method
URL --distributed-rank R (fairseq's multi-node form): infer_init decides how this process joins,
init_process_group joins, call_main spawns or runs in place. How a job ends when something goes
wrong (stop requests, dead peers, --heartbeat-timeout) is fairseq.distributed.faults.
"""
from __future__ import annotations

import logging
import os
import re
import socket
import sys
from dataclasses import dataclass, replace
from typing import Callable, Dict, Optional

import torch
import torch.distributed as dist

from fairseq.dataclass.namespace import as_namespace
from fairseq.distributed import faults
from fairseq.distributed.collectives import barrier, is_initialized
from fairseq.distributed.wrap import DDP_BACKENDS

logger = logging.getLogger(__name__)




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


_joined = False  # whether this process has been a rank of a multi-process group (exit_after_group)


def joined_group() -> bool:
    return _joined


def exit_after_group(code: int):
    """End a process that was a rank of a multi-process job, without the interpreter's teardown.

    torch's ProcessGroupGloo destructor can deadlock when the last DDP reducer is freed: the main thread,
    holding the GIL, joins gloo's worker thread, and that thread waits for the GIL to free a finished
    collective's tensor (seen in about 1 of 10 SIGTERM stops of a 2-rank job under load; `py-spy dump
    --native` shows exactly these two stacks, at interpreter exit or wherever the trainer is dropped).
    So the command line calls this while it still holds the trainer: everything the rank owes is done
    by then (checkpoints written and fsynced, the save dir released, the group left); it flushes its
    output and leaves with os._exit.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def _run_in_group(args, init: DistInit, main_fn: Callable, worker_init, kwargs: dict):
    global _joined
    _record(args, init)
    if worker_init is not None:
        worker_init(args)
    init_process_group(args, init)
    _joined = True
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
    """Run `main_fn(args, **kwargs)` once per rank of the job implied by env + flags (args: the parsed
    arguments, or fairseq's grouped cfg of them, which main_fn then receives as arguments).

    `worker_init(args)` runs first in every process that trains, with args.distributed_rank set: a
    spawned worker is a fresh interpreter that inherits none of the parent's set-up (logging
    handlers and levels in particular), so per-process set-up belongs there, not in the parent.

    Single process: a plain call. torchrun/SLURM/--distributed-no-spawn: join the group, run, leave.
    Otherwise spawn the local workers (main_fn must be picklable, i.e. a module-level function), on a
    free localhost port unless --distributed-init-method/--distributed-port says where; the parent
    returns None once all workers finish, or raises ProcessExitedException with the exit status of
    the first worker that failed (a worker killed by signal S counts as 128 + S); see faults.supervise.
    """
    args = as_namespace(args)  # fairseq's callers pass a grouped cfg (convert_namespace_to_omegaconf)
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
