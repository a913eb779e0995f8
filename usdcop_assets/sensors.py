"""Sensors that launch the ``m5_chain`` job: the realtime bar, and filling bars nobody materialized.

``realtime_bar_sensor`` (every 30 s)
    Targets the last *closed* bar (``cal.last_closed_bar(now)``). The cursor is the key of the last bar
    requested; a tick whose last closed bar is not newer skips (outside sessions, weekends and
    holidays the last closed bar is the previous session's 12:55, already requested). For the
    ``twelvedata`` source the tick first asks the vendor for just that bar's window: not there yet →
    skip *without* advancing the cursor, so the next tick asks again. A bar the vendor never
    publishes does not block the sensor: once a newer bar closes, that one becomes the target, and
    the skipped bar is left to ``gap_fill_sensor``. One run per bar, ``run_key`` = the bar key.

``gap_fill_sensor`` (every 5 min)
    Over the last ``USDCOP_GAP_FILL_SESSIONS`` sessions (default 5), the bars up to the last bar
    closed ``USDCOP_GAP_FILL_GRACE_MINUTES`` ago (default 10: room for the realtime sensor and a late
    vendor) that have no ``l0/ohlcv_m5`` materialization and are not covered by a queued or running
    ``m5_chain`` run. The instance is asked only about those few hundred partition keys, never about
    the whole ~100k-key definition. One run per contiguous missing range (range tags), ``run_key``
    derived from the range. Because ``run_key`` deduplicates, a range whose run *failed* is not
    requested again by this sensor while it has the same bounds (launch it from the UI, or it is
    retried once the hole changes shape).

Both are STOPPED by default; the current instant comes from :func:`utc_now` (tests monkeypatch it).
Register ``SENSORS`` in the code location.
"""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg
import pandas as pd

from usdcop_assets import market_calendar as cal
from usdcop_assets.jobs import M5_CHAIN_JOB
from usdcop_assets.partitions import history_start
from usdcop_assets.settings import env_int
from usdcop_assets.sources import fetch_bars, require_available, resolve_source

L0_KEY = dg.AssetKey(["l0", "ohlcv_m5"])
GAP_FILL_SESSIONS_ENV = "USDCOP_GAP_FILL_SESSIONS"
GAP_FILL_GRACE_ENV = "USDCOP_GAP_FILL_GRACE_MINUTES"
DEFAULT_GAP_FILL_SESSIONS = 5
DEFAULT_GAP_FILL_GRACE_MINUTES = 10
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PARTITION_TAG = "dagster/partition"
TRIGGER_TAG = "usdcop/trigger"
REALTIME_RUN_ENV = "USDCOP_REALTIME_RUN"
CLOCK_ENV = "USDCOP_REPLAY_CLOCK"
REALTIME_ENV = "USDCOP_REALTIME"
POLL_ENV = "USDCOP_REALTIME_POLL_SECONDS"


def utc_now() -> pd.Timestamp:
    """The current instant (UTC), or the replay clock's (``USDCOP_REPLAY_CLOCK``); tests monkeypatch this."""
    now = pd.Timestamp(dt.datetime.now(dt.timezone.utc))
    spec = os.environ.get(CLOCK_ENV)
    return replay_clock(spec, now) if spec else now


def replay_clock(spec: str, now: pd.Timestamp) -> pd.Timestamp:
    """A time-shifted, optionally accelerated clock for replays and demos: ``<start ISO>@<real epoch s>x<speed>``.

    At real instant ``epoch`` the clock reads ``start``; it then runs ``speed`` times faster. E.g.
    ``2025-03-04T17:00:00Z@1763650000x30`` replays a session at 30x (a bar every 10 s). The sensors walk
    the bars of that clock; Dagster itself keeps real time (the automation looks 7 days back, automation.py).
    """
    try:
        start, rest = spec.split("@", 1)
        epoch, _, speed = rest.partition("x")
        base = pd.Timestamp(start)
        base = base.tz_localize("UTC") if base.tz is None else base.tz_convert("UTC")
        elapsed = now.timestamp() - float(epoch)
        return base + pd.Timedelta(seconds=elapsed * float(speed or 1))
    except ValueError:
        raise ValueError(f"{CLOCK_ENV}={spec!r}: expected <start ISO>@<real epoch seconds>x<speed>") from None


