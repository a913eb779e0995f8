"""Market-hour schedules, built from the partitioned jobs so they inherit the calendar.

``build_schedule_from_partitioned_job`` takes the partitions' cron and skips ticks whose window
start is excluded, so weekends (no tick), 13:xx ticks and Colombian holidays (excluded windows)
request nothing, with no calendar logic here:

- ``bar_close_schedule``: a minute after each bar closes (08:06 .. 12:56, then 13:01), today's session
  partition of ``session_chain`` again: the session grows by the bar that just closed (L0 asks the
  source only for closed bars). The realtime *sensor* waits for the vendor to publish the bar; this
  schedule is for sources whose bars exist at the close (synthetic, replays). Run one or the other.
- ``ppo_retrain_schedule``: 01:00 Bogota on the 1st of each month, the new month's ``l5/ppo_model`` fold,
  trained on the sessions before it (so the month's first session already has its model).
- ``observation_stats_schedule``: 00:05 Bogota on the 1st of each month, the new month's
  ``l4/observation_stats`` (fitted on the months before it), so today's sessions, batch or live, find
  their statistics. RUNNING by default: it only reads the lake, and without it a new month's bars are
  stored not warm and decided flat.
- ``session_chain_schedule`` (13:10 Bogota): the session layers of the session that just closed, with
  their data checks, after its last bar's run had time to land (its own cron: Dagster cannot move the
  minute of the session partitions' custom cron).

The others start STOPPED, like the sensors: turn them on in the UI (Automation) for a live deployment.
"""

import dagster as dg
import pandas as pd

from usdcop_assets.core import calendar as cal
from usdcop_assets.defs.automation.jobs import MODEL_JOB, SESSION_JOB, STATS_JOB

STOPPED = dg.DefaultScheduleStatus.STOPPED


def session_close_schedule(job, name: str, minute: int, description: str) -> dg.ScheduleDefinition:
    """At 13:<minute> Bogota on weekdays, the session that just closed; nothing on holidays.

    Dagster cannot shift the minute of a custom partition cron (``0 8,13``), so this schedule keeps
    its own cron and asks the session partitions whether today is a partition (the calendar decides).
    """

    @dg.schedule(
        name=name,
        cron_schedule=f"{minute} 13 * * 1-5",
        execution_timezone=cal.TZ_NAME,
        job=job,
        default_status=STOPPED,
        description=description,
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        now = pd.Timestamp(context.scheduled_execution_time).tz_convert(cal.TZ)
        day = now.date()
        if not cal.is_trading_day(day):
            return dg.SkipReason(f"{day.isoformat()} is not a trading day (holiday)")
        if now < cal.session_end(day):  # a manual tick before the close: the session is not over
            return dg.SkipReason(f"the {day.isoformat()} session has not closed yet")
        key = cal.session_key(day)
        return dg.RunRequest(run_key=key, partition_key=key)

    return _schedule


def bar_close_schedule(job) -> dg.ScheduleDefinition:
    """A minute after each bar's close, today's session partition (its run key: the bar that closed)."""

    @dg.schedule(
        name="bar_close_schedule",
        # a minute past each close: 08:06..08:56, 09:01..12:56, 13:01 (60 ticks, one per bar)
        cron_schedule=["6-59/5 8 * * 1-5", "1-59/5 9-12 * * 1-5", "1 13 * * 1-5"],
        execution_timezone=cal.TZ_NAME,
        job=job,
        default_status=STOPPED,
        description="A minute after each bar closes during Bogota sessions (08:06-13:01), today's session again; "
        "holidays skipped.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        now = pd.Timestamp(context.scheduled_execution_time).tz_convert("UTC")
        bar = cal.last_closed_bar(now)
        day = now.tz_convert(cal.TZ).date()
        if bar is None or bar.tz_convert(cal.TZ).date() != day:
            return dg.SkipReason(f"{day.isoformat()} has no closed bar of its own (holiday, or before 08:05)")
        return dg.RunRequest(
            run_key=cal.bar_key(bar), partition_key=cal.session_key(day), tags={"usdcop/bar": cal.bar_key(bar)}
        )

    return _schedule


def build_schedules(jobs: dict) -> list:
    return [
        bar_close_schedule(jobs[SESSION_JOB]),
        dg.build_schedule_from_partitioned_job(
            jobs[MODEL_JOB],
            name="ppo_retrain_schedule",
            hour_of_day=1,
            default_status=STOPPED,
            description="Monthly walk-forward retrain: on the 1st at 01:00 Bogota, the new month's fold of "
            "l5/ppo_model.",
        ),
        dg.build_schedule_from_partitioned_job(
            jobs[STATS_JOB],
            name="observation_stats_schedule",
            hour_of_day=0,
            minute_of_hour=5,
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description="Monthly: on the 1st at 00:05 Bogota, the new month's l4/observation_stats (fitted on the "
            "months before it).",
        ),
        session_close_schedule(
            jobs[SESSION_JOB],
            "session_chain_schedule",
            10,
            "Every layer of the session that closed at 13:00, once more at 13:10 Bogota (late bars, final rows).",
        ),
    ]
