"""The realtime bar sensor and the gap-fill sensor, evaluated with ``build_sensor_context`` on a real
instance (no daemon), an injected clock, and the loopback TwelveData server."""

import datetime as dt
import uuid

import dagster as dg
import pandas as pd
import pytest

from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import ConfigError, Settings
from usdcop_assets.defs.automation import sensors
from usdcop_assets.defs.automation.jobs import SESSION_JOB, build_session_chain_job
from usdcop_assets.defs.automation.sensors import (
    PARTITION_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    build_gap_fill_sensor,
    build_realtime_bar_sensor,
    build_sensors,
    recent_sessions,
)
from usdcop_assets.defs.definitions import build_defs
from usdcop_assets.defs.resources import source_resources
from usdcop_assets.sources.synthetic import synthetic_bars
from usdcop_assets.testing.vendor_server import TD_PATH, VendorServer
from usdcop_assets_tests.defs.test_gaps import full_definitions
from usdcop_assets_tests.defs_helpers import current_partitions

L0 = dg.AssetKey(["l0", "ohlcv_m5"])
KEY = "FAKE-SENSOR-KEY"
GAP_FILL_SESSIONS_ENV = "USDCOP_GAP_FILL_SESSIONS"


def _realtime() -> dg.SensorDefinition:
    """The realtime sensor as the environment configures it now (the code location's settings are a snapshot)."""
    return build_realtime_bar_sensor(Settings.from_env())


def _gap_fill() -> dg.SensorDefinition:
    return build_gap_fill_sensor(Settings.from_env())


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
        monkeypatch.setattr(sensors, "utc_now", lambda clock=None: now)

    return set_now


def _tick(sensor, instance, defs, cursor=None):
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=defs,
        resources={"bar_source": source_resources(Settings.from_env())[0]},  # the code location's, from the env
    )
    # Dagster validates requested partitions at its own "now": the daemon's would be the injected clock's
    # (today's session must exist mid-session).
    with dg.partition_loading_context(effective_dt=sensors.utc_now().to_pydatetime()):
        return sensor.evaluate_tick(context)


# --- definitions ----------------------------------------------------------------------------------


def test_sensors_target_session_chain_and_start_stopped(usdcop_env, defs):
    repo = defs.get_repository_def()
    repo.load_all_definitions()
    for sensor in build_sensors(Settings.from_env()):
        assert repo.get_sensor_def(sensor.name).job_name == SESSION_JOB
        assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert _realtime().minimum_interval_seconds == 15  # USDCOP_REALTIME_POLL_SECONDS default


def test_definitions_with_the_sensors_validate(usdcop_env):
    settings = Settings.from_env()
    base = build_defs(settings)
    job = build_session_chain_job(base.assets, session_partitions=current_partitions().session)
    defs = dg.Definitions(assets=base.assets, jobs=[job], sensors=build_sensors(settings), resources=base.resources)
    dg.Definitions.validate_loadable(defs)


def test_full_definitions_validate(defs):
    # Checks live on session-partitioned audit assets, so every check shares its target's partitions.
    dg.Definitions.validate_loadable(defs)


# --- realtime_bar_sensor --------------------------------------------------------------------------


def test_realtime_requests_the_session_of_the_last_closed_bar_once(usdcop_env, instance, defs, clock, monkeypatch):
    clock("2025-03-05 10:07")
    data = _tick(_realtime(), instance, defs)
    # today's session partition, once per bar: the run key is the bar's
    assert [(r.partition_key, r.run_key) for r in data.run_requests] == [("2025-03-05", "2025-03-05-10:00")]
    assert data.run_requests[0].tags["usdcop/bar"] == "2025-03-05-10:00"
    assert data.run_requests[0].asset_selection is None  # the session's whole chain (USDCOP_REALTIME_RUN=chain)
    assert data.cursor == "2025-03-05-10:00"

    again = _tick(_realtime(), instance, defs, cursor=data.cursor)
    assert not again.run_requests and "no new closed bar" in again.skip_message
    assert again.cursor == "2025-03-05-10:00"

    clock("2025-03-05 10:10")  # the 10:05 bar has just closed
    nxt = _tick(_realtime(), instance, defs, cursor=data.cursor)
    assert [(r.partition_key, r.run_key) for r in nxt.run_requests] == [("2025-03-05", "2025-03-05-10:05")]
    assert nxt.cursor == "2025-03-05-10:05"

    # USDCOP_REALTIME_RUN=l0: the session's L0 only (declarative automation carries L1..L6)
    monkeypatch.setenv("USDCOP_REALTIME_RUN", "l0")
    clock("2025-03-05 10:15")
    l0 = _tick(_realtime(), instance, defs, cursor=nxt.cursor)
    assert [(r.partition_key, r.run_key, r.asset_selection) for r in l0.run_requests] == [
        ("2025-03-05", "2025-03-05-10:10", [L0])
    ]

    # the last bar of the day, ticked after the close: still its own session
    monkeypatch.delenv("USDCOP_REALTIME_RUN")
    clock("2025-03-05 13:00:20")
    close = _tick(_realtime(), instance, defs, cursor="2025-03-05-12:50")
    assert [(r.partition_key, r.run_key) for r in close.run_requests] == [("2025-03-05", "2025-03-05-12:55")]


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
    data = _tick(_realtime(), instance, defs, cursor=cursor)
    assert not data.run_requests
    assert data.skip_message and "no new closed bar" in data.skip_message
    assert data.cursor == cursor


