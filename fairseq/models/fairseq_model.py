"""fairseq's model base classes: BaseFairseqModel (build_model, add_args from the registered dataclass,
get_targets / get_normalized_probs, set_num_updates) and FairseqEncoderModel (one encoder)."""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from fairseq.dataclass.flags import add_registered_args


class BaseFairseqModel(nn.Module):
    @classmethod
    def add_args(cls, parser):
        """Flags from the dataclass the model was registered with (a model may override this)."""
        add_registered_args(cls, parser, "model", delete_default=True)

    @classmethod
    def build_model(cls, args, task):
        raise NotImplementedError("Model must implement the build_model method")

    def get_targets(self, sample, net_output):
        return sample["target"]

    def get_normalized_probs(self, net_output, log_probs: bool, sample=None):
        logits = net_output[0].float()
        return F.log_softmax(logits, dim=-1) if log_probs else F.softmax(logits, dim=-1)

    def max_positions(self):
        return None

    def set_num_updates(self, num_updates):
        for m in self.modules():
            if m is not self and hasattr(m, "set_num_updates"):
                m.set_num_updates(num_updates)

    def prepare_for_inference_(self, cfg=None):
        self.eval()


class FairseqEncoderModel(BaseFairseqModel):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        if not isinstance(encoder, nn.Module):
            raise TypeError("encoder must be an nn.Module")

    def forward(self, src_tokens, src_lengths=None, **kwargs):
        return self.encoder(src_tokens, src_lengths=src_lengths, **kwargs)

    def max_positions(self):
        return self.encoder.max_positions()

