"""L4: the RL-ready layer. Normalization statistics (fitted on the declared training window only),
the observation vector per bar, and one training episode per session.

All three read the same versioned observation config (usdcop_assets/observation/), as do training,
inference and the backtest.
"""

import dagster as dg
import numpy as np
import pandas as pd

from usdcop_assets import market_calendar as cal
from usdcop_assets.assets.features import L3_FEATURES
from usdcop_assets.assets.indicators import L1_OHLCV
from usdcop_assets.assets.windows import own_window, session_output
from usdcop_assets.observation.builder import build_observations, fit_normalization, load_config, train_window
from usdcop_assets.partitions import session_partitions
from usdcop_assets.settings import backfill_sessions_per_run
from usdcop_assets.resources import LakeResource

OBS_STATS = dg.AssetKey(["l4", "observation_stats"])
OBSERVATIONS = dg.AssetKey(["l4", "observations_m5"])
EPISODES = dg.AssetKey(["l4", "episodes_session"])


def stats_to_frame(stats: dict) -> pd.DataFrame:
    """One row per feature (mean, std, finite rows) with the version and window on every row."""
    names = list(stats["mean"])
    frame = pd.DataFrame(
        {
            "feature": names,
            "position": np.arange(len(names)),
            "mean": [stats["mean"][n] for n in names],
            "std": [stats["std"][n] for n in names],
            "finite_rows": [stats["finite_rows"][n] for n in names],
        }
    )
    for key in ("version", "config_version", "config_sha256", "train_start", "train_end", "train_rows", "first_bar", "last_bar"):
        frame[key] = stats[key]
    return frame


def stats_from_frame(frame: pd.DataFrame) -> dict:
    if frame.empty:
        raise ValueError("l4/observation_stats is empty; materialize it (it needs l3/features_m5 over the training window)")
    first = frame.iloc[0]
    frame = frame.sort_values("position")
    stats = {k: (first[k].item() if hasattr(first[k], "item") else first[k]) for k in ("version", "config_version", "config_sha256", "train_start", "train_end", "train_rows", "first_bar", "last_bar")}
    stats["mean"] = dict(zip(frame["feature"], frame["mean"].astype(float)))
    stats["std"] = dict(zip(frame["feature"], frame["std"].astype(float)))
    stats["finite_rows"] = dict(zip(frame["feature"], frame["finite_rows"].astype(int)))
    return stats


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


def next_bar_returns(closes: pd.Series, times: pd.DatetimeIndex) -> np.ndarray:
    """log(close of the next existing bar of the same session / close); 0 at the session's last bar (the episode ends flat)."""
    close = closes.to_numpy(dtype="float64")
    days = np.asarray(times.tz_convert(cal.TZ).date)
    out = np.zeros(len(close))
    if len(close) > 1:
        same = days[1:] == days[:-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:-1] = np.where(same, np.log(close[1:] / close[:-1]), 0.0)
    return out


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
    obs = observations[(observations["time"] >= start) & (observations["time"] < end)].sort_values("time").reset_index(drop=True)
    closes = bars.set_index("time")["close"]
    times = pd.DatetimeIndex(obs["time"])
    missing_close = times.difference(closes.index)
    if len(missing_close):
        raise ValueError(f"{len(missing_close)} observations have no L1 bar (first {missing_close[0]}); re-materialize l1 then l4")
    episodes = obs.copy()
    episodes.insert(2, "session", [d.isoformat() for d in times.tz_convert(cal.TZ).date])
    episodes.insert(3, "step", episodes.groupby("session").cumcount().astype("int64"))
    episodes["close"] = closes.reindex(times).to_numpy(dtype="float64")
    episodes["next_ret"] = next_bar_returns(episodes["close"], times)
    episodes["is_last"] = episodes["session"].ne(episodes["session"].shift(-1)).to_numpy()
    sessions = episodes["session"].nunique() if len(episodes) else 0
    return dg.Output(
        episodes,
        metadata={"sessions": int(sessions), "steps": len(episodes), "warm_steps": int(episodes["warm"].sum()) if len(episodes) else 0},
    )
