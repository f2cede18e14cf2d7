"""Non-TTY progress: a line after the process's first update, then one per --log-interval with an ETA to
--max-update; the train_inner json records stay fairseq's."""
import json
import shlex

import pytest

from fairseq import options
from fairseq.logging.eta import UpdateEta
from fairseq_cli import train

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def test_eta_lines_on_a_fake_clock():
    now = [100.0]
    eta = UpdateEta(max_update=10, start_updates=0, clock=lambda: now[0])
    assert eta.due(1, log_interval=5)
    now[0] += 6.0
    assert eta.line(1) == ("progress: first update done (update 1) in 6.0 s (warm-up included); "
                           "9 of --max-update 10 left, ETA on the next line")  # the warm-up is not a rate
    assert not eta.due(2, log_interval=5) and eta.due(5, log_interval=5)
    now[0] += 2.0
    assert eta.line(5) == ("progress: update 5, 0.50 s/update over the last 4; "
                           "5 of --max-update 10 left, ETA 0:00:02 at that rate")
    resumed = UpdateEta(max_update=0, start_updates=7, clock=lambda: now[0])  # no --max-update: no ETA
    now[0] += 3.0
    assert resumed.line(8) == "progress: first update done (update 8) in 3.0 s (warm-up included)"


@pytest.mark.parametrize("fmt", ["json", "simple"])
def test_train_logs_first_update_and_eta(peer_dir, tmp_path, caplog, fmt):
    caplog.set_level("INFO")
    tiny = ("--encoder-layers 2 --encoder-embed-dim 16 --encoder-ffn-embed-dim 32 --encoder-attention-heads 2 "
            "--tokens-per-sample 32 --max-positions 32 --sample-break-mode complete --batch-size 4")
    train.main(options.parse_args_and_arch(options.get_training_parser(), shlex.split(
        f"{peer_dir / 'data-bin'} -a roberta_base {tiny} --optimizer adam --lr 1e-3 --max-update 6 --log-interval 3 "
        f"--disable-validation --no-save --save-dir {tmp_path} --log-format {fmt}")))
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress:")]
    assert [m.split(";")[0].split(" in ")[0] for m in progress] == [
        "progress: first update done (update 1)", "progress: update 3, " + progress[1].split(", ")[1].split(";")[0],
        "progress: update 6, " + progress[2].split(", ")[1].split(";")[0]]
    assert "over the last 2" in progress[1] and "over the last 3" in progress[2]
    assert progress[0].endswith("5 of --max-update 6 left, ETA on the next line")
    assert "3 of --max-update 6 left, ETA " in progress[1] and "0 of --max-update 6 left, ETA 0:00:00" in progress[2]
    assert all(r.name == "fairseq_cli.train" for r in caplog.records if r.getMessage().startswith("progress:"))
    inner = [r.getMessage() for r in caplog.records if r.name == "train_inner"]
    assert len(inner) == 2  # fairseq's records at updates 3 and 6, unchanged
    if fmt == "json":
        assert [json.loads(m)["num_updates"] for m in inner] == ["3", "6"]  # fairseq writes strings
