"""fairseq-sctd-quickstart: the README's first command, and the machinery only it and the benchmarks use.

    cli.py           the command: corpus -> BPE -> binarize -> three trainings side by side -> table, plot
    corpus.py        the offline corpus (standard-library docstrings), identical for a Python version
    side_by_side.py  several trainings in one process, updates interleaved, one clock and RNG each
    results.py       summaries, caveats, the table, the model name and the two-panel plot
"""
