"""Where bars come from. ``USDCOP_SOURCE`` = ``twelvedata`` | ``synthetic`` | ``synthetic:clean`` |
``file:PATH``; unset means ``twelvedata`` when ``TWELVEDATA_API_KEYS`` is set, else ``synthetic``.
``synthetic`` is a feed with a real one's defects (a few missing bars and bad prints, see
``sources.synthetic``); ``synthetic:clean`` gives every bar, clean (tests that count rows).

:func:`fetch_bars` is the one entry point the assets and sensors use: it returns the L0 frame for a
window ``[start, end)`` with the same columns (``L0_COLUMNS``) and dtypes whatever the source, so the
lake schema of ``l0/ohlcv_m5`` does not depend on which source wrote a session. ``parse_error`` is
always a string column (None for clean rows): an all-None *object* column would be stored as Arrow
``null``, and a later partial-session write could then not merge a session holding real parse errors.
"""

from __future__ import annotations

import pandas as pd

from usdcop_assets.core.settings import SOURCE_ENV, ConfigError, Settings, as_settings

AVAILABLE = ("synthetic", "twelvedata", "file")

# The L0 frame, for every source. ``source_time``: the timestamp text as a file gave it (None for
# API sources, whose instants are unambiguous), so L0 keeps what was read before any interpretation.
L0_COLUMNS = [
    "time",
    "symbol",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "source",
    "ingested_at",
    "parse_error",
    "source_time",
]
STRING_COLUMNS = ("parse_error", "source_time")


def resolve_source(settings: Settings | None = None) -> str:
    sources = as_settings(settings).sources
    if sources.bar_source:
        return sources.bar_source
    return "twelvedata" if sources.twelvedata_api_keys is not None else "synthetic"


def require_available(source: str) -> str:
    """The source, if this build can read it; otherwise a ConfigError naming the variable."""
    kind = source.split(":", 1)[0]
    if kind not in AVAILABLE:
        raise ConfigError(
            f"{SOURCE_ENV} resolves to {source!r}, which this build cannot read yet "
            f"(available: {', '.join(AVAILABLE)}); set {SOURCE_ENV}=synthetic"
        )
    if kind == "synthetic" and source.strip() not in ("synthetic", "synthetic:clean"):
        raise ConfigError(
            f"{SOURCE_ENV}={source!r}: the synthetic source is 'synthetic' or 'synthetic:clean'; set "
            f"{SOURCE_ENV}=synthetic"
        )
    if kind == "file":
        from usdcop_assets.sources.files import parse_file_source

        parse_file_source(source)  # the path exists and has a readable suffix
    return source


def conform_l0(frame: pd.DataFrame) -> pd.DataFrame:
    """The L0 columns in their fixed order and dtypes (string columns added as None when absent)."""
    out = frame.copy()
    for col in STRING_COLUMNS:
        if col not in out.columns:
            out[col] = None
        out[col] = out[col].astype("string")
    out["symbol"] = out["symbol"].astype(str)
    out["source"] = out["source"].astype(str)
    out["time"] = pd.to_datetime(out["time"], utc=True).astype("datetime64[ns, UTC]")
    out["ingested_at"] = pd.to_datetime(out["ingested_at"], utc=True).astype("datetime64[ns, UTC]")
    for col in ("open", "high", "low", "close", "volume"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
    return out[L0_COLUMNS].reset_index(drop=True)


def fetch_bars_with_summary(
    source: str, start, end, source_tz: str | None = None, **client_kwargs
) -> tuple[pd.DataFrame, dict]:
    """The L0 frame for ``[start, end)`` from ``source`` and a summary safe to log or attach as metadata.

    ``twelvedata``: one client (``TwelveDataClient.from_env``) and one paged fetch for the whole
    window, so a multi-year single-run backfill costs the minimum number of requests. The summary
    carries the request counters per key *position* ("key #1"), never the keys. ``client_kwargs`` go
    to ``from_env`` (e.g. a short ``timeout``/``max_attempts`` for a sensor's probe). ``source_tz``: the zone a
    file's stamps are in (``None``: ``USDCOP_SOURCE_TZ``, else as labelled).
    """
    from usdcop_assets.core import calendar as cal

    kind = require_available(source).split(":", 1)[0]
    if kind == "synthetic":
        from usdcop_assets.sources.synthetic import synthetic_bars

        clean = source.strip() == "synthetic:clean"
        return conform_l0(synthetic_bars(cal.expected_bars(start, end), defects=not clean)), {"source": source.strip()}
    if kind == "twelvedata":
        from usdcop_assets.sources.twelvedata import SOURCE, TwelveDataClient

        with TwelveDataClient.from_env(**client_kwargs) as client:
            frame = client.fetch_bars(start, end)
            summary = {"source": SOURCE, **client.summary()}
        return conform_l0(frame), summary
    if kind == "file":
        from usdcop_assets.sources.files import file_bars

        frame, summary = file_bars(source, start, end, source_tz=source_tz)
        return conform_l0(frame), summary
    raise ConfigError(f"{SOURCE_ENV}={source!r}: no reader for this source")  # pragma: no cover - guarded above


def fetch_bars(source: str, start, end, **client_kwargs) -> pd.DataFrame:
    """The L0 frame for ``[start, end)`` from ``source`` (every row carries ``source``)."""
    return fetch_bars_with_summary(source, start, end, **client_kwargs)[0]
