"""Run one command so that nothing it starts outlives it, without a sandbox.

    python3 -I -S reaper.py COMMAND [ARG …]

The helper makes itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER): every process the
command leaves behind — `setsid cmd &`, a double fork, nohup, a child calling setsid() — is
re-parented to the helper instead of to init when its parent exits. When the command exits, or
when the helper gets SIGTERM (exec's timeout), it SIGKILLs its children round after round (a
killed child's own children are re-parented to it in turn) until it has none, then exits with
the command's status (128 + signal when the command was killed by one).

It imports only the standard library and nothing of nanobot, so it starts fast and runs from
any interpreter. A command that SIGKILLs the helper itself escapes this; the bubblewrap sandbox
(a PID namespace) has no such hole.
"""

from __future__ import annotations

# Startup time counts here: _signal is the C module (`signal` imports enum), and there is no
# contextlib (it imports collections and functools).
import _signal as signal
import ctypes
import os
import sys

PR_SET_CHILD_SUBREAPER = 36


class _Stop(Exception):
    """SIGTERM arrived: kill everything and go."""


def _children(me: int) -> list[int]:
    """Our children, from /proc/*/stat (ppid is the 4th field, after "(comm)")."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # gone already
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == me:
            out.append(int(name))
    return out


def _kill_all(me: int) -> None:
    """SIGKILL every child and reap, until no child is left (re-parented ones included)."""
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0]:
                continue  # reaped one; look again
        except ChildProcessError:
            return  # none left: the usual case, without reading /proc
        for pid in _children(me):
            try:  # noqa: SIM105 — contextlib costs startup time
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: reaper.py COMMAND [ARG …]", file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"reaper: prctl failed: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 126

    def on_term(signum, frame):  # exec's timeout: end everything, then exit
        raise _Stop

    signal.signal(signal.SIGTERM, on_term)
    me = os.getpid()
    try:
        child = os.posix_spawnp(argv[0], argv, os.environ, setsigdef=(signal.SIGTERM,))
    except OSError as e:
        print(f"{argv[0]}: {e.strerror}", file=sys.stderr)
        return 127
    status = None
    try:
        while status is None:
            try:
                pid, st = os.waitpid(-1, 0)  # orphans re-parented to us are reaped on the way
            except ChildProcessError:
                break
            if pid == child:
                status = st
    except _Stop:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _kill_all(me)
        os.kill(me, signal.SIGKILL)  # killed, as the caller asked: it sees -SIGKILL
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # cleaning up is not interrupted
    _kill_all(me)
    if status is None:
        return 128 + signal.SIGKILL
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
