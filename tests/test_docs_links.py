"""Every relative link of the user docs resolves: the file (or folder) exists, and a #anchor names a heading
of the target file under GitHub's slug rules. The README is a map into docs/, so a moved or renamed section
must not leave a dead link behind."""
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto:, ...
INLINE_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")


def doc_files():
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "examples").rglob("README.md"))]
    return [f for f in files if f.is_file()]


def prose_lines(text):
    """(line number, line) outside fenced and indented code blocks, with inline code spans blanked."""
    fence, prev_blank_or_code = None, True
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip()
        if fence:
            if stripped.startswith(fence):
                fence = None
            continue
        if stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
            continue
        if line.startswith("    ") and prev_blank_or_code:
            continue  # an indented code block (a paragraph's continuation lines are not preceded by a blank)
        prev_blank_or_code = not line.strip()
        yield n, CODE_SPAN.sub("", line)


def github_slug(heading):
    """The anchor GitHub gives a heading: rendered text, lower-cased, punctuation other than '-' and '_'
    removed, each space a '-' (github-slugger's rules)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading renders as its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return "".join(c for c in text if c.isalnum() or c in "-_ ").replace(" ", "-")


def anchors(path):
    """Every anchor of a markdown file: heading slugs (duplicates numbered -1, -2, ...) and explicit ids."""
    seen, out = {}, set()
    text = path.read_text(encoding="utf-8")
    fence = None
    for line in text.splitlines():
        s = line.lstrip()
        if s.startswith(("```", "~~~")):
            fence = None if fence else s[:3]
            continue
        m = None if fence else re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = github_slug(m.group(1))
            out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    out |= set(re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", text))
    return out


def links(path):
    text = path.read_text(encoding="utf-8")
    for n, line in prose_lines(text):
        for m in INLINE_LINK.finditer(line):
            yield n, m.group(1)
        m = REFERENCE_DEF.match(line)
        if m:
            yield n, m.group(1)


def broken_links(path):
    out = []
    for n, target in links(path):
        if not target or EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(REPO)}:{n}: {target}"
        if not dest.exists():
            out.append(f"{where} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            out.append(f"{where} (no heading with anchor #{anchor} in {dest.relative_to(REPO)})")
    return out


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(path):
    assert broken_links(path) == []


def test_the_docs_are_linked_from_the_readme():
    """README.md is the map: every docs/ page is one link away from it."""
    linked = {(REPO / t.partition("#")[0]).resolve() for _, t in links(REPO / "README.md") if not EXTERNAL.match(t)}
    missing = [p.name for p in sorted((REPO / "docs").glob("*.md")) if p.resolve() not in linked]
    assert missing == []


@pytest.mark.parametrize("heading, slug", [
    ("`fairseq-train` flags", "fairseq-train-flags"),
    ("`--compile`, activation checkpointing and small-width overheads",
     "--compile-activation-checkpointing-and-small-width-overheads"),
    ("Token-dropping step time (SPEC target: within 5% of the ideal FLOP ratio; ScTD <= 0.87 of full)",
     "token-dropping-step-time-spec-target-within-5-of-the-ideal-flop-ratio-sctd--087-of-full"),
    ("Quickstart (the README's first command)", "quickstart-the-readmes-first-command"),
    ("Using [HF](https://huggingface.co) models", "using-hf-models"),
])
def test_slugs_follow_github(heading, slug):
    assert github_slug(heading) == slug


def test_a_broken_link_and_a_broken_anchor_are_found(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    (tmp_path / "a.md").write_text("# Title\n\n## Two words\n\n## Two words\n")
    page = tmp_path / "b.md"
    page.write_text("[ok](a.md#two-words-1) [ok](a.md#title) [ok](#here) `[code](nowhere.md)`\n\n# Here\n\n"
                    "    [indented code](nowhere.md)\n\n```\n[fenced](nowhere.md)\n```\n"
                    "[bad](missing.md) [bad anchor](a.md#two-words-2) [web](https://example.com/x.md)\n")
    assert broken_links(page) == ["b.md:10: missing.md (no such file)",
                                  "b.md:10: a.md#two-words-2 (no heading with anchor #two-words-2 in a.md)"]
