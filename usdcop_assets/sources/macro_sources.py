"""Daily macro observations for L0 (``l0/macro_daily``), from FRED, files or a synthetic generator.

Pure Python; nothing here imports Dagster.

``USDCOP_MACRO_SOURCE`` is a comma-separated list of ``fred`` | ``synthetic`` | ``file:PATH``; unset
means ``fred`` when ``FRED_API_KEY`` is set, else ``synthetic``. Several sources are concatenated:
FRED has only the US series, so ``fred,file:/x.csv.gz`` is the usual way to get everything. A series
given by two sources keeps both rows; ``source`` tells them apart and L1 decides.

Every source ends in the same long frame (:data:`MACRO_COLUMNS`, fixed dtypes, see :func:`conform_macro`)
so the lake schema of a day does not depend on which source wrote it:

- ``time``: 00:00 America/Bogota of ``date`` as a UTC instant. The lake keys rows by a tz-aware time
  column and stores one object per Bogota date, so every observation of a date lands in that date's
  object and a day partition ``[00:00, 24:00)`` Bogota holds exactly its date's rows.
- ``indicator``: canonical platform name (:mod:`macro_catalog`) or None for series it does not map.
- ``release_date``: when the source states one (the wide file's per-row ``release_date``), else None.
- ``retrieved_at``: when the value was obtained. Deterministic for files (the file's modification
  time) and synthetic data (18:00 Bogota of the date), so re-running a partition rewrites the same
  bytes; FRED rows carry the real fetch instant.
- ``parse_error``: None, or the column and raw text of a cell that did not parse (its value is NaN).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from usdcop_assets.core.settings import ConfigError, Settings, as_settings
from usdcop_assets.sources import macro_catalog as catalog
from usdcop_assets.sources.synthetic import _log_level, _splitmix64

log = logging.getLogger(__name__)

SOURCE_ENV = "USDCOP_MACRO_SOURCE"
FRED_KEY_ENV = "FRED_API_KEY"
KINDS = ("fred", "synthetic", "file")
SYNTHETIC = "synthetic"
TZ_NAME = "America/Bogota"

MACRO_COLUMNS = [
    "time",
    "series_id",
    "indicator",
    "date",
    "value",
    "source",
    "release_date",
    "retrieved_at",
    "parse_error",
]
_DATE_COLUMNS = ("fecha", "date")  # wide files: the first of these (case-insensitive) is the date
_BOOKKEEPING = ("release_date", "ffilled_from_date")  # per-row columns of the wide file, not series
_LONG_REQUIRED = {"series_id", "date", "value"}


# --- choosing the source ----------------------------------------------------------------------------


def parse_macro_source(text: str, var: str = SOURCE_ENV) -> tuple[str, ...]:
    """``fred,file:/x.csv.gz`` -> ``("fred", "file:/x.csv.gz")``; ConfigError naming ``var`` otherwise."""
    parts = [p.strip() for p in str(text).split(",")]
    specs: list[str] = []
    for part in parts:
        kind, sep, arg = part.partition(":")
        kind = kind.strip().lower()
        if kind == "file" and sep and arg.strip():
            spec = f"file:{arg.strip()}"
        elif kind in ("fred", "synthetic") and not sep:
            spec = kind
        else:
            raise ConfigError(
                f"{var}={text!r}: {part!r} is not a macro source; use a comma-separated list of "
                f"fred | synthetic | file:PATH"
            )
        if spec in specs:  # the same source twice would duplicate every one of its rows
            raise ConfigError(f"{var}={text!r}: {spec!r} is listed twice")
        specs.append(spec)
    return tuple(specs)


def resolve_macro_source(settings: Settings | None = None) -> tuple[str, ...]:
    """The macro sources to read, from ``USDCOP_MACRO_SOURCE`` (or the FRED-key default)."""
    sources = as_settings(settings).sources
    return macro_specs(sources.macro_source, bool(sources.fred_key))


def macro_specs(raw: str | None, has_key: bool) -> tuple[str, ...]:
    """The macro sources a ``USDCOP_MACRO_SOURCE`` value names (``None``/blank: FRED with a key, else synthetic)."""
    raw = (raw or "").strip()
    if not raw:
        return ("fred",) if has_key else (SYNTHETIC,)
    specs = parse_macro_source(raw)
    if "fred" in specs and not has_key:
        # Fail at resolution, before any run starts, with both variables named.
        raise ConfigError(f"{SOURCE_ENV}={raw!r} lists fred but {FRED_KEY_ENV} is not set")
    return specs


def source_label(spec: str) -> str:
    """The ``source`` value rows of a spec carry (``file:<file name>`` for files: no directories)."""
    if spec.startswith("file:"):
        return f"file:{Path(spec[5:]).name}"
    return spec


# --- the common frame -------------------------------------------------------------------------------


def bogota_midnight_utc(dates) -> pd.DatetimeIndex:
    """00:00 America/Bogota of each date, as UTC instants (the lake's time key for daily rows)."""
    naive = pd.DatetimeIndex(pd.to_datetime(pd.Series(list(dates), dtype="object")))
    return naive.tz_localize(TZ_NAME).tz_convert("UTC").astype("datetime64[ns, UTC]")


def _as_date_or_none(value) -> dt.date | None:
    if value is None or (not isinstance(value, (str, dt.date)) and pd.isna(value)):  # None, NaN, NaT, pd.NA
        return None
    if isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return _parse_date_text(str(value))


def conform_macro(frame: pd.DataFrame) -> pd.DataFrame:
    """The L0 macro columns in fixed order and dtypes, rows sorted by (date, series_id, source).

    Nullable text columns are ``string`` and ``release_date`` an Arrow ``date32``, so a day where all
    of them are None still has the same lake schema as a day where some are set. The sort is stable
    and by date first, so a day's rows come out in the same order whether fetched alone or in a range
    (which is what makes a range write byte-identical to day-by-day writes).
    """
    out = frame.copy()
    for col in ("indicator", "release_date", "parse_error"):
        if col not in out.columns:
            out[col] = None
    out["date"] = pd.Series([_as_date_or_none(v) for v in out["date"]], index=out.index, dtype="object")
    out["series_id"] = out["series_id"].astype(str).astype("object")
    out["source"] = out["source"].astype(str).astype("object")
    out["indicator"] = pd.Series([catalog.indicator_of(s) for s in out["series_id"]], index=out.index, dtype="string")
    out["value"] = pd.to_numeric(out["value"], errors="coerce").astype("float64")
    out["release_date"] = pd.Series(
        [_as_date_or_none(v) for v in out["release_date"]], index=out.index, dtype=pd.ArrowDtype(pa.date32())
    )
    out["retrieved_at"] = pd.to_datetime(out["retrieved_at"], utc=True).astype("datetime64[ns, UTC]")
    out["parse_error"] = out["parse_error"].astype("string")
    out["time"] = bogota_midnight_utc(out["date"]) if len(out) else pd.Series([], dtype="datetime64[ns, UTC]")
    out = out.sort_values(["date", "series_id", "source"], kind="stable") if len(out) else out
    return out[MACRO_COLUMNS].reset_index(drop=True)


def empty_macro() -> pd.DataFrame:
    return conform_macro(pd.DataFrame({c: [] for c in ("series_id", "date", "value", "source", "retrieved_at")}))


# --- files ------------------------------------------------------------------------------------------


def _parse_date_text(text: str) -> dt.date:
    text = text.strip()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return dt.datetime.fromisoformat(text).date()  # "2024-01-02 00:00:00" and the like


def _parse_dates(raw: pd.Series, path: Path, column: str, row_name, allow_empty: bool) -> list[dt.date | None]:
    """Dates of a column, or a ValueError naming the file, the column and the first bad row/line."""
    cache: dict = {}
    out: list[dt.date | None] = []
    for i, value in enumerate(raw.tolist()):
        key = (type(value), repr(value))
        if key not in cache:
            try:
                day = None if isinstance(value, str) and not value.strip() else _as_date_or_none(value)
                if day is None and not allow_empty:
                    raise ValueError("empty")
            except (ValueError, TypeError):
                raise ValueError(
                    f"{path}: {row_name(i)}: column {column!r} has {value!r}, which is not a date (YYYY-MM-DD)"
                ) from None
            cache[key] = day
        out.append(cache[key])
    return out


def _parse_values(raw: pd.Series, columns: pd.Series) -> tuple[np.ndarray, list[str | None]]:
    """Floats of observation cells; a cell that does not parse is NaN with a parse_error naming it."""
    values = np.empty(len(raw), dtype="float64")
    errors: list[str | None] = [None] * len(raw)
    cache: dict[str, float | None] = {}
    for i, (cell, col) in enumerate(zip(raw.tolist(), columns.tolist())):
        if isinstance(cell, (int, float, np.integer, np.floating)) and not isinstance(cell, bool):
            values[i] = float(cell)
            continue
        text = str(cell).strip()
        if text not in cache:
            try:
                cache[text] = float(text)  # Python's float(): correctly rounded, like the source wrote it
            except ValueError:
                cache[text] = None
        parsed = cache[text]
        if parsed is None:
            values[i] = np.nan
            errors[i] = f"{col}: {str(cell)!r} is not a number"
        else:
            values[i] = parsed
    return values, errors


def _is_empty_cell(series: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.isna().to_numpy()
    text = series.astype("object")
    return np.array(
        [
            v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())
            for v in text.tolist()
        ],
        dtype=bool,
    )


def _read_table(path: Path) -> tuple[pd.DataFrame, Callable[[int], str]]:
    """The raw table (CSV cells as text, so nothing is converted before we look at it) and a row namer."""
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        if not path.exists():
            raise FileNotFoundError(f"macro file {path} does not exist")
        # dtype=str + keep_default_na=False: every cell is its raw text; "" is an empty cell.
        table = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
        return table, (lambda i: f"line {i + 2}")  # line 1 is the header
    if name.endswith((".parquet", ".pq")):
        if not path.exists():
            raise FileNotFoundError(f"macro file {path} does not exist")
        return pd.read_parquet(path), (lambda i: f"row {i + 1}")
    raise ValueError(f"{path}: not a CSV (.csv, .csv.gz) or Parquet (.parquet) file; cannot read macro data from it")


def _retrieved_at_of(path: Path) -> pd.Timestamp:
    # The file's modification time: deterministic while the file is unchanged, so re-runs write the
    # same bytes, and it says when this copy of the data was obtained.
    return pd.Timestamp(int(path.stat().st_mtime), unit="s", tz="UTC")


def read_macro_file(path) -> pd.DataFrame:
    """A macro file (CSV, gzip CSV or Parquet; wide or long) as the L0 long frame, every cell kept.

    Wide: a ``fecha`` or ``date`` column and one column per series; each non-empty cell is one
    observation (empty cells are not observations). ``release_date`` is carried per row and
    ``ffilled_from_date`` is bookkeeping, not a series. Long: ``series_id, date, value`` columns
    (optionally ``source``, ``release_date``, ``retrieved_at``); every row is kept.
    """
    path = Path(path)
    table, row_name = _read_table(path)
    cols = {str(c).strip().lower(): c for c in table.columns}
    label = f"file:{path.name}"
    retrieved = _retrieved_at_of(path)

    if _LONG_REQUIRED <= set(cols):
        dates = _parse_dates(table[cols["date"]], path, str(cols["date"]), row_name, allow_empty=False)
        raw_values = table[cols["value"]]
        empty = _is_empty_cell(raw_values)
        values, errors = _parse_values(raw_values.where(~empty, "nan"), pd.Series(["value"] * len(table)))
        frame = pd.DataFrame(
            {
                "series_id": table[cols["series_id"]].astype(str).str.strip(),
                "date": dates,
                "value": values,
                "source": table[cols["source"]].astype(str) if "source" in cols else label,
                "release_date": (
                    _parse_dates(table[cols["release_date"]], path, "release_date", row_name, allow_empty=True)
                    if "release_date" in cols
                    else None
                ),
                "retrieved_at": (
                    pd.to_datetime(table[cols["retrieved_at"]], utc=True) if "retrieved_at" in cols else retrieved
                ),
                "parse_error": errors,
            }
        )
        return conform_macro(frame)

    date_col = next((cols[c] for c in _DATE_COLUMNS if c in cols), None)
    if date_col is None:
        raise ValueError(
            f"{path}: no date column; a wide macro file needs 'fecha' or 'date' (a long one "
            f"'series_id,date,value'); columns are {[str(c) for c in table.columns][:12]}"
        )
    dates = _parse_dates(table[date_col], path, str(date_col), row_name, allow_empty=False)
    release_col = cols.get("release_date")
    releases = (
        _parse_dates(table[release_col], path, str(release_col), row_name, allow_empty=True)
        if release_col is not None
        else [None] * len(table)
    )
    ffilled_col = cols.get("ffilled_from_date")
    if ffilled_col is not None and (~_is_empty_cell(table[ffilled_col])).any():
        # Not a column of L0; say so instead of dropping it silently (the shared file has none).
        log.warning(
            "%s: %d row(s) have ffilled_from_date set; L0 keeps their values as given",
            path,
            int((~_is_empty_cell(table[ffilled_col])).sum()),
        )
    skip = {date_col, release_col, ffilled_col}
    series_cols = [c for c in table.columns if c not in skip]

    pieces = []
    for col in series_cols:  # column by column: one row per non-empty cell, in file order
        keep = ~_is_empty_cell(table[col])
        if not keep.any():
            continue
        idx = np.flatnonzero(keep)
        pieces.append(
            pd.DataFrame(
                {
                    "series_id": str(col).strip(),
                    "row": idx,
                    "raw": table[col].iloc[idx].to_numpy(dtype=object),
                }
            )
        )
    if not pieces:
        return empty_macro()
    long = pd.concat(pieces, ignore_index=True)
    values, errors = _parse_values(long["raw"], long["series_id"])
    rows = long["row"].to_numpy()
    frame = pd.DataFrame(
        {
            "series_id": long["series_id"],
            "date": [dates[r] for r in rows],
            "value": values,
            "source": label,
            "release_date": [releases[r] for r in rows],
            "retrieved_at": retrieved,
            "parse_error": errors,
        }
    )
    return conform_macro(frame)


# --- synthetic --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    """How one synthetic series is made. ``log``: multiplicative around ``center``; else additive (rates)."""

    center: float
    lo: float
    hi: float
    beta: float  # response to the USD/COP slow log deviation (per unit of log)
    factor: str  # name of the wandering factor (shared names co-move: wti/brent, ust10y/ust2y)
    wander: tuple[float, float, float]  # amplitudes at 250, 63 and 10 business-day scales
    noise: float  # daily i.i.d. noise
    log: bool = True
    factor_scale: float = 1.0
    spikes: float = 0.0  # size of occasional decaying jumps (vix, embi)
    quantum: float = 0.01  # values are rounded to a multiple of this (policy rates move in 25 bp)


_SPECS: dict[str, _Spec] = {
    "dxy": _Spec(102.0, 92.0, 112.0, 0.35, "usd", (0.03, 0.015, 0.006), 0.003),
    "vix": _Spec(18.0, 10.0, 70.0, 2.0, "vol", (0.15, 0.10, 0.06), 0.05, spikes=0.6),
    "embi_col": _Spec(260.0, 140.0, 480.0, 1.5, "col_risk", (0.12, 0.05, 0.02), 0.01, spikes=0.25, quantum=1.0),
    "usdmxn": _Spec(19.0, 16.3, 22.5, 0.6, "em_fx", (0.04, 0.02, 0.008), 0.005, quantum=0.0001),
    "usdclp": _Spec(850.0, 680.0, 1050.0, 0.6, "em_fx", (0.04, 0.02, 0.008), 0.005),
    "wti": _Spec(72.0, 40.0, 115.0, -1.0, "oil", (0.15, 0.06, 0.025), 0.015),
    "brent": _Spec(76.0, 43.0, 120.0, -1.0, "oil", (0.15, 0.06, 0.025), 0.012),
    "gold": _Spec(1850.0, 1200.0, 2600.0, -0.3, "gold", (0.10, 0.04, 0.015), 0.008, quantum=0.1),
    "coffee": _Spec(180.0, 95.0, 320.0, -0.5, "coffee", (0.18, 0.07, 0.03), 0.015),
    "ust10y": _Spec(2.8, 0.5, 5.0, 2.0, "us_rates", (0.9, 0.3, 0.08), 0.03, log=False),
    "ust2y": _Spec(2.4, 0.1, 5.2, 1.5, "us_rates", (0.9, 0.3, 0.08), 0.03, log=False, factor_scale=1.3),
    "col10y": _Spec(9.0, 5.5, 13.5, 6.0, "col_rates", (1.0, 0.4, 0.1), 0.04, log=False),
    "col5y": _Spec(8.5, 4.5, 13.0, 6.0, "col_rates", (1.0, 0.4, 0.1), 0.04, log=False, factor_scale=1.1),
    "colcap": _Spec(1350.0, 1000.0, 1650.0, -1.0, "colcap", (0.08, 0.04, 0.015), 0.008),
    "ibr": _Spec(7.0, 1.5, 13.5, 0.0, "col_policy", (3.5, 0.6, 0.0), 0.01, log=False, quantum=0.001),
    "policy_rate_col": _Spec(7.0, 1.75, 13.25, 0.0, "col_policy", (3.5, 0.6, 0.0), 0.0, log=False, quantum=0.25),
    "prime_rate_usa": _Spec(5.5, 3.25, 8.5, 0.0, "us_policy", (1.8, 0.4, 0.0), 0.0, log=False, quantum=0.25),
}
_SCALES = (250, 63, 10)  # business days between noise knots, for the three wander amplitudes
_SPIKE_DECAY = 5.0  # business days
_SPIKE_MEMORY = 40  # past business days whose spikes still count (exp(-40/5) ~ 3e-4)
_EPOCH_MONDAY = dt.date(1970, 1, 5)
_SYNTH_RELEASE_HOUR = 18  # synthetic values are "obtained" at 18:00 Bogota of their date


def _stream(name: str) -> np.uint64:
    return np.uint64(zlib.crc32(name.encode()))  # stable across processes (unlike hash())


def _hash_uniform(seed: int, stream: str, ints: np.ndarray) -> np.ndarray:
    key = ints.astype(np.int64).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + _splitmix64(
        np.full(ints.shape, _stream(stream)) + np.uint64(seed) * np.uint64(0x100000001B3)
    )
    return (_splitmix64(key) >> np.uint64(11)).astype(np.float64) / float(1 << 53) + 0.5 / float(1 << 53)


def _hash_normal(seed: int, stream: str, ints: np.ndarray) -> np.ndarray:
    u1, u2 = _hash_uniform(seed, stream + "/a", ints), _hash_uniform(seed, stream + "/b", ints)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def _wander(seed: int, stream: str, bday: np.ndarray, scale: int) -> np.ndarray:
    """Smooth noise ("value noise"): hashed normals at every ``scale``-th business day, smoothstep
    interpolated between them. A pure function of the day, yet it wanders like a slow random path."""
    pos = bday.astype(np.float64) / scale
    k = np.floor(pos)
    f = pos - k
    w = f * f * (3.0 - 2.0 * f)
    a = _hash_normal(seed, f"{stream}/{scale}", k.astype(np.int64))
    b = _hash_normal(seed, f"{stream}/{scale}", k.astype(np.int64) + 1)
    return a * (1.0 - w) + b * w


def _spikes(seed: int, stream: str, bday: np.ndarray, size: float) -> np.ndarray:
    """Occasional jumps (1.5% of days) decaying over a week; summed from the hashes of the last
    ``_SPIKE_MEMORY`` business days, so there is still no state carried from one day to the next."""
    total = np.zeros(len(bday))
    for lag in range(_SPIKE_MEMORY):
        past = bday - lag
        hit = _hash_uniform(seed, stream + "/spike", past) < 0.015
        jump = size * (0.5 + _hash_uniform(seed, stream + "/spike_size", past))
        total += np.where(hit, jump, 0.0) * math.exp(-lag / _SPIKE_DECAY)
    return total


def _bounded(y: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Softly keep ``y`` inside (lo, hi): identity near the middle, tanh-squashed at the edges."""
    mid, half = (lo + hi) / 2.0, (hi - lo) / 2.0
    return mid + half * np.tanh((y - mid) / half)


def usdcop_log_deviation(days: Sequence[dt.date], seed: int = 7) -> np.ndarray:
    """The synthetic USD/COP slow log level at 13:00 Bogota of each day, minus log(4000).

    This is the same smooth component the synthetic bars are built on (``synthetic._log_level``), so
    macro series that load on it co-move with the synthetic USD/COP the bars show.
    """
    instants = (
        pd.DatetimeIndex([dt.datetime.combine(d, dt.time(13)) for d in days]).tz_localize(TZ_NAME).tz_convert("UTC")
    )
    instants = instants.as_unit("ns")  # pandas 3 infers microseconds from datetime objects
    minutes = (instants.asi8 // 60_000_000_000).astype(np.int64)
    return _log_level(seed, minutes) - np.log(4000.0)


def synthetic_macro(dates: Iterable[dt.date], seed: int = 7) -> pd.DataFrame:
    """Deterministic daily values of every catalog indicator on the business days among ``dates``.

    Each value is a pure function of (seed, date): smooth functions of time (the USD/COP slow level,
    hashed value noise at three scales) plus hashed daily noise, so any day regenerates alone and
    identically. dxy, usdmxn, embi_col and vix load positively on USD/COP, oil and colcap negatively.
    """
    days = sorted({_as_date_or_none(d) for d in dates})
    days = [d for d in days if d is not None and d.weekday() < 5]
    if not days:
        return empty_macro()
    # Business-day number since a Monday: knots and spike memory skip weekends.
    cal_days = np.array([(d - _EPOCH_MONDAY).days for d in days], dtype=np.int64)
    bday = (cal_days // 7) * 5 + (cal_days % 7)
    x = usdcop_log_deviation(days, seed)
    frames = []
    for name, spec in _SPECS.items():
        ind = catalog.BY_NAME[name]
        own = sum(
            amp * spec.factor_scale * _wander(seed, spec.factor, bday, scale)
            for amp, scale in zip(spec.wander, _SCALES)
            if amp
        )
        dev = spec.beta * x + own + spec.noise * _hash_normal(seed, name + "/daily", bday)
        if spec.spikes:
            dev = dev + _spikes(seed, spec.factor, bday, spec.spikes)
        if spec.log:
            level = np.exp(_bounded(np.log(spec.center) + dev, np.log(spec.lo), np.log(spec.hi)))
        else:
            level = _bounded(spec.center + dev, spec.lo, spec.hi)
        values = np.round(np.round(level / spec.quantum) * spec.quantum, 6)
        frames.append(
            pd.DataFrame(
                {
                    # The file's column name as series_id: synthetic data then looks like the file it stands in for.
                    "series_id": ind.file_column or name,
                    "date": days,
                    "value": values,
                    "source": SYNTHETIC,
                    "retrieved_at": bogota_midnight_utc(days) + pd.Timedelta(hours=_SYNTH_RELEASE_HOUR),
                }
            )
        )
    return conform_macro(pd.concat(frames, ignore_index=True))


# --- one entry point --------------------------------------------------------------------------------


def _daterange(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def fetch_macro(
    source_spec: str | Sequence[str],
    first_date,
    last_date,
    *,
    settings: Settings | None = None,
    seed: int = 7,
    **fred_kwargs,
) -> tuple[pd.DataFrame, dict]:
    """The L0 macro frame for dates ``first_date..last_date`` (inclusive) and a summary safe to log.

    Each source is read once for the whole window (FRED: one paged request per series), so a range
    run costs the same number of requests as one day. The summary holds sources, series, rows, rows
    per source and FRED's request count, never a key. ``fred_kwargs`` go to ``FredClient.from_env``.
    """
    specs = parse_macro_source(source_spec) if isinstance(source_spec, str) else tuple(source_spec)
    first, last = _as_date_or_none(first_date), _as_date_or_none(last_date)
    if first is None or last is None or last < first:
        raise ValueError(f"macro window {first_date!r}..{last_date!r} is empty or inverted")
    frames: list[pd.DataFrame] = []
    summary: dict = {"sources": [source_label(s) for s in specs]}
    for spec in specs:
        if spec == SYNTHETIC:
            frame = synthetic_macro(_daterange(first, last), seed=seed)
        elif spec == "fred":
            from usdcop_assets.sources.fred import FredClient

            with FredClient.from_env(settings, **fred_kwargs) as client:
                frame = conform_macro(client.fetch_many(list(catalog.fred_series().values()), first, last))
                summary["requests"] = summary.get("requests", 0) + client.requests_made
        elif spec.startswith("file:"):
            frame = read_macro_file(spec[5:])
        else:
            raise ConfigError(f"{SOURCE_ENV}: {spec!r} is not a macro source")
        in_window = frame["date"].map(lambda d: first <= d <= last).astype(bool) if len(frame) else []
        frames.append(frame[in_window] if len(frame) else frame)
    out = conform_macro(pd.concat(frames, ignore_index=True)) if frames else empty_macro()
    summary.update(
        rows=len(out),
        series=int(out["series_id"].nunique()),
        rows_per_source={str(k): int(v) for k, v in out["source"].value_counts(sort=False).sort_index().items()},
        parse_errors=int(out["parse_error"].notna().sum()),
        unmapped_series=int(out.loc[out["indicator"].isna(), "series_id"].nunique()),
    )
    return out, summary
