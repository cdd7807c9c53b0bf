"""Documents read into text: plain text, Markdown, HTML, PDF (`pypdf`), JSON, JSONL and
CSV. A file that cannot be read is refused whole, naming the file (`report.pdf: ...`);
nothing of it is written.

HTML headings become Markdown headings (`## Pricing`), so the Markdown chunker splits an
HTML page by its sections too. A JSON value, a JSONL line or a CSV row becomes one
block of `key: value` lines, blocks separated by a blank line."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from html.parser import HTMLParser
from typing import Any

import orjson

from shipyard.errors import InvalidInput

FORMATS = ("txt", "md", "html", "pdf", "json", "jsonl", "csv")
SUFFIXES = {
    ".txt": "txt",
    ".text": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
}
MAX_PDF_PAGES = 5_000


def checked_name(name: str) -> str:
    """A document's name is a file name: no folders, no `..`, no control characters."""
    if not name or len(name) > 255:
        raise InvalidInput("a document name has 1 to 255 characters", param="name")
    if "/" in name or "\\" in name or name in (".", "..") or name.startswith(".."):
        raise InvalidInput(f"{name!r}: a document name may not name a folder", param="name")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        raise InvalidInput(
            f"{name!r}: a document name may not hold control characters", param="name"
        )
    if name != name.strip():
        raise InvalidInput(
            f"{name!r}: a document name may not start or end with a space", param="name"
        )
    return name


def format_of(name: str, given: str | None = None) -> str:
    if given is not None:
        if given not in FORMATS:
            raise InvalidInput(
                f"{name}: format must be one of {', '.join(FORMATS)}", param="format"
            )
        return given
    suffix = name[name.rfind(".") :].lower() if "." in name else ""
    found = SUFFIXES.get(suffix)
    if found is None:
        raise InvalidInput(
            f"{name}: unknown file type {suffix or '(no suffix)'}; name the format "
            f"({', '.join(FORMATS)})",
            param="format",
        )
    return found


def extract(name: str, data: bytes, fmt: str) -> str:
    """The document's text; `InvalidInput` naming the file when it cannot be read."""
    if fmt == "pdf":
        text = _pdf(name, data)
    else:
        raw = _decode(name, data)
        if fmt in ("txt", "md"):
            text = raw
        elif fmt == "html":
            text = _html(raw)
        elif fmt == "json":
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise InvalidInput(f"{name}: not JSON ({exc})", param="file") from None
            values = value if isinstance(value, list) else [value]
            text = "\n\n".join(_block(v) for v in values)
        elif fmt == "jsonl":
            blocks = []
            for n, line in enumerate(raw.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    blocks.append(_block(orjson.loads(line)))
                except orjson.JSONDecodeError as exc:
                    raise InvalidInput(
                        f"{name}: line {n}: not JSON ({exc})", param="file"
                    ) from None
            text = "\n\n".join(blocks)
        elif fmt == "csv":
            text = _csv(name, raw)
        else:
            raise InvalidInput(f"{name}: unknown format {fmt}", param="format")
    text = text.replace("\r\n", "\n").replace("\x00", "")
    if not text.strip():
        raise InvalidInput(f"{name}: the document holds no text", param="file")
    return text


def _decode(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidInput(f"{name}: line {line}: not UTF-8", param="file") from None


def _pdf(name: str, data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    if not data.startswith(b"%PDF-"):
        raise InvalidInput(f"{name}: not a PDF (no %PDF- header)", param="file")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise InvalidInput(f"{name}: the PDF is encrypted", param="file")
        if len(reader.pages) > MAX_PDF_PAGES:
            raise InvalidInput(f"{name}: more than {MAX_PDF_PAGES} pages", param="file")
        pages = [page.extract_text() or "" for page in reader.pages]
    except InvalidInput:
        raise
    except (
        PyPdfError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        RecursionError,
        OSError,
        AssertionError,
        ZeroDivisionError,
    ) as exc:
        raise InvalidInput(
            f"{name}: a malformed PDF ({type(exc).__name__})", param="file"
        ) from None
    return "\n\n".join(p.strip() for p in pages if p.strip())


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _block(value: Any) -> str:
    if isinstance(value, dict):
        return "\n".join(f"{k}: {_scalar(v)}" for k, v in value.items())
    return _scalar(value)


def _csv(name: str, raw: str) -> str:
    reader = csv.reader(io.StringIO(raw, newline=""))
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise InvalidInput(f"{name}: line {reader.line_num}: {exc}", param="file") from None
    if not rows:
        return ""
    header, blocks = rows[0], []
    for n, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise InvalidInput(
                f"{name}: line {n}: {len(row)} fields where the header has {len(header)}",
                param="file",
            )
        blocks.append("\n".join(f"{h}: {v}" for h, v in zip(header, row, strict=True)))
    return "\n\n".join(blocks)


BLOCKS = {
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "tr",
    "table",
    "section",
    "article",
    "header",
    "footer",
    "pre",
    "blockquote",
    "hr",
    "dd",
    "dt",
    "main",
    "aside",
    "nav",
    "form",
}
SKIP = {"script", "style", "noscript", "template", "head", "svg"}


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIP:
            self.skipping += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif re.fullmatch(r"h[1-6]", tag) or tag in ("p", "div", "section", "article"):
            self.parts.append("\n\n")
        elif tag in BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(re.sub(r"[ \t\r\n]+", " ", data))


def _html(raw: str) -> str:
    parser = _Text()
    parser.feed(raw)
    parser.close()
    text = "".join(parser.parts)
    lines = [line.strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
