"""POST JSON to an LLM API (plain or streamed) with timeouts and bounded, jittered retries.

Calls run on the event loop (nanobot.ahttp, a pool of keep-alive connections per loop); only
the optional context-window probe (get_json) uses requests, loaded when it runs.

Environment: NANOBOT_RETRY_BASE_DELAY (float seconds, default 1.0) sets the first backoff step
when the caller passes no base_delay — the CLI's integration tests set it to 0.01 to run fast.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from nanobot import httpjson
from nanobot.backoff import Backoff
from nanobot.errors import ProviderError
from nanobot.providers.base import ByIdentity
from nanobot.security.redact import MASK, redact

if TYPE_CHECKING:  # asyncio (and ssl with it) load when a call is made, not at start-up
    from nanobot import ahttp

log = logging.getLogger("nanobot.providers")

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})  # 529: Anthropic "overloaded"
DEFAULT_TIMEOUT = (10.0, 120.0)  # (connect, read) seconds
BASE_DELAY_ENV = "NANOBOT_RETRY_BASE_DELAY"
DEFAULT_BASE_DELAY = 1.0
EXCERPT_CHARS = 300
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key"})

POOL = 1024  # idle connections kept per model server: a burst of turns reuses them all


@functools.cache
def _probe_session():
    return httpjson.session()


def env_base_delay() -> float:
    """NANOBOT_RETRY_BASE_DELAY as a float ≥ 0, or 1.0 when unset or not a number."""
    raw = os.environ.get(BASE_DELAY_ENV, "").strip()
    if not raw:
        return DEFAULT_BASE_DELAY
    try:
        value = float(raw)
    except ValueError:
        log.warning(
            "%s=%r is not a number of seconds; using %s", BASE_DELAY_ENV, raw, DEFAULT_BASE_DELAY
        )
        return DEFAULT_BASE_DELAY
    return value if math.isfinite(value) and value >= 0 else DEFAULT_BASE_DELAY


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), None if unusable."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        import email.utils  # lazily: only an HTTP-date needs it, and it costs ~15 ms to load
        from datetime import UTC, datetime

        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def _target(url: str) -> str:
    """host[:port]/path of url — no user info, no query (keys sometimes travel there)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path}"


def _secret_values(headers: dict[str, str]) -> list[str]:
    out = []
    for name, value in headers.items():
        if name.lower() in _SECRET_HEADERS and value:
            out.append(value)
            scheme, _, token = value.partition(" ")
            if token and scheme.lower() in ("bearer", "basic"):
                out.append(token)
    return sorted(out, key=len, reverse=True)


def _excerpt(text: str, secrets: list[str]) -> str:
    """A short single-line, redacted excerpt of a response body (redact first, then cut)."""
    text = text[:4000]
    for secret in secrets:
        text = text.replace(secret, MASK)
    text = " ".join(redact(text).split())
    return text[:EXCERPT_CHARS] + ("…" if len(text) > EXCERPT_CHARS else "")


def _hint(status: int | None, label: str) -> str:
    where = f"providers.{label}" if label else "the provider's config"
    if status in (401, 403):
        return f" — fix: check {where}.apiKey (or its environment variable)"
    if status == 404:
        return f" — fix: check {where}.apiBase and agents.defaults.model"
    if status is None:
        return f" — fix: check {where}.apiBase and the network"
    return ""


def _host(url: str) -> str:
    parts = urlsplit(url)
    return (parts.hostname or "?") + (f":{parts.port}" if parts.port else "")


async def open_request(
    url: str,
    headers: dict[str, str],
    body: dict,
    *,
    stream: bool = False,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    max_attempts: int = 5,
    base_delay: float | None = None,
    max_delay: float = 30.0,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    label: str = "",
) -> ahttp.Response:
    """POST body as JSON and return the 2xx response (its body unread when stream).

    Retries 408/429/5xx/529 (not an exhausted quota), refused or dropped connections and
    connect timeouts, up to max_attempts in all, waiting Retry-After when given (capped at
    max_delay) or the one exponential backoff (nanobot.backoff) from base_delay (None →
    NANOBOT_RETRY_BASE_DELAY or 1.0). A read timeout is never retried: the server may still
    be generating, and on a single-slot local server a retry would queue behind it.
    Raises ProviderError (with kind and user_message) whose message has the status and a
    redacted body excerpt, never the query string, the key or the headers.
    `label` (a provider name) only shapes messages.
    """
    import asyncio

    from nanobot import ahttp
    from nanobot.providers import failures

    sleep = sleep or asyncio.sleep
    sent_headers = {"Content-Type": "application/json", **headers}
    max_attempts = max(1, max_attempts)
    if base_delay is None:
        base_delay = env_base_delay()
    target = _target(url)
    name = label or "LLM API"
    secrets = _secret_values(headers)
    failure = ""
    status: int | None = None
    text = ""
    for attempt in range(1, max_attempts + 1):
        wait = None
        try:
            resp = await ahttp.loop_client(POOL).request(
                "POST", url, encode_body(body), headers=sent_headers, timeout=timeout, stream=stream
            )
        except ahttp.ReadTimedOut:
            raise failures.timed_out(
                f"{name} request to {target}: no answer within the read timeout of "
                f"{timeout[1]:g} s (not retried: the server may still be working on it)",
                timeout[1],
                label,
                stream,
            ) from None
        except ahttp.TransportError as e:
            status, failure = None, f"{type(e).__name__} ({e})"
        except ValueError as e:  # a bad URL or header, or a body that is not JSON
            where = f"providers.{label}" if label else "the provider's config"
            raise failures.unreachable(
                f"{name} request to {target} could not be sent ({type(e).__name__}: {e}) — "
                f"fix: check {where}.apiBase (an http(s) URL) and {where}.extraHeaders",
                _host(url),
                label,
            ) from None
        else:
            status = resp.status
            if 200 <= status < 300:
                return resp
            if stream:
                await _read_error_body(resp, timeout[1])
            text = resp.text
            for secret in secrets:
                text = text.replace(secret, MASK)
            failure = f"HTTP {status}: {_excerpt(text, secrets)}"
            if status not in RETRY_STATUSES or failures.is_quota(status, text):
                kind, user = failures.classify_status(status, text, label)
                raise ProviderError(
                    f"{name} request to {target} failed: {failure}{_hint(status, label)}",
                    kind=kind,
                    user_message=user,
                )
            wait = parse_retry_after(resp.headers.get("retry-after"))
        if attempt == max_attempts:
            break
        if wait is None:
            wait = Backoff(base_delay, max_delay).delay(attempt - 1)
        wait = min(wait, max_delay)
        log.warning(
            "%s: %s from %s (attempt %d/%d); retrying in %.2f s",
            name,
            f"HTTP {status}" if status else failure.split(" ")[0],
            target,
            attempt,
            max_attempts,
            wait,
        )
        await sleep(wait)
    detail = (
        f"{name} request to {target} failed after {max_attempts} attempts: {failure}"
        f"{_hint(status, label)}"
    )
    if status is None:
        raise failures.unreachable(detail, _host(url), label)
    kind, user = failures.classify_status(status, text, label)
    raise ProviderError(detail, kind=kind, user_message=user)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, allow_nan=False, ensure_ascii=False)


