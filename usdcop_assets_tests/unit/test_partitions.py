import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest

from usdcop_assets.core import calendar as cal
from usdcop_assets.defs.partitions import build_partitions, lookback_mapping, session_key_range

BOGOTA = ZoneInfo("America/Bogota")
# the default history start; holidays listed through 2026
session_partitions = build_partitions(dt.date(2020, 1, 1), today=dt.date(2025, 6, 1)).session


def test_session_partitions_of_2025_are_the_colombian_trading_days():
    trading_days = cal.trading_days(dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    keys = session_partitions.get_partition_keys_in_range(session_key_range(dt.date(2025, 1, 1), dt.date(2025, 12, 31)))
    assert keys == [cal.session_key(d) for d in trading_days]
    assert len(keys) == len(set(keys))


def test_no_session_partition_on_a_holiday_or_weekend_2020_2026():
    for day in cal.colombian_holidays(2020, 2026):
        assert not session_partitions.has_partition_key(day.isoformat()), day
    assert not session_partitions.has_partition_key("2025-03-08")  # Saturday
    assert session_partitions.has_partition_key("2025-03-04")


def test_session_window_is_0800_to_1300_the_same_day_and_holds_its_60_bars():
    for key in ("2025-03-04", "2025-03-07", "2025-01-07", "2024-12-31"):
        day = dt.date.fromisoformat(key)
        window = session_partitions.time_window_for_partition_key(key)
        # Friday too: a plain weekday cron's window would run to Monday 08:00
        assert window.start == dt.datetime.combine(day, dt.time(8, 0), tzinfo=BOGOTA)
        assert window.end == dt.datetime.combine(day, dt.time(13, 0), tzinfo=BOGOTA)
        bars = cal.expected_bars(pd.Timestamp(window.start), pd.Timestamp(window.end))
        assert list(bars) == list(cal.session_bars(day))
        assert len(bars) == 60


def test_session_partitions_skip_holidays_and_weekends():
    keys = session_partitions.get_partition_keys_in_range(session_key_range(dt.date(2025, 1, 1), dt.date(2025, 1, 10)))
    assert keys == ["2025-01-02", "2025-01-03", "2025-01-07", "2025-01-08", "2025-01-09", "2025-01-10"]


def test_session_look_back_crosses_nights_weekends_and_holidays():
    # 2 sessions back from Tuesday 2025-01-07 (Monday 01-06 is a holiday) -> Thursday 01-02 and Friday 01-03
    subset = session_partitions.empty_subset().with_partition_keys(["2025-01-07"])
    upstream = lookback_mapping(2).get_upstream_mapped_partitions_result_for_partitions(
        subset, session_partitions, session_partitions
    )
    assert sorted(upstream.partitions_subset.get_partition_keys()) == ["2025-01-02", "2025-01-03", "2025-01-07"]
    # L2's 4 sessions before a range's first session (01-08 back to 01-02 over the holiday), nothing after its last
    subset = session_partitions.empty_subset().with_partition_keys(["2025-01-09", "2025-01-10"])
    upstream = lookback_mapping(4).get_upstream_mapped_partitions_result_for_partitions(
        subset, session_partitions, session_partitions
    )
    assert sorted(upstream.partitions_subset.get_partition_keys()) == [
        "2025-01-02",
        "2025-01-03",
        "2025-01-07",
        "2025-01-08",
        "2025-01-09",
        "2025-01-10",
    ]
    assert upstream.required_but_nonexistent_subset.is_empty


@pytest.mark.parametrize("now", ["2025-03-05 08:00", "2025-03-05 10:07", "2025-03-05 12:59"])
def test_todays_session_is_a_partition_while_it_runs(now):
    """The realtime sensor and the bar-close schedule request today's session mid-session; Dagster
    validates the key at its own clock, so the running session must exist (not only once it closed)."""
    with dg.partition_loading_context(effective_dt=pd.Timestamp(now, tz=BOGOTA).to_pydatetime()):
        assert session_partitions.has_partition_key("2025-03-05")
        assert session_partitions.get_last_partition_key() == "2025-03-05"
        assert not session_partitions.has_partition_key("2025-03-07")  # two sessions ahead


def test_key_ranges_reject_spans_without_sessions():
    with pytest.raises(cal.CalendarError, match="no trading session"):
        session_key_range(dt.date(2025, 3, 8), dt.date(2025, 3, 9))
    assert session_key_range(dt.date(2025, 3, 1), dt.date(2025, 3, 9)) == dg.PartitionKeyRange(
        "2025-03-03", "2025-03-07"
    )
