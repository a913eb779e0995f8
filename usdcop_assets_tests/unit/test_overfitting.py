"""Deflated Sharpe ratio and PBO (CSCV) against values worked out by hand on small fixed inputs (pure, fast)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from usdcop_assets.backtest.overfitting import (
    EULER_GAMMA,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
)


def phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


# --- PSR -----------------------------------------------------------------------------------------------


def test_psr_normal_returns_by_hand():
    # SR = 0.1, SR* = 0, n = 100, skew 0, raw kurtosis 3 (normal):
    # denominator sqrt(1 - 0 * 0.1 + (3 - 1) / 4 * 0.1^2) = sqrt(1.005) = 1.002497
    # z = 0.1 * sqrt(99) / 1.002497 = 0.994987 / 1.002497 = 0.992509  ->  PSR = Phi(0.992509) = 0.83953
    psr = probabilistic_sharpe_ratio(0.1, 0.0, 100, 0.0, 3.0)
    assert psr == pytest.approx(phi(0.1 * math.sqrt(99) / math.sqrt(1.005)), abs=1e-12)
    assert psr == pytest.approx(0.83953, abs=1e-5)


def test_psr_skewed_fat_tailed_by_hand():
    # SR = 0.2, SR* = 0.05, n = 51, skew -1, raw kurtosis 6:
    # denominator^2 = 1 - (-1)(0.2) + (6 - 1) / 4 * 0.04 = 1 + 0.2 + 0.05 = 1.25
    # z = 0.15 * sqrt(50) / sqrt(1.25) = 0.15 * 6.324555 = 0.948683  ->  PSR = Phi(0.948683) = 0.82861
    psr = probabilistic_sharpe_ratio(0.2, 0.05, 51, -1.0, 6.0)
    assert psr == pytest.approx(phi(0.15 * math.sqrt(50) / math.sqrt(1.25)), abs=1e-12)
    assert psr == pytest.approx(0.82861, abs=1e-5)
    # negative skew and fat tails widen the estimate's error: lower than with normal returns
    assert psr < probabilistic_sharpe_ratio(0.2, 0.05, 51, 0.0, 3.0)


# --- expected maximum Sharpe ---------------------------------------------------------------------------


def test_expected_max_sharpe_one_trial_is_zero_and_grows_with_n():
    assert expected_max_sharpe(1, 0.5) == 0.0
    # N = 2, V = 1: (1 - g) * Phi^-1(1/2) + g * Phi^-1(1 - 1/(2e)) = 0 + 0.577216 * Phi^-1(0.816060)
    #             = 0.577216 * 0.900453 = 0.519755
    assert expected_max_sharpe(2, 1.0) == pytest.approx(EULER_GAMMA * 0.9004526, abs=1e-6)
    assert expected_max_sharpe(2, 1.0) == pytest.approx(0.519755, abs=1e-6)
    values = [expected_max_sharpe(n, 1.0) for n in (1, 2, 5, 10, 100, 1000)]
    assert all(b > a for a, b in zip(values, values[1:]))
    # scales with the standard deviation of the trials' Sharpe ratios: V = 4 doubles it
    assert expected_max_sharpe(10, 4.0) == pytest.approx(2 * expected_max_sharpe(10, 1.0))
    assert expected_max_sharpe(10, 0.0) == 0.0


# --- DSR -----------------------------------------------------------------------------------------------


def test_dsr_by_hand():
    # returns 1, -1, 2, 0, 3: mean 1, deviations 0, -2, 1, -1, 2, sum of squares 10
    #   SR = 1 / sqrt(10 / 4) = 0.632456 (std ddof=1)
    #   population moments: m2 = 2, m3 = (0 - 8 + 1 - 1 + 8) / 5 = 0, m4 = (0 + 16 + 1 + 1 + 16) / 5 = 6.8
    #   skew = 0, raw kurtosis = 6.8 / 2^2 = 1.7; denominator^2 = 1 - 0 + 0.7 / 4 * 0.4 = 1.07
    # trials 0.6, 0.2, -0.2: V = (0.16 + 0 + 0.16) / 2 = 0.16, N = 3
    #   SR0 = 0.4 * (0.422784 * Phi^-1(2/3) + 0.577216 * Phi^-1(1 - 1/(3e)))
    #       = 0.4 * (0.422784 * 0.430727 + 0.577216 * 1.161957) = 0.4 * 0.852804 = 0.341122
    #   DSR = Phi((0.632456 - 0.341122) * sqrt(4) / sqrt(1.07)) = Phi(0.563286) = 0.71338
    #   PSR(0) = Phi(0.632456 * 2 / sqrt(1.07)) = Phi(1.222838) = 0.88930
    d = deflated_sharpe_ratio([1.0, -1.0, 2.0, 0.0, 3.0], [0.6, 0.2, -0.2])
    assert d.sr == pytest.approx(1 / math.sqrt(2.5), abs=1e-12)
    assert (d.skew, d.kurtosis) == (pytest.approx(0.0, abs=1e-12), pytest.approx(1.7, abs=1e-12))
    assert (d.n_trials, d.n_obs) == (3, 5)
    assert d.var_trials == pytest.approx(0.16)
    assert d.sr0 == pytest.approx(0.341122, abs=1e-6)
    assert d.dsr == pytest.approx(0.71338, abs=1e-5)
    assert d.psr_zero == pytest.approx(0.88930, abs=1e-5)
    assert d.dsr <= d.psr_zero


def test_dsr_one_trial_is_psr_at_zero():
    d = deflated_sharpe_ratio([1.0, -1.0, 2.0, 0.0, 3.0], [0.632])
    assert d.sr0 == 0.0 and d.var_trials == 0.0
    assert d.dsr == d.psr_zero == pytest.approx(phi(0.6324555 * 2 / math.sqrt(1.07)), abs=1e-6)


def test_dsr_never_above_psr_at_zero():
    rng = np.random.default_rng(3)
    for n_trials in (2, 5, 50):
        r = rng.normal(0.05, 1.0, 250)
        d = deflated_sharpe_ratio(r, rng.normal(0.0, 0.1, n_trials))
        assert d.sr0 > 0 and d.dsr <= d.psr_zero


@pytest.mark.parametrize(
    "returns, trials, message",
    [
        ([0.1, 0.2], [0.1], "needs at least 3 returns, got 2"),
        ([0.1, 0.1, 0.1, 0.1], [0.1], "zero variance"),
        ([0.1, 0.1, 0.1], [0.1], "zero variance"),  # its std is ~1e-17 from rounding, not 0
        ([0.1, float("nan"), 0.2], [0.1], "1 returns are not finite"),
        ([0.1, -0.1, 0.2], [], "trial_sharpes is empty"),
        ([0.1, -0.1, 0.2], [0.1, float("nan")], "1 trial Sharpe ratios are not finite"),
    ],
)
def test_dsr_degenerate_input(returns, trials, message):
    with pytest.raises(ValueError, match=message):
        deflated_sharpe_ratio(returns, trials)


def test_psr_and_expected_max_degenerate_input():
    with pytest.raises(ValueError, match="needs at least 3 observations, got 2"):
        probabilistic_sharpe_ratio(0.1, 0.0, 2, 0.0, 3.0)
    with pytest.raises(ValueError, match="is the kurtosis raw, not excess"):
        probabilistic_sharpe_ratio(2.0, 0.0, 100, 1.0, 1.0)  # 1 - 2 + 0 = -1
    with pytest.raises(ValueError, match="n_trials must be >= 1"):
        expected_max_sharpe(0, 1.0)
    with pytest.raises(ValueError, match="var_trials must be finite and >= 0"):
        expected_max_sharpe(3, -0.1)


# --- PBO -----------------------------------------------------------------------------------------------


def test_pbo_in_sample_winner_always_loses_out_of_sample():
    # A's block sums 1, 2, 4, -7 (two equal rows a block) against B = 0: A's total is 0 and no two blocks sum to 0,
    # so on every split A wins in sample exactly when it loses out of sample (and B the reverse): PBO = 1
    a = np.repeat([1.0, 2.0, 4.0, -7.0], 2)
    m = np.column_stack([a, np.zeros_like(a)])
    r = probability_of_backtest_overfitting(m, n_splits=4)
    assert r.n_combinations == 6 and not r.sampled
    assert r.pbo == 1.0
    # two candidates: the loser's relative rank is 1/3, logit log(1/2)
    assert np.allclose(r.logits, math.log(0.5))


def test_pbo_dominant_candidate_is_zero():
    # shifts of the same noise: the same std, so the Sharpe orders them by their shift on every subset of periods;
    # e + 1 is the best every period, in and out of sample
    e = np.random.default_rng(0).normal(0.0, 1.0, 64)
    m = np.column_stack([e, e + 0.5, e + 1.0, e - 0.3])
    r = probability_of_backtest_overfitting(m, n_splits=8)
    assert r.n_combinations == math.comb(8, 4) == 70
    assert r.pbo == 0.0
    assert np.allclose(r.logits, math.log(4 / 5 / (1 / 5)))  # rank 4 of 4: w = 4/5
    # mean metric, a random field plus one column above all of them every period
    rng = np.random.default_rng(1)
    m = rng.normal(size=(100, 5))
    m = np.column_stack([m, m.max(axis=1) + 0.01])
    assert probability_of_backtest_overfitting(m, n_splits=10, metric="mean").pbo == 0.0


def test_pbo_small_case_enumerated_by_hand():
    # S = 4 blocks of one period, N = 3 candidates, metric = mean (sums, as every half has 2 periods)
    #            block: 0  1  2  3
    #   A               3  0  0  2
    #   B               0  2  1  0
    #   C               1  1  1  1
    # IS blocks | IS sums A B C -> best | OOS sums A B C -> rank of best (ties share the average) -> w = rank/4 -> logit
    # {0,1}     | 3 2 2 -> A            | 2 1 2 -> B below, tied with C: 1 + 1.5 = 2.5 -> 0.625 -> log(5/3) = 0.5108
    # {0,2}     | 3 1 2 -> A            | 2 2 2 -> all tied: 0 + 2 = 2            -> 0.5   -> 0
    # {0,3}     | 5 0 2 -> A            | 0 3 2 -> worst: 1                        -> 0.25  -> log(1/3) = -1.0986
    # {1,2}     | 0 3 2 -> B            | 5 0 2 -> worst: 1                        -> 0.25  -> -1.0986
    # {1,3}     | 2 2 2 -> A (first)    | 3 1 2 -> best: 3                         -> 0.75  -> log(3) = 1.0986
    # {2,3}     | 2 1 2 -> A (first)    | 3 2 2 -> best: 3                         -> 0.75  -> 1.0986
    # logits <= 0: 3 of 6 -> PBO = 0.5
    m = np.array([[3, 0, 1], [0, 2, 1], [0, 1, 1], [2, 0, 1]], dtype=float)
    r = probability_of_backtest_overfitting(m, n_splits=4, metric="mean")
    assert r.n_combinations == 6 and r.n_candidates == 3
    l3 = math.log(3.0)
    assert np.allclose(r.logits, [math.log(5 / 3), 0.0, -l3, -l3, l3, l3])
    assert r.pbo == 0.5


def test_pbo_combinations_are_capped_by_a_seeded_sample():
    m = np.random.default_rng(2).normal(size=(40, 4))
    r = probability_of_backtest_overfitting(m, n_splits=20, max_combinations=50, seed=5)
    assert r.sampled and r.n_combinations == 50 and len(r.logits) == 50  # of C(20, 10) = 184,756
    again = probability_of_backtest_overfitting(m, n_splits=20, max_combinations=50, seed=5)
    assert np.array_equal(r.logits, again.logits)
    assert not probability_of_backtest_overfitting(m, n_splits=4).sampled


def test_pbo_uneven_blocks_and_a_flat_candidate():
    # 10 periods in 4 blocks (3, 3, 2, 2 rows); an always-flat candidate scores Sharpe 0, not NaN
    rng = np.random.default_rng(4)
    m = np.column_stack([rng.normal(size=10), np.zeros(10), rng.normal(size=10)])
    r = probability_of_backtest_overfitting(m, n_splits=4)
    assert np.isfinite(r.logits).all() and 0.0 <= r.pbo <= 1.0


@pytest.mark.parametrize(
    "matrix, kwargs, message",
    [
        (np.zeros(10), {}, "must be T x N"),
        (np.zeros((10, 1)), {}, "at least 2 candidates, got 1"),
        (np.zeros((10, 2)), {"n_splits": 3}, "n_splits must be even and >= 2, got 3"),
        (np.zeros((10, 2)), {"n_splits": 16}, "10 periods for 16 splits"),
        (np.full((10, 2), np.inf), {"n_splits": 2}, "20 values are not finite"),
        (np.zeros((10, 2)), {"n_splits": 2, "metric": "sortino"}, "metric must be 'sharpe' or 'mean'"),
    ],
)
def test_pbo_degenerate_input(matrix, kwargs, message):
    with pytest.raises(ValueError, match=message):
        probability_of_backtest_overfitting(matrix, **kwargs)


# --- selection among candidates (the harness's and l6/performance's summary) ------------------------------


def test_selection_statistics_flat_counts_as_a_zero_sharpe_trial():
    from usdcop_assets.backtest.overfitting import selection_statistics

    agent = [1.0, -1.0, 2.0, 0.0, 3.0]  # Sharpe 1 / sqrt(2.5) = 0.632456 (see test_dsr_by_hand)
    other = [0.0, 1.0, -1.0, 0.0, 0.0]  # mean 0: Sharpe 0
    s = selection_statistics({"agent": agent, "flat": [0.0] * 5, "other": other}, "agent")
    assert s["n_trials"] == 3 and s["n_sessions"] == 5
    assert s["sharpe_per_session"] == {"agent": pytest.approx(0.632456, abs=1e-6), "flat": 0.0, "other": 0.0}
    # trials (a, 0, 0): V = a^2 / 3 = 0.4 / 3
    d = s["deflated_sharpe"]
    assert d["var_trials"] == pytest.approx(0.4 / 3)
    assert d["dsr"] == pytest.approx(deflated_sharpe_ratio(agent, [0.4**0.5, 0.0, 0.0]).dsr, abs=1e-12)
    assert d["sr0"] == pytest.approx(expected_max_sharpe(3, 0.4 / 3), abs=1e-12)
    assert s["pbo"]["n_splits"] == 4 and s["pbo"]["n_combinations"] == 6  # 5 sessions: S lowered from 16 to 4


def test_selection_statistics_degenerate_agent_and_bad_input():
    from usdcop_assets.backtest.overfitting import selection_statistics

    s = selection_statistics({"agent": [0.0] * 6, "bh": [0.1, -0.2, 0.3, 0.0, 0.1, -0.1]}, "agent")
    assert s["deflated_sharpe"] is None and "zero variance" in s["deflated_sharpe_error"]
    assert s["pbo"]["n_splits"] == 6
    with pytest.raises(ValueError, match="'x' is not among the candidates"):
        selection_statistics({"agent": [0.1, 0.2, 0.3]}, "x")
    with pytest.raises(ValueError, match=r"different numbers of sessions \[3, 2\]"):
        selection_statistics({"agent": [0.1, 0.2, 0.3], "bh": [0.1, 0.2]}, "agent")
    with pytest.raises(ValueError, match="1 returns are not finite"):
        selection_statistics({"agent": [0.1, 0.2, float("nan")], "bh": [0.1, 0.1, 0.1]}, "agent")
    # constant non-zero returns: Sharpe undefined, so no DSR (its trials are not finite), but still a PBO
    s = selection_statistics({"agent": [0.1, 0.2, 0.3, 0.0], "bh": [0.1, 0.1, 0.1, 0.1]}, "agent")
    assert math.isnan(s["sharpe_per_session"]["bh"]) and s["deflated_sharpe"] is None
    assert "1 trial Sharpe ratios are not finite" in s["deflated_sharpe_error"] and s["pbo"]["n_splits"] == 4
    # one session (a one-session l6/performance run): nothing to deflate or split, no error
    s = selection_statistics({"agent": [0.1], "bh": [0.2]}, "agent")
    assert (
        s["deflated_sharpe"] is None and "at least 3 returns, got 1" in s["deflated_sharpe_error"] and s["pbo"] is None
    )


def test_dsr_counts_prior_trials_in_n_with_this_runs_variance():
    # the hand case above with 7 earlier trials: N = 10, V = 0.16 (this run's trials only)
    #   SR0 = 0.4 * (0.422784 * Phi^-1(0.9) + 0.577216 * Phi^-1(1 - 1/(10e)))
    #       = 0.4 * (0.422784 * 1.281552 + 0.577216 * 1.789242) = 0.629839
    #   DSR = Phi((0.632456 - 0.629839) * 2 / sqrt(1.07)) = 0.50202
    d = deflated_sharpe_ratio([1.0, -1.0, 2.0, 0.0, 3.0], [0.6, 0.2, -0.2], prior_trials=7)
    assert (d.n_trials, d.var_trials) == (10, pytest.approx(0.16))
    assert d.sr0 == pytest.approx(0.629839, abs=1e-6)
    assert d.dsr == pytest.approx(0.50202, abs=1e-5)
    assert d.dsr < deflated_sharpe_ratio([1.0, -1.0, 2.0, 0.0, 3.0], [0.6, 0.2, -0.2]).dsr
    with pytest.raises(ValueError, match="prior_trials"):
        deflated_sharpe_ratio([1.0, -1.0, 2.0, 0.0, 3.0], [0.6], prior_trials=-1)
