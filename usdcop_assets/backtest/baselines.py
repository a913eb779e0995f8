"""Baseline target positions on the same bars as the agent (then run through the same risk rules and costs).

- flat: 0 everywhere.
- buy_and_hold: long 1 at every bar of the session, flat at its last bar (so, with ``run_backtest``, its
  P&L is sum(next_ret) - 2 * rate per session of two bars or more).
- sma_crossover: within each session (the averages restart at the session open, so nothing leaks
  across the night), +1 when SMA(fast) of the closes up to and including bar t is above SMA(slow), -1 when
  below (0 with ``long_only``), 0 while the slow window is not full, on ties, and at the last bar.

Pure numpy; no Dagster, no pandas.
"""

from __future__ import annotations

import numpy as np

from usdcop_assets.rl.costs import last_of_session, session_starts


def flat(session_ids) -> np.ndarray:
    return np.zeros(len(session_ids), dtype="float64")


def buy_and_hold(session_ids) -> np.ndarray:
    return np.where(last_of_session(session_ids), 0.0, 1.0)


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
