"""Operations faults: the source down for a whole session, the warehouse cut during a write, the lake
going down mid-run, and a run killed with SIGKILL. Each time the run fails (or dies), leaves no partial
object and no partial write, and the re-run completes with exactly the rows and bytes of a clean run.

The faults are real: a loopback TwelveData answering 503 or a closed port, a TCP proxy in front of
PostgreSQL / the S3 server cut at a chosen protocol message (``fault_helpers``), a SIGKILL of the
``usdcop backfill`` process group.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from usdcop_assets.core import calendar as cal
from usdcop_assets.defs.partitions import session_key_range
from usdcop_assets.sources.synthetic import synthetic_bars
from usdcop_assets.storage.lake.session_table import SessionTable
from usdcop_assets.storage.lake.store import LocalObjectStore, S3ObjectStore
from usdcop_assets.testing.vendor_server import TD_PATH, VendorServer
from usdcop_assets_tests.fault_helpers import FaultProxy, http_request_cut, pg_write_cut

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
D1, D2 = dt.date(2025, 3, 5), dt.date(2025, 3, 6)
KEY = "FAKE-TD-KEY-FAULTS-0001"
PROJECT = Path(__file__).resolve().parents[2]
BAR_DATASETS = ("l0/ohlcv_m5", "l1/ohlcv_m5")


# --- helpers ---------------------------------------------------------------------------------------


def _project_instance(dagster_home: Path, monkeypatch) -> dg.DagsterInstance:
    """The project's embedded instance (batched event log), as ``usdcop`` configures it."""
    from usdcop_assets.cli import instance_yaml

    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "5000")
    monkeypatch.setenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(instance_yaml(dagster_home))
    return dg.DagsterInstance.from_config(str(dagster_home))


@pytest.fixture
def instance(usdcop_env, monkeypatch):
    with _project_instance(usdcop_env / "dagster_home", monkeypatch) as inst:
        yield inst


def _run(instance, first: dt.date, last: dt.date, layers: str = "L0,L1"):
    from usdcop_assets.core.settings import Settings
    from usdcop_assets.defs.automation.jobs import layers_job
    from usdcop_assets.defs.definitions import build_defs

    key_range = session_key_range(first, last)
    return layers_job(build_defs(Settings.from_env()), layers).execute_in_process(
        instance=instance, tags={RANGE_START: key_range.start, RANGE_END: key_range.end}, raise_on_error=False
    )


def _failures(result) -> list[tuple[str, str]]:
    return [
        (e.step_key, e.step_failure_data.error.to_string())
        for e in result.all_events
        if e.event_type_value == "STEP_FAILURE" and e.step_failure_data and e.step_failure_data.error
    ]


def _window(first: dt.date, last: dt.date):
    return cal.session_open(first), cal.session_end(last)


def _sqlite_rows(home: Path, table: str) -> list[tuple]:
    engine = sa.create_engine(f"sqlite:///{home / 'warehouse.sqlite'}")
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(f'SELECT * FROM "{table}" ORDER BY 1, 2, 3')]
    finally:
        engine.dispose()


def _assert_manifests_consistent(table: SessionTable, days) -> None:
    for day in days:
        assert table.verify(day) == [], (table.dataset, day)


