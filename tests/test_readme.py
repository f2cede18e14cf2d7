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
    test_cmds = [c for c in _commands(readme) if "pytest" in c]
    assert test_cmds, "README has no test command"
    assert test_cmds[0] in ci.splitlines(), f"README test command {test_cmds[0]!r} is not a line of .ci/run"


def test_readme_quickstart_command_is_first_and_uses_a_real_script():
    readme = (REPO / "README.md").read_text()
    first = _commands(readme)[0]
    assert "fairseq-sctd-quickstart" in first
    assert re.search(r"torch==\d", first)


def test_ci_runs_the_readme_first_command_in_a_fresh_venv():
    """.ci/run makes a venv and runs the README's first command in it verbatim (only flags appended)."""
    first = _commands((REPO / "README.md").read_text())[0]
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    runs = [line for line in lines if line == first or line.startswith(first + " --")]
    assert runs, f"README's first command {first!r} is not a line of .ci/run"
    before = lines[:lines.index(runs[0])]
    assert any(line.startswith("python -m venv ") for line in before), "no fresh venv before the first command"
    assert any("/bin/activate" in line for line in before), "the fresh venv is not activated"
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
