"""Backtest engine, metrics and baselines (pure numpy/pandas; no Dagster)."""

import datetime as dt
import math

import numpy as np
import pytest

from usdcop_assets.backtest import (
    BARS_PER_YEAR,
    SESSIONS_PER_YEAR,
    all_baselines,
    backtest_actions,
    bootstrap_sharpe_ci,
    bootstrap_sharpe_diff_ci,
    buy_and_hold,
    buy_and_hold_held,
    compare,
    flat,
    performance,
    run_backtest,
    sma_crossover,
)
from usdcop_assets.core import calendar as cal
from usdcop_assets.rl import CostConfig, RiskLimits

NO_COST = CostConfig(0.0, 0.0)


def test_annualisation_constants_follow_the_calendar():
    assert BARS_PER_YEAR == SESSIONS_PER_YEAR * len(cal.session_bars(dt.date(2025, 3, 4)))
    # the 252-day convention, within 5% of the sessions a Bogota year actually has (242-246 in 2020-2026)
    per_year = [len(cal.trading_days(dt.date(y, 1, 1), dt.date(y, 12, 31))) for y in range(2020, 2027)]
    assert all(abs(SESSIONS_PER_YEAR / n - 1) < 0.05 for n in per_year), per_year


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


def test_buy_and_hold_held_carries_the_night():
    # two sessions with an overnight gap (4 -> 5); next_ret is 0 at each session's last bar, as in l4/episodes
    ids = ["d1"] * 3 + ["d2"] * 3
    close = np.array([1.0, 2.0, 4.0, 5.0, 4.0, 8.0])
    r = np.array([np.log(2), np.log(2), 0.0, np.log(0.8), np.log(2), 0.0])
    costs = CostConfig(4.0, 1.0)
    held = buy_and_hold_held(close, r, ids, costs)
    # the product of the close-to-close returns (8 / 1) minus one entry and one exit cost
    assert held["pnl"].sum() == pytest.approx(np.log(8.0) - 2 * costs.rate, abs=1e-15)
    np.testing.assert_allclose(
        held["gross"], [0.0, np.log(2), np.log(2), np.log(5 / 4), np.log(0.8), np.log(2)], rtol=0, atol=1e-15
    )
    np.testing.assert_array_equal(held["position"], [1, 1, 1, 1, 1, 0])
    assert held["cost"].sum() == pytest.approx(2 * costs.rate, abs=1e-18)
    # intraday buy-and-hold: flat at each close; the difference is the overnight gap and its 2 extra costs
    intraday = run_backtest(buy_and_hold(ids), r, ids, costs)["pnl"].sum()
    assert held["pnl"].sum() - intraday == pytest.approx(np.log(5 / 4) + 2 * costs.rate, abs=1e-15)


