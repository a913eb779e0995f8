"""Alerts through a real loopback HTTP server: once per failed run, once per layer going stale (and once
when it recovers), holiday FAILs held, never raising on a dead webhook, never logging the webhook URL;
the source retry policy. The freshness states come from Dagster's own freshness daemon code, in process
at frozen instants and through a real ``dagster-daemon``."""

import asyncio
import datetime as dt
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
from dagster._core.test_utils import freeze_time

from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import ConfigError, Settings
from usdcop_assets.defs.automation import alerts
from usdcop_assets.defs.automation.alerts import (
    WEBHOOK_ENV,
    WEBSERVER_ENV,
    build_freshness_alert_sensor,
    build_run_failure_alert_sensor,
    webhook_url,
)
from usdcop_assets.defs.policies import source_retry_policy
from usdcop_assets.defs.quality.freshness import POLICIES
from usdcop_assets_tests.defs_helpers import asset_def, current_defs

TOKEN = "T0KEN-s3cr3t-xyz"
RETRY_DELAY_ENV = "USDCOP_RETRY_DELAY_SECONDS"


def post_webhook(payload, **kwargs) -> str:
    """``alerts.post_webhook`` to the webhook the environment configures now."""
    return alerts.post_webhook(payload, url=webhook_url(Settings.from_env().automation), **kwargs)


def run_failure_sensor() -> dg.SensorDefinition:
    return build_run_failure_alert_sensor(Settings.from_env())


def freshness_sensor() -> dg.SensorDefinition:
    return build_freshness_alert_sensor(POLICIES, Settings.from_env())


