"""Alerts through a real loopback HTTP server: once per failed run, once per failed freshness-check
evaluation, never raising on a dead webhook, never logging the webhook URL; the source retry policy."""

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from usdcop_assets import alerts
from usdcop_assets.alerts import (
    RETRY_DELAY_ENV,
    WEBHOOK_ENV,
    WEBSERVER_ENV,
    build_freshness_alert_sensor,
    post_webhook,
    run_failure_alert_sensor,
    source_retry_policy,
)

TOKEN = "T0KEN-s3cr3t-xyz"


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


def _failing_run(instance, partition: str = "2025-03-07-10:30"):
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
    cursor = _tick(run_failure_alert_sensor, instance)  # the first tick starts from the present
    run_id = _failing_run(instance)
    cursor = _tick(run_failure_alert_sensor, instance, cursor)
    assert len(hook.posts) == 1
    msg = hook.posts[0]["json"]
    assert msg["kind"] == "run_failure" and msg["run_id"] == run_id
    assert msg["job_name"] == "__ASSET_JOB" or msg["job_name"].startswith("__")
    assert msg["partition_tags"] == {"dagster/partition": "2025-03-07-10:30"}
    assert msg["error"] == "RuntimeError: TwelveData answered 503 three times"
    assert msg["failed_steps"] == ["l0__ohlcv_m5"]
    assert msg["ui_url"] == f"http://dagster.example:3000/runs/{run_id}"
    assert "2025-03-07-10:30" in msg["text"] and "503 three times" in msg["text"]

    _tick(run_failure_alert_sensor, instance, cursor)  # nothing new
    assert len(hook.posts) == 1
    assert run_id in caplog.text  # always logged
    assert TOKEN not in caplog.text


def test_dead_webhook_is_logged_never_raised_and_the_url_never_logged(instance, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(WEBHOOK_ENV, f"http://127.0.0.1:{port}/hooks/{TOKEN}?token={TOKEN}")
    cursor = _tick(run_failure_alert_sensor, instance)
    _failing_run(instance)
    _tick(run_failure_alert_sensor, instance, cursor)  # does not raise
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
    cursor = _tick(run_failure_alert_sensor, instance)
    run_id = _failing_run(instance)
    _tick(run_failure_alert_sensor, instance, cursor)
    assert f"ALERT [usdcop] run of" in caplog.text and run_id in caplog.text
    assert post_webhook({"text": "x"}) == "no_webhook"


def test_freshness_failure_alerts_once_per_failed_evaluation(hook, instance):
    from usdcop_assets.freshness import build_freshness, check_keys
    from usdcop_assets.partitions import session_partitions

    @dg.asset(key=["l6", "backtest_session"], partitions_def=session_partitions)
    def backtest():
        return dg.MaterializeResult()

    key = dg.AssetKey(["l6", "backtest_session"])
    checks, _ = build_freshness([backtest], keys=[key])
    sensor = build_freshness_alert_sensor(check_keys(checks))

    def evaluate():
        # Nothing materialized: the check fails whatever the date.
        result = dg.materialize([backtest, *checks], selection=dg.AssetSelection.checks(*checks), instance=instance)
        (ev,) = result.get_asset_check_evaluations()
        assert not ev.passed
        return result.run_id

    evaluate()  # a failure from before the alert sensor's first tick is not replayed
    cursor = _tick(sensor, instance)
    assert hook.posts == []
    run_id = evaluate()
    cursor = _tick(sensor, instance, cursor)
    assert len(hook.posts) == 1
    msg = hook.posts[0]["json"]
    assert msg["kind"] == "freshness_check_failed" and msg["asset_key"] == "l6/backtest_session"
    assert msg["check"] == "l6/backtest_session:freshness_check" and msg["run_id"] == run_id
    assert msg["severity"] == "WARN" and "expect partition" in msg["description"]
    assert msg["deadline"].endswith("-05:00") and "T13:30:00" in msg["deadline"]
    assert msg["ui_url"] == "http://dagster.example:3000/assets/l6/backtest_session?view=checks"
    cursor = _tick(sensor, instance, cursor)
    assert len(hook.posts) == 1  # once per evaluation
    evaluate()
    evaluate()
    _tick(sensor, instance, cursor)
    assert len(hook.posts) == 3


def test_alert_sensors_are_registered_and_running_by_default():
    from usdcop_assets.definitions import defs

    names = {s.name: s for s in defs.sensors}
    assert names["run_failure_alert_sensor"].default_status == dg.DefaultSensorStatus.RUNNING
    assert names["freshness_alert_sensor"].default_status == dg.DefaultSensorStatus.RUNNING
    assert names["freshness_checks_sensor"].default_status == dg.DefaultSensorStatus.STOPPED


def test_source_retry_policy(monkeypatch):
    from usdcop_assets.assets.macro import l0_macro_daily
    from usdcop_assets.assets.raw import l0_ohlcv_m5

    for asset in (l0_ohlcv_m5, l0_macro_daily):
        policy = asset.op.retry_policy
        assert policy.max_retries == 3 and policy.backoff == dg.Backoff.EXPONENTIAL and policy.jitter == dg.Jitter.PLUS_MINUS
    assert source_retry_policy({}).delay == 10
    assert source_retry_policy({RETRY_DELAY_ENV: "0.5"}).delay == 0.5
    with pytest.raises(ValueError, match=RETRY_DELAY_ENV):
        source_retry_policy({RETRY_DELAY_ENV: "soon"})
