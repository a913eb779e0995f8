"""L6: the backtest of the agent's actions per session, and its performance against baselines.

- ``l6/backtest_session`` (session-partitioned): the session's ``l5/actions_m5`` positions against the L4
  episodes' ``next_ret``, through ``backtest.engine.backtest_actions`` (the same costs and risk rules as
  training and live). Each session is backtested on its own (equity starts at 1 each session; sessions end
  flat so nothing carries over), so a one-session run and a range run store the same rows. A session still
  running is backtested up to the bar before its newest (whose next return is not known yet), so its rows
  never change as bars arrive.
- ``l6/performance`` (unpartitioned): every stored session backtest, the agent's metrics and the baselines'
  (``backtest.baselines.all_baselines``) on exactly the same bars through ``backtest.engine.compare``; rows
  to the lake and warehouse ``rl_metrics``, and a self-contained HTML report (inline SVG, no JavaScript or
  network) in the lake under ``reports/performance/<date>.html``. Beside the Sharpe, the report and the
  metadata carry the agent's deflated Sharpe ratio (N = the strategies compared) and the PBO across them
  (``backtest.overfitting.selection_statistics`` on per-session net returns).

Thin wiring only: the logic lives in ``usdcop_assets.backtest``.
"""

import html
import math

import dagster as dg
import numpy as np
import pandas as pd

from usdcop_assets.defs.keys import BACKTEST, PERFORMANCE  # noqa: F401 (re-exported)
from usdcop_assets import clock
from usdcop_assets.trading.live import live_costs, live_limits
from usdcop_assets.defs.keys import ACTIONS
from usdcop_assets.defs.keys import EPISODES
from usdcop_assets.observation.episodes import pending_steps
from usdcop_assets.backtest.baselines import all_baselines
from usdcop_assets.backtest.engine import backtest_actions, compare
from usdcop_assets.backtest.overfitting import selection_statistics
from usdcop_assets.defs.partitions import session_partitions
from usdcop_assets.defs.resources import LakeResource
from usdcop_assets.defs.policies import session_backfill_policy

AGENT = "ppo"
REPORTS_PREFIX = "reports/performance"

BACKTEST_COLUMNS = ["time", "symbol", "session", "step", "target", "position", "trade", "cost", "gross", "pnl", "equity",
                    "risk_flags", "next_ret", "close", "model_version"]


def backtest_sessions(actions: pd.DataFrame, episodes: pd.DataFrame) -> pd.DataFrame:
    """Per-bar backtest of the actions' positions, each session on its own (see the module docstring)."""
    if actions.empty:
        return pd.DataFrame(columns=BACKTEST_COLUMNS)
    bars = actions.merge(episodes[["time", "next_ret", "close", "is_last"]], on="time", how="left", validate="one_to_one")
    bars = bars.sort_values("time", kind="stable").reset_index(drop=True)
    # the newest bar of a session still running has no episode step yet (its next return is unknown): backtested once it has
    pending = bars["next_ret"].isna().to_numpy() & pending_steps(pd.DatetimeIndex(bars["time"]), clock.utc_now())
    bars = bars[~pending].reset_index(drop=True)
    if bars.empty:
        return pd.DataFrame(columns=BACKTEST_COLUMNS)
    missing = bars["next_ret"].isna()
    if missing.any():
        raise ValueError(f"{int(missing.sum())} action bars have no l4/episodes_session row (first {bars.loc[missing, 'time'].iloc[0]})")
    parts = []
    for _, frame in bars.groupby("session", sort=True):
        sessions = frame["session"].astype(str).to_numpy()
        bt = backtest_actions(frame["position"].to_numpy(dtype="float64"), frame["next_ret"].to_numpy(dtype="float64"), sessions,
                              live_costs(), live_limits(), is_last=frame["is_last"].to_numpy(dtype=bool))
        out = frame[["time", "symbol", "session", "step", "next_ret", "close", "model_version"]].reset_index(drop=True)
        for c in ("position", "trade", "cost", "gross", "pnl", "equity", "risk_flags"):
            out[c] = bt[c].to_numpy()
        out["target"] = frame["target"].to_numpy(dtype="float64")  # the policy's raw action, for reference
        parts.append(out)
    result = pd.concat(parts, ignore_index=True)[BACKTEST_COLUMNS]
    result["risk_flags"] = result["risk_flags"].astype("int64")
    return result


@dg.asset(
    key=BACKTEST,
    ins={"actions": dg.AssetIn(ACTIONS), "episodes": dg.AssetIn(EPISODES)},
    partitions_def=session_partitions,
    backfill_policy=session_backfill_policy(),
    io_manager_key="lake_io_manager",
    group_name="l6_backtest",
    kinds={"parquet"},
    metadata={"time_column": "time"},
    description="Simulated trades of the agent's positions per bar: trade, cost, P&L (log), session equity.",
)
def l6_backtest_session(context: dg.AssetExecutionContext, actions: pd.DataFrame, episodes: pd.DataFrame) -> dg.Output[pd.DataFrame]:
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


