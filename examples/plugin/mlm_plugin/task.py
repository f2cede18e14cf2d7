"""MaskedLMTask with a config field of its own, counting the sentences it trains on."""
from dataclasses import dataclass, field

from fairseq.tasks import register_task
from fairseq.tasks.masked_lm import MaskedLMConfig, MaskedLMTask


@dataclass
class CountingMaskedLMConfig(MaskedLMConfig):
    count_every: int = field(default=1, metadata={"help": "count the sentences of every N-th training batch"})


@register_task("counting_masked_lm", dataclass=CountingMaskedLMConfig)
class CountingMaskedLMTask(MaskedLMTask):
    def __init__(self, cfg, dictionary):
        super().__init__(cfg, dictionary)
        self.sentences_seen = 0
        self.batches_seen = 0

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        if self.batches_seen % self.cfg.count_every == 0:
            self.sentences_seen += int(sample["nsentences"])
        self.batches_seen += 1
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad=ignore_grad)
