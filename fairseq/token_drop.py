"""Token dropping (Hou et al. 2022): which positions the middle layers process, and the importance table.

The model (fairseq/models/roberta/model.py) only needs a sorted LongTensor [B, K] of kept positions;
everything that decides *which* positions lives here and in fairseq/token_selectors.py (the registered
ways of choosing them, --token-drop-importance) so that the model stays a plain function of its input.
Split of an L-layer encoder (SPEC section 2): layers 0..d-1 full, layer d cross (kept queries, all
keys), layers d+1..last_kept on kept positions only, merge, layers last_kept+1..L-1 full. A per-layer
selector (random-LTD) gives [n, B, K] instead: layers START..END each run on their own kept set.
K = T - floor(T*P) of each batch's padded length T (so it follows --seq-len-schedule), optionally
growing to T over --token-drop-ramp-updates (TokenDropper.keep_count).

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

from fairseq import seq_len_schedule
from fairseq.distributed import collectives
from fairseq.token_selectors import (  # noqa: F401  (fairseq.token_drop is the public name of these)
    SELECTORS,
    SPECIAL_SCORE,
    TokenSelector,
    register_token_selector,
    select_kept_positions,
    tie_break_keys,
)
DEFAULT_INIT = 10.0
DEFAULT_SCTD_INTERVAL = 10


# --------------------------------------------------------------------------- flags


def add_token_drop_args(parser: argparse.ArgumentParser) -> None:
    """Add the token-dropping / ScTD flags (called by MaskedLMTask.add_args)."""
    g = parser.add_argument_group("token dropping / ScTD")
    g.add_argument("--token-drop", type=float, default=0.0, metavar="P",
                   help="fraction of positions the middle layers drop (0 = off, 0 <= P < 1)")
    g.add_argument("--token-drop-importance", choices=SELECTORS.choices(), default="loss",
                   help="the token selector (fairseq.token_selectors): loss = the tokens with the highest running "
                        "MLM loss (Hou; ScTD), random = a uniform random subset, random_ltd = a fresh random "
                        "subset per middle layer (random-LTD); a --user-dir plugin can register its own")
    g.add_argument("--token-drop-layers", type=str, default=None, metavar="START,END",
                   help="cross layer START and last dropping layer END (0-based); default Hou split "
                        "START=L//2-1, END=L-2 (random_ltd: the layers that each drop, default 1,L-2)")
    g.add_argument("--token-drop-ramp-updates", type=int, default=None, metavar="N",
                   help="the kept count grows linearly from T - floor(T*P) to T over updates 0..N "
                        "(random-LTD's schedule; default: over the whole run for random_ltd, none otherwise)")
    g.add_argument("--token-drop-keep-multiple", type=int, default=1, metavar="M",
                   help="round the kept count down to a multiple of M (random-LTD's seq_per_step)")
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
                      "token_drop_warmup_updates": 0, "token_drop_final_full_updates": 0,
                      "token_drop_ramp_updates": None, "token_drop_keep_multiple": 1}


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


def ramp_updates(args, selector_cls) -> int:
    """Resolved --token-drop-ramp-updates: 0 (no ramp) unless given, or for a selector that ramps by
    default (random_ltd) the run's length, --max-update (else --total-num-update)."""
    n = getattr(args, "token_drop_ramp_updates", None)
    if n is not None:
        return int(n)
    if not selector_cls.ramps_by_default:
        return 0
    try:
        return schedule_total(args)
    except ValueError:
        raise ValueError(f"--token-drop-importance {args.token_drop_importance} grows the kept count over the run: "
                         "give --max-update (or --total-num-update), or --token-drop-ramp-updates N "
                         "(0 = a constant --token-drop)") from None


def sctd_interval(args) -> int:
    """Resolved --sctd-interval: default 10 when token dropping is on, 0 when it is off."""
    p = float(getattr(args, "token_drop", 0.0) or 0.0)
    fi = getattr(args, "sctd_interval", None)
    if p <= 0:
        return 0
    return DEFAULT_SCTD_INTERVAL if fi is None else int(fi)


