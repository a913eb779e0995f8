"""The production Dagster instance (docker/dagster.yaml, dagster-postgres) against a real PostgreSQL.

One test, two halves on the same fresh database:

1. a run executed in process on the instance: one session of ``l0/ohlcv_m5`` (synthetic source) lands
   in the lake and its materialization in PostgreSQL's ``event_logs`` table;
2. the run queue: a run submitted the way the UI does it (GraphQL ``launchPipelineExecution``) is
   QUEUED by the QueuedRunCoordinator, and a real ``dagster-daemon run`` subprocess dequeues,
   launches and completes it; the daemon is then stopped with SIGTERM.

The instance reads its credentials from ``DAGSTER_PG_*``. The test server uses trust auth, so
``DAGSTER_PG_PASSWORD`` is set to the empty string: Dagster's ``env:`` source accepts an empty value
(only an unset variable is an error) and dagster-postgres then leaves the password out of the URL.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.pg

ROOT = Path(__file__).resolve().parents[2]
L0 = ("l0", "ohlcv_m5")
RUN_TIMEOUT_S = 150


def _sessions(n: int) -> list[str]:
    """The keys of the last ``n`` complete trading sessions before today (Bogota), oldest first."""
    from usdcop_assets.core import calendar as cal

    days = [cal.previous_trading_day(dt.datetime.now(cal.TZ).date())]
    while len(days) < n:
        days.insert(0, cal.previous_trading_day(days[0]))
    return [cal.session_key(d) for d in days]


@pytest.fixture
def pg_instance_env(fresh_pg_url, tmp_path, monkeypatch):
    """DAGSTER_HOME with docker/dagster.yaml and DAGSTER_PG_* pointing at a fresh database."""
    url = sa.make_url(fresh_pg_url)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(ROOT / "docker" / "dagster.yaml", dagster_home / "dagster.yaml")
    for var in (
        "USDCOP_LAKE_URL",
        "USDCOP_WAREHOUSE_URL",
        "USDCOP_SOURCE",
        "USDCOP_MACRO_SOURCE",
        "TWELVEDATA_API_KEYS",
        "FRED_API_KEY",
    ):
        monkeypatch.delenv(var, raising=False)
    env = {
        "DAGSTER_HOME": str(dagster_home),
        "DAGSTER_PG_HOST": url.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_DB": url.database,
        "DAGSTER_PG_USER": url.username or "postgres",
        "DAGSTER_PG_PASSWORD": url.password or "",  # trust auth: empty, and that must be accepted
        "DAGSTER_EVENT_BATCH_SIZE": "5000",  # as in docker/compose.yaml
        "USDCOP_HOME": str(tmp_path / "home"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return {"url": url, "dagster_home": dagster_home, "home": tmp_path / "home", "tmp": tmp_path}


def _materializations(url: sa.URL) -> list[tuple[str, str]]:
    """(asset key, partition) of every ASSET_MATERIALIZATION row in the PostgreSQL event log."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT asset_key, partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
            ).all()
    finally:
        engine.dispose()
    return [(r[0], r[1]) for r in rows]


