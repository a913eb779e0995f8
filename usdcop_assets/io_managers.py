"""IO managers: lake (Parquet per session), warehouse (SQL upsert), serving (both, one key).

Asset metadata steers them:
- ``time_column`` (default ``time``): the UTC instant each row belongs to;
- ``lake_dataset`` (default: the asset key joined by ``/``): where in the lake;
- ``warehouse_table``: which table in ``sql/tables/`` (required by the warehouse and serving managers);
- ``lake_window: session_days``: a window of whole sessions is stored (and read) as whole Bogota days,
  so rows stamped outside the session hours stay with their day (``cal.whole_session_days``).

Time-partitioned outputs replace exactly their partition (or partition-range) window in one pass;
inputs are read for the mapped window (look-backs included) in one pass, as one DataFrame.

Session- and macro-day-partitioned outputs are written under a lease on their dates (``lake/lease.py``): a
run whose dates another writer holds (an overlapping ``usdcop backfill``) waits for it, then fails with a
message naming the holder. A CLI backfill holds one lease over its whole range, which covers its runs.
"""

from __future__ import annotations

import contextlib

import dagster as dg
import pandas as pd

from usdcop_assets import market_calendar as cal
from usdcop_assets.lake.lease import session_lease
from usdcop_assets.lake.session_table import read_object, write_object
from usdcop_assets.resources import LakeResource, WarehouseResource

_MAX_LISTED = 10  # per-session checksums listed in metadata up to this many sessions


SESSION_DAYS = "session_days"


def _window(context, meta: dict | None = None) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    if not context.has_asset_partitions:
        return None
    partitions_def = context.asset_partitions_def
    if not isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        raise TypeError(f"{context.asset_key.to_user_string()}: only time-window partitions are supported by the lake")
    tw = context.asset_partitions_time_window
    window = pd.Timestamp(tw.start).tz_convert("UTC"), pd.Timestamp(tw.end).tz_convert("UTC")
    if meta and meta.get("lake_window") == SESSION_DAYS:
        return cal.whole_session_days(*window) or window
    return window


def _meta(context, upstream: bool = False) -> dict:
    if upstream:
        return dict(context.upstream_output.definition_metadata or {}) if context.upstream_output else {}
    return dict(context.definition_metadata or {})


def _dataset(meta: dict, asset_key: dg.AssetKey) -> str:
    return str(meta.get("lake_dataset") or "/".join(asset_key.path))


def _require_frame(context, obj) -> pd.DataFrame:
    if not isinstance(obj, pd.DataFrame):
        raise TypeError(f"{context.asset_key.to_user_string()} returned {type(obj).__name__}; the lake stores DataFrames")
    return obj


def _table_name(meta: dict, asset_key: dg.AssetKey) -> str:
    try:
        return str(meta["warehouse_table"])
    except KeyError:
        raise KeyError(f"{asset_key.to_user_string()} has no 'warehouse_table' metadata for the warehouse IO manager") from None


def _date_span(context) -> tuple[str, str] | None:
    """First and last Bogota date (ISO) of a session- or macro-day-partitioned output; None for any other."""
    from usdcop_assets.partitions import macro_partitions, session_partitions

    if not context.has_asset_partitions:
        return None
    pdef = context.asset_partitions_def
    leased = {(p.cron_schedule, p.timezone) for p in (session_partitions, macro_partitions)}
    if not isinstance(pdef, dg.TimeWindowPartitionsDefinition) or (pdef.cron_schedule, pdef.timezone) not in leased:
        return None
    tw = context.asset_partitions_time_window
    first = pd.Timestamp(tw.start).tz_convert(cal.TZ).date()
    last = (pd.Timestamp(tw.end) - pd.Timedelta(microseconds=1)).tz_convert(cal.TZ).date()
    return first.isoformat(), last.isoformat()


@contextlib.contextmanager
def writing(lake: LakeResource, context: dg.OutputContext):
    """Hold a lease on the output's dates while it is written (no-op for other outputs)."""
    span = _date_span(context)
    if span is None:
        yield
        return
    log = getattr(context, "log", None)
    try:
        run = str(context.run_id)[:8]
    except Exception:  # an output context built outside a run (tests)
        run = "-"
    purpose = f"run {run} {context.asset_key.to_user_string()}"
    with session_lease(lake.store(), *span, purpose, on_wait=log.warning if log else None) as lease:
        yield
        lease.check()  # lost while writing: fail the run, so it is re-run rather than trusted


