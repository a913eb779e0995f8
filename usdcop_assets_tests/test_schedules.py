"""Market-hour schedules evaluated tick by tick with build_schedule_context: a normal day, 08:00, 13:00,
a Colombian holiday and a weekend."""

import dagster as dg
import pandas as pd
import pytest

from usdcop_assets.definitions import build_definitions

TUESDAY = "2025-03-04"
HOLIDAY = "2025-03-24"  # San José (moved to Monday)
SATURDAY = "2025-03-08"


@pytest.fixture(scope="module")
def defs():
    definitions = build_definitions()
    definitions.get_repository_def()  # resolved once, outside any instance
    return definitions


def _tick(defs, name: str, local: str):
    schedule = defs.get_schedule_def(name)
    when = pd.Timestamp(local, tz="America/Bogota").to_pydatetime()
    # No instance: these schedules only read the calendar. (An instance_for_test here leaves Dagster's
    # global defs-state storage pointing at a closed instance, which breaks later Definitions loads.)
    context = dg.build_schedule_context(scheduled_execution_time=when, repository_def=defs.get_repository_def())
    data = schedule.evaluate_tick(context)
    return [r.partition_key for r in data.run_requests or []], data.skip_message


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        (f"{TUESDAY} 10:35", ["2025-03-04-10:30"]),  # the bar that just closed
        (f"{TUESDAY} 08:05", ["2025-03-04-08:00"]),  # the session's first bar
        (f"{TUESDAY} 13:00", ["2025-03-04-12:55"]),  # the last bar closes at 13:00, same day
        (f"{TUESDAY} 08:00", []),  # no bar has closed yet
        (f"{TUESDAY} 13:05", []),
        (f"{HOLIDAY} 10:35", []),
        (f"{SATURDAY} 10:35", []),
    ],
)
def test_the_bar_schedule_requests_the_bar_that_just_closed(defs, local, expected):
    keys, skip = _tick(defs, "m5_chain_schedule", local)
    assert keys == expected
    assert bool(skip) == (not expected)


def test_the_bar_schedule_inherits_the_partitions_cron(defs):
    schedule = defs.get_schedule_def("m5_chain_schedule")
    assert schedule.cron_schedule == "*/5 8-13 * * 1-5" and schedule.execution_timezone == "America/Bogota"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED


@pytest.mark.parametrize("name", ["session_chain_schedule"])
def test_session_close_schedules_run_the_closed_session_and_skip_holidays(defs, name):
    minute = defs.get_schedule_def(name).cron_schedule.split()[0]
    assert _tick(defs, name, f"{TUESDAY} 13:{minute}") == (["2025-03-04"], None)
    keys, skip = _tick(defs, name, f"{HOLIDAY} 13:{minute}")
    assert keys == [] and "not a trading day" in skip
    keys, skip = _tick(defs, name, f"{TUESDAY} 08:00")  # a manual tick before the close
    assert keys == [] and "has not closed yet" in skip
    assert defs.get_schedule_def(name).cron_schedule.endswith("13 * * 1-5")  # no weekend tick at all


def test_the_monthly_retrain_requests_the_new_months_fold(defs):
    schedule = defs.get_schedule_def("ppo_retrain_schedule")
    assert schedule.cron_schedule == "0 1 1 * *" and schedule.execution_timezone == "America/Bogota"
    assert _tick(defs, "ppo_retrain_schedule", "2025-04-01 01:00")[0] == ["2025-04"]  # trained on the sessions before April
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
