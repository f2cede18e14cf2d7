"""The README is part of the product: its test command is what CI runs, and the tools it and docs/ name are real."""
import re
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _commands(text):
    """Command lines of the README in order: fenced ```bash blocks and indented code lines."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif (fenced or line.startswith("    ")) and line.strip():
            out.append(line.strip())
    return out


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    blocks = re.findall(r"^```bash\n(.*?)^```$", readme, flags=re.M | re.S)
    test_block = next((b for b in blocks if "pytest" in b), None)
    assert test_block, "README has no test command"
    lines = test_block.strip().splitlines()
    assert "-e \".[test]\"" in lines[0] and "pytest" in lines[-1], lines  # install, then the suite
    ci_lines = ci.splitlines()
    assert all(line in ci_lines for line in lines), f"README test command {lines!r} is not in .ci/run"
    assert ci_lines.index(lines[0]) < ci_lines.index(lines[-1])


VENV = re.compile(r"python3 -m venv (\S+) && \. \1/bin/activate")


def test_readme_makes_a_venv_then_runs_the_quickstart():
    """A fresh machine: a venv first (many systems refuse a system-wide pip install), then the quickstart."""
    readme = (REPO / "README.md").read_text()
    venv, first = _commands(readme)[:2]
    assert VENV.fullmatch(venv), venv
    assert "fairseq-sctd-quickstart" in first
    assert re.search(r"torch==\d", first)


def test_ci_runs_the_readme_first_command_in_a_fresh_venv():
    """.ci/run makes a venv as the README does and runs the README's quickstart command in it verbatim (only flags
    appended)."""
    first = _commands((REPO / "README.md").read_text())[1]
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    runs = [line for line in lines if line == first or line.startswith(first + " --")]
    assert runs, f"README's first command {first!r} is not a line of .ci/run"
    before = lines[:lines.index(runs[0])]
    made = [(line, m) for line in before for m in [VENV.search(line)] if m]
    assert made and made[-1][1].group(1).startswith("$fresh/"), "no fresh venv, made as the README makes it, before"
    # The venv may be filled ahead (beside the suite), but only with the README's torch and the dependencies that
    # pyproject.toml declares, which the README's `pip install -e .` would install anyway.
    ci = (REPO / ".ci" / "run").read_text()
    ahead = ci[ci.index(made[-1][0]):ci.index("prefill=$!")]
    installs = re.findall(r"pip install -q (?:--no-compile )?(\S+)", ahead)
    assert installs in ([], ["torch==2.13.0", "\\"]), installs
    assert ahead.count("pip install") == len(installs) and "-e ." not in ahead, ahead
    if installs:
        assert "['project']['dependencies']" in ahead and re.search(r"pip install (-q )?torch==2\.13\.0", first)
    assert not any(line.startswith("pip install") for line in before), "CI installs more than the README says"
    assert "--budget-minutes" in runs[0]


def test_every_console_script_in_readme_is_declared():
    """The README and the docs/ pages it links to name only tools that `pip install -e .` installs."""
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    text = "\n".join(p.read_text(encoding="utf-8") for p in docs)
    pyproject = (REPO / "pyproject.toml").read_text()
    used = set(re.findall(r"`(fairseq-[a-z-]+)", text))
    used |= {m.group(1) for c in _commands(text) for m in [re.match(r"(fairseq-[a-z-]+)(\s|$)", c)] if m}
    declared = set(re.findall(r"^(fairseq-[a-z-]+) = ", pyproject, flags=re.M))
    assert used and used <= declared, f"README names undeclared tools: {sorted(used - declared)}"
    for name in declared:
        assert shutil.which(name), f"console script {name} is not installed (pip install -e .)"
