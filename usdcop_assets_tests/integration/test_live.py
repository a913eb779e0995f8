"""The live bar process (``usdcop live``, usdcop_assets/live/): a session replayed through the real loop on a
simulated clock, against the real stores, the real Dagster instance and a loopback TwelveData server.

- every bar's L0..L5 rows equal the session's batch run (the ``live_parity`` checks pass through Dagster),
  and a tampered row makes the check name the bar and the column;
- each bar is recorded in Dagster as a materialization of the session's partition in the session's live run;
- declarative automation does not request L1..L5 again for what the live process stored (and does for a
  foreign L0 update: the test can fail);
- the source silent for a whole session: polled throughout, one alert, the next session's bars land;
- a bar published twice with different values: the later values replace it, recorded;
- no model for the fold: recorded flat with the reason;
- nights, weekends and holidays are slept through.

The ``kill -9`` mid-bar and SIGTERM cases run the process itself: test_live_process.py.
"""

import datetime as dt
import logging
import sqlite3
import subprocess
import sys
import threading

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from usdcop_assets.core import calendar as cal
from usdcop_assets.live.loop import LiveSettings, next_open
from usdcop_assets.live.parity import session_parity
from usdcop_assets.live.session import LIVE_ASSETS
from usdcop_assets.sources.synthetic import synthetic_bars
from usdcop_assets.testing.vendor_server import VendorServer
from usdcop_assets_tests.live_helpers import (
    DAY,
    NEXT_DAY,
    SimClock,
    backfilled_home,
    install_model,
    platform_env,
    run_session_batch,
)

OPEN, CLOSE = cal.session_open(DAY), cal.session_end(DAY)
MINUTE = pd.Timedelta(minutes=1)


@pytest.fixture
def home(tmp_path, tmp_path_factory, monkeypatch):
    home = backfilled_home(tmp_path / "home", tmp_path_factory.getbasetemp() / "live-backfilled")
    for key in list(__import__("os").environ):
        if key.startswith(("USDCOP_", "TWELVEDATA_", "DAGSTER_")):
            monkeypatch.delenv(key)
    for key, value in platform_env(home).items():
        if key.startswith(("USDCOP_", "DAGSTER_")):
            monkeypatch.setenv(key, value)
    return home


def _loop(clock, stop, **kwargs):
    from usdcop_assets.defs.live.service import build_loop

    return build_loop(instance=dg.DagsterInstance.get(), clock=clock, stop=stop, **kwargs)


def _rows(home, table: str, day=DAY) -> pd.DataFrame:
    with sqlite3.connect(home / "warehouse.sqlite") as conn:
        frame = pd.read_sql_query(f"SELECT * FROM {table}", conn)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame[(frame["time"] >= cal.session_open(day)) & (frame["time"] < cal.session_end(day))].reset_index(
        drop=True
    )


def _materializations(instance, asset: str, day=DAY) -> list:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset.split("/")), asset_partitions=[cal.session_key(day)]),
        limit=1000,
    ).records
    return [r.event_log_entry for r in records]


# --- a whole session live, then its batch run ------------------------------------------------------------


