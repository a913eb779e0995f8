"""L2 indicators: session-anchored look-back, exact agreement with ``ta``, run-shape independence."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from ta.momentum import RSIIndicator
from ta.trend import MACD, EMAIndicator, SMAIndicator
from ta.volatility import AverageTrueRange, BollingerBands

from usdcop_assets.core import calendar as cal
from usdcop_assets.features.indicators import (
    INDICATOR_COLUMNS,
    LOOKBACK_SESSIONS,
    OUTPUT_COLUMNS,
    compute_indicators,
    lookback_start,
)
from usdcop_assets.sources.synthetic import synthetic_bars


def synthetic_clean(start="2024-01-02", end="2024-02-14", seed=7) -> pd.DataFrame:
    """~30 sessions of synthetic bars shaped like the L1 clean frame."""
    times = cal.expected_bars(pd.Timestamp(start, tz=cal.TZ_NAME), pd.Timestamp(end, tz=cal.TZ_NAME))
    bars = synthetic_bars(times, seed=seed, defects=False)
    bars["is_flat"] = bars[["open", "high", "low", "close"]].nunique(axis=1) == 1
    return bars


def ta_direct(window: pd.DataFrame) -> pd.DataFrame:
    """The ``ta`` classes applied straight to a frame, written independently of the module under test."""
    c, h, lo = (window[k].reset_index(drop=True).astype("float64") for k in ("close", "high", "low"))
    macd = MACD(c, window_slow=26, window_fast=12, window_sign=9, fillna=False)
    bb = BollingerBands(c, window=20, window_dev=2, fillna=False)
    atr = AverageTrueRange(h, lo, c, window=14, fillna=False).average_true_range().copy()
    atr.iloc[:13] = np.nan
    return pd.DataFrame(
        {
            "ema_20": EMAIndicator(c, 20, fillna=False).ema_indicator(),
            "ema_50": EMAIndicator(c, 50, fillna=False).ema_indicator(),
            "sma_10": SMAIndicator(c, 10, fillna=False).sma_indicator(),
            "sma_20": SMAIndicator(c, 20, fillna=False).sma_indicator(),
            "rsi_14": RSIIndicator(c, 14, fillna=False).rsi(),
            "macd": macd.macd(),
            "macd_signal": macd.macd_signal(),
            "macd_diff": macd.macd_diff(),
            "bb_upper": bb.bollinger_hband(),
            "bb_middle": bb.bollinger_mavg(),
            "bb_lower": bb.bollinger_lband(),
            "atr_14": atr,
        }
    )


def assert_identical(a: pd.DataFrame, b: pd.DataFrame, columns) -> None:
    """Bit-identical (NaN == NaN), not approximately equal."""
    for col in columns:
        x, y = a[col].to_numpy(), b[col].to_numpy()
        if x.dtype.kind == "f":
            same = (x == y) | (np.isnan(x) & np.isnan(y))
        else:
            same = x == y
        assert same.all(), f"{col} differs at {np.flatnonzero(~same)[:5]}: {x[~same][:3]} vs {y[~same][:3]}"


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return synthetic_clean()


@pytest.fixture(scope="module")
def backfill(bars) -> pd.DataFrame:
    return compute_indicators(bars)


def window_rows(bars: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    return bars[(bars["time"] >= lookback_start(t)) & (bars["time"] <= t)]


# --- calendar anchoring --------------------------------------------------------------------------


def test_lookback_start_counts_trading_sessions():
    # 2024-01-09 (Tue); 2024-01-08 is a Colombian holiday (Reyes Magos): 4 sessions back is 2024-01-02.
    t = pd.Timestamp("2024-01-09 10:00", tz=cal.TZ_NAME)
    assert lookback_start(t) == pd.Timestamp("2024-01-02 08:00", tz=cal.TZ_NAME)
    assert len(cal.trading_days(dt.date(2024, 1, 2), dt.date(2024, 1, 9))) == LOOKBACK_SESSIONS  # t's own included
    assert lookback_start(t).tz is not None
    # Monday: the window reaches back over the weekend to the previous Tuesday.
    assert lookback_start(pd.Timestamp("2024-02-05 08:00", tz=cal.TZ_NAME)) == pd.Timestamp(
        "2024-01-30 08:00", tz=cal.TZ_NAME
    )
    with pytest.raises(cal.CalendarError):
        lookback_start(pd.Timestamp("2024-01-09 13:00", tz=cal.TZ_NAME))


def test_output_shape(bars, backfill):
    assert list(backfill.columns) == OUTPUT_COLUMNS
    assert len(backfill) == len(bars)
    assert (backfill["time"].to_numpy() == bars["time"].to_numpy()).all()
    assert str(backfill["time"].dtype) == "datetime64[ns, UTC]"
    assert backfill["warm"].dtype == bool
    # the first K-1 sessions' windows are cut by the start of the data; all later bars are warm
    first_warm_day = cal.trading_days(dt.date(2024, 1, 2), dt.date(2024, 2, 1))[LOOKBACK_SESSIONS - 1]
    day = pd.Series(cal.session_dates(pd.DatetimeIndex(backfill["time"])))
    assert (backfill["warm"].to_numpy() == (day >= first_warm_day).to_numpy()).all()
    assert backfill.loc[backfill["warm"], INDICATOR_COLUMNS].notna().all().all()
    assert (backfill["lookback_start"] == [lookback_start(t) for t in backfill["time"]]).all()


# --- agreement with ta ------------------------------------------------------------------------------


def test_equals_ta_on_the_session_anchored_window_exactly(bars, backfill):
    sessions = sorted(set(cal.session_dates(pd.DatetimeIndex(bars["time"]))))
    for day in sessions[::6] + [sessions[-1]]:
        start, end = cal.session_open(day), cal.session_end(day)
        lb = lookback_start(start)
        window = bars[(bars["time"] >= lb) & (bars["time"] < end)].reset_index(drop=True)
        expected = ta_direct(window)[(window["time"] >= start).to_numpy()].reset_index(drop=True)
        got = backfill[(backfill["time"] >= start) & (backfill["time"] < end)].reset_index(drop=True)
        assert len(got) == 60
        assert_identical(got, expected, INDICATOR_COLUMNS)


def test_close_to_ta_on_the_whole_series_once_warm(bars, backfill):
    """Tolerance: 1e-5 x close for price-scale indicators, 1e-4 RSI points.

    Only the EMA-type indicators can differ beyond rounding: the window drops the state carried from
    before ``lookback_start``. With >= 240 warm-up bars, that state's weight is (1 - 2/51)^240 ~ 6.7e-5
    for EMA 50 (the slowest; (25/27)^240 ~ 1e-8 for EMA 26, (13/14)^240 ~ 2e-8 for RSI/ATR), times the
    distance between the first close and the long-run EMA (well under 1 % of the price): < ~3e-7 x close;
    observed max 1.5e-6 x close on synthetic and 1.1e-6 on real bars. Rolling SMA/Bollinger differ
    only by pandas' running-sum rounding (~1e-9 x close).
    """
    full = ta_direct(bars)
    warm = backfill["warm"].to_numpy()
    close = bars["close"].to_numpy()[warm]
    for col in INDICATOR_COLUMNS:
        diff = np.abs(backfill[col].to_numpy()[warm] - full[col].to_numpy()[warm])
        bound = 1e-4 if col == "rsi_14" else 1e-5 * close
        assert (diff <= bound).all(), f"{col}: max diff {diff.max()}"
    # the EMA 50 difference is real (the anchoring matters) but small
    assert np.abs(backfill["ema_50"].to_numpy()[warm] - full["ema_50"].to_numpy()[warm]).max() > 0


def test_atr_leading_zeros_become_nan():
    bars = synthetic_clean("2024-03-01", "2024-03-02")  # one session, data starts here
    ind = compute_indicators(bars)
    assert ind["atr_14"].iloc[:13].isna().all()
    assert ind["atr_14"].iloc[13:].notna().all() and (ind["atr_14"].iloc[13:] > 0).all()
    short = compute_indicators(bars.iloc[:10])  # shorter than the ATR window: ta would raise
    assert len(short) == 10 and short["atr_14"].isna().all() and not short["warm"].any()


# --- run-shape independence ----------------------------------------------------------------------


def test_one_bar_runs_equal_the_backfill_bit_for_bit(bars, backfill):
    warm_times = backfill.loc[backfill["warm"], "time"]
    sample = list(warm_times.iloc[::97]) + [warm_times.iloc[0], warm_times.iloc[-1]]
    sample += list(backfill["time"].iloc[[0, 1, 75]])  # cold bars too
    for t in sample:
        window = window_rows(bars, t)
        one = compute_indicators(window, targets=[t])
        assert len(one) == 1
        ref = backfill[backfill["time"] == t].reset_index(drop=True)
        assert_identical(one, ref, [*INDICATOR_COLUMNS, "warm", "lookback_start", "time", "symbol"])


def test_session_end_window_equals_window_up_to_t(bars):
    """The backfill computes each session once up to its end: causality makes that equal to stopping at t."""
    day = dt.date(2024, 2, 1)
    end = cal.session_end(day)
    lb = lookback_start(cal.session_open(day))
    to_end = ta_direct(bars[(bars["time"] >= lb) & (bars["time"] < end)])
    for k in (0, 17, 59):
        t = cal.session_bars(day)[k]
        to_t = ta_direct(bars[(bars["time"] >= lb) & (bars["time"] <= t)])
        assert_identical(
            to_t.iloc[[-1]].reset_index(drop=True),
            to_end.iloc[[len(to_t) - 1]].reset_index(drop=True),
            INDICATOR_COLUMNS,
        )


def test_no_look_ahead(bars, backfill):
    t = pd.Timestamp("2024-01-24 10:30", tz=cal.TZ_NAME).tz_convert("UTC")
    later = bars["time"] > t
    altered = bars.copy()
    altered.loc[later, ["open", "high", "low", "close"]] *= 10.0
    extra = synthetic_bars(cal.session_bars(dt.date(2024, 2, 14)), seed=3, defects=False)
    altered = pd.concat([altered, extra], ignore_index=True)
    again = compute_indicators(altered)
    upto = backfill["time"] <= t
    assert_identical(
        again[again["time"] <= t].reset_index(drop=True),
        backfill[upto].reset_index(drop=True),
        [*INDICATOR_COLUMNS, "warm"],
    )
    # and the perturbation did reach the later bars (the test can see a change)
    assert not np.allclose(
        again.loc[again["time"] > t, "sma_10"].iloc[: len(backfill[~upto])],
        backfill.loc[~upto, "sma_10"],
        equal_nan=True,
    )


def test_gaps_stay_missing_and_rows_that_exist_are_used(bars):
    day = dt.date(2024, 1, 30)
    session = cal.session_bars(day)
    dropped = session[1::2]  # half the session's bars
    gappy = bars[~bars["time"].isin(dropped)].reset_index(drop=True)
    ind = compute_indicators(gappy)
    assert len(ind) == len(gappy)
    assert not ind["time"].isin(dropped).any()
    assert (ind["time"].to_numpy() == gappy["time"].to_numpy()).all()
    # on the session with the gap: ta on the rows that exist in its window, nothing invented
    lb = lookback_start(session[0])
    window = gappy[(gappy["time"] >= lb) & (gappy["time"] < cal.session_end(day))].reset_index(drop=True)
    expected = ta_direct(window)[(window["time"] >= session[0]).to_numpy()].reset_index(drop=True)
    got = ind[ind["time"].isin(session)].reset_index(drop=True)
    assert len(got) == 30
    assert_identical(got, expected, INDICATOR_COLUMNS)
    assert got["warm"].all()


def test_data_start_flags_truncated_windows(bars, backfill):
    t = pd.Timestamp("2024-02-01 09:00", tz=cal.TZ_NAME).tz_convert("UTC")
    lb = lookback_start(t)
    window = window_rows(bars, t).iloc[3:]  # first bars of the window missing (e.g. absent from the source)
    default = compute_indicators(window, targets=[t])
    assert not default["warm"].iloc[0]  # default data_start = first row: looks truncated
    told = compute_indicators(window, targets=[t], data_start=lb)  # caller loaded from lookback_start
    assert told["warm"].iloc[0]
    full_with_gap = compute_indicators(bars[~bars["time"].isin(window_rows(bars, t)["time"].iloc[:3])], targets=[t])
    assert_identical(told, full_with_gap, [*INDICATOR_COLUMNS, "warm"])
    with pytest.raises(ValueError, match="duplicate"):
        compute_indicators(pd.concat([bars.iloc[:5], bars.iloc[:1]]))
    with pytest.raises(ValueError, match="off the session grid"):
        compute_indicators(bars.assign(time=bars["time"] + pd.Timedelta(minutes=1)).iloc[:5])


# --- real recorded bars ---------------------------------------------------------------------------
