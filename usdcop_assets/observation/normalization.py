"""Point-in-time normalization statistics: one set per calendar month, fitted only on data before the month.

The rule is part of the observation config (``normalization.rule``), docs/decisions/0003-observation-normalization.md:

- ``trailing_months`` (default, ``months: 12``): month M's statistics are fitted on the warm L3 rows of
  the sessions in the ``months`` calendar months before M (never M or later);
- ``declared``: every month uses the statistics of the declared window ``train_start..train_end``, but
  a month that starts before the window ends is refused (its statistics would hold later data).

A month whose window holds fewer than ``min_train_bars`` warm rows, or that the declared window
refuses, gets *unfitted* statistics carrying the reason: its observations are built but not warm (the
agent neither trains on them nor trades them). ``stats_version`` hashes one month's statistics;
``obs_version`` (builder.obs_version) hashes the config, the same for every month.

Pure numpy/pandas; no Dagster.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import numpy as np
import pandas as pd

from usdcop_assets.core import calendar as cal

TRAILING, DECLARED = "trailing_months", "declared"
RULES = (TRAILING, DECLARED)
UNFITTED = "unfitted"
STATS_DATASET = "l4/observation_stats"
FIX = "run `usdcop backfill` over the month (or the observation_stats job for it)"
# one row per (month, feature); these scalars repeat on every row of the month
SCALARS = (
    "month",
    "rule",
    "fitted",
    "reason",
    "stats_version",
    "obs_version",
    "config_version",
    "config_sha256",
    "window_start",
    "window_end",
    "train_rows",
    "min_train_bars",
    "first_bar",
    "last_bar",
)


def month_key(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def shift_month(month: str, months: int) -> str:
    y, m = (int(p) for p in month.split("-"))
    n = y * 12 + m - 1 + months
    return f"{n // 12:04d}-{n % 12 + 1:02d}"


def month_start(month: str) -> pd.Timestamp:
    """00:00 Bogota on the month's first day, in UTC (the start of its Dagster month partition)."""
    y, m = (int(p) for p in month.split("-"))
    return pd.Timestamp(dt.datetime(y, m, 1, tzinfo=cal.TZ)).tz_convert("UTC")


def months_of(times) -> np.ndarray:
    """The Bogota month key of each UTC instant."""
    local = pd.DatetimeIndex(times).tz_convert(cal.TZ)
    return np.array([f"{y:04d}-{m:02d}" for y, m in zip(local.year, local.month)], dtype=object)


def months_between(first: dt.date, last: dt.date) -> list[str]:
    out, month = [], month_key(first)
    while month <= month_key(last):
        out.append(month)
        month = shift_month(month, 1)
    return out


def fit_window(config, month: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, end) in UTC of the rows month ``month``'s statistics are fitted on."""
    if config.rule == DECLARED:
        days = cal.trading_days(config.train_start, config.train_end)
        if not days:
            raise ValueError(
                f"{config.version}: no trading session in the declared window {config.train_start}..{config.train_end}"
            )
        return cal.session_open(days[0]), cal.session_end(days[-1])
    return month_start(shift_month(month, -config.months)), month_start(month)


def _label(start: pd.Timestamp, end: pd.Timestamp) -> tuple[str, str]:
    """First and last Bogota day of [start, end)."""
    return start.tz_convert(cal.TZ).date().isoformat(), (end - pd.Timedelta(1, "ns")).tz_convert(
        cal.TZ
    ).date().isoformat()


