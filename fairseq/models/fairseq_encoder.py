"""PLACEHOLDER from the data branch (fairseq.models.FairseqEncoder); the api branch provides the real one."""
import torch.nn as nn


class FairseqEncoder(nn.Module):
    """Base class for encoders: holds the dictionary."""

    def __init__(self, dictionary):
        super().__init__()
        self.dictionary = dictionary

    def forward(self, src_tokens, src_lengths=None, **kwargs):
        raise NotImplementedError
