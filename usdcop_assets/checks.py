"""Asset checks shared across layers."""


import dagster as dg
import pandas as pd

from usdcop_assets.frames import frame_checksum
from usdcop_assets.market_calendar import session_dates
from usdcop_assets.resources import LakeResource, WarehouseResource
from usdcop_assets.warehouse.tables import table_spec


def build_lake_warehouse_check(spec: dg.AssetSpec, partitions_def: dg.TimeWindowPartitionsDefinition) -> dg.AssetChecksDefinition:
    """For a serving asset: the lake and the warehouse hold the same rows for each checked session
    (row count and a content checksum over the columns both stores have).

    The check is partitioned by *session*, not by bar, and runs in its own session-partitioned job:
    Dagster 1.13 stores a check's planned evaluation once per partition, each row serializing the
    partitions definition. With the bar definition (~11k holiday exclusions) a 300-bar range cost
    28 s and a six-year range would never finish; per session it is ~1,500 small rows for six years.
    """
    table = str(spec.metadata["warehouse_table"])
    dataset = str(spec.metadata.get("lake_dataset") or "/".join(spec.key.path))
    time_column = str(spec.metadata.get("time_column", "time"))
    key = list(table_spec(table).key)

    @dg.asset_check(
        asset=spec.key,
        name="lake_matches_warehouse",
        partitions_def=partitions_def,
        description=f"Row count and content checksum of lake {dataset} equal those of warehouse table {table}.",
    )
    def _check(context: dg.AssetCheckExecutionContext, lake: LakeResource, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        # One evaluation per run: a single session, or every session of a partition-range run.
        tw = context.partition_time_window
        start, end = pd.Timestamp(tw.start).tz_convert("UTC"), pd.Timestamp(tw.end).tz_convert("UTC")
        lake_rows = lake.table(dataset, time_column).read(start, end)
        wh_rows = warehouse.warehouse().read_window(table, start, end)
        columns = sorted(set(lake_rows.columns) & set(wh_rows.columns))
        lake_by_day = dict(tuple(lake_rows.groupby(session_dates(lake_rows[time_column]).to_numpy()))) if len(lake_rows) else {}
        wh_by_day = dict(tuple(wh_rows.groupby(session_dates(wh_rows[time_column]).to_numpy()))) if len(wh_rows) else {}
        mismatched = []
        for day in sorted(set(lake_by_day) | set(wh_by_day)):
            a, b = lake_by_day.get(day), wh_by_day.get(day)
            if a is None or b is None or len(a) != len(b) or frame_checksum(a, key, columns) != frame_checksum(b, key, columns):
                mismatched.append(f"{day}: lake {0 if a is None else len(a)} rows, warehouse {0 if b is None else len(b)} rows")
        return dg.AssetCheckResult(
            passed=not mismatched,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "window_start": start.isoformat(),
                "window_end": end.isoformat(),
                "sessions_checked": len(set(lake_by_day) | set(wh_by_day)),
                "lake_rows": len(lake_rows),
                "warehouse_rows": len(wh_rows),
                "lake_checksum": frame_checksum(lake_rows, key, columns) if len(lake_rows) else "empty",
                "warehouse_checksum": frame_checksum(wh_rows, key, columns) if len(wh_rows) else "empty",
                "columns_compared": len(columns),
                "mismatched_sessions": dg.MetadataValue.json(mismatched[:20]),
            },
        )

    return _check
