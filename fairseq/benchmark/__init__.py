"""fairseq.benchmark: fairseq's synthetic tasks for measuring training throughput without a corpus
(--task dummy_lm / dummy_masked_lm): every batch is the same made-up batch of the requested size."""
from fairseq.benchmark import dummy_lm, dummy_masked_lm  # noqa: F401  (register the tasks)
