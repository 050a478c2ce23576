"""Attacks on the bubblewrap exec sandbox with the guard bypassed: W only writable, H invisible."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from nanobot.config.schema import ExecConfig
from nanobot.errors import ConfigError, SandboxUnavailable
from nanobot.security.pathpolicy import PathPolicy
from nanobot.security.sandbox import (
    REAPER,
    BwrapSandbox,
    NoSandbox,
    RequiredSandboxMissing,
    bwrap_status,
    make_sandbox,
)
from nanobot.tools.base import ALLOWED, BLOCKED_BY_GUARD, REFUSED_BY_SANDBOX, ToolContext
from nanobot.tools.shell import ExecTool

BWRAP_OK, BWRAP_REASON = bwrap_status()
needs_bwrap = pytest.mark.skipif(not BWRAP_OK, reason=f"bubblewrap cannot run: {BWRAP_REASON}")
# Not token-shaped on purpose: redaction must not be what keeps it out of the output.
SECRET = "plain-secret-" + uuid.uuid4().hex
TOKEN = "123456:" + uuid.uuid4().hex + uuid.uuid4().hex


class Layout:
    """NANOBOT_HOME with secrets, the default workspace inside it, and markers outside both."""

    def __init__(self, root: Path, home: Path | None = None, workspace: Path | None = None):
        self.home = home or root / "home"
        self.workspace = workspace or self.home / "workspace"
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "config.json").write_text(f'{{"apiKey": "{SECRET}"}}')
        (self.home / "credentials").mkdir(exist_ok=True)
        (self.home / "credentials" / "telegram").write_text(TOKEN)
        self.outside = root / "outside"
        self.outside.mkdir(exist_ok=True)
        (self.outside / "marker").write_text("keep")
        (self.outside / "sub").mkdir(exist_ok=True)
        (self.outside / "sub" / "deep").write_text("keep")
        fd, name = tempfile.mkstemp(prefix="nanobot-marker-", dir="/tmp")
        os.write(fd, b"keep")
        os.close(fd)
        self.host_tmp = Path(name)

    def markers_intact(self) -> bool:
        files = [self.outside / "marker", self.outside / "sub" / "deep", self.host_tmp]
        return all(f.exists() and f.read_text() == "keep" for f in files)

    def cleanup(self) -> None:
        self.host_tmp.unlink(missing_ok=True)


@pytest.fixture
def lay(tmp_path):
    layout = Layout(tmp_path)
    yield layout
    layout.cleanup()


def secret_env() -> dict[str, str]:
    return {**os.environ, "OPENAI_API_KEY": SECRET, "TELEGRAM_TOKEN": TOKEN}


def run_in(sb, command: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess:
    argv, env, fds = sb.wrap(["/bin/sh", "-c", command], cwd=cwd, env=secret_env())
    try:
        return subprocess.run(
            argv,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
            pass_fds=fds,
        )
    finally:
        for fd in fds:
            os.close(fd)


# --- choosing a sandbox ------------------------------------------------------------------


def test_none_mode_runs_the_command_under_the_reaper(tmp_path):
    sb = make_sandbox(ExecConfig(sandbox="none"), tmp_path, tmp_path / "h")
    assert isinstance(sb, NoSandbox) and sb.name == "none" and sb.reaps
    argv, env, fds = sb.wrap(["/bin/sh", "-c", "true"], cwd=tmp_path, env={"A": "1"})
    assert argv[-4:] == [REAPER, "/bin/sh", "-c", "true"] and env == {"A": "1"} and fds == []
    assert sb.explain(1, "Read-only file system") is None


def test_required_bwrap_missing_refuses_with_install_hint(tmp_path):
    empty = tmp_path / "no-bwrap-here"
    empty.mkdir()
    ok, reason = bwrap_status(search_path=str(empty))
    assert not ok and "apt-get install bubblewrap" in reason
    sb = make_sandbox(ExecConfig(sandbox="bwrap"), tmp_path, tmp_path / "h", str(empty))
    assert isinstance(sb, RequiredSandboxMissing)
    with pytest.raises(SandboxUnavailable) as err:
        sb.wrap(["/bin/sh", "-c", "echo hi"], cwd=tmp_path, env={})
    assert "apt-get install bubblewrap" in str(err.value)
    assert "tools.exec.sandbox" in str(err.value)


def test_auto_without_bwrap_falls_back_with_one_warning(tmp_path, caplog):
    empty = tmp_path / "no-bwrap-here"
    empty.mkdir()
    with caplog.at_level(logging.WARNING, logger="nanobot.security"):
        sb = make_sandbox(ExecConfig(sandbox="auto"), tmp_path, tmp_path / "h", str(empty))
    assert isinstance(sb, NoSandbox)
    warnings = [r for r in caplog.records if r.name == "nanobot.security"]
    assert len(warnings) == 1
    assert "guard alone" in warnings[0].getMessage()
    assert "apt-get install bubblewrap" in warnings[0].getMessage()


def test_bwrap_that_cannot_create_namespaces_reports_its_stderr(tmp_path):
    fake = tmp_path / "bin" / "bwrap"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    ok, reason = bwrap_status(search_path=str(fake.parent))
    assert not ok and "No permissions to create new namespace" in reason
    sb = make_sandbox(ExecConfig(sandbox="bwrap"), tmp_path, tmp_path / "h", str(fake.parent))
    with pytest.raises(SandboxUnavailable, match="No permissions"):
        sb.wrap(["true"], cwd=tmp_path, env={})


@needs_bwrap
def test_auto_with_bwrap_uses_it(lay):
    sb = make_sandbox(ExecConfig(sandbox="auto", network=False), lay.workspace, lay.home)
    assert isinstance(sb, BwrapSandbox) and not sb.network


def test_workspace_equal_to_home_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="agents.defaults.workspace"):
        BwrapSandbox(tmp_path, tmp_path)


def test_extra_binds_exposing_home_are_refused(lay, tmp_path):
    link = tmp_path / "innocent-looking"
    link.symlink_to(lay.home / "credentials")
    for bad in (lay.home, lay.home / "credentials", tmp_path, link, f"{lay.home}/../home"):
        with pytest.raises(ConfigError, match="NANOBOT_HOME"):
            BwrapSandbox(lay.workspace, lay.home, extra_ro_binds=[bad])
        with pytest.raises(ConfigError, match="extraRwBinds"):
            BwrapSandbox(lay.workspace, lay.home, extra_rw_binds=[bad])
    with pytest.raises(ConfigError, match="absolute"):
        BwrapSandbox(lay.workspace, lay.home, extra_ro_binds=["relative/dir"])


# --- the sandbox under attack ------------------------------------------------------------


def destructive_vectors(target: Path, host_tmp: Path) -> list[str]:
    b64 = base64.b64encode(f"rm -rf {target}".encode()).decode()
    rmtree = f"import shutil; shutil.rmtree('{target}')"
    return [
        f"rm -rf {target} {host_tmp}",
        f"rm -rfv {target}",
        f"rm -vrf {target}",
        f"rm --recursive --force {target}",
        f"'r'm -rf {target}",
        f"r\\m -rf {target}",
        f"$(echo rm) -rf {target}",
        f"c=rm; $c -rf {target}",
        f"find {target} -delete",
        "find /tmp -name 'nanobot-marker-*' -delete",
        f'python3 -c "{rmtree}"',
        f"echo {b64} | base64 -d | sh",
        f"echo pwned > {target}/marker; echo pwned > {host_tmp}",
        f"cat</dev/null >{target}/sub/deep",
        f"dd if=/dev/zero of={target}/marker bs=1 count=4",
        f"chmod -R 777 {target}; mv {target}/marker {target}/moved",
        f"ln -sf /etc/passwd {target}/marker; touch {target}/new",
        f"cd {target}; cd ..; rm -rf outside",
    ]


@needs_bwrap
@pytest.mark.parametrize("shown", [False, True], ids=["hidden-target", "read-only-target"])
def test_destructive_vectors_leave_everything_outside_the_workspace(lay, shown):
    # shown: the target folder is visible read-only (like /etc), not just absent.
    sb = BwrapSandbox(lay.workspace, lay.home, extra_ro_binds=[lay.outside] if shown else [])
    notes = []
    for command in destructive_vectors(lay.outside, lay.host_tmp):
        done = run_in(sb, command, lay.workspace)
        assert lay.markers_intact(), command
        assert not (lay.outside / "new").exists()
        notes.append(sb.explain(done.returncode, done.stdout + done.stderr))
    if shown:
        assert run_in(sb, f"cat {lay.outside}/marker", lay.workspace).stdout == "keep"
        assert sum(n is not None and "only the workspace" in n for n in notes) >= 10
    # The workspace itself stays writable.
    done = run_in(sb, "echo ok > made && rm -rf made && echo gone", lay.workspace)
    assert done.stdout == "gone\n"


@needs_bwrap
def test_home_is_invisible(lay):
    sb = BwrapSandbox(lay.workspace, lay.home)
    h, w = lay.home, lay.workspace
    for command in (
        f"cat {h}/config.json",
        f"cat {h}/credentials/telegram",
        f"cat {w}/../config.json",
        "cat ../config.json; cd ..; cat config.json",
        f"cat /proc/self/root{h}/config.json",
        f"cat /proc/1/root{h}/config.json",
        "cat /proc/self/cwd/../config.json",
        f"grep -rs {SECRET[:12]} /tmp /dev /run /home /root /var 2>/dev/null",
        f"grep -r apiKey {h} /tmp 2>/dev/null",
    ):
        done = run_in(sb, command, w)
        assert SECRET not in done.stdout + done.stderr, command
        assert TOKEN not in done.stdout + done.stderr, command
    listing = run_in(sb, f"ls -A {h}", w).stdout.split()
    assert listing == ["workspace"]
    found = run_in(sb, "find / -name config.json -o -name telegram 2>/dev/null", w).stdout
    assert str(h) not in found
    note = sb.explain(1, f"cat: {h}/config.json: No such file or directory")
    assert note and "hidden" in note


@needs_bwrap
def test_home_inside_a_bound_system_dir_is_masked():
    if not os.access("/opt", os.W_OK):
        pytest.skip("needs write access to /opt to place NANOBOT_HOME inside a bound system dir")
    root = Path(tempfile.mkdtemp(prefix="nanobot-test-", dir="/opt"))
    lay = Layout(root)
    try:
        sb = BwrapSandbox(lay.workspace, lay.home)
        done = run_in(sb, f"cat {lay.home}/config.json; ls -A {lay.home}; touch ok", lay.workspace)
        assert SECRET not in done.stdout + done.stderr
        assert done.stdout.split() == ["workspace"]
        assert (lay.workspace / "ok").exists()
        # The rest of /opt (outside NANOBOT_HOME) is still shown, read-only.
        assert run_in(sb, f"cat {lay.outside}/marker", lay.workspace).stdout == "keep"
        run_in(sb, f"rm -rf {lay.outside}", lay.workspace)
        assert lay.markers_intact()
        # Undoing the mounts from inside needs capabilities the sandbox does not have.
        escape = (
            f"unshare -rm sh -c 'umount -l {lay.home}; cat {lay.home}/config.json'; "
            f"umount -l {lay.home}; cat {lay.home}/config.json; "
            f"mount -o remount,rw /opt; rm -rf {lay.outside}"
        )
        done = run_in(sb, escape, lay.workspace)
        assert SECRET not in done.stdout + done.stderr
        assert lay.markers_intact()
    finally:
        lay.cleanup()
        shutil.rmtree(root)


@needs_bwrap
def test_home_inside_the_workspace_is_masked(tmp_path):
    work = tmp_path / "work"
    lay = Layout(tmp_path, home=work / ".nanobot", workspace=work)
    try:
        sb = BwrapSandbox(lay.workspace, lay.home)
        done = run_in(sb, "cat .nanobot/config.json; ls -A .nanobot; touch ok", lay.workspace)
        assert SECRET not in done.stdout + done.stderr
        assert done.stdout == "" and (work / "ok").exists()
        run_in(sb, "rm -rf .nanobot; echo x > .nanobot/config.json", lay.workspace)
        assert SECRET in (lay.home / "config.json").read_text()
    finally:
        lay.cleanup()


@needs_bwrap
def test_no_secret_in_the_environment(lay):
    sb = BwrapSandbox(lay.workspace, lay.home)
    command = (
        "env; printenv; cat /proc/self/environ; cat /proc/$PPID/environ; cat /proc/1/environ; "
        "for f in /proc/[0-9]*/environ; do cat $f; done"
    )
    done = run_in(sb, command, lay.workspace)
    assert done.returncode == 0
    out = done.stdout + done.stderr
    assert SECRET not in out and TOKEN not in out
    assert "OPENAI_API_KEY" not in out and "TELEGRAM_TOKEN" not in out
    assert f"HOME={lay.workspace}" in out


@needs_bwrap
def test_tmp_is_private(lay):
    sb = BwrapSandbox(lay.workspace, lay.home)
    name = lay.host_tmp.name
    done = run_in(sb, f"ls -A /tmp; cat /tmp/{name}; echo inside > /tmp/{name}-new", lay.workspace)
    assert name + "\n" not in done.stdout
    assert "keep" not in done.stdout
    assert not Path(f"/tmp/{name}-new").exists()
    assert lay.markers_intact()


def survivors(tags: list[str], wait: float = 5) -> list[str]:
    """Command lines on the host containing one of tags, after giving the kernel `wait` s to reap."""
    deadline = time.monotonic() + wait
    while True:
        found = []
        for proc in Path("/proc").iterdir():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            found += [cmdline for tag in tags if tag in cmdline]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@needs_bwrap
def test_no_process_outlives_the_call(lay):
    sb = BwrapSandbox(lay.workspace, lay.home)
    n = 6000 + os.getpid() % 1000
    command = (
        f"sleep {n} & setsid sleep {n + 1} & nohup sleep {n + 2} >/dev/null 2>&1 & "
        f"(sleep 1; touch {lay.workspace}/after) & echo started"
    )
    done = run_in(sb, command, lay.workspace, timeout=20)
    assert done.stdout == "started\n"
    assert survivors([f"sleep {n + i}" for i in range(3)]) == []
    time.sleep(1.3)
    assert not (lay.workspace / "after").exists()


@needs_bwrap
def test_killing_the_process_group_ends_the_whole_sandbox(lay):
    """What ExecTool does on timeout: SIGKILL bwrap's group; children in the sandbox die too."""
    sb = BwrapSandbox(lay.workspace, lay.home)
    n = 7000 + os.getpid() % 1000
    argv, env, fds = sb.wrap(
        ["/bin/sh", "-c", f"sleep {n} & echo up; sleep {n + 1}"], lay.workspace, {}
    )
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, start_new_session=True, pass_fds=fds
    )
    for fd in fds:
        os.close(fd)
    assert proc.stdout.readline() == b"up\n"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)
    proc.stdout.close()
    assert survivors([f"sleep {n + i}" for i in range(2)]) == []


