"""The lake: SessionTable over a local directory, and the S3 store's checks that need no server.

The store-generic tests run again on a real S3-compatible server in integration/test_lake_s3.py (they
take the ``store`` / ``table`` fixtures, which that module overrides).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import random
import socket

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from usdcop_assets.core import calendar as cal
from usdcop_assets.sources.synthetic import synthetic_bars
from usdcop_assets.storage.lake import store as store_module
from usdcop_assets.storage.lake.session_table import (
    DATA_FILE,
    MANIFEST_FILE,
    SessionTable,
    _local_day_numbers,
    read_object,
    write_object,
)
from usdcop_assets.storage.lake.store import LakeUnavailable, LocalObjectStore, S3ObjectStore

DATASET = "l0/ohlcv_m5"
FIRST, LAST = dt.date(2024, 3, 4), dt.date(2024, 3, 8)  # Monday..Friday, no Colombian holiday
BAR = pd.Timedelta(minutes=cal.BAR_MINUTES)


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    """A local lake; integration/test_lake_s3.py runs the same tests with this fixture on S3."""
    return LocalObjectStore(tmp_path / "lake")


@pytest.fixture
def table(store):
    return SessionTable(store, DATASET)


@pytest.fixture(scope="module")
def days():
    days = cal.trading_days(FIRST, LAST)
    assert len(days) == 5
    return days


@pytest.fixture(scope="module")
def times(days):
    times = cal.expected_bars_between_dates(FIRST, LAST)
    assert len(times) == 5 * cal.BARS_PER_SESSION
    return times


@pytest.fixture(scope="module")
def bars(times):
    df = synthetic_bars(times, defects=False)
    df.loc[[3, 100, 250], "volume"] = np.nan  # missing volumes must survive the round trip
    df["is_flat"] = df["high"] == df["low"]
    df.loc[[7, 130], "is_flat"] = True
    return df


def _span(times) -> tuple[pd.Timestamp, pd.Timestamp]:
    return times[0], times[-1] + BAR


def _keys(store) -> list[str]:
    return [k for k in store.list(DATASET + "/")]


def _objects(store) -> dict[str, bytes]:
    return {k: store.get(k) for k in _keys(store)}


def _data_objects(table: SessionTable, days) -> dict[dt.date, bytes | None]:
    return {d: table.store.get(table.object_key(d)) for d in days}


def _session(bars: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    dates = cal.session_dates(bars["time"])
    return bars[(dates == day).to_numpy()].reset_index(drop=True)


def _expected_keys(days) -> list[str]:
    return sorted(f"{DATASET}/date={d.isoformat()}/{name}" for d in days for name in (DATA_FILE, MANIFEST_FILE))


# --- layout and manifests -------------------------------------------------------------------------


def test_write_creates_one_object_and_manifest_per_session(table, bars, times, days):
    summary = table.write(bars, *_span(times))

    assert _keys(table.store) == _expected_keys(days)
    assert table.dates() == days
    assert summary.rows == len(bars) == 300
    assert summary.objects_written == 5 and summary.objects_deleted == 0
    assert set(summary.dates) == set(days)
    assert set(summary.sha256) == {d.isoformat() for d in days}


def test_manifest_describes_the_stored_object(table, bars, times, days):
    summary = table.write(bars, *_span(times))

    for day in days:
        blob = table.store.get(table.object_key(day))
        manifest = json.loads(table.store.get(table.object_key(day, MANIFEST_FILE)))
        session = _session(bars, day)
        assert manifest["dataset"] == DATASET
        assert manifest["date"] == day.isoformat()
        assert manifest["rows"] == 60 == pq.read_metadata(io.BytesIO(blob)).num_rows
        assert manifest["bytes"] == len(blob)
        assert manifest["sha256"] == hashlib.sha256(blob).hexdigest() == summary.sha256[day.isoformat()]
        assert [name for name, _type in manifest["schema"]] == list(bars.columns)
        assert dict(manifest["schema"])["time"] == "timestamp[ns, tz=UTC]"
        assert dict(manifest["schema"])["close"] == "double"
        assert dict(manifest["schema"])["is_flat"] == "bool"
        assert pd.Timestamp(manifest["time_min"]) == session["time"].min() == cal.session_open(day)
        assert pd.Timestamp(manifest["time_max"]) == session["time"].max() == cal.session_end(day) - BAR
        assert pd.Timestamp(manifest["written_at"]).tzinfo is not None
        assert table.manifest(day) == manifest
        # the object holds exactly that session's rows, in time order
        stored = pq.read_table(io.BytesIO(blob)).to_pandas()
        pd.testing.assert_frame_equal(stored, session)


def test_rows_go_to_their_bogota_calendar_date(table):
    # 23:59 Bogota on the 4th is 04:59 UTC on the 5th; midnight Bogota starts the 5th.
    local = pd.DatetimeIndex(
        ["2024-03-04 00:00", "2024-03-04 23:59", "2024-03-05 00:00", "2024-03-05 04:30"], tz=cal.TZ
    )
    df = pd.DataFrame({"time": local.tz_convert("UTC"), "x": [1.0, 2.0, 3.0, 4.0]})
    table.write(df, local[0], local[-1] + pd.Timedelta(minutes=1))

    assert table.dates() == [dt.date(2024, 3, 4), dt.date(2024, 3, 5)]
    assert table.manifest(dt.date(2024, 3, 4))["rows"] == 2
    assert table.manifest(dt.date(2024, 3, 5))["rows"] == 2
    # a non-UTC input zone is stored as UTC and read back as UTC
    back = table.read()
    assert str(back["time"].dtype) == "datetime64[ns, UTC]"
    assert list(back["time"]) == list(local.tz_convert("UTC"))


def test_local_day_numbers_match_zoneinfo():
    rng = np.random.default_rng(5)
    lo, hi = pd.Timestamp("1994-01-01", tz="UTC").value, pd.Timestamp("2035-01-01", tz="UTC").value
    ns = np.sort(rng.integers(lo, hi, 5000, dtype=np.int64))
    # include exact Bogota midnights and the instants just before them
    midnights = pd.date_range("2020-01-01", periods=50, freq="D", tz=cal.TZ).tz_convert("UTC").asi8
    ns = np.concatenate([ns, midnights, midnights - 1])
    expected = pd.DatetimeIndex(ns, tz="UTC").tz_convert(cal.TZ).date
    got = [dt.date(1970, 1, 1) + dt.timedelta(days=int(d)) for d in _local_day_numbers(ns)]
    assert got == list(expected)


# --- read -----------------------------------------------------------------------------------------


def test_read_returns_exactly_the_window_in_one_sorted_frame(table, bars, times):
    table.write(bars, *_span(times))

    for a, b in [(0, 300), (10, 130), (59, 60), (57, 120), (0, 1), (299, 300), (61, 299)]:
        got = table.read(times[a], times[b - 1] + BAR)
        assert isinstance(got, pd.DataFrame)
        pd.testing.assert_frame_equal(got, bars.iloc[a:b].reset_index(drop=True))
        assert got["time"].is_monotonic_increasing

    # bounds between bars: start is inclusive, end exclusive
    got = table.read(times[10] + pd.Timedelta(seconds=1), times[20])
    assert list(got["time"]) == list(times[11:20])
    got = table.read(times[10], times[20] + pd.Timedelta(seconds=1))
    assert list(got["time"]) == list(times[10:21])


def test_read_look_back_window_spans_sessions(table, bars, times, days):
    table.write(bars, *_span(times))
    today = days[2]
    # the last 3 bars of the previous session plus all of today's, as one frame
    start = cal.session_end(days[1]) - 3 * BAR
    got = table.read(start, cal.session_end(today))

    assert len(got) == 63
    assert list(got["time"][:3]) == list(cal.session_bars(days[1])[-3:])
    assert list(got["time"][3:]) == list(cal.session_bars(today))
    assert got["time"].is_monotonic_increasing and got["time"].is_unique
    pd.testing.assert_frame_equal(
        got, bars[(bars["time"] >= start) & (bars["time"] < cal.session_end(today))].reset_index(drop=True)
    )


def test_read_edge_windows(table, bars, times, days):
    table.write(bars, *_span(times))

    # a weekend window: no objects at all -> empty frame with a UTC time column
    weekend = table.read(pd.Timestamp("2024-03-09", tz=cal.TZ), pd.Timestamp("2024-03-11", tz=cal.TZ))
    assert len(weekend) == 0 and str(weekend["time"].dtype) == "datetime64[ns, UTC]"
    empty_cols = table.read(
        pd.Timestamp("2024-03-09", tz=cal.TZ), pd.Timestamp("2024-03-10", tz=cal.TZ), columns=["close"]
    )
    assert len(empty_cols) == 0 and list(empty_cols.columns) == ["close"]

    # a window longer than the direct-GET probe range is served from the listing
    wide = table.read(pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-06-01", tz="UTC"))
    pd.testing.assert_frame_equal(wide, bars)

    # no window: everything; one open bound: the other side is open
    pd.testing.assert_frame_equal(table.read(), bars)
    pd.testing.assert_frame_equal(table.read(start=times[250]), bars.iloc[250:].reset_index(drop=True))
    pd.testing.assert_frame_equal(table.read(end=times[5]), bars.iloc[:5].reset_index(drop=True))

    # a column selection keeps the order asked for
    cols = table.read(times[0], times[10], columns=["close", "time"])
    assert list(cols.columns) == ["close", "time"]
    assert list(cols["close"]) == list(bars["close"][:10])

    # an inverted window holds nothing
    assert len(table.read(times[10], times[5])) == 0


# --- partial rewrites -----------------------------------------------------------------------------


def test_single_bar_rewrite_replaces_only_that_bar(table, bars, times, days):
    table.write(bars, *_span(times))
    before = _data_objects(table, days)

    i = 60 * 2 + 17  # bar 17 of the third session
    changed = bars.iloc[[i]].copy()
    changed["close"] = 1234.5
    changed["volume"] = np.nan
    summary = table.write(changed, times[i], times[i] + BAR)

    assert summary.objects_written == 1 and summary.dates == (days[2],)
    session = table.read(cal.session_open(days[2]), cal.session_end(days[2]))
    assert len(session) == 60
    expected = _session(bars, days[2])
    expected.loc[17, ["close", "volume"]] = [1234.5, np.nan]
    pd.testing.assert_frame_equal(session, expected)
    assert table.manifest(days[2])["rows"] == 60
    after = _data_objects(table, days)
    assert after[days[2]] != before[days[2]]
    assert {d: b for d, b in after.items() if d != days[2]} == {d: b for d, b in before.items() if d != days[2]}
    assert table.verify(days[2]) == []


def test_partial_window_across_two_sessions(table, bars, times, days):
    table.write(bars, *_span(times))
    # last 5 bars of session 1 and first 5 of session 2, with new values
    start, end = times[55], times[64] + BAR
    new = bars.iloc[55:65].copy()
    new["open"] = new["open"] + 1.0
    table.write(new, start, end)

    expected = bars.copy()
    expected.loc[55:64, "open"] = expected.loc[55:64, "open"] + 1.0
    pd.testing.assert_frame_equal(table.read(), expected)
    assert [table.manifest(d)["rows"] for d in days] == [60] * 5


def test_empty_frame_removes_the_window(table, bars, times, days):
    table.write(bars, *_span(times))
    empty = bars.iloc[:0]

    # a part of a session: those rows go, the rest stays
    summary = table.write(empty, times[10], times[20])
    assert summary.objects_written == 1 and summary.objects_deleted == 0
    got = table.read(cal.session_open(days[0]), cal.session_end(days[0]))
    assert list(got["time"]) == list(times[:10]) + list(times[20:60])
    assert table.manifest(days[0])["rows"] == 50
    assert table.verify(days[0]) == []

    # a whole session: the object and its manifest are deleted
    summary = table.write(empty, cal.session_open(days[1]), cal.session_end(days[1]))
    assert summary.objects_deleted == 1 and summary.objects_written == 0
    assert table.store.get(table.object_key(days[1])) is None
    assert table.store.get(table.object_key(days[1], MANIFEST_FILE)) is None
    assert table.dates() == [days[0]] + days[2:]

    # a partial window that happens to hold all remaining rows of a session also deletes it
    summary = table.write(empty, times[120] - pd.Timedelta(minutes=1), times[179] + BAR)
    assert summary.objects_deleted == 1
    assert table.dates() == [days[0], days[3], days[4]]

    # a window over several sessions with fewer rows than before: stale rows disappear
    keep = bars.iloc[[200, 250]]
    table.write(keep, times[180], times[299] + BAR)
    assert list(table.read(times[180], times[299] + BAR)["time"]) == [times[200], times[250]]
    assert set(_keys(table.store)) == set(_expected_keys([days[0], days[3], days[4]]))


# --- determinism ----------------------------------------------------------------------------------


def test_rewriting_the_same_rows_gives_identical_objects(table, bars, times, days):
    first = table.write(bars, *_span(times))
    objects = _data_objects(table, days)
    second = table.write(bars, *_span(times))

    assert second.sha256 == first.sha256
    assert _data_objects(table, days) == objects
    for day in days:
        assert table.manifest(day)["sha256"] == hashlib.sha256(objects[day]).hexdigest()
    # same rows in another order and another time zone: still the same bytes
    shuffled = bars.sample(frac=1.0, random_state=3).reset_index(drop=True)
    shuffled["time"] = shuffled["time"].dt.tz_convert(cal.TZ)
    assert table.write(shuffled, *_span(times)).sha256 == first.sha256
    assert _data_objects(table, days) == objects


def test_bar_by_bar_equals_one_range_write(store, bars, times, days):
    ranged = SessionTable(store, "ranged")
    ranged.write(bars, *_span(times))

    barwise = SessionTable(store, "barwise")
    order = list(range(len(bars)))
    random.Random(11).shuffle(order)  # arrival order must not matter either
    for i in order:
        barwise.write(bars.iloc[[i]], times[i], times[i] + BAR)

    sessionwise = SessionTable(store, "sessionwise")
    for day in days:
        sessionwise.write(_session(bars, day), cal.session_open(day), cal.session_end(day))

    assert barwise.dates() == ranged.dates() == sessionwise.dates() == days
    for day in days:
        want = store.get(ranged.object_key(day))
        assert store.get(barwise.object_key(day)) == want
        assert store.get(sessionwise.object_key(day)) == want
        assert barwise.manifest(day)["sha256"] == ranged.manifest(day)["sha256"]


def test_partial_rewrite_with_reordered_columns(table, bars, times, days):
    table.write(bars, *_span(times))
    ref = table.store.get(table.object_key(days[0]))
    reordered = bars.iloc[[5]][list(reversed(bars.columns))]
    table.write(reordered, times[5], times[5] + BAR)

    got = table.read(cal.session_open(days[0]), cal.session_end(days[0]))
    pd.testing.assert_frame_equal(got[list(bars.columns)], _session(bars, days[0]))
    assert table.verify(days[0]) == []
    # writing the original order back restores the original bytes
    table.write(bars.iloc[[5]], times[5], times[5] + BAR)
    assert table.store.get(table.object_key(days[0])) == ref

    # a different column set cannot be merged into the stored rows of a session
    with pytest.raises(ValueError, match="is_flat"):
        table.write(bars.iloc[[5]].drop(columns=["is_flat"]), times[5], times[5] + BAR)
    assert table.store.get(table.object_key(days[0])) == ref


# --- validation -----------------------------------------------------------------------------------


def test_rows_outside_the_window_are_rejected(table, bars, times):
    start, end = times[0], times[60]
    with pytest.raises(ValueError) as err:
        table.write(bars.iloc[:61], start, end)  # bar 60 is the window's end: excluded
    msg = str(err.value)
    assert str(start) in msg and str(end) in msg and "outside the window" in msg
    assert str(times[60]) in msg
    with pytest.raises(ValueError, match="outside the window"):
        table.write(bars.iloc[:10], times[1], times[60])
    assert _keys(table.store) == []


def test_naive_times_are_rejected(table, bars, times):
    naive = bars.iloc[:5].copy()
    naive["time"] = naive["time"].dt.tz_localize(None)
    with pytest.raises(ValueError, match="tz-aware"):
        table.write(naive, times[0], times[5])
    with pytest.raises(ValueError, match="timezone"):
        table.write(bars.iloc[:5], times[0].tz_localize(None), times[5])
    with pytest.raises(ValueError, match="timezone"):
        table.write(bars.iloc[:5], times[0], times[5].tz_localize(None))
    with pytest.raises(ValueError, match="timezone"):
        table.read(times[0].tz_localize(None), times[5])
    with pytest.raises(ValueError, match="time column"):
        table.write(bars.iloc[:5].drop(columns=["time"]), times[0], times[5])
    missing = bars.iloc[:5].copy()
    missing.loc[2, "time"] = pd.NaT
    with pytest.raises(ValueError, match="missing"):
        table.write(missing, times[0], times[5])
    with pytest.raises(ValueError, match="window"):
        table.write(bars.iloc[:0], times[5], times[5])
    assert _keys(table.store) == []


# --- verify ---------------------------------------------------------------------------------------


def test_verify_reports_tampered_and_missing_objects(table, bars, times, days):
    table.write(bars, *_span(times))
    assert all(table.verify(d) == [] for d in days)

    # tampered: a valid Parquet object with other content (one row dropped)
    other = pq.read_table(io.BytesIO(table.store.get(table.object_key(days[0])))).slice(0, 59)
    buf = io.BytesIO()
    pq.write_table(other, buf)
    table.store.put(table.object_key(days[0]), buf.getvalue())
    problems = table.verify(days[0])
    assert any("sha256" in p for p in problems) and any("59 rows" in p for p in problems)

    # tampered: bytes that are not Parquet at all -> reported, not raised
    table.store.put(table.object_key(days[1]), b"not parquet at all")
    problems = table.verify(days[1])
    assert any("sha256" in p for p in problems) and any("Parquet" in p for p in problems)

    # missing manifest
    table.store.delete(table.object_key(days[2], MANIFEST_FILE))
    assert table.verify(days[2]) == [f"{table.object_key(days[2], MANIFEST_FILE)} is missing"]

    # missing data object
    table.store.delete(table.object_key(days[3]))
    assert table.verify(days[3]) == [f"{table.object_key(days[3])} is missing"]

    # damaged manifest
    table.store.put(table.object_key(days[4], MANIFEST_FILE), b"{not json")
    assert any("manifest.json" in p for p in table.verify(days[4]))

    # a re-run repairs everything
    table.write(bars, *_span(times))
    assert all(table.verify(d) == [] for d in days)


# --- interrupted writes ---------------------------------------------------------------------------


class _FailingStore:
    """Delegates to a real store; puts of keys ending with ``fail_suffix`` raise before reaching it."""

    def __init__(self, inner, fail_suffix: str):
        self.inner, self.fail_suffix = inner, fail_suffix
        self.location = inner.location

    def put(self, key, data):
        if key.endswith(self.fail_suffix):
            raise OSError(f"simulated failure writing {key}")
        self.inner.put(key, data)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_failure_between_data_and_manifest_is_detected_and_repaired(store, bars, times, days):
    SessionTable(store, DATASET).write(bars, *_span(times))
    changed = bars.iloc[[3]].copy()
    changed["close"] += 10

    failing = SessionTable(_FailingStore(store, MANIFEST_FILE), DATASET)
    with pytest.raises(OSError, match="simulated"):
        failing.write(changed, times[3], times[3] + BAR)

    table = SessionTable(store, DATASET)
    assert any("sha256" in p for p in table.verify(days[0]))  # the data is new, its manifest stale
    table.write(changed, times[3], times[3] + BAR)  # re-running repairs it
    assert table.verify(days[0]) == []
    assert table.read(times[3], times[4])["close"].iloc[0] == changed["close"].iloc[0]


def test_failed_data_put_changes_nothing(store, bars, times, days):
    SessionTable(store, DATASET).write(bars, *_span(times))
    before = _objects(store)
    failing = SessionTable(_FailingStore(store, DATA_FILE), DATASET)
    with pytest.raises(OSError, match="simulated"):
        failing.write(bars.iloc[[3]].assign(close=1.0), times[3], times[3] + BAR)
    assert _objects(store) == before


def _all_files(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_local_interrupted_replace_keeps_old_object(tmp_path, bars, times, days, monkeypatch):
    root = tmp_path / "lake"
    table = SessionTable(LocalObjectStore(root), DATASET)
    table.write(bars, *_span(times))
    before = _objects(table.store)
    files = _all_files(root)

    def boom(src, dst):
        raise OSError("simulated crash at rename")

    monkeypatch.setattr(os, "replace", boom)
    changed = bars.iloc[[3]].assign(close=1.0)
    with pytest.raises(OSError, match="simulated crash"):
        table.write(changed, times[3], times[3] + BAR)
    monkeypatch.undo()

    assert _objects(table.store) == before
    assert _all_files(root) == files  # no temporary file left behind
    assert table.verify(days[0]) == []


def test_local_interrupted_file_write_keeps_old_object(tmp_path, bars, times, days, monkeypatch):
    root = tmp_path / "lake"
    table = SessionTable(LocalObjectStore(root), DATASET)
    table.write(bars, *_span(times))
    before = _objects(table.store)
    files = _all_files(root)

    real_open = open

    class HalfWriter:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            self.fh.write(data[: len(data) // 2])
            self.fh.flush()
            raise OSError("simulated disk full mid-write")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def __getattr__(self, name):
            return getattr(self.fh, name)

    def half_open(path, mode="r", *args, **kwargs):
        fh = real_open(path, mode, *args, **kwargs)
        return HalfWriter(fh) if "w" in mode else fh

    monkeypatch.setattr(store_module, "open", half_open, raising=False)
    with pytest.raises(OSError, match="disk full"):
        table.write(bars.iloc[[3]].assign(close=1.0), times[3], times[3] + BAR)
    monkeypatch.undo()

    assert _objects(table.store) == before
    assert _all_files(root) == files
    assert table.verify(days[0]) == []


# --- store specifics ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["../outside", "a/../../outside", "/etc/passwd", "", "."])
def test_local_store_rejects_keys_escaping_the_root(tmp_path, key):
    root = tmp_path / "lake"
    root.mkdir()
    store = LocalObjectStore(root)
    with pytest.raises(ValueError, match="escapes"):
        store.put(key, b"x")
    with pytest.raises(ValueError, match="escapes"):
        store.get(key)
    with pytest.raises(ValueError, match="escapes"):
        store.delete(key)
    assert not (tmp_path / "outside").exists()


def test_local_store_keys_cannot_escape_the_root_but_operator_symlinks_are_followed(tmp_path):
    root, outside = tmp_path / "lake", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    store = LocalObjectStore(root)
    for bad in ("../x", "a/../../x", "/etc/passwd", ""):
        with pytest.raises(ValueError, match="escapes"):
            store.put(bad, b"x")
    assert sorted(tmp_path.iterdir()) == sorted([root, outside])  # nothing written outside the root
    store.put("inside/../ok", b"y")  # normalizes within the root: allowed
    assert store.get("ok") == b"y"
    # a directory the operator symlinked into the lake (say, on a bigger disk) is used as such
    (root / "l0").symlink_to(outside, target_is_directory=True)
    store.put("l0/date=2025-03-04/data.parquet", b"z")
    assert (outside / "date=2025-03-04" / "data.parquet").read_bytes() == b"z"


def test_store_basics(store):
    assert store.get("a/b/missing") is None
    store.put("a/b/one", b"1")
    store.put("a/c/two", b"22")
    store.put("z", b"333")
    assert store.get("a/b/one") == b"1"
    assert store.list("a/") == ["a/b/one", "a/c/two"]
    assert store.list("nothing/") == []
    store.put("a/b/one", b"1bis")
    assert store.get("a/b/one") == b"1bis"
    store.delete("a/b/one")
    store.delete("a/b/one")  # deleting a missing key is not an error
    assert store.get("a/b/one") is None
    assert store.list("a/") == ["a/c/two"]
    store.check()


def test_unpartitioned_object_round_trip(store):
    df = pd.DataFrame({"name": ["a", "b"], "value": [1.5, np.nan]})
    manifest = write_object(store, "meta/table", df)
    blob = store.get("meta/table/data.parquet")
    assert manifest["sha256"] == hashlib.sha256(blob).hexdigest() and manifest["rows"] == 2
    pd.testing.assert_frame_equal(read_object(store, "meta/table"), df)
    assert write_object(store, "meta/table", df)["sha256"] == manifest["sha256"]
    with pytest.raises(FileNotFoundError, match="meta/none"):
        read_object(store, "meta/none")


# --- availability ---------------------------------------------------------------------------------


def test_local_check_fails_when_root_is_not_a_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    with pytest.raises(LakeUnavailable, match="USDCOP_LAKE_URL"):
        LocalObjectStore(blocker / "lake").check()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_s3_check_on_refused_endpoint_names_it(monkeypatch):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    store = S3ObjectStore("some-bucket")
    with pytest.raises(LakeUnavailable) as err:
        store.check()
    assert endpoint in str(err.value)
    assert "USDCOP_LAKE_URL" in str(err.value) and "unreachable" in str(err.value)


def test_s3_check_without_credentials_says_so(monkeypatch, tmp_path):
    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # its botocore session caches resolved credentials
    with pytest.raises(LakeUnavailable) as err:
        S3ObjectStore("some-bucket").check()
    assert "credentials" in str(err.value) and "AWS_ACCESS_KEY_ID" in str(err.value)
    assert "some-bucket" in str(err.value)


def test_rewriting_unchanged_sessions_writes_nothing_and_changed_ones_are_rewritten(table, bars, times, days):
    first = table.write(bars, *_span(times))
    assert (first.objects_written, first.objects_unchanged) == (5, 0)
    stamps = {d: table.manifest(d)["written_at"] for d in days}
    again = table.write(bars, *_span(times))
    assert (again.objects_written, again.objects_unchanged) == (0, 5)
    assert {d: table.manifest(d)["written_at"] for d in days} == stamps  # untouched
    changed = bars.copy()
    changed.loc[changed.index[-1], "close"] += 1.0  # last bar of the last session
    third = table.write(changed, *_span(times))
    assert (third.objects_written, third.objects_unchanged) == (1, 4)
    assert table.read(*_span(times))["close"].iloc[-1] == changed["close"].iloc[-1]


def test_local_store_recreates_a_folder_removed_behind_its_back(tmp_path):
    import shutil

    store = LocalObjectStore(tmp_path / "lake")
    store.put("l0/x/date=2025-03-04/data.parquet", b"1")
    shutil.rmtree(tmp_path / "lake" / "l0")
    store.put("l0/x/date=2025-03-04/data.parquet", b"2")
    assert store.get("l0/x/date=2025-03-04/data.parquet") == b"2"
