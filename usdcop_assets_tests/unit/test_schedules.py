"""Market-hour schedules evaluated tick by tick with build_schedule_context: a normal day, 08:00, 13:00,
a Colombian holiday and a weekend."""

import dagster as dg
import pandas as pd
import pytest

from usdcop_assets.core.settings import Settings
from usdcop_assets.defs.definitions import build_defs

TUESDAY = "2025-03-04"
HOLIDAY = "2025-03-24"  # San José (moved to Monday)
SATURDAY = "2025-03-08"


@pytest.fixture(scope="module")
def defs():
    definitions = build_defs(Settings.from_env())
    definitions.get_repository_def()  # resolved once, outside any instance
    return definitions


def _evaluate(defs, name: str, local: str):
    schedule = defs.get_schedule_def(name)
    when = pd.Timestamp(local, tz="America/Bogota").to_pydatetime()
    # No instance: these schedules only read the calendar. (An instance_for_test here leaves Dagster's
    # global defs-state storage pointing at a closed instance, which breaks later Definitions loads.)
    context = dg.build_schedule_context(scheduled_execution_time=when, repository_def=defs.get_repository_def())
    return schedule.evaluate_tick(context)


def _tick(defs, name: str, local: str):
    data = _evaluate(defs, name, local)
    return [r.partition_key for r in data.run_requests or []], data.skip_message


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        (f"{TUESDAY} 10:36", ("2025-03-04", "2025-03-04-10:30")),  # the bar that just closed, in today's session
        (f"{TUESDAY} 08:06", ("2025-03-04", "2025-03-04-08:00")),  # the session's first bar
        (f"{TUESDAY} 13:01", ("2025-03-04", "2025-03-04-12:55")),  # the last bar closes at 13:00, same day
        (f"{TUESDAY} 08:01", None),  # no bar of today has closed yet (the last closed one is Monday's)
        (f"{HOLIDAY} 10:36", None),
        (f"{SATURDAY} 10:36", None),
    ],
)
def test_the_bar_close_schedule_requests_todays_session_once_per_closed_bar(defs, local, expected):
    data = _evaluate(defs, "bar_close_schedule", local)
    got = [(r.partition_key, r.run_key) for r in data.run_requests or []]
    assert got == ([expected] if expected else [])
    assert bool(data.skip_message) == (not expected)
    if expected:
        assert data.run_requests[0].tags["usdcop/bar"] == expected[1]


def test_the_bar_close_schedule_ticks_a_minute_after_each_of_the_60_closes(defs):
    from dagster._utils.schedules import schedule_execution_time_iterator  # the daemon's own tick times

    schedule = defs.get_schedule_def("bar_close_schedule")
    assert schedule.execution_timezone == "America/Bogota" and schedule.job_name == "session_chain"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    start = pd.Timestamp(f"{TUESDAY} 00:00", tz="America/Bogota")
    ticks = schedule_execution_time_iterator(start.timestamp(), schedule.cron_schedule, schedule.execution_timezone)
    day = []
    for tick in ticks:
        if tick.date().isoformat() != TUESDAY:
            break
        day.append(tick)
    # one tick a minute after each close, each requesting a different bar of today's session
    assert len(day) == 60 and day[0].strftime("%H:%M") == "08:06" and day[-1].strftime("%H:%M") == "13:01"
    requests = [_evaluate(defs, "bar_close_schedule", t.strftime("%Y-%m-%d %H:%M")).run_requests[0] for t in day]
    assert {r.partition_key for r in requests} == {TUESDAY}
    assert [r.run_key for r in requests] == [
        f"{TUESDAY}-{h:02d}:{m:02d}" for h in range(8, 13) for m in range(0, 60, 5)
    ]


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
    assert _tick(defs, "ppo_retrain_schedule", "2025-04-01 01:00")[0] == [
        "2025-04"
    ]  # trained on the sessions before April
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