@pytest.fixture
def tcp_port():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


@needs_bwrap
@pytest.mark.parametrize("network", [True, False])
def test_network_switch(lay, tcp_port, network):
    sb = BwrapSandbox(lay.workspace, lay.home, network=network)
    probe = f"import socket; socket.create_connection(('127.0.0.1', {tcp_port}), 3); print('ok')"
    done = run_in(sb, f'python3 -c "{probe}"', lay.workspace)
    assert (done.stdout == "ok\n") is network
    note = sb.explain(done.returncode, done.stdout + done.stderr)
    assert (note is not None and "network is off" in note) is not network


@needs_bwrap
def test_extra_binds_are_read_only_or_writable_as_configured(lay, tmp_path):
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "data").write_text("shared")
    sb = BwrapSandbox(lay.workspace, lay.home, extra_ro_binds=[ro], extra_rw_binds=[str(rw)])
    done = run_in(sb, f"cat {ro}/data; echo x > {ro}/data; echo y > {rw}/out", lay.workspace)
    assert done.stdout == "shared" and (ro / "data").read_text() == "shared"
    assert (rw / "out").read_text() == "y\n"
    assert "only the workspace" in sb.explain(done.returncode, done.stderr)


@needs_bwrap
def test_explain_is_silent_on_ordinary_output(lay):
    sb = BwrapSandbox(lay.workspace, lay.home, network=False)
    done = run_in(sb, "echo hi; ls missing-file", lay.workspace)
    assert done.stdout == "hi\n" and done.returncode != 0
    assert sb.explain(done.returncode, done.stdout + done.stderr) is None
    assert sb.explain(1, f"sh: 1: cannot create {lay.workspace}/x: Permission denied") is None
    outside = run_in(sb, "cd /nonexistent-dir", lay.workspace)
    assert outside.returncode != 0 and sb.explain(1, outside.stderr) is None
    argv, env, fds = sb.wrap(["true"], cwd=Path("/nonexistent-dir"), env={})
    setup = subprocess.run(argv, env=env, capture_output=True, text=True, pass_fds=fds)
    for fd in fds:
        os.close(fd)
    assert setup.returncode != 0
    assert "could not start" in sb.explain(setup.returncode, setup.stderr)


