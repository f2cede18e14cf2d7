"""Every flag of every parser is classified (fairseq/flag_audit.py) and every numeric flag has a domain
(fairseq/options.py DOMAINS); warn flags warn exactly once, error flags and out-of-domain values stop
the CLI with one line naming the flag (exit status != 0, no traceback)."""
import argparse
import logging
from pathlib import Path

import pytest

from fairseq import flag_audit, flag_rules, options, registry
from fairseq_cli import hydra_train, preprocess, train, validate

REPO = Path(__file__).resolve().parents[1]


# What a schedule needs besides fairseq's defaults to build (checked at parse time); --max-update 10 for all.
_SCHEDULE_NEEDS = {"triangular": ["--max-lr", "1"], "tri_stage": ["--decay-steps", "1"]}


def _train_config(task, crit, sched, optimizer):
    base = ["-a", "roberta_tiny", "--batch-size", "8", "--task", task, "--criterion", crit,
            "--optimizer", optimizer, "--lr-scheduler", sched, "--max-update", "10", *_SCHEDULE_NEEDS.get(sched, [])]
    parser = options.get_training_parser()
    options.add_choice_args(parser, argparse.Namespace(
        arch="roberta_tiny", task=task, criterion=crit, optimizer=optimizer, lr_scheduler=sched))
    return f"fairseq-train {task}/{crit}/{sched}/{optimizer}", parser, _with_data(parser, base)


def _train_configs():
    """(name, parser, base argv) for every task x criterion x schedule fairseq-train can combine (with adam),
    then every optimizer (with the first task, criterion and schedule)."""
    for task in registry.choices("task"):
        for crit in registry.choices("criterion"):
            for sched in registry.choices("lr-scheduler"):
                if sched != "pass_through":  # it needs an optimizer with its own schedule (none is built in)
                    yield _train_config(task, crit, sched, "adam")
    first = (registry.choices("task")[0], registry.choices("criterion")[0], registry.choices("lr-scheduler")[0])
    for optimizer in registry.choices("optimizer"):
        yield _train_config(*first, optimizer)
    for kind in ("bpe", "tokenizer"):  # each --bpe / --tokenizer choice adds its own flags
        for name in registry.choices(kind):
            parser = options.get_training_parser()
            names = argparse.Namespace(arch="roberta_tiny", task="masked_lm", criterion="masked_lm",
                                       optimizer="adam", lr_scheduler="fixed", bpe=None, tokenizer=None)
            setattr(names, kind, name)
            options.add_choice_args(parser, names)
            yield f"fairseq-train --{kind} {name}", parser, ["D", "-a", "roberta_tiny", "--batch-size", "8",
                                                             "--optimizer", "adam", f"--{kind}", name]


def _with_data(parser, base):
    """DATA in front when the task reads a data directory (fairseq's dummy_* tasks take none)."""
    return (["D"] if any(a.dest == "data" for a in parser._actions) else []) + base


def _model_configs():
    """One fairseq-train configuration per model family beside RoBERTa (its own flags)."""
    for arch, task in (("transformer_lm_gpt2_tiny", "language_modeling"),):
        base = ["D", "-a", arch, "--batch-size", "8", "--task", task, "--optimizer", "adam"]
        parser = options.get_training_parser()
        options.add_choice_args(parser, argparse.Namespace(
            arch=arch, task=task, criterion="cross_entropy", optimizer="adam", lr_scheduler="fixed"))
        yield f"fairseq-train {arch}/{task}", parser, base


def _validate_configs():
    for task in registry.choices("task"):
        parser = validate.get_validation_parser()
        registry.lookup("task", task).add_args(parser)
        yield f"fairseq-validate {task}", parser, _with_data(parser, ["--path", "/nonexistent.pt", "--task", task])


CONFIGS = (list(_train_configs()) + list(_model_configs()) + list(_validate_configs())
           + [("fairseq-preprocess", preprocess.get_parser(), ["--only-source", "--trainpref", "/nonexistent"]),
              ("fairseq-hydra-train", hydra_train.build_parser(), ["--config-dir", "x", "--config-name", "y"])])


