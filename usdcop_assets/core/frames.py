"""Content checksums of tables, independent of the store they were read from.

The same rows read back from Parquet, SQLite or PostgreSQL give the same checksum: timestamps become
UTC nanoseconds, numbers float64, booleans 0/1, text UTF-8; rows are ordered by the natural key.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd


def canonical_column(series: pd.Series) -> bytes:
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(series.dtype):
        times = pd.to_datetime(series, utc=True).astype("datetime64[ns, UTC]")
        values = times.to_numpy(dtype="datetime64[ns]").astype("int64")
        return np.where(times.isna().to_numpy(), np.iinfo("int64").min, values).tobytes()
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        return _float_bytes(series.astype("float64").to_numpy(dtype="float64", na_value=np.nan))
    if series.dtype == object and _numbers_with_nulls(series):
        # Booleans or numbers held as objects, typically beside NULLs (a nullable BOOLEAN read back from
        # PostgreSQL or Parquet): the same bytes as the typed column, NULL and NaN both as the one NaN.
        return _float_bytes(np.array([np.nan if _is_null(v) else float(v) for v in series], dtype="float64"))
    return "\x1f".join("\x00" if _is_null(v) else str(v) for v in series).encode()


def _float_bytes(values: np.ndarray) -> bytes:
    return np.where(np.isnan(values), np.inf, values).tobytes()  # one NaN spelling


def _is_null(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or array held in a cell
        return False


def _numbers_with_nulls(series: pd.Series) -> bool:
    """At least one value, and every non-null value a bool or real number (not text, not a timestamp)."""
    seen = False
    for v in series:
        if _is_null(v):
            continue
        if isinstance(v, (bool, np.bool_, int, float, np.integer, np.floating)):
            seen = True
            continue
        return False
    return seen


def frame_checksum(df: pd.DataFrame, key: list[str] | tuple[str, ...], columns: list[str] | None = None) -> str:
    """sha256 over the canonical form of ``columns`` (default: all, sorted by name), rows sorted by ``key``."""
    columns = sorted(columns if columns is not None else df.columns)
    ordered = df.sort_values(list(key), kind="stable").reset_index(drop=True) if len(df) else df
    digest = hashlib.sha256()
    for name in columns:
        digest.update(name.encode() + b"\x1e")
        digest.update(canonical_column(ordered[name]))
    return digest.hexdigest()


def data_version(frame: pd.DataFrame) -> str:
    """A content hash of the rows (order-independent of the index; column order fixed by the frame)."""
    if frame.empty:
        return "empty"
    return _digest(frame.columns, pd.util.hash_pandas_object(frame, index=False).to_numpy())


def data_versions_by_group(frame: pd.DataFrame, rows_of: dict) -> dict:
    """``{group: data_version(frame.iloc[rows])}`` for ``rows_of = {group: positions}``, hashing the frame once
    (a row's hash depends on that row alone)."""
    if frame.empty:
        return {}
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return {k: _digest(frame.columns, hashes[rows]) for k, rows in rows_of.items()}


def _digest(columns, row_hashes) -> str:
    digest = hashlib.sha256(",".join(map(str, columns)).encode())
    digest.update(row_hashes.tobytes())
    return digest.hexdigest()[:16]
