"""Declarative automation of the session chain: once a session's L0 lands, L1..L6 follow by themselves.

``automation_sensor`` (RUNNING by default, every ``USDCOP_AUTOMATION_INTERVAL_SECONDS``, default 30)
evaluates ``SESSION_CONDITION`` on every session asset above L0: Dagster's ``eager()`` over the sessions
of the last ``AUTOMATION_LOOKBACK`` (not only the latest), blind to retrains, statistics refits and macro
days (``IGNORED``), and to updates made by the CLI's staged runs. ``automation_history_sensor`` bounds the
evaluation history Dagster stores.
Decision, Dagster 1.13.27 behaviours and measurements: docs/decisions/0004-automation-conditions.md,
docs/decisions/0005-automation-evaluation-history.md.
"""

import datetime as dt

import dagster as dg
from dagster._time import get_current_datetime

from usdcop_assets.defs.keys import L1_MACRO, OBS_STATS, PPO_MODEL
from usdcop_assets.defs.quality.checks import NO_FAILED_BLOCKING_CHECK_UPSTREAM
from usdcop_assets.defs.tags import CLI_TAG

AUTOMATION_LOOKBACK = dt.timedelta(days=7)
AUTOMATION_SENSOR = "automation_sensor"
IGNORED = (PPO_MODEL, OBS_STATS, L1_MACRO)

_AC = dg.AutomationCondition

# A dependency's update, unless the run that made it also targeted this asset or was started by the CLI.
# Not ``executed_with_tags``: it sees only the latest materialization, i.e. one session of a range run (0004).
_DEPS_UPDATED = _AC.any_deps_match(
    (
        _AC.newly_updated() & ~(_AC.executed_with_root_target() | _AC.all_new_updates_have_run_tags(tag_keys={CLI_TAG}))
    ).with_label("newly_updated_by_another_run")
    | _AC.will_be_requested()
).with_label("any_deps_updated")

# One NOT over the three blockers, not three: each NOT stores a cursor of ~13 kB subsets (0004).
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
        asset.map_asset_specs(lambda spec: spec.replace_attributes(automation_condition=SESSION_CONDITION))
        if _above_l0(asset)
        else asset
        for asset in assets
    ]


def build_automation_sensor(assets, interval_seconds: int) -> dg.AutomationConditionSensorDefinition:
    """The sensor evaluating ``SESSION_CONDITION``; its interval (``USDCOP_AUTOMATION_INTERVAL_SECONDS``) is the wait
    between a session's L0 and its L1..L6 run."""
    keys = [key for asset in assets if _above_l0(asset) for key in asset.keys]
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR,
        target=dg.AssetSelection.assets(*keys),
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        run_tags={"usdcop/trigger": "automation"},
        description="Carries each newly landed session from L0 up to L6 (declarative automation).",
    )


HISTORY_SENSOR = "automation_history_sensor"


def build_history_sensor(hours: int, interval_seconds: int = 3600) -> dg.SensorDefinition:
    """Purges automation evaluation records older than ``hours`` (``USDCOP_AUTOMATION_HISTORY_HOURS``, default 48).

    Dagster keeps them 30 days (~24 MB per realtime bar here): docs/decisions/0005-automation-evaluation-history.md.
    """

    @dg.sensor(
        name=HISTORY_SENSOR,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Keeps the automation evaluation history to the last USDCOP_AUTOMATION_HISTORY_HOURS (default 48).",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        storage = context.instance.schedule_storage
        if storage is None or not storage.supports_auto_materialize_asset_evaluations:
            return dg.SkipReason("this instance stores no automation evaluations")
        before = get_current_datetime() - dt.timedelta(hours=hours)  # dagster's clock, as the daemon's purge
        storage.purge_asset_evaluations(before=before.timestamp())
        return dg.SkipReason(f"purged automation evaluations before {before.isoformat(timespec='minutes')}")

    return _sensor
