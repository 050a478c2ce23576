#!/usr/bin/python3
"""Installed by the nanobot role: restart nanobot.service and prove it healthy, else roll back.

  restart-gated.py LINK PREVIOUS_VENV URL TIMEOUT SETTLE

Restarts the unit (Type=notify: systemctl returns once READY=1 arrived or the start failed),
polls URL (/healthz) for up to TIMEOUT seconds until it answers 200, then requires the same
main process to still run and answer SETTLE seconds later. On failure, when PREVIOUS_VENV is
not empty and LINK (/opt/nanobot/venv) points elsewhere, it points LINK back at
PREVIOUS_VENV, restarts and checks that release the same way. Exit 0 = healthy; exit 1 = the
reason, the rollback outcome and the last log lines on stderr (the role's failure message).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

UNIT = "nanobot.service"


def _systemctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)


def _main_pid() -> str:
    return _systemctl("show", "-p", "MainPID", "--value", UNIT).stdout.strip()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_healthy(url: str, timeout: float, settle: float) -> str | None:
    """Restart and wait; None when healthy, else why not."""
    _systemctl("reset-failed", UNIT)  # a start limit or an earlier failure must not block
    done = _systemctl("restart", UNIT)
    if done.returncode != 0:
        return f"the start failed ({_systemctl('show', '-p', 'Result', '--value', UNIT).stdout.strip()})"
    deadline = time.monotonic() + timeout
    while not _answers(url):
        if time.monotonic() > deadline:
            return f"{url} did not answer within {timeout:g} s"
        if _systemctl("is-active", "--quiet", UNIT).returncode != 0:
            return "the gateway stopped before answering /healthz"
        time.sleep(1)
    pid = _main_pid()
    time.sleep(settle)
    if _main_pid() != pid or not _answers(url):
        return f"the gateway did not stay up for {settle:g} s after answering /healthz"
    return None


def _log_tail() -> str:
    out = subprocess.run(
        ["journalctl", "-u", UNIT, "-n", "8", "--no-pager", "-o", "cat"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return " | ".join(line for line in out.splitlines() if line.strip())


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    link, previous, url, timeout, settle = argv[0], argv[1], argv[2], float(argv[3]), float(argv[4])
    current = os.path.realpath(link)
    why = start_healthy(url, timeout, settle)
    if why is None:
        print(f"healthy: {current}")
        return 0
    log = _log_tail()
    release = os.path.basename(os.path.dirname(current))
    if not previous or os.path.realpath(previous) == current:
        print(
            f"nanobot ({release}) is not healthy after the restart: {why}. "
            f"No other release to roll back to. Last log lines: {log}",
            file=sys.stderr,
        )
        return 1
    tmp = f"{link}.rollback"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(previous, tmp)
    os.replace(tmp, link)
    back = os.path.basename(os.path.dirname(previous))
    again = start_healthy(url, timeout, settle)
    outcome = (
        f"Rolled back to {back}, which answers /healthz again"
        if again is None
        else f"Rolled back to {back}, but it is not healthy either: {again}"
    )
    print(
        f"release {release} is not healthy after the restart: {why}. {outcome}; {release} stays "
        f"installed for inspection. Last log lines of the failed start: {log}",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
