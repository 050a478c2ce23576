"""The exec tool: run a shell command in the workspace — guarded, sandboxed, time- and size-limited."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

from nanobot.config.schema import ExecConfig
from nanobot.errors import SandboxUnavailable
from nanobot.security.pathpolicy import PathPolicy, PathRefused
from nanobot.security.redact import REDACTOR, redact
from nanobot.security.sandbox import Sandbox
from nanobot.tools.base import (
    ALLOWED,
    BLOCKED_BY_GUARD,
    REFUSED_BY_PATH_POLICY,
    REFUSED_BY_SANDBOX,
    ToolContext,
    ToolResult,
)

log = logging.getLogger("nanobot.tools")

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)
_CHUNK = 65536
_DRAIN_GRACE = 2.0  # seconds to collect what is left in the pipe once the group is killed
_TERM_GRACE = 2.0  # seconds the top process gets to end its descendants after SIGTERM
# Read a little past the cap so a secret cut at the end of the capture is not half-shown.
_SLACK = 256


def child_env() -> dict[str, str]:
    """os.environ without credentials: names like *KEY*/*TOKEN*/… and values holding a secret."""
    secrets = REDACTOR.secrets()
    return {
        name: value
        for name, value in os.environ.items()
        if not _SECRET_NAME.search(name) and not any(s in value for s in secrets)
    }


class _Capture:
    """Merged stdout+stderr, read incrementally; stops reading once past `limit` characters."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.truncated = False

    async def pump(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(_CHUNK):
            self.buf += chunk
            # UTF-8 has at least one byte per character, so only decode when bytes exceed the cap.
            if len(self.buf) > self.limit and len(self.text()) > self.limit:
                self.truncated = True
                return

    def text(self) -> str:
        return self.buf.decode("utf-8", "replace")


async def _end(proc: asyncio.subprocess.Process, exited: asyncio.Task, reaps: bool) -> None:
    """When the top process is a reaper (reaps), ask it to end: it kills everything the command
    started, re-parented daemons included. Then SIGKILL the process group."""
    if reaps and not exited.done():
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(exited), _TERM_GRACE)
    _kill_group(proc.pid)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the whole group has already exited
    except PermissionError:
        log.warning("ExecTool: could not kill process group %d (permission denied)", pgid)


