"""L0: bars exactly as the source gave them, with ``source`` and ``ingested_at``."""


import dagster as dg
import pandas as pd

from usdcop_assets import market_calendar as cal
from usdcop_assets.partitions import bar_partitions
from usdcop_assets.sources import require_available, resolve_source, synthetic


@dg.asset(
    key=["l0", "ohlcv_m5"],
    partitions_def=bar_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="lake_io_manager",
    group_name="l0_raw",
    kinds={"parquet"},
    metadata={"time_column": "time"},
    description="USD/COP 5-minute bars as the source gave them (one lake object per session).",
)
def l0_ohlcv_m5(context: dg.AssetExecutionContext) -> dg.Output[pd.DataFrame]:
    source = require_available(resolve_source())
    window = context.partition_time_window
    bars = cal.expected_bars(window.start, window.end)
    raw = synthetic.synthetic_bars(bars)
    context.log.info(f"source={source}: {len(raw)} bars for {len(context.partition_keys)} partitions")
    return dg.Output(raw, metadata={"source": synthetic.SOURCE, "bars": len(raw), "partitions": len(context.partition_keys)})