def lake_write(lake: LakeResource, context: dg.OutputContext, df: pd.DataFrame) -> dict:
    meta = _meta(context)
    dataset = _dataset(meta, context.asset_key)
    window = _window(context, meta)
    if window is None:
        manifest = write_object(lake.store(), dataset, df)
        return {"lake_uri": f"{lake.location}/{dataset}", "rows": manifest["rows"], "lake_sha256": manifest["sha256"]}
    summary = lake.table(dataset, meta.get("time_column", "time")).write(df, *window)
    out = {
        "lake_uri": f"{lake.location}/{dataset}",
        "rows": summary.rows,
        "lake_objects_written": summary.objects_written,
        "lake_objects_unchanged": summary.objects_unchanged,
        "lake_objects_deleted": summary.objects_deleted,
        "window_start": window[0].isoformat(),
        "window_end": window[1].isoformat(),
    }
    if summary.sha256 and len(summary.sha256) <= _MAX_LISTED:
        out["lake_sha256"] = dg.MetadataValue.json(summary.sha256)
    return out


def _upstream_partitioned(context: dg.InputContext) -> bool:
    """Whether the asset read is partitioned (unknown upstream: assume it is, and read by window)."""
    if context.upstream_output is None:
        return context.has_asset_partitions
    try:
        return context.upstream_output.asset_partitions_def is not None
    except dg.DagsterInvariantViolationError:
        return False


def lake_read(lake: LakeResource, context: dg.InputContext) -> pd.DataFrame:
    meta = _meta(context, upstream=True)
    dataset = _dataset(meta, context.asset_key)
    time_column = meta.get("time_column", "time")
    if context.has_asset_key and not _upstream_partitioned(context):
        return read_object(lake.store(), dataset)  # an unpartitioned asset (e.g. fitted statistics) read whole
    if not context.has_asset_partitions:
        return lake.table(dataset, time_column).read()  # unpartitioned reader of a partitioned asset: all of it
    start, end = _window(context, meta)
    return lake.table(dataset, time_column).read(start, end)


def warehouse_write(warehouse: WarehouseResource, context: dg.OutputContext, df: pd.DataFrame) -> dict:
    meta = _meta(context)
    table = _table_name(meta, context.asset_key)
    report = warehouse.schema()
    rows = warehouse.warehouse().upsert(table, df, replace_window=_window(context, meta))
    return {
        "warehouse_table": table,
        "warehouse_rows": rows,
        "warehouse": warehouse.warehouse().display_url,
        "timescaledb": report.timescaledb,
        "warehouse_storage": report.detail,
    }


def warehouse_read(warehouse: WarehouseResource, context: dg.InputContext) -> pd.DataFrame:
    meta = _meta(context, upstream=True)
    table = _table_name(meta, context.asset_key)
    window = _window(context, meta) if context.has_asset_partitions else (None, None)
    return warehouse.warehouse().read_window(table, *window)


class LakeIOManager(dg.ConfigurableIOManager):
    """Parquet in the lake, one object per session date, with a manifest each."""

    lake: LakeResource

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        df = _require_frame(context, obj)
        with writing(self.lake, context):
            context.add_output_metadata(lake_write(self.lake, context, df))

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        return lake_read(self.lake, context)


class WarehouseIOManager(dg.ConfigurableIOManager):
    """Rows in a warehouse table, upserted on its natural key; partitions replace their window."""

    warehouse: WarehouseResource

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        context.add_output_metadata(warehouse_write(self.warehouse, context, _require_frame(context, obj)))

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        return warehouse_read(self.warehouse, context)


class ServingIOManager(dg.ConfigurableIOManager):
    """Serving assets: written to the lake and the warehouse under one IO manager key, read from the lake.

    Each write is idempotent, so a run that dies between the two is repaired by re-running it; the
    ``lake_matches_warehouse`` check catches a divergence in the meantime.
    """

    lake: LakeResource
    warehouse: WarehouseResource

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        df = _require_frame(context, obj)
        with writing(self.lake, context):
            metadata = lake_write(self.lake, context, df)
            metadata.update(warehouse_write(self.warehouse, context, df))
        context.add_output_metadata(metadata)

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        return lake_read(self.lake, context)
