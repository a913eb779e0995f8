"""L3 features of each 5-minute bar, identical whatever the run shape, plus point-in-time macro z-scores.

Every bar feature at bar ``t`` depends only on bars inside ``t``'s session-anchored look-back window
``[lookback_start(t), t]`` (see ``indicators``) and on ``t``'s indicator row, and each value is
computed from exactly its own inputs in a fixed order (no running sums carried along the series), so
a one-bar realtime run and a six-year backfill give the same bits.

Grid rule for returns and gaps
------------------------------
Bars are placed on the market-calendar grid (60 bars per trading session, sessions consecutive over
nights, weekends and Colombian holidays, from ``core.calendar``). "k bars earlier" means k *grid*
steps earlier, not k rows earlier. ``ret_k = log(close_t / close_{t-k})`` is NaN when the bar exactly
k grid steps earlier is missing, so a return across a data gap never masquerades as a normal k-bar
return. ``ret_1`` at 08:00 is the overnight return from the previous session's 12:55 bar. Lags are
grid lags (``ret_1_lag2`` is ``ret_1`` of the bar 2 grid steps earlier: NaN if that bar or its
predecessor is missing). Rolling statistics over n bars use the ``ret_1`` of the n grid bars ending
at t that exist and are NaN when fewer than ``n - n // 4`` of them exist (12 -> 9, 60 -> 45). No bar is
ever invented: output rows are the target bars that exist.

Other choices
-------------
- ``vol_12``/``vol_60``: sample standard deviation (ddof=1) of ``ret_1`` over 12/60 grid bars. The
  rolling std of returns over 12 bars asked for next to the rolling mean *is* ``vol_12``; it is not
  duplicated.
- ``bb_pctb`` = (close - bb_lower)/(bb_upper - bb_lower), ``bb_width`` = (bb_upper - bb_lower)/bb_middle;
  NaN when the bands have zero width (narrower than ``BB_ZERO_WIDTH_RTOL`` x close: pandas' rolling std
  of a flat window is round-off, not 0).
- Time: ``session_frac`` = ``core.calendar.time_in_session`` (0 at 08:00, 59/60 at 12:55) with its
  sin/cos over one session; day of week as sin/cos of 2*pi*weekday/5 (Mon=0..Fri=4): two smooth
  columns instead of a five-column one-hot, with Friday next to Monday.
- ``warm`` is the indicator row's ``warm`` (look-back not truncated by the start of the data and every
  indicator defined). Features may still be NaN on a warm row when a gap removes their inputs.

Macro
-----
``macro_zscores`` takes the daily series indexed by ``known_at`` (the tz-aware instant each value became
known) and, for each bar, uses only values with ``known_at < bar time`` (strictly). For each series:
z = (last known value - mean of the last ``window_days`` known values) / their sample std (the window
includes the last value; NaN below ``min_periods`` values or at zero std), plus the log change between
the last two known values of usdmxn and dxy. ``build_features(macro_pit=...)`` takes that bar-indexed
frame; without it the macro columns are left out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from usdcop_assets.core import calendar as cal
from usdcop_assets.features.indicators import INDICATOR_COLUMNS, _as_targets, clean_bars

RETURN_HORIZONS = (1, 12, 48, 60)  # 5 min, 1 hour, 4 hours, 1 session
RET_LAGS = (1, 2, 3)
ROLLING_WINDOWS = (12, 60)

BASE_FEATURE_COLUMNS = [
    "ret_1",
    "ret_12",
    "ret_48",
    "ret_60",
    "vol_12",
    "vol_60",
    "ret_1_lag1",
    "ret_1_lag2",
    "ret_1_lag3",
    "ret_mean_12",
    "rsi_norm",
    "atr_pct",
    "ema20_dist",
    "ema20_50_spread",
    "bb_pctb",
    "bb_width",
    "macd_diff_pct",
    "session_frac",
    "session_sin",
    "session_cos",
    "dow_sin",
    "dow_cos",
]
MACRO_INDICATORS = ("dxy", "vix", "embi_col", "usdmxn", "wti", "ust10y", "ust2y")
MACRO_CHANGE_INDICATORS = ("usdmxn", "dxy")
MACRO_FEATURE_COLUMNS = [f"macro_{n}_z" for n in MACRO_INDICATORS] + [
    f"macro_{n}_chg1d" for n in MACRO_CHANGE_INDICATORS
]
FEATURE_COLUMNS = BASE_FEATURE_COLUMNS + MACRO_FEATURE_COLUMNS
MACRO_WINDOW_DAYS = 252
BB_ZERO_WIDTH_RTOL = (
    1e-6  # 0.004 COP at 4,000: below one price tick (a 1-tick window is ~2e-6), above rolling round-off (~3e-8)
)
# Returns over a session (60 grid bars) and rolling statistics of 60 returns need 120 bars back:
# the two sessions before the bar's own.
FEATURE_LOOKBACK_SESSIONS = 2
# Calendar days of macro history behind the first bar: 252 business days of z-score window, with margin.
MACRO_LOOKBACK_DAYS = int(MACRO_WINDOW_DAYS * 7 / 5) + 30


# --- the session grid ---------------------------------------------------------------------------


def grid_positions(times) -> np.ndarray:
    """Position of each bar on the calendar grid: consecutive bars of the calendar differ by exactly 1.

    Positions are relative (day ordinal counted from the earliest bar's date), so only differences
    between positions of the same call are meaningful. Raises off the session grid.
    """
    idx = pd.DatetimeIndex(times)
    if len(idx) == 0:
        return np.zeros(0, dtype="int64")
    if not cal.on_session_grid(idx).all():
        raise cal.CalendarError("grid_positions: some instants are not bar opens of the session calendar")
    local = idx.tz_convert(cal.TZ)
    dates = local.normalize().tz_localize(None).to_numpy().astype("datetime64[D]")
    first = dates.min()
    years = (int(local.year.min()), int(local.year.max()))
    hol = np.array(cal.colombian_holidays(*years), dtype="datetime64[D]")
    day_ord = np.busday_count(first, dates, holidays=hol)
    bar_idx = ((local.hour * 60 + local.minute).to_numpy() - 8 * 60) // cal.BAR_MINUTES
    return day_ord.astype("int64") * cal.BARS_PER_SESSION + bar_idx.astype("int64")


def _gather(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """values[idx] with NaN where idx < 0."""
    out = np.full(idx.shape, np.nan)
    ok = idx >= 0
    out[ok] = values[idx[ok]]
    return out


def _window_stats(cols: np.ndarray, min_count: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample std of each row of ``cols`` (m, n), ignoring NaN, in a fixed summation order."""
    valid = ~np.isnan(cols)
    cnt = valid.sum(axis=1)
    x = np.where(valid, cols, 0.0)
    acc = np.zeros(cols.shape[0])
    for j in range(cols.shape[1]):  # fixed order: each value depends only on its own row
        acc = acc + x[:, j]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = acc / cnt
        ss = np.zeros(cols.shape[0])
        for j in range(cols.shape[1]):
            d = np.where(valid[:, j], x[:, j] - mean, 0.0)
            ss = ss + d * d
        std = np.sqrt(ss / (cnt - 1))
    enough = cnt >= min_count
    return np.where(enough, mean, np.nan), np.where(enough & (cnt >= 2), std, np.nan)


# --- bar features -------------------------------------------------------------------------------


def _bar_features(sdf: pd.DataFrame, target_rows: np.ndarray) -> dict[str, np.ndarray]:
    pos = grid_positions(sdf["time"])
    dense_len = int(pos.max() - pos.min()) + 1
    logc = np.full(dense_len, np.nan)
    rel = pos - pos.min()
    logc[rel] = np.log(sdf["close"].to_numpy(dtype="float64"))
    r1 = np.full(dense_len, np.nan)
    r1[1:] = logc[1:] - logc[:-1]
    p = rel[target_rows]
    f: dict[str, np.ndarray] = {}
    for k in RETURN_HORIZONS:
        f[f"ret_{k}"] = logc[p] - _gather(logc, p - k)
    for lag in RET_LAGS:
        f[f"ret_1_lag{lag}"] = _gather(r1, p - lag)
    for n in ROLLING_WINDOWS:
        cols = _gather(r1, p[:, None] - np.arange(n)[None, :])
        mean, std = _window_stats(cols, n - n // 4)
        f[f"vol_{n}"] = std
        if n == 12:
            f["ret_mean_12"] = mean
    return f


def build_features(
    bars: pd.DataFrame, indicators: pd.DataFrame, macro_pit: pd.DataFrame | None = None, targets=None
) -> pd.DataFrame:
    """Feature rows for the target bars.

    ``bars``: L1 clean bars covering the targets' look-back windows (at least the 60 grid bars before
    each target). ``indicators``: ``compute_indicators`` rows, one per target. ``macro_pit``: optional
    frame indexed by bar time with ``MACRO_FEATURE_COLUMNS`` (see ``macro_zscores``); bar times absent
    from it get NaN macro features. ``targets``: bar opens to output (default: every indicator row's
    time); a target with no bar gives no row.

    Returns time, symbol, ``BASE_FEATURE_COLUMNS`` (+ ``MACRO_FEATURE_COLUMNS`` when macro_pit is
    given), warm; sorted by (symbol, time).
    """
    df = clean_bars(bars, required=["time", "symbol", "close"])
    ind = indicators.reset_index(drop=True)
    missing = [c for c in ["time", "symbol", *INDICATOR_COLUMNS, "warm"] if c not in ind.columns]
    if missing:
        raise ValueError(f"indicators lack columns {missing}")
    ind = ind.assign(time=pd.DatetimeIndex(ind["time"]).tz_convert("UTC").astype("datetime64[ns, UTC]"))
    if macro_pit is not None:
        lacking = [c for c in MACRO_FEATURE_COLUMNS if c not in macro_pit.columns]
        if lacking:
            raise ValueError(f"macro_pit lacks columns {lacking}; build it with macro_zscores")
        macro_idx = pd.DatetimeIndex(macro_pit.index)
        if macro_idx.tz is None:
            raise ValueError("macro_pit is indexed by naive times; index it by tz-aware bar opens")
        macro = macro_pit[MACRO_FEATURE_COLUMNS].set_axis(macro_idx.tz_convert("UTC").astype("datetime64[ns, UTC]"))
        if macro.index.has_duplicates:
            raise ValueError("macro_pit has duplicate bar times")
    tgt = _as_targets(targets)
    frames = []
    for symbol, sdf in df.groupby("symbol", sort=True):
        sdf = sdf.reset_index(drop=True)
        sind = ind[ind["symbol"] == symbol]
        wanted = pd.DatetimeIndex(sind["time"]) if tgt is None else tgt
        is_target = np.isin(sdf["time"].to_numpy(dtype="datetime64[ns]").view("int64"), wanted.asi8)
        if not is_target.any():
            continue
        rows = np.flatnonzero(is_target)
        times = pd.DatetimeIndex(sdf["time"].iloc[rows])
        sind = sind.drop_duplicates("time", keep="last").set_index("time")
        absent = times.difference(sind.index)
        if len(absent):
            raise ValueError(f"no indicator row for {len(absent)} target bars of {symbol}, e.g. {absent[0]}")
        irow = sind.loc[times]
        close = sdf["close"].to_numpy(dtype="float64")[rows]
        f = _bar_features(sdf, rows)
        g = {c: irow[c].to_numpy(dtype="float64") for c in INDICATOR_COLUMNS}
        with np.errstate(invalid="ignore", divide="ignore"):
            f["rsi_norm"] = (g["rsi_14"] - 50.0) / 50.0
            f["atr_pct"] = g["atr_14"] / close
            f["ema20_dist"] = (close - g["ema_20"]) / close
            f["ema20_50_spread"] = (g["ema_20"] - g["ema_50"]) / close
            width = g["bb_upper"] - g["bb_lower"]
            # rolling std of identical closes leaves round-off (~1e-8 wide bands): zero width is relative to price
            open_bands = width > BB_ZERO_WIDTH_RTOL * close
            f["bb_pctb"] = np.where(open_bands, (close - g["bb_lower"]) / np.where(open_bands, width, 1.0), np.nan)
            f["bb_width"] = np.where(open_bands, width / g["bb_middle"], np.nan)
            f["macd_diff_pct"] = g["macd_diff"] / close
        frac = cal.time_in_session(times)
        f["session_frac"] = frac
        f["session_sin"] = np.sin(2 * np.pi * frac)
        f["session_cos"] = np.cos(2 * np.pi * frac)
        dow = times.tz_convert(cal.TZ).weekday.to_numpy().astype("float64")
        f["dow_sin"] = np.sin(2 * np.pi * dow / 5.0)
        f["dow_cos"] = np.cos(2 * np.pi * dow / 5.0)
        out = pd.DataFrame({"time": times, "symbol": symbol})
        for c in BASE_FEATURE_COLUMNS:
            out[c] = np.asarray(f[c], dtype="float64")
        if macro_pit is not None:
            m = macro.reindex(times)
            for c in MACRO_FEATURE_COLUMNS:
                out[c] = m[c].to_numpy(dtype="float64")
        out["warm"] = irow["warm"].to_numpy(dtype=bool)
        frames.append(out)
    columns = ["time", "symbol", *(FEATURE_COLUMNS if macro_pit is not None else BASE_FEATURE_COLUMNS), "warm"]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns}).astype(
            {"time": "datetime64[ns, UTC]", "symbol": "object", "warm": "bool"}
        )
    res = pd.concat(frames, ignore_index=True)[columns]
    res["time"] = res["time"].astype("datetime64[ns, UTC]")
    return res.sort_values(["symbol", "time"], kind="stable").reset_index(drop=True)


