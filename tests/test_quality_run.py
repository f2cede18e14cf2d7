"""benchmarks/quality_run.py: a study interrupted and rerun ends where an uninterrupted one does."""
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import load_benchmark

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models, busy cores

REPO = Path(__file__).resolve().parents[1]


def _module():
    return load_benchmark("quality_run")


def _variants():
    return load_benchmark("quality_variants")


def _results():
    return load_benchmark("quality_results")


def _flags(work, *extra):
    return ["--work-dir", str(work), "--results", str(work / "results" / "quality"), "--books", "2",
            "--valid-books", "1", "--vocab-size", "800", "--layers", "4", "--dim", "32", "--tokens-per-sample", "64",
            "--updates", "6", "--evals", "2", "--valid-batches", "2", "--variants", "full,drop", "--seeds", "3",
            "--ablations", "", "--threads", "1", *extra]


def _model(work, run):
    return torch.load(work / "runs" / run / "checkpoint_last.pt", weights_only=True)["model"]


@pytest.mark.slow
@pytest.mark.e2e_scripts
def test_resumed_study_equals_uninterrupted_and_skips_finished_runs(shared_dir, tmp_path, capsys):
    q = _module()
    straight, split = tmp_path / "straight", tmp_path / "split"
    q.main(_flags(straight, "--corpus", str(shared_dir / "data" / "gutenberg_rcdm" / "books")))
    split.mkdir()
    shutil.copytree(straight / "data-bin", split / "data-bin")  # same data, prepared once

    first = q.main(_flags(split, "--session-updates", "3"))
    assert [(r["name"], r["updates"], r["finished"]) for r in first] == [("full-s3", 3, False), ("drop-s3", 3, False)]
    assert "unfinished (rerun to continue): full-s3, drop-s3" in capsys.readouterr().out
    second = q.main(_flags(split))
    assert [(r["name"], r["updates"], r["target_updates"]) for r in second] == [("full-s3", 6, 6), ("drop-s3", 8, 8)]
    for run in ("full-s3", "drop-s3"):  # bit-identical to the run that was never interrupted
        a, b = _model(straight, run), _model(split, run)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    by_name = {r["name"]: r for r in second}
    assert [len(s) for s in (by_name["drop-s3"]["sessions"],)] == [2]
    assert [p["updates"] for p in by_name["drop-s3"]["points"]] == [0, 4, 8]
    assert "valid_loss_drop" in by_name["drop-s3"]["points"][-1]
    straight_points = json.loads((straight / "runs" / "drop-s3" / "record.json").read_text())["points"]
    assert [p["valid_loss"] for p in by_name["drop-s3"]["points"]] == [p["valid_loss"] for p in straight_points]

    results = json.loads((split / "results" / "quality.json").read_text())
    assert set(results["summary"]) == {"full", "drop"} and results["summary"]["full"]["seeds"] == 1
    assert results["summary"]["full"]["time_to_full_loss_ratio"] == pytest.approx(1.0)
    assert "| drop-s3 | 8/8 |" in (split / "results" / "quality.md").read_text()
    assert (split / "results" / "quality.png").read_bytes()[:4] == b"\x89PNG"

    capsys.readouterr()
    q.main(_flags(split))
    assert capsys.readouterr().out.count("finished earlier") == 2
    q.main(_flags(split, "--variants", "full"))  # fewer variants: drop-s3 stays in the results file as it was
    kept = json.loads((split / "results" / "quality.json").read_text())["runs"]
    assert [r["name"] for r in kept] == ["full-s3", "drop-s3"] and kept[1] == by_name["drop-s3"]
    assert "| drop-s3 | 8/8 |" in (split / "results" / "quality.md").read_text()
    capsys.readouterr()

    shutil.rmtree(split / "runs")  # a new machine: no checkpoints, only the committed results file
    again = q.main(_flags(split))
    assert capsys.readouterr().out.count("finished earlier") == 2
    assert [r["points"] for r in again] == [r["points"] for r in second]
    changed = q.parse_args(_flags(split, "--lr", "0.002"))  # another configuration does not count as done
    assert _results().committed_records(changed, _results().results_file_runs(changed)) == {}

    # --retrain: train a committed run again (for its checkpoint), with the same losses
    shutil.rmtree(split / "runs", ignore_errors=True)
    retrained = q.main(_flags(split, "--retrain", "drop-s3"))
    out = capsys.readouterr().out
    assert "full-s3: finished earlier" in out and "drop-s3: new" in out
    assert "drop-s3 retrained: valid losses differ from the committed run's by at most 0.00e+00" in out
    assert (split / "runs" / "drop-s3" / "checkpoint_last.pt").is_file()
    assert [r["points"] == s["points"] for r, s in zip(retrained, second)] == [True, False]  # clock differs
    assert [[p["valid_loss"] for p in r["points"]] for r in retrained] == \
        [[p["valid_loss"] for p in r["points"]] for r in second]
    with pytest.raises(SystemExit):
        q.parse_args(_flags(split, "--retrain", "drop-s9"))
    assert "--retrain drop-s9: not a run of this study" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.e2e_scripts
