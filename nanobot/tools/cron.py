"""The `cron` tool: the agent schedules, lists and removes jobs of the chat it is talking in.

A job made here is bound to the turn's chat (from the per-call context): it reports there and
nowhere else, and the tool sees only that chat's jobs. Background runs (a job's own turn, the
heartbeat, a subagent) cannot use it, so no run can schedule or re-trigger itself. Jobs run
only while `nanobot gateway` runs; the store is shared with `nanobot cron`.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from nanobot.config.schema import Config
from nanobot.services import cronexpr, jobs, targets
from nanobot.services.internal import is_internal
from nanobot.services.jobs import Job, JobState, JobStore
from nanobot.tools.base import INVALID_ARGUMENTS, ToolContext, ToolResult

MAX_JOBS_PER_CHAT = 50


def when(ts: float | None, tz: str) -> str:
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, cronexpr.zone(tz)).strftime("%Y-%m-%d %H:%M %Z")


def describe(job: Job, tz: str) -> str:
    mode = "always sends its result" if job.deliver else "sends only news"
    return (
        f"{job.id} '{job.name}': {job.schedule.describe()}, next {when(job.next_run(tz), tz)}"
        f"{'' if job.enabled else ' (disabled)'}; {mode}"
    )


class CronTool:
    name = "cron"
    description = (
        "Schedule reminders and recurring jobs for this chat, list them, or remove one. "
        "action=add needs `message` (what to do or say when it runs) and exactly one of "
        "`at` (ISO time, once; without an offset it is in the configured time zone), "
        "`every_seconds` (>= 60) or `cron_expr` (5 fields, optional `tz` IANA zone). "
        "deliver=true (default) always sends the run's answer; deliver=false sends it only "
        "when there is something new to report. Jobs run while the gateway runs."
    )
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {
            "action": {"type": "string", "enum": ["add", "list", "remove"]},
            "message": {"type": "string", "minLength": 1, "maxLength": 4000},
            "name": {"type": "string", "maxLength": 80},
            "at": {"type": "string"},
            "every_seconds": {"type": "integer", "minimum": jobs.MIN_EVERY_SECONDS},
            "cron_expr": {"type": "string"},
            "tz": {"type": "string"},
            "deliver": {"type": "boolean"},
            "job_id": {"type": "string"},
        },
        "required": ["action"],
        "additionalProperties": False,
    }

    def __init__(self, cfg: Config, store: JobStore | None = None) -> None:
        self.cfg = cfg
        self.store = store or JobStore()
        self.tz = cfg.agents.defaults.timezone

    async def execute(self, ctx: ToolContext, **kw: Any) -> ToolResult:
        if is_internal(ctx.sender_id):
            return ToolResult.error(
                "a scheduled or background run cannot add or remove jobs; "
                "tell the user instead, and let them ask for it"
            )
        if ctx.channel not in targets.push_channels(self.cfg):
            return ToolResult.error(
                f"jobs report to a chat app (Telegram, WhatsApp), and this conversation "
                f"({ctx.channel}) cannot receive messages later; the user can ask from a chat, "
                "or run `nanobot cron add --to CHAT` on the server"
            )
        action = kw.pop("action")
        if action == "add":
            return await self._add(ctx, kw)
        if action == "list":
            return await self._list(ctx)
        return await self._remove(ctx, kw.get("job_id", ""))

    async def _add(self, ctx: ToolContext, kw: dict[str, Any]) -> ToolResult:
        message = kw.get("message", "").strip()
        kinds = [k for k in ("at", "every_seconds", "cron_expr") if kw.get(k) is not None]
        if not message or len(kinds) != 1:
            return ToolResult.error(
                "add needs `message` and exactly one of `at`, `every_seconds`, `cron_expr`",
                INVALID_ARGUMENTS,
            )
        try:
            if kinds[0] == "at":
                schedule = jobs.at(kw["at"], self.tz)
            elif kinds[0] == "every_seconds":
                schedule = jobs.every(kw["every_seconds"])
            else:
                schedule = jobs.cron(kw["cron_expr"], kw.get("tz", ""))
        except ValueError as e:
            return ToolResult.error(str(e), INVALID_ARGUMENTS)
        now = time.time()
        if schedule.kind == "at" and schedule.at < now - 60:
            return ToolResult.error(f"{kw['at']} is in the past (now: {when(now, self.tz)})")
        job = Job(
            id=jobs.new_id(),
            name=(kw.get("name") or message[:40]).strip(),
            message=message,
            schedule=schedule,
            channel=ctx.channel,
            chat_id=ctx.chat_id,
            bound="chat",
            deliver=kw.get("deliver", True),
            created_at=now,
            state=JobState(anchor=now),
        )

        def add(current: list[Job]):
            mine = [j for j in current if (j.channel, j.chat_id) == (ctx.channel, ctx.chat_id)]
            if len(mine) >= MAX_JOBS_PER_CHAT:
                return False
            current.append(job)
            return True

        _, added = await asyncio.to_thread(self.store.update, add)
        if not added:
            return ToolResult.error(
                f"this chat already has {MAX_JOBS_PER_CHAT} jobs; remove one first"
            )
        return ToolResult(f"Scheduled {describe(job, self.tz)}.")

    async def _list(self, ctx: ToolContext) -> ToolResult:
        current = await asyncio.to_thread(self.store.load)
        mine = [j for j in current if (j.channel, j.chat_id) == (ctx.channel, ctx.chat_id)]
        if not mine:
            return ToolResult("No scheduled jobs in this chat.")
        return ToolResult("\n".join(describe(j, self.tz) for j in mine))

    async def _remove(self, ctx: ToolContext, job_id: str) -> ToolResult:
        def remove(current: list[Job]):
            for i, j in enumerate(current):
                if j.id == job_id and (j.channel, j.chat_id) == (ctx.channel, ctx.chat_id):
                    del current[i]
                    return True
            return False

        _, removed = await asyncio.to_thread(self.store.update, remove)
        if not removed:
            return ToolResult.error(f"no job '{job_id}' in this chat; use action=list")
        return ToolResult(f"Removed job {job_id}.")
