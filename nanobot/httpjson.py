"""requests sessions for what does not run on the event loop (Bot API file uploads and
downloads, the context-window probe); the hot paths use nanobot.ahttp.

`requests.Session.post()` looks for ~/.netrc and scans the proxy environment on every call.
The sessions made here ignore the environment (`trust_env` off); the proxy for a URL is read
from it once per scheme and host instead (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and
`NO_PROXY` mean what they mean to requests), or given explicitly, and a CA bundle in
`REQUESTS_CA_BUNDLE` or `CURL_CA_BUNDLE` once per session.
requests is imported on first use, so a command that never calls out does not pay for it.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING
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
