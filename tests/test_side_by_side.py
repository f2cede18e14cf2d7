"""Interleaved lanes (fairseq_cli/quickstart/side_by_side.py): isolation, fairseq-train equivalence, clocks, resume."""
import pytest
import torch

from fairseq_cli.quickstart import side_by_side as sbs

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models, busy cores

TINY = ["--encoder-layers", "4", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
        "--encoder-attention-heads", "2", "--optimizer", "adam"]


def _argv(data, *extra):
    # dropout on (torch RNG) and random importance: every source of randomness a lane uses is exercised
    return [str(data), "--task", "masked_lm", "--criterion", "masked_lm", "--arch", "roberta", *TINY,
            "--tokens-per-sample", "32", "--sample-break-mode", "complete", "--batch-size", "4",
            "--optimizer", "adam", "--lr", "1e-3", "--lr-scheduler", "polynomial_decay", "--warmup-updates", "2",
            "--total-num-update", "20", "--dropout", "0.1", "--attention-dropout", "0.1", "--clip-norm", "1.0",
            "--cpu", "--valid-subset", "valid", "--skip-invalid-size-inputs-valid-test", *extra]


FULL = []
SCTD_RANDOM = ["--token-drop", "0.5", "--sctd-interval", "2", "--token-drop-importance", "random", "--seed", "5"]


def _params(lane):
    return [p.detach().clone() for p in lane.trainer.model.parameters()]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_a_lane_alone_equals_it_interleaved_and_fairseq_train(peer_dir, tmp_path):
    data = peer_dir / "data-bin"
    alone = sbs.Lane("sctd", _argv(data, *SCTD_RANDOM), valid_batches=2)
    for _ in range(4):
        alone.step()
    alone.validate()
    alone_params = _params(alone)

    a = sbs.Lane("full", _argv(data, *FULL), valid_batches=2)
    b = sbs.Lane("sctd", _argv(data, *SCTD_RANDOM), valid_batches=2)
    torch.rand(7)  # the caller's own RNG use between lanes must not leak into them either
    sbs.interleave([a, b], done=lambda lane: lane.num_updates >= 4, behind=lambda lane: lane.num_updates,
                   after_step=lambda lane: lane.validate() if lane.num_updates == 2 else None)
    b.validate()
    assert [lane.num_updates for lane in (a, b)] == [4, 4]
    _assert_same(_params(b), alone_params)
    assert torch.equal(b.task.token_dropper.importance.scores, alone.task.token_dropper.importance.scores)
    assert b.points[-1]["valid_loss"] == alone.points[-1]["valid_loss"]
    assert b.points[-1]["valid_loss_drop"] == alone.points[-1]["valid_loss_drop"]

    # a lane is fairseq-train's setup and update loop: same flags, same parameters after 4 updates
    from fairseq import options
    from fairseq_cli import train
    args = options.parse_args_and_arch(options.get_training_parser(), _argv(
        data, *SCTD_RANDOM, "--max-update", "4", "--no-save", "--log-format", "none", "--disable-validation"))
    _assert_same([p.detach() for p in train.main(args).model.parameters()], alone_params)


def test_each_lane_has_its_own_clock_and_the_points_sit_on_it(peer_dir):
    data = peer_dir / "data-bin"
    lanes = [sbs.Lane("full", _argv(data), valid_batches=1),
             sbs.Lane("drop", _argv(data, "--token-drop", "0.5", "--sctd-interval", "0"), valid_batches=1)]
    order = []

    def after(lane):
        order.append(lane.name)
        lane.validate()

    sbs.interleave(lanes, done=lambda lane: lane.num_updates >= 3, behind=lambda lane: lane.num_updates,
                   after_step=after)
    assert order == ["full", "drop"] * 3  # behind = num_updates is round-robin
    for lane in lanes:
        assert len(lane.step_seconds) == 3 and all(s > 0 for s in lane.step_seconds)
        assert lane.clock == pytest.approx(sum(lane.step_seconds))
        # point k sits at the sum of the first k step times: validation is not on the clock
        assert [p["seconds"] for p in lane.points] == pytest.approx(
            [sum(lane.step_seconds[:k]) for k in (1, 2, 3)])
        assert [p["updates"] for p in lane.points] == [1, 2, 3]
    assert "valid_loss_drop" in lanes[1].points[0] and "valid_loss_drop" not in lanes[0].points[0]

    # behind = clock: each update goes to the unfinished lane with the least step time so far
    chosen_was_behind = []

    def check(lane):
        before = lane.clock - lane.step_seconds[-1]
        others = [x.clock for x in lanes if x is not lane and x.num_updates < 6]
        chosen_was_behind.append(all(before <= o for o in others))

    sbs.interleave(lanes, done=lambda lane: lane.num_updates >= 6, behind=lambda lane: lane.clock,
                   after_step=check)
    assert len(chosen_was_behind) == 6 and all(chosen_was_behind)
    assert all(lane.num_updates == 6 for lane in lanes)