# --- realtime -----------------------------------------------------------------------------------


class _WouldWait(Exception):
    """The vendor client wanted to sleep (rate limit or retry back-off): leave it to the next tick."""


def _no_sleep(seconds: float) -> None:
    raise _WouldWait(seconds)


def bar_published(source: str, bar: pd.Timestamp) -> bool:
    """Whether ``source`` already serves the bar opening at ``bar`` (synthetic: always)."""
    if source.split(":", 1)[0] == "synthetic":
        return True
    frame = fetch_bars(source, bar, bar + pd.Timedelta(minutes=cal.BAR_MINUTES), timeout=10.0, max_attempts=2, sleep=_no_sleep)
    return bool((frame["time"] == bar).any())


def realtime_default_status(env=os.environ) -> dg.DefaultSensorStatus:
    """``USDCOP_REALTIME=on`` starts the realtime sensors with the daemon (a live deployment); stopped otherwise."""
    value = (env.get(REALTIME_ENV) or "off").strip().lower()
    if value not in ("on", "off"):
        raise ValueError(f"{REALTIME_ENV}={value!r}: 'on' or 'off'")
    return dg.DefaultSensorStatus.RUNNING if value == "on" else dg.DefaultSensorStatus.STOPPED


@dg.sensor(
    name="realtime_bar_sensor",
    job_name=M5_CHAIN_JOB,
    # Between bars a tick asks nothing; once a bar has closed it asks the vendor until the bar is there,
    # so a short interval costs requests only during the vendor's publication delay.
    minimum_interval_seconds=env_int(POLL_ENV, 15, minimum=1),
    default_status=realtime_default_status(),
    description="Launches m5_chain for each newly closed 5-minute bar (once the source publishes it).",
)
def realtime_bar_sensor(context: dg.SensorEvaluationContext):
    now = utc_now()
    bar = cal.last_closed_bar(now)
    if bar is None:
        return dg.SkipReason(f"no closed bar in the two weeks before {now.isoformat()}")
    key = cal.bar_key(bar)
    cursor = context.cursor or None
    if cursor is not None and key <= cursor:  # keys sort chronologically
        return dg.SkipReason(f"no new closed bar: the last closed bar {key} was already requested (cursor {cursor})")
    source = require_available(resolve_source())
    try:
        published = bar_published(source, bar)
    except _WouldWait:
        return dg.SkipReason(f"source={source}: rate-limited or retrying while asking for bar {key}; next tick retries")
    if not published:
        return dg.SkipReason(f"source={source}: bar {key} not published yet; next tick retries")
    mode = realtime_run_mode()
    context.log.info(f"source={source}: requesting bar {key} ({mode})")
    selection = [L0_KEY] if mode == "l0" else None  # l0: the automation sensor carries L1..L5
    return dg.SensorResult(
        # no checks in the bar's run: freshness checks are the freshness sensor's business (and cost seconds)
        run_requests=[dg.RunRequest(run_key=key, partition_key=key, asset_selection=selection, asset_check_selection=[],
                                    tags={TRIGGER_TAG: "realtime"})],
        cursor=key,
    )


def realtime_run_mode(env=os.environ) -> str:
    """``USDCOP_REALTIME_RUN``: ``chain`` (default: L0..L5 of the bar in one run) or ``l0`` (the bar's L0; declarative
    automation then requests L1..L5: the design's shape, but each automation tick costs ~30 s of CPU here, see
    automation.py)."""
    mode = (env.get(REALTIME_RUN_ENV) or "chain").strip().lower()
    if mode not in ("l0", "chain"):
        raise ValueError(f"{REALTIME_RUN_ENV}={mode!r}: 'l0' (L0 then declarative automation) or 'chain' (L0..L5 in one run)")
    return mode


