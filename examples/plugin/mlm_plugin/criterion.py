"""MaskedLmLoss that also logs how often the masked token is the model's top prediction."""
import torch
import torch.nn.functional as F

from fairseq.criterions import register_criterion
from fairseq.criterions.masked_lm import MaskedLmConfig, MaskedLmLoss
from fairseq.logging import metrics


@register_criterion("masked_lm_with_accuracy", dataclass=MaskedLmConfig)
class MaskedLmWithAccuracy(MaskedLmLoss):
    def forward(self, model, sample, reduce=True):
        masked_tokens = sample["target"].ne(self.padding_idx)
        sample_size = masked_tokens.int().sum()
        logits = model(**sample["net_input"], masked_tokens=masked_tokens)[0]
        targets = sample["target"][masked_tokens]
        loss = F.nll_loss(F.log_softmax(logits, dim=-1, dtype=torch.float32), targets, reduction="sum",
                          ignore_index=self.padding_idx)
        logging_output = {
            "loss": loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"],
            "sample_size": sample_size,
            "ncorrect": (logits.argmax(dim=-1) == targets).sum().data,
        }
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        MaskedLmLoss.reduce_metrics(logging_outputs)
        ncorrect = sum(float(log.get("ncorrect", 0)) for log in logging_outputs)
        sample_size = sum(float(log.get("sample_size", 0)) for log in logging_outputs)
        if sample_size > 0:
            metrics.log_scalar("accuracy", 100.0 * ncorrect / sample_size, sample_size, round=2)

