"""Distributed training: process-group set-up, launch (spawn, torchrun, SLURM) and model wrapping.

fairseq's public path is ``fairseq.distributed.utils`` (``import fairseq.distributed.utils as
distributed_utils``); everything lives in that module except how a job ends when something goes wrong
(stop requests, dead peers, --heartbeat-timeout): ``fairseq.distributed.faults``.
"""
