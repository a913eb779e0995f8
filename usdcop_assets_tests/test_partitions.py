import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest

from usdcop_assets import market_calendar as cal
from usdcop_assets.partitions import bar_key_range, bar_partitions, session_key_range, session_partitions

BOGOTA = ZoneInfo("America/Bogota")


def test_bar_partitions_of_2025_are_60_per_colombian_trading_day():
    trading_days = cal.trading_days(dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    keys = bar_partitions.get_partition_keys_in_range(bar_key_range(dt.date(2025, 1, 1), dt.date(2025, 12, 31)))
    assert len(keys) == 60 * len(trading_days)
    assert len(set(keys)) == len(keys)
    by_day = pd.Series(keys).str[:10].value_counts()
    assert (by_day == 60).all()
    assert sorted(by_day.index) == [d.isoformat() for d in trading_days]


def test_no_bar_partition_on_a_holiday_2020_2026():
    for day in cal.colombian_holidays(2020, 2026):
        if day.weekday() >= 5:
            continue
        for hhmm in ("08:00", "10:30", "12:55"):
            assert not bar_partitions.has_partition_key(f"{day.isoformat()}-{hhmm}"), day
    # and no 13:xx partitions on a normal day
    assert not bar_partitions.has_partition_key("2025-03-04-13:00")
    assert bar_partitions.has_partition_key("2025-03-04-12:55")


def test_last_bar_window_ends_at_1300_same_day():
    window = bar_partitions.time_window_for_partition_key("2025-03-04-12:55")
    assert window.start == dt.datetime(2025, 3, 4, 12, 55, tzinfo=BOGOTA)
    assert window.end == dt.datetime(2025, 3, 4, 13, 0, tzinfo=BOGOTA)
    # Friday's last bar too (next tick would be Monday 08:00 with a plain cron)
    window = bar_partitions.time_window_for_partition_key("2025-03-07-12:55")
    assert window.end == dt.datetime(2025, 3, 7, 13, 0, tzinfo=BOGOTA)


def test_session_partition_maps_to_exactly_its_60_bars():
    mapping = dg.TimeWindowPartitionMapping()
    for key in ("2025-03-04", "2025-03-07", "2025-01-07", "2024-12-31"):
        subset = session_partitions.empty_subset().with_partition_keys([key])
        upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(subset, session_partitions, bar_partitions)
        keys = sorted(upstream.partitions_subset.get_partition_keys())
        expected = [cal.bar_key(b) for b in cal.session_bars(dt.date.fromisoformat(key))]
        assert keys == expected


def test_session_partitions_skip_holidays_and_weekends():
    keys = session_partitions.get_partition_keys_in_range(session_key_range(dt.date(2025, 1, 1), dt.date(2025, 1, 10)))
    assert keys == ["2025-01-02", "2025-01-03", "2025-01-07", "2025-01-08", "2025-01-09", "2025-01-10"]


def test_bar_look_back_crosses_nights_weekends_and_holidays():
    # 3 bars back from Tuesday 2025-01-07 08:00 (Monday is a holiday) -> Friday 12:45..12:55
    mapping = dg.TimeWindowPartitionMapping(start_offset=-3)
    subset = bar_partitions.empty_subset().with_partition_keys(["2025-01-07-08:00"])
    upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(subset, bar_partitions, bar_partitions)
    assert sorted(upstream.partitions_subset.get_partition_keys()) == [
        "2025-01-03-12:45",
        "2025-01-03-12:50",
        "2025-01-03-12:55",
        "2025-01-07-08:00",
    ]


def test_key_ranges_reject_spans_without_sessions():
    with pytest.raises(cal.CalendarError, match="no trading session"):
        bar_key_range(dt.date(2025, 3, 8), dt.date(2025, 3, 9))
    assert bar_key_range(dt.date(2025, 3, 3), dt.date(2025, 3, 7)) == dg.PartitionKeyRange("2025-03-03-08:00", "2025-03-07-12:55")


def test_code_location_passes_dagster_definitions_validate(tmp_path):
    """What CI and the webserver do on load; in-process runs skip these checks (e.g. a partitioned
    check whose partitions differ from its target's only fails here)."""
    import os
    import subprocess
    import sys

    from usdcop_assets.cli import PROJECT_ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith(("USDCOP_LAKE", "USDCOP_WAREHOUSE", "USDCOP_SOURCE"))}
    env.update(USDCOP_HOME=str(tmp_path), DAGSTER_HOME=str(tmp_path / "dh"))
    (tmp_path / "dh").mkdir()
    (tmp_path / "dh" / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", str(PROJECT_ROOT / "workspace.yaml")],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Validation successful for code location usdcop_assets" in done.stdout + done.stderr
