"""Freshness checks: one per watched asset, deadlines from the Bogota calendar, evaluated through Dagster
at controlled instants (``dagster._core.test_utils.freeze_time``), and the sensor that evaluates them."""

import datetime as dt

import dagster as dg
import pytest
from dagster._core.test_utils import freeze_time

from usdcop_assets import market_calendar as cal
from usdcop_assets.freshness import FRESHNESS_KEYS, FRESHNESS_SENSOR_NAME, M5_DEADLINE_CRON, SESSION_DEADLINE_CRON, build_freshness, check_keys
from usdcop_assets.partitions import bar_partitions, session_partitions

L0 = dg.AssetKey(["l0", "ohlcv_m5"])
BACKTEST = dg.AssetKey(["l6", "backtest_session"])
BAR = "2025-03-07-10:30"  # a Friday; 2025-03-24 (Monday) is a Colombian holiday


def _bogota(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=cal.TZ)


@pytest.fixture
def instance(usdcop_env):
    with dg.instance_for_test(temp_dir=str(usdcop_env / "dagster_home")) as inst:
        yield inst


@pytest.fixture
def l0_platform(usdcop_env, instance):
    """The real ``l0/ohlcv_m5`` (synthetic source), its freshness check, and the lake IO manager."""
    from usdcop_assets.assets.raw import l0_ohlcv_m5
    from usdcop_assets.io_managers import LakeIOManager
    from usdcop_assets.resources import store_resources

    lake, _ = store_resources()
    checks, _ = build_freshness([l0_ohlcv_m5], keys=[L0])
    return {"asset": l0_ohlcv_m5, "checks": checks, "resources": {"lake_io_manager": LakeIOManager(lake=lake)}, "instance": instance}


def _evaluate(assets, checks, instance, resources=None) -> dict[str, dg.AssetCheckEvaluation]:
    result = dg.materialize([*assets, *checks], selection=dg.AssetSelection.checks(*checks), instance=instance, resources=resources)
    assert result.success
    return {e.asset_check_key.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()}


def test_one_check_per_watched_asset_with_the_calendar_deadlines():
    from usdcop_assets.definitions import ASSETS, FRESHNESS_CHECKS, FRESHNESS_SENSOR

    keys = check_keys(FRESHNESS_CHECKS)
    assert sorted(k.asset_key for k in keys) == sorted(FRESHNESS_KEYS)
    assert {k.name for k in keys} == {"freshness_check"}
    partitions_of = {key: a.partitions_def for a in ASSETS for key in a.keys}
    expected = {bar_partitions: M5_DEADLINE_CRON, session_partitions: SESSION_DEADLINE_CRON}
    cron_of = {}
    for check in FRESHNESS_CHECKS:
        for spec in check.check_specs:
            params = spec.metadata["dagster/freshness_params"].value
            assert params["timezone"] == "America/Bogota"
            cron_of[spec.asset_key.to_user_string()] = params["deadline_cron"]
            assert params["deadline_cron"] == expected[partitions_of[spec.asset_key]]
    for key in ("l0/ohlcv_m5", "l1/ohlcv_m5", "l2/indicators_m5", "l3/features_m5", "l4/observations_m5"):
        assert cron_of[key] == M5_DEADLINE_CRON == "4-59/5 8-13 * * 1-5"
    for key in ("l4/episodes_session", "l6/backtest_session"):
        assert cron_of[key] == SESSION_DEADLINE_CRON == "30 13 * * 1-5"

    # The sensor targets exactly these checks, and starts stopped.
    assert FRESHNESS_SENSOR.name == FRESHNESS_SENSOR_NAME
    assert FRESHNESS_SENSOR.default_status == dg.DefaultSensorStatus.STOPPED
    from usdcop_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    assert FRESHNESS_SENSOR.asset_selection.resolve_checks(graph) == set(keys)


def test_no_job_runs_the_freshness_checks():
    """Only the implicit asset job (through which the sensor's run requests go) holds them."""
    from dagster._core.definitions.dependency import NodeHandle

    from usdcop_assets.definitions import FRESHNESS_CHECKS, defs

    keys = set(check_keys(FRESHNESS_CHECKS))
    seen = {}
    for job in defs.resolve_all_job_defs():
        executed = set()
        for node in job.graph.node_dict:
            assets_def = job.asset_layer.get_assets_def_for_node(NodeHandle(node, None))
            executed |= set(assets_def.check_keys) if assets_def else set()
        seen[job.name] = executed
        if not job.name.startswith("__"):
            assert not executed & keys, job.name
    assert {k.name for k in seen["session_chain"]} >= {"conservation", "lake_matches_warehouse"}  # the data checks run with the layers


def test_builder_refuses_an_asset_it_cannot_give_a_deadline():
    @dg.asset(key=["l9", "daily"], partitions_def=dg.DailyPartitionsDefinition("2025-01-01"))
    def daily():
        return None

    with pytest.raises(ValueError, match="l9/daily neither"):
        build_freshness([daily], keys=[daily.key])
    with pytest.raises(ValueError, match="no asset l0/ohlcv_m5"):
        build_freshness([daily], keys=[L0])


