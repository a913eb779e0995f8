"""The ``usdcop_assets`` code location."""

import dagster as dg

from usdcop_assets.assets.macro import l0_macro_daily
from usdcop_assets.assets.raw import l0_ohlcv_m5
from usdcop_assets.assets.standardized import l1_ohlcv_m5
from usdcop_assets.audits import build_session_audit
from usdcop_assets.sensors import SENSORS
from usdcop_assets.io_managers import LakeIOManager, ServingIOManager, WarehouseIOManager
from usdcop_assets.jobs import build_audit_job, build_m5_chain_job, build_macro_job
from usdcop_assets.resources import store_resources

M5_ASSETS = [l0_ohlcv_m5, l1_ohlcv_m5]
_L1 = {spec.key.path[-1]: spec for spec in l1_ohlcv_m5.specs}
AUDITS = [
    build_session_audit(next(iter(l0_ohlcv_m5.specs)), store_check=False, gap_check=True),
    build_session_audit(_L1["ohlcv_m5"], store_check=True, gap_check=True),
    build_session_audit(_L1["ohlcv_m5_rejects"], store_check=True, gap_check=False),
]
DAILY_ASSETS = [l0_macro_daily]
ASSETS = [*M5_ASSETS, *DAILY_ASSETS, *AUDITS]


def build_definitions() -> dg.Definitions:
    lake, warehouse = store_resources()
    return dg.Definitions(
        assets=ASSETS,
        jobs=[build_m5_chain_job(M5_ASSETS), build_audit_job(AUDITS), build_macro_job(DAILY_ASSETS)],
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