def test_levers_train_side_by_side_and_a_time_clock_run_stops_at_its_budget(shared_dir, tmp_path, capsys):
    """The levers train as lanes of one process from the same weights, validated on the same batches; a
    timeclock run trains until its own training time reaches the budget (calibrated once, kept in the work
    dir), its lr on that clock, across sessions."""
    q = _module()
    work = tmp_path / "study"
    flags = _flags(work, "--corpus", str(shared_dir / "data" / "gutenberg_rcdm" / "books"), "--variants",
                   "full,seqlen+ramp+drop-phases,timeclock,random-ltd", "--updates", "8")
    first = q.main(flags + ["--session-updates", "3"])
    budget = json.loads((work / "time-budget.json").read_text())["budget_s"]
    assert budget == pytest.approx(8 * json.loads((work / "time-budget.json").read_text())["median_update_s"])
    assert "time budget of the timeclock runs" in capsys.readouterr().out
    assert [r["updates"] for r in first] == [3, 3, 3, 3] and not any(r["finished"] for r in first)
    runs = {r["name"]: r for r in q.main(flags)}
    assert "time budget of the timeclock runs" not in capsys.readouterr().out  # the same budget, read back
    assert len({r["points"][0]["valid_loss"] for r in runs.values()}) == 1  # same weights, same valid batches
    timed = runs["timeclock-s3"]
    assert timed["finished"] and timed["budget_s"] == budget and len(timed["sessions"]) == 2
    ckpt = torch.load(work / "runs" / "timeclock-s3" / "checkpoint_last.pt", weights_only=False)
    trained = ckpt["extra_state"]["previous_training_time"]
    assert trained >= budget and trained - budget < max(ckpt["extra_state"]["side_by_side"]["step_seconds"])
    assert timed["points"][-1]["seconds"] >= budget
    assert ckpt["last_optimizer_state"]["param_groups"][0]["lr"] == 0.0  # the decay ended with the budget
    assert "--lr-schedule-clock" in timed["train_argv"] and f"{budget / 3600!r}" in timed["train_argv"]
    combo = runs["seqlen+ramp+drop-phases-s3"]
    assert combo["updates"] == combo["target_updates"] > 8 and "valid_loss_drop" in combo["points"][-1]
    assert "| timeclock-s3 |" in (work / "results" / "quality.md").read_text()
    alone = tmp_path / "alone"  # no baseline to time and no budget: one line, before any training
    alone.mkdir()
    shutil.copytree(work / "data-bin", alone / "data-bin")
    with pytest.raises(SystemExit, match="the timeclock runs need the full run in the same command"):
        q.main(_flags(alone, "--variants", "timeclock"))


def test_crossing_time_interpolates():
    q = _results()
    points = [{"seconds": 0, "valid_loss": 10.0}, {"seconds": 10, "valid_loss": 8.0}, {"seconds": 20, "valid_loss": 7.0}]
    assert q.crossing_time(points, 9.0) == pytest.approx(5.0)
    assert q.crossing_time(points, 7.0) == pytest.approx(20.0)
    assert q.crossing_time(points, 6.9) is None


def test_missing_flags_and_bad_values_are_one_line(capsys):
    q = _module()
    for argv, needle in ((["--variants", "full,nope"], "unknown variant 'nope'"),
                         (["--full-phases", "0.6,0.5"], "--full-phases"),
                         (["--updates", "0"], "--updates 0")):
        with pytest.raises(SystemExit):
            q.parse_args(argv)
        assert needle in capsys.readouterr().err


