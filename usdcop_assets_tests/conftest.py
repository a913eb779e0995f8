"""Test tiers and shared fixtures (real stores only).

Tiers are the sub-directories: ``unit/`` (no server, no shared data, seconds: ``pytest -m unit``), ``defs/``
(assets materialized with temporary resources; the definitions snapshot) and ``integration/`` (PostgreSQL,
the S3 server, a browser, the shared data, the daemon, subprocess CLIs). The tier marker is applied here
from the directory; prerequisite markers (``pg``, ``s3``, ``browser``, ``shared_data``, ``daemon``) are
written on the tests, and collection refuses a test that uses a server fixture without its marker.

- ``pg_url``: a fresh database on the PostgreSQL at 127.0.0.1:5432 (``USDCOP_TEST_PG`` overrides the
  server URL), dropped at the end. An unreachable server fails the test (never skips), naming the
  command that starts it.
- ``s3_server``: moto's S3-compatible server on a free loopback port, for the lake tests.
- shared data (``shared_data.py``): a test marked ``shared_data`` fails with one line when a file is missing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from usdcop_assets_tests.shared_data import missing_message

TIERS = ("unit", "defs", "integration")  # = the sub-directories; a test's tier is where it lives
# What a test needs besides Python (pyproject.toml describes each); a unit or defs test may carry none of them.
PREREQUISITES = frozenset({"pg", "s3", "browser", "shared_data", "daemon"})
# Fixtures that reach a server: a test using one must say so with the marker (checked at collection).
SERVER_FIXTURES = {"pg_url": "pg", "fresh_pg_url": "pg", "s3_server": "s3", "s3_bucket": "s3"}
# pytest ignores marks on fixture params, so a store fixture's server case (the warehouse fixture's
# "postgresql", a lake fixture's "s3") gets its marker here from the param's value (any param so named).
SERVER_FIXTURE_PARAMS = {"postgresql": "pg", "s3": "s3"}


def pytest_collection_modifyitems(config, items):
    root = Path(__file__).resolve().parent
    problems = []
    for item in items:
        try:
            tier = Path(item.path).resolve().relative_to(root).parts[0]
        except ValueError:
            continue
        if tier not in TIERS:
            problems.append(f"{item.nodeid}: test modules live in {'/, '.join(TIERS)}/")
            continue
        item.add_marker(getattr(pytest.mark, tier))
        for value in getattr(getattr(item, "callspec", None), "params", {}).values():
            if isinstance(value, str) and value in SERVER_FIXTURE_PARAMS:
                item.add_marker(SERVER_FIXTURE_PARAMS[value])
        marks = {m.name for m in item.iter_markers()}
        needs = {SERVER_FIXTURES[f] for f in item.fixturenames if f in SERVER_FIXTURES}
        if needs - marks:
            problems.append(f"{item.nodeid}: uses a server fixture, mark it {sorted(needs - marks)}")
        if tier != "integration" and marks & PREREQUISITES:
            problems.append(f"{item.nodeid}: needs {sorted(marks & PREREQUISITES)}, so it belongs in integration/")
    if problems:
        raise pytest.UsageError("test tiers:\n  " + "\n  ".join(problems))


def pytest_runtest_setup(item):
    # Not a skip: a test that needs the recorded history fails, naming the file and the variable, before its
    # fixtures try to read it (pure tests never get here, so a missing file does not stop them).
    if item.get_closest_marker("shared_data") is not None:
        message = missing_message()
        if message:
            pytest.fail(message, pytrace=False)


PG_SERVER = os.environ.get("USDCOP_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_or_fail():
    engine = sa.create_engine(PG_SERVER, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:
        # Never a skip, in CI or not: a test marked pg that cannot reach the server has not proved anything.
        # (Deselect them with -m "not pg", or run the unit tier: -m unit.)
        engine.dispose()
        pytest.fail(
            f"PostgreSQL at {PG_SERVER} is not reachable ({type(exc).__name__}); start it with: bash scripts/pg-up.sh",
            pytrace=False,
        )
    return engine


def _new_database():
    admin = _pg_or_fail()
    name = f"usdcop_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(PG_SERVER).set(database=name)
    yield url.render_as_string(hide_password=False)
    from usdcop_assets.defs.resources import WarehouseResource

    # the resource keeps one pooled Warehouse per URL: close its connections to this database before dropping it
    WarehouseResource(url=url.render_as_string(hide_password=False)).warehouse().dispose()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(scope="session")
def pg_url():
    """URL of a new, empty PostgreSQL database shared by this test session (tests must scope their rows)."""
    yield from _new_database()


@pytest.fixture
def fresh_pg_url():
    """URL of a new, empty PostgreSQL database for one test (whole-table counts are then its own)."""
    yield from _new_database()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """Endpoint URL of a moto S3 server on loopback; AWS variables point at it for the session."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("moto S3 server did not start")
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    yield endpoint
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh bucket on the loopback S3 server."""
    import boto3

    name = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def usdcop_env(tmp_path, monkeypatch):
    """An embedded-default platform home in a temporary directory (no store variables set)."""
    for var in ("USDCOP_LAKE_URL", "USDCOP_WAREHOUSE_URL", "USDCOP_SOURCE", "TWELVEDATA_API_KEYS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("USDCOP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home" / "dagster_home"))
    # every bar, clean: these tests count rows and checks (the default feed's defects: test_synthetic_market)
    monkeypatch.setenv("USDCOP_SOURCE", "synthetic:clean")
    (tmp_path / "home" / "dagster_home").mkdir(parents=True)
    return tmp_path / "home"


@pytest.fixture(scope="session")
def main_job_home(tmp_path_factory):
    """A home after a main-job-like run (dashboard_home.py), shared by the dashboard's AppTest and browser tests."""
    from usdcop_assets_tests.dashboard_home import build_main_job_home

    return build_main_job_home(tmp_path_factory.mktemp("main_job_home"))
