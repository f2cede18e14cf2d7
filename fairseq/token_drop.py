"""Token dropping (Hou et al. 2022): which positions the middle layers process, and the importance table.

The model (fairseq/models/roberta/model.py) only needs a sorted LongTensor [B, K] of kept positions;
everything that decides *which* positions lives here so that the model stays a plain function of its
input. Split of an L-layer encoder (SPEC section 2): layers 0..d-1 full, layer d cross (kept queries,
all keys), layers d+1..last_kept on kept positions only, merge, layers last_kept+1..L-1 full.

Importance (SPEC section 2): a [V] table m(v); after every update
m(v) <- beta * m(v) + (1 - beta) * mean loss of id v over the whole global batch (all micro-batches,
all ranks). Specials are pinned to SPECIAL_SCORE so they are always kept; <pad> is always dropped first.
The table is training state (checkpoint task_state), never part of the model.

Initialisation: m(v) = -log p(v) from the unigram counts of dict.txt (add-one smoothed), so rare ids
start more important than frequent ones, instead of one constant for every id. Ties (the same id
twice in a sequence, or equal scores) are broken by a pseudo-random key per (seed, update, sample
id, position) rather than by position: a constant table would otherwise keep the first K positions
of every sequence for the first updates. The key depends on the sample, not on the batch it lands
in, so one process with --update-freq N and N ranks keep the same positions.

Schedule (SPEC section 2): update u (u = updates completed before it) runs the full model when
u < --token-drop-warmup-updates or u >= total - --token-drop-final-full-updates, total being
--max-update (or --total-num-update when only that is set); the same rule is
fairseq.flops.schedule_ideal_ratio's.
"""
from __future__ import annotations

import argparse
import math
import os
import pickle
import warnings
from typing import Iterable, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from fairseq.distributed import collectives

SPECIAL_SCORE = 1e4
DEFAULT_INIT = 10.0
DEFAULT_SCTD_INTERVAL = 10


# --------------------------------------------------------------------------- flags


def add_token_drop_args(parser: argparse.ArgumentParser) -> None:
    """Add the token-dropping / ScTD flags (called by MaskedLMTask.add_args)."""
    g = parser.add_argument_group("token dropping / ScTD")
    g.add_argument("--token-drop", type=float, default=0.0, metavar="P",
                   help="fraction of positions the middle layers drop (0 = off, 0 <= P < 1)")
    g.add_argument("--token-drop-importance", choices=["loss", "random"], default="loss",
                   help="keep the tokens with the highest running MLM loss, or a uniform random subset")
    g.add_argument("--token-drop-layers", type=str, default=None, metavar="START,END",
                   help="cross layer START and last dropping layer END (0-based); "
                        "default Hou split START=L//2-1, END=L-2")
    g.add_argument("--token-importance-beta", type=float, default=0.95, metavar="B",
                   help="EMA factor of the importance table: m <- B*m + (1-B)*loss")
    g.add_argument("--init-token-importance", type=str, default=None, metavar="PATH",
                   help="initial importance table (.npy, .pt or text with one float per line, vocab-sized)")
    g.add_argument("--sctd-interval", type=int, default=None, metavar="FI",
                   help="ScTD: every FI-th update also runs the full model and adds the KL terms "
                        f"(default {DEFAULT_SCTD_INTERVAL} when --token-drop > 0; 0 = vanilla token dropping)")
    g.add_argument("--sctd-weight", type=float, default=0.05, metavar="LAMBDA",
                   help="ScTD weight of KL_local + KL_global")
    g.add_argument("--sctd-full-mlm-weight", type=float, default=0.0, metavar="W",
                   help="ScTD weight of the full pass MLM loss (0 = the paper's published setting)")
    g.add_argument("--sctd-kl-reduction", choices=["reference", "mean"], default="reference",
                   help="reference: lambda * KL summed over sequences added to the summed MLM loss (the "
                        "published code); mean: lambda * KL averaged over sequences added to the mean MLM loss")
    g.add_argument("--token-drop-warmup-updates", type=int, default=0,
                   metavar="N", help="the first N updates run the full model (no dropping, no ScTD pass)")
    g.add_argument("--token-drop-final-full-updates", type=int, default=0, metavar="N",
                   help="the last N updates before --max-update (or --total-num-update) run the full model")


#: flags that only mean something with --token-drop > 0, with their defaults (warned about otherwise)
DROP_ONLY_DEFAULTS = {"token_drop_importance": "loss", "token_drop_layers": None, "token_importance_beta": 0.95,
                      "init_token_importance": None, "sctd_interval": None, "sctd_weight": 0.05,
                      "sctd_full_mlm_weight": 0.0, "sctd_kl_reduction": "reference",
                      "token_drop_warmup_updates": 0, "token_drop_final_full_updates": 0}


