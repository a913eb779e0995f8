"""Freshness policies: which assets carry which policy, and what Dagster's own freshness evaluation
(``FreshnessDaemon._compute_asset_freshness_state`` -> ``CronFreshnessPolicyEvaluator``) makes of them
at controlled instants (``dagster._core.test_utils.freeze_time``), materializations reported at
controlled instants too."""

import asyncio
import datetime as dt

import dagster as dg
import pytest
from dagster._core.definitions.freshness import CronFreshnessPolicy, FreshnessState
from dagster._core.loader import LoadingContextForTest
from dagster._core.test_utils import freeze_time
from dagster._daemon.freshness import FreshnessDaemon

from usdcop_assets.core import calendar as cal
from usdcop_assets.defs.quality.freshness import (
    BAR_DEADLINE_CRON,
    BAR_KEYS,
    POLICIES,
    SESSION_DEADLINE_CRON,
    SESSION_KEYS,
    latest_deadline,
    with_freshness_policies,
)

L0 = dg.AssetKey(["l0", "ohlcv_m5"])
BACKTEST = dg.AssetKey(["l6", "backtest_session"])
# 2025-03-07 is a Friday; Monday 2025-03-24 is a Colombian holiday (San José).


def _bogota(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=cal.TZ)


@pytest.fixture(scope="module")
def graph():
    from usdcop_assets_tests.defs_helpers import current_defs

    return current_defs().resolve_asset_graph()


@pytest.fixture
def instance(usdcop_env):
    with dg.instance_for_test(temp_dir=str(usdcop_env / "dagster_home")) as inst:
        yield inst


def _materialize(instance, key: dg.AssetKey, partition: str, at: dt.datetime) -> None:
    with freeze_time(at):
        instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=partition))


def _state(instance, graph, key: dg.AssetKey, at: dt.datetime) -> FreshnessState:
    """What the freshness daemon computes for ``key`` at ``at`` (a fresh loading context: no cached records)."""
    with freeze_time(at):
        return asyncio.run(
            FreshnessDaemon()._compute_asset_freshness_state(LoadingContextForTest(instance), graph.get(key))
        )


def test_policies_sit_on_the_bar_and_session_layers_only(graph):
    seen = {}
    for node in graph.asset_nodes:
        policy = node.freshness_policy
        if policy is None:
            continue
        assert isinstance(policy, CronFreshnessPolicy) and policy.timezone == "America/Bogota"
        seen[node.key.to_user_string()] = (policy.deadline_cron, policy.lower_bound_delta)
    bar = (BAR_DEADLINE_CRON, dt.timedelta(minutes=5))
    session = (SESSION_DEADLINE_CRON, dt.timedelta(minutes=30))
    assert BAR_DEADLINE_CRON == "9-59/5 8-12 * * 1-5" and SESSION_DEADLINE_CRON == "30 13 * * 1-5"
    assert seen == {
        "l0/ohlcv_m5": bar,
        "l1/ohlcv_m5": bar,
        "l1/ohlcv_m5_rejects": bar,
        "l2/indicators_m5": bar,
        "l3/features_m5": bar,
        "l4/observations_m5": bar,
        "l5/actions_m5": bar,
        "l4/episodes_session": session,
        "l5/paper_trades": session,
        "l5/paper_positions": session,
        "l6/backtest_session": session,
    }
    assert set(POLICIES) == set(BAR_KEYS) | set(SESSION_KEYS)


def test_the_old_freshness_checks_and_their_sensor_are_gone():
    from usdcop_assets_tests.defs_helpers import current_defs

    defs = current_defs()
    assert "freshness_checks_sensor" not in {s.name for s in defs.sensors}
    checks = {k.name for k in defs.resolve_asset_graph().asset_check_keys}
    assert "freshness_check" not in checks


def test_a_policy_for_an_asset_that_is_not_there_is_refused():
    @dg.asset(key=["l9", "daily"])
    def daily():
        return None

    with pytest.raises(ValueError, match="no asset l0/ohlcv_m5"):
        with_freshness_policies([daily])
    (only,) = with_freshness_policies([daily], policies={daily.key: POLICIES[L0]})
    assert next(iter(only.specs)).freshness_policy == POLICIES[L0]


