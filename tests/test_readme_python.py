"""The Python API page's ```python blocks (docs/python-api.md, linked from the README): the plugin part's blocks
are the plugin files that tests/test_plugins.py trains. The hub and data parts run as printed on the README
tour's outputs (tests/test_readme_tour.py, which takes the parts from doc_parts here)."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON_API_DOC = REPO / "docs" / "python-api.md"


def python_blocks(text):
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.M | re.S)


PLUGIN_HEADING = "## Using fairseq's Python API and plugins"
DATA_HEADING = "## Data API"
PLUGIN_DIR = REPO / "examples" / "plugin" / "mlm_plugin"


def doc_parts():
    text = PYTHON_API_DOC.read_text(encoding="utf-8")
    hub, rest = text.split(PLUGIN_HEADING)
    plugin, data = rest.split(DATA_HEADING)
    return python_blocks(hub), python_blocks(plugin), python_blocks(data)


def test_plugin_blocks_are_the_plugin_files():
    """Each plugin block is the body of a file of the plugin that tests/test_plugins.py trains (imports
    elided on the page), or the from_pretrained(..., user_dir=...) call that test runs."""
    _, plugin_blocks, _ = doc_parts()
    sources = {f.name: f.read_text(encoding="utf-8") for f in PLUGIN_DIR.glob("*.py")}
    assert len(plugin_blocks) >= 4
    for block in plugin_blocks:
        if "from_pretrained" in block:
            assert "user_dir=" in block
            continue
        assert any(block.strip() in src for src in sources.values()), f"not in {PLUGIN_DIR}: {block[:200]}"
