"""Simple trading rules (SMA crossovers, time-of-day positions) and their Sharpe ratios on a bar frame: what
the synthetic market must give no edge to (integration/test_synthetic_market.py, bench/synthetic_market.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from usdcop_assets.backtest import metrics
from usdcop_assets.backtest.baselines import sma_crossover
from usdcop_assets.backtest.engine import run_backtest
from usdcop_assets.core import calendar as cal
from usdcop_assets.rl.costs import CostConfig, last_of_session


def bar_frame(bars: pd.DataFrame):
    """Session ids, closes and next-bar log returns (0 at a session's last bar) of a clean grid."""
    session = cal.session_dates(bars["time"]).astype(str).to_numpy(dtype=object)
    close = bars["close"].to_numpy()
    nxt = np.r_[np.diff(np.log(close)), 0.0]
    nxt[last_of_session(session)] = 0.0
    bar = (
        (pd.DatetimeIndex(bars["time"]).tz_convert(cal.TZ).hour - 8) * 12
        + pd.DatetimeIndex(bars["time"]).tz_convert(cal.TZ).minute // 5
    ).to_numpy()
    return session, close, nxt, bar


def simple_rules(close, session, bar) -> dict[str, np.ndarray]:
    rules = {f"sma_{f}_{s}": sma_crossover(close, session, f, s) for f, s in ((5, 20), (10, 50), (3, 12), (20, 50))}
    last = last_of_session(session)
    rules["long_first_hour"] = np.where((bar < 12) & ~last, 1.0, 0.0)
    rules["short_last_hour"] = np.where((bar >= 48) & ~last, -1.0, 0.0)
    rules["first_long_last_short"] = rules["long_first_hour"] + rules["short_last_hour"]
    rules["long_midday"] = np.where((bar >= 12) & (bar < 48), 1.0, 0.0)
    return rules


def rule_sharpes(bars: pd.DataFrame, costs: CostConfig) -> dict[str, float]:
    session, close, nxt, bar = bar_frame(bars)
    return {
        name: metrics.sharpe(run_backtest(pos, nxt, session, costs)["pnl"].to_numpy())
        for name, pos in simple_rules(close, session, bar).items()
    }
