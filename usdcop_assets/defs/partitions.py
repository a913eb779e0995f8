"""Dagster partitions built from the market calendar (the calendar decides; this module only wires).

- ``session_partitions``: one partition per Bogota session, window [08:00, 13:00) = exactly its 60
  bars; every persisted bar layer (L0..L6) uses it. The cron ``0 8,13`` with the 13:00 ticks excluded
  makes each window end at 13:00 the same day; holidays are excluded as their 08:00 instants. Why one
  key per session and not per bar: docs/decisions/0001-session-partitions.md.
- ``end_offset=1``: today's session is a partition while it runs, so mid-session runs resolve; Dagster
  1.13 then also lists the next session from the previous close on: docs/decisions/0009-open-session-partition.md.
- Look-backs are session offsets (``TimeWindowPartitionMapping(start_offset=-n)``): they jump nights,
  weekends and holidays.
- ``month_partitions``: calendar months (``YYYY-MM``, Bogota), from the history's first month, the
  current month included (``end_offset=1``): the point-in-time observation statistics
  (``l4/observation_stats``), one set per month.
- ``macro_partitions``: Bogota calendar days for daily macro data, starting ``MACRO_WARMUP_DAYS``
  before the bar history so a one-year z-score window is warm at the first bar.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import environ

HISTORY_START_ENV = "USDCOP_HISTORY_START"
DEFAULT_HISTORY_START = "2020-01-01"


def history_start() -> dt.date:
    raw = environ().get(HISTORY_START_ENV, DEFAULT_HISTORY_START)
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{HISTORY_START_ENV}={raw!r} is not a date (YYYY-MM-DD)") from None


def _holiday_weekdays(start: dt.date, end_year: int) -> list[dt.date]:
    return [d for d in cal.colombian_holidays(start.year, end_year) if d.weekday() < 5 and d >= start]


def build_session_partitions(start: dt.date, end_year: int) -> dg.TimeWindowPartitionsDefinition:
    exclusions: list[str | dt.datetime] = ["0 13 * * 1-5"]
    exclusions.extend(
        dt.datetime.combine(d, cal.SESSION_OPEN, tzinfo=cal.TZ) for d in _holiday_weekdays(start, end_year)
    )
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule="0 8,13 * * 1-5",
        start=start.strftime(cal.SESSION_KEY_FORMAT),
        fmt=cal.SESSION_KEY_FORMAT,
        timezone=cal.TZ_NAME,
        exclusions=exclusions,
        end_offset=1,
    )


# Holidays are listed through next year; the definition is rebuilt (new code version) each year.
_START = history_start()
_END_YEAR = dt.date.today().year + 1

session_partitions = build_session_partitions(_START, _END_YEAR)
MACRO_WARMUP_DAYS = 366
macro_partitions = dg.DailyPartitionsDefinition(
    start_date=(_START - dt.timedelta(days=MACRO_WARMUP_DAYS)).isoformat(), timezone=cal.TZ_NAME
)


month_partitions = dg.MonthlyPartitionsDefinition(
    start_date=_START.replace(day=1).strftime("%Y-%m"), fmt="%Y-%m", timezone=cal.TZ_NAME, end_offset=1
)


def session_key_range(first: dt.date, last: dt.date) -> dg.PartitionKeyRange:
    days = cal.trading_days(first, last)
    if not days:
        raise cal.CalendarError(f"no trading session between {first} and {last}")
    return dg.PartitionKeyRange(cal.session_key(days[0]), cal.session_key(days[-1]))


def lookback_mapping(sessions: int) -> dg.TimeWindowPartitionMapping:
    """The session and the ``sessions`` trading sessions before it (0: the session alone)."""
    return dg.TimeWindowPartitionMapping(start_offset=-sessions, allow_nonexistent_upstream_partitions=True)