def _sha(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


# --- 1. the source down for a whole session ---------------------------------------------------------


@dataclass
class FlakyVendor(VendorServer):
    """The loopback TwelveData, answering HTTP 503 to every request whose window touches a down day."""

    down_days: set[str] = field(default_factory=set)

    def _time_series(self, p):
        first, last = p.get("start_date", "")[:10], p.get("end_date", "")[:10]
        if any(first <= d <= last for d in self.down_days):
            return 503, {"code": 503, "message": "Service Unavailable", "status": "error"}
        return super()._time_series(p)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("outage", ["http_503", "connection_refused"])
def test_source_down_for_a_whole_session_fails_the_run_and_the_rerun_matches_a_clean_run(
    usdcop_env, instance, tmp_path, monkeypatch, outage
):
    from usdcop_assets.sources.twelvedata import TwelveDataClient

    # Same attempts, short waits: the retry policy is exercised, the test does not sleep for a minute.
    original = TwelveDataClient.from_env.__func__

    def quick(cls, settings=None, **kwargs):
        kwargs.setdefault("base_delay", 0.01)
        kwargs.setdefault("max_delay", 0.02)
        return original(cls, settings, **kwargs)

    monkeypatch.setattr(TwelveDataClient, "from_env", classmethod(quick))
    # the step's own retry policy (policies.source_retry_policy) runs too, without its 10-40 s waits
    from usdcop_assets_tests.defs_helpers import asset_def

    monkeypatch.setenv("USDCOP_RETRY_DELAY_SECONDS", "0")
    policy = asset_def("l0/ohlcv_m5").op.retry_policy
    assert policy is not None and policy.delay == 0
    step_attempts = 1 + policy.max_retries
    with FlakyVendor() as server:
        server.set_bars(synthetic_bars(cal.expected_bars(*_window(D1, D2)), defects=False))
        monkeypatch.setenv("USDCOP_SOURCE", "twelvedata")
        monkeypatch.setenv("TWELVEDATA_API_KEYS", KEY)
        monkeypatch.setenv("TWELVEDATA_BASE_URL", server.url)
        lake = usdcop_env / "lake"
        assert _run(instance, D1, D1).success
        d1_before = {p: _sha(p.read_bytes()) for p in lake.rglob("*.parquet")}

        # D2: the source is down for the whole session
        sent_before = len(server.paths(TD_PATH))
        if outage == "http_503":
            server.down_days.add(D2.isoformat())
        else:
            monkeypatch.setenv("TWELVEDATA_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
        failed = _run(instance, D2, D2)
        assert not failed.success
        failures = _failures(failed)
        assert [step for step, _ in failures] == ["l0__ohlcv_m5"]
        error = failures[0][1]
        assert "TwelveData time_series" in error and "failed after 6 attempts" in error
        assert ("HTTP 503" in error) if outage == "http_503" else ("connection error" in error)
        assert KEY not in error
        if outage == "http_503":  # every attempt reached the vendor, and each was for the down session
            attempts = server.paths(TD_PATH)[sent_before:]
            assert len(attempts) == 6 * step_attempts  # 6 client attempts in each step attempt
            assert all(r.params["start_date"].startswith(D2.isoformat()) for r in attempts)
        # not a silently empty L0: nothing of D2 is stored anywhere, D1 is untouched
        for dataset in BAR_DATASETS:
            assert not (lake / dataset / f"date={D2.isoformat()}").exists()
        assert {p: _sha(p.read_bytes()) for p in lake.rglob("*.parquet")} == d1_before
        assert not failed.get_asset_materialization_events()
        assert [r for r in _sqlite_rows(usdcop_env, "usdcop_m5_ohlcv") if r[0].startswith(D2.isoformat())] == []

        # the source comes back: the session, then the whole range again
        server.down_days.clear()
        monkeypatch.setenv("TWELVEDATA_BASE_URL", server.url)
        assert _run(instance, D2, D2).success
        assert _run(instance, D1, D2).success
        counts = _counts(usdcop_env)

        # a clean run of the same range into another home, from the same vendor data
        clean_home = tmp_path / "clean"
        monkeypatch.setenv("USDCOP_HOME", str(clean_home))
        with _project_instance(tmp_path / "clean_dh", monkeypatch) as clean_instance:
            assert _run(clean_instance, D1, D2).success
        assert counts == _counts(clean_home)
    assert counts["lake"] == {(ds, d): 60 for ds in BAR_DATASETS for d in (D1.isoformat(), D2.isoformat())}
    assert counts["usdcop_m5_ohlcv"] == (120, 120) and counts["ohlcv_m5_rejects"] == (0, 0)
    for dataset in BAR_DATASETS:
        _assert_manifests_consistent(SessionTable(LocalObjectStore(usdcop_env / "lake"), dataset), (D1, D2))


def _counts(home: Path) -> dict:
    """Rows per (dataset, session) in the lake; (rows, distinct natural keys) per warehouse table."""
    out: dict = {"lake": {}}
    for dataset in BAR_DATASETS:
        for path in sorted((home / "lake" / dataset).glob("date=*/data.parquet")):
            out["lake"][(dataset, path.parent.name[5:])] = pq.read_metadata(path).num_rows
    engine = sa.create_engine(f"sqlite:///{home / 'warehouse.sqlite'}")
    with engine.connect() as conn:
        out["usdcop_m5_ohlcv"] = tuple(
            conn.exec_driver_sql("SELECT COUNT(*), COUNT(DISTINCT time || symbol) FROM usdcop_m5_ohlcv").one()
        )
        out["ohlcv_m5_rejects"] = tuple(
            conn.exec_driver_sql(
                "SELECT COUNT(*), COUNT(DISTINCT time || symbol || row_hash) FROM ohlcv_m5_rejects"
            ).one()
        )
    engine.dispose()
    return out


# --- 2. the warehouse cut during a write ------------------------------------------------------------

_OHLCV = "time, symbol, open, high, low, close, volume, source, is_flat, ingested_at, time_shift_hours"


def _pg_rows(url: str) -> list[tuple]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [
                tuple(r) for r in conn.exec_driver_sql(f"SELECT {_OHLCV} FROM usdcop_m5_ohlcv ORDER BY time, symbol")
            ]
    finally:
        engine.dispose()


@pytest.mark.pg
@pytest.mark.parametrize(
    "path, at",
    [("first_write", "copy"), ("first_write", "commit"), ("upsert", "commit")],
)
def test_warehouse_cut_during_a_write_leaves_all_or_none_and_the_rerun_is_exact(
    usdcop_env, instance, fresh_pg_url, monkeypatch, path, at
):
    url = sa.make_url(fresh_pg_url)
    cutter = pg_write_cut("usdcop_m5_ohlcv", at)
    with FaultProxy((url.host or "127.0.0.1", url.port or 5432), trigger=cutter) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port, query={"sslmode": "disable", "gssencmode": "disable"})
        monkeypatch.setenv("USDCOP_WAREHOUSE_URL", proxied.render_as_string(hide_password=False))
        clean = None
        if path == "upsert":
            # a clean write first, then the table drifts: rows lost, values changed, a stale row
            assert _run(instance, D1, D2).success
            clean = _pg_rows(fresh_pg_url)
            assert len(clean) == 120
            engine = sa.create_engine(fresh_pg_url)
            with engine.begin() as conn:
                conn.exec_driver_sql(
                    "DELETE FROM usdcop_m5_ohlcv WHERE time IN (SELECT time FROM usdcop_m5_ohlcv ORDER BY time LIMIT "
                    "30)"
                )
                conn.exec_driver_sql(
                    "UPDATE usdcop_m5_ohlcv SET close = close + 1 WHERE time IN (SELECT time FROM usdcop_m5_ohlcv "
                    "ORDER BY time DESC LIMIT 10)"
                )
                conn.exec_driver_sql(
                    "INSERT INTO usdcop_m5_ohlcv (time, symbol, open, high, low, close, source, is_flat) "
                    "VALUES ('2025-03-05 14:02:00+00', 'USD/COP', 1, 1, 1, 1, 'stale', false)"
                )
            engine.dispose()
        before = _pg_rows(fresh_pg_url) if path == "upsert" else []

        cutter.armed.set()
        failed = _run(instance, D1, D2)
        assert proxy.tripped.is_set(), "the write never reached the proxy's cut point"
        assert not failed.success
        errors = [err for step, err in _failures(failed) if step.startswith("l1")]
        assert errors and "USDCOP_WAREHOUSE_URL" in errors[0] and "usdcop_m5_ohlcv" in errors[0]
        # one transaction per output: the cut write left none of its rows (COMMIT never arrived)
        assert _pg_rows(fresh_pg_url) == before
        if path == "first_write":
            assert before == []

        proxy.up()
        assert _run(instance, D1, D2).success
        after = _pg_rows(fresh_pg_url)
    assert len(after) == 120 and len({(r[0], r[1]) for r in after}) == 120
    if clean is not None:
        assert after == clean
    # the warehouse holds exactly the lake's L1 rows
    lake = SessionTable(LocalObjectStore(usdcop_env / "lake"), "l1/ohlcv_m5").read(*_window(D1, D2))
    assert [pd.Timestamp(r[0]).tz_convert("UTC") for r in after] == list(lake["time"])
    assert [r[5] for r in after] == lake["close"].tolist()


# --- 3. the lake down mid-run -----------------------------------------------------------------------


def _bucket_objects(client, bucket: str) -> dict[str, bytes]:
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="lake/"):
        for obj in page.get("Contents", ()):
            if obj["Key"].startswith("lake/_leases/"):
                continue  # the writers' lease registry (lake/lease.py), not data
            out[obj["Key"]] = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def _check_lake_invariants(objects: dict[str, bytes], store: S3ObjectStore) -> None:
    """Only whole objects and their manifests; a manifest never names a missing or different object."""
    folders: dict[str, set[str]] = {}
    for key in objects:
        folder, _, name = key.rpartition("/")
        assert name in ("data.parquet", "manifest.json"), key
        folders.setdefault(folder, set()).add(name)
    for key, blob in objects.items():
        if key.endswith("data.parquet"):
            pq.read_table(io.BytesIO(blob))  # complete Parquet, never half an object
    for folder, names in folders.items():
        if "manifest.json" in names:
            dataset, _, part = folder[len("lake/") :].rpartition("/")
            assert "data.parquet" in names, folder
            assert SessionTable(store, dataset).verify(dt.date.fromisoformat(part[5:])) == [], folder