def unused_flags(args) -> list:
    """The token-drop/ScTD flags set away from their defaults while --token-drop is 0 (they do nothing)."""
    if float(getattr(args, "token_drop", 0.0) or 0.0) > 0:
        return []
    return ["--" + k.replace("_", "-") for k, v in DROP_ONLY_DEFAULTS.items() if getattr(args, k, v) != v]


def is_full_phase(update_num: int, warmup_updates: int, final_full_updates: int,
                  total_updates: Optional[int]) -> bool:
    """The schedule rule: update u (u = updates completed before it) runs the full model when
    u < warmup_updates or u >= total_updates - final_full_updates (shared with fairseq.flops)."""
    u = int(update_num)
    if u < warmup_updates:
        return True
    return final_full_updates > 0 and total_updates is not None and u >= total_updates - final_full_updates


def schedule_total(args) -> int:
    """The update count the final-full phase counts back from: --max-update, else --total-num-update."""
    max_update = int(getattr(args, "max_update", 0) or 0)
    if max_update > 0:
        return max_update
    total = getattr(args, "total_num_update", None)
    if total is not None and int(total) > 0:
        return int(total)
    raise ValueError("--token-drop-final-full-updates needs --max-update or --total-num-update "
                     "(the last N updates are counted back from there)")


def sctd_interval(args) -> int:
    """Resolved --sctd-interval: default 10 when token dropping is on, 0 when it is off."""
    p = float(getattr(args, "token_drop", 0.0) or 0.0)
    fi = getattr(args, "sctd_interval", None)
    if p <= 0:
        return 0
    return DEFAULT_SCTD_INTERVAL if fi is None else int(fi)


# --------------------------------------------------------------------------- split and keep count


def drop_layer_split(num_layers: int, start_end: Union[None, str, Sequence[int]] = None) -> Tuple[int, int]:
    """(d, last_kept): layer d is the cross layer, layers d+1..last_kept run on kept positions only.

    Default is Hou's split d = L//2 - 1, last_kept = L - 2, which needs L >= 4. `start_end` is the
    --token-drop-layers value ("START,END" or a pair) overriding it; it must leave layer L-1 full.
    """
    L = int(num_layers)
    if start_end is None or start_end == "":
        if L < 4:
            raise ValueError(f"token dropping needs at least 4 encoder layers (got --encoder-layers {L})")
        return L // 2 - 1, L - 2
    if isinstance(start_end, str):
        parts = start_end.split(",")
        try:
            start, end = (int(x) for x in parts)
        except ValueError:
            raise ValueError(f"--token-drop-layers {start_end!r}: expected START,END (two integers)") from None
    else:
        start, end = (int(x) for x in start_end)
    if not (0 <= start <= end <= L - 2):
        raise ValueError(f"--token-drop-layers {start},{end}: need 0 <= START <= END <= L-2 = {L - 2} "
                         f"for a {L}-layer encoder (the last layer must run on all positions)")
    return start, end


def keep_count(seq_len: int, p: float) -> int:
    """K = T - floor(T*p) positions kept per sequence (T = padded batch length; 1e-9 absorbs float fuzz)."""
    T = int(seq_len)
    return T - int(math.floor(T * float(p) + 1e-9))


def check_keeps_real_tokens(seq_len: int, p: float) -> int:
    """K for a full-length sequence; error when K leaves no slot for a real token next to <s>."""
    k = keep_count(seq_len, p)
    if k < 2:
        raise ValueError(f"--token-drop {p}: keeps {k} of {seq_len} positions (--tokens-per-sample {seq_len}), "
                         "so no real token besides <s> would reach the middle layers; use a lower rate")
    return k


# --------------------------------------------------------------------------- selection


_M31 = (1 << 31) - 1


def _mix31(x: torch.Tensor) -> torch.Tensor:
    """A 31-bit integer mixer (xorshift-multiply rounds, odd multipliers below 2^31)."""
    x = ((x ^ (x >> 15)) * 0x2C1B3C6D) & _M31
    x = ((x ^ (x >> 12)) * 0x297A2D39) & _M31
    return x ^ (x >> 15)


