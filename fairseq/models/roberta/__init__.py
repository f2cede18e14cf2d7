"""RoBERTa: the model (fairseq 0.12.2 compatible, with a token-dropping path), registered as `roberta` with
its --arch names. The hub interface is fairseq.models.roberta.hub_interface (reached through
RobertaModel.from_pretrained; it loads tasks and checkpoints, which build this model)."""
from fairseq.models.architectures import base_architecture  # noqa: F401
from fairseq.models.roberta.model import (  # noqa: F401
    RobertaClassificationHead,
    RobertaEncoder,
    RobertaLMHead,
    RobertaModel,
    TransformerSentenceEncoder,
    fairseq_compatible_state_dict,
    init_bert_params,
    make_positions,
)
