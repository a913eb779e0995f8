"""L1: validated, deduplicated bars on the session grid, and the rejected rows with their reasons."""


import dagster as dg
import pandas as pd

from usdcop_assets.assets.windows import session_output
from usdcop_assets.partitions import session_partitions
from usdcop_assets.settings import backfill_sessions_per_run
from usdcop_assets.refine.standardize import standardize_bars, time_shift_summary

L1_OHLCV = dg.AssetKey(["l1", "ohlcv_m5"])
L1_REJECTS = dg.AssetKey(["l1", "ohlcv_m5_rejects"])


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            L1_OHLCV,
            deps=[dg.AssetKey(["l0", "ohlcv_m5"])],
            group_name="l1_standardized",
            kinds={"parquet", "sql"},
            metadata={"time_column": "time", "warehouse_table": "usdcop_m5_ohlcv", "lake_window": "session_days"},
            description="Validated USD/COP bars, one row per bar of the session grid (UTC); time_shift_hours marks clock-corrected rows.",
        ).with_io_manager_key("serving_io_manager"),
        dg.AssetSpec(
            L1_REJECTS,
            deps=[dg.AssetKey(["l0", "ohlcv_m5"])],
            group_name="l1_standardized",
            kinds={"parquet", "sql"},
            metadata={"time_column": "time", "warehouse_table": "ohlcv_m5_rejects", "lake_window": "session_days"},
            description="Raw rows L1 did not keep, each at its original time with the reason and a detail.",
        ).with_io_manager_key("serving_io_manager"),
    ],
    ins={"raw": dg.AssetIn(dg.AssetKey(["l0", "ohlcv_m5"]))},
    partitions_def=session_partitions,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=backfill_sessions_per_run()),
)
def l1_ohlcv_m5(context: dg.AssetExecutionContext, raw: pd.DataFrame):
    kept, rejects = standardize_bars(raw)
    if rejects["time"].isna().any():  # no usable time: file it under the window it arrived in
        rejects.loc[rejects["time"].isna(), "time"] = pd.Timestamp(context.partition_time_window.start).tz_convert("UTC")
    by_reason = {str(k): int(v) for k, v in rejects["reason"].value_counts().sort_index().items()}
    by_shift = time_shift_summary(kept)
    conserved = len(raw) == len(kept) + len(rejects)
    yield session_output(
        context,
        kept,
        output_name="l1__ohlcv_m5",
        metadata={
            "rows_in": len(raw),
            "rows_kept": len(kept),
            "rows_rejected": len(rejects),
            "rows_conserved": conserved,  # rows_in == rows_kept + rows_rejected
            "rows_time_corrected": int(sum(by_shift.values())),
            "time_corrected_by_shift": dg.MetadataValue.json(by_shift),
            "flat_bars": int(kept["is_flat"].sum()),
            "rejected_by_reason": dg.MetadataValue.json(by_reason),
        },
    )
    yield dg.Output(
        rejects,
        output_name="l1__ohlcv_m5_rejects",
        metadata={"rows": len(rejects), "by_reason": dg.MetadataValue.json(by_reason)},
    )
