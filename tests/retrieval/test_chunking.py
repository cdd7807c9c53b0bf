"""Each chunker on hand-made documents, counted in the MiniLM tokenizer's tokens and in
words: sizes are kept, spans are true to the text, overlaps are there, Markdown sections
never mix and code fences hide their `#` lines; and the parsers read what they should
and refuse what they cannot read, naming the file."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shipyard.errors import InvalidInput
from shipyard.retrieval.chunking import ChunkingIn, Tokens, WordTokens, split, tokens_for
from shipyard.retrieval.parsing import checked_name, extract, format_of
from shipyard.tracing.drift import minilm_path
from tests.retrieval.support import pdf

WORDS = " ".join(f"alpha{i} beta{i}." for i in range(300))
DOC = (
    "Intro line before any heading.\n\n"
    "# Install\n\nRun the installer. It takes a minute.\n\n"
    "## Linux\n\n" + WORDS + "\n\n"
    "```bash\n# this is a comment, not a heading\nmake up\n```\n\n"
    "# Use\n\nCall the gateway.\n"
)


@pytest.fixture(params=["minilm", "words"])
def tokens(request: pytest.FixtureRequest) -> Tokens:
    return tokens_for(str(minilm_path())) if request.param == "minilm" else WordTokens()


@pytest.mark.parametrize("strategy", ["recursive", "markdown", "fixed"])
def test_every_chunk_fits_and_its_span_is_true(strategy: str, tokens: Tokens) -> None:
    config = ChunkingIn(strategy=strategy, size=48, overlap=8)  # type: ignore[arg-type]
    pieces = split(DOC, config, tokens)
    assert len(pieces) > 5
    for p in pieces:
        assert DOC[p.start : p.end] == p.text and p.text.strip() == p.text
        assert 0 < p.tokens <= 48, (p.tokens, p.text)
        assert p.tokens == len(tokens.spans(p.text)) or tokens.name != "words"
    # the whole text is covered: every word is in some chunk
    covered = " ".join(p.text for p in pieces)
    for word in ("alpha0", "beta299.", "installer", "gateway"):
        assert word in covered


def test_recursive_and_fixed_chunks_overlap(tokens: Tokens) -> None:
    for strategy in ("recursive", "fixed"):
        config = ChunkingIn(strategy=strategy, size=40, overlap=10)  # type: ignore[arg-type]
        pieces = [p for p in split(WORDS, config, tokens)]
        shared = [a.end > b.start for a, b in zip(pieces, pieces[1:], strict=False)]
        assert sum(shared) >= len(shared) - 1, strategy
    no_overlap = split(WORDS, ChunkingIn(strategy="fixed", size=40, overlap=0), tokens)
    assert all(a.end <= b.start for a, b in zip(no_overlap, no_overlap[1:], strict=False))


def test_recursive_splits_at_paragraphs_before_words(tokens: Tokens) -> None:
    text = "First paragraph is short.\n\nSecond paragraph is short too.\n\nThird one."
    pieces = split(text, ChunkingIn(size=8, overlap=0), tokens)
    assert [p.text for p in pieces] == [
        "First paragraph is short.",
        "Second paragraph is short too.",
        "Third one.",
    ]
    one = split(text, ChunkingIn(size=200, overlap=0), tokens)
    assert [p.text for p in one] == [text]


def test_markdown_sections_carry_their_heading_path_and_never_mix(tokens: Tokens) -> None:
    pieces = split(DOC, ChunkingIn(strategy="markdown", size=48, overlap=8), tokens)
    sections = [p.metadata.get("section") for p in pieces]
    assert sections[0] is None and pieces[0].text == "Intro line before any heading."
    assert "Install" in sections and "Install > Linux" in sections and sections[-1] == "Use"
    assert not any("this is a comment" in (s or "") for s in sections)
    for p in pieces:
        if p.metadata.get("section") == "Use":
            assert "Linux" not in p.text and "installer" not in p.text


def test_chunking_config_is_checked() -> None:
    with pytest.raises(ValidationError, match="overlap must be smaller"):
        ChunkingIn(size=20, overlap=20)
    with pytest.raises(ValidationError):
        ChunkingIn(strategy="sentences")  # type: ignore[arg-type]
    assert split("", ChunkingIn(), WordTokens()) == []


def test_parsers_read_each_format() -> None:
    html = extract(
        "a.html",
        b"<h2>Title &amp; more</h2><p>One <b>bold</b> line.</p><script>x()</script>",
        "html",
    )
    assert html == "## Title & more\n\nOne bold line."
    assert extract("a.json", b'[{"k": 1}, "two"]', "json") == "k: 1\n\ntwo"
    assert extract("a.csv", b"a,b\n1,2\n", "csv") == "a: 1\nb: 2"
    text = extract("r.pdf", pdf("Hello PDF world"), "pdf")
    assert "Hello PDF world" in text
    assert format_of("Notes.MD") == "md" and format_of("x", "csv") == "csv"


@pytest.mark.parametrize(
    "name", ["../x.txt", "a/b.txt", "a\\b.txt", "..", "bad\x00.txt", "tab\t.txt", " pad.txt", ""]
)
def test_names_with_path_tricks_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        checked_name(name)


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.4\n%%EOF",
        b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 9 0 R >>\nendobj\ntrailer << /Root 1 0 R >>",
        pdf("ok")[:200],
        pdf("ok").replace(b"/Kids [3 0 R]", b"/Kids [2 0 R]"),  # a cycle of pages
    ],
)
def test_malformed_pdfs_are_refused_naming_the_file(data: bytes) -> None:
    with pytest.raises(InvalidInput, match="^bad.pdf: "):
        extract("bad.pdf", data, "pdf")
