"""L0: bars exactly as the source gave them, with ``source``, ``ingested_at`` and ``parse_error``."""

import dagster as dg
import pandas as pd

from usdcop_assets import clock
from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import Settings
from usdcop_assets.defs.partitions import Partitions
from usdcop_assets.defs.policies import session_backfill_policy, source_retry_policy
from usdcop_assets.defs.resources import BarSourceResource
from usdcop_assets.defs.windows import session_output


def build_l0_assets(parts: Partitions, settings: Settings) -> list[dg.AssetsDefinition]:
    """The bar source's layer (L0) of a code location."""

    @dg.asset(
        key=["l0", "ohlcv_m5"],
        partitions_def=parts.session,
        backfill_policy=session_backfill_policy(settings),
        retry_policy=source_retry_policy(settings),  # a vendor hiccup: 3 retries, exponential back-off (policies.py)
        io_manager_key="lake_io_manager",
        group_name="l0_raw",
        kinds={"parquet"},
        # Whole sessions are stored as whole Bogota days: rows a source stamped off-session stay in L0.
        metadata={"time_column": "time", "lake_window": "session_days"},
        description="USD/COP 5-minute bars as the source gave them (one lake object per session date).",
    )
    def l0_ohlcv_m5(context: dg.AssetExecutionContext, bar_source: BarSourceResource) -> dg.Output[pd.DataFrame]:
        source = bar_source.name()
        window = context.partition_time_window
        start, end = pd.Timestamp(window.start).tz_convert("UTC"), pd.Timestamp(window.end).tz_convert("UTC")
        # Today's session is materialized many times a day: ask only for bars closed by now, so a bar is
        # stored once it is final and a partial session is a prefix of the whole one.
        last = cal.last_closed_bar(clock.utc_now())
        fetch_end = min(end, last + pd.Timedelta(minutes=cal.BAR_MINUTES)) if last is not None else end
        # One fetch for the whole window: a range run pages the source once, not once per session.
        raw, summary = bar_source.fetch(start, max(start, fetch_end))
        n_bars = len(cal.expected_bars(start, max(start, fetch_end)))
        metadata: dict = {"source": source, "rows": len(raw), "bars_due": n_bars}
        parse_errors = int(raw["parse_error"].notna().sum())
        metadata["parse_errors"] = parse_errors
        if summary.get("source_tz") is not None or source.startswith("file:"):
            metadata["source_tz"] = summary.get("source_tz") or "as labelled"
            metadata["off_session_rows"] = (
                int((~cal.on_session_grid(pd.DatetimeIndex(raw["time"]))).sum()) if len(raw) else 0
            )
        if "requests" in summary:  # a remote source: its request accounting (keys named by position only)
            metadata["requests"] = summary["requests"]
            metadata["requests_per_key"] = dg.MetadataValue.json(summary["requests_per_key"])
            metadata["rate_limit_wait_seconds"] = summary["rate_limit_wait_seconds"]
            context.log.info(
                f"source={source}: {len(raw)} rows for {n_bars} bars due in {summary['requests']} request(s) "
                f"({', '.join(f'{k}: {v}' for k, v in summary['requests_per_key'].items())})"
            )
        else:
            context.log.info(f"source={source}: {len(raw)} rows for {n_bars} bars due")
        if parse_errors:
            context.log.warning(
                f"source={source}: {parse_errors} row(s) with unparseable fields kept as NaN (L1 rejects them)"
            )
        return session_output(context, raw, metadata)

    return [l0_ohlcv_m5]