class _Recorder:
    def __init__(self, status: int = 200):
        self.posts: list[dict] = []
        self.status = status
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                recorder.posts.append({"path": self.path, "json": json.loads(body)})
                self.send_response(recorder.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/{TOKEN}?token={TOKEN}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook(monkeypatch):
    with _Recorder() as rec:
        monkeypatch.setenv(WEBHOOK_ENV, rec.url)
        monkeypatch.setenv(WEBSERVER_ENV, "http://dagster.example:3000/")
        yield rec


@pytest.fixture
def instance(usdcop_env):
    with dg.instance_for_test(temp_dir=str(usdcop_env / "dagster_home")) as inst:
        yield inst


@pytest.fixture(autouse=True)
def _no_pause(monkeypatch):
    monkeypatch.setattr(alerts, "WEBHOOK_RETRY_PAUSE_SECONDS", 0.0)


def _failing_run(instance, partition: str = "2025-03-07"):
    @dg.asset(key=["l0", "ohlcv_m5"], partitions_def=dg.StaticPartitionsDefinition([partition]))
    def l0():
        raise RuntimeError("TwelveData answered 503 three times\nsecond line of detail")

    result = dg.materialize([l0], partition_key=partition, instance=instance, raise_on_error=False)
    assert not result.success
    return result.run_id


def _tick(sensor, instance, cursor=None):
    with dg.build_sensor_context(instance=instance, cursor=cursor) as ctx:
        data = sensor.evaluate_tick(ctx)
    return data.cursor


def test_run_failure_posts_once_per_failed_run(hook, instance, caplog):
    caplog.set_level(logging.DEBUG)
    cursor = _tick(run_failure_sensor(), instance)  # the first tick starts from the present
    run_id = _failing_run(instance)
    cursor = _tick(run_failure_sensor(), instance, cursor)
    assert len(hook.posts) == 1
    msg = hook.posts[0]["json"]
    assert msg["kind"] == "run_failure" and msg["run_id"] == run_id
    assert msg["job_name"] == "__ASSET_JOB" or msg["job_name"].startswith("__")
    assert msg["partition_tags"] == {"dagster/partition": "2025-03-07"}
    assert msg["error"] == "RuntimeError: TwelveData answered 503 three times"
    assert msg["failed_steps"] == ["l0__ohlcv_m5"]
    assert msg["ui_url"] == f"http://dagster.example:3000/runs/{run_id}"
    assert "partition 2025-03-07 " in msg["text"] and "503 three times" in msg["text"]

    _tick(run_failure_sensor(), instance, cursor)  # nothing new
    assert len(hook.posts) == 1
    assert run_id in caplog.text  # always logged
    assert TOKEN not in caplog.text


def test_dead_webhook_is_logged_never_raised_and_the_url_never_logged(instance, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(WEBHOOK_ENV, f"http://127.0.0.1:{port}/hooks/{TOKEN}?token={TOKEN}")
    cursor = _tick(run_failure_sensor(), instance)
    _failing_run(instance)
    _tick(run_failure_sensor(), instance, cursor)  # does not raise
    assert "alert webhook at host 127.0.0.1 failed after 2 attempt(s): ConnectError" in caplog.text
    assert TOKEN not in caplog.text


def test_webhook_url_is_never_logged_by_httpx_either(hook, caplog):
    caplog.set_level(logging.DEBUG)
    assert post_webhook({"text": "hi"}) == "sent"
    assert hook.posts[0]["path"].startswith("/hooks/")
    assert "HTTP Request" in caplog.text and "127.0.0.1" in caplog.text  # httpx's line, rewritten
    assert TOKEN not in caplog.text


def test_webhook_retries_once_on_5xx_then_gives_up(monkeypatch, caplog):
    with _Recorder(status=503) as rec:
        monkeypatch.setenv(WEBHOOK_ENV, rec.url)
        assert post_webhook({"text": "x"}) == "failed"
        assert len(rec.posts) == 2
    with _Recorder(status=404) as rec:
        monkeypatch.setenv(WEBHOOK_ENV, rec.url)
        assert post_webhook({"text": "x"}) == "failed"
        assert len(rec.posts) == 1  # a 4xx will not fix itself
    assert TOKEN not in caplog.text


def test_without_a_webhook_alerts_only_log(instance, monkeypatch, caplog):
    monkeypatch.delenv(WEBHOOK_ENV, raising=False)
    caplog.set_level(logging.INFO)
    cursor = _tick(run_failure_sensor(), instance)
    run_id = _failing_run(instance)
    _tick(run_failure_sensor(), instance, cursor)
    assert "ALERT [usdcop] run of" in caplog.text and run_id in caplog.text
    assert post_webhook({"text": "x"}) == "no_webhook"


# --- stale layers --------------------------------------------------------------------------------

L0 = dg.AssetKey(["l0", "ohlcv_m5"])
L1 = dg.AssetKey(["l1", "ohlcv_m5"])
BACKTEST = dg.AssetKey(["l6", "backtest_session"])


def _bogota(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=cal.TZ)


@pytest.fixture(scope="module")
def graph():
    return current_defs().resolve_asset_graph()


def _materialize(instance, key, partition, at):
    with freeze_time(at):
        instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=partition))


def _freshness_daemon(instance, graph, keys, at):
    """What one freshness daemon iteration does for ``keys`` at ``at``: evaluate, write the state changes."""
    from dagster._core.loader import LoadingContextForTest
    from dagster._daemon.freshness import FreshnessDaemon

    async def run():
        context = LoadingContextForTest(instance)
        return [await FreshnessDaemon()._evaluate_asset(context, graph.get(k)) for k in keys]

    with freeze_time(at):
        return asyncio.run(run())


def _alert_tick(sensor, instance, cursor, at):
    with freeze_time(at):
        return _tick(sensor, instance, cursor)


