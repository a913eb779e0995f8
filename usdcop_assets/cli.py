"""``usdcop``: the platform from a terminal. Every command goes through Dagster and the configured
instance, so what it materializes shows up in the Dagster UI like any other run."""

from __future__ import annotations

import datetime as dt
import os
import shutil
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
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    target = settings.dagster_home / "dagster.yaml"
    if not target.exists():
        shutil.copyfile(PROJECT_ROOT / "dagster.yaml", target)
    return settings


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
def backfill(start_s: str | None, end_s: str | None, layers: str) -> None:
    """Materialize the selected layers for every bar and session from START to END (one run per partitioning)."""
    try:
        settings = prepare_environment()
        require_available(resolve_source())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    import dagster as dg

    from usdcop_assets.jobs import layer_selection, parse_layers
    from usdcop_assets.partitions import bar_key_range, history_start, session_key_range

    first_default, last_default = default_recent_range()
    first = _date(start_s, "--start") if start_s else first_default
    last = _date(end_s, "--end") if end_s else last_default
    try:
        chosen = parse_layers(layers)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--layers") from None
    if last < first:
        raise click.BadParameter(f"--end {last} is before --start {first}")
    if first < history_start():
        raise click.BadParameter(f"--start {first} is before the partitions start {history_start()} (USDCOP_HISTORY_START)")
    try:
        key_range = bar_key_range(first, last)
    except cal.CalendarError as exc:
        raise click.BadParameter(str(exc)) from None
    last_closed = cal.last_closed_bar(dt.datetime.now(dt.timezone.utc))
    if cal.parse_bar_key(key_range.end) > last_closed:
        key_range = dg.PartitionKeyRange(key_range.start, cal.bar_key(last_closed))
        click.echo(f"clipped the range to the last closed bar {key_range.end}")

    from usdcop_assets.definitions import build_definitions
    from usdcop_assets.jobs import M5_CHAIN_JOB

    defs = build_definitions()  # from the current environment, not whatever was imported first
    job = defs.resolve_job_def(M5_CHAIN_JOB)
    graph = defs.resolve_asset_graph()
    wanted = layer_selection(chosen).resolve(graph) & set(job.asset_layer.selected_asset_keys)
    missing_layers = [layer for layer in chosen if not any(k.path[0] == layer.lower() for k in wanted)]
    if missing_layers:
        click.echo(f"layers not built yet (skipped): {','.join(missing_layers)}")
    if not wanted:
        raise click.ClickException("none of the selected layers has assets yet")
    # the calendar counts bars instantly; asking Dagster for the keys walks its cron (~5 s for six years)
    first_bar, last_bar = cal.parse_bar_key(key_range.start), cal.parse_bar_key(key_range.end)
    n_partitions = len(cal.expected_bars(first_bar, last_bar + pd.Timedelta(minutes=cal.BAR_MINUTES)))
    click.echo(
        f"backfill {key_range.start} .. {key_range.end}: {n_partitions} bars, "
        f"assets {', '.join(sorted(k.to_user_string() for k in wanted))}; source={resolve_source()}; "
        f"DAGSTER_HOME={settings.dagster_home}"
    )
    instance = dg.DagsterInstance.get()
    subset = job.get_subset(asset_selection=set(wanted), asset_check_selection=set())
    result = subset.execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": key_range.start,
            "dagster/asset_partition_range_end": key_range.end,
            "usdcop/launched_by": "usdcop backfill",
        },
        raise_on_error=False,
    )
    click.echo(f"run {result.run_id}: {'success' if result.success else 'FAILURE'}")
    if not result.success:
        sys.exit(1)
    sys.exit(0 if run_checks(defs, instance, wanted, session_key_range(first, last)) else 1)


def run_checks(defs, instance, asset_keys, key_range) -> bool:
    """Materialize the session audits of ``asset_keys`` (and their checks) in one session-range run."""
    import dagster as dg

    from usdcop_assets.audits import audit_key
    from usdcop_assets.jobs import AUDIT_JOB

    job = defs.resolve_job_def(AUDIT_JOB)
    audits = {audit_key(k) for k in asset_keys} & set(job.asset_layer.selected_asset_keys)
    if not audits:
        return True
    result = job.get_subset(asset_selection=audits).execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": key_range.start, "dagster/asset_partition_range_end": key_range.end},
        raise_on_error=False,
    )
    evaluations = [e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    for ev in sorted(evaluations, key=lambda e: e.asset_check_key.to_user_string()):
        verdict = "passed" if ev.passed else ("FAILED" if ev.severity == dg.AssetCheckSeverity.ERROR else "warning")
        click.echo(f"check {ev.asset_check_key.to_user_string()}: {verdict}")
    # A WARN check (a vendor gap) is reported but does not fail the backfill; an ERROR check does.
    return result.success and all(ev.passed or ev.severity != dg.AssetCheckSeverity.ERROR for ev in evaluations)


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
    sys.exit(0 if ok else 1)


def _instance_summary() -> str:
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        storage = type(instance.run_storage).__name__
        return f"{storage}, {len(instance.get_run_records(limit=1000))} runs recorded"


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def ui(args: tuple[str, ...]) -> None:
    """Start the Dagster UI and daemon on this project's instance (``dagster dev``)."""
    prepare_environment()
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), *args]
    sys.exit(subprocess.call(cmd, cwd=PROJECT_ROOT))


if __name__ == "__main__":
    main()
