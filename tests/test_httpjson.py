"""Proxies and CA bundles for both HTTP paths: the event loop's JSON calls (nanobot.ahttp, as
the Bot API and the model calls make them) and the requests sessions (uploads, downloads).
The proxy environment is honoured (read once per host), NO_PROXY too, an explicit proxy wins,
the JSON body arrives as UTF-8, and NaN is refused before sending."""

from __future__ import annotations

import asyncio

import pytest

from fakes.telegram_server import FakeTelegram
from nanobot import ahttp, httpjson
from nanobot.channels.telegram.botapi import BotAPI


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
    ahttp.environ_proxy.cache_clear()
    yield
    httpjson._environ_proxies.cache_clear()
    ahttp.environ_proxy.cache_clear()


def _call(url: str) -> dict:
    async def call() -> dict:
        client = ahttp.Client()
        try:
            return (await client.post_json(url, {"chat_id": 1, "text": "é"}, timeout=5)).json()
        finally:
            client.close()

    return asyncio.run(call())


async def _bot_call(api: BotAPI, method: str = "getMe", **params):
    try:
        return await api.call(method, params)
    finally:
        api.close()


def _requests_call(url: str) -> dict:
    s = httpjson.session()
    try:
        return s.get(url, timeout=5, proxies=httpjson.proxies_for(url)).json()
    finally:
        s.close()


@pytest.mark.parametrize("call", [_call, _requests_call])
def test_the_environment_proxy_carries_the_call(tg, monkeypatch, call):
    monkeypatch.setenv("HTTP_PROXY", tg.api_base)
    body = call(f"http://api.telegram.invalid/bot{tg.token}/getMe")
    assert body["ok"] is True and tg.proxied


@pytest.mark.parametrize("call", [_call, _requests_call])
def test_no_proxy_sends_directly(tg, monkeypatch, call):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert call(f"{tg.api_base}/bot{tg.token}/getMe")["ok"] is True
    assert not tg.proxied


def test_the_bot_api_takes_its_explicit_proxy(tg, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    me = asyncio.run(_bot_call(BotAPI(tg.token, "http://api.telegram.invalid", proxy=tg.api_base)))
    assert me["is_bot"] is True and tg.proxied


def test_an_explicit_proxy_wins_over_the_environment(tg, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    assert httpjson.proxies_for("http://example.invalid/x", tg.api_base) == {
        "http": tg.api_base,
        "https": tg.api_base,
    }


def test_the_body_arrives(tg):
    tg.push_message(5, "x")  # any method works; sendMessage records its params
    asyncio.run(_bot_call(BotAPI(tg.token, tg.api_base), "sendMessage", chat_id=5, text="héllo"))
    assert ("sendMessage", {"chat_id": 5, "text": "héllo"}) in tg.requests


def test_nan_is_refused_before_anything_is_sent(tg):
    with pytest.raises(ValueError):
        asyncio.run(ahttp.Client().post_json(f"{tg.api_base}/x", {"v": float("nan")}))
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