def test_bar_layer_fresh_within_five_minutes_of_each_bar_close(instance, graph):
    assert _state(instance, graph, L0, _bogota(2025, 3, 7, 10, 39, 30)) == FreshnessState.UNKNOWN  # never materialized
    _materialize(instance, L0, "2025-03-07", _bogota(2025, 3, 7, 10, 35, 40))  # the 10:30 bar, closed 10:35
    # 10:39 tick: a materialization after 10:34 is due -> fresh until the 10:44 tick
    assert _state(instance, graph, L0, _bogota(2025, 3, 7, 10, 39, 30)) == FreshnessState.PASS
    assert _state(instance, graph, L0, _bogota(2025, 3, 7, 10, 43, 59)) == FreshnessState.PASS
    # 10:44 tick: the 10:35 bar (closed 10:40) is due and nothing came after 10:39
    assert _state(instance, graph, L0, _bogota(2025, 3, 7, 10, 44, 1)) == FreshnessState.FAIL
    _materialize(instance, L0, "2025-03-07", _bogota(2025, 3, 7, 10, 45, 10))  # late: fresh again at once
    assert _state(instance, graph, L0, _bogota(2025, 3, 7, 10, 45, 30)) == FreshnessState.PASS


def test_bar_layer_silent_at_night_and_weekends_and_no_false_alarm_before_the_first_bar(instance, graph):
    _materialize(instance, L0, "2025-03-07", _bogota(2025, 3, 7, 12, 55, 30))  # Friday, the 12:50 bar (closed 12:55)
    for now in (
        _bogota(2025, 3, 7, 12, 59, 30),  # the last bar deadline of the day
        _bogota(2025, 3, 7, 13, 30),  # after the close: no tick until Monday 08:09
        _bogota(2025, 3, 7, 23, 0),
        _bogota(2025, 3, 9, 12, 0),  # Sunday
        _bogota(2025, 3, 10, 8, 8),  # Monday before its first bar is due: no 08:04 tick to trip over
    ):
        assert _state(instance, graph, L0, now) == FreshnessState.PASS, now
    assert _state(instance, graph, L0, _bogota(2025, 3, 10, 8, 9, 5)) == FreshnessState.FAIL  # 08:00 bar due at 08:09
    _materialize(instance, L0, "2025-03-10", _bogota(2025, 3, 10, 8, 5, 30))  # (as if it had landed at 08:05:30)
    assert _state(instance, graph, L0, _bogota(2025, 3, 10, 8, 9, 5)) == FreshnessState.PASS


def test_on_a_holiday_the_cron_fails_and_the_deadline_says_it_was_a_holiday(instance, graph):
    """The documented limit: a cron cannot skip the calendar's holidays. The FAIL is there; the alert
    sensor tells it apart by the missed deadline's date (test_alerts)."""
    _materialize(instance, L0, "2025-03-21", _bogota(2025, 3, 21, 12, 56))  # Friday before San José
    assert _state(instance, graph, L0, _bogota(2025, 3, 24, 8, 8)) == FreshnessState.PASS
    holiday = _bogota(2025, 3, 24, 8, 9, 30)
    assert _state(instance, graph, L0, holiday) == FreshnessState.FAIL
    deadline = latest_deadline(POLICIES[L0], holiday)
    assert deadline.astimezone(cal.TZ) == _bogota(2025, 3, 24, 8, 9) and cal.is_holiday(
        deadline.astimezone(cal.TZ).date()
    )
    _materialize(instance, L0, "2025-03-25", _bogota(2025, 3, 25, 8, 5, 20))  # Tuesday's first bar
    assert _state(instance, graph, L0, _bogota(2025, 3, 25, 8, 9, 30)) == FreshnessState.PASS


def test_session_layer_expects_the_closed_session_by_13_30(instance, graph):
    _materialize(
        instance, BACKTEST, "2025-03-07", _bogota(2025, 3, 7, 12, 58)
    )  # during the session: not the whole session
    assert (
        _state(instance, graph, BACKTEST, _bogota(2025, 3, 7, 13, 29)) == FreshnessState.PASS
    )  # Thursday's deadline still rules
    assert _state(instance, graph, BACKTEST, _bogota(2025, 3, 7, 13, 30, 5)) == FreshnessState.FAIL
    _materialize(instance, BACKTEST, "2025-03-07", _bogota(2025, 3, 7, 13, 11))
    for now in (_bogota(2025, 3, 7, 13, 31), _bogota(2025, 3, 9, 9, 0), _bogota(2025, 3, 10, 13, 29)):
        assert _state(instance, graph, BACKTEST, now) == FreshnessState.PASS, now
    assert (
        _state(instance, graph, BACKTEST, _bogota(2025, 3, 10, 13, 30, 5)) == FreshnessState.FAIL
    )  # Monday's session is due


def test_the_freshness_daemon_is_enabled_in_both_instance_configs():
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    for path in (root / "dagster.yaml", root / "docker" / "dagster.yaml"):
        config = yaml.safe_load(path.read_text())
        assert config["freshness"] == {"enabled": True}, path
        assert config["auto_materialize"] == {"enabled": True}, path
