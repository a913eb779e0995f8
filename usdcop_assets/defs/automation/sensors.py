"""Sensors that launch the ``session_chain`` job: the realtime bar, and filling sessions nobody completed.

``realtime_bar_sensor`` (every ``USDCOP_REALTIME_POLL_SECONDS``)
    Targets the last *closed* bar (``cal.last_closed_bar(now)``). The cursor is the key of the last bar
    requested; a tick whose last closed bar is not newer skips (outside sessions, weekends and
    holidays the last closed bar is the previous session's 12:55, already requested). For the
    ``twelvedata`` source the tick first asks the vendor for just that bar's window: not there yet →
    skip *without* advancing the cursor, so the next tick asks again. Once it is there, one run of the
    bar's *session* partition (``run_key`` = the bar key): L0 fetches the session's closed bars, and the
    layers above recompute the session (earlier bars' rows do not change; the new bar's are added).

``gap_fill_sensor`` (every 5 min)
    Over the last ``USDCOP_GAP_FILL_SESSIONS`` sessions (default 5), the sessions whose ``l0/ohlcv_m5``
    was never materialized, or whose latest materialization ends before the last bar closed
    ``USDCOP_GAP_FILL_GRACE_MINUTES`` ago (default 10: room for the realtime sensor and a late vendor),
    and that no queued or running ``session_chain`` run covers. One run per session, ``run_key`` derived
    from the session and the bar it must reach, so a failed run is not retried until a newer bar is due.

Both are STOPPED by default (``USDCOP_REALTIME=on`` starts the realtime one); the current instant comes from
:func:`utc_now` (tests monkeypatch it). ``build_sensors(settings)`` builds both for the code location.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pandas as pd

from usdcop_assets.clock import CLOCK_ENV, PlatformClock, replay_clock  # noqa: F401 (re-exported)
from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import Settings
from usdcop_assets.defs.automation.jobs import SESSION_JOB
from usdcop_assets.defs.resources import BarSourceResource
from usdcop_assets.sources import fetch_bars

L0_KEY = dg.AssetKey(["l0", "ohlcv_m5"])
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PARTITION_TAG = "dagster/partition"
TRIGGER_TAG = "usdcop/trigger"


def utc_now(clock: PlatformClock | None = None) -> pd.Timestamp:
    """The current instant (UTC), or the replay clock's (``USDCOP_REPLAY_CLOCK``): ``clock``'s, resolved once from the
    settings the sensor was built with (None: the environment's, read now); tests monkeypatch this."""
    from usdcop_assets import clock as platform_clock

    return platform_clock.utc_now(clock=clock)


# --- realtime -----------------------------------------------------------------------------------


class _WouldWait(Exception):
    """The vendor client wanted to sleep (rate limit or retry back-off): leave it to the next tick."""


def _no_sleep(seconds: float) -> None:
    raise _WouldWait(seconds)


def bar_published(source: str, bar: pd.Timestamp) -> bool:
    """Whether ``source`` already serves the bar opening at ``bar`` (synthetic: always)."""
    if source.split(":", 1)[0] == "synthetic":
        return True
    frame = fetch_bars(
        source, bar, bar + pd.Timedelta(minutes=cal.BAR_MINUTES), timeout=10.0, max_attempts=2, sleep=_no_sleep
    )
    return bool((frame["time"] == bar).any())


def realtime_default_status(settings: Settings) -> dg.DefaultSensorStatus:
    """``USDCOP_REALTIME=on`` starts the realtime sensors with the daemon (a live deployment); stopped otherwise."""
    on = settings.automation.realtime == "on"
    return dg.DefaultSensorStatus.RUNNING if on else dg.DefaultSensorStatus.STOPPED


def build_realtime_bar_sensor(settings: Settings) -> dg.SensorDefinition:
    """``realtime_bar_sensor``: its poll interval, default status and run mode (``USDCOP_REALTIME_RUN``: ``chain``,
    the session's L0..L6 in one run, or ``l0``, the session's L0 with declarative automation requesting L1..L6)
    from ``settings``."""
    mode = settings.automation.realtime_run
    clock = PlatformClock.from_settings(settings)  # resolved once, not per tick

    @dg.sensor(
        name="realtime_bar_sensor",
        job_name=SESSION_JOB,
        # Between bars a tick asks nothing; once a bar has closed it asks the vendor until the bar is there,
        # so a short interval costs requests only during the vendor's publication delay.
        minimum_interval_seconds=settings.automation.realtime_poll_seconds,
        default_status=realtime_default_status(settings),
        description="Runs today's session partition (L0..L6) for each newly closed 5-minute bar, once the source "
        "publishes it.",
    )
    def realtime_bar_sensor(context: dg.SensorEvaluationContext, bar_source: BarSourceResource):
        now = utc_now(clock)
        bar = cal.last_closed_bar(now)
        if bar is None:
            return dg.SkipReason(f"no closed bar in the two weeks before {now.isoformat()}")
        key = cal.bar_key(bar)
        cursor = context.cursor or None
        if cursor is not None and key <= cursor:  # keys sort chronologically
            return dg.SkipReason(
                f"no new closed bar: the last closed bar {key} was already requested (cursor {cursor})"
            )
        source = bar_source.name()
        try:
            published = bar_published(source, bar)
        except _WouldWait:
            return dg.SkipReason(
                f"source={source}: rate-limited or retrying while asking for bar {key}; next tick retries"
            )
        if not published:
            return dg.SkipReason(f"source={source}: bar {key} not published yet; next tick retries")
        context.log.info(f"source={source}: requesting bar {key} ({mode})")
        selection = [L0_KEY] if mode == "l0" else None  # l0: the automation sensor carries L1..L6
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=key,
                    partition_key=cal.session_key(bar.tz_convert(cal.TZ).date()),
                    asset_selection=selection,
                    tags={TRIGGER_TAG: "realtime", "usdcop/bar": key},
                )
            ],
            cursor=key,
        )

    return realtime_bar_sensor


