"""No process outlives an exec call with tools.exec.sandbox "none": daemonising commands of every
kind, run through the real ExecTool, must leave nothing behind — on exit and on timeout."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from nanobot.config.schema import ExecConfig
from nanobot.security.pathpolicy import PathPolicy
from nanobot.security.sandbox import BwrapSandbox, NoSandbox, bwrap_status
from nanobot.tools.base import ToolContext
from nanobot.tools.shell import ExecTool

BASE = 41000 + os.getpid() % 1000 * 7  # sleep lengths that name this test run's processes


def procs_with(tag: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if tag in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


def survivors(tag: str, wait: float = 3.0) -> list[int]:
    deadline = time.monotonic() + wait
    while (found := procs_with(tag)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


@pytest.fixture
def dirs(tmp_path):
    ws, home = tmp_path / "ws", tmp_path / "home"
    ws.mkdir()
    home.mkdir()
    return ws, home


def run(dirs, sandbox, command: str, timeout: int = 20):
    ws, home = dirs
    cfg = ExecConfig(timeout=timeout)
    tool = ExecTool(PathPolicy(ws, True, home), cfg, sandbox)
    return asyncio.run(tool.execute(ToolContext(), command=command))


DAEMONS = {
    "setsid-background": "setsid sleep {n} &",
    "setsid-fork": "setsid -f sleep {n}",
    "double-fork": "(sh -c 'sleep {n} &' &)",
    "nohup": "nohup sleep {n} >/dev/null 2>&1 &",
    "ignores-term-and-hup": "trap '' TERM HUP; setsid sh -c 'trap \"\" TERM HUP; sleep {n}' &",
    "python-setsid-double-fork": (
        'python3 -c "import os, time\n'
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        os.execvp('sleep', ['sleep', '{n}'])\n"
        '    os._exit(0)"'
    ),
    "many-at-once": "for i in 1 2 3 4 5 6 7 8; do setsid sleep {n} & done",
}


@pytest.mark.parametrize("kind", list(DAEMONS))
def test_daemonising_commands_do_not_survive_the_call(dirs, kind):
    n = BASE + list(DAEMONS).index(kind)
    try:
        result = run(dirs, NoSandbox(), DAEMONS[kind].format(n=n) + "\nsleep 0.3\necho started")
        assert "started" in result.text, result.text
        assert survivors(f"sleep {n}") == []
    finally:
        for pid in procs_with(f"sleep {n}"):
            os.kill(pid, signal.SIGKILL)


def test_timeout_kills_daemons_too(dirs):
    n = BASE + 100
    try:
        start = time.monotonic()
        result = run(dirs, NoSandbox(), f"setsid sleep {n} & (setsid sleep {n} &); sleep 60", 2)
        assert result.text.startswith("Error: command timed out after 2s")
        assert time.monotonic() - start < 8
        assert survivors(f"sleep {n}") == []
    finally:
        for pid in procs_with(f"sleep {n}"):
            os.kill(pid, signal.SIGKILL)


def test_exit_status_and_output_pass_through(dirs):
    assert run(dirs, NoSandbox(), "echo out; echo err >&2; exit 3").text == "out\nerr\nExit code: 3"
    assert "Exit code" not in run(dirs, NoSandbox(), "true").text


def test_without_the_reaper_setsid_escapes(dirs):
    """The control: what the reaper prevents (the process-group kill alone misses it)."""

    class Bare:
        name = "none"

        def wrap(self, argv, cwd, env):
            return list(argv), dict(env), []

        def explain(self, rc, out):
            return None

    n = BASE + 200
    try:
        run(dirs, Bare(), f"setsid sleep {n} & sleep 0.3; echo started")
        assert survivors(f"sleep {n}", wait=0.5) != []
    finally:
        for pid in procs_with(f"sleep {n}"):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not bwrap_status()[0], reason="bubblewrap cannot run here")
def test_bwrap_sandbox_leaves_nothing_either(dirs):
    ws, home = dirs
    n = BASE + 300
    try:
        run(dirs, BwrapSandbox(ws, home), DAEMONS["python-setsid-double-fork"].format(n=n))
        assert survivors(f"sleep {n}") == []
    finally:
        for pid in procs_with(f"sleep {n}"):
            os.kill(pid, signal.SIGKILL)
