"""Freshness policies of the session layers, evaluated by Dagster's freshness daemon.

- Bar layers (``BAR_KEYS``): deadline ``9-59/5 8-12 * * 1-5`` Bogota, lower bound 5 min: each tick T asks
  for the bar that closed at T-4 min (08:09 for the first bar, ..., 12:59 for the 12:50 bar).
- Session layers (``SESSION_KEYS``): deadline ``30 13 * * 1-5``, lower bound 30 min (the session run is at 13:10).

A cron cannot skip holidays: on a Colombian holiday the layers show FAIL, and ``freshness_alert_sensor``
holds that alert. How Dagster 1.13.27 evaluates a cron policy, and why these crons:
docs/decisions/0007-freshness-and-alerts.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import dagster as dg

from usdcop_assets.core import calendar as cal
from usdcop_assets.storage.lake.datasets import BAR_DATASETS, CLOSE_DATASETS

BAR_DEADLINE_CRON = "9-59/5 8-12 * * 1-5"
BAR_LOWER_BOUND = dt.timedelta(minutes=cal.BAR_MINUTES)
SESSION_DEADLINE_CRON = "30 13 * * 1-5"
SESSION_LOWER_BOUND = dt.timedelta(minutes=30)

BAR_POLICY = dg.FreshnessPolicy.cron(
    deadline_cron=BAR_DEADLINE_CRON, lower_bound_delta=BAR_LOWER_BOUND, timezone=cal.TZ_NAME
)
SESSION_POLICY = dg.FreshnessPolicy.cron(
    deadline_cron=SESSION_DEADLINE_CRON, lower_bound_delta=SESSION_LOWER_BOUND, timezone=cal.TZ_NAME
)


def _keys(*names: str) -> tuple[dg.AssetKey, ...]:
    return tuple(dg.AssetKey(n.split("/")) for n in names)


# Materialized by every bar's run (realtime) during the session.
BAR_KEYS = _keys(*BAR_DATASETS)
# Complete once the session has closed.
SESSION_KEYS = _keys(*CLOSE_DATASETS)
POLICIES: Mapping[dg.AssetKey, dg.FreshnessPolicy] = {
    **{k: BAR_POLICY for k in BAR_KEYS},
    **{k: SESSION_POLICY for k in SESSION_KEYS},
}


def with_freshness_policies(
    assets: Sequence[dg.AssetsDefinition], policies: Mapping[dg.AssetKey, dg.FreshnessPolicy] = POLICIES
) -> list[dg.AssetsDefinition]:
    """``assets`` with ``policies`` attached to their specs; a policy whose asset is not there is refused."""
    present = {key for a in assets for key in a.keys}
    missing = sorted(k.to_user_string() for k in policies if k not in present)
    if missing:
        raise ValueError(f"freshness: no asset {', '.join(missing)} in the definitions")

    def attach(spec: dg.AssetSpec) -> dg.AssetSpec:
        policy = policies.get(spec.key)
        return dg.apply_freshness_policy(spec, policy) if policy is not None else spec

    return list(dg.map_asset_specs(attach, assets))


def latest_deadline(policy: dg.FreshnessPolicy, at: dt.datetime) -> dt.datetime:
    """The policy's last completed deadline tick at ``at``: the deadline the daemon judged against."""
    from dagster._utils.schedules import get_latest_completed_cron_tick  # what the evaluator itself calls

    return get_latest_completed_cron_tick(policy.deadline_cron, at.astimezone(dt.UTC), policy.timezone)
