"""The data checks of the session layers as pure functions: frames in, one verdict per session out.

No Dagster and no I/O here (``quality/checks.py`` reads the stores and records the verdicts as
partitioned asset-check evaluations). Sessions are keys ``YYYY-MM-DD``; rows belong to the Bogota
date of their time, on or off the session hours. A failed verdict's ``detail`` names the first
offending session, bar or row in one line.

- :func:`gap_verdicts`: every bar the calendar expects (up to the last closed bar) is stored.
- :func:`conservation_verdicts`: upstream rows = the sum of the outputs' rows, per Bogota day.
- :func:`integrity_verdicts`: prices positive and finite, high >= max(open, close), low <= min(open, close).
- :func:`store_verdicts`: the lake and the warehouse hold the same rows (count and a store-independent
  checksum over the columns both have), with the first differing row when they do not.
- :func:`observation_verdicts`: observation values finite and within the clip; columns = the config's.
- :func:`look_ahead_verdicts`: sampled bars recomputed from data cut off at the bar (L1 bars, macro)
  through the same indicator, feature and observation functions equal the stored rows bit for bit.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from usdcop_assets.core import calendar as cal
from usdcop_assets.core.frames import canonical_column, frame_checksum
from usdcop_assets.features.engineering import (
    FEATURE_LOOKBACK_SESSIONS,
    MACRO_LOOKBACK_DAYS,
    build_features,
    macro_daily_frame,
    macro_zscores,
)
from usdcop_assets.features.indicators import LOOKBACK_SESSIONS, complete_from, compute_indicators, lookback_start_day
from usdcop_assets.gaps import checked_end, missing_bars

MAX_LISTED = 20  # bars or rows listed in a verdict's metadata
# Bars recomputed per session by the look-ahead check: ~0.2 s each (indicators, features, macro z-scores).
# One per session, at a position that differs between sessions (stable for a session), covers every
# position of the day over a range; three would triple the cost of a backfill's checks.
SAMPLE_PER_SESSION = 1
BAR = pd.Timedelta(minutes=cal.BAR_MINUTES)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    metadata: dict = field(default_factory=dict)  # plain values: int, float, str, list
    detail: str = ""  # why it failed, naming the first offending session/bar; empty when passed


def _label(instant) -> str:
    """A row's time as the bar key (``YYYY-MM-DD-HH:MM`` Bogota), also for times off the grid."""
    return cal.bar_key(instant)


