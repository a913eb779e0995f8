"""Declarative automation of the session chain: once a session's L0 lands, L1..L6 follow by themselves.

``automation_sensor`` (RUNNING by default, every ``USDCOP_AUTOMATION_INTERVAL_SECONDS``, default 30)
evaluates ``SESSION_CONDITION`` on every session asset above L0. A session partition is requested
when one of its dependencies updated (or will be requested on the same tick, so one tick requests
L1..L6 of a session together, as one run), none of its dependencies is missing or in progress, and
their blocking checks passed (``all_deps_blocking_checks_passed``: the data checks on the assets
themselves gate the layer above). It is Dagster's ``eager()`` with these changes:

- it looks at the sessions ending within ``AUTOMATION_LOOKBACK`` (7 days: the last 5 sessions, fewer
  across a holiday) instead of only the latest, so a session that lands late (a vendor delay, the
  gap-fill sensor, a replay) is carried up too; older history is the business of backfills;
- updates of ``l5/ppo_model`` (a retrain), ``l4/observation_stats`` (a refit) and ``l1/macro_daily``
  neither block nor trigger the chain: a fold without a model is decided flat (recorded), a macro day
  is read point in time over a year by L3 (a missing day gives NaN features, counted), and none of
  them may silently rewrite actions already served;
- a dependency updated by a run that also targeted the asset is no update (Dagster's own rule: the
  realtime ``chain`` run and ``session_chain_schedule`` compute L0..L6 together), nor is one made by
  the CLI (runs tagged ``usdcop/launched_by``): ``usdcop backfill`` runs L0-L3, the statistics, then
  L4-L6 in stages, and the automation would otherwise compute L4-L6 of the recent sessions between
  them, to have the last stage compute them again.

Dagster 1.13.27 behaviours this relies on or works around:

- not ``newly_missing``: a session missing above L0 is not requested unless its L0 changes (the first
  start on a home with gaps requests nothing; backfills and gap fill fill gaps);
- each NOT node keeps a cursor; one NOT over the three blockers instead of three;
- the asset daemon stores every changed evaluation (``asset_daemon_asset_evaluations``, kept 30 days,
  ``EVALUATIONS_TTL_DAYS``), each subset in it embedding the session partitions definition (~13 kB
  with the holiday exclusions): ~1.2 MB per asset evaluation, ~24 MB per realtime bar (whole-chain
  update, 10 assets). Measured in ``bench/automation_freshness.py``, with the tick costs (< 1 s CPU on
  six-plus years of sessions).
"""

import datetime as dt

import dagster as dg
from dagster._time import get_current_datetime

from usdcop_assets.defs.keys import L1_MACRO
from usdcop_assets.defs.keys import PPO_MODEL
from usdcop_assets.defs.keys import OBS_STATS
from usdcop_assets.defs.quality.checks import NO_FAILED_BLOCKING_CHECK_UPSTREAM
from usdcop_assets.defs.tags import CLI_TAG
from usdcop_assets.core.settings import env_int

AUTOMATION_LOOKBACK = dt.timedelta(days=7)
AUTOMATION_SENSOR = "automation_sensor"
INTERVAL_ENV = "USDCOP_AUTOMATION_INTERVAL_SECONDS"
DEFAULT_INTERVAL_SECONDS = 30
IGNORED = (PPO_MODEL, OBS_STATS, L1_MACRO)

_AC = dg.AutomationCondition

# A dependency's update, unless the run that made it also targeted this asset or was started by the CLI.
# Not ``executed_with_tags``: in 1.13.27 it (like ``executed_with_root_target``) looks only at the asset's
# *latest* materialization (``AssetGraphView._compute_latest_asset_run_matches``), so of a range run's
# sessions only the last would be recognised. ``all_new_updates_have_run_tags`` reads the run of every
# new materialization of each partition. (A range run targeting parent and child is still covered: the
# child's own update in that run resets ``since_last_handled``, and while it runs it is in progress.)
_DEPS_UPDATED = _AC.any_deps_match(
    (
        _AC.newly_updated() & ~(_AC.executed_with_root_target() | _AC.all_new_updates_have_run_tags(tag_keys={CLI_TAG}))
    ).with_label("newly_updated_by_another_run")
    | _AC.will_be_requested()
).with_label("any_deps_updated")

