"""Operations: alerts on failed runs and stale layers (the source steps' retry policy is in ``defs/policies.py``).

``run_failure_alert_sensor`` (run-failure sensor, every job of this code location)
    Once per failed run (Dagster's run-status cursor): job, run id, partition or partition range tags,
    the failed steps and the first line of the step error, and a Dagster UI link when
    ``DAGSTER_WEBSERVER_URL`` is set.

``freshness_alert_sensor``
    Once per layer going stale, and once when it recovers: follows the ``FRESHNESS_STATE_CHANGE``
    events Dagster's freshness daemon writes when an asset's freshness policy (``freshness.py``)
    changes state (cursor: the last event read, and which layers are stale). A FAIL at a holiday's
    deadline is held (see ``freshness.py``). The first tick only records where the history stands.
    Every ``USDCOP_FRESHNESS_ALERT_INTERVAL_SECONDS`` (default 60).

Both log every alert (sensor tick log and the ``usdcop_assets.defs.automation.alerts`` logger) and, when
``USDCOP_ALERT_WEBHOOK_URL`` is set, POST it as JSON (``text`` is a one-line summary, so a Slack or
Teams incoming webhook shows it as is) with httpx: 5 s timeout, one retry on a transport error, a 429
or a 5xx. A webhook that fails is logged and never fails the sensor. The URL may carry a token: only
its host is ever logged (the ``httpx`` request log line is rewritten the same way).

Both default to RUNNING (without a webhook they only log) and launch no run.
Why, and the tick budget against Dagster's sensor timeout: docs/decisions/0007-freshness-and-alerts.md.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence

import dagster as dg
import httpx
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.events import DagsterEventType
from dagster._core.instance.utils import RUNLESS_RUN_ID
from dagster._time import get_current_datetime

from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import AutomationSettings, Settings

log = logging.getLogger(__name__)

WEBHOOK_ENV = "USDCOP_ALERT_WEBHOOK_URL"
FRESHNESS_ALERT_INTERVAL_ENV = "USDCOP_FRESHNESS_ALERT_INTERVAL_SECONDS"  # default 60
WEBSERVER_ENV = "DAGSTER_WEBSERVER_URL"
WEBHOOK_TIMEOUT_SECONDS = 5.0
WEBHOOK_ATTEMPTS = 2  # one retry
WEBHOOK_RETRY_PAUSE_SECONDS = 1.0
RUN_FAILURE_SENSOR_NAME = "run_failure_alert_sensor"
FRESHNESS_ALERT_SENSOR_NAME = "freshness_alert_sensor"
_STATE_CHANGE = DagsterEventType.FRESHNESS_STATE_CHANGE  # written by the freshness daemon, runless
PARTITION_TAGS = ("dagster/partition", "dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


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
    url: str | None,
    context=None,
    timeout: float | None = None,
    attempts: int = WEBHOOK_ATTEMPTS,
    pause: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    transport: httpx.BaseTransport | None = None,
) -> str:
    """POST ``payload`` to ``url`` (``USDCOP_ALERT_WEBHOOK_URL``). Never raises; returns ``sent``, ``no_webhook``,
    ``invalid_url`` or ``failed``. Only the URL's host is ever logged."""
    url = (url or "").strip()
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
            with httpx.Client(
                timeout=WEBHOOK_TIMEOUT_SECONDS if timeout is None else timeout, transport=transport
            ) as client:
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


def webhook_url(automation: AutomationSettings) -> str | None:
    """The configured webhook (a secret: never logged), or None."""
    secret = automation.alert_webhook_url
    return secret.get_secret_value().strip() or None if secret is not None else None


def deliver(payload: Mapping, *, url: str | None, context=None, **kwargs) -> str:
    """Log the alert, then post it to ``url`` if there is one."""
    _emit(context, "error", f"ALERT {payload.get('text', '')} {json.dumps(payload, sort_keys=True, default=str)}")
    return post_webhook(payload, url=url, context=context, **kwargs)


def _ui(path: str, webserver_url: str | None) -> str | None:
    base = (webserver_url or "").strip().rstrip("/")
    return f"{base}/{path.lstrip('/')}" if base else None


def _first_line(text: str | None) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


# --- run failures -------------------------------------------------------------------------------


def _error_line(error) -> str:
    """First line of the innermost user error (Dagster wraps user code errors; the cause says what broke)."""
    while (
        error is not None
        and error.cause is not None
        and ((error.cls_name or "").startswith("Dagster") or (error.message or "").startswith("dagster._core.errors"))
    ):
        error = error.cause
    if error is None:
        return ""
    return _first_line(error.message)


