"""Backtest engine, metrics and baselines (pure numpy/pandas; no Dagster)."""

import math

import numpy as np
import pytest

from usdcop_assets.backtest import (BARS_PER_YEAR, SESSIONS_PER_YEAR, all_baselines, backtest_actions, bootstrap_sharpe_ci,
                                    bootstrap_sharpe_diff_ci, buy_and_hold, compare, flat, performance, run_backtest,
                                    sma_crossover)
from usdcop_assets.trading import CostConfig, RiskLimits

NO_COST = CostConfig(0.0, 0.0)


def test_annualisation_constants():
    assert BARS_PER_YEAR == 60 * 252 and SESSIONS_PER_YEAR == 252


def test_action_at_t_earns_t_to_t_plus_1_only():
    r = np.array([0.0, 0.0, 0.01, 0.0, 0.0])  # the only move is from bar 2's close to bar 3's close
    ids = ["s"] * 5
    on_time = run_backtest([0, 0, 1, 0, 0], r, ids, NO_COST)
    late = run_backtest([0, 0, 0, 1, 0], r, ids, NO_COST)  # known only at t+1
    assert on_time["pnl"].sum() == pytest.approx(0.01)
    assert late["pnl"].sum() == 0.0
    np.testing.assert_allclose(on_time["equity"].to_numpy(), np.exp(np.cumsum([0, 0, 0.01, 0, 0])))


def test_costs_in_bps_exactly():
    costs = CostConfig(spread_bps=4.0, slippage_bps=1.0)
    assert costs.rate == pytest.approx(3e-4, abs=1e-18)
    f = run_backtest([0.5, -0.5, 0.0], [0.002, -0.001, 0.0], ["s"] * 3, costs)
    np.testing.assert_allclose(f["trade"], [0.5, -1.0, 0.5])
    np.testing.assert_allclose(f["cost"], [1.5e-4, 3e-4, 1.5e-4], rtol=0, atol=1e-18)
    np.testing.assert_allclose(f["pnl"], [0.001 - 1.5e-4, 0.0005 - 3e-4, -1.5e-4], rtol=0, atol=1e-15)


def test_buy_and_hold_equals_sum_of_returns_minus_costs():
    rng = np.random.default_rng(3)
    ids = np.repeat(np.arange(20), 60)
    r = rng.normal(0, 1e-3, len(ids))
    r[59::60] = 0.0
    costs = CostConfig(4.0, 1.0)
    f = run_backtest(buy_and_hold(ids), r, ids, costs)
    assert f["pnl"].sum() == pytest.approx(r.sum() - 20 * 2 * costs.rate, abs=1e-12)
    assert (f["position"].to_numpy()[59::60] == 0).all()
    assert run_backtest(flat(ids), r, ids, costs)["pnl"].abs().sum() == 0.0


def test_sma_crossover_is_session_anchored():
    ids = ["a"] * 6 + ["b"] * 6
    close = [1, 2, 3, 4, 5, 6, 60, 50, 40, 30, 20, 10]
    pos = sma_crossover(close, ids, fast=2, slow=3)
    np.testing.assert_array_equal(pos, [0, 0, 1, 1, 1, 0, 0, 0, -1, -1, -1, 0])
    np.testing.assert_array_equal(sma_crossover(close, ids, 2, 3, long_only=True), [0, 0, 1, 1, 1, 0] + [0] * 6)
    assert set(all_baselines(close, ids, 2, 3)) == {"flat", "buy_and_hold", "sma_2_3"}


