"""Serving without Dagster: the numpy policy equals SB3's deterministic predict, a session decided bar
by bar never changes an earlier action when later bars change (no look-ahead), bad input is refused
or recorded flat, and the paper ledger's fills and P&L by hand."""

import math

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

from usdcop_assets.core import calendar as cal
from usdcop_assets.rl.costs import CostConfig
from usdcop_assets.rl.paper import paper_ledger
from usdcop_assets.rl.policy import PolicyFunction, decide_session
from usdcop_assets.rl.risk import DAILY_STOP, INVALID, SESSION_END, RiskLimits

DIM = 6


class _Env(gym.Env):
    observation_space = gym.spaces.Box(-5, 5, (DIM + 2,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(DIM + 2, np.float32), {}

    def step(self, action):
        return self.np_random.normal(size=DIM + 2).astype(np.float32), float(action[0]), False, False, {}


@pytest.fixture(scope="module")
def model():
    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    m = PPO(
        "MlpPolicy",
        _Env(),
        seed=3,
        n_steps=64,
        batch_size=32,
        device="cpu",
        policy_kwargs={"net_arch": {"pi": [16, 16], "vf": [16]}},
    )
    m.learn(128)
    # push the mean action far outside [-1, 1] on part of the space, so clipping is exercised
    with torch.no_grad():
        m.policy.action_net.weight.mul_(40.0)
    return m


def test_numpy_policy_equals_sb3_deterministic_predict(model):
    policy = PolicyFunction.from_model(model)
    obs = np.random.default_rng(0).normal(scale=2.0, size=(500, DIM + 2)).astype(np.float32)
    ours = np.array([policy(o) for o in obs])
    theirs = np.array([float(model.predict(o, deterministic=True)[0][0]) for o in obs])
    assert np.abs(ours - theirs).max() < 1e-5
    raw = np.array([policy.raw(o) for o in obs])
    assert (np.abs(raw) > 1).any() and (np.abs(ours) <= 1).all()  # outputs outside the box are clipped, as SB3 does


def _session(n=60, seed=1):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, DIM)).astype(np.float32)
    rets = rng.normal(scale=1e-3, size=n)
    frac = np.arange(n, dtype=np.float32) / 60
    last = np.zeros(n, dtype=bool)
    last[-1] = n == 60
    return obs, frac, rets, last


def test_an_action_never_depends_on_later_bars(model):
    policy = PolicyFunction.from_model(model)
    obs, frac, rets, last = _session()
    full = decide_session(policy, obs, frac, rets, last, limits=RiskLimits(daily_loss_stop=0.002))
    for t in (0, 17, 41, 58):
        changed_obs, changed_rets = obs.copy(), rets.copy()
        changed_obs[t + 1 :] = -changed_obs[t + 1 :] * 3
        changed_rets[t + 1 :] = 0.05  # later bars change completely
        prefix = decide_session(
            policy,
            changed_obs[: t + 1],
            frac[: t + 1],
            changed_rets[: t + 1],
            np.zeros(t + 1, bool),
            limits=RiskLimits(daily_loss_stop=0.002),
        )
        assert prefix.position.tolist() == full.position[: t + 1].tolist()
        assert prefix.raw_action.tolist() == full.raw_action[: t + 1].tolist()
    assert full.position[-1] == 0 and full.risk_flags[-1] & SESSION_END


def test_the_position_is_fed_back_and_the_risk_manager_applies(model):
    policy = PolicyFunction.from_model(model)
    obs, frac, rets, last = _session()
    d = decide_session(policy, obs, frac, rets, last)
    # recompute bar 5 by hand: the observation carries the position held from bar 4
    buf = np.r_[obs[5], d.position[4], frac[5]].astype(np.float32)
    assert d.raw_action[5] == policy.raw(buf) and d.target[5] == max(-1, min(1, policy.raw(buf)))
    # a daily loss stop: a large loss on a held position goes flat for the rest of the session
    crash = rets.copy()
    k = int(np.flatnonzero(np.abs(d.position) > 0.05)[0])
    crash[k] = -0.5 * np.sign(d.position[k])
    stopped = decide_session(policy, obs, frac, crash, last, limits=RiskLimits(daily_loss_stop=0.01))
    assert (stopped.position[k + 1 :] == 0).all() and all(f & DAILY_STOP for f in stopped.risk_flags[k + 1 :])


