"""The README's ```python blocks run exactly as printed, against files a tiny training run makes here."""
import os
import re
from pathlib import Path

import torch

from fairseq import options
from fairseq_cli import export_hf, import_hf, train

REPO = Path(__file__).resolve().parents[1]


def python_blocks(text):
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.M | re.S)


def test_readme_python_blocks_run_as_printed(peer_dir, tmp_path, monkeypatch, capsys):
    blocks = python_blocks((REPO / "README.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 2 and "from_pretrained" in blocks[0]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data-bin").mkdir()
    for f in list((peer_dir / "data-bin").iterdir()) + [peer_dir / "tokenizer.json"]:
        os.symlink(f, tmp_path / "data-bin" / f.name)
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
        import_hf.cli_main(["roberta-hf", "roberta-fairseq"])  # the command the README's second block names
        scope = {}
        for i, block in enumerate(blocks):
            exec(compile(block, f"README.md python block {i + 1}", "exec"), scope)
    finally:
        torch.set_num_threads(n)
    printed = capsys.readouterr().out
    assert printed.count("<mask>") == 0 and "The capital of France is" in printed