_tools_json = ByIdentity(_dumps)


def encode_body(body: dict) -> bytes:
    """body as JSON (UTF-8). Its "tools" list, the same object on every call of a session and
    most of a small request, is encoded once and spliced in."""
    tools = body.get("tools")
    if not tools:
        return _dumps(body).encode()
    rest = _dumps({k: v for k, v in body.items() if k != "tools"})
    return f'{rest[:-1]}, "tools": {_tools_json(tools)}}}'.encode()


async def _read_error_body(resp: ahttp.Response, read_timeout: float) -> None:
    """An error answer's body (for its message), or as much as came before it broke."""
    from nanobot import ahttp

    try:
        await resp.read()
    except ahttp.TransportError:
        resp.close()


async def post_json(url: str, headers: dict[str, str], body: dict, **options) -> dict:
    """open_request(stream=False) and the decoded JSON object of its 2xx answer."""
    resp = await open_request(url, headers, body, **options)
    name = options.get("label") or "LLM API"
    return _decode(resp, name, _target(url), _secret_values(headers), options.get("label", ""))


async def stream_events(
    url: str,
    headers: dict[str, str],
    body: dict,
    on_event: Callable[[str, str], None],
    **options,
) -> dict | None:
    """POST a streaming request and feed each SSE (event, data) to on_event as it arrives.

    Returns None after the stream ends, or the decoded JSON object when the server ignored
    the stream flag and answered with one ordinary response (the non-streaming fallback).
    The read timeout applies to the gap between chunks, not to the whole answer; a gap
    longer than that raises ProviderError(kind="timeout"); a connection that breaks
    mid-stream raises kind="unreachable" (not retried: part of the answer may be shown).
    An exception raised by on_event closes the connection and propagates unchanged.
    """
    from nanobot import ahttp
    from nanobot.providers import failures
    from nanobot.providers.sse import EventSplitter

    label = options.get("label", "")
    name = label or "LLM API"
    target = _target(url)
    read_timeout = options.get("timeout", DEFAULT_TIMEOUT)[1]
    resp = await open_request(url, headers, body, stream=True, **options)
    try:
        if "text/event-stream" not in resp.headers.get("content-type", "").lower():
            try:
                await resp.read()
            except ahttp.TransportError as e:
                raise failures.unreachable(
                    f"{name} answer from {target} broke off ({e})", _host(url), label
                ) from None
            return _decode(resp, name, target, _secret_values(headers), label)
        events = EventSplitter()
        try:
            async for chunk in resp.chunks():
                for event, data in events.feed(chunk):
                    on_event(event, data)
        except ahttp.ReadTimedOut:
            raise failures.timed_out(
                f"{name} stream from {target} stalled: no data for {read_timeout:g} s",
                read_timeout,
                label,
                True,
            ) from None
        except ahttp.TransportError as e:
            raise failures.unreachable(
                f"{name} stream from {target} broke mid-answer ({e})",
                _host(url),
                label,
            ) from None
        for event, data in events.end():
            on_event(event, data)
    finally:
        resp.close()
    return None


def _decode(resp, name: str, target: str, secrets: list[str], label: str = "") -> dict:
    from nanobot.providers.failures import malformed

    try:
        data = resp.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise malformed(
            f"{name} request to {target} returned HTTP {resp.status} without a JSON object: "
            f"{_excerpt(resp.text, secrets)}",
            label,
        )
    return data


def get_json(url: str, headers: dict[str, str], timeout: tuple[float, float]) -> object | None:
    """GET url and return its JSON, or None on any failure (for optional probes; no retries)."""
    import requests

    try:
        resp = _probe_session().get(
            url, headers=headers, timeout=timeout, proxies=httpjson.proxies_for(url)
        )
        if resp.status_code != 200:
            return None
        return resp.json()
    except (requests.RequestException, ValueError):
        return None
