#!/usr/bin/env python
"""Throughput of the platform's IO managers against a hand-written floor, for six years of L1 bars.

Writes then reads ~88,000 five-minute bars (1,471 Bogota sessions, 2019-01-02 .. 2024-12-31), shaped
like the L1 table ``usdcop_m5_ohlcv``, through the real IO manager classes:

- ``LakeIOManager(lake=LakeResource(url=<dir>))``            -> lake-local
- ``LakeIOManager(lake=LakeResource(url=s3://bucket/prefix))``  -> lake-S3 (moto server on loopback)
- ``WarehouseIOManager(warehouse=WarehouseResource(url=sqlite:///...))``      -> warehouse-SQLite
- ``WarehouseIOManager(warehouse=WarehouseResource(url=postgresql+psycopg://...))`` -> warehouse-PostgreSQL

each driven by ``handle_output`` / ``load_input`` with contexts from ``dagster.build_output_context`` /
``dagster.build_input_context`` (``asset_partitions_def=session_partitions`` and an
``asset_partition_key_range`` covering every session). The builders accept key ranges in the installed
Dagster, so no layer is bypassed. Building the context itself is Dagster work (the key range is
expanded into a partitions subset) and is timed and reported separately, not charged to the IO
managers; each ``handle_output`` gets a shallow copy of one built context with fresh output metadata.

Floors (same DataFrame in, same DataFrame out, conversions included in both):
- lake-local: ``pa.Table.from_pandas`` + ``pq.write_table`` per session file (same layout, snappy like the lake, same
  8-thread pool as SessionTable), no manifest / atomic rename; read = ``pq.read_table`` per file
  (8 threads) + concat + ``to_pandas``.
- lake-S3: same per-session Parquet bytes, ``put_object`` in an 8-thread pool with the platform's
  boto3 client config; read = ``get_object`` (8 threads) + decode + concat + ``to_pandas``.
- warehouse-SQLite: one ``executemany`` of a plain INSERT into an empty table with the same DDL
  (primary key + index) and one SELECT (fetchall + ``DataFrame.from_records``).
- warehouse-PostgreSQL: one ``COPY ... FROM STDIN (FORMAT csv)`` (psycopg 3, CSV by pyarrow) into an
  empty table with the same DDL, and one SELECT (fetchall + ``DataFrame.from_records``).

The IO managers are timed on a first write (empty store) and a second write of the same data (the
idempotent re-run of a backfill). Nothing is asserted; the script prints its figures and exits 0.

    .venv/bin/python bench/io_managers.py [--sessions N] [--skip-s3] [--skip-pg]
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import io
import os
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from usdcop_assets.core import calendar as cal
from usdcop_assets.core.frames import frame_checksum
from usdcop_assets.defs.io_managers import LakeIOManager, WarehouseIOManager
from usdcop_assets.defs.partitions import build_partitions, session_key_range
from usdcop_assets.defs.resources import LakeResource, WarehouseResource
from usdcop_assets.refine.standardize import standardize_bars
from usdcop_assets.sources.synthetic import synthetic_bars
from usdcop_assets.storage.warehouse.database import _statements

# Six years from 2019: the session partitions start earlier than the default history start (2020-01-01).
session_partitions = build_partitions(dt.date(2019, 1, 1), dt.date.today()).session

PROJECT = Path(__file__).resolve().parents[1]
DDL_PATH = PROJECT / "sql" / "tables" / "usdcop_m5_ohlcv.sql"
DDL = DDL_PATH.read_text()
ASSET_KEY = dg.AssetKey(["l1", "ohlcv_m5"])
TABLE = "usdcop_m5_ohlcv"
META = {"time_column": "time", "warehouse_table": TABLE}
KEY = ["time", "symbol"]
POOL = 8  # SessionTable's default max_workers
PG_SERVER = os.environ.get("USDCOP_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
FIRST_DAY, LAST_DAY = dt.date(2019, 1, 1), dt.date(2024, 12, 31)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def log(msg: str) -> None:
    print(msg, flush=True)


# --- data --------------------------------------------------------------------------------------


def make_bars(sessions: int | None) -> tuple[pd.DataFrame, list[dt.date]]:
    days = cal.trading_days(FIRST_DAY, LAST_DAY)
    if sessions:
        days = days[:sessions]
    raw = synthetic_bars(cal.expected_bars_between_dates(days[0], days[-1]))
    kept, rejects = standardize_bars(raw)  # exactly the L1 shape: ..., is_flat (bool), ingested_at
    assert len(rejects) == 0, f"synthetic bars produced {len(rejects)} rejects"
    return kept, days


def iso_utc_text(series: pd.Series) -> list[str]:
    """Timestamps as the fixed-width text the warehouse stores in SQLite (vectorised, no strftime)."""
    naive = series.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[us]")
    return [s.replace("T", " ") + "+00:00" for s in np.datetime_as_string(naive, unit="us").tolist()]


def session_slices(table: pa.Table) -> list[tuple[dt.date, pa.Table]]:
    ns = table.column("time").cast(pa.int64()).to_numpy()
    days = (ns - 5 * 3600 * 10**9) // (86400 * 10**9)
    cuts = np.flatnonzero(np.diff(days)) + 1
    bounds = np.concatenate([[0], cuts, [len(days)]]).astype(int)
    return [
        (dt.date(1970, 1, 1) + dt.timedelta(days=int(days[a])), table.slice(a, b - a))
        for a, b in zip(bounds[:-1], bounds[1:])
        if b > a
    ]


def sorted_arrow(df: pd.DataFrame) -> pa.Table:
    df = df.assign(time=df["time"].astype("datetime64[ns, UTC]")).sort_values("time", kind="stable")
    return pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(None)


def parquet_blob(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy")
    return buf.getvalue()


# --- Dagster contexts ----------------------------------------------------------------------------


class Contexts:
    """One output and one input context for the whole key range, built once through the public builders."""

    def __init__(self, days: list[dt.date]):
        self.key_range = session_key_range(days[0], days[-1])
        self.build_out_s, self.base_out = timed(
            dg.build_output_context,
            asset_key=ASSET_KEY,
            definition_metadata=META,
            asset_partitions_def=session_partitions,
            asset_partition_key_range=self.key_range,
        )
        self.build_in_s, self.input = timed(
            dg.build_input_context,
            asset_key=ASSET_KEY,
            upstream_output=self.base_out,
            asset_partitions_def=session_partitions,
            asset_partition_key_range=self.key_range,
        )
        self.window = self.base_out.asset_partitions_time_window

    def output(self) -> dg.OutputContext:
        # add_output_metadata refuses a key twice on one context: give each write fresh metadata.
        ctx = copy.copy(self.base_out)
        ctx._user_generated_metadata = {}
        ctx._events = []
        ctx._user_events = []
        return ctx


# --- measurements ----------------------------------------------------------------------------------

FIELDS = ("write_s", "rewrite_s", "read_s", "floor_write_s", "floor_read_s")


class Result:
    """Timings of one store; each figure is the best (minimum) over the repetitions, each on a fresh target."""

    def __init__(self, store: str, rows: int):
        self.store = store
        self.rows = rows
        self.samples: dict[str, list[float]] = {f: [] for f in FIELDS}
        self.projected: set[str] = set()  # fields extrapolated rather than measured
        self.notes: list[str] = []

    def add(self, field: str, seconds: float) -> None:
        self.samples[field].append(seconds)

    def __getattr__(self, name: str):
        if name in FIELDS:
            values = self.__dict__["samples"][name]
            return min(values) if values else None
        raise AttributeError(name)

    def reps(self) -> str:
        counts = {len(v) for v in self.samples.values() if v}
        return "/".join(str(c) for c in sorted(counts)) or "0"


def measure_io_manager(res: Result, manager, ctxs: Contexts, df: pd.DataFrame, checksum: str, rep: int) -> None:
    ctx = ctxs.output()
    w, _ = timed(manager.handle_output, ctx, df)
    meta = ctx.get_logged_metadata()
    rows_meta = meta.get("rows") or meta.get("warehouse_rows")
    rows_meta = getattr(rows_meta, "value", rows_meta)
    rw, _ = timed(manager.handle_output, ctxs.output(), df)
    r, back = timed(manager.load_input, ctxs.input)
    res.add("write_s", w)
    res.add("rewrite_s", rw)
    res.add("read_s", r)
    ok = len(back) == len(df) and frame_checksum(back, KEY, list(df.columns)) == checksum
    check = f"wrote {rows_meta} rows, read back {len(back)} rows, content {'identical' if ok else 'DIFFERENT'}"
    if rep == 0:
        res.notes.append(f"IO manager {check}")
    log(f"  {res.store} #{rep + 1}: IO manager write {w:.2f}s  re-write {rw:.2f}s  read {r:.2f}s  ({check})")


def log_floor(res: Result, rep: int, w: float, r: float, n_back: int) -> None:
    res.add("floor_write_s", w)
    res.add("floor_read_s", r)
    if rep == 0:
        res.notes.append(f"floor read back {n_back} rows")
    log(f"  {res.store} #{rep + 1}: floor write {w:.2f}s  read {r:.2f}s")


def lake_local(ctxs: Contexts, df: pd.DataFrame, checksum: str, tmp: Path, reps: int) -> Result:
    res = Result("lake-local", len(df))
    for rep in range(reps):
        lake = LakeResource(url=str(tmp / f"lake_io_{rep}"))
        lake.store().check()  # what setup_for_execution does, outside the timing
        measure_io_manager(res, LakeIOManager(lake=lake), ctxs, df, checksum, rep)

        root = tmp / f"lake_floor_{rep}" / "l1" / "ohlcv_m5"

        def write_floor():
            table = sorted_arrow(df)

            def put(item):
                day, part = item
                d = root / f"date={day.isoformat()}"
                d.mkdir(parents=True, exist_ok=True)
                pq.write_table(part, d / "data.parquet", compression="snappy")

            with ThreadPoolExecutor(POOL) as pool:
                list(pool.map(put, session_slices(table)))

        def read_floor():
            paths = sorted(root.glob("date=*/data.parquet"))
            with ThreadPoolExecutor(POOL) as pool:
                tables = list(pool.map(pq.read_table, paths))
            return pa.concat_tables(tables).to_pandas()

        w, _ = timed(write_floor)
        r, back = timed(read_floor)
        log_floor(res, rep, w, r, len(back))
    return res


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("moto S3 server did not start")


def lake_s3(ctxs: Contexts, df: pd.DataFrame, checksum: str, reps: int) -> Result:
    import boto3

    from usdcop_assets.storage.lake.store import _default_s3_client

    res = Result("lake-S3", len(df))
    proc, endpoint = start_moto()
    try:
        os.environ.update(
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
        )
        admin = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        admin.create_bucket(Bucket=bucket)
        client = _default_s3_client()  # the floor uses the platform's S3ObjectStore client config
        calls: dict[str, int] = {}
        client.meta.events.register(
            "before-call.s3", lambda model, **kw: calls.__setitem__(model.name, calls.get(model.name, 0) + 1)
        )

        for rep in range(reps):
            lake = LakeResource(url=f"s3://{bucket}/io{rep}")
            lake.store().check()
            store_client = lake.store()._client
            if rep == 0:
                io_calls: dict[str, int] = {}
                store_client.meta.events.register(
                    "before-call.s3",
                    lambda model, **kw: io_calls.__setitem__(model.name, io_calls.get(model.name, 0) + 1),
                )
            measure_io_manager(res, LakeIOManager(lake=lake), ctxs, df, checksum, rep)
            if rep == 0:
                res.notes.append(
                    f"S3 requests by the IO manager (write + re-write + read): {dict(sorted(io_calls.items()))}"
                )
            prefix = f"floor{rep}/l1/ohlcv_m5"
            keys: list[str] = []

            def write_floor():
                table = sorted_arrow(df)

                def put(item):
                    day, part = item
                    key = f"{prefix}/date={day.isoformat()}/data.parquet"
                    client.put_object(Bucket=bucket, Key=key, Body=parquet_blob(part))
                    return key

                with ThreadPoolExecutor(POOL) as pool:
                    keys.extend(pool.map(put, session_slices(table)))

            def read_floor():
                def get(key):
                    return pq.read_table(io.BytesIO(client.get_object(Bucket=bucket, Key=key)["Body"].read()))

                with ThreadPoolExecutor(POOL) as pool:
                    tables = list(pool.map(get, keys))
                return pa.concat_tables(tables).to_pandas()

            calls.clear()
            w, _ = timed(write_floor)
            r, back = timed(read_floor)
            if rep == 0:
                res.notes.append(f"S3 requests by the floor (write + read): {dict(sorted(calls.items()))}")
            log_floor(res, rep, w, r, len(back))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return res


def sqlite_floor(path: Path, df: pd.DataFrame) -> tuple[float, float, int]:
    con = sqlite3.connect(path, timeout=60)
    con.executescript(DDL)
    cols = list(df.columns)

    def write():
        rows = list(
            zip(
                iso_utc_text(df["time"]),
                df["symbol"].tolist(),
                df["open"].tolist(),
                df["high"].tolist(),
                df["low"].tolist(),
                df["close"].tolist(),
                df["volume"].tolist(),
                df["source"].tolist(),
                df["is_flat"].astype(int).tolist(),
                iso_utc_text(df["ingested_at"]),
                df["time_shift_hours"].tolist(),
            )
        )
        assert len(cols) == 11, cols  # one value per column of the L1 frame, in its order
        with con:
            con.executemany(f"INSERT INTO {TABLE} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)

    def read():
        rows = con.execute(f"SELECT {', '.join(cols)} FROM {TABLE} ORDER BY time, symbol").fetchall()
        return pd.DataFrame.from_records(rows, columns=cols)

    w, _ = timed(write)
    r, back = timed(read)
    con.close()
    return w, r, len(back)


def warehouse_sqlite(
    ctxs: Contexts, df: pd.DataFrame, checksum: str, tmp: Path, days: list[dt.date], budget: float, reps: int
) -> list[Result]:
    """SQLite, at full size when the IO manager's write is projected to fit ``budget`` seconds (write +
    re-write); otherwise on the first M sessions that fit, plus a full-size row with the write projected
    from two probe writes (scaling exponent measured, not assumed) and the read measured at full size."""
    n = len(df)
    floors: list[tuple[float, float, int]] = []
    for rep in range(reps):
        floors.append(sqlite_floor(tmp / f"warehouse_floor_{rep}.sqlite", df))
        log(f"  warehouse-SQLite #{rep + 1}: floor ({n:,} rows) write {floors[-1][0]:.2f}s  read {floors[-1][1]:.2f}s")

    def add_floors(res: Result) -> None:
        for w, r, _nb in floors:
            res.add("floor_write_s", w)
            res.add("floor_read_s", r)
        res.notes.append(f"floor read back {floors[0][2]} rows")

    sessions = len(days)
    probe = None
    if budget > 0 and sessions > 250:
        points = []
        for s in (100, 250):
            # Probe rows inside the full-range window: the replace-window DELETE scans just these rows.
            sub = df.iloc[: s * cal.BARS_PER_SESSION]
            wh = WarehouseResource(url=f"sqlite:///{tmp / f'warehouse_probe_{s}.sqlite'}")
            wh.schema()
            t, _ = timed(WarehouseIOManager(warehouse=wh).handle_output, ctxs.output(), sub)
            wh.warehouse().dispose()
            points.append((len(sub), t))
        (n1, t1), (n2, t2) = points
        k = max(1.0, float(np.log(t2 / t1) / np.log(n2 / n1)))
        projected = t2 * (n / n2) ** k
        probe = (n1, t1, n2, t2, k, projected)
        log(
            f"  warehouse-SQLite probe: IO-manager write of {n1:,} rows {t1:.2f}s, {n2:,} rows {t2:.2f}s -> "
            f"time ~ rows^{k:.2f}; projected write of {n:,} rows {projected:.0f}s"
        )

    if probe is None or 2 * probe[5] <= budget:
        res = Result("warehouse-SQLite", n)
        for rep in range(reps):
            wh = WarehouseResource(url=f"sqlite:///{tmp / f'warehouse_io_{rep}.sqlite'}")
            wh.schema()  # setup_for_execution, outside the timing
            measure_io_manager(res, WarehouseIOManager(warehouse=wh), ctxs, df, checksum, rep)
            wh.warehouse().dispose()
        add_floors(res)
        return [res]

    n1, t1, n2, t2, k, projected = probe
    m = max(250, min(sessions, int(n2 * (budget / 2.5 / t2) ** (1 / k)) // cal.BARS_PER_SESSION))
    sub_days = days[:m]
    sub = df.iloc[: m * cal.BARS_PER_SESSION].reset_index(drop=True)
    log(
        f"  warehouse-SQLite: projected write + re-write {2 * projected:.0f}s > --sqlite-budget {budget:.0f}s: "
        f"measuring the IO manager once on the first {m} sessions"
    )
    sub_ctxs = Contexts(sub_days)
    small = Result(f"warehouse-SQLite@{m}ses", len(sub))
    wh = WarehouseResource(url=f"sqlite:///{tmp / 'warehouse_io_small.sqlite'}")
    wh.schema()
    measure_io_manager(
        small, WarehouseIOManager(warehouse=wh), sub_ctxs, sub, frame_checksum(sub, KEY, list(sub.columns)), 0
    )
    wh.warehouse().dispose()
    for rep in range(reps):
        w, r, nb = sqlite_floor(tmp / f"warehouse_floor_small_{rep}.sqlite", sub)
        log_floor(small, rep, w, r, nb)
    small.notes.append(
        f"measured on the first {m} sessions ({len(sub):,} rows) only (context build "
        f"{sub_ctxs.build_out_s + sub_ctxs.build_in_s:.1f}s, not charged)"
    )

    # Re-project from the largest measured point, with the exponent between it and the larger probe
    # (the growth steepens with size, so the exponent of the two small probes alone underestimates).
    n3, t3 = len(sub), small.write_s
    if n3 > n2 and t3 > t2:
        k = max(1.0, float(np.log(t3 / t2) / np.log(n3 / n2)))
        projected = t3 * (n / n3) ** k
    full = Result("warehouse-SQLite", n)
    full.add("write_s", projected)
    full.add("rewrite_s", projected)
    full.projected = {"write_s", "rewrite_s"}
    # The full-size read is real: the IO manager reads a floor file (same DDL, same stored text).
    wh = WarehouseResource(url=f"sqlite:///{tmp / 'warehouse_floor_0.sqlite'}")
    for _ in range(reps):
        r, back = timed(WarehouseIOManager(warehouse=wh).load_input, ctxs.input)
        full.add("read_s", r)
    wh.warehouse().dispose()
    ok = len(back) == n and frame_checksum(back, KEY, list(df.columns)) == checksum
    add_floors(full)
    full.notes.append(
        f"write and re-write PROJECTED (~): writes of {n1:,} rows {t1:.2f}s, {n2:,} rows {t2:.2f}s, {n3:,} rows "
        f"{t3:.2f}s; "
        f"time ~ rows^{k:.2f} between the last two, extrapolated to {n:,} rows "
        f"(--sqlite-budget 0 measures them for real); read measured at full size "
        f"({len(back)} rows, content {'identical' if ok else 'DIFFERENT'})"
    )
    log(f"  warehouse-SQLite full size: write ~{projected:.0f}s (projected), read {full.read_s:.2f}s (measured)")
    return [small, full]


def pg_floor(conninfo: str, df: pd.DataFrame) -> tuple[float, float, int]:
    import psycopg

    cols = list(df.columns)
    with psycopg.connect(conninfo) as con:
        con.execute("CREATE SCHEMA bench_floor")
        con.execute("SET search_path TO bench_floor")
        for stmt in _statements(DDL_PATH):
            con.execute(stmt)
        con.commit()

        def write():
            table = pa.Table.from_pandas(df[cols], preserve_index=False)
            buf = io.BytesIO()
            pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False))
            with con.cursor() as cur, cur.copy(f"COPY {TABLE} ({', '.join(cols)}) FROM STDIN (FORMAT csv)") as cp:
                cp.write(buf.getvalue())
            con.commit()

        def read():
            with con.cursor() as cur:
                cur.execute(f"SELECT {', '.join(cols)} FROM {TABLE} ORDER BY time, symbol")
                rows = cur.fetchall()
            return pd.DataFrame.from_records(rows, columns=cols)

        w, _ = timed(write)
        r, back = timed(read)
    return w, r, len(back)


def warehouse_pg(ctxs: Contexts, df: pd.DataFrame, checksum: str, reps: int) -> Result:
    import sqlalchemy as sa

    from usdcop_assets.defs import resources

    res = Result("warehouse-PostgreSQL", len(df))
    admin = sa.create_engine(PG_SERVER, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        for rep in range(reps):
            name = f"usdcop_bench_{uuid.uuid4().hex[:10]}"  # a fresh, empty database per repetition
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            url = sa.make_url(PG_SERVER).set(database=name)
            try:
                wh = WarehouseResource(url=url.render_as_string(hide_password=False))
                report = wh.schema()
                if rep == 0:
                    res.notes.append(f"storage: {report.detail}")
                measure_io_manager(res, WarehouseIOManager(warehouse=wh), ctxs, df, checksum, rep)
                conninfo = f"host={url.host} port={url.port or 5432} user={url.username} dbname={name}"
                if url.password:
                    conninfo += f" password={url.password}"
                w, r, nb = pg_floor(conninfo, df)
                log_floor(res, rep, w, r, nb)
            finally:
                for w_ in list(resources._warehouses.values()):
                    w_.dispose()
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()
    return res


# --- report ----------------------------------------------------------------------------------------


def rate(n: int, s: float | None, projected: bool = False) -> str:
    return ("~" if projected else "") + f"{n / s:,.0f}" if s else "-"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def print_table(results: list[Result]) -> None:
    head = (
        f"{'store':22} {'write r/s':>10} {'re-write r/s':>12} {'read r/s':>10} {'floor wr r/s':>12} "
        f"{'floor rd r/s':>12} "
        f"{'write x':>8} {'re-wr x':>8} {'read x':>7}  within 2x (write / re-write / read)"
    )
    log(head)
    log("-" * len(head))
    for r in results:
        rw, rr, rd = (
            ratio(r.write_s, r.floor_write_s),
            ratio(r.rewrite_s, r.floor_write_s),
            ratio(r.read_s, r.floor_read_s),
        )
        verdict = " / ".join("-" if x is None else ("yes" if x <= 2.0 else "NO") for x in (rw, rr, rd))
        fmt = lambda x, p=False: "-" if x is None else ("~" if p else "") + f"{x:.2f}"  # noqa: E731
        n, pw, pr = r.rows, "write_s" in r.projected, "rewrite_s" in r.projected
        log(
            f"{r.store:22} {rate(n, r.write_s, pw):>10} {rate(n, r.rewrite_s, pr):>12} {rate(n, r.read_s):>10} "
            f"{rate(n, r.floor_write_s):>12} {rate(n, r.floor_read_s):>12} {fmt(rw, pw):>8} {fmt(rr, pr):>8} "
            f"{fmt(rd):>7}  {verdict}"
        )
    log("")
    log(
        f"{'store':22} {'rows':>7} {'write s':>8} {'re-write s':>10} {'read s':>7} {'floor wr s':>10} "
        f"{'floor rd s':>10}"
    )
    for r in results:
        f = lambda x, p=False: "-" if x is None else ("~" if p else "") + f"{x:.2f}"  # noqa: E731
        log(
            f"{r.store:22} {r.rows:>7,} {f(r.write_s, 'write_s' in r.projected):>8} "
            f"{f(r.rewrite_s, 'rewrite_s' in r.projected):>10} "
            f"{f(r.read_s):>7} {f(r.floor_write_s):>10} {f(r.floor_read_s):>10}"
        )
    log(
        "ratio x = IO-manager time / floor time (1.00 = as fast as the floor; 'within 2x' means x <= 2.00); ~ = "
        "projected, not measured"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sessions", type=int, default=None, help="first N sessions from 2019-01-02 (default: all of 2019..2024)"
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="repetitions (fresh store each) for lake-local, SQLite, PostgreSQL; best is kept",
    )
    ap.add_argument(
        "--s3-repeat", type=int, default=1, help="repetitions for lake-S3 (slow: moto answers ~300 requests/s)"
    )
    ap.add_argument("--skip-s3", action="store_true", help="skip the moto S3 measurement")
    ap.add_argument("--skip-pg", action="store_true", help="skip the PostgreSQL measurement")
    ap.add_argument(
        "--sqlite-budget",
        type=float,
        default=60.0,
        help="seconds allowed for the SQLite IO-manager write + re-write; beyond it they are measured on fewer "
        "sessions and projected to full size (0 = always measure full size)",
    )
    args = ap.parse_args()

    t_all = time.perf_counter()
    gen_s, (df, days) = timed(make_bars, args.sessions)
    n = len(df)
    checksum = frame_checksum(df, KEY, list(df.columns))
    log(
        f"data: {n:,} bars, {len(days):,} sessions {days[0]} .. {days[-1]} (generated in {gen_s:.1f}s); columns "
        f"{list(df.columns)}"
    )
    log(
        f"python {sys.version.split()[0]}, dagster {dg.__version__}, pandas {pd.__version__}, pyarrow "
        f"{pa.__version__}, {os.cpu_count()} CPUs"
    )

    ctxs = Contexts(days)
    log(
        f"dagster contexts for key range {ctxs.key_range.start} .. {ctxs.key_range.end} -> window "
        f"{ctxs.window.start.isoformat()} .. {ctxs.window.end.isoformat()}: build_output_context "
        f"{ctxs.build_out_s:.2f}s, "
        f"build_input_context {ctxs.build_in_s:.2f}s (Dagster expanding the key range into a partitions subset; "
        "not charged to the IO managers below). Both builders accept asset_partition_key_range, so every figure below "
        "goes through LakeIOManager / WarehouseIOManager .handle_output / .load_input"
    )
    log(f"peak RSS after data + contexts: {peak_rss_mb():.0f} MB")

    tmp = Path(tempfile.mkdtemp(prefix="usdcop_bench_io_"))
    results: list[Result] = []
    rss: list[tuple[str, float]] = []
    try:
        results.append(lake_local(ctxs, df, checksum, tmp, args.repeat))
        rss.append((results[-1].store, peak_rss_mb()))
        if not args.skip_s3:
            results.append(lake_s3(ctxs, df, checksum, args.s3_repeat))
            rss.append((results[-1].store, peak_rss_mb()))
        results.extend(warehouse_sqlite(ctxs, df, checksum, tmp, days, args.sqlite_budget, args.repeat))
        rss.append(("warehouse-SQLite", peak_rss_mb()))
        if not args.skip_pg:
            results.append(warehouse_pg(ctxs, df, checksum, args.repeat))
            rss.append((results[-1].store, peak_rss_mb()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    log("")
    log(
        f"=== IO managers vs floor: {n:,} rows ({len(days):,} sessions); best of: "
        + ", ".join(f"{r.store} {r.reps()}" for r in results)
        + " ==="
    )
    print_table(results)
    log("")
    for r in results:
        for note in r.notes:
            log(f"  {r.store}: {note}")
    log("")
    ctx_total = ctxs.build_out_s + ctxs.build_in_s
    log(
        f"Dagster context build for the whole range: {ctx_total:.2f}s "
        f"(output {ctxs.build_out_s:.2f}s + input {ctxs.build_in_s:.2f}s) = {n / ctx_total:,.0f} rows/s if charged; "
        "a real run pays it again for every output and input context of every step"
    )
    log("peak RSS (ru_maxrss, this process) after each store: " + ", ".join(f"{s} {m:.0f} MB" for s, m in rss))
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    log(f"peak RSS: {peak_rss_mb():.0f} MB (bench process); largest child (moto server): {children:.0f} MB")
    log(f"total bench time {time.perf_counter() - t_all:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