def _launch_queued(instance, workspace: Path, partition: str) -> str:
    """Submit ``session_chain`` restricted to l0/ohlcv_m5 for one session, through GraphQL like the UI."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster_graphql.client.query import LAUNCH_PIPELINE_EXECUTION_MUTATION
    from dagster_graphql.test.utils import execute_dagster_graphql

    params = {
        "selector": {
            "repositoryLocationName": "usdcop_assets",
            "repositoryName": "__repository__",
            "jobName": "session_chain",
            "assetSelection": [{"path": list(L0)}],
            "assetCheckSelection": [],
        },
        "runConfigData": {},
        "mode": "default",
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
    }
    with WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(workspace)])) as process_context:
        result = execute_dagster_graphql(
            process_context.create_request_context(), LAUNCH_PIPELINE_EXECUTION_MUTATION, {"executionParams": params}
        )
    launched = result.data["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def _stop(proc: subprocess.Popen, timeout: float = 30) -> int | None:
    """SIGTERM the process, wait; then SIGKILL its whole session (code servers it spawned)."""
    code = None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    else:
        code = proc.returncode
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # children left behind, if any
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait(timeout=10)
    return code


def test_postgres_instance_runs_and_queue(pg_instance_env):
    import dagster as dg
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster._core.storage.dagster_run import DagsterRunStatus
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    from usdcop_assets.core.settings import Settings
    from usdcop_assets.defs.definitions import build_defs

    url = pg_instance_env["url"]
    first, second = _sessions(2)

    instance = dg.DagsterInstance.get()  # from $DAGSTER_HOME/dagster.yaml = docker/dagster.yaml
    try:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        # The scheme psycopg2 (SQLAlchemy 2.1 + psycopg 3 breaks dagster-postgres's NOTIFY watcher).
        assert instance.run_storage.postgres_url.startswith("postgresql+psycopg2://")

        # --- 1. a run in process: lake object + materialization row in PostgreSQL -----------------
        defs = build_defs(Settings.from_env())
        job = defs.resolve_job_def("session_chain").get_subset(
            asset_selection={dg.AssetKey(list(L0))}, asset_check_selection=set()
        )
        result = job.execute_in_process(partition_key=first, instance=instance)
        assert result.success
        rows = _materializations(url)
        assert ('["l0", "ohlcv_m5"]', first) in rows, rows
        assert (pg_instance_env["home"] / "lake" / "l0" / "ohlcv_m5" / f"date={first}" / "data.parquet").is_file()
        stored = instance.get_run_by_id(result.run_id)
        assert stored.status == DagsterRunStatus.SUCCESS and stored.tags["dagster/partition"] == first

        # --- 2. the run queue: submitted -> QUEUED -> daemon dequeues and runs it -----------------
        workspace = pg_instance_env["tmp"] / "workspace.yaml"
        workspace.write_text(
            "load_from:\n"
            "  - python_module:\n"
            "      module_name: usdcop_assets.defs.definitions\n"
            "      location_name: usdcop_assets\n"
            f"      working_directory: {ROOT}\n"
        )
        run_id = _launch_queued(instance, workspace, second)
        assert instance.get_run_by_id(run_id).status == DagsterRunStatus.QUEUED  # no daemon yet

        log_path = pg_instance_env["tmp"] / "daemon.log"
        daemon_bin = Path(sys.executable).with_name("dagster-daemon")
        with open(log_path, "wb") as log:
            daemon = subprocess.Popen(
                [str(daemon_bin), "run", "-w", str(workspace)],
                cwd=ROOT,
                env=dict(os.environ),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killable with the code servers it spawns
            )
        try:
            deadline = time.monotonic() + RUN_TIMEOUT_S
            status = None
            while time.monotonic() < deadline:
                status = instance.get_run_by_id(run_id).status
                if status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
                    break
                assert daemon.poll() is None, f"dagster-daemon exited early:\n{log_path.read_text()[-4000:]}"
                time.sleep(1)
            assert status == DagsterRunStatus.SUCCESS, (
                f"run {run_id} is {status}; daemon log:\n{log_path.read_text()[-4000:]}"
            )
        finally:
            code = _stop(daemon)
        assert code is not None, f"dagster-daemon ignored SIGTERM:\n{log_path.read_text()[-4000:]}"

        # The run went through the coordinator: enqueued, then launched by the daemon, then done ...
        types = [e.dagster_event.event_type_value for e in instance.all_logs(run_id) if e.dagster_event]
        assert {"PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_SUCCESS"} <= set(types), types
        assert types.index("PIPELINE_ENQUEUED") < types.index("PIPELINE_STARTING") < types.index("PIPELINE_SUCCESS")
        # ... and its materialization is in the PostgreSQL event log next to the first one.
        rows = _materializations(url)
        assert ('["l0", "ohlcv_m5"]', second) in rows and ('["l0", "ohlcv_m5"]', first) in rows, rows
        # The daemon wrote its heartbeats to the same database.
        assert instance.get_daemon_heartbeats(), "no daemon heartbeat in the PostgreSQL instance"
    finally:
        instance.dispose()
