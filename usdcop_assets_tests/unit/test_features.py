"""L3 features: grid returns and gaps, run-shape independence, no look-ahead, point-in-time macro."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from usdcop_assets.core import calendar as cal
from usdcop_assets.features.engineering import (
    BASE_FEATURE_COLUMNS,
    FEATURE_COLUMNS,
    MACRO_FEATURE_COLUMNS,
    MACRO_INDICATORS,
    build_features,
    grid_positions,
    known_at_end_of_day,
    macro_zscores,
)
from usdcop_assets.features.indicators import compute_indicators, lookback_start
from usdcop_assets.sources.synthetic import synthetic_bars
from usdcop_assets_tests.unit.test_indicators import assert_identical, synthetic_clean

GRID = cal.expected_bars(pd.Timestamp("2023-12-01", tz="UTC"), pd.Timestamp("2024-03-01", tz="UTC"))


def grid_earlier(t: pd.Timestamp, k: int) -> pd.Timestamp:
    """The bar exactly k calendar-grid steps before t, read off core.calendar.expected_bars."""
    return GRID[GRID.get_loc(t) - k]


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return synthetic_clean()


@pytest.fixture(scope="module")
def daily() -> pd.DataFrame:
    days = pd.bdate_range("2022-06-01", "2024-03-01")
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {n: 50 * np.exp(np.cumsum(rng.normal(0, 0.01, len(days)))) for n in MACRO_INDICATORS},
        index=known_at_end_of_day(days),
    )
    frame.iloc[::7, 1] = np.nan  # a series with missing days
    return frame


@pytest.fixture(scope="module")
def backfill(bars, daily):
    ind = compute_indicators(bars)
    macro = macro_zscores(daily, bars["time"])
    return ind, build_features(bars, ind, macro_pit=macro)


def features_for(bars, daily, t, rows=None):
    rows = bars[(bars["time"] >= lookback_start(t)) & (bars["time"] <= t)] if rows is None else rows
    ind = compute_indicators(rows, targets=[t], data_start=lookback_start(t))
    return build_features(rows, ind, macro_pit=macro_zscores(daily, [t]), targets=[t])


def test_columns_and_order(bars, backfill):
    _, feats = backfill
    assert list(feats.columns) == ["time", "symbol", *FEATURE_COLUMNS, "warm"]
    assert FEATURE_COLUMNS == BASE_FEATURE_COLUMNS + MACRO_FEATURE_COLUMNS
    assert len(feats) == len(bars) and (feats["time"].to_numpy() == bars["time"].to_numpy()).all()
    plain = build_features(bars, backfill[0])
    assert list(plain.columns) == ["time", "symbol", *BASE_FEATURE_COLUMNS, "warm"]
    assert_identical(plain, feats, BASE_FEATURE_COLUMNS)
    warm = feats[feats["warm"]]
    assert len(warm) > 1000 and warm[FEATURE_COLUMNS].notna().all().all()


def test_grid_positions_follow_the_calendar():
    pos = grid_positions(GRID)
    assert (np.diff(pos) == 1).all()  # over nights, weekends and the 2024-01-08 holiday
    sub = GRID[::7]
    assert (np.diff(grid_positions(sub)) == 7).all()


def test_values_follow_their_definitions(bars, backfill):
    ind, feats = backfill
    close = bars.set_index("time")["close"]
    for t in feats["time"].iloc[[300, 777, 1500, 1799]]:
        row = feats.set_index("time").loc[t]
        for k in (1, 12, 48, 60):
            assert row[f"ret_{k}"] == pytest.approx(np.log(close[t] / close[grid_earlier(t, k)]), rel=1e-9, abs=1e-13)
        r1 = [np.log(close[grid_earlier(t, j)] / close[grid_earlier(t, j + 1)]) for j in range(60)]
        assert row["ret_1_lag2"] == pytest.approx(r1[2], rel=1e-9, abs=1e-13)
        assert row["vol_12"] == pytest.approx(np.std(r1[:12], ddof=1), rel=1e-9)
        assert row["vol_60"] == pytest.approx(np.std(r1, ddof=1), rel=1e-9)
        assert row["ret_mean_12"] == pytest.approx(np.mean(r1[:12]), rel=1e-9, abs=1e-15)
        irow = ind.set_index("time").loc[t]
        assert row["rsi_norm"] == (irow["rsi_14"] - 50) / 50
        assert row["atr_pct"] == irow["atr_14"] / close[t]
        assert row["bb_pctb"] == pytest.approx((close[t] - irow["bb_lower"]) / (irow["bb_upper"] - irow["bb_lower"]))
        frac = cal.time_in_session(pd.DatetimeIndex([t]))[0]
        assert row["session_frac"] == frac and row["session_sin"] == np.sin(2 * np.pi * frac)
        assert row["dow_sin"] == np.sin(2 * np.pi * t.tz_convert(cal.TZ).weekday() / 5)


def test_one_bar_runs_equal_the_backfill_bit_for_bit(bars, daily, backfill):
    _, feats = backfill
    sample = list(feats.loc[feats["warm"], "time"].iloc[::131]) + [feats["time"].iloc[-1]]
    for t in sample:
        one = features_for(bars, daily, t)
        ref = feats[feats["time"] == t].reset_index(drop=True)
        assert len(one) == 1
        assert_identical(one, ref, [*FEATURE_COLUMNS, "warm", "time"])


def test_no_look_ahead(bars, daily, backfill):
    _, feats = backfill
    t = pd.Timestamp("2024-01-24 10:30", tz=cal.TZ_NAME).tz_convert("UTC")
    altered = bars.copy()
    altered.loc[altered["time"] > t, ["open", "high", "low", "close"]] *= 10.0
    altered = pd.concat(
        [altered, synthetic_bars(cal.session_bars(dt.date(2024, 2, 14)), defects=False)], ignore_index=True
    )
    ind = compute_indicators(altered)
    again = build_features(altered, ind, macro_pit=macro_zscores(daily, altered["time"]))
    upto = feats["time"] <= t
    assert_identical(
        again[again["time"] <= t].reset_index(drop=True), feats[upto].reset_index(drop=True), [*FEATURE_COLUMNS, "warm"]
    )
    after = again[again["time"] > t].iloc[: int((~upto).sum())]
    assert after["ret_1"].to_numpy()[0] != feats.loc[~upto, "ret_1"].to_numpy()[0]


def test_gap_returns_are_nan_and_no_bar_is_invented(bars, daily):
    day = dt.date(2024, 1, 30)
    session = cal.session_bars(day)
    dropped = session[20:50]  # half the session: 09:40 .. 12:05 missing
    gappy = bars[~bars["time"].isin(dropped)].reset_index(drop=True)
    ind = compute_indicators(gappy)
    feats = build_features(gappy, ind)
    assert len(feats) == len(gappy) and not feats["time"].isin(dropped).any()
    present = set(gappy["time"])
    close = gappy.set_index("time")["close"]
    checked = 0
    for t in feats["time"][
        (feats["time"] >= session[0]) & (feats["time"] < cal.session_bars(dt.date(2024, 1, 31))[-1])
    ]:
        row = feats.set_index("time").loc[t]
        for k in (1, 12, 48, 60):
            earlier = grid_earlier(t, k)
            if earlier in present:
                assert row[f"ret_{k}"] == np.log(close[t]) - np.log(close[earlier])
            else:
                assert np.isnan(row[f"ret_{k}"]), (t, k)
                checked += 1
    assert checked > 30
    at = feats.set_index("time")
    assert np.isnan(at.loc[session[50], "ret_1"]) and np.isnan(at.loc[session[50], "ret_12"])
    assert np.isnan(at.loc[session[52], "ret_1_lag2"]) and not np.isnan(at.loc[session[52], "ret_1_lag1"])
    assert np.isnan(at.loc[session[55], "vol_12"])  # only 5 of its 12 returns exist
    assert not np.isnan(at.loc[session[50], "ret_60"])  # both ends exist: a true one-session return
    # the look-back still works on the rows that exist, and a bar computed alone agrees with the gappy backfill
    t = session[55]
    one = features_for(gappy, daily, t)
    ref = build_features(gappy, ind, macro_pit=macro_zscores(daily, gappy["time"]), targets=[t])
    assert_identical(one, ref, [*FEATURE_COLUMNS, "warm"])


def test_macro_uses_only_values_known_before_the_bar():
    day = dt.date(2024, 2, 1)
    release = pd.Timestamp("2024-02-01 12:00", tz=cal.TZ_NAME)
    dates = pd.bdate_range("2023-01-02", "2024-01-31")
    known = known_at_end_of_day(dates)
    rng = np.random.default_rng(5)
    values = {n: 10 + rng.normal(0, 1, len(dates)) for n in MACRO_INDICATORS}
    hist = pd.DataFrame(values, index=known)
    today = pd.DataFrame({n: [1000.0] for n in MACRO_INDICATORS}, index=pd.DatetimeIndex([release.tz_convert("UTC")]))
    daily = pd.concat([hist, today])
    session = cal.session_bars(day)
    z = macro_zscores(daily, session, window_days=100)
    before = z.loc[session[session < release]]
    at_release = z.loc[release.tz_convert("UTC")]
    after = z.loc[session[session > release]]
    vix = np.array(values["vix"])
    expected = (vix[-1] - vix[-100:].mean()) / vix[-100:].std(ddof=1)
    assert (before["macro_vix_z"] == before["macro_vix_z"].iloc[0]).all()
    assert before["macro_vix_z"].iloc[0] == pytest.approx(expected, rel=1e-12)
    assert at_release["macro_vix_z"] == pytest.approx(expected, rel=1e-12)  # known at 12:00 = not yet usable at 12:00
    assert (after["macro_vix_z"] > 5).all()  # the 1000 release shows from 12:05
    usdmxn = np.array(values["usdmxn"])
    assert before["macro_usdmxn_chg1d"].iloc[0] == pytest.approx(np.log(usdmxn[-1] / usdmxn[-2]))
    assert after["macro_usdmxn_chg1d"].iloc[0] == pytest.approx(np.log(1000.0 / usdmxn[-1]))
    # a date-only value of 2024-02-01 is known only from 00:00 of 2024-02-02
    assert known_at_end_of_day([dt.date(2024, 2, 1)])[0] == pd.Timestamp("2024-02-02", tz=cal.TZ_NAME)
    # too little history -> NaN, not a made-up z
    assert (
        z.index.equals(session)
        and macro_zscores(daily.iloc[-10:], session, window_days=100)["macro_vix_z"].isna().all()
    )
    with pytest.raises(ValueError, match="known_at"):
        macro_zscores(daily.set_axis(daily.index.tz_localize(None)), session)
    with pytest.raises(ValueError, match="lacks columns"):
        macro_zscores(daily.drop(columns=["vix"]), session)


def test_flat_bollinger_windows_have_no_band_width_despite_rolling_round_off(bars):
    """20+ identical closes: pandas' rolling std leaves round-off (bands ~1e-8 wide), which must read as zero width."""
    from usdcop_assets.features.engineering import BB_ZERO_WIDTH_RTOL

    flat = bars.copy()
    stretch = slice(100, 140)
    level = 4123.370001  # a price whose repeated sum does not cancel exactly in the rolling variance
    flat.loc[flat.index[stretch], ["open", "high", "low", "close"]] = level
    ind = compute_indicators(flat)
    feats = build_features(flat, ind)
    window_end = flat["time"].iloc[125]  # its 20-bar Bollinger window lies inside the flat stretch
    row = feats.set_index("time").loc[window_end]
    width = ind.set_index("time").loc[window_end, ["bb_upper", "bb_lower"]].diff().abs().iloc[-1]
    assert width / level < BB_ZERO_WIDTH_RTOL  # what pandas hands over for a flat window: round-off, never a real band
    assert np.isnan(row["bb_pctb"]) and np.isnan(row["bb_width"])
