"""Freshness checks of the realtime chain and the session layers, with deadlines from the market calendar.

Dagster's ``build_time_partition_freshness_checks`` evaluates, at its latest completed ``deadline_cron``
tick T (in ``timezone``), the partition window that was the *last completed one at T* and passes iff
that partition has a materialization (or observation). There is no ``lower_bound_delta`` for this
builder: the grace period is the distance between a partition's end and the next deadline tick.

- 5-minute chain (``l0/ohlcv_m5`` .. ``l4/observations_m5``, and ``l5/actions_m5`` when it is
  bar-partitioned; while it is session-partitioned it gets the session deadline): deadline cron ``4-59/5 8-13 * * 1-5`` Bogota. The bar opening at 08:00 closes at
  08:05; at the 08:09 tick the last completed window is [08:00, 08:05), so every bar is due
  ``M5_GRACE_MINUTES`` = 4 minutes after it closes (the realtime sensor ticks every 30 s; a one-bar
  chain run takes well under that). The 12:55 bar is due at 13:04; the 13:09..13:59 ticks ask again
  for it. No tick fires at night or at weekends, so the check cannot change state then. On a
  holiday weekday the ticks fire, but the partitions definition excludes the holiday's bars, so the
  expected partition stays the previous session's 12:55: silent while that session is complete.
- Session layers (``l4/episodes_session``, ``l6/backtest_session``): ``30 13 * * 1-5`` Bogota, i.e. the
  session that closed at 13:00 is due at 13:30 (``session_chain_schedule`` runs at 13:10).

Cost (measured, dagster 1.13.27): an unpartitioned check's result records its target's latest
materialization, and for a partitioned target Dagster first lists *every* partition key of the
dependency (``data_version_cache``, all-partitions mapping): ~10-20 s CPU per 5-minute asset per
evaluation at ~76k bars (2020..2025), i.e. a freshness run over the six bar assets costs ~1-2 CPU
minutes, launched by the sensor at most once per deadline tick (5 min) while checks pass. Neither a
partition mapping on the check's dependency (not kept for checks) nor dropping the dependency (the
check then cannot see its target's partitions) avoids it. Session assets (~1.6k keys) are cheap.

Freshness checks are unpartitioned and run only through ``freshness_checks_sensor`` (STOPPED by
default): no job selects them (``m5_chain``/``session_chain`` drop all checks, ``session_audit`` selects
the audit assets, whose checks are their own). Severity WARN: a late bar is an operational problem,
not bad data, and ``usdcop backfill`` fails only on ERROR checks.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import dagster as dg

from usdcop_assets import market_calendar as cal
from usdcop_assets.partitions import session_partitions

M5_GRACE_MINUTES = 4  # 1..4: a bar is due this long after it closes
M5_DEADLINE_CRON = f"{M5_GRACE_MINUTES}-59/{cal.BAR_MINUTES} 8-13 * * 1-5"
SESSION_DEADLINE_CRON = "30 13 * * 1-5"
FRESHNESS_SENSOR_NAME = "freshness_checks_sensor"
FRESHNESS_CHECK_NAME = "freshness_check"  # the check name Dagster's builder gives every check


# The assets whose latest partition the checks watch: the realtime chain and the session layers.
# ``l5/actions_m5`` gets the 5-minute deadline when it is bar-partitioned, the session one otherwise.
FRESHNESS_KEYS = tuple(
    dg.AssetKey(k.split("/"))
    for k in (
        "l0/ohlcv_m5",
        "l1/ohlcv_m5",
        "l2/indicators_m5",
        "l3/features_m5",
        "l4/observations_m5",
        "l5/actions_m5",
        "l4/episodes_session",
        "l6/backtest_session",
    )
)


def build_freshness(
    assets: Sequence[dg.AssetsDefinition],
    keys: Sequence[dg.AssetKey] = FRESHNESS_KEYS,
    *,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.WARN,
    minimum_interval_seconds: int = 60,
) -> tuple[list[dg.AssetChecksDefinition], dg.SensorDefinition]:
    """Freshness checks of the ``keys`` found among ``assets`` and the (STOPPED) sensor evaluating them.

    Each key gets the deadline of its partitioning: bar-partitioned -> ``M5_DEADLINE_CRON``,
    session-partitioned -> ``SESSION_DEADLINE_CRON``. A key not among ``assets``, or of another
    partitioning, is refused (ValueError) rather than silently left unwatched.
    """
    partitions_of = {key: a.partitions_def for a in assets for key in a.keys}
    missing = [k.to_user_string() for k in keys if k not in partitions_of]
    if missing:
        raise ValueError(f"freshness: no asset {', '.join(missing)} in the definitions")
    m5_keys: list[dg.AssetKey] = []  # every bar layer is session-partitioned now
    session_keys = [k for k in keys if partitions_of[k] == session_partitions]
    other = [k.to_user_string() for k in keys if k not in m5_keys and k not in session_keys]
    if other:
        raise ValueError(f"freshness: {', '.join(other)} neither 5-minute- nor session-partitioned; no deadline fits")
    checks: list[dg.AssetChecksDefinition] = []
    # Dagster 1.13 marks these builders "superseded" by FreshnessPolicy, whose cron form has no notion
    # of the calendar's holiday exclusions; the partition-based check does, so it is used on purpose.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        for group, cron in ((m5_keys, M5_DEADLINE_CRON), (session_keys, SESSION_DEADLINE_CRON)):
            if group:
                checks.extend(
                    dg.build_time_partition_freshness_checks(
                        assets=group, deadline_cron=cron, timezone=cal.TZ_NAME, severity=severity
                    )
                )
        sensor = dg.build_sensor_for_freshness_checks(
            freshness_checks=checks,
            name=FRESHNESS_SENSOR_NAME,
            minimum_interval_seconds=minimum_interval_seconds,
            default_status=dg.DefaultSensorStatus.STOPPED,
            tags={"usdcop/trigger": "freshness"},
        )
    return checks, sensor


def check_keys(checks: Sequence[dg.AssetChecksDefinition]) -> list[dg.AssetCheckKey]:
    return [key for c in checks for key in c.check_keys]
