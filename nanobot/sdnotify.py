"""systemd's notify protocol: READY/STOPPING/STATUS messages and the watchdog keep-alive."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger("nanobot.sdnotify")

SEND_TIMEOUT = 1.0  # systemd drains the socket quickly; never stall the event loop for long


def notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1") to $NOTIFY_SOCKET; False when unset or the send failed.

    A path socket is used as is; "@name" is Linux's abstract namespace ("\\0name").
    """
    address = os.environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        return False  # unset, or a transport we do not speak (vsock)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(SEND_TIMEOUT)
            sock.connect(address)
            sock.send(state.encode())
    except OSError as e:
        log.warning("sd_notify %s failed: %s", state.split("=", 1)[0], e)
        return False
    return True


def ready() -> bool:
    """Tell systemd start-up is complete (Type=notify units leave "activating")."""
    return notify("READY=1")


def stopping() -> bool:
    """Tell systemd a clean shutdown has begun."""
    return notify("STOPPING=1")


def status(text: str) -> bool:
    """Set the one-line status `systemctl status` shows (newlines would start new fields)."""
    return notify("STATUS=" + " ".join(text.splitlines()))


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """WatchdogSec in seconds from WATCHDOG_USEC, or None when unset, invalid, or meant for
    another process (WATCHDOG_PID set and not ours)."""
    env = os.environ if environ is None else environ
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not _is_number(usec) or int(usec) == 0:
        return None
    if pid and (not _is_number(pid) or int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


class Watchdog:
    """Sends WATCHDOG=1 every interval/2 from an asyncio task, so systemd restarts the service
    when the event loop stops turning. A no-op when the unit has no WatchdogSec."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        self.interval = watchdog_interval(environ)
        self._task: asyncio.Task | None = None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start pinging on `loop` (default: the running loop); call from the loop's thread."""
        if self.interval is None or self._task is not None:
            return
        loop = loop or asyncio.get_running_loop()
        self._task = loop.create_task(self._run(self.interval / 2), name="sd-watchdog")

    def stop(self) -> None:
        """Stop pinging (safe to call when never started)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    async def _run(self, period: float) -> None:
        while True:
            notify("WATCHDOG=1")
            await asyncio.sleep(period)
