"""LightGBM baseline (backtest/gbm_baseline.py): labels, no look-ahead, reproducibility, a planted signal, risk rules.

Synthetic episodes in the l4/episodes_session layout; pure, no shared data, no server; a few seconds.
"""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from usdcop_assets.backtest import gbm_baseline as G
from usdcop_assets.core import calendar as cal
from usdcop_assets.observation.builder import load_config
from usdcop_assets.rl.costs import CostConfig
from usdcop_assets.rl.folds import fold_sessions, fold_windows
from usdcop_assets.rl.risk import RiskLimits

CONFIG = load_config()
DAYS = cal.trading_days(dt.date(2024, 1, 1), dt.date(2024, 4, 30))
N = cal.BARS_PER_SESSION


def episodes_frame(signal: float, seed: int = 0, days=DAYS) -> pd.DataFrame:
    """Random bar returns; feature 0 = signal * sign(next hour's return) + noise (signal 0: pure noise)."""
    rng = np.random.default_rng(seed)
    n = len(days) * N
    session = np.repeat([d.isoformat() for d in days], N)
    ret = rng.normal(0, 5e-4, n)
    ret[N - 1 :: N] = 0.0  # L4: no return after a session's last bar
    fwd, _ = G.hour_labels(ret, session)
    obs = rng.normal(size=(n, CONFIG.dim)).clip(-4, 4)
    obs[:, 0] = (signal * np.sign(fwd) + rng.normal(0, 1, n)).clip(-4, 4)
    frame = pd.DataFrame(
        {
            "time": cal.bars_of_days(days),
            "symbol": "USD/COP",
            "session": session,
            "step": np.tile(np.arange(N), len(days)),
            "obs_version": "obs-v1-test",
        }
    )
    frame = pd.concat([frame, pd.DataFrame(obs, columns=CONFIG.columns)], axis=1)
    frame["warm"] = True
    frame["next_ret"] = ret
    frame["close"] = 4000 * np.exp(np.cumsum(ret))
    return frame


def fold():
    return fold_windows("2024-04", DAYS, scheme="expanding", valid_sessions=10, min_train_sessions=30)


def oos(frame):
    return frame[frame["session"].isin([d.isoformat() for d in fold_sessions("2024-04")])]


@pytest.fixture(scope="module")
def signal_frame():
    return episodes_frame(signal=1.0)


@pytest.fixture(scope="module")
def signal_model(signal_frame):
    return G.train_gbm(signal_frame, fold(), G.GbmConfig(seed=3), CONFIG)


def test_hour_labels_stop_at_the_session_end():
    r = np.arange(1.0, 9.0)  # two sessions of 4 bars
    s = np.array(["a"] * 4 + ["b"] * 4)
    fwd, complete = G.hour_labels(r, s, horizon=2)
    assert fwd.tolist() == [
        3.0,
        5.0,
        7.0,
        4.0,
        11.0,
        13.0,
        15.0,
        8.0,
    ]  # bar 3 sees only its own return, not session b's
    assert complete.tolist() == [True, True, False, False] * 2  # bar t + 2 must be in the session
    with pytest.raises(ValueError, match="contiguous"):
        G.hour_labels(r, np.array(list("aabbaabb")))


def test_labels_and_model_never_see_returns_after_the_training_window(signal_frame, signal_model):
    f = fold()
    train = signal_frame["session"].isin([d.isoformat() for d in f.train_sessions]).to_numpy()
    planted = signal_frame.copy()
    after = planted["session"].to_numpy() > f.train_last.isoformat()
    planted.loc[after & (planted["step"] == 0).to_numpy(), "next_ret"] = (
        0.5  # a huge return at every later session's open
    )
    before_fwd, before_ok = G.hour_labels(signal_frame["next_ret"], signal_frame["session"].to_numpy())
    fwd, ok = G.hour_labels(planted["next_ret"], planted["session"].to_numpy())
    assert (fwd[after] != before_fwd[after]).any()  # the plant is visible after the window ...
    np.testing.assert_array_equal(fwd[train], before_fwd[train])  # ... and in no training label
    np.testing.assert_array_equal(ok, before_ok)
    # the fold's out-of-sample month changed completely: the fit (train + validation windows only) is identical
    oos_planted = signal_frame.copy()
    month = oos_planted["session"].to_numpy() >= f.start_session.isoformat()
    oos_planted.loc[month, "next_ret"] = 0.5
    again = G.train_gbm(oos_planted, f, G.GbmConfig(seed=3), CONFIG)
    assert again.booster.model_to_string() == signal_model.booster.model_to_string()


