"""Experiments as versioned TOML files, and the environment's action rules and reward shaping they set."""

import numpy as np
import pytest

from usdcop_assets.rl import CostConfig, EnvConfig, SessionEpisodes, UsdCopTradingEnv
from usdcop_assets.rl import experiments as X
from usdcop_assets.rl.training import TrainConfig, inference_env_config, make_env_config


def test_package_experiments_load_and_baseline_is_todays_behaviour():
    rows = X.list_experiments()
    names = [r["name"] for r in rows]
    assert "baseline" in names and len(names) >= 4
    assert all(r["origin"] == "package" and not r["overrides"] and len(r["version"]) == 12 for r in rows)
    base = X.load_experiment("baseline")
    assert len(base.seeds) >= 3 and base.ensemble == "mean" and base.features is None
    cfg = base.train_config()
    # today's l5/ppo_model config (train_config_from_env defaults) apart from nothing: same env, same PPO
    today = TrainConfig(total_timesteps=50_000, seed=7)
    assert cfg == today
    assert make_env_config(cfg) == make_env_config(today) == make_env_config(TrainConfig())
    for name in names:  # every shipped file maps to a valid TrainConfig / EnvConfig
        e = X.load_experiment(name)
        make_env_config(e.train_config(e.seeds[-1]))


def test_ppo_defaults_are_train_config_defaults():
    # the [ppo] table's defaults come from TrainConfig (one place), apart from the per-fold timesteps
    import dataclasses

    train = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    ppo = {f.name: f.default for f in dataclasses.fields(X.Ppo) if f.name != "timesteps"}
    assert ppo and all(train[k] == v for k, v in ppo.items())


def test_version_is_content_hash(tmp_path):
    (tmp_path / "a.toml").write_text("[reward]\nturnover_penalty = 0.0001\n")
    (tmp_path / "b.toml").write_text('description = "same settings"\n[reward]\nturnover_penalty = 1e-4\n')
    (tmp_path / "c.toml").write_text("[reward]\nturnover_penalty = 0.0002\n")
    a, b, c = (X.load_experiment(n, tmp_path) for n in "abc")
    assert a.version == b.version != c.version
    assert X.load_experiment("baseline").version != a.version
    assert a.reward.turnover_penalty == 1e-4 and a.train_config().turnover_penalty == 1e-4


def test_user_folder_overrides_and_listing_says_so(tmp_path):
    (tmp_path / "baseline.toml").write_text('seeds = [1, 2, 3, 4]\nensemble = "vote"\n')
    (tmp_path / "mine.toml").write_text('[action]\nspace = "discrete"\nmin_hold_bars = 6\n')
    rows = {r["name"]: r for r in X.list_experiments(tmp_path)}
    assert rows["baseline"]["origin"] == "user" and rows["baseline"]["overrides"]
    assert rows["mine"]["origin"] == "user" and not rows["mine"]["overrides"]
    assert rows["cost_aware"]["origin"] == "package"
    assert X.load_experiment("baseline", tmp_path).seeds == (1, 2, 3, 4)
    assert X.load_experiment("baseline").seeds == (7, 8, 9)
    with pytest.raises(ValueError, match="no experiment 'nope'"):
        X.load_experiment("nope", tmp_path)


@pytest.mark.parametrize(
    "text, key",
    [
        ("learning_rate = 0.1\n", "unknown key 'learning_rate'"),
        ("[ppo]\nlearnin_rate = 0.1\n", "unknown key ppo.'learnin_rate'"),
        ("[ppo]\nlearning_rate = -1\n", "ppo.learning_rate=-1"),
        ("[ppo]\nn_steps = 64\nbatch_size = 128\n", "ppo.batch_size=128"),
        ('[action]\nspace = "binary"\n', "action.space='binary'"),
        ("[action]\nmin_hold_bars = 2.5\n", "action.min_hold_bars=2.5"),
        ("[reward]\ncost_multiplier = 0.5\n", "reward.cost_multiplier=0.5"),
        ('[observation]\nfeatures = ["ret_1", "nope"]\n', "observation.features: \\['nope'\\]"),
        ("seeds = [1, 1, 2]\n", "seeds=\\[1, 1, 2\\]"),
        ('ensemble = "median"\n', "ensemble='median'"),
        ('[validation]\nmetric = "sortino"\n', "validation.metric='sortino'"),
        ("[ppo\n", "not valid TOML"),
    ],
)
def test_bad_files_name_file_and_key(tmp_path, text, key):
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(ValueError, match=key) as e:
        X.load_experiment("bad", tmp_path)
    msg = str(e.value)
    assert "bad.toml" in msg and "\n" not in msg


