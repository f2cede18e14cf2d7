"""Which positions the token-dropping layers process: the selection rules and the table of selectors.

A token selector is one way of choosing the kept tokens, registered by name with fairseq's decorator
pattern (`@register_token_selector("name")`, re-exported by fairseq.token_drop) and picked with
`--token-drop-importance NAME`; that flag's choices are this table's names, a --user-dir plugin's
included (the plugin is imported before the parser is built). Built in:

- `loss`: Hou et al. 2022: the K positions whose ids have the highest running MLM loss (the dropper's
  TokenImportance table); position 0, the dictionary's specials and <mask> are always kept, <pad>
  dropped first, ties by a pseudo-random key. ScTD (Zhong et al. 2023) selects with this same rule:
  its extra full pass (--sctd-interval) is not a way of choosing tokens and composes with any selector.
- `random`: the same rules with every real token scored alike, so the keys alone choose (an ablation).
- `random_ltd`: random-LTD (Yao et al. 2022, DeepSpeed's random layerwise token dropping): every
  dropping layer (default all middle layers, 1..L-2; the first and last run on every position) draws
  its own uniform random subset of K positions and runs on those alone (queries and keys); the others
  skip it and keep their state. No position is special (<s> may be dropped); we drop <pad> first, where
  DeepSpeed samples it and masks it. K grows linearly to the full length over --token-drop-ramp-updates
  (TokenDropper.keep_count; default: the whole run), as DeepSpeed's `fixed_linear` schedule.

Contract (tests/test_token_drop.py): `cls(dropper)` is built once by TokenDropper, after its
importance table; `selector.select(src_tokens [B,T], sample_ids [B], update_num, keep_count K)` returns
the sorted kept positions, LongTensor [B, K] (one kept set for Hou's split: the cross layer and the
kept layers after it), or, for a class with `per_layer = True`, [n, B, K]: dropping layer START+i runs
on keep[i] alone (n = the number of dropping layers, dropper.split = (START, END)). It must be a pure
function of its state, the samples and the update, so a resumed run selects exactly as an
uninterrupted one and every rank keeps the same positions of a sample (tie_break_keys). What the
dropper offers a selector: `importance` (TokenImportance, fed every update), `pad`, `forced_keep_ids`,
`seed`, `split`, `num_layers`. Selector state other than that table goes in state_dict (task_state).
"""
from __future__ import annotations

from typing import Iterable, Optional

import torch

from fairseq import registry


SPECIAL_SCORE = 1e4  # the score of a forced-keep id: above any learned loss


class TokenSelector:
    """Base class of the registered selectors (one kept set for the whole dropping span)."""

    per_layer = False  # True: one kept set per dropping layer, [n, B, K]
    ramps_by_default = False  # True: K grows to the full length over the run unless --token-drop-ramp-updates says

    def __init__(self, dropper):
        self.dropper = dropper

    def select(self, src_tokens: torch.Tensor, sample_ids: torch.Tensor, update_num: int,
               keep_count: int) -> torch.Tensor:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


SELECTORS = registry.setup_registry("token-drop-importance", TokenSelector)
register_token_selector = SELECTORS.register


# --------------------------------------------------------------------------- keys and the selection rule


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


def layer_keys(sample_ids: torch.Tensor, seq_len: int, seed: int, update_num: int, layers: int) -> torch.Tensor:
    """Keys [n, B, T]: tie_break_keys salted by the dropping layer, so each layer draws its own subset."""
    base = tie_break_keys(sample_ids, seq_len, seed, update_num)
    salt = _mix31((torch.arange(1, int(layers) + 1, device=base.device) * 0x3C6EF35F) & _M31)
    return _mix31(base.unsqueeze(0) ^ salt.view(-1, 1, 1))


def _top_k(scores: torch.Tensor, keep_count: int, tie_break: Optional[torch.Tensor]) -> torch.Tensor:
    """Per row, the K positions with the highest score (ties: smaller key, else earlier), sorted ascending."""
    if tie_break is None:
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :keep_count]
    else:  # visit positions in key order, then a stable sort by score keeps that order among equals
        perm = torch.sort(tie_break.to(scores.device), dim=1, stable=True).indices
        by_score = torch.sort(scores.gather(1, perm), dim=1, descending=True, stable=True).indices[:, :keep_count]
        order = perm.gather(1, by_score)
    return torch.sort(order, dim=1).values