def test_save_then_load_continues_exactly(peer_dir, tmp_path):
    data = peer_dir / "data-bin"
    argv = _argv(data, *SCTD_RANDOM)
    straight = sbs.Lane("x", argv, valid_batches=1)
    for _ in range(5):
        straight.step()
    first = sbs.Lane("x", argv, valid_batches=1)
    for _ in range(3):
        first.step()
    first.validate()
    first.save(str(tmp_path / "checkpoint_last.pt"))
    resumed = sbs.Lane("x", argv, valid_batches=1)
    resumed.load(str(tmp_path / "checkpoint_last.pt"))
    assert resumed.num_updates == 3 and resumed.step_seconds == first.step_seconds
    assert resumed.points == first.points
    for _ in range(2):
        resumed.step()
    _assert_same(_params(resumed), _params(straight))
    assert torch.equal(resumed.task.token_dropper.importance.scores, straight.task.token_dropper.importance.scores)


def test_loop_flags_are_refused():
    sbs.check_no_loop_flags(["--lr", "1e-4", "--clip-norm", "1"], "--extra-train-args")
    with pytest.raises(ValueError, match="--extra-train-args: --max-update is set by this tool"):
        sbs.check_no_loop_flags(["--max-update=5"], "--extra-train-args")


def _write_split(prefix, n, seed):
    import numpy as np
    from fairseq.data.indexed_dataset import MMapIndexedDatasetBuilder
    rng = np.random.RandomState(seed)
    builder = MMapIndexedDatasetBuilder(f"{prefix}.bin", dtype=np.uint16)
    for _ in range(n):
        builder.add_item(np.append(rng.randint(4, 500, size=19), 2))  # one 32-token block per sentence
    builder.finalize(f"{prefix}.idx")


def test_sharded_data_rotates_like_fairseq_train_and_resumes_across_shards(tmp_path):
    """Shards of 5, 3 and 7 batches: 10 updates cross two shard boundaries; fairseq-train's parameters."""
    for i, (name, n) in enumerate({"A": 20, "B": 12, "C": 28}.items()):
        (tmp_path / name).mkdir()
        _write_split(tmp_path / name / "train", n, seed=i)
    (tmp_path / "A" / "dict.txt").write_text("".join(f"w{i} {1000 - i}\n" for i in range(496)))
    _write_split(tmp_path / "A" / "valid", 6, seed=9)
    data = ":".join(str(tmp_path / n) for n in "ABC")
    argv = _argv(data, *SCTD_RANDOM, "--required-batch-size-multiple", "1")
    straight = sbs.Lane("x", argv)
    for _ in range(10):
        straight.step()
    assert straight.epoch_itr.epoch == 3  # epochs of 5 and 3 updates, then shard C

    first = sbs.Lane("x", argv)
    for _ in range(6):  # into shard B
        first.step()
    first.save(str(tmp_path / "checkpoint_last.pt"))
    resumed = sbs.Lane("x", argv)
    resumed.load(str(tmp_path / "checkpoint_last.pt"))
    for _ in range(4):
        resumed.step()
    _assert_same(_params(resumed), _params(straight))

    from fairseq import options
    from fairseq_cli import train
    args = options.parse_args_and_arch(options.get_training_parser(), argv + [
        "--max-update", "10", "--no-save", "--log-format", "none", "--disable-validation"])
    _assert_same([p.detach() for p in train.main(args).model.parameters()], _params(straight))


def test_a_lane_switches_sequence_length_as_fairseq_train_and_resumes_across_it(peer_dir, tmp_path):
    """--seq-len-schedule (the epoch ends at the switch) with random-LTD: a lane stepped straight, a lane
    saved at the switch and loaded into a fresh one, and fairseq-train reach the same parameters."""
    data = peer_dir / "data-bin"
    levers = ["--seq-len-schedule", "16:2", "--token-drop", "0.5", "--token-drop-importance", "random_ltd",
              "--token-drop-ramp-updates", "8", "--sctd-interval", "3"]
    straight = sbs.Lane("levers", _argv(data, *levers))
    for _ in range(4):
        straight.step()
    assert straight.epoch_itr.epoch == 2 and straight.trainer.train_length == 32
    first = sbs.Lane("levers", _argv(data, *levers))
    for _ in range(2):
        first.step()
    first.save(str(tmp_path / "at_switch.pt"))
    rest = sbs.Lane("levers", _argv(data, *levers))
    rest.load(str(tmp_path / "at_switch.pt"))
    for _ in range(2):
        rest.step()
    _assert_same(_params(rest), _params(straight))

    from fairseq import options
    from fairseq_cli import train
    args = options.parse_args_and_arch(options.get_training_parser(), _argv(
        data, *levers, "--max-update", "4", "--no-save", "--log-format", "none", "--disable-validation"))
    _assert_same([p.detach() for p in train.main(args).model.parameters()], _params(straight))