def test_buy_and_hold_held_differs_from_intraday_by_gaps_and_costs():
    rng = np.random.default_rng(5)
    n_s, bars = 7, 30
    ids = np.repeat([f"2025-01-{d:02d}" for d in range(1, n_s + 1)], bars)
    close = 4000 * np.exp(np.cumsum(rng.normal(0, 1e-3, len(ids))))
    r = np.r_[np.log(close[1:] / close[:-1]), 0.0]
    r[bars - 1 :: bars] = 0.0  # as l4/episodes: no next return across the night
    gaps = np.log(close[bars::bars] / close[bars - 1 : -1 : bars])
    costs = CostConfig(4.0, 1.0)
    held = buy_and_hold_held(close, r, ids, costs)
    intraday = run_backtest(buy_and_hold(ids), r, ids, costs)
    assert held["pnl"].sum() == pytest.approx(np.log(close[-1] / close[0]) - 2 * costs.rate, abs=1e-12)
    assert held["pnl"].sum() - intraday["pnl"].sum() == pytest.approx(
        gaps.sum() + 2 * (n_s - 1) * costs.rate, abs=1e-12
    )
    # per session: the close-to-close return including the gap into it
    by_session = held["pnl"].reshape(n_s, bars).sum(axis=1)
    intra = intraday["pnl"].to_numpy().reshape(n_s, bars).sum(axis=1)
    np.testing.assert_allclose(by_session[1:-1] - intra[1:-1], gaps[:-1] + 2 * costs.rate, rtol=0, atol=1e-12)
    # in compare's table, beside the risk-ruled strategies, with the same metrics and the paired CI
    table = compare(
        {"buy_and_hold": buy_and_hold(ids)}, r, ids, costs, simulated={"buy_and_hold_held": held}, n_boot=50
    ).set_index("strategy")
    assert list(table.index) == ["buy_and_hold", "buy_and_hold_held"]
    row = table.loc["buy_and_hold_held"]
    assert row["total_return"] == pytest.approx(np.expm1(held["pnl"].sum()), abs=1e-12)
    assert row["turnover"] == 2.0 and row["sessions"] == n_s
    assert row["sharpe_ci_low"] <= row["sharpe"] <= row["sharpe_ci_high"]
    assert np.isfinite(row["sharpe_diff_vs_buy_and_hold"])
    with pytest.raises(ValueError, match="both"):
        compare({"buy_and_hold": buy_and_hold(ids)}, r, ids, costs, simulated={"buy_and_hold": held}, n_boot=0)


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
    sd = math.sqrt(((0.00875) ** 2 + (-0.02125) ** 2 + 0.00875**2 + 0.00375**2) / 3)
    per_year = 2 * 252  # 2 bars a session in this data, 252 sessions a year (years are counted in sessions)
    assert m["sharpe"] == pytest.approx(mean / sd * math.sqrt(per_year))
    assert m["volatility"] == pytest.approx(sd * math.sqrt(per_year))
    assert m["sortino"] == pytest.approx(mean / math.sqrt(0.02**2 / 4) * math.sqrt(per_year))
    assert m["total_return"] == pytest.approx(math.exp(0.005) - 1)
    assert m["annualized_return"] == pytest.approx(math.exp(0.005 * 252 / 2) - 1)  # 2 sessions = 2/252 of a year
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
    table = compare(
        {"agent": rng.uniform(-1, 1, len(ids)), **all_baselines(close, ids)}, r, ids, CostConfig(), n_boot=200
    )
    assert list(table["strategy"]) == ["agent", "flat", "buy_and_hold", "sma_5_20"]
    bh = table.set_index("strategy").loc["buy_and_hold"]
    assert bh["total_log_return"] == pytest.approx(r.sum() - 30 * 2 * CostConfig().rate)
    assert bh["sharpe_diff_vs_buy_and_hold"] == 0.0


# -- metrics against empyrical's definitions, written out independently ---------------------------------
# empyrical (quantopian/empyrical, empyrical-reloaded) with risk-free 0 / required return 0:
#   sharpe_ratio      = mean(r) / std(r, ddof=1) * sqrt(ann)
#   sortino_ratio     = mean(r) * ann / downside_risk,  downside_risk = sqrt(mean(min(r, 0)^2)) * sqrt(ann)
#   annual_volatility = std(r, ddof=1) * sqrt(ann)
#   cum_returns_final = prod(1 + r) - 1;  annual_return = (1 + cum_returns_final) ** (ann / n) - 1
#   max_drawdown      = min((C - fmax.accumulate(C)) / fmax.accumulate(C)), C = [100, 100 * cumprod(1 + r)]
#   calmar_ratio      = annual_return / |max_drawdown| (NaN when max_drawdown >= 0)
# The module's P&L is log; the ratios use it directly, the compounding metrics use s = expm1(pnl).


def emp_sharpe(r, ann):
    return np.mean(r) / np.std(r, ddof=1) * np.sqrt(ann)


def emp_sortino(r, ann):
    downside = np.sqrt(np.mean(np.square(np.clip(r, -np.inf, 0.0)))) * np.sqrt(ann)
    return np.mean(r) * ann / downside


def emp_annual_volatility(r, ann):
    return np.std(r, ddof=1) * np.sqrt(ann)


def emp_cum_returns_final(s):
    return np.prod(1.0 + s) - 1.0


def emp_annual_return(s, ann):
    return (1.0 + emp_cum_returns_final(s)) ** (1.0 / (len(s) / ann)) - 1.0


def emp_max_drawdown(s):
    cumulative = np.r_[100.0, 100.0 * np.cumprod(1.0 + s)]
    peak = np.fmax.accumulate(cumulative)
    return np.nanmin((cumulative - peak) / peak)


def emp_calmar(s, ann):
    mdd = emp_max_drawdown(s)
    return emp_annual_return(s, ann) / abs(mdd) if mdd < 0 else float("nan")


