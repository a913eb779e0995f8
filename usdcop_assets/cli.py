"""``usdcop``: the platform from a terminal. Every command goes through Dagster and the configured
instance, so what it materializes shows up in the Dagster UI like any other run."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import click
import pandas as pd
from rich.console import Console

from usdcop_assets.cli_experiment import register as register_experiment_commands
from usdcop_assets.console import Stages, current_log, dagster_logs_to, new_log_path
from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import ConfigError, Settings, environ
from usdcop_assets.sources import require_available, resolve_source

PROJECT_ROOT = Path(__file__).resolve().parents[1]


# Dagster's own process knobs, which it reads from the process environment only (no API or instance setting):
# one planned event per asset for a range run, and materializations stored in batches of 5,000 (dagster.yaml's
# event log storage): docs/decisions/0008-batched-event-log.md. The one thing the CLI writes to os.environ;
# the platform's settings and a run's parameters travel as ``Settings`` and run config.
DAGSTER_PROCESS_KNOBS = {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1", "DAGSTER_EVENT_BATCH_SIZE": "5000"}


def _defs():
    """The code location for the deployment settings as they are now (run parameters go in run config)."""
    from usdcop_assets.defs.definitions import build_defs

    return build_defs(Settings.from_env())


def _partitions():
    from usdcop_assets.defs.partitions import build_partitions

    return build_partitions(_history_start(), dt.date.today())


def _history_start() -> dt.date:
    return Settings.from_env().history.start


def prepare_environment() -> Settings:
    """Resolve settings and make ``DAGSTER_HOME`` exist with an instance config (embedded by default)."""
    settings = Settings.from_env()
    for name, value in DAGSTER_PROCESS_KNOBS.items():
        os.environ.setdefault(name, value)
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    target = settings.dagster_home / "dagster.yaml"
    if not target.exists():
        target.write_text(instance_yaml(settings.dagster_home))
    return settings


# what Dagster's embedded (SQLite) instance creates on its first open
_EMBEDDED_STORAGES = ("history/runs.db", "history/runs/index.db", "schedules/schedules.db")


def init_instance_home(dagster_home: Path) -> None:
    """Write the embedded instance's dagster.yaml if it is missing, and create its storages once, under a lock.

    Dagster's SQLite storages stamp their schema on first open; two processes opening a fresh home at once
    (a daemon and a CLI run) can both stamp it and leave it with two alembic heads, which no later open
    recovers from. Every process of this project that opens or serves the instance (``open_instance``,
    ``usdcop ui``, the test daemons) comes through here first. The lock lives beside the home, not in it."""
    import fcntl

    import dagster as dg

    dagster_home = Path(dagster_home)
    dagster_home.mkdir(parents=True, exist_ok=True)
    target = dagster_home / "dagster.yaml"
    if target.exists() and (
        "postgres" in target.read_text()  # a server-backed instance: no SQLite schema to stamp here
        or all((dagster_home / s).exists() for s in _EMBEDDED_STORAGES)
    ):
        return
    with open(dagster_home.parent / f".{dagster_home.name}.init.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            target.write_text(instance_yaml(dagster_home))
        with dg.DagsterInstance.from_config(str(dagster_home)):
            pass  # the storages exist from here on; a server-backed instance (PostgreSQL) just connects


def open_instance(settings: Settings | None = None):
    """The Dagster instance of the configured ``DAGSTER_HOME`` (opened from its directory: nothing is written to the
    environment)."""
    import dagster as dg

    dagster_home = (settings or Settings.from_env()).dagster_home
    init_instance_home(dagster_home)
    return dg.DagsterInstance.from_config(str(dagster_home))


def instance_yaml(dagster_home: Path) -> str:
    """The project's dagster.yaml with the event log pinned to this instance's directory.

    The batched event log otherwise follows ``$DAGSTER_HOME``; pinning it keeps an instance opened from
    its directory (``DagsterInstance.from_config``) reading its own event log whatever the environment.
    """
    text = (PROJECT_ROOT / "dagster.yaml").read_text()
    marker = "  class: BatchedSqliteEventLogStorage\n"
    runs = (Path(dagster_home).resolve() / "history" / "runs").as_posix()
    return text.replace(marker, marker + f"  config:\n    base_dir: {json.dumps(runs)}\n", 1)


def bar_source_name(sources: dict | None = None) -> str:
    """The bar source a command's runs read: its override (``--source``, an import's file), else the deployment's."""
    return ((sources or {}).get("bar_source") or {}).get("source") or resolve_source()


def require_source(sources: dict | None = None) -> str:
    """The bar source, if this build can read it and its keys are set (else a ConfigError naming the
    variable, before any run would fail in its first step)."""
    source = require_available(bar_source_name(sources))
    if source.split(":", 1)[0] == "twelvedata":
        from usdcop_assets.sources.twelvedata import TwelveDataClient

        TwelveDataClient.from_env()
    return source


class BadArgument(click.ClickException):
    """A refused argument in one line (exit code 2 like click's usage errors, without the usage text)."""

    exit_code = 2