def test_a_live_session_equals_its_batch_run_bar_for_bar_and_is_recorded_in_dagster(home):
    install_model(home / "lake")  # the fold has a model: positions move, trades are filled
    stop = threading.Event()
    clock = SimClock(OPEN - 3 * MINUTE, CLOSE + 20 * MINUTE, stop)
    loop = _loop(clock, stop)
    loop.run()

    assert [b["bar"] for b in loop.bars] == list(cal.session_bars(DAY))  # each bar once, in order, none missed
    actions = _rows(home, "fact_rl_inference")
    assert len(actions) == 60 and actions["time"].is_unique
    assert actions["position"].abs().gt(0).sum() > 10 and actions["fallback"].isna().all()  # decided by the model
    assert len(_rows(home, "paper_trades")) > 0

    instance = dg.DagsterInstance.get()
    runs = instance.get_runs(dg.RunsFilter(tags={"usdcop/trigger": "live"}))
    assert (
        len(runs) == 1
        and runs[0].status == dg.DagsterRunStatus.SUCCESS
        and runs[0].tags["dagster/partition"] == "2025-03-10"
    )
    assert runs[0].asset_selection == {dg.AssetKey(a.split("/")) for a in LIVE_ASSETS}
    for asset in ("l0/ohlcv_m5", "l2/indicators_m5", "l5/actions_m5", "l5/paper_positions"):
        events = _materializations(instance, asset)
        assert len(events) == 60 and {e.run_id for e in events} == {runs[0].run_id}
        md = events[0].asset_materialization.metadata  # the newest: the 12:55 bar
        assert md["bar"].value == "2025-03-10-12:55" and md["bars_present"].value == 60 and md["latency_s"].value > 0
        assert md["last_bar"].value == "2025-03-10 12:55" and md["trigger"].value == "live"

    result, checks = run_session_batch(DAY, instance)
    assert result.success
    parity = {k: v for k, v in checks.items() if k.endswith(":live_parity")}
    assert len(parity) == len(LIVE_ASSETS)
    assert all(v.passed for v in parity.values()), {k: v.description for k, v in parity.items() if not v.passed}
    assert parity["l5/actions_m5:live_parity"].metadata["live_bars"].value == 60

    # a row that differs is named by its bar and column, in the warehouse and in the lake
    with sqlite3.connect(home / "warehouse.sqlite") as conn:
        conn.execute(
            "UPDATE fact_rl_inference SET position = position + 0.5 WHERE time = ?",
            ("2025-03-10 15:00:00.000000+00:00",),
        )
    store = _loop(SimClock(OPEN, OPEN, threading.Event()), threading.Event()).store
    found = session_parity(store, "l5/actions_m5", DAY)
    assert not found.passed and set(found.differences) == {"warehouse"}
    diff = found.differences["warehouse"]
    assert cal.bar_key(diff.bar) == "2025-03-10-10:00" and diff.column == "position"
    assert "bar 2025-03-10 10:00 Bogota, column 'position'" in found.describe()
    journal = store.journal_rows("l3/features_m5", DAY)
    journal.loc[journal["time"] == pd.Timestamp("2025-03-10 16:30", tz="UTC"), "rsi_norm"] += 1e-9
    store._journal("l3/features_m5").write(journal, *store.specs["l3/features_m5"].window(DAY))
    lake_diff = session_parity(store, "l3/features_m5", DAY).differences["lake"]
    assert cal.bar_key(lake_diff.bar) == "2025-03-10-11:30" and lake_diff.column == "rsi_norm"


# --- declarative automation ---------------------------------------------------------------------------


def test_automation_does_not_recompute_what_the_live_process_stored(home):
    from usdcop_assets.core.settings import Settings
    from usdcop_assets.defs.definitions import build_defs

    defs = build_defs(Settings.from_env())
    instance = dg.DagsterInstance.get()
    at = cal.session_end(DAY).to_pydatetime() + dt.timedelta(
        minutes=30
    )  # the session's partition exists after its close
    above_l0 = [k for a in LIVE_ASSETS if not a.startswith("l0/") for k in [dg.AssetKey(a.split("/"))]]
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=at)

    stop = threading.Event()
    _loop(SimClock(OPEN - 3 * MINUTE, OPEN + 31 * MINUTE, stop), stop).run()  # six bars live
    assert len(_materializations(instance, "l1/ohlcv_m5")) == 6

    after_live = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, evaluation_time=at, cursor=first.cursor
    )
    assert {
        k.to_user_string(): after_live.get_requested_partitions(k)
        for k in above_l0
        if cal.session_key(DAY) in after_live.get_requested_partitions(k)
    } == {}

    # a control: L0 of the session updated by something else than the live run -> L1 is requested
    instance.report_runless_asset_event(
        dg.AssetMaterialization(dg.AssetKey(["l0", "ohlcv_m5"]), partition=cal.session_key(DAY))
    )
    foreign = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, evaluation_time=at, cursor=after_live.cursor
    )
    assert cal.session_key(DAY) in foreign.get_requested_partitions(dg.AssetKey(["l1", "ohlcv_m5"]))


# --- bad input and faults -----------------------------------------------------------------------------


def _publish_until(server: VendorServer, frame: pd.DataFrame):
    """on_time hook: the server serves the bars of ``frame`` closed by the clock's time."""

    def on_time(now):
        server.set_bars(frame[frame["time"] + pd.Timedelta(minutes=5) <= now])

    return on_time


def _vendor_env(monkeypatch, server):
    monkeypatch.setenv("USDCOP_SOURCE", "twelvedata")
    monkeypatch.setenv("TWELVEDATA_API_KEYS", "live-key")
    monkeypatch.setenv("TWELVEDATA_BASE_URL", server.url)
    monkeypatch.setenv("TWELVEDATA_CREDITS_PER_MINUTE", "100000")  # the simulated clock runs minutes in milliseconds
    monkeypatch.setenv("TWELVEDATA_CREDITS_PER_DAY", "1000000")


