"""RobertaHubInterface: load a checkpoint directory and use the model on text (fairseq's hub API).

    roberta = RobertaModel.from_pretrained(model_dir, checkpoint_file="model.pt", data_name_or_path=".")
    tokens = roberta.encode("Hello world")          # needs tokenizer.json or encoder.json + vocab.bpe
    feats = roberta.extract_features(tokens)         # [1, T, C]
    roberta.fill_mask("The <mask> is here.", topk=3)

Checkpoints may be fairseq's (cfg["model"] is an argparse.Namespace: loaded with torch's weights_only
unpickler with that one class allow-listed) or ours (plain dicts). The interface is put in eval mode on
load (fairseq leaves that to the caller); call .train() to re-enable dropout.
"""
from __future__ import annotations

import argparse
import os
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

def _load_dictionary(path: str):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"dictionary not found: {path} (set data_name_or_path to the folder with dict.txt)")
    from fairseq.data.dictionary import Dictionary

    return Dictionary.load(path)


class _Task:
    """Stand-in for a task object: just the dictionary (with <mask> appended, as masked_lm does)."""

    def __init__(self, dictionary):
        self.dictionary = dictionary
        self.source_dictionary = dictionary
        self.mask_idx = dictionary.add_symbol("<mask>")


class _Bpe:
    """GPT-2 byte-level BPE through HF tokenizers: ids are written as decimal strings (fairseq's gpt2 bpe)."""

    def __init__(self, model_dir: str):
        from tokenizers import Tokenizer
        tj = os.path.join(model_dir, "tokenizer.json")
        enc, merges = os.path.join(model_dir, "encoder.json"), os.path.join(model_dir, "vocab.bpe")
        if os.path.isfile(tj):
            self.tok = Tokenizer.from_file(tj)
        elif os.path.isfile(enc) and os.path.isfile(merges):
            from tokenizers import ByteLevelBPETokenizer
            self.tok = ByteLevelBPETokenizer(enc, merges, add_prefix_space=False)
        else:
            self.tok = None

    def encode(self, text: str) -> str:
        return " ".join(str(i) for i in self.tok.encode(text).ids)

    def decode(self, bpe: str) -> str:
        ids = [int(t) for t in bpe.split() if t.lstrip("-").isdigit()]
        return self.tok.decode(ids)


