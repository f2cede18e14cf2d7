"""fairseq-glue-prep: byte-identical to real fairseq's RTE-bin, column layouts, clear errors."""
import pytest

from fairseq_cli import glue_prep


def _mini_rte(shared_dir, tmp_path, n=20):
    src = shared_dir / "data" / "glue" / "RTE"
    d = tmp_path / "glue" / "RTE"
    d.mkdir(parents=True)
    dev = (src / "dev.tsv").read_text(encoding="utf-8").split("\n")
    (d / "dev.tsv").write_text("\n".join(dev[: n + 1]) + "\n", encoding="utf-8")
    (d / "train.tsv").write_bytes((src / "train.tsv").read_bytes())
    return tmp_path / "glue"


def test_rte20_bytes_match_real_fairseq(peer_dir, shared_dir, tmp_path):
    glue = _mini_rte(shared_dir, tmp_path)
    out = tmp_path / "RTE-bin"
    glue_prep.cli_main(["--task", "RTE", "--glue-dir", str(glue), "--dict", str(peer_dir / "data-bin" / "dict.txt"),
                        "--tokenizer-json", str(peer_dir / "tokenizer.json"), "--out", str(out)])
    ref = peer_dir / "reference" / "glue_rte20"
    for sub, names in {"input0": ["dict.txt", "valid.bin", "valid.idx"],
                       "input1": ["dict.txt", "valid.bin", "valid.idx"],
                       "label": ["dict.txt", "valid.bin", "valid.idx", "train.bin", "train.idx"]}.items():
        for name in names:
            assert (out / sub / name).read_bytes() == (ref / "RTE-bin" / sub / name).read_bytes(), f"{sub}/{name}"
    for name in ["dev.input0", "dev.input1", "dev.label", "dev.raw.input0", "train.label"]:
        assert (out / "processed" / name).read_bytes() == (ref / "processed" / name).read_bytes(), name
    # the BPE travels with the data, where from_pretrained(..., data_name_or_path=out) finds it
    assert (out / "tokenizer.json").read_bytes() == (peer_dir / "tokenizer.json").read_bytes()


def _write_task(tmp_path, task, files):
    d = tmp_path / "g" / task
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text, encoding="utf-8")
    return tmp_path / "g"


def _run(glue, task, peer_dir, tmp_path):
    glue_prep.prepare(task, str(glue), str(peer_dir / "data-bin" / "dict.txt"), str(tmp_path / f"{task}-bin"),
                      tokenizer_json=str(peer_dir / "tokenizer.json"))
    return tmp_path / f"{task}-bin"


def test_cola_no_header_and_stsb_scaled_labels(peer_dir, tmp_path):
    glue = _write_task(tmp_path, "CoLA", {"train.tsv": "gj04\t1\t\tThe cat sat.\ngj04\t0\t*\tCat the sat.\n",
                                          "dev.tsv": "gj04\t1\t\tA dog ran.\n"})
    out = _run(glue, "CoLA", peer_dir, tmp_path)
    assert (out / "processed" / "train.raw.input0").read_text() == "The cat sat.\nCat the sat.\n"
    assert (out / "processed" / "dev.label").read_text() == "1\n"
    assert (out / "label" / "dict.txt").read_text().startswith("0 1\n1 1\n")  # tie: symbol order
    assert not (out / "input1").exists()
    hdr = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    row = "0\tg\tf\ty\t0\tn\tn\tA man plays.\tA man is playing.\t{}\n"
    glue = _write_task(tmp_path, "STS-B", {"train.tsv": hdr + row.format("3.800") + row.format("5.000"),
                                           "dev.tsv": hdr + row.format("0.250")})
    out = _run(glue, "STS-B", peer_dir, tmp_path)
    assert (out / "label" / "train.label").read_text() == "0.76\n1\n"
    assert (out / "label" / "valid.label").read_text() == "0.05\n"
    assert (out / "input1" / "valid.idx").exists()


def test_errors_name_file_and_line(peer_dir, tmp_path):
    hdr = "index\tsentence1\tsentence2\tlabel\n"
    glue = _write_task(tmp_path, "RTE", {"train.tsv": hdr + "0\ta\tb\tentailment\n1\ta\tb\tmaybe\n",
                                         "dev.tsv": hdr + "0\ta\tb\tentailment\n"})
    with pytest.raises(ValueError, match=r"RTE/train.tsv:3: unknown label 'maybe' for RTE"):
        _run(glue, "RTE", peer_dir, tmp_path)
    glue = _write_task(tmp_path, "RTE", {"train.tsv": hdr + "0\ta\tb\tentailment\n1\ta\n"})
    with pytest.raises(ValueError, match=r"RTE/train.tsv:3: missing column 4"):
        _run(glue, "RTE", peer_dir, tmp_path)
    glue = _write_task(tmp_path, "RTE", {"train.tsv": hdr})
    with pytest.raises(ValueError, match=r"RTE/train.tsv: no data rows"):
        _run(glue, "RTE", peer_dir, tmp_path)
    glue = _write_task(tmp_path, "QNLI", {"dev.tsv": "index\tquestion\tsentence\tlabel\n"})
    with pytest.raises(FileNotFoundError, match=r"QNLI train split not found: .*QNLI/train.tsv"):
        _run(glue, "QNLI", peer_dir, tmp_path)
    with pytest.raises(ValueError, match="unknown --task 'XNLI'"):
        _run(glue, "XNLI", peer_dir, tmp_path)