def test_metrics_by_hand():
    pnl = [0.01, -0.02, 0.01, 0.005]
    m = performance(pnl, [1, 1, 1, 1], ["a", "a", "b", "b"])
    mean = 0.00125
    sd = math.sqrt(((0.00875) ** 2 + (-0.02125) ** 2 + 0.00875 ** 2 + 0.00375 ** 2) / 3)
    assert m["sharpe"] == pytest.approx(mean / sd * math.sqrt(15120))
    assert m["volatility"] == pytest.approx(sd * math.sqrt(15120))
    assert m["sortino"] == pytest.approx(mean / math.sqrt(0.02 ** 2 / 4) * math.sqrt(15120))
    assert m["total_return"] == pytest.approx(math.exp(0.005) - 1)
    assert m["annualized_return"] == pytest.approx(math.exp(mean * 15120) - 1)
    # log equity 0.01, -0.01, 0.0, 0.005 against a peak of 0.01: worst 0.02 below, under water for 3 bars
    assert m["max_drawdown"] == pytest.approx(1 - math.exp(-0.02))
    assert m["max_drawdown_duration_bars"] == 3
    assert m["calmar"] == pytest.approx(m["annualized_return"] / m["max_drawdown"])
    s = [-0.01, 0.015]
    assert m["sharpe_session"] == pytest.approx(np.mean(s) / np.std(s, ddof=1) * math.sqrt(252))
    assert m["sessions"] == 2 and m["n_trades"] == 2  # a session boundary ends a trade


def test_trades_win_rate_profit_factor():
    pos = [1, 1, 0, -1, -1, 0, 1, 0]
    pnl = [0.01, -0.002, -0.0003, 0.004, 0.001, -0.0003, -0.01, -0.0003]
    m = performance(pnl, pos, ["d"] * 8)
    wins = (0.01 - 0.002 - 0.0003) + (0.004 + 0.001 - 0.0003)
    assert m["n_trades"] == 3
    assert m["win_rate"] == pytest.approx(2 / 3)
    assert m["profit_factor"] == pytest.approx(wins / 0.0103)
    assert m["avg_holding_bars"] == pytest.approx(5 / 3)
    assert m["turnover"] == pytest.approx(6.0)
    assert m["exposure"] == pytest.approx(5 / 8)
    none = performance([0.0] * 4, [0] * 4, ["d"] * 4)
    assert none["n_trades"] == 0 and math.isnan(none["win_rate"]) and math.isnan(none["sharpe"])


def test_bootstrap_ci_contains_estimate_and_is_reproducible():
    rng = np.random.default_rng(7)
    ids = np.repeat(np.arange(100), 60)
    pnl = rng.normal(2e-5, 1e-3, len(ids))
    a = bootstrap_sharpe_ci(pnl, ids, n=500, seed=11)
    assert a["low"] < a["estimate"] < a["high"]
    assert a == bootstrap_sharpe_ci(pnl, ids, n=500, seed=11)
    assert a["low"] != bootstrap_sharpe_ci(pnl, ids, n=500, seed=12)["low"]
    assert a["estimate"] == pytest.approx(performance(pnl, np.ones(len(ids)), ids)["sharpe"])
    other = rng.normal(0, 1e-3, len(ids))
    d = bootstrap_sharpe_diff_ci(pnl, other, ids, n=500, seed=11)
    assert d["low"] < d["estimate"] < d["high"]
    assert d == bootstrap_sharpe_diff_ci(pnl, other, ids, n=500, seed=11)
    same = bootstrap_sharpe_diff_ci(pnl, pnl, ids, n=200, seed=1)  # paired: identical series differ by exactly 0
    assert same["low"] == same["high"] == 0.0


def test_backtest_actions_applies_risk_and_compare_runs():
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(30), 60)
    r = rng.normal(0, 1e-3, len(ids))
    r[59::60] = 0.0
    close = 4000 * np.exp(np.r_[0.0, np.cumsum(r)[:-1]])
    f = backtest_actions(np.full(len(ids), 2.0), r, ids, CostConfig(), RiskLimits(max_position=0.5))
    assert f["position"].abs().max() == 0.5 and (f["position"].to_numpy()[59::60] == 0).all()
    table = compare({"agent": rng.uniform(-1, 1, len(ids)), **all_baselines(close, ids)}, r, ids, CostConfig(), n_boot=200)
    assert list(table["strategy"]) == ["agent", "flat", "buy_and_hold", "sma_5_20"]
    bh = table.set_index("strategy").loc["buy_and_hold"]
    assert bh["total_log_return"] == pytest.approx(r.sum() - 30 * 2 * CostConfig().rate)
    assert bh["sharpe_diff_vs_buy_and_hold"] == 0.0
