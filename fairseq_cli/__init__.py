"""Command-line entry points (fairseq-preprocess, fairseq-train, ...)."""