def fixed_series():
    rng = np.random.default_rng(2024)
    ids = np.repeat(np.arange(12), 60)
    return {
        "drift_up": (rng.normal(3e-5, 8e-4, 720), ids),
        "drift_down": (rng.normal(-4e-5, 1.2e-3, 720), ids),
        "fat_tails": (rng.standard_t(3, 720) * 5e-4, ids),
        "hand": (np.array([0.01, -0.02, 0.01, 0.005, -0.003, 0.0, 0.004, -0.001]), np.repeat([0, 1], 4)),
    }


@pytest.mark.parametrize("name", ["drift_up", "drift_down", "fat_tails", "hand"])
def test_metrics_equal_empyrical_definitions(name):
    pnl, ids = fixed_series()[name]
    m = performance(pnl, np.ones(len(pnl)), ids)
    s = np.expm1(pnl)  # simple bar returns: prod(1 + s) = exp(sum(pnl))
    rel = dict(rel=1e-9, abs=1e-12)
    ann = len(pnl) / len(np.unique(ids)) * 252  # empyrical's annualization = the bars a year this data has
    assert ann == (15120 if name != "hand" else 4 * 252)
    assert m["sharpe"] == pytest.approx(emp_sharpe(pnl, ann), **rel)
    assert m["sortino"] == pytest.approx(emp_sortino(pnl, ann), **rel)
    assert m["volatility"] == pytest.approx(emp_annual_volatility(pnl, ann), **rel)
    assert m["total_return"] == pytest.approx(emp_cum_returns_final(s), **rel)
    assert m["annualized_return"] == pytest.approx(emp_annual_return(s, ann), **rel)
    assert m["max_drawdown"] == pytest.approx(-emp_max_drawdown(s), **rel)
    assert m["calmar"] == pytest.approx(emp_calmar(s, ann), **rel)
    session = np.bincount(ids, weights=pnl)
    assert m["sharpe_session"] == pytest.approx(emp_sharpe(session, 252), **rel)
    assert m["max_drawdown"] > 0


def test_equity_compounding_is_exp_cumsum_of_log_pnl():
    pnl, ids = fixed_series()["fat_tails"]
    pos = np.ones(len(pnl))
    r = pnl.copy()
    f = run_backtest(pos, r, ids, NO_COST)
    np.testing.assert_array_equal(f["pnl"].to_numpy(), pnl)
    np.testing.assert_allclose(f["equity"].to_numpy(), np.cumprod(1.0 + np.expm1(pnl)), rtol=1e-12)
    m = performance(pnl, pos, ids)
    assert m["total_return"] == pytest.approx(f["equity"].iloc[-1] - 1.0, rel=1e-12)
    eq = f["equity"].to_numpy()
    assert m["max_drawdown"] == pytest.approx(np.max(1 - eq / np.maximum.accumulate(np.maximum(eq, 1.0))), rel=1e-12)


def test_ratio_edge_cases_are_nan_not_inf():
    ids = ["a"] * 3
    gains = performance([0.001, 0.002, 0.003], [1, 1, 1], ids)
    assert math.isnan(gains["sortino"])  # no losing bar (empyrical gives inf)
    assert math.isnan(gains["calmar"]) and gains["max_drawdown"] == 0.0 and gains["max_drawdown_duration_bars"] == 0
    const = performance([0.001] * 3, [1, 1, 1], ids)
    assert math.isnan(const["sharpe"])  # zero volatility


# -- vectorized metrics against plain loops on random data -----------------------------------------------


def loop_drawdown_duration(pnl):
    log_eq = peak = 0.0
    run = longest = 0
    for x in pnl:
        log_eq += x
        peak = max(peak, log_eq)
        run = run + 1 if peak - log_eq > 1e-12 else 0
        longest = max(longest, run)
    return longest


