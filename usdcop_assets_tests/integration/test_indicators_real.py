"""Indicators and features on three months of the recorded history (``USDCOP_SHARED_DATA``): complete once
warm, equal to ``ta`` on a session's window and close to it on the whole series."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from usdcop_assets.core import calendar as cal
from usdcop_assets.features.engineering import build_features, grid_positions
from usdcop_assets.features.indicators import INDICATOR_COLUMNS, compute_indicators, lookback_start
from usdcop_assets_tests.shared_data import SHARED_BARS as REAL_BARS
from usdcop_assets_tests.unit.test_indicators import assert_identical, ta_direct

pytestmark = pytest.mark.shared_data


def load_real(start: str, end: str) -> pd.DataFrame:
    """The recorded file, on the session grid, deduplicated, between two UTC dates.

    Finding: the bulk of the file (62,989 of 67,660 rows) is real UTC as labelled (13:00-17:55 "+00:00" =
    08:00-12:55 Bogota); reading it as Bogota wall-clock would put only 1,036 rows on the grid. Only a
    few sessions (e.g. 2020-01-02) carry Bogota wall-clock labelled "+00:00"; read as UTC they fall off
    the grid and are dropped here (the L1 import decides what to do with them).
    """
    df = pd.read_csv(REAL_BARS)
    df["time"] = pd.to_datetime(df["time"], utc=True).astype("datetime64[ns, UTC]")
    df = df[cal.on_session_grid(pd.DatetimeIndex(df["time"]))]
    df = df.drop_duplicates(["time", "symbol"], keep="last").sort_values("time")
    df = df[(df["time"] >= pd.Timestamp(start, tz="UTC")) & (df["time"] < pd.Timestamp(end, tz="UTC"))]
    return df.reset_index(drop=True)


def test_real_bars_three_months():
    real = load_real("2022-12-20", "2023-04-01")
    assert len(real) > 4000
    ind = compute_indicators(real)
    assert len(ind) == len(real)
    after = ind[ind["time"] >= pd.Timestamp("2023-01-01", tz="UTC")]
    assert after["warm"].all()
    assert after[INDICATOR_COLUMNS].notna().all().all()
    assert np.isfinite(after[INDICATOR_COLUMNS].to_numpy()).all()
    # exact against ta on a session's window
    day = dt.date(2023, 2, 15)
    start, end = cal.session_open(day), cal.session_end(day)
    window = real[(real["time"] >= lookback_start(start)) & (real["time"] < end)].reset_index(drop=True)
    expected = ta_direct(window)[(window["time"] >= start).to_numpy()].reset_index(drop=True)
    assert_identical(
        ind[(ind["time"] >= start) & (ind["time"] < end)].reset_index(drop=True), expected, INDICATOR_COLUMNS
    )
    # close to ta on the whole series
    full = ta_direct(real)
    warm = ind["warm"].to_numpy()
    close = real["close"].to_numpy()[warm]
    for col in INDICATOR_COLUMNS:
        diff = np.abs(ind[col].to_numpy()[warm] - full[col].to_numpy()[warm])
        assert (diff <= (1e-4 if col == "rsi_14" else 1e-5 * close)).all(), col


def test_real_bars_features():
    real = load_real("2022-12-20", "2023-04-01")
    ind = compute_indicators(real)
    feats = build_features(real, ind)
    assert len(feats) == len(real)
    after = feats[feats["time"] >= pd.Timestamp("2023-01-01", tz="UTC")]
    assert after["warm"].all()
    # ret_1 is NaN exactly where the previous grid bar is missing from the recording
    pos = grid_positions(real["time"])
    prev_missing = ~np.isin(pos - 1, pos)
    assert (np.isnan(feats["ret_1"].to_numpy()) == prev_missing).all()
    for col in ["rsi_norm", "atr_pct", "ema20_dist", "ema20_50_spread", "macd_diff_pct", "session_sin", "dow_cos"]:
        assert np.isfinite(after[col].to_numpy()).all(), col
    # Bollinger features are NaN exactly where the 20 closes of the band's window are identical (zero width)
    closes = real.set_index("time")["close"]
    flat = (closes.rolling(20).max() - closes.rolling(20).min() == 0).reindex(after["time"]).to_numpy()
    assert (np.isnan(after["bb_width"].to_numpy()) == flat).all() and flat.any()