def _date(value: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise BadArgument(f"{name}: {value!r} is not a date (YYYY-MM-DD)") from None


def default_recent_range(now: dt.datetime | None = None, sessions: int = 5) -> tuple[dt.date, dt.date]:
    """The last ``sessions`` complete sessions before ``now``."""
    now = now or dt.datetime.now(dt.UTC)
    last_bar = cal.last_closed_bar(now)
    last = last_bar.tz_convert(cal.TZ).date()
    if last_bar != cal.session_bars(last)[-1]:  # today's session still open: stop at yesterday's
        last = cal.previous_trading_day(last)
    first = last
    for _ in range(sessions - 1):
        first = cal.previous_trading_day(first)
    return first, last


class _OneLineErrors(click.Group):
    """click's usage errors (a missing option, a value out of range, an unknown command) in one line, like every
    other refusal of this CLI, instead of the usage text and a hint; exit code 2 as click's."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            name = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            raise BadArgument(exc.format_message() + name) from None


@click.group(cls=_OneLineErrors)
def main() -> None:
    """USD/COP asset platform. Start with `usdcop run` (the whole main job on synthetic data, a few minutes)."""
    # Dagster's beta/preview notices are about this project's use of Dagster's API, for its developers (the tests
    # and `dagster dev` still show them), not about the user's data: they would bury the command's own lines.
    warnings.filterwarnings("ignore", message=r".* is currently in (beta|preview)")


@main.command()
@click.option("--start", "start_s", help="first session date, YYYY-MM-DD (default: 5 sessions back)")
@click.option("--end", "end_s", help="last session date, YYYY-MM-DD (default: last complete session)")
@click.option("--layers", default="L0,L1,L2,L3,L4,L5,L6", show_default=True, help="comma-separated layers")
@click.option(
    "--runs-in-parallel",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="range runs of USDCOP_BACKFILL_SESSIONS_PER_RUN sessions executed at a time, each in its own process",
)
def backfill(start_s: str | None, end_s: str | None, layers: str, runs_in_parallel: int) -> None:
    """Materialize the selected layers for every session from START to END (range runs of up to
    USDCOP_BACKFILL_SESSIONS_PER_RUN sessions)."""
    try:
        settings = prepare_environment()
        require_source()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    first_default, last_default = default_recent_range()
    first = _date(start_s, "--start") if start_s else first_default
    last = _date(end_s, "--end") if end_s else last_default
    chosen = _layers(layers)
    key_range = available_range(first, last)  # refuse a bad or future range before anything runs
    last = cal.parse_session_key(key_range.end)
    check_home(writes=True)
    ok = True
    from usdcop_assets.defs.partitions import MACRO_WARMUP_DAYS

    macro_first = first - dt.timedelta(days=MACRO_WARMUP_DAYS)
    macro = bool({"L0", "L1"} & set(chosen))
    if macro and "L0" not in chosen and not materialized_days(["l0", "macro_daily"], macro_first, last):
        click.echo(
            f"l1/macro_daily skipped: l0/macro_daily has no day in {macro_first} .. {last} (`usdcop backfill --start "
            f"{first} "
            f"--end {last} --layers L0,L1` or `usdcop import FILE --kind macro` produces it; L3's macro features stay "
            "empty)"
        )
        macro = False
    check_session_upstream(_defs(), chosen, first, last)  # refused before anything runs
    log = new_log_path(settings.home, "backfill")
    # one lease over every date this backfill writes (macro days included): overlapping backfills serialize
    with writer_lease(settings, macro_first if macro else first, last, "usdcop backfill"), dagster_logs_to(log):
        if macro:
            # first the macro days the sessions' features look back over (a one-year z-score window)
            ok = materialize_days(macro_first, last, launched_by="usdcop backfill", layers=chosen)
        ok = ok and materialize_sessions(
            settings, first, last, chosen, launched_by="usdcop backfill", runs_in_parallel=runs_in_parallel
        )
    click.echo(f"Dagster's logs: {log}")
    sys.exit(0 if ok else 1)


def materialized_days(key_path: list[str], first: dt.date, last: dt.date) -> list[str]:
    """The daily partitions of an asset materialized in ``first..last`` (per the Dagster instance)."""
    import dagster as dg

    with open_instance() as instance:
        done = instance.get_materialized_partitions(dg.AssetKey(key_path))
    return sorted(k for k in done if first.isoformat() <= k <= last.isoformat())


def session_assets(defs, chosen: list[str]) -> set:
    """The session-chain assets of the ``chosen`` layers."""
    from usdcop_assets.defs.automation.jobs import SESSION_JOB, layer_selection

    job = defs.resolve_job_def(SESSION_JOB)
    return layer_selection(chosen).resolve(defs.resolve_asset_graph()) & set(job.asset_layer.selected_asset_keys)


def check_session_upstream(defs, chosen: list[str], first: dt.date, last: dt.date) -> None:
    """``require_upstream`` for the session assets of ``chosen`` (the observation statistics count as produced when
    L4 observations are: the staged run fits them)."""
    from usdcop_assets.defs.automation.jobs import STATS_JOB
    from usdcop_assets.defs.keys import OBSERVATIONS

    wanted = session_assets(defs, chosen)
    produced = set(defs.resolve_job_def(STATS_JOB).asset_layer.selected_asset_keys) if OBSERVATIONS in wanted else set()
    require_upstream(defs, wanted, first, last, produced)


def _layers(text: str) -> list[str]:
    from usdcop_assets.defs.automation.jobs import parse_layers

    try:
        return parse_layers(text)
    except ValueError as exc:
        raise BadArgument(f"--layers: {exc}") from None


def session_range(first: dt.date, last: dt.date):
    """The session partition range ``first..last``, or a usage error naming what is wrong."""
    from usdcop_assets.defs.partitions import session_key_range

    if last < first:
        raise BadArgument(f"--end {last} is before --start {first}")
    if first < _history_start():
        raise BadArgument(f"--start {first} is before the partitions start {_history_start()} (USDCOP_HISTORY_START)")
    try:
        return session_key_range(first, last)
    except cal.CalendarError as exc:
        raise BadArgument(str(exc)) from None


def available_range(first: dt.date, last: dt.date, now=None):
    """``first..last`` clipped to the sessions that have begun by ``now``; refused if none has."""
    from usdcop_assets import clock

    key_range = session_range(first, last)
    last_bar = cal.last_closed_bar(clock.utc_now() if now is None else now)
    newest = last_bar.tz_convert(cal.TZ).date() if last_bar is not None else None
    if newest is None or cal.parse_session_key(key_range.start) > newest:
        oldest = cal.trading_days(_history_start(), _history_start() + dt.timedelta(days=14))[0]
        raise BadArgument(
            f"{first} .. {last} is in the future: the sessions are {oldest} .. {newest} "
            f"({newest} is the newest with a closed bar); pick a --start on or before it"
        )
    if cal.parse_session_key(key_range.end) > newest:
        state = (
            "complete" if last_bar == cal.session_bars(newest)[-1] else f"partial, bars up to {cal.bar_key(last_bar)}"
        )
        click.echo(f"sessions after {newest} have no closed bar yet: the range stops at {newest} ({state})")
        key_range = session_range(cal.parse_session_key(key_range.start), newest)
    return key_range


def require_upstream(defs, keys: set, first: dt.date, last: dt.date, produced: set = frozenset()) -> None:
    """Refuse (one line naming the asset and the command that produces it) a run of ``keys`` over ``first..last`` when
    a parent outside ``keys | produced`` was never materialized there: a session parent for every session of the range,
    a daily macro parent of a macro asset for at least one day of the year before. Folds (a session without a model is
    decided
    flat, by design) and unpartitioned parents are not required."""

    from usdcop_assets.defs.partitions import MACRO_WARMUP_DAYS

    parts = _partitions()

    graph = defs.resolve_asset_graph()
    parents = {p for k in keys for p in graph.get(k).parent_keys} - set(keys) - set(produced)
    sessions = [cal.session_key(d) for d in cal.trading_days(first, last)]
    with open_instance() as instance:
        for parent in sorted(parents, key=lambda k: k.to_user_string()):
            part = graph.get(parent).partitions_def
            name = parent.to_user_string()
            layers = ",".join(f"L{i}" for i in range(int(parent.path[0][1:]) + 1))
            if part == parts.session:
                done = instance.get_materialized_partitions(parent)
                missing = [k for k in sessions if k not in done]
                if missing:
                    which = (
                        "any session"
                        if len(missing) == len(sessions)
                        else f"{len(missing)} of the {len(sessions)} sessions (first {missing[0]})"
                    )
                    raise click.ClickException(
                        f"{name} is not materialized for {which} of {first} .. {last}: "
                        f"`usdcop backfill --start {first} --end {last} --layers {layers}` produces it"
                    )
            elif part == parts.macro and any(
                graph.get(c).partitions_def == parts.macro for c in keys & graph.get(parent).child_keys
            ):
                # (a session asset runs without macro days by design: L3's macro features are then empty)
                lo = (first - dt.timedelta(days=MACRO_WARMUP_DAYS)).isoformat()
                if not any(lo <= k <= last.isoformat() for k in instance.get_materialized_partitions(parent)):
                    raise click.ClickException(
                        f"{name} has no materialized day in {lo} .. {last}: `usdcop backfill --start {first} "
                        f"--end {last} --layers {layers}` (or `usdcop import FILE --kind macro`) produces it"
                    )


def materialize_sessions(
    settings: Settings,
    first: dt.date,
    last: dt.date,
    chosen: list[str],
    launched_by: str,
    tags: dict | None = None,
    runs_in_parallel: int = 1,
    evaluations: list | None = None,
    sources: dict | None = None,
) -> bool:
    """``_materialize_sessions`` under a lease on the sessions (lake/lease.py): an overlapping backfill, import
    or realtime run on the same lake, from any host, finishes first; this one says so and waits for it."""
    key_range = session_range(first, last)
    with writer_lease(settings, key_range.start, key_range.end, launched_by):
        return _materialize_sessions(
            settings, first, last, chosen, launched_by, tags, runs_in_parallel, evaluations, sources
        )


@contextlib.contextmanager
def writer_lease(settings: Settings, first, last, purpose: str):
    """A lease on the lake's dates ``first..last`` for this command (lake/lease.py); reentrant in one process.
    Waits (saying for whom) up to USDCOP_LEASE_WAIT_SECONDS, then stops with the holder named."""
    from usdcop_assets.storage.lake.lease import LeaseBusy, LeaseLost, session_lease
    from usdcop_assets.storage.lake.store import open_store

    try:
        with session_lease(open_store(settings.lake), first, last, purpose, on_wait=click.echo) as lease:
            yield lease
            lease.check()
    except (LeaseBusy, LeaseLost) as exc:
        raise click.ClickException(str(exc)) from None


def _materialize_sessions(
    settings: Settings,
    first: dt.date,
    last: dt.date,
    chosen: list[str],
    launched_by: str,
    tags: dict | None = None,
    runs_in_parallel: int = 1,
    evaluations: list | None = None,
    sources: dict | None = None,
) -> bool:
    """The session layers over ``first..last``, each run with the data checks of its assets; one line per check;
    False if a run failed or an ERROR check did. The check evaluations are appended to ``evaluations`` if given.

    Staged around the observation statistics: L0-L3 over the whole range, ``observation_stats`` for the
    months covering it (one run; each month fitted on the L3 bars before it), then L4-L6. Each stage runs as range runs
    of at most ``USDCOP_BACKFILL_SESSIONS_PER_RUN`` sessions (the
    session assets' backfill policy), ``runs_in_parallel`` of them at a time in worker processes.
    """
    import dagster as dg

    from usdcop_assets.defs.automation.jobs import SESSION_JOB, STATS_JOB
    from usdcop_assets.defs.keys import OBSERVATIONS

    key_range = available_range(first, last)
    defs = _defs()  # from the current environment, not whatever was imported first
    job = defs.resolve_job_def(SESSION_JOB)
    graph = defs.resolve_asset_graph()
    wanted = session_assets(defs, chosen)
    missing_layers = [layer for layer in chosen if not any(k.path[0] == layer.lower() for k in wanted)]
    if missing_layers:
        click.echo(f"layers without session assets (skipped): {','.join(missing_layers)}")
    if not wanted:
        raise click.ClickException("none of the selected layers has session assets")
    check_session_upstream(defs, chosen, cal.parse_session_key(key_range.start), cal.parse_session_key(key_range.end))
    try:
        per_run = Settings.from_env().history.backfill_sessions_per_run
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    keys = job.partitions_def.get_partition_keys_in_range(key_range)
    chunks = [
        dg.PartitionKeyRange(keys[i], keys[min(i + per_run, len(keys)) - 1]) for i in range(0, len(keys), per_run)
    ]
    parallel = max(1, min(runs_in_parallel, len(chunks)))
    click.echo(
        f"{launched_by.split()[-1]} {key_range.start} .. {key_range.end}: {len(keys)} sessions, "
        f"assets {', '.join(sorted(k.to_user_string() for k in wanted))}; source={bar_source_name(sources)}; "
        f"DAGSTER_HOME={settings.dagster_home}"
    )
    if len(chunks) > 1:
        click.echo(
            f"{len(chunks)} runs per stage of up to {per_run} sessions (USDCOP_BACKFILL_SESSIONS_PER_RUN), {parallel} "
            "at a time"
        )
    instance = open_instance()
    base_tags = {"usdcop/launched_by": launched_by, **(tags or {})}

    # Observations need their month's normalization statistics, fitted on the (already materialized) L3
    # bars before the month, so the chain runs in stages: the layers below L4, the statistics, then L4 and above.
    after_stats = {k for k in wanted if k.path[0] in ("l4", "l5", "l6")}
    stages = [(SESSION_JOB, wanted - after_stats)]
    if OBSERVATIONS in wanted:
        stages.append((STATS_JOB, set(defs.resolve_job_def(STATS_JOB).asset_layer.selected_asset_keys)))
    stages.append((SESSION_JOB, after_stats))
    evaluations = [] if evaluations is None else evaluations
    with contextlib.ExitStack() as stack:
        pool = None
        if parallel > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: fresh interpreters (Dagster's instance and SQLite connections do not survive a fork),
            # kept for every stage so each builds the definitions once
            from usdcop_assets.storage.lake.lease import adopt_parent_lease, held_covering
            from usdcop_assets.storage.lake.store import open_store

            # the workers write under this command's lease (a lease of their own would wait for it forever)
            location = open_store(settings.lake).location
            held = held_covering(location, key_range.start, key_range.end)
            adopt = (
                (adopt_parent_lease, (location, key_range.start, key_range.end, launched_by)) if held else (None, ())
            )
            # and log where this process logs (a spawned worker writes to the inherited stderr otherwise)
            adopt = (_init_worker, (current_log(), *adopt))
            pool = stack.enter_context(
                ProcessPoolExecutor(
                    max_workers=parallel,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=adopt[0],
                    initargs=adopt[1],
                )
            )
        for job_name, stage_keys in stages:
            if not stage_keys:
                continue
            if job_name == STATS_JOB:  # the months of the range, in one run
                months = dg.PartitionKeyRange(keys[0][:7], keys[-1][:7])
                ok = _run_ranges(defs, instance, job_name, stage_keys, [months], base_tags, None, evaluations, sources)
            else:
                # Concurrent chunks see only what earlier waves wrote: an asset reading earlier sessions
                # of another (L2/L3's look-back on L1) waits until every chunk has written them.
                waves = _lookback_waves(graph, stage_keys) if pool else [stage_keys]
                ok = all(
                    _run_ranges(defs, instance, job_name, wave, chunks, base_tags, pool, evaluations, sources)
                    for wave in waves
                )
            if not ok:
                report_checks(evaluations)
                return False
    return report_checks(evaluations)


def sources_run_config(job, sources: dict | None) -> dict | None:
    """Run config setting the source resources this run overrides (``{"bar_source": {"source": "file:...",
    "source_tz": ...}}``), for those ``job`` uses: the run records what it read, and nothing goes through the
    environment."""
    used = {name: config for name, config in (sources or {}).items() if name in job.resource_defs}
    return {"resources": {name: {"config": config} for name, config in used.items()}} if used else None


def _lookback_waves(graph, keys: set) -> list[set]:
    """``keys`` in successive groups such that no asset looks back on the sessions of an asset of its own or a later
    group."""
    import dagster as dg

    remaining, waves = set(keys), []
    while remaining:
        blocked = {
            k
            for k in remaining
            if any(
                parent in remaining and isinstance(mapping, dg.TimeWindowPartitionMapping) and mapping.start_offset < 0
                for parent, mapping in graph.get(k).partition_mappings.items()
            )
        }
        frontier = set(blocked)
        while frontier:  # and what reads them within the stage
            frontier = {c for k in frontier for c in graph.get(k).child_keys if c in remaining and c not in blocked}
            blocked |= frontier
        if blocked == remaining:
            raise RuntimeError(f"look-back cycle among {sorted(k.to_user_string() for k in remaining)}")
        waves.append(remaining - blocked)
        remaining = blocked
    return waves


def _run_ranges(
    defs, instance, job_name: str, keys: set, ranges: list, base_tags: dict, pool, evaluations: list, sources=None
) -> bool:
    """One run of ``job_name`` restricted to ``keys`` per partition key range (``None``: unpartitioned); in ``pool``'s
    worker processes if given, else one after the other in this process. Stops starting runs after a failure."""
    names = ", ".join(sorted(k.to_user_string() for k in keys))
    if pool is None:
        for key_range in ranges:
            run_id, ok, failures, evs = _execute_range(job_name, keys, key_range, base_tags, defs, instance, sources)
            evaluations.extend(evs)
            _echo_run(run_id, job_name, names, key_range, ok, failures)
            if not ok:
                return False
        return True
    from concurrent.futures import as_completed

    ok = True
    futures = {pool.submit(_execute_range, job_name, keys, r, base_tags, None, None, sources): r for r in ranges}
    for future in as_completed(futures):
        if future.cancelled():
            continue
        key_range = futures[future]
        try:
            run_id, run_ok, failures, evs = future.result()
            evaluations.extend(evs)
            _echo_run(run_id, job_name, names, key_range, run_ok, failures)
        except Exception as exc:  # the worker itself died (a step failure is a failed run, reported above)
            run_ok = False
            click.echo(f"run ({job_name} {key_range.start} .. {key_range.end}: {names}): worker FAILED: {exc}")
        if not run_ok and ok:
            ok = False
            for other in futures:  # runs not started yet are not started; running ones finish
                other.cancel()
    return ok


_worker_defs = None


def _init_worker(log: Path | None, adopt=None, adopt_args=()) -> None:
    if log is not None:
        sys.stderr = open(log, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 (the worker's lifetime)
    if adopt is not None:
        adopt(*adopt_args)


def _execute_range(
    job_name: str, keys: set, key_range, base_tags: dict, defs=None, instance=None, sources=None
) -> tuple[str, bool, list[str], list]:
    """Execute one range run in this process (a backfill worker builds the definitions once), the assets' data
    checks in the same run, each after its asset (blocking ones gate the layers above)."""

    global _worker_defs
    if defs is None:
        if _worker_defs is None:
            _worker_defs = _defs()
        defs = _worker_defs
    tags = dict(base_tags)
    if key_range is not None:
        tags.update(
            {"dagster/asset_partition_range_start": key_range.start, "dagster/asset_partition_range_end": key_range.end}
        )
    from usdcop_assets.defs.automation.jobs import checks_of

    full = defs.resolve_job_def(job_name)
    job = full.get_subset(asset_selection=keys, asset_check_selection=checks_of(full, keys))
    result = job.execute_in_process(
        instance=instance or open_instance(),
        tags=tags,
        raise_on_error=False,
        run_config=sources_run_config(job, sources),
    )
    evaluations = [
        e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    return result.run_id, result.success, [] if result.success else _failure_lines(result), evaluations


def _echo_run(run_id: str, job_name: str, names: str, key_range, ok: bool, failures: list[str]) -> None:
    span = f" {key_range.start} .. {key_range.end}" if key_range is not None else ""
    click.echo(f"run {run_id} ({job_name}{span}: {names}): {'success' if ok else 'FAILURE'}")
    for line in failures:
        click.echo(line)


def _macro_source_name(sources: dict | None) -> str:
    override = ((sources or {}).get("macro_source") or {}).get("source")
    return override or Settings.from_env().sources.macro_source or "default"


def materialize_days(
    first: dt.date,
    last: dt.date,
    launched_by: str,
    tags: dict | None = None,
    layers=("L0", "L1"),
    sources: dict | None = None,
) -> bool:
    """One range run of the daily macro job over ``first..last``, clipped to the partitions that exist."""

    from usdcop_assets.defs.automation.jobs import MACRO_JOB

    macro_partitions = _partitions().macro

    keys_start = dt.date.fromisoformat(macro_partitions.start.strftime("%Y-%m-%d"))
    keys_end = dt.date.fromisoformat(macro_partitions.get_last_partition_key())
    first, last = max(first, keys_start), min(last, keys_end)
    if last < first:
        click.echo(f"no macro day to materialize between {first} and {last}")
        return True
    click.echo(f"macro {first} .. {last}: {(last - first).days + 1} days; source={_macro_source_name(sources)}")
    from usdcop_assets.defs.automation.jobs import layer_selection

    defs = _defs()
    job = defs.resolve_job_def(MACRO_JOB)
    keys = layer_selection(layers).resolve(defs.resolve_asset_graph()) & set(job.asset_layer.selected_asset_keys)
    if not keys:
        return True
    job = job.get_subset(asset_selection=keys)
    result = job.execute_in_process(
        instance=open_instance(),
        run_config=sources_run_config(job, sources),
        tags={
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
            "usdcop/launched_by": launched_by,
            **(tags or {}),
        },
        raise_on_error=False,
    )
    click.echo(f"run {result.run_id}: {'success' if result.success else 'FAILURE'}")
    _echo_failures(result)
    return result.success


@main.command()
@click.option("--fold", required=True, help="walk-forward fold (month), YYYY-MM: trained on the sessions before it")
@click.option("--timesteps", type=click.IntRange(min=1), help="PPO timesteps (default: USDCOP_PPO_TIMESTEPS or 50000)")
@click.option("--seed", type=int, help="random seed (default: USDCOP_PPO_SEED or 7)")
def train(fold: str, timesteps: int | None, seed: int | None) -> None:
    """Train the PPO agent of one fold (materializes l5/ppo_model for that month) and print its version."""
    from usdcop_assets.rl.folds import parse_fold_key

    try:
        parse_fold_key(fold)
        settings = prepare_environment()
    except (ValueError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    check_home(writes=True)
    config = {k: v for k, v in (("timesteps", timesteps), ("seed", seed)) if v is not None}
    log = new_log_path(settings.home, "train")
    with dagster_logs_to(log):
        md = train_fold(settings, fold, config, launched_by="usdcop train")
    click.echo(
        f"run {md['run_id']}: fold {fold} -> model {md['version']} (artifact "
        f"{md['artifact']}{', reused' if md.get('artifact_reused') else ''})"
    )
    click.echo(
        f"  train {md['train_window']}; validation {md['valid_window']}; selected checkpoint "
        f"{md['selected_checkpoint']}, "
        f"validation Sharpe {md['valid_sharpe']}; seed {md['seed']}; {md['train_seconds']} s"
    )
    click.echo(f"Dagster's logs: {log}")


def train_fold(settings: Settings, fold: str, config: dict, launched_by: str) -> dict:
    """Materialize ``l5/ppo_model`` for ``fold`` with ``config`` (``PPOModelConfig`` fields); the materialization's
    metadata plus ``run_id``. Refused up front (ClickException naming the command that helps) when the fold is not
    a partition or the L4 episodes before it are too few."""

    from usdcop_assets.defs.automation.jobs import MODEL_JOB
    from usdcop_assets.defs.keys import PPO_MODEL
    from usdcop_assets.defs.layers.l5_model import PPOModelConfig

    defs = _defs()
    job = defs.resolve_job_def(MODEL_JOB)
    if fold not in job.partitions_def.get_partition_keys():
        raise click.ClickException(
            f"fold {fold} is not a partition of l5/ppo_model "
            f"({job.partitions_def.get_first_partition_key()}..{job.partitions_def.get_last_partition_key()})"
        )
    try:
        fold_history(settings, fold, PPOModelConfig(**config).fold_options())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    op = "__".join(PPO_MODEL.path)
    result = job.execute_in_process(
        instance=open_instance(),
        partition_key=fold,
        raise_on_error=False,
        tags={"usdcop/launched_by": launched_by},
        run_config={"ops": {op: {"config": config}}} if config else None,
    )
    if not result.success:
        raise click.ClickException(
            f"training fold {fold} failed (run {result.run_id}):" + "".join("\n" + x for x in _failure_lines(result))
        )
    mat = next(
        e.event_specific_data.materialization
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    )
    return {"run_id": result.run_id, **{k: v.value for k, v in mat.metadata.items()}}


def fold_history(settings: Settings, fold: str, options: dict):
    """The fold's training and validation windows from the L4 episodes in the lake; ValueError naming the
    sessions missing and the command that materializes them."""
    from usdcop_assets.defs.keys import EPISODES
    from usdcop_assets.rl.folds import fold_sessions, fold_windows, warm_sessions
    from usdcop_assets.storage.lake.session_table import SessionTable
    from usdcop_assets.storage.lake.store import open_store

    start = fold_sessions(fold)[0]
    table = SessionTable(open_store(settings.lake), "/".join(EPISODES.path))
    episodes = table.read(None, cal.session_open(start), columns=["time", "session", "warm"])
    try:
        return fold_windows(fold, warm_sessions(episodes), **options)
    except ValueError as exc:
        need = options["min_train_sessions"] + options["valid_sessions"] + 5  # + the indicators' look-back
        first = start
        for _ in range(need):
            first = cal.previous_trading_day(first)
        raise ValueError(
            f"{str(exc).split(';')[0]}; `usdcop backfill --start {first} --end {cal.previous_trading_day(start)} "
            f"--layers L0,L1,L2,L3,L4` materializes them"
        ) from None


@main.command()
@click.option("--start", "start_s", required=True, help="first session, YYYY-MM-DD")
@click.option("--end", "end_s", required=True, help="last session, YYYY-MM-DD")
def backtest(start_s: str, end_s: str) -> None:
    """Actions, session backtests and metrics vs baselines for START..END (needs L0-L4 there; models from `usdcop
    train`)."""
    try:
        settings = prepare_environment()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    first, last = _date(start_s, "--start"), _date(end_s, "--end")
    key_range = available_range(first, last)
    first, last = cal.parse_session_key(key_range.start), cal.parse_session_key(key_range.end)
    check_home(writes=True)
    require_models(settings, first, last)
    log = new_log_path(settings.home, "backtest")
    with dagster_logs_to(log):
        ok = materialize_sessions(settings, first, last, ["L5", "L6"], launched_by="usdcop backtest")
        if not ok:
            click.echo(f"Dagster's logs: {log}")
            sys.exit(1)
        table, report = performance(first, last, launched_by="usdcop backtest")
    cols = [
        "strategy",
        "total_return",
        "annualized_return",
        "volatility",
        "sharpe_ratio",
        "sharpe_ci_low",
        "sharpe_ci_high",
        "sortino_ratio",
        "calmar",
        "max_drawdown",
        "win_rate",
        "profit_factor",
        "total_trades",
        "turnover",
        "avg_holding_bars",
    ]
    click.echo(
        f"{first}..{last}, {int(table['sessions'].iloc[0])} sessions, {int(table['bars'].iloc[0])} bars "
        f"(costs and risk rules as live, but buy_and_hold_held is held overnight outside them; P&L net of costs)"
    )
    click.echo(table[[c for c in cols if c in table.columns]].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if report:
        click.echo(f"report: {report}")
    click.echo(f"Dagster's logs: {log}")


def require_models(settings: Settings, first: dt.date, last: dt.date) -> list[str]:
    """The folds of ``first..last`` with a registered model; ClickException naming the `usdcop train` to run when
    none has."""
    from usdcop_assets.rl.folds import monthly_folds
    from usdcop_assets.storage.warehouse.database import Warehouse

    folds = monthly_folds(first, last)
    registry = Warehouse(settings.warehouse_url).read_window("rl_models", columns=["fold"])
    trained = sorted(set(registry["fold"].astype(str)) & set(folds))
    if not trained:
        raise click.ClickException(
            f"no trained l5/ppo_model for the folds of {first} .. {last} ({', '.join(folds)}): "
            f"`usdcop train --fold {folds[0]}` trains one (or `usdcop run` does everything)"
        )
    return trained


def performance(first: dt.date, last: dt.date, launched_by: str) -> tuple[pd.DataFrame, str | None]:
    """Materialize ``l6/performance`` over the stored session backtests of ``first..last``: its table and report
    path."""

    from usdcop_assets.defs.automation.jobs import PERFORMANCE_JOB

    result = (
        _defs()
        .resolve_job_def(PERFORMANCE_JOB)
        .execute_in_process(
            instance=open_instance(),
            raise_on_error=False,
            tags={"usdcop/launched_by": launched_by},
            run_config={
                "ops": {
                    "l6__performance": {
                        "config": {"first_session": first.isoformat(), "last_session": last.isoformat()}
                    }
                }
            },
        )
    )
    if not result.success:
        raise click.ClickException(
            f"l6/performance failed (run {result.run_id}):" + "".join("\n" + x for x in _failure_lines(result))
        )
    mat = next(
        e.event_specific_data.materialization
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    )
    report = mat.metadata["report"].value if "report" in mat.metadata else None
    return result.output_for_node("l6__performance"), report


def _failure_lines(result) -> list[str]:
    lines = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE" and event.step_failure_data and event.step_failure_data.error:
            error = event.step_failure_data.error
            cause = error.cause or error  # the user's exception, not Dagster's "Error occurred while executing op"
            lines.append(f"  {event.step_key}: {cause.message.strip().splitlines()[-1]}")
    return lines


def _echo_failures(result) -> None:
    for line in _failure_lines(result):
        click.echo(line)


@main.command("import")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--kind", type=click.Choice(["bars", "macro"]), required=True, help="what the file holds")
@click.option(
    "--source-tz", help="timezone of the file's wall-clock timestamps (IANA name); overrides offsets in the file"
)
@click.option("--start", "start_s", help="first session to load (default: the file's first)")
@click.option("--end", "end_s", help="last session to load (default: the file's last)")
@click.option("--layers", default="L0,L1,L2,L3,L4,L5,L6", show_default=True, help="layers to materialize from the file")
def import_(path: Path, kind: str, source_tz: str | None, start_s: str | None, end_s: str | None, layers: str) -> None:
    """Load a CSV/Parquet history into L0 as given (and the layers above), recorded in Dagster like any run."""
    if kind == "macro":
        _import_macro(path, start_s, end_s)
        return
    from usdcop_assets.sources.files import read_bar_file

    chosen = _layers(layers)
    try:
        settings = prepare_environment()
        path = path.expanduser().resolve()
        bar_file = read_bar_file(path, source_tz, not_before=cal.session_open(_history_start()))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    check_home(writes=True)
    summary = bar_file.summary
    click.echo(
        f"read {path}: {summary['rows_read']} rows, source timezone {summary['source_tz'] or 'as labelled in the file'}"
    )
    if summary["offsets_overridden"]:
        click.echo(
            f"  {summary['offsets_overridden']} timestamps carried an offset, read as {summary['source_tz']} "
            "wall-clock instead"
        )
    click.echo(f"  rows per source: {', '.join(f'{k} {v}' for k, v in summary['rows_per_source'].items())}")
    click.echo(f"  sessions covered: {summary['sessions']} ({summary['first_session']} .. {summary['last_session']})")
    if summary["parse_errors"]:
        click.echo(
            f"  {summary['parse_errors']} rows with unparseable values, loaded with parse_error (L1 rejects them)"
        )
    if len(bar_file.unplaced):
        kept_at = keep_unplaced(settings, path, bar_file.unplaced)
        reasons = ", ".join(f"{k} {v}" for k, v in summary["unplaced_by_reason"].items())
        click.echo(f"  {len(bar_file.unplaced)} rows fit no session partition ({reasons}); kept in {kept_at}")
    if not len(bar_file.placed):
        raise click.ClickException(
            f"{path}: no row falls on a trading day on or after {_history_start()}; nothing to load"
        )
    first = _date(start_s, "--start") if start_s else dt.date.fromisoformat(summary["first_session"])
    last = _date(end_s, "--end") if end_s else dt.date.fromisoformat(summary["last_session"])
    click.echo(f"  L0 for sessions {first} .. {last} is replaced by the file's rows")
    sources = {"bar_source": {"source": f"file:{path}", "source_tz": bar_file.source_tz}}
    tags = {"usdcop/import_file": path.name, "usdcop/source_tz": bar_file.source_tz or "as labelled"}
    log = new_log_path(settings.home, "import")
    with dagster_logs_to(log):
        ok = materialize_sessions(
            settings, first, last, chosen, launched_by="usdcop import", tags=tags, sources=sources
        )
    click.echo(f"Dagster's logs: {log}")
    sys.exit(0 if ok else 1)


def _import_macro(path: Path, start_s: str | None, end_s: str | None) -> None:
    from usdcop_assets.sources.macro_sources import read_macro_file

    try:
        settings = prepare_environment()
        path = path.expanduser().resolve()
        frame = read_macro_file(path)
    except (ConfigError, ValueError, OSError) as exc:  # OSError: a missing or unreadable file
        raise click.ClickException(str(exc)) from None
    check_home(writes=True)
    if frame.empty:
        raise click.ClickException(f"{path}: no observation in the file")
    dates = pd.Series(frame["date"])
    click.echo(
        f"read {path}: {len(frame)} observations of {frame['series_id'].nunique()} series, {dates.min()} .. "
        f"{dates.max()}"
    )
    per_source = frame["source"].value_counts().sort_index()
    click.echo(f"  rows per source: {', '.join(f'{k} {v}' for k, v in per_source.items())}")
    unmapped = sorted(frame.loc[frame["indicator"].isna(), "series_id"].unique())
    if unmapped:
        click.echo(f"  {len(unmapped)} series not used by the features (kept in L0): {', '.join(unmapped)}")
    if frame["parse_error"].notna().any():
        click.echo(f"  {int(frame['parse_error'].notna().sum())} cells did not parse (kept as NaN with parse_error)")
    first = _date(start_s, "--start") if start_s else dates.min()
    last = _date(end_s, "--end") if end_s else dates.max()
    macro_partitions = _partitions().macro

    start = dt.date.fromisoformat(macro_partitions.start.strftime("%Y-%m-%d"))
    older = int((dates < max(first, start)).sum())
    if older:
        click.echo(
            f"  {older} observations before {max(first, start)} (the macro partitions start) stay in the file, not "
            "loaded"
        )
    sources = {"macro_source": {"source": f"file:{path}"}}
    log = new_log_path(settings.home, "import")
    with dagster_logs_to(log):
        ok = materialize_days(
            first, last, launched_by="usdcop import", tags={"usdcop/import_file": path.name}, sources=sources
        )
    click.echo(f"Dagster's logs: {log}")
    sys.exit(0 if ok else 1)


def keep_unplaced(settings: Settings, path: Path, rows: pd.DataFrame) -> str:
    """Write the rows no partition can hold to the lake (one object per imported file name), so nothing is lost."""
    from usdcop_assets.storage.lake.session_table import write_object
    from usdcop_assets.storage.lake.store import open_store

    stem = path.name.split(".")[0]
    dataset = f"l0/ohlcv_m5_unplaced/{stem}"
    frame = rows.assign(time=rows["time"].astype("datetime64[ns, UTC]"), reason=rows["reason"].astype(str))
    write_object(open_store(settings.lake), dataset, frame)
    where = f"{settings.lake.url}/{dataset}"
    show_unplaced_as_rejects(settings, frame, where)
    return where


def show_unplaced_as_rejects(settings: Settings, frame: pd.DataFrame, where: str) -> int:
    """List the unplaced rows that have a time in the warehouse's ``ohlcv_m5_unplaced`` (reason ``not_a_trading_day``
    etc.).

    The lake object stays the original; the table is what the dashboard's rejects view reads beside
    ``ohlcv_m5_rejects``. Keyed by row hash: re-importing the file changes nothing.
    """
    from usdcop_assets.refine.standardize import unplaced_rejects
    from usdcop_assets.storage.warehouse.database import Warehouse

    rejects = unplaced_rejects(frame, where)
    if rejects.empty:
        return 0
    Warehouse(settings.warehouse_url).upsert("ohlcv_m5_unplaced", rejects)
    click.echo(
        f"  {len(rejects)} of them are listed in the warehouse's ohlcv_m5_unplaced "
        f"({', '.join(sorted(set(rejects['reason'])))})"
    )
    return len(rejects)


def report_checks(evaluations) -> bool:
    """One line per check over the sessions it evaluated; False if an ERROR check failed in any session.

    A WARN check (a vendor gap) is reported as a warning and does not fail the command.
    """
    import dagster as dg

    by_check: dict[str, list] = {}
    for ev in evaluations:
        by_check.setdefault(ev.asset_check_key.to_user_string(), []).append(ev)
    ok = True
    for name, evs in sorted(by_check.items()):
        bad = sorted((ev for ev in evs if not ev.passed), key=lambda ev: ev.partition or "")
        sessions = f"{len(evs)} session{'s' if len(evs) != 1 else ''}"
        if not bad:
            click.echo(f"check {name}: passed ({sessions})")
            continue
        error = any(ev.severity == dg.AssetCheckSeverity.ERROR for ev in bad)
        ok = ok and not error
        click.echo(
            f"check {name}: {'FAILED' if error else 'warning'} ({len(bad)} of {sessions}; "
            f"{bad[0].description or bad[0].partition})"
        )
    return ok


# --- usdcop run: the main job ---------------------------------------------------------------------------

# The default budget keeps `usdcop run` (and `bash scripts/demo.sh`) within minutes on a laptop: a demonstration of
# the whole chain, not a trained agent worth trading. `--timesteps` (and --min-train-sessions/--valid-sessions)
# give a real one.
RUN_TIMESTEPS = 20_000
RUN_MIN_TRAIN_SESSIONS = 30
RUN_VALID_SESSIONS = 10
RUN_WARMUP_SESSIONS = 5  # sessions before the first warm episode (L2's 4-session look-back, then L3's)


def run_default_range(
    min_train: int, valid: int, now: dt.datetime | None = None, last: dt.date | None = None
) -> tuple[dt.date, dt.date]:
    """``last`` (default: the last complete session), and a start early enough for two folds (the previous month and
    the last session's month), each with ``min_train + valid`` warm sessions before it.

    Observations are warm from the month after the first one (its statistics are fitted on the months before it,
    docs/decisions/0003): the range starts in a "cold" month with just enough sessions for that fit
    (``RUN_WARMUP_SESSIONS`` of look-back, then ``min_train_bars`` warm bars), followed by whole warm months.
    """
    from usdcop_assets.observation.builder import load_config
    from usdcop_assets.rl.folds import fold_sessions

    last = last or default_recent_range(now, sessions=1)[1]
    month = (last.replace(day=1) - dt.timedelta(days=1)).replace(day=1)  # the first fold: the previous month
    warm = 0
    while warm < min_train + valid:
        month = (month - dt.timedelta(days=1)).replace(day=1)
        warm += len(fold_sessions(f"{month:%Y-%m}"))
    cold = (month - dt.timedelta(days=1)).replace(day=1)  # fits the first warm month's statistics
    need = RUN_WARMUP_SESSIONS + -(-load_config().min_train_bars // cal.BARS_PER_SESSION) + 1
    days = fold_sessions(f"{cold:%Y-%m}")
    return days[max(0, len(days) - need)], last


@main.command()
@click.option("--start", "start_s", help="first session, YYYY-MM-DD (default: enough history for two monthly folds)")
@click.option("--end", "end_s", help="last session, YYYY-MM-DD (default: the last complete session)")
@click.option("--source", help="bars source: synthetic (default), file:PATH, twelvedata (default: USDCOP_SOURCE)")
@click.option(
    "--timesteps",
    type=click.IntRange(min=1),
    default=RUN_TIMESTEPS,
    show_default=True,
    help="PPO timesteps per fold (the default is a demonstration budget; use 200000 or more for a real agent)",
)
@click.option("--seed", type=int, help="random seed (default: USDCOP_PPO_SEED or 7)")
@click.option(
    "--min-train-sessions",
    type=click.IntRange(min=1),
    default=RUN_MIN_TRAIN_SESSIONS,
    show_default=True,
    help="a fold is trained only with at least this many training sessions before it",
)
@click.option(
    "--valid-sessions",
    type=click.IntRange(min=1),
    default=RUN_VALID_SESSIONS,
    show_default=True,
    help="sessions before each fold used to pick the checkpoint",
)
def run(start_s, end_s, source, timesteps, seed, min_train_sessions, valid_sessions) -> None:
    """The main job end to end: macro days, bars, L0-L4, walk-forward training of every monthly fold with enough
    history, actions, paper ledger and backtests for every session, l6/performance and its report; then a summary.

    Dagster's own logs go to USDCOP_HOME/logs/run-<time>.log; every run is in the Dagster UI (`usdcop ui`).
    """
    sources = {"bar_source": {"source": source}} if source else None  # run config of l0's runs, not the environment
    try:
        settings = prepare_environment()
        require_source(sources)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    default_first, default_last = run_default_range(
        min_train_sessions, valid_sessions, last=_file_last_session(sources)
    )
    first = _date(start_s, "--start") if start_s else default_first
    last = _date(end_s, "--end") if end_s else default_last
    key_range = available_range(first, last)  # refused before anything runs
    first, last = cal.parse_session_key(key_range.start), cal.parse_session_key(key_range.end)
    from usdcop_assets.defs.layers.l5_model import PPOModelConfig
    from usdcop_assets.defs.partitions import MACRO_WARMUP_DAYS
    from usdcop_assets.rl.folds import fold_sessions, monthly_folds

    need = min_train_sessions + valid_sessions + RUN_WARMUP_SESSIONS
    if not any(
        len(cal.trading_days(first, fold_sessions(f)[0] - dt.timedelta(days=1))) >= need
        for f in monthly_folds(first, last)
    ):
        raise click.ClickException(
            f"no month of {first} .. {last} has {need} sessions of the range before it ({RUN_WARMUP_SESSIONS} of "
            f"look-back, {min_train_sessions} training, {valid_sessions} validation), so no fold could be "
            f"trained: give an earlier --start (the default range has two folds), or lower "
            f"--min-train-sessions/--valid-sessions"
        )
    check_home(writes=True)

    log = new_log_path(settings.home, "run")
    stages = Stages(Console(file=sys.stdout, highlight=False, soft_wrap=True))
    stages.print(
        f"usdcop run {first} .. {last}: {len(cal.trading_days(first, last))} sessions, "
        f"source {bar_source_name(sources)}, "
        f"{timesteps} PPO timesteps per fold; Dagster's logs: {log}"
    )
    evaluations: list = []
    config = {
        "timesteps": timesteps,
        "min_train_sessions": min_train_sessions,
        "valid_sessions": valid_sessions,
        **({"seed": seed} if seed is not None else {}),
    }
    trained: dict[str, dict] = {}
    with (
        writer_lease(settings, first - dt.timedelta(days=MACRO_WARMUP_DAYS), last, "usdcop run"),
        _RunLog(log, stages) as out,
    ):
        with out.stage("macro days (l0, l1/macro_daily)") as st:
            st.ok = materialize_days(first - dt.timedelta(days=MACRO_WARMUP_DAYS), last, launched_by="usdcop run")
            st.detail = f"{(last - first).days + 1 + MACRO_WARMUP_DAYS} days (a year of look-back)"
        with out.stage("sessions L0-L4 (bars to observations)") as st:
            st.ok = materialize_sessions(
                settings,
                first,
                last,
                ["L0", "L1", "L2", "L3", "L4"],
                "usdcop run",
                evaluations=evaluations,
                sources=sources,
            )
            st.detail = f"{len(cal.trading_days(first, last))} sessions"
        skipped = []
        for fold in monthly_folds(first, last):
            try:
                windows = fold_history(settings, fold, PPOModelConfig(**config).fold_options())
            except ValueError:
                skipped.append(fold)
                continue
            if skipped:
                out.note(
                    f"folds {', '.join(skipped)} not trained: fewer than {min_train_sessions} + {valid_sessions} warm "
                    "sessions before them"
                )
                skipped = []
            with out.stage(f"l5/ppo_model fold {fold}") as st:
                md = train_fold(settings, fold, config, launched_by="usdcop run")
                trained[fold] = md
                st.detail = (
                    f"{windows.n_train} training + {windows.n_valid} validation sessions, validation Sharpe "
                    f"{_fmt(md['valid_sharpe'])}, model {md['version']}"
                )
        if not trained:
            raise click.ClickException(
                f"no fold of {first} .. {last} has {min_train_sessions + valid_sessions} warm sessions "
                f"before it: give an earlier --start, or lower --min-train-sessions/--valid-sessions"
            )
        with out.stage("sessions L5-L6 (actions, paper ledger, backtests)") as st:
            st.ok = materialize_sessions(settings, first, last, ["L5", "L6"], "usdcop run", evaluations=evaluations)
            st.detail = f"{len(cal.trading_days(first, last))} sessions"
        judged_from = max(first, fold_sessions(min(trained))[0])
        with out.stage("l6/performance (agent vs baselines, HTML report)") as st:
            _, report = performance(judged_from, last, launched_by="usdcop run")
            st.detail = f"sessions {judged_from} .. {last} (out of sample)"
    _print_run_summary(stages, settings, first, last, judged_from, trained, evaluations, report, log)


def _file_last_session(sources: dict | None = None) -> dt.date | None:
    """The last session of a ``file:`` bar source (a file's history ends where it ends), else None."""
    source = bar_source_name(sources)
    if not source.startswith("file:"):
        return None
    from usdcop_assets.sources.files import read_bar_file

    try:
        summary = read_bar_file(Path(source.split(":", 1)[1]).expanduser()).summary
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    return dt.date.fromisoformat(summary["last_session"]) if summary.get("last_session") else None


def _fmt(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and value != value) else f"{value:.2f}"


class _RunLog:
    """``usdcop run``'s stages: Dagster's logs and the per-run lines of the shared helpers go to the log file, the
    terminal gets one line per stage; a failed stage shows the failure lines and ends the command (exit 1)."""

    def __init__(self, path: Path, stages: Stages):
        self.path, self.stages = path, stages

    def __enter__(self):
        self._stack = contextlib.ExitStack()
        self._file = self._stack.enter_context(dagster_logs_to(self.path))
        return self

    def __exit__(self, *exc):
        return self._stack.__exit__(*exc)

    def note(self, line: str) -> None:
        self.stages.print(f"  {line}")

    @contextlib.contextmanager
    def stage(self, name: str):
        buffer = io.StringIO()
        tee = _Tee(self._file, buffer)
        error = None
        with self.stages.stage(name) as st, contextlib.redirect_stdout(tee):
            try:
                yield st
            except click.ClickException as exc:  # a refusal or a failed run, said in one line (plus its step failures)
                st.ok, error = False, exc.format_message()
        if not st.ok:
            lines = (
                error.splitlines()
                if error
                else [x for x in buffer.getvalue().splitlines() if x.startswith("  ") or "FAIL" in x]
            )
            for line in lines:
                self.stages.print(f"  {line.strip()}")
            self.stages.print(f"Dagster's logs: {self.path}")
            sys.exit(1)


class _Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)


def _print_run_summary(
    stages: Stages, settings: Settings, first, last, judged_from, trained: dict, evaluations: list, report, log
) -> None:
    import dagster as dg

    from usdcop_assets import run_summary
    from usdcop_assets.storage.lake.store import open_store
    from usdcop_assets.storage.warehouse.database import Warehouse

    rows = run_summary.layer_rows(open_store(settings.lake), first, last)
    tally = run_summary.tally_checks(evaluations, dg.AssetCheckSeverity.ERROR)
    metrics = run_summary.stored_metrics(Warehouse(settings.warehouse_url), last.isoformat())
    say = stages.print
    say("")
    say(f"[bold]Summary[/bold] {first} .. {last} ({stages.elapsed:.0f} s)", markup=True)
    names = list(rows)
    say("  rows per layer (lake): " + ", ".join(f"{name} {rows[name]}" for name in names[:5]))
    say("                         " + ", ".join(f"{name} {rows[name]}" for name in names[5:]))
    say(f"  data checks: {tally.passed} passed, {tally.warned} warned, {tally.failed} failed")
    for problem in tally.problems:
        say(f"    {problem}")
    say(
        "  models: "
        + "; ".join(
            f"{fold} {md['version']} (validation Sharpe {_fmt(md['valid_sharpe'])})" for fold, md in trained.items()
        )
    )
    if not metrics.empty:
        agent = metrics.iloc[0]
        say(
            f"  agent vs baselines over {judged_from} .. {last} ({int(agent['sessions'])} sessions, "
            f"{int(agent['bars'])} bars; "
            "net of costs; Sharpe annualized, 95% bootstrap interval):"
        )
        for line in run_summary.metrics_lines(metrics):
            say(line)
    say(f"  report: {report}")
    say(f"  Dagster's logs: {log}")
    say(
        f"  Dagster UI (runs, lineage, checks): {_tool('usdcop')} ui   then open http://127.0.0.1:3000 (--port N for "
        "another port)"
    )
    say(f"  dashboard: {_tool('streamlit')} run streamlit_app/app.py")


def _tool(name: str) -> str:
    """``name`` as the user can type it: the venv's script when it is not on PATH (``bash scripts/demo.sh``)."""
    import shutil

    script = Path(sys.executable).parent / name
    if shutil.which(name) == str(script) or not script.exists():
        return name
    relative = os.path.relpath(script)
    return str(script) if relative.startswith("..") else relative


@main.command()
def doctor() -> None:
    """Print the resolved configuration (secrets masked) and whether each store is reachable."""
    ok = True
    try:
        settings = prepare_environment()
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}")
        sys.exit(1)
    for name, value in settings.describe().items():
        click.echo(f"{name:22} {value}")
    click.echo(f"{'source':22} {resolve_source()}")
    try:
        serve = settings.training.serve
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}")
        sys.exit(1)
    from usdcop_assets.storage.warehouse.tables import SERVED_REGISTRIES

    table, asset = SERVED_REGISTRIES[serve]
    click.echo(f"{'serving':22} {asset} ({table}): what l5/actions_m5 and the live process trade (USDCOP_SERVE)")

    from usdcop_assets.storage.lake.store import open_store
    from usdcop_assets.storage.warehouse.database import Warehouse

    checks = {
        "lake": lambda: (open_store(settings.lake).check(), "reachable")[1],
        "warehouse": lambda: Warehouse(settings.warehouse_url).ensure_schema().detail,
        "dagster instance": lambda: _instance_summary(),
    }
    for name, probe in checks.items():
        try:
            click.echo(f"{name:22} ok: {probe()}")
        except Exception as exc:  # report every store, then fail
            ok = False
            click.echo(f"{name:22} UNREACHABLE: {exc}")
    if ok:
        try:
            check_home(writes=False, label=f"{'dagster records':22} ")
        except Exception as exc:  # doctor reports; it does not stop on what it inspects
            click.echo(f"{'dagster records':22} UNREADABLE: {exc}")
    sys.exit(0 if ok else 1)


