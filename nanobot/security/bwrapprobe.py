"""Whether bubblewrap can run here: found on PATH, able to make its namespaces, and whether it
can also forbid new user namespaces inside. Checked once per executable, on first need."""

from __future__ import annotations

import functools
import shutil
import subprocess
import threading

INSTALL_HINT = "apt-get install bubblewrap"
PROBE_TIMEOUT = 10
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

__all__ = ["INSTALL_HINT", "bwrap_status", "find_bwrap"]


def find_bwrap(search_path: str | None = None) -> str | None:
    """The bwrap executable on search_path (default: $PATH), or None."""
    return shutil.which("bwrap", path=search_path)


def bwrap_status(search_path: str | None = None) -> tuple[bool, str]:
    """Whether bwrap exists and can create its namespaces here, with a reason for people."""
    exe = find_bwrap(search_path)
    if exe is None:
        return False, f"bwrap not installed: {INSTALL_HINT}"
    ok, reason, _ = _probe(exe)
    return ok, reason


_probe_lock = threading.Lock()


def _probe(exe: str) -> tuple[bool, str, bool]:
    """Run bwrap once per executable (callers wait for a check already running)."""
    with _probe_lock:
        return _probe_once(exe)


@functools.cache
def _probe_once(exe: str) -> tuple[bool, str, bool]:
    """(works, reason, supports --disable-userns)."""
    base = [exe, "--ro-bind", "/", "/", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    env = {"PATH": DEFAULT_PATH}
    try:
        run = subprocess.run(
            [*base, "true"], capture_output=True, text=True, timeout=PROBE_TIMEOUT, env=env
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"{exe} cannot run: {e}", False
    if run.returncode != 0:
        lines = run.stderr.strip().splitlines()
        said = lines[-1] if lines else f"exit status {run.returncode}"
        return False, f"{exe} cannot create namespaces here: {said}", False
    try:
        harden = subprocess.run(
            [*base, "--unshare-user", "--disable-userns", "true"],
            capture_output=True,
            timeout=PROBE_TIMEOUT,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired):
        return True, f"{exe} works", False
    return True, f"{exe} works", harden.returncode == 0
