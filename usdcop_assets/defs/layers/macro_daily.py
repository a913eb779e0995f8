"""L0: daily macro observations in long form, as the source(s) gave them (``l0/macro_daily``).

Thin on purpose: the source choice, reading and conforming live in ``usdcop_assets.sources.macro_sources``.
(No ``from __future__ import annotations`` here: Dagster inspects the context annotation at runtime.)
"""

import datetime as dt

import dagster as dg
import pandas as pd

from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import Settings
from usdcop_assets.defs.partitions import Partitions
from usdcop_assets.defs.policies import source_retry_policy
from usdcop_assets.defs.resources import MacroSourceResource
from usdcop_assets.sources.macro_sources import FRED_KEY_ENV, fetch_macro, source_label

# Daily windows are Bogota calendar days [00:00, 24:00) starting MACRO_WARMUP_DAYS before the bar
# history (partitions.py): each holds exactly the rows of its date (their ``time`` is 00:00 Bogota).


def _window_dates(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    window = context.partition_time_window
    first = pd.Timestamp(window.start).tz_convert(cal.TZ).date()
    last = (pd.Timestamp(window.end) - pd.Timedelta(1, "ns")).tz_convert(cal.TZ).date()
    return first, last


# --- L1 ---------------------------------------------------------------------------------------------

# Calendar days of L0 read before the window: the source choice and the stale detection look back
# this far (>= the default 5 business days of the stale rule plus a weekend and a holiday or two).
MACRO_L1_LOOKBACK_DAYS = 10


def build_macro_assets(parts: Partitions, settings: Settings) -> list[dg.AssetsDefinition]:
    """The daily macro layers (l0/macro_daily, l1/macro_daily) of a code location."""

    @dg.asset(
        key=["l0", "macro_daily"],
        partitions_def=parts.macro,
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=source_retry_policy(settings),  # a vendor hiccup: 3 retries, exponential back-off (policies.py)
        io_manager_key="lake_io_manager",
        group_name="l0_raw",
        kinds={"parquet"},
        metadata={"time_column": "time"},
        description="Daily macro observations in long form as the source(s) gave them (one lake object per date).",
    )
    def l0_macro_daily(context: dg.AssetExecutionContext, macro_source: MacroSourceResource) -> dg.Output[pd.DataFrame]:
        specs = macro_source.specs(bool(settings.sources.fred_key))  # the settings this asset was built with
        labels = [source_label(s) for s in specs]
        first, last = _window_dates(context)
        context.log.info(f"macro source(s): {', '.join(labels)} for {first}..{last}")
        metadata: dict = {}
        if not settings.sources.fred_key:
            # Said in the run log *and* on the materialization, so nobody mistakes these values for FRED's.
            note = f"{FRED_KEY_ENV} is not set: the macro layer uses {', '.join(labels)} data instead of FRED"
            context.log.warning(note)
            metadata["fred"] = note
        # One fetch for the whole window: a range run reads each source once (FRED: one request per series).
        frame, summary = fetch_macro(specs, first, last)
        metadata.update(
            source=", ".join(summary["sources"]),
            rows=summary["rows"],
            series=summary["series"],
            rows_per_source=dg.MetadataValue.json(summary["rows_per_source"]),
            parse_errors=summary["parse_errors"],
            unmapped_series=summary["unmapped_series"],
            first_date=first.isoformat(),
            last_date=last.isoformat(),
        )
        if "requests" in summary:
            metadata["requests"] = summary["requests"]
        context.log.info(
            f"macro: {summary['rows']} rows of {summary['series']} series "
            f"({', '.join(f'{k}: {v}' for k, v in summary['rows_per_source'].items()) or 'no rows'})"
            + (f" in {summary['requests']} FRED request(s)" if "requests" in summary else "")
        )
        if summary["parse_errors"]:
            context.log.warning(f"macro: {summary['parse_errors']} cell(s) did not parse; kept as NaN with parse_error")
        return dg.Output(frame, metadata=metadata)

    @dg.asset(
        key=["l1", "macro_daily"],
        partitions_def=parts.macro,
        backfill_policy=dg.BackfillPolicy.single_run(),
        io_manager_key="serving_io_manager",
        group_name="l1_standardized",
        kinds={"parquet", "sql"},
        ins={
            "raw": dg.AssetIn(
                ["l0", "macro_daily"],
                partition_mapping=dg.TimeWindowPartitionMapping(
                    start_offset=-MACRO_L1_LOOKBACK_DAYS,
                    allow_nonexistent_upstream_partitions=True,  # the first days have no look-back
                ),
            )
        },
        metadata={"time_column": "time", "warehouse_table": "macro_indicators_daily"},
        description=(
            "Daily macro, wide: one value column per catalog indicator with the UTC instant it became known "
            "(<indicator>_known_at) and its source; one source per indicator; never forward-filled."
        ),
    )
    def l1_macro_daily(context: dg.AssetExecutionContext, raw: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        from usdcop_assets.refine.macro import MAX_LISTED_REJECTS, refine_macro

        lag = settings.macro.lag_business_days
        stale_after = settings.macro.stale_business_days
        first, last = _window_dates(context)
        wide, report = refine_macro(
            raw, lag_business_days=lag, first_date=first, last_date=last, stale_after_business_days=stale_after
        )
        chosen = {k: v for k, v in report["chosen_source"].items() if v is not None}
        if report["stale_indicators"]:
            stale = ", ".join(f"{k} (last {v or 'none in look-back'})" for k, v in report["stale_indicators"].items())
            context.log.warning(f"macro stale (no value for > {stale_after} business days up to {last}): {stale}")
        if report["rejected_values"]:
            context.log.warning(
                f"macro: {report['rejected_values']} impossible value(s) set to NaN (listed in metadata)"
            )
        metadata = {
            "rows": report["rows"],
            "first_date": first.isoformat(),
            "last_date": last.isoformat(),
            "indicators_present": dg.MetadataValue.json(report["indicators_present"]),
            "chosen_source": dg.MetadataValue.json(chosen),
            "candidate_sources": dg.MetadataValue.json({k: v for k, v in report["candidate_sources"].items() if v}),
            "stale_indicators": dg.MetadataValue.json(report["stale_indicators"]),
            "rejected_values": report["rejected_values"],
            "rejected": dg.MetadataValue.json(report["rejected"][:MAX_LISTED_REJECTS]),
            "missing_values": report["missing_values"],
            "lag_business_days": lag,
            "stale_after_business_days": stale_after,
            "lookback_days": MACRO_L1_LOOKBACK_DAYS,
            "l0_rows_read": report["rows_in"],
            "l0_rows_used": report["rows_used"],
            "l0_rows_not_chosen": report["rows_not_chosen"],
            "l0_rows_unmapped": report["rows_unmapped"],
            "l0_rows_lookback": report["rows_outside_window"],
            "l0_rows_duplicate": report["rows_duplicate"],
            "unmapped_series": len(report["unmapped_series"]),
        }
        return dg.Output(wide, metadata=metadata)

    return [l0_macro_daily, l1_macro_daily]
