"""RoBERTa: the model (fairseq 0.12.2 compatible, with a token-dropping path) and its hub interface."""
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
from fairseq.models.roberta.hub_interface import RobertaHubInterface  # noqa: F401
