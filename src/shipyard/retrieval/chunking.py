"""Splitting a document's text into chunks whose sizes are counted in tokens of the
embedding model.

Strategies (a knowledge base's `chunking`):
- `recursive`: split at paragraphs, then lines, then sentences, then words, only as far
  as a piece must be split to fit `size` tokens, then merge neighbouring pieces up to
  `size`, each chunk starting with up to `overlap` tokens of the one before;
- `markdown`: the same within each section (a heading and what follows it, outside code
  fences); a chunk never spans two sections and carries its heading path in
  `metadata.section` (`Install > Linux`);
- `fixed`: windows of `size` tokens, each starting `size - overlap` tokens after the one
  before.

Tokens come from a `Tokens` (the model's own tokenizer where Shipyard has it, see
`tokens_for`; else `WordTokens`). Every chunk keeps its character span in the text.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import Field, model_validator

from shipyard.inputs import Strict

SEPARATORS = ("\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
FENCE = re.compile(r"^(```|~~~)")


class ChunkingIn(Strict):
    strategy: Literal["recursive", "markdown", "fixed"] = "recursive"
    size: int = Field(default=200, ge=8, le=8192, description="tokens per chunk, at most")
    overlap: int = Field(
        default=20, ge=0, le=4096, description="tokens shared with the chunk before"
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingIn:
        if self.overlap >= self.size:
            raise ValueError("overlap must be smaller than size")
        return self


class Tokens(Protocol):
    """Token character spans of a text (no special tokens)."""

    name: str

    def spans(self, text: str) -> list[tuple[int, int]]: ...


class WordTokens:
    """Words and punctuation marks: a stand-in where the model's tokenizer is unknown
    (a hosted embeddings route); it counts fewer tokens than a subword tokenizer."""

    name = "words"
    _pattern = re.compile(r"\w+|[^\w\s]")

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in self._pattern.finditer(text)]


class ModelTokens:
    """A Hugging Face fast tokenizer (`tokenizer.json`) of a local model."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self.name = path.parent.name
        self._tokenizer = Tokenizer.from_file(str(path))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    def spans(self, text: str) -> list[tuple[int, int]]:
        offsets = self._tokenizer.encode(text, add_special_tokens=False).offsets
        return [(a, b) for a, b in offsets if b > a]


def tokens_for(model_path: str | None) -> Tokens:
    if model_path:
        found = Path(model_path) / "tokenizer.json"
        if found.is_file():
            return ModelTokens(found)
    return WordTokens()


@dataclass(frozen=True)
class Piece:
    text: str
    start: int
    end: int
    tokens: int
    metadata: dict[str, Any] = field(default_factory=dict)


class _Counter:
    """Counts the tokens of any character range of one text, from its token spans."""

    def __init__(self, spans: Sequence[tuple[int, int]]) -> None:
        self.spans = spans
        self.starts = [s for s, _ in spans]
        self.ends = [e for _, e in spans]

    def count(self, start: int, end: int) -> int:
        # tokens that start inside [start, end)
        return bisect.bisect_left(self.starts, end) - bisect.bisect_left(self.starts, start)

    def first(self, start: int) -> int:
        return bisect.bisect_left(self.starts, start)


def split(text: str, config: ChunkingIn, tokens: Tokens) -> list[Piece]:
    counter = _Counter(tokens.spans(text))
    if config.strategy == "fixed":
        spans = _fixed(counter, 0, len(text), config)
        return _pieces(text, spans, counter, {})
    if config.strategy == "markdown":
        out: list[Piece] = []
        for start, end, section in _sections(text):
            spans = _merge(_atoms(text, start, end, counter, config.size), counter, config)
            out.extend(_pieces(text, spans, counter, {"section": section} if section else {}))
        return out
    spans = _merge(_atoms(text, 0, len(text), counter, config.size), counter, config)
    return _pieces(text, spans, counter, {})


def _pieces(
    text: str, spans: list[tuple[int, int]], counter: _Counter, metadata: dict[str, Any]
) -> list[Piece]:
    out = []
    for start, end in spans:
        # trim the whitespace at either end, keeping the span true to the text
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end:
            out.append(
                Piece(text[start:end], start, end, counter.count(start, end), dict(metadata))
            )
    return out


def _atoms(
    text: str, start: int, end: int, counter: _Counter, size: int, level: int = 0
) -> list[tuple[int, int]]:
    """Spans covering [start, end), each of at most `size` tokens, split at the coarsest
    separator that makes them fit."""
    if counter.count(start, end) <= size:
        return [(start, end)]
    for depth in range(level, len(SEPARATORS)):
        sep = SEPARATORS[depth]
        cuts, at = [], text.find(sep, start, end)
        while at != -1:
            cuts.append(at + len(sep))  # the separator stays with the piece before it
            at = text.find(sep, at + len(sep), end)
        cuts = [c for c in cuts if start < c < end]
        if not cuts:
            continue
        out: list[tuple[int, int]] = []
        for a, b in zip([start, *cuts], [*cuts, end], strict=True):
            out.extend(_atoms(text, a, b, counter, size, depth + 1))
        return out
    # one long word: windows of tokens
    return _fixed(counter, start, end, None, size)


def _fixed(
    counter: _Counter, start: int, end: int, config: ChunkingIn | None, size: int = 0
) -> list[tuple[int, int]]:
    size = config.size if config else size
    step = size - (config.overlap if config else 0)
    first, last = counter.first(start), counter.first(end)
    if first >= last:
        return [(start, end)] if end > start else []
    out = []
    for i in range(first, last, step):
        j = min(i + size, last) - 1
        a = start if i == first and config is None else counter.spans[i][0]
        b = end if j == last - 1 and config is None else counter.ends[j]
        out.append((a, b))
        if j == last - 1:
            break
    return out


def _merge(
    atoms: list[tuple[int, int]], counter: _Counter, config: ChunkingIn
) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(atoms):
        start = atoms[i][0]
        j = i
        while j + 1 < len(atoms) and counter.count(start, atoms[j + 1][1]) <= config.size:
            j += 1
        out.append((start, atoms[j][1]))
        if j + 1 >= len(atoms):
            break
        # the next chunk starts with the last atoms of this one, up to `overlap` tokens
        k = j + 1
        while (
            k - 1 > i
            and counter.count(atoms[k - 1][0], atoms[j][1]) <= config.overlap
            and counter.count(atoms[k - 1][0], atoms[j + 1][1]) <= config.size
        ):
            k -= 1
        i = k
    return out


def _sections(text: str) -> list[tuple[int, int, str]]:
    """(start, end, heading path) of each section; the text before the first heading is
    a section with no path."""
    heads: list[tuple[int, int, str]] = []  # (offset, level, title)
    fenced, offset = False, 0
    for line in text.splitlines(keepends=True):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            m = HEADING.match(line.rstrip("\n"))
            if m:
                heads.append((offset, len(m.group(1)), m.group(2).strip()))
        offset += len(line)
    out: list[tuple[int, int, str]] = []
    if not heads or heads[0][0] > 0:
        out.append((0, heads[0][0] if heads else len(text), ""))
    path: list[tuple[int, str]] = []
    for n, (at, level, title) in enumerate(heads):
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, title))
        end = heads[n + 1][0] if n + 1 < len(heads) else len(text)
        out.append((at, end, " > ".join(t for _, t in path)))
    return out
