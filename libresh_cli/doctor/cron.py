"""When a cron schedule last ran: read as Kubernetes' CronJob controller reads it (the
robfig/cron standard parser: five fields, names for months and days, `?`, the @-macros and
`@every DURATION`), in UTC, as libresh's backup CronJobs set `timeZone: Etc/UTC`
(libresh_cli/backup/jobs.py). Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms)")
SEARCH_DAYS = 5 * 366  # a schedule on 29 February runs once in four years


class CronError(ValueError):
    pass


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    # Both day fields restricted: a day matches either (cron's rule, robfig's too).
    either_day: bool

    def day_matches(self, moment: datetime) -> bool:
        weekday = (moment.weekday() + 1) % 7
        by_day, by_weekday = moment.day in self.days, weekday in self.weekdays
        return (by_day or by_weekday) if self.either_day else (by_day and by_weekday)


def parse(expression: str) -> Schedule | timedelta:
    """A Schedule, or the interval of `@every DURATION`."""
    text = expression.strip().lower()
    if text.startswith("@every"):
        return _every(text.removeprefix("@every").strip())
    text = MACROS.get(text, text)
    fields = text.split()
    if len(fields) != 5:
        raise CronError(f"{expression!r} does not have five fields")
    minute, hour, day, month, weekday = fields
    return Schedule(
        _field(minute, 0, 59),
        _field(hour, 0, 23),
        _field(day, 1, 31),
        _field(month, 1, 12, MONTHS, 1),
        frozenset(d % 7 for d in _field(weekday, 0, 7, DAYS, 0)),
        either_day=_restricted(day) and _restricted(weekday),
    )


def _restricted(field: str) -> bool:
    return not (field.startswith("*") or field.startswith("?"))


def _every(text: str) -> timedelta:
    parts = DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise CronError(f"@every {text!r} is not a duration like 1h30m")
    seconds = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    interval = timedelta(seconds=sum(float(n) * seconds[u] for n, u in parts))
    if interval <= timedelta(0):
        raise CronError(f"@every {text!r} is not a positive duration")
    return interval


def _field(
    text: str, low: int, high: int, names: list[str] | None = None, first: int = 0
) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        step = _number(step_text, None, 0) if step_text else 1
        if step < 1:
            raise CronError(f"step {step_text!r} in {text!r}")
        if span in ("*", "?"):
            start, end = low, high
        else:
            start_text, dash, end_text = span.partition("-")
            start = _number(start_text, names, first)
            end = _number(end_text, names, first) if dash else (high if step_text else start)
        if not low <= start <= end <= high:
            raise CronError(f"{part!r} is out of {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _number(text: str, names: list[str] | None, first: int) -> int:
    if names and text in names:
        return names.index(text) + first
    if not text.isdigit():
        raise CronError(f"{text!r} is not a number")
    return int(text)


def last_run(
    expression: str, before: datetime, *, since: datetime | None = None
) -> datetime | None:
    """The latest time at or before `before` the schedule starts a run; None when none was
    due since `since` (an @every schedule counts from `since`, as the controller counts from
    the CronJob's creation)."""
    schedule = parse(expression)
    if isinstance(schedule, timedelta):
        if since is None or since > before:
            return None
        return (
            since + schedule * ((before - since) // schedule)
            if before - since >= schedule
            else None
        )
    found = _last_match(schedule, before.astimezone(UTC))
    if found is None or (since is not None and found < since):
        return None
    return found


def _last_match(schedule: Schedule, before: datetime) -> datetime | None:
    day = before.replace(hour=0, minute=0, second=0, microsecond=0)
    for _ in range(SEARCH_DAYS):
        if day.month in schedule.months and schedule.day_matches(day):
            for hour in sorted(schedule.hours, reverse=True):
                for minute in sorted(schedule.minutes, reverse=True):
                    moment = day.replace(hour=hour, minute=minute)
                    if moment <= before:
                        return moment
        day -= timedelta(days=1)
    return None