# --- gap fill -----------------------------------------------------------------------------------


def recent_sessions(
    now, sessions: int, grace_minutes: int = 0, history_start: dt.date = dt.date.min
) -> list[tuple[str, pd.Timestamp]]:
    """(session key, last bar due) of the last ``sessions`` sessions up to the bar closed ``grace_minutes`` before
    ``now``, none before ``history_start``."""
    last = cal.last_closed_bar(pd.Timestamp(now) - pd.Timedelta(minutes=grace_minutes))
    if last is None:
        return []
    days = [last.tz_convert(cal.TZ).date()]
    while len(days) < sessions:
        days.insert(0, cal.previous_trading_day(days[0]))
    out = []
    for day in days:
        if day >= history_start:
            bars = cal.session_bars(day)
            out.append((cal.session_key(day), min(bars[-1], last)))
    return out


def _in_flight_sessions(instance: dg.DagsterInstance) -> list[tuple[str, str]]:
    """Session-key ranges of session_chain runs that are queued or running (their rows are on their way)."""
    statuses = [
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
        dg.DagsterRunStatus.CANCELING,
    ]
    out = []
    for run in instance.get_runs(filters=dg.RunsFilter(job_name=SESSION_JOB, statuses=statuses), limit=200):
        tags = run.tags
        if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
            out.append((tags[RANGE_START_TAG], tags[RANGE_END_TAG]))
        elif PARTITION_TAG in tags:
            out.append((tags[PARTITION_TAG], tags[PARTITION_TAG]))
    return out


def _last_bar_stored(instance: dg.DagsterInstance, session: str) -> pd.Timestamp | None:
    """The ``last_bar`` metadata of the session's latest ``l0/ohlcv_m5`` materialization (None: never materialized)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=L0_KEY, asset_partitions=[session]), limit=1
    ).records
    if not records:
        return None
    mat = records[0].asset_materialization
    value = mat.metadata.get("last_bar") if mat else None
    text = getattr(value, "value", None) or getattr(value, "text", None)
    if not text:
        return pd.Timestamp.min.tz_localize("UTC")  # materialized with no bar: every due bar is still missing
    return pd.Timestamp(text).tz_localize(cal.TZ).tz_convert("UTC")


def build_gap_fill_sensor(settings: Settings) -> dg.SensorDefinition:
    """``gap_fill_sensor`` over the last ``USDCOP_GAP_FILL_SESSIONS`` sessions, with ``USDCOP_GAP_FILL_GRACE_MINUTES``
    of grace, from ``settings``."""
    sessions = settings.automation.gap_fill_sessions
    grace = settings.automation.gap_fill_grace_minutes
    start = settings.history.start
    clock = PlatformClock.from_settings(settings)  # resolved once, not per tick

    @dg.sensor(
        name="gap_fill_sensor",
        job_name=SESSION_JOB,
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Runs recent sessions whose L0 was never materialized or stops short of the bars due, one run per "
        "session.",
    )
    def gap_fill_sensor(context: dg.SensorEvaluationContext):
        recent = recent_sessions(utc_now(clock), sessions, grace, start)
        if not recent:
            return dg.SkipReason("no closed bar in the sessions looked at")
        in_flight = _in_flight_sessions(context.instance)
        requests = []
        for key, due in recent:
            if any(a <= key <= b for a, b in in_flight):
                continue
            stored = _last_bar_stored(context.instance, key)
            if stored is not None and stored >= due:
                continue
            requests.append(
                dg.RunRequest(
                    run_key=f"gap-fill:{key}:{cal.bar_key(due)}", partition_key=key, tags={TRIGGER_TAG: "gap_fill"}
                )
            )
        if not requests:
            return dg.SkipReason(f"the last {len(recent)} session(s) are complete up to the bars due, or on their way")
        context.log.info(
            f"{len(requests)} session(s) short of their due bars: " + ", ".join(r.partition_key for r in requests)
        )
        return requests

    return gap_fill_sensor


def build_sensors(settings: Settings) -> list[dg.SensorDefinition]:
    """The realtime and gap-fill sensors of a code location."""
    return [build_realtime_bar_sensor(settings), build_gap_fill_sensor(settings)]
