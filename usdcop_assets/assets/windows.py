"""Session-grain wiring shared by the bar layers: look-back inputs, the run's window, and the metadata
each session materialization carries (bars present and missing, first and last bar, data version).

Every bar layer is partitioned by Bogota session (``partitions.session_partitions``); a look-back is
a number of earlier *sessions* (nights, weekends and holidays jumped), never a number of bars.
"""

import hashlib

import dagster as dg
import pandas as pd

from usdcop_assets import market_calendar as cal
from usdcop_assets.gaps import bar_summary
from usdcop_assets.partitions import lookback_mapping


def lookback_input(key: dg.AssetKey, sessions: int = 0) -> dg.AssetIn:
    """``key`` over the run's sessions and the ``sessions`` trading sessions before the first of them."""
    return dg.AssetIn(key, partition_mapping=lookback_mapping(sessions)) if sessions else dg.AssetIn(key)


def own_window(context) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The run's window ``[08:00 of the first session, 13:00 of the last)`` in UTC."""
    tw = context.partition_time_window
    return pd.Timestamp(tw.start).tz_convert("UTC"), pd.Timestamp(tw.end).tz_convert("UTC")


def complete_from(bars: pd.DataFrame) -> pd.Timestamp | None:
    """From when the loaded bars are taken as complete: the open of the first loaded session.

    Sessions before it (not materialized, or before the history) are unknown, so windows reaching
    into them are flagged ``warm=False``; a bar missing *inside* a loaded session is a vendor gap and
    the indicators are computed on the rows that exist.
    """
    if bars.empty:
        return None
    first = pd.Timestamp(bars["time"].min()).tz_convert(cal.TZ).date()
    return cal.session_open(first)


def data_version(frame: pd.DataFrame) -> str:
    """A content hash of the rows (order-independent of the index; column order fixed by the frame)."""
    if frame.empty:
        return "empty"
    return _digest(frame.columns, pd.util.hash_pandas_object(frame, index=False).to_numpy())


def _digest(columns, row_hashes) -> str:
    digest = hashlib.sha256(",".join(map(str, columns)).encode())
    digest.update(row_hashes.tobytes())
    return digest.hexdigest()[:16]


MAX_SESSION_VERSIONS = 100  # per-session data versions listed in a range run's metadata up to this many sessions


def session_output(context, frame: pd.DataFrame, metadata: dict | None = None, time_column: str = "time",
                   output_name: str = "result") -> dg.Output:
    """``frame`` as the output of a session-partitioned bar layer, with its session-grain metadata and data version."""
    start, end = own_window(context)
    times = pd.DatetimeIndex(frame[time_column]) if len(frame) else pd.DatetimeIndex([], tz="UTC")
    summary = bar_summary(times, start, end)
    sessions = list(context.partition_keys)
    # Row hashes once for the whole frame: a session's version is the digest of its own rows' hashes, the
    # same as data_version(rows of that session) since a row's hash depends on that row alone.
    row_hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy() if len(frame) else None
    version = _digest(frame.columns, row_hashes) if row_hashes is not None else "empty"
    per_session: dict[str, str] = {}
    if 1 < len(sessions) <= MAX_SESSION_VERSIONS:
        # a range run: dg.Output takes one version, so each session's own is listed in the metadata
        # (not computed beyond that many sessions: nothing would show it)
        keys = cal.session_dates(frame[time_column]).map(cal.session_key).to_numpy() if len(frame) else []
        rows_of = pd.Series(keys).groupby(keys, sort=False).indices if len(frame) else {}
        per_session = {k: _digest(frame.columns, row_hashes[rows_of[k]]) if k in rows_of else "empty" for k in sessions}
    md = {
        "sessions": len(sessions),
        "bars_present": summary["bars_present"],
        "bars_missing": summary["bars_missing"],
        "first_bar": summary["first_bar"],
        "last_bar": summary["last_bar"],
        "data_version": version,
        **(metadata or {}),
    }
    if per_session:
        md["data_version_by_session"] = dg.MetadataValue.json(per_session)
    if summary["missing_bars_sample"]:
        md["missing_bars_sample"] = dg.MetadataValue.json(summary["missing_bars_sample"])
    return dg.Output(frame, output_name=output_name, metadata=md, data_version=dg.DataVersion(version) if len(sessions) == 1 else None)
