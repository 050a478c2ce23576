"""What the environment says about reaching a server: the proxy for an origin
(HTTPS_PROXY / HTTP_PROXY / ALL_PROXY, NO_PROXY; lower-case names first, as urllib reads
them) and the CA bundle requests would use."""

from __future__ import annotations

import base64
import functools
import ipaddress
import os
from urllib.parse import unquote, urlsplit


def proxy_auth(proxy: str) -> str:
    """The Proxy-Authorization header line (with its leading CRLF) for a proxy URL's user:pass."""
    p = urlsplit(proxy)
    if not p.username:
        return ""
    pair = f"{unquote(p.username)}:{unquote(p.password or '')}".encode()
    return f"\r\nProxy-Authorization: Basic {base64.b64encode(pair).decode()}"


def ca_bundle() -> str | None:
    """The CA file requests would use: the environment's, else certifi's, else None (the
    system's store)."""
    named = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if named:
        return named
    try:
        import certifi
    except ImportError:
        return None
    return certifi.where()


@functools.lru_cache(maxsize=64)
def environ_proxy(scheme: str, host: str, port: int) -> str:
    """The proxy URL the environment names for this origin ("" for none or NO_PROXY)."""
    proxy = _env(f"{scheme}_proxy") or _env("all_proxy")
    if not proxy or _bypassed(host, port, _env("no_proxy")):
        return ""
    return proxy if "://" in proxy else f"http://{proxy}"


def _env(name: str) -> str:
    """A proxy variable, the lower-case spelling first (set, even empty, it wins: as in urllib)."""
    value = os.environ.get(name)
    return value if value is not None else os.environ.get(name.upper(), "")


def _bypassed(host: str, port: int, no_proxy: str) -> bool:
    host = host.lower().strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in (e.strip().lower() for e in no_proxy.replace(" ", ",").split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, only_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if only_port and only_port != str(port):
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(name.strip("[]"), strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False
