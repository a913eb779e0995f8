"""L2-L4 through Dagster: a bar's indicators and features are the same whether computed in a range run
or in one-session runs; statistics come from the declared training window only; episodes carry
the next-bar return; the observation checks pass, and catch a feature that looked ahead."""

import datetime as dt
import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import Settings
from usdcop_assets.defs.automation.jobs import SESSION_JOB, STATS_JOB, job_check_keys, layers_job
from usdcop_assets.defs.partitions import session_key_range
from usdcop_assets.defs.resources import LakeResource
from usdcop_assets.features.indicators import compute_indicators
from usdcop_assets.observation.builder import DEFAULT_CONFIG, load_config, obs_version

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
FIRST, LAST = dt.date(2025, 2, 24), dt.date(2025, 3, 7)  # 10 sessions
WARM_FEB = (
    dt.date(2025, 2, 28),
    dt.date(2025, 2, 28),
)  # the first 4 sessions lack look-back: March is fitted on Feb 28


def _obs_config(tmp_path, monkeypatch):
    config = json.loads(DEFAULT_CONFIG.read_text())
    config["normalization"]["min_train_bars"] = 50  # one warm session of February fits March
    path = tmp_path / "obs_test.json"
    path.write_text(json.dumps(config))
    monkeypatch.setenv("USDCOP_OBS_CONFIG", str(path))


@pytest.fixture
def obs_env(usdcop_env, tmp_path, monkeypatch):
    _obs_config(tmp_path, monkeypatch)
    return usdcop_env


@pytest.fixture
def instance(usdcop_env):
    with dg.instance_for_test(temp_dir=str(usdcop_env / "dagster_home")) as inst:
        yield inst


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory):
    """One platform home with L0-L4 over the ten sessions, shared by the read-mostly tests below."""
    root = tmp_path_factory.mktemp("l2_l4")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("USDCOP_LAKE_URL", "USDCOP_WAREHOUSE_URL", "USDCOP_SOURCE", "TWELVEDATA_API_KEYS"):
            mp.delenv(var, raising=False)
        mp.setenv("USDCOP_HOME", str(root / "home"))
        mp.setenv("DAGSTER_HOME", str(root / "home" / "dagster_home"))
        mp.setenv("USDCOP_SOURCE", "synthetic:clean")  # the counts below assume every bar
        (root / "home" / "dagster_home").mkdir(parents=True)
        _obs_config(root, mp)
        defs = _defs()
        with dg.instance_for_test(temp_dir=str(root / "home" / "dagster_home")) as inst:
            _backfill(defs, inst)
            yield root / "home", defs, inst


def _defs():
    from usdcop_assets.core.settings import Settings
    from usdcop_assets.defs.definitions import build_defs

    return build_defs(Settings.from_env())


def _range_tags(first, last):
    r = session_key_range(first, last)
    return {RANGE_START: r.start, RANGE_END: r.end}


def _month_tags(first, last):
    return {RANGE_START: f"{first:%Y-%m}", RANGE_END: f"{last:%Y-%m}"}


def _backfill(defs, instance, first=FIRST, last=LAST):
    assert layers_job(defs, "L0,L1,L2,L3").execute_in_process(instance=instance, tags=_range_tags(first, last)).success
    assert defs.resolve_job_def(STATS_JOB).execute_in_process(instance=instance, tags=_month_tags(first, last)).success
    assert layers_job(defs, "L4").execute_in_process(instance=instance, tags=_range_tags(first, last)).success


def _lake(env) -> LakeResource:
    return LakeResource(url=str(env / "lake"))


def test_range_run_and_one_session_runs_store_identical_indicators_and_features(
    obs_env, instance, tmp_path, monkeypatch
):
    defs = _defs()
    _backfill(defs, instance)
    lake = _lake(obs_env)
    sessions = cal.trading_days(FIRST, LAST)[-3:]
    ranged = {k: lake.table(k).read() for k in ("l2/indicators_m5", "l3/features_m5")}

    # A second platform home: L0-L1 as a range, then L2-L3 one session per run (each loads its own
    # look-back: 4 sessions of L1 for L2, 2 for L3), as the session close schedule would.
    other = tmp_path / "other"
    monkeypatch.setenv("USDCOP_HOME", str(other))
    monkeypatch.setenv("DAGSTER_HOME", str(other / "dagster_home"))
    (other / "dagster_home").mkdir(parents=True)
    defs2 = _defs()
    with dg.instance_for_test(temp_dir=str(other / "dagster_home")) as inst2:
        assert layers_job(defs2, "L0,L1").execute_in_process(instance=inst2, tags=_range_tags(FIRST, LAST)).success
        for day in sessions:
            result = layers_job(defs2, "L2,L3").execute_in_process(instance=inst2, partition_key=cal.session_key(day))
            assert result.success
        l2 = result.asset_materializations_for_node("l2__indicators_m5")[0].metadata
        assert l2["lookback_bars_loaded"].value == 240 and l2["bars_present"].value == 60
    lake2 = LakeResource(url=str(other / "lake"))
    for dataset, full in ranged.items():
        one = lake2.table(dataset).read().set_index("time")
        assert len(one) == 180
        expected = full.set_index("time").loc[one.index]
        assert one["warm"].all()
        pd.testing.assert_frame_equal(one, expected[one.columns], check_exact=True)
    # and the indicators are ta's on the clean series (the pure function is tested against ta itself)
    l1 = lake.table("l1/ohlcv_m5").read()
    direct = compute_indicators(l1, targets=pd.DatetimeIndex(ranged["l2/indicators_m5"]["time"]))
    pd.testing.assert_series_equal(
        direct["ema_20"], ranged["l2/indicators_m5"]["ema_20"], check_exact=True, check_names=False
    )


