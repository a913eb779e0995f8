"""L1 standardization: whole-hour clock shifts recognised from the session grid and price continuity,
corrected or rejected (always recorded), bad prices and spikes, and conservation (rows in = kept +
rejected) on synthetic sessions and on the real shared history (the ``conservation`` check on the stored
layers: test_checks.py)."""

import datetime as dt
import re

import numpy as np
import pandas as pd

from usdcop_assets.core import calendar as cal
from usdcop_assets.refine.standardize import (
    KEPT_COLUMNS,
    REJECT_COLUMNS,
    SHIFTED_DUPLICATE,
    standardize_bars,
    time_shift_summary,
)
from usdcop_assets.sources.synthetic import synthetic_bars

DAY = dt.date(2025, 3, 5)  # a Wednesday
H = pd.Timedelta(hours=1)


def _session(day=DAY) -> pd.DataFrame:
    return synthetic_bars(cal.session_bars(day), defects=False)


def _std(raw: pd.DataFrame):
    kept, rejects = standardize_bars(raw)
    assert len(kept) + len(rejects) == len(raw)  # conservation, always
    assert list(kept.columns) == KEPT_COLUMNS and list(rejects.columns) == REJECT_COLUMNS
    assert cal.on_session_grid(pd.DatetimeIndex(kept["time"])).all()
    assert not kept.duplicated(["time", "symbol"]).any()
    assert rejects["detail"].notna().all() and (rejects["detail"].str.len() > 0).all()
    return kept, rejects


def _local_as_utc(rows: pd.DataFrame, source: str = "vendor_backfill") -> pd.DataFrame:
    """Bogota wall clock stored as UTC: every time is 5 hours early."""
    return rows.assign(time=rows["time"] - 5 * H, source=source)


def test_clean_session_is_kept_untouched():
    kept, rejects = _std(_session())
    assert len(kept) == 60 and rejects.empty
    assert (kept["time_shift_hours"] == 0).all() and kept["time_shift_hours"].dtype == np.int64


def test_local_time_stored_as_utc_fills_gaps_corrected_by_plus_5h():
    bars = _session()
    gap = bars.iloc[12:24]  # 09:00-09:55 missing from the native feed ...
    raw = pd.concat([bars.drop(index=gap.index), _local_as_utc(gap)], ignore_index=True)  # ... delivered at 04:00-04:55
    kept, rejects = _std(raw)
    assert rejects.empty and len(kept) == 60
    assert list(kept["time"]) == list(cal.session_bars(DAY))
    fixed = kept[kept["time_shift_hours"] != 0]
    assert list(fixed["time"]) == list(gap["time"]) and set(fixed["time_shift_hours"]) == {5}
    assert set(fixed["source"]) == {"vendor_backfill"}
    assert time_shift_summary(kept) == {"+5h": 12}


def test_shifted_copies_of_native_bars_are_rejected_as_shifted_duplicates_at_their_original_time():
    bars = _session()
    copies = _local_as_utc(bars.iloc[:18])  # 08:00-09:25 again, stamped 03:00-04:25
    raw = pd.concat([copies, bars], ignore_index=True)
    kept, rejects = _std(raw)
    assert (
        len(kept) == 60 and (kept["time_shift_hours"] == 0).all() and set(kept["source"]) == {"synthetic"}
    )  # native wins
    assert len(rejects) == 18 and set(rejects["reason"]) == {SHIFTED_DUPLICATE}
    assert list(rejects.sort_values("time")["time"]) == list(copies["time"])  # what arrived, not the corrected time
    first = rejects.sort_values("time").iloc[0]
    assert (
        first["detail"]
        == f"shifted +5h to {bars['time'].iloc[0].strftime('%Y-%m-%dT%H:%MZ')}: close within 0.20% of the native bar's"
    )


def test_a_block_that_both_fills_gaps_and_repeats_native_bars_is_split_between_kept_and_rejected():
    bars = _session()
    native = bars.drop(index=range(30, 40))  # 10:30-11:15 missing natively
    block = _local_as_utc(bars.iloc[20:50])  # the backfill has 09:40-12:05
    kept, rejects = _std(pd.concat([native, block], ignore_index=True))
    assert len(kept) == 60 and (kept["time_shift_hours"] == 5).sum() == 10
    assert len(rejects) == 20 and set(rejects["reason"]) == {SHIFTED_DUPLICATE}


