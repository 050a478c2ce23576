"""Resource limits: a command that hogs memory, forks without end or fills the workspace is
contained, and the gateway keeps answering (run by deploy/test/run.sh).

The limits come from deploy/test/vars.yml (small on purpose). Each runaway command runs as an
agent turn through the scripted model ("exec: CMD"), so it really runs inside bubblewrap
inside the hardened unit, as a prompt-injected command would.
"""

from __future__ import annotations

import shlex
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.deploy

WORKSPACE = "/var/lib/nanobot/.nanobot/workspace"
SIZES = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def _bytes(size: str) -> int:
    return int(size[:-1]) * SIZES[size[-1]] if size[-1] in SIZES else int(size)


def _props(host, *names: str) -> dict[str, str]:
    out = host.check_output("systemctl show nanobot.service " + " ".join(f"-p {n}" for n in names))
    return dict(line.split("=", 1) for line in out.splitlines())


def _healthz_while(http, work, sample=None) -> tuple[object, list[int]]:
    """Run work() in a thread and poll /healthz (then sample(status)) every 0.5 s until it
    returns; work()'s result and the statuses."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(work)
        statuses = []
        while not future.done():
            status, _ = http("GET", "http://127.0.0.1:18790/healthz")
            statuses.append(status)
            if sample is not None:
                sample(status)
            time.sleep(0.5)
        return future.result(), statuses


def _cgroup_enforces(host, main_pid: int, controller: str, v2_file: str) -> bool:
    """Whether the service has its own cgroup for this controller (not the case in a
    container on a host with the legacy cgroup v1 hierarchy, where they are read-only)."""
    cgroups = host.file(f"/proc/{main_pid}/cgroup").content_string
    for line in cgroups.splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(",") and path.endswith("/nanobot.service"):
            return True
        v2_file_path = f"/sys/fs/cgroup{path}/{v2_file}"
        if (
            controllers == ""
            and path.endswith("/nanobot.service")
            and host.file(v2_file_path).exists
        ):
            return True
    return False


def test_limits_are_set(host, test_vars):
    props = _props(
        host,
        "MemoryMax",
        "MemoryHigh",
        "TasksMax",
        "LimitNPROC",
        "CPUQuotaPerSecUSec",
        "LimitCORE",
        "LimitFSIZE",
        "OOMPolicy",
        "RestartPreventExitStatus",
        "StartLimitBurst",
    )
    assert int(props["MemoryMax"]) == _bytes(test_vars["nanobot_memory_max"])
    assert int(props["MemoryHigh"]) == _bytes(test_vars["nanobot_memory_high"])
    assert int(props["TasksMax"]) == test_vars["nanobot_tasks_max"]
    assert int(props["LimitNPROC"]) == test_vars["nanobot_tasks_max"]
    assert props["CPUQuotaPerSecUSec"] == "1s", "CPUQuota=100%"
    assert props["LimitCORE"] == "0"
    assert int(props["LimitFSIZE"]) == _bytes(test_vars["nanobot_limit_fsize"])
    assert props["OOMPolicy"] == "continue"
    assert props["RestartPreventExitStatus"] == "2"
    assert props["StartLimitBurst"] == "5"


def test_workspace_is_its_own_filesystem(host, test_vars):
    mount = host.check_output(f"findmnt -n -b -o FSTYPE,SOURCE,OPTIONS,SIZE {WORKSPACE}")
    fstype, source, options, size = mount.split()
    assert fstype == "ext4" and source.startswith("/dev/loop"), mount
    assert {"nodev", "nosuid"} <= set(options.split(","))
    image = host.file("/var/lib/nanobot-workspace.img")
    assert (image.user, image.mode) == ("root", 0o600)
    assert image.size == _bytes(test_vars["nanobot_workspace_size"])
    assert 0 < int(size) <= image.size
    root_fs = host.check_output("findmnt -n -o SOURCE --target /var/lib/nanobot/.nanobot")
    assert root_fs != source, "the state folder must not be on the workspace filesystem"


def test_full_workspace_does_not_starve_the_state(host, http, turn, test_vars):
    size_mb = _bytes(test_vars["nanobot_workspace_size"]) >> 20
    reply = turn(f"exec: head -c {size_mb * 2}M /dev/zero > fill; ls -l fill")
    assert "No space left on device" in reply, reply
    try:
        # The gateway still answers and still writes its session and audit files.
        status, _ = http("GET", "http://127.0.0.1:18790/healthz")
        assert status == 200
        probe = turn("exec: echo state-still-writable")
        assert "state-still-writable" in probe
        free = int(host.check_output("df --output=avail -k /var/lib/nanobot | tail -n 1"))
        assert free > 100 * 1024, "the root filesystem filled up"
    finally:
        host.check_output(f"rm -f {WORKSPACE}/fill")


# A fork bomb the command guard cannot see: a script already in the workspace (as one that was
# downloaded or written by an earlier step would be). Every process forks forever.
FORK_BOMB = (
    "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
)


# Processes and threads in nanobot.service's cgroup (the WhatsApp bridge runs as the same user
# in a unit of its own, so `ps -u nanobot` would count it too).
UNIT_TASKS = r"""
import glob, os
procs = threads = 0
for path in glob.glob("/proc/[0-9]*/cgroup"):
    try:
        with open(path) as f:
            if not any(line.rstrip().endswith("/nanobot.service") for line in f):
                continue
        threads += len(os.listdir(path[: -len("cgroup")] + "task"))
        procs += 1
    except OSError:
        continue
