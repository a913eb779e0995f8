"""Baseline target positions on the same bars as the agent (then run through the same risk rules and costs).

- flat: 0 everywhere.
- buy_and_hold: long 1 at every bar of the session, flat at its last bar (so, with ``run_backtest``, its
  P&L is sum(next_ret) - 2 * rate per session of two bars or more).
- buy_and_hold_held: long 1 from the first bar's close to the last bar's close of the whole period, never flat at
  a session close, so it carries every overnight gap and pays the cost twice (entry, exit). The risk rules force
  flat at every session's last bar (``rl.risk``: ``flat_at_session_end``), and ``next_ret`` is 0 there, so a held
  position cannot go through ``engine.backtest_actions``; it is computed here from the closes instead, outside the
  risk rules, as per-bar net log P&L (``compare``'s ``simulated``, which reports it in the same metric table).
  Its P&L at bar t is the move into t, log(close_t / close_{t-1}): ``next_ret`` of the previous bar within a session,
  and at a session's first bar the overnight gap from the previous session's last close (whatever lies between
  them, a session missing from the data included). So a session's P&L is its close-to-close return including the
  gap into it, and the total is log(last close / first close) - 2 * rate. Against ``buy_and_hold`` (intraday, which
  enters at each session's first close and exits at its last) the difference is exactly the overnight gaps plus
  the 2 * (sessions - 1) costs the intraday one pays more. Per-session trade statistics (``metrics.trades`` splits
  trades at session boundaries) count one trade per session for it. It is a reference, not a candidate the
  session-flat agent could be: it is left out of the deflated Sharpe's trials and the PBO.
- sma_crossover: within each session (the averages restart at the session open, so nothing leaks
  across the night), +1 when SMA(fast) of the closes up to and including bar t is above SMA(slow), -1 when
  below (0 with ``long_only``), 0 while the slow window is not full, on ties, and at the last bar.

Pure numpy; no Dagster, no pandas.
"""

from __future__ import annotations

import numpy as np

from usdcop_assets.rl.costs import CostConfig, last_of_session, session_starts


def flat(session_ids) -> np.ndarray:
    return np.zeros(len(session_ids), dtype="float64")


def buy_and_hold(session_ids) -> np.ndarray:
    return np.where(last_of_session(session_ids), 0.0, 1.0)


def buy_and_hold_held(close, next_ret, session_ids, costs: CostConfig | None = None) -> dict[str, np.ndarray]:
    """Per-bar ``position`` (held after the bar's close), ``trade``, ``cost``, ``gross``, ``pnl`` (log) of buy-and-hold
    held over the whole period (see the module docstring)."""
    close = np.asarray(close, dtype="float64").ravel()
    r = np.asarray(next_ret, dtype="float64").ravel()
    n = len(close)
    if len(r) != n or len(session_ids) != n:
        raise ValueError(
            f"buy_and_hold_held: lengths differ (close {n}, next_ret {len(r)}, sessions {len(session_ids)})"
        )
    if not (np.isfinite(close).all() and np.isfinite(r).all() and (close > 0).all()):
        raise ValueError("buy_and_hold_held: closes must be finite and positive, next_ret finite")
    new = session_starts(session_ids)
    gross = np.zeros(n)
    if n > 1:
        gross[1:] = r[:-1]  # within a session: the previous bar's next return is the move into this bar
        gap = np.flatnonzero(new[1:]) + 1  # first bars of every session but the first: the overnight gap into it
        gross[gap] = np.log(close[gap] / close[gap - 1])
    position = np.ones(n)
    position[-1:] = 0.0  # out at the last close
    trade = np.diff(position, prepend=0.0)
    cost = np.abs(trade) * (costs or CostConfig()).rate
    return {"position": position, "trade": trade, "cost": cost, "gross": gross, "pnl": gross - cost}


def _session_sma(close: np.ndarray, step: np.ndarray, window: int) -> np.ndarray:
    cs = np.r_[0.0, np.cumsum(close)]
    idx = np.arange(len(close))
    out = np.full(len(close), np.nan)
    ok = step >= window - 1
    out[ok] = (cs[idx[ok] + 1] - cs[idx[ok] + 1 - window]) / window
    return out


def sma_crossover(close, session_ids, fast: int = 5, slow: int = 20, long_only: bool = False) -> np.ndarray:
    close = np.asarray(close, dtype="float64").ravel()
    if len(close) != len(session_ids):
        raise ValueError(f"sma_crossover: {len(close)} closes for {len(session_ids)} session ids")
    if not (1 <= fast < slow):
        raise ValueError(f"sma_crossover: need 1 <= fast < slow, got fast={fast}, slow={slow}")
    if not np.isfinite(close).all():
        raise ValueError("sma_crossover: closes must be finite")
    new = session_starts(session_ids)
    starts = np.maximum.accumulate(np.where(new, np.arange(len(close)), 0))
    step = np.arange(len(close)) - starts
    f, s = _session_sma(close, step, fast), _session_sma(close, step, slow)
    with np.errstate(invalid="ignore"):
        pos = np.where(f > s, 1.0, np.where(f < s, 0.0 if long_only else -1.0, 0.0))
    pos[~np.isfinite(s)] = 0.0
    pos[last_of_session(session_ids)] = 0.0
    return pos


def all_baselines(close, session_ids, fast: int = 5, slow: int = 20) -> dict[str, np.ndarray]:
    return {
        "flat": flat(session_ids),
        "buy_and_hold": buy_and_hold(session_ids),
        f"sma_{fast}_{slow}": sma_crossover(close, session_ids, fast, slow),
    }
