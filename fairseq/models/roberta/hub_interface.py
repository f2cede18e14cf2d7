"""RobertaHubInterface: load a checkpoint directory and use the model on text (fairseq's hub API).

    roberta = RobertaModel.from_pretrained(model_dir, checkpoint_file="model.pt", data_name_or_path=".")
    tokens = roberta.encode("Hello world")          # needs tokenizer.json or encoder.json + vocab.bpe
    feats = roberta.extract_features(tokens)         # [1, T, C]
    roberta.fill_mask("The <mask> is here.", topk=3)
    roberta.cfg.model.encoder_layers, roberta.cfg.task.data   # fairseq's omegaconf config, in groups

Loading (which checkpoint layouts, which data folder, which BPE) is fairseq.hub_utils.from_pretrained;
this module only works on text with a loaded model, task and BPE. The interface is put in eval mode on
load (fairseq leaves that to the caller); call .train() to re-enable dropout.
"""
from __future__ import annotations

import logging
import os
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from fairseq import file_utils
from fairseq.data.bpe import load_tokenizer
from fairseq.data.encoders import gpt2_bpe

logger = logging.getLogger(__name__)


class HubBpe:
    """GPT-2 byte-level BPE through HF tokenizers: ids are written as decimal strings (fairseq's gpt2 bpe);
    or another --bpe of fairseq.data.encoders (`encoder`), used as it is."""

    def __init__(self, tokenizer_json: Optional[str] = None, encoder_json: Optional[str] = None,
                 vocab_bpe: Optional[str] = None, encoder=None):
        self.tok = None
        self.encoder = encoder
        if tokenizer_json or encoder_json or vocab_bpe:  # one of the GPT-2 pair alone is a clear error there
            self.tok = load_tokenizer(encoder_json, vocab_bpe, tokenizer_json)

    @classmethod
    def find(cls, folders, overrides: dict, trained=None) -> "HubBpe":
        """Explicit files (fairseq's gpt2_encoder_json / gpt2_vocab_bpe, or bpe_tokenizer_json) win; then the
        GPT-2 files the checkpoint was trained with (--gpt2-encoder-json / --gpt2-vocab-bpe), when they are
        there; else tokenizer.json, else encoder.json + vocab.bpe, in the model folder, then the data folder;
        else fairseq's default GPT-2 files from its cache (where fairseq's hub downloads them)."""
        tj = overrides.get("bpe_tokenizer_json")
        enc, merges = overrides.get("gpt2_encoder_json"), overrides.get("gpt2_vocab_bpe")
        if tj or enc or merges:
            return cls(tj, enc, merges)
        enc, merges = getattr(trained, "gpt2_encoder_json", None), getattr(trained, "gpt2_vocab_bpe", None)
        if enc and merges and os.path.isfile(enc) and os.path.isfile(merges):
            return cls(encoder_json=enc, vocab_bpe=merges)
        for folder in folders:
            if os.path.isfile(os.path.join(folder, "tokenizer.json")):
                return cls(tokenizer_json=os.path.join(folder, "tokenizer.json"))
            enc, merges = os.path.join(folder, "encoder.json"), os.path.join(folder, "vocab.bpe")
            if os.path.isfile(enc) and os.path.isfile(merges):
                return cls(encoder_json=enc, vocab_bpe=merges)
        try:
            return cls(encoder_json=file_utils.cached_path(gpt2_bpe.DEFAULT_ENCODER_JSON),
                       vocab_bpe=file_utils.cached_path(gpt2_bpe.DEFAULT_VOCAB_BPE))
        except FileNotFoundError:
            return cls()

    @property
    def known(self) -> bool:
        return self.tok is not None or self.encoder is not None

    def encode(self, text: str) -> str:
        if self.encoder is not None:
            return self.encoder.encode(text)
        return " ".join(str(i) for i in self.tok.encode(text, add_special_tokens=False).ids)

    def decode(self, bpe: str) -> str:
        """BPE ids -> text; other symbols (<s>, </s>, <unk>, madeupword...) come out as themselves, as in
        fairseq's gpt2 decoder."""
        if self.encoder is not None:
            return self.encoder.decode(bpe)
        out, ids = [], []
        for t in bpe.split():
            if t.isdigit():
                ids.append(int(t))
                continue
            if ids:
                out.append(self.tok.decode(ids))
                ids = []
            out.append(t)
        if ids:
            out.append(self.tok.decode(ids))
        return "".join(out)


class RobertaHubInterface(nn.Module):
    """Text-level helpers around a RobertaModel (fairseq's names and behaviour)."""

    def __init__(self, cfg, task, model, bpe: Optional[HubBpe] = None):
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

    def cuda(self, device=None):
        """Move to CUDA; on a machine without CUDA warn once and stay on the CPU, so fairseq's
        snippets (which call roberta.cuda()) run unchanged."""
        if not torch.cuda.is_available():
            if not getattr(RobertaHubInterface, "_warned_no_cuda", False):
                logger.warning("roberta.cuda(): CUDA is not available; the model stays on the CPU")
                RobertaHubInterface._warned_no_cuda = True
            return self
        return super().cuda(device)

    def _need_bpe(self):
        if self.bpe is None or not self.bpe.known:
            raise ValueError("no BPE known: put tokenizer.json (or encoder.json + vocab.bpe) in the model or data "
                             "folder, or pass gpt2_encoder_json=/gpt2_vocab_bpe= (or bpe_tokenizer_json=), or put "
                             "fairseq's GPT-2 files in its cache (fairseq.file_utils)")
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

    def encode_masked(self, masked_input: str) -> torch.Tensor:
        """'<s> text </s>' ids where each '<mask>' is the mask symbol and the whitespace before a mask
        is dropped (fairseq's fill_mask encoding; roberta-base's HF tokenizer does the same with its
        lstrip=True mask token)."""
        mask = "<mask>"
        bpe = self._need_bpe()
        spans = [s.rstrip() for s in masked_input.split(mask)]
        spans_bpe = (" {0} ".format(mask)).join(bpe.encode(s) for s in spans).strip()
        return self._encode_bpe_line("<s> " + spans_bpe + " </s>")

    @torch.no_grad()
    def fill_mask(self, masked_input: str, topk: int = 5) -> List[tuple]:
        """[(filled sentence, probability, predicted token), ...] for the single '<mask>' in the input."""
        mask = "<mask>"
        if masked_input.count(mask) != 1:
            raise ValueError(f"fill_mask needs exactly one {mask} in the input, got {masked_input!r}")
        bpe = self._need_bpe()
        tokens = self.encode_masked(masked_input)
        mask_idx = self.task.source_dictionary.index(mask)
        pos = (tokens == mask_idx).nonzero()[0, 0]
        logits, _ = self.model(self._as_batch(tokens), features_only=False)
        prob = logits[0, pos].softmax(dim=-1)
        values, index = prob.topk(k=topk)
        d = self.task.source_dictionary
        results = []
        for p, i in zip(values.tolist(), index.tolist()):
            token_bpe = d[i]
            token = bpe.decode(token_bpe)
            if token_bpe.startswith("\u2581"):  # sentencepiece word start (fairseq's rule, kept for exactness)
                token = " " + token
            # fairseq's rule: a mask written after a space takes that space's place, whatever the token
            if " " + mask in masked_input:
                filled = masked_input.replace(" " + mask, token)
            else:
                filled = masked_input.replace(mask, token)
            results.append((filled, p, token))
        return results
