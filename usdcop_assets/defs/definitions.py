"""The ``usdcop_assets`` code location."""

import dagster as dg

from usdcop_assets.core.settings import Settings, environ
from usdcop_assets.defs.automation.alerts import build_alert_sensors
from usdcop_assets.defs.automation.conditions import (
    build_automation_sensor,
    build_history_sensor,
    with_session_automation,
)
from usdcop_assets.defs.automation.jobs import (
    MACRO_JOB,
    MODEL_JOB,
    PERFORMANCE_JOB,
    STATS_JOB,
    build_asset_job,
    build_session_chain_job,
)
from usdcop_assets.defs.automation.schedules import build_schedules
from usdcop_assets.defs.automation.sensors import SENSORS
from usdcop_assets.defs.io_managers import LakeIOManager, ServingIOManager, WarehouseIOManager
from usdcop_assets.defs.layers.l0_raw import l0_ohlcv_m5
from usdcop_assets.defs.layers.l1_standardized import l1_ohlcv_m5
from usdcop_assets.defs.layers.l2_indicators import l2_indicators_m5
from usdcop_assets.defs.layers.l3_features import l3_features_m5
from usdcop_assets.defs.layers.l4_rl_ready import l4_episodes_session, l4_observation_stats, l4_observations_m5
from usdcop_assets.defs.layers.l5_model import l5_ppo_model
from usdcop_assets.defs.layers.l5_serving import l5_actions_m5, l5_paper_ledger
from usdcop_assets.defs.layers.l6_backtest import l6_backtest_session, l6_performance
from usdcop_assets.defs.layers.macro_daily import l0_macro_daily, l1_macro_daily
from usdcop_assets.defs.quality.checks import build_session_checks
from usdcop_assets.defs.quality.freshness import POLICIES, with_freshness_policies
from usdcop_assets.defs.quality.live_parity import build_live_parity_checks
from usdcop_assets.defs.resources import source_resources, store_resources
from usdcop_assets.version import code_version


def with_code_version(assets):
    """Every asset stamped with the package version and git commit (``usdcop_assets.version``): Dagster records
    it on each materialization, where it would otherwise record the run id."""
    version = code_version()
    return [asset.map_asset_specs(lambda spec: spec.replace_attributes(code_version=version)) for asset in assets]


# L1..L6 follow a session's L0 by declarative automation (automation.py)
SESSION_ASSETS = with_code_version(
    with_session_automation(
        [
            l0_ohlcv_m5,
            l1_ohlcv_m5,
            l2_indicators_m5,
            l3_features_m5,
            l4_observations_m5,
            l4_episodes_session,
            l5_actions_m5,
            l5_paper_ledger,
            l6_backtest_session,
        ]
    )
)
DAILY_ASSETS = with_code_version([l0_macro_daily, l1_macro_daily])
STATS_ASSETS = with_code_version([l4_observation_stats])
MODEL_ASSETS = with_code_version([l5_ppo_model])
PERFORMANCE_ASSETS = with_code_version([l6_performance])
# Data checks on the session layers themselves, partitioned like them (quality/checks.py).
SESSION_CHECKS = build_session_checks(SESSION_ASSETS)
# Freshness policies of the bar and session layers, applied here in one place (freshness.py), and the alerts
# (alerts.py).
ASSETS = with_freshness_policies([*SESSION_ASSETS, *DAILY_ASSETS, *STATS_ASSETS, *MODEL_ASSETS, *PERFORMANCE_ASSETS])
ALERT_SENSORS = build_alert_sensors(POLICIES)
# Live rows == batch rows, per session, after the session's run (usdcop_assets/defs/quality/live_parity.py).
LIVE_PARITY_CHECKS = build_live_parity_checks(SESSION_ASSETS)


def executor_from_env(env=None):
    """``USDCOP_EXECUTOR``: ``in_process`` (default: the steps of a run in the run's process; a one-bar
    realtime run would otherwise start one Python process per step, seconds each), ``multiprocess``,
    ``k8s`` = one Kubernetes job per step (dagster-k8s), ``celery_k8s`` = steps on Celery workers
    (dagster-celery-k8s). See docs/deployment.md."""
    name = ((env or environ()).get("USDCOP_EXECUTOR") or "in_process").strip().lower()
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if name == "celery_k8s":
        from dagster_celery_k8s import celery_k8s_job_executor

        return celery_k8s_job_executor
    raise ValueError(f"USDCOP_EXECUTOR={name!r}: 'in_process' (default), 'multiprocess', 'k8s' or 'celery_k8s'")


def build_definitions() -> dg.Definitions:
    lake, warehouse = store_resources()
    bar_source, macro_source = source_resources(Settings.from_env())
    built = [
        build_session_chain_job(SESSION_ASSETS, [*SESSION_CHECKS, *LIVE_PARITY_CHECKS]),
        build_asset_job(MACRO_JOB, DAILY_ASSETS),
        build_asset_job(STATS_JOB, STATS_ASSETS),
        build_asset_job(MODEL_JOB, MODEL_ASSETS),
        build_asset_job(PERFORMANCE_JOB, PERFORMANCE_ASSETS),
    ]
    jobs = {job.name: job for job in built}
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=[*SESSION_CHECKS, *LIVE_PARITY_CHECKS],
        executor=executor_from_env(),
        jobs=list(jobs.values()),
        schedules=build_schedules(jobs),
        sensors=[*SENSORS, build_automation_sensor(SESSION_ASSETS), build_history_sensor(), *ALERT_SENSORS],
        resources={
            "lake": lake,
            "bar_source": bar_source,
            "macro_source": macro_source,
            "warehouse": warehouse,
            "lake_io_manager": LakeIOManager(lake=lake),
            "warehouse_io_manager": WarehouseIOManager(warehouse=warehouse),
            "serving_io_manager": ServingIOManager(lake=lake, warehouse=warehouse),
        },
    )


defs = build_definitions()
