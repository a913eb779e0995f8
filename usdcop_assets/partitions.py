"""Dagster partitions built from the market calendar (the calendar decides; this module only wires).

- ``bar_partitions``: one partition per 5-minute bar. The cron ``*/5 8-13`` with every 13:xx tick
  excluded makes the 12:55 window end at 13:00 the same day (a plain ``*/5 8-12`` cron would end it
  at 08:00 of the next trading day). Holiday bars are excluded as explicit datetimes.
- ``session_partitions``: one partition per session, window [08:00, 13:00) = exactly its 60 bars.
- ``macro_partitions``: Bogota calendar days for daily macro data, starting ``MACRO_WARMUP_DAYS``
  before the bar history so a one-year z-score window is warm at the first bar.
"""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

from usdcop_assets import market_calendar as cal

HISTORY_START_ENV = "USDCOP_HISTORY_START"
DEFAULT_HISTORY_START = "2020-01-01"


def history_start() -> dt.date:
    raw = os.environ.get(HISTORY_START_ENV, DEFAULT_HISTORY_START)
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{HISTORY_START_ENV}={raw!r} is not a date (YYYY-MM-DD)") from None


def _holiday_weekdays(start: dt.date, end_year: int) -> list[dt.date]:
    return [d for d in cal.colombian_holidays(start.year, end_year) if d.weekday() < 5 and d >= start]


def build_bar_partitions(start: dt.date, end_year: int) -> dg.TimeWindowPartitionsDefinition:
    exclusions: list[str | dt.datetime] = ["*/5 13 * * 1-5"]
    for day in _holiday_weekdays(start, end_year):
        exclusions.extend(t.to_pydatetime().astimezone(cal.TZ) for t in cal.bars_of_days([day]))
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule="*/5 8-13 * * 1-5",
        start=dt.datetime.combine(start, cal.SESSION_OPEN).strftime(cal.BAR_KEY_FORMAT),
        fmt=cal.BAR_KEY_FORMAT,
        timezone=cal.TZ_NAME,
        exclusions=exclusions,
    )


def build_session_partitions(start: dt.date, end_year: int) -> dg.TimeWindowPartitionsDefinition:
    exclusions: list[str | dt.datetime] = ["0 13 * * 1-5"]
    exclusions.extend(dt.datetime.combine(d, cal.SESSION_OPEN, tzinfo=cal.TZ) for d in _holiday_weekdays(start, end_year))
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule="0 8,13 * * 1-5",
        start=start.strftime(cal.SESSION_KEY_FORMAT),
        fmt=cal.SESSION_KEY_FORMAT,
        timezone=cal.TZ_NAME,
        exclusions=exclusions,
    )


# Holidays are listed through next year; the definition is rebuilt (new code version) each year.
_START = history_start()
_END_YEAR = dt.date.today().year + 1

bar_partitions = build_bar_partitions(_START, _END_YEAR)
session_partitions = build_session_partitions(_START, _END_YEAR)
MACRO_WARMUP_DAYS = 366
macro_partitions = dg.DailyPartitionsDefinition(
    start_date=(_START - dt.timedelta(days=MACRO_WARMUP_DAYS)).isoformat(), timezone=cal.TZ_NAME
)


def bar_key_range(first: dt.date, last: dt.date) -> dg.PartitionKeyRange:
    """The 5-minute partition range covering every bar of the sessions ``first..last`` (inclusive)."""
    days = cal.trading_days(first, last)
    if not days:
        raise cal.CalendarError(f"no trading session between {first} and {last}")
    bars = cal.bars_of_days([days[0], days[-1]])
    return dg.PartitionKeyRange(cal.bar_key(bars[0]), cal.bar_key(bars[-1]))


def session_key_range(first: dt.date, last: dt.date) -> dg.PartitionKeyRange:
    days = cal.trading_days(first, last)
    if not days:
        raise cal.CalendarError(f"no trading session between {first} and {last}")
    return dg.PartitionKeyRange(cal.session_key(days[0]), cal.session_key(days[-1]))
