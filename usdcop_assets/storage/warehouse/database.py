"""The warehouse: SQLite by default, PostgreSQL (with TimescaleDB when present) on request.

Writes are idempotent upserts on each table's natural key, in one transaction per call. On PostgreSQL
rows go through one ``COPY`` into a temporary table and one ``INSERT ... ON CONFLICT``; on SQLite
through one ``executemany`` of the same upsert. The DDL lives in ``sql/``.
"""

from __future__ import annotations

import io
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from usdcop_assets.core.calendar import as_utc
from usdcop_assets.core.settings import WAREHOUSE_ENV, Settings, as_settings, mask_url, scrub_secrets
from usdcop_assets.storage.warehouse.tables import TableSpec, table_spec

SQL_DIR_ENV = "USDCOP_SQL_DIR"
_SQLITE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f+00:00"  # fixed width, so text order = time order


_CREATE_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS\s+(\w+)\s*\((.*)\)\s*$", re.S | re.I)
_COLUMN_LINE = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s+(.+?),?\s*$", re.I)


def _add_missing_columns(conn, stmt: str) -> None:
    """A table created by an older release gets the columns the DDL added since (``ADD COLUMN``).

    ``CREATE TABLE IF NOT EXISTS`` leaves an existing table as it was; columns added later are
    nullable or carry a DEFAULT in the DDL, so adding them in place is safe on SQLite and PostgreSQL.
    """
    match = _CREATE_TABLE.search(stmt.strip())
    if not match:
        return
    table, body = match.group(1), match.group(2)
    existing = {c["name"] for c in sa.inspect(conn).get_columns(table)}
    for line in body.splitlines():
        col = _COLUMN_LINE.match(line.split("--")[0])
        if not col or col.group(1).upper() in ("PRIMARY", "UNIQUE", "CONSTRAINT", "FOREIGN", "CHECK"):
            continue
        if col.group(1) not in existing:
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {col.group(1)} {col.group(2).rstrip(',')}")


class WarehouseUnavailable(RuntimeError):
    """The warehouse cannot be reached; the message names the (masked) URL and the cause."""


def sql_dir(settings: Settings | None = None) -> Path:
    override = as_settings(settings).storage.sql_dir
    path = override.expanduser() if override else Path(__file__).resolve().parents[3] / "sql"
    if not (path / "tables").is_dir():
        raise FileNotFoundError(
            f"DDL directory {path}/tables not found; set {SQL_DIR_ENV} to the project's sql/ folder"
        )
    return path


def _statements(path: Path) -> list[str]:
    text = "\n".join(line for line in path.read_text().splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]


@dataclass(frozen=True)
class SchemaReport:
    dialect: str
    timescaledb: bool
    detail: str


_schema_lock = threading.Lock()
_schema_done: dict[str, SchemaReport] = {}