# Each NOT stores a cursor holding two serialized subsets, each embedding the session partitions
# definition (~13 kB with the holiday exclusions): one NOT over the three blockers, not three.
_BLOCKED = (_AC.any_deps_missing() | _AC.any_deps_in_progress() | _AC.in_progress()).with_label("blocked")

SESSION_CONDITION = (
    (
        _AC.in_latest_time_window(lookback_delta=AUTOMATION_LOOKBACK)
        & _DEPS_UPDATED.since_last_handled()
        & ~_BLOCKED
        & _AC.all_deps_blocking_checks_passed()
        & NO_FAILED_BLOCKING_CHECK_UPSTREAM  # every session of a look-back window (quality/checks.py)
    )
    .ignore(dg.AssetSelection.assets(*IGNORED))
    .with_label("session_eager")
)

def _above_l0(asset: dg.AssetsDefinition) -> bool:
    return not all(key.path[0] == "l0" for key in asset.keys)


def with_session_automation(assets):
    """The session assets above L0 with ``SESSION_CONDITION`` (L0 is started by sensors, schedules or the CLI)."""
    return [
        asset.map_asset_specs(lambda spec: spec.replace_attributes(automation_condition=SESSION_CONDITION)) if _above_l0(asset) else asset
        for asset in assets
    ]


def build_automation_sensor(assets, interval_seconds: int | None = None) -> dg.AutomationConditionSensorDefinition:
    """The sensor evaluating ``SESSION_CONDITION``; its interval is the wait between a session's L0 and its L1..L6 run."""
    interval_seconds = interval_seconds or env_int(INTERVAL_ENV, DEFAULT_INTERVAL_SECONDS, minimum=1)
    keys = [key for asset in assets if _above_l0(asset) for key in asset.keys]
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR,
        target=dg.AssetSelection.assets(*keys),
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        run_tags={"usdcop/trigger": "automation"},
        description="Carries each newly landed session from L0 up to L6 (declarative automation).",
    )


HISTORY_ENV = "USDCOP_AUTOMATION_HISTORY_HOURS"
HISTORY_SENSOR = "automation_history_sensor"


def build_history_sensor(interval_seconds: int = 3600) -> dg.SensorDefinition:
    """Purges automation evaluation records older than ``USDCOP_AUTOMATION_HISTORY_HOURS`` (default 48).

    Dagster keeps them 30 days (``EVALUATIONS_TTL_DAYS``, not configurable in 1.13), and each stored subset
    embeds the session partitions definition with its ~130 holiday exclusions (~13 kB): measured ~24 MB of
    records per bar that carries a whole chain (bench/automation_freshness.py), ~1.4 GB a trading day.
    Two days keep the UI's recent evaluation history and bound the instance database.
    """

    @dg.sensor(name=HISTORY_SENSOR, minimum_interval_seconds=interval_seconds, default_status=dg.DefaultSensorStatus.RUNNING,
               description="Keeps the automation evaluation history to the last USDCOP_AUTOMATION_HISTORY_HOURS (default 48).")
    def _sensor(context: dg.SensorEvaluationContext):
        hours = env_int(HISTORY_ENV, 48, minimum=1)
        storage = context.instance.schedule_storage
        if storage is None or not storage.supports_auto_materialize_asset_evaluations:
            return dg.SkipReason("this instance stores no automation evaluations")
        before = get_current_datetime() - dt.timedelta(hours=hours)  # dagster's clock, as the daemon's purge
        storage.purge_asset_evaluations(before=before.timestamp())
        return dg.SkipReason(f"purged automation evaluations before {before.isoformat(timespec='minutes')}")

    return _sensor
