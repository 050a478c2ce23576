"""Schedules: cron expressions against known dates (time zones, DST, Feb 29), every, at,
and missed runs after downtime (once, not once per slot)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from nanobot.services import cronexpr, jobs
from nanobot.services.cron import due, ran
from nanobot.services.jobs import Job, JobState

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
UTC = ZoneInfo("UTC")


def ts(y, mo, d, h=0, mi=0, tz=UTC, fold=0) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=tz, fold=fold).timestamp()


def nxt(expr: str, after: float, tz=UTC) -> datetime:
    t = cronexpr.parse(expr).next_after(after, tz)
    assert t is not None
    return datetime.fromtimestamp(t, tz)


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("*/15 * * * *", (2026, 5, 4, 10, 7), (2026, 5, 4, 10, 15)),
        ("0 9 * * mon-fri", (2026, 5, 8, 10, 0), (2026, 5, 11, 9, 0)),  # Fri → Mon
        ("30 8 1 * *", (2026, 1, 31, 12, 0), (2026, 2, 1, 8, 30)),
        ("0 0 * * 7", (2026, 5, 4, 0, 0), (2026, 5, 10, 0, 0)),  # 7 is Sunday
        ("0 12 13 * fri", (2026, 2, 1, 0, 0), (2026, 2, 6, 12, 0)),  # 13th OR Friday
        ("5/20 * * * *", (2026, 5, 4, 10, 26), (2026, 5, 4, 10, 45)),
        ("0 0 1 jan,jul *", (2026, 2, 1, 0, 0), (2026, 7, 1, 0, 0)),
        ("@daily", (2026, 5, 4, 10, 0), (2026, 5, 5, 0, 0)),
        ("0 9 29 2 *", (2025, 3, 1, 0, 0), (2028, 2, 29, 9, 0)),  # the next leap day
        ("0 9 29 2 *", (2096, 3, 1, 0, 0), (2104, 2, 29, 9, 0)),  # 2100 is no leap year
    ],
)
def test_known_schedules(expr, after, expected):
    assert nxt(expr, ts(*after)) == datetime(*expected, tzinfo=UTC)


def test_zone_turns_wall_clock_into_the_right_instant():
    winter = nxt("0 9 * * *", ts(2026, 1, 10, 12, 0, BERLIN), BERLIN)
    summer = nxt("0 9 * * *", ts(2026, 7, 10, 12, 0, BERLIN), BERLIN)
    assert winter.astimezone(UTC).hour == 8 and summer.astimezone(UTC).hour == 7


def test_spring_forward_skipped_time_runs_once_an_hour_later():
    # 2026-03-08 02:00 EST → 03:00 EDT in New York: 02:30 does not exist that night.
    first = nxt("30 2 * * *", ts(2026, 3, 7, 3, 0, NY), NY)
    assert first.astimezone(UTC) == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)  # 03:30 EDT
    second = nxt("30 2 * * *", first.timestamp(), NY)
    assert (second.day, second.hour, second.minute) == (9, 2, 30)


def test_spring_forward_hourly_job_has_no_gap_and_no_double():
    start = ts(2026, 3, 8, 0, 30, NY)
    seen, t = [], start
    for _ in range(4):
        t = cronexpr.parse("0 * * * *").next_after(t, NY)
        seen.append(datetime.fromtimestamp(t, UTC).hour)
    assert seen == [6, 7, 8, 9]  # 01:00 EST, 03:00 EDT, 04:00, 05:00: one per real hour


def test_fall_back_repeated_time_runs_once():
    # 2026-11-01 02:00 EDT → 01:00 EST: 01:30 happens twice.
    first = nxt("30 1 * * *", ts(2026, 10, 31, 12, 0, NY), NY)
    assert first.astimezone(UTC) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # the first one
    second = nxt("30 1 * * *", first.timestamp(), NY)
    assert second.astimezone(UTC) == datetime(2026, 11, 2, 6, 30, tzinfo=UTC)  # next day


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("* * *", "has 3 fields; a cron expression has 5"),
        ("61 * * * *", "minute: 61 is out of range"),
        ("* 24 * * *", "hour"),
        ("* * * foo *", "month: 'foo'"),
        ("10-5 * * * *", "backwards"),
        ("*/0 * * * *", "out of range"),
    ],
)
def test_bad_expressions_name_the_field(expr, words):
    with pytest.raises(cronexpr.CronSyntaxError, match=words):
        cronexpr.parse(expr)


def test_never_firing_expression_and_bad_zone_are_refused():
    with pytest.raises(ValueError, match="never fires"):
        jobs.cron("0 0 30 2 *")
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Base'.*IANA"):
        jobs.cron("0 0 * * *", "Mars/Base")


def test_every_has_a_minimum():
    with pytest.raises(ValueError, match="at least 60"):
        jobs.every(59)
    assert jobs.every(60).next_after(1000.0) == 1060.0


def test_at_without_zone_is_in_the_configured_zone():
    s = jobs.at("2026-07-01T09:00", "Europe/Berlin")
    assert s.at == ts(2026, 7, 1, 7, 0)
    assert jobs.at("2026-07-01T09:00+00:00", "Europe/Berlin").at == ts(2026, 7, 1, 9, 0)
    with pytest.raises(ValueError, match="ISO time"):
        jobs.at("tomorrow at nine")


def _job(schedule, anchor: float, **kw) -> Job:
    return Job(
        "j1",
        "test",
        "hi",
        schedule,
        "telegram",
        "42",
        created_at=anchor,
        state=JobState(anchor=anchor),
        **kw,
    )


def test_missed_slots_after_downtime_run_once():
    start = ts(2026, 5, 4, 8, 0)
    job = _job(jobs.every(60), start)
    later = start + 3600  # the gateway was down for an hour: 60 slots missed
    (hit,) = due([job], later, "")
    assert hit[0] is job and hit[1] == start + 60
    current = [job]
    ran("j1", later, "started")(current)
    assert due(current, later + 1, "") == []  # not once per missed slot
    assert due(current, later + 60, "") != []  # the schedule goes on from the run


def test_missed_cron_job_runs_once_then_next_slot():
    start = ts(2026, 5, 4, 8, 0)
    job = _job(jobs.cron("0 * * * *"), start)
    later = ts(2026, 5, 4, 17, 20)
    assert len(due([job], later, "")) == 1
    ran("j1", later, "started")([job])
    assert job.next_run("") == ts(2026, 5, 4, 18, 0)


def test_one_shot_runs_once_and_is_removed():
    when = ts(2026, 5, 4, 9, 0)
    job = _job(jobs.at("2026-05-04T09:00+00:00"), when - 3600)
    assert due([job], when - 1, "") == []
    assert due([job], when + 7200, "")  # missed while down: runs once
    current = [job]
    assert ran("j1", when + 7200, "started")(current) is True
    assert current == []  # a one-shot that ran never runs again


def test_disabled_job_is_not_due_unless_run_is_requested():
    job = _job(jobs.every(60), 0.0, enabled=False)
    assert job.next_run("") is None and due([job], 1e10, "") == []
    job.state.run_requested = 5.0
    assert due([job], 10.0, "") == [(job, 5.0)]


def test_recording_a_run_of_a_removed_job_brings_nothing_back():
    current: list[Job] = []
    assert ran("gone", 1.0, "started")(current) is False
    assert current == []