def _actions(parser):
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def _first_config(dest):
    """The first configuration whose parser has `dest` (prog, parser, base argv, action)."""
    for prog, parser, base in CONFIGS:
        for a in _actions(parser):
            if a.dest == dest:
                return prog, parser, base, a
    raise AssertionError(f"{dest} is in a table but in no parser: remove it from the table")


def _is_numeric(action) -> bool:
    if action.nargs == 0:  # store_true / store_false
        return False
    return (action.type in (int, float) or action.dest in ("lr", "update_freq")
            or (isinstance(action.default, (int, float)) and not isinstance(action.default, bool)))


def _other_value(action):
    """argv for a value that differs from the parser's default (inside the flag's domain)."""
    if action.nargs == 0:
        return []
    if action.choices:
        return [next(c for c in action.choices if c != action.default)]
    if action.type in (int, float):
        return [str((action.default or 0) + 1)]
    return ["x"]


def _run_cli(prog, argv, capsys):
    """Run a CLI in-process; return (exit status, stderr text)."""
    main = {"fairseq-train": train.cli_main, "fairseq-validate": validate.cli_main,
            "fairseq-preprocess": preprocess.cli_main}[prog.split()[0]]
    with pytest.raises(SystemExit) as e:
        main(argv)
    code = e.value.code
    err = capsys.readouterr().err
    if isinstance(code, str):  # sys.exit("message") prints it at interpreter exit
        err, code = err + code, 1
    return code, err.strip()


@pytest.fixture(autouse=True)
def _fresh_warnings_and_logging():
    """Each test starts with no flag warned yet; CLI runs must not leave handlers on captured streams."""
    flag_audit._warned.clear()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    flag_audit._warned.clear()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_every_option_of_every_parser_is_classified():
    missing = []
    for prog, parser, _ in CONFIGS:
        for a in _actions(parser):
            if a.dest not in flag_audit.FLAGS:
                missing.append(f"{prog}: {flag_audit.flag_name(a)} (dest {a.dest!r})")
    assert not missing, ("unclassified flags; add each dest to _WORKS, _WARN or _ERROR in fairseq/flag_audit.py:\n"
                         + "\n".join(sorted(set(missing))))


def test_every_table_entry_is_a_real_flag():
    dests = {a.dest for _, parser, _ in CONFIGS for a in _actions(parser)}
    assert not set(flag_audit.FLAGS) - dests, "stale entries in fairseq/flag_audit.py FLAGS"
    assert not set(flag_rules.DOMAINS) - dests, "stale entries in fairseq/flag_rules.py DOMAINS"


def test_every_numeric_option_has_a_domain():
    missing = sorted({f'"{a.dest}": ">=0",  # {flag_audit.flag_name(a)}: or its real domain'
                      for _, parser, _ in CONFIGS for a in _actions(parser)
                      if _is_numeric(a) and a.dest not in flag_rules.DOMAINS})
    assert not missing, "numeric flags without a domain; add to DOMAINS in fairseq/options.py:\n" + "\n".join(missing)


def test_every_token_drop_flag_selector_and_the_seq_len_schedule_are_in_the_cli_docs():
    """docs/cli.md lists each token dropping / ScTD flag, each built-in token selector and --seq-len-schedule."""
    from fairseq.token_selectors import SELECTORS
    doc = (REPO / "docs" / "cli.md").read_text()
    built_in = [n for n, cls in SELECTORS.classes.items() if cls.__module__ == "fairseq.token_selectors"]
    names = {"--seq-len-schedule"} | {f"`{n}`" for n in built_in}  # not a plugin's a test may have imported
    for _, parser, _ in CONFIGS:
        for group in parser._action_groups:
            if group.title == "token dropping / ScTD":
                names |= {flag_audit.flag_name(a) for a in group._group_actions}
    assert "--token-drop-ramp-updates" in names
    missing = sorted(n for n in names if n not in doc)
    assert not missing, f"not in docs/cli.md: {missing}"


WARN = sorted(d for d, s in flag_audit.FLAGS.items() if s.startswith("warn"))
ERROR = sorted(d for d, s in flag_audit.FLAGS.items() if s.startswith("error"))


