"""The realtime bar sensor and the gap-fill sensor, evaluated with ``build_sensor_context`` on a real
instance (no daemon), an injected clock, and the loopback TwelveData server."""

import datetime as dt
import uuid

import dagster as dg
import pandas as pd
import pytest

from usdcop_assets import market_calendar as cal
from usdcop_assets import sensors
from usdcop_assets.definitions import ASSETS, build_definitions
from usdcop_assets.jobs import M5_CHAIN_JOB, build_m5_chain_job
from usdcop_assets.sensors import (
    GAP_FILL_SESSIONS_ENV,
    RANGE_END_TAG,
    RANGE_START_TAG,
    SENSORS,
    contiguous_ranges,
    gap_fill_sensor,
    realtime_bar_sensor,
    recent_bar_keys,
)
from usdcop_assets.settings import ConfigError
from usdcop_assets.sources.synthetic import synthetic_bars
from usdcop_assets_tests.test_gaps import full_definitions
from usdcop_assets_tests.vendor_server import TD_PATH, VendorServer

L0 = dg.AssetKey(["l0", "ohlcv_m5"])
KEY = "FAKE-SENSOR-KEY"


def _bogota(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=cal.TZ_NAME)


@pytest.fixture
def instance(usdcop_env):
    with dg.instance_for_test(temp_dir=str(usdcop_env / "dagster_home")) as inst:
        yield inst


@pytest.fixture
def defs(usdcop_env):
    return full_definitions()


@pytest.fixture
def clock(monkeypatch):
    """Set the sensors' current instant: ``clock("2025-03-05 10:07")`` (Bogota)."""

    def set_now(text: str) -> None:
        now = _bogota(text).tz_convert("UTC")
        monkeypatch.setattr(sensors, "utc_now", lambda: now)

    return set_now


def _tick(sensor, instance, defs, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    return sensor.evaluate_tick(context)


# --- definitions ----------------------------------------------------------------------------------


def test_sensors_target_m5_chain_and_start_stopped(usdcop_env, defs):
    repo = defs.get_repository_def()
    repo.load_all_definitions()
    for sensor in SENSORS:
        assert repo.get_sensor_def(sensor.name).job_name == M5_CHAIN_JOB
        assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert realtime_bar_sensor.minimum_interval_seconds == 15  # USDCOP_REALTIME_POLL_SECONDS default


def test_definitions_with_the_sensors_validate(usdcop_env):
    base = build_definitions()
    defs = dg.Definitions(assets=ASSETS, jobs=[build_m5_chain_job(ASSETS)], sensors=SENSORS, resources=base.resources)
    dg.Definitions.validate_loadable(defs)


def test_full_definitions_validate(defs):
    # Checks live on session-partitioned audit assets, so every check shares its target's partitions.
    dg.Definitions.validate_loadable(defs)


# --- realtime_bar_sensor --------------------------------------------------------------------------


def test_realtime_requests_the_last_closed_bar_once(usdcop_env, instance, defs, clock):
    clock("2025-03-05 10:07")
    data = _tick(realtime_bar_sensor, instance, defs)
    assert [(r.partition_key, r.run_key) for r in data.run_requests] == [("2025-03-05-10:00", "2025-03-05-10:00")]
    assert data.cursor == "2025-03-05-10:00"

    again = _tick(realtime_bar_sensor, instance, defs, cursor=data.cursor)
    assert not again.run_requests and "no new closed bar" in again.skip_message
    assert again.cursor == "2025-03-05-10:00"

    clock("2025-03-05 10:10")  # the 10:05 bar has just closed
    nxt = _tick(realtime_bar_sensor, instance, defs, cursor=data.cursor)
    assert [r.partition_key for r in nxt.run_requests] == ["2025-03-05-10:05"] and nxt.cursor == "2025-03-05-10:05"


@pytest.mark.parametrize(
    "now, cursor",
    [
        ("2025-03-06 07:00", "2025-03-05-12:55"),  # before the open: last closed bar is yesterday's 12:55
        ("2025-03-06 08:03", "2025-03-05-12:55"),  # the first bar has not closed yet
        ("2025-03-08 10:00", "2025-03-07-12:55"),  # Saturday
        ("2025-03-24 10:00", "2025-03-21-12:55"),  # Monday 2025-03-24: San José, a Colombian holiday
        ("2025-03-05 18:00", "2025-03-05-12:55"),  # after the close
    ],
)
def test_realtime_skips_when_no_bar_beyond_the_cursor(usdcop_env, instance, defs, clock, now, cursor):
    assert cal.is_holiday(dt.date(2025, 3, 24))
    clock(now)
    data = _tick(realtime_bar_sensor, instance, defs, cursor=cursor)
    assert not data.run_requests
    assert data.skip_message and "no new closed bar" in data.skip_message
    assert data.cursor == cursor


def test_realtime_with_twelvedata_waits_until_the_bar_is_published(usdcop_env, instance, defs, clock, monkeypatch):
    day = dt.date(2025, 3, 5)
    bars = synthetic_bars(cal.session_bars(day))
    local = pd.DatetimeIndex(bars["time"]).tz_convert(cal.TZ)
    with VendorServer() as server:
        monkeypatch.setenv("USDCOP_SOURCE", "twelvedata")
        monkeypatch.setenv("TWELVEDATA_BASE_URL", server.url)
        monkeypatch.setenv("TWELVEDATA_API_KEYS", KEY)
        server.set_bars(bars[local < _bogota("2025-03-05 10:00")])  # up to 09:55
        clock("2025-03-05 10:07")

        waiting = _tick(realtime_bar_sensor, instance, defs, cursor="2025-03-05-09:55")
        assert not waiting.run_requests
        assert "2025-03-05-10:00 not published yet" in waiting.skip_message
        assert waiting.cursor == "2025-03-05-09:55"  # not advanced: the next tick asks again
        asked = server.paths(TD_PATH)
        assert len(asked) == 1
        assert asked[0].params["start_date"] == "2025-03-05 10:00:00"
        assert asked[0].params["end_date"] == "2025-03-05 10:04:59"

        server.set_bars(bars[local <= _bogota("2025-03-05 10:00")])  # the vendor publishes 10:00
        clock("2025-03-05 10:07:30")
        published = _tick(realtime_bar_sensor, instance, defs, cursor=waiting.cursor)
        assert [(r.partition_key, r.run_key) for r in published.run_requests] == [("2025-03-05-10:00", "2025-03-05-10:00")]
        assert published.cursor == "2025-03-05-10:00"
        assert len(server.paths(TD_PATH)) == 2
    assert KEY not in (waiting.skip_message or "")


def test_realtime_rate_limited_probe_skips_without_waiting(usdcop_env, instance, defs, clock, monkeypatch):
    with VendorServer() as server:
        monkeypatch.setenv("USDCOP_SOURCE", "twelvedata")
        monkeypatch.setenv("TWELVEDATA_BASE_URL", server.url)
        monkeypatch.setenv("TWELVEDATA_API_KEYS", KEY)
        server.script(429, {"code": 429, "message": "You have run out of API credits for the current minute.", "status": "error"})
        clock("2025-03-05 10:07")
        data = _tick(realtime_bar_sensor, instance, defs, cursor="2025-03-05-09:55")
    assert not data.run_requests and "rate-limited" in data.skip_message
    assert data.cursor == "2025-03-05-09:55"


# --- gap_fill_sensor ------------------------------------------------------------------------------


def test_recent_bar_keys_and_contiguous_ranges():
    # Monday 2025-03-10 08:20 with a 10-minute grace: last closed bar 08:05; two sessions = Fri + Mon.
    keys = recent_bar_keys(_bogota("2025-03-10 08:20"), sessions=2, grace_minutes=10)
    assert len(keys) == 62 and keys[0] == "2025-03-07-08:00" and keys[-1] == "2025-03-10-08:05"
    assert contiguous_ranges(keys, {"2025-03-07-12:55", "2025-03-10-08:00", "2025-03-07-09:00"}) == [
        ("2025-03-07-09:00", "2025-03-07-09:00"),
        ("2025-03-07-12:55", "2025-03-10-08:00"),  # adjacent partitions across the weekend: one range
    ]
    assert contiguous_ranges(keys, set()) == []


def _materialize(instance, keys):
    for k in keys:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=L0, partition=k))


