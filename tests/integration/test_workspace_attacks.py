"""Hostile workspace files planted by a real sandboxed `exec`, then the next turn's prompt.

Each case: turn 1 — the scripted model runs one exec in the bubblewrap sandbox that plants a link,
FIFO, device or giant file where a bootstrap file is read; turn 2 — a fresh CLI process builds its
prompt. The second turn must answer in time, send no byte of what the plant points at, stay small
in memory, and log and audit the refusal.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
import time

import pytest

from fakes.llm_server import ScriptedLLMServer, reply, tool_call
from nanobot.security.sandbox import bwrap_status

KEY = "sk-test-wsattack-0123456789abcdef"
CONFIG_MARK = "CONFIG-MARK-5b7e"
SESSION_MARK = "OTHER-CHAT-MARK-81c2"
ENV_MARK = "ENVIRON-MARK-c93a"
MEMORY_MARK = "LINKED-MEMORY-MARK-4410"
MARKS = (CONFIG_MARK, SESSION_MARK, ENV_MARK, MEMORY_MARK)
MAX_RSS_MIB = 200  # the CLI needs ~40 MiB; reading a 1 GB file or /dev/zero would blow past this
TURN_TIMEOUT = 30

pytestmark = pytest.mark.skipif(not bwrap_status()[0], reason="bubblewrap cannot run here")


def _plants(home):
    """(id, shell command run inside the sandbox, host-side plant when the sandbox refuses it)."""

    def device(ws):
        if not (ws / "TOOLS.md").exists() and os.geteuid() == 0:
            os.mknod(ws / "TOOLS.md", stat.S_IFCHR | 0o644, os.makedev(1, 5))

    def hardlink(ws):
        if not (ws / "AGENTS.md").exists():
            os.link(home / "config.json", ws / "AGENTS.md")

    return [
        ("link-to-config", f"mv AGENTS.md AGENTS.old && ln -s {home}/config.json AGENTS.md", None),
        (
            "link-to-session",
            f"mv SOUL.md SOUL.old && ln -s {home}/sessions/telegram_42.jsonl SOUL.md",
            None,
        ),
        (  # spelled so the guard's heuristics do not spot it, as an attacker would
            "link-to-environ",
            'mv USER.md USER.old && python3 -c "import os; '
            "os.symlink('/proc/self/env' + 'iron', 'USER.md')\"",
            None,
        ),
        ("linked-memory-dir", f"mv memory memory.old && ln -s {home}/secretdir memory", None),
        ("fifo", "mv TOOLS.md TOOLS.old && mkfifo TOOLS.md", None),
        ("link-to-dev-zero", "mv TOOLS.md TOOLS.old && ln -s /dev/zero TOOLS.md", None),
        (
            "device-node",
            "mv TOOLS.md TOOLS.old; mknod TOOLS.md c 1 5 || echo MKNOD-REFUSED",
            device,
        ),
        (
            "hard-link-to-config",
            f"mv AGENTS.md AGENTS.old; ln {home}/config.json AGENTS.md || echo NO",
            hardlink,
        ),
        (
            "sparse-1GB",
            "mv AGENTS.md AGENTS.old && truncate -s 1G AGENTS.md && ls -ls AGENTS.md",
            None,
        ),
    ]


def run_measured(nb, *args, env):
    """(returncode, stdout, peak RSS MiB, seconds) of one CLI run, killed after TURN_TIMEOUT."""
    out_path = nb.base / f"out-{time.monotonic_ns()}"
    with open(out_path, "wb") as out:
        proc = nb.popen(*args, env=env, stdout=out, stderr=subprocess.STDOUT)
    killer = threading.Timer(TURN_TIMEOUT, proc.kill)
    killer.start()
    start = time.monotonic()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, out_path.read_text(), usage.ru_maxrss / 1024, time.monotonic() - start


@pytest.mark.parametrize("case", range(9), ids=[p[0] for p in _plants("H")])
def test_planted_file_neither_leaks_hangs_nor_grows_memory(nb, case):
    name, command, host_plant = _plants(nb.path)[case]
    nb.write_config(
        {
            "tools": {"exec": {"sandbox": "bwrap"}},
            "channels": {"telegram": {"allowFrom": [CONFIG_MARK]}},
        }
    )
    nb.write_file(
        "sessions/telegram_42.jsonl", json.dumps({"role": "user", "content": SESSION_MARK})
    )
    nb.write_file("secretdir/MEMORY.md", MEMORY_MARK)
    with ScriptedLLMServer("openai") as llm:
        env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": llm.url, "NB_MARK": ENV_MARK}
        llm.script([tool_call("exec", {"command": command}), reply("planted"), reply("fine")])
        rc, out, _, _ = run_measured(nb, "agent", "-s", "plant", "-m", "plant it", env=env)
        assert rc == 0, out
        planted = llm.requests[1].json["messages"][-1]["content"]
        assert "blocked" not in planted and "Exit code" not in planted, planted
        ws = nb.path / "workspace"
        if host_plant is not None:
            assert "REFUSED" in planted or "NO" in planted or "Operation not permitted" in planted
            host_plant(ws)  # what a sandbox-less exec could do; the reader must hold anyway
        rc, out, rss, took = run_measured(nb, "agent", "-s", "next", "-m", "hello", env=env)
        sent = json.dumps(llm.requests[-1].json)
    assert rc == 0 and "fine" in out, out
    assert took < TURN_TIMEOUT - 5
    assert rss < MAX_RSS_MIB, f"{name}: peak RSS {rss:.0f} MiB"
    for mark in MARKS:
        assert mark not in sent, f"{name}: {mark} reached the model"
        assert mark not in out
    if name == "device-node" and not (ws / "TOOLS.md").exists():
        pytest.skip("no device node could be planted (not root)")
    assert "skipped:" in nb.log_text()
    trail = (nb.path / "logs" / "audit.jsonl").read_text()
    assert '"workspace_file_refused"' in trail
