"""L0: bars exactly as the source gave them, with ``source``, ``ingested_at`` and ``parse_error``."""


import dagster as dg
import pandas as pd

from usdcop_assets import market_calendar as cal
from usdcop_assets.alerts import SOURCE_RETRY_POLICY
from usdcop_assets.partitions import bar_partitions
from usdcop_assets.sources import fetch_bars_with_summary, require_available, resolve_source


@dg.asset(
    key=["l0", "ohlcv_m5"],
    partitions_def=bar_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    retry_policy=SOURCE_RETRY_POLICY,  # a vendor hiccup: 3 retries, exponential back-off (alerts.py)
    io_manager_key="lake_io_manager",
    group_name="l0_raw",
    kinds={"parquet"},
    # Whole sessions are stored as whole Bogota days: rows a source stamped off-session stay in L0.
    metadata={"time_column": "time", "lake_window": "session_days"},
    description="USD/COP 5-minute bars as the source gave them (one lake object per session date).",
)
def l0_ohlcv_m5(context: dg.AssetExecutionContext) -> dg.Output[pd.DataFrame]:
    source = require_available(resolve_source())
    window = context.partition_time_window
    # One fetch for the whole window: a range run pages the source once, not once per bar.
    raw, summary = fetch_bars_with_summary(source, window.start, window.end)
    n_partitions = len(cal.expected_bars(window.start, window.end))  # one partition per calendar bar
    metadata: dict = {"source": source, "bars": len(raw), "partitions": n_partitions}
    parse_errors = int(raw["parse_error"].notna().sum())
    metadata["parse_errors"] = parse_errors
    if summary.get("source_tz") is not None or source.startswith("file:"):
        metadata["source_tz"] = summary.get("source_tz") or "as labelled"
        metadata["off_session_rows"] = int((~cal.on_session_grid(pd.DatetimeIndex(raw["time"]))).sum()) if len(raw) else 0
    if "requests" in summary:  # a remote source: its request accounting (keys named by position only)
        metadata["requests"] = summary["requests"]
        metadata["requests_per_key"] = dg.MetadataValue.json(summary["requests_per_key"])
        metadata["rate_limit_wait_seconds"] = summary["rate_limit_wait_seconds"]
        context.log.info(
            f"source={source}: {len(raw)} bars for {n_partitions} partitions in {summary['requests']} request(s) "
            f"({', '.join(f'{k}: {v}' for k, v in summary['requests_per_key'].items())})"
        )
    else:
        context.log.info(f"source={source}: {len(raw)} bars for {n_partitions} partitions")
    if parse_errors:
        context.log.warning(f"source={source}: {parse_errors} row(s) with unparseable fields kept as NaN (L1 rejects them)")
    return dg.Output(raw, metadata=metadata)
