"""POST JSON to an LLM API with timeouts and bounded, jittered retries; `requests` loads lazily.

Environment: NANOBOT_RETRY_BASE_DELAY (float seconds, default 1.0) sets the first backoff step
when the caller passes no base_delay — the CLI's integration tests set it to 0.01 to run fast.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from nanobot.errors import ProviderError
from nanobot.security.redact import MASK, redact

log = logging.getLogger("nanobot.providers")

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})  # 529: Anthropic "overloaded"
DEFAULT_TIMEOUT = (10.0, 120.0)  # (connect, read) seconds
BASE_DELAY_ENV = "NANOBOT_RETRY_BASE_DELAY"
DEFAULT_BASE_DELAY = 1.0
EXCERPT_CHARS = 300
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key"})

# One Session per thread: connection reuse without sharing a pool across the executor's threads
# (a shared pool of 10 would discard connections when 50 turns call the LLM at once).
_local = threading.local()


def _session():
    session = getattr(_local, "session", None)
    if session is None:
        import requests

        session = _local.session = requests.Session()
    return session


def warm_up() -> None:
    """Import requests now (it takes tens of ms of CPU), e.g. before a gateway takes traffic."""
    import requests  # noqa: F401


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


def post_json(
    url: str,
    headers: dict[str, str],
    body: dict,
    *,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    max_attempts: int = 5,
    base_delay: float | None = None,
    max_delay: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    label: str = "",
) -> dict:
    """POST body as JSON and return the decoded JSON object of a 2xx answer.

    Retries 408/429/5xx/529, connection errors and timeouts up to max_attempts in all, waiting
    Retry-After when given (capped at max_delay) or a full-jitter exponential backoff from
    base_delay (None → NANOBOT_RETRY_BASE_DELAY or 1.0). Other statuses fail at once.
    Raises ProviderError whose message has the status and a redacted body excerpt, never the
    query string, the key or the headers. `label` (a provider name) only shapes messages.
    """
    import requests

    max_attempts = max(1, max_attempts)
    if base_delay is None:
        base_delay = env_base_delay()
    target = _target(url)
    name = label or "LLM API"
    secrets = _secret_values(headers)
    session = _session()
    failure = ""
    status: int | None = None
    for attempt in range(1, max_attempts + 1):
        wait = None
        try:
            resp = session.post(url, headers=headers, json=body, timeout=timeout)
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as e:
            # str(e) quotes the URL, so only the exception's type is reported.
            status, failure = None, f"{type(e).__name__} (no answer from the server)"
        except requests.RequestException as e:  # a bad URL or header: retrying cannot help
            where = f"providers.{label}" if label else "the provider's config"
            raise ProviderError(
                f"{name} request to {target} could not be sent ({type(e).__name__}) — "
                f"fix: check {where}.apiBase (an http(s) URL) and {where}.extraHeaders"
            ) from None
        else:
            status = resp.status_code
            if 200 <= status < 300:
                return _decode(resp, name, target, secrets)
            failure = f"HTTP {status}: {_excerpt(resp.text, secrets)}"
            if status not in RETRY_STATUSES:
                raise ProviderError(
                    f"{name} request to {target} failed: {failure}{_hint(status, label)}"
                )
            wait = parse_retry_after(resp.headers.get("Retry-After"))
        if attempt == max_attempts:
            break
        if wait is None:
            wait = random.uniform(0, min(max_delay, base_delay * 2 ** min(attempt - 1, 32)))
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
        sleep(wait)
    raise ProviderError(
        f"{name} request to {target} failed after {max_attempts} attempts: {failure}"
        f"{_hint(status, label)}"
    )


def _decode(resp, name: str, target: str, secrets: list[str]) -> dict:
    try:
        data = resp.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ProviderError(
            f"{name} request to {target} returned HTTP {resp.status_code} without a JSON object: "
            f"{_excerpt(resp.text, secrets)}"
        )
    return data
