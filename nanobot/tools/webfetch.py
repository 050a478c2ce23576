"""The guarded HTTP GET behind web_fetch: http/https only, every hop checked by the NetGuard and
connected to the address that was checked, with caps on size, time and redirects."""

from __future__ import annotations

import http.client
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from nanobot import __version__
from nanobot.security.netguard import (
    AddressRefused,
    NetGuard,
    PinnedHTTPConnection,
    PinnedHTTPSConnection,
)

REDIRECTS = (301, 302, 303, 307, 308)
USER_AGENT = f"nanobot/{__version__} (+web_fetch)"
_CHUNK = 65536


class FetchError(Exception):
    """The page could not be fetched; str() is the model-facing reason with what to do."""


@dataclass
class Page:
    url: str  # the final URL, after redirects
    status: int
    content_type: str
    body: bytes
    truncated: bool  # the body was cut at max_bytes


@dataclass
class FetchLimits:
    max_bytes: int = 2_000_000
    timeout: float = 20.0  # the whole fetch, every hop included
    max_redirects: int = 5


def check_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path+query) of an http(s) URL, or FetchError saying why not."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise FetchError(f"{url!r} is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchError(
            f"only http:// and https:// URLs can be fetched, not {scheme or 'a bare path'}:"
            " (for files in the workspace use read_file)"
        )
    if parts.username is not None or parts.password is not None:
        raise FetchError("URLs with a user name or password (user@host) are not fetched")
    host = parts.hostname or ""
    if not host:
        raise FetchError(f"{url!r} has no host; give a full http(s):// address")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return scheme, host, port or (443 if scheme == "https" else 80), path


class GuardedFetcher:
    """GET with the guard on every hop. Blocking: call it in a worker thread."""

    def __init__(
        self, guard: NetGuard, limits: FetchLimits, tls: ssl.SSLContext | None = None
    ) -> None:
        self.guard = guard
        self.limits = limits
        self._tls = tls

    @property
    def tls(self) -> ssl.SSLContext:
        """Made on the first https fetch: loading the system's CA certificates takes ~50 ms,
        which every start would otherwise pay."""
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def get(self, url: str) -> Page:
        deadline = time.monotonic() + self.limits.timeout
        for _ in range(self.limits.max_redirects + 1):
            status, location, page = self._hop(url, deadline)
            if page is not None:
                return page
            url = urljoin(url, location)
        raise FetchError(
            f"more than {self.limits.max_redirects} redirects (tools.web.fetch.maxRedirects); "
            f"the last one pointed to {url}"
        )

    def _hop(self, url: str, deadline: float) -> tuple[int, str, Page | None]:
        scheme, host, port, path = check_url(url)
        try:
            address = self.guard.check_host(host, port)
        except AddressRefused as exc:
            raise FetchError(f"refused {url}: {exc}") from None
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._timeout()
        if scheme == "https":
            conn = PinnedHTTPSConnection(host, port, address, left, self.tls)
        else:
            conn = PinnedHTTPConnection(host, port, address, left)
        try:
            conn.request(
                "GET",
                path,
                headers={
                    "User-Agent": USER_AGENT,
                    "Accept": "text/html,text/plain,application/json;q=0.9,*/*;q=0.5",
                    "Accept-Encoding": "identity",
                    "Connection": "close",
                },
            )
            resp = conn.getresponse()
            if resp.status in REDIRECTS:
                location = resp.getheader("Location", "")
                if not location:
                    raise FetchError(f"{url} answered {resp.status} without a Location")
                return resp.status, location, None
            body, cut = self._read(resp, conn, deadline)
            ctype = resp.getheader("Content-Type", "") or ""
            return resp.status, "", Page(url, resp.status, ctype, body, cut)
        except TimeoutError:
            raise self._timeout() from None
        except ssl.SSLError as exc:
            raise FetchError(f"TLS failed for {host}: {exc.reason or exc}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise FetchError(f"could not fetch {url}: {exc}") from None
        finally:
            conn.close()

    def _read(
        self, resp: http.client.HTTPResponse, conn: http.client.HTTPConnection, deadline: float
    ) -> tuple[bytes, bool]:
        chunks, size = [], 0
        limit = self.limits.max_bytes
        while size <= limit:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._timeout()
            if conn.sock is not None:
                conn.sock.settimeout(left)
            chunk = resp.read1(min(_CHUNK, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        body = b"".join(chunks)
        return body[:limit], size > limit

    def _timeout(self) -> FetchError:
        return FetchError(
            f"the fetch took longer than {self.limits.timeout:g} s (tools.web.fetch.timeout)"
        )
