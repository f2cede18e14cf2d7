"""FairseqEncoder: fairseq's base class for an encoder that holds its dictionary."""
import torch.nn as nn


class FairseqEncoder(nn.Module):
    def __init__(self, dictionary):
        super().__init__()
        self.dictionary = dictionary

    def forward(self, src_tokens, src_lengths=None, **kwargs):
        raise NotImplementedError

    def forward_torchscript(self, net_input):
        return self.forward(src_tokens=net_input["src_tokens"], src_lengths=net_input.get("src_lengths"))

    def reorder_encoder_out(self, encoder_out, new_order):
        raise NotImplementedError

    def max_positions(self):
        return 1e6

    def upgrade_state_dict_named(self, state_dict, name):
        return state_dict

    def set_num_updates(self, num_updates):
        for m in self.modules():
            if m is not self and hasattr(m, "set_num_updates"):
                m.set_num_updates(num_updates)
