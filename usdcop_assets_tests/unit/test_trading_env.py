"""Trading environment and risk manager (pure numpy/gymnasium; no Dagster)."""

import math

import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env

from usdcop_assets.observation.builder import load_config
from usdcop_assets.rl import CostConfig, EnvConfig, RiskLimits, RiskState, SessionEpisodes, UsdCopTradingEnv, apply_risk
from usdcop_assets.rl import risk as R


def synthetic(n_sessions=8, bars=60, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    n = n_sessions * bars
    ids = np.repeat(np.array([f"2024-01-{d:02d}" for d in range(1, n_sessions + 1)]), bars)
    ret = rng.normal(0, 1e-3, n)
    ret[bars - 1 :: bars] = 0.0
    obs = np.clip(rng.normal(size=(n, dim)), -5, 5)
    frac = np.tile(np.arange(bars) / 60, n_sessions)
    return SessionEpisodes(obs, ret, frac, ids, clip=5.0)


def test_check_env_passes_sequential_and_random():
    ep = synthetic()
    check_env(UsdCopTradingEnv(ep), skip_render_check=True)
    check_env(
        UsdCopTradingEnv(ep, EnvConfig(sampling="random", risk=RiskLimits(daily_loss_stop=0.01))),
        skip_render_check=True,
    )
    env = UsdCopTradingEnv(ep)
    assert env.observation_space.shape == (ep.dim + 2,)


def test_three_bar_reward_by_hand():
    r = np.array([0.01, -0.02, 0.0])
    ep = SessionEpisodes(np.zeros((3, 2)), r, [0.0, 1 / 60, 2 / 60], ["s"] * 3, clip=5.0)
    costs = CostConfig(spread_bps=4.0, slippage_bps=1.0)  # 2 + 1 = 3 bps per unit traded
    env = UsdCopTradingEnv(ep, EnvConfig(costs=costs))
    obs, _ = env.reset(seed=1)
    assert obs[-2] == 0.0 and obs[-1] == 0.0
    obs, r0, term, trunc, _ = env.step(np.array([0.5], dtype=np.float32))
    assert r0 == pytest.approx(0.5 * 0.01 - 0.0003 * 0.5, abs=1e-15)
    assert obs[-2] == pytest.approx(0.5) and obs[-1] == pytest.approx(1 / 60) and not term
    obs, r1, term, _, _ = env.step(np.array([-1.0], dtype=np.float32))
    assert r1 == pytest.approx(-1.0 * -0.02 - 0.0003 * 1.5, abs=1e-15)
    obs, r2, term, trunc, info = env.step(np.array([1.0], dtype=np.float32))  # forced flat at the last bar
    assert r2 == pytest.approx(-0.0003 * 1.0, abs=1e-15)
    assert term and not trunc and info["position"] == 0.0 and obs[-2] == 0.0


def test_penalties_by_hand():
    r = np.array([-0.01, 0.005, 0.0])
    ep = SessionEpisodes(np.zeros((3, 1)), r, [0.0, 0.1, 0.2], [7] * 3)
    cfg = EnvConfig(costs=CostConfig(0.0, 0.0), drawdown_penalty=2.0, turnover_penalty=0.1, reward_scale=10.0)
    env = UsdCopTradingEnv(ep, cfg)
    env.reset(seed=0)
    _, a, *_ = env.step(np.array([1.0]))  # E=-0.01, DD 0 -> 0.01
    assert a == pytest.approx(10 * (-0.01 - 0.1 * 1 - 2.0 * 0.01))
    _, b, *_ = env.step(np.array([1.0]))  # E=-0.005, DD falls: no penalty
    assert b == pytest.approx(10 * 0.005)
    _, c, *_ = env.step(np.array([1.0]))  # forced flat: turnover 1
    assert c == pytest.approx(10 * (-0.1))


def test_four_bar_episode_costs_penalties_and_risk_by_hand():
    # rate 3 bps, turnover penalty 1 bp per unit, drawdown penalty 0.5, rewards in bps, max position 0.8
    r = np.array([0.004, 0.006, 0.002, 0.0])
    ep = SessionEpisodes(np.zeros((4, 1)), r, [0.0, 1 / 60, 2 / 60, 3 / 60], ["s"] * 4)
    cfg = EnvConfig(
        costs=CostConfig(4.0, 1.0),
        turnover_penalty=1e-4,
        drawdown_penalty=0.5,
        reward_scale=1e4,
        risk=RiskLimits(max_position=0.8),
    )
    env = UsdCopTradingEnv(ep, cfg)
    env.reset(seed=0)
    out = [env.step(np.array([a], dtype=np.float32)) for a in (1.0, -0.5, 0.25, np.nan)]
    rewards = [o[1] for o in out]
    info = [o[4] for o in out]
    # bar 0: clipped to 0.8; pnl 0.8*0.004 - 3e-4*0.8 = 0.00296 (new peak, no drawdown); turnover 0.8
    # bar 1: -0.5 (trade 1.3); pnl -0.003 - 3.9e-4 = -0.00339; equity -0.00043, drawdown 0.00339 (all new)
    # bar 2: 0.25 (trade 0.75); pnl 0.0005 - 2.25e-4 = 0.000275; drawdown falls to 0.003115: no penalty
    # bar 3: NaN -> 0 and last bar (trade 0.25); pnl -7.5e-5; drawdown rises by 7.5e-5
    want = [
        1e4 * (0.00296 - 1e-4 * 0.8),
        1e4 * (-0.00339 - 1e-4 * 1.3 - 0.5 * 0.00339),
        1e4 * (0.000275 - 1e-4 * 0.75),
        1e4 * (-7.5e-5 - 1e-4 * 0.25 - 0.5 * 7.5e-5),
    ]
    np.testing.assert_allclose(rewards, want, rtol=0, atol=1e-9)
    np.testing.assert_allclose(rewards, [28.8, -52.15, 2.0, -1.375], rtol=0, atol=1e-9)
    assert [i["position"] for i in info] == [pytest.approx(0.8), -0.5, 0.25, 0.0]
    np.testing.assert_allclose([i["cost"] for i in info], [2.4e-4, 3.9e-4, 2.25e-4, 7.5e-5], rtol=0, atol=1e-15)
    np.testing.assert_allclose(
        [i["equity"] for i in info], np.cumsum([0.00296, -0.00339, 0.000275, -7.5e-5]), rtol=0, atol=1e-15
    )
    np.testing.assert_allclose([i["drawdown"] for i in info], [0.0, 0.00339, 0.003115, 0.00319], rtol=0, atol=1e-15)
    assert [i["risk_flags"] for i in info] == [R.CLIPPED, 0, 0, R.INVALID | R.SESSION_END]
    assert [o[2] for o in out] == [False, False, False, True]


def test_every_episode_ends_flat_and_terminates_at_the_last_bar():
    ep = synthetic(n_sessions=3)
    env = UsdCopTradingEnv(ep)
    for _ in range(3):
        env.reset()
        steps, term = 0, False
        while not term:
            _, _, term, trunc, info = env.step(np.array([1.0]))
            steps += 1
        assert steps == 60 and info["position"] == 0.0 and info["step"] == 59
        with pytest.raises(RuntimeError):
            env.step(np.array([0.0]))


def test_step_touches_no_pandas(monkeypatch):
    ep = synthetic(n_sessions=2)
    env = UsdCopTradingEnv(ep, EnvConfig(risk=RiskLimits(max_drawdown=0.05)))
    env.reset(seed=0)

    def boom(*a, **k):
        raise AssertionError("pandas used inside step()")

    for cls in (pd.DataFrame, pd.Series):
        for name in ("__getitem__", "to_numpy", "__array__", "iloc", "loc"):
            monkeypatch.setattr(cls, name, property(boom) if name in ("iloc", "loc") else boom)
    term = False
    while not term:
        _, _, term, _, _ = env.step(env.action_space.sample())
    env.reset()


def test_deterministic_with_seed():
    ep = synthetic()

    def run(seed):
        env = UsdCopTradingEnv(ep, EnvConfig(sampling="random"))
        env.action_space.seed(seed)
        out = []
        for k in range(4):
            obs, info = env.reset(seed=seed if k == 0 else None)
            out.append(info["session"])
            term = False
            while not term:
                obs, rew, term, _, _ = env.step(env.action_space.sample())
                out.append(rew)
        return out

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_sequential_sampling_and_explicit_session():
    ep = synthetic(n_sessions=3)
    env = UsdCopTradingEnv(ep)
    seen = [env.reset(seed=0)[1]["session"]] + [env.reset()[1]["session"] for _ in range(3)]
    assert seen == list(ep.sessions) + [ep.sessions[0]]
    assert env.reset(options={"session": ep.sessions[2]})[1]["session_index"] == 2
    assert env.reset(options={"session_index": 1})[1]["session"] == ep.sessions[1]


def test_from_l4_frame_layout():
    config = load_config()
    rng = np.random.default_rng(0)
    times = pd.date_range("2024-03-04 13:00", periods=60, freq="5min", tz="UTC").append(
        pd.date_range("2024-03-05 13:00", periods=60, freq="5min", tz="UTC")
    )
    n = len(times)
    frame = pd.DataFrame(
        {
            "time": times,
            "symbol": "USD/COP",
            "session": ["2024-03-04"] * 60 + ["2024-03-05"] * 60,
            "step": np.tile(np.arange(60), 2),
            "obs_version": "obs-v1-abc",
        }
    )
    obs = pd.DataFrame(np.clip(rng.normal(size=(n, config.dim)), -5, 5), columns=config.columns)
    frame = pd.concat([frame, obs], axis=1)
    close = 4000 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    frame["non_finite"] = 0
    frame["warm"] = True
    frame.loc[0, "warm"] = False  # first session is not warm: left out, and said so
    frame["close"] = close
    frame["next_ret"] = np.r_[np.log(close[1:] / close[:-1]), 0.0]
    frame.loc[59, "next_ret"] = 0.0
    frame["is_last"] = frame["step"] == 59
    shuffled = frame.sample(frac=1.0, random_state=1)
    ep = SessionEpisodes.from_frame(shuffled, config)
    assert list(ep.sessions) == ["2024-03-05"] and ep.skipped == {"2024-03-04": "not warm (features incomplete)"}
    assert ep.dim == config.dim and ep.obs.dtype == np.float32 and ep.obs_version == "obs-v1-abc"
    np.testing.assert_allclose(ep.time_frac, np.arange(60) / 60, atol=1e-6)  # 08:00 Bogota = 13:00 UTC
    np.testing.assert_array_equal(ep.obs, frame[config.columns].to_numpy("float32")[60:])
    env = UsdCopTradingEnv(ep)
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (config.dim + 2,)
    with pytest.raises(ValueError, match="lack"):
        SessionEpisodes.from_frame(frame.drop(columns=[config.columns[3]]), config)


# -- risk manager --------------------------------------------------------------------------------

NO_COST = CostConfig(0.0, 0.0)


def test_max_position_clip():
    pos, flags = apply_risk([0.9, -0.9, 0.3, 1.0], [0.0] * 4, ["a"] * 4, None, RiskLimits(max_position=0.5), NO_COST)
    np.testing.assert_array_equal(pos, [0.5, -0.5, 0.3, 0.0])
    assert flags[0] & R.CLIPPED and flags[1] & R.CLIPPED and not flags[2] & R.CLIPPED
    assert flags[3] & R.SESSION_END


def test_daily_loss_stop_goes_flat_for_the_rest_of_the_session():
    ids = ["d1"] * 5 + ["d2"] * 3
    rets = [-0.006, -0.006, 0.01, 0.01, 0.0, 0.001, 0.001, 0.0]
    pos, flags = apply_risk([1.0] * 8, rets, ids, None, RiskLimits(daily_loss_stop=0.01), NO_COST)
    # after bars 0 and 1 the session lost 1.2% >= 1%: flat from bar 2 on, re-armed next session
    np.testing.assert_array_equal(pos, [1, 1, 0, 0, 0, 1, 1, 0])
    assert [bool(f & R.DAILY_STOP) for f in flags] == [False, False, True, True, True, False, False, False]


def test_daily_stop_counts_costs():
    costs = CostConfig(spread_bps=0.0, slippage_bps=60.0)  # 0.6% per unit traded
    pos, _ = apply_risk(
        [1.0, -1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], ["d"] * 4, None, RiskLimits(daily_loss_stop=0.01), costs
    )
    np.testing.assert_array_equal(pos, [1.0, -1.0, 0.0, 0.0])  # 0.6% + 1.2% of costs trip it at bar 2


def test_drawdown_breaker_and_rearm():
    ids = ["d1"] * 4 + ["d2"] * 3 + ["d3"] * 3
    rets = [0.02, -0.03, -0.03, 0.0, 0.01, 0.01, 0.0, 0.01, 0.01, 0.0]
    lim = RiskLimits(max_drawdown=0.05, drawdown_cooldown_sessions=1)
    pos, flags = apply_risk([1.0] * 10, rets, ids, None, lim, NO_COST)
    # peak 0.02 after bar 0, equity -0.04 after bar 2 -> drawdown 0.06 >= 0.05: flat from bar 3, all of d2, re-armed in
    # d3
    np.testing.assert_array_equal(pos, [1, 1, 1, 0, 0, 0, 0, 1, 1, 0])
    assert all(flags[i] & R.DRAWDOWN for i in range(3, 7)) and not flags[7] & R.DRAWDOWN
    pos_never, _ = apply_risk(
        [1.0] * 10, rets, ids, None, RiskLimits(max_drawdown=0.05, drawdown_cooldown_sessions=None), NO_COST
    )
    assert (pos_never[3:] == 0).all()


def test_flat_at_every_session_end_and_invalid_targets():
    ids = np.repeat([1, 2, 3], 4)
    pos, flags = apply_risk([0.7, np.nan, -0.4, 0.9] * 3, np.zeros(12), ids, None, RiskLimits(), NO_COST)
    assert (pos[3::4] == 0).all() and all(f & R.SESSION_END for f in flags[3::4])
    assert pos[1] == 0 and flags[1] & R.INVALID
    keep, _ = apply_risk([0.7] * 4, np.zeros(4), ["a"] * 4, None, RiskLimits(flat_at_session_end=False), NO_COST)
    assert keep[-1] == 0.7


def test_vectorized_equals_stepwise_on_random_bars():
    rng = np.random.default_rng(42)
    n = 10_000
    ids = np.repeat(np.arange(n // 50), 50)
    rets = rng.normal(0, 3e-3, n)
    rets[49::50] = 0.0
    targets = rng.uniform(-1.5, 1.5, n)
    targets[rng.integers(0, n, 30)] = np.nan
    lim = RiskLimits(max_position=0.8, daily_loss_stop=0.006, max_drawdown=0.03, drawdown_cooldown_sessions=2)
    costs = CostConfig(4.0, 1.0)
    pos, flags = apply_risk(targets, rets, ids, None, lim, costs)
    state = RiskState(lim, costs)
    last = np.r_[ids[1:] != ids[:-1], True]
    sp, sf = np.zeros(n), np.zeros(n, dtype=np.uint8)
    for t in range(n):
        sp[t], sf[t] = state.decide(targets[t], ids[t], bool(last[t]))
        state.realize(rets[t])
    np.testing.assert_array_equal(pos, sp)
    np.testing.assert_array_equal(flags, sf)
    for bit in (R.CLIPPED, R.DAILY_STOP, R.DRAWDOWN, R.SESSION_END, R.INVALID):
        assert (flags & bit).any(), R.FLAG_NAMES[bit]  # every rule was exercised


def test_riskstate_guards_order():
    s = RiskState()
    with pytest.raises(RuntimeError):
        s.realize(0.0)
    s.decide(0.5, "a", False)
    with pytest.raises(RuntimeError):
        s.decide(0.5, "a", False)


def test_env_uses_the_same_risk_manager():
    ep = synthetic(n_sessions=1, seed=5)
    lim = RiskLimits(max_position=0.5, daily_loss_stop=0.002)
    env = UsdCopTradingEnv(ep, EnvConfig(risk=lim, costs=CostConfig(4, 1)))
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    acts = rng.uniform(-1, 1, 60)
    got = []
    for a in acts:
        _, _, _, _, info = env.step(np.array([a]))
        got.append(info["position"])
    want, _ = apply_risk(acts, ep.next_ret, ep.session_of_bar, None, lim, CostConfig(4, 1))
    np.testing.assert_array_equal(got, want)
    assert math.isclose(max(abs(x) for x in got), 0.5)