class Warehouse:
    def __init__(self, url: sa.URL | str, echo: bool = False):
        self.url = sa.make_url(url)
        self.display_url = mask_url(self.url)
        kwargs: dict = {"echo": echo}
        if self.dialect == "sqlite":
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 60}
        else:
            kwargs.update(pool_pre_ping=True, connect_args={"connect_timeout": 5})
        self.engine = sa.create_engine(self.url, **kwargs)
        self._columns: dict[str, dict[str, str]] = {}

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    def dispose(self) -> None:
        self.engine.dispose()

    # -- schema ------------------------------------------------------------------------------------

    def check(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception as exc:  # driver errors differ per dialect; all mean "cannot use it"
            raise WarehouseUnavailable(
                f"warehouse {self.display_url} ({WAREHOUSE_ENV}) is unreachable: {self._cause(exc)}"
            ) from None

    def _cause(self, exc: BaseException) -> str:
        """First line of the driver's message (never the password, even if a driver echoes it)."""
        lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return scrub_secrets(lines[0] if lines else type(exc).__name__, self.url)

    def ensure_schema(self) -> SchemaReport:
        """Create the tables (idempotent) and, on PostgreSQL with TimescaleDB available, hypertables."""
        cache_key = str(self.url)
        with _schema_lock:
            if cache_key in _schema_done:
                return _schema_done[cache_key]
            self.check()
            root = sql_dir()
            with self.engine.begin() as conn:
                for path in sorted((root / "tables").glob("*.sql")):
                    for stmt in _statements(path):
                        conn.exec_driver_sql(stmt)
                        _add_missing_columns(conn, stmt)
            report = SchemaReport(self.dialect, False, "sqlite" if self.dialect == "sqlite" else "plain PostgreSQL")
            if self.dialect == "postgresql":
                report = self._timescale(root)
            _schema_done[cache_key] = report
            return report

    def _timescale(self, root: Path) -> SchemaReport:
        with self.engine.connect() as conn:
            available = conn.exec_driver_sql("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").first()
        if not available:
            return SchemaReport("postgresql", False, "plain PostgreSQL (timescaledb extension not available)")
        try:
            with self.engine.begin() as conn:
                conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS timescaledb")
                for path in sorted((root / "timescale").glob("*.sql")):
                    for stmt in _statements(path):
                        conn.exec_driver_sql(stmt)
        except Exception as exc:
            # e.g. installed but not in shared_preload_libraries: keep the plain tables, say why.
            return SchemaReport("postgresql", False, f"plain PostgreSQL (timescaledb unusable: {self._cause(exc)})")
        return SchemaReport("postgresql", True, "TimescaleDB hypertables with compression and retention")

    def _column_types(self, name: str) -> dict[str, str]:
        """Column name -> declared type (upper case), reflected once: the DDL in sql/ fixes them."""
        if name not in self._columns:
            self._columns[name] = {c["name"]: str(c["type"]).upper() for c in sa.inspect(self.engine).get_columns(name)}
        return self._columns[name]

    def table_columns(self, name: str) -> list[str]:
        return list(self._column_types(name))

    # -- write -------------------------------------------------------------------------------------

    def upsert(self, table: str, df: pd.DataFrame, replace_window: tuple | None = None) -> int:
        """Insert or update ``df``'s rows on the table's natural key, in one transaction.

        With ``replace_window=(start, end)`` rows of that time window whose key is not in ``df`` are
        deleted in the same transaction, so the table holds exactly ``df`` for the window (as the lake
        does) and re-running a partition that now yields fewer rows leaves nothing stale.
        """
        spec = table_spec(table)
        self.ensure_schema()
        columns = self._columns_for(spec, df)
        dup = df.duplicated(list(spec.key), keep=False)
        if dup.any():
            first = df.loc[dup, list(spec.key)].iloc[0].to_dict()
            raise ValueError(f"{table}: {int(dup.sum())} rows share a natural key {spec.key} (first: {first})")
        for c in spec.timestamp_columns:
            if (
                c in df.columns
                and pd.api.types.is_datetime64_dtype(df[c].dtype)
                and not isinstance(df[c].dtype, pd.DatetimeTZDtype)
            ):
                raise ValueError(f"{table}: column {c!r} has naive timestamps; localize them (UTC) first")
        if replace_window is not None:
            ts = pd.to_datetime(df[spec.time_column], utc=True)
            lo, hi = (as_utc(t, "window bound") for t in replace_window)
            if ((ts < lo) | (ts >= hi)).any():
                raise ValueError(f"{table}: rows fall outside the window [{lo}, {hi}) being replaced")
        frame = df[columns]
        try:
            return self._write(spec, frame, columns, replace_window)
        except Exception as exc:
            if not self._lost(exc):
                raise
            # The one transaction did not commit (or its commit's outcome was lost with the link):
            # re-running the output writes the whole window again, idempotently.
            raise WarehouseUnavailable(
                f"warehouse {self.display_url} ({WAREHOUSE_ENV}) failed while writing {len(frame)} rows to {table}: "
                f"{self._cause(exc)}"
            ) from None

    def _lost(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the database or the link to it failed (not a bad statement or row)."""
        if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)):
            return True
        dbapi = getattr(self.engine.dialect, "loaded_dbapi", None) or getattr(self.engine.dialect, "dbapi", None)
        kinds = tuple(
            k for k in (getattr(dbapi, "OperationalError", None), getattr(dbapi, "InterfaceError", None)) if k
        )
        return bool(kinds) and isinstance(exc, kinds)

    def _write(self, spec: TableSpec, frame: pd.DataFrame, columns: list[str], replace_window: tuple | None) -> int:
        cols = ", ".join(f'"{c}"' for c in columns)
        with self.engine.begin() as conn:
            raw = conn.connection.driver_connection
            cur = raw.cursor()
            try:
                if replace_window is not None and len(frame) and self._window_is_empty(cur, spec, replace_window):
                    # First write of this window (the bulk of a backfill): nothing can conflict and nothing
                    # is stale, so load straight into the table, exactly like the floor (one COPY or one
                    # executemany). A concurrent writer of the same window gets a key violation, not a merge.
                    self._stage(cur, spec, frame, target=spec.name)
                    return len(frame)
                if self.dialect == "postgresql":
                    cur.execute(f'CREATE TEMP TABLE "_stage" (LIKE "{spec.name}" INCLUDING DEFAULTS) ON COMMIT DROP')
                else:
                    cur.execute('DROP TABLE IF EXISTS temp."_stage"')
                    cur.execute(f'CREATE TEMP TABLE "_stage" AS SELECT * FROM "{spec.name}" WHERE 0')
                if len(frame):
                    self._stage(cur, spec, frame)
                    if self.dialect == "sqlite":
                        # Without it SQLite scans the stage once per table row in the DELETE below:
                        # 88k rows took ~290 s instead of 0.5 s (bench/io_managers.py).
                        keys = ", ".join(f'"{k}"' for k in spec.key)
                        cur.execute(f'CREATE UNIQUE INDEX "_stage_key" ON "_stage" ({keys})')
                    # "WHERE true" resolves SQLite's INSERT ... SELECT ... ON CONFLICT parsing ambiguity.
                    cur.execute(self._upsert_sql(spec, columns, f'SELECT {cols} FROM "_stage" WHERE true'))
                if replace_window is not None:
                    match = " AND ".join(f's."{k}" = t."{k}"' for k in spec.key)
                    ph = "?" if self.dialect == "sqlite" else "%s"
                    cur.execute(
                        f'DELETE FROM "{spec.name}" AS t WHERE t."{spec.time_column}" >= {ph} AND '
                        f't."{spec.time_column}" < {ph} '
                        f'AND NOT EXISTS (SELECT 1 FROM "_stage" AS s WHERE {match})',
                        (self._bound(replace_window[0]), self._bound(replace_window[1])),
                    )
                if self.dialect == "sqlite":
                    cur.execute('DROP TABLE temp."_stage"')
            finally:
                cur.close()
        return len(frame)

    def _columns_for(self, spec: TableSpec, df: pd.DataFrame) -> list[str]:
        table_cols = self.table_columns(spec.name)
        missing_key = [k for k in spec.key if k not in df.columns]
        if missing_key:
            raise ValueError(f"{spec.name}: frame lacks key columns {missing_key}")
        unknown = [c for c in df.columns if c not in table_cols]
        if unknown:
            raise ValueError(f"{spec.name}: frame has columns the table does not: {unknown}")
        return [c for c in table_cols if c in df.columns]

    def _upsert_sql(self, spec: TableSpec, columns: list[str], source: str) -> str:
        updates = [c for c in columns if c not in spec.key]
        if not updates:
            action = "DO NOTHING"
        else:
            # Only rows that changed are rewritten, so re-running a range is mostly reads.
            if self.dialect == "postgresql":
                changed = (
                    f"({', '.join(f'{spec.name}.{c}' for c in updates)}) IS DISTINCT FROM "
                    f"({', '.join(f'excluded.{c}' for c in updates)})"
                )
            else:
                changed = " OR ".join(f'"{spec.name}"."{c}" IS NOT excluded."{c}"' for c in updates)
            action = "DO UPDATE SET " + ", ".join(f'"{c}" = excluded."{c}"' for c in updates) + f" WHERE {changed}"
        cols = ", ".join(f'"{c}"' for c in columns)
        keys = ", ".join(f'"{c}"' for c in spec.key)
        return f'INSERT INTO "{spec.name}" ({cols}) {source} ON CONFLICT ({keys}) {action}'

    def _window_is_empty(self, cur, spec: TableSpec, window: tuple) -> bool:
        ph = "?" if self.dialect == "sqlite" else "%s"
        cur.execute(
            f'SELECT 1 FROM "{spec.name}" WHERE "{spec.time_column}" >= {ph} AND "{spec.time_column}" < {ph} LIMIT 1',
            (self._bound(window[0]), self._bound(window[1])),
        )
        return cur.fetchone() is None

    def _stage(self, cur, spec: TableSpec, frame: pd.DataFrame, target: str = "_stage") -> None:
        """Load ``frame`` into ``target`` (the temporary ``_stage`` table by default): one COPY (psycopg)
        or one executemany."""
        columns = list(frame.columns)
        cols = ", ".join(f'"{c}"' for c in columns)
        if self.dialect == "postgresql" and self.url.get_driver_name() == "psycopg":
            text = frame.copy()
            for c in columns:
                if c in spec.timestamp_columns:
                    text[c] = pd.to_datetime(text[c], utc=True).dt.strftime(_SQLITE_TIME_FORMAT)
            null = _null_marker(text)
            buf = io.StringIO()
            text.to_csv(buf, index=False, header=False, na_rep=null)
            with cur.copy(f"COPY \"{target}\" ({cols}) FROM STDIN (FORMAT csv, NULL '{null}')") as copy:
                copy.write(buf.getvalue())
            return
        ph = ", ".join("?" if self.dialect == "sqlite" else "%s" for _ in columns)
        rows = list(zip(*(self._python_values(frame[c], c in spec.timestamp_columns) for c in columns)))
        cur.executemany(f'INSERT INTO "{target}" ({cols}) VALUES ({ph})', rows)

    def _python_values(self, series: pd.Series, is_time: bool) -> list:
        """DB-API parameters for one column (vectorized where pandas allows: this is the hot path)."""
        mask = series.isna().to_numpy()
        if is_time:
            times = pd.to_datetime(series, utc=True)
            if self.dialect == "sqlite":
                # same text as _SQLITE_TIME_FORMAT, ~20x faster than strftime
                naive = times.dt.tz_localize(None).to_numpy().astype("datetime64[us]")
                text = np.datetime_as_string(naive, unit="us").tolist()
                return [None if m else t.replace("T", " ") + "+00:00" for t, m in zip(text, mask)]
            return [None if pd.isna(v) else v.to_pydatetime() for v in times]
        if pd.api.types.is_float_dtype(series.dtype):
            arr = series.to_numpy(dtype="float64", na_value=np.nan)
            return [None if v != v else v for v in arr.tolist()]
        if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_integer_dtype(series.dtype):
            return series.astype(object).where(series.notna(), None).tolist()
        if isinstance(series.dtype, pd.StringDtype):  # text only: no per-value type sniffing needed
            return [None if m else v for v, m in zip(series.tolist(), mask)]
        return [_python_scalar(v) for v in series]

    # -- read --------------------------------------------------------------------------------------

    def _bound(self, ts) -> object:
        ts = as_utc(ts, "window bound")
        return ts.strftime(_SQLITE_TIME_FORMAT) if self.dialect == "sqlite" else ts.to_pydatetime()

    def read_window(self, table: str, start=None, end=None, columns: list[str] | None = None) -> pd.DataFrame:
        """Rows with ``start <= time < end`` (a missing bound is open), ordered by the natural key."""
        spec = table_spec(table)
        self.ensure_schema()
        cols = columns or self.table_columns(table)
        conds, params = [], {}
        if start is not None:  # either bound may be open
            conds.append(f'"{spec.time_column}" >= :start')
            params["start"] = self._bound(start)
        if end is not None:
            conds.append(f'"{spec.time_column}" < :end')
            params["end"] = self._bound(end)
        where = ("WHERE " + " AND ".join(conds)) if conds else ""
        order = ", ".join(f'"{k}"' for k in spec.key)
        sql = sa.text(
            f'SELECT {", ".join(chr(34) + c + chr(34) for c in cols)} FROM "{table}" {where} ORDER BY {order}'
        )
        with self.engine.connect() as conn:
            result = conn.execute(sql, params)
            # tuples, not Row objects: pandas probes each Row through a slow fallback (~0.9 s / 88k rows)
            df = pd.DataFrame.from_records([tuple(r) for r in result.fetchall()], columns=cols)
        types = self._column_types(table)
        for c in cols:
            if c in spec.timestamp_columns:
                df[c] = pd.to_datetime(df[c], utc=True, format="ISO8601").astype("datetime64[ns, UTC]")
            elif any(t in types.get(c, "") for t in ("DOUBLE", "REAL", "FLOAT", "NUMERIC")):
                df[c] = pd.to_numeric(df[c]).astype("float64")  # an all-NULL column would stay object
            elif "BOOL" in types.get(c, ""):
                if not df[c].isna().any():
                    df[c] = df[c].astype(bool)  # SQLite hands back 0/1
                else:  # NULLs: True/False/None objects on every dialect (SQLite would give 1.0/0.0/NaN)
                    df[c] = pd.Series([None if pd.isna(v) else bool(v) for v in df[c]], index=df.index, dtype=object)
        return df

    def count_window(self, table: str, start, end) -> int:
        spec = table_spec(table)
        self.ensure_schema()
        sql = sa.text(
            f'SELECT COUNT(*) FROM "{table}" WHERE "{spec.time_column}" >= :start AND "{spec.time_column}" < :end'
        )
        with self.engine.connect() as conn:
            return int(conn.execute(sql, {"start": self._bound(start), "end": self._bound(end)}).scalar_one())


def _null_marker(frame: pd.DataFrame) -> str:
    """A CSV NULL marker for COPY that no text value of ``frame`` equals.

    COPY reads any *unquoted* field equal to the marker as NULL, and pandas quotes a text value only when
    it holds a comma, quote or newline; so a text value ``\\N`` (the usual marker) would become NULL on
    PostgreSQL but stay text on SQLite. The marker is ``\\N``, lengthened until no value matches it (it
    holds no comma, quote or newline, so it is written unquoted and needs no escaping in the statement).
    """
    texts = [
        frame[c]
        for c in frame.columns
        if not (pd.api.types.is_numeric_dtype(frame[c].dtype) or pd.api.types.is_bool_dtype(frame[c].dtype))
    ]
    marker = "\\N"
    while any(series.astype(object).eq(marker).any() for series in texts):
        marker += "N"
    return marker


def _python_scalar(value):
    """A DB-API parameter for one cell of an object/text column: bools and numbers keep their type
    (``str(False)`` would be stored as the text 'False' in SQLite and read back as true)."""
    if value is None or (not isinstance(value, (list, tuple, np.ndarray)) and pd.isna(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
