"""L2 technical indicators on the L1 clean 5-minute bars, identical whatever the run shape.

Indicators (the ``ta`` library's classes, ``fillna=False``): EMA 20/50, SMA 10/20, RSI 14,
MACD 12/26 with signal 9 and histogram, Bollinger Bands 20/2, ATR 14.

Session-anchored look-back (why a one-bar realtime run and a six-year backfill agree bit for bit)
-------------------------------------------------------------------------------------------------
EMA-type indicators have infinite memory, so "the value at t" is only well defined on a fixed input.
Here the value at bar ``t`` of session ``s`` is ``ta`` applied to the bars of the window
``[lookback_start(t), t]``, where ``lookback_start(t)`` is the 08:00 open of the trading session
``LOOKBACK_SESSIONS - 1`` sessions before ``s`` on the market calendar (K = 5: the four previous
sessions plus ``s`` itself, 240 bars of warm-up before the first bar of ``s``). The window is a
*calendar* window: bars missing from the data stay missing (nothing is invented) and the indicators
are computed on the rows that exist, in time order. Rows before the window never influence the value.

For a backfill, the target bars are grouped by session and ``ta`` runs once per session over
``[lookback_start(s), session_end(s))``; the rows of ``s`` are then taken. Every indicator is causal
(pandas ``ewm(adjust=False)``/``rolling`` and ATR's recursion are sequential prefix computations), so
the value at ``t`` depends only on the window rows ``<= t``: computing up to the session end yields the
same bits as computing up to ``t`` (tested: ``==`` against one-bar runs given only the window rows).

Warm-up flag
------------
``warm`` is True when (a) the window was not truncated by the start of the data, i.e.
``lookback_start(t) >= data_start`` (``data_start`` = the instant from which the caller loaded every
bar that exists; default: the first bar time of the symbol in ``bars``), and (b) every indicator is
non-NaN. A realtime caller that loaded exactly the look-back partitions should pass
``data_start=lookback_start(t)``, so a missing 08:00 bar at the start of its window does not flag it.
``lookback_start`` in the output is the nominal calendar start of the window (an instant, whether a bar
exists there or not) so the asset layer can load exactly the partitions it needs.

ATR zeros
---------
``ta.volatility.AverageTrueRange`` fills positions ``0 .. window-2`` with 0.0 instead of NaN (its first
value, at position ``window-1``, is the mean of the first ``window`` true ranges), and it raises on a
series shorter than ``window``. Those leading positions are set to NaN here, positionally (a genuine
zero ATR later on, e.g. flat bars, is kept), and a window with fewer than 14 rows gives NaN throughout.
"""

from __future__ import annotations

import datetime as dt
from functools import cache

import numpy as np
import pandas as pd
from ta.momentum import RSIIndicator
from ta.trend import MACD, EMAIndicator, SMAIndicator
from ta.volatility import AverageTrueRange, BollingerBands

from usdcop_assets.core import calendar as cal

LOOKBACK_SESSIONS = 5
ATR_WINDOW = 14

INDICATOR_COLUMNS = [
    "ema_20",
    "ema_50",
    "sma_10",
    "sma_20",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_diff",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "atr_14",
]
OUTPUT_COLUMNS = ["time", "symbol", *INDICATOR_COLUMNS, "warm", "lookback_start"]
_REQUIRED = ["time", "symbol", "high", "low", "close"]


# --- look-back windows ------------------------------------------------------------------------


@cache
def lookback_start_day(day: dt.date, sessions: int = LOOKBACK_SESSIONS) -> dt.date:
    """The trading day ``sessions - 1`` trading sessions before the session ``day``."""
    if not cal.is_trading_day(day):
        raise cal.CalendarError(f"{day.isoformat()} is not a trading session")
    for _ in range(sessions - 1):
        day = cal.previous_trading_day(day)
    return day


def lookback_start(bar_time, sessions: int = LOOKBACK_SESSIONS) -> pd.Timestamp:
    """UTC open (08:00 Bogota) of the first session of the look-back window of the bar opening at ``bar_time``.

    The window of bar ``t`` is ``[lookback_start(t), t]``: the ``sessions - 1`` trading sessions before
    ``t``'s session and ``t``'s session up to ``t``. Raises CalendarError off the session grid.
    """
    day = cal.session_of(bar_time)
    if day is None:
        raise cal.CalendarError(f"{bar_time!r} is not a bar open of the Bogota session calendar")
    return cal.session_open(lookback_start_day(day, sessions))


