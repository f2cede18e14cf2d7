"""ScTD's KL normalisation (SPEC section 3, corrected) against hand computations, through the real Trainer.

reference (default): what the published code optimises. Per micro-batch: the SUMMED MLM loss of the
dropping pass + 0.05 * (KL_local + KL_global summed over sequences); the trainer sums the micro-batches
(and ranks) and divides the gradient by the total sample size S.
mean: mean MLM loss + 0.05 * mean over sequences of the KL terms (one micro-batch).

The hand objective below is written out from those sentences (log-softmax gather for the NLL,
p * (log p - log q) for the KL), on a copy of the model, and its autograd gradient is compared with the
gradient the trainer leaves in .grad after one update (masked_lm and cross_entropy; --update-freq 2;
two gloo ranks). Weights are redrawn larger than RoBERTa's init so that the KL terms are O(1): at init
they are ~1e-7 and no normalisation could be told apart; each test also checks that the old formula
(KL weighted S times more) gives a clearly different gradient.
"""
import copy
import os

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from fairseq.distributed import utils as D
from fairseq import options, tasks
from fairseq.trainer import Trainer

FLAGS = ["--task", "masked_lm", "--arch", "roberta", "--encoder-layers", "4", "--encoder-embed-dim", "16",
         "--encoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2", "--tokens-per-sample", "32",
         "--sample-break-mode", "complete", "--batch-size", "3", "--optimizer", "adam", "--lr", "1e-3",
         "--lr-scheduler", "fixed", "--dropout", "0", "--attention-dropout", "0", "--cpu", "--token-drop", "0.5",
         "--disable-validation", "--seed", "2"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def build(data, criterion, *extra):
    """(args, task, model, reference copy of the model, trainer, the first two training batches)."""
    args = options.parse_args_and_arch(options.get_training_parser(),
                                       [str(data), *FLAGS, "--criterion", criterion, *extra])
    task = tasks.setup_task(args)
    task.load_dataset("train")
    model = task.build_model(args)
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.7)
    reference = copy.deepcopy(model)
    trainer = Trainer(args, task, model, task.build_criterion(args))
    itr = task.get_batch_iterator(task.dataset("train"), max_sentences=3, max_positions=32, seed=2,
                                  ignore_invalid_inputs=True).next_epoch_itr(shuffle=True)
    return args, task, model, reference, trainer, [next(itr), next(itr)]


def kl_sum(h_full, h_drop):
    """sum over sequences of sum_c p_full(c) * (log p_full(c) - log p_drop(c)), softmax over the hidden dim."""
    lp, lq = h_full.float().log_softmax(-1), h_drop.float().log_softmax(-1)
    return (lp.exp() * (lp - lq)).sum()


def hand_objective(model, task, criterion, batches, lam=0.05, reduction="reference", kl_scale=1.0):
    """The loss whose gradient one update must follow, written the way the reference code writes it."""
    dropper, pad = task.token_dropper, task.dictionary.pad()
    total, size = 0.0, 0.0
    for b in batches:
        src, tgt = b["net_input"]["src_tokens"], b["target"]
        masked = tgt.ne(pad)
        keep = dropper.keep_positions(src, b["id"], 0)
        logits, drop = model(src, masked_tokens=masked, token_drop_keep=keep)
        _, full = model(src, masked_tokens=masked)
        nll = -F.log_softmax(logits.float(), -1).gather(1, tgt[masked].view(-1, 1)).sum()
        kl = kl_sum(full["cls_local"], drop["cls_local"]) + kl_sum(full["cls_global"], drop["cls_global"])
        s = float(masked.sum()) if criterion == "masked_lm" else float(b["ntokens"])
        if reduction == "reference":
            total = total + nll + lam * kl_scale * kl  # summed MLM loss + 0.05 * summed KL
        else:
            total = total + s * (nll / s + lam * kl / src.size(0))  # (mean MLM + 0.05 * mean KL), weight S_i
        size += s
    return total / size  # the trainer's division by the sample size


def hand_grads(reference, *args, **kw):
    params = [p for _, p in reference.named_parameters()]
    return torch.autograd.grad(hand_objective(reference, *args, **kw), params)


def max_diff(model, grads):
    return max(float((p.grad - g).abs().max()) for p, g in zip(model.parameters(), grads))


@pytest.mark.parametrize("criterion", ["masked_lm", "cross_entropy"])
def test_reference_kl_normalisation_with_update_freq_2(peer_dir, criterion):
    args, task, model, ref, trainer, batches = build(peer_dir / "data-bin", criterion, "--update-freq", "2")
    assert task.token_dropper.is_sctd_update(0)
    want = hand_grads(ref, task, criterion, batches)
    old = hand_grads(ref, task, criterion, batches, kl_scale=sum(
        float(b["target"].ne(1).sum()) if criterion == "masked_lm" else float(b["ntokens"]) for b in batches))
    out = trainer.train_step(batches)
    assert out["log"]["sctd_passes"] == 2 and out["log"]["sctd_kl_global"] > 0.01  # KL is not negligible
    assert max_diff(model, want) < 1e-6
    assert max_diff(model, old) > 1e-3  # the S-times-larger KL weight would be caught


def test_mean_kl_reduction_matches_its_formula(peer_dir):
    args, task, model, ref, trainer, batches = build(peer_dir / "data-bin", "masked_lm", "--sctd-kl-reduction",
                                                     "mean")
    want = hand_grads(ref, task, "masked_lm", batches[:1], reduction="mean")
    trainer.train_step(batches[:1])
    assert max_diff(model, want) < 1e-6
    assert max_diff(model, hand_grads(ref, task, "masked_lm", batches[:1])) > 1e-3  # differs from reference


def _two_rank_worker(rank, world, port, data, out_dir):
    res = {}
    try:
        for criterion in ("masked_lm", "cross_entropy"):
            extra = ["--distributed-world-size", str(world), "--ddp-backend", "pytorch_ddp"]
            if criterion == "masked_lm":
                a = options.parse_args_and_arch(options.get_training_parser(), [str(data), *FLAGS, *extra])
                D.init_process_group(a, D.DistInit(mode="spawn", world_size=world, rank=rank, local_rank=rank,
                                                   master_port=port))
            args, task, model, ref, trainer, batches = build(data, criterion, *extra)
            want = hand_grads(ref, task, criterion, batches)  # the global batch: both ranks' micro-batches
            trainer.train_step([batches[rank]])
            res[criterion] = max_diff(model, want)
            D.barrier()  # both ranks done with this trainer's collectives before the next one (or teardown)
            del trainer, model
    finally:
        torch.save(res, os.path.join(out_dir, f"rank{rank}.pt"))
        if D.is_initialized():
            torch.distributed.destroy_process_group()


def test_reference_kl_normalisation_on_two_ranks(peer_dir, tmp_path):
    mp.spawn(_two_rank_worker, args=(2, D.free_port(), str(peer_dir / "data-bin"), str(tmp_path)), nprocs=2,
             join=True)
    for rank in range(2):
        res = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert set(res) == {"masked_lm", "cross_entropy"}, res
        for criterion, diff in res.items():
            assert diff < 1e-6, (rank, criterion, diff)
