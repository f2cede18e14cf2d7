"""A fairseq --user-dir plugin for masked-LM research, written only against fairseq 0.12.2's documented API
(it runs unchanged on the real fairseq 0.12.2 and on fairseq-sctd):

- architecture `roberta_plugin_tiny`: a small RoBERTa, registered on the `roberta` model;
- criterion `masked_lm_with_accuracy`: MaskedLmLoss that also logs masked-token accuracy;
- task `counting_masked_lm`: MaskedLMTask that counts the sentences it trained on.

    fairseq-train DATA --user-dir examples/plugin/mlm_plugin --task counting_masked_lm \\
        --criterion masked_lm_with_accuracy --arch roberta_plugin_tiny --optimizer adam ...
"""
from . import criterion, model, task  # noqa: F401  (each module registers its class)
