"""A new RoBERTa size, registered on fairseq's `roberta` model (fairseq's register_model_architecture)."""
from fairseq.models import register_model_architecture
from fairseq.models.roberta import base_architecture


@register_model_architecture("roberta", "roberta_plugin_tiny")
def roberta_plugin_tiny(args):
    # an explicit flag wins: unset model flags are absent from args, so getattr gives our default
    args.encoder_layers = getattr(args, "encoder_layers", 4)
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 32)
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", 64)
    args.encoder_attention_heads = getattr(args, "encoder_attention_heads", 2)
    base_architecture(args)
