"""Scheduled jobs and their store: NANOBOT_HOME/cron/jobs.json, shared by the CLI and the gateway.

Every change is read-modify-write under an exclusive lock (cron/.jobs.lock): read the file as
it is now, change only what this caller means to change, replace the file atomically (temp
file, fsync, rename; mode 0600). So the gateway recording a run never brings back a job the
CLI removed, and the CLI never loses a run the gateway recorded. A store that cannot be read
is moved aside (jobs.json.corrupt-<time>) with a warning naming it, never silently emptied.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from nanobot import paths
from nanobot.services import cronexpr

log = logging.getLogger("nanobot.cron")

MIN_EVERY_SECONDS = 60
VERSION = 1
T = TypeVar("T")


@dataclass
class Schedule:
    """When a job fires: every N seconds, a cron expression in a zone, or once at an instant."""

    kind: str  # "every" | "cron" | "at"
    every_seconds: int = 0
    expr: str = ""
    tz: str = ""  # IANA zone of a cron expression; "" = agents.defaults.timezone
    at: float = 0.0  # Unix seconds of a one-shot
    at_text: str = ""  # as the user wrote it (for `list`)

    def next_after(self, since: float, default_tz: str = "") -> float | None:
        """The first firing instant after `since`; None when it never fires again."""
        if self.kind == "every":
            return since + self.every_seconds
        if self.kind == "cron":
            return cronexpr.parse(self.expr).next_after(since, cronexpr.zone(self.tz or default_tz))
        return self.at

    def describe(self) -> str:
        if self.kind == "every":
            return f"every {self.every_seconds} s"
        if self.kind == "cron":
            return f"cron '{self.expr}'" + (f" ({self.tz})" if self.tz else "")
        return f"once at {self.at_text or self.at}"


def every(seconds: int) -> Schedule:
    if seconds < MIN_EVERY_SECONDS:
        raise ValueError(f"every must be at least {MIN_EVERY_SECONDS} seconds, not {seconds}")
    return Schedule("every", every_seconds=int(seconds))


def cron(expr: str, tz: str = "") -> Schedule:
    """Raises ValueError (CronSyntaxError, unknown zone, never fires) naming the fix."""
    parsed = cronexpr.parse(expr)
    zone = cronexpr.zone(tz)
    if parsed.next_after(time.time(), zone) is None:
        raise ValueError(f"'{expr}' never fires (no such date); check the day and month fields")
    return Schedule("cron", expr=parsed.text, tz=tz)


def at(text: str, default_tz: str = "") -> Schedule:
    """An ISO time ("2026-03-01T09:00", "2026-03-01 09:00+01:00"); without an offset it is in
    `default_tz` (agents.defaults.timezone; "" = the host's zone)."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"'{text}' is not an ISO time; write e.g. 2026-03-01T09:00 or 2026-03-01T09:00+01:00"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=cronexpr.zone(default_tz))
    return Schedule("at", at=when.timestamp(), at_text=text.strip())


@dataclass
class JobState:
    anchor: float = 0.0  # schedules count from here (creation, enabling, the last run)
    last_run: float = 0.0
    last_status: str = ""  # "sent", "quiet", "failed", "skipped: …"
    runs: int = 0
    run_requested: float = 0.0  # `nanobot cron run`: run once at the next check


@dataclass
class Job:
    id: str
    name: str
    message: str
    schedule: Schedule
    channel: str  # the chat it reports to
    chat_id: str
    bound: str = "chat"  # "chat": made in that chat; "allowFrom": named by the CLI
    deliver: bool = True  # always send the result; False: only when there is something to say
    enabled: bool = True
    created_at: float = field(default_factory=time.time)
    state: JobState = field(default_factory=JobState)

    def next_run(self, default_tz: str = "") -> float | None:
        if not self.enabled or (self.schedule.kind == "at" and self.state.runs):
            return None  # a one-shot that ran never runs again
        return self.schedule.next_after(self.state.anchor or self.created_at, default_tz)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        d = dict(d)
        d["schedule"] = Schedule(**d["schedule"])
        d["state"] = JobState(**d.get("state", {}))
        return cls(**d)


def new_id() -> str:
    return secrets.token_hex(4)


class JobStore:
    """The jobs file. Methods block (a lock and a write): call them in a thread on a loop."""

    def __init__(self, root: Path | None = None) -> None:
        self.dir = root or paths.home() / "cron"
        self.path = self.dir / "jobs.json"

    def stamp(self) -> tuple[int, int, int] | None:
        """What changes whenever the file is replaced (for watching); None when absent."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def load(self) -> list[Job]:
        return self.update(lambda jobs: None, write=False)[0]

    def update(
        self, change: Callable[[list[Job]], T], *, write: bool = True
    ) -> tuple[list[Job], T]:
        """Apply `change` to the jobs as they are on disk now, under the lock, and save them
        (unless `write` is False or `change` returned False). Returns (jobs, result)."""
        paths.ensure_dir(self.dir)
        fd = os.open(self.dir / ".jobs.lock", os.O_RDWR | os.O_CREAT, paths.FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            jobs = self._read()
            result = change(jobs)
            if write and result is not False:
                data = {"version": VERSION, "jobs": [asdict(j) for j in jobs]}
                paths.atomic_write(self.path, json.dumps(data, indent=1, ensure_ascii=False))
            return jobs, result
        finally:
            os.close(fd)  # releases the lock

    def _read(self) -> list[Job]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
                raise ValueError("no 'jobs' list")
            return [Job.from_dict(d) for d in data["jobs"]]
        except (ValueError, TypeError, KeyError) as e:
            aside = self.path.with_name(f"jobs.json.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            os.replace(self.path, aside)
            log.warning(
                "the cron store %s is unreadable (%s); moved aside as %s — the jobs in it do "
                "not run; fix it and move it back, or add them again with 'nanobot cron add'",
                self.path,
                e,
                aside,
            )
            return []
