"""The warehouse on SQLite (a file) and on the real PostgreSQL, through the parametrized ``warehouse`` fixture."""

from __future__ import annotations

import datetime as dt
import re
import socket
import sqlite3
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from usdcop_assets.core import calendar as cal
from usdcop_assets.core.frames import frame_checksum
from usdcop_assets.sources.synthetic import synthetic_bars
from usdcop_assets.storage.lake.session_table import SessionTable
from usdcop_assets.storage.lake.store import LocalObjectStore
from usdcop_assets.storage.warehouse import database
from usdcop_assets.storage.warehouse.database import Warehouse, WarehouseUnavailable, sql_dir
from usdcop_assets.storage.warehouse.tables import TABLES, table_spec

OHLCV = "usdcop_m5_ohlcv"
REJECTS = "ohlcv_m5_rejects"
KEY = list(table_spec(OHLCV).key)
DAY1, DAY2 = dt.date(2024, 3, 4), dt.date(2024, 3, 5)
BAR = pd.Timedelta(minutes=cal.BAR_MINUTES)
FLOATS = ["open", "high", "low", "close", "volume"]


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_database(pg_url):
    """A database of this module's own on the test server (the session's pg_url is shared with others)."""
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    name = f"usdcop_wh_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield sa.make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse(request, tmp_path):
    if request.param == "sqlite":
        wh = Warehouse(f"sqlite:///{tmp_path / 'wh' / 'warehouse.sqlite'}")
    else:
        wh = Warehouse(request.getfixturevalue("pg_database"))
        wh.ensure_schema()
        with wh.engine.begin() as conn:  # each test starts from empty tables
            for name in TABLES:
                conn.exec_driver_sql(f'DELETE FROM "{name}"')
    yield wh
    wh.dispose()


# The driver's own error, re-raised unwrapped by the warehouse: the NOT NULL violation on "open" planted in
# the batch, and nothing else (a broken connection or a bug would be a different error).
NOT_NULL = (sqlite3.IntegrityError, psycopg.errors.NotNullViolation)
NOT_NULL_OPEN = r'NOT NULL constraint failed: \w+\.open|null value in column "open"'


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    times = cal.expected_bars_between_dates(DAY1, DAY2)
    df = synthetic_bars(times, defects=False)
    df["is_flat"] = df["high"] == df["low"]
    df.loc[[0, 7, 61], "is_flat"] = True
    df.loc[[2, 30, 119], "volume"] = np.nan
    df.loc[[5], "ingested_at"] = pd.NaT
    df["time_shift_hours"] = 0
    df.loc[[40], "time_shift_hours"] = 5
    assert df["is_flat"].any() and not df["is_flat"].all()
    return df


def _rejects(bars: pd.DataFrame) -> pd.DataFrame:
    df = bars.iloc[:6][["time", "symbol", "open", "high", "low", "close", "volume", "source", "ingested_at"]].copy()
    df["row_hash"] = [f"h{i}" for i in range(6)]
    df["reason"] = ["negative_price", "gap", "gap", "off_grid", "duplicate", "gap"]
    df.loc[1, ["open", "high"]] = np.nan
    df.loc[2, "source"] = None
    df["detail"] = [f"detail {i}" for i in range(6)]
    df.loc[4, "detail"] = None
    return df


def _all(wh: Warehouse, table: str = OHLCV) -> pd.DataFrame:
    return wh.read_window(table)


def _span(df: pd.DataFrame) -> tuple[pd.Timestamp, pd.Timestamp]:
    return df["time"].min(), df["time"].max() + BAR


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- schema ---------------------------------------------------------------------------------------


def _ddl_primary_key(name: str) -> list[str]:
    text = (sql_dir() / "tables" / f"{name}.sql").read_text()
    match = re.search(r"PRIMARY KEY\s*\(([^)]*)\)", text)
    return [c.strip() for c in match.group(1).split(",")]


