"""The ``usdcop_assets`` code location: ``build_defs(settings)`` builds it, and ``defs`` loads it lazily (Dagster calls
it when the location loads), so importing this module reads neither the environment nor the clock."""

import datetime as dt

import dagster as dg

from usdcop_assets.core.settings import Settings
from usdcop_assets.defs.automation.alerts import build_alert_sensors
from usdcop_assets.defs.automation.conditions import (
    build_automation_sensor,
    build_history_sensor,
    with_session_automation,
)
from usdcop_assets.defs.automation.jobs import (
    EXPERIMENT_JOB,
    EXPERIMENT_PERFORMANCE_JOB,
    EXPERIMENT_SELECTION_JOB,
    MACRO_JOB,
    MODEL_JOB,
    PERFORMANCE_JOB,
    STATS_JOB,
    build_asset_job,
    build_session_chain_job,
)
from usdcop_assets.defs.automation.schedules import build_schedules
from usdcop_assets.defs.automation.sensors import build_sensors
from usdcop_assets.defs.io_managers import LakeIOManager, ServingIOManager, WarehouseIOManager
from usdcop_assets.defs.layers.l0_raw import build_l0_assets
from usdcop_assets.defs.layers.l1_standardized import build_l1_assets
from usdcop_assets.defs.layers.l2_indicators import build_l2_assets
from usdcop_assets.defs.layers.l3_features import build_l3_assets
from usdcop_assets.defs.layers.l4_rl_ready import build_l4_assets
from usdcop_assets.defs.layers.l5_experiments import build_l5_experiment_assets
from usdcop_assets.defs.layers.l5_model import build_l5_model_assets
from usdcop_assets.defs.layers.l5_serving import build_l5_serving_assets
from usdcop_assets.defs.layers.l6_backtest import build_l6_assets
from usdcop_assets.defs.layers.l6_experiments import build_l6_experiment_assets
from usdcop_assets.defs.layers.macro_daily import build_macro_assets
from usdcop_assets.defs.partitions import build_partitions
from usdcop_assets.defs.quality.checks import build_session_checks
from usdcop_assets.defs.quality.freshness import POLICIES, with_freshness_policies
from usdcop_assets.defs.quality.live_parity import build_live_parity_checks
from usdcop_assets.defs.registry import ModelStoreResource
from usdcop_assets.defs.resources import source_resources, store_resources
from usdcop_assets.version import code_version


def with_code_version(assets):
    """Every asset stamped with the package version and git commit (``usdcop_assets.version``): Dagster records
    it on each materialization, where it would otherwise record the run id."""
    version = code_version()
    return [asset.map_asset_specs(lambda spec: spec.replace_attributes(code_version=version)) for asset in assets]


def build_executor(settings: Settings) -> dg.ExecutorDefinition:
    """``USDCOP_EXECUTOR``: ``in_process`` (default: the steps of a run in the run's process; a one-bar
    realtime run would otherwise start one Python process per step, seconds each), ``multiprocess``,
    ``k8s`` = one Kubernetes job per step (dagster-k8s), ``celery_k8s`` = steps on Celery workers
    (dagster-celery-k8s). See docs/deployment.md."""
    name = settings.automation.executor
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if name == "celery_k8s":
        from dagster_celery_k8s import celery_k8s_job_executor

        return celery_k8s_job_executor
    return dg.in_process_executor


def build_defs(settings: Settings, *, today: dt.date | None = None) -> dg.Definitions:
    """The code location for ``settings`` (a deployment's configuration): partitions from its history start through
    next year's holidays (``today``: the current date unless given), assets, checks, jobs, schedules, sensors,
    resources and executor. Sensors and assets that need a setting at run time use this snapshot of it."""
    from usdcop_assets.rl.experiments import list_experiments

    experiments = tuple(row["name"] for row in list_experiments(settings.experiments_dir))
    parts = build_partitions(settings.history.start, today or dt.date.today(), experiments)
    l4 = build_l4_assets(parts, settings)
    l6 = build_l6_assets(parts, settings)
    session_layers = [
        *build_l0_assets(parts, settings),
        *build_l1_assets(parts, settings),
        *build_l2_assets(parts, settings),
        *build_l3_assets(parts, settings),
        *l4,
        *build_l5_serving_assets(parts, settings),
        *l6,
    ]
    # L1..L6 follow a session's L0 by declarative automation (conditions.py)
    session_assets = with_code_version(
        with_session_automation([a for a in session_layers if a.partitions_def == parts.session])
    )
    daily_assets = with_code_version(build_macro_assets(parts, settings))
    stats_assets = with_code_version([a for a in l4 if a.partitions_def == parts.month])
    model_assets = with_code_version(build_l5_model_assets(parts, settings))
    performance_assets = with_code_version([a for a in l6 if a.partitions_def is None])
    # research: experiments x folds, the selection per fold and the comparison (l5_experiments.py, l6_experiments.py)
    research = with_code_version(
        [*build_l5_experiment_assets(parts, settings), *build_l6_experiment_assets(parts, settings)]
    )
    by_partitions = {None: [], parts.fold: [], parts.experiment_fold: []}
    for a in research:
        by_partitions[a.partitions_def].append(a)
    # Data checks on the session layers themselves, partitioned like them (quality/checks.py), and live rows ==
    # batch rows, per session, after the session's run (quality/live_parity.py).
    session_checks = build_session_checks(session_assets, parts.session)
    parity_checks = build_live_parity_checks(session_assets, parts.session)
    # Freshness policies of the bar and session layers, applied here in one place (freshness.py), and the alerts.
    assets = with_freshness_policies(
        [*session_assets, *daily_assets, *stats_assets, *model_assets, *performance_assets, *research]
    )
    built = [
        build_session_chain_job(session_assets, [*session_checks, *parity_checks], session_partitions=parts.session),
        build_asset_job(MACRO_JOB, daily_assets),
        build_asset_job(STATS_JOB, stats_assets),
        build_asset_job(MODEL_JOB, model_assets),
        build_asset_job(PERFORMANCE_JOB, performance_assets),
        build_asset_job(EXPERIMENT_JOB, by_partitions[parts.experiment_fold]),
        build_asset_job(EXPERIMENT_SELECTION_JOB, by_partitions[parts.fold]),
        build_asset_job(EXPERIMENT_PERFORMANCE_JOB, by_partitions[None]),
    ]
    jobs = {job.name: job for job in built}
    automation = settings.automation
    lake, warehouse = store_resources(settings)
    bar_source, macro_source = source_resources(settings)
    return dg.Definitions(
        assets=assets,
        asset_checks=[*session_checks, *parity_checks],
        executor=build_executor(settings),
        jobs=list(jobs.values()),
        schedules=build_schedules(jobs),
        sensors=[
            *build_sensors(settings),
            build_automation_sensor(session_assets, automation.interval_seconds),
            build_history_sensor(automation.history_hours),
            *build_alert_sensors(POLICIES, settings),
        ],
        resources={
            "lake": lake,
            "bar_source": bar_source,
            "macro_source": macro_source,
            "model_store": ModelStoreResource(lake=lake, warehouse=warehouse, serve=settings.training.serve),
            "warehouse": warehouse,
            "lake_io_manager": LakeIOManager(lake=lake),
            "warehouse_io_manager": WarehouseIOManager(warehouse=warehouse),
            "serving_io_manager": ServingIOManager(lake=lake, warehouse=warehouse),
        },
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location as the environment configures it, built when Dagster loads it."""
    return build_defs(Settings.from_env())