def _instance_summary() -> str:

    with open_instance() as instance:
        storage = type(instance.run_storage).__name__
        return f"{storage}, {len(instance.get_run_records(limit=1000))} runs recorded"


def check_home(writes: bool, label: str = "") -> None:
    """Stop a writing command on a home the bar-partitioned code recorded (others only print the line)."""

    from usdcop_assets.defs.home_migration import stale_home_message

    with open_instance() as instance:
        message = stale_home_message(instance, _defs())
    if message and writes:
        raise click.ClickException(message)
    if message:
        click.echo(label + message)


@main.command("rebuild-records")
@click.option("--dry-run", is_flag=True, help="print what would be recorded and wiped; change nothing")
def rebuild_records(dry_run: bool) -> None:
    """Record each session object of the lake in Dagster (one materialization per session), replacing
    bar-partitioned records."""

    from usdcop_assets.defs.home_migration import apply_rebuild, plan_rebuild, session_assets
    from usdcop_assets.storage.lake.store import open_store

    try:
        settings = prepare_environment()
        store = open_store(settings.lake)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"rebuild-records: lake {store.location}; DAGSTER_HOME={settings.dagster_home}{' (dry run)' if dry_run else ''}"
    )
    verb = "would record" if dry_run else "recorded"

    def line(p) -> None:
        wiped = f"; {len(p.bar_keys)} bar partitions {'would be ' if dry_run else ''}wiped" if p.bar_keys else ""
        off = (
            f"; {len(p.off_calendar)} lake dates outside the session calendar left unrecorded" if p.off_calendar else ""
        )
        bad = (
            f"; unreadable lake objects left unrecorded: {', '.join(p.damaged)} (re-materialize those sessions)"
            if p.damaged
            else ""
        )
        click.echo(
            f"  {p.asset.key.to_user_string()}: {p.lake_sessions} lake sessions; {verb} {len(p.to_record)}, "
            f"{p.up_to_date} already recorded{wiped}{off}{bad}"
        )

    with open_instance() as instance:
        plan = plan_rebuild(instance, store, session_assets(_defs()))
        if dry_run:
            for p in plan.assets:
                line(p)
        else:
            apply_rebuild(instance, plan, store.location, progress=line)
    for name, n in sorted(plan.other_bar_assets.items()):
        click.echo(
            f"  {name}: {n} bar partitions left as they are (no session asset of this code; "
            f"'dagster asset wipe' removes them)"
        )
    click.echo(
        f"{len(plan.assets)} assets: {verb} {plan.sessions_to_record} sessions, "
        f"{'would wipe' if dry_run else 'wiped'} {plan.bar_partitions} bar partitions from the asset records "
        f"(runs and their logs are kept; the lake and the warehouse are only read)"
    )


