"""backtest.experiment_comparison: the selected strategy, every candidate, every seed as a DSR trial and a PBO column,
LightGBM and the baselines on the same bars (l6/experiment_performance and the harness call it)."""

import numpy as np
import pandas as pd
import pytest

from usdcop_assets.backtest.experiment_comparison import experiment_comparison
from usdcop_assets.backtest.overfitting import deflated_sharpe_ratio, session_sharpe
from usdcop_assets.rl.costs import CostConfig


def _bars(n_sessions=12, bars=12, seed=3):
    rng = np.random.default_rng(seed)
    sessions = np.repeat([f"2024-01-{d:02d}" for d in range(1, n_sessions + 1)], bars)
    ret = rng.normal(0, 1e-3, len(sessions))
    close = 4000 * np.exp(np.cumsum(ret))
    return pd.DataFrame({"session": sessions, "next_ret": ret, "close": close})


def test_the_selected_strategy_trials_and_baselines_on_the_same_bars():
    bars = _bars()
    n = len(bars)
    rng = np.random.default_rng(0)
    seeds = {f"ppo_a_seed{s}": np.clip(rng.normal(0, 0.6, n), -1, 1) for s in (1, 2, 3)}
    a = np.mean(list(seeds.values()), axis=0)
    b = np.sign(bars["next_ret"].to_numpy())  # an oracle: ranks first out of sample
    trials = {**seeds, "ppo_b_seed1": b}
    out = experiment_comparison(bars, {"ppo_a": a, "ppo_b": b}, trials, selected=a, extra={"lightgbm": -b})
    table = out["table"].set_index("strategy")
    assert {"selected", "ppo_a", "ppo_b", "lightgbm", "flat", "buy_and_hold", "sma_5_20", "buy_and_hold_held"} == set(
        table.index
    )
    assert table.loc["selected", "total_return"] == table.loc["ppo_a", "total_return"]  # the same positions
    assert table.loc["ppo_b", "sharpe"] > 0 > table.loc["lightgbm", "sharpe"]
    assert out["n_trials"] == 4
    # DSR against the four trials' per-session Sharpes, by hand
    pnl = out["session_pnl"]["ppo_b"]
    trial_sharpes = list(out["trial_sharpe_per_session"].values())
    assert trial_sharpes[-1] == pytest.approx(session_sharpe(pnl))
    assert table.loc["ppo_b", "deflated_sharpe"] == pytest.approx(deflated_sharpe_ratio(pnl, trial_sharpes).dsr)
    assert pd.isna(table.loc["flat", "deflated_sharpe"])  # baselines are not candidates
    # PBO over the trials: the oracle is best in every split, so picking the in-sample best never overfits
    assert out["pbo"]["pbo"] == 0.0 and out["pbo_candidates"]["pbo"] == 0.0
    # earlier screens' trials count in N (and only there): a lower DSR, the same table otherwise
    later = experiment_comparison(bars, {"ppo_a": a, "ppo_b": b}, trials, selected=a, prior_trials=20)
    assert later["n_trials"] == 24
    dsr_later = later["table"].set_index("strategy").loc["ppo_b", "deflated_sharpe"]
    assert dsr_later == pytest.approx(deflated_sharpe_ratio(pnl, trial_sharpes, prior_trials=20).dsr)
    assert dsr_later < table.loc["ppo_b", "deflated_sharpe"]
    # costs are charged: the net total is below the gross
    gross = float(np.expm1(np.sum(b * bars["next_ret"].to_numpy())))
    assert table.loc["ppo_b", "total_return"] < gross


def test_positions_of_another_length_are_refused():
    bars = _bars(4)
    with pytest.raises(ValueError, match="'ppo_a' has 3 positions for 48 bars"):
        experiment_comparison(bars, {"ppo_a": np.zeros(3)}, {}, selected=np.zeros(48), costs=CostConfig())