# --- performance --------------------------------------------------------------------------------------


def _finite(v):
    return float(v) if v is not None and isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(float(v)) else None


def metrics_rows(table: pd.DataFrame, bt: pd.DataFrame, computed_at: pd.Timestamp) -> pd.DataFrame:
    """``compare`` output -> ``rl_metrics`` rows (the seed system's columns, plus strategy and the rest)."""
    sessions = bt["session"].astype(str)
    symbol = str(bt["symbol"].iloc[0])
    versions = ",".join(sorted(bt["model_version"].astype(str).unique()))
    rows = []
    for r in table.to_dict("records"):
        rows.append({
            "metric_date": sessions.max(), "symbol": symbol, "strategy": r["strategy"], "first_session": sessions.min(),
            "bars": int(r["bars"]), "sessions": int(r["sessions"]),
            "win_rate": _finite(r["win_rate"]), "sharpe_ratio": _finite(r["sharpe"]), "sortino_ratio": _finite(r["sortino"]),
            "max_drawdown": _finite(r["max_drawdown"]), "total_trades": int(r["n_trades"]), "total_pnl": _finite(r["total_log_return"]),
            "total_return": _finite(r["total_return"]), "annualized_return": _finite(r["annualized_return"]),
            "volatility": _finite(r["volatility"]), "sharpe_session": _finite(r["sharpe_session"]), "calmar": _finite(r["calmar"]),
            "profit_factor": _finite(r["profit_factor"]), "avg_holding_bars": _finite(r["avg_holding_bars"]),
            "turnover": _finite(r["turnover"]), "exposure": _finite(r["exposure"]),
            "sharpe_ci_low": _finite(r.get("sharpe_ci_low")), "sharpe_ci_high": _finite(r.get("sharpe_ci_high")),
            "sharpe_diff_vs_buy_and_hold": _finite(r.get("sharpe_diff_vs_buy_and_hold")),
            "model_versions": versions if r["strategy"] == AGENT else None,
            "computed_at": computed_at,
        })
    out = pd.DataFrame(rows)
    float_cols = [c for c in out.columns if c not in ("metric_date", "symbol", "strategy", "first_session", "bars", "sessions",
                                                       "total_trades", "model_versions", "computed_at")]
    out[float_cols] = out[float_cols].astype("float64")
    out["model_versions"] = out["model_versions"].astype("string")
    return out


def _svg_lines(series: dict[str, np.ndarray], width: int = 900, height: int = 320) -> str:
    """Cumulative log P&L per strategy as an inline SVG line chart (no plotting library needed)."""
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    values = np.concatenate([v for v in series.values() if len(v)] or [np.zeros(1)])
    lo, hi = float(min(values.min(), 0.0)), float(max(values.max(), 0.0))
    span = hi - lo or 1.0
    n = max(len(v) for v in series.values()) if series else 1
    pad = 40

    def xy(i, v):
        return pad + (width - 2 * pad) * (i / max(n - 1, 1)), pad + (height - 2 * pad) * (1 - (v - lo) / span)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<rect width="{width}" height="{height}" fill="white" stroke="#ccc"/>']
    y0 = xy(0, 0.0)[1]
    parts.append(f'<line x1="{pad}" y1="{y0:.1f}" x2="{width - pad}" y2="{y0:.1f}" stroke="#999" stroke-dasharray="4"/>')
    parts.append(f'<text x="4" y="{pad - 8}" font-size="11">{hi:.4f}</text><text x="4" y="{height - pad + 14}" font-size="11">{lo:.4f}</text>')
    for k, (name, v) in enumerate(series.items()):
        color = colors[k % len(colors)]
        pts = " ".join("{:.1f},{:.1f}".format(*xy(i, float(x))) for i, x in enumerate(v))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>')
        parts.append(f'<text x="{width - pad + 4 - 120}" y="{pad + 14 * k}" font-size="12" fill="{color}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _overfitting_html(overfit: dict | None) -> str:
    if not overfit:
        return ""
    d, p = overfit["deflated_sharpe"], overfit["pbo"]
    dsr = (f"{d['dsr']:.4f} = P(true Sharpe per session &gt; {d['sr0']:.4f}, the expected maximum of {d['n_trials']} false strategies); "
           f"Sharpe per session {d['sr']:.4f} over {d['n_obs']} sessions, PSR against 0 {d['psr_zero']:.4f}" if d else
           f"n/a ({html.escape(str(overfit.get('deflated_sharpe_error')))})")
    pbo = (f"{p['pbo']:.4f} (CSCV, {p['n_splits']} splits, {p['n_combinations']} combinations)" if p else "n/a (fewer than 2 sessions)")
    return (f"<h2>Overfitting</h2><p>Deflated Sharpe ratio of {html.escape(overfit['selected'])} (Bailey &amp; López de Prado 2014), "
            f"the {overfit['n_trials']} strategies compared as the trials: {dsr}.</p>"
            f"<p>Probability of backtest overfitting across them (Bailey, Borwein, López de Prado &amp; Zhu 2016): {pbo}.</p>")


def report_html(table: pd.DataFrame, curves: dict[str, np.ndarray], bt: pd.DataFrame, overfit: dict | None = None) -> str:
    shown = table.drop(columns=[c for c in ("computed_at",) if c in table.columns])
    if overfit and overfit["deflated_sharpe"] and "sharpe_ratio" in shown.columns:
        # the report's table only (rl_metrics keeps its columns): the DSR beside the Sharpe, on the selected strategy's row
        shown.insert(shown.columns.get_loc("sharpe_ratio") + 1, "deflated_sharpe",
                     np.where(shown["strategy"] == overfit["selected"], overfit["deflated_sharpe"]["dsr"], np.nan))
    first, last = bt["session"].min(), bt["session"].max()
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>USD/COP PPO performance</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}</style></head><body>"
        f"<h1>USD/COP PPO agent vs baselines</h1><p>Sessions {html.escape(str(first))} .. {html.escape(str(last))}, "
        f"{len(bt)} bars, {bt['session'].nunique()} sessions; model versions: {html.escape(', '.join(sorted(bt['model_version'].astype(str).unique())))}. "
        "Same bars, costs and risk rules for every strategy; P&amp;L in log-return units.</p>"
        f"<h2>Cumulative net log P&amp;L</h2>{_svg_lines(curves)}"
        f"<h2>Metrics</h2>{shown.to_html(index=False, float_format=lambda v: f'{v:.4g}', na_rep='')}"
        f"{_overfitting_html(overfit)}"
        "</body></html>"
    )


