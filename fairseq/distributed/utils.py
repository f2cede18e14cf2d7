"""fairseq.distributed.utils: fairseq's public path for the distributed helpers
(``from fairseq.distributed import utils as distributed_utils``; ``distributed_utils.call_main``).

The code lives by concern, and this module only names it where fairseq users look for it:
collectives.py (rank, world size, all-reduce, broadcast: no-ops in one process), wrap.py (DDP/FSDP
with fairseq's summed gradients), launch.py (torchrun, SLURM, spawn, call_main) and faults.py (how a
job stops). Our own modules import those directly.
"""
# Re-exports only: every name below is part of fairseq.distributed.utils' public surface.
from fairseq.distributed.collectives import (  # noqa: F401
    all_reduce_dict,
    all_reduce_sum_,
    barrier,
    broadcast_object,
    get_rank,
    get_world_size,
    is_initialized,
    is_master,
)
from fairseq.distributed.launch import (  # noqa: F401
    DistInit,
    add_distributed_args,
    call_main,
    first_slurm_host,
    free_port,
    infer_init,
    init_process_group,
)
from fairseq.distributed.wrap import DDP_BACKENDS, is_fsdp, maybe_no_sync, unwrap, wrap_model  # noqa: F401
