"""Gap detection: which bars the calendar expects that a stored dataset does not hold.

- :func:`missing_bars`: pure (no Dagster, no I/O): expected bar opens of ``[start, end)`` minus the
  times present.
- :func:`checked_end`: a window reaching past the last closed bar (today's session, checked
  mid-session) is checked only up to the close of the last closed bar, so bars that cannot exist
  yet are not "missing".

The ``bars_complete`` checks built on these sit on L0 and L1 themselves (``quality/rules.py``, ``quality/checks.py``).
"""

import pandas as pd

from usdcop_assets import clock
from usdcop_assets.core import calendar as cal


def utc_now() -> pd.Timestamp:
    """The current instant (UTC, or the replay clock's); tests monkeypatch this."""
    return clock.utc_now()


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


def bar_summary(times, start, end, now=None) -> dict:
    """What a user wants to know of a session-grain window of bars: present, missing (due so far), first, last.

    ``times``: bar opens stored for ``[start, end)`` (UTC); bars not yet closed at ``now`` are not missing.
    """
    idx = pd.DatetimeIndex(times) if len(times) else pd.DatetimeIndex([], tz="UTC")
    idx = idx[(idx >= pd.Timestamp(start)) & (idx < pd.Timestamp(end))].unique().sort_values()
    stop = max(pd.Timestamp(start).tz_convert("UTC"), checked_end(end, now))
    missing = missing_bars(idx, start, stop)
    fmt = "%Y-%m-%d %H:%M"
    return {
        "bars_present": int(len(idx)),
        "bars_missing": int(len(missing)),
        "first_bar": idx[0].tz_convert(cal.TZ).strftime(fmt) if len(idx) else "",
        "last_bar": idx[-1].tz_convert(cal.TZ).strftime(fmt) if len(idx) else "",
        "missing_bars_sample": [t.tz_convert(cal.TZ).strftime(fmt) for t in missing[:10]],
    }
