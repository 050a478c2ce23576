"""Background subagents: a task run by the same turn function with fewer tools, reported back.

A subagent gets its own session ("subagent:<id>", removed when it ends), its own tool-step
limit (agents.defaults.subagentMaxToolIterations) and the agent's tools minus spawn and cron;
its message tool reaches only the chat that spawned it. At most maxSubagents run at once.
Its result enters the route as a message of that chat (origin "subagent"), so the agent
relays it in the chat's own conversation; a failure or /stop is said in the chat directly.
Running tasks are listed in state/subagents.json: one still listed when the gateway starts
was cut off by a restart or crash, and its chat is told so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from nanobot import paths
from nanobot.agent.loop import Agent, turn_failed
from nanobot.agent.progress import TurnProgress
from nanobot.config.schema import Config
from nanobot.route.message import InboundMessage, OutboundMessage
from nanobot.security.audit import get_audit
from nanobot.services.internal import Sender, Submitter
from nanobot.tools.base import ToolContext
from nanobot.tools.registry import ToolRegistry

log = logging.getLogger("nanobot.subagents")

WITHOUT = ("spawn", "cron")
PROMPT = (
    "[You are a background worker for the user's request below. Work on it with your tools "
    "and finish with the result as your answer; nobody will reply to your questions.]\n\n{task}"
)
REPORT = (
    "[Background task {id} ('{label}') finished. Its result is below; tell the user what "
    "matters, briefly. This is not a new request.]\n\n{result}"
)


@dataclass
class Running:
    id: str
    label: str
    channel: str
    chat_id: str
    started: float = field(default_factory=time.time)
    task: asyncio.Task | None = field(default=None, repr=False)
    progress: TurnProgress = field(default_factory=TurnProgress, repr=False)
    stopped_by_user: bool = False


class OwnChat:
    """The outbox of a subagent: its spawning chat only."""

    def __init__(self, sender: Sender, channel: str, chat_id: str) -> None:
        self._sender, self._channel, self._chat = sender, channel, chat_id

    async def send(self, text: str, *, channel: str | None = None, chat_id: str | None = None):
        if (channel or self._channel, chat_id or self._chat) != (self._channel, self._chat):
            raise PermissionError("a background task may message only its own chat")
        await self._sender.send_now(OutboundMessage(self._channel, self._chat, text))


class Subagents:
    """The gateway's subagents; made empty by the tool table, `attach`ed by the gateway."""

    def __init__(self) -> None:
        self.running: dict[str, Running] = {}
        self.limit = 0
        self._agent: Agent | None = None
        self._route: Submitter | None = None
        self._sender: Sender | None = None
        self._state: Path | None = None
        self._write = asyncio.Lock()

    @property
    def attached(self) -> bool:
        return self._agent is not None

    def attach(
        self, cfg: Config, agent: Agent, route: Submitter, sender: Sender, state: Path
    ) -> None:
        d = cfg.agents.defaults
        self.limit = d.max_concurrent_subagents or d.max_subagents
        tools = ToolRegistry(agent.tools.tool_limiter)
        for name in agent.tools.names():
            if name not in WITHOUT:
                tools.register(agent.tools.get(name))
        settings = dataclasses.replace(d, max_tool_iterations=d.subagent_max_tool_iterations)
        self._agent = dataclasses.replace(agent, tools=tools, settings=settings)
        self._route, self._sender, self._state = route, sender, state / "subagents.json"

    # -- starting and stopping ---------------------------------------------------------------

    async def spawn(self, ctx: ToolContext, task: str, label: str) -> Running:
        """Start `task` for the chat of ctx; raises LookupError (limit) or RuntimeError."""
        if self._agent is None:
            raise RuntimeError("background tasks run only in `nanobot gateway`; do it directly")
        if len(self.running) >= self.limit:
            raise LookupError(
                f"{len(self.running)} background task(s) already run (agents.defaults."
                "maxSubagents); wait for one to finish or do this one directly"
            )
        rec = Running(secrets.token_hex(3), label or task[:40], ctx.channel, ctx.chat_id)
        self.running[rec.id] = rec
        await self._save()
        rec.task = asyncio.create_task(self._run(rec, task), name=f"subagent-{rec.id}")
        log.info("subagent %s started for %s:%s: %s", rec.id, rec.channel, rec.chat_id, rec.label)
        get_audit().record("subagent", id=rec.id, status="started", chat=rec.chat_id)
        return rec

    def in_chat(self, channel: str, chat_id: str) -> list[Running]:
        return [r for r in self.running.values() if (r.channel, r.chat_id) == (channel, chat_id)]

    def stop(self, task_id: str, channel: str, chat_id: str) -> bool:
        rec = self.running.get(task_id)
        if rec is None or (rec.channel, rec.chat_id) != (channel, chat_id):
            return False
        rec.stopped_by_user = True
        rec.progress.cancel.set()  # the turn ends at once and stores nothing
        return True

    def command(self, channel: str, chat_id: str, text: str) -> str | None:
        """The answer to `/tasks` or `/stop ID` in a chat; None for any other text."""
        words = text.strip().split()
        if not words or words[0].lower() not in ("/tasks", "/stop"):
            return None
        if words[0].lower() == "/tasks":
            mine = self.in_chat(channel, chat_id)
            if not mine:
                return "No background tasks are running in this chat."
            now = time.time()
            lines = [f"{r.id}: {r.label} (running {now - r.started:.0f} s)" for r in mine]
            return "Background tasks:\n" + "\n".join(lines) + "\nStop one with /stop ID."
        if len(words) != 2:
            return "Usage: /stop ID (see /tasks for the ids)."
        if self.stop(words[1], channel, chat_id):
            return f"Stopping background task {words[1]}."
        return f"No background task {words[1]} is running in this chat (see /tasks)."

    async def shutdown(self) -> None:
        """Cancel what runs; the records stay in the state file (reported at the next start)."""
        tasks = [r.task for r in self.running.values() if r.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- one task ----------------------------------------------------------------------------

    async def _run(self, rec: Running, task: str) -> None:
        key = f"subagent:{rec.id}"
        outbox = OwnChat(self._sender, rec.channel, rec.chat_id)
        ctx = ToolContext(rec.channel, rec.chat_id, key, key, None, outbox, rec.progress)
        status = "failed"
        try:
            result = await self._agent.run_turn(PROMPT.format(task=task), ctx)
            if rec.stopped_by_user:
                status = "stopped"
                await self._notice(rec, "was stopped")
            elif result.strip() and not turn_failed(result):
                status = "done"
                await self._report(rec, result)
            else:
                await self._notice(rec, "could not finish (the language model did not answer)")
        except asyncio.CancelledError:
            log.warning("subagent %s interrupted by shutdown", rec.id)
            raise  # stays listed: the next start tells the chat
        except Exception:  # boundary: a broken task is reported, never taken down with others
            log.exception("subagent %s failed", rec.id)
            await self._notice(rec, "failed; see the gateway log")
        await self._finish(rec, status)

    async def _finish(self, rec: Running, status: str) -> None:
        self.running.pop(rec.id, None)
        await self._save()
        path = self._agent.sessions.path(f"subagent:{rec.id}")
        await asyncio.to_thread(path.unlink, True)
        log.info("subagent %s %s", rec.id, status)
        get_audit().record("subagent", id=rec.id, status=status, chat=rec.chat_id)

    async def _report(self, rec: Running, result: str) -> None:
        msg = InboundMessage(
            rec.channel,
            f"subagent:{rec.id}",
            rec.chat_id,
            REPORT.format(id=rec.id, label=rec.label, result=result),
            metadata={"origin": "subagent", "dedupe_key": f"subagent-{rec.id}"},
        )
        try:
            verdict = await self._route.submit(msg)
        except OSError as e:
            log.error("subagent %s: its result could not be queued: %s", rec.id, e)
            return
        if not verdict:
            log.warning("subagent %s: its result was not taken: %s", rec.id, verdict.reason)

    async def _notice(self, rec: Running, what: str) -> None:
        text = f"Background task {rec.id} ('{rec.label}') {what}."
        try:
            await self._sender.send_now(OutboundMessage(rec.channel, rec.chat_id, text))
        except OSError as e:
            log.error("subagent %s: could not tell %s:%s: %s", rec.id, rec.channel, rec.chat_id, e)

    # -- the state file ----------------------------------------------------------------------

    async def _save(self) -> None:
        data = {
            r.id: {
                "label": r.label,
                "channel": r.channel,
                "chat_id": r.chat_id,
                "started": r.started,
            }
            for r in self.running.values()
        }
        async with self._write:  # writes land in the order they were made
            await asyncio.to_thread(paths.atomic_write, self._state, json.dumps(data))

    async def report_interrupted(self) -> int:
        """Tell each chat whose task a restart cut off; returns how many."""
        try:
            raw = await asyncio.to_thread(self._state.read_text, encoding="utf-8")
            left = json.loads(raw)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as e:
            log.warning(
                "%s is unreadable (%s); interrupted tasks cannot be reported", self._state, e
            )
            left = {}
        for task_id, r in left.items():
            rec = Running(task_id, r.get("label", ""), r["channel"], r["chat_id"])
            await self._notice(rec, "was interrupted by a gateway restart and did not finish")
            path = self._agent.sessions.path(f"subagent:{task_id}")
            await asyncio.to_thread(path.unlink, True)
            get_audit().record("subagent", id=task_id, status="interrupted", chat=rec.chat_id)
        await self._save()
        return len(left)