def complete_from(bars: pd.DataFrame) -> pd.Timestamp | None:
    """From when the loaded bars are taken as complete: the open of the first loaded session.

    Sessions before it (not materialized, or before the history) are unknown, so windows reaching
    into them are flagged ``warm=False``; a bar missing *inside* a loaded session is a vendor gap and
    the indicators are computed on the rows that exist.
    """
    if bars.empty:
        return None
    first = pd.Timestamp(bars["time"].min()).tz_convert(cal.TZ).date()
    return cal.session_open(first)


# --- the ta computation on one window ---------------------------------------------------------


def ta_indicator_arrays(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> dict[str, np.ndarray]:
    """``ta`` applied to one window (time-ordered bars of one symbol), fillna=False: name -> float64 array.

    This is the single definition of the indicators; ``compute_indicators`` only decides which window
    each bar gets.
    """
    index = pd.RangeIndex(len(close))
    close = pd.Series(np.asarray(close, dtype="float64"), index=index)
    high = pd.Series(np.asarray(high, dtype="float64"), index=index)
    low = pd.Series(np.asarray(low, dtype="float64"), index=index)
    out = {}
    out["ema_20"] = EMAIndicator(close, window=20, fillna=False).ema_indicator()
    out["ema_50"] = EMAIndicator(close, window=50, fillna=False).ema_indicator()
    out["sma_10"] = SMAIndicator(close, window=10, fillna=False).sma_indicator()
    out["sma_20"] = SMAIndicator(close, window=20, fillna=False).sma_indicator()
    out["rsi_14"] = RSIIndicator(close, window=14, fillna=False).rsi()
    macd = MACD(close, window_slow=26, window_fast=12, window_sign=9, fillna=False)
    out["macd"] = macd.macd()
    out["macd_signal"] = macd.macd_signal()
    out["macd_diff"] = macd.macd_diff()
    bb = BollingerBands(close, window=20, window_dev=2, fillna=False)
    out["bb_upper"] = bb.bollinger_hband()
    out["bb_middle"] = bb.bollinger_mavg()
    out["bb_lower"] = bb.bollinger_lband()
    if len(close) >= ATR_WINDOW:
        atr = (
            AverageTrueRange(high, low, close, window=ATR_WINDOW, fillna=False)
            .average_true_range()
            .to_numpy(dtype="float64", copy=True)
        )
        atr[: ATR_WINDOW - 1] = np.nan  # ta's leading zeros are "not computed yet", not a zero range
    else:
        atr = np.full(len(close), np.nan)  # ta raises on a series shorter than its window
    out["atr_14"] = atr
    return {k: np.asarray(out[k], dtype="float64") for k in INDICATOR_COLUMNS}


def ta_indicators(window: pd.DataFrame) -> pd.DataFrame:
    """``ta_indicator_arrays`` on a frame of bars (``high``, ``low``, ``close``), aligned with its index."""
    arrays = ta_indicator_arrays(window["high"].to_numpy(), window["low"].to_numpy(), window["close"].to_numpy())
    return pd.DataFrame(arrays, index=window.index)[INDICATOR_COLUMNS]


# --- validation shared with engineering ---------------------------------------------------------


def clean_bars(bars: pd.DataFrame, required=_REQUIRED) -> pd.DataFrame:
    """Bars sorted by (symbol, time) with UTC ``time``; refuses missing columns, off-grid or duplicate bars."""
    missing = [c for c in required if c not in bars.columns]
    if missing:
        raise ValueError(f"bars lack columns {missing} (have {list(bars.columns)})")
    df = bars.reset_index(drop=True)
    times = pd.DatetimeIndex(df["time"])
    if times.tz is None:
        raise ValueError("bars.time has no timezone; L1 bars are tz-aware UTC")
    df = df.assign(time=times.tz_convert("UTC").astype("datetime64[ns, UTC]"))
    if df["time"].isna().any():
        raise ValueError(f"{int(df['time'].isna().sum())} bars have no time")
    off = ~cal.on_session_grid(pd.DatetimeIndex(df["time"]))
    if off.any():
        raise ValueError(f"{int(off.sum())} bars are off the session grid, e.g. {df['time'][off].iloc[0]}")
    dup = df.duplicated(["symbol", "time"])
    if dup.any():
        raise ValueError(f"{int(dup.sum())} duplicate (symbol, time) bars, e.g. {df['time'][dup].iloc[0]}")
    return df.sort_values(["symbol", "time"], kind="stable").reset_index(drop=True)


def _as_targets(targets) -> pd.DatetimeIndex | None:
    if targets is None:
        return None
    idx = pd.DatetimeIndex(targets)
    if idx.tz is None:
        raise ValueError("targets have no timezone; pass tz-aware bar opens")
    return idx.tz_convert("UTC").astype("datetime64[ns, UTC]")


# --- the public entry point ----------------------------------------------------------------------


def compute_indicators(bars: pd.DataFrame, targets=None, data_start=None) -> pd.DataFrame:
    """Indicator rows for the target bars, each computed on its session-anchored look-back window.

    ``bars``: L1 clean bars (``time`` tz-aware, ``symbol``, ``high``, ``low``, ``close``), one or more
    symbols, which must include every existing bar of the targets' windows that the caller wants used.
    ``targets``: bar opens to output (default: every bar in ``bars``); a target with no bar in ``bars``
    gives no row (missing bars stay missing). ``data_start``: instant from which ``bars`` holds every bar
    that exists (default: each symbol's first bar); windows starting before it are flagged ``warm=False``.

    Returns ``OUTPUT_COLUMNS``: time, symbol, the indicators, warm, lookback_start; sorted by (symbol, time).
    """
    df = clean_bars(bars)
    tgt = _as_targets(targets)
    frames = []
    for symbol, sdf in df.groupby("symbol", sort=True):
        times = sdf["time"].to_numpy(dtype="datetime64[ns]")
        tnum = times.view("int64")
        high, low, close = (sdf[c].to_numpy(dtype="float64") for c in ("high", "low", "close"))
        is_target = np.ones(len(sdf), bool) if tgt is None else np.isin(tnum, tgt.asi8)
        if not is_target.any():
            continue
        start_of_data = tnum[0] if data_start is None else cal.as_utc(data_start, "data_start").value
        days = np.asarray(pd.DatetimeIndex(times).tz_localize("UTC").tz_convert(cal.TZ).date)
        picked, lookbacks, parts = [], [], {c: [] for c in INDICATOR_COLUMNS}
        for day in pd.unique(days[is_target]):
            lb = cal.session_open(lookback_start_day(day)).value
            end = cal.session_end(day).value
            lo, hi = np.searchsorted(tnum, [lb, end], side="left")
            values = ta_indicator_arrays(high[lo:hi], low[lo:hi], close[lo:hi])
            rows = np.flatnonzero((days[lo:hi] == day) & is_target[lo:hi])
            for c in INDICATOR_COLUMNS:
                parts[c].append(values[c][rows])
            picked.append(lo + rows)
            lookbacks.append(np.full(len(rows), lb, dtype="int64"))
        idx = np.concatenate(picked)
        lbs = np.concatenate(lookbacks)
        part = pd.DataFrame({"time": pd.DatetimeIndex(times[idx]).tz_localize("UTC"), "symbol": symbol})
        for c in INDICATOR_COLUMNS:
            part[c] = np.concatenate(parts[c])
        part["warm"] = (lbs >= start_of_data) & part[INDICATOR_COLUMNS].notna().all(axis=1).to_numpy()
        part["lookback_start"] = pd.DatetimeIndex(lbs.view("datetime64[ns]")).tz_localize("UTC")
        frames.append(part)
    if not frames:
        empty = pd.DataFrame({c: pd.Series(dtype="float64") for c in OUTPUT_COLUMNS})
        empty["time"] = pd.Series(dtype="datetime64[ns, UTC]")
        empty["lookback_start"] = pd.Series(dtype="datetime64[ns, UTC]")
        empty["symbol"] = pd.Series(dtype="object")
        empty["warm"] = pd.Series(dtype="bool")
        return empty[OUTPUT_COLUMNS]
    out = pd.concat(frames, ignore_index=True)
    out["time"] = out["time"].astype("datetime64[ns, UTC]")
    out["lookback_start"] = out["lookback_start"].astype("datetime64[ns, UTC]")
    out["warm"] = out["warm"].astype(bool)
    return out[OUTPUT_COLUMNS].sort_values(["symbol", "time"], kind="stable").reset_index(drop=True)