def test_bad_observations_are_refused_or_flat(model):
    policy = PolicyFunction.from_model(model)
    obs, frac, rets, last = _session()
    with pytest.raises(ValueError, match="observation dimension 5 .* does not match the model's 8"):
        decide_session(policy, obs[:, :5], frac, rets, last)
    with pytest.raises(ValueError, match="lengths differ"):
        decide_session(policy, obs, frac[:-1], rets, last)
    nan = obs.copy()
    nan[7, 2] = np.nan
    d = decide_session(policy, nan, frac, rets, last)
    assert d.position[7] == 0 and d.invalid_obs[7] and d.risk_flags[7] & INVALID and math.isnan(d.raw_action[7])
    assert d.invalid_obs.sum() == 1


def _bars(day, closes, opens):
    times = cal.session_bars(day)[: len(closes)]
    return pd.DataFrame({"time": times, "open": opens, "close": closes})


def test_paper_ledger_fills_at_the_next_open_with_costs_and_marks_at_the_close():
    day = pd.Timestamp("2025-03-04").date()
    n = 60
    opens = np.full(n, 4000.0)
    closes = np.full(n, 4000.0)
    opens[1], closes[1] = 4010.0, 4020.0  # bar 1: the long from bar 0's decision fills at 4010
    opens[2], closes[2] = 4030.0, 4030.0  # bar 2: half of it is sold at 4030
    positions = np.zeros(n)
    positions[0], positions[1], positions[2:59] = 1.0, 0.5, -0.5  # ... then flipped short until the close
    bars = _bars(day, closes, opens)
    actions = pd.DataFrame(
        {
            "time": bars["time"],
            "symbol": "USD/COP",
            "session": day.isoformat(),
            "position": positions,
            "model_version": "m",
        }
    )
    costs = CostConfig()
    r = costs.rate
    trades, book = paper_ledger(actions, bars, costs)
    assert list(trades["fill_at"]) == [
        "open",
        "open",
        "open",
        "close",
    ]  # buy 1, sell .5, sell 1 (flip), the closing buy .5 at the close
    first = trades.iloc[0]
    assert first["time"] == bars["time"][1] and first["decided_at"] == bars["time"][0]
    assert first["side"] == "buy" and first["quantity"] == 1.0 and first["fill_price"] == pytest.approx(4010 * (1 + r))
    second = trades.iloc[1]
    assert second["side"] == "sell" and second["quantity"] == 0.5
    assert second["realized_pnl"] == pytest.approx(0.5 * (4030 * (1 - r) / (4010 * (1 + r)) - 1))
    third = trades.iloc[2]  # sell 1.0 at bar 3's open: closes the 0.5 long, opens 0.5 short
    assert third["quantity"] == 1.0 and third["position_after"] == -0.5
    assert third["realized_pnl"] == pytest.approx(0.5 * (4000 * (1 - r) / (4010 * (1 + r)) - 1))
    marked = book.set_index("time").loc[bars["time"][1]]
    assert marked["position"] == 1.0 and marked["unrealized_pnl"] == pytest.approx(4020 / (4010 * (1 + r)) - 1)
    assert book["position"].iloc[0] == 0.0 and book["next_target"].iloc[0] == 1.0  # decided, pending until bar 1
    assert (
        book["position"].iloc[-1] == -0.5 and book["next_target"].iloc[-1] == 0.0
    )  # held over the last bar, closed at its close
    assert book["session_pnl"].iloc[-1] == pytest.approx(trades["realized_pnl"].sum())
    # a prefix of the session gives the first rows of the whole session (realtime == replay)
    t2, b2 = paper_ledger(actions.iloc[:3], bars.iloc[:3], costs)
    pd.testing.assert_frame_equal(b2, book.iloc[:3].reset_index(drop=True))
    pd.testing.assert_frame_equal(t2, trades.iloc[:2].reset_index(drop=True))
    with pytest.raises(ValueError, match="no L1 bar to price them"):
        paper_ledger(actions, bars.iloc[:10], costs)
