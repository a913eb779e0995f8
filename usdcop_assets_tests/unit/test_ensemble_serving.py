"""Serving an experiment's seed ensemble bar by bar: ``decide_session_ensemble`` gives, per member, the positions
the research rollout computes (``rl.ensemble.seed_positions``: each seed through the env with the experiment's
action rules and feature subset) and, combined, ``combine_positions`` of them; the risk manager on the combined
book equals ``apply_risk`` as the research backtest applies it. ``decide_session`` without rules is unchanged.

Tiny synthetic episodes (``test_training.episodes_frame``) and tiny PPO models (a few gradient steps, the action
head scaled up so the targets spread over [-1, 1] and every rule is exercised).
"""

import dataclasses
import datetime as dt

import numpy as np
import pytest

from usdcop_assets.core import calendar as cal
from usdcop_assets.observation.builder import load_config
from usdcop_assets.rl import CostConfig, RiskLimits, SessionEpisodes, UsdCopTradingEnv, apply_risk
from usdcop_assets.rl import ensemble as E
from usdcop_assets.rl import training as T
from usdcop_assets.rl.policy import (
    ActionRules,
    PolicyFunction,
    decide_session,
    decide_session_ensemble,
    serving_inputs,
)
from usdcop_assets_tests.unit.test_training import episodes_frame

CONFIG = load_config()
DAYS = cal.trading_days(dt.date(2024, 2, 1), dt.date(2024, 2, 9))  # 7 sessions
SEEDS = (7, 8, 9)
COSTS = CostConfig()
TOL = 1e-6  # float32 rounding: numpy actor vs torch


@pytest.fixture(scope="module")
def frame():
    return episodes_frame(DAYS, seed=3)


@pytest.fixture(scope="module")
def episodes(frame):
    return SessionEpisodes.from_frame(frame, CONFIG)


def _models(episodes, config: T.TrainConfig):
    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    env_config = T.make_env_config(config, COSTS)
    out = []
    for seed in SEEDS:
        m = PPO(
            "MlpPolicy",
            UsdCopTradingEnv(episodes, env_config),
            seed=seed,
            n_steps=64,
            batch_size=32,
            n_epochs=1,
            device="cpu",
            policy_kwargs={"net_arch": [16, 16]},
        )
        m.learn(64)
        with torch.no_grad():
            m.policy.action_net.weight.mul_(60.0)  # targets spread over [-1, 1] (and beyond: clipping)
        out.append(m)
    return out


CASES = {
    "band": (T.TrainConfig(no_trade_band=0.25), RiskLimits(daily_loss_stop=0.002)),
    "discrete_hold": (T.TrainConfig(action_space="discrete", min_hold_bars=3), None),
    "features": (T.TrainConfig(features=("ret_12", "vol_60", "ret_1", "ret_1_lag2")), None),
}


def _serve(policies, how, episodes, config, limits):
    """Every session of ``episodes`` decided from its open by the ensemble decider (serving's inputs)."""
    rules, features = serving_inputs(config, CONFIG.features)
    parts = []
    for i, session in enumerate(episodes.sessions):
        a, b = int(episodes.starts[i]), int(episodes.ends[i])
        last = np.zeros(b - a, dtype=bool)
        last[-1] = True
        parts.append(
            decide_session_ensemble(
                policies,
                how,
                episodes.obs[a:b],
                episodes.time_frac[a:b],
                episodes.next_ret[a:b],
                last,
                session,
                limits,
                COSTS,
                rules,
                features,
            )
        )
    return parts


@pytest.mark.parametrize("case", list(CASES))
def test_ensemble_decider_equals_the_research_rollout(case, frame, episodes):
    config, limits = CASES[case]
    models = _models(episodes, config)
    policies = [PolicyFunction.from_model(m) for m in models]
    research = E.seed_positions(models, frame, config, CONFIG, COSTS, limits)  # seeds x bars, frame order
    assert research.shape == (3, len(frame)) and (episodes.session_of_bar == frame["session"].to_numpy()).all()
    rets, sessions = frame["next_ret"].to_numpy(), frame["session"].to_numpy()
    for how in ("mean", "vote"):
        parts = _serve(policies, how, episodes, config, limits)
        members = np.hstack([d.members for d in parts])
        assert np.abs(members - research).max() < TOL, (case, how, np.abs(members - research).max())
        combined = np.concatenate([d.target for d in parts])
        expected = E.combine_positions(research, how)
        assert np.abs(combined - expected).max() < TOL, (case, how)
        # the book's risk manager = what the research backtest applies to the combination
        booked, _ = apply_risk(expected, rets, sessions, limits=limits, costs=COSTS)
        assert np.abs(np.concatenate([d.position for d in parts]) - booked).max() < TOL
    # the rules / the feature subset matter here: serving without them would not match (the test can fail)
    if case == "features":
        with pytest.raises(ValueError, match="does not match the model"):
            _serve(policies, "mean", episodes, T.TrainConfig(), limits)
        shuffled = dataclasses.replace(config, features=tuple(reversed(config.features)))
        other = np.hstack([d.members for d in _serve(policies, "mean", episodes, shuffled, limits)])
        assert np.abs(other - research).max() > 0.01
    else:
        bare = dataclasses.replace(config, action_space="continuous", no_trade_band=0.0, min_hold_bars=0)
        other = np.hstack([d.members for d in _serve(policies, "mean", episodes, bare, limits)])
        assert np.abs(other - research).max() > 0.05
    if case == "discrete_hold":
        assert set(np.unique(research)) <= {-1.0, 0.0, 1.0} and set(np.unique(research)) >= {-1.0, 1.0}


