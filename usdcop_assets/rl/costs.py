"""Trading costs and session bookkeeping shared by the environment, the risk manager and the backtest.

Cost model (one definition, used everywhere):

    cost_t = rate * |p_t - p_{t-1}|,   rate = (spread_bps / 2 + slippage_bps) / 10_000

``spread_bps`` is the full quoted bid-ask spread; bars are priced at the mid, so every unit of position
traded crosses half of it. ``slippage_bps`` is paid per unit traded on top (market impact / latency).
Costs are in log-return units, charged at the bar where the position changes (bar t's close).

Pure numpy; no Dagster, no pandas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from usdcop_assets.core.calendar import BARS_PER_SESSION


@dataclass(frozen=True)
class CostConfig:
    spread_bps: float = 4.0  # full bid-ask spread, basis points of price
    slippage_bps: float = 1.0  # per unit of position traded, basis points

    def __post_init__(self):
        for name in ("spread_bps", "slippage_bps"):
            v = float(getattr(self, name))
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"CostConfig.{name}={v!r}: must be a finite number >= 0")

    @property
    def rate(self) -> float:
        """Cost per unit of |position change|, as a log-return (e.g. 3 bps -> 0.0003)."""
        return (float(self.spread_bps) / 2.0 + float(self.slippage_bps)) * 1e-4


def session_starts(session_ids) -> np.ndarray:
    """Boolean mask: is bar i the first bar of its session? Sessions must be contiguous runs."""
    ids = np.asarray(session_ids)
    if ids.ndim != 1:
        raise ValueError(f"session ids must be 1-D, got shape {ids.shape}")
    new = np.ones(len(ids), dtype=bool)
    if len(ids) > 1:
        new[1:] = ids[1:] != ids[:-1]
    # Contiguous <=> no id heads two runs: np.unique over the run heads only (one per session), not
    # over every bar (sorting a million string ids cost ~0.4 s of a 1M-bar backtest).
    heads = ids[new]
    distinct = len(np.unique(heads))
    if distinct != len(heads):
        raise ValueError(
            f"session ids are not contiguous: {len(heads)} runs for {distinct} distinct sessions; sort the bars by "
            "time first"
        )
    return new


def last_of_session(session_ids) -> np.ndarray:
    """Boolean mask: is bar i the last bar of its session?"""
    new = session_starts(session_ids)
    last = np.ones(len(new), dtype=bool)
    if len(new) > 1:
        last[:-1] = new[1:]
    return last


def session_codes(session_ids) -> np.ndarray:
    """0, 1, 2, ... per contiguous session, in bar order."""
    codes = np.cumsum(session_starts(session_ids))
    codes -= 1
    return codes


def live_costs() -> CostConfig:
    """The costs of training, live risk and backtest (one definition)."""
    return CostConfig()


# The annualisation of bar returns, shared by training's validation Sharpe and the backtest metrics
# (backtest/metrics.py imports them from here: backtest may import rl/, never the reverse).
SESSIONS_PER_YEAR = 252
BARS_PER_YEAR = BARS_PER_SESSION * SESSIONS_PER_YEAR


def sharpe(bar_pnl, periods_per_year: float = BARS_PER_YEAR) -> float:
    x = np.asarray(bar_pnl, dtype="float64")
    if len(x) < 2:
        return float("nan")
    return annualized_sharpe(float(x.mean()), float(x.std(ddof=1)), periods_per_year)


def annualized_sharpe(mean: float, sd: float, periods_per_year: float) -> float:
    return float(mean / sd * math.sqrt(periods_per_year)) if sd > 0 else float("nan")
