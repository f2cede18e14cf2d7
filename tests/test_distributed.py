"""Distributed training on CPU/gloo with 2 spawned processes.

How the comparisons are built: every rank can rebuild every batch deterministically, so each worker
also trains an unwrapped reference copy of the same model on the GLOBAL batch (all ranks' batches,
gradients summed, divided by the global sample size) and the test compares the DDP/FSDP parameters
with that reference. This is fairseq's definition of data parallelism: N ranks x 1 batch == one
process with --update-freq N on the same batches. Spawning is the slow part (~5 s per job), so each
job checks several things and writes its results to a file the parent asserts on.
"""
from __future__ import annotations

import argparse
import os

import pytest
import torch
import torch.multiprocessing as mp

from fairseq.checkpoint import fsdp_state
from fairseq.distributed import utils as D

WORLD = 2


def _ns(**kw):
    base = dict(distributed_world_size=1, cpu=True, ddp_backend="pytorch_ddp", distributed_port=-1,
                distributed_init_method=None, distributed_rank=0, distributed_no_spawn=False, device_id=0)
    base.update(kw)
    return argparse.Namespace(**base)


# ----------------------------------------------------------------------------- single process


def test_single_process_helpers_are_identities():
    t = torch.arange(3.0)
    assert D.get_rank() == 0 and D.get_world_size() == 1 and D.is_master()
    assert D.all_reduce_sum_(t) is t and t.tolist() == [0.0, 1.0, 2.0]
    assert D.all_reduce_dict({"loss": torch.tensor(2.5), "n": 3}) == {"loss": 2.5, "n": 3.0}
    m = torch.nn.Linear(2, 2)
    assert D.wrap_model(m, _ns(distributed_world_size=2)) is m
    assert D.unwrap(m) is m
    with D.maybe_no_sync(m, True):
        pass
    assert fsdp_state.model_state_dict(m).keys() == m.state_dict().keys()
    assert D.broadcast_object({"a": 1}) == {"a": 1}
    assert D.call_main(_ns(), lambda a: a.distributed_rank + 41) == 41


def test_infer_init_from_environment():
    a = _ns()
    tr = D.infer_init(a, {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "99"})
    assert (tr.mode, tr.rank, tr.world_size, tr.local_rank, tr.master_addr, tr.master_port, tr.backend) == (
        "torchrun", 3, 8, 1, "h", 99, "gloo")
    slurm_env = {"SLURM_PROCID": "5", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1",
                 "SLURM_NODELIST": "gpu[007-008,12],cpu1"}
    s = D.infer_init(_ns(distributed_port=12345), slurm_env)
    assert (s.mode, s.rank, s.world_size, s.local_rank, s.master_addr, s.master_port) == (
        "slurm", 5, 16, 1, "gpu007", 12345)
    with pytest.raises(ValueError, match="--distributed-port"):
        D.infer_init(_ns(), slurm_env)
    assert D.infer_init(_ns(distributed_world_size=4), {}).mode == "spawn"
    assert D.infer_init(_ns(distributed_world_size=4), {}).world_size == 4
    assert D.infer_init(_ns(), {}).mode == "single"
    with pytest.raises(ValueError, match="--distributed-world-size"):
        D.infer_init(_ns(distributed_world_size=0), {})
    with pytest.raises(ValueError, match="--distributed-no-spawn"):
        D.infer_init(_ns(distributed_world_size=2, distributed_no_spawn=True), {})
    assert D.first_slurm_host("node5") == "node5"
    assert D.first_slurm_host("a-b[3-4]") == "a-b3"