def test_a_stale_layer_is_posted_once_and_its_recovery_once(hook, instance, graph, caplog):
    caplog.set_level(logging.DEBUG)
    sensor = freshness_sensor()
    _materialize(
        instance, BACKTEST, "2025-03-07", _bogota(2025, 3, 7, 12, 58)
    )  # before the close: not the whole session
    cursor = _alert_tick(sensor, instance, None, _bogota(2025, 3, 7, 13, 0))  # the first tick starts from the present
    assert _freshness_daemon(instance, graph, [BACKTEST], _bogota(2025, 3, 7, 13, 20)) == [True]  # (none) -> PASS
    cursor = _alert_tick(sensor, instance, cursor, _bogota(2025, 3, 7, 13, 21))
    assert hook.posts == []

    assert _freshness_daemon(instance, graph, [BACKTEST], _bogota(2025, 3, 7, 13, 31)) == [True]  # PASS -> FAIL
    cursor = _alert_tick(sensor, instance, cursor, _bogota(2025, 3, 7, 13, 31, 30))
    assert len(hook.posts) == 1
    msg = hook.posts[0]["json"]
    assert msg["kind"] == "freshness_stale" and msg["asset_key"] == "l6/backtest_session"
    assert msg["deadline"] == "2025-03-07T13:30:00-05:00" and msg["window_start"] == "2025-03-07T13:00:00-05:00"
    assert msg["last_materialization"] == "2025-03-07T12:58:00-05:00"
    assert msg["policy"] == {
        "deadline_cron": "30 13 * * 1-5",
        "lower_bound_minutes": 30.0,
        "timezone": "America/Bogota",
    }
    assert msg["ui_url"] == "http://dagster.example:3000/assets/l6/backtest_session"
    assert "l6/backtest_session is stale" in msg["text"] and "13:00 and its 2025-03-07 13:30 deadline" in msg["text"]

    # still stale: no new state change, no new post, however many ticks
    assert _freshness_daemon(instance, graph, [BACKTEST], _bogota(2025, 3, 7, 13, 40)) == [False]
    for minute in (41, 42):
        cursor = _alert_tick(sensor, instance, cursor, _bogota(2025, 3, 7, 13, minute))
    assert len(hook.posts) == 1

    _materialize(instance, BACKTEST, "2025-03-07", _bogota(2025, 3, 7, 13, 45))
    assert _freshness_daemon(instance, graph, [BACKTEST], _bogota(2025, 3, 7, 13, 46)) == [True]  # FAIL -> PASS
    cursor = _alert_tick(sensor, instance, cursor, _bogota(2025, 3, 7, 13, 47))
    assert [p["json"]["kind"] for p in hook.posts] == ["freshness_stale", "freshness_recovered"]
    assert hook.posts[1]["json"]["last_materialization"] == "2025-03-07T13:45:00-05:00"
    assert json.loads(cursor)["stale"] == []
    assert TOKEN not in caplog.text


def test_a_holiday_fail_is_held_and_posted_only_if_still_stale_at_a_trading_deadline(hook, instance, graph):
    """Monday 2025-03-24 is San José: both bar layers go FAIL at 08:09 (the cron does not know). L1 recovers
    with Tuesday's first bar: never posted. L0 is still stale at Tuesday's first deadline: posted then, once."""
    sensor = freshness_sensor()
    for key in (L0, L1):
        _materialize(instance, key, "2025-03-21", _bogota(2025, 3, 21, 12, 56))
    cursor = _alert_tick(sensor, instance, None, _bogota(2025, 3, 21, 12, 57))
    _freshness_daemon(instance, graph, [L0, L1], _bogota(2025, 3, 21, 13, 0))  # PASS
    assert _freshness_daemon(instance, graph, [L0, L1], _bogota(2025, 3, 24, 8, 10)) == [
        True,
        True,
    ]  # FAIL on the holiday
    for now in (_bogota(2025, 3, 24, 8, 10, 30), _bogota(2025, 3, 24, 12, 0), _bogota(2025, 3, 25, 8, 8)):
        cursor = _alert_tick(sensor, instance, cursor, now)
    assert hook.posts == []
    assert json.loads(cursor)["held"] == ["l0/ohlcv_m5", "l1/ohlcv_m5"]

    _materialize(instance, L1, "2025-03-25", _bogota(2025, 3, 25, 8, 5, 30))  # Tuesday's first bar, on time
    assert _freshness_daemon(instance, graph, [L0, L1], _bogota(2025, 3, 25, 8, 6)) == [False, True]  # L1 -> PASS
    cursor = _alert_tick(
        sensor, instance, cursor, _bogota(2025, 3, 25, 8, 9, 30)
    )  # L0 still FAIL at the 08:09 deadline
    assert [(p["json"]["kind"], p["json"]["asset_key"], p["json"]["deadline"]) for p in hook.posts] == [
        ("freshness_stale", "l0/ohlcv_m5", "2025-03-25T08:09:00-05:00")
    ]
    state = json.loads(cursor)
    assert state["held"] == [] and state["stale"] == ["l0/ohlcv_m5"]
    _alert_tick(sensor, instance, cursor, _bogota(2025, 3, 25, 8, 14, 30))
    assert len(hook.posts) == 1


