"""The compose stack's database roles and read-only webserver, against the test PostgreSQL server.

- ``docker/initdb/roles.sql`` (what the databases' init script runs) on a fresh database: the writer
  role creates the warehouse schema and upserts; the reader role reads, through the dashboard's reader
  too, and can neither write nor create; re-running the script (password rotation) keeps all that;
- the viewers' webserver: ``dagster-webserver --read-only`` on ``docker/dagster-readonly.yaml`` as the
  SELECT-only role serves queries and refuses launching, terminating and deleting runs over GraphQL,
  while the operators' webserver on ``docker/dagster.yaml`` launches the same run (the control). The
  reader role cannot write the instance's tables even without the flag.

The test server uses trust authentication, so passwords are not checked here; privileges are.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.pg

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
sys.path.insert(0, str(ROOT / "streamlit_app"))


def _psql_roles(
    url: sa.URL, writer: str, reader: str, writer_password: str = "w-pass", reader_password: str = "r-pass"
) -> None:
    """Run docker/initdb/roles.sql as the database's admin, the way docker/initdb/10-roles.sh does."""
    cmd = [
        "psql",
        "-v",
        "ON_ERROR_STOP=1",
        "--no-psqlrc",
        "-q",
        "-h",
        url.host or "127.0.0.1",
        "-p",
        str(url.port or 5432),
        "-U",
        url.username or "postgres",
        "-d",
        url.database,
        "-v",
        f"writer_user={writer}",
        "-v",
        f"writer_password={writer_password}",
        "-v",
        f"reader_user={reader}",
        "-v",
        f"reader_password={reader_password}",
        "-f",
        str(DOCKER / "initdb" / "roles.sql"),
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=60, env={**os.environ, "PGPASSWORD": url.password or ""}
    )
    assert out.returncode == 0, out.stderr


@pytest.fixture
def roles(fresh_pg_url):
    """A fresh database with a writer and a reader role (cluster-wide names unique to this test)."""
    admin_url = sa.make_url(fresh_pg_url)
    tag = uuid.uuid4().hex[:8]
    writer, reader = f"usdcop_writer_{tag}", f"usdcop_reader_{tag}"
    _psql_roles(admin_url, writer, reader)
    yield admin_url, writer, reader
    admin = sa.create_engine(admin_url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{admin_url.database}" WITH (FORCE)')
        for role in (writer, reader):
            conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
    admin.dispose()


def test_warehouse_roles_writer_writes_reader_only_reads(roles):
    import data  # streamlit_app/data.py

    from usdcop_assets.core import calendar as cal
    from usdcop_assets.sources.synthetic import synthetic_bars
    from usdcop_assets.storage.warehouse.database import Warehouse

    admin_url, writer, reader = roles
    writer_wh = Warehouse(admin_url.set(username=writer, password=None))
    writer_wh.ensure_schema()  # creates every table as the writer
    bars = synthetic_bars(cal.session_bars(pd.Timestamp("2025-03-05").date()), defects=False)
    bars = bars.assign(is_flat=bars["high"] == bars["low"], time_shift_hours=0)  # the L1 columns of the table
    assert writer_wh.upsert("usdcop_m5_ohlcv", bars) == 60
    reader_url = admin_url.set(username=reader, password=None)
    dashboard = data.WarehouseReader(reader_url)  # what the dashboard opens with the reader's URL
    assert len(dashboard.window("usdcop_m5_ohlcv", ["time", "close"])) == 60
    for statement in (
        "INSERT INTO usdcop_m5_ohlcv (time, symbol) VALUES (now(), 'X')",
        "UPDATE usdcop_m5_ohlcv SET close = 0",
        "DELETE FROM usdcop_m5_ohlcv",
        "TRUNCATE usdcop_m5_ohlcv",
        "CREATE TABLE planted (a int)",
        "DROP TABLE usdcop_m5_ohlcv",
        "ALTER TABLE usdcop_m5_ohlcv ADD COLUMN x int",
    ):
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied|must be owner"):
            with dashboard.engine.begin() as conn:
                conn.exec_driver_sql(statement)
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):  # the platform's writer path, as the reader
        Warehouse(reader_url).upsert("usdcop_m5_ohlcv", bars)
    # the writer is no superuser and cannot create roles or databases
    with writer_wh.engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
        ).one()
    assert tuple(row) == (False, False, False)
    # rotating passwords = re-running the script: idempotent, privileges unchanged
    _psql_roles(admin_url, writer, reader, "rotated-w", "rotated-r")
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        with dashboard.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM usdcop_m5_ohlcv")
    assert writer_wh.upsert("usdcop_m5_ohlcv", bars) == 60 and len(dashboard.window("usdcop_m5_ohlcv", ["time"])) == 60
    writer_wh.dispose()
    dashboard.engine.dispose()


