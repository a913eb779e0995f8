"""L1 standardization of raw 5-minute bars: every input row is either kept or rejected with a reason.

Rules, applied in this order (a row gets the first reason that applies):
1. ``missing_time``: no parseable timestamp.
2. ``bad_price``: an open/high/low/close that is missing, non-finite or not positive.
3. ``ohlc_integrity``: high < max(open, close) or low > min(open, close).
4. ``off_session_grid``: not the open of a bar of a Bogota session (nights, weekends, holidays,
   off the 5-minute grid).
5. ``duplicate``: more than one valid row for the same (time, symbol): the row ingested last is
   kept (ties: the later row in the input), the others are rejected.
Kept rows gain ``is_flat`` (open = high = low = close). Missing bars stay missing; nothing is invented.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from usdcop_assets import market_calendar as cal

PRICE_COLUMNS = ["open", "high", "low", "close"]
KEPT_COLUMNS = ["time", "symbol", *PRICE_COLUMNS, "volume", "source", "is_flat", "ingested_at"]
REJECT_COLUMNS = ["time", "symbol", "row_hash", "reason", *PRICE_COLUMNS, "volume", "source", "ingested_at"]


def row_hashes(raw: pd.DataFrame) -> pd.Series:
    """A stable identity for each raw row (its values and its position among identical rows)."""
    # pandas 3 keeps missing values missing through astype(str) (None/NaN/NaT in any column, e.g. an
    # absent volume or a clean row's parse_error): spell them out so the join sees only strings.
    text = raw.astype(str).fillna("None").agg("\x1f".join, axis=1)
    occurrence = text.groupby(text).cumcount().astype(str)
    return (text + "\x1e" + occurrence).map(lambda s: hashlib.sha256(s.encode()).hexdigest()[:24])


def standardize_bars(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split raw bars into (kept, rejects); ``len(kept) + len(rejects) == len(raw)`` always."""
    missing = [c for c in ["time", "symbol", *PRICE_COLUMNS] if c not in raw.columns]
    if missing:
        raise ValueError(f"raw bars lack columns {missing} (have {list(raw.columns)})")
    df = raw.reset_index(drop=True).copy()
    for col, default in (("volume", np.nan), ("source", "unknown"), ("ingested_at", pd.NaT)):
        if col not in df.columns:
            df[col] = default
    df["time"] = pd.to_datetime(df["time"], utc=True, errors="coerce").astype("datetime64[ns, UTC]")
    df["ingested_at"] = pd.to_datetime(df["ingested_at"], utc=True, errors="coerce").astype("datetime64[ns, UTC]")
    prices = df[PRICE_COLUMNS].apply(pd.to_numeric, errors="coerce").astype("float64")
    df[PRICE_COLUMNS] = prices
    df["volume"] = pd.to_numeric(df["volume"], errors="coerce").astype("float64")

    reason = pd.Series(pd.NA, index=df.index, dtype="object")

    def flag(mask, why: str) -> None:
        reason[mask.to_numpy() & reason.isna().to_numpy()] = why

    flag(df["time"].isna(), "missing_time")
    values = prices.to_numpy()
    flag(pd.Series(~(np.isfinite(values) & (values > 0)).all(axis=1), index=df.index), "bad_price")
    flag((df["high"] < df[["open", "close"]].max(axis=1)) | (df["low"] > df[["open", "close"]].min(axis=1)), "ohlc_integrity")
    grid = pd.Series(False, index=df.index)
    has_time = df["time"].notna()
    grid[has_time] = cal.on_session_grid(pd.DatetimeIndex(df.loc[has_time, "time"]))
    flag(~grid, "off_session_grid")

    valid = reason.isna()
    order = df[valid].assign(_pos=np.flatnonzero(valid)).sort_values(["time", "symbol", "ingested_at", "_pos"], na_position="first")
    dup = order.duplicated(["time", "symbol"], keep="last")
    reason[order.index[dup.to_numpy()]] = "duplicate"

    kept = df[reason.isna()].copy()
    kept["is_flat"] = (kept[PRICE_COLUMNS].nunique(axis=1) == 1).to_numpy()
    kept = kept[KEPT_COLUMNS].sort_values(["time", "symbol"]).reset_index(drop=True)

    rejected = df[reason.notna()].copy()
    rejected["reason"] = reason[reason.notna()]
    rejected["row_hash"] = row_hashes(raw.reset_index(drop=True).loc[rejected.index]) if len(rejected) else pd.Series(dtype=str)
    rejects = rejected[REJECT_COLUMNS].reset_index(drop=True)
    return kept, rejects