def test_bar_check_passes_once_the_bar_is_materialized_and_fails_when_the_next_is_late(l0_platform):
    p = l0_platform
    asset, checks, instance, resources = p["asset"], p["checks"], p["instance"], p["resources"]

    # 10:39: the last deadline tick is 10:39, the last window closed by then is [10:30, 10:35).
    with freeze_time(_bogota(2025, 3, 7, 10, 39, 30)):
        before = _evaluate([asset], checks, instance, resources)["l0/ohlcv_m5"]
    assert not before.passed and BAR in before.description

    assert dg.materialize([asset], partition_key=BAR, instance=instance, resources=resources).success
    with freeze_time(_bogota(2025, 3, 7, 10, 39, 30)):
        fresh = _evaluate([asset], checks, instance, resources)["l0/ohlcv_m5"]
    assert fresh.passed and BAR in fresh.description
    # fresh until the next tick, 10:44 Bogota: when the 10:35 bar becomes due
    assert fresh.metadata["dagster/fresh_until_timestamp"].value == _bogota(2025, 3, 7, 10, 44).timestamp()

    # Before the grace period ends the 10:30 bar is not due yet (10:38 -> due bar 10:25, never stored).
    with freeze_time(_bogota(2025, 3, 7, 10, 38)):
        early = _evaluate([asset], checks, instance, resources)["l0/ohlcv_m5"]
    assert not early.passed and "2025-03-07-10:25" in early.description
    # 10:44: the 10:35 bar is due and missing.
    with freeze_time(_bogota(2025, 3, 7, 10, 44, 1)):
        late = _evaluate([asset], checks, instance, resources)["l0/ohlcv_m5"]
    assert not late.passed and "2025-03-07-10:35" in late.description
    assert "dagster/last_updated_timestamp" in late.metadata  # the asset was updated, just not that bar


def test_bar_check_is_silent_at_night_weekends_and_holidays(l0_platform):
    """Outside session hours the expected bar stays the last session's 12:55 (no deadline tick fires)."""
    p = l0_platform
    asset, checks, instance, resources = p["asset"], p["checks"], p["instance"], p["resources"]
    assert dg.materialize([asset], partition_key="2025-03-21-12:55", instance=instance, resources=resources).success
    for now in (
        _bogota(2025, 3, 21, 13, 4, 30),  # Friday, 4 minutes after the close
        _bogota(2025, 3, 21, 23, 0),  # Friday night
        _bogota(2025, 3, 23, 12, 0),  # Sunday
        _bogota(2025, 3, 24, 10, 0),  # Monday 2025-03-24: San José, a holiday -> still Friday's last bar
        _bogota(2025, 3, 25, 8, 3),  # Tuesday before its first bar is due
    ):
        with freeze_time(now):
            ev = _evaluate([asset], checks, instance, resources)["l0/ohlcv_m5"]
        assert ev.passed and "2025-03-21-12:55" in ev.description, (now, ev.description)
    with freeze_time(_bogota(2025, 3, 25, 8, 9)):  # Tuesday 08:09: its 08:00 bar is due
        ev = _evaluate([asset], checks, instance, resources)["l0/ohlcv_m5"]
    assert not ev.passed and "2025-03-25-08:00" in ev.description


def test_session_check_expects_the_session_by_13_30(instance):
    @dg.asset(key=BACKTEST, partitions_def=session_partitions)
    def backtest():
        return dg.MaterializeResult()

    checks, _ = build_freshness([backtest], keys=[BACKTEST])
    with freeze_time(_bogota(2025, 3, 7, 13, 29)):  # not due yet: Thursday's is expected
        ev = _evaluate([backtest], checks, instance)["l6/backtest_session"]
    assert not ev.passed and "2025-03-06" in ev.description
    assert dg.materialize([backtest], partition_key="2025-03-07", instance=instance).success
    for now in (_bogota(2025, 3, 7, 13, 31), _bogota(2025, 3, 9, 9, 0), _bogota(2025, 3, 10, 13, 29)):
        with freeze_time(now):
            ev = _evaluate([backtest], checks, instance)["l6/backtest_session"]
        assert ev.passed and "2025-03-07" in ev.description, now
    with freeze_time(_bogota(2025, 3, 10, 13, 30, 5)):
        ev = _evaluate([backtest], checks, instance)["l6/backtest_session"]
    assert not ev.passed and "2025-03-10" in ev.description


def test_sensor_requests_the_checks_never_evaluated(instance):
    @dg.asset(key=BACKTEST, partitions_def=session_partitions)
    def backtest():
        return dg.MaterializeResult()

    checks, sensor = build_freshness([backtest], keys=[BACKTEST])
    defs = dg.Definitions(assets=[backtest], asset_checks=checks, sensors=[sensor])
    with dg.build_sensor_context(instance=instance, definitions=defs) as ctx:
        result = sensor.evaluate_tick(ctx)
    (request,) = result.run_requests
    assert set(request.asset_check_keys) == set(check_keys(checks))
    assert request.tags.get("usdcop/trigger") == "freshness"