def test_feature_subset_and_validation_options():
    e = X.load_experiment("small_features")
    assert e.features and len(e.features) < 30 and e.train_config().features == e.features
    assert e.fold_options({"scheme": "expanding", "valid_sessions": 99})["valid_sessions"] == 20


# --- the environment's action rules -------------------------------------------------------------------


def one_session(n=8, dim=3, seed=0):
    rng = np.random.default_rng(seed)
    r = rng.normal(0, 1e-3, n)
    r[-1] = 0.0
    obs = rng.normal(size=(n, dim))
    return SessionEpisodes(obs, r, np.arange(n) / 60, ["s"] * n, clip=5.0, feature_names=["a", "b", "c"])


def positions(cfg, actions, ep=None):
    env = UsdCopTradingEnv(ep or one_session(len(actions)), cfg)
    env.reset(seed=0)
    out, rewards, infos = [], [], []
    for a in actions:
        _, r, _, _, info = env.step(np.array([a], dtype=np.float32))
        out.append(info["position"])
        rewards.append(r)
        infos.append(info)
    return out, rewards, infos


def test_discrete_quantizes_to_short_flat_long():
    got, *_ = positions(EnvConfig(action_space="discrete"), [0.2, 0.5, -0.3, -0.9, 1.0, 0.34, -0.34, 0.9])
    assert got == [0.0, 1.0, 0.0, -1.0, 1.0, 1.0, -1.0, 0.0]  # last bar: flat


def test_min_hold_keeps_a_position_that_many_bars():
    got, *_ = positions(EnvConfig(action_space="discrete", min_hold_bars=3), [1, -1, -1, -1, 0, 0, 1, 1])
    assert got == [1.0, 1.0, 1.0, -1.0, -1.0, -1.0, 1.0, 0.0]


def test_no_trade_band_keeps_the_position_inside_the_band():
    got, *_ = positions(EnvConfig(no_trade_band=0.5), [0.8, 0.5, 0.4, 0.2, -0.2, -0.5, -0.6, 0.3])
    assert got == pytest.approx([0.8, 0.8, 0.8, 0.2, 0.2, -0.5, -0.5, 0.0])


def test_default_actions_unchanged_and_cost_multiplier_shapes_the_reward_only():
    acts = [0.3, -0.7, 0.7, 0.7, 0.1, -1.0, 0.0, 0.5]
    base_pos, base_rew, base_info = positions(EnvConfig(), acts)
    assert base_pos == pytest.approx([0.3, -0.7, 0.7, 0.7, 0.1, -1.0, 0.0, 0.0], abs=1e-7)
    costs = CostConfig(spread_bps=4.0, slippage_bps=1.0)
    pos, rew, info = positions(EnvConfig(costs=costs, cost_multiplier=3.0, holding_incentive=1e-5), acts)
    _, real, real_info = positions(EnvConfig(costs=costs), acts)
    assert pos == base_pos
    for r, rr, i, ri in zip(rew, real, info, real_info):
        assert i["pnl"] == ri["pnl"] and i["cost"] == ri["cost"]  # the real costs in info and equity
        assert r == pytest.approx(rr - 2 * 0.0003 * i["trade"] + (1e-5 if i["trade"] == 0 else 0.0), abs=1e-12)


def test_feature_subset_selects_columns_by_name():
    ep = one_session()
    env = UsdCopTradingEnv(ep, EnvConfig(features=("c", "a")))
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == (4,)
    np.testing.assert_array_equal(obs[:2], ep.obs[0, [2, 0]])
    with pytest.raises(ValueError, match="'zz'"):
        UsdCopTradingEnv(ep, EnvConfig(features=("zz",)))


def test_inference_env_uses_real_costs_and_the_rules():
    cfg = X.load_experiment("cost_aware").train_config()
    assert make_env_config(cfg).cost_multiplier == 3.0
    inf = inference_env_config(cfg)
    assert inf.cost_multiplier == 1.0 and inf.no_trade_band == 0.25 and inf.sampling == "sequential"
    with pytest.raises(ValueError, match="cost_multiplier"):
        EnvConfig(cost_multiplier=0.5)
    with pytest.raises(ValueError, match="action_space"):
        EnvConfig(action_space="binary")
