"""The Bogota USD/COP market calendar: the one module that knows sessions, bars and holidays.

A session is a Colombian trading day (Monday-Friday, not a holiday of ``holidays.Colombia``) with
60 five-minute bars whose opens run 08:00..12:55 America/Bogota. Bar times are bar *opens*.
Everything else in the platform asks this module; nothing here imports Dagster.

Instants returned by this module are tz-aware UTC ``pd.Timestamp``/``DatetimeIndex`` (the storage
convention); partition keys and session dates are Bogota-local.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from zoneinfo import ZoneInfo

import holidays
import numpy as np
import pandas as pd

TZ_NAME = "America/Bogota"
TZ = ZoneInfo(TZ_NAME)
BAR_MINUTES = 5
BARS_PER_SESSION = 60
SESSION_OPEN = dt.time(8, 0)
SESSION_END = dt.time(13, 0)  # close of the last bar (open 12:55)
SESSION_MINUTES = BAR_MINUTES * BARS_PER_SESSION

BAR_KEY_FORMAT = "%Y-%m-%d-%H:%M"
SESSION_KEY_FORMAT = "%Y-%m-%d"

_BAR_OFFSETS = np.arange(BARS_PER_SESSION, dtype="int64") * BAR_MINUTES  # minutes after 08:00


class CalendarError(ValueError):
    """A date, instant or partition key that the Bogota session calendar does not contain."""


# --- days -------------------------------------------------------------------------------------


@cache
def _holidays_of_year(year: int) -> frozenset[dt.date]:
    return frozenset(holidays.Colombia(years=year).keys())


def colombian_holidays(start_year: int, end_year: int) -> list[dt.date]:
    """Colombian public holidays of the years ``start_year..end_year`` (inclusive), sorted."""
    return sorted(d for y in range(start_year, end_year + 1) for d in _holidays_of_year(y))


def is_holiday(day: dt.date) -> bool:
    return day in _holidays_of_year(day.year)


def is_trading_day(day: dt.date) -> bool:
    return day.weekday() < 5 and not is_holiday(day)


def trading_days(start: dt.date, end: dt.date) -> list[dt.date]:
    """Trading days from ``start`` to ``end``, both inclusive."""
    days = pd.date_range(start, end, freq="D")
    return [d.date() for d in days if is_trading_day(d.date())]


def previous_trading_day(day: dt.date) -> dt.date:
    day -= dt.timedelta(days=1)
    while not is_trading_day(day):
        day -= dt.timedelta(days=1)
    return day


def next_trading_day(day: dt.date) -> dt.date:
    day += dt.timedelta(days=1)
    while not is_trading_day(day):
        day += dt.timedelta(days=1)
    return day


# --- sessions and bars --------------------------------------------------------------------------


def session_open(day: dt.date) -> pd.Timestamp:
    """UTC instant of the session's first bar open (08:00 Bogota)."""
    return pd.Timestamp(dt.datetime.combine(day, SESSION_OPEN, tzinfo=TZ)).tz_convert("UTC")


def session_end(day: dt.date) -> pd.Timestamp:
    """UTC instant the session's last bar closes (13:00 Bogota)."""
    return pd.Timestamp(dt.datetime.combine(day, SESSION_END, tzinfo=TZ)).tz_convert("UTC")


def session_bars(day: dt.date) -> pd.DatetimeIndex:
    """The 60 bar opens of ``day`` in UTC; raises if ``day`` is not a trading day."""
    if not is_trading_day(day):
        reason = "a holiday" if is_holiday(day) else "a weekend"
        raise CalendarError(f"{day.isoformat()} is not a trading day ({reason})")
    return bars_of_days([day])


def bars_of_days(days: list[dt.date]) -> pd.DatetimeIndex:
    if not days:
        return pd.DatetimeIndex([], tz="UTC", name="time")
    # Bogota has had no DST since 1993: local 08:00 is always 13:00 UTC, so the grid is pure arithmetic.
    opens = np.array([np.datetime64(d, "m") for d in days]) + np.timedelta64(8 * 60 + 5 * 60, "m")
    grid = (opens[:, None] + _BAR_OFFSETS[None, :].astype("timedelta64[m]")).ravel()
    return pd.DatetimeIndex(grid.astype("datetime64[ns]"), name="time").tz_localize("UTC")


def as_utc(instant, what: str = "instant") -> pd.Timestamp:
    """A tz-aware instant in UTC; a naive one is refused (its zone would be a guess). ``what`` names it."""
    ts = pd.Timestamp(instant)
    if ts.tzinfo is None:
        raise CalendarError(f"{what} {instant!r} has no timezone; pass a tz-aware instant")
    return ts.tz_convert("UTC")


def expected_bars(start, end) -> pd.DatetimeIndex:
    """Bar opens ``t`` of the calendar with ``start <= t < end`` (tz-aware instants), in UTC."""
    start, end = as_utc(start), as_utc(end)
    if end <= start:
        return bars_of_days([])
    first = start.tz_convert(TZ).date()
    last = end.tz_convert(TZ).date()
    bars = bars_of_days(trading_days(first, last))
    return bars[(bars >= start) & (bars < end)]


