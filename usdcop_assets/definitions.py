"""The ``usdcop_assets`` code location."""

import dagster as dg

from usdcop_assets.assets.backtest import l6_backtest_session, l6_performance
from usdcop_assets.assets.features import l3_features_m5
from usdcop_assets.assets.indicators import l2_indicators_m5
from usdcop_assets.assets.macro import l0_macro_daily, l1_macro_daily
from usdcop_assets.assets.model import l5_actions_m5, l5_ppo_model
from usdcop_assets.assets.observations import l4_episodes_session, l4_observation_stats, l4_observations_m5
from usdcop_assets.assets.raw import l0_ohlcv_m5
from usdcop_assets.assets.standardized import l1_ohlcv_m5
from usdcop_assets.audits import build_session_audit
from usdcop_assets.observation_audit import build_observation_audit
from usdcop_assets.sensors import SENSORS
from usdcop_assets.io_managers import LakeIOManager, ServingIOManager, WarehouseIOManager
from usdcop_assets.jobs import (
    AUDIT_JOB,
    MACRO_JOB,
    MODEL_JOB,
    PERFORMANCE_JOB,
    SESSION_JOB,
    STATS_JOB,
    build_asset_job,
    build_m5_chain_job,
)
from usdcop_assets.resources import store_resources
from usdcop_assets.schedules import build_schedules

M5_ASSETS = [l0_ohlcv_m5, l1_ohlcv_m5, l2_indicators_m5, l3_features_m5, l4_observations_m5]
SESSION_ASSETS = [l4_episodes_session, l5_actions_m5, l6_backtest_session]
DAILY_ASSETS = [l0_macro_daily, l1_macro_daily]
STATS_ASSETS = [l4_observation_stats]
MODEL_ASSETS = [l5_ppo_model]
PERFORMANCE_ASSETS = [l6_performance]
_L1 = {spec.key.path[-1]: spec for spec in l1_ohlcv_m5.specs}


def _spec(asset: dg.AssetsDefinition) -> dg.AssetSpec:
    return next(iter(asset.specs))


AUDITS = [
    build_session_audit(_spec(l0_ohlcv_m5), store_check=False, gap_check=True),
    build_session_audit(
        _L1["ohlcv_m5"],
        store_check=True,
        gap_check=True,
        conservation_of=("l0/ohlcv_m5", ["l1/ohlcv_m5_rejects"]),
        integrity_check=True,
    ),
    build_session_audit(_L1["ohlcv_m5_rejects"], store_check=True, gap_check=False),
    build_session_audit(_spec(l2_indicators_m5), store_check=True, gap_check=False),
    build_session_audit(_spec(l3_features_m5), store_check=False, gap_check=False),
    build_observation_audit(_spec(l4_observations_m5)),
]
ASSETS = [*M5_ASSETS, *SESSION_ASSETS, *DAILY_ASSETS, *STATS_ASSETS, *MODEL_ASSETS, *PERFORMANCE_ASSETS, *AUDITS]


def build_definitions() -> dg.Definitions:
    lake, warehouse = store_resources()
    built = [
        build_m5_chain_job(M5_ASSETS),
        build_asset_job(SESSION_JOB, SESSION_ASSETS),
        build_asset_job(AUDIT_JOB, AUDITS),
        build_asset_job(MACRO_JOB, DAILY_ASSETS),
        build_asset_job(STATS_JOB, STATS_ASSETS),
        build_asset_job(MODEL_JOB, MODEL_ASSETS),
        build_asset_job(PERFORMANCE_JOB, PERFORMANCE_ASSETS),
    ]
    jobs = {job.name: job for job in built}
    return dg.Definitions(
        assets=ASSETS,
        jobs=list(jobs.values()),
        schedules=build_schedules(jobs),
        sensors=SENSORS,
        resources={
            "lake": lake,
            "warehouse": warehouse,
            "lake_io_manager": LakeIOManager(lake=lake),
            "warehouse_io_manager": WarehouseIOManager(warehouse=warehouse),
            "serving_io_manager": ServingIOManager(lake=lake, warehouse=warehouse),
        },
    )


defs = build_definitions()
