"""Read every RoBERTa checkpoint layout that fairseq 0.9-0.12 writes (and ours) as one layout.

Every loader (fairseq-train --restore-file / --finetune-from-model, fairseq-validate, the hub's
from_pretrained, fairseq-export-hf) goes through `fairseq.checkpoint.files.load_checkpoint_file`, which calls
`upgrade_state` here, so the rest of the code only ever sees the fairseq 0.12 layout:

  * `cfg` is a dict whose "model" entry holds the flat model arguments with an `arch`. The released
    2019 files (roberta.base/large, fairseq 0.8/0.9) have only `args`, an argparse.Namespace, and no
    `cfg`: it becomes cfg["model"] (as fairseq 0.12's own upgrade does). Hydra-trained fairseq files
    name the architecture only in cfg.model._name and keep task settings (tokens_per_sample...) in
    cfg.task: the model entry gets `arch` and the other groups' values it lacks (a file naming no
    architecture at all gets "roberta", fairseq's base architecture, under its own shape fields).
  * model keys: `decoder.*` -> `encoder.*` in files with `decoder.sentence_encoder.*` (the 2019 RoBERTa was a
    "decoder"; a language model's real decoder keeps its keys), `.emb_layer_norm.` ->
    `.layernorm_embedding.`, fused `self_attn.in_proj_weight/bias` split into q_proj/k_proj/v_proj
    (rows in q, k, v order, as fairseq's MultiheadAttention upgrade splits them), floating tensors in
    fp32 (the released models store fp16 weights). Keys already in the new layout pass through.

What these files cannot be loaded into (segment embeddings, LayerDrop pruning via
encoder_layers_to_keep) is a clear error rather than a silently different model.

Only argparse.Namespace is allow-listed for torch's weights_only unpickler (SAFE_GLOBALS): that is
the one non-tensor class fairseq's RoBERTa checkpoints pickle.
"""
from __future__ import annotations

import argparse
from collections import OrderedDict
from typing import Dict

import torch

SAFE_GLOBALS = [argparse.Namespace]
_CFG_GROUPS_TO_FLATTEN = ("task", "dataset", "criterion", "optimization", "common", "checkpoint")
_NAMED_GROUPS = ("task", "criterion", "optimizer", "lr_scheduler")  # cfg[group]._name is the flat --group


def _get(m, key, default=None):
    return getattr(m, key, default) if isinstance(m, argparse.Namespace) else m.get(key, default)


def _set(m, key, value) -> None:
    if isinstance(m, argparse.Namespace):
        setattr(m, key, value)
    else:
        m[key] = value


def upgrade_cfg(state: Dict, path: str) -> None:
    """Give `state` a cfg whose "model" entry is a flat argument set with an `arch`."""
    cfg = state.get("cfg")
    if cfg is None:
        args = state.get("args")
        if args is None:
            raise ValueError(f"{path}: checkpoint has neither cfg nor args: cannot rebuild the model")
        if not isinstance(args, argparse.Namespace):
            raise ValueError(f"{path}: checkpoint 'args' is a {type(args).__name__}, expected argparse.Namespace")
        cfg = state["cfg"] = {"_name": None, "model": args}
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: checkpoint cfg is a {type(cfg).__name__}, expected a dict")
    model = cfg.get("model")
    if not isinstance(model, (dict, argparse.Namespace)):
        raise ValueError(f"{path}: checkpoint cfg['model'] is a {type(model).__name__}; cannot rebuild the model")
    if _get(model, "arch") is None:
        # no arch: the hydra name, else fairseq's "roberta" (base defaults under the file's own shape fields)
        _set(model, "arch", _get(model, "_name") or "roberta")
        for group in _CFG_GROUPS_TO_FLATTEN:  # hydra layout: task/dataset settings live in their groups
            for k, v in (cfg.get(group) or {}).items():
                if k != "_name" and _get(model, k, KeyError) is KeyError:
                    _set(model, k, v)
        for group in _NAMED_GROUPS:
            name = (cfg.get(group) or {}).get("_name")
            if name and _get(model, group) is None:
                _set(model, group, name)
    keep = _get(model, "encoder_layers_to_keep")
    if keep:
        raise ValueError(f"{path}: encoder_layers_to_keep={keep!r} (LayerDrop pruning) is not supported; "
                         "prune the checkpoint with fairseq first")


def upgrade_model_keys(sd: Dict[str, torch.Tensor], path: str) -> "OrderedDict[str, torch.Tensor]":
    """fairseq 0.9-0.12 RoBERTa parameter names -> fairseq 0.12's (see module doc)."""
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    roberta_2019 = any(k.startswith("decoder.sentence_encoder.") for k in sd)  # not a decoder-only LM's decoder.*
    for k, v in sd.items():
        if roberta_2019 and k.startswith("decoder."):
            k = "encoder." + k[len("decoder."):]
        k = k.replace(".emb_layer_norm.", ".layernorm_embedding.")
        if ".segment_embeddings." in k:
            raise ValueError(f"{path}: {k}: segment (token type) embeddings are not supported by RoBERTa")
        if v.is_floating_point() and v.dtype != torch.float32:
            v = v.float()
        for kind in ("weight", "bias"):
            fused = f".self_attn.in_proj_{kind}"
            if k.endswith(fused):
                if v.size(0) % 3:
                    raise ValueError(f"{path}: {k} has {v.size(0)} rows, not a multiple of 3 (fused q, k, v)")
                base = k[: -len(f"in_proj_{kind}")]
                for name, part in zip(("q_proj", "k_proj", "v_proj"), v.chunk(3, dim=0)):
                    out[f"{base}{name}.{kind}"] = part.clone()
                break
        else:
            out[k] = v
    return out


def upgrade_state(state: Dict, path: str) -> Dict:
    """The checkpoint `state` (as torch.load returned it) in fairseq 0.12's layout, in place."""
    upgrade_cfg(state, path)
    state["model"] = upgrade_model_keys(state["model"], path)
    state.setdefault("optimizer_history", [])
    state.setdefault("extra_state", {})
    return state