@pytest.mark.s3
def test_lake_down_mid_run_fails_naming_the_lake_and_the_rerun_gives_a_clean_runs_bytes(
    usdcop_env, instance, s3_server, s3_bucket, monkeypatch
):
    import boto3

    direct = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    target = urlsplit(s3_server)
    # the lake goes down as L1 stores its second session (L0 is written, L1 of D1 may be)
    cutter = http_request_cut("PUT", rf"/{s3_bucket}/lake/l1/ohlcv_m5/date(?:=|%3D){D2.isoformat()}/data\.parquet")
    with FaultProxy((target.hostname, target.port), trigger=cutter) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setenv("USDCOP_LAKE_URL", f"s3://{s3_bucket}/lake")
        cutter.armed.set()
        failed = _run(instance, D1, D2)
        assert proxy.tripped.is_set() and proxy.is_down
        assert not failed.success
        errors = [err for step, err in _failures(failed)]
        assert errors and all(f"lake s3://{s3_bucket}/lake (USDCOP_LAKE_URL)" in e for e in errors), errors
        assert any("l1/ohlcv_m5/date=" in e and "failed: S3 endpoint" in e for e in errors), errors

        store = S3ObjectStore(s3_bucket, "lake", client=direct)
        objects = _bucket_objects(direct, s3_bucket)
        _check_lake_invariants(objects, store)
        assert f"lake/l0/ohlcv_m5/date={D2.isoformat()}/manifest.json" in objects  # the run was mid-way
        assert f"lake/l1/ohlcv_m5/date={D2.isoformat()}/data.parquet" not in objects
        assert f"lake/l1/ohlcv_m5/date={D2.isoformat()}/manifest.json" not in objects

        proxy.up()
        assert _run(instance, D1, D2).success
        rerun = _bucket_objects(direct, s3_bucket)

    # a clean run of the same range into another bucket, straight to the server
    clean_bucket = f"{s3_bucket}-clean"
    direct.create_bucket(Bucket=clean_bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("USDCOP_LAKE_URL", f"s3://{clean_bucket}/lake")
    assert _run(instance, D1, D2).success
    clean = _bucket_objects(direct, clean_bucket)

    assert sorted(rerun) == sorted(clean)
    assert {k: _sha(v) for k, v in rerun.items() if k.endswith(".parquet")} == {
        k: _sha(v) for k, v in clean.items() if k.endswith(".parquet")
    }
    for key in rerun:
        if key.endswith("manifest.json"):
            a, b = json.loads(rerun[key]), json.loads(clean[key])
            assert (a["rows"], a["sha256"]) == (b["rows"], b["sha256"])
    _check_lake_invariants(rerun, S3ObjectStore(s3_bucket, "lake", client=direct))
    assert sum(1 for k in rerun if k.endswith("data.parquet")) == 4  # L0 and L1, two sessions


# --- 4. a run killed with SIGKILL -------------------------------------------------------------------

KILL_START, KILL_END = "2025-03-03", "2025-03-14"  # ten sessions


def _backfill_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("USDCOP_", "DAGSTER_", "TWELVEDATA_", "FRED_"))}
    env["USDCOP_HOME"] = str(home)
    env["USDCOP_SOURCE"] = "synthetic:clean"  # compared row by row with a clean run of every bar
    return env


