"""Monthly point-in-time observation statistics (docs/decisions/0003-observation-normalization.md).

Pure tests of the rule (``observation/normalization.py`` and the builder), then the whole path through
Dagster and the CLI on a fresh home with the synthetic source and no environment variable.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import Settings
from usdcop_assets.observation.builder import DEFAULT_CONFIG, build_observations, load_config, obs_version
from usdcop_assets.observation.normalization import fit_month, month_start, stats_from_frame, stats_to_frame


def _config(tmp_path, **normalization):
    raw = json.loads(DEFAULT_CONFIG.read_text())
    raw["normalization"].update(normalization)
    path = tmp_path / "obs.json"
    path.write_text(json.dumps(raw))
    return load_config(path, Settings.from_env({}))


def _features(config, first: dt.date, last: dt.date, seed: int = 0) -> pd.DataFrame:
    """Warm L3-like rows (every config feature) on the calendar's bars of first..last."""
    times = pd.DatetimeIndex([b for d in cal.trading_days(first, last) for b in cal.session_bars(d)])
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(len(times), config.dim)), columns=list(config.features))
    frame.insert(0, "time", times)
    frame.insert(1, "symbol", "USD/COP")
    frame["warm"] = True
    return frame


def test_a_months_statistics_use_only_the_months_before_it(tmp_path):
    config = _config(tmp_path)
    features = _features(config, dt.date(2024, 1, 2), dt.date(2025, 4, 30))
    march = fit_month(features, config, "2025-03")
    assert march["fitted"] and march["window_start"] == "2024-03-01" and march["window_end"] == "2025-02-28"
    t = pd.DatetimeIndex(features["time"])
    window = features[(t >= month_start("2024-03")) & (t < month_start("2025-03"))]
    assert march["train_rows"] == len(window)
    assert np.isclose(march["mean"]["ret_1"], window["ret_1"].mean()) and np.isclose(
        march["std"]["ret_1"], window["ret_1"].std(ddof=1)
    )

    # March itself and anything later changes nothing ...
    later = features.copy()
    later.loc[t >= month_start("2025-03"), list(config.features)] *= 100.0
    again = fit_month(later, config, "2025-03")
    assert again["stats_version"] == march["stats_version"] and again["mean"] == march["mean"]
    # ... a bar inside the trailing window does, and so does one more month of history before it
    earlier = features.copy()
    earlier.loc[t < month_start("2025-03"), "ret_1"] += 0.5
    assert fit_month(earlier, config, "2025-03")["stats_version"] != march["stats_version"]
    assert fit_month(features, config, "2025-04")["stats_version"] != march["stats_version"]
    # rows before the window (13 months back) are not part of it
    older = features.copy()
    older.loc[t < month_start("2024-03"), "ret_1"] += 0.5
    assert fit_month(older, config, "2025-03")["stats_version"] == march["stats_version"]

    # the lake round trip keeps every month
    back = stats_from_frame(stats_to_frame([march, fit_month(features, config, "2025-04")]))
    assert sorted(back) == ["2025-03", "2025-04"] and back["2025-03"]["stats_version"] == march["stats_version"]
    assert back["2025-03"]["mean"] == pytest.approx(march["mean"])


def test_a_month_without_enough_history_is_unfitted_and_its_observations_not_warm(tmp_path):
    config = _config(tmp_path)
    features = _features(config, dt.date(2025, 1, 2), dt.date(2025, 2, 28))
    january = fit_month(features, config, "2025-01")  # nothing before January
    february = fit_month(features, config, "2025-02")
    assert not january["fitted"] and january["stats_version"] == "unfitted"
    assert "0 warm l3/features_m5 bars in 2024-01-01..2024-12-31, 600 needed (600 more)" in january["reason"]
    assert (
        february["fitted"]
        and february["train_rows"] == len(cal.trading_days(dt.date(2025, 1, 2), dt.date(2025, 1, 31))) * 60
    )

    out = build_observations(features, config, {"2025-01": january, "2025-02": february})
    jan = out["time"] < month_start("2025-02")
    assert not out.loc[jan, "warm"].any() and out.loc[~jan, "warm"].all()
    assert out.loc[jan, "cold_reason"].str.startswith("normalization for 2025-01 not fitted: 0 warm").all()
    assert out.loc[~jan, "cold_reason"].isna().all()
    assert (out.loc[jan, config.columns].to_numpy() == 0).all()
    assert (out["obs_version"] == obs_version(config)).all()  # one version for every month: a model may span them
    assert set(out.loc[jan, "stats_version"]) == {"unfitted"} and set(out.loc[~jan, "stats_version"]) == {
        february["stats_version"]
    }

    # a month with no stored statistics at all: built, not warm, the command named
    missing = build_observations(features, config, {"2025-02": february})
    assert (
        missing.loc[missing["time"] < month_start("2025-02"), "cold_reason"]
        .str.contains("2025-01 is not materialized")
        .all()
    )


