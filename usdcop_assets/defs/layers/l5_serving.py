"""L5 serving: the agent's action for every bar, and the paper-trading ledger that turns them into fills.

- ``l5/actions_m5`` (5-minute partitions, lake + warehouse ``fact_rl_inference``): for each bar, the
  deterministic action of the model of the bar's fold (month), the position after the risk manager,
  the model version, an observation hash and the inference latency. The position held is an input of
  the next decision, so every run re-decides each session it touches *from the session's open*
  (``rl.policy.decide_session``, ~10 us a bar): the look-back input brings the session's earlier
  observations, and a one-bar realtime run, a session range and a six-year backfill store the same
  rows. Nothing after a bar is read to decide it.
- ``l5/paper_trades`` and ``l5/paper_positions`` (5-minute partitions, warehouse + lake): the actions as
  simulated fills (``rl.paper``): the decision at bar t's close fills at bar t+1's open with the
  configured costs; positions are marked at each bar's close.

Never a silent trade: a bar whose fold has no model, whose model was trained on another observation
version, or whose observation is not usable (not warm, not finite) is recorded flat with the reason
in ``fallback``; a model artifact whose bytes or weights differ from the registry's hashes (warehouse
``rl_models`` and the Dagster record of l5/ppo_model), or whose observation dimension does not match,
fails the run with an error naming both, before anything of the artifact is parsed.
"""

import dagster as dg
import numpy as np
import pandas as pd

from usdcop_assets.core.settings import Settings
from usdcop_assets.defs.keys import (
    ACTIONS,
    EXPERIMENT_SELECTION,
    L1_OHLCV,
    OBSERVATIONS,
    PAPER_POSITIONS,
    PAPER_TRADES,
    PPO_MODEL,
)
from usdcop_assets.defs.partitions import Partitions
from usdcop_assets.defs.policies import session_backfill_policy
from usdcop_assets.defs.registry import ModelStoreResource
from usdcop_assets.defs.windows import own_window, session_output
from usdcop_assets.observation.builder import load_config
from usdcop_assets.rl.costs import live_costs

# the decision itself is pure (rl/decisions.py), shared with the live process
from usdcop_assets.rl.decisions import decide_bars
from usdcop_assets.rl.paper import paper_ledger
from usdcop_assets.rl.risk import describe_flags, live_limits


def build_l5_serving_assets(parts: Partitions, settings: Settings) -> list[dg.AssetsDefinition]:
    """The serving layer (L5 actions and paper ledger) of a code location."""
    # what is traded (USDCOP_SERVE): the fold's l5/ppo_model, or the seed ensemble its selection chose
    served_key = EXPERIMENT_SELECTION if settings.training.serve == "selection" else PPO_MODEL

    @dg.asset(
        key=ACTIONS,
        ins={"observations": dg.AssetIn(OBSERVATIONS), "bars": dg.AssetIn(L1_OHLCV)},
        deps=[
            dg.AssetDep(
                served_key, partition_mapping=dg.TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True)
            )
        ],
        partitions_def=parts.session,
        backfill_policy=session_backfill_policy(settings),
        io_manager_key="serving_io_manager",
        group_name="l5_serving",
        kinds={"parquet", "sql"},
        metadata={"time_column": "time", "warehouse_table": "fact_rl_inference"},
        description="Target position in [-1, 1] per bar from its fold's PPO model (or, with USDCOP_SERVE=selection, "
        "the seed ensemble l6/experiment_selection chose), after the risk manager (flat and recorded when there is "
        "no usable model).",
    )
    def l5_actions_m5(
        context: dg.AssetExecutionContext,
        observations: pd.DataFrame,
        bars: pd.DataFrame,
        model_store: ModelStoreResource,
    ) -> dg.Output[pd.DataFrame]:
        start, end = own_window(context)
        models = model_store.registered()
        obs_config = load_config()
        actions, fallbacks = decide_bars(
            observations,
            bars,
            start,
            end,
            models,
            lambda row: model_store.policy(row, context.instance, obs_config.features),
            obs_config,
            log=context.log.warning,
            limits=live_limits(),
            costs=live_costs(),
            registry="/".join(served_key.path),
        )
        flagged = actions.loc[actions["risk_flags"] > 0, "risk_flags"] if len(actions) else pd.Series(dtype="int64")
        flag_counts: dict[str, int] = {}
        for value in flagged:
            for name in describe_flags(int(value)):
                flag_counts[name] = flag_counts.get(name, 0) + 1
        lat = actions["inference_latency_ms"].dropna() if len(actions) else pd.Series(dtype="float64")
        return session_output(
            context,
            actions,
            {
                "model_versions": dg.MetadataValue.json(
                    sorted(actions["model_version"].unique().tolist()) if len(actions) else []
                ),
                "flat_fallback_sessions": dg.MetadataValue.json(fallbacks[:50]),
                "risk_flags": dg.MetadataValue.json(flag_counts),
                "mean_abs_position": float(actions["position"].abs().mean()) if len(actions) else 0.0,
                "latency_ms_p95": float(np.percentile(lat, 95)) if len(lat) else 0.0,
                "last_position": float(actions["position"].iloc[-1]) if len(actions) else 0.0,
            },
        )

    @dg.multi_asset(
        outs={
            "paper_trades": dg.AssetOut(
                key=PAPER_TRADES,
                io_manager_key="serving_io_manager",
                kinds={"parquet", "sql"},
                metadata={"time_column": "time", "warehouse_table": "paper_trades"},
                description="Simulated fills: the decision at a bar's close filled at the next bar's open, with costs.",
            ),
            "paper_positions": dg.AssetOut(
                key=PAPER_POSITIONS,
                io_manager_key="serving_io_manager",
                kinds={"parquet", "sql"},
                metadata={"time_column": "time", "warehouse_table": "paper_positions"},
                description="The paper position per bar, marked at the bar's close: entry, unrealized and realized "
                "P&L.",
            ),
        },
        ins={"actions": dg.AssetIn(ACTIONS), "bars": dg.AssetIn(L1_OHLCV)},
        partitions_def=parts.session,
        backfill_policy=session_backfill_policy(settings),
        group_name="l5_serving",
    )
    def l5_paper_ledger(context: dg.AssetExecutionContext, actions: pd.DataFrame, bars: pd.DataFrame):
        start, end = own_window(context)
        trades, positions = paper_ledger(actions[actions["time"] < end], bars[bars["time"] < end], live_costs())
        trades = trades[(trades["time"] >= start) & (trades["time"] < end)].reset_index(drop=True)
        positions = positions[(positions["time"] >= start) & (positions["time"] < end)].reset_index(drop=True)
        yield dg.Output(
            trades,
            output_name="paper_trades",
            metadata={"fills": len(trades), "cost": float(trades["cost"].sum()) if len(trades) else 0.0},
        )
        yield session_output(
            context,
            positions,
            output_name="paper_positions",
            metadata={
                "last_position": float(positions["position"].iloc[-1]) if len(positions) else 0.0,
                "session_pnl": float(positions["session_pnl"].iloc[-1]) if len(positions) else 0.0,
            },
        )

    return [l5_actions_m5, l5_paper_ledger]