def loop_trades(pnl, pos, ids):
    """Trades as the metrics docstring defines them, one bar at a time."""
    out, cur, prev_sign, prev_id = [], None, 0, object()
    for x, p, sid in zip(np.asarray(pnl).tolist(), np.asarray(pos).tolist(), np.asarray(ids).tolist()):
        sign = (p > 0) - (p < 0)
        if sign != 0 and (sign != prev_sign or sid != prev_id):
            if cur is not None:
                out.append(cur)
            cur = [x, 1]
        elif sign != 0:
            cur[0] += x
            cur[1] += 1
        elif prev_sign != 0:
            cur[0] += x  # the flat bar that closes a trade: its closing cost
        prev_sign, prev_id = sign, sid
    if cur is not None:
        out.append(cur)
    return np.array([t[0] for t in out]), np.array([t[1] for t in out])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trade_statistics_and_drawdown_equal_loop_references(seed):
    rng = np.random.default_rng(seed)
    ids = np.repeat([f"2024-01-{d:02d}" for d in range(1, 31)], 40)
    n = len(ids)
    raw = np.repeat(rng.choice([-1.0, -0.5, 0.0, 0.3, 1.0], n // 4), 4)
    raw[rng.random(n) < 0.1] = 0.0
    r = rng.normal(0, 1e-3, n)
    f = backtest_actions(raw, r, ids, CostConfig(4.0, 1.0), RiskLimits(max_position=0.8))
    pnl, pos = f["pnl"].to_numpy(), f["position"].to_numpy()
    m = performance(pnl, pos, ids)
    tp, lengths = loop_trades(pnl, pos, ids)
    assert m["n_trades"] == len(tp) > 50
    assert m["win_rate"] == pytest.approx(np.mean(tp > 0))
    assert m["profit_factor"] == pytest.approx(tp[tp > 0].sum() / -tp[tp < 0].sum(), rel=1e-12)
    assert m["avg_holding_bars"] == pytest.approx(lengths.mean())
    assert m["max_drawdown_duration_bars"] == loop_drawdown_duration(pnl.tolist()) > 0
    assert m["turnover"] == pytest.approx(sum(abs(b - a) for a, b in zip([0.0] + pos[:-1].tolist(), pos.tolist())))
    assert m["exposure"] == pytest.approx(np.mean(pos != 0))
    from usdcop_assets.backtest.metrics import trades

    got_pnl, got_len = trades(pnl, pos, ids)
    np.testing.assert_allclose(got_pnl, tp, rtol=0, atol=1e-16)
    np.testing.assert_array_equal(got_len, lengths)
    assert sum(got_pnl) == pytest.approx(
        pnl.sum(), abs=1e-12
    )  # every bar's P&L is in exactly one trade (pos ends flat)


def test_backtest_frame_session_column_keeps_its_ids_and_dtype():
    import pandas as pd

    ids = np.array(["2024-01-02"] * 3 + ["2024-01-03"] * 2, dtype=object)
    f = backtest_actions([0.5, 1.0, 0.2, -0.3, 0.0], np.zeros(5), ids, NO_COST)
    assert f["session"].tolist() == ids.tolist()
    assert f["session"].dtype == pd.DataFrame({"session": ids})["session"].dtype
    assert list(f.columns) == ["session", "target", "position", "trade", "cost", "gross", "pnl", "equity", "risk_flags"]
    ints = backtest_actions([0.5] * 4, np.zeros(4), np.array([7, 7, 9, 9]), NO_COST)
    assert ints["session"].tolist() == [7, 7, 9, 9] and ints["session"].dtype == np.int64


def test_compare_gives_the_same_table_for_string_ids_and_their_codes():
    rng = np.random.default_rng(5)
    days = np.repeat([f"2024-02-{d:02d}" for d in range(1, 21)], 60)
    codes = np.repeat(np.arange(20), 60)
    r = rng.normal(0, 1e-3, len(days))
    strategies = {"agent": rng.uniform(-1, 1, len(days)), "buy_and_hold": buy_and_hold(days)}
    a = compare(strategies, r, days, CostConfig(), RiskLimits(daily_loss_stop=0.004), n_boot=100)
    b = compare(strategies, r, codes, CostConfig(), RiskLimits(daily_loss_stop=0.004), n_boot=100)
    import pandas as pd

    pd.testing.assert_frame_equal(a, b)


def test_gappy_sessions_annualise_by_sessions_not_by_bars():
    """57 bars a session for 252 sessions is one year, not 57/60 of one: annualised return = total return."""
    rng = np.random.default_rng(3)
    ids = np.repeat(np.arange(252), 57)
    pnl = rng.normal(2e-5, 5e-4, len(ids))
    m = performance(pnl, np.ones(len(pnl)), ids)
    assert m["annualized_return"] == pytest.approx(m["total_return"], rel=1e-12)
    assert m["sharpe"] == pytest.approx(pnl.mean() / pnl.std(ddof=1) * math.sqrt(57 * 252), rel=1e-12)
