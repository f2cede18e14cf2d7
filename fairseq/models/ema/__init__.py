"""fairseq.models.ema: the weight EMA fairseq-train keeps with --store-ema (EMA, build_ema), and how a
checkpoint carries it (checkpoint_state, load_checkpoint_state)."""
from fairseq.models.ema.ema import EMA
from fairseq.models.ema.extra_state import checkpoint_state, load_checkpoint_state  # noqa: F401


def build_ema(model, cfg, device):
    """fairseq's builder: the EMA of `model` configured by cfg (ema_decay, ema_start_update, ...), on `device`."""
    return EMA(model, cfg, device)
