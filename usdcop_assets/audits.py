"""Session audits of the 5-minute layers, and the data checks they carry.

Each 5-minute asset gets a *session-partitioned audit asset* (``<key>_audit``) that depends on it,
records one row per session in the lake, and carries the checks that apply:

- ``lake_matches_warehouse`` (serving assets, ERROR): the lake and the warehouse hold the same rows
  (row count and a store-independent content checksum over the columns both have);
- ``bars_complete`` (bar tables, WARN): every bar the calendar expects is stored (a vendor gap is a
  data-quality warning, not corrupt data);
- ``conservation`` (``conservation_of=(upstream, [outputs])``, ERROR): per session, the rows of the
  upstream dataset in the lake equal the rows of the audited dataset plus those of the other outputs
  (L1: rows of ``l0/ohlcv_m5`` = rows of ``l1/ohlcv_m5`` + rows of ``l1/ohlcv_m5_rejects``). Sessions
  are counted as whole Bogota days (``lake_window: session_days``), so rows stamped off the session
  hours, clock-corrected rows (moved within their day) and rejects kept at their original time all
  count under the day they belong to.

Why checks on an audit asset rather than on the bar asset itself (Dagster 1.13.27):

- a partitioned check must share its target's partitions definition (``dagster definitions
  validate`` rejects anything else), and a *bar*-partitioned check stores one planned row per bar of a
  run, each serializing the whole partitions definition (~11k holiday exclusions): 300 bars cost 28 s,
  a six-year range would never finish;
- an unpartitioned check versions its partitioned target by enumerating all ~100k bar keys
  (~7 s per check per run), and rides along in bar-range runs with the same per-bar planned rows.

Session partitions have ~150 exclusions and ~1,500 keys over six years, so an audit is cheap.
"""

import dagster as dg
import numpy as np
import pandas as pd

from usdcop_assets import market_calendar as cal
from usdcop_assets.frames import frame_checksum
from usdcop_assets.gaps import checked_end, missing_bars
from usdcop_assets.partitions import session_partitions
from usdcop_assets.resources import LakeResource, WarehouseResource
from usdcop_assets.warehouse.tables import table_spec

STORE_CHECK = "lake_matches_warehouse"
GAP_CHECK = "bars_complete"
CONSERVATION_CHECK = "conservation"
INTEGRITY_CHECK = "ohlc_integrity"
MAX_LISTED = 20


def audit_key(key: dg.AssetKey) -> dg.AssetKey:
    return dg.AssetKey([*key.path[:-1], f"{key.path[-1]}_audit"])


def _by_session(rows: pd.DataFrame, time_column: str) -> dict:
    if not len(rows):
        return {}
    return dict(tuple(rows.groupby(cal.session_dates(rows[time_column]).to_numpy())))


def compare_stores(lake_rows: pd.DataFrame, wh_rows: pd.DataFrame, key: list[str], time_column: str) -> pd.DataFrame:
    """One row per session present in either store: counts, checksums, and whether they match."""
    columns = sorted(set(lake_rows.columns) & set(wh_rows.columns))
    lake_by, wh_by = _by_session(lake_rows, time_column), _by_session(wh_rows, time_column)
    out = []
    for day in sorted(set(lake_by) | set(wh_by)):
        a, b = lake_by.get(day), wh_by.get(day)
        lake_sum = frame_checksum(a, key, columns) if a is not None else ""
        wh_sum = frame_checksum(b, key, columns) if b is not None else ""
        out.append(
            {
                "session": day.isoformat(),
                "warehouse_rows": 0 if b is None else len(b),
                "lake_checksum": lake_sum,
                "warehouse_checksum": wh_sum,
                "stores_match": bool(a is not None and b is not None and len(a) == len(b) and lake_sum == wh_sum),
            }
        )
    return pd.DataFrame(out, columns=["session", "warehouse_rows", "lake_checksum", "warehouse_checksum", "stores_match"])


def gap_report(times, start, end) -> tuple[pd.DataFrame, pd.DatetimeIndex]:
    """Per session in ``[start, end)`` (capped at the last closed bar): expected and missing bars."""
    stop = max(pd.Timestamp(start).tz_convert("UTC"), checked_end(end))
    expected = cal.expected_bars(start, stop)
    missing = missing_bars(times, start, stop)
    exp_days = pd.Series(cal.session_dates(expected)).value_counts()
    miss_days = pd.Series(cal.session_dates(missing)).value_counts() if len(missing) else pd.Series(dtype=int)
    frame = pd.DataFrame(
        [{"session": d.isoformat(), "expected_bars": int(n), "missing_bars": int(miss_days.get(d, 0))} for d, n in exp_days.items()],
        columns=["session", "expected_bars", "missing_bars"],
    )
    return frame, missing