# --- as the unprivileged user the product runs as -----------------------------------------

TEST_USER = "nanobot-test"


@pytest.fixture
def unprivileged():
    if os.geteuid() != 0 or not shutil.which("runuser"):
        pytest.skip("needs root and runuser to switch to an unprivileged user")
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", TEST_USER], check=True)
    root = Path(tempfile.mkdtemp(prefix="nanobot-unpriv-", dir="/tmp"))
    root.chmod(0o755)
    lay = Layout(root)
    user = pwd.getpwnam(TEST_USER)
    for path in [root, *root.rglob("*"), lay.host_tmp]:
        os.chown(path, user.pw_uid, user.pw_gid)
    lay.home.chmod(0o700)
    yield lay
    lay.cleanup()
    shutil.rmtree(root)


@needs_bwrap
def test_works_as_an_unprivileged_user(unprivileged):
    lay = unprivileged
    sb = BwrapSandbox(lay.workspace, lay.home)
    command = (
        f"id -un; echo ok > {lay.workspace}/made; cat {lay.home}/config.json; "
        f"rm -rf {lay.outside} {lay.host_tmp}; cat /proc/1/environ; env"
    )
    argv, env, fds = sb.wrap(["/bin/sh", "-c", command], cwd=lay.workspace, env=secret_env())
    done = subprocess.run(
        ["runuser", "-u", TEST_USER, "--", *argv],
        env=env,
        capture_output=True,
        text=True,
        pass_fds=fds,
    )
    for fd in fds:
        os.close(fd)
    assert done.stdout.startswith(f"{TEST_USER}\n"), done.stderr
    assert (lay.workspace / "made").read_text() == "ok\n"
    assert SECRET not in done.stdout + done.stderr and TOKEN not in done.stdout
    assert lay.markers_intact()


