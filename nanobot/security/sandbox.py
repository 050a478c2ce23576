"""The exec sandbox: the one bubblewrap command-line builder, and the choice between bwrap and none."""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from nanobot.errors import ConfigError, SandboxUnavailable
from nanobot.security.bwrapprobe import (  # bwrap_status, find_bwrap: re-exported
    DEFAULT_PATH,
    INSTALL_HINT,
    _probe,
    bwrap_status,
    find_bwrap,
)
from nanobot.security.seccomp import Unsupported, program_fd
from nanobot.security.seccomp import build as seccomp_program

if TYPE_CHECKING:
    from nanobot.config.schema import ExecConfig
    from nanobot.security.egress import EgressProxy

log = logging.getLogger("nanobot.security")

MODES = ("auto", "bwrap", "none")
# Host folders shown read-only; usrmerge symlinks (/bin -> usr/bin) are recreated as symlinks.
SYSTEM_DIRS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/opt")
# The only variables copied from the caller's environment; everything else (API keys) is dropped.
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TZ", "USER", "LOGNAME")
REAPER = str(Path(__file__).with_name("reaper.py"))
ALLOWLIST = "allowlist"  # tools.exec.network: only allowedDomains, through the egress proxy
FORWARDER = str(Path(__file__).with_name("egress_fwd.py"))
BOX_RUN = "/run/nanobot"  # inside the sandbox: the proxy socket and the forwarder
PROXY_PORT = 3128  # the forwarder's port on the sandbox's own loopback

_PATH_RE = re.compile(r"/[^\s:'\"`,;()]*")
_NET_ERRORS = (
    "Network is unreachable",
    "Temporary failure in name resolution",
    "Could not resolve host",
    "Name or service not known",
    "No address associated with hostname",
    "Connection refused",
)


class Sandbox(Protocol):
    """What ExecTool needs: wrap a command before running it, explain a refusal afterwards."""

    name: str

    def wrap(
        self, argv: Sequence[str], cwd: Path, env: Mapping[str, str]
    ) -> tuple[list[str], dict[str, str], list[int]]:
        """(argv, environment, descriptors) to run instead of (argv, env) in cwd.

        The child must inherit the descriptors (pass_fds); the caller closes them once the child
        has started, or when it does not start it.
        """
        ...

    def explain(self, returncode: int | None, output: str) -> str | None:
        """A short note for the model when the output shows the sandbox refused something."""
        ...


class NoSandbox:
    """Runs commands without isolation (the guard alone protects exec), under the reaper
    (nanobot.security.reaper): nothing the command starts outlives it, daemons included."""

    name = "none"
    reaps = True  # the top process ends all the command's descendants on SIGTERM

    def wrap(
        self, argv: Sequence[str], cwd: Path, env: Mapping[str, str]
    ) -> tuple[list[str], dict[str, str], list[int]]:
        return [sys.executable, "-I", "-S", REAPER, *argv], dict(env), []

    def explain(self, returncode: int | None, output: str) -> str | None:
        return None


class RequiredSandboxMissing:
    """tools.exec.sandbox is "bwrap" but bubblewrap cannot run: every wrap() fails closed."""

    name = "bwrap (unavailable)"

    def __init__(self, reason: str, message: str | None = None) -> None:
        self.reason = reason
        self.message = message or (
            f'tools.exec.sandbox is "bwrap" but bubblewrap cannot run here ({reason}). '
            f"Install it ({INSTALL_HINT}) and allow user namespaces, or set tools.exec.sandbox "
            'to "auto" or "none" to run commands without the sandbox.'
        )

    def wrap(
        self, argv: Sequence[str], cwd: Path, env: Mapping[str, str]
    ) -> tuple[list[str], dict[str, str], list[int]]:
        raise SandboxUnavailable(self.message)

    def explain(self, returncode: int | None, output: str) -> str | None:
        return None


