"""Declarative automation of the session chain: the sensor's definition, the condition evaluated through
``dg.evaluate_automation_conditions`` on a real instance, and a real ``dagster-daemon`` carrying a
session's L0 up through L1..L6 once, beside a ``usdcop backfill`` it leaves alone.

(The automation-sensor part of the sensor tests; in its own module so it does not collide with the
rework of test_sensors.py for the session partitions.)"""

import datetime as dt
import json
import subprocess
import time
import uuid

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData

from usdcop_assets.cli import default_recent_range
from usdcop_assets.core import calendar as cal
from usdcop_assets.defs.automation.conditions import (
    AUTOMATION_SENSOR,
    CLI_TAG,
    SESSION_CONDITION,
)

L0 = dg.AssetKey(["l0", "ohlcv_m5"])
INTERVAL_ENV = "USDCOP_AUTOMATION_INTERVAL_SECONDS"


def _session_keys():
    from usdcop_assets_tests.defs_helpers import current_defs

    defs = current_defs()
    session = defs.resolve_job_def("session_chain").partitions_def
    keys = (k for a in defs.assets if a.partitions_def == session for k in a.keys)
    return sorted(keys, key=lambda k: k.to_user_string())


def _above_l0():
    return [k for k in _session_keys() if k.path[0] != "l0"]


def _recent_sessions(n: int) -> list[dt.date]:
    """The last ``n`` complete sessions: inside the automation's look-back (it follows the real clock)."""
    _, last = default_recent_range(sessions=1)
    days = [last]
    while len(days) < n:
        days.insert(0, cal.previous_trading_day(days[0]))
    return days


# --- definition -----------------------------------------------------------------------------------


def test_the_sensor_runs_by_default_over_the_session_assets_above_l0(usdcop_env, monkeypatch):
    from usdcop_assets_tests.defs_helpers import current_defs

    defs = current_defs()

    sensor = next(s for s in defs.sensors if s.name == AUTOMATION_SENSOR)
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 30  # USDCOP_AUTOMATION_INTERVAL_SECONDS' default
    graph = defs.resolve_asset_graph()
    assert sensor.asset_selection.resolve(graph) == set(_above_l0())
    for node in graph.asset_nodes:
        expected = SESSION_CONDITION if node.key in set(_above_l0()) else None
        assert node.automation_condition == expected, node.key
    monkeypatch.setenv(INTERVAL_ENV, "3")
    sensor = next(s for s in current_defs().sensors if s.name == AUTOMATION_SENSOR)
    assert sensor.minimum_interval_seconds == 3


# --- the condition, tick by tick ------------------------------------------------------------------


def _report(instance, key, partition, run_id=None):
    if run_id is None:
        instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=partition))
        return
    instance.report_dagster_event(
        DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
            job_name="session_chain",
            event_specific_data=StepMaterializationData(dg.AssetMaterialization(key, partition=partition)),
        ),
        run_id=run_id,
    )


def test_the_condition_follows_l0_updates_not_the_clis_nor_the_ignored_dependencies(usdcop_env):
    from usdcop_assets_tests.defs_helpers import current_defs

    defs = current_defs()

    days = _recent_sessions(6)
    keys = [cal.session_key(d) for d in days]
    target = dg.AssetSelection.assets(*_above_l0())
    with dg.instance_for_test(temp_dir=str(usdcop_env / "dagster_home")) as instance:
        for key in _session_keys():
            for partition in keys:
                _report(instance, key, partition)
        cursor = None

        def tick():
            nonlocal cursor
            result = dg.evaluate_automation_conditions(
                defs=defs, instance=instance, asset_selection=target, cursor=cursor
            )
            cursor = result.cursor
            return {
                r.key: r.true_subset.expensively_compute_partition_keys() for r in result.results if r.true_subset.size
            }

        assert tick() == {}  # everything there: the first tick requests nothing
        _report(instance, L0, keys[-1])  # a new L0 of the last session (a realtime or live update)
        # L1 of that session with its data checks; the layers above follow once those blocking checks have
        # passed on the new L1 (a later tick), never on data a failing check would have stopped
        requested = tick()
        l1 = {dg.AssetKey(["l1", "ohlcv_m5"]), dg.AssetKey(["l1", "ohlcv_m5_rejects"])}
        assert {k for k in requested if isinstance(k, dg.AssetKey)} == l1
        assert {k.asset_key for k in requested if isinstance(k, dg.AssetCheckKey)} == l1
        assert all(v == {keys[-1]} for v in requested.values())
        assert tick() == {}  # handled: not again

        # updates by a range run of the CLI (usdcop backfill's staged runs): not the automation's business,
        # for every session of the range, not only the last one (what executed_with_tags would see)
        run = dg.DagsterRun(
            job_name="session_chain",
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.SUCCESS,
            tags={CLI_TAG: "usdcop backfill"},
        )
        instance.add_run(run)
        for partition in keys[-4:-1]:
            _report(instance, L0, partition, run_id=run.run_id)
        # no layer recomputed and no check re-evaluated: the CLI's runs evaluate the checks of what they write
        assert tick() == {}

        # a retrain, a refit of the statistics, a macro day: nothing above them is recomputed
        _report(instance, dg.AssetKey(["l5", "ppo_model"]), days[-1].strftime("%Y-%m-01"))
        _report(instance, dg.AssetKey(["l4", "observation_stats"]), days[-1].strftime("%Y-%m"))
        _report(instance, dg.AssetKey(["l1", "macro_daily"]), keys[-2])
        assert tick() == {}