# --- macro ------------------------------------------------------------------------------------


def known_at_end_of_day(dates) -> pd.DatetimeIndex:
    """A conservative ``known_at`` for values labelled only by their date D: 00:00 Bogota of D + 1 (UTC).

    Use a real release timestamp when the source has one (e.g. 12:00 Bogota on D for a value released
    then); with only a date, the value is not assumed known during D's session.
    """
    days = pd.DatetimeIndex(pd.to_datetime(dates)).normalize()
    if days.tz is not None:
        days = days.tz_localize(None)
    return (days + pd.Timedelta(days=1)).tz_localize(cal.TZ).tz_convert("UTC").rename("known_at")


def _daily_z(values: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """z of each value against the trailing ``window`` values ending with it (fixed summation order)."""
    i = np.arange(len(values))
    cols = _gather(values, i[:, None] - np.arange(window)[None, :])
    mean, std = _window_stats(cols, min_periods)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(std > 0, (values - mean) / std, np.nan)


def macro_zscores(
    daily: pd.DataFrame, bar_times, window_days: int = MACRO_WINDOW_DAYS, min_periods: int | None = None
) -> pd.DataFrame:
    """Point-in-time macro features for each bar, from daily values known strictly before the bar.

    ``daily``: index = ``known_at`` (tz-aware instant each row's values became known; see
    ``known_at_end_of_day`` for date-only sources), columns including ``MACRO_INDICATORS``; NaN = no
    value that day. Each series is taken on its own known values (in known_at order). For a bar at
    time b the last known value is the latest with known_at < b; z = (that value - mean of the
    ``window_days`` known values ending with it) / their sample std, NaN with fewer than
    ``min_periods`` (default ``window_days // 4``) values. ``macro_<x>_chg1d`` = log(last / previous
    known value) for usdmxn and dxy. Returns a frame indexed by bar time with ``MACRO_FEATURE_COLUMNS``.
    """
    if min_periods is None:
        min_periods = max(2, window_days // 4)
    idx = pd.DatetimeIndex(daily.index)
    if idx.tz is None:
        raise ValueError(
            "macro daily frame must be indexed by tz-aware known_at instants (when each value became known); "
            "for date-only sources use known_at_end_of_day(dates)"
        )
    lacking = [c for c in MACRO_INDICATORS if c not in daily.columns]
    if lacking:
        raise ValueError(f"macro daily frame lacks columns {lacking} (have {list(daily.columns)})")
    bars = _as_targets(bar_times)
    bar_ns = bars.asi8
    known_ns = idx.tz_convert("UTC").astype("datetime64[ns, UTC]").asi8
    order = np.argsort(known_ns, kind="stable")
    out = pd.DataFrame(index=bars.rename("time"))
    for name in MACRO_INDICATORS:
        vals = pd.to_numeric(daily[name], errors="coerce").to_numpy(dtype="float64")[order]
        kn = known_ns[order]
        ok = ~np.isnan(vals)
        vals, kn = vals[ok], kn[ok]
        last = np.searchsorted(kn, bar_ns, side="left") - 1  # strictly before the bar
        out[f"macro_{name}_z"] = _gather(_daily_z(vals, window_days, min_periods), last)
        if name in MACRO_CHANGE_INDICATORS:
            with np.errstate(invalid="ignore", divide="ignore"):
                chg = np.full(len(vals), np.nan)
                chg[1:] = np.log(vals[1:] / vals[:-1])
            out[f"macro_{name}_chg1d"] = _gather(chg, last)
    return out[MACRO_FEATURE_COLUMNS]


def macro_daily_frame(wide: pd.DataFrame) -> pd.DataFrame:
    """l1/macro_daily (one row per date; ``<x>`` and ``<x>_known_at``) -> rows indexed by known_at for
    ``macro_zscores``.

    Each indicator keeps its own known_at: one block of rows per indicator (other columns NaN), so a
    value released late never makes another indicator's value look late, or early.
    """
    blocks = []
    for name in MACRO_INDICATORS:
        known = f"{name}_known_at"
        if name not in wide.columns or known not in wide.columns:
            continue
        rows = wide[[name, known]].dropna()
        if rows.empty:
            continue
        block = pd.DataFrame(
            {n: np.nan for n in MACRO_INDICATORS}, index=pd.DatetimeIndex(rows[known], name="known_at")
        )
        block[name] = rows[name].to_numpy(dtype="float64")
        blocks.append(block)
    if not blocks:
        return pd.DataFrame(
            columns=list(MACRO_INDICATORS), index=pd.DatetimeIndex([], tz="UTC", name="known_at"), dtype="float64"
        )
    return pd.concat(blocks)