@functools.cache
def _box_python() -> tuple[str, tuple[str, ...]]:
    """(a Python the sandbox can run, binds it needs) for the egress forwarder: a system
    Python under the folders the sandbox shows, else this one with its prefix bound read-only."""
    shown = [Path(d).resolve() for d in SYSTEM_DIRS if Path(d).is_dir()]
    for candidate in (os.path.realpath(sys.executable), "/usr/bin/python3"):
        real = Path(os.path.realpath(candidate))
        if real.is_file() and any(_inside(real, d) for d in shown):
            return str(real), ()
    prefix = str(Path(sys.base_prefix).resolve())
    return os.path.realpath(sys.executable), ("--ro-bind", prefix, prefix)


def _inside(path: Path, root: Path) -> bool:
    """path is root or lies below it (both already resolved; no string prefixes)."""
    return path == root or root in path.parents


class BwrapSandbox:
    """bubblewrap: read-only system, the workspace the only writable folder, NANOBOT_HOME hidden."""

    name = "bwrap"

    def __init__(
        self,
        workspace: Path,
        home: Path,
        network: bool | str = True,
        extra_ro_binds: Iterable[str | Path] = (),
        extra_rw_binds: Iterable[str | Path] = (),
        *,
        bwrap: str | None = None,
        seccomp: bool = True,
        egress: EgressProxy | None = None,
    ) -> None:
        """Raises ConfigError when the workspace is NANOBOT_HOME or an extra bind would show it.

        seccomp: load the filter of nanobot.security.seccomp into every command (a machine
        without a syscall table for it runs without, with one WARNING).
        network "allowlist": a network namespace of its own; `egress` (required then) is the
        only way out, through a per-call socket and the in-sandbox forwarder.
        """
        if network == ALLOWLIST and egress is None:
            raise ConfigError('tools.exec.network "allowlist" needs the egress proxy')
        self.egress = egress if network == ALLOWLIST else None
        self.workspace = Path(workspace).expanduser().resolve()
        self.home = Path(home).expanduser().resolve()
        self.network = network
        if self.workspace == self.home:
            raise ConfigError(
                f"The workspace {self.workspace} is NANOBOT_HOME itself, so exec would see the "
                "config and credentials. Set agents.defaults.workspace to another folder "
                "(default ~/.nanobot/workspace)."
            )
        self.ro_binds = [self._check_bind(p, "extraRoBinds") for p in extra_ro_binds]
        self.rw_binds = [self._check_bind(p, "extraRwBinds") for p in extra_rw_binds]
        self.bwrap = bwrap or find_bwrap() or "bwrap"
        self._harden = _probe(self.bwrap)[2] if os.path.isabs(self.bwrap) else False
        self._seccomp: bytes | None = None
        if seccomp:
            try:
                # allowlist: inet sockets reach only the sandbox's own loopback (the forwarder)
                self._seccomp = seccomp_program(network is not False)
            except Unsupported as exc:
                log.warning("exec sandbox runs without its seccomp filter: %s", exc)

    def _check_bind(self, raw: str | Path, key: str) -> Path:
        path = Path(raw).expanduser()
        if not path.is_absolute():
            raise ConfigError(f"tools.exec.{key}: {str(raw)!r} must be an absolute path.")
        if not path.exists():
            raise ConfigError(
                f"tools.exec.{key}: {str(raw)!r} does not exist; create it or remove it."
            )
        real = path.resolve()
        if _inside(real, self.home) or _inside(self.home, real):
            raise ConfigError(
                f"tools.exec.{key}: {str(raw)!r} (real path {real}) equals, contains or lies inside "
                f"NANOBOT_HOME ({self.home}), which holds the config and credentials; "
                f"remove it from tools.exec.{key}."
            )
        return real

    def wrap(
        self, argv: Sequence[str], cwd: Path, env: Mapping[str, str]
    ) -> tuple[list[str], dict[str, str], list[int]]:
        """bwrap argv around argv, an allowlisted environment for bwrap itself, and the
        descriptor of this run's seccomp program (see Sandbox.wrap).

        bwrap gets the reduced environment too: the sandbox's PID 1 is bwrap, and its
        /proc/1/environ would otherwise show the caller's variables (API keys included).
        """
        where = Path(cwd).resolve()
        box_env = self._env(where, env)
        binds: list[str] = []
        fds: list[int] = []
        if self.egress is not None:
            binds, argv, keep_fd = self._egress(argv, box_env)
            fds.append(keep_fd)
        argv = [*self._argv(where, box_env, binds), "--", *argv]
        if self._seccomp is None:
            return argv, box_env, fds
        fd = program_fd(self._seccomp)
        return [argv[0], "--seccomp", str(fd), *argv[1:]], box_env, [*fds, fd]

    def _egress(self, argv: Sequence[str], env: dict[str, str]) -> tuple[list[str], list[str], int]:
        """(bwrap binds, the command under the forwarder, the descriptor that keeps this
        call's proxy session open) — and the proxy variables set in env."""
        session = self.egress.session(argv[-1])
        python, python_binds = _box_python()
        proxy = f"http://127.0.0.1:{PROXY_PORT}"
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env[name] = proxy
        env["NO_PROXY"] = env["no_proxy"] = "localhost,127.0.0.1,::1"
        binds = [
            *python_binds,
            *("--ro-bind", str(session.path), f"{BOX_RUN}/egress.sock"),
            *("--ro-bind", FORWARDER, f"{BOX_RUN}/egress_fwd.py"),
        ]
        fwd = [python, "-I", "-S", f"{BOX_RUN}/egress_fwd.py", f"{BOX_RUN}/egress.sock"]
        return binds, [*fwd, str(PROXY_PORT), "--", *argv], session.keep_fd

    def _env(self, cwd: Path, env: Mapping[str, str]) -> dict[str, str]:
        out = {k: env[k] for k in PASSED_ENV if env.get(k)}
        out.setdefault("PATH", DEFAULT_PATH)
        out.update(HOME=str(self.workspace), SHELL="/bin/sh", TMPDIR="/tmp", PWD=str(cwd))
        return out

    def _argv(self, cwd: Path, env: Mapping[str, str], extra: Sequence[str] = ()) -> list[str]:
        """The whole bwrap command line. Mount order matters: later mounts cover earlier ones."""
        argv = [self.bwrap]
        shown: list[Path] = []  # host folders whose contents the sandbox can see
        for name in SYSTEM_DIRS:
            path = Path(name)
            if path.is_symlink():
                argv += ["--symlink", os.readlink(path), name]
            elif path.is_dir():
                argv += ["--ro-bind", name, name]
                shown.append(path.resolve())
        resolv = Path("/etc/resolv.conf").resolve()
        if self.network is True and resolv.is_file() and not any(_inside(resolv, d) for d in shown):
            argv += ["--ro-bind", str(resolv), str(resolv)]  # e.g. systemd-resolved's stub in /run
        argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]

        mask_home = any(_inside(self.home, d) for d in shown + [self.workspace])
        workspace_late = mask_home and _inside(self.workspace, self.home)
        binds = [(p, "--ro-bind") for p in self.ro_binds] + [(p, "--bind") for p in self.rw_binds]
        if not workspace_late:
            binds.append((self.workspace, "--bind"))
        for path, flag in sorted(binds, key=lambda b: len(b[0].parts)):  # parents first
            argv += [flag, str(path), str(path)]
        if mask_home:
            # NANOBOT_HOME is inside a shown folder: cover it, then put the workspace back.
            argv += ["--perms", "0700", "--tmpfs", str(self.home)]
        if workspace_late:
            argv += ["--bind", str(self.workspace), str(self.workspace)]
        if mask_home:
            argv += ["--remount-ro", str(self.home)]
        argv += extra
        argv += ["--remount-ro", "/"]

        argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        if self.network is not True:
            argv.append("--unshare-net")  # off, or allowlist: only the egress socket leads out
        if self._harden:
            argv += ["--unshare-user", "--disable-userns"]
        # bwrap started by root keeps root's capabilities unless told otherwise.
        argv += ["--cap-drop", "ALL", "--new-session", "--die-with-parent"]
        argv += ["--chdir", str(cwd), "--clearenv"]
        for key, value in env.items():
            argv += ["--setenv", key, value]
        return argv

    def _writable(self, path: Path) -> bool:
        """path lies in the workspace and not in a NANOBOT_HOME that sits inside it."""
        in_home = _inside(path, self.home) and not _inside(self.workspace, self.home)
        return _inside(path, self.workspace) and not in_home

    def explain(self, returncode: int | None, output: str) -> str | None:
        """Name what the sandbox refused, judged from error lines in the output; else None."""
        notes: list[str] = []
        for line in output.splitlines():
            note = self._explain_line(line)
            if note and note not in notes:
                notes.append(note)
        return f"Note: the sandbox refused this: {'; '.join(notes)}." if notes else None

    def _explain_line(self, line: str) -> str | None:
        if line.startswith("bwrap: "):
            return f"it could not start the command ({line[7:].strip()})"
        if self.network == ALLOWLIST:
            if line.startswith("nanobot egress: refused"):
                return f"the egress proxy {line[15:].strip()}"
            if any(e in line for e in _NET_ERRORS):
                return (
                    "the network is limited to tools.exec.allowedDomains, reached only through "
                    "the proxy in HTTP_PROXY/HTTPS_PROXY (a tool that ignores it cannot connect)"
                )
        if not self.network and any(e in line for e in _NET_ERRORS):
            return "the network is off (tools.exec.network is false)"
        if not self.network and "Operation not permitted" in line:
            # the seccomp filter refuses inet sockets with EPERM when the network is off
            return (
                "the network is off (tools.exec.network is false), or the command made a "
                "system call the sandbox blocks"
            )
        paths = [Path(os.path.normpath(p)) for p in _PATH_RE.findall(line)]
        outside = [p for p in paths if not self._writable(p)]
        if "No such file or directory" in line and any(_inside(p, self.home) for p in outside):
            return "nanobot's own folder is hidden from commands"
        if "Read-only file system" in line or ("Permission denied" in line and outside):
            return f"only the workspace ({self.workspace}) is writable"
        return None


