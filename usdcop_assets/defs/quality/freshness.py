"""Freshness policies of the session layers, evaluated by Dagster's freshness daemon.

Dagster 1.13.27 (``dagster/_core/definitions/freshness_evaluator.py``, ``CronFreshnessPolicyEvaluator``):
at every daemon iteration (``FreshnessDaemon``, every ``FRESHNESS_DAEMON_INTERVAL_SECONDS``, default
30) an asset with a cron policy is PASS iff its *latest materialization of any partition* is at or
after ``last completed deadline tick - lower_bound_delta``, FAIL otherwise, UNKNOWN if it was never
materialized. It reads one asset record per asset (no partition listing); a change of state is
written to the event log as a runless ``FreshnessStateChange`` event (what ``alerts.py`` follows).

- Bar layers (``BAR_KEYS``): deadline ``9-59/5 8-12 * * 1-5`` Bogota, lower bound 5 min. Each tick
  T asks for a materialization after T-5 min, i.e. the bar that closed at T-4 min: 08:09 asks for the
  first bar (closed 08:05), ..., 12:59 for the 12:50 bar. Why not ``4-59/5``: its 08:04 tick comes
  before the session's first bar has closed, so every trading morning would go FAIL until ~08:06.
  One cron string cannot also hold 13:04 (a ``8-13`` hour range adds 13:09..13:59, FAIL every evening),
  so the last bar (closed 13:00) is left to the session deadline below; the XX:04 ticks of hours
  9..12 are dropped with 08:04 (one cron), so a stop at XX:58 is seen at XX:09, not XX:04.
- Session layers (``SESSION_KEYS``): deadline ``30 13 * * 1-5``, lower bound 30 min: the session that
  closed at 13:00 materialized between 13:00 and 13:30 (``session_chain_schedule`` runs at 13:10).

Nights and weekends are silent: no tick fires, so the state of the last tick (Friday's 12:59 or
13:30) holds. Holidays are NOT: a cron cannot skip the market calendar's holidays and 1.13 has no
other policy that could (``TimeWindowFreshnessPolicy`` would fail every weekend). On a Colombian
holiday weekday the 08:09 tick asks for a materialization after 08:04 that cannot come, so the bar
layers show FAIL from 08:09 (session layers from 13:30) until the next session's first bar lands.
Least bad of the options: the UI shows that FAIL, and ``freshness_alert_sensor`` does not page for
it (it checks the missed deadline against the calendar and holds the alert; if the layer is still
FAIL at the next trading session's first deadline, it pages then).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import dagster as dg

from usdcop_assets.core import calendar as cal

BAR_DEADLINE_CRON = "9-59/5 8-12 * * 1-5"
BAR_LOWER_BOUND = dt.timedelta(minutes=cal.BAR_MINUTES)
SESSION_DEADLINE_CRON = "30 13 * * 1-5"
SESSION_LOWER_BOUND = dt.timedelta(minutes=30)

BAR_POLICY = dg.FreshnessPolicy.cron(deadline_cron=BAR_DEADLINE_CRON, lower_bound_delta=BAR_LOWER_BOUND, timezone=cal.TZ_NAME)
SESSION_POLICY = dg.FreshnessPolicy.cron(
    deadline_cron=SESSION_DEADLINE_CRON, lower_bound_delta=SESSION_LOWER_BOUND, timezone=cal.TZ_NAME
)


def _keys(*names: str) -> tuple[dg.AssetKey, ...]:
    return tuple(dg.AssetKey(n.split("/")) for n in names)


# Materialized by every bar's run (realtime) during the session.
BAR_KEYS = _keys(
    "l0/ohlcv_m5", "l1/ohlcv_m5", "l1/ohlcv_m5_rejects", "l2/indicators_m5", "l3/features_m5", "l4/observations_m5", "l5/actions_m5"
)
# Complete once the session has closed.
SESSION_KEYS = _keys("l4/episodes_session", "l5/paper_trades", "l5/paper_positions", "l6/backtest_session")
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

    return get_latest_completed_cron_tick(policy.deadline_cron, at.astimezone(dt.timezone.utc), policy.timezone)
