"""L1 macro: the L0 long frame (``l0/macro_daily``) as one wide row per observation date, with the
instant each value became known. Pure pandas; no Dagster import.

Output (:func:`l1_columns`, fixed whatever the input, so the lake schema and the warehouse table
``macro_indicators_daily`` never vary): ``time`` (00:00 America/Bogota of ``date``, UTC), ``date``
(Arrow date32), then for every catalog indicator, in catalog order:

- ``<indicator>``: float64 value, NaN when there is none (no row, the source gave NaN such as FRED's
  ".", a cell that did not parse, or a rejected value);
- ``<indicator>_known_at``: UTC instant the value became known (NaT exactly where the value is NaN);
- ``<indicator>_source``: the L0 ``source`` the value came from (None where the value is NaN).

Rules
-----
known_at
    A row whose source states a ``release_date`` R: the value is known at the end of R, i.e. 00:00
    Bogota of R + 1 calendar day (conservative: the release hour is unknown, so nothing of R's
    session may use it). A release date earlier than the observation date is treated as the
    observation date (a value cannot be known before the day it describes ends).
    Otherwise (FRED, synthetic, files without release dates): 00:00 Bogota of the ``lag``-th business
    day (Monday-Friday) strictly after the observation date D, ``lag_business_days`` >= 1, default 1:
    Monday's value is known at Tuesday 00:00, Friday's (and Saturday's or Sunday's) at Monday 00:00.
    Business days are weekdays, not Colombian sessions: the series are mostly US-published and a
    Colombian holiday does not stop a US release (a holiday only delays known_at by a day at most
    when it is counted; weekdays never make it earlier than the value's own day).
    Either way known_at >= 00:00 Bogota of D + 1, so a 5-minute bar of day D never sees D's value
    (consumers must use ``known_at < bar time``, as ``features.engineering.macro_zscores`` does).

source priority
    One source per indicator per call, never mixed inside the output: among the sources that have
    at least one non-NaN value of the indicator in the input (look-back included), the first by
    ``source_priority`` (default ``("file", "fred", "synthetic")``, matched on the label prefix
    before ``:``, so ``file:x.csv.gz`` is a ``file``); sources not listed rank after the listed
    ones; ties are broken by the label in alphabetical order. Why file first: the file holds the
    real ICE DXY (~105) where FRED only has the broad index DTWEXBGS (~120) as a proxy, and the file
    carries release dates. The choice and the candidates are in the report, and each row says its
    source in ``<indicator>_source``: when a source starts or stops covering an indicator between
    two windows (e.g. the shared file ends on 2024-06-30) the choice of later windows can differ,
    which the source column makes visible to L3 instead of leaving a silent level shift.

stale
    An indicator whose chosen source has no non-NaN value for more than ``stale_after_business_days``
    (default 5) business days up to ``as_of`` (default: the last date of the output window) is listed
    in ``report["stale_indicators"]`` with its last date (None: no value in the whole input). L1 does
    not forward-fill; L3 uses the last known value itself.

zero / non-finite
    NaN stays NaN (counted in ``missing_values``). ±inf is rejected for every indicator. Levels and
    prices that cannot be zero or negative (dxy, vix, embi_col, usdmxn, usdclp, brent, gold, coffee,
    colcap) reject values <= 0; WTI rejects exactly 0 only (it really settled at -37.63 USD on
    2020-04-20); rates and yields (ust10y, ust2y, col10y, col5y, ibr, policy_rate_col,
    prime_rate_usa) may be zero or negative. A rejected value becomes NaN here, stays as it was in
    L0, and is counted in ``rejected_values`` with a reason (the first 20 listed in ``rejected``).

Nothing silently dropped: every input row is counted in exactly one of ``rows_used``,
``rows_not_chosen`` (another source won the indicator), ``rows_unmapped`` (series the catalog does
not map; ids in ``unmapped_series``), ``rows_outside_window`` (look-back rows) and
``rows_duplicate`` (a second row of the same date, indicator and source: the one with the latest
``retrieved_at``, then the last in input order, is kept).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from usdcop_assets.sources import macro_catalog as catalog

TZ_NAME = "America/Bogota"
DEFAULT_SOURCE_PRIORITY: tuple[str, ...] = ("file", "fred", "synthetic")
DEFAULT_LAG_BUSINESS_DAYS = 1
DEFAULT_STALE_AFTER_BUSINESS_DAYS = 5
MAX_LISTED_REJECTS = 20

INDICATOR_NAMES: tuple[str, ...] = tuple(i.name for i in catalog.INDICATORS)
# must be > 0
POSITIVE = frozenset({"dxy", "vix", "embi_col", "usdmxn", "usdclp", "brent", "gold", "coffee", "colcap"})
# must be != 0 (negative is a real print)
NONZERO = frozenset({"wti"})

_DATE_DTYPE = pd.ArrowDtype(pa.date32())
_TIME_DTYPE = "datetime64[ns, UTC]"


def known_at_column(name: str) -> str:
    return f"{name}_known_at"


def source_column(name: str) -> str:
    return f"{name}_source"


def l1_columns() -> list[str]:
    cols = ["time", "date"]
    for name in INDICATOR_NAMES:
        cols += [name, known_at_column(name), source_column(name)]
    return cols


def known_at_columns() -> list[str]:
    return [known_at_column(n) for n in INDICATOR_NAMES]


def _bogota_midnight(days: np.ndarray) -> pd.DatetimeIndex:
    """00:00 Bogota of datetime64[D] days, as UTC ns instants."""
    naive = pd.DatetimeIndex(days.astype("datetime64[ns]"))
    return naive.tz_localize(TZ_NAME).tz_convert("UTC").astype(_TIME_DTYPE)


def _days(values) -> np.ndarray:
    return np.array(
        [np.datetime64(d, "D") if d is not None else np.datetime64("NaT") for d in values], dtype="datetime64[D]"
    )


def lag_known_at(dates, lag_business_days: int = DEFAULT_LAG_BUSINESS_DAYS) -> pd.DatetimeIndex:
    """00:00 Bogota (as UTC) of the ``lag``-th weekday strictly after each date."""
    if int(lag_business_days) < 1:
        raise ValueError(
            f"lag_business_days must be >= 1 (got {lag_business_days}); a lag of 0 would let "
            "a value be used during the day it describes"
        )
    d = _days(dates)
    # roll backward first: a weekend date counts from the Friday before, so Saturday + 1 = Monday
    target = np.busday_offset(d, int(lag_business_days), roll="backward")
    return _bogota_midnight(target)


def release_known_at(dates, release_dates) -> pd.DatetimeIndex:
    """00:00 Bogota (as UTC) of the day after max(release date, observation date)."""
    d, r = _days(dates), _days(release_dates)
    return _bogota_midnight(np.maximum(d, r) + np.timedelta64(1, "D"))


def _priority_key(label: str, priority: Sequence[str]) -> tuple[int, str]:
    kind = label.split(":", 1)[0].strip().lower()
    rank = next((i for i, p in enumerate(priority) if p == label or p == kind), len(priority))
    return rank, label


def _reject_reason(name: str, value: float) -> str | None:
    if math.isnan(value):
        return None
    if not math.isfinite(value):
        return f"non-finite value {value}"
    if name in POSITIVE and value <= 0:
        return f"{name} cannot be {'zero' if value == 0 else 'negative'} ({value})"
    if name in NONZERO and value == 0:
        return f"{name} cannot be exactly zero"
    return None


def empty_l1() -> pd.DataFrame:
    data: dict = {"time": pd.Series([], dtype=_TIME_DTYPE), "date": pd.Series([], dtype=_DATE_DTYPE)}
    for name in INDICATOR_NAMES:
        data[name] = pd.Series([], dtype="float64")
        data[known_at_column(name)] = pd.Series([], dtype=_TIME_DTYPE)
        data[source_column(name)] = pd.Series([], dtype="string")
    return pd.DataFrame(data)[l1_columns()]


def refine_macro(
    long_l0: pd.DataFrame,
    lag_business_days: int = DEFAULT_LAG_BUSINESS_DAYS,
    source_priority: Sequence[str] = DEFAULT_SOURCE_PRIORITY,
    *,
    first_date: dt.date | None = None,
    last_date: dt.date | None = None,
    stale_after_business_days: int = DEFAULT_STALE_AFTER_BUSINESS_DAYS,
    as_of: dt.date | None = None,
) -> tuple[pd.DataFrame, dict]:
    """The wide L1 frame for observation dates ``first_date..last_date`` (default: all input dates)
    and a JSON-safe report. Input rows before ``first_date`` serve as look-back for the source choice
    and the stale detection only. See the module docstring for the rules."""
    if int(lag_business_days) < 1:
        lag_known_at([], lag_business_days)  # raises with the explanation
    if (
        long_l0.empty
    ):  # no L0 row in the window (a day never materialized reads as a bare 'time' frame): all values missing
        long_l0 = pd.DataFrame({c: pd.Series([], dtype=object) for c in ("series_id", "date", "value", "source")})
    missing = [c for c in ("series_id", "date", "value", "source") if c not in long_l0.columns]
    if missing:
        raise ValueError(f"refine_macro: L0 frame lacks columns {missing} (has {list(long_l0.columns)})")
    priority = tuple(str(p) for p in source_priority)
    df = long_l0.reset_index(drop=True)
    n_in = len(df)
    dates = [
        None
        if (v is None or (not isinstance(v, dt.date) and pd.isna(v)))
        else (
            v.date()
            if isinstance(v, (pd.Timestamp, dt.datetime))
            else v
            if isinstance(v, dt.date)
            else dt.date.fromisoformat(str(v)[:10])
        )
        for v in df["date"].tolist()
    ]
    if any(d is None for d in dates):
        raise ValueError(f"refine_macro: {sum(d is None for d in dates)} L0 row(s) have no date")
    df = df.assign(
        _date=dates,
        _value=pd.to_numeric(df["value"], errors="coerce").astype("float64"),
        _source=df["source"].astype(str),
        _series=df["series_id"].astype(str),
        _order=np.arange(n_in),
    )
    df["_indicator"] = [catalog.indicator_of(s) for s in df["_series"]]
    if "release_date" in df.columns:
        df["_release"] = [
            None
            if (v is None or (not isinstance(v, dt.date) and pd.isna(v)))
            else (
                v.date()
                if isinstance(v, (pd.Timestamp, dt.datetime))
                else v
                if isinstance(v, dt.date)
                else dt.date.fromisoformat(str(v)[:10])
            )
            for v in df["release_date"].tolist()
        ]
    else:
        df["_release"] = None
    retrieved = (
        pd.to_datetime(df["retrieved_at"], utc=True)
        if "retrieved_at" in df.columns
        else pd.Series(pd.NaT, index=df.index, dtype=_TIME_DTYPE)
    )
    df["_retrieved"] = retrieved.fillna(pd.Timestamp.min.tz_localize("UTC"))

    all_dates = sorted(set(dates))
    first = first_date or (all_dates[0] if all_dates else None)
    last = last_date or (all_dates[-1] if all_dates else None)
    as_of = as_of or last

    mapped = df["_indicator"].notna()
    unmapped = df[~mapped]
    m = df[mapped]

    # --- source choice: over the whole input (look-back included), one per indicator
    chosen: dict[str, str | None] = {}
    candidates: dict[str, list[str]] = {}
    for name in INDICATOR_NAMES:
        rows = m[m["_indicator"] == name]
        with_values = sorted(
            {s for s, v in zip(rows["_source"], rows["_value"]) if not math.isnan(v)},
            key=lambda s: _priority_key(s, priority),
        )
        every = sorted(set(rows["_source"]), key=lambda s: _priority_key(s, priority))
        candidates[name] = every
        chosen[name] = with_values[0] if with_values else (every[0] if every else None)

    is_chosen = np.array([chosen[i] == s for i, s in zip(m["_indicator"], m["_source"])], dtype=bool)
    not_chosen = m[~is_chosen]
    use = m[is_chosen]

    # --- duplicates (same date, indicator, source): keep the latest retrieved, then the last row
    use = use.sort_values(["_indicator", "_date", "_retrieved", "_order"], kind="stable")
    dup = use.duplicated(["_indicator", "_date"], keep="last")
    duplicates = use[dup]
    use = use[~dup]

    # --- stale detection on the chosen source, as of the window's last date (look-back included)
    stale: dict[str, str | None] = {}
    last_value_date: dict[str, str | None] = {}
    for name in INDICATOR_NAMES:
        rows = use[(use["_indicator"] == name) & use["_value"].notna() & np.isfinite(use["_value"])]
        rows = rows[[d <= as_of for d in rows["_date"]]] if as_of is not None and len(rows) else rows
        last_d = max(rows["_date"]) if len(rows) else None
        last_value_date[name] = last_d.isoformat() if last_d else None
        if as_of is None:
            continue
        if last_d is None:
            stale[name] = None
        elif np.busday_count(np.datetime64(last_d, "D") + 1, np.datetime64(as_of, "D") + 1) > stale_after_business_days:
            stale[name] = last_d.isoformat()

    # --- the window
    in_window = np.array(
        [(first is None or d >= first) and (last is None or d <= last) for d in use["_date"]], dtype=bool
    )
    outside = use[~in_window]
    use = use[in_window].copy()

    # --- values: reject impossible ones, compute known_at
    rejected: list[dict] = []
    values = use["_value"].to_numpy(dtype="float64").copy()
    for k, (name, val) in enumerate(zip(use["_indicator"], values)):
        reason = _reject_reason(name, float(val))
        if reason:
            values[k] = np.nan
            rejected.append(
                {
                    "date": use["_date"].iloc[k].isoformat(),
                    "indicator": name,
                    "series_id": use["_series"].iloc[k],
                    "source": use["_source"].iloc[k],
                    "value": repr(float(val)),
                    "reason": reason,
                }
            )
    use["_value"] = values
    has_release = np.array([r is not None for r in use["_release"]], dtype=bool)
    known = pd.Series(pd.NaT, index=use.index, dtype=_TIME_DTYPE)
    if has_release.any():
        known[has_release] = release_known_at(list(use["_date"][has_release]), list(use["_release"][has_release]))
    if (~has_release).any():
        known[~has_release] = lag_known_at(list(use["_date"][~has_release]), lag_business_days)
    known[use["_value"].isna()] = pd.NaT
    use["_known"] = known

    # --- wide
    out_dates = sorted(set(use["_date"]))
    if out_dates:
        wide = pd.DataFrame({"date": pd.Series(out_dates, dtype=_DATE_DTYPE)})
        wide.insert(0, "time", _bogota_midnight(_days(out_dates)))
        pos = {d: i for i, d in enumerate(out_dates)}
        for name in INDICATOR_NAMES:
            rows = use[use["_indicator"] == name]
            idx = np.array([pos[d] for d in rows["_date"]], dtype=np.int64)
            v = np.full(len(out_dates), np.nan)
            v[idx] = rows["_value"].to_numpy(dtype="float64")
            kn = np.full(len(out_dates), np.datetime64("NaT"), dtype="datetime64[ns]")
            kn[idx] = rows["_known"].dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
            src = np.full(len(out_dates), None, dtype=object)
            src[idx] = rows["_source"].to_numpy(dtype=object)
            src[np.isnan(v)] = None
            wide[name] = v
            wide[known_at_column(name)] = pd.DatetimeIndex(kn).tz_localize("UTC").astype(_TIME_DTYPE)
            wide[source_column(name)] = pd.Series(src, dtype="string")
        wide = wide[l1_columns()]
    else:
        wide = empty_l1()

    present = [n for n in INDICATOR_NAMES if wide[n].notna().any()]
    report = {
        "rows": len(wide),
        "first_date": first.isoformat() if first else None,
        "last_date": last.isoformat() if last else None,
        "lag_business_days": int(lag_business_days),
        "stale_after_business_days": int(stale_after_business_days),
        "source_priority": list(priority),
        "indicators_present": present,
        "chosen_source": chosen,
        "candidate_sources": candidates,
        "stale_indicators": stale,
        "last_value_date": last_value_date,
        "rejected_values": len(rejected),
        "rejected": rejected[:MAX_LISTED_REJECTS],
        "missing_values": int(np.isnan(use["_value"].to_numpy(dtype="float64")).sum()) - len(rejected),
        "parse_errors": int(use["parse_error"].notna().sum()) if "parse_error" in use.columns else 0,
        "rows_in": n_in,
        "rows_used": len(use),
        "rows_not_chosen": len(not_chosen),
        "rows_unmapped": len(unmapped),
        "rows_outside_window": len(outside),
        "rows_duplicate": len(duplicates),
        "unmapped_series": sorted(set(unmapped["_series"])),
    }
    accounted = (
        report["rows_used"]
        + report["rows_not_chosen"]
        + report["rows_unmapped"]
        + report["rows_outside_window"]
        + report["rows_duplicate"]
    )
    assert accounted == n_in, (accounted, n_in)  # nothing silently dropped
    return wide.reset_index(drop=True), report


def known_daily(wide: pd.DataFrame) -> pd.DataFrame:
    """The L1 frame as ``features.engineering.macro_zscores`` wants it: indicator values indexed by
    the tz-aware instant the *whole row* is known (the latest ``<indicator>_known_at`` of the row,
    conservative); rows with no value are left out."""
    kn = wide[known_at_columns()]
    row_known = kn.max(axis=1)
    keep = row_known.notna()
    out = wide.loc[keep, list(INDICATOR_NAMES)].copy()
    out.index = pd.DatetimeIndex(row_known[keep]).rename("known_at")
    return out