def test_every_variant_exists_and_gets_the_full_runs_ideal_flops():
    """All levers' flags exist in fairseq-train; each run's update count costs the baseline's ideal FLOPs; for
    Hou's and ScTD's schedules the cost model is flops.schedule_ideal_ratio (the trainer's log line)."""
    from fairseq import flops
    q, qv = _module(), _variants()
    a = q.parse_args(["--variants", ",".join(list(qv.LEVERS) + ["screen"]), "--updates", "200"])
    assert set(a.variants) >= set(qv.LEVERS) | set(qv.NAMED_LISTS["screen"])
    for v in a.variants:
        n = qv.run_updates(a, v)
        ratio = qv.ideal_ratio(a, v, n)
        assert abs(n * ratio - 200) <= 1.0, v  # within one update's cost of equal compute
        argv = qv.train_argv(a, Path("data"), v, 1, n, 0.5)
        if v in ("drop", "drop-phases", "sctd", "sctd-phases", "random", "sctd-mean"):
            phased = v.endswith("-phases")
            warm = int(argv[argv.index("--token-drop-warmup-updates") + 1]) if phased else 0
            final = int(argv[argv.index("--token-drop-final-full-updates") + 1]) if phased else 0
            assert (warm, final) == ((round(0.1 * n),) * 2 if phased else (0, 0))
            fi = int(argv[argv.index("--sctd-interval") + 1])
            assert ratio == pytest.approx(flops.schedule_ideal_ratio(12, 128, 256, 1024, 0.5, fi, n, warm, final),
                                          rel=1e-12)
    assert qv.run_updates(a, "full") == 200


def test_update_costs_follow_the_schedules():
    """The ideal cost of each update as the trainer runs it: block length (--seq-len-schedule), batches per
    update (the ramp), random-LTD's growing kept count; relative to a baseline update."""
    from fairseq.flops import encoder_layer_macs, layerwise_drop_step_ratio
    q, qv = _module(), _variants()
    a = q.parse_args(["--variants", "full", "--updates", "100"])

    def c(T):
        return encoder_layer_macs(T, T, 256, 1024)

    # T/4, T/2, 3T/4 for 10 updates each, then T: shorter blocks, same 16 sequences
    assert qv.ideal_ratio(a, "seqlen", 100) == pytest.approx(
        (10 * (c(32) + c(64) + c(96)) + 70 * c(128)) / (100 * c(128)))
    # 1, 2, 3 batches of 4 sequences for 10 updates each, then 4: the baseline's 16
    assert qv.ideal_ratio(a, "ramp", 100) == pytest.approx((10 * (1 + 2 + 3) + 70 * 4) / (4 * 100))
    # random-LTD over 4 updates: K = 64, 80, 96, 112 of 128 in layers 1..10
    assert qv.ideal_ratio(a, "random-ltd", 4) == pytest.approx(
        sum(layerwise_drop_step_ratio(12, 128, 256, 1024, k, 1, 10) for k in (64, 80, 96, 112)) / 4)
    assert qv.ideal_ratio(a, "timeclock", 100) == 1.0 and qv.ideal_ratio(a, "lamb+cosine", 100) == 1.0


def test_levers_combine_by_slot_and_conflicts_are_one_line(capsys):
    q, qv = _module(), _variants()
    a = q.parse_args(["--variants", "full", "--lr", "0.001"])
    argv = qv.train_argv(a, Path("data"), "lamb+cosine+ramp+timeclock+random-ltd", 1, 100, 0.25)

    def value(flag):
        assert argv.count(flag) == 1, flag
        return argv[argv.index(flag) + 1]

    assert (value("--optimizer"), value("--lr"), value("--lr-scheduler"), value("--max-update")) == \
        ("lamb", "0.01", "cosine", "100")
    assert (value("--batch-size"), value("--batch-size-valid"), value("--update-freq")) == ("4", "16", "4")
    assert (value("--lr-schedule-clock"), value("--stop-time-hours"), value("--lr-schedule-ticks")) == \
        ("time", "0.25", "100")
    assert (value("--token-drop-importance"), value("--token-drop-ramp-updates")) == ("random_ltd", "100")
    assert "--adam-betas" not in argv and "--total-num-update" not in argv
    assert qv.clock("seqlen+timeclock") == "time" and qv.clock("seqlen") == "updates"
    assert qv.drops("ramp+sctd-phases") and not qv.drops("ramp")
    for variant, needle in (("cosine+tri-stage", "two levers replace the schedule"),
                            ("drop+random-ltd", "two levers replace the drop"),
                            ("ramp+ramp", "a lever named twice"), ("cosine+nope", "unknown variant 'cosine+nope'")):
        with pytest.raises(SystemExit):
            q.parse_args(["--variants", variant])
        assert needle in capsys.readouterr().err, variant
    assert qv.expand(["full", "screen-full", "cosine"]) == qv.SCREEN_FULL


def test_full_phases_set_the_phased_variants_phases():
    """--full-phases W,F: the *-phases variants run the full model for the first W and last F of their updates."""
    q, qv = _module(), _variants()
    for phases, expected in (("0.1,0.1", ("10", "10")), ("0.2,0.05", ("20", "5")), ("0,0.3", ("0", "30"))):
        a = q.parse_args(["--variants", "full", "--full-phases", phases])
        for variant in ("drop-phases", "seqlen+sctd-phases"):
            argv = qv.train_argv(a, Path("data"), variant, 1, 100)
            assert (argv[argv.index("--token-drop-warmup-updates") + 1],
                    argv[argv.index("--token-drop-final-full-updates") + 1]) == expected, (phases, variant)


