"""The model page's tear sheet, computed from the stored session backtests (``l6/backtest_session``).

Pure functions over frames; no Streamlit. The baselines are replayed on exactly the agent's bars, costs and
risk rules, as ``l6/performance`` does (``backtest.engine.backtest_actions``, ``backtest.baselines``; the held
buy-and-hold from the closes, outside the risk rules), so the
curves drawn here are the ones its ``rl_metrics`` rows summarize. P&L is in log-return units per bar; a
session's P&L is the sum of its bars'; equity = exp(cumulative P&L).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from usdcop_assets.backtest import metrics
from usdcop_assets.backtest.baselines import all_baselines, buy_and_hold_held
from usdcop_assets.backtest.engine import backtest_actions
from usdcop_assets.core import calendar as cal
from usdcop_assets.rl.costs import live_costs
from usdcop_assets.rl.decisions import fold_of_session
from usdcop_assets.rl.risk import live_limits

AGENT = "ppo"
ROLLING_SESSIONS = 20
RECENT_SESSIONS = 250  # the model page draws the last year by default (a six-year read takes seconds)


def strategy_pnl(bt: pd.DataFrame) -> pd.DataFrame:
    """Per-bar net P&L of the agent (its stored backtest) and of each baseline on the same bars."""
    bt = bt.sort_values("time", kind="stable").reset_index(drop=True)
    sessions = bt["session"].astype(str).to_numpy()
    next_ret = bt["next_ret"].to_numpy(dtype="float64")
    out = pd.DataFrame({"time": bt["time"], "session": sessions, AGENT: bt["pnl"].to_numpy(dtype="float64")})
    for name, target in all_baselines(bt["close"].to_numpy(dtype="float64"), sessions).items():
        out[name] = backtest_actions(target, next_ret, sessions, live_costs(), live_limits())["pnl"].to_numpy()
    # as l6/performance: held overnight, outside the risk rules (its P&L per session includes the gap into it)
    out["buy_and_hold_held"] = buy_and_hold_held(
        bt["close"].to_numpy(dtype="float64"), next_ret, sessions, live_costs()
    )["pnl"]
    return out


def session_curves(pnl: pd.DataFrame) -> pd.DataFrame:
    """Per session and strategy: the session's P&L, equity (exp of the cumulative P&L) and drawdown."""
    per_session = pnl.drop(columns="time").groupby("session", sort=True).sum()
    long = per_session.reset_index().melt("session", var_name="strategy", value_name="pnl")
    long["equity"] = long.groupby("strategy")["pnl"].cumsum().pipe(np.exp)
    long["drawdown"] = long["equity"] / long.groupby("strategy")["equity"].cummax().clip(lower=1.0) - 1.0
    long["session"] = pd.to_datetime(long["session"])
    return long


def rolling_sharpe(curves: pd.DataFrame, window: int = ROLLING_SESSIONS) -> pd.DataFrame:
    """Annualized Sharpe of the session P&L over a trailing window of sessions (NaN until the window is full)."""

    def roll(s: pd.Series) -> pd.Series:
        r = s.rolling(window)
        return r.mean() / r.std(ddof=1) * np.sqrt(metrics.SESSIONS_PER_YEAR)

    out = curves[["session", "strategy"]].copy()
    out["rolling_sharpe"] = curves.groupby("strategy")["pnl"].transform(roll).replace([np.inf, -np.inf], np.nan)
    return out


def fold_results(
    pnl: pd.DataFrame, bt: pd.DataFrame, models: pd.DataFrame | None = None, n_boot: int = 200
) -> pd.DataFrame:
    """Per walk-forward fold (the sessions' month): the agent's Sharpe with its session-bootstrap 95% CI,
    total return, buy and hold's Sharpe on the same bars, the model and its validation Sharpe."""
    rows = []
    fold = pnl["session"].map(fold_of_session)
    versions = bt.sort_values("time", kind="stable")["model_version"].astype(str).to_numpy()
    for key, idx in pnl.groupby(fold.to_numpy(), sort=True).indices.items():
        part = pnl.iloc[idx]
        x, s = part[AGENT].to_numpy(), part["session"].to_numpy()
        ci = metrics.bootstrap_sharpe_ci(x, s, n=n_boot, seed=0) if len(x) > 1 and np.std(x) > 0 else {}
        per_year = metrics.bars_per_year(len(x), len(set(s)))
        rows.append(
            {
                "fold": key,
                "sessions": len(set(s)),
                "bars": len(x),
                "model_version": ",".join(sorted(set(versions[idx]))),
                "total_return": float(np.expm1(x.sum())),
                "sharpe": metrics.sharpe(x, per_year) if np.std(x) > 0 else np.nan,
                "sharpe_ci_low": ci.get("low", np.nan),
                "sharpe_ci_high": ci.get("high", np.nan),
                "buy_and_hold_sharpe": metrics.sharpe(part["buy_and_hold"].to_numpy(), per_year)
                if "buy_and_hold" in part
                else np.nan,
            }
        )
    out = pd.DataFrame(rows)
    if models is not None and len(models) and len(out):
        out = out.merge(
            models[["fold", "valid_sharpe", "train_first", "train_last"]].rename(
                columns={"valid_sharpe": "valid_sharpe"}
            ),
            on="fold",
            how="left",
        )
    return out


def trade_list(bt: pd.DataFrame) -> pd.DataFrame:
    """The agent's trades (a run of one sign within a session, as ``backtest.metrics`` defines them): entry and
    exit bar (Bogota), side, size, bars held, net P&L (closing cost included) in basis points."""
    cols = ["entry (Bogota)", "exit (Bogota)", "side", "size", "bars", "pnl_bp"]
    bt = bt.sort_values("time", kind="stable").reset_index(drop=True)
    if bt.empty:
        return pd.DataFrame(columns=cols)
    pos = bt["position"].to_numpy(dtype="float64")
    sessions = bt["session"].astype(str).to_numpy()
    pnl, lengths = metrics.trades(bt["pnl"].to_numpy(dtype="float64"), pos, sessions)
    if not len(pnl):
        return pd.DataFrame(columns=cols)
    sign = np.sign(pos)
    new_session = np.r_[True, sessions[1:] != sessions[:-1]]
    opens = (sign != 0) & (np.r_[True, sign[1:] != sign[:-1]] | new_session)
    starts = np.flatnonzero(opens)
    times = pd.DatetimeIndex(bt["time"]).tz_convert(cal.TZ)
    last = starts + lengths - 1
    return pd.DataFrame(
        {
            "entry (Bogota)": times[starts].strftime("%Y-%m-%d %H:%M"),
            "exit (Bogota)": (times[last] + pd.Timedelta(minutes=cal.BAR_MINUTES)).strftime("%Y-%m-%d %H:%M"),
            "side": np.where(sign[starts] > 0, "long", "short"),
            "size": np.abs(pos[starts]).round(2),
            "bars": lengths,
            "pnl_bp": (pnl * 1e4).round(2),
        }
    )


def tear_sheet(bt: pd.DataFrame, models: pd.DataFrame | None = None) -> dict:
    """Everything the model page draws, from the stored backtests ``bt`` (one or more whole sessions)."""
    if bt.empty:
        return {"sessions": 0}
    pnl = strategy_pnl(bt)
    curves = session_curves(pnl)
    return {
        "sessions": int(bt["session"].nunique()),
        "curves": curves,
        "rolling": rolling_sharpe(curves),
        "folds": fold_results(pnl, bt, models),
        "trades": trade_list(bt),
    }