def tie_break_keys(sample_ids: torch.Tensor, seq_len: int, seed: int, update_num: int) -> torch.Tensor:
    """Pseudo-random int64 keys [B, T] in [0, 2^31), a pure function of (seed, update, sample id, position).

    Counter-based (no generator state), so a sample gets the same keys whichever batch, rank or
    micro-batch it is in, and a resumed run draws the same keys as an uninterrupted one. Integer
    hashing in 31 bits: every product stays below 2^62, so int64 never overflows on any device.
    """
    ids = sample_ids.reshape(-1, 1).to(torch.long)
    step = torch.tensor((int(seed) * 40503 + int(update_num)) & _M31, device=ids.device)
    row = _mix31((_mix31(step) + ids) & _M31)  # one value per sample
    pos = torch.arange(int(seq_len), device=ids.device).reshape(1, -1)
    return _mix31(row ^ _mix31(pos))  # one per (sample, position)


def select_kept_positions(src_tokens: torch.Tensor, scores: Optional[torch.Tensor], keep_count: int, pad: int,
                          forced_keep_ids: Iterable[int] = (), tie_break: Optional[torch.Tensor] = None,
                          mode: str = "loss") -> torch.Tensor:
    """Per sequence, the K positions with the highest score, sorted ascending. LongTensor [B, K].

    Rules: position 0 (the <s> slot) is always kept; positions holding a forced-keep id score SPECIAL_SCORE
    (above any learned score, so they are kept unless there are more of them than K); <pad> scores -inf
    (dropped before any real token). Ties go to the smaller `tie_break` key (int64 [B, T], see
    tie_break_keys), or to the earlier position when it is None. Mode 'random' gives every real token
    the same score, so the keys alone choose (a uniform random subset, the random-LTD ablation).
    Vectorised: a stable sort by key, a stable sort by score, one sort of the K kept indices.
    """
    if src_tokens.dim() != 2:
        raise ValueError(f"select_kept_positions: src_tokens must be [B, T], got shape {tuple(src_tokens.shape)}")
    B, T = src_tokens.shape
    K = int(keep_count)
    if not (1 <= K <= T):
        raise ValueError(f"select_kept_positions: keep_count {K} outside [1, T={T}]")
    if mode == "random":
        if tie_break is None:
            raise ValueError("select_kept_positions: mode 'random' needs tie_break keys")
        s = torch.zeros((B, T), dtype=torch.float32, device=src_tokens.device)
    elif mode == "loss":
        if scores is None:
            raise ValueError("select_kept_positions: mode 'loss' needs a scores table")
        s = scores.to(device=src_tokens.device, dtype=torch.float32)[src_tokens]
    else:
        raise ValueError(f"--token-drop-importance {mode!r}: choose from loss, random")
    forced = list(forced_keep_ids)
    if forced:
        ids = torch.tensor(forced, dtype=src_tokens.dtype, device=src_tokens.device)
        s = torch.where(torch.isin(src_tokens, ids), torch.full_like(s, SPECIAL_SCORE), s)
    s = s.masked_fill(src_tokens.eq(pad), float("-inf"))
    # Position 0 is the <s>/[CLS] slot whatever token masking put there (fairseq may mask or replace
    # <s> too): the model's cross layer and ScTD's KL terms rely on it, so it is always kept.
    s[:, 0] = float("inf")
    if tie_break is None:
        order = torch.sort(s, dim=1, descending=True, stable=True).indices[:, :K]
    else:  # visit positions in key order, then a stable sort by score keeps that order among equals
        perm = torch.sort(tie_break.to(s.device), dim=1, stable=True).indices
        by_score = torch.sort(s.gather(1, perm), dim=1, descending=True, stable=True).indices[:, :K]
        order = perm.gather(1, by_score)
    return torch.sort(order, dim=1).values


