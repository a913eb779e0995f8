"""Operations: retries of the source-facing steps, and alerts on failed runs and failed freshness checks.

``SOURCE_RETRY_POLICY``
    ``l0/ohlcv_m5`` and ``l0/macro_daily`` talk to vendors: a failed step is retried 3 times with an
    exponential back-off and +/- jitter from ``USDCOP_RETRY_DELAY_SECONDS`` (default 10 s: ~10, 20,
    40 s), read when the definitions load; ``0`` retries at once (tests, demos).

``run_failure_alert_sensor`` (run-failure sensor, every job of this code location)
    Once per failed run (Dagster's run-status cursor): job, run id, partition or partition range tags,
    the failed steps and the first line of the step error, and a Dagster UI link when
    ``DAGSTER_WEBSERVER_URL`` is set.

``freshness_alert_sensor``
    Once per *failed evaluation* of a freshness check (``freshness.py``): reads the instance's check
    execution records newer than its cursor (the last record id seen per check). The first tick only
    records where the history stands; earlier failures are not replayed.

Both log every alert (sensor tick log and the ``usdcop_assets.alerts`` logger) and, when
``USDCOP_ALERT_WEBHOOK_URL`` is set, POST it as JSON (``text`` is a one-line summary, so a Slack or
Teams incoming webhook shows it as is) with httpx: 5 s timeout, one retry on a transport error, a 429
or a 5xx. A webhook that fails is logged and never fails the sensor. The URL may carry a token: only
its host is ever logged (the ``httpx`` request log line is rewritten the same way).

Both default to RUNNING: without a webhook they only log, and cost one indexed query of the
instance per tick; an alert that has to be remembered to be switched on is the one that is missing on
the day it is needed. They launch no run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence

import dagster as dg
import httpx
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from usdcop_assets import market_calendar as cal

log = logging.getLogger(__name__)

WEBHOOK_ENV = "USDCOP_ALERT_WEBHOOK_URL"
WEBSERVER_ENV = "DAGSTER_WEBSERVER_URL"
RETRY_DELAY_ENV = "USDCOP_RETRY_DELAY_SECONDS"
DEFAULT_RETRY_DELAY_SECONDS = 10.0
WEBHOOK_TIMEOUT_SECONDS = 5.0
WEBHOOK_ATTEMPTS = 2  # one retry
WEBHOOK_RETRY_PAUSE_SECONDS = 1.0
RUN_FAILURE_SENSOR_NAME = "run_failure_alert_sensor"
FRESHNESS_ALERT_SENSOR_NAME = "freshness_alert_sensor"
PARTITION_TAGS = ("dagster/partition", "dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


# --- retries ------------------------------------------------------------------------------------


def retry_delay_seconds(env: Mapping[str, str] = os.environ) -> float:
    raw = (env.get(RETRY_DELAY_ENV) or "").strip()
    if not raw:
        return DEFAULT_RETRY_DELAY_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{RETRY_DELAY_ENV}={raw!r} is not a number of seconds") from None
    if not 0 <= value <= 3600:
        raise ValueError(f"{RETRY_DELAY_ENV}={raw!r} must be between 0 and 3600 seconds")
    return value


def source_retry_policy(env: Mapping[str, str] = os.environ) -> dg.RetryPolicy:
    """3 retries, exponential back-off from ``USDCOP_RETRY_DELAY_SECONDS`` with +/- jitter."""
    return dg.RetryPolicy(
        max_retries=3, delay=retry_delay_seconds(env), backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
    )


SOURCE_RETRY_POLICY = source_retry_policy()


# --- webhook ------------------------------------------------------------------------------------


class _WebhookUrlFilter(logging.Filter):
    """Rewrites the webhook URL (which may hold a token) to its host in ``httpx``/``httpcore`` records."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[str, str] = {}  # url text -> replacement

    def _scrub(self, value):
        text = str(value) if isinstance(value, (str, httpx.URL)) else None
        if text is None:
            return value
        for secret, replacement in self.secrets.items():
            if secret in text:
                text = text.replace(secret, replacement)
                value = text
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            if record.args:
                args = record.args if isinstance(record.args, tuple) else (record.args,)
                record.args = tuple(self._scrub(a) for a in args)
            if isinstance(record.msg, str):
                record.msg = self._scrub(record.msg)
        except Exception:  # never let scrubbing break logging
            pass
        return True


_URL_FILTER = _WebhookUrlFilter()


