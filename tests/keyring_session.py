"""A real Secret Service for the tests: gnome-keyring-daemon, unlocked, on a private D-Bus
session bus started by dbus-run-session, with its own HOME and XDG folders under /tmp.

The bus has no service folders, so nothing is activated behind the test's back (no second
keyring daemon, nothing written to the real HOME). `env` is what a client needs to reach it.
Start it as another user (uid/gid) to serve a CLI run as that user: a session bus only
accepts connections from its owner.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

TOOLS = ("dbus-run-session", "gnome-keyring-daemon", "secret-tool")
_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:tmpdir={tmp}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""
# The unlock password comes on stdin; the bus address goes to a file the test reads.
_SCRIPT = (
    'printf %s "$KR_PASSWORD" | gnome-keyring-daemon --unlock --components=secrets '
    '--foreground >"$KR_BASE/daemon.log" 2>&1 &\n'
    'echo $! >"$KR_BASE/daemon.pid"\n'
    'printf %s "$DBUS_SESSION_BUS_ADDRESS" >"$KR_BASE/address.tmp" && '
    'mv "$KR_BASE/address.tmp" "$KR_BASE/address"\n'
    "wait\n"
)


def missing_tools() -> list[str]:
    return [t for t in TOOLS if not shutil.which(t)]


class SecretService:
    """Start with start(), stop with stop(); `env` reaches the bus, `store`/`lookup` use it."""

    def __init__(self, uid: int | None = None, gid: int | None = None) -> None:
        self.uid, self.gid = uid, gid
        self.base = Path(tempfile.mkdtemp(prefix="nbkeyring-", dir="/tmp"))
        self.home = self.base / "home"
        self.runtime = self.base / "run"
        for d in (self.home, self.runtime):
            d.mkdir(mode=0o700)
        (self.base / "bus.conf").write_text(_BUS_CONFIG.format(tmp=self.base))
        if uid is not None:
            for p in (self.base, self.home, self.runtime, self.base / "bus.conf"):
                os.lchown(p, uid, gid)
        self.proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}

    def _base_env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "XDG_RUNTIME_DIR": str(self.runtime),
            "XDG_DATA_HOME": str(self.home / "data"),
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "XDG_CACHE_HOME": str(self.home / "cache"),
            "LANG": "C.UTF-8",
        }

    def _user(self) -> dict:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def start(self, timeout: float = 20.0) -> SecretService:
        env = {**self._base_env(), "KR_PASSWORD": "test-unlock", "KR_BASE": str(self.base)}
        self.proc = subprocess.Popen(
            [
                "dbus-run-session",
                f"--config-file={self.base / 'bus.conf'}",
                "--",
                "sh",
                "-c",
                _SCRIPT,
            ],
            env=env,
            cwd=str(self.base),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            **self._user(),
        )
        deadline = time.monotonic() + timeout
        address = self.base / "address"
        while not address.exists():
            self._alive_or_fail(deadline)
            time.sleep(0.05)
        self.env = {**self._base_env(), "DBUS_SESSION_BUS_ADDRESS": address.read_text()}
        while True:  # until the keyring owns its bus name: a lookup of nothing says "no entry"
            res = self.secret_tool("lookup", "service", "nanobot-probe", "username", "probe")
            if res.returncode == 1 and not res.stderr.strip():
                return self
            self._alive_or_fail(deadline)
            time.sleep(0.1)

    def _alive_or_fail(self, deadline: float) -> None:
        if self.proc.poll() is not None or time.monotonic() > deadline:
            log = self.base / "daemon.log"
            said = log.read_text(errors="replace")[-500:] if log.exists() else ""
            self.stop()
            raise RuntimeError(f"the test Secret Service did not start: {said}")

    def secret_tool(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["secret-tool", *args],
            env=self.env,
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
            **self._user(),
        )

    def store(self, service: str, account: str, secret: str) -> None:
        res = self.secret_tool(
            "store", "--label=test", "service", service, "username", account, stdin=secret
        )
        assert res.returncode == 0, res.stderr

    def lookup(self, service: str, account: str) -> str | None:
        res = self.secret_tool("lookup", "service", service, "username", account)
        return res.stdout if res.returncode == 0 else None

    def stop(self) -> None:
        """Stop the keyring daemon first: its shell then exits, and dbus-run-session stops the
        bus and reaps everything (killing the group at once would leave zombies behind)."""
        if self.proc is not None and self.proc.poll() is None:
            pid_file = self.base / "daemon.pid"
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        shutil.rmtree(self.base, ignore_errors=True)
