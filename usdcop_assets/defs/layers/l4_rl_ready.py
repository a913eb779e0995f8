"""L4: the RL-ready layer. Monthly point-in-time normalization statistics, the observation vector per
bar, and one training episode per session.

All three read the same versioned observation config (usdcop_assets/observation/), as do training,
inference and the backtest. Month M's statistics are fitted on data before M only (the rule and why:
docs/decisions/0003-observation-normalization.md); a session's observations use its month's.
"""

import dagster as dg
import pandas as pd

from usdcop_assets import clock
from usdcop_assets.core.settings import Settings
from usdcop_assets.defs.keys import EPISODES, L1_OHLCV, L3_FEATURES, OBS_STATS, OBSERVATIONS
from usdcop_assets.defs.partitions import Partitions
from usdcop_assets.defs.policies import session_backfill_policy
from usdcop_assets.defs.resources import LakeResource
from usdcop_assets.defs.windows import own_window, session_output
from usdcop_assets.observation.builder import (
    TRAILING,
    build_observations,
    load_config,
    obs_version,
    stats_from_frame,
    stats_to_frame,
)
from usdcop_assets.observation.episodes import build_episodes, pending_steps
from usdcop_assets.observation.normalization import fit_months, old_statistics_note, read_span


def _fit_mapping() -> dg.PartitionMapping:
    """Lineage of a month's statistics: the sessions of its trailing months (the declared rule: all sessions)."""
    try:
        config = load_config()
    except ValueError:  # a broken config fails the run with its message, not the code location's load
        config = None
    if config is not None and config.rule != TRAILING:
        return dg.AllPartitionMapping()
    months = config.months if config is not None else 12
    return dg.TimeWindowPartitionMapping(
        start_offset=-months, end_offset=-1, allow_nonexistent_upstream_partitions=True
    )


def build_l4_assets(parts: Partitions, settings: Settings) -> list[dg.AssetsDefinition]:
    """The RL-ready layer (L4) of a code location: statistics, observations, episodes."""

    @dg.asset(
        key=OBS_STATS,
        deps=[dg.AssetDep(L3_FEATURES, partition_mapping=_fit_mapping())],
        partitions_def=parts.month,
        backfill_policy=dg.BackfillPolicy.single_run(),
        io_manager_key="lake_io_manager",
        group_name="l4_rl_ready",
        kinds={"parquet"},
        metadata={"time_column": "time"},
        description="Normalization statistics of the observation features per month, fitted only on the warm L3 bars "
        "before the month (trailing 12 months by default); unfitted, with the reason, when they are too few.",
    )
    def l4_observation_stats(context: dg.AssetExecutionContext, lake: LakeResource) -> pd.DataFrame:
        config = load_config()
        months = sorted(context.partition_keys)
        features = lake.table("/".join(L3_FEATURES.path)).read(*read_span(config, months))
        stats = fit_months(features, config, months)
        for s in stats:
            md = {
                "fitted": s["fitted"],
                "stats_version": s["stats_version"],
                "obs_version": s["obs_version"],
                "rule": config.rule_text(),
                "fit_window": f"{s['window_start']}..{s['window_end']}",
                "train_rows": s["train_rows"],
                "min_train_bars": config.min_train_bars,
                "dimension": config.dim,
            }
            if not s["fitted"]:
                md["reason"] = s["reason"]
                md["bars_needed"] = max(config.min_train_bars - s["train_rows"], 0)
            context.add_asset_metadata(md, partition_key=s["month"])
            context.log.info(
                f"{s['month']}: {s['stats_version']} from {s['train_rows']} warm bars "
                f"{s['window_start']}..{s['window_end']}" + (f" (not fitted: {s['reason']})" if not s["fitted"] else "")
            )
        return stats_to_frame(stats)

    @dg.asset(
        key=OBSERVATIONS,
        ins={
            "features": dg.AssetIn(L3_FEATURES),
            # a session reads its month's statistics (a session of a month not listed yet reads none: not warm)
            "stats": dg.AssetIn(
                OBS_STATS, partition_mapping=dg.TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True)
            ),
        },
        partitions_def=parts.session,
        backfill_policy=session_backfill_policy(settings),
        io_manager_key="lake_io_manager",
        group_name="l4_rl_ready",
        kinds={"parquet"},
        metadata={"time_column": "time"},
        description="Normalized, clipped observation vector per bar (config order), with the config's obs_version, its "
        "month's "
        "stats_version, the NaN/Inf count and, for a bar not warm, why.",
    )
    def l4_observations_m5(
        context: dg.AssetExecutionContext, lake: LakeResource, features: pd.DataFrame, stats: pd.DataFrame
    ) -> dg.Output[pd.DataFrame]:
        config = load_config()
        out = build_observations(features, config, stats_from_frame(stats))
        cold = out[~out["warm"]] if len(out) else out
        md = {
            "obs_version": obs_version(config),
            "stats_versions": sorted(set(out["stats_version"].dropna())) if len(out) else [],
            "dimension": config.dim,
            "non_finite_values_zeroed": int(out["non_finite"].sum()) if len(out) else 0,
            "clipped_values": int((out[config.columns].abs() >= config.clip).to_numpy().sum()) if len(out) else 0,
            "not_warm_bars": len(cold),
        }
        missing = (
            out["cold_reason"].str.contains("is not materialized", regex=False).fillna(False).to_numpy()
            if len(out)
            else []
        )
        if len(out) and missing.any() and (note := old_statistics_note(lake.store())):
            context.log.warning(note)
            md["old_statistics"] = note
        if len(cold):
            md["not_warm_reasons"] = dg.MetadataValue.json(
                {str(k): int(v) for k, v in cold["cold_reason"].value_counts().items()}
            )
        return session_output(context, out, md)

    @dg.asset(
        key=EPISODES,
        ins={"observations": dg.AssetIn(OBSERVATIONS), "bars": dg.AssetIn(L1_OHLCV)},
        partitions_def=parts.session,
        backfill_policy=session_backfill_policy(settings),
        io_manager_key="lake_io_manager",
        group_name="l4_rl_ready",
        kinds={"parquet"},
        metadata={"time_column": "time"},
        description="One training episode per session: observations in bar order with the next-bar log return.",
    )
    def l4_episodes_session(
        context: dg.AssetExecutionContext, observations: pd.DataFrame, bars: pd.DataFrame
    ) -> dg.Output[pd.DataFrame]:
        start, end = own_window(context)
        episodes = build_episodes(observations, bars, start, end)
        # Today's session, mid-day: its newest step waits for the next bar (its next_ret and is_last are not
        # known yet), so every stored step is final and rows never change as the session's bars arrive.
        pending = pending_steps(pd.DatetimeIndex(episodes["time"]), clock.utc_now())
        episodes = episodes[~pending].reset_index(drop=True)
        sessions = episodes["session"].nunique() if len(episodes) else 0
        return dg.Output(
            episodes,
            metadata={
                "sessions": int(sessions),
                "steps": len(episodes),
                "warm_steps": int(episodes["warm"].sum()) if len(episodes) else 0,
                "pending_steps": int(pending.sum()),
            },
        )

    return [l4_observation_stats, l4_observations_m5, l4_episodes_session]