def _guard_url(url: str, host: str) -> None:
    parsed = httpx.URL(url)
    for variant in {url, str(parsed)}:
        _URL_FILTER.secrets[variant] = f"<{WEBHOOK_ENV} host {host}>"
    # Other filters (the vendor clients mask their own query keys) may have rewritten the URL text
    # before this one runs, so the path and query values, where tokens live, are scrubbed on their own too.
    path = parsed.raw_path.decode("ascii", "replace").split("?", 1)[0]
    if path not in ("", "/"):
        _URL_FILTER.secrets[path] = "/<redacted>"
    for _, value in parsed.params.multi_items():
        if value:
            _URL_FILTER.secrets[value] = "<redacted>"
    for name in ("httpx", "httpcore"):
        lg = logging.getLogger(name)
        if _URL_FILTER not in lg.filters:
            lg.addFilter(_URL_FILTER)


def _emit(context, level: str, message: str) -> None:
    """Log to the module logger and, when there is one, to the sensor's tick log."""
    getattr(log, level)(message)
    ctx_log = getattr(context, "log", None) if context is not None else None
    if ctx_log is not None:
        try:
            getattr(ctx_log, level)(message)
        except Exception:  # a tick log that cannot be written must not stop the alert
            pass


def post_webhook(
    payload: Mapping,
    *,
    context=None,
    env: Mapping[str, str] = os.environ,
    timeout: float = WEBHOOK_TIMEOUT_SECONDS,
    attempts: int = WEBHOOK_ATTEMPTS,
    pause: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    transport: httpx.BaseTransport | None = None,
) -> str:
    """POST ``payload`` to ``USDCOP_ALERT_WEBHOOK_URL``. Never raises; returns ``sent``, ``no_webhook``,
    ``invalid_url`` or ``failed``. Only the URL's host is ever logged."""
    url = (env.get(WEBHOOK_ENV) or "").strip()
    if not url:
        return "no_webhook"
    try:
        parsed = httpx.URL(url)
        host = parsed.host
        if parsed.scheme not in ("http", "https") or not host:
            raise ValueError
    except Exception:
        _emit(context, "error", f"{WEBHOOK_ENV} is not an http(s) URL; alert not sent")
        return "invalid_url"
    _guard_url(url, host)
    problem = ""
    for attempt in range(attempts):
        if attempt:
            sleep(WEBHOOK_RETRY_PAUSE_SECONDS if pause is None else pause)
        try:
            with httpx.Client(timeout=timeout, transport=transport) as client:
                response = client.post(url, json=payload)
        except Exception as exc:  # transport error, timeout, anything: retry once, then give up
            detail = str(exc).replace(url, "<url>").replace(str(parsed), "<url>")
            problem = f"{type(exc).__name__}: {detail}"
            continue
        if response.status_code < 300:
            return "sent"
        problem = f"HTTP {response.status_code}"
        if response.status_code != 429 and response.status_code < 500:
            break  # a 4xx will not fix itself
    _emit(context, "warning", f"alert webhook at host {host} failed after {attempt + 1} attempt(s): {problem}")
    return "failed"


def deliver(payload: Mapping, context=None, env: Mapping[str, str] = os.environ, **kwargs) -> str:
    """Log the alert, then post it if a webhook is configured."""
    _emit(context, "error", f"ALERT {payload.get('text', '')} {json.dumps(payload, sort_keys=True, default=str)}")
    return post_webhook(payload, context=context, env=env, **kwargs)


def _ui(path: str, env: Mapping[str, str] = os.environ) -> str | None:
    base = (env.get(WEBSERVER_ENV) or "").strip().rstrip("/")
    return f"{base}/{path.lstrip('/')}" if base else None


def _first_line(text: str | None) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


# --- run failures -------------------------------------------------------------------------------


def _error_line(error) -> str:
    """First line of the innermost user error (Dagster wraps user code errors; the cause says what broke)."""
    while error is not None and error.cause is not None and (
        (error.cls_name or "").startswith("Dagster") or (error.message or "").startswith("dagster._core.errors")
    ):
        error = error.cause
    if error is None:
        return ""
    return _first_line(error.message)