def make_sandbox(
    exec_cfg: ExecConfig, workspace: Path, home: Path, search_path: str | None = None
) -> Sandbox:
    """The sandbox tools.exec.sandbox asks for; call once at start-up and share it.

    "none" → NoSandbox; "bwrap" → BwrapSandbox, or one that refuses every command when bwrap
    cannot run; "auto" → BwrapSandbox when bwrap works, else NoSandbox and one WARNING.
    search_path replaces $PATH when looking for bwrap.
    """
    mode = exec_cfg.sandbox
    if mode not in MODES:
        raise ConfigError(f"tools.exec.sandbox is {mode!r}; use one of {', '.join(MODES)}.")
    allowlist = exec_cfg.network == ALLOWLIST
    if mode != "none":
        ok, reason = bwrap_status(search_path)
        if ok:
            return BwrapSandbox(
                workspace,
                home,
                network=exec_cfg.network,
                extra_ro_binds=exec_cfg.extra_ro_binds,
                extra_rw_binds=exec_cfg.extra_rw_binds,
                bwrap=find_bwrap(search_path),
                egress=_egress_proxy(exec_cfg.allowed_domains) if allowlist else None,
            )
        if mode == "bwrap" or allowlist:
            return RequiredSandboxMissing(
                reason, _allowlist_needs_bwrap(reason) if allowlist else None
            )
        log.warning(
            "exec sandbox unavailable (%s): the safety guard alone protects exec. Install "
            'bubblewrap (%s) or set tools.exec.sandbox to "none" to accept this.',
            reason,
            INSTALL_HINT,
        )
    if allowlist:
        return RequiredSandboxMissing(
            "sandbox none", _allowlist_needs_bwrap('tools.exec.sandbox is "none"')
        )
    if not exec_cfg.network:
        log.warning(
            "tools.exec.network is false but exec runs without a sandbox, so the network "
            "cannot be cut; install bubblewrap (%s).",
            INSTALL_HINT,
        )
    return NoSandbox()


def _allowlist_needs_bwrap(reason: str) -> str:
    return (
        f'tools.exec.network is "allowlist", which only the bubblewrap sandbox can enforce, '
        f"and it cannot run here ({reason}). Install bubblewrap ({INSTALL_HINT}) and set "
        'tools.exec.sandbox to "auto" or "bwrap", or set tools.exec.network to true or false.'
    )


def _egress_proxy(domains: list[str]) -> EgressProxy:
    from nanobot.security.egress import EgressProxy  # only in allowlist mode

    return EgressProxy(domains)
