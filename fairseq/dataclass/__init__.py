"""fairseq.dataclass (PLACEHOLDER from the data branch: the api branch provides the real package)."""