def test_ablations_take_the_first_seed_and_unknown_ones_are_refused(capsys):
    q = _module()
    a = q.parse_args(["--seeds", "4,5"])
    assert a.variants == ["full", "drop-phases", "sctd-phases"] and a.ablations == ["drop", "sctd", "random"]
    assert q.parse_args(["--ablations", ""]).ablations == []
    assert q.parse_args(["--variants", "full,drop", "--ablations", "drop,random"]).ablations == ["random"]
    with pytest.raises(SystemExit):
        q.parse_args(["--ablations", "nope"])
    assert "unknown variant 'nope'" in capsys.readouterr().err


def _record(variant, seconds, losses, sessions):
    return {"name": f"{variant}-s1", "variant": variant, "seed": 1, "finished": True, "step_seconds_total": seconds,
            "ideal_step_ratio": 1.0, "sessions": sessions, "updates": 9,
            "points": [{"seconds": seconds * i / (len(losses) - 1), "valid_loss": v} for i, v in enumerate(losses)]}


def test_time_ratios_pair_only_runs_of_the_same_session():
    """A run trained in another session (another machine speed) gets no time ratio against this full run."""
    q = _results()
    here = [{"started": "2026-12-04 01:36:08", "process": "2026-12-04 01:36:00 pid 7"}]
    there = [{"started": "2026-12-04 01:36:08", "process": "2026-12-05 09:00:00 pid 9"}]
    full = _record("full", 100.0, [10.0, 9.0], here)
    assert q.summarize([full, _record("drop", 90.0, [10.0, 8.0], here)])["drop"]["time_to_full_loss_ratio"] \
        == pytest.approx(0.45)  # reaches 9.0 halfway through its 90 s
    assert "time_to_full_loss_ratio" not in q.summarize([full, _record("drop", 90.0, [10.0, 8.0], there)])["drop"]
    # records from before the "process" key: runs of one session started within minutes of each other
    legacy = [{"started": "2026-12-02 06:38:33"}]
    assert q.same_sessions(_record("drop", 1, [1, 1], [{"started": "2026-12-02 06:44:28"}]),
                           _record("full", 1, [1, 1], legacy))
    assert not q.same_sessions(_record("drop", 1, [1, 1], [{"started": "2026-12-02 18:48:17"}]),
                               _record("full", 1, [1, 1], legacy))


def test_merge_counts_a_retrained_run_once_and_pairs_each_run_with_its_own_session(tmp_path, capsys):
    """--merge: seeds and variants trained in different sessions become one table; a full run retrained in
    a second session (to pair a new run with it) is one seed in the medians, not two."""
    q = _module()
    one = [{"started": "2026-12-04 01:36:08", "process": "2026-12-04 01:36:00 pid 7", "from_update": 0, "to_update": 9}]
    two = [{"started": "2026-12-04 16:07:44", "process": "2026-12-04 16:07:40 pid 9", "from_update": 0, "to_update": 9}]
    shape = {k: 1 for k in _results().SHAPE}

    def run(*args):
        return dict(_record(*args), target_updates=9, median_step_s=1.0)

    first = [run("full", 100.0, [10.0, 9.0], one), run("drop-phases", 100.0, [10.0, 8.0], one)]
    second = [run("full", 80.0, [10.0, 9.0], two), run("sctd-phases", 80.0, [10.0, 8.5, 8.8], two)]
    for name, runs in (("a", first), ("b", second)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"config": shape, "runs": runs}))
    q.main(["--merge", str(tmp_path / "a"), str(tmp_path / "b"), "--results", str(tmp_path / "all")])
    summary = json.loads((tmp_path / "all.json").read_text())["summary"]
    assert summary["full"]["seeds"] == 1 and summary["full"]["step_seconds"] == 100.0
    assert summary["drop-phases"]["time_to_full_loss_ratio"] == pytest.approx(0.5)   # 9.0 at 50 of its 100 s
    # 9.0 at 26.7 s (between 10.0 at 0 s and 8.5 at 40 s) over its own session's full run, 80 s (not 100 s)
    assert summary["sctd-phases"]["time_to_full_loss_ratio"] == pytest.approx(1 / 3)
    assert (tmp_path / "all.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "c.json").write_text(json.dumps({"config": dict(shape, dim=2), "runs": []}))
    with pytest.raises(SystemExit, match=r"--merge .*c: another study shape than .*a \(dim 1 vs 2\)"):
        q.main(["--merge", str(tmp_path / "a"), str(tmp_path / "c"), "--results", str(tmp_path / "x")])