def whole_session_days(start, end) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """``[start, end)`` as whole Bogota days, if it is exactly the sessions of a run of trading days.

    A window from a session's open to a (later or same) session's close covers whole sessions; the
    5-minute raw layer then owns the whole Bogota days, so rows a source stamped outside the session
    hours (a clock shifted by hours) are kept for L1 to judge instead of falling between partitions.
    Returns None for any other window (one bar, part of a session).
    """
    start, end = as_utc(start), as_utc(end)
    first, last = start.tz_convert(TZ).date(), end.tz_convert(TZ).date()
    if not (
        is_trading_day(first) and is_trading_day(last) and start == session_open(first) and end == session_end(last)
    ):
        return None
    day0 = pd.Timestamp(dt.datetime.combine(first, dt.time(0), tzinfo=TZ)).tz_convert("UTC")
    day1 = pd.Timestamp(dt.datetime.combine(last + dt.timedelta(days=1), dt.time(0), tzinfo=TZ)).tz_convert("UTC")
    return day0, day1


def expected_bars_between_dates(first: dt.date, last: dt.date) -> pd.DatetimeIndex:
    """All bars of the sessions from ``first`` to ``last`` inclusive, in UTC."""
    return bars_of_days(trading_days(first, last))


def _local(times) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(times)
    if idx.tz is None:
        raise CalendarError("bar times have no timezone; convert them to UTC first")
    return idx.tz_convert(TZ)


def on_session_grid(times) -> np.ndarray:
    """Boolean mask: is each instant the open of a bar of a trading session?"""
    local = _local(times)
    minutes = local.hour * 60 + local.minute
    in_hours = (minutes >= 8 * 60) & (minutes < 13 * 60)
    aligned = (
        (local.minute % BAR_MINUTES == 0) & (local.second == 0) & (local.microsecond == 0) & (local.nanosecond == 0)
    )
    days = local.normalize()
    weekday = np.asarray(days.weekday < 5)
    if len(local):
        hol = set(colombian_holidays(int(local.year.min()), int(local.year.max())))
        not_hol = ~np.isin(np.asarray(days.date), list(hol)) if hol else np.ones(len(local), bool)
    else:
        not_hol = np.ones(0, bool)
    return np.asarray(in_hours & aligned) & weekday & not_hol


def session_of(instant) -> dt.date | None:
    """The session date the bar opening at ``instant`` belongs to, or None off the grid."""
    ts = as_utc(instant)
    if not on_session_grid(pd.DatetimeIndex([ts]))[0]:
        return None
    return ts.tz_convert(TZ).date()


def session_dates(times) -> pd.Series:
    """Bogota-local calendar date of each instant (as ``datetime.date``), on or off the grid."""
    return pd.Series(_local(times).date, dtype="object")


def time_in_session(times) -> np.ndarray:
    """Fraction of the session elapsed at each bar open: 0.0 at 08:00, 59/60 at 12:55, NaN off the grid."""
    local = _local(times)
    minutes = (local.hour * 60 + local.minute + local.second / 60.0).to_numpy(dtype="float64")
    frac = (minutes - 8 * 60) / SESSION_MINUTES
    return np.where(on_session_grid(times), frac, np.nan)


def last_closed_bar(now) -> pd.Timestamp | None:
    """The open of the most recent bar whose 5 minutes have fully elapsed at ``now`` (UTC), if any."""
    now = as_utc(now)
    day = now.tz_convert(TZ).date()
    for _ in range(15):  # at most two weeks back over holidays and weekends
        if is_trading_day(day):
            bars = session_bars(day)
            closed = bars[bars + pd.Timedelta(minutes=BAR_MINUTES) <= now]
            if len(closed):
                return closed[-1]
        day -= dt.timedelta(days=1)
    return None


# --- partition keys ----------------------------------------------------------------------------


def bar_key(instant) -> str:
    """5-minute partition key (Bogota local, ``%Y-%m-%d-%H:%M``) of a bar open."""
    return as_utc(instant).tz_convert(TZ).strftime(BAR_KEY_FORMAT)


def parse_bar_key(key: str) -> pd.Timestamp:
    """UTC bar open of a 5-minute partition key; raises CalendarError naming a key off the calendar."""
    try:
        local = dt.datetime.strptime(key, BAR_KEY_FORMAT).replace(tzinfo=TZ)
    except (TypeError, ValueError):
        raise CalendarError(f"partition key {key!r} is not of the form YYYY-MM-DD-HH:MM") from None
    ts = pd.Timestamp(local).tz_convert("UTC")
    if session_of(ts) is None:
        raise CalendarError(
            f"partition key {key!r} is not a bar of the Bogota session calendar "
            "(Mon-Fri 08:00-12:55 every 5 minutes, Colombian holidays excluded)"
        )
    return ts


def session_key(day: dt.date) -> str:
    return day.strftime(SESSION_KEY_FORMAT)


def parse_session_key(key: str) -> dt.date:
    """Session date of a session partition key; raises CalendarError naming a non-trading day."""
    try:
        day = dt.datetime.strptime(key, SESSION_KEY_FORMAT).date()
    except (TypeError, ValueError):
        raise CalendarError(f"partition key {key!r} is not of the form YYYY-MM-DD") from None
    if not is_trading_day(day):
        raise CalendarError(f"partition key {key!r} is not a trading session (weekend or Colombian holiday)")
    return day
