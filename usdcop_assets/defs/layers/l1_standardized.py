"""L1: validated, deduplicated bars on the session grid, and the rejected rows with their reasons."""

import dagster as dg
import pandas as pd

from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import Settings
from usdcop_assets.defs.keys import L0_OHLCV, L1_OHLCV, L1_REJECTS
from usdcop_assets.defs.partitions import Partitions
from usdcop_assets.defs.policies import session_backfill_policy
from usdcop_assets.defs.resources import LakeResource
from usdcop_assets.defs.windows import session_output
from usdcop_assets.refine.standardize import standardize_bars, time_shift_summary


def neighbour_sessions(lake: LakeResource, window) -> pd.DataFrame:
    """L0 rows of the trading sessions just before and after the window (whole Bogota days; empty if not stored).

    Only price references: a session stamped wholly in the wrong zone has no native bar of its own,
    so the shift is confirmed by continuity with its neighbours (``refine.standardize`` rule 5).
    """
    start, end = pd.Timestamp(window.start).tz_convert(cal.TZ), pd.Timestamp(window.end).tz_convert(cal.TZ)
    days = [cal.previous_trading_day(start.date()), cal.next_trading_day((end - pd.Timedelta(1, "ns")).date())]
    table = lake.table("/".join(L0_OHLCV.path), "time")
    parts = [table.read(*cal.whole_session_days(cal.session_open(d), cal.session_end(d))) for d in days]
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def build_l1_assets(parts: Partitions, settings: Settings) -> list[dg.AssetsDefinition]:
    """The standardized bar layer (L1) of a code location."""

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                L1_OHLCV,
                deps=[dg.AssetKey(["l0", "ohlcv_m5"])],
                group_name="l1_standardized",
                kinds={"parquet", "sql"},
                metadata={"time_column": "time", "warehouse_table": "usdcop_m5_ohlcv", "lake_window": "session_days"},
                description="Validated USD/COP bars, one row per bar of the session grid (UTC); time_shift_hours marks "
                "clock-corrected rows.",
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
        partitions_def=parts.session,
        backfill_policy=session_backfill_policy(settings),
    )
    def l1_ohlcv_m5(context: dg.AssetExecutionContext, lake: LakeResource, raw: pd.DataFrame):
        neighbours = neighbour_sessions(lake, context.partition_time_window)
        kept, rejects = standardize_bars(raw, context=neighbours)
        if rejects["time"].isna().any():  # no usable time: file it under the window it arrived in
            rejects.loc[rejects["time"].isna(), "time"] = pd.Timestamp(context.partition_time_window.start).tz_convert(
                "UTC"
            )
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

    return [l1_ohlcv_m5]
