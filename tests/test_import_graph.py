"""The house rules of the import graph (tests/import_graph.py prints the figures; docs/ARCHITECTURE.md
draws the layers): one deliberate cycle, the library never imports the command line, short modules."""
import shutil
import subprocess
import sys

from import_graph import ALLOWED_BACK_EDGES, MAX_LINES, REPO, report


def test_the_only_cycle_is_from_pretrained_and_nothing_else_runs_back_up():
    r = report()
    assert set(r["back_edges"]) <= ALLOWED_BACK_EDGES, f"imports running back up a layer: {r['back_edges']}"
    assert len(r["back_edges"]) <= 2
    for cycle in r["cycles"]:  # every cycle is closed by a deliberate edge
        assert any(a in cycle and b in cycle for a, b in ALLOWED_BACK_EDGES), f"import cycle: {cycle}"


def test_the_library_does_not_import_the_command_line():
    assert report()["upward_into_cli"] == []


def test_no_module_is_longer_than_the_limit():
    assert report()["long_modules"] == [], f"modules over {MAX_LINES} lines"


def test_the_script_prints_the_figures():
    out = subprocess.run([sys.executable, str(REPO / "tests" / "import_graph.py")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 import(s) running back up a layer, 1 cycle(s), 0 import(s) of fairseq_cli from fairseq/" in out.stdout
    assert "back up: fairseq.models.roberta.model -> fairseq.hub_utils (allowed" in out.stdout


def test_a_new_cycle_or_cli_import_fails_the_script(tmp_path):
    """A copy of the tree with a cycle (utils <-> trainer) and an import of the command line added: the
    script exits 1 naming both."""
    for package in ("fairseq", "fairseq_cli"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"))
    utils = tmp_path / "fairseq" / "utils.py"
    utils.write_text(utils.read_text() + "\nfrom fairseq import trainer  # noqa\nimport fairseq_cli.train  # noqa\n")
    out = subprocess.run([sys.executable, str(REPO / "tests" / "import_graph.py"), "--repo", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 1, out.stdout
    assert "library imports the command line: fairseq.utils -> fairseq_cli.train" in out.stdout
    assert "-> fairseq.utils\n" in out.stdout or "-> fairseq.trainer\n" in out.stdout, out.stdout
