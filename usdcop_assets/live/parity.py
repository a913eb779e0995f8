"""Research-to-live parity: the rows the live process stored for a session against the rows the session's
batch run stored, bar for bar, naming the first bar and column that differ.

Values are compared exactly, as they read back from any store (Parquet, SQLite, PostgreSQL): times as
UTC nanoseconds, numbers and booleans as float64 (NaN equal to NaN, -0.0 equal to 0.0), text as text,
every null alike. ``PROVENANCE_COLUMNS`` (when a row was fetched, a hash over it, a timing) are not
values of the bar and are left out.

Which bars: the live journal holds the session up to the last bar the live process stored (its L0 rows);
the batch rows are compared up to that bar. ``LOOK_AHEAD`` columns of a row read the *next* bar (an episode's
next-bar return), so they are compared only on rows whose next bar the live process stored too.

No Dagster.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from usdcop_assets.core import calendar as cal
from usdcop_assets.live.session import EPISODES, L0, PROVENANCE_COLUMNS

LOOK_AHEAD = {EPISODES: ("next_ret", "is_last")}


@dataclass(frozen=True)
class Difference:
    bar: pd.Timestamp
    column: str
    live: object
    batch: object

    def describe(self, where: str = "batch") -> str:
        at = self.bar.tz_convert(cal.TZ).strftime("%Y-%m-%d %H:%M") if self.bar is not None else "?"
        return (
            f"first difference at bar {at} Bogota, column {self.column!r}: live {self.live!r}, {where} {self.batch!r}"
        )


@dataclass
class ParityResult:
    asset: str
    day: dt.date
    live_bars: int = 0
    last_live_bar: pd.Timestamp | None = None
    compared: dict = field(default_factory=dict)  # store -> rows compared
    differences: dict = field(default_factory=dict)  # store -> Difference
    not_compared_after: int = 0  # batch bars after the last live bar

    @property
    def passed(self) -> bool:
        return not self.differences

    def describe(self) -> str:
        if not self.live_bars:
            return f"{self.asset} {self.day}: no live rows were recorded for this session; nothing to compare"
        if self.passed:
            return (
                f"{self.asset} {self.day}: the live rows equal the batch rows "
                f"({', '.join(f'{k} {v} rows' for k, v in self.compared.items())}, "
                f"{self.live_bars} bars up to {cal.bar_key(self.last_live_bar)})"
            )
        return f"{self.asset} {self.day}: " + "; ".join(
            f"{store}: {d.describe(store)}" for store, d in self.differences.items()
        )


def _is_null(v) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def canonical(series: pd.Series) -> list:
    """Comparable values of a column, whatever store it was read from."""
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(series.dtype):
        times = pd.to_datetime(series, utc=True)
        return [None if pd.isna(t) else int(t.value) for t in times]
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        values = series.astype("float64").to_numpy(dtype="float64", na_value=np.nan)
        return [None if np.isnan(v) else (0.0 if v == 0 else float(v)) for v in values]
    out = []
    for v in series:
        if _is_null(v):
            out.append(None)
        elif isinstance(v, (bool, np.bool_, int, float, np.integer, np.floating)):
            out.append(0.0 if float(v) == 0 else float(v))
        elif isinstance(v, pd.Timestamp):
            out.append(int(v.tz_convert("UTC").value) if v.tzinfo else int(v.tz_localize("UTC").value))
        else:
            out.append(str(v))
    return out


def _rows_by_bar(frame: pd.DataFrame, columns: list[str], time_column: str) -> dict[int, list[tuple]]:
    """bar (ns) -> the canonical rows at that bar, sorted (several rows can share a bar: rejects, trades)."""
    if frame.empty:
        return {}
    cols = {c: canonical(frame[c]) for c in columns}
    times = canonical(frame[time_column])
    out: dict[int, list[tuple]] = {}
    for i, t in enumerate(times):
        out.setdefault(t, []).append(tuple(cols[c][i] for c in columns))
    return {t: sorted(rows, key=lambda r: tuple((v is None, str(v)) for v in r)) for t, rows in out.items()}


def first_difference(
    live: pd.DataFrame,
    batch: pd.DataFrame,
    time_column: str = "time",
    exclude=PROVENANCE_COLUMNS,
    ignore_at: dict[str, set] | None = None,
) -> Difference | None:
    """The first bar (then column, in the live frame's column order) where ``live`` and ``batch`` differ.

    ``ignore_at``: column -> bar times (ns) where that column is not compared (look-ahead columns).
    """
    common = [c for c in live.columns if c in batch.columns and c not in exclude and c != time_column]
    only_live = [c for c in live.columns if c not in batch.columns and c not in exclude]
    only_batch = [c for c in batch.columns if c not in live.columns and c not in exclude]
    a, b = _rows_by_bar(live, common, time_column), _rows_by_bar(batch, common, time_column)
    ignore_at = ignore_at or {}
    for t in sorted(set(a) | set(b)):
        bar = pd.Timestamp(t, tz="UTC")
        ra, rb = a.get(t, []), b.get(t, [])
        if len(ra) != len(rb):
            return Difference(bar, "(rows)", f"{len(ra)} row(s)", f"{len(rb)} row(s)")
        for x, y in zip(ra, rb):
            for i, c in enumerate(common):
                if x[i] != y[i] and t not in ignore_at.get(c, ()):
                    return Difference(bar, c, x[i], y[i])
    if only_live or only_batch:
        first = pd.Timestamp(min(a), tz="UTC") if a else None
        return Difference(
            first,
            (only_live or only_batch)[0],
            "present" if only_live else "absent",
            "absent" if only_live else "present",
        )
    return None


def session_parity(store, asset: str, day: dt.date) -> ParityResult:
    """The live journal of ``asset`` for the session ``day`` against the lake and the warehouse (``store``:
    ``LiveStore``).

    The bars compared are those up to the last bar the live process stored (its L0 journal), so a layer
    with no live row (no trade filled) is still compared: the batch must have none there either.
    """
    spec = store.specs[asset]
    result = ParityResult(asset, day)
    served = store.journal_rows(L0, day)
    if served.empty:
        return result
    grid = cal.session_bars(day)
    times = pd.DatetimeIndex(served[store.specs[L0].time_column])
    on_grid = times[times.isin(grid)]
    if not len(on_grid):
        return result
    result.live_bars = int(on_grid.nunique())
    cutoff = result.last_live_bar = on_grid.max()
    tcol = spec.time_column
    live = served if asset == L0 else store.journal_rows(asset, day)
    batches = {"lake": store.lake_rows(asset, day)}
    wh = store.warehouse_rows(asset, day)
    if wh is not None:
        batches["warehouse"] = wh
    upto, lookahead = cutoff, LOOK_AHEAD.get(asset, ())
    if asset == EPISODES and cutoff != grid[-1]:
        # live holds the newest step back until its next bar, as the batch does mid-session: its episodes are
        # final up to the bar before the last live bar, and those rows' look-ahead columns are known
        earlier = on_grid[on_grid < cutoff]
        upto, lookahead = (earlier.max() if len(earlier) else cutoff - pd.Timedelta(1, "ns")), ()
    for where, batch in batches.items():
        bt = pd.DatetimeIndex(batch[tcol]) if len(batch) else pd.DatetimeIndex([], tz="UTC")
        later = bt > upto
        if later.any():
            result.not_compared_after = max(result.not_compared_after, int(pd.Index(bt[later]).nunique()))
            batch = batch[~later]
        # the last live row's look-ahead columns saw no next bar: compared only when the batch has none either
        ignore = {c: {int(cutoff.value)} for c in lookahead} if later.any() else {}
        side = live[[c for c in live.columns if c in batch.columns]] if where == "warehouse" and len(live) else live
        if live.empty:
            side = batch.iloc[:0]
        diff = first_difference(side, batch, tcol, ignore_at=ignore)
        result.compared[where] = len(batch)
        if diff is not None:
            result.differences[where] = diff
    return result