def test_ensure_schema_creates_tables_keys_and_indexes(warehouse, monkeypatch):
    monkeypatch.setattr(database, "_schema_done", {})  # really run the DDL (and then again: idempotent)
    report = warehouse.ensure_schema()
    monkeypatch.setattr(database, "_schema_done", {})
    assert warehouse.ensure_schema() == report
    assert warehouse.ensure_schema() is warehouse.ensure_schema()  # cached

    inspector = sa.inspect(warehouse.engine)
    assert {OHLCV, REJECTS} <= set(inspector.get_table_names())
    for name, spec in TABLES.items():
        pk = inspector.get_pk_constraint(name)["constrained_columns"]
        assert pk == _ddl_primary_key(name) == list(spec.key)
    indexes = {ix["name"]: ix for ix in inspector.get_indexes(OHLCV)}
    assert indexes["usdcop_m5_ohlcv_symbol_time"]["column_names"][:2] == ["symbol", "time"]
    indexes = {ix["name"]: ix for ix in inspector.get_indexes(REJECTS)}
    assert indexes["ohlcv_m5_rejects_reason_time"]["column_names"][:2] == ["reason", "time"]
    nullable = {c["name"]: c["nullable"] for c in inspector.get_columns(OHLCV)}
    assert not any(nullable[c] for c in ["time", "symbol", "open", "high", "low", "close", "source", "is_flat"])
    assert nullable["volume"] and nullable["ingested_at"]
    assert warehouse.table_columns(OHLCV) == [
        "time",
        "symbol",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "source",
        "is_flat",
        "ingested_at",
        "time_shift_hours",
    ]


