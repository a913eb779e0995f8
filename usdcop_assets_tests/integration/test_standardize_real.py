"""``standardize_bars`` on the recorded history (``USDCOP_SHARED_DATA``): every backfill row shifted +5h is
either a duplicate of a native bar (rejected) or fills a bar the native feed lacks (kept, corrected)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from usdcop_assets.core import calendar as cal
from usdcop_assets.refine.standardize import SHIFTED_DUPLICATE, time_shift_summary
from usdcop_assets_tests.shared_data import SHARED_BARS
from usdcop_assets_tests.unit.test_standardize import H, _std

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def real_trading_days() -> pd.DataFrame:
    raw = pd.read_csv(SHARED_BARS)
    raw["time"] = pd.to_datetime(raw["time"], utc=True)  # as labelled, like the import
    on_trading_day = cal.session_dates(raw["time"]).map(cal.is_trading_day).to_numpy(dtype=bool)
    return raw[on_trading_day].assign(ingested_at=pd.Timestamp("2025-01-01", tz="UTC")).reset_index(drop=True)


def test_real_history_backfill_rows_are_corrected_by_5h_or_rejected_as_shifted_duplicates(real_trading_days):
    raw = real_trading_days
    kept, rejects = _std(raw)  # its speed: bench/l1_l4_pipeline.py (L1 standardize_bars)

    # expected split, from the data: a backfill row shifted +5h either lands on a bar TwelveData has
    # (same close) or fills a bar TwelveData lacks
    backfill = raw[raw["source"] == "twelvedata_backfill"]
    native = raw[raw["source"] == "twelvedata"]
    assert len(backfill) > 0 and cal.on_session_grid(pd.DatetimeIndex(native["time"])).all()
    moved = backfill.assign(time=backfill["time"] + 5 * H)
    assert cal.on_session_grid(pd.DatetimeIndex(moved["time"])).all()
    both = moved.merge(native, on=["time", "symbol"], suffixes=("", "_native"))
    assert (np.abs(both["close"] / both["close_native"] - 1) <= 1e-4).all()
    expected_dupes, expected_fills = len(both), len(backfill) - len(both)
    assert expected_dupes > 0 and expected_fills > 0

    assert time_shift_summary(kept) == {"+5h": expected_fills}
    fixed = kept[kept["time_shift_hours"] != 0]
    assert set(fixed["source"]) == {"twelvedata_backfill"} and len(fixed) == expected_fills
    assert (kept.loc[kept["source"] == "twelvedata", "time_shift_hours"] == 0).all()  # no native row is moved
    assert (kept["source"] == "twelvedata").sum() == len(native)  # every native row kept
    assert rejects["reason"].value_counts().to_dict() == {SHIFTED_DUPLICATE: expected_dupes}
    assert set(rejects["source"]) == {"twelvedata_backfill"}
    assert not cal.on_session_grid(pd.DatetimeIndex(rejects["time"])).any()  # rejects keep the time as given
    assert kept["is_flat"].mean() > 0.8  # the history is mostly flat bars; kept, and counted in metadata
