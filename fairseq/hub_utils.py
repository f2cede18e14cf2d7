"""fairseq.hub_utils.from_pretrained: a model folder (checkpoint + dictionaries + BPE) made ready to use.

    x = hub_utils.from_pretrained(model_dir, "checkpoint_best.pt", data_name_or_path=".")
    x["args"], x["task"], x["models"]     # fairseq's return value; x["bpe"] is the folder's BPE

RobertaModel.from_pretrained wraps the result in a RobertaHubInterface. The checkpoint is read through
fairseq.checkpoint.files.load_checkpoint_file, so every fairseq 0.9-0.12 layout and ours load. The data
folder is found with fairseq's rule (resolve_data_dir) and set up as the checkpoint's task: masked_lm
(dict.txt) or sentence_prediction (input0/, label/), with the checkpoint's classification heads.
"""
from __future__ import annotations

import argparse
import os

from fairseq import models, tasks
from fairseq.checkpoint.cfg import model_args_from_cfg
from fairseq.checkpoint.files import load_checkpoint_file
from fairseq.checkpoint.restore import check_vocab
from fairseq.data import encoders
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.models.roberta.hub_interface import HubBpe
from fairseq.user_dir import import_user_module

_BPE_KWARGS = ("bpe", "bpe_tokenizer_json", "gpt2_encoder_json", "gpt2_vocab_bpe")


def resolve_data_dir(model_dir: str, data_name_or_path: str) -> str:
    """fairseq's hub rule: a data path starting with "." is relative to the model folder ("." is the
    folder itself); any other path is used as given (absolute, or relative to the current directory)."""
    if data_name_or_path.startswith("."):
        return os.path.abspath(os.path.join(model_dir, data_name_or_path))
    return data_name_or_path


def from_pretrained(model_name_or_path, checkpoint_file="model.pt", data_name_or_path=".", **overrides):
    """{"args": cfg, "task": task, "models": [model], "bpe": HubBpe} for `model_dir/checkpoint_file`, its
    task's dictionaries read from the data folder (see resolve_data_dir). Classification heads in the
    checkpoint are registered and loaded (fairseq's load_checkpoint_heads). user_dir: a --user-dir
    plugin to import first (its task, architecture or criterion may be the checkpoint's)."""
    import_user_module(argparse.Namespace(user_dir=overrides.pop("user_dir", None)))
    model_dir = str(model_name_or_path)
    path = os.path.join(model_dir, checkpoint_file)
    state = load_checkpoint_file(path)
    args = model_args_from_cfg(state["cfg"])
    bpe_overrides = {k: overrides.pop(k) for k in _BPE_KWARGS if k in overrides}
    bpe_name = bpe_overrides.pop("bpe", None) or getattr(args, "bpe", None) or "gpt2"
    for k, v in overrides.items():
        setattr(args, k, v)
    args.task = getattr(args, "task", None) or "masked_lm"
    tasks.get_task(args.task)  # unknown (e.g. a plugin's, without user_dir=): one line with the choices
    data_dir = resolve_data_dir(model_dir, str(data_name_or_path))
    args.data = data_dir
    task = tasks.setup_task(args)
    model = models.build_model(args, task)
    check_vocab(state, model, path)
    model.load_state_dict(state["model"])
    if bpe_name == "gpt2":
        bpe = HubBpe.find([model_dir, data_dir], bpe_overrides, args)
    else:  # another --bpe (sentencepiece, ...): fairseq.data.encoders, from the checkpoint's settings + overrides
        bpe = HubBpe(encoder=encoders.build_bpe(argparse.Namespace(**{**vars(args), **overrides, "bpe": bpe_name})))
    return {"args": convert_namespace_to_omegaconf(args), "task": task, "models": [model], "bpe": bpe}