# --- the read-only webserver ------------------------------------------------------------------------

JOB = """
import dagster as dg

@dg.op
def hello():
    return 1

@dg.job
def hello_job():
    hello()

defs = dg.Definitions(jobs=[hello_job])
"""
LAUNCH = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId status } }
  ... on UnauthorizedError { message } ... on PythonError { message } } }"""
TERMINATE = """mutation($id: String!) { terminateRun(runId: $id) { __typename
  ... on UnauthorizedError { message } ... on TerminateRunFailure { message } } }"""
DELETE = """mutation($id: String!) { deleteRun(runId: $id) { __typename ... on UnauthorizedError { message } } }"""
RUNS = "{ runsOrError { __typename ... on Runs { results { runId status } } } }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gql(port: int, query: str, variables: dict | None = None) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = json.load(resp)
    assert "errors" not in body, body
    return body["data"]


class Webserver:
    def __init__(self, home: Path, env: dict, job: Path, *flags: str):
        self.port = _free_port()
        self.log = open(home / f"webserver-{self.port}.log", "w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dagster_webserver",
                *flags,
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-f",
                str(job),
            ],
            env=env,
            cwd=home,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while True:
            assert self.proc.poll() is None, (home / f"webserver-{self.port}.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "webserver did not come up in 120 s"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/server_info", timeout=2)
                break
            except OSError:
                time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.log.close()


def _instance_env(home: Path, url: sa.URL, user: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "USDCOP_"))}
    env.update(
        DAGSTER_HOME=str(home),
        DAGSTER_PG_HOST=url.host or "127.0.0.1",
        DAGSTER_PG_PORT=str(url.port or 5432),
        DAGSTER_PG_DB=url.database,
        DAGSTER_PG_USER=user,
        DAGSTER_PG_PASSWORD="",
        PYTHONPATH=str(ROOT),
    )
    return env


def test_the_read_only_webserver_refuses_mutations_and_its_role_cannot_write(roles, tmp_path):
    import dagster as dg

    admin_url, writer, reader = roles
    job = tmp_path / "job.py"
    job.write_text(JOB)
    ops_home, ro_home = tmp_path / "ops_home", tmp_path / "readonly_home"
    ops_home.mkdir()
    ro_home.mkdir()
    shutil.copy(DOCKER / "dagster.yaml", ops_home / "dagster.yaml")
    shutil.copy(DOCKER / "dagster-readonly.yaml", ro_home / "dagster.yaml")
    ops_env, ro_env = _instance_env(ops_home, admin_url, writer), _instance_env(ro_home, admin_url, reader)
    selector = {
        "p": {
            "selector": {
                "repositoryLocationName": "job.py",
                "repositoryName": "__repository__",
                "jobName": "hello_job",
            },
            "runConfigData": {},
        }
    }

    # the operators' webserver (the instance's owner role) creates the tables and accepts a launch: the control
    operators = Webserver(ops_home, ops_env, job)
    try:
        launched = _gql(operators.port, LAUNCH, selector)["launchRun"]
    finally:
        operators.stop()
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    viewers = Webserver(ro_home, ro_env, job, "--read-only")
    try:
        before = _gql(viewers.port, RUNS)["runsOrError"]["results"]
        assert [r["runId"] for r in before] == [run_id] and before[0]["status"] == "QUEUED"  # it reads
        refused = _gql(viewers.port, LAUNCH, selector)["launchRun"]
        assert refused["__typename"] == "UnauthorizedError", refused
        terminate = _gql(viewers.port, TERMINATE, {"id": run_id})["terminateRun"]
        assert terminate["__typename"] == "TerminateRunFailure" and "do not have permission" in terminate["message"], (
            terminate
        )
        assert _gql(viewers.port, DELETE, {"id": run_id})["deleteRun"]["__typename"] == "UnauthorizedError"
        assert _gql(viewers.port, RUNS)["runsOrError"]["results"] == before  # nothing launched, canceled or wiped
    finally:
        viewers.stop()

    # without the flag too, the reader role cannot change the instance: its database rights are SELECT only
    saved = {
        k: os.environ.get(k)
        for k in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_DB", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD")
    }
    os.environ.update({k: ro_env[k] for k in saved})
    try:
        with dg.DagsterInstance.from_config(str(ro_home)) as instance:
            assert [r.dagster_run.run_id for r in instance.get_run_records()] == [run_id]
            with pytest.raises(Exception, match="permission denied"):
                instance.delete_run(run_id)
            with pytest.raises(Exception, match="permission denied"):
                instance.add_run_tags(run_id, {"planted": "yes"})
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
