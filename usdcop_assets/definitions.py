"""The ``usdcop_assets`` code location."""

from __future__ import annotations

import dagster as dg

from usdcop_assets.assets.raw import l0_ohlcv_m5
from usdcop_assets.assets.standardized import l1_ohlcv_m5
from usdcop_assets.checks import build_lake_warehouse_check
from usdcop_assets.io_managers import LakeIOManager, ServingIOManager, WarehouseIOManager
from usdcop_assets.jobs import build_checks_job, build_m5_chain_job
from usdcop_assets.partitions import session_partitions
from usdcop_assets.resources import store_resources

ASSETS = [l0_ohlcv_m5, l1_ohlcv_m5]

SERVING_CHECKS = [
    build_lake_warehouse_check(spec, session_partitions)
    for spec in l1_ohlcv_m5.specs
]


def build_definitions() -> dg.Definitions:
    lake, warehouse = store_resources()
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=SERVING_CHECKS,
        jobs=[build_m5_chain_job(ASSETS), build_checks_job(SERVING_CHECKS)],
        resources={
            "lake": lake,
            "warehouse": warehouse,
            "lake_io_manager": LakeIOManager(lake=lake),
            "warehouse_io_manager": WarehouseIOManager(warehouse=warehouse),
            "serving_io_manager": ServingIOManager(lake=lake, warehouse=warehouse),
        },
    )


defs = build_definitions()
