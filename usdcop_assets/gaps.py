"""Gap detection: which bars the calendar expects that a stored dataset does not hold.

- :func:`missing_bars`: pure (no Dagster, no I/O): expected bar opens of ``[start, end)`` minus the
  times present.
- :func:`checked_end`: a window reaching past the last closed bar (today's session, checked
  mid-session) is checked only up to the close of the last closed bar, so bars that cannot exist
  yet are not "missing".

The ``bars_complete`` check built on these lives on the session audit assets (``audits.py``).
"""

import datetime as dt

import pandas as pd

from usdcop_assets import market_calendar as cal


def utc_now() -> pd.Timestamp:
    """The current instant (UTC); tests monkeypatch this."""
    return pd.Timestamp(dt.datetime.now(dt.timezone.utc))


def missing_bars(times, start, end) -> pd.DatetimeIndex:
    """Bar opens the calendar expects in ``[start, end)`` that are not among ``times`` (tz-aware), in UTC.

    Rows off the grid, duplicates and rows outside the window neither fill nor create a gap.
    """
    expected = cal.expected_bars(start, end)
    present = pd.DatetimeIndex(times) if len(times) else pd.DatetimeIndex([], tz="UTC")
    if present.tz is None:
        raise cal.CalendarError("bar times have no timezone; convert them to UTC first")
    present = present.tz_convert("UTC").as_unit("ns")
    return expected[~expected.isin(present)]


def checked_end(end, now=None) -> pd.Timestamp:
    """``end`` capped at the close of the last bar closed at ``now`` (nothing later can be missing yet)."""
    end = pd.Timestamp(end).tz_convert("UTC")
    last = cal.last_closed_bar(utc_now() if now is None else now)
    if last is None:
        return end
    return min(end, last + pd.Timedelta(minutes=cal.BAR_MINUTES))
