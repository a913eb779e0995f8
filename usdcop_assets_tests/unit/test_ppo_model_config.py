"""``PPOModelConfig`` carries every training budget and fold option the environment sets: a field set in the run
config wins, an unset one keeps the environment's value, and a bad value is refused naming the field."""

from __future__ import annotations

import pytest

from usdcop_assets.core.settings import ConfigError
from usdcop_assets.defs.layers.l5_model import PPOModelConfig


@pytest.fixture
def env(monkeypatch):
    for name, value in {
        "USDCOP_PPO_TIMESTEPS": "1000",
        "USDCOP_PPO_SEED": "3",
        "USDCOP_PPO_CHECKPOINTS": "4",
        "USDCOP_PPO_N_STEPS": "128",
        "USDCOP_TRAIN_SCHEME": "rolling",
        "USDCOP_TRAIN_SESSIONS": "90",
        "USDCOP_VALID_SESSIONS": "10",
        "USDCOP_MIN_TRAIN_SESSIONS": "30",
    }.items():
        monkeypatch.setenv(name, value)


def test_unset_fields_keep_the_environment(env):
    train = PPOModelConfig().train_config()
    assert (train.total_timesteps, train.seed, train.n_checkpoints, train.n_steps) == (1000, 3, 4, 128)
    assert PPOModelConfig().fold_options() == {
        "scheme": "rolling",
        "train_sessions": 90,
        "valid_sessions": 10,
        "min_train_sessions": 30,
    }


def test_run_config_overrides_the_environment(env):
    config = PPOModelConfig(checkpoints=2, n_steps=32, scheme="expanding", train_sessions=120)
    train = config.train_config()
    assert (train.total_timesteps, train.n_checkpoints, train.n_steps) == (1000, 2, 32)
    assert train.batch_size == 32  # a batch never longer than the rollout, as with USDCOP_PPO_N_STEPS
    options = config.fold_options()
    assert (options["scheme"], options["train_sessions"], options["valid_sessions"]) == ("expanding", 120, 10)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("checkpoints", 0, "PPOModelConfig.checkpoints=0 must be at least 1"),
        ("n_steps", 0, "PPOModelConfig.n_steps=0 must be at least 1"),
        ("seed", -1, "PPOModelConfig.seed=-1 must be at least 0"),
        ("train_sessions", 0, "PPOModelConfig.train_sessions=0 must be at least 1"),
    ],
)
def test_bad_values_are_refused_naming_the_field(env, field, value, message):
    config = PPOModelConfig(**{field: value})
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        config.train_config() if field in ("checkpoints", "n_steps", "seed") else config.fold_options()