def test_action_rules_shape_like_the_env():
    r = ActionRules("discrete", no_trade_band=0.25, min_hold_bars=2)
    assert r.shape(0.3, 0.2, 5) == 0.2  # inside the band: keep, before quantizing
    assert r.shape(0.5, 0.0, 0) == 1.0 and r.shape(-0.2, 1.0, 5) == 0.0 and r.shape(-2.0, 0.0, 1) == -1.0
    assert r.shape(-1.0, 1.0, 1) == 1.0  # held one bar of two: kept
    assert np.isnan(r.shape(float("nan"), 1.0, 0))
    assert not ActionRules().shapes and ActionRules(min_hold_bars=1).shapes
    assert ActionRules.from_config(T.TrainConfig(action_space="discrete", min_hold_bars=4)) == ActionRules(
        "discrete", 0.0, 4
    )
    with pytest.raises(ValueError, match="space"):
        ActionRules("binary")
    with pytest.raises(ValueError, match="not observation features"):
        serving_inputs(T.TrainConfig(features=("nope",)), CONFIG.features)
    rules, cols = serving_inputs(T.TrainConfig(features=("vol_60", "ret_1")), CONFIG.features)
    assert cols.tolist() == [CONFIG.features.index("vol_60"), 0] and rules == ActionRules()


def test_defaults_unchanged_bit_for_bit(episodes):
    config = T.TrainConfig()
    models = _models(episodes, config)
    policy = PolicyFunction.from_model(models[0])
    a, b = int(episodes.starts[2]), int(episodes.ends[2])
    obs, frac, rets = episodes.obs[a:b], episodes.time_frac[a:b], episodes.next_ret[a:b]
    last = np.arange(b - a) == b - a - 1
    limits = RiskLimits(daily_loss_stop=0.002)
    base = decide_session(policy, obs, frac, rets, last, "s", limits, COSTS)
    assert base.shaped is None
    for rules, features in (
        (ActionRules(), None),
        (None, np.arange(CONFIG.dim)),
        (ActionRules(), np.arange(CONFIG.dim)),
    ):
        same = decide_session(policy, obs, frac, rets, last, "s", limits, COSTS, rules, features)
        for field in ("raw_action", "target", "position", "risk_flags", "invalid_obs"):
            np.testing.assert_array_equal(getattr(same, field), getattr(base, field))
    # a one-member mean ensemble is the model itself (then the book's risk manager, idempotent here)
    one = decide_session_ensemble([policy], "mean", obs, frac, rets, last, "s", limits, COSTS)
    np.testing.assert_array_equal(one.members[0], base.position)
    np.testing.assert_array_equal(one.position, base.position)
    # and the single model equals the research rollout without rules
    research = T.predict_positions(models[0], episodes_frame(DAYS, seed=3), CONFIG, T.inference_env_config(config))
    served = research["position"].to_numpy()[a:b]
    no_risk = decide_session(policy, obs, frac, rets, last, "s", None, COSTS)
    assert np.abs(no_risk.position - served).max() < TOL


def test_ensemble_prefix_and_invalid_bars(episodes):
    models = _models(episodes, CASES["band"][0])
    policies = [PolicyFunction.from_model(m) for m in models]
    rules = ActionRules(no_trade_band=0.25)
    a, b = int(episodes.starts[0]), int(episodes.ends[0])
    obs, frac, rets = episodes.obs[a:b].copy(), episodes.time_frac[a:b], episodes.next_ret[a:b]
    last = np.arange(b - a) == b - a - 1
    full = decide_session_ensemble(policies, "vote", obs, frac, rets, last, rules=rules)
    prefix = decide_session_ensemble(policies, "vote", obs[:20], frac[:20], rets[:20], last[:20], rules=rules)
    np.testing.assert_array_equal(prefix.position, full.position[:20])
    np.testing.assert_array_equal(prefix.members, full.members[:, :20])
    obs[5, 1] = np.nan
    bad = decide_session_ensemble(policies, "mean", obs, frac, rets, last, rules=rules)
    assert bad.invalid_obs[5] and (bad.members[:, 5] == 0).all() and bad.position[5] == 0 and bad.risk_flags[5] & 16
    with pytest.raises(ValueError, match="median"):
        decide_session_ensemble(policies, "median", obs, frac, rets, last)
