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

A later step of the same run reads what an earlier step wrote from memory (``RunTables``), not back
from the lake: a six-year backfill otherwise parses every session object of L1 five times over.
"""

from __future__ import annotations

import contextlib
import threading

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from usdcop_assets.core import calendar as cal
from usdcop_assets.defs.resources import LakeResource, WarehouseResource
from usdcop_assets.storage.lake.lease import session_lease
from usdcop_assets.storage.lake.session_table import read_object, to_arrow, write_object

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
        raise TypeError(
            f"{context.asset_key.to_user_string()} returned {type(obj).__name__}; the lake stores DataFrames"
        )
    return obj


def _table_name(meta: dict, asset_key: dg.AssetKey) -> str:
    try:
        return str(meta["warehouse_table"])
    except KeyError:
        raise KeyError(
            f"{asset_key.to_user_string()} has no 'warehouse_table' metadata for the warehouse IO manager"
        ) from None


MACRO_CRON = "0 0 * * *"  # dg.DailyPartitionsDefinition's


def _date_span(context) -> tuple[str, str] | None:
    """First and last Bogota date (ISO) of a session- or macro-day-partitioned output; None for any other."""
    from usdcop_assets.defs.partitions import SESSION_CRON

    if not context.has_asset_partitions:
        return None
    pdef = context.asset_partitions_def
    leased = {(SESSION_CRON, cal.TZ_NAME), (MACRO_CRON, cal.TZ_NAME)}  # the session and macro-day partitions
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


class RunTables:
    """The windows written to the lake by the current run in this process, kept as Arrow tables.

    A read of the same run inside such a window (a look-back reaching before it reads that part from the
    lake) converts the kept table instead of parsing the session objects again. The table is what the
    lake stores (sorted by time, no pandas metadata), so the frame is the one a lake read returns. Only
    the latest run's tables are kept; another run, or anything not written by this run, reads the lake.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._run_id: str | None = None
        self._tables: dict[tuple[str, str], list[tuple[int, int, pa.Table]]] = {}

    def put(self, run_id: str | None, location: str, dataset: str, df: pd.DataFrame, time_column: str, window) -> None:
        if run_id is None:
            return
        table = to_arrow(df, time_column).replace_schema_metadata(None)
        start, end = window[0].value, window[1].value
        with self._lock:
            if run_id != self._run_id:
                self._run_id, self._tables = run_id, {}
            kept = [e for e in self._tables.get((location, dataset), []) if e[1] <= start or e[0] >= end]
            self._tables[(location, dataset)] = [*kept, (start, end, table)]

    def get(
        self,
        run_id: str | None,
        location: str,
        dataset: str,
        time_column: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        stored,
    ):
        """Rows of ``[start, end)`` if this run wrote the window's end part; ``stored(a, b)`` reads ``[a, b)`` from
        the lake."""
        with self._lock:
            entries = self._tables.get((location, dataset), []) if run_id is not None and run_id == self._run_id else []
        entry = next((e for e in entries if e[0] < end.value <= e[1]), None)
        if entry is None:
            return None
        w0, _, table = entry
        ns = table.column(time_column).cast(pa.int64()).to_numpy()
        i0, i1 = np.searchsorted(ns, max(start.value, w0)), np.searchsorted(ns, end.value)
        if i1 <= i0:
            return None  # no row written there: the lake read decides what an empty read looks like
        parts = [table.slice(i0, i1 - i0)]
        if start.value < w0:  # a look-back before what this run wrote
            before = stored(start, pd.Timestamp(w0, tz="UTC"))
            if before is not None:
                parts.insert(0, before)
        return (pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]).to_pandas()


RUN_TABLES = RunTables()


def _run_id(context) -> str | None:
    try:
        return context.run_id if isinstance(context, dg.OutputContext) else context.step_context.run_id
    except dg.DagsterInvariantViolationError:  # a context built outside a run (tests)
        return None


def lake_write(lake: LakeResource, context: dg.OutputContext, df: pd.DataFrame) -> dict:
    meta = _meta(context)
    dataset = _dataset(meta, context.asset_key)
    window = _window(context, meta)
    if window is None:
        manifest = write_object(lake.store(), dataset, df)
        return {"lake_uri": f"{lake.location}/{dataset}", "rows": manifest["rows"], "lake_sha256": manifest["sha256"]}
    time_column = meta.get("time_column", "time")
    summary = lake.table(dataset, time_column).write(df, *window)
    RUN_TABLES.put(_run_id(context), lake.location, dataset, df, time_column, window)
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
    table = lake.table(dataset, time_column)
    kept = RUN_TABLES.get(_run_id(context), lake.location, dataset, time_column, start, end, table.read_arrow)
    return kept if kept is not None else table.read(start, end)


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