def test_same_seed_same_predictions_and_positions(signal_frame, signal_model):
    again = G.train_gbm(signal_frame, fold(), G.GbmConfig(seed=3), CONFIG)
    month = oos(signal_frame)
    np.testing.assert_array_equal(
        G.predict_targets(again, month, CONFIG)["proba"], G.predict_targets(signal_model, month, CONFIG)["proba"]
    )
    a = G.backtest_gbm(again, month, CONFIG, CostConfig(), RiskLimits())
    b = G.backtest_gbm(signal_model, month, CONFIG, CostConfig(), RiskLimits())
    pd.testing.assert_frame_equal(a, b)
    other = G.train_gbm(signal_frame, fold(), G.GbmConfig(seed=4), CONFIG)  # bagging draws from the seed
    assert not np.array_equal(
        G.predict_targets(other, month, CONFIG)["proba"], G.predict_targets(signal_model, month, CONFIG)["proba"]
    )


def test_planted_signal_is_learned_out_of_sample(signal_frame, signal_model):
    month = oos(signal_frame)
    pred = G.predict_targets(signal_model, month, CONFIG)
    fwd, complete = G.hour_labels(month["next_ret"], month["session"].to_numpy())
    ok = complete & (fwd != 0)
    hit = np.mean((pred["proba"].to_numpy()[ok] > 0.5) == (fwd[ok] > 0))
    assert hit > 0.7, hit  # noise sd 1 around +-1: the Bayes hit rate is ~0.84
    assert signal_model.valid_hit_rate > 0.7 and 1 <= signal_model.best_iteration <= signal_model.config.max_rounds
    traded = pred["target"].to_numpy()[ok] != 0
    assert np.mean(np.sign(pred["target"].to_numpy()[ok][traded]) == np.sign(fwd[ok][traded])) > 0.75


def test_pure_noise_is_rarely_traded_with_the_band():
    frame = episodes_frame(signal=0.0, seed=1)
    model = G.train_gbm(frame, fold(), G.GbmConfig(), CONFIG)
    month = oos(frame)
    banded = G.backtest_gbm(model, month, CONFIG, CostConfig(), RiskLimits())
    no_band = G.backtest_gbm(
        G.GbmModel(**{**model.__dict__, "config": G.GbmConfig(band=0.0)}), month, CONFIG, CostConfig(), RiskLimits()
    )
    assert (banded["position"] != 0).mean() < 0.1  # in the market less than a tenth of the time ...
    assert (no_band["position"] != 0).mean() > 0.5  # ... where p slightly off 0.5 alone would trade most bars


def test_positions_go_through_the_risk_rules_and_costs(signal_frame, signal_model):
    month = oos(signal_frame)
    costs = CostConfig()
    out = G.backtest_gbm(signal_model, month, CONFIG, costs, RiskLimits(max_position=0.4))
    target = out["target"].to_numpy()
    pos = out["position"].to_numpy()
    last = np.r_[out["session"].to_numpy()[1:] != out["session"].to_numpy()[:-1], True]
    assert set(np.unique(target)) <= {-1.0, 0.0, 1.0} and (target != 0).any()
    assert np.abs(pos).max() == pytest.approx(0.4)
    assert (pos[last] == 0).all()  # flat at each session's last bar
    np.testing.assert_allclose(pos[~last], 0.4 * target[~last])
    np.testing.assert_allclose(out["cost"], costs.rate * np.abs(np.diff(np.r_[0.0, pos])))


def test_cold_sessions_are_flat(signal_frame, signal_model):
    month = oos(signal_frame).copy()
    cold = month["session"].iloc[0]
    month.loc[(month["session"] == cold) & (month["step"] == 5), "warm"] = False
    targets = G.gbm_targets(signal_model, month, CONFIG)
    assert (targets[(month["session"] == cold).to_numpy()] == 0).all() and (targets != 0).any()
    with pytest.raises(ValueError, match="band"):
        G.GbmConfig(band=0.5)
