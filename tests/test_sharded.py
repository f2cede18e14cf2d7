"""Sharded corpora (`fairseq-train A:B:C`): epoch k trains on shard (k-1) mod 3, fairseq's rule.

Three tiny shards with different sizes are written with our own .bin/.idx writer. One sentence of
20 tokens fills a 32-token block (`complete` mode), so shard sizes 20/12/28 give 5/3/7 batches of
4: the epochs must run 5, 3, 7, 5 updates, each loading its shard, validating on shard A's valid
split, and a run resumed mid-shard (or at a shard boundary) must end bit-identical to one that was
never interrupted, with the same losses on the way.
"""
from __future__ import annotations

import argparse
import json
import logging

import numpy as np
import pytest
import torch

from fairseq import options
from fairseq.checkpoint.files import load_checkpoint_file
from fairseq.data.indexed_dataset import MMapIndexedDatasetBuilder
from fairseq_cli import train

SHARD_SENTENCES = {"A": 20, "B": 12, "C": 28}
BATCHES = [5, 3, 7, 5]  # epochs 1..4 on shards A, B, C, A
FLAGS = [
    "--task", "masked_lm", "--arch", "roberta_base", "--encoder-layers", "4", "--encoder-embed-dim", "16",
    "--encoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2", "--tokens-per-sample", "32",
    "--sample-break-mode", "complete", "--batch-size", "4", "--required-batch-size-multiple", "1",
    "--optimizer", "adam", "--lr", "1e-3", "--dropout", "0", "--attention-dropout", "0", "--cpu",
    "--log-format", "json", "--log-interval", "1", "--token-drop", "0.5", "--sctd-interval", "2",
    "--seed", "5", "--max-epoch", "4", "--save-interval-updates", "5",
]


def _write_split(prefix, n: int, vocab: int, seed: int):
    rng = np.random.RandomState(seed)
    builder = MMapIndexedDatasetBuilder(f"{prefix}.bin", dtype=np.uint16)
    for _ in range(n):
        builder.add_item(np.append(rng.randint(4, vocab, size=19), 2))  # 19 tokens + </s>
    builder.finalize(f"{prefix}.idx")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    for i, (name, n) in enumerate(SHARD_SENTENCES.items()):
        (root / name).mkdir()
        _write_split(root / name / "train", n, 500, seed=i)
    # the dictionary comes from shard 1 only: 496 words after the 4 specials
    (root / "A" / "dict.txt").write_text("".join(f"w{i} {1000 - i}\n" for i in range(496)))
    _write_split(root / "A" / "valid", 6, 500, seed=9)
    return root


def _data(root, names="ABC"):
    return ":".join(str(root / n) for n in names)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


def _run(data, save_dir, *extra):
    """train.main on `data`; returns the trainer, the logged messages and the train_inner losses by update."""
    args = options.parse_args_and_arch(options.get_training_parser(),
                                       [data, *FLAGS, "--save-dir", str(save_dir), *extra])
    root, tap = logging.getLogger(), _Records()
    level = root.level
    root.addHandler(tap)
    root.setLevel(logging.INFO)
    try:
        trainer = train.main(args)
    finally:
        root.removeHandler(tap)
        root.setLevel(level)
    lines = [r.getMessage() for r in tap.records]
    losses = {int(json.loads(r.getMessage())["num_updates"]): json.loads(r.getMessage())["loss"]
              for r in tap.records if r.name == "train_inner"}
    return trainer, lines, losses


@pytest.fixture(scope="module")
def uninterrupted(shards, tmp_path_factory):
    """Four epochs over A, B, C, A, with a checkpoint every 5 updates and at every epoch's end."""
    out = tmp_path_factory.mktemp("full")
    trainer, lines, losses = _run(_data(shards), out)
    return {"dir": out, "lines": lines, "losses": losses,
            "params": {k: v.clone() for k, v in trainer.model.state_dict().items()},
            "importance": trainer.task.token_dropper.importance.scores.clone(), "updates": trainer.num_updates}


def test_epochs_rotate_over_shards_with_their_own_batch_counts(shards, uninterrupted):
    ends = [int(load_checkpoint_file(str(uninterrupted["dir"] / f"checkpoint{e}.pt"))
                ["optimizer_history"][-1]["num_updates"]) for e in range(1, 5)]
    assert ends == list(np.cumsum(BATCHES))  # updates per epoch: 5, 3, 7, 5 in rotation order
    assert uninterrupted["updates"] == sum(BATCHES) and sorted(uninterrupted["losses"]) == list(range(1, 21))
    loaded = [ln for ln in uninterrupted["lines"] if ln.startswith("loaded ") and "blocks from:" in ln]
    assert loaded == [f"loaded 6 blocks from: {shards / 'A' / 'valid'}"] + [
        f"loaded {SHARD_SENTENCES[n]} blocks from: {shards / n / 'train'}" for n in "ABCA"]
    valid = [json.loads(ln) for ln in uninterrupted["lines"] if ln.startswith('{"epoch"') and "valid_loss" in ln]
    assert len(valid) >= 4  # validated (on shard A's valid split, the only one there is) every epoch


@pytest.mark.parametrize("name, first", [("checkpoint_3_10.pt", 11), ("checkpoint2.pt", 9)])
def test_resume_mid_shard_and_at_shard_boundary_is_bit_exact(shards, uninterrupted, tmp_path, name, first):
    """checkpoint_3_10.pt: batch 2 of epoch 3 (shard C); checkpoint2.pt: the end of shard B."""
    trainer, lines, losses = _run(_data(shards), tmp_path, "--restore-file", str(uninterrupted["dir"] / name))
    assert f"loaded 28 blocks from: {shards / 'C' / 'train'}" in lines  # resumed on shard C's data
    assert trainer.num_updates == uninterrupted["updates"]
    assert losses == {u: v for u, v in uninterrupted["losses"].items() if u >= first}
    for k, v in uninterrupted["params"].items():
        assert torch.equal(trainer.model.state_dict()[k], v), k
    assert torch.equal(trainer.task.token_dropper.importance.scores, uninterrupted["importance"])


def test_missing_shard_is_one_clear_error_before_training(shards, tmp_path, capsys):
    argv = [_data(shards).replace(str(shards / "B"), str(shards / "missing")), *FLAGS, "--save-dir", str(tmp_path)]
    with pytest.raises(SystemExit) as e:
        train.worker_main(options.parse_args_and_arch(options.get_training_parser(), argv))
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err == f"fairseq-train: error: data shard not found: {shards / 'missing'} (shard 2 of 3 in the data argument)\n"
    (tmp_path / "empty").mkdir()
    argv[0] = f"{shards / 'A'}:{tmp_path / 'empty'}"
    with pytest.raises(SystemExit):
        train.worker_main(options.parse_args_and_arch(options.get_training_parser(), argv))
    assert f"dataset not found: {tmp_path / 'empty' / 'train'}.bin/.idx (shard 2 of 2" in capsys.readouterr().err
    assert not (tmp_path / "checkpoint_last.pt").exists()


def test_sentence_prediction_refuses_shards():
    from fairseq.tasks.sentence_prediction import SentencePredictionTask

    with pytest.raises(ValueError, match="reads one data directory"):
        SentencePredictionTask.setup_task(argparse.Namespace(data="glue1:glue2", num_classes=2))
