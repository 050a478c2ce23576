"""web_search against local servers that answer in each back-end's documented shape: Brave's
Web Search API, SearXNG's JSON API, DuckDuckGo's HTML results page. Failures give one line."""

from __future__ import annotations

import asyncio
import json
import socket
from urllib.parse import parse_qs, urlsplit

import pytest

from fakes.web_server import LocalWeb, Seen
from nanobot.config.schema import WebConfig, WebSearchConfig
from nanobot.errors import ConfigError
from nanobot.tools.base import ToolContext
from nanobot.tools.web import UNTRUSTED_CLOSE, UNTRUSTED_OPEN, make_web_search
from nanobot.tools.websearch import choose

KEY = "BSA-test-key-000000000000"


def search(cfg: WebSearchConfig, query: str, **kw) -> str:
    tool = make_web_search(WebConfig(search=cfg))
    return asyncio.run(tool.execute(ToolContext(), query=query, **kw)).text


def query_of(seen: Seen) -> dict[str, list[str]]:
    return parse_qs(urlsplit(seen.path).query)


def brave_answer(seen: Seen):
    if seen.headers.get("X-Subscription-Token") != KEY:
        return 401, json.dumps({"type": "ErrorResponse"}), {"Content-Type": "application/json"}
    n = int(query_of(seen)["count"][0])
    results = [
        {"title": f"Result {i}", "url": f"https://example.org/{i}", "description": f"About {i}"}
        for i in range(n + 3)  # more than asked: the tool cuts
    ]
    body = {
        "type": "search",
        "query": {"original": "q"},
        "web": {"type": "search", "results": results},
    }
    return 200, json.dumps(body), {"Content-Type": "application/json"}


@pytest.fixture
def server():
    with LocalWeb() as web:
        yield web


def test_brave_sends_the_key_and_honours_max_results(server):
    server.route_fn("/res/v1/web/search", brave_answer)
    cfg = WebSearchConfig(api_key=KEY, max_results=3, url=server.url("/res/v1/web/search"))
    assert choose(cfg) == "brave"
    text = search(cfg, "nanobot assistant")
    assert query_of(server.requests[0])["q"] == ["nanobot assistant"]
    assert "1. Result 0\n   https://example.org/0\n   About 0" in text
    assert "3. Result 2" in text and "Result 3" not in text
    assert text.count(UNTRUSTED_OPEN) == 1 and UNTRUSTED_CLOSE in text
    assert KEY not in text
    text = search(cfg, "x", count=2)
    assert "2. Result 1" in text and "Result 2" not in text


def test_brave_refused_key_is_one_clear_line(server):
    server.route_fn("/res/v1/web/search", brave_answer)
    cfg = WebSearchConfig(api_key="wrong", url=server.url("/res/v1/web/search"))
    text = search(cfg, "q")
    assert text.startswith("Error: web search (brave) failed:") and "\n" not in text
    assert "tools.web.search.apiKey" in text and "wrong" not in text


def test_searxng_json_api(server):
    def answer(seen):
        assert query_of(seen)["format"] == ["json"]
        results = [
            {
                "title": "SearX one",
                "url": "https://a.example/",
                "content": "first  hit",
                "engine": "x",
            },
            {"title": "SearX two", "url": "https://b.example/", "content": "second"},
            {"title": "no url"},
        ]
        return 200, json.dumps({"query": "q", "results": results}), {}

    server.route_fn("/search", answer)
    cfg = WebSearchConfig(url=server.url(""))
    assert choose(cfg) == "searxng"
    text = search(cfg, "q")
    assert "1. SearX one\n   https://a.example/\n   first hit" in text
    assert "2. SearX two" in text and "no url" not in text


def test_searxng_without_json_format_names_the_fix(server):
    server.route("/search", 403, "Forbidden")
    text = search(WebSearchConfig(provider="searxng", url=server.url("")), "q")
    assert "settings.yml" in text and text.startswith("Error:")


DDG_PAGE = """<!DOCTYPE html><html><body><div class="serp__results"><div id="links" class="results">
<div class="result results_links results_links_deep result--ad"><div class="links_main">
<h2 class="result__title"><a class="result__a" href="https://ads.example/">Sponsored thing</a></h2>
<a class="result__snippet" href="https://ads.example/">Buy now</a></div></div>
<div class="result results_links results_links_deep web-result"><div class="links_main links_deep result__body">
<h2 class="result__title"><a rel="nofollow" class="result__a"
 href="//duckduckgo.com/l/?uddg=https%3A%2F%2Fexample.com%2Fpage%3Fa%3D1&amp;rut=abc">Example <b>Domain</b></a></h2>
<div class="result__extras"><a class="result__url" href="x">example.com</a></div>
<a class="result__snippet" href="//duckduckgo.com/l/?uddg=x">This domain is for use in <b>illustrative</b> examples.</a>
</div></div>
<div class="result results_links results_links_deep web-result"><div class="links_main links_deep result__body">
<h2 class="result__title"><a rel="nofollow" class="result__a" href="https://second.example/">Second &amp; last</a></h2>
<a class="result__snippet">Another snippet</a></div></div>
</div></div></body></html>"""


def test_duckduckgo_needs_no_key_and_reads_its_html(server):
    server.route("/html/", 200, DDG_PAGE, {"Content-Type": "text/html"})
    cfg = WebSearchConfig(provider="duckduckgo", url=server.url("/html/"))
    assert choose(WebSearchConfig()) == "duckduckgo"  # the out-of-the-box default
    text = search(cfg, "example")
    assert (
        "1. Example Domain\n   https://example.com/page?a=1\n   This domain is for use in illustrative examples."
        in text
    )
    assert "2. Second & last\n   https://second.example/\n   Another snippet" in text
    assert "Sponsored" not in text
    assert query_of(server.requests[0])["q"] == ["example"]


def test_duckduckgo_captcha_and_http_errors_say_what_to_do(server):
    server.route(
        "/html/", 200, "<html><form id='challenge-form' action='/anomaly.js'></form></html>"
    )
    server.route("/busy/", 429, "")
    text = search(WebSearchConfig(url=server.url("/html/"), provider="duckduckgo"), "q")
    assert "captcha" in text and "tools.web.search.apiKey" in text
    text = search(WebSearchConfig(url=server.url("/busy/"), provider="duckduckgo"), "q")
    assert "HTTP 429" in text and "tools.web.search.url" in text


def test_an_unreachable_backend_is_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    text = search(WebSearchConfig(url=f"http://127.0.0.1:{port}"), "q")
    assert text.startswith("Error: web search (searxng) failed: could not reach SearXNG")
    assert "\n" not in text


def test_no_results(server):
    server.route("/search", 200, json.dumps({"results": []}))
    assert search(WebSearchConfig(url=server.url("")), "zzz") == "No results for 'zzz'."


def test_misconfigured_backends_stop_start_up():
    with pytest.raises(ConfigError, match="apiKey"):
        make_web_search(WebConfig(search=WebSearchConfig(provider="brave")))
    with pytest.raises(ConfigError, match=r"tools\.web\.search\.url"):
        make_web_search(WebConfig(search=WebSearchConfig(provider="searxng")))