def test_the_source_silent_for_a_whole_session_is_polled_throughout_alerts_once_and_the_next_session_lands(
    home, monkeypatch, caplog
):
    bars = synthetic_bars(cal.bars_of_days([NEXT_DAY]), defects=False)
    alerts = []
    with VendorServer() as server:
        _vendor_env(monkeypatch, server)
        server.script(
            status=500, json_body={"status": "error", "code": 500, "message": "down"}, times=400
        )  # all of DAY

        def on_time(now):
            if now >= cal.session_open(NEXT_DAY) - 2 * MINUTE:
                server._script.clear()  # the vendor is back for the next session
                server.set_bars(bars[bars["time"] + pd.Timedelta(minutes=5) <= now])

        stop = threading.Event()
        clock = SimClock(OPEN - 3 * MINUTE, cal.session_open(NEXT_DAY) + 31 * MINUTE, stop, on_time)
        settings = LiveSettings(
            poll_seconds=60.0, alert_after_seconds=300.0
        )  # a poll a minute keeps the session at ~300 requests
        with caplog.at_level(logging.INFO, logger="usdcop_assets.live"):
            loop = _loop(clock, stop, settings=settings, alert=alerts.append)
            loop.run()
        polls_on_day = [
            r for r in server.requests if r.path == "/time_series" and r.params["end_date"].startswith("2025-03-10")
        ]
    assert len(polls_on_day) >= 300  # kept asking through the whole session (one a minute, 5 h + the grace)
    assert len(alerts) == 1 and "no new twelvedata bar" in alerts[0]
    failing = [r for r in caplog.records if "is failing" in r.getMessage()]
    assert len(failing) == 1  # logged once, not once per poll
    assert len([r for r in caplog.records if "answers again" in r.getMessage()]) == 1
    assert _rows(home, "fact_rl_inference", DAY).empty
    later = _rows(home, "fact_rl_inference", NEXT_DAY)
    assert list(later["time"]) == list(cal.session_bars(NEXT_DAY)[:6])
    runs = dg.DagsterInstance.get().get_runs(dg.RunsFilter(tags={"usdcop/trigger": "live"}))
    assert sorted(r.tags["dagster/partition"] for r in runs) == ["2025-03-10", "2025-03-11"]
    day_run = next(r for r in runs if r.tags["dagster/partition"] == "2025-03-10")
    assert day_run.status == dg.DagsterRunStatus.SUCCESS  # the live process did its part; the vendor sent nothing
    logs = [
        e.dagster_event.message if e.dagster_event else e.user_message
        for e in dg.DagsterInstance.get().all_logs(day_run.run_id)
    ]
    logs = [m for m in logs if m]
    assert any("no new twelvedata bar" in m for m in logs) and any("0 of 60 bars stored live" in m for m in logs)


def test_a_bar_published_again_with_other_values_replaces_it_and_is_recorded(home, monkeypatch, caplog):
    bars = synthetic_bars(cal.bars_of_days([DAY]), defects=False)
    second = bars.copy()
    target = cal.session_bars(DAY)[2]  # 08:10
    second.loc[second["time"] == target, ["close", "high"]] = (
        second.loc[second["time"] == target, ["close", "high"]] + 5.0
    )
    with VendorServer() as server:
        _vendor_env(monkeypatch, server)

        def on_time(now):  # the 08:10 bar is corrected by the vendor after the 08:20 close
            frame = second if now >= OPEN + 20 * MINUTE else bars
            server.set_bars(frame[frame["time"] + pd.Timedelta(minutes=5) <= now])

        stop = threading.Event()
        with caplog.at_level(logging.WARNING, logger="usdcop_assets.live"):
            _loop(SimClock(OPEN - 3 * MINUTE, OPEN + 31 * MINUTE, stop, on_time), stop).run()
    l1 = _rows(home, "usdcop_m5_ohlcv")
    assert len(l1) == 6 and l1.loc[l1["time"] == target, "close"].item() == pytest.approx(
        second.loc[second["time"] == target, "close"].item()
    )
    assert any("08:10 was published again with different values" in r.getMessage() for r in caplog.records)
    instance = dg.DagsterInstance.get()
    republished = [
        e.asset_materialization.metadata["republished_bars"].value for e in _materializations(instance, "l0/ohlcv_m5")
    ]
    assert ["2025-03-10-08:10"] in republished
    # no model for fold 2025-03 in this home: every bar recorded flat with the reason
    actions = _rows(home, "fact_rl_inference")
    assert (actions["position"] == 0).all() and actions["fallback"].str.contains(
        "no l5/ppo_model for fold 2025-03"
    ).all()
    # the batch run reads the vendor's current values too: the live rows equal it
    with VendorServer() as server:
        _vendor_env(monkeypatch, server)
        server.set_bars(second[second["time"] < OPEN + 30 * MINUTE])
        result, checks = run_session_batch(DAY, instance)
    assert result.success
    assert all(v.passed for k, v in checks.items() if k.endswith(":live_parity")), {
        k: v.description for k, v in checks.items() if k.endswith(":live_parity") and not v.passed
    }


