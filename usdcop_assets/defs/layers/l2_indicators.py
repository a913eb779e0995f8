"""L2: technical indicators of the clean bars, each on its session-anchored look-back.

The look-back is loaded from the ``LOOKBACK_SESSIONS - 1`` earlier L1 session partitions (a session
offset: nights, weekends and holidays are jumped), so a partial session materialized mid-day, a
one-session run and a six-year backfill feed ``compute_indicators`` the same window for every bar and
store the same bits (usdcop_assets/features/indicators.py).
"""

import dagster as dg
import pandas as pd

from usdcop_assets.core.settings import Settings
from usdcop_assets.defs.keys import L1_OHLCV, L2_INDICATORS
from usdcop_assets.defs.partitions import Partitions
from usdcop_assets.defs.policies import session_backfill_policy
from usdcop_assets.defs.windows import complete_from, lookback_input, own_window, session_output
from usdcop_assets.features.indicators import LOOKBACK_SESSIONS, compute_indicators


def _empty() -> pd.DataFrame:
    from usdcop_assets.features.indicators import INDICATOR_COLUMNS, OUTPUT_COLUMNS

    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in OUTPUT_COLUMNS})
    return frame.astype(
        {
            "time": "datetime64[ns, UTC]",
            "symbol": "str",
            "warm": "bool",
            "lookback_start": "datetime64[ns, UTC]",
            **{c: "float64" for c in INDICATOR_COLUMNS},
        }
    )


def build_l2_assets(parts: Partitions, settings: Settings) -> list[dg.AssetsDefinition]:
    """The indicator layer (L2) of a code location."""

    @dg.asset(
        key=L2_INDICATORS,
        ins={"bars": lookback_input(L1_OHLCV, LOOKBACK_SESSIONS - 1)},
        partitions_def=parts.session,
        backfill_policy=session_backfill_policy(settings),
        io_manager_key="serving_io_manager",
        group_name="l2_indicators",
        kinds={"parquet", "sql"},
        metadata={"time_column": "time", "warehouse_table": "usdcop_m5_indicators"},
        description="EMA 20/50, SMA 10/20, RSI 14, MACD 12/26/9, Bollinger 20/2, ATR 14 (ta) per bar, session-anchored "
        "look-back.",
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
        return session_output(
            context,
            out,
            {"lookback_bars_loaded": len(bars) - len(out), "not_warm": cold, "lookback_sessions": LOOKBACK_SESSIONS},
        )

    return [l2_indicators_m5]