class ExecTool:
    """Runs `/bin/sh -c command` in its own session; the whole process group dies with the call."""

    name = "exec"
    description = (
        "Run a shell command and return its output (stdout and stderr) and exit code. "
        "It runs in the workspace unless working_dir is given, with a time limit and an output "
        "limit; destructive commands are refused. No input can be typed into it."
    )
    parameters = {
        "type": "object",
        "properties": {
            "command": {"type": "string", "description": "The shell command to run."},
            "working_dir": {
                "type": "string",
                "description": "Directory to run in (default: the workspace).",
            },
        },
        "required": ["command"],
        "additionalProperties": False,
    }

    def __init__(self, policy: PathPolicy, exec_cfg: ExecConfig, sandbox: Sandbox) -> None:
        self.cfg = exec_cfg
        self.policy = policy  # the same object the file tools use
        self.sandbox = sandbox

    async def execute(self, ctx: ToolContext, **kwargs: Any) -> ToolResult:
        command, working_dir = kwargs.get("command"), kwargs.get("working_dir")
        if not isinstance(command, str) or not command.strip():
            return ToolResult.error("command must be a non-empty string")
        log.info("ExecTool: %s", command)
        from nanobot.security.guard import check_command  # its parser loads on first use

        reason = check_command(command)
        if reason:
            log.warning("ExecTool: blocked by safety guard: %s: %s", reason, command)
            return ToolResult.error(
                f"Command blocked by safety guard ({reason}). Do not retry it in another form; "
                "use a narrower, non-destructive command (for example delete single files by "
                "name, inside the workspace), or ask the user to run it themselves.",
                BLOCKED_BY_GUARD,
            )
        try:
            cwd = self.policy.check_dir(working_dir)
        except PathRefused as exc:
            log.warning("ExecTool: working_dir refused: %s", exc)
            return ToolResult.error(str(exc), REFUSED_BY_PATH_POLICY)
        argv, env, fds = ["/bin/sh", "-c", command], child_env(), []
        if self.sandbox is not None:
            try:
                argv, env, fds = self.sandbox.wrap(argv, cwd=cwd, env=env)
            except SandboxUnavailable as exc:
                log.error("ExecTool: %s", exc)
                return ToolResult.error(
                    "exec is unavailable because the required sandbox cannot run on this host; "
                    "tell the user to check `nanobot doctor`",
                    REFUSED_BY_SANDBOX,
                )
        started = time.monotonic()
        try:
            raw, rc, timed_out, truncated = await self._run(argv, cwd, env, fds)
        except OSError as exc:
            log.warning("ExecTool: could not start: %s", exc)
            return ToolResult.error(f"could not start the command: {exc.strerror or exc}")
        log.info("ExecTool: exit %s in %.2fs", rc, time.monotonic() - started)
        return self._result(raw, rc, timed_out, truncated)

    async def _run(
        self, argv: list[str], cwd: Path, env: dict[str, str], fds: list[int] = ()
    ) -> tuple[str, int | None, bool, bool]:
        """Run argv (inheriting fds, which are closed here); returns (output, returncode,
        timed_out, truncated). Nothing outlives it."""
        loop = asyncio.get_running_loop()
        # Our own pipe (not asyncio's PIPE) so we can stop reading when the main process exits
        # even if a background child still holds the write end open.
        read_fd, write_fd = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                start_new_session=True,
                pass_fds=fds,
            )
        except OSError:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
            for fd in fds:
                os.close(fd)
        stream = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stream), os.fdopen(read_fd, "rb", buffering=0)
        )
        capture = _Capture(self.cfg.max_output_chars + _SLACK)
        pump = asyncio.create_task(capture.pump(stream))
        exited = asyncio.create_task(proc.wait())
        deadline = loop.time() + self.cfg.timeout
        timed_out = False
        try:
            done, _ = await asyncio.wait(
                {pump, exited}, timeout=self.cfg.timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                timed_out = True
            elif pump in done and not capture.truncated:  # output closed; wait for the exit
                try:
                    await asyncio.wait_for(asyncio.shield(exited), deadline - loop.time())
                except TimeoutError:
                    timed_out = True
        finally:
            # Always: background children (`sleep 600 &`) must not outlive the call.
            await _end(proc, exited, getattr(self.sandbox, "reaps", False))
            await exited
            try:
                await asyncio.wait_for(pump, _DRAIN_GRACE)
            except TimeoutError:
                log.warning("ExecTool: output still open after the process exited; stopped reading")
            transport.close()
        return capture.text(), proc.returncode, timed_out, capture.truncated

    def _result(self, raw: str, rc: int | None, timed_out: bool, truncated: bool) -> ToolResult:
        limit = self.cfg.max_output_chars
        output = full = redact(raw)
        if len(output) > limit or truncated:
            output = output[:limit] + f"\n... (output truncated at {limit} characters)"
        lines = [output.rstrip("\n")] if output.strip() else []
        killed_by_us = (timed_out or truncated) and rc == -signal.SIGKILL
        if timed_out:
            lines.insert(
                0,
                f"Error: command timed out after {self.cfg.timeout}s and was killed; make it "
                "faster, split it into smaller steps, or give it a shorter time limit of its own "
                "(any output it printed follows)",
            )
        elif rc and not killed_by_us:
            lines.append(f"Exit code: {rc}")
        text = "\n".join(lines) or "(no output)"
        decision = ALLOWED
        note = self.sandbox.explain(rc, full) if self.sandbox is not None else None
        if note:
            text, decision = f"{text}\n{note}", REFUSED_BY_SANDBOX
        return ToolResult(text, decision, exit_code=rc)