def test_gap_fill_requests_one_run_per_hole(usdcop_env, instance, defs, clock, monkeypatch):
    monkeypatch.setenv(GAP_FILL_SESSIONS_ENV, "2")
    clock("2025-03-07 13:30")  # Friday after the close: sessions Thu 6 and Fri 7
    keys = recent_bar_keys(_bogota("2025-03-07 13:30"), sessions=2, grace_minutes=10)
    assert len(keys) == 120
    hole = ["2025-03-07-10:00", "2025-03-07-10:05", "2025-03-07-10:10"]
    _materialize(instance, [k for k in keys if k not in hole])

    data = _tick(gap_fill_sensor, instance, defs)
    assert len(data.run_requests) == 1
    (req,) = data.run_requests
    assert req.partition_key is None
    assert req.tags[RANGE_START_TAG] == "2025-03-07-10:00" and req.tags[RANGE_END_TAG] == "2025-03-07-10:10"
    assert req.partition_key_range == dg.PartitionKeyRange("2025-03-07-10:00", "2025-03-07-10:10")
    assert req.run_key == "gap-fill:2025-03-07-10:00..2025-03-07-10:10"

    # A running m5_chain run over the hole: nothing to request while it is on its way.
    run = dg.DagsterRun(
        job_name=M5_CHAIN_JOB, run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED,
        tags={RANGE_START_TAG: hole[0], RANGE_END_TAG: hole[-1]},
    )
    instance.add_run(run)
    busy = _tick(gap_fill_sensor, instance, defs)
    assert not busy.run_requests and "on their way" in busy.skip_message
    instance.report_run_failed(run)

    _materialize(instance, hole)
    done = _tick(gap_fill_sensor, instance, defs)
    assert not done.run_requests and "materialized" in done.skip_message


def test_gap_fill_looks_only_at_the_configured_sessions(usdcop_env, instance, defs, clock, monkeypatch):
    clock("2025-03-07 13:30")
    monkeypatch.setenv(GAP_FILL_SESSIONS_ENV, "1")
    data = _tick(gap_fill_sensor, instance, defs)  # nothing materialized at all
    assert [(r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in data.run_requests] == [
        ("2025-03-07-08:00", "2025-03-07-12:55")
    ]
    monkeypatch.setenv(GAP_FILL_SESSIONS_ENV, "0")
    with pytest.raises(ConfigError, match=GAP_FILL_SESSIONS_ENV):
        _tick(gap_fill_sensor, instance, defs)