def session_window(session: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    day = cal.parse_session_key(session)
    return cal.session_open(day), cal.session_end(day)


def split_by_session(rows: pd.DataFrame, time_column: str = "time") -> dict[str, pd.DataFrame]:
    """Rows grouped by the Bogota date of ``time_column`` (``YYYY-MM-DD``), at any hour of the day."""
    if rows is None or not len(rows):
        return {}
    days = cal.session_dates(rows[time_column]).map(cal.session_key).to_numpy()
    return {str(k): part for k, part in rows.groupby(days, sort=True)}


def day_counts(rows: pd.DataFrame, time_column: str = "time") -> dict[str, int]:
    """Rows per Bogota date (``YYYY-MM-DD``), at any hour of the day."""
    return {k: len(v) for k, v in split_by_session(rows, time_column).items()}


# --- bars_complete ---------------------------------------------------------------------------------


def gap_verdicts(times, sessions: list[str], now=None) -> dict[str, Verdict]:
    """Per session: the bars the calendar expects up to the last closed bar at ``now``, and those missing.

    ``times``: bar opens stored (UTC, any window); rows off the grid or duplicated neither fill nor
    create a gap. A session whose first bar has not closed yet expects nothing.
    """
    present = pd.DatetimeIndex(times) if len(times) else pd.DatetimeIndex([], tz="UTC")
    out = {}
    for session in sessions:
        start, end = session_window(session)
        stop = max(start, checked_end(end, now))
        expected = len(cal.expected_bars(start, stop))
        missing = missing_bars(present[(present >= start) & (present < end)], start, stop)
        keys = [_label(t) for t in missing]
        md = {
            "expected": expected,
            "present": expected - len(keys),
            "missing": len(keys),
            "missing_bars": keys[:MAX_LISTED],
        }
        detail = f"{session}: {len(keys)} of {expected} expected bars missing, first {keys[0]}" if keys else ""
        out[session] = Verdict(not keys, md, detail)
    return out


# --- conservation ----------------------------------------------------------------------------------


def conservation_verdicts(
    sessions: list[str], upstream_name: str, upstream: dict[str, int], outputs: dict[str, dict[str, int]]
) -> dict[str, Verdict]:
    """Per session (Bogota day): rows of ``upstream`` = the sum of the rows of each of ``outputs``."""
    out = {}
    for session in sessions:
        rows_in = int(upstream.get(session, 0))
        parts = {name: int(counts.get(session, 0)) for name, counts in outputs.items()}
        rows_out = sum(parts.values())
        md = {
            "rows_in": rows_in,
            "rows_out": rows_out,
            **{f"rows_{name.replace('/', '_')}": n for name, n in parts.items()},
        }
        detail = ""
        if rows_in != rows_out:
            detail = (
                f"{session}: {upstream_name} {rows_in} rows, "
                + " + ".join(f"{name} {n}" for name, n in parts.items())
                + f" = {rows_out}"
            )
        out[session] = Verdict(rows_in == rows_out, md, detail)
    return out


# --- ohlc_integrity --------------------------------------------------------------------------------


def integrity_violations(bars: pd.DataFrame) -> pd.DataFrame:
    """Rows whose prices are not positive and finite or break high >= max(open, close) >= min(open, close) >= low."""
    if bars.empty:
        return bars
    prices = bars[["open", "high", "low", "close"]].to_numpy(dtype="float64")
    ok = np.isfinite(prices).all(axis=1) & (prices > 0).all(axis=1)
    with np.errstate(invalid="ignore"):
        ok &= (bars["high"] >= bars[["open", "close"]].max(axis=1)).to_numpy()
        ok &= (bars["low"] <= bars[["open", "close"]].min(axis=1)).to_numpy()
    return bars[~ok]


def integrity_verdicts(bars: pd.DataFrame, sessions: list[str]) -> dict[str, Verdict]:
    by_session = split_by_session(bars)
    out = {}
    for session in sessions:
        rows = by_session.get(session, pd.DataFrame(columns=["time", "open", "high", "low", "close"]))
        broken = integrity_violations(rows).sort_values("time") if len(rows) else rows
        keys = [_label(t) for t in broken["time"]]
        md = {"bars_checked": len(rows), "violations": len(keys), "first_violations": keys[:MAX_LISTED]}
        detail = ""
        if keys:
            r = broken.iloc[0]
            detail = (
                f"{session}: {len(keys)} bar(s) break OHLC integrity, first {keys[0]} "
                f"(open {_text(r['open'])}, high {_text(r['high'])}, low {_text(r['low'])}, close {_text(r['close'])})"
            )
        out[session] = Verdict(not keys, md, detail)
    return out


# --- lake_matches_warehouse ------------------------------------------------------------------------


def _key_labels(rows: pd.DataFrame, key: list[str]) -> list[str]:
    time_col, rest = key[0], key[1:]
    return [" ".join([_label(t), *map(str, others)]) for t, *others in rows[[time_col, *rest]].itertuples(index=False)]


def _text(value) -> str:
    return f"{float(value):.10g}" if isinstance(value, (float, np.floating)) else str(value)


def first_difference(lake: pd.DataFrame, warehouse: pd.DataFrame, key: list[str], columns: list[str]) -> str:
    """The first row (in key order) that differs between the two stores, and how; '' when none does."""
    a = (
        lake.reindex(columns=list(dict.fromkeys([*key, *columns])))
        .sort_values(key, kind="stable")
        .reset_index(drop=True)
    )
    b = (
        warehouse.reindex(columns=list(dict.fromkeys([*key, *columns])))
        .sort_values(key, kind="stable")
        .reset_index(drop=True)
    )
    a_keys, b_keys = _key_labels(a, key), _key_labels(b, key)
    a_pos, b_pos = {k: i for i, k in enumerate(a_keys)}, {k: i for i, k in enumerate(b_keys)}
    for k in sorted(set(a_pos) | set(b_pos), key=lambda k: (a_pos.get(k, 1 << 30), b_pos.get(k, 1 << 30))):
        if k not in b_pos:
            return f"{k}: in the lake, not in the warehouse"
        if k not in a_pos:
            return f"{k}: in the warehouse, not in the lake"
        ra, rb = a.iloc[[a_pos[k]]], b.iloc[[b_pos[k]]]
        differ = [
            c
            for c in columns
            if canonical_column(ra[c].reset_index(drop=True)) != canonical_column(rb[c].reset_index(drop=True))
        ]
        if differ:
            c = differ[0]
            return (
                f"{k}: {', '.join(differ[:5])} differ{'s' if len(differ) == 1 else ''} (lake "
                f"{_text(ra[c].iloc[0])}, warehouse {_text(rb[c].iloc[0])})"
            )
    return ""


def store_verdicts(
    lake_rows: pd.DataFrame, wh_rows: pd.DataFrame, key: list[str], sessions: list[str], time_column: str = "time"
) -> dict[str, Verdict]:
    """Per session: row counts and content checksums of both stores over the columns both have."""
    # the columns both stores have; a store with no row at all has no schema to intersect with
    sides = [set(f.columns) for f in (lake_rows, wh_rows) if len(f)]
    columns = sorted(set.intersection(*sides)) if sides else []
    lake_by, wh_by = split_by_session(lake_rows, time_column), split_by_session(wh_rows, time_column)
    out = {}
    for session in sessions:
        a, b = lake_by.get(session), wh_by.get(session)
        n_a, n_b = (0 if a is None else len(a)), (0 if b is None else len(b))
        sum_a = frame_checksum(a, key, columns) if a is not None else ""
        sum_b = frame_checksum(b, key, columns) if b is not None else ""
        passed = n_a == n_b and sum_a == sum_b
        md = {"lake_rows": n_a, "warehouse_rows": n_b, "lake_checksum": sum_a, "warehouse_checksum": sum_b}
        detail = ""
        if not passed:
            empty = pd.DataFrame(columns=columns)
            first = first_difference(a if a is not None else empty, b if b is not None else empty, key, columns)
            md["first_difference"] = first
            detail = f"{session}: lake {n_a} rows, warehouse {n_b} rows; first difference {first}"
        out[session] = Verdict(passed, md, detail)
    return out


# --- observations ----------------------------------------------------------------------------------


def observation_verdicts(
    by_session: dict[str, pd.DataFrame], sessions: list[str], columns: list[str], clip: float
) -> tuple[dict[str, Verdict], dict[str, Verdict]]:
    """Per session: (finite and within the clip, columns = ``columns`` in order) of the stored observations.

    ``by_session``: each session's stored frame as read (its own column order); a session with no
    rows passes both (nothing stored, nothing to check).
    """
    finite, dimension = {}, {}
    for session in sessions:
        obs = by_session.get(session)
        if obs is None or obs.empty:
            finite[session] = Verdict(True, {"bars": 0, "non_finite": 0, "beyond_clip": 0, "clip": clip})
            dimension[session] = Verdict(True, {"expected": len(columns), "stored": 0})
            continue
        obs = obs.sort_values("time", kind="stable")
        o_cols = [c for c in obs.columns if c.startswith("o_")]
        present = [c for c in columns if c in obs.columns]
        values = obs[present].to_numpy(dtype="float64")
        bad = ~np.isfinite(values) | (np.abs(np.where(np.isfinite(values), values, 0.0)) > clip)
        rows = np.flatnonzero(bad.any(axis=1))
        md = {
            "bars": len(obs),
            "non_finite": int((~np.isfinite(values)).sum()),
            "beyond_clip": int((bad & np.isfinite(values)).sum()),
            "clip": clip,
        }
        detail = ""
        if len(rows):
            i = rows[0]
            col = present[int(np.flatnonzero(bad[i])[0])]
            md["first_bad_bar"] = _label(obs["time"].iloc[i])
            detail = (
                f"{session}: {len(rows)} bar(s) with values not finite or beyond ±{clip}, first "
                f"{md['first_bad_bar']} ({col} = {_text(values[i, present.index(col)])})"
            )
        finite[session] = Verdict(not len(rows), md, detail)
        same = o_cols == list(columns)
        dmd = {"expected": len(columns), "stored": len(o_cols)}
        ddetail = ""
        if not same:
            missing = [c for c in columns if c not in o_cols]
            extra = [c for c in o_cols if c not in columns]
            dmd.update(missing=missing[:MAX_LISTED], unexpected=extra[:MAX_LISTED])
            ddetail = (
                f"{session}: {len(o_cols)} observation columns stored, config has {len(columns)}"
                + (f"; missing {missing[0]}" if missing else "")
                + (f"; unexpected {extra[0]}" if extra else "")
                + ("; same columns, other order" if not missing and not extra else "")
            )
        dimension[session] = Verdict(same, dmd, ddetail)
    return finite, dimension


# --- no_look_ahead ---------------------------------------------------------------------------------


def sample_bars(times: pd.DatetimeIndex, per_session: int = SAMPLE_PER_SESSION) -> pd.DatetimeIndex:
    """Deterministic sample of ``per_session`` bars present in each session: evenly spaced, starting at an
    offset derived from the session date (so a range samples different times of day, and re-checking a
    session samples the same bars)."""
    if len(times) == 0:
        return pd.DatetimeIndex([], tz="UTC")
    times = pd.DatetimeIndex(times).sort_values()
    picked = []
    days = np.asarray(times.tz_convert(cal.TZ).date)
    for day in sorted(set(days)):
        bars = times[days == day]
        n = min(per_session, len(bars))
        offset = zlib.crc32(day.isoformat().encode()) % len(bars)
        idx = sorted({(offset + round(i * len(bars) / n)) % len(bars) for i in range(n)})
        picked.extend(bars[idx])
    return pd.DatetimeIndex(picked)


def recompute_cut_off(bars: pd.DataFrame, wide: pd.DataFrame, bar: pd.Timestamp) -> pd.DataFrame:
    """The L3 feature row of ``bar`` computed from data up to and including ``bar`` only.

    Mirrors a run of ``bar``'s session that happened right after it closed: L2 reads the
    ``LOOKBACK_SESSIONS - 1`` sessions before it, L3 the ``FEATURE_LOOKBACK_SESSIONS`` before it and the
    macro values of the z-score window. ``bars`` (L1) and ``wide`` (l1/macro_daily) may reach later: bars
    after ``bar`` and macro values known after its close are cut here, so the check reads the lake once
    for all its sampled bars.
    """
    day = bar.tz_convert(cal.TZ).date()
    upto = bars[bars["time"] <= bar]
    l2_bars = upto[upto["time"] >= cal.session_open(lookback_start_day(day, LOOKBACK_SESSIONS))]
    target = pd.DatetimeIndex([bar])
    ind = compute_indicators(l2_bars, targets=target, data_start=complete_from(l2_bars))
    l3_bars = upto[upto["time"] >= cal.session_open(lookback_start_day(day, FEATURE_LOOKBACK_SESSIONS + 1))]
    if len(wide):
        wide = wide[wide["time"] >= cal.session_open(day) - pd.Timedelta(days=MACRO_LOOKBACK_DAYS)]
    daily = macro_daily_frame(wide)
    macro = macro_zscores(daily[daily.index < bar + BAR], target)  # nothing known after the bar closed
    return build_features(l3_bars, ind, macro_pit=macro, targets=target)


def _num(value) -> str:
    return f"{float(value):.10g}"


def _differing(stored: pd.Series, fresh: pd.Series, cols: list[str]) -> list[str]:
    a = stored[cols].to_numpy(dtype="float64")
    b = fresh[cols].to_numpy(dtype="float64")
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    return [c for c, s in zip(cols, same) if not s]


def look_ahead_verdicts(
    features: pd.DataFrame,
    observations: pd.DataFrame,
    bars: pd.DataFrame,
    wide: pd.DataFrame,
    sessions: list[str],
    build_obs=None,
    per_session: int = SAMPLE_PER_SESSION,
) -> dict[str, Verdict]:
    """Per session: sampled bars' stored L3 features (and L4 observations, with ``build_obs(features) ->
    observations``) equal their recomputation from data cut off at the bar."""
    feats = features.set_index("time") if len(features) else features
    obs = observations.set_index("time") if len(observations) else observations
    feat_cols = [c for c in features.columns if c not in ("time", "symbol")]  # the values and ``warm``
    obs_cols = [c for c in observations.columns if c.startswith("o_")]
    sample = sample_bars(pd.DatetimeIndex(features["time"]) if len(features) else [], per_session)
    sampled = split_by_session(pd.DataFrame({"time": sample}))
    out = {}
    for session in sessions:
        picked = pd.DatetimeIndex(sampled[session]["time"]) if session in sampled else []
        mismatches = []
        for bar in picked:
            fresh = recompute_cut_off(bars, wide, bar)
            if fresh.empty:
                mismatches.append(f"{_label(bar)}: not recomputable from the bars up to it")
                continue
            row = fresh.set_index("time").loc[bar]
            cols = _differing(feats.loc[bar], row, feat_cols)
            if not cols and build_obs is not None and len(obs) and bar in obs.index:
                fresh_obs = build_obs(fresh).set_index("time").loc[bar]
                same = all(fresh_obs.get(k) == obs.loc[bar].get(k) for k in ("obs_version", "stats_version"))
                if same:  # else another config, or the month refitted since: not comparable
                    cols = _differing(obs.loc[bar], fresh_obs, obs_cols)
            if cols:
                c = cols[0]
                stored = obs.loc[bar, c] if c.startswith("o_") else feats.loc[bar, c]
                fresh_value = fresh_obs[c] if c.startswith("o_") else row[c]
                others = f" (also {', '.join(cols[1:5])})" if len(cols) > 1 else ""
                mismatches.append(f"{_label(bar)}: {c} stored {_num(stored)}, recomputed {_num(fresh_value)}{others}")
        md = {
            "bars_recomputed": len(picked),
            "bars": [_label(t) for t in picked][:MAX_LISTED],
            "mismatched": mismatches[:MAX_LISTED],
        }
        out[session] = Verdict(not mismatches, md, f"{session}: {mismatches[0]}" if mismatches else "")
    return out