def test_infer_init_fairseq_multi_node_flags():
    """--distributed-init-method: ranks come from the flags and win over a launcher's environment
    (fairseq's call_main); --distributed-no-spawn makes this process one rank on --device-id."""
    url = "tcp://10.0.0.1:9000"
    one = D.infer_init(_ns(distributed_world_size=16, distributed_init_method=url, distributed_rank=9,
                           distributed_no_spawn=True, device_id=1), {"RANK": "0", "WORLD_SIZE": "2"})
    assert (one.mode, one.world_size, one.rank, one.local_rank, one.url()) == ("explicit", 16, 9, 1, url)
    with pytest.raises(ValueError, match="--distributed-rank 16 is outside"):
        D.infer_init(_ns(distributed_world_size=16, distributed_init_method=url, distributed_rank=16,
                         distributed_no_spawn=True), {})
    # without --distributed-no-spawn fairseq spawns one worker per local GPU; a CPU has none to count
    with pytest.raises(ValueError, match="add --distributed-no-spawn"):
        D.infer_init(_ns(distributed_world_size=2, distributed_init_method=url), {})
    # on a 4-GPU node: ranks R .. R+3, one worker per GPU (node 2 of a 16-GPU job starts at rank 8)
    with pytest.MonkeyPatch.context() as mp_:
        mp_.setattr(torch.cuda, "is_available", lambda: True)
        mp_.setattr(torch.cuda, "device_count", lambda: 4)
        node = D.infer_init(_ns(cpu=False, distributed_world_size=16, distributed_init_method=url,
                                distributed_rank=8), {})
        assert (node.mode, node.rank, node.nprocs, node.world_size, node.url()) == ("spawn", 8, 4, 16, url)
        with pytest.raises(ValueError, match="exceeds --distributed-world-size"):
            D.infer_init(_ns(cpu=False, distributed_world_size=16, distributed_init_method=url,
                             distributed_rank=14), {})
    # the derived rendezvous URLs
    assert D.infer_init(_ns(), {"RANK": "1", "WORLD_SIZE": "2"}).url() == "env://"
    assert D.DistInit(mode="spawn", master_port=5).url() == "tcp://127.0.0.1:5"


# ----------------------------------------------------------------------------- toy model, 2 ranks


def _toy_batches(step: int, rank: int, micro: int, n_micro: int):
    """Batch `micro` of rank `rank` at update `step`; sizes differ per rank so weighting matters."""
    g = torch.Generator().manual_seed(1000 * step + 10 * rank + micro)
    n = 3 + rank + micro
    return torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randn(n, 2, generator=g, dtype=torch.float64)


def _toy_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2)).double()


def _toy_train(model, opt, batches, sync_ctx):
    """One fairseq-style update: sum losses over micro-batches, backward each, divide by the global size.

    `batches` is this process's list of (x, y) or None (dummy: run with weight 0 to keep collectives in step).
    """
    opt.zero_grad()
    local = 0.0
    for i, b in enumerate(batches):
        last = i == len(batches) - 1
        weight = 1.0
        if b is None:  # dummy batch: forward something, contribute nothing
            b, weight = _toy_batches(0, 0, 0, 1), 0.0
        x, y = b
        with sync_ctx(not last):
            loss = ((model(x) - y) ** 2).sum() * weight
            loss.backward()
        local += x.shape[0] * weight
    total = D.all_reduce_dict({"sample_size": local})["sample_size"]
    for p in model.parameters():
        p.grad.div_(total)
    opt.step()


def _toy_worker(rank, world, port, out_dir):
    args = _ns(distributed_world_size=world, ddp_backend="pytorch_ddp")
    init = D.DistInit(mode="spawn", world_size=world, rank=rank, local_rank=rank, master_port=port)
    D.init_process_group(args, init)
    res = {}
    try:
        res["rank"], res["world"] = D.get_rank(), D.get_world_size()
        # all_reduce_dict with different key sets (a dummy batch logs nothing)
        res["dict"] = D.all_reduce_dict({"a": 1.0 + rank, **({"only1": 5} if rank == 1 else {})})
        t = torch.tensor([float(rank + 1)])
        res["sum"] = D.all_reduce_sum_(t).item()
        res["bcast"] = D.broadcast_object(f"from{rank}")
        try:
            D.wrap_model(_toy_model(), _ns(distributed_world_size=world, ddp_backend="bogus"))
        except ValueError as e:
            res["bad_backend"] = str(e)

        # DDP with --update-freq 2 (no_sync on the first micro-batch); rank 1's last micro-batch is a
        # dummy at update 2, as when the shards have unequal batch counts.
        for backend in ("pytorch_ddp", "legacy_ddp", "fully_sharded"):
            model = _toy_model()
            wrapped = D.wrap_model(model, _ns(distributed_world_size=world, ddp_backend=backend))
            opt = torch.optim.SGD(wrapped.parameters(), lr=0.3)
            ref = _toy_model()
            ref_opt = torch.optim.SGD(ref.parameters(), lr=0.3)

            def mine(step, r):
                return [None if (step == 2 and r == 1 and m == 1) else _toy_batches(step, r, m, 2) for m in range(2)]

            for step in range(3):
                _toy_train(wrapped, opt, mine(step, rank), lambda e: D.maybe_no_sync(wrapped, e))
                # reference: one process, all ranks' batches, no collectives involved in the grads
                everything = [b for r in range(world) for b in mine(step, r)]
                _toy_train_local(ref, ref_opt, everything)
            if backend != "fully_sharded":
                res["proxy"] = (getattr(wrapped, "0") is model[0], list(wrapped.state_dict()) == list(model.state_dict()),
                                D.unwrap(wrapped) is model)
            full = fsdp_state.model_state_dict(wrapped)
            res[backend] = max((full[k] - v).abs().max().item() for k, v in ref.state_dict().items())
            # round trip the full state dict into the (possibly sharded) model
            fsdp_state.load_model_state_dict(wrapped, ref.state_dict())
            back = fsdp_state.model_state_dict(wrapped)
            res[backend + "_load"] = max((back[k] - v).abs().max().item() for k, v in ref.state_dict().items())
    finally:
        torch.save(res, os.path.join(out_dir, f"toy{rank}.pt"))
        D.barrier()
        torch.distributed.destroy_process_group()


