"""fairseq-sctd: a clean-room, fairseq-compatible RoBERTa pretraining toolkit with token dropping and ScTD."""

__version__ = "0.1.0"