def select_kept_positions(src_tokens: torch.Tensor, scores: Optional[torch.Tensor], keep_count: int, pad: int,
                          forced_keep_ids: Iterable[int] = (), tie_break: Optional[torch.Tensor] = None,
                          mode: str = "loss") -> torch.Tensor:
    """Per sequence, the K positions with the highest score, sorted ascending. LongTensor [B, K].

    Rules: position 0 (the <s> slot) is always kept; positions holding a forced-keep id score SPECIAL_SCORE
    (above any learned score, so they are kept unless there are more of them than K); <pad> scores -inf
    (dropped before any real token). Ties go to the smaller `tie_break` key (int64 [B, T], see
    tie_break_keys), or to the earlier position when it is None. Mode 'random' gives every real token
    the same score, so the keys alone choose (a uniform random subset).
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
        raise ValueError(f"select_kept_positions: mode {mode!r}: choose from loss, random")
    forced = list(forced_keep_ids)
    if forced:
        ids = torch.tensor(forced, dtype=src_tokens.dtype, device=src_tokens.device)
        s = torch.where(torch.isin(src_tokens, ids), torch.full_like(s, SPECIAL_SCORE), s)
    s = s.masked_fill(src_tokens.eq(pad), float("-inf"))
    # Position 0 is the <s>/[CLS] slot whatever token masking put there (fairseq may mask or replace
    # <s> too): the model's cross layer and ScTD's KL terms rely on it, so it is always kept.
    s[:, 0] = float("inf")
    return _top_k(s, K, tie_break)


def random_layer_subsets(src_tokens: torch.Tensor, keys: torch.Tensor, keep_count: int, pad: int) -> torch.Tensor:
    """random-LTD's kept sets [n, B, K]: per layer and sequence a uniform subset chosen by `keys` [n, B, T]
    (layer_keys), real tokens before <pad>, no position special; each row sorted ascending."""
    n, (B, T) = keys.size(0), src_tokens.shape
    K = int(keep_count)
    if not (1 <= K <= T):
        raise ValueError(f"random_layer_subsets: keep_count {K} outside [1, T={T}]")
    s = torch.zeros((B, T), dtype=torch.float32, device=src_tokens.device).masked_fill(src_tokens.eq(pad),
                                                                                    float("-inf"))
    kept = _top_k(s.repeat(n, 1), K, keys.reshape(n * B, T))
    return kept.view(n, B, K)


# --------------------------------------------------------------------------- the built-in selectors


@register_token_selector("loss")
class LossImportanceSelector(TokenSelector):
    """Hou et al.'s (and ScTD's) rule: the ids with the highest running MLM loss (dropper.importance)."""

    mode = "loss"

    def select(self, src_tokens, sample_ids, update_num, keep_count):
        d = self.dropper
        keys = tie_break_keys(sample_ids.to(src_tokens.device), src_tokens.size(1), d.seed, update_num)
        return select_kept_positions(src_tokens, d.importance.scores, keep_count, d.pad, d.forced_keep_ids,
                                     tie_break=keys, mode=self.mode)


@register_token_selector("random")
class RandomSelector(LossImportanceSelector):
    """The same rules as `loss` with every real token scored alike: a uniform random subset."""

    mode = "random"


@register_token_selector("random_ltd")
class RandomLTDSelector(TokenSelector):
    """random-LTD: a fresh uniform random subset of K positions for every dropping layer."""

    per_layer = True
    ramps_by_default = True

    def select(self, src_tokens, sample_ids, update_num, keep_count):
        d = self.dropper
        start, end = d.split
        keys = layer_keys(sample_ids.to(src_tokens.device), src_tokens.size(1), d.seed, update_num, end - start + 1)
        return random_layer_subsets(src_tokens, keys, keep_count, d.pad)
