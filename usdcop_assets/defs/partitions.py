"""Dagster partitions built from the market calendar (the calendar decides; this module only wires).

``build_partitions(history_start, today)`` builds the four definitions of a code location (``Partitions``);
nothing here reads the environment or the clock (``build_defs`` passes both in).

- ``session``: one partition per Bogota session, window [08:00, 13:00) = exactly its 60
  bars; every persisted bar layer (L0..L6) uses it. The cron ``0 8,13`` with the 13:00 ticks excluded
  makes each window end at 13:00 the same day; holidays are excluded as their 08:00 instants. Why one
  key per session and not per bar: docs/decisions/0001-session-partitions.md.
- ``end_offset=1``: today's session is a partition while it runs, so mid-session runs resolve; Dagster
  1.13 then also lists the next session from the previous close on: docs/decisions/0009-open-session-partition.md.
- Look-backs are session offsets (``TimeWindowPartitionMapping(start_offset=-n)``): they jump nights,
  weekends and holidays.
- ``month``: calendar months (``YYYY-MM``, Bogota), from the history's first month, the
  current month included (``end_offset=1``): the point-in-time observation statistics
  (``l4/observation_stats``), one set per month.
- ``macro``: Bogota calendar days for daily macro data, starting ``MACRO_WARMUP_DAYS``
  before the bar history so a one-year z-score window is warm at the first bar.
- ``fold``: calendar months of the walk-forward folds (``l5/ppo_model``), from ``FOLD_OFFSET_MONTHS`` after the
  history's first month, the current month included.
- ``experiment``: the names of the experiment files (``rl/experiments/`` and the user's folder); ``experiment_fold``:
  experiment x fold, the research assets' multi-partition (``l5/experiment_model``, ``l6/experiment_backtest``).
  Adding an experiment is adding a file: the code location lists it at its next load.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import dagster as dg

from usdcop_assets.core import calendar as cal

SESSION_CRON = "0 8,13 * * 1-5"
MACRO_WARMUP_DAYS = 366
FOLD_OFFSET_MONTHS = 3  # the first fold starts this many months after the history start (some history to train on)


def _holiday_weekdays(start: dt.date, end_year: int) -> list[dt.date]:
    return [d for d in cal.colombian_holidays(start.year, end_year) if d.weekday() < 5 and d >= start]


def build_session_partitions(start: dt.date, end_year: int) -> dg.TimeWindowPartitionsDefinition:
    exclusions: list[str | dt.datetime] = ["0 13 * * 1-5"]
    exclusions.extend(
        dt.datetime.combine(d, cal.SESSION_OPEN, tzinfo=cal.TZ) for d in _holiday_weekdays(start, end_year)
    )
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule=SESSION_CRON,
        start=start.strftime(cal.SESSION_KEY_FORMAT),
        fmt=cal.SESSION_KEY_FORMAT,
        timezone=cal.TZ_NAME,
        exclusions=exclusions,
        end_offset=1,
    )


def fold_start_date(start: dt.date, months: int = FOLD_OFFSET_MONTHS) -> dt.date:
    m = start.year * 12 + start.month - 1 + months
    return dt.date(m // 12, m % 12 + 1, 1)


@dataclass(frozen=True)
class Partitions:
    """The partitions definitions of one code location, all from the same history start."""

    session: dg.TimeWindowPartitionsDefinition
    macro: dg.DailyPartitionsDefinition
    month: dg.MonthlyPartitionsDefinition
    fold: dg.MonthlyPartitionsDefinition
    experiment: dg.StaticPartitionsDefinition
    experiment_fold: dg.MultiPartitionsDefinition


EXPERIMENT_DIM, FOLD_DIM = "experiment", "fold"


def build_partitions(history_start: dt.date, today: dt.date, experiments: tuple[str, ...] = ()) -> Partitions:
    """Partitions from ``history_start`` on. ``today`` bounds the holiday list (through next year): the code
    location is rebuilt (new code version) at least once a year. ``experiments``: the experiment names (default:
    the package's files)."""
    if not experiments:
        from usdcop_assets.rl.experiments import list_experiments

        experiments = tuple(row["name"] for row in list_experiments())
    fold = dg.MonthlyPartitionsDefinition(
        start_date=fold_start_date(history_start).strftime("%Y-%m"),
        fmt="%Y-%m",
        timezone=cal.TZ_NAME,
        end_offset=1,
    )
    experiment = dg.StaticPartitionsDefinition(sorted(experiments))
    return Partitions(
        session=build_session_partitions(history_start, today.year + 1),
        macro=dg.DailyPartitionsDefinition(
            start_date=(history_start - dt.timedelta(days=MACRO_WARMUP_DAYS)).isoformat(), timezone=cal.TZ_NAME
        ),
        month=dg.MonthlyPartitionsDefinition(
            start_date=history_start.replace(day=1).strftime("%Y-%m"), fmt="%Y-%m", timezone=cal.TZ_NAME, end_offset=1
        ),
        # end_offset=1: the current month's fold exists from its first day (it is trained on the sessions before it).
        fold=fold,
        experiment=experiment,
        experiment_fold=dg.MultiPartitionsDefinition({EXPERIMENT_DIM: experiment, FOLD_DIM: fold}),
    )


def session_key_range(first: dt.date, last: dt.date) -> dg.PartitionKeyRange:
    days = cal.trading_days(first, last)
    if not days:
        raise cal.CalendarError(f"no trading session between {first} and {last}")
    return dg.PartitionKeyRange(cal.session_key(days[0]), cal.session_key(days[-1]))


def lookback_mapping(sessions: int) -> dg.TimeWindowPartitionMapping:
    """The session and the ``sessions`` trading sessions before it (0: the session alone)."""
    return dg.TimeWindowPartitionMapping(start_offset=-sessions, allow_nonexistent_upstream_partitions=True)
