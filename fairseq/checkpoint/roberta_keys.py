"""RoBERTa's state-dict keys as fairseq 0.12 stores them, and back to our module's.

fairseq 0.12.2's TransformerEncoderLayer keeps, beside the real weights, zero "BetterTransformer"
copies per layer (in_proj_weight, fc1_weight, ...) and a `version` tensor; real fairseq loads a state
dict with strict=True only when they are there. Our layers do not have them: to_fairseq adds them (in
fairseq's key order) for every file we write, from_fairseq drops them when a file is loaded. Older
layouts (0.9-0.11, the released 2019 models) are brought to 0.12's first by upgrade.py.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Mapping

import torch

# per-layer "BetterTransformer" copies that fairseq 0.12 keeps in its state dicts (zero, unused in compute)
BT_COPIES = ("in_proj_weight", "in_proj_bias", "out_proj_weight", "out_proj_bias",
             "fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias")
SE = "encoder.sentence_encoder."


def to_fairseq(ours: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Our state dict plus fairseq 0.12's `version` tensor and zero BetterTransformer copies, in
    fairseq's key order, so that real fairseq loads it with strict=True."""
    out = OrderedDict()
    out[SE + "version"] = torch.tensor([3.0])
    layer_copies = set()
    for k, v in ours.items():
        parts = k.split(".")
        if k.startswith(SE + "layers.") and parts[3] not in layer_copies:
            i = parts[3]
            layer_copies.add(i)
            pre = f"{SE}layers.{i}."
            e = ours[pre + "fc1.weight"].size(1)
            f = ours[pre + "fc1.weight"].size(0)
            shapes = {"in_proj_weight": (3 * e, e), "in_proj_bias": (3 * e,), "out_proj_weight": (e, e),
                      "out_proj_bias": (e,), "fc1_weight": (f, e), "fc1_bias": (f,), "fc2_weight": (e, f),
                      "fc2_bias": (e,)}
            for name in BT_COPIES:
                out[pre + name] = torch.zeros(shapes[name], dtype=v.dtype)
        out[k] = v
    return out


def from_fairseq(state_dict: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """fairseq 0.12's keys (or ours) without the `version` tensors and the zero BetterTransformer copies."""
    sd = OrderedDict()
    for k, v in state_dict.items():
        leaf = k.rsplit(".", 1)[-1]
        if k.endswith(".version") or (".layers." in k and leaf in BT_COPIES and k.count(".") == 4):
            continue
        sd[k] = v
    return sd