def run_failure_payload(
    run: dg.DagsterRun,
    failure_event: dg.DagsterEvent | None,
    step_failures: Sequence[dg.DagsterEvent],
    webserver_url: str | None = None,
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
        "ui_url": _ui(f"runs/{run.run_id}", webserver_url),
    }
    return payload


def build_run_failure_alert_sensor(settings: Settings) -> dg.SensorDefinition:
    """``run_failure_alert_sensor``, posting to the settings' webhook with links to their webserver."""
    url, webserver = webhook_url(settings.automation), settings.automation.webserver_url

    @dg.run_failure_sensor(
        name=RUN_FAILURE_SENSOR_NAME,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Logs every failed run of this code location once, and posts it to {WEBHOOK_ENV} when set.",
    )
    def run_failure_alert_sensor(context: dg.RunFailureSensorContext):
        failures = context.get_step_failure_events()
        payload = run_failure_payload(context.dagster_run, context.failure_event, failures, webserver)
        deliver(payload, url=url, context=context)

    return run_failure_alert_sensor


# --- stale layers (freshness policies) -------------------------------------------------------------

_STATE_CHANGES_PER_READ = 500


def _iso(ts: float | None) -> str | None:
    return dt.datetime.fromtimestamp(ts, tz=cal.TZ).isoformat() if ts is not None else None


def _last_materialized(instance: dg.DagsterInstance, key: dg.AssetKey) -> float | None:
    records = instance.get_asset_records([key])
    entry = records[0].asset_entry.last_materialization if records else None
    return entry.timestamp if entry is not None else None


def stale_payload(
    key: dg.AssetKey,
    policy,
    deadline: dt.datetime,
    last_materialized: float | None,
    changed_at: float,
    webserver_url: str | None = None,
) -> dict:
    asset = key.to_user_string()
    due = deadline.astimezone(cal.TZ)
    window_start = due - policy.lower_bound_delta
    last = _iso(last_materialized)
    return {
        "kind": "freshness_stale",
        "text": f"[usdcop] {asset} is stale: not materialized between {window_start:%H:%M} and its "
        f"{due:%Y-%m-%d %H:%M} "
        f"deadline (Bogota); last materialization {last or 'never'}",
        "asset_key": asset,
        "deadline": due.isoformat(),
        "window_start": window_start.isoformat(),
        "last_materialization": last,
        "changed_at": _iso(changed_at),
        "policy": {
            "deadline_cron": policy.deadline_cron,
            "lower_bound_minutes": policy.lower_bound_delta.total_seconds() / 60,
            "timezone": policy.timezone,
        },
        "ui_url": _ui(f"assets/{asset}", webserver_url),
    }


def recovered_payload(
    key: dg.AssetKey, last_materialized: float | None, changed_at: float, webserver_url: str | None = None
) -> dict:
    asset = key.to_user_string()
    return {
        "kind": "freshness_recovered",
        "text": f"[usdcop] {asset} is fresh again (materialized {_iso(last_materialized) or '?'})",
        "asset_key": asset,
        "last_materialization": _iso(last_materialized),
        "changed_at": _iso(changed_at),
        "ui_url": _ui(f"assets/{asset}", webserver_url),
    }


def _on_trading_day(instant: dt.datetime) -> bool:
    return cal.is_trading_day(instant.astimezone(cal.TZ).date())


MAX_ALERTS_PER_TICK = 3
ALERT_TICK_BUDGET_SECONDS = 30.0  # Dagster's default sensor evaluation timeout is 60 s


