"""sdnotify against real AF_UNIX datagram sockets, the way systemd listens for them."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import tempfile
from pathlib import Path

import pytest

from nanobot import sdnotify


@pytest.fixture
def listener(monkeypatch):
    """A datagram socket at a short filesystem path (sun_path is limited to 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="sdn-", dir="/tmp") as d:
        path = str(Path(d) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        yield sock
        sock.close()


def drain(sock: socket.socket) -> list[bytes]:
    sock.setblocking(False)
    out = []
    while True:
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            return out


def test_ready_stopping_status_reach_the_socket(listener):
    assert sdnotify.ready() is True
    assert listener.recv(4096) == b"READY=1"
    assert sdnotify.status("serving 2 channels") is True
    assert listener.recv(4096) == b"STATUS=serving 2 channels"
    assert sdnotify.stopping() is True
    assert listener.recv(4096) == b"STOPPING=1"


def test_status_cannot_inject_another_assignment(listener):
    sdnotify.status("line one\nREADY=1")
    datagram = listener.recv(4096)
    assert datagram == b"STATUS=line one READY=1"
    assert b"\n" not in datagram


def test_abstract_namespace_socket(monkeypatch):
    name = f"nanobot-test-{secrets.token_hex(6)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.ready() is True
        assert sock.recv(4096) == b"READY=1"


def test_unset_socket_is_a_noop(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    assert sdnotify.ready() is False


def test_missing_socket_returns_false(monkeypatch, tmp_path):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert sdnotify.ready() is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "200000"}, 0.2),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
    ],
)
def test_watchdog_interval_from_environment(env, expected):
    assert sdnotify.Watchdog(env).interval == expected


def test_watchdog_pings_at_half_the_interval(listener):
    env = {"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}

    async def scenario():
        dog = sdnotify.Watchdog(env)
        dog.start(asyncio.get_running_loop())
        await asyncio.sleep(0.5)
        dog.stop()
        await asyncio.sleep(0.25)  # no more pings once stopped

    asyncio.run(scenario())
    pings = drain(listener)
    assert set(pings) == {b"WATCHDOG=1"}
    # Every 0.1 s for 0.5 s is about 5 pings; a loose lower bound, an upper bound that a
    # ping every 0.05 s (or one still running after stop) would exceed.
    assert 2 <= len(pings) <= 7


def test_watchdog_without_interval_does_nothing(listener):
    async def scenario():
        dog = sdnotify.Watchdog({})
        dog.start()
        await asyncio.sleep(0.1)
        dog.stop()

    asyncio.run(scenario())
    assert drain(listener) == []