def test_realtime_with_twelvedata_waits_until_the_bar_is_published(usdcop_env, instance, defs, clock, monkeypatch):
    day = dt.date(2025, 3, 5)
    bars = synthetic_bars(cal.session_bars(day), defects=False)
    local = pd.DatetimeIndex(bars["time"]).tz_convert(cal.TZ)
    with VendorServer() as server:
        monkeypatch.setenv("USDCOP_SOURCE", "twelvedata")
        monkeypatch.setenv("TWELVEDATA_BASE_URL", server.url)
        monkeypatch.setenv("TWELVEDATA_API_KEYS", KEY)
        server.set_bars(bars[local < _bogota("2025-03-05 10:00")])  # up to 09:55
        clock("2025-03-05 10:07")

        waiting = _tick(_realtime(), instance, defs, cursor="2025-03-05-09:55")
        assert not waiting.run_requests
        assert "2025-03-05-10:00 not published yet" in waiting.skip_message
        assert waiting.cursor == "2025-03-05-09:55"  # not advanced: the next tick asks again
        asked = server.paths(TD_PATH)
        assert len(asked) == 1
        assert asked[0].params["start_date"] == "2025-03-05 10:00:00"
        assert asked[0].params["end_date"] == "2025-03-05 10:04:59"

        server.set_bars(bars[local <= _bogota("2025-03-05 10:00")])  # the vendor publishes 10:00
        clock("2025-03-05 10:07:30")
        published = _tick(_realtime(), instance, defs, cursor=waiting.cursor)
        assert [(r.partition_key, r.run_key) for r in published.run_requests] == [("2025-03-05", "2025-03-05-10:00")]
        assert published.cursor == "2025-03-05-10:00"
        assert len(server.paths(TD_PATH)) == 2
    assert KEY not in (waiting.skip_message or "")


def test_realtime_rate_limited_probe_skips_without_waiting(usdcop_env, instance, defs, clock, monkeypatch):
    with VendorServer() as server:
        monkeypatch.setenv("USDCOP_SOURCE", "twelvedata")
        monkeypatch.setenv("TWELVEDATA_BASE_URL", server.url)
        monkeypatch.setenv("TWELVEDATA_API_KEYS", KEY)
        server.script(
            429, {"code": 429, "message": "You have run out of API credits for the current minute.", "status": "error"}
        )
        clock("2025-03-05 10:07")
        data = _tick(_realtime(), instance, defs, cursor="2025-03-05-09:55")
    assert not data.run_requests and "rate-limited" in data.skip_message
    assert data.cursor == "2025-03-05-09:55"


# --- gap_fill_sensor ------------------------------------------------------------------------------


def test_recent_sessions_and_the_bar_each_must_reach():
    # Monday 2025-03-10 08:20 with a 10-minute grace: last bar due 08:05; two sessions = Fri + Mon.
    recent = recent_sessions(_bogota("2025-03-10 08:20"), sessions=2, grace_minutes=10)
    assert [(k, cal.bar_key(due)) for k, due in recent] == [
        ("2025-03-07", "2025-03-07-12:55"),
        ("2025-03-10", "2025-03-10-08:05"),
    ]
    # Tuesday 2025-03-25 after the San José holiday: the sessions before it skip the Monday
    recent = recent_sessions(_bogota("2025-03-25 13:30"), sessions=3, grace_minutes=10)
    assert [k for k, _ in recent] == ["2025-03-20", "2025-03-21", "2025-03-25"]


def _materialize(instance, session: str, last_bar: str):
    """What an L0 run of ``session`` records: its ``last_bar`` metadata (Bogota wall clock, '' for no bar)."""
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=L0, partition=session, metadata={"last_bar": last_bar})
    )


