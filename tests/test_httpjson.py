"""The lean JSON client: the proxy environment is honoured (read once per host), NO_PROXY too,
an explicit proxy wins, the JSON body arrives as UTF-8, and NaN is refused before sending."""

from __future__ import annotations

import pytest

from fakes.telegram_server import FakeTelegram
from nanobot import httpjson


@pytest.fixture
def tg():
    with FakeTelegram() as fake:
        yield fake


@pytest.fixture(autouse=True)
def clean_proxy_env(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    httpjson._environ_proxies.cache_clear()
    yield
    httpjson._environ_proxies.cache_clear()


def _call(url: str) -> dict:
    s = httpjson.session()
    try:
        r = httpjson.post_json(
            s, url, {"chat_id": 1, "text": "é"}, timeout=5, proxies=httpjson.proxies_for(url)
        )
        return r.json()
    finally:
        s.close()


def test_the_environment_proxy_carries_the_call(tg, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", tg.api_base)
    body = _call(f"http://api.telegram.invalid/bot{tg.token}/getMe")
    assert body["ok"] is True and tg.proxied


def test_no_proxy_sends_directly(tg, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert _call(f"{tg.api_base}/bot{tg.token}/getMe")["ok"] is True
    assert not tg.proxied


def test_an_explicit_proxy_wins_over_the_environment(tg, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    assert httpjson.proxies_for("http://example.invalid/x", tg.api_base) == {
        "http": tg.api_base,
        "https": tg.api_base,
    }


def test_the_body_arrives(tg):
    tg.push_message(5, "x")  # any method works; sendMessage records its params
    url = f"{tg.api_base}/bot{tg.token}/sendMessage"
    s = httpjson.session()
    try:
        r = httpjson.post_json(
            s, url, {"chat_id": 5, "text": "héllo"}, timeout=5, proxies={}, headers={"X-A": "1"}
        )
    finally:
        s.close()
    assert r.json()["ok"] is True
    assert ("sendMessage", {"chat_id": 5, "text": "héllo"}) in tg.requests


def test_nan_is_refused_before_anything_is_sent(tg):
    import requests

    s = httpjson.session()
    with pytest.raises(requests.exceptions.InvalidJSONError):
        httpjson.post_json(s, f"{tg.api_base}/x", {"v": float("nan")}, timeout=5, proxies={})
    s.close()
    assert tg.calls == []


def test_a_ca_bundle_in_the_environment_is_used(monkeypatch, tmp_path):
    bundle = tmp_path / "corp-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    assert httpjson.session().verify == str(bundle)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.setenv("CURL_CA_BUNDLE", str(bundle))
    assert httpjson.session().verify == str(bundle)
    monkeypatch.delenv("CURL_CA_BUNDLE")
    assert httpjson.session().verify is True
