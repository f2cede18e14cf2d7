"""dict.txt read/write and building rules, byte-exact with fairseq's."""
import pytest
import torch

from fairseq.data import Dictionary


def test_specials():
    d = Dictionary()
    assert [d.bos(), d.pad(), d.eos(), d.unk()] == [0, 1, 2, 3]
    assert d.symbols == ["<s>", "<pad>", "</s>", "<unk>"] and len(d) == 4 and d.nspecial == 4


def test_fixture_roundtrip_is_byte_identical(peer_dir, tmp_path):
    src = peer_dir / "data-bin" / "dict.txt"
    d = Dictionary.load(str(src))
    assert len(d) == 7712 and d[4] == "13" and d.index("13") == 4 and d.index("nope") == 3
    d.save(str(tmp_path / "dict.txt"))
    assert (tmp_path / "dict.txt").read_bytes() == src.read_bytes()
    assert d.add_symbol("<mask>") == 7712


def test_finalize_order_threshold_nwords_padding():
    d = Dictionary()
    for w, n in [("b", 3), ("a", 3), ("c", 5), ("d", 1), ("e", 1)]:
        d.add_symbol(w, n)
    d.finalize(padding_factor=4)  # 9 symbols -> 12
    assert d.symbols[4:] == ["c", "a", "b", "d", "e", "madeupword0000", "madeupword0001", "madeupword0002"]
    assert d.count[-1] == 0 and len(d) == 12
    assert d.dumps().splitlines()[:3] == ["c 5", "a 3", "b 3"]
    t = Dictionary()
    for w, n in [("b", 3), ("a", 3), ("c", 5), ("d", 1)]:
        t.add_symbol(w, n)
    t.finalize(threshold=2, padding_factor=1)
    assert t.symbols[4:] == ["c", "a", "b"]
    m = Dictionary()
    for w, n in [("b", 3), ("a", 3), ("c", 5), ("d", 1)]:
        m.add_symbol(w, n)
    m.finalize(nwords=6, padding_factor=4)  # nwords counts the 4 specials
    assert m.symbols[4:] == ["c", "a", "madeupword0000", "madeupword0001"]


def test_overwrite_flag_and_duplicates(tmp_path):
    p = tmp_path / "dict.txt"
    p.write_text("x 5\ny 2\nx 7 #fairseq:overwrite\n", encoding="utf-8")
    d = Dictionary.load(str(p))
    assert d.index("x") == 6 and d.count[6] == 7 and len(d) == 7
    p.write_text("x 5\ny 2\nx 7\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match=r"dict.txt:3: Duplicate word"):  # fairseq raises RuntimeError
        Dictionary.load(str(p))


@pytest.mark.parametrize("line", ["lonely", "x notanumber", ""])
def test_malformed_line_names_file_and_line(tmp_path, line):
    p = tmp_path / "bad.txt"
    p.write_text(f"a 1\n{line}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:2: incorrect dictionary format"):
        Dictionary.load(str(p))


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        Dictionary.load("/nowhere.txt")


def test_encode_line():
    d = Dictionary()
    d.add_symbol("a")
    ids = d.encode_line("  a  b\t a \n")
    assert ids.dtype == torch.int32 and ids.tolist() == [4, 3, 4, 2]
    assert d.encode_line("b", add_if_not_exist=True, append_eos=False).tolist() == [5]


def test_placeholder_dictionary_shape():
    from fairseq.data.dictionary import placeholder_dictionary

    d = placeholder_dictionary(20)
    assert len(d) == 20 and d.nspecial == 4 and d.index("<mask>") == 19 and d[4] == "w4"
    assert (d.bos(), d.pad(), d.eos(), d.unk()) == (0, 1, 2, 3)
    with pytest.raises(ValueError, match="size 4"):
        placeholder_dictionary(4)


def test_file_objects_roundtrip():
    import io

    d = Dictionary()
    for w, n in [("b", 3), ("a", 7)]:
        d.add_symbol(w, n)
    out = io.StringIO()
    d.save(out)
    assert out.getvalue() == "b 3\na 7\n"
    assert Dictionary.load(io.StringIO(out.getvalue())) == d


def test_string_follows_fairseq():
    d = Dictionary()
    for w in ["he@@", "llo", "world", "\u2581a", "\u2581b"]:
        d.add_symbol(w)
    ids = torch.tensor([0, 4, 5, 3, 6, 1, 2])  # <s> he@@ llo <unk> world <pad> </s>
    assert d.string(ids) == "he@@ llo <unk> world <pad>"  # <s> and </s> dropped, <pad> kept
    assert d.string(ids, bpe_symbol="@@ ") == "hello <unk> world <pad>"
    assert d.string(ids, escape_unk=True, extra_symbols_to_ignore=[1]) == "he@@ llo <<unk>> world"
    assert d.string(ids, unk_string="?", include_eos=True, separator="|") == "he@@|llo|?|world|<pad>|</s>"
    assert d.string(torch.tensor([[7, 8], [8, 2]]), bpe_symbol="sentencepiece") == "a b\nb"


def test_add_file_to_dictionary_workers_agree(tmp_path):
    from fairseq import tokenizer

    p = tmp_path / "text.txt"
    p.write_text("".join(f"w{i % 7} w{i % 3} x\n" for i in range(500)), encoding="utf-8")
    one, two = Dictionary(), Dictionary()
    Dictionary.add_file_to_dictionary(str(p), one, tokenizer.tokenize_line, 1)
    Dictionary.add_file_to_dictionary(str(p), two, tokenizer.tokenize_line, 2)
    assert one.symbols == two.symbols and one.count == two.count
    assert one.get_count(one.index("x")) == 500 and one.get_count(one.eos()) == 501  # one </s> per line (+1 own)


def test_add_file_to_dictionary_counts_text_mode_lines(tmp_path):
    from fairseq import tokenizer

    p = tmp_path / "mixed.txt"
    p.write_bytes(b"a b\r\nc\rd\n\nlast")  # 5 lines as Python's text mode reads them
    d = Dictionary()
    Dictionary.add_file_to_dictionary(str(p), d, tokenizer.tokenize_line, 3)
    assert d.symbols[4:] == ["a", "b", "c", "d", "last"] and d.get_count(d.eos()) == 1 + 5


def test_negative_count_is_an_error(tmp_path):
    p = tmp_path / "dict.txt"
    p.write_text("a 3\nb -1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"dict.txt:2: negative count -1"):
        Dictionary.load(str(p))