def fit_month(features: pd.DataFrame, config, month: str) -> dict:
    """Month ``month``'s statistics from the warm rows of ``features`` inside its fit window (rows outside are
    ignored)."""
    from usdcop_assets.observation.builder import obs_version

    start, end = fit_window(config, month)
    first, last = _label(start, end)
    body = {
        "month": month,
        "rule": config.rule,
        "obs_version": obs_version(config),
        "config_version": config.version,
        "config_sha256": config.sha256(),
        "window_start": first,
        "window_end": last,
        "min_train_bars": config.min_train_bars,
    }
    rows = features.iloc[:0]
    if len(features):
        missing = [f for f in config.features if f not in features.columns]
        if missing:
            raise ValueError(f"{config.version}: l3/features_m5 lacks {missing}; re-materialize l3/features_m5")
        times = pd.DatetimeIndex(features["time"]).tz_convert("UTC")
        rows = features[(times >= start) & (times < end) & features["warm"].astype(bool).to_numpy()]
    body.update(
        train_rows=int(len(rows)),
        first_bar=str(pd.Timestamp(rows["time"].min())) if len(rows) else "",
        last_bar=str(pd.Timestamp(rows["time"].max())) if len(rows) else "",
    )
    reason = ""
    if config.rule == DECLARED and end > month_start(month):
        reason = (
            f"the declared window {first}..{last} does not end before {month} starts (look-ahead): "
            f"declare a window that ends before the month, or use rule {TRAILING}"
        )
    elif len(rows) < config.min_train_bars:
        reason = (
            f"{len(rows)} warm l3/features_m5 bars in {first}..{last}, {config.min_train_bars} needed "
            f"({config.min_train_bars - len(rows)} more): materialize l3/features_m5 over the months before {month}"
        )
    mean, std, finite_rows = {}, {}, {}
    for name in config.features:
        values = rows[name].to_numpy(dtype="float64") if len(rows) and not reason else np.zeros(0)
        finite = values[np.isfinite(values)]
        if reason:
            m, s = np.nan, np.nan
        elif name in config.passthrough:
            m, s = 0.0, 1.0
        else:
            m = float(finite.mean()) if len(finite) else 0.0
            s = float(finite.std(ddof=1)) if len(finite) > 1 else 1.0
            s = s if s > config.min_std else 1.0  # a constant feature is centred, not blown up
        mean[name], std[name], finite_rows[name] = m, s, int(len(finite))
    body.update(fitted=not reason, reason=reason, mean=mean, std=std, finite_rows=finite_rows)
    if reason:
        body["stats_version"] = UNFITTED
    else:  # the month itself is not hashed: months sharing statistics (a declared window) share the version
        digest = {
            k: body[k] for k in ("rule", "config_sha256", "window_start", "window_end", "train_rows", "mean", "std")
        }
        body["stats_version"] = (
            f"{config.version}-s{hashlib.sha256(json.dumps(digest, sort_keys=True).encode()).hexdigest()[:12]}"
        )
    return body


def fit_months(features: pd.DataFrame, config, months: list[str]) -> list[dict]:
    return [fit_month(features, config, m) for m in months]


def read_span(config, months: list[str]) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The L3 rows needed to fit ``months``: the union of their fit windows."""
    windows = [fit_window(config, m) for m in months]
    return min(w[0] for w in windows), max(w[1] for w in windows)


# --- the statistics as a table (l4/observation_stats in the lake, one object per month) --------------


def stats_to_frame(stats: list[dict]) -> pd.DataFrame:
    """One row per (month, feature) with ``time`` = the month's start, the month's scalars on every row."""
    parts = []
    for s in stats:
        names = list(s["mean"])
        frame = pd.DataFrame(
            {
                "time": month_start(s["month"]),
                "feature": names,
                "position": np.arange(len(names), dtype="int64"),
                "mean": [s["mean"][n] for n in names],
                "std": [s["std"][n] for n in names],
                "finite_rows": np.array([s["finite_rows"][n] for n in names], dtype="int64"),
            }
        )
        for key in SCALARS:
            frame[key] = s[key]
        parts.append(frame)
    if not parts:
        return pd.DataFrame(columns=["time", "feature", "position", "mean", "std", "finite_rows", *SCALARS])
    return pd.concat(parts, ignore_index=True)


def stats_from_frame(frame: pd.DataFrame) -> dict[str, dict]:
    """month -> statistics, from the rows of ``l4/observation_stats`` (any number of months; empty -> {})."""
    if frame is None or frame.empty or "month" not in frame.columns:
        return {}
    out = {}
    for month, part in frame.groupby("month", sort=True):
        part = part.sort_values("position")
        first = part.iloc[0]
        s = {k: (first[k].item() if hasattr(first[k], "item") else first[k]) for k in SCALARS}
        s["fitted"] = bool(s["fitted"])
        s["mean"] = dict(zip(part["feature"], part["mean"].astype(float)))
        s["std"] = dict(zip(part["feature"], part["std"].astype(float)))
        s["finite_rows"] = dict(zip(part["feature"], part["finite_rows"].astype(int)))
        out[str(month)] = s
    return out


def read_month_stats(store, months: list[str]) -> dict[str, dict]:
    """The stored statistics of ``months`` (those materialized) from the lake object store."""
    from usdcop_assets.storage.lake.session_table import SessionTable

    if not months:
        return {}
    table = SessionTable(store, STATS_DATASET)
    return stats_from_frame(table.read(month_start(min(months)), month_start(shift_month(max(months), 1))))


def missing_reason(month: str) -> str:
    return f"l4/observation_stats {month} is not materialized: {FIX}"


def old_statistics_note(store) -> str | None:
    """A line for homes of an older release, whose single l4/observation_stats object is no longer read."""
    if store.get(f"{STATS_DATASET}/data.parquet") is None:
        return None
    return (
        f"{store.location}/{STATS_DATASET}/data.parquet is the single statistics object of an older release and is no "
        f"longer read (statistics are monthly now): {FIX}"
    )
