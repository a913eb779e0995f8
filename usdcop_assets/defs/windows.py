"""Session-grain wiring shared by the bar layers: look-back inputs, the run's window, and the metadata
each session materialization carries (bars present and missing, first and last bar, data version).

Every bar layer is partitioned by Bogota session (``partitions.session_partitions``); a look-back is
a number of earlier *sessions* (nights, weekends and holidays jumped), never a number of bars.
"""

import dagster as dg
import pandas as pd

from usdcop_assets import gaps
from usdcop_assets.core import calendar as cal
from usdcop_assets.core.frames import data_version, data_versions_by_group
from usdcop_assets.defs.partitions import lookback_mapping
from usdcop_assets.features.indicators import complete_from  # noqa: F401 (re-exported)
from usdcop_assets.gaps import bar_summary


def lookback_input(key: dg.AssetKey, sessions: int = 0) -> dg.AssetIn:
    """``key`` over the run's sessions and the ``sessions`` trading sessions before the first of them."""
    return dg.AssetIn(key, partition_mapping=lookback_mapping(sessions)) if sessions else dg.AssetIn(key)


def own_window(context) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The run's window ``[08:00 of the first session, 13:00 of the last)`` in UTC."""
    tw = context.partition_time_window
    return pd.Timestamp(tw.start).tz_convert("UTC"), pd.Timestamp(tw.end).tz_convert("UTC")


def session_output(
    context, frame: pd.DataFrame, metadata: dict | None = None, time_column: str = "time", output_name: str = "result"
) -> dg.Output:
    """``frame`` as the output of a session-partitioned bar layer, with its session-grain metadata and data version.

    A range run gives each session's materialization its own summary (``add_asset_metadata`` per
    partition): the gap-fill sensor reads ``last_bar`` per session, so a range-wide value would hide
    a short session inside the range.
    """
    start, end = own_window(context)
    sessions = list(context.partition_keys)
    md: dict = {"sessions": len(sessions)}
    if len(sessions) == 1:
        version = data_version(frame)
        md.update(_summary_metadata(frame, time_column, start, end, version))
        versions = dg.DataVersion(version)
    else:  # a range run: dg.Output takes one version, so each session's own goes in its own metadata
        days = cal.session_dates(frame[time_column]).map(cal.session_key).to_numpy() if len(frame) else []
        rows_of = pd.Series(days).groupby(days, sort=False).indices if len(frame) else {}
        versions_of = data_versions_by_group(frame, rows_of)  # one hashing pass over the range's rows
        asset_key = context.asset_key_for_output(output_name)
        now = gaps.utc_now()
        per_session: dict[str, str] = {}
        for key in sessions:
            part = frame.iloc[rows_of[key]] if key in rows_of else frame.iloc[:0]
            per_session[key] = versions_of.get(key, "empty")
            context.add_asset_metadata(
                _session_metadata(part, time_column, cal.parse_session_key(key), per_session[key], now),
                asset_key=asset_key,
                partition_key=key,
            )
        if len(per_session) <= 100:
            md["data_version_by_session"] = dg.MetadataValue.json(per_session)
        versions = None
    md.update(metadata or {})
    return dg.Output(frame, output_name=output_name, metadata=md, data_version=versions)


def _session_metadata(frame: pd.DataFrame, time_column: str, day, version: str, now) -> dict:
    """``_summary_metadata`` of one session of a range; a complete session skips the gap search (a six-year range is
    mostly complete)."""
    start, end = cal.session_open(day), cal.session_end(day)
    times = pd.DatetimeIndex(frame[time_column]) if len(frame) else pd.DatetimeIndex([], tz="UTC")
    idx = times[(times >= start) & (times < end)].unique().sort_values()
    if len(idx) and cal.bars_of_days([day]).isin(idx).all():
        fmt = "%Y-%m-%d %H:%M"
        summary = {
            "bars_present": len(idx),
            "bars_missing": 0,
            "first_bar": idx[0].tz_convert(cal.TZ).strftime(fmt),
            "last_bar": idx[-1].tz_convert(cal.TZ).strftime(fmt),
            "missing_bars_sample": [],
        }
    else:
        summary = bar_summary(idx, start, end, now)
    return _as_metadata(summary, version)


def _summary_metadata(frame: pd.DataFrame, time_column: str, start, end, version: str) -> dict:
    times = pd.DatetimeIndex(frame[time_column]) if len(frame) else pd.DatetimeIndex([], tz="UTC")
    return _as_metadata(bar_summary(times, start, end), version)


def _as_metadata(summary: dict, version: str) -> dict:
    md = {
        "bars_present": summary["bars_present"],
        "bars_missing": summary["bars_missing"],
        "first_bar": summary["first_bar"],
        "last_bar": summary["last_bar"],
        "data_version": version,
    }
    if summary["missing_bars_sample"]:
        md["missing_bars_sample"] = dg.MetadataValue.json(summary["missing_bars_sample"])
    return md
