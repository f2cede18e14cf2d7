"""fairseq's rules that tie several fairseq-train flags together, checked right after parsing (before any
data is read): each is one clear error naming the flags, as fairseq raises it."""
from __future__ import annotations

import argparse
import os
import re
from typing import List

RESET_FLAGS = ("reset_optimizer", "reset_lr_scheduler", "reset_meters", "reset_dataloader")


def check_finetune_resets(args: argparse.Namespace) -> None:
    """fairseq's rule: --finetune-from-model already resets everything, so a --reset-* beside it is an error."""
    if getattr(args, "finetune_from_model", None) and any(getattr(args, r, False) for r in RESET_FLAGS):
        given = ", ".join("--" + r.replace("_", "-") for r in RESET_FLAGS if getattr(args, r, False))
        raise ValueError(f"--finetune-from-model can not be set together with {given} (it resets the optimizer, "
                         f"lr scheduler, meters and dataloader itself)")


def unused_valid_subsets(data: str, valid_subset: str) -> List[str]:
    """fairseq's rule: splits named valid<N>... in the data directories that --valid-subset leaves out."""
    found = set()
    for path in [p for p in str(data).split(":") if p]:
        if os.path.isdir(path):
            found |= {os.path.splitext(f)[0] for f in os.listdir(path) if re.match("valid*[0-9].*", f)}
    return sorted(found - set(valid_subset.split(",")))


def check_valid_subsets(args: argparse.Namespace) -> None:
    """A valid split on disk that would silently go unvalidated is an error, unless
    --ignore-unused-valid-subsets (or --combine-valid-subsets / --disable-validation) says it is meant."""
    if (getattr(args, "ignore_unused_valid_subsets", False) or getattr(args, "combine_valid_subsets", False)
            or getattr(args, "disable_validation", False) or not getattr(args, "data", None)):
        return
    ignored = unused_valid_subsets(args.data, getattr(args, "valid_subset", "valid"))
    if ignored:
        raise ValueError(f"valid splits {ignored} in {args.data} would be ignored by --valid-subset "
                         f"{args.valid_subset!r}; name them there, or pass --ignore-unused-valid-subsets")
