"""The EMA in a checkpoint, as fairseq 0.12.2 stores it in extra_state.

- extra_state["ema"]: the averaged model's state dict with fairseq's keys (the model's
  fairseq_state_dict), float32 on the CPU -- what checkpoint_utils.load_ema_from_checkpoint reads;
- extra_state["ema_fp32_params"]: with --ema-fp32, the float32 copy, keyed the same way;
- extra_state["ema_update_freq_counter"]: ours (fairseq does not save it): how many step() calls the
  --ema-update-freq counter holds, so a resumed run averages at the same updates as an uninterrupted one.

Loading follows fairseq: a checkpoint without "ema" restarts the average from its model weights (with
a warning); with --ema-fp32 and no saved float32 copy, the copy is rebuilt from the restored average.
load_ema_from_checkpoint (fairseq.checkpoint_utils' name) reads a file's average as a model state.
"""
from __future__ import annotations

import collections
import logging
from typing import Dict

import torch

from fairseq.checkpoint.upgrade import SAFE_GLOBALS
from fairseq.file_io import PathManager

logger = logging.getLogger(__name__)


def _cpu_fp32(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {k: (v.detach().float() if v.is_floating_point() else v.detach()).cpu() for k, v in state.items()}


def checkpoint_state(ema, ema_fp32: bool) -> Dict[str, object]:
    """The extra_state entries for `ema`."""
    model = ema.get_model()
    out = {"ema": _cpu_fp32(model.fairseq_state_dict()),
           "ema_update_freq_counter": int(ema.update_freq_counter)}
    if ema_fp32:
        own = model.state_dict()
        out["ema_fp32_params"] = _cpu_fp32(model.fairseq_state_dict({k: ema.fp32_params[k] for k in own}))
    return out


def load_checkpoint_state(ema, extra_state: Dict, model_state: Dict[str, torch.Tensor], ema_fp32: bool) -> None:
    """Restore `ema` from a checkpoint's extra_state (model_state: the checkpoint's model weights)."""
    own = set(ema.get_model().state_dict())
    if "ema" not in extra_state:
        logger.warning("EMA not found in checkpoint. But store_ema is True. EMA is re-initialized from checkpoint.")
        ema.restore(model_state)
        if ema_fp32:
            ema.build_fp32_params({k: v for k, v in model_state.items() if k in own})
    else:
        logger.info("Loading EMA from checkpoint")
        ema.restore(extra_state["ema"])
        if ema_fp32:
            saved = extra_state.get("ema_fp32_params")
            ema.build_fp32_params(None if saved is None else {k: v for k, v in saved.items() if k in own})
    ema.update_freq_counter = int(extra_state.get("ema_update_freq_counter", 0))


def load_ema_from_checkpoint(fpath: str) -> Dict:
    """The checkpoint at `fpath` with its "model" replaced by the EMA weights of extra_state["ema"] (fp16
    entries as float32, each a copy): what --ema-seed-model starts from, and what save_ema_as_checkpoint
    writes as a plain model checkpoint. A checkpoint without an EMA is a ValueError naming the file."""
    with PathManager.open(fpath, "rb") as f, torch.serialization.safe_globals(SAFE_GLOBALS):
        state = torch.load(f, map_location="cpu", weights_only=True)
    averaged = (state.get("extra_state") or {}).get("ema") or {}
    params = collections.OrderedDict()
    for key, value in averaged.items():
        params[key] = (value.float() if value.dtype == torch.float16 else value).clone()  # clone: unties shared
    if not params:
        raise ValueError(f"Input checkpoint path '{fpath}' does not contain ema model weights, is this model "
                         "trained with EMA?")
    state["model"] = params
    return state