def gather_positions(x: torch.Tensor, keep: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """x[b, keep[b], ...] along `dim` (1 for [B,T,...], 0 for [T,B,...]); helper for models and tests."""
    if dim == 1:
        idx = keep.view(keep.shape + (1,) * (x.dim() - 2)).expand(keep.shape + x.shape[2:])
        return x.gather(1, idx)
    if dim == 0:
        return gather_positions(x.transpose(0, 1), keep, 1).transpose(0, 1)
    raise ValueError(f"gather_positions: dim must be 0 or 1, got {dim}")


def merge_positions(full: torch.Tensor, kept: torch.Tensor, keep: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Copy of `full` whose kept positions are replaced by `kept` (differentiable in both)."""
    if dim == 1:
        idx = keep.view(keep.shape + (1,) * (full.dim() - 2)).expand(keep.shape + full.shape[2:])
        return full.scatter(1, idx, kept)
    if dim == 0:
        return merge_positions(full.transpose(0, 1), kept.transpose(0, 1), keep, 1).transpose(0, 1)
    raise ValueError(f"merge_positions: dim must be 0 or 1, got {dim}")


# --------------------------------------------------------------------------- importance table


def load_importance_file(path: str, vocab_size: int) -> torch.Tensor:
    """Read a vocab-sized table from .npy, .pt/.pth or text (one float per line)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--init-token-importance {path}: file not found")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            t = torch.from_numpy(np.asarray(np.load(path), dtype=np.float32))
        elif ext in (".pt", ".pth"):
            with warnings.catch_warnings(action="ignore"):  # torch's note on a refused pickle's protocol
                obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict) and "scores" in obj:
                obj = obj["scores"]
            t = torch.as_tensor(obj, dtype=torch.float32)
        else:
            with open(path, encoding="utf-8") as f:
                t = torch.tensor([float(line) for line in f if line.strip()], dtype=torch.float32)
    except pickle.UnpicklingError:  # weights_only refuses a pickle of anything but tensors, before it runs
        raise ValueError(f"--init-token-importance {path}: a pickle of more than tensors, which "
                         "torch.load(weights_only=True) refuses unread; nothing in it ran") from None
    except (ValueError, RuntimeError, OSError) as e:
        raise ValueError(f"--init-token-importance {path}: cannot read a float table ({e})") from None
    t = t.reshape(-1)
    if not bool(torch.isfinite(t).all()):
        i = int((~torch.isfinite(t)).nonzero()[0])
        raise ValueError(f"--init-token-importance {path}: entry {i} is {float(t[i])}; every value must be finite")
    if t.numel() != vocab_size:
        raise ValueError(f"--init-token-importance {path}: has {t.numel()} values but the dictionary "
                         f"has {vocab_size} entries")
    return t


def unigram_importance(counts: Sequence[int]) -> torch.Tensor:
    """-log p(v) with p(v) = (count(v) + 1) / (N + V): rare ids start as important, frequent ones not.

    Add-one smoothing keeps ids with count 0 (fairseq's madeupword padding) finite. An MLM's loss on
    an id starts near log V and, as it learns, falls roughly in frequency order, so the unigram
    surprisal is a sensible prior for the running loss it is replaced by.
    """
    c = torch.as_tensor(list(counts), dtype=torch.float64)
    return (-torch.log((c + 1.0) / (c.sum() + c.numel()))).to(torch.float32)


class TokenImportance:
    """Running per-id MLM loss m(v) (SPEC section 2), with buffers for the current update."""

    def __init__(self, vocab_size: int, special_ids: Iterable[int], pad: int,
                 init: Union[float, torch.Tensor] = DEFAULT_INIT, beta: float = 0.95,
                 init_path: Optional[str] = None):
        if not (0.0 <= beta < 1.0):
            raise ValueError(f"--token-importance-beta {beta}: must satisfy 0 <= beta < 1")
        self.vocab_size = int(vocab_size)
        self.special_ids = sorted({int(i) for i in special_ids} - {int(pad)})
        self.pad = int(pad)
        self.beta = float(beta)
        if init_path:
            self.scores = load_importance_file(init_path, self.vocab_size)
        elif torch.is_tensor(init):
            self.scores = init.to(torch.float32).clone().reshape(self.vocab_size)
        else:
            self.scores = torch.full((self.vocab_size,), float(init), dtype=torch.float32)
        self._pin()
        self.reset()

    def _pin(self) -> None:
        if self.special_ids:
            self.scores[self.special_ids] = SPECIAL_SCORE
        self.scores[self.pad] = float("-inf")

    def reset(self) -> None:
        """Clear the loss sums/counts of the current update (also done by apply)."""
        self.loss_sum = torch.zeros(self.vocab_size, dtype=torch.float64)
        self.count = torch.zeros(self.vocab_size, dtype=torch.float64)

    @torch.no_grad()
    def accumulate(self, targets: torch.Tensor, losses: torch.Tensor) -> None:
        """Add per-token losses (nats) keyed by target id; pad targets are ignored."""
        t = targets.detach().reshape(-1).to("cpu", torch.long)
        l = losses.detach().reshape(-1).to("cpu", torch.float64)
        if t.numel() != l.numel():
            raise ValueError(f"TokenImportance.accumulate: {t.numel()} targets but {l.numel()} losses")
        keep = t.ne(self.pad)
        t, l = t[keep], l[keep]
        self.loss_sum.index_add_(0, t, l)
        self.count.index_add_(0, t, torch.ones_like(l))

    @torch.no_grad()
    def apply(self, process_group=None) -> None:
        """End of an update: sum buffers over ranks, EMA the ids seen, re-pin specials, reset."""
        buf = torch.stack([self.loss_sum, self.count])
        collectives.all_reduce_sum_(buf, group=process_group)  # no-op with one process
        loss_sum, count = buf[0], buf[1]
        seen = count > 0
        if bool(seen.any()):
            mean = (loss_sum[seen] / count[seen]).to(torch.float32)
            self.scores[seen] = self.beta * self.scores[seen] + (1.0 - self.beta) * mean
        self._pin()
        self.reset()

    def state_dict(self) -> dict:
        return {"scores": self.scores.clone(), "beta": self.beta}

    def load_state_dict(self, state: dict) -> None:
        scores = torch.as_tensor(state["scores"], dtype=torch.float32).reshape(-1)
        if scores.numel() != self.vocab_size:
            raise ValueError(f"token importance state has {scores.numel()} entries, dictionary has {self.vocab_size}")
        self.scores = scores.clone()
        self._pin()
        self.reset()


# --------------------------------------------------------------------------- dropper


def special_ids_of(dictionary) -> list:
    """Ids that are never dropped: the dictionary's special symbols (<s>, </s>, <unk> and any extra one
    it was built with) and <mask>; not <pad>, which is dropped first."""
    ids = set(range(dictionary.nspecial))
    if "<mask>" in dictionary:
        ids.add(dictionary.index("<mask>"))
    ids.discard(dictionary.pad())
    return sorted(ids)


class TokenDropper:
    """Built by MaskedLMTask when --token-drop > 0: the schedule and the kept positions of each batch."""

    def __init__(self, args, dictionary, num_layers: int):
        self.p = float(getattr(args, "token_drop", 0.0) or 0.0)  # its domain: flag_rules.DOMAINS
        self.split = drop_layer_split(num_layers, getattr(args, "token_drop_layers", None))
        self.mode = getattr(args, "token_drop_importance", "loss") or "loss"
        tps = getattr(args, "tokens_per_sample", None)
        if tps and self.p > 0:
            check_keeps_real_tokens(int(tps), self.p)
        self.pad = int(dictionary.pad())
        self.forced_keep_ids = special_ids_of(dictionary)
        self.interval = sctd_interval(args)
        self.sctd_weight = float(getattr(args, "sctd_weight", 0.05))
        self.full_mlm_weight = float(getattr(args, "sctd_full_mlm_weight", 0.0))
        self.kl_reduction = getattr(args, "sctd_kl_reduction", "reference")
        if self.kl_reduction not in ("reference", "mean"):
            raise ValueError(f"--sctd-kl-reduction {self.kl_reduction!r}: choose from reference, mean")
        self.warmup_updates = int(getattr(args, "token_drop_warmup_updates", 0) or 0)
        self.final_full_updates = int(getattr(args, "token_drop_final_full_updates", 0) or 0)
        self.total_updates = schedule_total(args) if self.final_full_updates > 0 else None
        self.seed = int(getattr(args, "seed", 1))
        self.importance = TokenImportance(
            len(dictionary), self.forced_keep_ids, self.pad, init=unigram_importance(dictionary.count),
            beta=float(getattr(args, "token_importance_beta", 0.95)),
            init_path=getattr(args, "init_token_importance", None))

    def keep_count(self, seq_len: int) -> int:
        """K for a batch of padded length T; never below min(T, 2) so tiny batches keep one real token."""
        return max(keep_count(seq_len, self.p), min(int(seq_len), 2))

    def keep_positions(self, src_tokens: torch.Tensor, sample_ids: torch.Tensor, update_num: int) -> torch.Tensor:
        """Kept positions [B, K] of a batch; a pure function of the table, the samples and the update."""
        keys = tie_break_keys(sample_ids.to(src_tokens.device), src_tokens.size(1), self.seed, update_num)
        return select_kept_positions(src_tokens, self.importance.scores, self.keep_count(src_tokens.size(1)),
                                     self.pad, self.forced_keep_ids, tie_break=keys, mode=self.mode)

    def is_full_update(self, update_num: int) -> bool:
        """Warm-up or final phase: update u runs the full model (u = updates completed before it)."""
        return is_full_phase(update_num, self.warmup_updates, self.final_full_updates, self.total_updates)

    def is_sctd_update(self, update_num: int) -> bool:
        """A dropping update with u % Fi == 0 also runs the full pass (never in the full phases)."""
        return self.interval > 0 and int(update_num) % self.interval == 0 and not self.is_full_update(update_num)

    def state_dict(self) -> dict:
        return {"importance": self.importance.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.importance.load_state_dict(state["importance"])