# --------------------------------------------------------------------------- split and keep count


def drop_layer_split(num_layers: int, start_end: Union[None, str, Sequence[int]] = None,
                     per_layer: bool = False) -> Tuple[int, int]:
    """(d, last_kept): layer d is the cross layer, layers d+1..last_kept run on kept positions only.

    Default is Hou's split d = L//2 - 1, last_kept = L - 2, which needs L >= 4. `start_end` is the
    --token-drop-layers value ("START,END" or a pair) overriding it; it must leave layer L-1 full.
    per_layer (a selector with a kept set per layer, random-LTD): layers START..END each run on their
    own kept set; default all middle layers, 1..L-2 (needs L >= 3).
    """
    L = int(num_layers)
    if (start_end is None or start_end == "") and per_layer:
        if L < 3:
            raise ValueError(f"layerwise token dropping needs at least 3 encoder layers (got --encoder-layers {L})")
        return 1, L - 2
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


# --------------------------------------------------------------------------- gather and merge


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
        self.mode = getattr(args, "token_drop_importance", "loss") or "loss"
        selector_cls = SELECTORS.lookup(self.mode)
        self.num_layers = int(num_layers)
        self.split = drop_layer_split(num_layers, getattr(args, "token_drop_layers", None), selector_cls.per_layer)
        tps = getattr(args, "tokens_per_sample", None)
        if tps and self.p > 0:  # every block length the run trains at (--seq-len-schedule's too)
            for length in seq_len_schedule.lengths(args):
                check_keeps_real_tokens(length, self.p)
        self.ramp_updates = ramp_updates(args, selector_cls)
        self.keep_multiple = int(getattr(args, "token_drop_keep_multiple", 1) or 1)
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
        self.selector = selector_cls(self)  # after the table: a selector may read it

    def keep_count(self, seq_len: int, update_num: int = 0) -> int:
        """K for a batch of padded length T (the block length in force: it follows --seq-len-schedule).

        K0 = T - floor(T*P); with --token-drop-ramp-updates N, K = floor(K0 + (T - K0) * min(u, N) / N)
        (DeepSpeed's fixed_linear), then rounded down to a multiple of --token-drop-keep-multiple;
        never below min(T, 2) so tiny batches keep one real token.
        """
        T = int(seq_len)
        k = keep_count(T, self.p)
        if self.ramp_updates > 0:
            k += (T - k) * min(int(update_num), self.ramp_updates) // self.ramp_updates
        if self.keep_multiple > 1 and k >= self.keep_multiple:
            k -= k % self.keep_multiple
        return max(k, min(T, 2))

    def keep_positions(self, src_tokens: torch.Tensor, sample_ids: torch.Tensor,
                       update_num: int) -> Optional[torch.Tensor]:
        """Kept positions of a batch ([B, K], or [n, B, K] for a per-layer selector), chosen by the
        selector: a pure function of its state, the samples and the update. None (the full model) when a
        per-layer selector's ramp has reached the full length (DeepSpeed then runs the layers whole)."""
        K = self.keep_count(src_tokens.size(1), update_num)
        if self.selector.per_layer and K >= src_tokens.size(1):
            return None
        return self.selector.select(src_tokens, sample_ids, update_num, K)

    def is_full_update(self, update_num: int) -> bool:
        """Warm-up or final phase: update u runs the full model (u = updates completed before it)."""
        return is_full_phase(update_num, self.warmup_updates, self.final_full_updates, self.total_updates)

    def is_sctd_update(self, update_num: int) -> bool:
        """A dropping update with u % Fi == 0 also runs the full pass (never in the full phases)."""
        return self.interval > 0 and int(update_num) % self.interval == 0 and not self.is_full_update(update_num)

    def state_dict(self) -> dict:
        selector = self.selector.state_dict()
        return {"importance": self.importance.state_dict(), **({"selector": selector} if selector else {})}

    def load_state_dict(self, state: dict) -> None:
        self.importance.load_state_dict(state["importance"])
        if "selector" in state:
            self.selector.load_state_dict(state["selector"])