def _timescaledb_available(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        return (
            conn.exec_driver_sql("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").first() is not None
        )


def test_schema_report_names_the_storage(warehouse):
    """One exact report per server: what this server offers decides which (the DDL itself: the test below)."""
    report = warehouse.ensure_schema()
    assert report.dialect == warehouse.dialect
    if warehouse.dialect == "sqlite":
        expected = (False, "sqlite")
    elif _timescaledb_available(warehouse.engine):
        expected = (True, "TimescaleDB hypertables with compression and retention")
    else:
        expected = (False, "plain PostgreSQL (timescaledb extension not available)")
    assert (report.timescaledb, report.detail) == expected


@pytest.mark.pg
def test_timescaledb_hypertables_compression_and_retention(pg_database):
    """sql/timescale/*.sql as the server records it: chunk intervals, compression settings and the policies."""
    wh = Warehouse(pg_database)
    try:
        if not _timescaledb_available(wh.engine):
            pytest.skip(
                "timescaledb extension not installed on this PostgreSQL: hypertable, compression and "
                "retention DDL not checked (CI's TimescaleDB image checks it)"
            )
        report = wh.ensure_schema()
        assert report.timescaledb, report.detail
        with wh.engine.connect() as conn:

            def rows(sql: str) -> set[tuple]:
                return {tuple(r) for r in conn.exec_driver_sql(sql)}

            assert rows("""SELECT d.hypertable_name, d.column_name, d.time_interval::text
                           FROM timescaledb_information.dimensions d""") == {
                (OHLCV, "time", str(conn.exec_driver_sql("SELECT interval '30 days'").scalar())),
                (REJECTS, "time", str(conn.exec_driver_sql("SELECT interval '90 days'").scalar())),
            }
            assert rows("""SELECT hypertable_name, attname, segmentby_column_index IS NOT NULL, orderby_asc
                           FROM timescaledb_information.compression_settings""") == {
                (OHLCV, "symbol", True, None),
                (OHLCV, "time", False, False),
                (REJECTS, "reason", True, None),
                (REJECTS, "time", False, False),
            }
            assert rows("""SELECT hypertable_name, proc_name,
                                  COALESCE(config->>'compress_after', config->>'drop_after')::interval
                                    = CASE proc_name WHEN 'policy_compression' THEN interval '30 days'
                                                     ELSE interval '3650 days' END
                           FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL""") == {
                (OHLCV, "policy_compression", True),
                (REJECTS, "policy_compression", True),
                (REJECTS, "policy_retention", True),  # the bars themselves are never dropped
            }
    finally:
        wh.dispose()


# --- upsert ---------------------------------------------------------------------------------------


def test_upsert_is_idempotent_and_updates_changed_values(warehouse, bars):
    assert warehouse.upsert(OHLCV, bars) == 120
    first = _all(warehouse)
    assert len(first) == 120
    assert warehouse.upsert(OHLCV, bars) == 120
    assert len(_all(warehouse)) == 120
    assert frame_checksum(_all(warehouse), KEY) == frame_checksum(first, KEY) == frame_checksum(bars, KEY)

    changed = bars.copy()
    changed.loc[10, "close"] = 9999.25
    changed.loc[11, "volume"] = np.nan
    changed.loc[12, "volume"] = 42.0
    changed.loc[13, "is_flat"] = not bool(changed.loc[13, "is_flat"])
    changed.loc[14, "source"] = "twelvedata"
    assert warehouse.upsert(OHLCV, changed.iloc[10:15]) == 5
    got = _all(warehouse)
    assert len(got) == 120
    assert got.loc[10, "close"] == 9999.25
    assert np.isnan(got.loc[11, "volume"]) and got.loc[12, "volume"] == 42.0
    assert got.loc[13, "is_flat"] == changed.loc[13, "is_flat"]
    assert got.loc[14, "source"] == "twelvedata"
    assert frame_checksum(got, KEY) == frame_checksum(changed, KEY)
    assert warehouse.count_window(OHLCV, *_span(bars)) == 120


def test_upsert_accepts_object_and_nullable_dtypes(warehouse, bars):
    df = bars.iloc[:4].copy()
    df["is_flat"] = pd.Series([False, True, False, True], dtype=object, index=df.index)
    df["volume"] = pd.Series([1.0, None, 3.0, None], dtype="Float64", index=df.index)
    warehouse.upsert(OHLCV, df)
    got = _all(warehouse)
    assert list(got["is_flat"]) == [False, True, False, True]  # not the text 'False' read back as true
    assert got["volume"].isna().tolist() == [False, True, False, True]
    assert frame_checksum(got, KEY) == frame_checksum(df, KEY)


def test_replace_window_deletes_absent_rows_only_inside_it(warehouse, bars):
    warehouse.upsert(OHLCV, bars)
    day1 = bars[cal.session_dates(bars["time"]).to_numpy() == DAY1]
    day2 = bars[cal.session_dates(bars["time"]).to_numpy() == DAY2]
    day2_sum = frame_checksum(day2, KEY)

    fewer = day1.drop(index=[3, 4, 5, 50]).copy()
    fewer.loc[6, "close"] = 1.5
    window = (cal.session_open(DAY1), cal.session_end(DAY1))
    warehouse.upsert(OHLCV, fewer, replace_window=window)

    got = _all(warehouse)
    assert len(got) == 116
    assert frame_checksum(warehouse.read_window(OHLCV, *window), KEY) == frame_checksum(fewer, KEY)
    assert frame_checksum(warehouse.read_window(OHLCV, cal.session_open(DAY2), cal.session_end(DAY2)), KEY) == day2_sum

    # an empty frame empties its window, and only its window
    warehouse.upsert(OHLCV, bars.iloc[:0], replace_window=(bars["time"][60], bars["time"][70]))
    assert list(_all(warehouse)["time"]) == list(fewer["time"]) + list(bars["time"][70:])

    # rows outside the window being replaced are refused; nothing changes
    before = frame_checksum(_all(warehouse), KEY)
    with pytest.raises(ValueError, match="outside the window"):
        warehouse.upsert(OHLCV, bars.iloc[:10], replace_window=(bars["time"][1], bars["time"][10]))
    assert frame_checksum(_all(warehouse), KEY) == before


def test_duplicate_keys_unknown_and_missing_columns_are_refused(warehouse, bars):
    warehouse.upsert(OHLCV, bars.iloc[:10])
    before = frame_checksum(_all(warehouse), KEY)

    dup = pd.concat([bars.iloc[:5], bars.iloc[[2]]], ignore_index=True)
    with pytest.raises(ValueError, match=OHLCV) as err:
        warehouse.upsert(OHLCV, dup)
    assert "natural key" in str(err.value)

    with pytest.raises(ValueError, match="nonsense"):
        warehouse.upsert(OHLCV, bars.iloc[:5].assign(nonsense=1))
    with pytest.raises(ValueError, match="symbol"):
        warehouse.upsert(OHLCV, bars.iloc[:5].drop(columns=["symbol"]))
    with pytest.raises(KeyError, match="no_such_table"):
        warehouse.upsert("no_such_table", bars.iloc[:5])

    naive = bars.iloc[:5].copy()
    naive["time"] = naive["time"].dt.tz_localize(None)
    with pytest.raises(ValueError, match="naive"):
        warehouse.upsert(OHLCV, naive)
    with pytest.raises(ValueError, match="timezone"):
        warehouse.upsert(OHLCV, bars.iloc[:5], replace_window=(bars["time"][0].tz_localize(None), bars["time"][9]))

    assert frame_checksum(_all(warehouse), KEY) == before


def test_failed_upsert_leaves_the_table_as_before(warehouse, bars):
    warehouse.upsert(OHLCV, bars.iloc[:60])
    before = _all(warehouse)

    batch = bars.copy()  # updates for the first 60 rows, inserts for the next 60...
    batch["close"] = batch["close"] + 1.0
    batch.loc[90, "open"] = np.nan  # ...and a NOT NULL violation in the middle
    with pytest.raises(NOT_NULL, match=NOT_NULL_OPEN):
        warehouse.upsert(OHLCV, batch)
    after = _all(warehouse)
    assert len(after) == 60
    assert frame_checksum(after, KEY) == frame_checksum(before, KEY)

    # the same with a replace window: neither the delete nor the upsert happened
    with pytest.raises(NOT_NULL, match=NOT_NULL_OPEN):
        warehouse.upsert(OHLCV, batch.iloc[80:100], replace_window=_span(bars))
    assert frame_checksum(_all(warehouse), KEY) == frame_checksum(before, KEY)

    # the connection pool is healthy afterwards: a valid batch goes through
    assert warehouse.upsert(OHLCV, bars) == 120
    assert frame_checksum(_all(warehouse), KEY) == frame_checksum(bars, KEY)


# --- read -----------------------------------------------------------------------------------------


def test_read_window_rows_dtypes_and_checksum(warehouse, bars):
    warehouse.upsert(OHLCV, bars)
    times = bars["time"]

    got = warehouse.read_window(OHLCV, times[5], times[70])
    assert list(got["time"]) == list(times[5:70])
    assert str(got["time"].dtype) == "datetime64[ns, UTC]"
    assert str(got["ingested_at"].dtype) == "datetime64[ns, UTC]"
    assert pd.isna(got["ingested_at"].iloc[0])  # row 5 has no ingested_at
    for c in FLOATS:
        assert got[c].dtype == np.float64, c
    assert got["is_flat"].dtype == bool
    assert list(got["is_flat"]) == list(bars["is_flat"][5:70])
    assert np.isnan(got["volume"].iloc[30 - 5])
    assert frame_checksum(got, KEY) == frame_checksum(bars.iloc[5:70], KEY)

    # bounds between bars; open bounds
    assert list(warehouse.read_window(OHLCV, times[5] + pd.Timedelta(seconds=1), times[9])["time"]) == list(times[6:9])
    assert len(warehouse.read_window(OHLCV, start=times[100])) == 20
    assert len(warehouse.read_window(OHLCV, end=times[10])) == 10
    assert list(warehouse.read_window(OHLCV, times[0], times[120 - 1] + BAR, columns=["time", "close"]).columns) == [
        "time",
        "close",
    ]

    # an empty window keeps the dtypes
    empty = warehouse.read_window(OHLCV, pd.Timestamp("2020-01-01", tz="UTC"), pd.Timestamp("2020-01-02", tz="UTC"))
    assert len(empty) == 0 and str(empty["time"].dtype) == "datetime64[ns, UTC]"
    assert empty["close"].dtype == np.float64


def test_lake_and_warehouse_checksums_agree(warehouse, bars, tmp_path):
    """What the lake_matches_warehouse check compares: the same rows read back from both stores."""
    shuffled = bars.sample(frac=1.0, random_state=1).reset_index(drop=True)
    shuffled["ingested_at"] = shuffled["ingested_at"].dt.tz_convert(cal.TZ)  # zones must not matter
    warehouse.upsert(OHLCV, shuffled)
    lake = SessionTable(LocalObjectStore(tmp_path / "lake"), "l1/ohlcv_m5")
    lake.write(shuffled, *_span(bars))

    start, end = cal.session_open(DAY1) - 3 * BAR, cal.session_end(DAY2)
    from_lake = lake.read(start, end)
    from_wh = warehouse.read_window(OHLCV, start, end)
    original = bars[(bars["time"] >= start) & (bars["time"] < end)]
    assert len(from_lake) == len(from_wh) == len(original) == 120
    columns = sorted(set(from_lake.columns) & set(from_wh.columns))
    assert columns == sorted(bars.columns)
    assert (
        frame_checksum(from_wh, KEY, columns)
        == frame_checksum(from_lake, KEY, columns)
        == frame_checksum(original, KEY, columns)
    )

    # a changed value in one store is seen
    warehouse.upsert(OHLCV, bars.iloc[[40]].assign(volume=np.nan if not np.isnan(bars["volume"][40]) else 1.0))
    assert frame_checksum(warehouse.read_window(OHLCV, start, end), KEY, columns) != frame_checksum(
        from_lake, KEY, columns
    )


def test_nullable_columns_round_trip_in_the_rejects_table(warehouse, bars, tmp_path):
    rejects = _rejects(bars)
    key = list(table_spec(REJECTS).key)
    assert warehouse.upsert(REJECTS, rejects) == 6
    assert warehouse.upsert(REJECTS, rejects) == 6
    got = warehouse.read_window(REJECTS)
    assert len(got) == 6
    assert got.loc[1, ["open", "high"]].isna().all() and pd.isna(got.loc[2, "source"])
    assert frame_checksum(got, key) == frame_checksum(rejects, key)

    lake = SessionTable(LocalObjectStore(tmp_path / "lake"), "l1/rejects")
    lake.write(rejects, *_span(rejects))
    from_lake = lake.read(*_span(rejects))
    columns = sorted(set(got.columns) & set(from_lake.columns))
    assert frame_checksum(got, key, columns) == frame_checksum(from_lake, key, columns)


def test_text_that_looks_like_a_null_marker_round_trips_on_every_store(warehouse, bars):
    """PostgreSQL's COPY reads its NULL marker (``\\N`` by default) as NULL: text values equal to it, and an
    empty string, must come back as text there exactly as on SQLite (first write = COPY into the table,
    second = COPY into the stage + upsert)."""
    rejects = _rejects(bars)
    rejects["detail"] = ["\\N", "\\NN", "", None, "a,\\N", "\\N"]
    rejects["reason"] = ["\\N", "gap", "\\NN", "gap", "gap", "gap"]
    for _ in range(2):
        warehouse.upsert(REJECTS, rejects, replace_window=_span(rejects))
        got = warehouse.read_window(REJECTS).sort_values("row_hash").reset_index(drop=True)
        assert got["detail"].tolist()[:3] == ["\\N", "\\NN", ""] and pd.isna(got.loc[3, "detail"])
        assert got["detail"].tolist()[4:] == ["a,\\N", "\\N"] and got["reason"].tolist()[:3] == ["\\N", "gap", "\\NN"]
        assert pd.isna(got.loc[2, "source"]) and got.loc[1, ["open", "high"]].isna().all()  # real NULLs stay NULL


def test_nullable_booleans_checksum_alike_across_stores(warehouse, bars, tmp_path):
    """A NULL-able BOOLEAN reads back as True/False/None on every store, with one checksum."""
    with warehouse.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS flags_probe (k INTEGER PRIMARY KEY, flag BOOLEAN)")
        conn.exec_driver_sql("DELETE FROM flags_probe")
        conn.exec_driver_sql("INSERT INTO flags_probe VALUES (1, TRUE), (2, NULL), (3, FALSE)")
    with warehouse.engine.connect() as conn:
        raw = pd.DataFrame(
            conn.exec_driver_sql("SELECT k, flag FROM flags_probe ORDER BY k").fetchall(), columns=["k", "flag"]
        )
    frame = pd.DataFrame({"k": [1, 2, 3], "flag": pd.array([True, None, False], dtype="boolean")})
    parquet_like = pd.DataFrame({"k": [1, 2, 3], "flag": pd.Series([True, None, False], dtype=object)})
    # SQLite hands back 1.0/NaN/0.0 floats, PostgreSQL True/None/False objects: all the same content
    assert frame_checksum(raw, ["k"]) == frame_checksum(frame, ["k"]) == frame_checksum(parquet_like, ["k"])
    assert frame_checksum(raw, ["k"]) != frame_checksum(parquet_like.assign(flag=[True, None, True]), ["k"])


def test_count_window(warehouse, bars):
    warehouse.upsert(OHLCV, bars)
    times = bars["time"]
    assert warehouse.count_window(OHLCV, times[0], times[60]) == 60
    assert warehouse.count_window(OHLCV, times[10], times[20]) == 10
    assert len(_all(warehouse)) == len(bars)


# --- availability ---------------------------------------------------------------------------------


def test_unreachable_postgres_names_the_variable_not_the_password():
    port = _closed_port()
    wh = Warehouse(f"postgresql+psycopg://u:s3cret@127.0.0.1:{port}/db")
    try:
        with pytest.raises(WarehouseUnavailable) as err:
            wh.check()
        msg = str(err.value)
        assert "USDCOP_WAREHOUSE_URL" in msg and "unreachable" in msg
        assert str(port) in msg and "127.0.0.1" in msg
        assert "s3cret" not in msg and "s3cret" not in repr(err.value)
        assert "s3cret" not in wh.display_url
        with pytest.raises(WarehouseUnavailable) as err2:
            wh.ensure_schema()
        assert "s3cret" not in str(err2.value)
    finally:
        wh.dispose()


def test_unusable_sqlite_path_is_reported(tmp_path):
    (tmp_path / "adir").mkdir()
    wh = Warehouse(f"sqlite:///{tmp_path / 'adir'}")  # a directory, not a database file
    try:
        with pytest.raises(WarehouseUnavailable, match="USDCOP_WAREHOUSE_URL"):
            wh.check()
    finally:
        wh.dispose()


def test_sql_dir_points_at_the_ddl():
    assert sql_dir() == Path(__file__).resolve().parents[2] / "sql"
    assert {p.stem for p in (sql_dir() / "tables").glob("*.sql")} == set(TABLES)


def test_first_write_of_an_empty_window_loads_directly_and_atomically(warehouse, bars):
    # a failed first write (NOT NULL violation mid-batch) leaves nothing behind
    broken = bars.copy()
    broken.loc[90, "open"] = np.nan
    with pytest.raises(NOT_NULL, match=NOT_NULL_OPEN):
        warehouse.upsert(OHLCV, broken, replace_window=_span(bars))
    assert len(_all(warehouse)) == 0
    # a valid first write lands whole; a second write of the same window takes the merge path
    assert warehouse.upsert(OHLCV, bars, replace_window=_span(bars)) == len(bars)
    assert frame_checksum(_all(warehouse), KEY) == frame_checksum(bars, KEY)
    changed = bars.iloc[:100].assign(close=bars["close"].iloc[:100] + 1.0)
    assert warehouse.upsert(OHLCV, changed, replace_window=_span(bars)) == 100
    after = _all(warehouse)
    assert len(after) == 100  # rows of the window no longer produced are gone
    assert frame_checksum(after, KEY) == frame_checksum(changed, KEY)


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def test_a_table_from_an_older_release_gains_the_new_columns(tmp_path, request, dialect):
    """usdcop_m5_ohlcv before time_shift_hours, ohlcv_m5_rejects before detail: ensure_schema adds them."""
    if dialect == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    else:
        pg_url = request.getfixturevalue("pg_url")  # the SQLite case runs without the server
        name = f"old_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        admin.dispose()
        url = pg_url.rsplit("/", 1)[0] + f"/{name}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE usdcop_m5_ohlcv (time TIMESTAMP WITH TIME ZONE NOT NULL, symbol TEXT NOT NULL, open DOUBLE "
            "PRECISION NOT NULL, "
            "high DOUBLE PRECISION NOT NULL, low DOUBLE PRECISION NOT NULL, close DOUBLE PRECISION NOT NULL, volume "
            "DOUBLE PRECISION, "
            "source TEXT NOT NULL, is_flat BOOLEAN NOT NULL, ingested_at TIMESTAMP WITH TIME ZONE, PRIMARY KEY (time, "
            "symbol))"
        )
        conn.exec_driver_sql(
            "INSERT INTO usdcop_m5_ohlcv (time, symbol, open, high, low, close, source, is_flat) "
            "VALUES ('2025-03-03 13:00:00+00:00', 'USD/COP', 1, 1, 1, 1, 'old', TRUE)"
        )
    engine.dispose()
    wh = Warehouse(url)
    wh.ensure_schema()
    assert wh.table_columns(OHLCV)[-1] == "time_shift_hours" and "detail" in wh.table_columns(REJECTS)
    old = wh.read_window(OHLCV)
    assert len(old) == 1 and int(old["time_shift_hours"].iloc[0]) == 0  # the DDL's DEFAULT fills old rows
    wh.dispose()
