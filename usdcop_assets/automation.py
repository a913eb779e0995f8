"""Declarative automation of the realtime chain: once a bar's L0 lands, L1 -> L5 follow by themselves.

With ``USDCOP_REALTIME_RUN=l0``, ``realtime_bar_sensor`` starts L0 for each published bar and
``realtime_automation_sensor`` evaluates ``REALTIME_CONDITION`` on the 5-minute layers above it: a bar
partition is requested when one of its dependencies updated (or will be requested on the same tick,
so one tick requests L1..L5 of the bar together, as one run), none of its dependencies is missing or
in progress, and their blocking checks passed. It is Dagster's ``eager()`` with two changes:

- it looks at the partitions of the last ``REALTIME_LOOKBACK`` (7 days) instead of only the latest
  window, so bars published late (a vendor delay, the gap-fill sensor, a replay of the last session)
  are carried up too; older history is the business of backfills;
- updates of ``l5/ppo_model`` (a retrain) and ``l4/observation_stats`` (a refit) neither block nor
  re-trigger the chain: a fold without a model is decided flat (recorded), and a retrain must not
  silently rewrite actions already served.

Cost (measured, ``dagster.evaluate_automation_conditions`` on a home with five sessions): ~28 s of CPU
per evaluation on this 2-core machine, nearly all in Dagster mapping the 300-bar look-back of
``l2/indicators_m5`` (and the 60-bar ones of L5) through the custom-cron partitions with exclusions
(``TimeWindowPartitionMapping`` -> cron iteration, ~1 ms a window). That is too slow to carry a bar within
seconds, so the realtime default is ``USDCOP_REALTIME_RUN=chain`` (the bar sensor runs L0..L5 in one
run); ``l0`` + this sensor is the declarative alternative for deployments with cores to spare.

Runs launched by the chain's own range runs (backfills) are not re-requested: Dagster ignores parent
updates made by a run that also targeted the child, so with ``chain`` (the default) the automation
finds nothing to do for the bars the sensor ran; it still carries bars that land some other way.
"""

import datetime as dt

import dagster as dg

from usdcop_assets.assets.model import PPO_MODEL
from usdcop_assets.assets.observations import OBS_STATS
from usdcop_assets.quality.checks import NO_FAILED_BLOCKING_CHECK_UPSTREAM
from usdcop_assets.sensors import realtime_default_status
from usdcop_assets.settings import env_int

REALTIME_LOOKBACK = dt.timedelta(days=7)
AUTOMATION_SENSOR = "realtime_automation_sensor"

REALTIME_CONDITION = (
    (
        dg.AutomationCondition.in_latest_time_window(lookback_delta=REALTIME_LOOKBACK)
        & (dg.AutomationCondition.newly_missing() | dg.AutomationCondition.any_deps_updated()).since_last_handled()
        & ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
        & dg.AutomationCondition.all_deps_blocking_checks_passed()
        & NO_FAILED_BLOCKING_CHECK_UPSTREAM  # every session of a look-back window (quality/checks.py)
    )
    .ignore(dg.AssetSelection.assets(PPO_MODEL, OBS_STATS))
    .with_label("realtime_eager")
)


def with_realtime_condition(assets):
    """The 5-minute assets above L0 with ``REALTIME_CONDITION`` (L0 is started by the bar sensor)."""
    out = []
    for asset in assets:
        if all(key.path[0] == "l0" for key in asset.keys):
            out.append(asset)
        else:
            out.append(asset.map_asset_specs(lambda spec: spec.replace_attributes(automation_condition=REALTIME_CONDITION)))
    return out


INTERVAL_ENV = "USDCOP_AUTOMATION_INTERVAL_SECONDS"


def build_automation_sensor(assets, interval_seconds: int | None = None) -> dg.AutomationConditionSensorDefinition:
    """Evaluated every ``USDCOP_AUTOMATION_INTERVAL_SECONDS`` (default 10): the wait between a bar's L0 and its L1..L5 run."""
    interval_seconds = interval_seconds or env_int(INTERVAL_ENV, 10, minimum=1)
    keys = [key for asset in assets for key in asset.keys if key.path[0] != "l0"]
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR,
        target=dg.AssetSelection.assets(*keys),
        minimum_interval_seconds=interval_seconds,
        default_status=realtime_default_status(),
        description="Carries each newly landed bar from L0 up to L5 (declarative automation; turn on with realtime_bar_sensor).",
    )
