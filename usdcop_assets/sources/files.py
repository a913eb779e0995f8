"""History files (CSV, gzipped CSV or Parquet) as a bar source: ``USDCOP_SOURCE=file:PATH``.

Pure pandas; nothing here imports Dagster.

Rows are loaded *as given*: prices that do not parse are kept as NaN with ``parse_error`` naming the
column and the raw text, and the timestamp text is kept in ``source_time``. Only the timestamp is
interpreted, because the lake files each row under the session its instant falls in:

- ``source_tz`` given (``--source-tz`` / ``USDCOP_SOURCE_TZ``): every timestamp is a wall-clock time in
  that zone, *whatever offset it is labelled with*. Backups of the seed system's ``usdcop_m5_ohlcv``
  table store Bogota opens labelled ``+00:00`` ("08:00+00:00" is 08:00 in Bogota); reading them with
  ``America/Bogota`` puts them on the session grid. How many labels were overridden is reported.
- no ``source_tz``: offset-labelled timestamps are taken as given, and a file of naive timestamps is
  refused (a guess would shift every bar). A file that looks like Bogota wall-clock labelled UTC
  (most rows off-session as given, on the grid when read as Bogota) is refused too, with the flag
  that reads it either way: the choice is the user's and is recorded, never silent.

Where rows go: a window of whole sessions owns the whole Bogota days of those sessions
(``cal.whole_session_days``), so a row stamped at 03:00 on a trading day (a shifted clock) is still
loaded into L0 with its day, for L1 to correct or reject; a one-bar window gets the rows inside it.
Rows that no partition can hold (on a weekend or holiday date, before the partitions start, or with
a time that does not parse) are returned separately as *unplaced*, each with a reason, so the
import keeps and reports them.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import ConfigError, Settings

SOURCE_TZ_ENV = "USDCOP_SOURCE_TZ"
REQUIRED_COLUMNS = ("time", "open", "high", "low", "close")
PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
DEFAULT_SYMBOL = "USD/COP"
_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
# "looks shifted" heuristic: as given, at least this share of rows is off-session, and read as
# Bogota wall-clock at least this share lands on the session grid.
_SHIFT_OFF_SESSION = 0.5
_SHIFT_ON_GRID = 0.9


class FileSourceError(ConfigError):
    """A history file that cannot be read as bars; the message names the file and the problem."""


@dataclass(frozen=True)
class BarFile:
    """A bar file read with a declared timezone: the rows that fit a session window, the rest, and counts."""

    path: Path
    source_tz: str | None
    placed: pd.DataFrame  # L0 columns (plus ``source_time``), time inside a session window
    unplaced: pd.DataFrame  # the rows that fit no session window, with ``reason``
    offsets_overridden: int = 0
    summary: dict = field(default_factory=dict)


def parse_file_source(source: str) -> Path:
    """``file:PATH`` → the path (must exist and have a known suffix)."""
    if not source.startswith("file:") or not source[5:].strip():
        raise ConfigError(f"USDCOP_SOURCE={source!r}: a file source is written file:PATH")
    path = Path(source[5:].strip()).expanduser()
    return check_path(path)


def check_path(path: Path) -> Path:
    if not path.name.lower().endswith(_SUFFIXES):
        raise FileSourceError(f"{path}: unknown file type (expected one of {', '.join(_SUFFIXES)})")
    if not path.is_file():
        raise FileSourceError(f"{path}: no such file")
    return path


def resolve_tz(name: str | None) -> ZoneInfo | None:
    if name is None or not str(name).strip():
        return None
    try:
        return ZoneInfo(str(name).strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise FileSourceError(f"unknown timezone {name!r} (use an IANA name such as America/Bogota or UTC)") from None


def read_table(path: Path) -> pd.DataFrame:
    """The file's rows with every column as text (so nothing is coerced before we look at it)."""
    path = check_path(Path(path))
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            df = pd.read_parquet(path)
            return df.astype({c: "string" for c in df.columns})
        return pd.read_csv(path, dtype="string", keep_default_na=False, na_values=[""])
    except (OSError, ValueError) as exc:
        raise FileSourceError(
            f"{path}: cannot be read as {'Parquet' if name.endswith(('.parquet', '.pq')) else 'CSV'}: {exc}"
        ) from None


