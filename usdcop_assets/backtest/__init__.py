"""Backtest: vectorized engine, metrics (one annualisation) and baselines (pure; no Dagster)."""

from usdcop_assets.backtest.baselines import all_baselines, buy_and_hold, buy_and_hold_held, flat, sma_crossover
from usdcop_assets.backtest.engine import backtest_actions, compare, run_backtest
from usdcop_assets.backtest.metrics import (
    BARS_PER_YEAR,
    SESSIONS_PER_YEAR,
    bootstrap_sharpe_ci,
    bootstrap_sharpe_diff_ci,
    performance,
)

__all__ = [
    "BARS_PER_YEAR",
    "SESSIONS_PER_YEAR",
    "all_baselines",
    "backtest_actions",
    "bootstrap_sharpe_ci",
    "bootstrap_sharpe_diff_ci",
    "buy_and_hold",
    "buy_and_hold_held",
    "compare",
    "flat",
    "performance",
    "run_backtest",
    "sma_crossover",
]
