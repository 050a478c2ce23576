"""web_search back-ends: Brave (API key), SearXNG (an instance's JSON API) and DuckDuckGo's HTML
page (no key, no account). Each turns a query into at most n Results or raises SearchError."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from nanobot.config.schema import WebSearchConfig

if TYPE_CHECKING:
    import requests
from nanobot.tools.webfetch import USER_AGENT

BRAVE_URL = "https://api.search.brave.com/res/v1/web/search"
DUCKDUCKGO_URL = "https://html.duckduckgo.com/html/"


class SearchError(Exception):
    """The back-end failed; str() is one line for the model, naming the setting to fix."""


@dataclass
class Result:
    title: str
    url: str
    snippet: str


class Backend(Protocol):
    name: str

    def search(self, query: str, n: int) -> list[Result]: ...


def _get(url: str, timeout: float, what: str, **kwargs) -> requests.Response:
    import requests  # on first search: start-up does not pay for it

    headers = {"User-Agent": USER_AGENT, **kwargs.pop("headers", {})}
    try:
        resp = requests.get(url, timeout=timeout, headers=headers, **kwargs)
    except requests.Timeout:
        raise SearchError(f"{what} did not answer within {timeout:g} s") from None
    except requests.RequestException as exc:
        raise SearchError(f"could not reach {what} ({type(exc).__name__})") from None
    return resp


def _json(resp: requests.Response, what: str) -> dict:
    try:
        data = resp.json()
    except ValueError:
        raise SearchError(f"{what} answered something that is not JSON") from None
    if not isinstance(data, dict):
        raise SearchError(f"{what} answered JSON of an unexpected shape")
    return data


def _text(value: object) -> str:
    return " ".join(str(value or "").split())


class Brave:
    """Brave Search API: GET /res/v1/web/search, key in X-Subscription-Token."""

    name = "brave"

    def __init__(self, api_key: str, url: str, timeout: float) -> None:
        self.api_key, self.url, self.timeout = api_key, url or BRAVE_URL, timeout

    def search(self, query: str, n: int) -> list[Result]:
        resp = _get(
            self.url,
            self.timeout,
            "Brave Search",
            params={"q": query, "count": n},
            headers={"Accept": "application/json", "X-Subscription-Token": self.api_key},
        )
        if resp.status_code in (401, 403):
            raise SearchError(
                f"Brave Search refused the key (HTTP {resp.status_code}); check "
                "tools.web.search.apiKey"
            )
        if resp.status_code == 429:
            raise SearchError("Brave Search rate limit or quota reached (HTTP 429); try later")
        if resp.status_code != 200:
            raise SearchError(f"Brave Search answered HTTP {resp.status_code}")
        web = _json(resp, "Brave Search").get("web") or {}
        items = web.get("results") if isinstance(web, dict) else None
        return [
            Result(_text(r.get("title")), str(r.get("url") or ""), _text(r.get("description")))
            for r in (items or [])
            if isinstance(r, dict) and r.get("url")
        ][:n]


class SearXNG:
    """A SearXNG instance: GET <url>/search?format=json (json must be in its search.formats)."""

    name = "searxng"

    def __init__(self, url: str, timeout: float) -> None:
        self.url, self.timeout = url.rstrip("/"), timeout

    def search(self, query: str, n: int) -> list[Result]:
        resp = _get(
            self.url + "/search", self.timeout, "SearXNG", params={"q": query, "format": "json"}
        )
        if resp.status_code == 403:
            raise SearXNGFormatError()
        if resp.status_code != 200:
            raise SearchError(f"SearXNG at tools.web.search.url answered HTTP {resp.status_code}")
        items = _json(resp, "SearXNG").get("results")
        return [
            Result(_text(r.get("title")), str(r.get("url") or ""), _text(r.get("content")))
            for r in (items if isinstance(items, list) else [])
            if isinstance(r, dict) and r.get("url")
        ][:n]


class SearXNGFormatError(SearchError):
    def __init__(self) -> None:
        super().__init__(
            "the SearXNG instance refused JSON (HTTP 403); add json to search.formats in its "
            "settings.yml"
        )


class DuckDuckGo:
    """DuckDuckGo's HTML results page (no key). Scraped: best effort, may be rate-limited."""

    name = "duckduckgo"

    def __init__(self, url: str, timeout: float) -> None:
        self.url, self.timeout = url or DUCKDUCKGO_URL, timeout

    def search(self, query: str, n: int) -> list[Result]:
        resp = _get(self.url, self.timeout, "DuckDuckGo", params={"q": query})
        if resp.status_code != 200:
            raise SearchError(
                f"DuckDuckGo answered HTTP {resp.status_code} (it limits automated searches); "
                "set tools.web.search.apiKey (Brave) or tools.web.search.url (SearXNG)"
            )
        from nanobot.tools.ddgpage import DuckDuckGoPage  # html.parser, on first search only

        parser = DuckDuckGoPage(self.url)
        parser.feed(resp.text)
        parser.close()
        results = [Result(_text(r.title), r.url, _text(r.snippet)) for r in parser.results if r.url]
        results = results[:n]
        if not results and "anomaly" in resp.text.lower():
            raise SearchError(
                "DuckDuckGo asked for a captcha (too many automated searches); try later, or "
                "set tools.web.search.apiKey (Brave) or tools.web.search.url (SearXNG)"
            )
        return results


BACKENDS: dict[str, Callable[[WebSearchConfig], Backend]] = {
    "brave": lambda c: Brave(c.api_key, c.url or c.base_url, c.timeout),
    "searxng": lambda c: SearXNG(c.url or c.base_url, c.timeout),
    "duckduckgo": lambda c: DuckDuckGo(c.url or c.base_url, c.timeout),
}


def choose(cfg: WebSearchConfig) -> str:
    """The back-end's name: tools.web.search.provider, or brave with a key, searxng with a url,
    else duckduckgo."""
    if cfg.provider:
        return cfg.provider
    if cfg.api_key:
        return "brave"
    return "searxng" if (cfg.url or cfg.base_url) else "duckduckgo"


def make_backend(cfg: WebSearchConfig) -> Backend:
    """The configured back-end; ValueError names the missing setting."""
    name = choose(cfg)
    if name == "brave" and not cfg.api_key:
        raise ValueError(
            "tools.web.search.provider is brave but tools.web.search.apiKey is empty; set the "
            'key, or use "duckduckgo" (no key) or "searxng" with tools.web.search.url'
        )
    if name == "searxng" and not (cfg.url or cfg.base_url):
        raise ValueError(
            "tools.web.search.provider is searxng but tools.web.search.url is empty; set it to "
            "the instance's address, e.g. http://127.0.0.1:8888"
        )
    return BACKENDS[name](cfg)
