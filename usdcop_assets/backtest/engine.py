"""Vectorized backtest of target positions with the environment's costs and the same risk rules.

Timing: the position p_t is decided at bar t's close and earns next_ret_t, the log return from bar t's
close to the next bar's close (0 at a session's last bar). A position first known at t+1 earns nothing
of t -> t+1. Per bar:

    trade_t = p_t - p_{t-1}   (p_{-1} = 0)
    cost_t  = rate * |trade_t|,  rate = (spread_bps/2 + slippage_bps)/1e4   (``rl.costs.CostConfig``)
    gross_t = p_t * next_ret_t
    pnl_t   = gross_t - cost_t                      (log-return units)
    equity_t = exp(sum_{k<=t} pnl_k)                (starts from 1)

Pure numpy/pandas; no Dagster.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from usdcop_assets import clock
from usdcop_assets.backtest import metrics as M
from usdcop_assets.observation.episodes import pending_steps
from usdcop_assets.rl.costs import CostConfig, live_costs, session_codes, session_starts
from usdcop_assets.rl.risk import RiskLimits, _apply_risk, live_limits


def run_backtest(positions, next_ret, session_ids, costs: CostConfig | None = None) -> pd.DataFrame:
    """Per-bar frame: session, position, trade, cost, gross, pnl (log), equity."""
    p = np.asarray(positions, dtype="float64").ravel()
    r = np.asarray(next_ret, dtype="float64").ravel()
    n = len(p)
    if len(r) != n or len(session_ids) != n:
        raise ValueError(
            f"run_backtest: lengths differ (positions {n}, next_ret {len(r)}, sessions {len(session_ids)})"
        )
    return _run_backtest(p, r, session_ids, session_starts(session_ids), costs or CostConfig())


def _run_backtest(
    p: np.ndarray, r: np.ndarray, session_ids, new: np.ndarray, costs: CostConfig, *, owned: bool = False
) -> pd.DataFrame:
    """``run_backtest`` with the session-start mask already computed (it also did the contiguity check).

    ``owned``: ``p`` is a fresh array the frame may keep (else it is copied). Each column is allocated once
    and the rest is computed in place: at 1M bars the cost is memory traffic, not arithmetic.
    """
    if len(p):
        lo, hi = float(p.min()), float(p.max())  # NaN/inf propagate to the extremes: no mask needed when all is well
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"run_backtest: {int((~np.isfinite(p)).sum())} positions are not finite")
        if not np.isfinite(r).all():
            raise ValueError(f"run_backtest: {int((~np.isfinite(r)).sum())} next_ret are not finite")
        if hi > 1 + 1e-12 or lo < -1 - 1e-12:
            raise ValueError("run_backtest: positions must lie in [-1, 1]")
    if not owned:
        p = p.copy()  # the frame owns its columns (built below without a second copy)
    trade = np.empty_like(p)
    trade[:1] = p[:1]
    np.subtract(p[1:], p[:-1], out=trade[1:])
    cost = np.abs(trade)
    cost *= costs.rate
    gross = p * r
    pnl = gross - cost
    equity = np.cumsum(pnl)
    np.exp(equity, out=equity)
    return pd.DataFrame(
        {
            "session": _session_column(session_ids, new),
            "position": p,
            "trade": trade,
            "cost": cost,
            "gross": gross,
            "pnl": pnl,
            "equity": equity,
        },
        copy=False,
    )


def _session_column(session_ids, new: np.ndarray):
    """The session ids as a column of their own (a copy), with the dtype ``pd.DataFrame`` infers for them.

    String ids (an object array, as ``Series.astype(str).to_numpy()`` gives them) are inferred and converted
    once per session and then repeated by position: converting 1M Python strings one by one to pandas'
    string dtype cost ~40 ms, more than the rest of the backtest.
    """
    ids = np.asarray(session_ids)
    if ids.dtype == object and len(ids):
        heads = ids[new]
        if all(type(h) is str for h in heads.tolist()):
            codes = np.cumsum(new)
            codes -= 1
            return pd.Series(heads).array.take(codes)
    return ids.copy()


def backtest_actions(
    actions, next_ret, session_ids, costs: CostConfig | None = None, limits: RiskLimits | None = None, is_last=None
) -> pd.DataFrame:
    """Raw target actions -> risk manager (``apply_risk``, same rules as live) -> ``run_backtest``; adds ``target`` and
    ``risk_flags``.

    Fully vectorized unless ``limits`` sets ``daily_loss_stop`` or ``max_drawdown`` (then ``apply_risk`` is a
    sequential loop, see ``rl.risk``).
    """
    costs = costs or CostConfig()
    a = np.asarray(actions, dtype="float64").ravel()
    r = np.asarray(next_ret, dtype="float64").ravel()
    n = len(a)
    if len(r) != n or len(session_ids) != n:
        raise ValueError(
            f"backtest_actions: lengths differ (actions {n}, next_ret {len(r)}, sessions {len(session_ids)})"
        )
    new = session_starts(session_ids)  # once: the contiguity check and the session boundaries of both steps
    positions, flags = _apply_risk(a, r, new, is_last, limits or RiskLimits(), costs)
    frame = _run_backtest(positions, r, session_ids, new, costs, owned=True)
    frame.insert(1, "target", a.copy())
    frame["risk_flags"] = flags
    return frame


def compare(
    strategies: dict,
    next_ret,
    session_ids,
    costs: CostConfig | None = None,
    limits: RiskLimits | None = None,
    reference: str | None = "buy_and_hold",
    n_boot: int = 1000,
    seed: int = 0,
    simulated: dict | None = None,
) -> pd.DataFrame:
    """Metrics of several target series on the same bars, same costs and same risk rules; one row per strategy.

    With ``reference`` among the strategies, adds the session-bootstrap CI of each Sharpe and of its
    difference to the reference (paired by session). ``simulated``: strategies already simulated on the same
    bars outside the risk rules (name -> per-bar ``pnl`` and ``position``, e.g. ``baselines.buy_and_hold_held``),
    reported after the others with the same metrics and bootstrap.
    """
    codes = session_codes(session_ids)  # once; every step below only needs the session of each bar, not its id
    frames = {name: backtest_actions(t, next_ret, codes, costs, limits) for name, t in strategies.items()}
    for name, sim in (simulated or {}).items():
        if name in frames:
            raise ValueError(f"compare: {name!r} is both a target series and a simulated strategy")
        frames[name] = pd.DataFrame(
            {"pnl": np.asarray(sim["pnl"], dtype="float64"), "position": np.asarray(sim["position"], dtype="float64")}
        )
        if len(frames[name]) != len(codes):
            raise ValueError(f"compare: simulated {name!r} has {len(frames[name])} bars for {len(codes)}")
    rows = []
    for name, f in frames.items():
        row = {"strategy": name, **M.performance(f["pnl"].to_numpy(), f["position"].to_numpy(), codes)}
        if n_boot:
            ci = M.bootstrap_sharpe_ci(f["pnl"].to_numpy(), codes, n=n_boot, seed=seed)
            row.update(sharpe_ci_low=ci["low"], sharpe_ci_high=ci["high"])
            if reference in frames:
                d = M.bootstrap_sharpe_diff_ci(
                    f["pnl"].to_numpy(), frames[reference]["pnl"].to_numpy(), codes, n=n_boot, seed=seed
                )
                row.update(
                    {
                        f"sharpe_diff_vs_{reference}": d["estimate"],
                        "sharpe_diff_ci_low": d["low"],
                        "sharpe_diff_ci_high": d["high"],
                    }
                )
        rows.append(row)
    return pd.DataFrame(rows)


BACKTEST_COLUMNS = [
    "time",
    "symbol",
    "session",
    "step",
    "target",
    "position",
    "trade",
    "cost",
    "gross",
    "pnl",
    "equity",
    "risk_flags",
    "next_ret",
    "close",
    "model_version",
]


def backtest_sessions(actions: pd.DataFrame, episodes: pd.DataFrame) -> pd.DataFrame:
    """Per-bar backtest of the actions' positions, each session on its own (see the module docstring)."""
    if actions.empty:
        return pd.DataFrame(columns=BACKTEST_COLUMNS)
    bars = actions.merge(
        episodes[["time", "next_ret", "close", "is_last"]], on="time", how="left", validate="one_to_one"
    )
    bars = bars.sort_values("time", kind="stable").reset_index(drop=True)
    # the newest bar of a session still running has no episode step yet (its next return is unknown): backtested once it
    # has
    pending = bars["next_ret"].isna().to_numpy() & pending_steps(pd.DatetimeIndex(bars["time"]), clock.utc_now())
    bars = bars[~pending].reset_index(drop=True)
    if bars.empty:
        return pd.DataFrame(columns=BACKTEST_COLUMNS)
    missing = bars["next_ret"].isna()
    if missing.any():
        raise ValueError(
            f"{int(missing.sum())} action bars have no l4/episodes_session row (first "
            f"{bars.loc[missing, 'time'].iloc[0]})"
        )
    parts = []
    for _, frame in bars.groupby("session", sort=True):
        sessions = frame["session"].astype(str).to_numpy()
        bt = backtest_actions(
            frame["position"].to_numpy(dtype="float64"),
            frame["next_ret"].to_numpy(dtype="float64"),
            sessions,
            live_costs(),
            live_limits(),
            is_last=frame["is_last"].to_numpy(dtype=bool),
        )
        out = frame[["time", "symbol", "session", "step", "next_ret", "close", "model_version"]].reset_index(drop=True)
        for c in ("position", "trade", "cost", "gross", "pnl", "equity", "risk_flags"):
            out[c] = bt[c].to_numpy()
        out["target"] = frame["target"].to_numpy(dtype="float64")  # the policy's raw action, for reference
        parts.append(out)
    result = pd.concat(parts, ignore_index=True)[BACKTEST_COLUMNS]
    result["risk_flags"] = result["risk_flags"].astype("int64")
    return result