def day_counts(rows: pd.DataFrame, time_column: str) -> dict[str, int]:
    """Rows per Bogota date (``YYYY-MM-DD``), at any hour of the day."""
    if not len(rows):
        return {}
    return {str(k): int(v) for k, v in pd.Series(cal.session_dates(rows[time_column])).map(lambda d: d.isoformat()).value_counts().items()}


def conservation_report(sessions: list[str], upstream: dict[str, int], outputs: dict[str, dict[str, int]]) -> pd.DataFrame:
    """Per session: upstream rows, rows of each output, and whether upstream == sum of the outputs."""
    frame = pd.DataFrame({"session": sessions})
    frame["rows_upstream"] = [int(upstream.get(s, 0)) for s in sessions]
    total = pd.Series(0, index=frame.index)
    for name, counts in outputs.items():
        total = total + pd.Series([int(counts.get(s, 0)) for s in sessions], index=frame.index)
    frame["rows_accounted"] = total.astype(int)
    frame["rows_conserved"] = frame["rows_upstream"] == frame["rows_accounted"]
    return frame


def integrity_violations(bars: pd.DataFrame) -> pd.DataFrame:
    """Rows whose prices are not positive and finite or break high >= max(open, close) >= min(open, close) >= low."""
    if bars.empty:
        return bars
    prices = bars[["open", "high", "low", "close"]].to_numpy(dtype="float64")
    ok = np.isfinite(prices).all(axis=1) & (prices > 0).all(axis=1)
    with np.errstate(invalid="ignore"):
        ok &= (bars["high"] >= bars[["open", "close"]].max(axis=1)).to_numpy()
        ok &= (bars["low"] <= bars[["open", "close"]].min(axis=1)).to_numpy()
    return bars[~ok]


