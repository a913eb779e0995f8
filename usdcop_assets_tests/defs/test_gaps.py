"""Gap detection: the pure ``missing_bars`` and the session-partitioned ``bars_complete`` checks on
L0 and L1 (usdcop_assets/quality/), run through Dagster after a TwelveData session that lacked bars."""

import datetime as dt

import dagster as dg
import pandas as pd
import pytest

from usdcop_assets import gaps
from usdcop_assets.core import calendar as cal
from usdcop_assets.defs.automation.jobs import SESSION_JOB, job_check_keys, layers_job
from usdcop_assets.defs.partitions import session_key_range
from usdcop_assets.defs.quality.checks import GAP
from usdcop_assets.gaps import bar_summary, checked_end, missing_bars
from usdcop_assets.sources.synthetic import synthetic_bars
from usdcop_assets.testing.vendor_server import VendorServer

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def _bogota(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=cal.TZ_NAME)


def full_definitions() -> dg.Definitions:
    """The code location as registered (assets with their checks, sensors), from the current environment."""
    from usdcop_assets.core.settings import Settings
    from usdcop_assets.defs.definitions import build_defs

    return build_defs(Settings.from_env())


# --- missing_bars (pure) --------------------------------------------------------------------------


def test_complete_session_has_no_missing_bars():
    day = dt.date(2025, 3, 5)
    assert len(missing_bars(cal.session_bars(day), cal.session_open(day), cal.session_end(day))) == 0


def test_missing_bars_are_exactly_the_absent_ones():
    day = dt.date(2025, 3, 5)
    bars = cal.session_bars(day)
    present = bars.delete([0, 13, 59])
    missing = missing_bars(pd.Series(present), cal.session_open(day), cal.session_end(day))
    assert [cal.bar_key(t) for t in missing] == ["2025-03-05-08:00", "2025-03-05-09:05", "2025-03-05-12:55"]
    assert str(missing.tz) == "UTC"


def test_holiday_spanning_window_expects_only_trading_bars():
    # Fri 2025-01-03 12:00 .. Tue 2025-01-07 09:00; Mon 2025-01-06 is a Colombian holiday (Reyes Magos).
    assert cal.is_holiday(dt.date(2025, 1, 6))
    start, end = _bogota("2025-01-03 12:00"), _bogota("2025-01-07 09:00")
    missing = missing_bars([], start, end)
    keys = [cal.bar_key(t) for t in missing]
    assert len(keys) == 24
    assert keys[0] == "2025-01-03-12:00" and keys[11] == "2025-01-03-12:55"
    assert keys[12] == "2025-01-07-08:00" and keys[-1] == "2025-01-07-08:55"
    assert not any(k.startswith(("2025-01-04", "2025-01-05", "2025-01-06")) for k in keys)

    # Rows off the grid, on the holiday, duplicated or outside the window neither fill nor create gaps.
    present = cal.expected_bars(start, end).delete(5)
    noise = pd.DatetimeIndex(
        [
            t.tz_convert("UTC")
            for t in (_bogota("2025-01-06 09:00"), _bogota("2025-01-03 12:02"), present[0], _bogota("2025-01-07 10:00"))
        ]
    )
    missing = missing_bars(present.append(noise), start, end)
    assert [cal.bar_key(t) for t in missing] == ["2025-01-03-12:25"]


def test_missing_bars_edge_cases():
    day = dt.date(2025, 3, 5)
    assert len(missing_bars([], cal.session_end(day), cal.session_open(day))) == 0  # empty window
    assert len(missing_bars([], _bogota("2025-03-08 00:00"), _bogota("2025-03-09 23:00"))) == 0  # weekend
    with pytest.raises(cal.CalendarError):
        missing_bars(pd.DatetimeIndex(["2025-03-05 13:00"]), cal.session_open(day), cal.session_end(day))


def test_checked_window_stops_at_the_last_closed_bar():
    end = _bogota("2025-03-05 13:00")
    assert checked_end(end, now=_bogota("2025-03-05 10:07")) == _bogota("2025-03-05 10:05").tz_convert("UTC")
    assert checked_end(end, now=_bogota("2025-03-06 07:00")) == end.tz_convert("UTC")


