"""L6: the backtest of the agent's actions per session, and its performance against baselines.

- ``l6/backtest_session`` (session-partitioned): the session's ``l5/actions_m5`` positions against the L4
  episodes' ``next_ret``, through ``backtest.engine.backtest_actions`` (the same costs and risk rules as
  training and live). Each session is backtested on its own (equity starts at 1 each session; sessions end
  flat so nothing carries over), so a one-session run and a range run store the same rows. A session still
  running is backtested up to the bar before its newest (whose next return is not known yet), so its rows
  never change as bars arrive.
- ``l6/performance`` (unpartitioned): every stored session backtest, the agent's metrics and the baselines'
  (``backtest.baselines.all_baselines``) on exactly the same bars through ``backtest.engine.compare``, plus
  ``buy_and_hold_held`` (long over the whole period, overnight gaps included, outside the risk rules; see
  ``backtest.baselines``) in the same metric table; rows
  to the lake and warehouse ``rl_metrics``, and a self-contained HTML report (inline SVG, no JavaScript or
  network) in the lake under ``reports/performance/<date>.html``. Beside the Sharpe, the report and the
  metadata carry the agent's deflated Sharpe ratio (N = the strategies compared) and the PBO across them
  (``backtest.overfitting.selection_statistics`` on per-session net returns; the held buy-and-hold is a reference,
  not a candidate, and is not among them).

Thin wiring only: the logic lives in ``usdcop_assets.backtest``.
"""

import dagster as dg
import numpy as np
import pandas as pd

from usdcop_assets.backtest.baselines import all_baselines, buy_and_hold_held
from usdcop_assets.backtest.engine import backtest_actions, backtest_sessions, compare
from usdcop_assets.backtest.overfitting import selection_statistics
from usdcop_assets.backtest.report import AGENT, finite_or_none, metrics_rows, report_html
from usdcop_assets.core.settings import Settings
from usdcop_assets.defs.keys import ACTIONS, BACKTEST, EPISODES, PERFORMANCE
from usdcop_assets.defs.partitions import Partitions
from usdcop_assets.defs.policies import session_backfill_policy
from usdcop_assets.defs.resources import LakeResource
from usdcop_assets.rl.costs import live_costs
from usdcop_assets.rl.risk import live_limits

REPORTS_PREFIX = "reports/performance"
HELD = "buy_and_hold_held"


# --- performance --------------------------------------------------------------------------------------