def build_session_audit(
    spec: dg.AssetSpec,
    *,
    store_check: bool,
    gap_check: bool,
    conservation_of: tuple[str, list[str]] | None = None,
    integrity_check: bool = False,
) -> dg.AssetsDefinition:
    """The session-partitioned audit asset of a 5-minute asset, with the requested checks.

    ``conservation_of=(upstream_dataset, [other_output_datasets])`` adds the ``conservation`` check:
    per session, rows of ``upstream_dataset`` = rows of this asset's dataset + rows of the others
    (lake datasets, read as whole Bogota days when this asset stores whole days).
    """
    dataset = str(spec.metadata.get("lake_dataset") or "/".join(spec.key.path))
    time_column = str(spec.metadata.get("time_column", "time"))
    whole_days = spec.metadata.get("lake_window") == "session_days"
    table = str(spec.metadata["warehouse_table"]) if store_check else None
    key = list(table_spec(table).key) if table else []
    target = audit_key(spec.key)
    check_specs = []
    if store_check:
        check_specs.append(
            dg.AssetCheckSpec(
                STORE_CHECK,
                asset=target,
                blocking=True,
                description=f"Per session, lake {dataset} and warehouse table {table} hold the same rows.",
            )
        )
    if gap_check:
        check_specs.append(
            dg.AssetCheckSpec(
                GAP_CHECK, asset=target, description=f"Every bar the Bogota calendar expects is stored in {dataset}."
            )
        )
    if conservation_of is not None:
        upstream_dataset, other_outputs = conservation_of[0], list(conservation_of[1])
        check_specs.append(
            dg.AssetCheckSpec(
                CONSERVATION_CHECK,
                asset=target,
                blocking=True,
                description=(
                    f"Per session (whole Bogota day), rows of {upstream_dataset} = rows of "
                    + " + ".join([dataset, *other_outputs])
                    + ": nothing dropped, nothing invented."
                ),
            )
        )
    if integrity_check:
        check_specs.append(
            dg.AssetCheckSpec(
                INTEGRITY_CHECK,
                asset=target,
                blocking=True,
                description=f"Every bar of {dataset}: prices positive and finite, high >= max(open, close), low <= min(open, close).",
            )
        )

    @dg.asset(
        key=target,
        deps=[spec.key],
        partitions_def=session_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        io_manager_key="lake_io_manager",
        group_name=spec.group_name,
        kinds={"parquet"},
        metadata={"time_column": "time", "audits": spec.key.to_user_string()},
        check_specs=check_specs,
        description=f"Per-session audit of {spec.key.to_user_string()}: rows, store consistency, missing bars.",
    )
    def _audit(context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource):
        tw = context.partition_time_window
        start, end = pd.Timestamp(tw.start).tz_convert("UTC"), pd.Timestamp(tw.end).tz_convert("UTC")
        if whole_days:  # the dataset stores whole Bogota days (rows off the session hours included)
            start, end = cal.whole_session_days(start, end) or (start, end)
        lake_rows = lake.table(dataset, time_column).read(start, end)
        sessions = cal.trading_days(start.tz_convert(cal.TZ).date(), (end - pd.Timedelta(1, "ns")).tz_convert(cal.TZ).date())
        report = pd.DataFrame({"session": [d.isoformat() for d in sessions], "time": [cal.session_open(d) for d in sessions]})
        counts = pd.Series(cal.session_dates(lake_rows[time_column])).map(lambda d: d.isoformat()).value_counts() if len(lake_rows) else {}
        report["lake_rows"] = [int(counts.get(s, 0)) for s in report["session"]]
        results = []
        if store_check:
            stores = compare_stores(lake_rows, warehouse.warehouse().read_window(table, start, end), key, time_column)
            report = report.merge(stores, on="session", how="left")
            report["warehouse_rows"] = report["warehouse_rows"].fillna(0).astype(int)
            report[["lake_checksum", "warehouse_checksum"]] = report[["lake_checksum", "warehouse_checksum"]].fillna("")
            report["stores_match"] = report["stores_match"].astype("boolean").fillna(True).astype(bool)  # both empty
            bad = report.loc[~report["stores_match"]]
            results.append(
                dg.AssetCheckResult(
                    check_name=STORE_CHECK,
                    passed=bad.empty,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={
                        "sessions_checked": len(report),
                        "lake_rows": int(report["lake_rows"].sum()),
                        "warehouse_rows": int(report["warehouse_rows"].sum()),
                        "mismatched_sessions": dg.MetadataValue.json(
                            [f"{r.session}: lake {r.lake_rows} rows, warehouse {r.warehouse_rows} rows" for r in bad.itertuples()][:MAX_LISTED]
                        ),
                    },
                )
            )
        if gap_check:
            gaps, missing = gap_report(lake_rows[time_column] if len(lake_rows) else [], start, end)
            report = report.merge(gaps, on="session", how="left")
            report[["expected_bars", "missing_bars"]] = report[["expected_bars", "missing_bars"]].fillna(0).astype(int)
            missing_keys = [cal.bar_key(t) for t in missing]
            if missing_keys:
                context.log.warning(f"{dataset}: {len(missing_keys)} expected bars missing (first: {', '.join(missing_keys[:5])})")
            results.append(
                dg.AssetCheckResult(
                    check_name=GAP_CHECK,
                    passed=not missing_keys,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={
                        "expected": int(report["expected_bars"].sum()),
                        "present": int(report["expected_bars"].sum()) - len(missing_keys),
                        "missing": len(missing_keys),
                        "missing_bar_keys": dg.MetadataValue.json(missing_keys[:MAX_LISTED]),
                    },
                )
            )
        if conservation_of is not None:
            # whole Bogota days, whatever the audited dataset's window: shifted rows stay in their day
            day_start, day_end = cal.whole_session_days(pd.Timestamp(tw.start), pd.Timestamp(tw.end)) or (start, end)
            upstream = day_counts(lake.table(upstream_dataset, "time").read(day_start, day_end), "time")
            here = lake_rows if whole_days else lake.table(dataset, time_column).read(day_start, day_end)
            outputs = {dataset: day_counts(here, time_column)}
            for other in other_outputs:
                outputs[other] = day_counts(lake.table(other, "time").read(day_start, day_end), "time")
            cons = conservation_report(list(report["session"]), upstream, outputs)
            report = report.merge(cons, on="session", how="left")
            bad = report.loc[~report["rows_conserved"]]
            results.append(
                dg.AssetCheckResult(
                    check_name=CONSERVATION_CHECK,
                    passed=bad.empty,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={
                        "sessions_checked": len(report),
                        "rows_in": int(report["rows_upstream"].sum()),
                        "rows_out": int(report["rows_accounted"].sum()),
                        **{f"rows_{name.replace('/', '_')}": int(sum(c.values())) for name, c in outputs.items()},
                        "mismatched_sessions": dg.MetadataValue.json(
                            [
                                f"{r.session}: {upstream_dataset} {r.rows_upstream} rows, "
                                + " + ".join(f"{n} {outputs[n].get(r.session, 0)}" for n in outputs)
                                + f" = {r.rows_accounted}"
                                for r in bad.itertuples()
                            ][:MAX_LISTED]
                        ),
                    },
                )
            )
        if integrity_check:
            broken = integrity_violations(lake_rows)
            results.append(
                dg.AssetCheckResult(
                    check_name=INTEGRITY_CHECK,
                    passed=broken.empty,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={
                        "bars_checked": len(lake_rows),
                        "violations": len(broken),
                        "first_violations": dg.MetadataValue.json([cal.bar_key(t) for t in broken["time"]][:MAX_LISTED]),
                    },
                )
            )
        report["time"] = pd.to_datetime(report["time"], utc=True).astype("datetime64[ns, UTC]")
        yield dg.Output(report, metadata={"sessions": len(report), "window_start": start.isoformat(), "window_end": end.isoformat()})
        yield from results

    return _audit
