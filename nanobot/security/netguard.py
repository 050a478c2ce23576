"""The SSRF guard: which network addresses web_fetch may reach, and a connection pinned to one.

Contract:
  * A host is resolved ONCE (`Resolver.resolve`); every address of the answer is checked and the
    connection goes to a checked address — there is no second lookup a rebinding DNS server
    could answer differently.
  * The check works on the binary address, so every spelling of it is judged alike: decimal
    (2130706433), octal (0177.0.0.1), hex (0x7f000001), short (127.1), IPv4-mapped, -compatible
    and -translated IPv6 (::ffff:127.0.0.1, ::127.0.0.1, 64:ff9b::7f00:1), 6to4 (2002:7f00:1::)
    and Teredo forms are unwrapped to the IPv4 address inside.
  * Refused: loopback, private (RFC 1918, ULA), link-local, CGNAT (100.64/10), multicast,
    unspecified, reserved and documentation ranges — anything Python's ipaddress does not call
    global — and the cloud metadata addresses. `localhost` and `*.localhost` are refused by name.
  * `allowed` networks (tools.web.allowedPrivateNetworks) lift the refusal for their
    addresses, except metadata and unspecified addresses, which no setting allows.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from typing import Protocol

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Instance metadata services (AWS, GCP, Azure, OpenStack; AWS IPv6; Alibaba; Oracle).
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "192.0.0.192")
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


class AddressRefused(ValueError):
    """A URL's host or address the guard will not connect to; str() says why and the fix."""


class Resolver(Protocol):
    """Turns a host name into addresses (the DNS seam: tests put a scripted one here)."""

    def resolve(self, host: str, port: int) -> list[str]: ...


class SystemResolver:
    """The host's resolver (getaddrinfo), TCP addresses only."""

    def resolve(self, host: str, port: int) -> list[str]:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


def parse_networks(cidrs: Iterable[str]) -> list[Network]:
    """tools.web.allowedPrivateNetworks as networks; ValueError names the bad entry."""
    out = []
    for cidr in cidrs:
        try:
            out.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"tools.web.allowedPrivateNetworks: {cidr!r} is not a network; write CIDRs "
                'like "192.168.1.0/24" or "10.0.0.5/32"'
            ) from None
    return out


def literal_address(host: str) -> IPAddress | None:
    """The address a host written as a number means (any IPv4 spelling inet_aton accepts, or
    IPv6), or None for a name."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host) and host[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def embedded_ipv4(addr: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv6 address that carries one, else None."""
    if isinstance(addr, ipaddress.IPv4Address):
        return None
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]
    if addr in _NAT64 or addr in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if int(addr) >> 32 == 0 and int(addr) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(int(addr))
    return None


def why_refused(addr: IPAddress, allowed: Iterable[Network] = ()) -> str | None:
    """None when web_fetch may connect to addr, else the reason in a few words."""
    inner = embedded_ipv4(addr)
    if inner is not None:
        reason = why_refused(inner, allowed)
        return f"{reason} (written as IPv6 {addr})" if reason else None
    if addr in METADATA:
        return "a cloud metadata address"
    if addr.is_unspecified:
        return "the unspecified address"
    if any(addr.version == net.version and addr in net for net in allowed):
        return None
    for test, reason in (
        (addr.is_loopback, "a loopback address"),
        (addr.is_link_local, "a link-local address"),
        (addr.is_multicast, "a multicast address"),
        (addr in _CGNAT, "a carrier-grade NAT (100.64.0.0/10) address"),
        (addr.is_private, "a private network address"),
        (addr.is_reserved, "a reserved address"),
        (not addr.is_global, "not a public address"),
    ):
        if test:
            return reason
    return None


class NetGuard:
    """Resolves a host once and picks the address to connect to, or raises AddressRefused."""

    def __init__(self, allowed: Iterable[Network] = (), resolver: Resolver | None = None) -> None:
        self.allowed = list(allowed)
        self.resolver = resolver or SystemResolver()

    def check_host(self, host: str, port: int) -> str:
        """The one checked address to connect to for host (every answer must pass)."""
        name = host.strip("[]").rstrip(".").lower()
        if not name:
            raise AddressRefused("the URL has no host; give a full http(s):// address")
        if name == "localhost" or name.endswith(".localhost"):
            raise AddressRefused(f"{host} names this machine (localhost); only public hosts")
        literal = literal_address(name)
        if literal is not None:
            answers = [literal]
        else:
            try:
                answers = [
                    ipaddress.ip_address(a.split("%", 1)[0])
                    for a in self.resolver.resolve(name, port)
                ]
            except (OSError, UnicodeError, ValueError) as exc:
                raise AddressRefused(
                    f"could not resolve {host} ({exc}); check the address"
                ) from None
            if not answers:
                raise AddressRefused(f"{host} has no address; check the address")
        for addr in answers:
            reason = why_refused(addr, self.allowed)
            if reason:
                shown = host if literal is not None and str(literal) == name else f"{host} ({addr})"
                raise AddressRefused(
                    f"{shown} is {reason}; web_fetch reaches only public addresses "
                    "(an operator can allow a private network in tools.web.allowedPrivateNetworks)"
                )
        return str(answers[0])


class PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to `address` while Host says `host`: no lookup of its own."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to `address`; SNI and certificate checked against `host`."""

    def __init__(
        self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.address = address
        self.tls = context

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        try:
            self.sock = self.tls.wrap_socket(raw, server_hostname=self.host.strip("[]"))
        except (OSError, ssl.SSLError):
            raw.close()
            raise
