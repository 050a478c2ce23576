"""Five-field cron expressions and their next firing time in an IANA time zone.

Fields: minute hour day-of-month month day-of-week, each `*`, a number, a range `a-b`, a step
`*/n` or `a-b/n`, or a comma list of those; months and weekdays also by name (jan, mon);
weekday 0 and 7 are Sunday. When both day fields are restricted a day matching either one
fires (as Vixie cron does); `@hourly @daily @midnight @weekly @monthly @yearly @annually` are
shorthands.

Times are wall-clock times in the zone. Across daylight-saving changes:
- a time the clocks skip (02:30 on a spring-forward night) fires at the instant it would have
  had with the old offset (03:30 new time), once;
- a time that occurs twice (01:30 on a fall-back night) fires once, the first time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path

SEARCH_YEARS = 9  # Feb 29 may be 8 years away (2096 → 2104)

_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# name, low, high, names (index + offset = value)
_FIELDS = (
    ("minute", 0, 59, None, 0),
    ("hour", 0, 23, None, 0),
    ("day of month", 1, 31, None, 0),
    ("month", 1, 12, _MONTHS, 1),
    ("day of week", 0, 7, _DAYS, 0),
)


class CronSyntaxError(ValueError):
    """The expression cannot be read; str() says which field and what is allowed."""


@dataclass(frozen=True)
class CronExpr:
    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday … 6 = Saturday
    days_restricted: bool
    weekdays_restricted: bool

    def matches_day(self, d: date) -> bool:
        if d.month not in self.months:
            return False
        dom = d.day in self.days
        dow = (d.weekday() + 1) % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow

    def next_after(self, after: float, tz: tzinfo) -> float | None:
        """The first firing instant (Unix seconds) strictly after `after`, or None when the
        expression never fires (e.g. February 30) within SEARCH_YEARS."""
        start = datetime.fromtimestamp(after, tz).date() - timedelta(days=1)
        slots = [(h, m) for h in sorted(self.hours) for m in sorted(self.minutes)]
        for offset in range(366 * SEARCH_YEARS):
            day = start + timedelta(days=offset)
            if not self.matches_day(day):
                continue
            # The whole day's candidates: a skipped time maps past a later real one, so the
            # earliest instant is not always the earliest wall time.
            best = None
            for h, m in slots:
                wall = datetime(day.year, day.month, day.day, h, m, tzinfo=tz, fold=0)
                ts = wall.timestamp()
                if ts > after and (best is None or ts < best):
                    best = ts
            if best is not None:
                return best
        return None


def parse(text: str) -> CronExpr:
    """Read a cron expression; raises CronSyntaxError naming the bad field."""
    raw = " ".join(text.split())
    expanded = _MACROS.get(raw.lower(), raw)
    parts = expanded.split(" ")
    if len(parts) != 5:
        raise CronSyntaxError(
            f"'{text}' has {len(parts)} fields; a cron expression has 5: "
            "minute hour day-of-month month day-of-week (e.g. '0 9 * * mon-fri')"
        )
    sets = [_field(p, *spec) for p, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in sets[4])
    return CronExpr(
        raw,
        sets[0],
        sets[1],
        sets[2],
        sets[3],
        weekdays,
        days_restricted=not parts[2].startswith("*"),
        weekdays_restricted=not parts[4].startswith("*"),
    )


def _field(text: str, name: str, lo: int, hi: int, names, base: int) -> frozenset[int]:
    out: set[int] = set()
    for item in text.split(","):
        rng, _, step_text = item.partition("/")
        step = _number(step_text, name, 1, hi - lo + 1, None, 0) if step_text else 1
        if rng == "*":
            first, last = lo, hi
        elif "-" in rng:
            a, _, b = rng.partition("-")
            first, last = (
                _number(a, name, lo, hi, names, base),
                _number(b, name, lo, hi, names, base),
            )
            if first > last:
                raise CronSyntaxError(f"{name}: range '{rng}' runs backwards; write it low-high")
        else:
            first = _number(rng, name, lo, hi, names, base)
            last = hi if step_text else first
        out.update(range(first, last + 1, step))
    return frozenset(out)


def _number(text: str, name: str, lo: int, hi: int, names, base: int) -> int:
    word = text.strip().lower()
    if names and word in names:
        return names.index(word) + base
    if not word.isascii() or not word.isdigit():
        hint = f" or a name ({names[0]}…{names[-1]})" if names else ""
        raise CronSyntaxError(f"{name}: '{text}' is not a number from {lo} to {hi}{hint}")
    value = int(word)
    if not lo <= value <= hi:
        raise CronSyntaxError(f"{name}: {value} is out of range; use {lo} to {hi}")
    return value


def zone(name: str) -> tzinfo:
    """The IANA zone `name`, or the host's own zone for "" (DST-aware where the host says which
    zone it is in; UTC when it says nothing). Raises ValueError naming the fix."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # loaded when a time is needed

    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone '{name}'; use an IANA name such as 'Europe/Berlin' or "
                "'America/New_York' (see /usr/share/zoneinfo)"
            ) from None
    return host_zone()


def host_zone() -> tzinfo:
    """The zone of the host: $TZ, then /etc/localtime, else UTC."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    env = os.environ.get("TZ", "").lstrip(":")
    if env:
        try:
            return ZoneInfo(env)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    localtime = Path("/etc/localtime")
    try:
        target = str(localtime.resolve())
        if "zoneinfo/" in target:
            return ZoneInfo(target.split("zoneinfo/", 1)[1])
        with open(localtime, "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")