# --- the calendar: nights, weekends, holidays -------------------------------------------------------------


def test_the_loop_sleeps_over_the_night_weekend_and_a_holiday_without_asking_the_source():
    friday_close = cal.session_end(dt.date(2025, 3, 21))  # Monday 2025-03-24 is a Colombian holiday (San José)
    assert not cal.is_trading_day(dt.date(2025, 3, 24))
    assert next_open(friday_close) == cal.session_open(dt.date(2025, 3, 25))
    assert (
        next_open(cal.session_open(dt.date(2025, 3, 25)) - 3 * MINUTE, lead_seconds=120)
        == cal.session_open(dt.date(2025, 3, 25)) - 2 * MINUTE
    )

    from usdcop_assets.live.loop import LiveLoop

    class Store:  # the loop's view of the stores, recording what it is asked
        def __init__(self):
            self.writes = []

        def load_warm(self, day, config):
            return type("Warm", (), {"day": day, "prior_l1": [], "macro_wide": [], "stats": {}, "models": {}})()

        def stored_raw(self, day):
            return pd.DataFrame()

    class Source:
        def __init__(self):
            self.asked = []

        def fetch(self, start, end):
            self.asked.append(end)
            return pd.DataFrame({"time": pd.DatetimeIndex([], tz="UTC")})

    class Recorder:
        def open_session(self, key): ...
        def record(self, key, rows, info): ...
        def note(self, key, text): ...
        def close_session(self, key, outcome, message): ...

    stop = threading.Event()
    start = cal.session_end(dt.date(2025, 3, 21)) + pd.Timedelta(minutes=30)
    clock = SimClock(start, cal.session_open(dt.date(2025, 3, 25)) + 6 * MINUTE, stop)
    source = Source()
    loop = LiveLoop(
        source,
        Store(),
        None,
        None,
        None,
        None,
        Recorder(),
        clock=clock,
        stop=stop,
        settings=LiveSettings(poll_seconds=1.0),
    )
    loop.run()
    # one sleep from Friday after the close to Tuesday a minute before the open, then the first bar's close
    assert clock.waits[0] == pytest.approx((cal.session_open(dt.date(2025, 3, 25)) - MINUTE - start).total_seconds())
    assert source.asked and min(source.asked) == cal.session_open(dt.date(2025, 3, 25)) + pd.Timedelta(minutes=5)


def test_the_pure_parts_of_the_live_package_do_not_import_dagster():
    code = (
        "import sys\nimport usdcop_assets.live.session, usdcop_assets.live.live_store, usdcop_assets.live.loop, "
        "usdcop_assets.live.parity, usdcop_assets.live.source\nprint('dagster' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_parity_compares_values_as_any_store_reads_them_back():
    from usdcop_assets.live.parity import first_difference

    t = pd.date_range("2025-03-10 13:00", periods=3, freq="5min", tz="UTC")
    live = pd.DataFrame(
        {"time": t, "x": [1.0, np.nan, -0.0], "ok": [True, False, True], "why": [None, "a", None], "ingested_at": t}
    )
    read_back = pd.DataFrame(
        {
            "time": t.strftime("%Y-%m-%d %H:%M:%S.%f+00:00"),
            "x": [1.0, None, 0.0],
            "ok": [1, 0, 1],
            "why": [np.nan, "a", None],
            "ingested_at": t + pd.Timedelta(hours=1),
        }
    )
    read_back["time"] = pd.to_datetime(read_back["time"], utc=True)
    assert first_difference(live, read_back) is None  # NaN/None/-0.0/bools/provenance do not count
    read_back.loc[2, "why"] = "b"
    diff = first_difference(live, read_back)
    assert diff.bar == t[2] and diff.column == "why" and (diff.live, diff.batch) == (None, "b")


def test_the_compose_stack_runs_the_live_process_with_the_platform_stores_and_the_instance():
    import yaml

    from usdcop_assets_tests.live_helpers import ROOT

    services = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]
    live = services["usdcop-live"]
    assert live["command"] == ["usdcop", "live"] and live["stop_signal"] == "SIGTERM"
    env = live["environment"]
    for name in (
        "USDCOP_LAKE_URL",
        "USDCOP_WAREHOUSE_URL",
        "TWELVEDATA_API_KEYS",
        "DAGSTER_PG_HOST",
        "DAGSTER_PG_PASSWORD",
    ):
        assert name in env, name  # the same stores as the code server, events in the same Dagster instance
    code = services["usdcop-code"]["environment"]
    assert "FRED_API_KEY" not in env  # least privilege: only what it writes and the bar vendor's keys
    assert {
        k: v for k, v in code.items() if k != "FRED_API_KEY"
    } == env  # otherwise the code server's stores, as writer
    assert {"dagster-postgres", "timescaledb", "minio-init"} <= set(live["depends_on"])


