"""The modules that used to parse their own variables read the typed ``Settings`` (issue 18 item 1): each takes a
``Settings`` (None: the environment now), and a bad value fails in one line naming the variable."""

import pandas as pd
import pytest

from usdcop_assets import clock, version
from usdcop_assets.core.settings import ConfigError, LiveSettings, Settings
from usdcop_assets.live.loop import Clock
from usdcop_assets.rl.folds import fold_options_from_env
from usdcop_assets.rl.training import TrainConfig, train_config_from_env
from usdcop_assets.sources import resolve_source
from usdcop_assets.sources.macro_sources import resolve_macro_source
from usdcop_assets.storage.lake.lease import SessionLeases
from usdcop_assets.storage.lake.store import LocalObjectStore
from usdcop_assets.storage.warehouse.database import sql_dir

pytestmark = pytest.mark.unit


def test_training_budget_and_fold_options_come_from_the_training_group():
    s = Settings.from_env({"USDCOP_PPO_N_STEPS": "32", "USDCOP_PPO_SEED": "0", "USDCOP_TRAIN_SCHEME": "rolling"})
    config = train_config_from_env(s)
    assert (config.n_steps, config.batch_size, config.seed) == (32, 32, 0)  # the batch is at most the rollout
    assert config.total_timesteps == 50_000 and config.n_checkpoints == TrainConfig.n_checkpoints
    assert fold_options_from_env(s) == {
        "scheme": "rolling",
        "train_sessions": 250,
        "valid_sessions": 20,
        "min_train_sessions": 60,
    }
    with pytest.raises(ConfigError, match="^USDCOP_VALID_SESSIONS='0'"):
        fold_options_from_env(Settings.from_env({"USDCOP_VALID_SESSIONS": "0"}))


def test_no_argument_reads_the_environment_at_call_time(monkeypatch):
    monkeypatch.setenv("USDCOP_PPO_TIMESTEPS", "1234")
    monkeypatch.setenv("USDCOP_SOURCE", "synthetic:clean")
    monkeypatch.setenv("USDCOP_LIVE_GRACE_MINUTES", "2.5")
    assert train_config_from_env().total_timesteps == 1234
    assert resolve_source() == "synthetic:clean"
    assert LiveSettings.from_env().grace_minutes == 2.5  # what `usdcop live` validates before starting
    monkeypatch.setenv("USDCOP_PPO_TIMESTEPS", "nope")
    with pytest.raises(ConfigError, match="^USDCOP_PPO_TIMESTEPS='nope'"):
        train_config_from_env()


def test_bar_and_macro_sources_resolve_from_the_sources_group():
    assert resolve_source(Settings.from_env({})) == "synthetic"
    assert resolve_source(Settings.from_env({"TWELVEDATA_API_KEYS": "k"})) == "twelvedata"
    assert resolve_source(Settings.from_env({"USDCOP_SOURCE": " file:/x.csv ", "TWELVEDATA_API_KEYS": "k"})) == (
        "file:/x.csv"
    )
    # The mapping path of before the defs/ merge is gone: a mapping is refused, not read as the environment.
    with pytest.raises(TypeError, match="Settings.from_env"):
        resolve_source({"TWELVEDATA_API_KEYS": "k"})
    assert resolve_macro_source(Settings.from_env({"FRED_API_KEY": "k"})) == ("fred",)


def test_the_replay_clock_is_the_live_groups():
    start = pd.Timestamp("2025-03-04T17:00:00Z")
    s = Settings.from_env({"USDCOP_REPLAY_CLOCK": f"{start.isoformat()}@{pd.Timestamp.now(tz='UTC').timestamp()}x30"})
    assert abs(clock.utc_now(s) - start) < pd.Timedelta(minutes=5)  # 30x of a few real seconds at most
    assert Clock(s).speed == 30.0
    with pytest.raises(ValueError, match="^USDCOP_REPLAY_CLOCK='soon'"):
        clock.utc_now(Settings.from_env({"USDCOP_REPLAY_CLOCK": "soon"}))


def test_a_resolved_platform_clock_reads_no_settings_per_call(monkeypatch):
    start = pd.Timestamp("2025-03-04T17:00:00Z")
    s = Settings.from_env({"USDCOP_REPLAY_CLOCK": f"{start.isoformat()}@{pd.Timestamp.now(tz='UTC').timestamp()}x30"})
    resolved, live = clock.PlatformClock.from_settings(s), Clock(s)
    assert (
        resolved.replay == s.live.replay_clock
        and clock.PlatformClock.from_settings(Settings.from_env({})).replay is None
    )

    def no_settings(*a, **k):
        raise AssertionError("settings read per call")

    monkeypatch.setattr(Settings, "from_env", no_settings)
    for now in (clock.utc_now(clock=resolved), resolved.now(), live.now()):  # the live clock's is its settings'
        assert abs(now - start) < pd.Timedelta(minutes=5)
    assert abs(clock.utc_now(clock=clock.PlatformClock()) - pd.Timestamp.now(tz="UTC")) < pd.Timedelta(minutes=1)


def test_storage_options_reach_the_stores(tmp_path):
    s = Settings.from_env({"USDCOP_GIT_COMMIT": " 0123456789abcdef ", "USDCOP_SQL_DIR": str(tmp_path)})
    assert version.git_commit(s) == "0123456789ab"
    with pytest.raises(FileNotFoundError, match="set USDCOP_SQL_DIR"):
        sql_dir(s)  # tmp_path has no tables/ folder
    assert LocalObjectStore(tmp_path, stale_temp_seconds=5).stale_temp_seconds == 5.0
    with pytest.raises(ConfigError, match="^USDCOP_LEASE_TTL_SECONDS='1'"):
        Settings.from_env({"USDCOP_LEASE_TTL_SECONDS": "1"}).storage  # noqa: B018


def test_lease_defaults_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("USDCOP_LEASE_TTL_SECONDS", "7")
    monkeypatch.setenv("USDCOP_LAKE_STALE_TEMP_SECONDS", "11")
    assert SessionLeases(LocalObjectStore(tmp_path)).ttl == 7.0
    assert LocalObjectStore(tmp_path).stale_temp_seconds == 11.0