def test_each_month_is_normalized_with_statistics_of_the_months_before_it(backfilled):
    home, defs, instance = backfilled
    lake = _lake(home)
    stats = lake.table("l4/observation_stats").read()
    assert sorted(stats["month"].unique()) == ["2025-02", "2025-03"]
    feb, mar = (stats[stats["month"] == m].set_index("feature") for m in ("2025-02", "2025-03"))
    # February: nothing before it -> unfitted, with the reason and what it needs
    assert (
        not feb["fitted"].any()
        and feb["stats_version"].iloc[0] == "unfitted"
        and feb["reason"].iloc[0].startswith("0 warm")
    )
    # March: the warm February bars only (2025-02-28)
    features = lake.table("l3/features_m5").read()
    t = pd.DatetimeIndex(features["time"])
    train = features[(t >= cal.session_open(WARM_FEB[0])) & (t < cal.session_end(WARM_FEB[1])) & features["warm"]]
    row = mar.loc["ret_12"]
    assert row["train_rows"] == len(train) == 60 and row["window_end"] == "2025-02-28"
    assert np.isclose(row["mean"], train["ret_12"].mean()) and np.isclose(row["std"], train["ret_12"].std(ddof=1))
    events = instance.fetch_materializations(dg.AssetKey(["l4", "observation_stats"]), limit=10).records
    by_month = {e.partition_key: e.asset_materialization.metadata for e in events}
    assert by_month["2025-02"]["fitted"].value is False and by_month["2025-02"]["bars_needed"].value == 50
    assert by_month["2025-03"]["fitted"].value is True

    # Re-fitting reads only the months before: the same statistics, the same version.
    before = row["stats_version"]
    assert defs.resolve_job_def(STATS_JOB).execute_in_process(instance=instance, tags=_month_tags(LAST, LAST)).success
    again = lake.table("l4/observation_stats").read()
    assert again[again["month"] == "2025-03"]["stats_version"].iloc[0] == before

    obs = lake.table("l4/observations_m5").read()
    config = load_config(settings=Settings.from_env({"USDCOP_OBS_CONFIG": str(home.parent / "obs_test.json")}))
    assert [c for c in obs.columns if c.startswith("o_")] == config.columns and len(config.columns) == config.dim
    values = obs[config.columns].to_numpy()
    assert np.isfinite(values).all() and np.abs(values).max() <= config.clip
    march = obs["time"] >= cal.session_open(dt.date(2025, 3, 3))
    assert (obs["obs_version"] == obs_version(config)).all()
    assert (obs.loc[march, "stats_version"] == before).all() and obs.loc[march, "warm"].all()
    assert (
        not obs.loc[~march, "warm"].any()
        and obs.loc[~march, "cold_reason"].str.startswith("normalization for 2025-02 not fitted").all()
    )


def test_episodes_are_one_session_each_with_next_bar_returns(backfilled):
    lake = _lake(backfilled[0])
    episodes = lake.table("l4/episodes_session").read()
    bars = lake.table("l1/ohlcv_m5").read().set_index("time")
    assert episodes.groupby("session").size().eq(60).all() and episodes["session"].nunique() == 10
    one = episodes[episodes["session"] == "2025-03-04"].reset_index(drop=True)
    closes = bars.loc[pd.DatetimeIndex(one["time"]), "close"].to_numpy()
    assert np.allclose(one["next_ret"].to_numpy()[:-1], np.log(closes[1:] / closes[:-1]), rtol=0, atol=1e-15)
    assert one["next_ret"].iloc[-1] == 0.0 and one["is_last"].iloc[-1] and one["step"].tolist() == list(range(60))


def test_observation_checks_pass_and_catch_a_feature_that_looked_ahead(backfilled, monkeypatch):
    from usdcop_assets.quality import rules

    home, defs, instance = backfilled
    _obs_config(home.parent, monkeypatch)
    job = defs.resolve_job_def(SESSION_JOB)
    keys = {
        k
        for k in job_check_keys(job)
        if k.asset_key == dg.AssetKey(["l4", "observations_m5"]) and k.name != "live_parity"
    }

    def run_checks():  # the l4/observations_m5 checks alone, on what the lake holds
        result = job.get_subset(asset_selection=set(), asset_check_selection=keys).execute_in_process(
            instance=instance, tags=_range_tags(LAST, LAST), raise_on_error=False
        )
        return {
            e.asset_check_evaluation_data.asset_check_key.name: e.asset_check_evaluation_data
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        }

    checks = run_checks()
    assert set(checks) == {"observations_finite", "observation_dimension", "no_look_ahead"}
    assert all(c.passed for c in checks.values())
    assert checks["no_look_ahead"].metadata["bars_recomputed"].value == 1

    # Replace the stored 1-hour return of the sampled bar by the *next* hour's: a look-ahead.
    lake = _lake(home)
    table = lake.table("l3/features_m5")
    day = table.read(cal.session_open(LAST), cal.session_end(LAST)).reset_index(drop=True)
    i = int(np.flatnonzero(day["time"] == rules.sample_bars(pd.DatetimeIndex(day["time"]))[0])[0])
    day.loc[i, "ret_12"] = day.loc[i + 12, "ret_12"]
    table.write(day, cal.session_open(LAST), cal.session_end(LAST))
    checks = run_checks()
    assert not checks["no_look_ahead"].passed
    [mismatch] = checks["no_look_ahead"].metadata["mismatched"].value
    assert mismatch.startswith(f"{cal.bar_key(cal.session_bars(LAST)[i])}: ret_12 stored ")