def _toy_train_local(model, opt, batches):
    """Same update as _toy_train without any collective (the single-process reference)."""
    opt.zero_grad()
    total = 0.0
    for b in batches:
        if b is None:
            continue
        x, y = b
        ((model(x) - y) ** 2).sum().backward()
        total += x.shape[0]
    for p in model.parameters():
        p.grad.div_(total)
    opt.step()


def test_toy_ddp_and_fsdp_match_single_process_on_global_batch(tmp_path):
    mp.spawn(_toy_worker, args=(WORLD, D.free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        res = torch.load(tmp_path / f"toy{rank}.pt", weights_only=False)
        assert (res["rank"], res["world"]) == (rank, WORLD)
        assert res["dict"] == {"a": 3.0, "only1": 5.0}
        assert res["sum"] == 3.0
        assert res["bcast"] == "from0"
        assert "--ddp-backend 'bogus'" in res["bad_backend"]
        assert res["proxy"] == (True, True, True)  # attribute access + fairseq keys through DDP
        for backend in ("pytorch_ddp", "legacy_ddp", "fully_sharded"):
            assert res[backend] < 1e-12, (backend, res[backend])
            assert res[backend + "_load"] == 0.0, backend


# ----------------------------------------------------------------------------- end to end (fairseq-train main)
#
# Reference: ONE process with --update-freq 2. Under DDP the iterator shards the shuffled batch list
# as batches[rank::2], so update u of the 2-rank run sees batches (2u, 2u+1) on ranks (0, 1): exactly
# the two micro-batches of the single process's update u. Masking depends on (seed, epoch, index),
# not on the rank, and dropout is 0, so the updates must agree up to float summation order.

E2E_FLAGS = [
    "--task", "masked_lm", "--arch", "roberta_base", "--encoder-layers", "4", "--encoder-embed-dim", "32",
    "--encoder-ffn-embed-dim", "64", "--encoder-attention-heads", "2", "--tokens-per-sample", "32",
    "--sample-break-mode", "complete", "--batch-size", "4", "--optimizer", "adam", "--lr", "1e-4",
    "--lr-scheduler", "polynomial_decay", "--warmup-updates", "0", "--total-num-update", "10",
    "--dropout", "0", "--attention-dropout", "0", "--cpu", "--log-format", "none", "--disable-validation",
    "--token-drop", "0.5", "--sctd-interval", "2", "--seed", "3", "--save-interval-updates", "2",
    "--no-epoch-checkpoints",
]


def _train_args(data, save_dir, *extra):
    from fairseq import options

    parser = options.get_training_parser()
    return options.parse_args_and_arch(parser, [str(data), *E2E_FLAGS, "--save-dir", str(save_dir), *extra])


def _snapshot(trainer):
    return {
        "params": {k: v.detach().clone() for k, v in fsdp_state.model_state_dict(trainer.model).items()},
        "importance": trainer.task.token_dropper.importance.scores.clone(),
        "num_updates": trainer.num_updates,
    }


def _e2e_worker(rank, world, port, data, out_dir, backend):
    from fairseq_cli import train

    res = {}
    try:
        a = _train_args(data, os.path.join(out_dir, f"run_{backend}"), "--max-update", "4",
                        "--ddp-backend", backend, "--distributed-world-size", str(world))
        D.init_process_group(a, D.DistInit(mode="spawn", world_size=world, rank=rank, local_rank=rank,
                                           master_port=port))
        res["full"] = _snapshot(train.main(a))
        # resume the same job from its update-2 checkpoint, into a fresh save dir
        b = _train_args(data, os.path.join(out_dir, "resumed"), "--max-update", "4", "--ddp-backend", backend,
                        "--distributed-world-size", str(world),
                        "--restore-file", os.path.join(out_dir, f"run_{backend}", "checkpoint_1_2.pt"))
        b.distributed_rank, b.device_id = rank, rank
        res["resumed"] = _snapshot(train.main(b))
        D.barrier()  # no rank tears the group down while a peer still uses it (gloo aborts then)
    finally:
        torch.save(res, os.path.join(out_dir, f"e2e{rank}.pt"))
        if D.is_initialized():
            torch.distributed.destroy_process_group()


def _max_diff(a, b):
    return max((a[k].float() - b[k].float()).abs().max().item() for k in b)


@pytest.fixture(scope="module")
def single_process_reference(peer_dir, tmp_path_factory):
    """4 updates of one process with --update-freq 2 (the global batch of the 2-rank runs)."""
    from fairseq_cli import train

    out = tmp_path_factory.mktemp("single")
    trainer = train.main(_train_args(peer_dir / "data-bin", out, "--max-update", "4", "--update-freq", "2"))
    return _snapshot(trainer)


def test_ddp_equals_single_process_and_resumes_identically(peer_dir, tmp_path, single_process_reference):
    ref = single_process_reference
    mp.spawn(_e2e_worker, args=(WORLD, D.free_port(), str(peer_dir / "data-bin"), str(tmp_path), "pytorch_ddp"),
             nprocs=WORLD, join=True)
    r0, r1 = (torch.load(tmp_path / f"e2e{r}.pt", weights_only=False) for r in range(WORLD))
    for r in (r0, r1):
        assert r["full"]["num_updates"] == 4 and r["resumed"]["num_updates"] == 4
        assert _max_diff(r["full"]["params"], ref["params"]) < 1e-6
        # importance table: summed over ranks, so equal to the single process's (which saw both halves)
        torch.testing.assert_close(r["full"]["importance"], ref["importance"], rtol=0, atol=1e-5)
        # resumed from checkpoint_1_2.pt == uninterrupted, bit for bit
        assert _max_diff(r["resumed"]["params"], r["full"]["params"]) == 0.0
        assert torch.equal(r["resumed"]["importance"], r["full"]["importance"])
    # both ranks hold identical replicas and identical importance tables
    assert _max_diff(r0["full"]["params"], r1["full"]["params"]) == 0.0
    assert torch.equal(r0["full"]["importance"], r1["full"]["importance"])
    # the table actually moved away from its initial value (token dropping was on): the unigram prior
    from fairseq.data.dictionary import Dictionary
    from fairseq.token_drop import special_ids_of, unigram_importance

    d = Dictionary.load(str(peer_dir / "data-bin" / "dict.txt"))
    d.add_symbol("<mask>")  # as the masked_lm task does
    moved = r0["full"]["importance"] != unigram_importance(d.count)
    moved[special_ids_of(d) + [d.pad()]] = False  # pinned, not learned
    assert moved.sum() > 10


def test_fsdp_trains_like_single_process(peer_dir, tmp_path, single_process_reference):
    mp.spawn(_e2e_worker, args=(WORLD, D.free_port(), str(peer_dir / "data-bin"), str(tmp_path), "fully_sharded"),
             nprocs=WORLD, join=True)
    from fairseq.checkpoint.files import load_checkpoint_file

    for r in range(WORLD):
        res = torch.load(tmp_path / f"e2e{r}.pt", weights_only=False)
        assert res["full"]["num_updates"] == 4 and res["resumed"]["num_updates"] == 4
        assert _max_diff(res["full"]["params"], single_process_reference["params"]) < 1e-6
        # resuming restores the gathered optimizer state re-sharded: same result as uninterrupted
        assert _max_diff(res["resumed"]["params"], res["full"]["params"]) < 1e-7
    # rank 0 wrote full (unsharded) model and optimizer state that a single process loads (weights_only)
    saved = load_checkpoint_file(str(tmp_path / "run_fully_sharded" / "checkpoint_last.pt"))
    assert _max_diff(res["full"]["params"], saved["model"]) == 0.0
    opt = saved["last_optimizer_state"]["state"]
    assert len(opt) == len(res["full"]["params"]) - 1  # every param but the tied lm_head.weight
    assert all(type(v) is torch.Tensor for s in opt.values() for v in s.values() if torch.is_tensor(v))