def run_failure_payload(
    run: dg.DagsterRun, failure_event: dg.DagsterEvent | None, step_failures: Sequence[dg.DagsterEvent], env: Mapping[str, str] = os.environ
) -> dict:
    partitions = {tag: run.tags[tag] for tag in PARTITION_TAGS if tag in run.tags}
    steps = [e.step_key for e in step_failures if e.step_key]
    error = ""
    for event in step_failures:
        error = _error_line(getattr(event.step_failure_data, "error", None))
        if error:
            break
    if not error and failure_event is not None:
        data = failure_event.event_specific_data
        error = _error_line(getattr(data, "error", None)) or _first_line(failure_event.message)
    where = ""
    if "dagster/partition" in partitions:
        where = f" partition {partitions['dagster/partition']}"
    elif partitions:
        where = f" partitions {partitions.get(PARTITION_TAGS[1], '?')}..{partitions.get(PARTITION_TAGS[2], '?')}"
    text = f"[usdcop] run of {run.job_name}{where} failed ({run.run_id[:8]}): {error or 'no error message'}"
    payload = {
        "kind": "run_failure",
        "text": text,
        "job_name": run.job_name,
        "run_id": run.run_id,
        "partition_tags": partitions,
        "failed_steps": steps,
        "error": error,
        "ui_url": _ui(f"runs/{run.run_id}", env),
    }
    return payload


@dg.run_failure_sensor(
    name=RUN_FAILURE_SENSOR_NAME,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"Logs every failed run of this code location once, and posts it to {WEBHOOK_ENV} when set.",
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext):
    payload = run_failure_payload(context.dagster_run, context.failure_event, context.get_step_failure_events())
    deliver(payload, context=context)


# --- failed freshness checks --------------------------------------------------------------------

_HISTORY_LIMIT = 25
_PLANNED = AssetCheckExecutionRecordStatus.PLANNED
_FAILED = AssetCheckExecutionRecordStatus.FAILED


def freshness_failure_payload(record, env: Mapping[str, str] = os.environ) -> dict:
    evaluation = record.event.asset_check_evaluation if record.event is not None else None
    key = record.key
    asset = key.asset_key.to_user_string()
    description = (evaluation.description if evaluation else None) or "freshness check failed"
    deadline = None
    if evaluation is not None and "dagster/latest_cron_tick_timestamp" in evaluation.metadata:
        ts = evaluation.metadata["dagster/latest_cron_tick_timestamp"].value
        deadline = dt.datetime.fromtimestamp(ts, tz=cal.TZ).isoformat()
    severity = evaluation.severity.value if evaluation is not None else None
    return {
        "kind": "freshness_check_failed",
        "text": f"[usdcop] {asset} is not fresh: {_first_line(description)}",
        "asset_key": asset,
        "check": key.to_user_string(),
        "severity": severity,
        "description": description,
        "deadline": deadline,
        "run_id": record.run_id,
        "evaluated_at": dt.datetime.fromtimestamp(record.create_timestamp, tz=dt.timezone.utc).isoformat(),
        "ui_url": _ui(f"assets/{asset}?view=checks", env),
    }


def build_freshness_alert_sensor(
    check_keys: Sequence[dg.AssetCheckKey], name: str = FRESHNESS_ALERT_SENSOR_NAME, minimum_interval_seconds: int = 60
) -> dg.SensorDefinition:
    """A sensor alerting once per failed evaluation of ``check_keys`` (cursor: last record id per check)."""
    keys = sorted(set(check_keys), key=lambda k: k.to_user_string())

    @dg.sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Logs every failed freshness-check evaluation once, and posts it to {WEBHOOK_ENV} when set.",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        seen: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
        storage = context.instance.event_log_storage
        alerts = []
        for key in keys:
            name_ = key.to_user_string()
            records = sorted(storage.get_asset_check_execution_history(key, limit=_HISTORY_LIMIT), key=lambda r: r.id)
            completed = [r for r in records if r.status != _PLANNED]
            if name_ not in seen:  # first look at this check: start from where its history stands
                seen[name_] = completed[-1].id if completed else 0
                continue
            # A still-PLANNED record newer than every completed one is picked up when it completes; an
            # older one (its run died) is passed over.
            for record in completed:
                if record.id > seen[name_]:
                    if record.status == _FAILED:
                        alerts.append(record)
                    seen[name_] = record.id
        for record in sorted(alerts, key=lambda r: r.id):
            deliver(freshness_failure_payload(record), context=context)
        context.update_cursor(json.dumps(seen, sort_keys=True))
        if not alerts:
            return dg.SkipReason("no new failed freshness-check evaluation")
        return dg.SkipReason(f"alerted {len(alerts)} failed freshness-check evaluation(s)")

    return _sensor


def build_alert_sensors(freshness_check_keys: Sequence[dg.AssetCheckKey]) -> list[dg.SensorDefinition]:
    return [run_failure_alert_sensor, build_freshness_alert_sensor(freshness_check_keys)]
