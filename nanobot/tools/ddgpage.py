"""The parser of DuckDuckGo's HTML results page (kept apart: html.parser loads on first use)."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

from nanobot.tools.websearch import Result


class DuckDuckGoPage(HTMLParser):
    """Results of html.duckduckgo.com: a.result__a (title, link) then .result__snippet."""

    def __init__(self, base: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base
        self.results: list[Result] = []
        self._field: str | None = None
        self._depth = 0
        self._ad = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if "result" in classes:
            self._ad = "result--ad" in classes
        if self._ad:
            return
        if tag == "a" and "result__a" in classes:
            self.results.append(
                Result("", _ddg_target(urljoin(self.base, a.get("href") or "")), "")
            )
            self._field, self._depth = "title", 0
        elif "result__snippet" in classes and self.results:
            self._field, self._depth = "snippet", 0
        elif self._field:
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if self._field and self._depth == 0:
            self._field = None
        elif self._field:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._field and self.results:
            r = self.results[-1]
            setattr(r, self._field, getattr(r, self._field) + data)  # folded in search()


def _ddg_target(href: str) -> str:
    """DuckDuckGo links go through /l/?uddg=<target>: the target itself."""
    parts = urlsplit(href)
    if parts.path.startswith("/l/"):
        target = parse_qs(parts.query).get("uddg", [""])[0]
        return target if target.startswith(("http://", "https://")) else ""
    return href if parts.scheme in ("http", "https") else ""
