"""Vectorized backtest of target positions with the environment's costs and the same risk rules.

Timing: the position p_t is decided at bar t's close and earns next_ret_t, the log return from bar t's
close to the next bar's close (0 at a session's last bar). A position first known at t+1 earns nothing
of t -> t+1. Per bar:

    trade_t = p_t - p_{t-1}   (p_{-1} = 0)
    cost_t  = rate * |trade_t|,  rate = (spread_bps/2 + slippage_bps)/1e4   (``trading.costs.CostConfig``)
    gross_t = p_t * next_ret_t
    pnl_t   = gross_t - cost_t                      (log-return units)
    equity_t = exp(sum_{k<=t} pnl_k)                (starts from 1)

Pure numpy/pandas; no Dagster.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from usdcop_assets.backtest import metrics as M
from usdcop_assets.trading.costs import CostConfig, last_of_session, session_starts
from usdcop_assets.trading.risk import RiskLimits, apply_risk


def run_backtest(positions, next_ret, session_ids, costs: CostConfig | None = None) -> pd.DataFrame:
    """Per-bar frame: session, position, trade, cost, gross, pnl (log), equity."""
    costs = costs or CostConfig()
    p = np.asarray(positions, dtype="float64").ravel()
    r = np.asarray(next_ret, dtype="float64").ravel()
    n = len(p)
    if len(r) != n or len(session_ids) != n:
        raise ValueError(f"run_backtest: lengths differ (positions {n}, next_ret {len(r)}, sessions {len(session_ids)})")
    for name, a in (("positions", p), ("next_ret", r)):
        if not np.isfinite(a).all():
            raise ValueError(f"run_backtest: {int((~np.isfinite(a)).sum())} {name} are not finite")
    if (np.abs(p) > 1 + 1e-12).any():
        raise ValueError("run_backtest: positions must lie in [-1, 1]")
    session_starts(session_ids)  # contiguity check
    trade = np.diff(np.r_[0.0, p])
    cost = costs.rate * np.abs(trade)
    gross = p * r
    pnl = gross - cost
    return pd.DataFrame({
        "session": np.asarray(session_ids),
        "position": p,
        "trade": trade,
        "cost": cost,
        "gross": gross,
        "pnl": pnl,
        "equity": np.exp(np.cumsum(pnl)),
    })


def backtest_actions(actions, next_ret, session_ids, costs: CostConfig | None = None, limits: RiskLimits | None = None,
                     is_last=None) -> pd.DataFrame:
    """Raw target actions -> risk manager (``apply_risk``, same rules as live) -> ``run_backtest``; adds ``target`` and ``risk_flags``."""
    costs = costs or CostConfig()
    last = last_of_session(session_ids) if is_last is None else is_last
    positions, flags = apply_risk(actions, next_ret, session_ids, last, limits or RiskLimits(), costs)
    frame = run_backtest(positions, next_ret, session_ids, costs)
    frame.insert(1, "target", np.asarray(actions, dtype="float64").ravel())
    frame["risk_flags"] = flags
    return frame


def compare(strategies: dict, next_ret, session_ids, costs: CostConfig | None = None, limits: RiskLimits | None = None,
            reference: str | None = "buy_and_hold", n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Metrics of several target series on the same bars, same costs and same risk rules; one row per strategy.

    With ``reference`` among the strategies, adds the session-bootstrap CI of each Sharpe and of its
    difference to the reference (paired by session).
    """
    frames = {name: backtest_actions(t, next_ret, session_ids, costs, limits) for name, t in strategies.items()}
    rows = []
    for name, f in frames.items():
        row = {"strategy": name, **M.performance(f["pnl"].to_numpy(), f["position"].to_numpy(), session_ids)}
        if n_boot:
            ci = M.bootstrap_sharpe_ci(f["pnl"].to_numpy(), session_ids, n=n_boot, seed=seed)
            row.update(sharpe_ci_low=ci["low"], sharpe_ci_high=ci["high"])
            if reference in frames:
                d = M.bootstrap_sharpe_diff_ci(f["pnl"].to_numpy(), frames[reference]["pnl"].to_numpy(), session_ids, n=n_boot, seed=seed)
                row.update({f"sharpe_diff_vs_{reference}": d["estimate"], "sharpe_diff_ci_low": d["low"], "sharpe_diff_ci_high": d["high"]})
        rows.append(row)
    return pd.DataFrame(rows)
