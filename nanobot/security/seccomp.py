"""The exec sandbox's seccomp filter: a classic-BPF program built with the standard library.

bubblewrap loads it (`--seccomp FD`) right before it executes the command, so it binds the
command and everything it starts; it cannot be removed from inside. The filter answers EPERM —
the call fails, the program goes on — for system calls a shell command in the workspace never
needs and an attacker wants: ptrace and process_vm_readv/writev (reading other processes),
io_uring (a second syscall path that seccomp cannot see), userfaultfd, bpf, perf_event_open,
the keyring (keyctl, add_key, request_key), the mount family (mount, umount2, pivot_root and
the new mount API), kexec, kernel modules, open_by_handle_at, setns, and new user namespaces
(unshare or clone with CLONE_NEWUSER). clone3 answers ENOSYS instead, because its flags sit in
memory the filter cannot read; the C library then falls back to clone, which is checked.
With network=False, socket(AF_INET|AF_INET6, …) fails with EPERM too.

Only x86_64 and aarch64 are known. A call made with another ABI (32-bit int 0x80, x32) gets
EPERM for every system call, so a foreign ABI cannot slip around the numbers below.
"""

from __future__ import annotations

import errno
import os
import struct

# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6] (little-endian).
_NR, _ARCH, _ARG0 = 0, 4, 16

_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JSET = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_RET = 0x06  # BPF_RET | BPF_K

RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
CLONE_NEWUSER = 0x10000000
AF_INET, AF_INET6 = 2, 10
X32_BIT = 0x40000000

DENIED = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "mount",
    "umount2",
    "pivot_root",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "setns",
)

# audit arch → syscall numbers (from the kernel's unistd tables; the new ones are shared).
_SHARED = {
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "clone3": 435,
    "mount_setattr": 442,
}
TABLES: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (
        0xC000003E,
        {
            **_SHARED,
            "ptrace": 101,
            "process_vm_readv": 310,
            "process_vm_writev": 311,
            "userfaultfd": 323,
            "bpf": 321,
            "perf_event_open": 298,
            "keyctl": 250,
            "add_key": 248,
            "request_key": 249,
            "mount": 165,
            "umount2": 166,
            "pivot_root": 155,
            "kexec_load": 246,
            "kexec_file_load": 320,
            "init_module": 175,
            "finit_module": 313,
            "delete_module": 176,
            "open_by_handle_at": 304,
            "setns": 308,
            "unshare": 272,
            "clone": 56,
            "socket": 41,
        },
    ),
    "aarch64": (
        0xC00000B7,
        {
            **_SHARED,
            "ptrace": 117,
            "process_vm_readv": 270,
            "process_vm_writev": 271,
            "userfaultfd": 282,
            "bpf": 280,
            "perf_event_open": 241,
            "keyctl": 219,
            "add_key": 217,
            "request_key": 218,
            "mount": 40,
            "umount2": 39,
            "pivot_root": 41,
            "kexec_load": 104,
            "kexec_file_load": 294,
            "init_module": 105,
            "finit_module": 273,
            "delete_module": 106,
            "open_by_handle_at": 265,
            "setns": 268,
            "unshare": 97,
            "clone": 220,
            "socket": 198,
        },
    ),
}


class Unsupported(Exception):
    """No syscall table for this machine; the sandbox runs without the filter and says so."""


def machine() -> str:
    m = os.uname().machine.lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)


class _Asm:
    """Instructions with symbolic jump targets, resolved to BPF's relative 8-bit offsets."""

    def __init__(self) -> None:
        self.code: list[tuple[int, object, object, int]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def emit(self, op: int, k: int, jt: object = 0, jf: object = 0) -> None:
        self.code.append((op, jt, jf, k))

    def assemble(self) -> bytes:
        out = bytearray()
        for i, (op, jt, jf, k) in enumerate(self.code):
            offs = []
            for target in (jt, jf):
                off = target if isinstance(target, int) else self.labels[target] - i - 1
                if not 0 <= off <= 255:
                    raise ValueError(f"BPF jump out of range at {i}")
                offs.append(off)
            out += struct.pack("<HBBI", op, offs[0], offs[1], k)
        return bytes(out)


def build(network: bool, arch: str | None = None) -> bytes:
    """The filter program as bytes (struct sock_filter[]), ready for bwrap --seccomp."""
    arch = arch or machine()
    if arch not in TABLES:
        raise Unsupported(f"no seccomp syscall table for {arch}")
    audit_arch, nr = TABLES[arch]
    a = _Asm()
    a.emit(_LD_W_ABS, _ARCH)
    a.emit(_JEQ, audit_arch, 0, "eperm")  # another ABI: refuse everything
    a.emit(_LD_W_ABS, _NR)
    if arch == "x86_64":
        a.emit(_JGE, X32_BIT, "eperm", 0)  # x32 numbers alias the 64-bit ones
    for name in DENIED:
        a.emit(_JEQ, nr[name], "eperm", 0)
    a.emit(_JEQ, nr["clone3"], "enosys", 0)
    a.emit(_JEQ, nr["clone"], "flags", 0)
    a.emit(_JEQ, nr["unshare"], "flags", 0)
    if not network:
        a.emit(_JEQ, nr["socket"], "socket", 0)
    a.emit(_RET, RET_ALLOW)
    a.label("flags")
    a.emit(_LD_W_ABS, _ARG0)
    a.emit(_JSET, CLONE_NEWUSER, "eperm", 0)
    a.emit(_RET, RET_ALLOW)
    if not network:
        a.label("socket")
        a.emit(_LD_W_ABS, _ARG0)
        a.emit(_JEQ, AF_INET, "eperm", 0)
        a.emit(_JEQ, AF_INET6, "eperm", 0)
        a.emit(_RET, RET_ALLOW)
    a.label("eperm")
    a.emit(_RET, RET_ERRNO | errno.EPERM)
    a.label("enosys")
    a.emit(_RET, RET_ERRNO | errno.ENOSYS)
    return a.assemble()


def program_fd(program: bytes) -> int:
    """A fresh readable descriptor holding program, inheritable, for one bwrap run.

    bwrap reads the descriptor to its end, so every run needs its own (a shared one would be
    at its end for the second run). The caller passes it to the child and closes it afterwards.
    """
    r, w = os.pipe()
    try:
        os.write(w, program)  # a few hundred bytes: far below the pipe buffer
    finally:
        os.close(w)
    os.set_inheritable(r, True)
    return r
