"""--seq-len-schedule (fairseq/seq_len_schedule.py): the flag's parsing and errors, the switch that ends
the epoch and rebuilds the blocks, token dropping's kept count following the block length, a run resumed
across the switch equal to the uninterrupted one, and the resume check that understands the schedule."""
import argparse

import pytest
import torch

from fairseq import options, seq_len_schedule
from fairseq.checkpoint.resume_checks import check_data_layout
from fairseq.data.dictionary import placeholder_dictionary
from fairseq.token_drop import TokenDropper, add_token_drop_args
from test_launch import train_in_process

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py
SWITCH = 5  # blocks of 16 tokens for updates 0..4, then --tokens-per-sample 32


def train_parse(*argv):
    return options.parse_args_and_arch(options.get_training_parser(), [
        "data-bin-not-read", "--arch", "roberta_base", "--optimizer", "adam", "--batch-size", "8",
        "--tokens-per-sample", "128", *argv])


def test_entries_updates_and_fractions():
    s = seq_len_schedule.from_args(train_parse("--seq-len-schedule", "32:0.3,64:600", "--max-update", "1000"))
    assert s.steps == ((32, 300), (64, 600)) and s.full == 128
    assert [s.length_at(u) for u in (0, 299, 300, 599, 600, 10**6)] == [32, 32, 64, 64, 128, 128]
    assert seq_len_schedule.parse("16:0.29", 128, 100).steps == ((16, 29),)  # float fuzz: 0.29 * 100 = 28.99...
    assert seq_len_schedule.parse("16:0.9", 128, 10).steps == ((16, 9),)  # --total-num-update when no --max-update
    assert seq_len_schedule.from_args(train_parse()) is None
    assert seq_len_schedule.lengths(train_parse("--seq-len-schedule", "16:4")) == [16, 128]


