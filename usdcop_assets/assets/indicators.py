"""L2: technical indicators of the clean bars, each on its session-anchored look-back.

The look-back is loaded from earlier L1 partitions through a ``TimeWindowPartitionMapping``
(``LOOKBACK_BARS`` partitions back: offsets count bar partitions, so nights, weekends and holidays
are jumped), so a one-bar realtime run and a six-year backfill feed ``compute_indicators`` the same
window for every bar and store the same bits (usdcop_assets/features/indicators.py).
"""

import dagster as dg
import pandas as pd

from usdcop_assets import market_calendar as cal
from usdcop_assets.features.indicators import LOOKBACK_SESSIONS, compute_indicators
from usdcop_assets.partitions import bar_partitions

L1_OHLCV = dg.AssetKey(["l1", "ohlcv_m5"])
L2_INDICATORS = dg.AssetKey(["l2", "indicators_m5"])
# The window of bar t starts at the open of the session LOOKBACK_SESSIONS-1 sessions before t's:
# at most LOOKBACK_SESSIONS*60-1 bars earlier.
LOOKBACK_BARS = LOOKBACK_SESSIONS * cal.BARS_PER_SESSION


def lookback_input(key: dg.AssetKey, bars: int = LOOKBACK_BARS) -> dg.AssetIn:
    return dg.AssetIn(
        key,
        partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-bars, allow_nonexistent_upstream_partitions=True),
    )


def own_window(context) -> tuple[pd.Timestamp, pd.Timestamp]:
    tw = context.partition_time_window
    return pd.Timestamp(tw.start).tz_convert("UTC"), pd.Timestamp(tw.end).tz_convert("UTC")


def complete_from(bars: pd.DataFrame) -> pd.Timestamp | None:
    """From when the loaded bars are taken as complete: the open of the first loaded session.

    Sessions before it (not materialized, or before the history) are unknown, so windows reaching
    into them are flagged ``warm=False``; a bar missing *inside* a loaded session is a vendor gap and
    the indicators are computed on the rows that exist.
    """
    if bars.empty:
        return None
    first = pd.Timestamp(bars["time"].min()).tz_convert(cal.TZ).date()
    return cal.session_open(first)


@dg.asset(
    key=L2_INDICATORS,
    ins={"bars": lookback_input(L1_OHLCV)},
    partitions_def=bar_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="serving_io_manager",
    group_name="l2_indicators",
    kinds={"parquet", "sql"},
    metadata={"time_column": "time", "warehouse_table": "usdcop_m5_indicators"},
    description="EMA 20/50, SMA 10/20, RSI 14, MACD 12/26/9, Bollinger 20/2, ATR 14 (ta) per bar, session-anchored look-back.",
)
def l2_indicators_m5(context: dg.AssetExecutionContext, bars: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    start, end = own_window(context)
    times = pd.DatetimeIndex(bars["time"]) if len(bars) else pd.DatetimeIndex([], tz="UTC")
    targets = times[(times >= start) & (times < end)]
    if len(targets) == 0:  # a window the source had no bar for: nothing to compute, nothing invented
        out = _empty()
    else:
        out = compute_indicators(bars, targets=targets, data_start=complete_from(bars))
    cold = int((~out["warm"]).sum()) if len(out) else 0
    return dg.Output(
        out,
        metadata={"bars": len(out), "lookback_bars_loaded": len(bars) - len(out), "not_warm": cold, "lookback_sessions": LOOKBACK_SESSIONS},
    )


def _empty() -> pd.DataFrame:
    from usdcop_assets.features.indicators import INDICATOR_COLUMNS, OUTPUT_COLUMNS

    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in OUTPUT_COLUMNS})
    return frame.astype({"time": "datetime64[ns, UTC]", "symbol": "str", "warm": "bool", "lookback_start": "datetime64[ns, UTC]", **{c: "float64" for c in INDICATOR_COLUMNS}})