def test_a_block_shifted_3h_whose_prices_do_not_continue_is_rejected_with_the_shifts_tried():
    bars = _session()
    native = bars.drop(index=range(24, 36))  # 10:00-10:55 missing natively
    wrong = bars.iloc[24:36].copy()
    wrong[["open", "high", "low", "close"]] *= 1.1  # not the same market
    wrong = wrong.assign(time=wrong["time"] - 3 * H, source="odd_vendor")  # stamped 07:00-07:55 Bogota
    kept, rejects = _std(pd.concat([native, wrong], ignore_index=True))
    assert len(kept) == 48 and (kept["time_shift_hours"] == 0).all()  # the hole stays a hole
    assert len(rejects) == 12 and set(rejects["reason"]) == {"off_session_grid"}
    detail = rejects["detail"].iloc[0]
    assert "no whole-hour shift puts the 12 off-session row(s) of odd_vendor on 2025-03-05" in detail
    assert "+3h 2 of 2 junctions between gap-filling rows and native bars break price continuity" in detail
    assert "+5h 12 of 12 rows land on native bars with another close" in detail
    assert list(rejects["time"]) == list(wrong["time"])


def test_the_same_block_with_continuous_prices_is_corrected_by_plus_3h():
    bars = _session()
    native = bars.drop(index=range(24, 36))
    block = bars.iloc[24:36].assign(time=lambda f: f["time"] - 3 * H, source="odd_vendor")
    kept, rejects = _std(pd.concat([native, block], ignore_index=True))
    assert rejects.empty and len(kept) == 60 and time_shift_summary(kept) == {"+3h": 12}


def test_half_a_session_missing_stays_missing():
    kept, rejects = _std(_session().iloc[:30])
    assert len(kept) == 30 and rejects.empty
    assert kept["time"].max() == cal.session_bars(DAY)[29]


def test_shifted_rows_without_any_native_bar_that_day_are_not_guessed():
    kept, rejects = _std(_local_as_utc(_session().iloc[:20]))
    assert kept.empty and set(rejects["reason"]) == {"off_session_grid"}
    assert "have a native bar to check price continuity" in rejects["detail"].iloc[0]


def test_a_zero_price_is_bad_and_a_10x_spike_is_rejected_as_a_spike():
    bars = _session()
    bars.loc[10, "close"] = 0.0
    bars.loc[20, ["open", "high", "low", "close"]] = bars.loc[20, ["open", "high", "low", "close"]] * 10
    bars.loc[30, "high"] = bars.loc[30, "high"] * 10  # a wick spike
    kept, rejects = _std(bars)
    by_time = rejects.set_index("time")
    times = cal.session_bars(DAY)
    assert by_time.loc[times[10], "reason"] == "bad_price" and by_time.loc[times[10], "detail"] == "close 0"
    # the worst price of the row against the median close: ~10x (the bar's own range moves it a little)
    assert by_time.loc[times[20], "reason"] == "price_spike" and re.search(
        r" is (9\.9\d*|10(\.\d+)?)x the day's median close", by_time.loc[times[20], "detail"]
    )
    assert by_time.loc[times[30], "reason"] == "price_spike" and by_time.loc[times[30], "detail"].startswith("high ")
    assert len(kept) == 57  # the three bars stay missing; nothing is repaired or invented


def test_rows_on_weekends_holidays_and_off_the_5_minute_grid_say_why():
    bars = _session()
    saturday = bars.iloc[[5]].assign(time=bars["time"].iloc[5] + pd.Timedelta(days=3))
    holiday = synthetic_bars(cal.bars_of_days([dt.date(2025, 1, 6)]), defects=False)[:1]  # Reyes Magos (moved)
    minute = bars.iloc[[7]].assign(time=bars["time"].iloc[7] - 5 * H + pd.Timedelta(minutes=2))
    kept, rejects = _std(pd.concat([bars, saturday, holiday, minute], ignore_index=True))
    assert len(kept) == 60
    assert sorted(rejects["detail"]) == sorted(["weekend", "holiday", "not on the 5-minute grid (03:37:00 Bogota)"])
    assert set(rejects["reason"]) == {"off_session_grid"}


def test_missing_times_and_native_duplicates_keep_their_rules():
    bars = _session()
    later = bars.iloc[[3]].assign(close=bars["close"].iloc[3] + 0.5, ingested_at=bars["ingested_at"].iloc[3] + H)
    later["high"] = later[["high", "close"]].max(axis=1)
    no_time = bars.iloc[[4]].assign(time=pd.NaT)
    kept, rejects = _std(pd.concat([bars, later, no_time], ignore_index=True))
    assert sorted(rejects["reason"]) == ["duplicate", "missing_time"]
    assert kept.loc[kept["time"] == bars["time"].iloc[3], "close"].item() == later["close"].item()  # last ingested wins


# --- the real shared history --------------------------------------------------------------------------