@main.command()
def live() -> None:
    """Decide each bar as it is published: a long-lived process (runs until SIGTERM) that polls the source every
    second from each bar's close, stores the session's L0..L5 rows like the batch run and records them in Dagster.

    Sleeps over nights, weekends and holidays; resumes a session from what is stored. Settings:
    USDCOP_LIVE_POLL_SECONDS (1), USDCOP_LIVE_GRACE_MINUTES (10), USDCOP_LIVE_ALERT_AFTER_SECONDS (300).
    """
    try:
        prepare_environment()
        require_source()
        from usdcop_assets.live.loop import LiveSettings

        LiveSettings.from_env()  # a malformed setting fails here, naming the variable
    except (ConfigError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    from usdcop_assets.defs.live.service import run_live

    sys.exit(run_live())


@main.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--port",
    "-p",
    type=click.IntRange(1, 65535),
    default=3000,
    show_default=True,
    help="port of the UI: open http://127.0.0.1:PORT",
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def ui(port: int, args: tuple[str, ...]) -> None:
    """Start the Dagster UI and daemon on this project's instance (`dagster dev`), at http://127.0.0.1:3000 by
    default; `usdcop ui --port 3001` picks another port. Other arguments go to `dagster dev` (e.g. --host 0.0.0.0)."""
    try:
        settings = prepare_environment()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    check_home(writes=False)
    init_instance_home(settings.dagster_home)  # before dagster dev starts its webserver and daemon at once
    # the child's environment, not this process's: dagster dev finds its instance through DAGSTER_HOME
    child_env = {**environ(), **DAGSTER_PROCESS_KNOBS, "DAGSTER_HOME": str(settings.dagster_home)}
    cmd = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-w",
        str(PROJECT_ROOT / "workspace.yaml"),
        "--port",
        str(port),
        *args,
    ]
    sys.exit(subprocess.call(cmd, cwd=PROJECT_ROOT, env=child_env))


# `usdcop experiment list|run|compare` (cli_experiment.py), with this module's instance and error helpers
register_experiment_commands(main, open_instance, _defs, _failure_lines, check_home, prepare_environment, fold_history)


if __name__ == "__main__":
    main()