def _to_datetime(text: pd.Series, utc: bool = False) -> pd.Series:
    """ISO 8601 first (vectorized); a file mixing formats falls back to per-value parsing."""
    try:
        return pd.to_datetime(text, errors="coerce", utc=utc, format="ISO8601")
    except ValueError:
        return pd.to_datetime(text, errors="coerce", utc=utc, format="mixed")


def _parse_times(text: pd.Series, tz: ZoneInfo | None, path: Path) -> tuple[pd.Series, int]:
    """UTC instants for the timestamp texts (NaT where unparseable) and how many labels were overridden."""
    stripped = text.str.strip()
    # An explicit offset or Z at the end ("+00:00", "-0500", "Z"): split it from the wall clock.
    offset = stripped.str.extract(r"(Z|[+-]\d{2}:?\d{2})$", expand=False)
    wall = stripped.str.replace(r"\s*(Z|[+-]\d{2}:?\d{2})$", "", regex=True)
    wall_time = _to_datetime(wall)
    if tz is not None:
        local = wall_time.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        utc = local.dt.tz_convert("UTC")
        labelled = offset.notna() & utc.notna()
        as_labelled = _to_datetime(stripped.where(labelled), utc=True)
        overridden = int((labelled & (as_labelled != utc)).sum())
        return utc.astype("datetime64[ns, UTC]"), overridden
    naive = offset.isna() & wall_time.notna()
    if naive.any():
        first = int(np.flatnonzero(naive.to_numpy())[0])
        raise FileSourceError(
            f"{path}: {int(naive.sum())} timestamps carry no timezone (first: row {first + 2}, {text.iloc[first]!r}); "
            f"pass --source-tz (for example --source-tz America/Bogota) to say what they mean"
        )
    utc = _to_datetime(stripped, utc=True)
    return utc.astype("datetime64[ns, UTC]"), 0


def _on_trading_day(times: pd.Series) -> np.ndarray:
    """True where the instant's Bogota date is a trading day (at any hour)."""
    ok = times.notna().to_numpy()
    out = np.zeros(len(times), dtype=bool)
    if ok.any():
        days = pd.Series(pd.DatetimeIndex(times[ok]).tz_convert(cal.TZ).date)
        out[ok] = days.map(_is_trading_day_cached).to_numpy(dtype=bool)
    return out


@functools.cache
def _is_trading_day_cached(day: dt.date) -> bool:
    return cal.is_trading_day(day)


def _looks_like_bogota_labelled_utc(text: pd.Series, times: pd.Series) -> bool:
    parsed = times.notna()
    if parsed.sum() < 10:
        return False
    off_session = 1.0 - cal.on_session_grid(pd.DatetimeIndex(times[parsed])).mean()
    if off_session < _SHIFT_OFF_SESSION:
        return False
    as_bogota, _ = _parse_times(text[parsed], ZoneInfo(cal.TZ_NAME), Path("-"))
    return bool(cal.on_session_grid(pd.DatetimeIndex(as_bogota.dropna())).mean() >= _SHIFT_ON_GRID)


