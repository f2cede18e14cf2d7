"""masked_lm and cross_entropy criteria against fairseq 0.12.2's values on the fixture checkpoint and batches."""
import argparse
import json

import numpy as np
import pytest
import torch

from fairseq.registry import lookup


@pytest.fixture(scope="module")
def hub(peer_dir):
    from fairseq.models.roberta import RobertaModel

    return RobertaModel.from_pretrained(str(peer_dir), checkpoint_file="checkpoint_last.no-optimizer-state.pt",
                                        data_name_or_path="./data-bin")


@pytest.mark.parametrize("batch", ["A", "B"])
@pytest.mark.parametrize("name", ["masked_lm", "cross_entropy"])
def test_criterion_matches_fairseq(hub, peer_dir, batch, name):
    ref = json.loads((peer_dir / "reference" / "model_outputs_summary.json").read_text())[f"batch{batch}"]
    ref = ref["criteria"][name]
    z = np.load(peer_dir / "reference" / f"model_outputs_batch{batch}.npz")
    src, target = torch.from_numpy(z["src_tokens"]), torch.from_numpy(z["target"])
    sample = {"net_input": {"src_tokens": src, "src_lengths": torch.from_numpy(z["src_lengths"])},
              "target": target, "ntokens": int(z["src_lengths"].sum()), "nsentences": src.size(0)}
    crit = lookup("criterion", name).build_criterion(argparse.Namespace(sentence_avg=False), hub.task)
    model = hub.model.eval()
    with torch.no_grad():
        loss, sample_size, log = crit(model, sample)
    assert int(sample_size) == ref["sample_size"]
    assert float(loss) == pytest.approx(ref["loss"], rel=2e-6)
    logged = crit.reduce_metrics([log])
    assert round(logged["loss"], 3) == ref["reduced_metrics_as_logged"]["loss"]
    assert logged["loss"] == pytest.approx(ref["loss_div_sample_size_div_ln2_unrounded"], rel=2e-6)
