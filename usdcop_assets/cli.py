"""``usdcop``: the platform from a terminal. Every command goes through Dagster and the configured
instance, so what it materializes shows up in the Dagster UI like any other run."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pandas as pd

from usdcop_assets import market_calendar as cal
from usdcop_assets.settings import ConfigError, Settings
from usdcop_assets.sources import require_available, resolve_source

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def prepare_environment() -> Settings:
    """Resolve settings and make ``DAGSTER_HOME`` exist with an instance config (embedded by default)."""
    settings = Settings.from_env()
    os.environ.setdefault("USDCOP_HOME", str(settings.home))
    # One planned event per asset for a range run instead of one per bar: halves Dagster's
    # bookkeeping of a backfill (bench/dagster_overhead.py). Trade-off: partitions of a failed range
    # run show as missing rather than failed; re-running the range is idempotent.
    os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")
    # Store the per-partition materializations of a range output in batches (dagster.yaml's event
    # log storage; one transaction per 5,000 events instead of three per event): bench/NOTES-overhead.md.
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "5000")
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    target = settings.dagster_home / "dagster.yaml"
    if not target.exists():
        target.write_text(instance_yaml(settings.dagster_home))
    return settings


def instance_yaml(dagster_home: Path) -> str:
    """The project's dagster.yaml with the event log pinned to this instance's directory.

    The batched event log otherwise follows ``$DAGSTER_HOME``; pinning it keeps an instance opened from
    its directory (``DagsterInstance.from_config``) reading its own event log whatever the environment.
    """
    text = (PROJECT_ROOT / "dagster.yaml").read_text()
    marker = "  class: BatchedSqliteEventLogStorage\n"
    runs = (Path(dagster_home).resolve() / "history" / "runs").as_posix()
    return text.replace(marker, marker + f"  config:\n    base_dir: {json.dumps(runs)}\n", 1)


def _date(value: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=name) from None


def default_recent_range(now: dt.datetime | None = None, sessions: int = 5) -> tuple[dt.date, dt.date]:
    """The last ``sessions`` complete sessions before ``now``."""
    now = now or dt.datetime.now(dt.timezone.utc)
    last_bar = cal.last_closed_bar(now)
    last = last_bar.tz_convert(cal.TZ).date()
    if last_bar != cal.session_bars(last)[-1]:  # today's session still open: stop at yesterday's
        last = cal.previous_trading_day(last)
    first = last
    for _ in range(sessions - 1):
        first = cal.previous_trading_day(first)
    return first, last


@click.group()
def main() -> None:
    """USD/COP asset platform."""


@main.command()
@click.option("--start", "start_s", help="first session date, YYYY-MM-DD (default: 5 sessions back)")
@click.option("--end", "end_s", help="last session date, YYYY-MM-DD (default: last complete session)")
@click.option("--layers", default="L0,L1,L2,L3,L4,L5,L6", show_default=True, help="comma-separated layers")
@click.option("--runs-in-parallel", type=click.IntRange(min=1), default=1, show_default=True,
              help="range runs of USDCOP_BACKFILL_SESSIONS_PER_RUN sessions executed at a time, each in its own process")
def backfill(start_s: str | None, end_s: str | None, layers: str, runs_in_parallel: int) -> None:
    """Materialize the selected layers for every session from START to END (range runs of up to USDCOP_BACKFILL_SESSIONS_PER_RUN sessions)."""
    try:
        settings = prepare_environment()
        require_available(resolve_source())
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

    macro = bool({"L0", "L1"} & set(chosen))
    # one lease over every date this backfill writes (macro days included): overlapping backfills serialize
    with writer_lease(settings, first - dt.timedelta(days=MACRO_WARMUP_DAYS) if macro else first, last, "usdcop backfill"):
        if macro:
            # first the macro days the sessions' features look back over (a one-year z-score window)
            ok = materialize_days(first - dt.timedelta(days=MACRO_WARMUP_DAYS), last, launched_by="usdcop backfill", layers=chosen)
        ok = ok and materialize_sessions(settings, first, last, chosen, launched_by="usdcop backfill", runs_in_parallel=runs_in_parallel)
    sys.exit(0 if ok else 1)


def _layers(text: str) -> list[str]:
    from usdcop_assets.defs.automation.jobs import parse_layers

    try:
        return parse_layers(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--layers") from None


def session_range(first: dt.date, last: dt.date):
    """The session partition range ``first..last``, or a usage error naming what is wrong."""
    from usdcop_assets.defs.partitions import history_start, session_key_range

    if last < first:
        raise click.BadParameter(f"--end {last} is before --start {first}")
    if first < history_start():
        raise click.BadParameter(f"--start {first} is before the partitions start {history_start()} (USDCOP_HISTORY_START)")
    try:
        return session_key_range(first, last)
    except cal.CalendarError as exc:
        raise click.BadParameter(str(exc)) from None


def available_range(first: dt.date, last: dt.date, now=None):
    """``first..last`` clipped to the sessions that have begun by ``now``; refused if none has."""
    from usdcop_assets import clock

    key_range = session_range(first, last)
    last_bar = cal.last_closed_bar(clock.utc_now() if now is None else now)
    newest = last_bar.tz_convert(cal.TZ).date() if last_bar is not None else None
    if newest is None or cal.parse_session_key(key_range.start) > newest:
        raise click.BadParameter(f"{first} .. {last} is in the future: the newest session with a closed bar is {newest}; "
                                 f"pick a --start on or before it")
    if cal.parse_session_key(key_range.end) > newest:
        click.echo(f"sessions after {newest} have no closed bar yet: the range stops at {newest} "
                   f"({'partial, bars up to ' + cal.bar_key(last_bar) if last_bar != cal.session_bars(newest)[-1] else 'complete'})")
        key_range = session_range(cal.parse_session_key(key_range.start), newest)
    return key_range


def materialize_sessions(settings: Settings, first: dt.date, last: dt.date, chosen: list[str], launched_by: str, tags: dict | None = None,
                         runs_in_parallel: int = 1) -> bool:
    """``_materialize_sessions`` under a lease on the sessions (lake/lease.py): an overlapping backfill, import
    or realtime run on the same lake, from any host, finishes first; this one says so and waits for it."""
    key_range = session_range(first, last)
    with writer_lease(settings, key_range.start, key_range.end, launched_by):
        return _materialize_sessions(settings, first, last, chosen, launched_by, tags, runs_in_parallel)


@contextlib.contextmanager
def writer_lease(settings: Settings, first, last, purpose: str):
    """A lease on the lake's dates ``first..last`` for this command (lake/lease.py); reentrant in one process.
    Waits (saying for whom) up to USDCOP_LEASE_WAIT_SECONDS, then stops with the holder named."""
    from usdcop_assets.lake.lease import LeaseBusy, LeaseLost, session_lease
    from usdcop_assets.lake.store import open_store

    try:
        with session_lease(open_store(settings.lake), first, last, purpose, on_wait=click.echo) as lease:
            yield lease
            lease.check()
    except (LeaseBusy, LeaseLost) as exc:
        raise click.ClickException(str(exc)) from None


def _materialize_sessions(settings: Settings, first: dt.date, last: dt.date, chosen: list[str], launched_by: str, tags: dict | None = None,
                          runs_in_parallel: int = 1) -> bool:
    """The session layers over ``first..last``, each run with the data checks of its assets; one line per check;
    False if a run failed or an ERROR check did.

    Staged around the observation statistics: L0-L3 over the whole range, ``observation_stats`` for the
    months covering it (one run; each month fitted on the L3 bars before it), then L4-L6. Each stage runs as range runs of at most ``USDCOP_BACKFILL_SESSIONS_PER_RUN`` sessions (the
    session assets' backfill policy), ``runs_in_parallel`` of them at a time in worker processes.
    """
    import dagster as dg

    from usdcop_assets.defs.layers.l4_rl_ready import OBSERVATIONS
    from usdcop_assets.defs.definitions import build_definitions
    from usdcop_assets.defs.automation.jobs import SESSION_JOB, STATS_JOB, layer_selection
    from usdcop_assets.settings import backfill_sessions_per_run

    key_range = available_range(first, last)
    defs = build_definitions()  # from the current environment, not whatever was imported first
    job = defs.resolve_job_def(SESSION_JOB)
    graph = defs.resolve_asset_graph()
    wanted = layer_selection(chosen).resolve(graph) & set(job.asset_layer.selected_asset_keys)
    missing_layers = [layer for layer in chosen if not any(k.path[0] == layer.lower() for k in wanted)]
    if missing_layers:
        click.echo(f"layers without session assets (skipped): {','.join(missing_layers)}")
    if not wanted:
        raise click.ClickException("none of the selected layers has session assets")
    try:
        per_run = backfill_sessions_per_run()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    keys = job.partitions_def.get_partition_keys_in_range(key_range)
    chunks = [dg.PartitionKeyRange(keys[i], keys[min(i + per_run, len(keys)) - 1]) for i in range(0, len(keys), per_run)]
    parallel = max(1, min(runs_in_parallel, len(chunks)))
    click.echo(
        f"{launched_by.split()[-1]} {key_range.start} .. {key_range.end}: {len(keys)} sessions, "
        f"assets {', '.join(sorted(k.to_user_string() for k in wanted))}; source={resolve_source()}; "
        f"DAGSTER_HOME={settings.dagster_home}"
    )
    if len(chunks) > 1:
        click.echo(f"{len(chunks)} runs per stage of up to {per_run} sessions (USDCOP_BACKFILL_SESSIONS_PER_RUN), {parallel} at a time")
    instance = dg.DagsterInstance.get()
    base_tags = {"usdcop/launched_by": launched_by, **(tags or {})}

    # Observations need their month's normalization statistics, fitted on the (already materialized) L3
    # bars before the month, so the chain runs in stages: the layers below L4, the statistics, then L4 and above.
    after_stats = {k for k in wanted if k.path[0] in ("l4", "l5", "l6")}
    stages = [(SESSION_JOB, wanted - after_stats)]
    if OBSERVATIONS in wanted:
        stages.append((STATS_JOB, set(defs.resolve_job_def(STATS_JOB).asset_layer.selected_asset_keys)))
    stages.append((SESSION_JOB, after_stats))
    evaluations: list = []
    with contextlib.ExitStack() as stack:
        pool = None
        if parallel > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: fresh interpreters (Dagster's instance and SQLite connections do not survive a fork),
            # kept for every stage so each builds the definitions once
            from usdcop_assets.lake.lease import adopt_parent_lease, held_covering
            from usdcop_assets.lake.store import open_store

            # the workers write under this command's lease (a lease of their own would wait for it forever)
            location = open_store(settings.lake).location
            held = held_covering(location, key_range.start, key_range.end)
            adopt = (adopt_parent_lease, (location, key_range.start, key_range.end, launched_by)) if held else (None, ())
            pool = stack.enter_context(ProcessPoolExecutor(max_workers=parallel, mp_context=multiprocessing.get_context("spawn"),
                                                           initializer=adopt[0], initargs=adopt[1]))
        for job_name, stage_keys in stages:
            if not stage_keys:
                continue
            if job_name == STATS_JOB:  # the months of the range, in one run
                months = dg.PartitionKeyRange(keys[0][:7], keys[-1][:7])
                ok = _run_ranges(defs, instance, job_name, stage_keys, [months], base_tags, None, evaluations)
            else:
                # Concurrent chunks see only what earlier waves wrote: an asset reading earlier sessions
                # of another (L2/L3's look-back on L1) waits until every chunk has written them.
                waves = _lookback_waves(graph, stage_keys) if pool else [stage_keys]
                ok = all(_run_ranges(defs, instance, job_name, wave, chunks, base_tags, pool, evaluations) for wave in waves)
            if not ok:
                report_checks(evaluations)
                return False
    return report_checks(evaluations)


def _lookback_waves(graph, keys: set) -> list[set]:
    """``keys`` in successive groups such that no asset looks back on the sessions of an asset of its own or a later group."""
    import dagster as dg

    remaining, waves = set(keys), []
    while remaining:
        blocked = {k for k in remaining if any(
            parent in remaining and isinstance(mapping, dg.TimeWindowPartitionMapping) and mapping.start_offset < 0
            for parent, mapping in graph.get(k).partition_mappings.items())}
        frontier = set(blocked)
        while frontier:  # and what reads them within the stage
            frontier = {c for k in frontier for c in graph.get(k).child_keys if c in remaining and c not in blocked}
            blocked |= frontier
        if blocked == remaining:
            raise RuntimeError(f"look-back cycle among {sorted(k.to_user_string() for k in remaining)}")
        waves.append(remaining - blocked)
        remaining = blocked
    return waves


def _run_ranges(defs, instance, job_name: str, keys: set, ranges: list, base_tags: dict, pool, evaluations: list) -> bool:
    """One run of ``job_name`` restricted to ``keys`` per partition key range (``None``: unpartitioned); in ``pool``'s
    worker processes if given, else one after the other in this process. Stops starting runs after a failure."""
    names = ", ".join(sorted(k.to_user_string() for k in keys))
    if pool is None:
        for key_range in ranges:
            run_id, ok, failures, evs = _execute_range(job_name, keys, key_range, base_tags, defs, instance)
            evaluations.extend(evs)
            _echo_run(run_id, job_name, names, key_range, ok, failures)
            if not ok:
                return False
        return True
    from concurrent.futures import as_completed

    ok = True
    futures = {pool.submit(_execute_range, job_name, keys, r, base_tags): r for r in ranges}
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


def _execute_range(job_name: str, keys: set, key_range, base_tags: dict, defs=None, instance=None) -> tuple[str, bool, list[str], list]:
    """Execute one range run in this process (a backfill worker builds the definitions once), the assets' data
    checks in the same run, each after its asset (blocking ones gate the layers above)."""
    import dagster as dg

    global _worker_defs
    if defs is None:
        if _worker_defs is None:
            from usdcop_assets.defs.definitions import build_definitions

            _worker_defs = build_definitions()
        defs = _worker_defs
    tags = dict(base_tags)
    if key_range is not None:
        tags.update({"dagster/asset_partition_range_start": key_range.start, "dagster/asset_partition_range_end": key_range.end})
    from usdcop_assets.defs.automation.jobs import checks_of

    full = defs.resolve_job_def(job_name)
    job = full.get_subset(asset_selection=keys, asset_check_selection=checks_of(full, keys))
    result = job.execute_in_process(instance=instance or dg.DagsterInstance.get(), tags=tags, raise_on_error=False)
    evaluations = [e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    return result.run_id, result.success, [] if result.success else _failure_lines(result), evaluations


def _echo_run(run_id: str, job_name: str, names: str, key_range, ok: bool, failures: list[str]) -> None:
    span = f" {key_range.start} .. {key_range.end}" if key_range is not None else ""
    click.echo(f"run {run_id} ({job_name}{span}: {names}): {'success' if ok else 'FAILURE'}")
    for line in failures:
        click.echo(line)


def materialize_days(first: dt.date, last: dt.date, launched_by: str, tags: dict | None = None, layers=("L0", "L1")) -> bool:
    """One range run of the daily macro job over ``first..last``, clipped to the partitions that exist."""
    import dagster as dg

    from usdcop_assets.defs.definitions import build_definitions
    from usdcop_assets.defs.automation.jobs import MACRO_JOB
    from usdcop_assets.defs.partitions import macro_partitions

    keys_start = dt.date.fromisoformat(macro_partitions.start.strftime("%Y-%m-%d"))
    keys_end = dt.date.fromisoformat(macro_partitions.get_last_partition_key())
    first, last = max(first, keys_start), min(last, keys_end)
    if last < first:
        click.echo(f"no macro day to materialize between {first} and {last}")
        return True
    click.echo(f"macro {first} .. {last}: {(last - first).days + 1} days; source={os.environ.get('USDCOP_MACRO_SOURCE') or 'default'}")
    from usdcop_assets.defs.automation.jobs import layer_selection

    defs = build_definitions()
    job = defs.resolve_job_def(MACRO_JOB)
    keys = layer_selection(layers).resolve(defs.resolve_asset_graph()) & set(job.asset_layer.selected_asset_keys)
    if not keys:
        return True
    result = job.get_subset(asset_selection=keys).execute_in_process(
        instance=dg.DagsterInstance.get(),
        tags={
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
            "usdcop/launched_by": launched_by,
            **(tags or {}),
        },
        raise_on_error=False,
    )
    click.echo(f"run {result.run_id}: {'success' if result.success else 'FAILURE'}")
    return result.success


@main.command()
@click.option("--fold", required=True, help="walk-forward fold (month), YYYY-MM: trained on the sessions before it")
@click.option("--timesteps", type=int, help="PPO timesteps (default: USDCOP_PPO_TIMESTEPS or 50000)")
@click.option("--seed", type=int, help="random seed (default: USDCOP_PPO_SEED or 7)")
def train(fold: str, timesteps: int | None, seed: int | None) -> None:
    """Train the PPO agent of one fold (materializes l5/ppo_model for that month) and print its version."""
    from usdcop_assets.trading.folds import parse_fold_key

    try:
        parse_fold_key(fold)
        prepare_environment()
    except (ValueError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    check_home(writes=True)
    if timesteps is not None:
        os.environ["USDCOP_PPO_TIMESTEPS"] = str(timesteps)
    if seed is not None:
        os.environ["USDCOP_PPO_SEED"] = str(seed)
    import dagster as dg

    from usdcop_assets.defs.definitions import build_definitions
    from usdcop_assets.defs.automation.jobs import MODEL_JOB

    defs = build_definitions()
    job = defs.resolve_job_def(MODEL_JOB)
    if fold not in job.partitions_def.get_partition_keys():
        raise click.ClickException(f"fold {fold} is not a partition of l5/ppo_model "
                                   f"({job.partitions_def.get_first_partition_key()}..{job.partitions_def.get_last_partition_key()})")
    result = job.execute_in_process(instance=dg.DagsterInstance.get(), partition_key=fold, raise_on_error=False,
                                    tags={"usdcop/launched_by": "usdcop train"})
    if not result.success:
        _echo_failures(result)
        sys.exit(1)
    mat = next(e.event_specific_data.materialization for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION")
    md = {k: v.value for k, v in mat.metadata.items()}
    click.echo(f"run {result.run_id}: fold {fold} -> model {md['version']} (artifact {md['artifact']}{', reused' if md.get('artifact_reused') else ''})")
    click.echo(f"  train {md['train_window']}; validation {md['valid_window']}; selected checkpoint {md['selected_checkpoint']}, "
               f"validation Sharpe {md['valid_sharpe']}; seed {md['seed']}; {md['train_seconds']} s")


@main.command()
@click.option("--start", "start_s", required=True, help="first session, YYYY-MM-DD")
@click.option("--end", "end_s", required=True, help="last session, YYYY-MM-DD")
def backtest(start_s: str, end_s: str) -> None:
    """Actions, session backtests and metrics vs baselines for START..END (needs L0-L4 there; models from `usdcop train`)."""
    try:
        settings = prepare_environment()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    check_home(writes=True)
    first, last = _date(start_s, "--start"), _date(end_s, "--end")
    session_range(first, last)
    ok = materialize_sessions(settings, first, last, ["L5", "L6"], launched_by="usdcop backtest")
    if not ok:
        sys.exit(1)
    import dagster as dg

    from usdcop_assets.defs.definitions import build_definitions
    from usdcop_assets.defs.automation.jobs import PERFORMANCE_JOB

    result = build_definitions().resolve_job_def(PERFORMANCE_JOB).execute_in_process(
        instance=dg.DagsterInstance.get(), raise_on_error=False, tags={"usdcop/launched_by": "usdcop backtest"},
        run_config={"ops": {"l6__performance": {"config": {"first_session": first.isoformat(), "last_session": last.isoformat()}}}},
    )
    if not result.success:
        _echo_failures(result)
        sys.exit(1)
    table = result.output_for_node("l6__performance")
    cols = ["strategy", "total_return", "annualized_return", "volatility", "sharpe_ratio", "sharpe_ci_low", "sharpe_ci_high",
            "sortino_ratio", "calmar", "max_drawdown", "win_rate", "profit_factor", "total_trades", "turnover", "avg_holding_bars"]
    click.echo(f"run {result.run_id}: {first}..{last}, {int(table['sessions'].iloc[0])} sessions, {int(table['bars'].iloc[0])} bars "
               f"(costs and risk rules as live; P&L net of costs)")
    click.echo(table[[c for c in cols if c in table.columns]].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    mat = next(e.event_specific_data.materialization for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION")
    if "report" in mat.metadata:
        click.echo(f"report: {mat.metadata['report'].value}")


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
@click.option("--source-tz", help="timezone of the file's wall-clock timestamps (IANA name); overrides offsets in the file")
@click.option("--start", "start_s", help="first session to load (default: the file's first)")
@click.option("--end", "end_s", help="last session to load (default: the file's last)")
@click.option("--layers", default="L0,L1,L2,L3,L4,L5,L6", show_default=True, help="layers to materialize from the file")
def import_(path: Path, kind: str, source_tz: str | None, start_s: str | None, end_s: str | None, layers: str) -> None:
    """Load a CSV/Parquet history into L0 as given (and the layers above), recorded in Dagster like any run."""
    if kind == "macro":
        _import_macro(path, start_s, end_s)
        return
    from usdcop_assets.defs.partitions import history_start
    from usdcop_assets.sources.files import SOURCE_TZ_ENV, read_bar_file

    chosen = _layers(layers)
    try:
        settings = prepare_environment()
        path = path.expanduser().resolve()
        bar_file = read_bar_file(path, source_tz, not_before=cal.session_open(history_start()))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    check_home(writes=True)
    summary = bar_file.summary
    click.echo(f"read {path}: {summary['rows_read']} rows, source timezone {summary['source_tz'] or 'as labelled in the file'}")
    if summary["offsets_overridden"]:
        click.echo(f"  {summary['offsets_overridden']} timestamps carried an offset, read as {summary['source_tz']} wall-clock instead")
    click.echo(f"  rows per source: {', '.join(f'{k} {v}' for k, v in summary['rows_per_source'].items())}")
    click.echo(f"  sessions covered: {summary['sessions']} ({summary['first_session']} .. {summary['last_session']})")
    if summary["parse_errors"]:
        click.echo(f"  {summary['parse_errors']} rows with unparseable values, loaded with parse_error (L1 rejects them)")
    if len(bar_file.unplaced):
        kept_at = keep_unplaced(settings, path, bar_file.unplaced)
        reasons = ", ".join(f"{k} {v}" for k, v in summary["unplaced_by_reason"].items())
        click.echo(f"  {len(bar_file.unplaced)} rows fit no session partition ({reasons}); kept in {kept_at}")
    if not len(bar_file.placed):
        raise click.ClickException(f"{path}: no row falls on a trading day on or after {history_start()}; nothing to load")
    first = _date(start_s, "--start") if start_s else dt.date.fromisoformat(summary["first_session"])
    last = _date(end_s, "--end") if end_s else dt.date.fromisoformat(summary["last_session"])
    click.echo(f"  L0 for sessions {first} .. {last} is replaced by the file's rows")
    os.environ["USDCOP_SOURCE"] = f"file:{path}"
    if bar_file.source_tz:
        os.environ[SOURCE_TZ_ENV] = bar_file.source_tz
    else:
        os.environ.pop(SOURCE_TZ_ENV, None)
    tags = {"usdcop/import_file": path.name, "usdcop/source_tz": bar_file.source_tz or "as labelled"}
    ok = materialize_sessions(settings, first, last, chosen, launched_by="usdcop import", tags=tags)
    sys.exit(0 if ok else 1)


def _import_macro(path: Path, start_s: str | None, end_s: str | None) -> None:
    from usdcop_assets.sources.macro import SOURCE_ENV, read_macro_file

    try:
        prepare_environment()
        path = path.expanduser().resolve()
        frame = read_macro_file(path)
    except (ConfigError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    check_home(writes=True)
    if frame.empty:
        raise click.ClickException(f"{path}: no observation in the file")
    dates = pd.Series(frame["date"])
    click.echo(f"read {path}: {len(frame)} observations of {frame['series_id'].nunique()} series, {dates.min()} .. {dates.max()}")
    per_source = frame["source"].value_counts().sort_index()
    click.echo(f"  rows per source: {', '.join(f'{k} {v}' for k, v in per_source.items())}")
    unmapped = sorted(frame.loc[frame["indicator"].isna(), "series_id"].unique())
    if unmapped:
        click.echo(f"  {len(unmapped)} series not used by the features (kept in L0): {', '.join(unmapped)}")
    if frame["parse_error"].notna().any():
        click.echo(f"  {int(frame['parse_error'].notna().sum())} cells did not parse (kept as NaN with parse_error)")
    first = _date(start_s, "--start") if start_s else dates.min()
    last = _date(end_s, "--end") if end_s else dates.max()
    from usdcop_assets.defs.partitions import macro_partitions

    start = dt.date.fromisoformat(macro_partitions.start.strftime("%Y-%m-%d"))
    older = int((dates < max(first, start)).sum())
    if older:
        click.echo(f"  {older} observations before {max(first, start)} (the macro partitions start) stay in the file, not loaded")
    os.environ[SOURCE_ENV] = f"file:{path}"
    ok = materialize_days(first, last, launched_by="usdcop import", tags={"usdcop/import_file": path.name})
    sys.exit(0 if ok else 1)


def keep_unplaced(settings: Settings, path: Path, rows: pd.DataFrame) -> str:
    """Write the rows no partition can hold to the lake (one object per imported file name), so nothing is lost."""
    from usdcop_assets.lake.session_table import write_object
    from usdcop_assets.lake.store import open_store

    stem = path.name.split(".")[0]
    dataset = f"l0/ohlcv_m5_unplaced/{stem}"
    frame = rows.assign(time=rows["time"].astype("datetime64[ns, UTC]"), reason=rows["reason"].astype(str))
    write_object(open_store(settings.lake), dataset, frame)
    where = f"{settings.lake.url}/{dataset}"
    show_unplaced_as_rejects(settings, frame, where)
    return where


def show_unplaced_as_rejects(settings: Settings, frame: pd.DataFrame, where: str) -> int:
    """List the unplaced rows that have a time in the warehouse's ``ohlcv_m5_unplaced`` (reason ``not_a_trading_day`` etc.).

    The lake object stays the original; the table is what the dashboard's rejects view reads beside
    ``ohlcv_m5_rejects``. Keyed by row hash: re-importing the file changes nothing.
    """
    from usdcop_assets.refine.standardize import unplaced_rejects
    from usdcop_assets.warehouse.database import Warehouse

    rejects = unplaced_rejects(frame, where)
    if rejects.empty:
        return 0
    Warehouse(settings.warehouse_url).upsert("ohlcv_m5_unplaced", rejects)
    click.echo(f"  {len(rejects)} of them are listed in the warehouse's ohlcv_m5_unplaced ({', '.join(sorted(set(rejects['reason'])))})")
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
        click.echo(f"check {name}: {'FAILED' if error else 'warning'} ({len(bad)} of {sessions}; {bad[0].description or bad[0].partition})")
    return ok


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

    from usdcop_assets.lake.store import open_store
    from usdcop_assets.warehouse.database import Warehouse

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
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        storage = type(instance.run_storage).__name__
        return f"{storage}, {len(instance.get_run_records(limit=1000))} runs recorded"


def check_home(writes: bool, label: str = "") -> None:
    """Stop a writing command on a home the bar-partitioned code recorded (others only print the line)."""
    import dagster as dg

    from usdcop_assets.defs.definitions import build_definitions
    from usdcop_assets.defs.home_migration import stale_home_message

    with dg.DagsterInstance.get() as instance:
        message = stale_home_message(instance, build_definitions())
    if message and writes:
        raise click.ClickException(message)
    if message:
        click.echo(label + message)


@main.command("rebuild-records")
@click.option("--dry-run", is_flag=True, help="print what would be recorded and wiped; change nothing")
def rebuild_records(dry_run: bool) -> None:
    """Record each session object of the lake in Dagster (one materialization per session), replacing bar-partitioned records."""
    import dagster as dg

    from usdcop_assets.defs.definitions import build_definitions
    from usdcop_assets.defs.home_migration import apply_rebuild, plan_rebuild, session_assets
    from usdcop_assets.lake.store import open_store

    try:
        settings = prepare_environment()
        store = open_store(settings.lake)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"rebuild-records: lake {store.location}; DAGSTER_HOME={settings.dagster_home}{' (dry run)' if dry_run else ''}")
    verb = "would record" if dry_run else "recorded"

    def line(p) -> None:
        wiped = f"; {len(p.bar_keys)} bar partitions {'would be ' if dry_run else ''}wiped" if p.bar_keys else ""
        off = f"; {len(p.off_calendar)} lake dates outside the session calendar left unrecorded" if p.off_calendar else ""
        bad = (f"; unreadable lake objects left unrecorded: {', '.join(p.damaged)} (re-materialize those sessions)"
               if p.damaged else "")
        click.echo(f"  {p.asset.key.to_user_string()}: {p.lake_sessions} lake sessions; {verb} {len(p.to_record)}, "
                   f"{p.up_to_date} already recorded{wiped}{off}{bad}")

    with dg.DagsterInstance.get() as instance:
        plan = plan_rebuild(instance, store, session_assets(build_definitions()))
        if dry_run:
            for p in plan.assets:
                line(p)
        else:
            apply_rebuild(instance, plan, store.location, progress=line)
    for name, n in sorted(plan.other_bar_assets.items()):
        click.echo(f"  {name}: {n} bar partitions left as they are (no session asset of this code; "
                   f"'dagster asset wipe' removes them)")
    click.echo(f"{len(plan.assets)} assets: {verb} {plan.sessions_to_record} sessions, "
               f"{'would wipe' if dry_run else 'wiped'} {plan.bar_partitions} bar partitions from the asset records "
               f"(runs and their logs are kept; the lake and the warehouse are only read)")
@main.command()
def live() -> None:
    """Decide each bar as it is published: a long-lived process (runs until SIGTERM) that polls the source every
    second from each bar's close, stores the session's L0..L5 rows like the batch run and records them in Dagster.

    Sleeps over nights, weekends and holidays; resumes a session from what is stored. Settings:
    USDCOP_LIVE_POLL_SECONDS (1), USDCOP_LIVE_GRACE_MINUTES (10), USDCOP_LIVE_ALERT_AFTER_SECONDS (300).
    """
    try:
        prepare_environment()
        require_available(resolve_source())
        from usdcop_assets.live.loop import LiveSettings

        LiveSettings.from_env()  # a malformed setting fails here, naming the variable
    except (ConfigError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    from usdcop_assets.defs.live.service import run_live

    sys.exit(run_live())


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def ui(args: tuple[str, ...]) -> None:
    """Start the Dagster UI and daemon on this project's instance (``dagster dev``)."""
    prepare_environment()
    check_home(writes=False)
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), *args]
    sys.exit(subprocess.call(cmd, cwd=PROJECT_ROOT))


if __name__ == "__main__":
    main()