print(procs, threads)
"""


def _unit_tasks(host) -> tuple[int, int]:
    procs, threads = host.check_output("python3 -c %s", UNIT_TASKS).split()
    return int(procs), int(threads)


def test_fork_bomb_is_contained(host, http, turn, test_vars):
    before = _props(host, "MainPID", "NRestarts")
    counts: list[int] = []
    script = f"{WORKSPACE}/spawn.py"
    host.check_output(f"printf %s {shlex.quote(FORK_BOMB)} > {script} && chown nanobot: {script}")

    def bomb() -> str:
        return turn("exec: python3 spawn.py")

    def sample(_status) -> None:
        counts.append(_unit_tasks(host)[1])

    reply, statuses = _healthz_while(http, bomb, sample)
    print(
        f"\nfork bomb: /healthz answered {statuses.count(200)}/{len(statuses)} polls, "
        f"nanobot tasks peaked at {max(counts)} (limit {test_vars['nanobot_tasks_max']}); "
        f"reply: {reply[:160]!r}"
    )
    assert "safety guard" not in reply, "the guard caught it: the limits were not exercised"
    assert statuses and set(statuses) == {200}, statuses
    assert "timed out" in reply, reply
    assert max(counts) <= test_vars["nanobot_tasks_max"]
    # The sandbox's process limit (nanobot_exec_max_processes) stops it first; sampled every
    # 0.5 s, the peak seen may fall a little short of that limit, never far.
    cap = min(test_vars["nanobot_exec_max_processes"], test_vars["nanobot_tasks_max"])
    assert max(counts) >= cap // 2, "the bomb never came near a limit"
    assert _props(host, "MainPID", "NRestarts") == before, "the gateway was restarted"
    # Nothing of the bomb survives the command's timeout.
    time.sleep(1)
    left = _unit_tasks(host)[0]
    assert left == 1, f"{left} processes remain in nanobot.service"
    assert "probe finished: " in turn("run the probe")
    host.check_output(f"rm -f {script}")


def test_memory_hog_is_contained(host, http, turn, main_pid, test_vars):
    """The hog fails alone: at nanobot_exec_max_data (an rlimit of sandboxed commands) or, on
    hosts where the unit has its own memory cgroup, at MemoryMax at the latest."""
    cgroup = _cgroup_enforces(host, main_pid, "memory", "memory.max")
    hog_mb = 2 * (_bytes(test_vars["nanobot_memory_max"]) >> 20)
    before = _props(host, "MainPID", "NRestarts")
    # The source says 'ALLOC' + 'ATED', so a traceback quoting it does not look like success.
    hog = f"exec: python3 -c \"b = b'x' * ({hog_mb} << 20); print('ALLOC' + 'ATED')\""
    reply, statuses = _healthz_while(http, lambda: turn(hog))
    print(
        f"\nmemory hog of {hog_mb} MiB (memory cgroup {'enforced' if cgroup else 'not available'}"
        f" here): /healthz {statuses.count(200)}/{len(statuses)}; reply: {reply[:160]!r}"
    )
    assert "safety guard" not in reply, reply
    assert "ALLOCATED" not in reply, reply
    assert "MemoryError" in reply or "Killed" in reply or "-9" in reply, reply
    assert set(statuses) <= {200}
    assert _props(host, "MainPID", "NRestarts") == before, "the gateway was killed or restarted"
    assert "probe finished: " in turn("run the probe")
