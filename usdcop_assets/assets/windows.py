"""Session-grain wiring shared by the bar layers: look-back inputs, the run's window, and the metadata
each session materialization carries (bars present and missing, first and last bar, data version).

Every bar layer is partitioned by Bogota session (``partitions.session_partitions``); a look-back is
a number of earlier *sessions* (nights, weekends and holidays jumped), never a number of bars.
"""

import dagster as dg
import pandas as pd

from usdcop_assets import market_calendar as cal
from usdcop_assets.features.indicators import complete_from  # noqa: F401 (re-exported)
from usdcop_assets.frames import data_version
from usdcop_assets.gaps import bar_summary
from usdcop_assets.partitions import lookback_mapping


def lookback_input(key: dg.AssetKey, sessions: int = 0) -> dg.AssetIn:
    """``key`` over the run's sessions and the ``sessions`` trading sessions before the first of them."""
    return dg.AssetIn(key, partition_mapping=lookback_mapping(sessions)) if sessions else dg.AssetIn(key)


def own_window(context) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The run's window ``[08:00 of the first session, 13:00 of the last)`` in UTC."""
    tw = context.partition_time_window
    return pd.Timestamp(tw.start).tz_convert("UTC"), pd.Timestamp(tw.end).tz_convert("UTC")


def session_output(context, frame: pd.DataFrame, metadata: dict | None = None, time_column: str = "time",
                   output_name: str = "result") -> dg.Output:
    """``frame`` as the output of a session-partitioned bar layer, with its session-grain metadata and data version."""
    start, end = own_window(context)
    times = pd.DatetimeIndex(frame[time_column]) if len(frame) else pd.DatetimeIndex([], tz="UTC")
    summary = bar_summary(times, start, end)
    sessions = list(context.partition_keys)
    per_session: dict[str, str] = {}
    if len(sessions) == 1:
        version = data_version(frame)
        versions = dg.DataVersion(version)
    else:  # a range run: dg.Output takes one version, so each session's own is listed in the metadata
        days = cal.session_dates(frame[time_column]).map(cal.session_key).to_numpy() if len(frame) else []
        parts = dict(tuple(frame.groupby(days))) if len(frame) else {}
        per_session = {k: data_version(parts[k]) if k in parts else "empty" for k in sessions}
        version = data_version(frame)
        versions = None
    md = {
        "sessions": len(sessions),
        "bars_present": summary["bars_present"],
        "bars_missing": summary["bars_missing"],
        "first_bar": summary["first_bar"],
        "last_bar": summary["last_bar"],
        "data_version": version,
        **(metadata or {}),
    }
    if per_session and len(per_session) <= 100:
        md["data_version_by_session"] = dg.MetadataValue.json(per_session)
    if summary["missing_bars_sample"]:
        md["missing_bars_sample"] = dg.MetadataValue.json(summary["missing_bars_sample"])
    return dg.Output(frame, output_name=output_name, metadata=md, data_version=versions)
