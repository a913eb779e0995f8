"""L1 on real sessions restamped as the earlier system's gap-fill/backfill jobs stored them (issue: messy history).

Sessions come from the shared 2020-2024H1 file; the restamping is what those jobs did: Bogota wall-clock
time labelled UTC (every time 5 hours early), for a whole session or for a block overlapping native bars.
"""

import numpy as np
import pandas as pd
import pytest

from usdcop_assets.core import calendar as cal
from usdcop_assets.refine.standardize import (
    FEED_RTOL,
    OVERNIGHT_MAX_LOG,
    SHIFTED_DUPLICATE,
    SHIFTED_MISMATCH,
    standardize_bars,
)
from usdcop_assets_tests.shared_data import SHARED_BARS

pytestmark = pytest.mark.shared_data

PRICES = ["open", "high", "low", "close"]
H = pd.Timedelta(hours=1)


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    df = pd.read_csv(SHARED_BARS)
    df["time"] = pd.to_datetime(df["time"], utc=True)
    df = df[cal.on_session_grid(pd.DatetimeIndex(df["time"]))].drop_duplicates("time", keep="last")
    df["ingested_at"] = pd.Timestamp("2024-07-01", tz="UTC")
    df["day"] = cal.session_dates(pd.DatetimeIndex(df["time"])).to_numpy()
    return df


def _three_full_sessions(real: pd.DataFrame, after: str) -> list[pd.DataFrame]:
    """Three consecutive trading sessions with all 60 native bars, the first on or after ``after``."""
    counts = real.groupby("day").size()
    days = [d for d in counts.index if d >= pd.Timestamp(after).date() and counts[d] == 60]
    for d in days:
        nxt = cal.next_trading_day(d)
        nxt2 = cal.next_trading_day(nxt)
        if counts.get(nxt) == 60 and counts.get(nxt2) == 60:
            return [real[real["day"] == x].drop(columns="day").reset_index(drop=True) for x in (d, nxt, nxt2)]
    raise AssertionError("no three full consecutive sessions in the shared file")


def _local_as_utc(rows: pd.DataFrame, source: str = "twelvedata_gap_fill") -> pd.DataFrame:
    return rows.assign(time=rows["time"] - 5 * H, source=source)


@pytest.mark.parametrize("after", ["2021-03-01", "2023-06-01"])
def test_a_whole_session_stamped_local_as_utc_is_recovered_bar_for_bar_in_a_range(real, after):
    prev, day, nxt = _three_full_sessions(real, after)
    raw = pd.concat([prev, _local_as_utc(day), nxt], ignore_index=True)
    kept, rejects = standardize_bars(raw)
    assert rejects.empty
    got = kept[kept["time_shift_hours"] == 5].reset_index(drop=True)
    assert len(got) == 60
    pd.testing.assert_frame_equal(got[["time", *PRICES]], day[["time", *PRICES]], check_dtype=False)


def test_a_whole_session_alone_is_recovered_from_its_neighbours_given_as_context(real):
    prev, day, nxt = _three_full_sessions(real, "2022-02-01")
    kept, rejects = standardize_bars(_local_as_utc(day), context=pd.concat([prev, nxt], ignore_index=True))
    assert rejects.empty and len(kept) == 60 and set(kept["time_shift_hours"]) == {5}
    assert list(kept["close"]) == list(day["close"])
    # the previous session alone (today's session: no next one yet) is enough
    kept, rejects = standardize_bars(_local_as_utc(day), context=prev)
    assert rejects.empty and len(kept) == 60


def test_a_whole_shifted_session_whose_prices_do_not_continue_is_rejected(real):
    prev, day, nxt = _three_full_sessions(real, "2022-02-01")
    wrong = day.copy()
    wrong[PRICES] *= np.exp(2 * OVERNIGHT_MAX_LOG)  # another market's prices
    kept, rejects = standardize_bars(pd.concat([prev, _local_as_utc(wrong), nxt], ignore_index=True))
    assert len(kept) == 120 and (kept["time_shift_hours"] == 0).all()
    assert len(rejects) == 60 and set(rejects["reason"]) == {"off_session_grid"}
    assert "do not continue the neighbouring sessions" in rejects["detail"].iloc[0]
    # with no neighbour at all there is no evidence: rejected as before
    kept, rejects = standardize_bars(_local_as_utc(day))
    assert kept.empty and len(rejects) == 60


def test_overlapping_shifted_rows_split_row_by_row_by_the_feed_tolerance(real):
    _, day, _ = _three_full_sessions(real, "2023-09-01")
    native = day.drop(index=range(30, 43))  # 10:30-11:30 missing natively: 13 slots to fill
    block = day.iloc[16:43].copy()  # the backfill has 09:20-11:30: 14 rows overlap native bars, 13 fill the hole
    rng = np.random.default_rng(7)
    overlap = block.index < 30
    factor = np.ones(len(block))
    within = np.flatnonzero(overlap)[:9]
    beyond = np.flatnonzero(overlap)[9:]
    factor[within] = 1 + rng.uniform(-0.5, 0.5, len(within)) * FEED_RTOL  # another feed's snapshot
    factor[beyond] = 1 + np.array([2.5, -3.0, 4.0, -2.2, 5.0]) * FEED_RTOL  # disagreeing prints
    block["close"] = block["close"] * factor
    block["high"] = np.maximum(block["high"], block["close"])
    block["low"] = np.minimum(block["low"], block["close"])
    kept, rejects = standardize_bars(
        pd.concat([native, _local_as_utc(block, "twelvedata_backfill")], ignore_index=True)
    )
    assert len(kept) + len(rejects) == len(native) + len(block)
    assert len(kept) == 60 and list(kept["time"]) == list(day["time"])
    filled = kept[kept["time_shift_hours"] == 5]
    assert list(filled["time"]) == list(day["time"].iloc[30:43])
    assert list(filled["close"]) == list(day["close"].iloc[30:43])  # recovered rows equal the originals
    assert (
        kept.set_index("time").loc[native["time"], "close"].to_numpy() == native["close"].to_numpy()
    ).all()  # native wins
    by_reason = rejects["reason"].value_counts().to_dict()
    assert by_reason == {SHIFTED_DUPLICATE: 9, SHIFTED_MISMATCH: 5}
    worst = rejects[rejects["reason"] == SHIFTED_MISMATCH].sort_values("time").iloc[0]
    assert "differs from" in worst["detail"] and "feed tolerance 0.20%" in worst["detail"]