def test_alert_sensors_are_registered_and_running_by_default():
    names = {s.name: s for s in current_defs().sensors}
    assert names["run_failure_alert_sensor"].default_status == dg.DefaultSensorStatus.RUNNING
    assert names["freshness_alert_sensor"].default_status == dg.DefaultSensorStatus.RUNNING
    assert "freshness_checks_sensor" not in names


def test_source_retry_policy(monkeypatch):
    defs = current_defs()
    for asset in (asset_def("l0/ohlcv_m5", defs), asset_def("l0/macro_daily", defs)):
        policy = asset.op.retry_policy
        assert (
            policy.max_retries == 3
            and policy.backoff == dg.Backoff.EXPONENTIAL
            and policy.jitter == dg.Jitter.PLUS_MINUS
        )
    assert source_retry_policy(Settings.from_env({})).delay == 10
    assert source_retry_policy(Settings.from_env({RETRY_DELAY_ENV: "0.5"})).delay == 0.5
    with pytest.raises(ConfigError, match=RETRY_DELAY_ENV):
        source_retry_policy(Settings.from_env({RETRY_DELAY_ENV: "soon"}))


class _Silent:
    """A webhook that accepts connections and never answers."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        return self

    def __exit__(self, *exc):
        self.sock.close()


def test_a_webhook_that_never_answers_cannot_time_the_tick_out_or_repeat_alerts(instance, graph, monkeypatch):
    """Four layers go stale at once; the webhook hangs. Each tick posts at most MAX_ALERTS_PER_TICK within its
    budget and carries the rest in its cursor: every alert is attempted exactly once, over two ticks."""
    monkeypatch.setattr(alerts, "WEBHOOK_TIMEOUT_SECONDS", 0.3)
    monkeypatch.setattr(alerts, "ALERT_TICK_BUDGET_SECONDS", 5.0)
    attempted = []
    real_post = alerts.post_webhook
    monkeypatch.setattr(
        alerts, "post_webhook", lambda payload, **kw: attempted.append(payload["asset_key"]) or real_post(payload, **kw)
    )
    from usdcop_assets.defs.quality.freshness import SESSION_KEYS

    with _Silent() as silent:
        monkeypatch.setenv(WEBHOOK_ENV, silent.url)
        sensor = freshness_sensor()
        for key in SESSION_KEYS:
            _materialize(instance, key, "2025-03-07", _bogota(2025, 3, 7, 12, 58))
        cursor = _alert_tick(sensor, instance, None, _bogota(2025, 3, 7, 13, 0))
        _freshness_daemon(instance, graph, SESSION_KEYS, _bogota(2025, 3, 7, 13, 20))  # -> PASS
        assert _freshness_daemon(instance, graph, SESSION_KEYS, _bogota(2025, 3, 7, 13, 31)) == [True] * 4  # -> FAIL
        started = time.monotonic()
        cursor = _alert_tick(sensor, instance, cursor, _bogota(2025, 3, 7, 13, 31, 30))
        assert time.monotonic() - started < 10  # far from Dagster's 60 s sensor timeout
        assert len(attempted) == alerts.MAX_ALERTS_PER_TICK == 3
        assert len(json.loads(cursor)["pending"]) == 1
        cursor = _alert_tick(sensor, instance, cursor, _bogota(2025, 3, 7, 13, 32))
        cursor = _alert_tick(sensor, instance, cursor, _bogota(2025, 3, 7, 13, 33))
    assert sorted(attempted) == sorted(k.to_user_string() for k in SESSION_KEYS)  # each once, none repeated
    assert json.loads(cursor)["pending"] == [] and len(json.loads(cursor)["stale"]) == 4