class PerformanceConfig(dg.Config):
    """Which stored session backtests to judge (ISO dates, inclusive); all of them by default."""

    first_session: str | None = None
    last_session: str | None = None


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def build_l6_assets(parts: Partitions, settings: Settings) -> list[dg.AssetsDefinition]:
    """The backtest layer (L6) of a code location."""

    @dg.asset(
        key=BACKTEST,
        ins={"actions": dg.AssetIn(ACTIONS), "episodes": dg.AssetIn(EPISODES)},
        partitions_def=parts.session,
        backfill_policy=session_backfill_policy(settings),
        io_manager_key="lake_io_manager",
        group_name="l6_backtest",
        kinds={"parquet"},
        metadata={"time_column": "time"},
        description="Simulated trades of the agent's positions per bar: trade, cost, P&L (log), session equity.",
    )
    def l6_backtest_session(
        context: dg.AssetExecutionContext, actions: pd.DataFrame, episodes: pd.DataFrame
    ) -> dg.Output[pd.DataFrame]:
        out = backtest_sessions(actions, episodes)
        return dg.Output(
            out,
            metadata={
                "bars": len(out),
                "sessions": int(out["session"].nunique()) if len(out) else 0,
                "total_log_pnl": float(out["pnl"].sum()) if len(out) else 0.0,
                "total_cost": float(out["cost"].sum()) if len(out) else 0.0,
            },
        )

    @dg.asset(
        key=PERFORMANCE,
        ins={"backtest": dg.AssetIn(BACKTEST)},
        io_manager_key="serving_io_manager",
        group_name="l6_backtest",
        kinds={"parquet", "sql", "html"},
        metadata={"warehouse_table": "rl_metrics"},
        description="Agent metrics vs baselines (flat, buy and hold intraday and held, SMA crossover) on the same "
        "bars; rl_metrics and an HTML report.",
    )
    def l6_performance(
        context: dg.AssetExecutionContext, config: PerformanceConfig, backtest: pd.DataFrame, lake: LakeResource
    ) -> dg.Output[pd.DataFrame]:
        if backtest.empty:
            raise ValueError(
                "l6/backtest_session is empty; materialize l5/actions_m5 and l6/backtest_session for some sessions "
                "first"
            )
        bt = backtest.sort_values("time", kind="stable").reset_index(drop=True)
        if config.first_session or config.last_session:
            keep = bt["session"].astype(str).between(config.first_session or "0000", config.last_session or "9999")
            bt = bt[keep].reset_index(drop=True)
            if bt.empty:
                raise ValueError(f"no stored session backtest between {config.first_session} and {config.last_session}")
        sessions = bt["session"].astype(str).to_numpy()
        next_ret = bt["next_ret"].to_numpy(dtype="float64")
        strategies = {
            AGENT: bt["position"].to_numpy(dtype="float64"),
            **all_baselines(bt["close"].to_numpy(dtype="float64"), sessions),
        }
        # buy-and-hold held overnight cannot go through the risk rules (flat at every close): simulated from the closes
        held = {HELD: buy_and_hold_held(bt["close"].to_numpy(dtype="float64"), next_ret, sessions, live_costs())}
        table = compare(
            strategies,
            next_ret,
            sessions,
            live_costs(),
            live_limits(),
            reference="buy_and_hold",
            n_boot=1000,
            seed=0,
            simulated=held,
        )
        computed_at = pd.Timestamp.now(tz="UTC").floor("s")
        rows = metrics_rows(table, bt, computed_at)

        pnls = {
            name: backtest_actions(t, next_ret, sessions, live_costs(), live_limits())["pnl"].to_numpy()
            for name, t in strategies.items()
        }
        curves = {name: np.cumsum(p) for name, p in pnls.items()} | {HELD: np.cumsum(held[HELD]["pnl"])}
        _, codes = np.unique(sessions, return_inverse=True)  # session ids are ISO dates: sorted = time order
        # the candidates are the risk-ruled strategies only: the held reference is not one the session-flat agent
        # could be
        overfit = selection_statistics({name: np.bincount(codes, weights=p) for name, p in pnls.items()}, AGENT)
        metric_date = str(rows["metric_date"].iloc[0])
        key = f"{REPORTS_PREFIX}/{metric_date}.html"
        lake.store().put(key, report_html(rows, curves, bt, overfit).encode())
        agent = rows.set_index("strategy").loc[AGENT]
        return dg.Output(
            rows,
            metadata={
                "metric_date": metric_date,
                "sessions": int(agent["sessions"]),
                "bars": int(agent["bars"]),
                "agent_sharpe": finite_or_none(agent["sharpe_ratio"]),
                "agent_total_pnl": finite_or_none(agent["total_pnl"]),
                # per-session, not annualized (agent_sharpe is the annualized bar Sharpe); None when the agent's
                # returns are degenerate
                "agent_sharpe_per_session": finite_or_none(overfit["sharpe_per_session"][AGENT]),
                "agent_deflated_sharpe": finite_or_none(overfit["deflated_sharpe"]["dsr"])
                if overfit["deflated_sharpe"]
                else None,
                "deflated_sharpe_trials": overfit["n_trials"],
                "pbo": finite_or_none(overfit["pbo"]["pbo"]) if overfit["pbo"] else None,
                "report": dg.MetadataValue.path(f"{lake.location}/{key}"),
                "metrics": dg.MetadataValue.md(rows.drop(columns=["computed_at"]).to_markdown(index=False))
                if _has_tabulate()
                else dg.MetadataValue.text(rows.drop(columns=["computed_at"]).to_string(index=False)),
            },
        )

    return [l6_backtest_session, l6_performance]
