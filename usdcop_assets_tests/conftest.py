"""Shared fixtures: real stores only.

- ``pg_url``: a fresh database on the PostgreSQL at 127.0.0.1:5432 (``USDCOP_TEST_PG`` overrides the
  server URL), dropped at the end. In CI (``CI`` set) an unreachable server fails the run instead of
  skipping, so the warehouse tests cannot silently not run.
- ``s3_server``: moto's S3-compatible server on a free loopback port, for the lake tests.
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

# The recorded history every developer and CI has at ../shared/data from the project root
# (USDCOP_SHARED_DATA points elsewhere). Never committed; tests that use it fail, not skip, without it.
def _shared_data() -> Path:
    """USDCOP_SHARED_DATA, else ../shared/data of this checkout, else of the repository it was cloned from."""
    if os.environ.get("USDCOP_SHARED_DATA"):
        return Path(os.environ["USDCOP_SHARED_DATA"])
    root = Path(__file__).resolve().parents[1]
    candidates = [root.parent / "shared" / "data"]
    try:  # a clean clone elsewhere (CI's scratch checkout): the data sits next to its origin
        import subprocess

        origin = subprocess.run(
            ["git", "-C", str(root), "config", "--get", "remote.origin.url"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        if origin and "://" not in origin and Path(origin).is_dir():
            candidates.append(Path(origin).resolve().parent / "shared" / "data")
    except (OSError, subprocess.SubprocessError):
        pass
    return next((c for c in candidates if c.is_dir()), candidates[0])


SHARED_DATA = _shared_data()
SHARED_BARS = SHARED_DATA / "usdcop_m5_ohlcv_2020_2024h1.csv.gz"
SHARED_MACRO = SHARED_DATA / "macro_indicators_daily_to_2024h1.csv.gz"


def pytest_sessionstart(session):
    missing = [p for p in (SHARED_BARS, SHARED_MACRO) if not p.is_file()]
    if missing:
        raise pytest.UsageError(f"shared test data not found: {', '.join(map(str, missing))} (set USDCOP_SHARED_DATA)")
PG_SERVER = os.environ.get("USDCOP_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_or_fail():
    engine = sa.create_engine(PG_SERVER, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:
        msg = f"PostgreSQL at {PG_SERVER} is not reachable: {exc}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return engine


def _new_database():
    admin = _pg_or_fail()
    name = f"usdcop_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(PG_SERVER).set(database=name)
    yield url.render_as_string(hide_password=False)
    from usdcop_assets.defs import resources

    for wh in list(resources._warehouses.values()):
        wh.dispose()
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
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
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