# --- through ExecTool (the guard is on, so only vectors it lets through reach the sandbox) ---


def exec_tool(lay, sandbox, **cfg):
    return ExecTool(PathPolicy(lay.workspace, True, lay.home), ExecConfig(**cfg), sandbox)


def call(tool, command: str):
    return asyncio.run(tool.execute(ToolContext(), command=command))


@needs_bwrap
def test_exec_tool_in_the_sandbox_holds(lay, monkeypatch, tcp_port):
    monkeypatch.setenv("NANOBOT_TEST_OPAQUE", SECRET)  # a name the exec tool does not filter
    tool = exec_tool(lay, BwrapSandbox(lay.workspace, lay.home, network=False))
    connect = f"import socket; socket.create_connection(('127.0.0.1', {tcp_port}), 3)"
    for command, refused in (
        (f"echo pwned > {lay.outside}/marker; echo pwned > {lay.host_tmp}", False),
        ("echo pwned > /etc/nanobot-test-marker", True),
        (f"cat {lay.home}/config.json; ls -A {lay.home}", True),
        ("env; printenv", False),
        (f'python3 -c "{connect}"', True),
    ):
        result = call(tool, command)
        assert result.decision != BLOCKED_BY_GUARD, command
        assert lay.markers_intact(), command
        assert SECRET not in result.text, command
        assert (result.decision == REFUSED_BY_SANDBOX) is refused, (command, result.text)
        assert ("Note: the sandbox refused this" in result.text) is refused
    assert not Path("/etc/nanobot-test-marker").exists()
    listing = call(tool, f"ls -A {lay.home}")
    assert listing.text == "workspace" and listing.decision == ALLOWED
    assert call(tool, "echo hi > made; cat made").text == "hi"


@needs_bwrap
def test_exec_tool_timeout_kills_everything_in_the_sandbox(lay):
    tool = exec_tool(lay, BwrapSandbox(lay.workspace, lay.home), timeout=1)
    n = 8000 + os.getpid() % 1000
    result = call(tool, f"sleep {n} & setsid sleep {n + 1} & sleep {n + 2}")
    assert result.text.startswith("Error: command timed out")
    assert survivors([f"sleep {n + i}" for i in range(3)]) == []


def test_exec_tool_with_required_sandbox_missing_refuses(lay, tmp_path):
    empty = tmp_path / "no-bwrap-here"
    empty.mkdir()
    sandbox = make_sandbox(ExecConfig(sandbox="bwrap"), lay.workspace, lay.home, str(empty))
    result = call(exec_tool(lay, sandbox), "echo hi")
    assert result.text.startswith("Error:") and result.decision == REFUSED_BY_SANDBOX
    assert "hi" not in result.text.splitlines()
