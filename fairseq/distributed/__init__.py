"""Distributed training, one module per concern.

collectives.py  rank / world size / all-reduce / broadcast, single-process no-ops without a group
wrap.py         DDP / FSDP2 wrapping with fairseq's summed-gradient semantics
launch.py       how a process joins a job (torchrun, SLURM, spawn, init-method) and call_main
faults.py       how a job stops: agreed stop on signals, --heartbeat-timeout, dead-peer roll call
utils.py        fairseq's public name (``fairseq.distributed.utils``) for the helpers above
"""
from fairseq.distributed.distributed_timeout_wrapper import DistributedTimeoutWrapper  # noqa: F401
from fairseq.distributed.module_proxy_wrapper import ModuleProxyWrapper  # noqa: F401