def _read_checkpoint(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def _model_args(state: dict) -> argparse.Namespace:
    cfg = state.get("cfg") or {}
    margs = cfg.get("model") if isinstance(cfg, dict) else None
    if margs is None:
        margs = state.get("args")
    if margs is None:
        raise ValueError("checkpoint has neither cfg['model'] nor args: cannot rebuild the model")
    args = argparse.Namespace(**(vars(margs) if isinstance(margs, argparse.Namespace) else dict(margs)))
    if getattr(args, "arch", None) is None:
        args.arch = getattr(args, "_name", None) or "roberta_base"
    return args


def _build_task(args: argparse.Namespace, data_dir: str):
    """fairseq.tasks.setup_task for a masked_lm data folder (as fairseq's hub does); a minimal stand-in
    holding the dictionary otherwise (other tasks' folder layouts, or when the tasks package is absent)."""
    if getattr(args, "task", None) in (None, "masked_lm"):
        try:
            from fairseq.tasks import setup_task
        except ImportError:
            setup_task = None
        if setup_task is not None:
            targs = argparse.Namespace(**vars(args))
            targs.task, targs.data = "masked_lm", data_dir
            return setup_task(targs)
    return _Task(_load_dictionary(os.path.join(data_dir, "dict.txt")))


def from_pretrained(model_name_or_path, checkpoint_file="model.pt", data_name_or_path=".", **overrides):
    """Build a RobertaHubInterface from `model_dir/checkpoint_file` and `model_dir/data_name_or_path/dict.txt`."""
    from fairseq.models.roberta.model import RobertaModel
    model_dir = str(model_name_or_path)
    ckpt_path = checkpoint_file if os.path.isabs(checkpoint_file) else os.path.join(model_dir, checkpoint_file)
    state = _read_checkpoint(ckpt_path)
    args = _model_args(state)
    for k, v in overrides.items():
        setattr(args, k, v)
    data_dir = data_name_or_path if os.path.isabs(data_name_or_path) else os.path.join(model_dir, data_name_or_path)
    task = _build_task(args, data_dir)
    model = RobertaModel.build_model(args, task)
    model.load_state_dict(state["model"])
    return RobertaHubInterface(args, task, model, _Bpe(model_dir))


class RobertaHubInterface(nn.Module):
    """Text-level helpers around a RobertaModel (fairseq's names and behaviour)."""

    def __init__(self, cfg, task, model, bpe: Optional[_Bpe] = None):
        super().__init__()
        self.cfg = cfg
        self.task = task
        self.model = model
        self.bpe = bpe
        self.register_buffer("_float_tensor", torch.tensor([0.0], dtype=torch.float), persistent=False)
        self.eval()

    @property
    def device(self):
        return self._float_tensor.device

    def _need_bpe(self):
        if self.bpe is None or self.bpe.tok is None:
            raise ValueError("no BPE known: put tokenizer.json (or encoder.json + vocab.bpe) in the model folder")
        return self.bpe

    def _encode_bpe_line(self, line: str) -> torch.Tensor:
        d = self.task.source_dictionary
        return torch.tensor([d.index(w) for w in line.split()], dtype=torch.long)

    def encode(self, sentence: str, *addl_sentences: str, no_separator: bool = False) -> torch.Tensor:
        """'<s> A </s>' (+ ' </s> B </s>' per additional sentence) as dictionary ids."""
        bpe = self._need_bpe()
        line = "<s> " + bpe.encode(sentence) + " </s>"
        for s in addl_sentences:
            line += (" </s>" if not no_separator else "") + " " + bpe.encode(s) + " </s>"
        return self._encode_bpe_line(line)

    def decode(self, tokens: torch.Tensor):
        """Inverse of encode: one string, or a list when the tokens hold several sentences."""
        bpe = self._need_bpe()
        d = self.task.source_dictionary
        toks = [int(t) for t in tokens.view(-1).tolist()]
        if toks and toks[0] == d.bos():
            toks = toks[1:]
        sentences, cur = [], []
        for t in toks:
            if t == d.eos():
                if cur:
                    sentences.append(cur)
                cur = []
            elif t != d.pad():
                cur.append(t)
        if cur:
            sentences.append(cur)
        out = [bpe.decode(" ".join(d[t] for t in s)) for s in sentences]
        return out[0] if len(out) == 1 else out

    def _as_batch(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() == 1:
            tokens = tokens.unsqueeze(0)
        if tokens.size(-1) > self.model.max_positions():
            raise ValueError(f"tokens exceeds maximum length: {tokens.size(-1)} > {self.model.max_positions()}")
        return tokens.to(device=self.device, dtype=torch.long)

    def extract_features(self, tokens: torch.Tensor, return_all_hiddens: bool = False):
        """[B,T,C] final features, or the list of every layer's [B,T,C] output when return_all_hiddens."""
        features, extra = self.model(self._as_batch(tokens), features_only=True,
                                     return_all_hiddens=return_all_hiddens)
        if return_all_hiddens:
            return [s.transpose(0, 1) for s in extra["inner_states"]]
        return features

    def register_classification_head(self, name: str, num_classes: Optional[int] = None,
                                     embedding_size: Optional[int] = None, **kwargs):
        self.model.register_classification_head(name, num_classes=num_classes, inner_dim=embedding_size)

    def predict(self, head: str, tokens: torch.Tensor, return_logits: bool = False) -> torch.Tensor:
        logits = self.model.classification_heads[head](self.extract_features(tokens))
        return logits if return_logits else F.log_softmax(logits, dim=-1)

    @torch.no_grad()
    def fill_mask(self, masked_input: str, topk: int = 5) -> List[tuple]:
        """[(filled sentence, probability, predicted token), ...] for the single '<mask>' in the input."""
        mask = "<mask>"
        if masked_input.count(mask) != 1:
            raise ValueError(f"fill_mask needs exactly one {mask} in the input, got {masked_input!r}")
        bpe = self._need_bpe()
        spans = [s.rstrip() for s in masked_input.split(mask)]
        spans_bpe = (" {0} ".format(mask)).join(bpe.encode(s) for s in spans).strip()
        tokens = self._encode_bpe_line("<s> " + spans_bpe + " </s>")
        mask_idx = self.task.source_dictionary.index(mask)
        pos = (tokens == mask_idx).nonzero()[0, 0]
        logits, _ = self.model(self._as_batch(tokens), features_only=False)
        prob = logits[0, pos].softmax(dim=-1)
        values, index = prob.topk(k=topk)
        d = self.task.source_dictionary
        results = []
        for p, i in zip(values.tolist(), index.tolist()):
            token = bpe.decode(d[i])
            if token.startswith(" ") and " " + mask in masked_input:
                filled = masked_input.replace(" " + mask, token)
            else:
                filled = masked_input.replace(mask, token)
            results.append((filled, p, token))
        return results
