"""The egress proxy of tools.exec.network "allowlist": the only way out of the exec sandbox.

The sandbox has a network namespace of its own (no interface but its loopback). Each exec
call gets a `Session`: a unix socket in a private folder, bound into the sandbox, where this
proxy (threads in the gateway process) answers. Inside, a small forwarder (egress_fwd.py)
listens on 127.0.0.1:3128 and HTTP_PROXY/HTTPS_PROXY point there, so curl, pip and git work
unchanged. The contract:

  * Only CONNECT host:port and plain-HTTP requests in absolute form (http://host/…) pass.
  * The host must be a name in tools.exec.allowedDomains (exact, or "*.suffix" for names
    below suffix). An IP address in any spelling is refused; so is every other name —
    before any DNS lookup, so a refused name leaks nothing through DNS.
  * An allowed name is resolved once here; every answer must be a public address
    (netguard.why_refused: no loopback, private, link-local, CGNAT, multicast, metadata …)
    and the connection goes to the address that was checked.
  * Every decision is audited (event "egress") with the command that asked; a refusal is a
    403 whose X-Nanobot-Egress header the forwarder turns into one clear line on stderr.
  * A session ends when the sandbox does: the command holds the write end of a pipe whose
    read end the session watches; the socket and its folder are removed then.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import selectors
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from nanobot.security.audit import get_audit
from nanobot.security.netguard import Resolver, SystemResolver, literal_address, why_refused
from nanobot.security.redact import redact

log = logging.getLogger("nanobot.security")

HEAD_LIMIT = 16_384
HEAD_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0
REFUSED_HEADER = "X-Nanobot-Egress"
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_HOP_HEADERS = (b"proxy-connection:", b"proxy-authorization:", b"connection:", b"keep-alive:")

Connector = Callable[[str, int, float], socket.socket]


def _connect(address: str, port: int, timeout: float) -> socket.socket:
    return socket.create_connection((address, port), timeout)


def parse_domains(entries: Iterable[str]) -> list[str]:
    """tools.exec.allowedDomains, normalised; ValueError names a bad entry and the fix."""
    out = []
    for raw in entries:
        entry = raw.strip().rstrip(".").lower()
        name = entry[2:] if entry.startswith("*.") else entry
        if not _valid_name(name) or literal_address(name) is not None:
            raise ValueError(
                f"tools.exec.allowedDomains: {raw!r} is not a domain name; write names like "
                '"pypi.org" or "*.githubusercontent.com" (no scheme, port, path or IP address)'
            )
        out.append(entry)
    return out


def _valid_name(name: str) -> bool:
    labels = name.split(".")
    return 0 < len(name) <= 253 and len(labels) >= 1 and all(map(_LABEL.fullmatch, labels))


class EgressProxy:
    """Decides and relays the sandbox's connections (see the module docstring)."""

    def __init__(
        self,
        allowed_domains: Iterable[str],
        resolver: Resolver | None = None,
        connect: Connector | None = None,
        runtime_dir: str | Path | None = None,
    ) -> None:
        """resolver and connect stand for DNS and the network (tests give scripted ones)."""
        self.allowed = parse_domains(allowed_domains)
        self.resolver = resolver or SystemResolver()
        self.connect = connect or _connect
        self.runtime_dir = runtime_dir

    # -- the decision ------------------------------------------------------------------------

    def allows_name(self, name: str) -> bool:
        return any(
            name.endswith(e[1:]) and len(name) > len(e) - 1 if e.startswith("*.") else name == e
            for e in self.allowed
        )

    def decide(self, host: str, port: int) -> tuple[str | None, str]:
        """(address to connect to, "") or (None, why refused). Resolves allowed names only."""
        name = host.strip().strip("[]").rstrip(".").lower()
        if literal_address(name) is not None:
            return None, "an IP address; only names in tools.exec.allowedDomains are reachable"
        if not _valid_name(name) or not 0 < port < 65536:
            return None, "not a valid host name and port"
        if not self.allows_name(name):
            return None, "not in tools.exec.allowedDomains"
        try:
            answers = self.resolver.resolve(name, port)
        except (OSError, UnicodeError, ValueError) as exc:
            return None, f"could not be resolved ({exc})"
        if not answers:
            return None, "has no address"
        for answer in answers:
            addr = literal_address(answer.split("%", 1)[0])
            reason = "an unreadable address" if addr is None else why_refused(addr)
            if reason:
                return None, f"resolves to {answer}, {reason}"
        return answers[0], ""

    # -- sessions ----------------------------------------------------------------------------

    def session(self, command: str) -> Session:
        """A new socket for one exec call; see Session."""
        return Session(self, command)

    def handle(self, conn: socket.socket, command: str) -> None:
        """Serve one connection from the sandbox (runs in its own thread)."""
        with contextlib.closing(conn):
            try:
                head, rest = _read_head(conn)
            except (OSError, ValueError) as exc:
                log.debug("egress: unreadable request: %s", exc)
                return
            request = _parse_request(head)
            if request is None:
                _refuse(conn, "?", 0, "only CONNECT and plain http:// requests pass this proxy")
                return
            method, host, port, forward = request
            address, reason = self.decide(host, port)
            self._audit(command, host, port, address, reason)
            if address is None:
                _refuse(conn, host, port, reason)
                return
            try:
                upstream = self.connect(address, port, CONNECT_TIMEOUT)
            except OSError as exc:
                _answer(conn, 502, f"could not connect to {host}:{port} ({exc.strerror or exc})")
                return
            with contextlib.closing(upstream):
                if method == "CONNECT":
                    conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                else:
                    upstream.sendall(forward)
                if rest:
                    upstream.sendall(rest)
                _relay(conn, upstream)

    def _audit(self, command: str, host: str, port: int, address: str | None, reason: str) -> None:
        fields = {"host": host[:255], "port": port, "command": redact(command)[:300]}
        if address is None:
            log.warning("egress proxy refused %s:%d: %s", host[:255], port, reason)
            get_audit().record("egress", decision="refused", reason=reason, **fields)
        else:
            get_audit().record("egress", decision="allowed", address=address, **fields)


