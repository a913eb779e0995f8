"""The typed settings object: one field per variable, defaults, one-line errors naming the variable, secrets masked,
groups parsed lazily (a bad value in one group does not stop another)."""

import datetime as dt

import pytest

from usdcop_assets.core.settings import ConfigError, Settings

pytestmark = pytest.mark.unit


def test_defaults_with_nothing_set():
    s = Settings.from_env({})
    assert s.history.start == dt.date(2020, 1, 1)
    assert s.training.fold_options() == {
        "scheme": "expanding",
        "train_sessions": 250,
        "valid_sessions": 20,
        "min_train_sessions": 60,
    }
    assert (s.training.timesteps, s.training.seed) == (50_000, 7)
    assert s.automation.executor == "in_process" and s.automation.realtime == "off"
    assert s.sources.twelvedata_keys == [] and s.sources.fred_key == ""


def test_values_are_typed_and_blank_means_unset():
    s = Settings.from_env(
        {"USDCOP_PPO_TIMESTEPS": " 1200 ", "USDCOP_HISTORY_START": "2021-02-03", "USDCOP_TRAIN_SCHEME": "  "}
    )
    assert s.training.timesteps == 1200 and s.training.scheme == "expanding"
    assert s.history.start == dt.date(2021, 2, 3)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"USDCOP_PPO_TIMESTEPS": "abc"}, "USDCOP_PPO_TIMESTEPS='abc': input should be a valid integer"),
        ({"USDCOP_PPO_TIMESTEPS": "0"}, "USDCOP_PPO_TIMESTEPS='0': input should be greater than or equal to 1"),
        ({"USDCOP_TRAIN_SCHEME": "weekly"}, "USDCOP_TRAIN_SCHEME='weekly': input should be 'expanding' or 'rolling'"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(env, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(")) as info:
        Settings.from_env(env).training  # noqa: B018
    assert "\n" not in str(info.value)


def test_groups_are_parsed_lazily_and_secrets_are_masked():
    s = Settings.from_env({"USDCOP_LIVE_POLL_SECONDS": "nan", "TWELVEDATA_API_KEYS": "k1, k2", "FRED_API_KEY": "s3"})
    assert s.training.timesteps == 50_000  # the bad live value does not stop the training group
    with pytest.raises(ConfigError, match="USDCOP_LIVE_POLL_SECONDS='nan'"):
        s.live  # noqa: B018
    assert s.sources.twelvedata_keys == ["k1", "k2"]
    shown = s.sources.describe()
    assert shown["TWELVEDATA_API_KEYS"] == "***" and shown["FRED_API_KEY"] == "***"
    assert "s3" not in repr(s.sources) and "k1" not in repr(s.sources)


def test_the_object_is_a_snapshot():
    env = {"USDCOP_PPO_SEED": "3"}
    s = Settings.from_env(env)
    env["USDCOP_PPO_SEED"] = "4"
    assert s.training.seed == 3
