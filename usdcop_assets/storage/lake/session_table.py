"""A time-keyed Parquet table in the lake, stored as one object per Bogota session date.

Layout: ``<dataset>/date=YYYY-MM-DD/data.parquet`` and ``<dataset>/date=YYYY-MM-DD/manifest.json``
(rows, sha256, schema, time range, written_at). Writing a time window *replaces* the rows of that
window in every session object it touches and keeps the rows outside it, so writing one bar, a
session or six years in one pass all leave the same objects, byte for byte.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from usdcop_assets.core import calendar as cal
from usdcop_assets.storage.lake.store import ObjectStore

DATA_FILE = "data.parquet"
MANIFEST_FILE = "manifest.json"
_PROBE_DAYS = 31  # windows up to this many days are read by direct GETs instead of a listing


@dataclass(frozen=True)
class WriteSummary:
    rows: int
    objects_written: int  # session objects whose bytes changed (new or rewritten)
    objects_unchanged: int  # session objects that already held exactly these bytes
    objects_deleted: int
    dates: tuple[dt.date, ...]
    sha256: dict[str, str]


def parquet_bytes(table: pa.Table) -> bytes:
    """Deterministic Parquet encoding: no pandas metadata, fixed codec, so equal rows give equal bytes."""
    buf = io.BytesIO()
    # snappy: at ~60-row session objects zstd saved 3% of size for 2.4x the encode time.
    pq.write_table(table.replace_schema_metadata(None), buf, compression="snappy")
    return buf.getvalue()


def to_arrow(df: pd.DataFrame, time_column: str) -> pa.Table:
    """Arrow table sorted by time with the time column as UTC nanoseconds; rejects naive or missing times."""
    if time_column not in df.columns:
        raise ValueError(f"frame has no time column {time_column!r} (columns: {list(df.columns)})")
    times = df[time_column]
    if not isinstance(times.dtype, pd.DatetimeTZDtype):
        raise ValueError(f"time column {time_column!r} must be tz-aware (got {times.dtype})")
    if times.isna().any():
        raise ValueError(f"time column {time_column!r} has {int(times.isna().sum())} missing values")
    df = df.assign(**{time_column: times.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")})
    df = df.sort_values(time_column, kind="stable").reset_index(drop=True)
    return pa.Table.from_pandas(df, preserve_index=False)


def _local_day_numbers(utc_ns: np.ndarray) -> np.ndarray:
    """Bogota calendar day (days since epoch) of UTC nanosecond instants."""
    # Bogota is UTC-5 all year (no DST since 1993); asserted in tests against zoneinfo.
    return (utc_ns - 5 * 3600 * 10**9) // (86400 * 10**9)


def _day_bounds(day: dt.date) -> tuple[pd.Timestamp, pd.Timestamp]:
    start = pd.Timestamp(dt.datetime.combine(day, dt.time(0), tzinfo=cal.TZ)).tz_convert("UTC")
    return start, start + pd.Timedelta(days=1)


class SessionTable:
    def __init__(self, store: ObjectStore, dataset: str, time_column: str = "time", max_workers: int = 8):
        self.store = store
        self.dataset = dataset.strip("/")
        self.time_column = time_column
        self.max_workers = max_workers

    # -- keys --------------------------------------------------------------------------------------

    def object_key(self, day: dt.date, name: str = DATA_FILE) -> str:
        return f"{self.dataset}/date={day.isoformat()}/{name}"

    def dates(self) -> list[dt.date]:
        """Session dates that have a data object (one listing)."""
        out = []
        for key in self.store.list(self.dataset + "/"):
            part, _, name = key[len(self.dataset) + 1 :].partition("/")
            if name == DATA_FILE and part.startswith("date="):
                out.append(dt.date.fromisoformat(part[5:]))
        return sorted(out)

    def _dates_in(self, first: dt.date, last: dt.date) -> list[dt.date]:
        return [d for d in self.dates() if first <= d <= last]

    # -- write -------------------------------------------------------------------------------------

    def write(self, df: pd.DataFrame, start, end) -> WriteSummary:
        """Replace the rows with ``start <= time < end`` by ``df`` (whose rows must all be in that window)."""
        start, end = cal.as_utc(start, "window start"), cal.as_utc(end, "window end")
        if end <= start:
            raise ValueError(f"{self.dataset}: empty or inverted window [{start}, {end})")
        table = to_arrow(df, self.time_column)
        ns = table.column(self.time_column).cast(pa.int64()).to_numpy()
        outside = (ns < start.value) | (ns >= end.value)
        if outside.any():
            first_bad = pd.Timestamp(int(ns[outside][0]), tz="UTC")
            raise ValueError(
                f"{self.dataset}: {int(outside.sum())} rows fall outside the window [{start}, {end}) "
                f"being written (first: {first_bad})"
            )
        first_day = start.tz_convert(cal.TZ).date()
        last_day = (end - pd.Timedelta(1, "ns")).tz_convert(cal.TZ).date()
        covers_whole_days = {}
        for day in (first_day, last_day):
            d0, d1 = _day_bounds(day)
            covers_whole_days[day] = start <= d0 and end >= d1

        # Split the sorted table into one slice per local day.
        days = _local_day_numbers(ns)
        cuts = np.flatnonzero(np.diff(days)) + 1
        bounds = np.concatenate([[0], cuts, [len(days)]]).astype(int)
        new_slices = {
            dt.date(1970, 1, 1) + dt.timedelta(days=int(days[a])): table.slice(a, b - a)
            for a, b in zip(bounds[:-1], bounds[1:])
            if b > a
        }
        # Objects already stored in the window must be rewritten (or removed) even without new rows.
        if (last_day - first_day).days <= _PROBE_DAYS:
            existing = {d for d in _daterange(first_day, last_day) if d not in new_slices and self._exists(d)}
            stored = None  # unknown for the new days: _put_day looks
        else:
            stored = set(self._dates_in(first_day, last_day))
            existing = stored - set(new_slices)
        partial_days = {d for d, whole in covers_whole_days.items() if not whole}

        def merged(day: dt.date) -> pa.Table | None:
            new = new_slices.get(day)
            if day not in partial_days:
                return new
            old = self._read_day(day)
            if old is None:
                return new
            old_ns = old.column(self.time_column).cast(pa.int64()).to_numpy()
            keep = old.filter(pa.array((old_ns < start.value) | (old_ns >= end.value)))
            if new is None:
                return keep if keep.num_rows else None
            combined = pa.concat_tables([self._conform(keep, new.schema, day), new]) if keep.num_rows else new
            order = np.argsort(combined.column(self.time_column).cast(pa.int64()).to_numpy(), kind="stable")
            return combined.take(pa.array(order))

        def write_day(day: dt.date) -> tuple[dt.date, str | None, bool]:
            data = merged(day)
            if data is None or data.num_rows == 0:
                self.store.delete(self.object_key(day, MANIFEST_FILE))
                self.store.delete(self.object_key(day))
                return day, None, True
            return (day, *self._put_day(day, data, maybe_stored=stored is None or day in stored))

        todo = sorted(set(new_slices) | existing)
        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            results = list(pool.map(write_day, todo))
        shas = {d.isoformat(): s for d, s, _ in results if s is not None}
        return WriteSummary(
            rows=table.num_rows,
            objects_written=sum(1 for _, s, changed in results if s is not None and changed),
            objects_unchanged=sum(1 for _, s, changed in results if s is not None and not changed),
            objects_deleted=sum(1 for _, s, _ in results if s is None),
            dates=tuple(todo),
            sha256=shas,
        )

    def _conform(self, old: pa.Table, schema: pa.Schema, day: dt.date) -> pa.Table:
        """Stored rows in the column order and types of the rows being written (same column set required)."""
        if set(old.column_names) != set(schema.names):
            missing = sorted(set(schema.names) - set(old.column_names))
            extra = sorted(set(old.column_names) - set(schema.names))
            raise ValueError(
                f"{self.object_key(day)}: stored columns differ from the frame being written "
                f"(frame only: {missing}, stored only: {extra}); rewrite whole sessions to change the schema"
            )
        return old.select(schema.names).cast(schema, safe=False)

    def _put_day(self, day: dt.date, data: pa.Table, maybe_stored: bool = True) -> tuple[str, bool]:
        """Store one session object and its manifest; returns (sha256, whether anything was written)."""
        blob = parquet_bytes(data)
        sha = hashlib.sha256(blob).hexdigest()
        # Encoding is deterministic: when the manifest and the stored bytes both already match, skip
        # both PUTs. A re-run of an unchanged range then costs GETs, and still repairs a stale manifest
        # or a damaged object.
        try:
            current = self.manifest(day) if maybe_stored else None  # a listing said it is absent
        except ValueError:  # unreadable manifest: rewrite both, which repairs it
            current = None
        if current is not None and current.get("sha256") == sha and current.get("rows") == data.num_rows:
            stored = self.store.get(self.object_key(day))
            if stored is not None and hashlib.sha256(stored).hexdigest() == sha:
                return sha, False
        times = data.column(self.time_column).cast(pa.int64()).to_numpy()
        manifest = {
            "dataset": self.dataset,
            "date": day.isoformat(),
            "rows": data.num_rows,
            "bytes": len(blob),
            "sha256": sha,
            "schema": [[f.name, str(f.type)] for f in data.schema],
            "time_min": pd.Timestamp(int(times.min()), tz="UTC").isoformat(),
            "time_max": pd.Timestamp(int(times.max()), tz="UTC").isoformat(),
            "written_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        # Data first, then its manifest: a crash in between leaves a complete object whose manifest is
        # stale, which `verify` reports and any re-run repairs.
        self.store.put(self.object_key(day), blob)
        self.store.put(self.object_key(day, MANIFEST_FILE), json.dumps(manifest, indent=1).encode())
        return sha, True

    # -- read --------------------------------------------------------------------------------------

    def _exists(self, day: dt.date) -> bool:
        return (
            self.store.get(self.object_key(day, MANIFEST_FILE)) is not None
            or self.store.get(self.object_key(day)) is not None
        )

    def _read_day(self, day: dt.date) -> pa.Table | None:
        blob = self.store.get(self.object_key(day))
        # ParquetFile.read, not read_table: the same table without the dataset layer; one thread per object
        # because the days are already read in parallel
        return None if blob is None else pq.ParquetFile(pa.BufferReader(blob)).read(use_threads=False)

    def read_arrow(self, start=None, end=None, columns: list[str] | None = None) -> pa.Table | None:
        start = None if start is None else cal.as_utc(start, "read start")
        end = None if end is None else cal.as_utc(end, "read end")
        if start is not None and end is not None and end <= start:
            return None
        if start is None or end is None:
            # Open-ended (or no) window: the listed session dates on the bounded side(s).
            first_day = None if start is None else start.tz_convert(cal.TZ).date()
            last_day = None if end is None else (end - pd.Timedelta(1, "ns")).tz_convert(cal.TZ).date()
            days = [
                d for d in self.dates() if (first_day is None or d >= first_day) and (last_day is None or d <= last_day)
            ]
        else:
            first_day = start.tz_convert(cal.TZ).date()
            last_day = (end - pd.Timedelta(1, "ns")).tz_convert(cal.TZ).date()
            if (last_day - first_day).days <= _PROBE_DAYS:
                days = list(_daterange(first_day, last_day))
            else:
                days = self._dates_in(first_day, last_day)
        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            tables = [t for t in pool.map(self._read_day, days) if t is not None]
        if not tables:
            return None
        table = pa.concat_tables(tables, promote_options="permissive")
        if start is not None or end is not None:
            ns = table.column(self.time_column).cast(pa.int64()).to_numpy()
            keep = np.ones(len(ns), dtype=bool)
            if start is not None:
                keep &= ns >= start.value
            if end is not None:
                keep &= ns < end.value
            table = table.filter(pa.array(keep))
        if columns is not None:
            table = table.select(columns)
        return table

    def read(self, start=None, end=None, columns: list[str] | None = None) -> pd.DataFrame:
        """Rows with ``start <= time < end`` (a missing bound is open), as one DataFrame sorted by time."""
        table = self.read_arrow(start, end, columns)
        if table is None:
            empty = pd.DataFrame(columns=columns if columns is not None else [self.time_column])
            if self.time_column in empty.columns:
                empty = empty.astype({self.time_column: "datetime64[ns, UTC]"})
            return empty
        return table.to_pandas()

    def manifest(self, day: dt.date) -> dict | None:
        blob = self.store.get(self.object_key(day, MANIFEST_FILE))
        return None if blob is None else json.loads(blob)

    def verify(self, day: dt.date) -> list[str]:
        """Problems with one session object: missing data or manifest, row count or sha256 mismatch,
        unreadable Parquet or manifest. Never raises for a damaged object: damage is what it reports."""
        data_key, manifest_key = self.object_key(day), self.object_key(day, MANIFEST_FILE)
        blob = self.store.get(data_key)
        if blob is None:
            return [f"{data_key} is missing"]
        try:
            manifest = self.manifest(day)
        except ValueError as exc:  # JSON (or its text encoding) is damaged
            return [f"{manifest_key} is unreadable: {exc}"]
        if manifest is None:
            return [f"{manifest_key} is missing"]
        if not isinstance(manifest, dict) or not {"sha256", "rows"} <= manifest.keys():
            return [f"{manifest_key} lacks sha256/rows"]
        problems = []
        sha = hashlib.sha256(blob).hexdigest()
        if sha != manifest["sha256"]:
            problems.append(f"{data_key}: sha256 {sha[:12]} != manifest {str(manifest['sha256'])[:12]}")
        try:
            rows = pq.read_metadata(io.BytesIO(blob)).num_rows
        except (pa.ArrowException, OSError) as exc:
            problems.append(f"{data_key}: not readable as Parquet ({exc})")
            return problems
        if rows != manifest["rows"]:
            problems.append(f"{data_key}: {rows} rows != manifest {manifest['rows']}")
        return problems


def _daterange(first: dt.date, last: dt.date):
    day = first
    while day <= last:
        yield day
        day += dt.timedelta(days=1)


def write_object(store, dataset: str, df: pd.DataFrame) -> dict:
    """An unpartitioned table as one object ``<dataset>/data.parquet`` with its manifest; returns the manifest."""
    table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    blob = parquet_bytes(table)
    manifest = {
        "dataset": dataset,
        "rows": table.num_rows,
        "bytes": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "schema": [[f.name, str(f.type)] for f in table.schema],
        "written_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    store.put(f"{dataset}/{DATA_FILE}", blob)
    store.put(f"{dataset}/{MANIFEST_FILE}", json.dumps(manifest, indent=1).encode())
    return manifest


def read_object(store, dataset: str) -> pd.DataFrame:
    blob = store.get(f"{dataset}/{DATA_FILE}")
    if blob is None:
        raise FileNotFoundError(
            f"lake object {dataset}/{DATA_FILE} does not exist in {store.location}; materialize it first"
        )
    return pq.read_table(io.BytesIO(blob)).to_pandas()