class Session:
    """One exec call's way out: `path` is the socket to bind into the sandbox, `keep_fd` the
    descriptor the sandboxed command must inherit (the session ends when it closes)."""

    def __init__(self, proxy: EgressProxy, command: str) -> None:
        self.proxy, self.command = proxy, command
        self.folder = Path(tempfile.mkdtemp(prefix="nanobot-egress-", dir=proxy.runtime_dir))
        self.path = self.folder / "proxy.sock"
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._watch, self.keep_fd = os.pipe()
        try:
            self.listener.bind(str(self.path))
            self.listener.listen(64)
        except OSError:
            self.close()
            raise
        threading.Thread(target=self._serve, name="egress-session", daemon=True).start()

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ)
        sel.register(self._watch, selectors.EVENT_READ)
        try:
            while True:
                for key, _ in sel.select():
                    if key.fileobj == self._watch:
                        return  # every copy of keep_fd is closed: the sandbox ended
                    conn, _ = self.listener.accept()
                    threading.Thread(
                        target=self.proxy.handle, args=(conn, self.command), daemon=True
                    ).start()
        except OSError as exc:
            log.warning("egress session stopped: %s", exc)
        finally:
            sel.close()
            self.close()

    def close(self) -> None:
        self.listener.close()
        with contextlib.suppress(OSError):
            os.close(self._watch)
        shutil.rmtree(self.folder, ignore_errors=True)


# -- HTTP framing ------------------------------------------------------------------------------


def _read_head(conn: socket.socket) -> tuple[bytes, bytes]:
    conn.settimeout(HEAD_TIMEOUT)
    buf = b""
    while b"\r\n\r\n" not in buf:
        if len(buf) > HEAD_LIMIT:
            raise ValueError("request head too long")
        chunk = conn.recv(4096)
        if not chunk:
            raise ValueError("connection closed before the request head ended")
        buf += chunk
    conn.settimeout(None)
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def _parse_request(head: bytes) -> tuple[str, str, int, bytes] | None:
    """(method, host, port, head to send upstream) of a CONNECT or absolute-form http request."""
    line, *headers = head.split(b"\r\n")
    parts = line.decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    method, target, version = parts
    if method == "CONNECT":
        host, _, port = target.rpartition(":")
        return (method, host, int(port), b"") if port.isdigit() and host else None
    m = re.fullmatch(r"http://(\[[^\]/]+\]|[^/:?#]+)(?::(\d{1,5}))?([/?][^ ]*)?", target, re.I)
    if m is None:
        return None
    path = m.group(3) or "/"
    if path.startswith("?"):
        path = "/" + path
    kept = [h for h in headers if not h.lower().startswith(_HOP_HEADERS)]
    out = b"\r\n".join([f"{method} {path} {version}".encode("latin-1"), *kept])
    return method, m.group(1), int(m.group(2) or 80), out + b"\r\nConnection: close\r\n\r\n"


def _answer(conn: socket.socket, status: int, text: str, extra: str = "") -> None:
    body = (text + "\n").encode()
    reason = {403: "Forbidden", 400: "Bad Request", 502: "Bad Gateway"}[status]
    head = (
        f"HTTP/1.1 {status} {reason}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with contextlib.suppress(OSError):
        conn.sendall(head.encode() + body)


def _refuse(conn: socket.socket, host: str, port: int, reason: str) -> None:
    shown = "".join(c if c.isprintable() else "?" for c in f"{host[:255]}:{port}")
    text = f"nanobot egress: refused {shown}: {reason}"
    _answer(conn, 403, text, f"{REFUSED_HEADER}: refused\r\n")


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy both ways until both sides have finished sending."""
    sel = selectors.DefaultSelector()
    peers = {a: b, b: a}
    for s in peers:
        s.settimeout(None)
        sel.register(s, selectors.EVENT_READ)
    open_ = 2
    try:
        while open_:
            for key, _ in sel.select():
                src = key.fileobj
                try:
                    data = src.recv(65536)
                except OSError:
                    data = b""
                if data:
                    try:
                        peers[src].sendall(data)
                    except OSError:
                        return
                    continue
                sel.unregister(src)
                open_ -= 1
                with contextlib.suppress(OSError):
                    peers[src].shutdown(socket.SHUT_WR)
    finally:
        sel.close()
