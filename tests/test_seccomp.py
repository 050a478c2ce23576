"""The sandbox's seccomp filter, attacked from inside a real bubblewrap sandbox with raw syscalls."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from nanobot.security import seccomp
from nanobot.security.sandbox import BwrapSandbox, bwrap_status

needs_bwrap = pytest.mark.skipif(not bwrap_status()[0], reason="bubblewrap cannot run here")
X86 = seccomp.machine() == "x86_64"
HEADERS = {
    "x86_64": Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    "aarch64": Path("/usr/include/asm-generic/unistd.h"),
}

# Runs in the sandbox: each (name, nr, args) through libc's syscall(); prints JSON {name: errno}
# (0 when the call succeeded), then proves the command goes on by forking a child.
PROBE = r"""
import ctypes, json, os, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
buf = ctypes.create_string_buffer(256)
out = {}
for name, nr, args in json.loads(sys.argv[1]):
    args = [ctypes.addressof(buf) if a == "BUF" else os.getpid() if a == "PID" else a for a in args]
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    out[name] = ctypes.get_errno() if r == -1 else 0
print(json.dumps(out))
print(subprocess.run(["echo", "went on"], capture_output=True, text=True).stdout.strip())
"""


def header_numbers(arch: str) -> dict[str, int]:
    text = HEADERS[arch].read_text()
    return {m[1]: int(m[2]) for m in re.finditer(r"#define __NR_(\w+)\s+(\d+)\b", text)}


@pytest.mark.parametrize("arch", sorted(seccomp.TABLES))
def test_syscall_numbers_match_the_kernel_headers(arch):
    if not HEADERS[arch].exists():
        pytest.skip(f"{HEADERS[arch]} not installed")
    known = header_numbers(arch)
    _, table = seccomp.TABLES[arch]
    wrong = {n: (nr, known.get(n)) for n, nr in table.items() if known.get(n) != nr}
    assert not wrong


def test_program_is_well_formed_for_every_arch():
    for arch in seccomp.TABLES:
        for network in (True, False):
            prog = seccomp.build(network, arch)
            assert len(prog) % 8 == 0 and 0 < len(prog) // 8 < 4096
    with pytest.raises(seccomp.Unsupported):
        seccomp.build(True, "mips")


def probe(tmp_path: Path, calls: list, network: bool = True, filtered: bool = True):
    ws, home = tmp_path / "ws", tmp_path / "home"
    ws.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    sb = BwrapSandbox(ws, home, network=network, seccomp=filtered)
    argv, env, fds = sb.wrap(["python3", "-c", PROBE, json.dumps(calls)], ws, dict(os.environ))
    try:
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=30, pass_fds=fds
        )
    finally:
        for fd in fds:
            os.close(fd)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "went on"
    return json.loads(lines[0])


def nr(name: str) -> int:
    return seccomp.TABLES[seccomp.machine()][1][name]


CLONE_NEWUSER, SIGCHLD, AF_UNIX, SOCK_STREAM = 0x10000000, 17, 1, 1
# (name, args); "BUF" is a pointer to a zeroed buffer, "PID" the probe's own pid.
DENIED_CALLS = [
    ("ptrace", [0, 0, 0, 0]),  # PTRACE_TRACEME
    ("process_vm_readv", ["PID", "BUF", 0, "BUF", 0, 0]),
    ("process_vm_writev", ["PID", "BUF", 0, "BUF", 0, 0]),
    ("io_uring_setup", [1, "BUF"]),
    ("io_uring_enter", [0, 0, 0, 0, 0, 0]),
    ("io_uring_register", [0, 0, 0, 0]),
    ("userfaultfd", [0]),
    ("bpf", [0, "BUF", 0]),
    ("perf_event_open", ["BUF", 0, -1, -1, 0]),
    ("keyctl", [0, 0, 0, 0, 0]),  # KEYCTL_GET_KEYRING_ID
    ("add_key", [0, 0, 0, 0, 0]),
    ("request_key", [0, 0, 0, 0]),
    ("mount", [0, 0, 0, 0, 0]),
    ("umount2", [0, 0]),
    ("pivot_root", [0, 0]),
    ("open_tree", [-100, 0, 0]),
    ("move_mount", [0, 0, 0, 0, 0]),
    ("fsopen", [0, 0]),
    ("fsconfig", [0, 0, 0, 0, 0]),
    ("fsmount", [0, 0, 0]),
    ("fspick", [0, 0, 0]),
    ("mount_setattr", [0, 0, 0, 0, 0]),
    ("kexec_load", [0, 0, 0, 0]),
    ("kexec_file_load", [0, 0, 0, 0, 0]),
    ("init_module", [0, 0, 0]),
    ("finit_module", [0, 0, 0]),
    ("delete_module", [0, 0]),
    ("open_by_handle_at", [0, 0, 0]),
    ("setns", [0, 0]),
    ("unshare(CLONE_NEWUSER)", [CLONE_NEWUSER]),
    ("clone(CLONE_NEWUSER)", [CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0]),
]


def calls_for(names_args):
    return [(name, nr(name.split("(")[0]), args) for name, args in names_args]


@needs_bwrap
def test_every_denied_syscall_fails_with_eperm_and_the_command_goes_on(tmp_path):
    got = probe(tmp_path, calls_for(DENIED_CALLS))
    assert {name: got[name] for name, _ in DENIED_CALLS} == {
        name: errno.EPERM for name, _ in DENIED_CALLS
    }


@needs_bwrap
def test_without_the_filter_some_of_those_calls_get_through(tmp_path):
    """The control: the probe can tell a filtered sandbox from an unfiltered one."""
    calls = calls_for([("process_vm_readv", ["PID", "BUF", 0, "BUF", 0, 0])])
    assert probe(tmp_path, calls, filtered=False)["process_vm_readv"] == 0
    assert probe(tmp_path, calls, filtered=True)["process_vm_readv"] == errno.EPERM


@needs_bwrap
def test_clone3_answers_enosys_so_libc_falls_back_to_clone(tmp_path):
    got = probe(tmp_path, [("clone3", nr("clone3"), [0, 0])])
    assert got["clone3"] == errno.ENOSYS  # and the probe's own subprocess ran: "went on"


@needs_bwrap
@pytest.mark.skipif(not X86, reason="x32 exists on x86_64 only")
def test_x32_numbers_cannot_slip_around_the_table(tmp_path):
    got = probe(tmp_path, [("x32 ptrace", nr("ptrace") | seccomp.X32_BIT, [0, 0, 0, 0])])
    assert got["x32 ptrace"] == errno.EPERM


@needs_bwrap
@pytest.mark.parametrize("network", [True, False])
def test_inet_sockets_denied_only_when_network_is_off(tmp_path, network):
    calls = [
        ("inet", nr("socket"), [2, SOCK_STREAM, 0]),
        ("inet6", nr("socket"), [10, SOCK_STREAM, 0]),
        ("unix", nr("socket"), [AF_UNIX, SOCK_STREAM, 0]),
    ]
    got = probe(tmp_path, calls, network=network)
    assert got["unix"] == 0
    want = 0 if network else errno.EPERM
    assert got["inet"] == want
    assert got["inet6"] in ((want, errno.EAFNOSUPPORT) if network else (want,))


@needs_bwrap
def test_ordinary_commands_still_work_under_the_filter(tmp_path):
    ws, home = tmp_path / "ws", tmp_path / "home"
    ws.mkdir()
    home.mkdir()
    sb = BwrapSandbox(ws, home, network=False)
    cmd = "echo a > f && cat f | tr a b && ls / >/dev/null && (sleep 0.1 &) && wait && echo ok"
    argv, env, fds = sb.wrap(["/bin/sh", "-c", cmd], ws, {})
    done = subprocess.run(argv, env=env, capture_output=True, text=True, pass_fds=fds)
    for fd in fds:
        os.close(fd)
    assert done.stdout == "b\nok\n", done.stderr
