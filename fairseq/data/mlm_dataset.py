"""Masked-LM samples: <s> + block, fairseq's masking, and the collater the trainer consumes."""
from __future__ import annotations

from typing import List, Optional

import numpy as np
import torch

from fairseq.data.dictionary import Dictionary
from fairseq.data.masking import mask_tokens, replacement_weights


def collate_tokens(values: List[torch.Tensor], pad_idx: int, pad_to_multiple: int = 1) -> torch.Tensor:
    """Right-pad 1-D tensors into [B, T], T = the longest rounded up to a multiple of pad_to_multiple.

    pad_to_multiple is --required-seq-len-multiple (fairseq's collate_tokens does the same), e.g. 8
    so that fp16 matmuls on tensor cores see aligned shapes.
    """
    size = max(v.numel() for v in values)
    size = -(-size // pad_to_multiple) * pad_to_multiple
    out = values[0].new_full((len(values), size), pad_idx)
    for i, v in enumerate(values):
        out[i, : v.numel()] = v
    return out


class MaskedLMDataset(torch.utils.data.Dataset):
    """Item i: {"id", "source", "target"} with <s> prepended; masking depends on (seed, epoch, i)."""

    def __init__(
        self,
        blocks,
        vocab: Dictionary,
        seed: int = 1,
        mask_prob: float = 0.15,
        leave_unmasked_prob: float = 0.1,
        random_token_prob: float = 0.1,
        mask_whole_words: Optional[np.ndarray] = None,
        freq_weighted_replacement: bool = False,
        pad_to_multiple: int = 1,
    ):
        super().__init__()
        if "<mask>" not in vocab:
            raise ValueError("MaskedLMDataset needs a dictionary with <mask> (call vocab.add_symbol('<mask>'))")
        if not 0.0 < mask_prob < 1.0:
            raise ValueError(f"--mask-prob must be in (0, 1), got {mask_prob}")
        if random_token_prob + leave_unmasked_prob > 1.0:
            raise ValueError("--random-token-prob + --leave-unmasked-prob must be <= 1")
        self.blocks = blocks
        self.pad_to_multiple = int(pad_to_multiple)
        self.vocab = vocab
        self.seed = seed
        self.epoch = 0  # fairseq's MaskTokensDataset starts at epoch 0 until set_epoch is called
        self.mask_idx = vocab.index("<mask>")
        self.pad_idx, self.bos_idx = vocab.pad(), vocab.bos()
        self.mask_prob = mask_prob
        self.leave_unmasked_prob = leave_unmasked_prob
        self.random_token_prob = random_token_prob
        if mask_whole_words is not None:
            mask_whole_words = np.asarray(mask_whole_words, dtype=bool)
            if len(mask_whole_words) != len(vocab):
                raise ValueError(
                    f"mask_whole_words has {len(mask_whole_words)} entries, dictionary has {len(vocab)}"
                )
        self.mask_whole_words = mask_whole_words
        self.weights = replacement_weights(vocab.count, vocab.nspecial, freq_weighted_replacement)
        self._sizes = np.asarray(blocks.sizes, dtype=np.int64) + 1

    @property
    def sizes(self) -> np.ndarray:
        return self._sizes

    def __len__(self) -> int:
        return len(self.blocks)

    def size(self, i: int) -> int:
        return int(self._sizes[i])

    def num_tokens(self, i: int) -> int:
        return int(self._sizes[i])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.blocks, "set_epoch"):
            self.blocks.set_epoch(epoch)

    def original(self, i: int) -> np.ndarray:
        block = np.asarray(self.blocks[i], dtype=np.int64)
        return np.concatenate([np.array([self.bos_idx], dtype=np.int64), block])

    def __getitem__(self, i: int) -> dict:
        source, target = mask_tokens(
            self.original(i), self.seed, self.epoch, i, self.mask_idx, self.pad_idx, self.weights,
            self.mask_prob, self.leave_unmasked_prob, self.random_token_prob, self.mask_whole_words,
        )
        return {"id": i, "source": torch.from_numpy(source), "target": torch.from_numpy(target)}

    def collater(self, samples: List[dict]) -> dict:
        if len(samples) == 0:
            return {}
        src = [s["source"] for s in samples]
        lengths = torch.tensor([v.numel() for v in src], dtype=torch.long)
        return {
            "id": torch.tensor([s["id"] for s in samples], dtype=torch.long),
            "nsentences": len(samples),
            "ntokens": int(lengths.sum()),
            "net_input": {"src_tokens": collate_tokens(src, self.pad_idx, self.pad_to_multiple),
                          "src_lengths": lengths},
            "target": collate_tokens([s["target"] for s in samples], self.pad_idx, self.pad_to_multiple),
        }