def test_gap_fill_requests_sessions_missing_or_short_of_their_due_bars(usdcop_env, instance, defs, clock, monkeypatch):
    monkeypatch.setenv(GAP_FILL_SESSIONS_ENV, "3")
    clock("2025-03-07 13:30")  # Friday after the close: sessions Wed 5, Thu 6 and Fri 7
    _materialize(instance, "2025-03-05", "2025-03-05 12:55")  # complete
    _materialize(instance, "2025-03-07", "2025-03-07 10:10")  # stops short (e.g. materialized mid-session)
    # Thursday never materialized

    data = _tick(_gap_fill(), instance, defs)
    got = [(r.partition_key, r.run_key, r.tags["usdcop/trigger"]) for r in data.run_requests]
    assert got == [
        ("2025-03-06", "gap-fill:2025-03-06:2025-03-06-12:55", "gap_fill"),
        ("2025-03-07", "gap-fill:2025-03-07:2025-03-07-12:55", "gap_fill"),
    ]

    # session_chain runs on their way (one session, and a range over Thursday): nothing to request meanwhile
    runs = [
        dg.DagsterRun(
            job_name=SESSION_JOB,
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTED,
            tags={PARTITION_TAG: "2025-03-07"},
        ),
        dg.DagsterRun(
            job_name=SESSION_JOB,
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTING,
            tags={RANGE_START_TAG: "2025-03-03", RANGE_END_TAG: "2025-03-06"},
        ),
    ]
    for run in runs:
        instance.add_run(run)
    busy = _tick(_gap_fill(), instance, defs)
    assert not busy.run_requests and "on their way" in busy.skip_message
    for run in runs:
        instance.report_run_failed(run)

    # a session materialized with no bar at all still lacks every bar due
    _materialize(instance, "2025-03-06", "")
    _materialize(instance, "2025-03-07", "2025-03-07 12:55")
    again = _tick(_gap_fill(), instance, defs)
    assert [r.partition_key for r in again.run_requests] == ["2025-03-06"]
    _materialize(instance, "2025-03-06", "2025-03-06 12:55")
    done = _tick(_gap_fill(), instance, defs)
    assert not done.run_requests and "complete" in done.skip_message

    # mid-session, within the grace: only bars closed 10 minutes ago are due
    clock("2025-03-10 09:12")
    monkeypatch.setenv(GAP_FILL_SESSIONS_ENV, "1")
    _materialize(instance, "2025-03-10", "2025-03-10 08:55")  # due: 08:55 (closed 09:00 <= 09:02)
    assert not _tick(_gap_fill(), instance, defs).run_requests
    clock("2025-03-10 09:16")  # due: 09:00
    assert [r.run_key for r in _tick(_gap_fill(), instance, defs).run_requests] == [
        "gap-fill:2025-03-10:2025-03-10-09:00"
    ]


def test_gap_fill_finds_a_short_session_inside_a_range_run(usdcop_env, instance, defs, clock, monkeypatch):
    """A range run records each session's own last bar: a short first session is not hidden by a complete last one."""
    from usdcop_assets.defs.automation.jobs import layers_job
    from usdcop_assets.defs.partitions import session_key_range

    short_day, full_day = dt.date(2025, 3, 6), dt.date(2025, 3, 7)
    bars = synthetic_bars(cal.bars_of_days([short_day, full_day]), defects=False)
    local = pd.DatetimeIndex(bars["time"]).tz_convert(cal.TZ)
    served = bars[
        (local < _bogota("2025-03-06 12:00")) | (local >= _bogota("2025-03-07 08:00"))
    ]  # Thursday stops at 11:55
    with VendorServer() as server:
        server.set_bars(served)
        monkeypatch.setenv("USDCOP_SOURCE", "twelvedata")
        monkeypatch.setenv("TWELVEDATA_BASE_URL", server.url)
        monkeypatch.setenv("TWELVEDATA_API_KEYS", KEY)
        key_range = session_key_range(short_day, full_day)
        run = layers_job(full_definitions(), "L0").execute_in_process(
            instance=instance, tags={RANGE_START_TAG: key_range.start, RANGE_END_TAG: key_range.end}
        )
        assert run.success
    monkeypatch.setenv(GAP_FILL_SESSIONS_ENV, "2")
    clock("2025-03-07 13:30")
    data = _tick(_gap_fill(), instance, defs)
    assert [(r.partition_key, r.run_key) for r in data.run_requests] == [
        ("2025-03-06", "gap-fill:2025-03-06:2025-03-06-12:55")
    ]


def test_gap_fill_looks_only_at_the_configured_sessions(usdcop_env, instance, defs, clock, monkeypatch):
    clock("2025-03-07 13:30")
    monkeypatch.setenv(GAP_FILL_SESSIONS_ENV, "1")
    data = _tick(_gap_fill(), instance, defs)  # nothing materialized at all
    assert [r.partition_key for r in data.run_requests] == ["2025-03-07"]
    monkeypatch.setenv(GAP_FILL_SESSIONS_ENV, "0")
    with pytest.raises(ConfigError, match=GAP_FILL_SESSIONS_ENV):
        _tick(_gap_fill(), instance, defs)