class PerformanceConfig(dg.Config):
    """Which stored session backtests to judge (ISO dates, inclusive); all of them by default."""

    first_session: str | None = None
    last_session: str | None = None


@dg.asset(
    key=PERFORMANCE,
    ins={"backtest": dg.AssetIn(BACKTEST)},
    io_manager_key="serving_io_manager",
    group_name="l6_backtest",
    kinds={"parquet", "sql", "html"},
    metadata={"warehouse_table": "rl_metrics"},
    description="Agent metrics vs baselines (flat, buy and hold, SMA crossover) on the same bars; rl_metrics and an HTML report.",
)
def l6_performance(context: dg.AssetExecutionContext, config: PerformanceConfig, backtest: pd.DataFrame, lake: LakeResource) -> dg.Output[pd.DataFrame]:
    if backtest.empty:
        raise ValueError("l6/backtest_session is empty; materialize l5/actions_m5 and l6/backtest_session for some sessions first")
    bt = backtest.sort_values("time", kind="stable").reset_index(drop=True)
    if config.first_session or config.last_session:
        keep = bt["session"].astype(str).between(config.first_session or "0000", config.last_session or "9999")
        bt = bt[keep].reset_index(drop=True)
        if bt.empty:
            raise ValueError(f"no stored session backtest between {config.first_session} and {config.last_session}")
    sessions = bt["session"].astype(str).to_numpy()
    next_ret = bt["next_ret"].to_numpy(dtype="float64")
    strategies = {AGENT: bt["position"].to_numpy(dtype="float64"), **all_baselines(bt["close"].to_numpy(dtype="float64"), sessions)}
    table = compare(strategies, next_ret, sessions, live_costs(), live_limits(), reference="buy_and_hold", n_boot=1000, seed=0)
    computed_at = pd.Timestamp.now(tz="UTC").floor("s")
    rows = metrics_rows(table, bt, computed_at)

    pnls = {name: backtest_actions(t, next_ret, sessions, live_costs(), live_limits())["pnl"].to_numpy() for name, t in strategies.items()}
    curves = {name: np.cumsum(p) for name, p in pnls.items()}
    _, codes = np.unique(sessions, return_inverse=True)  # session ids are ISO dates: sorted = time order
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
            "agent_sharpe": _finite(agent["sharpe_ratio"]),
            "agent_total_pnl": _finite(agent["total_pnl"]),
            # per-session, not annualized (agent_sharpe is the annualized bar Sharpe); None when the agent's returns are degenerate
            "agent_sharpe_per_session": _finite(overfit["sharpe_per_session"][AGENT]),
            "agent_deflated_sharpe": _finite(overfit["deflated_sharpe"]["dsr"]) if overfit["deflated_sharpe"] else None,
            "deflated_sharpe_trials": overfit["n_trials"],
            "pbo": _finite(overfit["pbo"]["pbo"]) if overfit["pbo"] else None,
            "report": dg.MetadataValue.path(f"{lake.location}/{key}"),
            "metrics": dg.MetadataValue.md(rows.drop(columns=["computed_at"]).to_markdown(index=False)) if _has_tabulate() else
            dg.MetadataValue.text(rows.drop(columns=["computed_at"]).to_string(index=False)),
        },
    )


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