def _backfill(home: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(PROJECT / ".venv" / "bin" / "usdcop"),
            "backfill",
            "--start",
            KILL_START,
            "--end",
            KILL_END,
            "--layers",
            "L0,L1,L2",
        ],
        env=_backfill_env(home),
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _lake_state(home: Path) -> dict[str, str]:
    root = home / "lake"
    # data objects only: not the manifests, nor the writers' lease registry (lake/lease.py)
    return {
        str(p.relative_to(root)): _sha(p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "manifest.json" and not str(p.relative_to(root)).startswith("_leases/")
    }


def _warehouse_state(home: Path) -> dict[str, list[tuple]]:
    engine = sa.create_engine(f"sqlite:///{home / 'warehouse.sqlite'}")
    try:
        with engine.connect() as conn:
            tables = [
                r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            ]
            return {
                t: [tuple(r) for r in conn.exec_driver_sql(f'SELECT * FROM "{t}" ORDER BY 1, 2, 3')] for t in tables
            }
    finally:
        engine.dispose()


def test_backfill_killed_mid_run_then_rerun_equals_a_clean_run(tmp_path):
    killed_home, clean_home = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen(
        [
            str(PROJECT / ".venv" / "bin" / "usdcop"),
            "backfill",
            "--start",
            KILL_START,
            "--end",
            KILL_END,
            "--layers",
            "L0,L1,L2",
        ],
        env=_backfill_env(killed_home),
        cwd=PROJECT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    l1 = killed_home / "lake" / "l1" / "ohlcv_m5"
    deadline = time.monotonic() + 120
    try:
        # kill as soon as the session chain is writing L1 (L0 stored, L1 and L2 not finished)
        while not (l1.is_dir() and any(l1.glob("date=*/*"))):
            assert proc.poll() is None, "the backfill ended before it could be killed"
            assert time.monotonic() < deadline, "the backfill never started writing L1"
            time.sleep(0.002)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    days = cal.trading_days(dt.date.fromisoformat(KILL_START), dt.date.fromisoformat(KILL_END))
    assert len(days) == 10
    l2_written = len(list((killed_home / "lake" / "l2" / "indicators_m5").glob("date=*/data.parquet")))
    assert l2_written < len(days)  # killed mid-way: the chain had not finished

    with dg.DagsterInstance.from_config(str(killed_home / "dagster_home")) as inst:
        statuses = [r.dagster_run.status for r in inst.get_run_records() if r.dagster_run.job_name == "session_chain"]
    assert len(statuses) == 1 and statuses[0] != dg.DagsterRunStatus.SUCCESS  # the killed run (left STARTED)

    rerun = _backfill(killed_home)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    clean = _backfill(clean_home)
    assert clean.returncode == 0, clean.stdout[-3000:] + clean.stderr[-3000:]

    # no temp file left in the lake, and every object equal to the clean run's
    leftovers = [
        p for p in (killed_home / "lake").rglob("*") if p.is_file() and (p.name.startswith(".") or ".tmp" in p.name)
    ]
    assert leftovers == []
    killed_state, clean_state = _lake_state(killed_home), _lake_state(clean_home)
    assert sorted(killed_state) == sorted(clean_state)
    assert killed_state == clean_state
    store = LocalObjectStore(killed_home / "lake")
    for dataset in ("l0/ohlcv_m5", "l1/ohlcv_m5", "l2/indicators_m5"):
        assert SessionTable(store, dataset).dates() == days
        _assert_manifests_consistent(SessionTable(store, dataset), days)
    killed_wh, clean_wh = _warehouse_state(killed_home), _warehouse_state(clean_home)
    assert {t: len(r) for t, r in killed_wh.items()} == {t: len(r) for t, r in clean_wh.items()}
    assert len(killed_wh["usdcop_m5_ohlcv"]) == len(killed_wh["usdcop_m5_indicators"]) == 600
    assert killed_wh == clean_wh


_WRITER = r"""
import os, sys, time
from usdcop_assets.storage.lake.store import LocalObjectStore
store = LocalObjectStore(sys.argv[1])
store.put("l1/ohlcv_m5/date=2025-03-05/data.parquet", b"old version")
def stuck(src, dst):  # the writer is killed after writing its temp file, before the rename
    print("written", flush=True)
    time.sleep(600)
os.replace = stuck
store.put("l1/ohlcv_m5/date=2025-03-05/data.parquet", b"new version, never published")
"""


def test_writer_killed_between_write_and_rename_leaves_the_old_object_and_no_temp_file(tmp_path):
    root = tmp_path / "lake"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(root)], stdout=subprocess.PIPE, text=True, cwd=PROJECT)
    try:
        assert proc.stdout.readline().strip() == "written"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    folder = root / "l1" / "ohlcv_m5" / "date=2025-03-05"
    temps = [p.name for p in folder.iterdir() if p.name != "data.parquet"]
    assert len(temps) == 1 and temps[0].startswith(".data.parquet.tmp-")  # what SIGKILL left behind
    store = LocalObjectStore(root)
    assert store.get("l1/ohlcv_m5/date=2025-03-05/data.parquet") == b"old version"  # readers see the old object
    assert store.list("l1/") == ["l1/ohlcv_m5/date=2025-03-05/data.parquet"]  # and never the temp file
    store.put("l1/ohlcv_m5/date=2025-03-05/manifest.json", b"{}")  # the next writer of the folder
    assert sorted(p.name for p in folder.iterdir()) == ["data.parquet", "manifest.json"]
