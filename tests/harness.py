"""Runs the real nanobot CLI as a separate process, as an unprivileged user where possible.

The product refuses root. When the tests run as root (CI does), the CLI is started as the
`nanobot-test` user with Debian's /usr/bin/python3 and the checkout's nanobot.py launcher (the
venv's Python lives under /root, which that user cannot enter). When that is impossible the
CLI runs as root with --allow-root, and the reason is reported once.
"""

from __future__ import annotations

import functools
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEST_USER = "nanobot-test"
SYSTEM_PYTHON = "/usr/bin/python3"
ROOT_REFUSING = ("agent", "gateway")


@dataclass(frozen=True)
class Identity:
    argv: tuple[str, ...]
    uid: int | None  # None: run as ourselves
    gid: int | None
    reason: str


@functools.cache
def identity() -> Identity:
    if os.geteuid() != 0:
        return Identity((sys.executable, str(REPO / "nanobot.py")), None, None, "not root")
    try:
        pw = pwd.getpwnam(TEST_USER)
    except KeyError:
        return Identity(
            (sys.executable, str(REPO / "nanobot.py")), None, None, f"user {TEST_USER} missing"
        )
    probe = subprocess.run(
        [
            SYSTEM_PYTHON,
            "-c",
            "import requests, sys; sys.path.insert(0, sys.argv[1]); import nanobot",
            str(REPO),
        ],
        user=pw.pw_uid,
        group=pw.pw_gid,
        extra_groups=[],
        capture_output=True,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    if probe.returncode != 0:
        return Identity(
            (sys.executable, str(REPO / "nanobot.py")),
            None,
            None,
            f"{TEST_USER} cannot run {SYSTEM_PYTHON} with requests and the checkout: "
            + probe.stderr.decode(errors="replace").strip()[-200:],
        )
    return Identity((SYSTEM_PYTHON, str(REPO / "nanobot.py")), pw.pw_uid, pw.pw_gid, "unprivileged")


def as_root() -> bool:
    ident = identity()
    return os.geteuid() == 0 and ident.uid is None


class NanobotHome:
    """A throw-away NANOBOT_HOME the CLI's user owns; `run`/`popen` start the real CLI in it."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="nbtest-", dir="/tmp"))
        os.chmod(self.base, 0o755)
        self.path = self.base / "home"
        self.path.mkdir(mode=0o700)
        self.userhome = self.base / "user"
        self.userhome.mkdir(mode=0o700)
        self.chown(self.path, self.userhome)
        self.chown_one(self.base)

    def chown_one(self, target: Path) -> None:
        ident = identity()
        if ident.uid is not None:
            os.lchown(target, ident.uid, ident.gid)

    def chown(self, *targets: Path) -> None:
        ident = identity()
        if ident.uid is None:
            return
        for t in targets:
            for p in [t, *(t.rglob("*") if t.is_dir() else [])]:
                os.lchown(p, ident.uid, ident.gid)

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    def write_config(self, data: dict, mode: int = 0o600) -> Path:
        self.config.write_text(json.dumps(data, indent=2))
        os.chmod(self.config, mode)
        self.chown(self.config)
        return self.config

    def write_file(self, rel: str, text: str, mode: int = 0o600) -> Path:
        p = self.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        os.chmod(p, mode)
        self.chown(self.path)
        return p

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.userhome),
            "LANG": "C.UTF-8",
            "NANOBOT_HOME": str(self.path),
            "NANOBOT_RETRY_BASE_DELAY": "0.05",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        env.update(extra or {})
        return env

    def argv(self, args: list[str]) -> list[str]:
        args = list(args)
        if as_root() and args and args[0] in ROOT_REFUSING and "--allow-root" not in args:
            args.insert(1, "--allow-root")
        return [*identity().argv, *args]

    def _user_kwargs(self) -> dict:
        ident = identity()
        if ident.uid is None:
            return {}
        return {"user": ident.uid, "group": ident.gid, "extra_groups": []}

    def run(
        self, *args: str, env: dict | None = None, input: str | None = None, timeout: float = 60
    ):
        return subprocess.run(
            self.argv(list(args)),
            env=self.env(env),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=str(self.base),
            check=False,
            **self._user_kwargs(),
        )

    def popen(self, *args: str, env: dict | None = None, **kw) -> subprocess.Popen:
        return subprocess.Popen(
            self.argv(list(args)),
            env=self.env(env),
            cwd=str(self.base),
            **self._user_kwargs(),
            **kw,
        )

    def log_text(self) -> str:
        log = self.path / "logs" / "nanobot.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def all_written_text(self) -> str:
        """Everything the program wrote under NANOBOT_HOME (for secret-leak checks)."""
        out = []
        for p in self.path.rglob("*"):
            if p.is_file() and "credentials" not in p.parts and p.name != "config.json":
                out.append(p.read_bytes().decode("utf-8", "replace"))
        return "\n".join(out)

    def cleanup(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


class GatewayProcess:
    """A running `nanobot gateway`; output goes to a file so pipes never block it."""

    def __init__(
        self, home: NanobotHome, env: dict | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.home = home
        self.out_path = home.base / f"gateway-{time.monotonic_ns()}.out"
        self._out = open(self.out_path, "wb")  # noqa: SIM115 — closed in stop()
        self.proc = home.popen(
            "gateway", *args, env=env, stdout=self._out, stderr=subprocess.STDOUT
        )
        self.port: int | None = None

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 20) -> GatewayProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.output()
            m = re.search(r"local API listening on http://[^:]+:(\d+)", text)
            if m:
                self.port = int(m.group(1))
            if "gateway ready" in text:
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited with {self.proc.returncode}:\n{text}")
            time.sleep(0.05)
        raise AssertionError(f"gateway not ready after {timeout} s:\n{self.output()}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._out.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._out.close()


def thread_arenas(pid: int) -> int:
    """glibc's per-thread malloc arenas in a process: read-write mappings that start on a
    64 MiB boundary and run on as a reserved (---p) mapping to the next one."""
    rows = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            span, perms = line.split()[:2]
            lo, hi = (int(x, 16) for x in span.split("-"))
            rows.append((lo, hi, perms))
    heap = 64 << 20
    return sum(
        1
        for (lo, hi, perms), (lo2, hi2, perms2) in zip(rows, rows[1:], strict=False)
        if lo % heap == 0
        and perms == "rw-p"
        and lo2 == hi
        and perms2 == "---p"
        and hi2 == lo + heap
    )
