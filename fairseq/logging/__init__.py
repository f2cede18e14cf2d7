"""Meters and progress output (json / simple / tqdm / none) in fairseq's formats."""