@pytest.mark.parametrize("dest", WARN)
def test_warn_flag_warns_exactly_once(dest, caplog, capsys):
    prog, parser, base, action = _first_config(dest)
    argv = base + [flag_audit.flag_name(action)] + _other_value(action)
    caplog.set_level(logging.WARNING, logger="fairseq.flags")
    for _ in range(2):  # a second parse in the same process (e.g. fairseq-hydra-train) stays quiet
        if prog.startswith("fairseq-train"):
            options.parse_args_and_arch(options.get_training_parser(), argv)
        else:
            _run_cli(prog, argv, capsys)  # fails later (no such file): the flags are checked first
    named = [r.getMessage() for r in caplog.records if r.name == "fairseq.flags"]
    assert len(named) == 1 and named[0].startswith(flag_audit.flag_name(action) + " has no effect here: "), named


@pytest.mark.parametrize("dest", ERROR)
def test_error_flag_stops_with_one_line(dest, capsys):
    prog, parser, base, action = _first_config(dest)
    name = flag_audit.flag_name(action)
    code, err = _run_cli(prog, base + [name] + _other_value(action), capsys)
    assert code != 0 and "Traceback" not in err
    assert len(err.splitlines()) == 1 and name in err, err


def test_fairseq_defaults_never_warn(caplog):
    """A script ported from fairseq may spell out fairseq's defaults of flags that do nothing here."""
    caplog.set_level(logging.WARNING, logger="fairseq.flags")
    argv = ["D", "-a", "roberta_tiny", "--optimizer", "adam", "--batch-size", "8", "--data-buffer-size", "10", "--scoring", "bleu",
            "--all-gather-list-size", "16384", "--amp-batch-retries", "2", "--model-parallel-size", "1",
            "--num-shards", "1", "--shard-id", "0", "--heartbeat-timeout", "-1", "--optimizer-overrides", "{}",
            "--checkpoint-shard-count", "1", "--mask-stdev", "0", "--mask-multiple-length", "1"]
    options.parse_args_and_arch(options.get_training_parser(), argv)
    assert not [r for r in caplog.records if r.name == "fairseq.flags"]


def test_recipes_resolve_without_flag_warnings(caplog):
    caplog.set_level(logging.WARNING, logger="fairseq.flags")
    for yaml in sorted((REPO / "examples/sctd/config").glob("*.yaml")):
        hydra_train.resolve_config(yaml.parent, yaml.stem, ["task.data=D"])
    assert not [r for r in caplog.records if r.name == "fairseq.flags"]


_OUTSIDE = {">0": "0", ">=0": "-1", ">=1": "0", ">=-1": "-2", "(0,1)": "0", "[0,1)": "1", "[0,1]": "1.5", "<=0": "1"}
NUMERIC = sorted(d for d, dom in flag_rules.DOMAINS.items() if dom != "any")


@pytest.mark.parametrize("dest", NUMERIC)
def test_value_outside_its_domain_stops_with_one_line(dest, capsys):
    prog, parser, base, action = _first_config(dest)
    name = flag_audit.flag_name(action)
    code, err = _run_cli(prog, base + [name, _OUTSIDE[flag_rules.DOMAINS[dest]]], capsys)
    assert code != 0 and "Traceback" not in err
    assert len(err.splitlines()) == 1 and name in err, err


def test_nan_is_outside_every_domain():
    with pytest.raises(ValueError, match=r"--stop-min-lr nan"):
        options.parse_args_and_arch(options.get_training_parser(),
                                    ["D", "-a", "roberta_tiny", "--batch-size", "8", "--stop-min-lr", "nan",
                                     "--optimizer", "adam"])


def test_every_optimizer_and_schedule_flag_is_in_the_cli_docs():
    """docs/cli.md lists each optimizer's and schedule's flags (and the budget levers) by name."""
    doc = (REPO / "docs" / "cli.md").read_text()
    names = {"--lr-schedule-clock", "--lr-schedule-ticks", "--update-freq-ramp-updates"}
    for _, parser, _ in CONFIGS:
        for group in parser._action_groups:
            if group.title in ("optimizer", "lr_scheduler"):
                names |= {flag_audit.flag_name(a) for a in group._group_actions}
    names |= {f"`{n}`" for n in registry.choices("optimizer") + registry.choices("lr-scheduler")}
    missing = sorted(n for n in names if n not in doc)
    assert not missing, f"not in docs/cli.md: {missing}"
