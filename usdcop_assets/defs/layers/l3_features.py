"""L3: model features per bar, from L1 bars (look-back), L2 indicators and point-in-time macro.

Macro values come from ``l1/macro_daily`` (daily partitions) read straight from the lake over the
z-score window before the bars: a bar only sees values whose ``<indicator>_known_at`` is strictly
before it (``macro_zscores``). Without macro data for the window the macro features are NaN, which
the observation config turns into 0 and counts.
"""

import dagster as dg
import pandas as pd

from usdcop_assets.core.settings import Settings
from usdcop_assets.defs.keys import L1_MACRO, L1_OHLCV, L2_INDICATORS, L3_FEATURES
from usdcop_assets.defs.partitions import Partitions
from usdcop_assets.defs.policies import session_backfill_policy
from usdcop_assets.defs.resources import LakeResource
from usdcop_assets.defs.windows import lookback_input, own_window, session_output
from usdcop_assets.features.engineering import (
    FEATURE_LOOKBACK_SESSIONS,
    MACRO_LOOKBACK_DAYS,
    build_features,
    macro_daily_frame,
    macro_zscores,
)


def build_l3_assets(parts: Partitions, settings: Settings) -> list[dg.AssetsDefinition]:
    """The feature layer (L3) of a code location."""

    @dg.asset(
        key=L3_FEATURES,
        ins={"bars": lookback_input(L1_OHLCV, FEATURE_LOOKBACK_SESSIONS), "indicators": dg.AssetIn(L2_INDICATORS)},
        deps=[L1_MACRO],
        partitions_def=parts.session,
        backfill_policy=session_backfill_policy(settings),
        io_manager_key="lake_io_manager",
        group_name="l3_features",
        kinds={"parquet"},
        metadata={"time_column": "time"},
        description="Returns, volatility, indicator-derived and time features, point-in-time macro z-scores, per bar.",
    )
    def l3_features_m5(
        context: dg.AssetExecutionContext, lake: LakeResource, bars: pd.DataFrame, indicators: pd.DataFrame
    ) -> dg.Output[pd.DataFrame]:
        start, end = own_window(context)
        targets = pd.DatetimeIndex(indicators["time"]) if len(indicators) else pd.DatetimeIndex([], tz="UTC")
        wide = lake.table("/".join(L1_MACRO.path)).read(start - pd.Timedelta(days=MACRO_LOOKBACK_DAYS), end)
        daily = macro_daily_frame(wide)
        out = build_features(bars, indicators, macro_pit=macro_zscores(daily, targets), targets=targets)
        macro_cols = [c for c in out.columns if c.startswith("macro_")]
        missing_macro = int(out[macro_cols].isna().all(axis=1).sum()) if len(out) else 0
        if len(out) and daily.empty:
            context.log.warning(
                "l1/macro_daily has no values before these bars: macro features are NaN (materialize l1/macro_daily)"
            )
        return session_output(
            context,
            out,
            {
                "features": len(out.columns) - 3,
                "not_warm": int((~out["warm"]).sum()) if len(out) else 0,
                "bars_without_macro": missing_macro,
                "macro_days_loaded": int(len(wide)),
            },
        )

    return [l3_features_m5]