def test_bar_summary_counts_only_bars_due_by_now():
    day = dt.date(2025, 3, 5)
    bars = cal.session_bars(day)
    present = bars[:30].delete(13)  # 08:00..10:25 without 09:05
    start, end = cal.session_open(day), cal.session_end(day)
    full = bar_summary(present, start, end, now=_bogota("2025-03-05 14:00"))
    assert (full["bars_present"], full["bars_missing"]) == (29, 31)
    assert (full["first_bar"], full["last_bar"]) == ("2025-03-05 08:00", "2025-03-05 10:25")
    # at 10:31 the bars up to 10:25 are due: only the hole is missing
    mid = bar_summary(present, start, end, now=_bogota("2025-03-05 10:31"))
    assert (mid["bars_present"], mid["bars_missing"], mid["missing_bars_sample"]) == (29, 1, ["2025-03-05 09:05"])
    # before the open nothing is due
    assert bar_summary([], start, end, now=_bogota("2025-03-05 07:00"))["bars_missing"] == 0


# --- the checks through Dagster -------------------------------------------------------------------


@pytest.fixture
def instance(usdcop_env):
    with dg.instance_for_test(temp_dir=str(usdcop_env / "dagster_home")) as inst:
        yield inst


def _check(defs, instance, day: dt.date) -> dict[str, dg.AssetCheckEvaluation]:
    """The ``bars_complete`` checks alone over the session ``day`` (what the lake holds)."""
    key_range = session_key_range(day, day)
    job = defs.resolve_job_def(SESSION_JOB)
    gap_checks = {k for k in job_check_keys(job) if k.name == GAP}
    result = job.get_subset(asset_selection=set(), asset_check_selection=gap_checks).execute_in_process(
        instance=instance, tags={RANGE_START: key_range.start, RANGE_END: key_range.end}, raise_on_error=False
    )
    assert result.success  # WARN: a gap fails the check, not the run
    evaluations = [
        e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert {ev.partition for ev in evaluations} == {key_range.start}
    return {ev.asset_check_key.to_user_string(): ev for ev in evaluations}


def test_bars_complete_fails_on_a_session_the_source_left_short(usdcop_env, instance, monkeypatch):
    complete_day, short_day = dt.date(2025, 3, 5), dt.date(2025, 3, 6)
    bars = synthetic_bars(cal.bars_of_days([complete_day, short_day]), defects=False)
    lacking = ["2025-03-06-09:00", "2025-03-06-09:05", "2025-03-06-11:30"]
    served = bars[~bars["time"].map(cal.bar_key).isin(lacking)]
    assert len(served) == 117
    with VendorServer() as server:
        server.set_bars(served)
        monkeypatch.setenv("USDCOP_SOURCE", "twelvedata")
        monkeypatch.setenv("TWELVEDATA_BASE_URL", server.url)
        monkeypatch.setenv("TWELVEDATA_API_KEYS", "FAKE-GAP-KEY")
        defs = full_definitions()
        key_range = session_key_range(complete_day, short_day)
        run = layers_job(defs, "L0,L1").execute_in_process(
            instance=instance, tags={RANGE_START: key_range.start, RANGE_END: key_range.end}
        )
        assert run.success

    # each session's L0 materialization says what it holds and lacks (what the gap-fill sensor reads)
    l0 = {m.partition: m.metadata for m in run.asset_materializations_for_node("l0__ohlcv_m5")}
    assert l0[complete_day.isoformat()]["bars_missing"].value == 0
    assert l0[short_day.isoformat()]["bars_present"].value == 57
    assert l0[short_day.isoformat()]["bars_missing"].value == 3
    assert l0[short_day.isoformat()]["last_bar"].value == "2025-03-06 12:55"

    ok = _check(defs, instance, complete_day)
    assert set(ok) == {"l0/ohlcv_m5:bars_complete", "l1/ohlcv_m5:bars_complete"}
    for ev in ok.values():
        assert ev.passed
        assert ev.metadata["expected"].value == ev.metadata["present"].value == 60
        assert ev.metadata["missing"].value == 0

    short = _check(defs, instance, short_day)
    for name, ev in short.items():
        assert not ev.passed, name
        assert ev.severity == dg.AssetCheckSeverity.WARN
        assert ev.metadata["expected"].value == 60
        assert ev.metadata["present"].value == 57
        assert ev.metadata["missing"].value == 3
        assert ev.metadata["missing_bars"].value == lacking

    # Checked mid-session (10:07): only bars closed by then can be missing.
    monkeypatch.setattr(gaps, "utc_now", lambda: _bogota("2025-03-06 10:07").tz_convert("UTC"))
    partial = _check(defs, instance, short_day)["l0/ohlcv_m5:bars_complete"]
    assert partial.metadata["expected"].value == 25
    assert partial.metadata["missing"].value == 2
    assert partial.metadata["missing_bars"].value == lacking[:2]
