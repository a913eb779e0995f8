"""Concurrent writers of one lake serialize on date leases kept in the lake (usdcop_assets/storage/lake/lease.py).

- the lease protocol across real processes, on a local directory and on S3 (moto server): an overlapping
  request waits (told for whom) or is refused naming the holder; a disjoint one proceeds;
- liveness is the entry's expiry, never a process id: a dead writer "on another host" blocks until its
  entry expires; a holder paused past its TTL learns it lost the lease;
- the temp-file sweep judges process ids only for temp files of its own node;
- two overlapping ``usdcop backfill`` processes run one after the other, with the message, and leave
  exactly one row per bar; a realtime-style run of a session a backfill holds fails with the holder named.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from usdcop_assets.core.settings import StorageOptions
from usdcop_assets.storage.lake import store as store_mod
from usdcop_assets.storage.lake.lease import PREFIX, LeaseBusy, LeaseLost, SessionLeases
from usdcop_assets.storage.lake.session_table import SessionTable
from usdcop_assets.storage.lake.store import LocalObjectStore, S3ObjectStore

PROJECT = Path(__file__).resolve().parents[2]

_HOLDER = r"""
import sys
from usdcop_assets.storage.lake.lease import SessionLeases
from usdcop_assets.storage.lake.store import LocalObjectStore, S3ObjectStore
kind, where, first, last, purpose = sys.argv[1:6]
store = LocalObjectStore(where) if kind == "local" else S3ObjectStore(where, "lake")
lease = SessionLeases(store, ttl=30).acquire(first, last, purpose, wait=0)
print("granted", lease.seq, flush=True)
sys.stdin.readline()  # hold until told
lease.release()
print("released", flush=True)
"""


def _env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("USDCOP_", "DAGSTER_", "TWELVEDATA_", "FRED_"))}
    env["PYTHONPATH"] = str(PROJECT)
    env["USDCOP_SOURCE"] = "synthetic:clean"  # the row counts below assume every bar
    env.update(extra)
    return env


class Holder:
    """Another process holding a lease until ``release()``."""

    def __init__(self, kind: str, where: str, first: str, last: str, purpose: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, kind, where, first, last, purpose],
            cwd=PROJECT,
            env={**_env(), **{k: v for k, v in os.environ.items() if k.startswith("AWS_")}},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        assert line.startswith("granted"), line

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            assert self.proc.stdout.readline().strip() == "released"
        self.proc.wait(timeout=30)


@pytest.fixture(params=["local", "s3"])
def lake(request, tmp_path):
    if request.param == "local":
        return "local", str(tmp_path / "lake"), LocalObjectStore(tmp_path / "lake")
    bucket = request.getfixturevalue("s3_bucket")
    return "s3", bucket, S3ObjectStore(bucket, "lake")


def test_overlapping_writers_wait_or_are_refused_and_disjoint_ones_proceed(lake):
    kind, where, store = lake
    holder = Holder(kind, where, "2024-01-02", "2024-01-10", "backfill A")
    try:
        leases = SessionLeases(store, poll=0.05)
        with pytest.raises(
            LeaseBusy,
            match=rf"dates 2024-01-08 .. 2024-01-12 overlap those being written by backfill A "
            rf"\(dates 2024-01-02 .. 2024-01-10, host .*, pid {holder.proc.pid}, since",
        ):
            leases.acquire("2024-01-08", "2024-01-12", "backfill B", wait=0)
        with leases.acquire("2024-01-11", "2024-01-12", "disjoint", wait=0) as disjoint:  # no overlap: at once
            assert disjoint.first == "2024-01-11"
        told, granted = [], threading.Event()
        result = {}

        def waiter():
            result["lease"] = leases.acquire("2024-01-10", "2024-01-15", "backfill C", wait=60, on_wait=told.append)
            granted.set()

        thread = threading.Thread(target=waiter)
        thread.start()
        deadline = time.monotonic() + 20
        while not told and time.monotonic() < deadline:
            time.sleep(0.02)
        assert told and "waiting up to 60 s" in told[0] and "backfill A" in told[0]
        time.sleep(0.3)
        assert not granted.is_set()  # still held by the other process
        holder.release()
        assert granted.wait(20), "the waiter was not granted after the holder released"
        thread.join()
        lease = result["lease"]
        assert lease.first == "2024-01-10" and not lease.lost
        lease.release()
        # the registry keeps only its highest entry (released) once everyone is done
        entries = leases.entries()
        assert len(entries) == 1 and next(iter(entries.values()))["released"] is True
    finally:
        holder.proc.kill()
        holder.proc.wait(timeout=30)


def test_a_dead_writer_elsewhere_blocks_until_its_entry_expires_not_by_pid(tmp_path):
    store = LocalObjectStore(tmp_path / "lake")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    # a writer on another host (or a process of this one that died): its pid means nothing here
    entry = {
        "owner": uuid.uuid4().hex,
        "purpose": "usdcop backfill",
        "first": "2024-01-02",
        "last": "2024-01-31",
        "host": "other-host",
        "pid": dead.pid,
        "acquired_at": time.time(),
        "expires_at": time.time() + 1.5,
        "released": False,
    }
    assert store.create(f"{PREFIX}000000000001.json", json.dumps(entry).encode())
    assert not store.create(f"{PREFIX}000000000001.json", b"{}")  # exclusive
    leases = SessionLeases(store, poll=0.05)
    with pytest.raises(LeaseBusy, match=f"host other-host, pid {dead.pid}"):
        leases.acquire("2024-01-15", "2024-01-15", "realtime", wait=0)
    started = time.monotonic()
    with leases.acquire("2024-01-15", "2024-01-15", "realtime", wait=10):
        assert time.monotonic() - started > 0.5  # granted only once the entry expired
        assert 1 not in leases.entries()  # and the expired entry was collected


def test_a_holder_paused_past_its_ttl_learns_it_lost_the_lease(tmp_path):
    store = LocalObjectStore(tmp_path / "lake")
    now = [1000.0]
    paused = SessionLeases(store, ttl=10, clock=lambda: now[0]).acquire("2024-01-02", "2024-01-05", "slow", wait=0)
    paused._stop.set()  # its heartbeat stops, as in a process frozen for minutes
    now[0] += 11
    taker = SessionLeases(store, ttl=10, clock=lambda: now[0]).acquire("2024-01-03", "2024-01-03", "next", wait=0)
    assert not paused.renew() and paused.lost
    with pytest.raises(LeaseLost, match="expired while held"):
        paused.check()
    taker.release()
    paused.release()


def test_the_temp_sweep_trusts_pids_only_on_its_own_node(tmp_path):
    root = tmp_path / "lake"
    folder = root / "l1" / "ohlcv_m5" / "date=2024-01-02"
    folder.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mine = folder / f".data.parquet.tmp-{dead.pid}-{store_mod._NODE}-{uuid.uuid4().hex}"
    other = folder / f".data.parquet.tmp-{dead.pid}-0123456789ab-{uuid.uuid4().hex}"  # same pid, another host/pod
    legacy = folder / f".data.parquet.tmp-{dead.pid}-{uuid.uuid4().hex}"  # the old name, without a node
    for p in (mine, other, legacy):
        p.write_bytes(b"partial")
    LocalObjectStore(root).put("l1/ohlcv_m5/date=2024-01-02/manifest.json", b"{}")
    assert not mine.exists()  # our node, dead pid: orphaned
    assert other.exists() and legacy.exists()  # elsewhere: possibly a live writer, kept while recent
    old = time.time() - 2 * StorageOptions().stale_temp_seconds
    os.utime(other, (old, old))
    LocalObjectStore(root).put("l1/ohlcv_m5/date=2024-01-02/manifest.json", b"{}")
    assert not other.exists() and legacy.exists()  # stale by age: removed; the recent one stays


# --- through the CLI and Dagster -----------------------------------------------------------------------


def _cli(home: Path, *args: str, **env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "usdcop_assets.cli", *args],
        cwd=PROJECT,
        env=_env(USDCOP_HOME=str(home), **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _live_entries(store) -> list[dict]:
    return [e for e in SessionLeases(store).entries().values() if not e.get("released")]


def test_overlapping_backfills_run_one_after_the_other_with_a_message(tmp_path):
    home = tmp_path / "home"
    store = LocalObjectStore(home / "lake")
    # a third writer holds the dates first, so both backfills are surely queued behind it (deterministic order)
    blocker = Holder("local", str(home / "lake"), "2024-01-01", "2025-12-31", "maintenance")
    a = _cli(home, "backfill", "--start", "2025-03-03", "--end", "2025-03-05", "--layers", "L0,L1")
    procs = [a]
    try:
        deadline = time.monotonic() + 90
        while len(_live_entries(store)) < 2:
            assert time.monotonic() < deadline and a.poll() is None, "backfill A never queued"
            time.sleep(0.1)
        c = _cli(home, "backfill", "--start", "2025-03-05", "--end", "2025-03-07", "--layers", "L0,L1")
        procs.append(c)
        while len(_live_entries(store)) < 3:
            assert time.monotonic() < deadline and c.poll() is None, "backfill C never queued"
            time.sleep(0.1)
        refused = _cli(
            home,
            "backfill",
            "--start",
            "2025-03-04",
            "--end",
            "2025-03-04",
            "--layers",
            "L0,L1",
            USDCOP_LEASE_WAIT_SECONDS="0",
        )
        out, _ = refused.communicate(timeout=120)
        assert refused.returncode == 1, out
        assert "overlap those being written by maintenance (dates 2024-01-01 .. 2025-12-31, host" in out
        assert "USDCOP_LEASE_WAIT_SECONDS" in out and "Traceback" not in out
        blocker.release()
        out_a, _ = a.communicate(timeout=600)
        out_c, _ = c.communicate(timeout=600)
    finally:
        blocker.proc.kill()
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
    assert a.returncode == 0, out_a[-3000:]
    assert c.returncode == 0, out_c[-3000:]
    assert "waiting up to 900 s" in out_a and "maintenance" in out_a
    # C was told it waits for A (the usdcop backfill ending 2025-03-05), then ran after it
    assert "written by usdcop backfill (dates 2024-03-02 .. 2025-03-05, host" in out_c and f"pid {a.pid}" in out_c

    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        runs = [
            r for r in instance.get_run_records() if r.dagster_run.tags.get("usdcop/launched_by") == "usdcop backfill"
        ]
    end_tag = "dagster/asset_partition_range_end"
    ends_a = [r.end_time for r in runs if r.dagster_run.tags.get(end_tag) == "2025-03-05"]
    starts_c = [r.start_time for r in runs if r.dagster_run.tags.get(end_tag) == "2025-03-07"]
    assert ends_a and starts_c and max(ends_a) <= min(starts_c)  # serialized: no run of C overlapped one of A

    engine = sa.create_engine(f"sqlite:///{home / 'warehouse.sqlite'}")
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT substr(time, 1, 10), COUNT(*), COUNT(DISTINCT time) FROM usdcop_m5_ohlcv GROUP BY 1"
        ).all()
    engine.dispose()
    per_day = {day: (n, distinct) for day, n, distinct in rows}
    days = ["2025-03-03", "2025-03-04", "2025-03-05", "2025-03-06", "2025-03-07"]
    assert sorted(per_day) == days and all(v == (60, 60) for v in per_day.values()), per_day
    table = SessionTable(store, "l1/ohlcv_m5")
    for day in days:
        assert table.verify(dt.date.fromisoformat(day)) == []  # data and manifest from one writer
    assert _live_entries(store) == []


def test_a_realtime_run_of_a_held_session_fails_naming_the_holder(usdcop_env, monkeypatch):
    from usdcop_assets.core.settings import Settings
    from usdcop_assets.defs.automation.jobs import layers_job
    from usdcop_assets.defs.definitions import build_defs

    monkeypatch.setenv("USDCOP_LEASE_WAIT_SECONDS", "1")
    defs = build_defs(Settings.from_env())
    lake = LocalObjectStore(usdcop_env / "lake")
    with dg.DagsterInstance.get() as instance:
        assert layers_job(defs, "L0").execute_in_process(instance=instance, partition_key="2025-03-05").success
        # L1 of the session, as the realtime chain runs it, while a backfill in another process holds the day
        # (L1 rather than L0: L0 retries three times with a back-off, which would only slow this test down)
        job = layers_job(defs, "L1")
        holder = Holder("local", str(usdcop_env / "lake"), "2025-03-05", "2025-03-05", "usdcop backfill")
        try:
            blocked = job.execute_in_process(instance=instance, partition_key="2025-03-05", raise_on_error=False)
            assert not blocked.success
            failure = next(e for e in blocked.all_events if e.event_type_value == "STEP_FAILURE")
            message = str(failure.step_failure_data.error.cause or failure.step_failure_data.error)
            assert "dates 2025-03-05 .. 2025-03-05 overlap those being written by usdcop backfill" in message
            assert f"pid {holder.proc.pid}" in message and "USDCOP_LEASE_WAIT_SECONDS" in message
            assert SessionTable(lake, "l1/ohlcv_m5").dates() == []  # nothing written
            holder.release()
        finally:
            holder.proc.kill()
            holder.proc.wait(timeout=30)
        assert job.execute_in_process(instance=instance, partition_key="2025-03-05").success
        assert len(SessionTable(lake, "l1/ohlcv_m5").read()) == 60
