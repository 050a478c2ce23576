"""JSON POSTs with requests, lean enough for the hot paths (model calls, the Telegram Bot API).

`requests.Session.post()` merges session cookies, looks for ~/.netrc and scans the proxy
environment on every call: measured here, that is over a third of its CPU time, and a gateway
makes two or three such calls per turn. The sessions made here ignore the environment
(`trust_env` off); the proxy for a URL is read from it once per scheme and host instead
(`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` mean what they mean to requests), or
given explicitly, and a CA bundle in `REQUESTS_CA_BUNDLE` or `CURL_CA_BUNDLE` once per session;
each call sends a request prepared without the session's merging.
requests is imported on first use, so a command that never calls out does not pay for it.
"""

from __future__ import annotations

import functools
import json
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import requests


def session(pool: int = 10) -> requests.Session:
    """A Session that keeps up to `pool` idle connections per host and ignores the environment."""
    import requests
    from requests.adapters import HTTPAdapter

    s = requests.Session()
    s.trust_env = False
    # What trust_env would have read on every call: a CA bundle named in the environment.
    s.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


def proxies_for(url: str, explicit: str = "") -> dict[str, str]:
    """The proxies for url: `explicit` when set, else the environment's (read once per host)."""
    if explicit:
        return {"http": explicit, "https": explicit}
    parts = urlsplit(url)
    return _environ_proxies(f"{parts.scheme}://{parts.netloc}")


@functools.lru_cache(maxsize=64)
def _environ_proxies(origin: str) -> dict[str, str]:
    from requests.utils import get_environ_proxies

    return dict(get_environ_proxies(origin))


def post_json(
    s: requests.Session,
    url: str,
    body: Any,
    *,
    timeout: float | tuple[float, float],
    proxies: dict[str, str],
    headers: dict[str, str] | None = None,
    stream: bool = False,
) -> requests.Response:
    """POST body as JSON (UTF-8) and return the response; raises what Session.post raises."""
    import requests

    try:
        data = json.dumps(body, allow_nan=False, ensure_ascii=False).encode()
    except ValueError as e:  # NaN or infinity: not JSON (requests raises the same)
        raise requests.exceptions.InvalidJSONError(e) from None
    merged = requests.structures.CaseInsensitiveDict(s.headers)  # User-Agent, Accept, …
    merged["Content-Type"] = "application/json"
    merged.update(headers or {})
    prepared = requests.PreparedRequest()
    prepared.prepare(method="POST", url=url, headers=merged, data=data)
    return s.send(prepared, timeout=timeout, proxies=proxies, stream=stream)
