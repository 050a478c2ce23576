"""ExecTool with real processes: guard, working_dir, secrets, leftovers, output cap, timeout, sandbox seam."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from nanobot.config.schema import ExecConfig
from nanobot.errors import SandboxUnavailable
from nanobot.security.pathpolicy import PathPolicy
from nanobot.security.redact import REDACTOR
from nanobot.tools.base import (
    ALLOWED,
    BLOCKED_BY_GUARD,
    REFUSED_BY_PATH_POLICY,
    REFUSED_BY_SANDBOX,
    ToolContext,
    ToolResult,
    validate_args,
)
from nanobot.tools.shell import ExecTool, child_env


@pytest.fixture
def dirs(tmp_path: Path):
    home = tmp_path / "H"
    ws = home / "workspace"
    (ws / "sub").mkdir(parents=True)
    (home / "config.json").write_text("{}")
    return ws, home


def run(tool: ExecTool, command: str, **kwargs) -> ToolResult:
    return asyncio.run(tool.execute(ToolContext(), command=command, **kwargs))


def make(dirs, restrict: bool = True, sandbox=None, **cfg) -> ExecTool:
    ws, home = dirs
    return ExecTool(PathPolicy(ws, restrict, home), ExecConfig(**cfg), sandbox)


def alive(pid: int) -> bool:
    """True while pid exists and is not a zombie (PID 1 here may not reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def gone(pid: int, within: float = 5.0) -> bool:
    """Poll until pid is gone (SIGKILL delivery is asynchronous); a bound, not a timing claim."""
    deadline = time.monotonic() + within
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


@pytest.fixture
def secret(monkeypatch):
    """A fake secret registered for redaction and present in os.environ under two names."""
    value = f"fake-secret-{uuid.uuid4().hex}"
    before = REDACTOR.secrets()
    REDACTOR.add(value)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-unregistered-but-named-like-a-key")
    monkeypatch.setenv("HARMLESS_LOOKING", value)
    monkeypatch.setenv("NANOBOT_TEST_VISIBLE", "visible-value")
    yield value
    REDACTOR.clear()
    REDACTOR.add(*before)


def test_schema():
    assert ExecTool.name == "exec"
    params = ExecTool.parameters
    assert params["required"] == ["command"] and params["additionalProperties"] is False
    assert validate_args(params, {"command": "ls", "working_dir": "sub"}) == []
    assert validate_args(params, {"command": "ls", "cwd": "/"}) == ["unknown argument 'cwd'"]


def test_output_exit_code_and_logging(dirs, caplog):
    caplog.set_level(logging.INFO, logger="nanobot.tools")
    result = run(make(dirs), "echo out; echo err >&2; exit 3")
    assert result.text == "out\nerr\nExit code: 3"
    assert result.exit_code == 3 and result.decision == ALLOWED
    assert "ExecTool: echo out; echo err >&2; exit 3" in caplog.text
    assert "ExecTool: exit 3 in " in caplog.text
    ok = run(make(dirs), "true")
    assert ok.text == "(no output)" and ok.exit_code == 0


def test_runs_in_workspace_with_no_stdin(dirs):
    ws, _ = dirs
    assert run(make(dirs), "pwd").text == str(ws.resolve())
    assert run(make(dirs), "cat").text == "(no output)"  # stdin is /dev/null: no hang
    assert run(make(dirs), "pwd", working_dir="sub").text == str(ws.resolve() / "sub")


def test_signal_exit_is_reported(dirs):
    result = run(make(dirs), "kill -TERM $$")
    assert result.exit_code == -signal.SIGTERM and "Exit code: -15" in result.text


@pytest.mark.parametrize(
    "command",
    [
        "rm -rf /",
        "touch {m}; rm -rf x",
        "touch {m} && $(echo rm) -rf /",
        "c=rm; touch {m}; $c -rf /",
        "touch {m}; :(){{ :|:& }};:",
        "touch {m}; echo cm0gLXJmIC8= | base64 -d | sh",
    ],
)
def test_guard_blocks_before_anything_runs(dirs, caplog, command):
    ws, _ = dirs
    caplog.set_level(logging.INFO, logger="nanobot.tools")
    marker = ws / "ran"
    result = run(make(dirs), command.format(m=marker))
    assert result.decision == BLOCKED_BY_GUARD and result.exit_code is None
    assert result.text.startswith("Error: Command blocked by safety guard (")
    assert not marker.exists()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("ExecTool: blocked by safety guard: " in r.getMessage() for r in warnings)


@pytest.mark.parametrize(
    "working_dir", ["/", "/etc", "..", "../..", "/proc/self/cwd", "../config.json"]
)
def test_working_dir_outside_workspace_is_refused(dirs, working_dir):
    result = run(make(dirs), "pwd", working_dir=working_dir)
    assert result.decision == REFUSED_BY_PATH_POLICY and result.text.startswith("Error:")
    assert result.exit_code is None


def test_working_dir_unrestricted(dirs, tmp_path):
    ws, home = dirs
    tool = make(dirs, restrict=False)
    assert run(tool, "pwd", working_dir="/").text == "/"
    assert run(tool, "pwd", working_dir=str(tmp_path)).text == str(tmp_path.resolve())
    assert run(tool, "pwd", working_dir="..").decision == REFUSED_BY_PATH_POLICY  # NANOBOT_HOME
    assert run(tool, "pwd", working_dir="missing").text.startswith("Error:")


@pytest.mark.parametrize(
    "command",
    # The last form slips past the guard's /proc/*/environ rule: the environment itself is clean.
    ["env", "printenv", "set", "export -p", "cd /proc/self && tr '\\0' '\\n' < environ"],
)
def test_secrets_are_not_in_the_environment(dirs, secret, command):
    result = run(make(dirs), command)
    assert result.decision == ALLOWED
    assert "NANOBOT_TEST_VISIBLE" in result.text  # the environment is really there...
    assert secret not in result.text  # ...without the registered secret
    assert "HARMLESS_LOOKING" not in result.text
    assert "OPENAI_API_KEY" not in result.text and "sk-unregistered" not in result.text


def test_parent_environment_is_blocked(dirs, secret):
    for command in ("cat /proc/$PPID/environ", "cat /proc/1/environ", "cat /proc/self/environ"):
        result = run(make(dirs), command)
        assert result.decision == BLOCKED_BY_GUARD and secret not in result.text


def test_child_env_filters_names_and_values(secret, monkeypatch):
    for name in (
        "GITHUB_TOKEN",
        "db_password",
        "AWS_SECRET_ACCESS_KEY",
        "my_credentials",
        "apikey",
    ):
        monkeypatch.setenv(name, "x")
    env = child_env()
    assert env["NANOBOT_TEST_VISIBLE"] == "visible-value"
    for name in (
        "GITHUB_TOKEN",
        "db_password",
        "AWS_SECRET_ACCESS_KEY",
        "my_credentials",
        "apikey",
    ):
        assert name not in env
    assert secret not in "".join(env.values()) and "PATH" in env


def test_secrets_printed_by_a_command_are_redacted(dirs, secret, monkeypatch, tmp_path):
    # `cat ~/.nanobot/config.json` without a sandbox: the guard lets it run; redaction still holds.
    fake_home = tmp_path / "userhome"
    (fake_home / ".nanobot").mkdir(parents=True)
    (fake_home / ".nanobot" / "config.json").write_text(f'{{"apiKey": "{secret}"}}')
    monkeypatch.setenv("HOME", str(fake_home))
    result = run(make(dirs), "cat ~/.nanobot/config.json")
    assert '"apiKey"' in result.text and secret not in result.text and "[REDACTED]" in result.text


def test_background_process_does_not_outlive_the_call(dirs):
    tool = make(dirs, timeout=30)
    for command in (
        "sleep 600 & echo $!",
        "sh -c 'sleep 600 & echo $!'",
        "nohup sleep 600 >/dev/null 2>&1 & echo $!",
    ):
        result = run(tool, command)
        assert "timed out" not in result.text  # the held-open pipe did not make it wait
        pid = int(result.text.split()[0])
        assert gone(pid), f"pid {pid} from {command!r} survived the call"


def test_delayed_background_write_never_happens(dirs):
    ws, _ = dirs
    flag = ws / "after"
    result = run(make(dirs, timeout=30), f"(sleep 1; touch {flag}) & echo started")
    assert result.text == "started"
    time.sleep(2)
    assert not flag.exists()


def test_yes_is_cut_at_the_output_cap(dirs):
    result = run(make(dirs, timeout=30), "yes")
    assert result.text.endswith("... (output truncated at 10000 characters)")
    body = result.text.split("\n... (output truncated")[0]
    assert len(body) == 10_000 and set(body) == {"y", "\n"}
    assert "timed out" not in result.text and "Exit code" not in result.text


def test_custom_cap_and_multibyte_output(dirs):
    result = run(make(dirs, timeout=30, max_output_chars=300), "while :; do printf 'é€'; done")
    body = result.text.split("\n... (output truncated at 300 characters)")[0]
    assert len(body) == 300 and set(body) == {"é", "€"}


def test_long_finite_output_is_truncated_with_exit_code(dirs):
    result = run(make(dirs, max_output_chars=100), "seq 1 1000; exit 4")
    assert "(output truncated at 100 characters)" in result.text
    assert result.text.startswith("1\n2\n3\n")


def test_timeout_kills_the_group_and_keeps_partial_output(dirs):
    result = run(make(dirs, timeout=1), "echo partial; sleep 300 & echo $!; sleep 300")
    assert result.text.startswith("Error: command timed out after 1s")
    assert "partial" in result.text
    assert result.exit_code == -signal.SIGKILL
    pid = int(result.text.splitlines()[-1])
    assert gone(pid)


def test_timeout_while_output_stays_open(dirs):
    # The main process closes its output early but keeps running: still bounded by the timeout.
    result = run(make(dirs, timeout=1), "echo early; exec >/dev/null 2>&1; sleep 300")
    assert result.text.startswith("Error: command timed out") and "early" in result.text


def test_invalid_command_argument(dirs):
    assert run(make(dirs), "").text.startswith("Error:")
    result = asyncio.run(make(dirs).execute(ToolContext(), command=["ls"]))
    assert result.text.startswith("Error:")


class ArgvSandbox:
    """A stand-in for the sandbox seam: runs the command under `env -u`, explains failures."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], Path, dict[str, str]]] = []

    def wrap(self, argv, cwd, env):
        self.calls.append((list(argv), cwd, dict(env)))
        env = dict(env, SANDBOXED="yes")
        return ["/usr/bin/env", "-u", "NANOBOT_TEST_VISIBLE", *argv], env, []

    def explain(self, returncode, output):
        return "Note: the sandbox refused a write." if "Read-only" in output else None


def test_sandbox_seam(dirs, secret):
    ws, _ = dirs
    sandbox = ArgvSandbox()
    tool = make(dirs, sandbox=sandbox)
    result = run(tool, "echo $SANDBOXED ${NANOBOT_TEST_VISIBLE:-unset}")
    assert result.text == "yes unset" and result.decision == ALLOWED
    argv, cwd, env = sandbox.calls[0]
    assert argv == ["/bin/sh", "-c", "echo $SANDBOXED ${NANOBOT_TEST_VISIBLE:-unset}"]
    assert cwd == ws.resolve() and "OPENAI_API_KEY" not in env and secret not in env.values()
    refused = run(tool, "echo 'touch: cannot touch x: Read-only file system' >&2; exit 1")
    assert refused.decision == REFUSED_BY_SANDBOX
    assert refused.text.endswith("Exit code: 1\nNote: the sandbox refused a write.")
    blocked = run(tool, "rm -rf /")
    assert blocked.decision == BLOCKED_BY_GUARD and len(sandbox.calls) == 2  # never wrapped


class MissingSandbox:
    def wrap(self, argv, cwd, env):
        raise SandboxUnavailable('tools.exec.sandbox is "bwrap" but bubblewrap cannot run here')


def test_required_sandbox_missing_fails_closed(dirs, caplog):
    ws, _ = dirs
    result = run(make(dirs, sandbox=MissingSandbox()), f"touch {ws / 'x'}")
    assert result.decision == REFUSED_BY_SANDBOX and result.text.startswith("Error:")
    assert not (ws / "x").exists()
    assert "bubblewrap cannot run here" in caplog.text


def test_unstartable_program_is_an_error(dirs):
    class BrokenSandbox:
        def __init__(self):
            self.fds = []

        def wrap(self, argv, cwd, env):
            r, w = os.pipe()
            os.close(w)
            self.fds.append(r)
            return ["/nonexistent/bwrap", *argv], env, [r]

    sandbox = BrokenSandbox()
    result = run(make(dirs, sandbox=sandbox), "true")
    assert result.text.startswith("Error: could not start the command")
    with pytest.raises(OSError):  # the descriptor meant for the child was closed all the same
        os.fstat(sandbox.fds[0])


def test_descriptors_from_the_sandbox_reach_the_child_and_are_closed(dirs):
    """How the seccomp program reaches bwrap: a descriptor inherited by the child."""

    class FdSandbox:
        fds: list[int] = []

        def wrap(self, argv, cwd, env):
            r, w = os.pipe()
            os.write(w, b"from the sandbox")
            os.close(w)
            self.fds.append(r)
            return ["/bin/sh", "-c", f"cat /dev/fd/{r}"], env, [r]

        def explain(self, returncode, output):
            return None

    sandbox = FdSandbox()
    tool = make(dirs, sandbox=sandbox)
    assert run(tool, "true").text == "from the sandbox"
    with pytest.raises(OSError):
        os.fstat(sandbox.fds[0])


def test_no_descriptor_leak(dirs):
    tool = make(dirs)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        run(tool, "sleep 60 & echo x")
    assert len(os.listdir("/proc/self/fd")) <= before + 2
