"""fairseq.models.ema.EMA: an exponential moving average of a model's weights, updated after each training update.

The average lives in a frozen deep copy of the model (so it can be evaluated or saved like the model):
after update t, every floating entry e of its state dict becomes decay * e + (1 - decay) * p, p the
model's entry (keys containing "version" are left alone, keys in `skip_keys` are copied). fairseq
0.12.2's rules, which fairseq-train's --store-ema family sets (fairseq/dataclass/configs.py EMAConfig):

- decay is 0 -- a plain copy -- while updates < ema_start_update, then ema_decay;
- with ema_update_freq k > 1 only every k-th call of step() averages;
- ema_fp32 keeps a float32 copy of the average and does the arithmetic there (the copy then goes back
  into the model copy at the model's precision), so an fp16 model's average does not lose small steps;
- ema_seed_model starts the average from the EMA weights stored in another checkpoint.

One deliberate difference: a weight shared by two state-dict keys (RoBERTa's tied embedding and LM-head
weight) is averaged once per step. fairseq 0.12.2 averages it once per key, so with float32 weights its
tied embedding decays with ema_decay**2 (docs/compatibility.md).

The trainer builds the EMA when it first needs it (loading a checkpoint, or after the first update),
so an average started from scratch starts at the weights after update 1, as fairseq's does.
Checkpoints carry it as fairseq does (fairseq.models.ema.checkpoint_state / load_checkpoint_state).
"""
from __future__ import annotations

import copy
import logging
from typing import Dict, Optional

import torch

from fairseq.models.ema.extra_state import load_ema_from_checkpoint

logger = logging.getLogger(__name__)


class EMA:
    def __init__(self, model: torch.nn.Module, config, device=None, skip_keys=None):
        self.decay = config.ema_decay
        self.model = copy.deepcopy(model)
        self.model.requires_grad_(False)
        self.config = config
        self.skip_keys = skip_keys or set()
        self.fp32_params: Dict[str, torch.Tensor] = {}
        if config.ema_seed_model is not None:
            state = load_ema_from_checkpoint(config.ema_seed_model)
            self.model.load_state_dict(state["model"], strict=True)
        if device is not None:
            self.model = self.model.to(device=device)
        if config.ema_fp32:
            self.build_fp32_params()
        self.update_freq_counter = 0

    def get_model(self) -> torch.nn.Module:
        return self.model

    def build_fp32_params(self, state_dict: Optional[Dict[str, torch.Tensor]] = None) -> None:
        """(Re)fill the float32 copy from `state_dict`, or from the averaged model when None."""
        if not self.config.ema_fp32:
            raise RuntimeError("build_fp32_params is only for ema_fp32=True")
        if state_dict is None:
            state_dict = self.model.state_dict()
        for key, value in state_dict.items():
            if key in self.fp32_params:
                self.fp32_params[key].copy_(value)
            else:
                self.fp32_params[key] = value.float() if torch.is_floating_point(value) else value

    def restore(self, state_dict: Dict[str, torch.Tensor], build_fp32_params: bool = False) -> None:
        """Load `state_dict` into the averaged model (non-strict: a subset of the keys is fine)."""
        self.model.load_state_dict(state_dict, strict=False)
        if build_fp32_params:
            self.build_fp32_params(state_dict)

    def _set_decay(self, decay: float) -> None:
        self.decay = decay

    def get_decay(self) -> float:
        return self.decay

    def _step_internal(self, new_model: torch.nn.Module, updates: Optional[int] = None) -> None:
        """One averaging step towards new_model's weights, in place."""
        decay = self.decay
        averaged = self.fp32_params if self.config.ema_fp32 else self.model.state_dict()
        updated, done = {}, set()
        for key, param in new_model.state_dict().items():
            if isinstance(param, dict):
                continue
            ema_param = averaged.get(key)
            if ema_param is None:  # an entry the average has not seen: it starts at the model's value
                ema_param = param.float().clone() if param.ndim == 1 else copy.deepcopy(param)
            if param.shape != ema_param.shape:
                raise ValueError(f"EMA: {key} has shape {tuple(param.shape)} in the model but "
                                 f"{tuple(ema_param.shape)} in the average")
            if "version" in key:
                continue
            tensor_id = (ema_param.data_ptr(), tuple(ema_param.shape), tuple(ema_param.stride()))
            if key in self.skip_keys:
                ema_param = param.to(dtype=ema_param.dtype).clone()
            elif tensor_id not in done:  # a tied weight (RoBERTa's embedding and LM head) is averaged once
                ema_param.mul_(decay)
                ema_param.add_(param.to(dtype=ema_param.dtype), alpha=1 - decay)
                done.add(tensor_id)
            updated[key] = ema_param
        self.restore(updated, build_fp32_params=False)

    def step(self, new_model: torch.nn.Module, updates: Optional[int] = None) -> None:
        """Average in new_model after an update (updates: the model's update count, for ema_start_update)."""
        if updates is not None:
            self._set_decay(0 if updates < self.config.ema_start_update else self.config.ema_decay)
        if self.config.ema_update_freq > 1:
            self.update_freq_counter += 1
            if self.update_freq_counter >= self.config.ema_update_freq:
                self._step_internal(new_model, updates)
                self.update_freq_counter = 0
        else:
            self._step_internal(new_model, updates)

    def reverse(self, model: torch.nn.Module) -> torch.nn.Module:
        """Load the averaged weights into `model` (non-strict) and return it."""
        state = self.model.state_dict()
        state.pop("_ema", None)
        model.load_state_dict(state, strict=False)
        return model