def test_an_old_homes_single_statistics_object_is_named_not_read(tmp_path):
    from usdcop_assets.observation.normalization import old_statistics_note, read_month_stats
    from usdcop_assets.storage.lake.session_table import write_object
    from usdcop_assets.storage.lake.store import LocalObjectStore

    store = LocalObjectStore(tmp_path / "lake")
    assert old_statistics_note(store) is None
    write_object(
        store, "l4/observation_stats", pd.DataFrame({"feature": ["ret_1"], "mean": [0.0], "version": ["obs-v1-old"]})
    )
    assert read_month_stats(store, ["2025-03"]) == {}
    note = old_statistics_note(store)
    assert "l4/observation_stats/data.parquet is the single statistics object of an older release" in note
    assert note.endswith("run `usdcop backfill` over the month (or the observation_stats job for it)")


def test_the_declared_rule_uses_its_window_for_the_months_after_it_and_refuses_the_others(tmp_path):
    config = _config(tmp_path, rule="declared", train_start="2024-02-01", train_end="2024-06-28")
    assert config.rule == "declared" and config.rule_text() == "declared window 2024-02-01..2024-06-28"
    features = _features(config, dt.date(2024, 1, 2), dt.date(2024, 12, 31))
    july, november = fit_month(features, config, "2024-07"), fit_month(features, config, "2024-11")
    assert july["fitted"] and july["stats_version"] == november["stats_version"]  # the same window, the same statistics
    assert (july["window_start"], july["window_end"]) == ("2024-02-01", "2024-06-28")
    june = fit_month(features, config, "2024-06")
    assert not june["fitted"] and "does not end before 2024-06 starts (look-ahead)" in june["reason"]

    # USDCOP_OBS_TRAIN_WINDOW stays an optional override of the declared window (recorded in the config hash)
    trailing = _config(tmp_path)
    overridden = load_config(
        tmp_path / "obs.json", Settings.from_env({"USDCOP_OBS_TRAIN_WINDOW": "2024-01-02..2024-03-29"})
    )
    assert overridden.rule == "declared" and str(overridden.train_end) == "2024-03-29"
    assert obs_version(overridden) != obs_version(trailing)
    with pytest.raises(ValueError, match="normalization.rule 'sometimes' is not one of"):
        _config(tmp_path, rule="sometimes")


def test_backfill_on_a_fresh_home_needs_no_window_and_warms_up_in_february(usdcop_env, monkeypatch):
    from usdcop_assets.cli import main
    from usdcop_assets.defs.resources import LakeResource

    monkeypatch.delenv("USDCOP_OBS_TRAIN_WINDOW", raising=False)
    monkeypatch.delenv("USDCOP_OBS_CONFIG", raising=False)
    result = CliRunner().invoke(
        main, ["backfill", "--start", "2025-01-02", "--end", "2025-04-30"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "observation_stats 2025-01 .. 2025-04" in result.output

    lake = LakeResource(url=str(usdcop_env / "lake"))
    stats = stats_from_frame(lake.table("l4/observation_stats").read())
    assert sorted(stats) == ["2025-01", "2025-02", "2025-03", "2025-04"]
    assert not stats["2025-01"]["fitted"] and all(stats[m]["fitted"] for m in ("2025-02", "2025-03", "2025-04"))
    assert stats["2025-02"]["window_end"] == "2025-01-31"
    obs = lake.table("l4/observations_m5").read()
    month = obs["time"].dt.tz_convert(cal.TZ).dt.strftime("%Y-%m")
    assert not obs.loc[month == "2025-01", "warm"].any()
    assert obs.loc[month == "2025-01", "cold_reason"].str.startswith("normalization for 2025-01 not fitted").all()
    assert obs.loc[month >= "2025-02", "warm"].all()
    assert obs["obs_version"].nunique() == 1
    assert obs.groupby(month)["stats_version"].nunique().to_dict() == {
        "2025-01": 1,
        "2025-02": 1,
        "2025-03": 1,
        "2025-04": 1,
    }
    actions = lake.table("l5/actions_m5").read()
    assert (
        len(actions) == len(obs) and actions["fallback"].notna().all()
    )  # no model trained: every bar flat, with the reason


def test_the_new_months_statistics_are_fitted_on_its_first_day_by_a_running_schedule():
    import dagster as dg

    from usdcop_assets_tests.defs_helpers import current_defs

    defs = current_defs()
    schedule = defs.resolve_schedule_def("observation_stats_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING and schedule.execution_timezone == cal.TZ_NAME
    at = dt.datetime(2026, 12, 1, 0, 5, tzinfo=cal.TZ)
    [request] = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=at)).run_requests
    assert request.partition_key == "2026-12" and request.job_name == "observation_stats"
    # a session reads the statistics of its own month; a month reads the sessions of the 12 before it
    graph = defs.resolve_asset_graph()
    obs = graph.get(dg.AssetKey(["l4", "observations_m5"]))
    stats_key, l3 = dg.AssetKey(["l4", "observation_stats"]), dg.AssetKey(["l3", "features_m5"])
    assert stats_key in obs.parent_keys
    mapping = graph.get(stats_key).partition_mappings[l3]
    assert (mapping.start_offset, mapping.end_offset) == (-12, -1)
