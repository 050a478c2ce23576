"""The scheduler: fires due jobs into the route and runs each job's turn in its own session.

Pick-up: the gateway looks at jobs.json's identity (inode, mtime, size) every TICK seconds and
re-reads it when it changed, so `nanobot cron add/remove/enable/disable/run` take effect
within about a second, without a restart. It records runs through JobStore.update, which
changes only the job it ran and only when that job still exists.

A run: the job's message enters the route for its bound chat with sender "cron:<id>", origin
"cron" and the dedupe key "cron-<id>-<slot>" — a crash between handing it over and recording
the run cannot make it run twice. Missed slots after downtime run once, not once per slot.
The turn (`turn`) uses the session "cron:<id>", not the chat's; its result is sent when the
job delivers, or when it says something other than QUIET; what was sent is noted in the chat's
session, so the user's answer to a reminder is an ordinary turn of that chat.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from nanobot.agent.loop import Agent, turn_failed
from nanobot.config.schema import Config
from nanobot.route.dispatcher import FAILURE_REPLY
from nanobot.route.message import InboundMessage
from nanobot.security.audit import get_audit
from nanobot.services import targets
from nanobot.services.internal import Submitter, keep_last
from nanobot.services.jobs import Job, JobStore
from nanobot.tools.base import ToolContext

log = logging.getLogger("nanobot.cron")

TICK = 1.0
RETRY_SECONDS = 30.0  # after the route could not take a run (disk full)
QUIET = "NOTHING_TO_REPORT"
PROMPT = (
    "[Scheduled job '{name}' (id {id}, {schedule}) for the user in {channel} chat {chat}. "
    "This is not a message from the user; carry out the job's instruction below.{quiet}]\n\n"
    "{message}"
)
QUIET_HINT = (
    " Your answer is sent to the user only if it is worth telling: when there is nothing "
    f"new to report, answer exactly {QUIET}."
)


def due(jobs: list[Job], now: float, tz: str) -> list[tuple[Job, float]]:
    """(job, slot) for every job due at `now`: its next run has come, or a run was requested.
    A job missed many times is due once, at its oldest missed slot."""
    out = []
    for job in jobs:
        if job.state.run_requested:
            out.append((job, job.state.run_requested))
            continue
        nxt = job.next_run(tz)
        if nxt is not None and nxt <= now:
            out.append((job, nxt))
    return out


def ran(job_id: str, now: float, status: str):
    """A store change recording a run of `job_id` (a one-shot is removed); no-op when gone."""

    def change(jobs: list[Job]):
        for i, job in enumerate(jobs):
            if job.id != job_id:
                continue
            manual = bool(job.state.run_requested)
            if job.schedule.kind == "at" and not manual:
                del jobs[i]  # a one-shot that ran never runs again
                return True
            job.state.last_run, job.state.last_status = now, status
            job.state.run_requested = 0.0
            if job.schedule.kind != "at":  # a one-shot run by hand still fires at its time
                job.state.anchor = now
                job.state.runs += 1
            return True
        return False  # removed meanwhile: nothing to record, nothing brought back

    return change


class CronService:
    """Owns the firing loop; `turn` is the cron branch of the gateway's turn function."""

    def __init__(self, cfg: Config, store: JobStore, route: Submitter, agent: Agent) -> None:
        self.cfg = cfg
        self.store = store
        self.route = route
        self.agent = agent
        self.tz = cfg.agents.defaults.timezone
        self.jobs: list[Job] = []
        self._stamp: tuple[int, int, int] | None = None
        self._running: set[str] = set()
        self._retry_at: dict[str, float] = {}
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="cron")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                await self.check(time.time())
            except OSError as e:  # the store's folder unwritable, disk full: try again later
                log.error("cron: cannot read or update %s: %s", self.store.path, e)
            await asyncio.sleep(TICK)

    async def check(self, now: float) -> None:
        """Re-read the store when it changed, then fire what is due."""
        stamp = await asyncio.to_thread(self.store.stamp)
        if stamp != self._stamp:
            self.jobs = await asyncio.to_thread(self.store.load)
            self._stamp = await asyncio.to_thread(self.store.stamp)
            log.info("cron: %d job(s) loaded from %s", len(self.jobs), self.store.path)
        for job, slot in due(self.jobs, now, self.tz):
            if job.id in self._running or self._retry_at.get(job.id, 0) > now:
                continue
            await self._fire(job, slot, now)

    async def _fire(self, job: Job, slot: float, now: float) -> None:
        problem = self._target_problem(job)
        if problem:
            log.warning("cron: job %s (%s) skipped: %s", job.id, job.name, problem)
            get_audit().record("cron_run", job=job.id, status="skipped", reason=problem)
            await self._record(job, now, f"skipped: {problem}")
            return
        msg = InboundMessage(
            channel=job.channel,
            sender_id=f"cron:{job.id}",
            chat_id=job.chat_id,
            content=job.message,
            metadata={
                "origin": "cron",
                "dedupe_key": f"cron-{job.id}-{int(slot)}",
                "job": dataclasses.asdict(job),
            },
        )
        self._running.add(job.id)  # before the turn can start (and end)
        try:
            verdict = await self.route.submit(msg)
        except OSError as e:
            self._running.discard(job.id)
            self._retry_at[job.id] = now + RETRY_SECONDS
            log.error("cron: job %s could not be queued (%s); retrying in 30 s", job.id, e)
            return
        if not verdict:
            self._running.discard(job.id)
        if verdict:
            log.info(
                "cron: job %s (%s) started for %s:%s", job.id, job.name, job.channel, job.chat_id
            )
            status = "started"
        elif verdict.reason == "duplicate":
            status = "already ran"  # handed over before a crash; recorded now
        else:
            status = f"skipped: {verdict.reason}"
            log.warning("cron: job %s skipped this time: %s", job.id, verdict.reason)
        get_audit().record("cron_run", job=job.id, status=status, chat=job.chat_id)
        await self._record(job, now, status)

    async def _record(self, job: Job, now: float, status: str) -> None:
        await asyncio.to_thread(self.store.update, ran(job.id, now, status))
        self._stamp = None  # read back what we wrote (and whatever came with it)

    def _target_problem(self, job: Job) -> str | None:
        if job.bound == "chat":
            if job.channel in targets.push_channels(self.cfg):
                return None
            return f"channel {job.channel} is not enabled"
        return targets.target_error(self.cfg, job.channel, job.chat_id)

    # -- the turn ----------------------------------------------------------------------------

    async def turn(self, msg: InboundMessage, ctx: ToolContext) -> str:
        """Run a job's turn in its own session; the text to send to the chat ("" = nothing)."""
        job = Job.from_dict(msg.metadata["job"])
        key = f"cron:{job.id}"
        try:
            await asyncio.to_thread(keep_last, self.agent.sessions, key)
            prompt = PROMPT.format(
                name=job.name,
                id=job.id,
                schedule=job.schedule.describe(),
                channel=job.channel,
                chat=job.chat_id,
                quiet="" if job.deliver else QUIET_HINT,
                message=job.message,
            )
            inner = dataclasses.replace(msg, content=prompt)
            # progress=None: nothing streams to the chat before we know whether to send it
            inner_ctx = dataclasses.replace(ctx, session_key=key, progress=None)
            text = await self.agent.handle(inner, inner_ctx)
        except Exception:  # boundary: one failed job must not reach the user as a crash
            log.exception("cron: job %s (%s) failed", job.id, job.name)
            text = FAILURE_REPLY
        finally:
            self._running.discard(job.id)
        return await self._outcome(job, msg, text)

    async def _outcome(self, job: Job, msg: InboundMessage, text: str) -> str:
        failed = turn_failed(text) or text == FAILURE_REPLY
        quiet = not text.strip() or (not job.deliver and QUIET in text)
        if failed:
            status = "failed"
            text = f"(Scheduled job '{job.name}' could not run: {text.strip()})"
            send = job.deliver
        else:
            status, send = ("sent", True) if not quiet else ("quiet", False)
        log.info("cron: job %s (%s) finished: %s", job.id, job.name, status)
        get_audit().record("cron_run", job=job.id, status=status, delivered=send)
        if not send:
            return ""
        note = {"role": "assistant", "content": f"[scheduled job '{job.name}'] {text}"}
        await asyncio.to_thread(self.agent.sessions.append, msg.session_key, note)
        return text