def read_bar_file(
    path, source_tz: str | None = None, not_before: pd.Timestamp | None = None, ingested_at=None
) -> BarFile:
    """Read a bar history file. ``not_before``: rows before it are unplaced (before the partitions start)."""
    path = Path(path)
    tz = resolve_tz(source_tz)
    raw = read_table(path)
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    if "time" not in raw.columns:
        for alias in ("datetime", "timestamp", "date"):
            if alias in raw.columns:
                raw = raw.rename(columns={alias: "time"})
                break
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise FileSourceError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(raw.columns)})")
    if raw.empty:
        raise FileSourceError(f"{path}: no rows")
    times, overridden = _parse_times(raw["time"].fillna(""), tz, path)
    if tz is None and _looks_like_bogota_labelled_utc(raw["time"].fillna(""), times):
        raise FileSourceError(
            f"{path}: most timestamps fall outside the Bogota session as labelled, but read as Bogota wall-clock "
            f"they sit on the 5-minute session grid (local times stored with a UTC label?). "
            f"Pass --source-tz America/Bogota to read them as Bogota time, or --source-tz UTC to keep them as labelled"
        )

    if ingested_at is None:
        # Deterministic per file version: re-importing an unchanged file gives the same rows and bytes.
        ingested_at = pd.Timestamp(os.stat(path).st_mtime_ns, unit="ns", tz="UTC").floor("s")
    out = pd.DataFrame({"time": times})
    out["symbol"] = raw["symbol"].fillna(DEFAULT_SYMBOL) if "symbol" in raw.columns else DEFAULT_SYMBOL
    problems: list[list[str]] = [[] for _ in range(len(raw))]
    for col in PRICE_COLUMNS:
        if col not in raw.columns:
            out[col] = np.nan
            continue
        values = pd.to_numeric(raw[col].str.strip(), errors="coerce").astype("float64")
        bad = raw[col].notna() & values.isna()
        for i in np.flatnonzero(bad.to_numpy()):
            problems[i].append(f"{col}={raw[col].iloc[i]!r}")
        out[col] = values
    out["source"] = raw["source"].fillna(f"file:{path.name}") if "source" in raw.columns else f"file:{path.name}"
    out["ingested_at"] = (
        pd.Timestamp(ingested_at).tz_convert("UTC")
        if pd.Timestamp(ingested_at).tzinfo
        else pd.Timestamp(ingested_at, tz="UTC")
    )
    out["parse_error"] = pd.Series(["; ".join(p) if p else None for p in problems], dtype="string")
    out["source_time"] = raw["time"].astype("string")

    reason = pd.Series(pd.NA, index=out.index, dtype="string")
    reason[out["time"].isna()] = "unparseable_time"
    reason[reason.isna() & ~_on_trading_day(out["time"])] = "not_a_trading_day"
    if not_before is not None:
        reason[reason.isna() & (out["time"] < not_before)] = "before_partitions_start"
    placed = out[reason.isna()].reset_index(drop=True)
    unplaced = out[reason.notna()].assign(reason=reason[reason.notna()]).reset_index(drop=True)
    unplaced.insert(0, "line", (np.flatnonzero(reason.notna().to_numpy()) + 2))  # CSV line (header = 1)

    sessions = cal.session_dates(pd.DatetimeIndex(placed["time"])) if len(placed) else pd.Series([], dtype=object)
    summary = {
        "file": str(path),
        "source_tz": tz.key if tz else None,
        "rows_read": int(len(raw)),
        "rows_placed": int(len(placed)),
        "rows_unplaced": int(len(unplaced)),
        "unplaced_by_reason": {str(k): int(v) for k, v in unplaced["reason"].value_counts().items()},
        "parse_errors": int(out["parse_error"].notna().sum()),
        "offsets_overridden": overridden,
        "sessions": int(pd.Series(sessions).nunique()),
        "first_session": str(min(sessions)) if len(placed) else None,
        "last_session": str(max(sessions)) if len(placed) else None,
        "rows_per_source": {str(k): int(v) for k, v in out["source"].value_counts().sort_index().items()},
    }
    return BarFile(path, tz.key if tz else None, placed, unplaced, overridden, summary)


@functools.lru_cache(maxsize=4)
def _cached(path: str, mtime_ns: int, size: int, source_tz: str | None) -> BarFile:
    return read_bar_file(path, source_tz)


def file_bars(source: str, start, end, source_tz: str | None = None) -> tuple[pd.DataFrame, dict]:
    """The file's rows for the window (whole days for whole sessions) and a summary; parsed once per file version."""
    path = parse_file_source(source)
    tz = source_tz if source_tz is not None else Settings.from_env().sources.source_tz
    st = os.stat(path)
    bar_file = _cached(str(path.resolve()), st.st_mtime_ns, st.st_size, tz)
    start, end = cal.whole_session_days(start, end) or (
        cal.as_utc(start, "window start"),
        cal.as_utc(end, "window end"),
    )
    rows = bar_file.placed
    window = rows[(rows["time"] >= start) & (rows["time"] < end)]
    return window.reset_index(drop=True), {
        "source": f"file:{path.name}",
        "source_tz": bar_file.source_tz,
        "file": str(path),
    }
