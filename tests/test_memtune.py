"""The gateway's C allocator settings, in a fresh interpreter each (they are process-wide)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import thread_arenas

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self/maps") or os.uname().sysname != "Linux",
    reason="glibc malloc arenas are read from /proc/PID/maps on Linux",
)

# Twelve threads, all alive at once (an exited thread's arena goes to the next new thread),
# allocate and keep blocks; then the process reports itself and waits.
PROGRAM = """
import sys, threading
from nanobot.memtune import release, tune_malloc
print(tune_malloc(), flush=True)
kept = []
together = threading.Barrier(12)
def work():
    together.wait()
    kept.append([bytearray(600) for _ in range(2000)])
    together.wait()
threads = [threading.Thread(target=work) for _ in range(12)]
for t in threads: t.start()
for t in threads: t.join()
print(release(), flush=True)
sys.stdin.read()
"""


def arenas_with(env: dict[str, str]) -> tuple[list[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", PROGRAM],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")},
            "PYTHONPATH": str(ROOT),
            **env,
        },
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        said = [proc.stdout.readline().strip(), proc.stdout.readline().strip()]
        return said, thread_arenas(proc.pid)
    finally:
        proc.communicate("", timeout=10)


def test_two_arenas_for_many_threads_and_free_pages_released():
    said, arenas = arenas_with({})
    assert said == ["True", "True"]
    assert arenas <= 1  # the main arena is the other one


def test_an_operators_arena_setting_is_kept():
    said, arenas = arenas_with({"MALLOC_ARENA_MAX": "8"})
    assert said[0] == "True" and arenas > 1
