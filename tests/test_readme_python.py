"""The Python API page's ```python blocks (docs/python-api.md, linked from the README): the hub and data parts
run exactly as printed against files a tiny training run makes here; the plugin part's blocks are the plugin
files that tests/test_plugins.py trains."""
import os
import re
from pathlib import Path

import torch

from fairseq import options
from fairseq_cli import export_hf, import_hf, train

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


def test_readme_python_blocks_run_as_printed(peer_dir, tmp_path, monkeypatch, capsys):
    hub_blocks, _, data_blocks = doc_parts()
    blocks = hub_blocks + data_blocks
    assert len(hub_blocks) >= 2 and "from_pretrained" in blocks[0] and len(data_blocks) >= 3
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data-bin").mkdir()
    for f in list((peer_dir / "data-bin").iterdir()) + [peer_dir / "tokenizer.json"]:
        os.symlink(f, tmp_path / "data-bin" / f.name)
    # the data part counts a BPE-encoded file, as fairseq-bpe encode writes it
    (tmp_path / "train.bpe").write_text("31373 995\n995 31373 13\n\n31373\n", encoding="utf-8")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train.main(options.parse_args_and_arch(options.get_training_parser(), (
            "data-bin --arch roberta_base --encoder-layers 2 --encoder-embed-dim 32 --encoder-ffn-embed-dim 64 "
            "--encoder-attention-heads 2 --tokens-per-sample 64 --max-positions 64 --batch-size 8 --max-update 3 "
            "--lr 1e-3 --optimizer adam --task masked_lm --criterion masked_lm --cpu --log-format none --save-dir checkpoints "
            "--no-epoch-checkpoints --max-valid-steps 2").split()))
        assert (tmp_path / "checkpoints" / "checkpoint_best.pt").is_file()
        export_hf.cli_main(["checkpoints/checkpoint_best.pt", "roberta-hf", "--dict", "data-bin/dict.txt",
                            "--tokenizer-json", "data-bin/tokenizer.json"])
        import_hf.cli_main(["roberta-hf", "roberta-fairseq"])  # the command the page's second block names
        scope = {}
        for i, block in enumerate(blocks):
            exec(compile(block, f"docs/python-api.md python block {i + 1}", "exec"), scope)
    finally:
        torch.set_num_threads(n)
    printed = capsys.readouterr().out
    assert printed.count("<mask>") == 0 and "The capital of France is" in printed
