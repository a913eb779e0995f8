"""L4: the RL-ready layer. Normalization statistics (fitted on the declared training window only),
the observation vector per bar, and one training episode per session.

All three read the same versioned observation config (usdcop_assets/observation/), as do training,
inference and the backtest.
"""

import dagster as dg
import pandas as pd

from usdcop_assets.defs.keys import EPISODES, OBSERVATIONS, OBS_STATS  # noqa: F401 (re-exported)
from usdcop_assets import clock
from usdcop_assets.defs.keys import L3_FEATURES
from usdcop_assets.defs.keys import L1_OHLCV
from usdcop_assets.defs.windows import own_window, session_output
from usdcop_assets.observation.builder import build_observations, fit_normalization, load_config, stats_from_frame, stats_to_frame, train_window
from usdcop_assets.observation.episodes import build_episodes, next_bar_returns, pending_steps  # noqa: F401 (re-exported)
from usdcop_assets.defs.partitions import session_partitions
from usdcop_assets.settings import backfill_sessions_per_run
from usdcop_assets.defs.resources import LakeResource



@dg.asset(
    key=OBS_STATS,
    deps=[L3_FEATURES],
    io_manager_key="lake_io_manager",
    group_name="l4_rl_ready",
    kinds={"parquet"},
    description="Normalization statistics of the observation features, from the config's declared training window only.",
)
def l4_observation_stats(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.Output[pd.DataFrame]:
    config = load_config()
    start, end = train_window(config)
    features = lake.table("/".join(L3_FEATURES.path)).read(start, end)
    stats = fit_normalization(features, config)
    context.log.info(f"{stats['version']}: fitted on {stats['train_rows']} warm bars {config.train_start}..{config.train_end}")
    return dg.Output(
        stats_to_frame(stats),
        metadata={
            "version": stats["version"],
            "config_version": config.version,
            "train_window": f"{config.train_start}..{config.train_end}",
            "train_rows": stats["train_rows"],
            "dimension": config.dim,
        },
    )


@dg.asset(
    key=OBSERVATIONS,
    ins={"features": dg.AssetIn(L3_FEATURES), "stats": dg.AssetIn(OBS_STATS)},
    partitions_def=session_partitions,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=backfill_sessions_per_run()),
    io_manager_key="lake_io_manager",
    group_name="l4_rl_ready",
    kinds={"parquet"},
    metadata={"time_column": "time"},
    description="Normalized, clipped observation vector per bar (config order), with its version and NaN/Inf count.",
)
def l4_observations_m5(context: dg.AssetExecutionContext, features: pd.DataFrame, stats: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    config = load_config()
    fitted = stats_from_frame(stats)
    out = build_observations(features, config, fitted)
    return session_output(
        context,
        out,
        {
            "obs_version": fitted["version"],
            "dimension": config.dim,
            "non_finite_values_zeroed": int(out["non_finite"].sum()) if len(out) else 0,
            "clipped_values": int((out[config.columns].abs() >= config.clip).to_numpy().sum()) if len(out) else 0,
        },
    )


@dg.asset(
    key=EPISODES,
    ins={"observations": dg.AssetIn(OBSERVATIONS), "bars": dg.AssetIn(L1_OHLCV)},
    partitions_def=session_partitions,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=backfill_sessions_per_run()),
    io_manager_key="lake_io_manager",
    group_name="l4_rl_ready",
    kinds={"parquet"},
    metadata={"time_column": "time"},
    description="One training episode per session: observations in bar order with the next-bar log return.",
)
def l4_episodes_session(context: dg.AssetExecutionContext, observations: pd.DataFrame, bars: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    start, end = own_window(context)
    episodes = build_episodes(observations, bars, start, end)
    # Today's session, mid-day: its newest step waits for the next bar (its next_ret and is_last are not
    # known yet), so every stored step is final and rows never change as the session's bars arrive.
    pending = pending_steps(pd.DatetimeIndex(episodes["time"]), clock.utc_now())
    episodes = episodes[~pending].reset_index(drop=True)
    sessions = episodes["session"].nunique() if len(episodes) else 0
    return dg.Output(
        episodes,
        metadata={"sessions": int(sessions), "steps": len(episodes), "warm_steps": int(episodes["warm"].sum()) if len(episodes) else 0,
                  "pending_steps": int(pending.sum())},
    )