@pytest.mark.parametrize("spec,message", [
    ("32", "entry '32' has no ':AT'"),
    ("x:5", "entry 'x:5' is not LEN:AT"),
    ("32:0.9", "a fraction of the run needs --max-update"),
    ("32:1.5", "fraction 1.5 must be in (0, 1)"),
    ("128:5", "length 128 must be at least 2 (<s> and a token) and below --tokens-per-sample 128"),
    ("64:5,32:9", "lengths and switch points must both increase"),
    ("32:9,64:5", "lengths and switch points must both increase"),
    ("32:0", "ends before the first update"),
])
def test_bad_schedules_stop_at_parsing_with_one_line(spec, message):
    with pytest.raises(ValueError, match=r"^--seq-len-schedule '" + spec.replace(".", r"\.") + "': .*"
                       + message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        train_parse("--seq-len-schedule", spec)


def test_token_dropping_must_keep_a_real_token_at_the_shortest_length():
    p = argparse.ArgumentParser()
    add_token_drop_args(p)
    args = p.parse_args(["--token-drop", "0.8"])
    args.tokens_per_sample, args.seq_len_schedule, args.max_update = 32, "4:10", 100
    with pytest.raises(ValueError, match=r"keeps 1 of 4 positions \(--tokens-per-sample 4\)"):
        TokenDropper(args, placeholder_dictionary(20), num_layers=4)


# --------------------------------------------------------------------------- training across the switch


def base(peer_dir, save_dir, max_update):
    return [str(peer_dir / "data-bin"), "--task", "masked_lm", "--criterion", "masked_lm", "--arch", "roberta_base",
            "--encoder-layers", "4", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
            "--encoder-attention-heads", "2", "--optimizer", "adam", "--lr", "1e-3", "--lr-scheduler",
            "polynomial_decay", "--warmup-updates", "2", "--total-num-update", "8", "--tokens-per-sample", "32",
            "--sample-break-mode", "none", "--batch-size", "4", "--cpu", "--seed", "3", "--disable-validation",
            "--log-format", "json", "--log-interval", "1", "--token-drop", "0.5", "--sctd-interval", "3",
            "--seq-len-schedule", f"16:{SWITCH}", "--max-update", str(max_update), "--save-dir", str(save_dir)]


@pytest.fixture(scope="module")
def uninterrupted(peer_dir, tmp_path_factory):
    """8 updates straight through the switch, recording (update, batch length T, kept count K)."""
    seen = []
    keep_positions = TokenDropper.keep_positions

    def spy(self, src_tokens, sample_ids, update_num):
        keep = keep_positions(self, src_tokens, sample_ids, update_num)
        seen.append((update_num, src_tokens.size(1), keep.size(-1)))
        return keep

    TokenDropper.keep_positions = spy
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the resumed legs (one_thread): a module fixture runs before function ones
    try:
        trainer, records = train_in_process(base(peer_dir, tmp_path_factory.mktemp("straight"), 8))
    finally:
        TokenDropper.keep_positions = keep_positions
        torch.set_num_threads(threads)
    return {"trainer": trainer, "records": records, "seen": seen}


def test_blocks_switch_and_the_kept_count_follows_the_length(uninterrupted):
    assert uninterrupted["seen"] == [(u, 16 if u < SWITCH else 32, 8 if u < SWITCH else 16) for u in range(8)]
    # the switch ends epoch 1 after update 5; epoch 2 reads the new blocks from its own start
    assert [r["epoch"] for r in uninterrupted["records"]] == [1] * SWITCH + [2] * (8 - SWITCH)
    trainer = uninterrupted["trainer"]
    assert trainer.train_length == 32 and not trainer.train_length_changed()
    assert int(trainer.task.dataset("train").sizes[0].max()) == 32
    assert trainer.model.encoder.sentence_encoder.max_positions == 32  # positions sized for the full length


@pytest.mark.parametrize("stop", [3, SWITCH, 6], ids=["before", "at", "after"])
def test_resumed_across_the_switch_equals_uninterrupted(peer_dir, tmp_path, uninterrupted, stop):
    """Stopped mid-epoch in the short blocks, exactly at the switch, or in the long blocks; then resumed."""
    first, records_first = train_in_process(base(peer_dir, tmp_path, stop))
    state = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)["extra_state"]["train_iterator"]
    assert (state["epoch"], state["iterations_in_epoch"] == 0) == ((1, False), (2, True), (2, False))[
        [3, SWITCH, 6].index(stop)]
    resumed, records_rest = train_in_process(base(peer_dir, tmp_path, 8))
    assert records_first + records_rest == uninterrupted["records"]  # losses, epochs, lr, drop rates, ...
    straight = uninterrupted["trainer"]
    for (name, p), q in zip(straight.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(p, q), name
    assert torch.equal(straight.task.token_dropper.importance.scores, resumed.task.token_dropper.importance.scores)


# --------------------------------------------------------------------------- the resume check


def saved(spec, updates=3, position=3, tokens_per_sample=32, max_update=8):
    return {"extra_state": {"train_iterator": {"epoch": 1, "iterations_in_epoch": position}},
            "cfg": {"task": {"tokens_per_sample": tokens_per_sample, "seq_len_schedule": spec,
                             "sample_break_mode": "none"}, "model": {"max_update": max_update}},
            "optimizer_history": [{"num_updates": updates}]}


def run_args(spec, max_update=8, tokens_per_sample=32):
    return argparse.Namespace(tokens_per_sample=tokens_per_sample, seq_len_schedule=spec, max_update=max_update,
                              total_num_update=None, sample_break_mode="none")


def test_resume_check_compares_the_block_length_in_force_at_the_saved_update():
    check_data_layout(saved("16:5"), run_args("16:5"), "c.pt")
    check_data_layout(saved("16:5"), run_args("16:7"), "c.pt")  # a later switch: update 3 still reads 16-blocks
    check_data_layout(saved("16:0.5"), run_args("16:4"), "c.pt")  # the same switch, written another way
    check_data_layout(saved("16:5", updates=6), run_args(None), "c.pt")  # past the switch: 32-blocks either way
    check_data_layout(saved("16:5", position=0), run_args(None), "c.pt")  # an epoch boundary: any layout
    with pytest.raises(ValueError, match=r"c\.pt: saved 3 batches into epoch 1 of blocks of 16 tokens "
                                         r"\(--tokens-per-sample 32, --seq-len-schedule 16:5 at update 3\), but "
                                         r"this run's flags give blocks of 32 tokens there"):
        check_data_layout(saved("16:5"), run_args(None), "c.pt")
    with pytest.raises(ValueError, match="blocks of 24 tokens there.*--reset-dataloader"):
        check_data_layout(saved("16:5"), run_args("24:5"), "c.pt")
    with pytest.raises(ValueError, match="blocks of 32 tokens there"):  # a fraction of a shorter run
        check_data_layout(saved("16:0.5"), run_args("16:0.5", max_update=4), "c.pt")
    with pytest.raises(ValueError, match="blocks of 16 tokens there"):  # a schedule added to a plain run
        check_data_layout(saved(None), run_args("16:5"), "c.pt")