# --- gap fill -----------------------------------------------------------------------------------


def recent_bar_keys(now, sessions: int, grace_minutes: int = 0) -> list[str]:
    """Keys of the bars of the last ``sessions`` sessions up to the last bar closed ``grace_minutes`` before ``now``."""
    last = cal.last_closed_bar(pd.Timestamp(now) - pd.Timedelta(minutes=grace_minutes))
    if last is None:
        return []
    days = [last.tz_convert(cal.TZ).date()]
    while len(days) < sessions:
        days.insert(0, cal.previous_trading_day(days[0]))
    start = history_start()
    days = [d for d in days if d >= start]
    bars = cal.bars_of_days(days)
    return [cal.bar_key(t) for t in bars[bars <= last]]


def contiguous_ranges(keys: list[str], missing: set[str]) -> list[tuple[str, str]]:
    """Runs of consecutive entries of ``keys`` (in order) that are all in ``missing``, as (first, last)."""
    ranges: list[tuple[str, str]] = []
    first = prev = None
    for k in keys:
        if k in missing:
            if first is None:
                first = k
            prev = k
        elif first is not None:
            ranges.append((first, prev))
            first = None
    if first is not None:
        ranges.append((first, prev))
    return ranges


def _in_flight_ranges(instance: dg.DagsterInstance) -> list[tuple[str, str]]:
    """Bar-key ranges of m5_chain runs that are queued or running (their bars are on their way)."""
    statuses = [
        dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING,
    ]
    out = []
    for run in instance.get_runs(filters=dg.RunsFilter(job_name=M5_CHAIN_JOB, statuses=statuses), limit=200):
        tags = run.tags
        if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
            out.append((tags[RANGE_START_TAG], tags[RANGE_END_TAG]))
        elif PARTITION_TAG in tags:
            out.append((tags[PARTITION_TAG], tags[PARTITION_TAG]))
    return out


@dg.sensor(
    name="gap_fill_sensor",
    job_name=M5_CHAIN_JOB,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Launches m5_chain over recent bars that were never materialized, one run per contiguous hole.",
)
def gap_fill_sensor(context: dg.SensorEvaluationContext):
    sessions = env_int(GAP_FILL_SESSIONS_ENV, DEFAULT_GAP_FILL_SESSIONS, 1)
    grace = env_int(GAP_FILL_GRACE_ENV, DEFAULT_GAP_FILL_GRACE_MINUTES, 0)
    keys = recent_bar_keys(utc_now(), sessions, grace)
    if not keys:
        return dg.SkipReason("no closed bar in the sessions looked at")
    done = context.instance.get_latest_storage_id_by_partition(
        L0_KEY, dg.DagsterEventType.ASSET_MATERIALIZATION, partitions=set(keys)
    )
    in_flight = _in_flight_ranges(context.instance)
    missing = {k for k in keys if k not in done and not any(a <= k <= b for a, b in in_flight)}
    if not missing:
        return dg.SkipReason(f"all {len(keys)} bars of the last {sessions} session(s) are materialized or on their way")
    requests = [
        dg.RunRequest(
            run_key=f"gap-fill:{first}..{last}",
            tags={RANGE_START_TAG: first, RANGE_END_TAG: last, TRIGGER_TAG: "gap_fill"},
        )
        for first, last in contiguous_ranges(keys, missing)
    ]
    context.log.info(f"{len(missing)} unmaterialized bar(s) in {len(requests)} range(s): "
                     + ", ".join(f"{r.tags[RANGE_START_TAG]}..{r.tags[RANGE_END_TAG]}" for r in requests[:10]))
    return requests


SENSORS = [realtime_bar_sensor, gap_fill_sensor]