# --- through the daemon ---------------------------------------------------------------------------


@pytest.mark.daemon
def test_the_daemon_carries_a_session_from_l0_to_l6_once(tmp_path):
    """History: ``usdcop backfill`` of six sessions while the daemon runs (staged runs: L0-L3, the
    statistics, L4-L6, then the audits). Then the last session's L0 by a run that is not the CLI's
    (Dagster's own ``dagster asset materialize``). The automation sensor must carry L1..L6 of that session
    (in a few runs, each layer once its parents' blocking checks passed) and launch nothing for the backfilled
    sessions: one materialization per asset and session, everywhere."""
    from usdcop_assets.observation.builder import DEFAULT_CONFIG
    from usdcop_assets_tests.dagster_daemon import ROOT, VENV_BIN, home_env, running_daemon, sensor_ticks

    days = _recent_sessions(7)
    history, day = days[:-1], days[-1]
    day_key = cal.session_key(day)
    config = json.loads(DEFAULT_CONFIG.read_text())
    config["normalization"]["min_train_bars"] = 50  # a short warm history
    (tmp_path / "obs.json").write_text(json.dumps(config))
    env = home_env(tmp_path, USDCOP_OBS_CONFIG=str(tmp_path / "obs.json"), **{INTERVAL_ENV: "2"})
    automation_runs = dg.RunsFilter(tags={"usdcop/trigger": "automation"})
    started = time.time()
    with running_daemon(env, tmp_path / "daemon.log") as daemon:
        backfill = subprocess.run(
            [str(VENV_BIN / "usdcop"), "backfill", "--start", str(history[0]), "--end", str(history[-1])],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert backfill.returncode == 0, backfill.stdout[-3000:] + backfill.stderr[-3000:]
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            after_backfill = time.time()
            daemon.wait_for(
                lambda: any(t.timestamp > after_backfill for t in sensor_ticks(instance, AUTOMATION_SENSOR)),
                120,
                "automation tick after the backfill",
            )
            assert instance.get_runs(filters=automation_runs) == []  # the backfill's sessions are left alone

            l0 = subprocess.run(
                [
                    str(VENV_BIN / "dagster"),
                    "asset",
                    "materialize",
                    "-m",
                    "usdcop_assets.defs.definitions",
                    "--select",
                    "l0/ohlcv_m5",
                    "--partition",
                    day_key,
                ],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert l0.returncode == 0, l0.stdout[-3000:] + l0.stderr[-3000:]

            def carried_up():  # L1..L6 of the day materialized, and no automation run still going
                runs = instance.get_runs(filters=automation_runs)
                done = all(
                    instance.fetch_materializations(
                        dg.AssetRecordsFilter(asset_key=k, asset_partitions=[day_key]), limit=1
                    ).records
                    for k in _above_l0()
                )
                return runs if runs and done and all(r.is_finished for r in runs) else None

            # the layers follow each other as their parents' blocking checks pass: a few runs, a few ticks apart
            runs = daemon.wait_for(carried_up, 300, "L1..L6 of the session carried up by automation")
            seen = len(sensor_ticks(instance, AUTOMATION_SENSOR))
            daemon.wait_for(
                lambda: len(sensor_ticks(instance, AUTOMATION_SENSOR)) >= seen + 3, 60, "3 more automation ticks"
            )
            runs = instance.get_runs(filters=automation_runs)
            assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), daemon.log()[-4000:]
            assert all(r.tags["dagster/partition"] == day_key for r in runs)
            assert set().union(*(r.asset_selection for r in runs)) == set(_above_l0())
            automation_ids = {r.run_id for r in runs}

            for key in _session_keys():
                for session in [*history, day]:
                    records = instance.fetch_materializations(
                        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[cal.session_key(session)]), limit=5
                    ).records
                    assert len(records) == 1, (key.to_user_string(), str(session), len(records))
                    if session == day and key != L0:
                        assert records[0].run_id in automation_ids

            # the evaluation history is bounded: the history sensor purges what is older than its window
            from dagster._core.test_utils import freeze_time

            from usdcop_assets.defs.automation.conditions import build_history_sensor

            storage, l1 = instance.schedule_storage, dg.AssetKey(["l1", "ohlcv_m5"])
            assert storage.get_auto_materialize_asset_evaluations(l1, limit=100)
            with freeze_time(dt.datetime.now(dt.UTC) + dt.timedelta(hours=49)):
                with dg.build_sensor_context(instance=instance) as ctx:
                    build_history_sensor(hours=48).evaluate_tick(ctx)
            assert storage.get_auto_materialize_asset_evaluations(l1, limit=100) == []
    print(f"daemon automation test: {time.time() - started:.0f} s")
