"""fairseq.data.encoders.utils.get_whole_word_mask: which dictionary symbols begin a word, for
--mask-whole-words, from the BPE that cfg names (--bpe)."""
import torch

from fairseq.data import encoders
from fairseq.data.bpe import word_begins


def get_whole_word_mask(args, dictionary):
    """A ByteTensor over the dictionary (1 = begins a word; specials and madeupwords do), or None when
    args names no BPE."""
    bpe = encoders.build_bpe(args)
    if bpe is None:
        return None
    return torch.from_numpy(word_begins(dictionary, bpe).astype("uint8"))
