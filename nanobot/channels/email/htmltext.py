"""HTML mail bodies turned into readable plain text with the standard library's html.parser.

Nothing is fetched or executed: scripts, styles and the head are dropped, links become
"text (url)", list items "- item", block elements line breaks, and whitespace is collapsed.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript"})
_BLOCK = frozenset(
    {"p", "div", "section", "article", "header", "footer", "table", "tr", "ul", "ol",
     "blockquote", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "form", "dl", "dt", "dd"}
)  # fmt: skip
_PARAGRAPHS = frozenset({"p", "table", "ul", "ol", "blockquote"})
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANKS = re.compile(r"\n{3,}")


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0
        self._href: list[str | None] = []
        self._link_text: list[int] = []

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _SKIP:
            self._skip += 1
        elif tag == "br":
            self.out.append("\n")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in ("td", "th"):
            self.out.append(" ")
        elif tag in _BLOCK:
            self.out.append("\n\n" if tag in _PARAGRAPHS else "\n")
        elif tag == "a":
            href = dict(attrs).get("href") or None
            self._href.append(href)
            self._link_text.append(len(self.out))
        elif tag == "img":
            alt = (dict(attrs).get("alt") or "").strip()
            if alt:
                self.out.append(f"[{alt}]")

    def handle_startendtag(self, tag: str, attrs) -> None:
        if tag not in _SKIP:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag == "a" and self._href:
            href, start = self._href.pop(), self._link_text.pop()
            text = "".join(self.out[start:]).strip()
            if href and href.startswith(("http://", "https://", "mailto:")) and href != text:
                self.out.append(f" ({href})")
        elif tag in _BLOCK:
            self.out.append("\n\n" if tag in _PARAGRAPHS else "\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.out.append(data)


def html_to_text(html: str) -> str:
    """Readable plain text of an HTML document (never raises on malformed markup)."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    lines = [_SPACES.sub(" ", line).strip() for line in "".join(parser.out).split("\n")]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()
