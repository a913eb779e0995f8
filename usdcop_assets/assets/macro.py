"""L0: daily macro observations in long form, as the source(s) gave them (``l0/macro_daily``).

Thin on purpose: the source choice, reading and conforming live in ``usdcop_assets.sources.macro``.
(No ``from __future__ import annotations`` here: Dagster inspects the context annotation at runtime.)
"""

import datetime as dt
import os

import dagster as dg
import pandas as pd

from usdcop_assets import market_calendar as cal
from usdcop_assets.partitions import MACRO_WARMUP_DAYS, macro_partitions  # noqa: F401 (re-exported)
from usdcop_assets.sources.macro import FRED_KEY_ENV, fetch_macro, resolve_macro_source, source_label

# Daily windows are Bogota calendar days [00:00, 24:00) starting MACRO_WARMUP_DAYS before the bar
# history (partitions.py): each holds exactly the rows of its date (their ``time`` is 00:00 Bogota).


def _window_dates(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    window = context.partition_time_window
    first = pd.Timestamp(window.start).tz_convert(cal.TZ).date()
    last = (pd.Timestamp(window.end) - pd.Timedelta(1, "ns")).tz_convert(cal.TZ).date()
    return first, last


@dg.asset(
    key=["l0", "macro_daily"],
    partitions_def=macro_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="lake_io_manager",
    group_name="l0_raw",
    kinds={"parquet"},
    metadata={"time_column": "time"},
    description="Daily macro observations in long form as the source(s) gave them (one lake object per date).",
)
def l0_macro_daily(context: dg.AssetExecutionContext) -> dg.Output[pd.DataFrame]:
    specs = resolve_macro_source()
    labels = [source_label(s) for s in specs]
    first, last = _window_dates(context)
    context.log.info(f"macro source(s): {', '.join(labels)} for {first}..{last}")
    metadata: dict = {}
    if not (os.environ.get(FRED_KEY_ENV) or "").strip():
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