def build_freshness_alert_sensor(
    policies: Mapping[dg.AssetKey, dg.FreshnessPolicy],
    settings: Settings,
    name: str = FRESHNESS_ALERT_SENSOR_NAME,
    minimum_interval_seconds: int | None = None,
) -> dg.SensorDefinition:
    """A sensor posting once when an asset of ``policies`` goes stale (FAIL) and once when it recovers.

    Reads the ``FRESHNESS_STATE_CHANGE`` events the freshness daemon writes (runless events) after its
    cursor. A FAIL whose missed deadline falls on a holiday (the cron does not know the calendar) is
    held, not posted; a held asset still FAIL at a trading-day deadline is posted then.
    Cursor: ``{"after": event-log cursor, "stale": [alerted, not recovered], "held": [...], "pending": [alerts not
    delivered yet]}``: at most ``MAX_ALERTS_PER_TICK`` are posted per tick, the rest on the next ticks.
    """
    from usdcop_assets.defs.quality.freshness import latest_deadline

    watched = dict(policies)
    minimum_interval_seconds = minimum_interval_seconds or settings.automation.freshness_alert_interval_seconds
    url, webserver = webhook_url(settings.automation), settings.automation.webserver_url

    @dg.sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Logs each layer going stale (freshness policy FAIL) and recovering, once, and posts it to "
        f"{WEBHOOK_ENV} when set.",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        instance = context.instance
        if not context.cursor:  # first look: follow the changes from where the event log stands, replay nothing
            latest = instance.get_records_for_run(RUNLESS_RUN_ID, of_type=_STATE_CHANGE, limit=1, ascending=False)
            context.update_cursor(json.dumps({"after": latest.cursor, "stale": [], "held": []}))
            return dg.SkipReason("first tick: following freshness state changes from now on")
        state = json.loads(context.cursor)
        stale, held = set(state["stale"]), set(state["held"])
        payloads = list(state.get("pending", []))  # alerts found by an earlier tick and not delivered yet
        after = state["after"]
        while True:
            page = instance.get_records_for_run(
                RUNLESS_RUN_ID, cursor=after, of_type=_STATE_CHANGE, limit=_STATE_CHANGES_PER_READ
            )
            after = page.cursor
            for record in page.records:
                change = record.event_log_entry.dagster_event.asset_freshness_state_change_data
                policy = watched.get(change.key)
                if policy is None:
                    continue
                name_ = change.key.to_user_string()
                if change.new_state == FreshnessState.FAIL and name_ not in stale:
                    deadline = latest_deadline(
                        policy, dt.datetime.fromtimestamp(change.state_change_timestamp, tz=dt.UTC)
                    )
                    if _on_trading_day(deadline):
                        payloads.append(
                            stale_payload(
                                change.key,
                                policy,
                                deadline,
                                _last_materialized(instance, change.key),
                                change.state_change_timestamp,
                                webserver,
                            )
                        )
                        stale.add(name_)
                    else:
                        held.add(name_)
                        _emit(context, "info", f"{name_} FAIL at a {deadline.date()} deadline: a holiday, not alerted")
                elif change.new_state != FreshnessState.FAIL:
                    if name_ in stale and change.new_state == FreshnessState.PASS:
                        payloads.append(
                            recovered_payload(
                                change.key,
                                _last_materialized(instance, change.key),
                                change.state_change_timestamp,
                                webserver,
                            )
                        )
                    stale.discard(name_)
                    held.discard(name_)
            if not page.has_more:
                break
        if held:  # still FAIL once a trading-day deadline has passed: no state change will say so, post it now
            now = get_current_datetime()  # dagster's clock, as the freshness evaluator's
            keys = [dg.AssetKey.from_user_string(n) for n in sorted(held)]
            current = instance.get_freshness_state_records(keys)
            for key in keys:
                deadline = latest_deadline(watched[key], now)
                record = current.get(key)
                if record is None or record.freshness_state != FreshnessState.FAIL:
                    held.discard(key.to_user_string())
                elif _on_trading_day(deadline):
                    payloads.append(
                        stale_payload(
                            key, watched[key], deadline, _last_materialized(instance, key), now.timestamp(), webserver
                        )
                    )
                    held.discard(key.to_user_string())
                    stale.add(key.to_user_string())
        # A webhook that never answers costs ~11 s an alert (5 s timeout, one retry): deliver at most
        # MAX_ALERTS_PER_TICK within the tick's budget and carry the rest in the cursor, so the tick ends
        # (and saves its cursor) well before Dagster's sensor timeout and no alert is posted twice.
        started, sent = time.monotonic(), 0
        while payloads and sent < MAX_ALERTS_PER_TICK and time.monotonic() - started < ALERT_TICK_BUDGET_SECONDS:
            deliver(payloads.pop(0), url=url, context=context)
            sent += 1
        context.update_cursor(
            json.dumps({"after": after, "stale": sorted(stale), "held": sorted(held), "pending": payloads})
        )
        if not sent:
            return dg.SkipReason(f"no layer went stale or recovered (stale now: {', '.join(sorted(stale)) or 'none'})")
        waiting = f"; {len(payloads)} more next tick" if payloads else ""
        return dg.SkipReason(
            f"alerted {sent} freshness change(s){waiting} (stale now: {', '.join(sorted(stale)) or 'none'})"
        )

    return _sensor


def build_alert_sensors(
    freshness_policies: Mapping[dg.AssetKey, dg.FreshnessPolicy], settings: Settings
) -> list[dg.SensorDefinition]:
    return [build_run_failure_alert_sensor(settings), build_freshness_alert_sensor(freshness_policies, settings)]
