"""The gateway's C allocator settings, in a fresh interpreter each (they are process-wide)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import thread_arenas
from nanobot.memtune import NO_TCACHE, tunables

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


def test_thread_caches_go_off_beside_other_tunables_unless_the_operator_chose():
    assert tunables("") == NO_TCACHE
    assert tunables("glibc.malloc.check=0") == f"glibc.malloc.check=0:{NO_TCACHE}"
    assert tunables("glibc.malloc.tcache_count=7") is None  # the operator's, or already set
    assert tunables(NO_TCACHE) is None  # the restarted process does not restart again


def test_the_program_starts_again_once_with_thread_caches_off_and_same_pid():
    program = (
        "import os, sys\n"
        "from nanobot.memtune import restart_without_thread_caches\n"
        "print(os.getpid(), os.environ.get('GLIBC_TUNABLES'), sys.argv[1:], flush=True)\n"
        "restart_without_thread_caches()\n"
        "print('ran on', flush=True)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    out = subprocess.run(
        [sys.executable, "-c", program, "arg"],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.splitlines()
    first, second, last = out
    pid = first.split()[0]
    assert first == f"{pid} None ['arg']"
    assert second == f"{pid} {NO_TCACHE} ['arg']"
    assert last == "ran on"
