"""HTML → readable plain text with html.parser: headings, paragraphs, list items and links kept;
scripts, styles and other invisible parts dropped."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head", "iframe", "object"})
_BLOCK = frozenset(
    {
        "p", "div", "section", "article", "main", "header", "footer", "nav", "aside", "br",
        "table", "tr", "ul", "ol", "dl", "dt", "dd", "blockquote", "pre", "form", "hr",
        "figure", "figcaption", "details", "summary", "address",
    }
)  # fmt: skip
_HEADINGS = {f"h{i}": "#" * i for i in range(1, 7)}
_VOID = frozenset({"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "wbr"})


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.pre = 0
        self.title = ""
        self._in_title = False
        self._href: str | None = None
        self._link_text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in _SKIP:
            if tag not in _VOID:
                self.skip += 1
            return
        if self.skip:
            return
        if tag in _HEADINGS:
            self.out.append("\n\n" + _HEADINGS[tag] + " ")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in ("td", "th"):
            self.out.append(" | ")
        elif tag in _BLOCK:
            self.out.append("\n")
        if tag == "pre":
            self.pre += 1
        if tag == "a":
            href = dict(attrs).get("href") or ""
            self._href = href if href.startswith(("http://", "https://")) else None
            self._link_text = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
            return
        if self.skip:
            return
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag == "a" and self._href:
            if self._link_text.strip() and self._link_text.strip() != self._href:
                self.out.append(f" ({self._href})")
            self._href = None
        if tag in _HEADINGS or tag in _BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self.skip:
            return
        if not self.pre:
            data = re.sub(r"\s+", " ", data)
        if self._href is not None:
            self._link_text += data
        self.out.append(data)


def html_to_text(html: str) -> tuple[str, str]:
    """(title, text) of an HTML document: blank lines between blocks, runs of spaces folded."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    text = "".join(parser.out)
    lines = [line.strip() for line in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return re.sub(r"\s+", " ", parser.title).strip(), text
