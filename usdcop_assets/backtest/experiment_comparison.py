"""Experiments compared out of sample: every candidate, the one validation selected, the baselines and the overfitting
statistics, on the same bars with the same costs and risk rules (``l6/experiment_performance``; the walk-forward
harness computes the same figures).

``experiment_comparison`` takes per-bar positions (time order) of:

- ``candidates``: each experiment's seed ensemble (``ppo_<name>``), the strategies the selection chose among;
- ``trials``: each seed of each experiment traded alone: the N trials of the deflated Sharpe ratio (N = experiments
  x seeds, every configuration tried) and the columns of the PBO (CSCV);
- ``selected``: month by month the position of the experiment the selection picked on validation sessions before
  that month (``rl.selection``);
- ``extra``: other strategies judged beside them, e.g. the LightGBM baseline;

and adds the intraday baselines (flat, buy-and-hold flat at each close, SMA 5/20) and the held buy-and-hold (outside
the risk rules: a reference, never a candidate). Pure numpy/pandas; no Dagster.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from usdcop_assets.backtest.baselines import all_baselines, buy_and_hold_held
from usdcop_assets.backtest.engine import backtest_actions, compare
from usdcop_assets.backtest.overfitting import (
    deflated_sharpe_ratio,
    probability_of_backtest_overfitting,
    session_sharpe,
)
from usdcop_assets.rl.costs import CostConfig
from usdcop_assets.rl.risk import RiskLimits

SELECTED = "selected"
HELD = "buy_and_hold_held"
PBO_SPLITS = 16


def _pbo(columns: dict, n_sessions: int) -> dict | None:
    s = min(PBO_SPLITS, n_sessions // 2 * 2)  # 16 splits, fewer on a short period
    if len(columns) < 2 or s < 2:
        return None
    return probability_of_backtest_overfitting(np.column_stack(list(columns.values())), n_splits=s).to_dict()


def experiment_comparison(
    bars: pd.DataFrame,
    candidates: dict[str, np.ndarray],
    trials: dict[str, np.ndarray],
    selected: np.ndarray,
    extra: dict[str, np.ndarray] | None = None,
    costs: CostConfig | None = None,
    limits: RiskLimits | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    prior_trials: int = 0,
) -> dict:
    """The out-of-sample comparison (module docstring) on ``bars`` (``session``, ``next_ret``, ``close`` per bar).

    ``prior_trials``: trials of earlier screens on other periods, counted in the deflated Sharpe's N
    (``overfitting.deflated_sharpe_ratio``); ``n_trials`` includes them.

    Returns ``table`` (``backtest.engine.compare`` rows plus ``deflated_sharpe`` for the selected strategy, every
    candidate and ``extra``), ``n_trials``, ``trial_sharpe_per_session``, ``pbo`` (CSCV over the trials; None when
    there are fewer than 2 or too few sessions), ``pbo_candidates`` (over the ensembles), ``session_pnl`` (per
    strategy, per session, time order), the per-bar backtest ``frames`` and ``trial_frames``, and ``held``
    (``buy_and_hold_held``'s per-bar arrays: the held reference is not in ``frames``).
    """
    n = len(bars)
    for name, p in {SELECTED: selected, **candidates, **trials, **(extra or {})}.items():
        if len(p) != n:
            raise ValueError(f"experiment_comparison: {name!r} has {len(p)} positions for {n} bars")
    sessions = bars["session"].astype(str).to_numpy()
    next_ret = bars["next_ret"].to_numpy(dtype="float64")
    close = bars["close"].to_numpy(dtype="float64")
    costs, limits = costs or CostConfig(), limits or RiskLimits()
    strategies = {SELECTED: np.asarray(selected, dtype="float64"), **candidates, **(extra or {})}
    strategies.update(all_baselines(close, sessions))
    held = buy_and_hold_held(close, next_ret, sessions, costs)
    table = compare(
        strategies,
        next_ret,
        sessions,
        costs,
        limits,
        reference="buy_and_hold",
        n_boot=n_boot,
        seed=seed,
        simulated={HELD: held},
    )
    _, codes = np.unique(sessions, return_inverse=True)  # ISO dates: sorted = time order

    frames = {name: backtest_actions(t, next_ret, sessions, costs, limits) for name, t in strategies.items()}
    trial_frames = {name: backtest_actions(t, next_ret, sessions, costs, limits) for name, t in trials.items()}
    session_pnl = {name: np.bincount(codes, weights=f["pnl"].to_numpy()) for name, f in frames.items()}
    trial_pnl = {name: np.bincount(codes, weights=f["pnl"].to_numpy()) for name, f in trial_frames.items()}
    trial_sharpes = [session_sharpe(x) for x in trial_pnl.values()]

    def dsr(name: str) -> float | None:
        if not trial_sharpes:
            return None
        try:
            return deflated_sharpe_ratio(session_pnl[name], trial_sharpes, prior_trials).dsr
        except ValueError:
            return None  # degenerate returns (e.g. never trades)

    judged = [SELECTED, *candidates, *(extra or {})]
    table["deflated_sharpe"] = [dsr(s) if s in judged else None for s in table["strategy"]]
    n_sessions = int(codes.max() + 1) if n else 0
    return {
        "table": table,
        "n_trials": len(trials) + prior_trials,
        "trial_sharpe_per_session": dict(zip(trial_pnl, trial_sharpes)),
        "pbo": _pbo(trial_pnl, n_sessions),
        "pbo_candidates": _pbo({k: session_pnl[k] for k in candidates}, n_sessions),
        "session_pnl": session_pnl,
        "frames": frames,  # per strategy: backtest_actions' per-bar frame
        "trial_frames": trial_frames,
        "held": held,
    }