def test_the_recorder_works_mid_session_on_the_real_clock(tmp_path):
    """Mid-session on Dagster's own clock: today's session is a partition already (``end_offset=1``: Dagster lists
    a window once it ended), and the live run and its bar events are stored under it."""
    from dagster._core.test_utils import freeze_time

    from usdcop_assets.core.settings import Settings
    from usdcop_assets.defs.automation.jobs import SESSION_JOB
    from usdcop_assets.defs.definitions import build_defs
    from usdcop_assets.defs.live.recorder import DagsterRecorder
    from usdcop_assets.defs.quality.live_parity import layer_specs
    from usdcop_assets.live.session import L0, RawUpdate, SessionRows
    from usdcop_assets.sources import conform_l0

    defs = build_defs(Settings.from_env())
    specs, keys = layer_specs(a for a in defs.assets if isinstance(a, dg.AssetsDefinition))
    job = defs.resolve_job_def(SESSION_JOB).get_subset(asset_selection=set(keys.values()), asset_check_selection=set())
    bar = cal.session_bars(DAY)[30]  # 10:30
    raw = conform_l0(synthetic_bars(cal.session_bars(DAY)[:31], defects=False))
    with (
        freeze_time((bar + pd.Timedelta(minutes=5, seconds=2)).to_pydatetime()),
        dg.instance_for_test(temp_dir=str(tmp_path)) as instance,
    ):
        with dg.partition_loading_context(effective_dt=(bar + pd.Timedelta(minutes=5, seconds=2)).to_pydatetime()):
            assert job.partitions_def.has_partition_key(cal.session_key(DAY))
        recorder = DagsterRecorder(instance, job, keys, specs)
        recorder.open_session(cal.session_key(DAY))
        info = {
            "bar": bar,
            "trigger": "live",
            "detected": 1.0,
            "committed": {L0: 1.2},
            "clock_now": bar + pd.Timedelta(minutes=5),
            "fetch_s": 0.01,
            "compute_s": 0.1,
            "update": RawUpdate(raw, [bar], [], []),
            "skipped": None,
            "source": "synthetic",
        }
        recorder.record(cal.session_key(DAY), SessionRows(DAY, {L0: raw}, [], None, 0.1), info)
        recorder.close_session(cal.session_key(DAY), "success", "closed")
        event = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(["l0", "ohlcv_m5"]), asset_partitions=["2025-03-10"]), limit=1
        ).records[0]
        md = event.asset_materialization.metadata
        assert (
            md["bar"].value == "2025-03-10-10:30" and md["bars_present"].value == 31 and md["bars_missing"].value == 0
        )
        assert md["latency_s"].value == pytest.approx(0.2) and md["new_bars"].value == ["2025-03-10-10:30"]
        run = instance.get_run_by_id(event.run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags["dagster/partition"] == "2025-03-10"


@pytest.mark.pg
def test_live_rows_equal_the_batch_rows_in_a_postgresql_warehouse(home, monkeypatch, fresh_pg_url):
    install_model(home / "lake")
    monkeypatch.setenv("USDCOP_WAREHOUSE_URL", fresh_pg_url)
    stop = threading.Event()
    _loop(SimClock(OPEN - 3 * MINUTE, OPEN + 41 * MINUTE, stop), stop).run()  # eight bars
    result, checks = run_session_batch(DAY, dg.DagsterInstance.get())
    assert result.success
    parity = {k: v for k, v in checks.items() if k.endswith(":live_parity")}
    assert len(parity) == len(LIVE_ASSETS) and all(v.passed for v in parity.values()), {
        k: v.description for k, v in parity.items() if not v.passed
    }
    actions = parity["l5/actions_m5:live_parity"]
    assert actions.metadata["live_bars"].value == 8 and actions.metadata["rows_compared"].value == {
        "lake": 8,
        "warehouse": 8,
    }
