"""The freshness alerts through a real ``dagster-daemon`` (the in-process sensor ticks: defs/test_alerts.py)."""

import datetime as dt
import time

import dagster as dg
import pytest

from usdcop_assets.core import calendar as cal
from usdcop_assets.defs.automation.alerts import WEBHOOK_ENV
from usdcop_assets_tests.defs.test_alerts import BACKTEST, TOKEN, _Recorder

pytestmark = pytest.mark.daemon


def test_the_freshness_daemon_and_the_alert_sensor_post_a_stale_layer_once(tmp_path):
    """Through ``dagster-daemon run`` (freshness every 1 s, the alert sensor every 1 s): a session layer whose
    latest materialization is ten days old goes FAIL and is posted once; a new materialization posts the recovery."""
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID

    from usdcop_assets.defs.quality.freshness import SESSION_POLICY, latest_deadline
    from usdcop_assets_tests.dagster_daemon import home_env, running_daemon, sensor_ticks

    with _Recorder() as rec:
        env = home_env(
            tmp_path,
            **{
                WEBHOOK_ENV: rec.url,
                "FRESHNESS_DAEMON_INTERVAL_SECONDS": "1",
                "USDCOP_FRESHNESS_ALERT_INTERVAL_SECONDS": "1",
            },
        )
        with (
            running_daemon(env, tmp_path / "daemon.log") as daemon,
            dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance,
        ):
            daemon.wait_for(
                lambda: sensor_ticks(instance, "freshness_alert_sensor"), 150, "first freshness_alert_sensor tick"
            )
            old = time.time() - 10 * 86400  # before any 13:30 deadline of the last days
            instance.report_dagster_event(
                DagsterEvent(
                    event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
                    job_name=RUNLESS_JOB_NAME,
                    event_specific_data=StepMaterializationData(
                        dg.AssetMaterialization(BACKTEST, partition="2025-03-07")
                    ),
                ),
                run_id=RUNLESS_RUN_ID,
                timestamp=old,
            )
            deadline = latest_deadline(SESSION_POLICY, dt.datetime.now(dt.UTC)).astimezone(cal.TZ)
            records = lambda: instance.get_freshness_state_records([BACKTEST]).get(BACKTEST)  # noqa: E731
            daemon.wait_for(
                lambda: (r := records()) and r.freshness_state.value == "FAIL",
                60,
                "FAIL written by the freshness daemon",
            )
            if cal.is_trading_day(deadline.date()):
                daemon.wait_for(lambda: rec.posts, 30, "stale alert on the webhook")
                ticks_before = len(sensor_ticks(instance, "freshness_alert_sensor"))
                daemon.wait_for(
                    lambda: len(sensor_ticks(instance, "freshness_alert_sensor")) >= ticks_before + 3,
                    30,
                    "3 more ticks",
                )
                assert [p["json"]["kind"] for p in rec.posts] == ["freshness_stale"]  # once, not once per tick
                msg = rec.posts[0]["json"]
                assert msg["asset_key"] == "l6/backtest_session" and msg["deadline"] == deadline.isoformat()
                instance.report_runless_asset_event(dg.AssetMaterialization(BACKTEST, partition="2025-03-07"))
                daemon.wait_for(lambda: len(rec.posts) == 2, 30, "recovery alert on the webhook")
                assert rec.posts[1]["json"]["kind"] == "freshness_recovered"
            else:  # the last 13:30 deadline fell on a Colombian holiday: held, not posted (documented in freshness.py)
                daemon.wait_for(
                    lambda: len(sensor_ticks(instance, "freshness_alert_sensor")) >= 5, 30, "alert sensor ticks"
                )
                assert rec.posts == []
            log = daemon.log()
        assert TOKEN not in log
