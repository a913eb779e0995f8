"""The dashboard's read-only layer over the warehouse, the lake and the Dagster instance.

Same configuration as the code location (``Settings.from_env``: embedded default, or PostgreSQL / S3
through ``USDCOP_WAREHOUSE_URL`` / ``USDCOP_LAKE_URL``). Nothing here writes: the SQLite warehouse is
opened ``mode=ro``, no schema is created, a missing store or table reads as empty, and the Dagster
instance is only opened when its directory already holds one.

The module has two halves:

- pure functions (``Sources`` and everything taking it or plain frames) that return DataFrames and
  can be unit tested without Streamlit;
- ``cached_*`` wrappers (``st.cache_data`` with a TTL) that the pages call, keyed on the
  configuration so a change of ``USDCOP_HOME`` (or the tests' temporary homes) never mixes data.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import ConfigError, Settings, mask_url
from usdcop_assets.storage.lake.datasets import MACRO_DATASETS, SESSION_DATASETS
from usdcop_assets.storage.warehouse.tables import SERVED_REGISTRIES

OHLCV = "usdcop_m5_ohlcv"
INDICATORS = "usdcop_m5_indicators"
REJECTS = "ohlcv_m5_rejects"
UNPLACED = "ohlcv_m5_unplaced"
SYNTHETIC = "synthetic"
CLI = ".venv/bin/usdcop"
MAIN_COMMAND = f"{CLI} run"  # the platform's main job: ingest, L0-L4, training, actions, backtests, performance
DEMO_COMMAND = MAIN_COMMAND
DAGSTER_UI_ENV = "DAGSTER_WEBSERVER_URL"
DAGSTER_UI_DEFAULT = "http://127.0.0.1:3000"
REPORTS_PREFIX = "reports/performance"  # l6/performance's HTML reports in the lake (defs/layers/l6_backtest.py)
DEFAULT_SESSIONS = 20
MAX_CHART_POINTS = 4000  # bars drawn at most; a longer window is resampled to coarser bars
_SQLITE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f+00:00"  # the warehouse's text timestamps on SQLite

# Every layer, its assets and how each is partitioned ("session", "day" or None).
LAYERS: dict[str, list[tuple[str, str | None]]] = {
    "L0": [("l0/ohlcv_m5", "session"), ("l0/macro_daily", "day")],
    "L1": [("l1/ohlcv_m5", "session"), ("l1/ohlcv_m5_rejects", "session"), ("l1/macro_daily", "day")],
    "L2": [("l2/indicators_m5", "session")],
    "L3": [("l3/features_m5", "session")],
    "L4": [("l4/observation_stats", None), ("l4/observations_m5", "session"), ("l4/episodes_session", "session")],
    "L5": [
        ("l5/ppo_model", None),
        ("l5/actions_m5", "session"),
        ("l5/paper_trades", "session"),
        ("l5/paper_positions", "session"),
    ],
    "L6": [("l6/backtest_session", "session"), ("l6/performance", None)],
}
BUILT_LAYERS = ("L0", "L1", "L2", "L3", "L4", "L5", "L6")
# Data checks (usdcop_assets/defs/quality/checks.py), on the asset each protects; one evaluation per session.
# Keys as Dagster spells them: "<asset>:<check>" (a test holds this list to the code location's).
CHECKS: dict[str, list[str]] = {
    "l0/ohlcv_m5": ["bars_complete"],
    "l1/ohlcv_m5": ["conservation", "ohlc_integrity", "lake_matches_warehouse", "bars_complete"],
    "l1/ohlcv_m5_rejects": ["lake_matches_warehouse"],
    "l2/indicators_m5": ["lake_matches_warehouse"],
    "l4/observations_m5": ["observations_finite", "observation_dimension", "no_look_ahead"],
    "l5/actions_m5": ["lake_matches_warehouse"],
}
CONFIG_VARS = (
    "USDCOP_HOME",
    "USDCOP_LAKE_URL",
    "USDCOP_WAREHOUSE_URL",
    "DAGSTER_HOME",
    "USDCOP_OBS_CONFIG",
    "USDCOP_OBS_TRAIN_WINDOW",
    "AWS_ENDPOINT_URL",
    "USDCOP_SERVE",  # not where data is read from, but what the deployment trades (shown on Research, Terminal)
)


def run_command(layers: str) -> str:
    return f"{CLI} backfill --layers {layers}"


def layer_of(asset: str) -> str:
    return asset.split("/")[0].upper()


def what_to_run(asset: str) -> str:
    """The 'not materialized yet: run ...' line for an asset: the main job, and the layer's own command."""
    layer = layer_of(asset)
    if asset == "l5/ppo_model":
        own = f"`{CLI} train --fold YYYY-MM` (trained on the sessions before the month)"
    elif layer == "L6" or asset in ("l5/actions_m5", "l5/paper_trades", "l5/paper_positions"):
        own = f"`{CLI} backtest --start YYYY-MM-DD --end YYYY-MM-DD` (actions of the trained folds, then backtests)"
    else:
        own = f"`{run_command(layer)}`"
    return f"`{asset}` not materialized yet: run `{MAIN_COMMAND}` (everything), or {own}"


def dagster_ui_url(env=os.environ) -> str:
    return (env.get(DAGSTER_UI_ENV) or DAGSTER_UI_DEFAULT).rstrip("/")


def run_url(run_id: str, env=os.environ) -> str:
    return f"{dagster_ui_url(env)}/runs/{run_id}"


def to_bogota(df: pd.DataFrame, fmt: str = "%Y-%m-%d %H:%M") -> pd.DataFrame:
    """Every timestamp column as Bogota wall-clock text, its name suffixed ``(Bogota)``: tables never show UTC."""
    out = df.copy()
    renames = {}
    for c in out.columns:
        if isinstance(out[c].dtype, pd.DatetimeTZDtype):
            out[c] = out[c].dt.tz_convert(cal.TZ).dt.strftime(fmt)
            renames[c] = f"{c} (Bogota)"
    return out.rename(columns=renames)


def paper_status(src: Sources) -> dict | None:
    """The latest paper position (warehouse ``paper_positions``) and fill (``paper_trades``); None if not there."""
    wh = src.warehouse
    if not wh.has_table("paper_positions"):
        return None
    pos = wh.query(
        "SELECT time, session, position, next_target, session_pnl, model_version FROM paper_positions ORDER BY time "
        "DESC LIMIT 1"
    )
    if pos.empty:
        return None
    out = pos.iloc[0].to_dict()
    out["last_fill"] = None
    if wh.has_table("paper_trades"):
        fills = wh.query(
            "SELECT time, side, quantity, fill_price, fill_at FROM paper_trades ORDER BY time DESC, fill_at DESC "
            "LIMIT 1"
        )
        if len(fills):
            out["last_fill"] = fills.iloc[0].to_dict()
    return out


# -- configuration and stores ----------------------------------------------------------------------


def config_env(env=os.environ) -> tuple[tuple[str, str], ...]:
    """The variables that decide where data is read from: the cache key of every cached read."""
    return tuple((k, env[k]) for k in CONFIG_VARS if env.get(k))


def sqlite_readonly_url(path: Path) -> sa.URL:
    """A SQLite URI that opens ``path`` read-only: the path is percent-encoded, so a ``?``, ``#`` or ``%`` in
    it cannot end the file name early (``file:/a#b?mode=ro`` would open ``/a`` read-write, creating it)."""
    from urllib.parse import quote

    return sa.URL.create(
        "sqlite", database=f"file:{quote(str(Path(path).absolute()))}", query={"mode": "ro", "uri": "true"}
    )


def warehouse_error(src: Sources, exc: BaseException) -> str:
    """The banner line for a warehouse that cannot be read: the driver's first line, secrets scrubbed."""
    from usdcop_assets.core.settings import scrub_secrets

    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    cause = scrub_secrets(lines[0] if lines else type(exc).__name__, src.warehouse.url)[:300]
    return f"warehouse {src.warehouse.display_url} cannot be read: {cause}"


class WarehouseReader:
    """Read-only SQL access: SQLite opened ``mode=ro`` (a missing file is an empty warehouse), PostgreSQL
    through the same URL as the code location. Never creates tables."""

    def __init__(self, url: sa.URL):
        self.url = url
        self.dialect = url.get_backend_name()
        self.display_url = mask_url(url)
        if self.dialect == "sqlite":
            self.path = Path(url.database or "")
            self.engine = sa.create_engine(sqlite_readonly_url(self.path), connect_args={"timeout": 30})
        else:
            self.path = None
            self.engine = sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5})
        self._tables: dict[str, bool] = {}

    def exists(self) -> bool:
        return self.path is None or self.path.is_file()

    def has_table(self, name: str) -> bool:
        if not self.exists():
            return False
        if not self._tables.get(name):
            self._tables[name] = sa.inspect(self.engine).has_table(name)
        return self._tables[name]

    def bound(self, ts) -> object:
        ts = cal.as_utc(ts, "window bound")
        return ts.strftime(_SQLITE_TIME_FORMAT) if self.dialect == "sqlite" else ts.to_pydatetime()

    def query(self, sql: str, params: dict | None = None, times: tuple[str, ...] = ("time",)) -> pd.DataFrame:
        with self.engine.connect() as conn:
            result = conn.execute(sa.text(sql), params or {})
            # the driver's own tuples: a textual query has no result types for SQLAlchemy to process, and making a
            # Row of each and a tuple of that was 3/4 of reading six years of bars (0.28 -> 0.09 CPU s for 88k rows)
            cursor = getattr(result, "cursor", None)
            rows = cursor.fetchall() if cursor is not None else [tuple(r) for r in result.fetchall()]
            df = pd.DataFrame.from_records(rows, columns=list(result.keys()))
        for c in times:
            if c in df.columns:
                df[c] = pd.to_datetime(df[c], utc=True, format="ISO8601")
        return df

    def window(self, table: str, columns: list[str], start=None, end=None, where: str = "") -> pd.DataFrame:
        if not self.has_table(table):
            return pd.DataFrame(columns=columns)
        conds, params = ([where] if where else []), {}
        if start is not None:
            conds.append("time >= :start")
            params["start"] = self.bound(start)
        if end is not None:
            conds.append("time < :end")
            params["end"] = self.bound(end)
        cols = ", ".join(f'"{c}"' for c in columns)
        clause = (" WHERE " + " AND ".join(conds)) if conds else ""
        return self.query(f'SELECT {cols} FROM "{table}"{clause} ORDER BY time', params)


@dataclass
class Sources:
    settings: Settings
    warehouse: WarehouseReader
    _store: object = None

    @property
    def store(self):
        if self._store is None:
            from usdcop_assets.storage.lake.store import open_store

            self._store = open_store(self.settings.lake)
        return self._store

    def lake_table(self, dataset: str):
        from usdcop_assets.storage.lake.session_table import SessionTable

        return SessionTable(self.store, dataset)

    def has_instance(self) -> bool:
        home = self.settings.dagster_home
        return (
            (home / "dagster.yaml").is_file()
            and (home / "history" / "runs.db").is_file()
            or ((home / "dagster.yaml").is_file() and "postgres" in (home / "dagster.yaml").read_text())
        )


_lock = threading.Lock()
_sources: dict[tuple, Sources] = {}


def sources(env: tuple[tuple[str, str], ...] | None = None) -> Sources:
    """Stores for a configuration (ConfigError names the variable when a URL is malformed)."""
    env = config_env() if env is None else env
    with _lock:
        if env not in _sources:
            settings = Settings.from_env(dict(env))
            _sources[env] = Sources(settings, WarehouseReader(settings.warehouse_url))
        return _sources[env]


# -- bars ---------------------------------------------------------------------------------------------


def bars_summary(src: Sources) -> pd.DataFrame:
    """One row per bar source: source, bars, first, last (empty frame on an empty warehouse)."""
    cols = ["source", "bars", "first", "last"]
    if not src.warehouse.has_table(OHLCV):
        return pd.DataFrame(columns=cols)
    df = src.warehouse.query(
        f'SELECT source, COUNT(*) AS bars, MIN(time) AS "first", MAX(time) AS "last" FROM "{OHLCV}" GROUP BY source',
        times=("first", "last"),
    )
    return df[cols] if len(df) else pd.DataFrame(columns=cols)


def synthetic_share(summary: pd.DataFrame) -> tuple[int, int]:
    """(synthetic bars, all bars) of a ``bars_summary``."""
    if summary.empty:
        return 0, 0
    total = int(summary["bars"].sum())
    return int(summary.loc[summary["source"] == SYNTHETIC, "bars"].sum()), total


def last_sessions_window(last_time: pd.Timestamp, sessions: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[open of the ``sessions``-th last trading day up to ``last_time``'s session, its session end)."""
    last_day = cal.as_utc(last_time).tz_convert(cal.TZ).date()
    first_day = last_day
    for _ in range(max(sessions, 1) - 1):
        first_day = cal.previous_trading_day(first_day)
    return cal.session_open(first_day), cal.session_end(last_day) if cal.is_trading_day(last_day) else cal.as_utc(
        last_time
    ) + pd.Timedelta(minutes=5)


BAR_COLUMNS = ["time", "open", "high", "low", "close", "volume", "source", "is_flat"]
OVERLAY_COLUMNS = ["ema_20", "ema_50", "bb_upper", "bb_middle", "bb_lower"]


def read_bars(src: Sources, start=None, end=None) -> pd.DataFrame:
    """Standardized bars of the window with the L2 overlays (EMA/Bollinger) joined when L2 has them."""
    bars = src.warehouse.window(OHLCV, BAR_COLUMNS, start, end)
    if bars.empty:
        return bars
    bars["is_flat"] = bars["is_flat"].astype(bool)
    if src.warehouse.has_table(INDICATORS):
        ind = src.warehouse.window(INDICATORS, ["time", *OVERLAY_COLUMNS], start, end)
        if len(ind):
            bars = bars.merge(ind, on="time", how="left")
    return bars


def add_overlays(
    df: pd.DataFrame, span_fast: int = 20, span_slow: int = 50, window: int = 20, k: float = 2.0
) -> pd.DataFrame:
    """EMA 20/50 and Bollinger(20, 2) on ``close`` where the frame lacks them (resampled bars, no L2)."""
    out = df.copy()
    close = out["close"].astype(float)
    if "ema_20" not in out or out["ema_20"].isna().all():
        out["ema_20"] = close.ewm(span=span_fast, adjust=False).mean()
    if "ema_50" not in out or out["ema_50"].isna().all():
        out["ema_50"] = close.ewm(span=span_slow, adjust=False).mean()
    if "bb_middle" not in out or out["bb_middle"].isna().all():
        mid, sd = close.rolling(window).mean(), close.rolling(window).std(ddof=0)
        out["bb_middle"], out["bb_upper"], out["bb_lower"] = mid, mid + k * sd, mid - k * sd
    return out


def resample_ohlc(bars: pd.DataFrame, rule: str = "1D") -> pd.DataFrame:
    """OHLC(V) per Bogota ``rule`` bucket (e.g. daily), with the bar count and the sources it came from."""
    if bars.empty:
        return pd.DataFrame(columns=["time", "open", "high", "low", "close", "volume", "bars", "source"])
    local = bars.set_index(pd.DatetimeIndex(bars["time"]).tz_convert(cal.TZ))
    g = local.resample(rule)
    out = pd.DataFrame(
        {
            "open": g["open"].first(),
            "high": g["high"].max(),
            "low": g["low"].min(),
            "close": g["close"].last(),
            "volume": g["volume"].sum(min_count=1),
            "bars": g["close"].count(),
            "source": g["source"].agg(lambda s: ",".join(sorted(set(s))) if len(s) else None),
        }
    )
    out = out[out["bars"] > 0]
    out.index = out.index.tz_convert("UTC")
    return out.rename_axis("time").reset_index()


def chart_rule(n_bars: int, max_points: int = MAX_CHART_POINTS) -> str | None:
    """Resampling rule keeping a chart under ``max_points`` candles (None: draw the 5-minute bars)."""
    if n_bars <= max_points:
        return None
    for minutes, rule in ((15, "15min"), (30, "30min"), (60, "60min")):
        if n_bars * 5 / minutes <= max_points:
            return rule
    return "1D"


def session_pnl_hint(bars: pd.DataFrame) -> dict:
    """Latest price and its change against the previous session's last close."""
    if bars.empty:
        return {}
    last = bars.iloc[-1]
    days = cal.session_dates(bars["time"])
    last_day = days.iloc[-1]
    prev = bars.loc[(days != last_day).to_numpy()]
    out = {"price": float(last["close"]), "time": last["time"], "session": last_day, "source": last["source"]}
    if len(prev):
        out["change"] = float(last["close"] - prev.iloc[-1]["close"])
        out["change_pct"] = 100.0 * out["change"] / float(prev.iloc[-1]["close"])
    return out


def in_session(now=None) -> bool:
    now = cal.as_utc(now or pd.Timestamp.now(tz="UTC"))
    day = now.tz_convert(cal.TZ).date()
    return cal.is_trading_day(day) and cal.session_open(day) <= now < cal.session_end(day)


# -- lake -------------------------------------------------------------------------------------------


def lake_dates(src: Sources, dataset: str) -> list[dt.date]:
    try:
        return src.lake_table(dataset).dates()
    except FileNotFoundError:
        return []


def _read_object(store, key: str, columns: list[str] | None):
    """One session object, only ``columns`` of it (those it has; the others are not decoded), read as
    ``SessionTable`` reads a day."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    blob = store.get(key)
    if blob is None:
        return None
    file = pq.ParquetFile(pa.BufferReader(blob))
    names = set(file.schema_arrow.names)
    return file.read(columns=None if columns is None else [c for c in columns if c in names], use_threads=False)


def read_sessions(
    src: Sources, dataset: str, days: list[dt.date], start, end, columns: list[str] | None = None
) -> pd.DataFrame:
    """``SessionTable.read(start, end, columns)`` of the listed session objects ``days`` (every listed day of the
    window; a None bound is open): the same rows, columns and types, read faster (``_read_object``)."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa

    table = src.lake_table(dataset)
    with ThreadPoolExecutor(max_workers=table.max_workers) as pool:
        parts = [
            t
            for t in pool.map(lambda d: _read_object(table.store, table.object_key(d), columns), days)
            if t is not None
        ]
    if not parts:
        empty = pd.DataFrame(columns=columns if columns is not None else [table.time_column])
        if table.time_column in empty.columns:
            empty = empty.astype({table.time_column: "datetime64[ns, UTC]"})
        return empty
    arrow = pa.concat_tables(parts, promote_options="permissive")
    if start is not None or end is not None:
        ns = arrow.column(table.time_column).cast(pa.int64()).to_numpy()
        keep = np.ones(len(ns), dtype=bool)
        if start is not None:
            keep &= ns >= cal.as_utc(start, "read start").value
        if end is not None:
            keep &= ns < cal.as_utc(end, "read end").value
        arrow = arrow.filter(pa.array(keep))
    if columns is not None:
        arrow = arrow.select(columns)
    return arrow.to_pandas()


def read_lake(src: Sources, dataset: str, days: list[dt.date], columns: list[str] | None = None) -> pd.DataFrame:
    """The session objects of ``days`` (consecutive listed days, as ``lake_dates`` returns them)."""
    if not days:
        return pd.DataFrame()
    return read_sessions(
        src,
        dataset,
        days,
        cal.session_open(days[0]) - pd.Timedelta(hours=8),
        cal.session_end(days[-1]) + pd.Timedelta(hours=11),
        columns,
    )


def agent_positions(src: Sources, sessions: list[dt.date]) -> pd.DataFrame | None:
    """The agent's position per bar of the sessions (``l5/actions_m5``); None when no session of them has actions."""
    days = [d for d in lake_dates(src, "l5/actions_m5") if sessions and sessions[0] <= d <= sessions[-1]]
    if not days:
        return None
    df = read_lake(src, "l5/actions_m5", days, ["time", "position", "model_version"])
    if "position" not in df.columns or df.empty:
        return None
    return df[["time", "position", "model_version"]].reset_index(drop=True)


def markers_of(positions: pd.DataFrame | None) -> pd.DataFrame | None:
    """Entries and exits: the bars where the position changes (long / short when it opens or flips, exit to flat)."""
    if positions is None:
        return None
    pos = positions["position"].astype(float)
    change = pos.diff().fillna(pos).ne(0) & (np.sign(pos) != np.sign(pos.shift().fillna(0)))
    out = positions.loc[change, ["time"]].copy()
    out["position"] = pos[change].to_numpy()
    out["kind"] = np.where(out["position"] == 0, "exit", np.where(out["position"] > 0, "long", "short"))
    return out


def actions_markers(src: Sources, sessions: list[dt.date]) -> pd.DataFrame | None:
    return markers_of(agent_positions(src, sessions))


def latest_observation(src: Sources) -> dict | None:
    """The last observation row (l4/observations_m5), its vector with feature names, and the config."""
    days = lake_dates(src, "l4/observations_m5")
    if not days:
        return None
    df = read_lake(src, "l4/observations_m5", days[-1:])
    if df.empty:
        return None
    row = df.iloc[-1]
    ocols = [c for c in df.columns if c.startswith("o_")]
    vector = pd.DataFrame(
        {"position": range(len(ocols)), "feature": [c[2:] for c in ocols], "value": [float(row[c]) for c in ocols]}
    )
    return {
        "time": row["time"],
        "obs_version": row.get("obs_version"),
        "stats_version": row.get("stats_version", "-"),
        "non_finite": int(row.get("non_finite", 0)),
        "warm": bool(row.get("warm", True)),
        "vector": vector,
        "sessions": days,
    }


def observation_history(src: Sources, sessions: int = 5) -> pd.DataFrame:
    days = lake_dates(src, "l4/observations_m5")
    return read_lake(src, "l4/observations_m5", days[-sessions:])


def latest_features(src: Sources) -> pd.DataFrame | None:
    """The last L3 feature row, long format (feature, value)."""
    days = lake_dates(src, "l3/features_m5")
    if not days:
        return None
    df = read_lake(src, "l3/features_m5", days[-1:])
    if df.empty:
        return None
    row = df.iloc[-1]
    skip = {"time", "symbol"}
    vals = [(c, row[c]) for c in df.columns if c not in skip and np.issubdtype(np.asarray(row[c]).dtype, np.number)]
    return pd.DataFrame({"time": row["time"], "feature": [c for c, _ in vals], "value": [float(v) for _, v in vals]})


def normalization(src: Sources) -> pd.DataFrame | None:
    """The latest month of l4/observation_stats (one row per feature: mean, std, stats_version, fit window), or None."""
    days = lake_dates(src, "l4/observation_stats")
    if not days:
        return None
    # a month's rows are timed at its first day (normalization.month_start): the newest object holds the newest month
    frame = read_sessions(src, "l4/observation_stats", days[-1:], None, None)
    return (
        frame[frame["month"] == frame["month"].max()].reset_index(drop=True)
        if len(frame) and "month" in frame
        else None
    )


def observation_config() -> dict:
    """The observation config the code location uses (version, features, passthrough)."""
    from usdcop_assets.observation.builder import load_config

    try:
        cfg = load_config()
    except ValueError as exc:
        return {"error": str(exc)}
    return {
        "version": cfg.version,
        "dim": cfg.dim,
        "features": list(cfg.features),
        "sha256": cfg.sha256(),
        "rule": cfg.rule_text(),
        "passthrough": sorted(cfg.passthrough),
    }


def manifests(src: Sources, dataset: str, sessions: int = 20, verify: bool = True) -> pd.DataFrame:
    """manifest.json of the last ``sessions`` session objects of a dataset, and whether each verifies."""
    table = src.lake_table(dataset)
    rows = []
    for day in lake_dates(src, dataset)[-sessions:][::-1]:
        try:
            m = table.manifest(day) or {}
        except ValueError:
            m = {}
        problems = table.verify(day) if verify else []
        rows.append(
            {
                "date": day,
                "rows": m.get("rows"),
                "sha256": m.get("sha256"),
                "bytes": m.get("bytes"),
                "time_min": m.get("time_min"),
                "time_max": m.get("time_max"),
                "written_at": m.get("written_at"),
                "verified": "ok" if not problems else "; ".join(problems),
            }
        )
    out = pd.DataFrame(
        rows, columns=["date", "rows", "sha256", "bytes", "time_min", "time_max", "written_at", "verified"]
    )
    for c in ("time_min", "time_max", "written_at"):
        out[c] = pd.to_datetime(out[c], utc=True, format="ISO8601", errors="coerce")
    return out


LAKE_DATASETS = tuple(d for d in SESSION_DATASETS if not d.startswith("l5/paper_")) + MACRO_DATASETS


# -- L5 / L6: model registry, actions, backtests, performance ---------------------------------------------


def read_all_lake(src: Sources, dataset: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Every session object of a lake dataset (empty frame when it has none)."""
    days = lake_dates(src, dataset)
    if not days:
        return pd.DataFrame(columns=columns or [])
    return read_lake(src, dataset, days, columns)


BACKTEST_READ = ["time", "session", "position", "pnl", "next_ret", "close", "model_version"]


def backtest(src: Sources, days: list[dt.date] | None = None) -> pd.DataFrame:
    """The stored per-bar session backtests (``l6/backtest_session``) of ``days`` (all sessions when None)."""
    if days is None:
        return read_all_lake(src, "l6/backtest_session", BACKTEST_READ)
    if not days:
        return pd.DataFrame(columns=BACKTEST_READ)
    return read_sessions(
        src, "l6/backtest_session", days, cal.session_open(days[0]), cal.session_end(days[-1]), BACKTEST_READ
    )


def performance_rows(src: Sources) -> pd.DataFrame:
    """The latest ``rl_metrics`` evaluation (one row per strategy), empty when ``l6/performance`` never ran."""
    wh = src.warehouse
    if not wh.has_table("rl_metrics"):
        return pd.DataFrame()
    df = wh.query(
        "SELECT * FROM rl_metrics WHERE metric_date = (SELECT MAX(metric_date) FROM rl_metrics) ORDER BY strategy",
        times=("computed_at",),
    )
    return df


def models(src: Sources) -> pd.DataFrame:
    """The model registry (``rl_models``, one row per trained fold)."""
    wh = src.warehouse
    if not wh.has_table("rl_models"):
        return pd.DataFrame()
    return wh.query(
        "SELECT fold, version, obs_version, train_first, train_last, valid_first, valid_last, train_sessions, "
        "valid_sessions, total_timesteps, selected_timesteps, valid_sharpe, valid_mean_reward FROM rl_models ORDER BY "
        "fold",
        times=(),
    )


def report(src: Sources) -> dict | None:
    """The newest HTML report of ``l6/performance`` in the lake: key, where it is, and its bytes."""
    keys = sorted(k for k in src.store.list(REPORTS_PREFIX + "/") if k.endswith(".html"))
    if not keys:
        return None
    key = keys[-1]
    return {"key": key, "location": f"{src.store.location}/{key}", "html": src.store.get(key)}


def paper_history(src: Sources, start=None, end=None) -> pd.DataFrame:
    """The paper ledger's position and session P&L per bar in the window (warehouse ``paper_positions``)."""
    cols = ["time", "session", "position", "session_pnl", "model_version"]
    return src.warehouse.window("paper_positions", cols, start, end)


def materialized(src: Sources, registry=None, performance=None, dates=None) -> dict[str, bool]:
    """Which L5/L6 outputs exist in the stores right now (the pages read this, never a fixed text). ``registry``,
    ``performance`` (frames) and ``dates`` (dataset -> listed dates) are what the caller already read, else read."""
    registry = models(src) if registry is None else registry
    performance = performance_rows(src) if performance is None else performance
    dates = dates or (lambda dataset: lake_dates(src, dataset))
    return {
        "l5/ppo_model": not registry.empty,
        "l5/actions_m5": bool(dates("l5/actions_m5")),
        "l6/backtest_session": bool(dates("l6/backtest_session")),
        "l6/performance": not performance.empty,
        "l5/paper_positions": src.warehouse.has_table("paper_positions"),
    }


# -- research: experiments compared out of sample (l6/experiment_*) ---------------------------------------

EXPERIMENT_METRICS = "rl_experiment_metrics"  # l6/experiment_performance (defs/layers/l6_experiments.py)
SELECTION_PREFIX = "experiments/selection"  # l6/experiment_selection's <fold>.json in the lake (same module)
SELECTED = "selected"
EXPERIMENT_COMMAND = f"{CLI} experiment run NAME... --folds YYYY-MM..YYYY-MM"
# After the selected strategy and the experiments (ppo_*): the supervised baseline, then the rule baselines.
BASELINE_ORDER = ("lightgbm", "flat", "buy_and_hold", "sma_5_20", "buy_and_hold_held")


def strategy_rank(strategy: str) -> tuple:
    """Sort key: ``selected``, the experiments (``ppo_*``, by name), LightGBM and the baselines, anything else."""
    if strategy == SELECTED:
        return (0, 0, strategy)
    if strategy.startswith("ppo_"):
        return (1, 0, strategy)
    if strategy in BASELINE_ORDER:
        return (2, BASELINE_ORDER.index(strategy), strategy)
    return (3, 0, strategy)


def experiment_rows(src: Sources) -> pd.DataFrame:
    """The latest ``rl_experiment_metrics`` evaluation (one row per strategy, ``strategy_rank`` order), empty when
    ``l6/experiment_performance`` never ran."""
    wh = src.warehouse
    if not wh.has_table(EXPERIMENT_METRICS):
        return pd.DataFrame()
    df = wh.query(
        f"SELECT * FROM {EXPERIMENT_METRICS} WHERE metric_date = (SELECT MAX(metric_date) FROM {EXPERIMENT_METRICS})",
        times=("computed_at",),
    )
    if df.empty:
        return df
    for c in ("metric_date", "first_session"):
        df[c] = df[c].map(lambda v: None if v is None else str(v)[:10])
    order = sorted(df["strategy"], key=strategy_rank)
    return df.set_index("strategy").loc[order].reset_index()


def experiment_picks(src: Sources) -> pd.DataFrame:
    """One row per ``experiments/selection/<fold>.json`` in the lake: fold, selected, reason, then each candidate's
    validation Sharpe (a column per candidate, NaN where it was not a candidate or not finite)."""
    cols = ["fold", "selected", "reason"]
    rows = []
    for key in sorted(k for k in src.store.list(SELECTION_PREFIX + "/") if k.endswith(".json")):
        blob = src.store.get(key)
        if not blob:
            continue
        rec = json.loads(blob)
        row = {
            "fold": rec.get("fold") or key.rsplit("/", 1)[-1].removesuffix(".json"),
            "selected": rec.get("selected"),
            "reason": rec.get("reason"),
        }
        for name, score in (rec.get("scores") or {}).items():
            row[name] = np.nan if score is None else float(score)
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame(rows)
    candidates = sorted((c for c in out.columns if c not in cols), key=strategy_rank)
    return out[cols + candidates].sort_values("fold", kind="stable").reset_index(drop=True)


SERVED_MODELS = SERVED_REGISTRIES["selection"][0]  # l6/experiment_selection's row per fold
# USDCOP_SERVE -> what l5/actions_m5 and the live process trade, in a trader's words, and its registry table
SERVES = {
    "ppo_model": ("l5/ppo_model", SERVED_REGISTRIES["ppo_model"][0]),
    "selection": ("the selection's picks", SERVED_MODELS),
}


def served_models(src: Sources) -> pd.DataFrame:
    """The ``rl_served_models`` rows, newest fold first, as a trader reads them: what each fold trades
    (``model_version``: ``experiment@version:summaryhash12`` as its actions name it, or ``flat (...)``), its action
    rules, and why (the flat reason when the rule fell back to flat); empty when ``l6/experiment_selection`` never
    registered a fold (no table on an older warehouse)."""
    wh = src.warehouse
    if not wh.has_table(SERVED_MODELS):
        return pd.DataFrame()
    df = wh.query(f"SELECT * FROM {SERVED_MODELS} ORDER BY fold DESC", times=())
    if df.empty:
        return df
    df["action_rules"] = [
        None if pd.isna(space) else f"{space}, band {float(band):g}, hold ≥ {int(hold)} bars"
        for space, band, hold in zip(df["action_space"], df["no_trade_band"], df["min_hold_bars"])
    ]
    df["reason"] = [f if isinstance(f, str) and f else r for f, r in zip(df["flat_reason"], df["reason"])]
    df["seeds"] = df["seeds"].astype("Int64")  # NULL on flat rows
    df["valid_sharpe"] = pd.to_numeric(df["valid_sharpe"], errors="coerce")
    cols = ["fold", "selected", "version", "ensemble", "seeds", "action_rules", "valid_sharpe", "reason"]
    return df[cols].rename(columns={"version": "model_version"})


def serving(src: Sources) -> tuple[str, str, str]:
    """``USDCOP_SERVE`` (ConfigError on a bad value), what it trades and the registry it reads."""
    serve = src.settings.training.serve
    return (serve, *SERVES[serve])


def serve_line(src: Sources) -> str:
    """One sentence: what this deployment trades, and how to trade the other (ConfigError on a bad value)."""
    serve, what, table = serving(src)
    if serve == "ppo_model":
        return (
            f"This deployment trades {what} (USDCOP_SERVE={serve}, registry `{table}`); set USDCOP_SERVE=selection to "
            f"trade the selection's picks (`{SERVED_MODELS}`)."
        )
    return (
        f"This deployment trades {what} (USDCOP_SERVE={serve}, registry `{table}`): per fold its seed ensemble, or "
        "flat; unset USDCOP_SERVE to trade l5/ppo_model."
    )


def serving_note(src: Sources) -> str:
    """The short form, beside the model versions a chart names: the actions of a window may predate the setting."""
    try:
        serve, what, _ = serving(src)
    except ConfigError as exc:
        return f"serving: {exc}"
    return f"now serving {what}, USDCOP_SERVE={serve}"


# -- data quality -------------------------------------------------------------------------------------


def rejects(src: Sources, start=None, end=None) -> pd.DataFrame:
    """L1's rejected rows and the rows an import could place in no session (``not_a_trading_day``, ...), together."""
    cols = ["time", "reason", "source", "detail"]
    parts = [src.warehouse.window(name, cols, start, end) for name in (REJECTS, UNPLACED)]
    parts = [p for p in parts if len(p)]
    return (
        pd.concat(parts, ignore_index=True).sort_values("time", kind="stable").reset_index(drop=True)
        if parts
        else pd.DataFrame(columns=cols)
    )


def rejects_by_reason(rej: pd.DataFrame) -> pd.DataFrame:
    if rej.empty:
        return pd.DataFrame(columns=["reason", "rows"])
    return rej.groupby("reason").size().rename("rows").sort_values(ascending=False).reset_index()


def rejects_by_day(rej: pd.DataFrame) -> pd.DataFrame:
    """Rows per Bogota day (index) and reason (columns)."""
    if rej.empty:
        return pd.DataFrame()
    day = cal.session_dates(rej["time"]).to_numpy()
    return rej.assign(day=day).pivot_table(index="day", columns="reason", values="time", aggfunc="count", fill_value=0)


def quality_by_session(bars: pd.DataFrame, first: dt.date, last: dt.date) -> pd.DataFrame:
    """Per session of ``first..last``: bars present, expected, missing (gaps) and flat bars."""
    days = cal.trading_days(first, last)
    if not days:
        return pd.DataFrame(columns=["session", "bars", "expected", "missing", "flat"])
    if bars.empty:
        present = pd.Series(0, index=days)
        flat = pd.Series(0, index=days)
    else:
        on_grid = cal.on_session_grid(pd.DatetimeIndex(bars["time"]))
        b = bars.loc[on_grid]
        d = cal.session_dates(b["time"]).to_numpy()
        present = pd.Series(1, index=d).groupby(level=0).sum().reindex(days, fill_value=0)
        flat = (
            pd.Series(b["is_flat"].astype(bool).to_numpy(), index=d).groupby(level=0).sum().reindex(days, fill_value=0)
        )
    out = pd.DataFrame({"session": days, "bars": present.to_numpy(), "expected": cal.BARS_PER_SESSION})
    out["missing"] = out["expected"] - out["bars"]
    out["flat"] = flat.to_numpy().astype(int)
    return out


# -- Dagster instance (read-only) ---------------------------------------------------------------------


def open_instance(src: Sources):
    """The Dagster instance at DAGSTER_HOME, or None when none was created there yet."""
    if not src.has_instance():
        return None
    from dagster import DagsterInstance

    return DagsterInstance.from_config(str(src.settings.dagster_home))


def _key(asset: str):
    from dagster import AssetKey

    return AssetKey(asset.split("/"))


def _ts(seconds: float | None) -> pd.Timestamp | None:
    return None if seconds is None else pd.Timestamp(seconds, unit="s", tz="UTC")


@functools.lru_cache(maxsize=64)
def _trading_days(first: dt.date, last: dt.date) -> tuple[dt.date, ...]:
    """``cal.trading_days``, once per span: the pipeline page asks for the same six years per session asset."""
    return tuple(cal.trading_days(first, last))


def expected_partitions(kind: str, first: str, last: str) -> list[str]:
    """Partition keys the calendar expects from ``first`` to ``last`` (same kind, inclusive)."""
    a, b = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    if kind == "session":
        return [d.isoformat() for d in _trading_days(a, b)]
    return [(a + dt.timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


def freshness(kind: str | None, latest: str | None, now=None) -> str:
    """'fresh', 'n bars/sessions behind' against the calendar's last closed bar, or 'never'."""
    if latest is None:
        return "never materialized"
    if kind is None:
        return "materialized (unpartitioned)"
    now = cal.as_utc(now or pd.Timestamp.now(tz="UTC"))
    last_bar = cal.last_closed_bar(now)
    if last_bar is None:
        return "unknown"
    last_day = last_bar.tz_convert(cal.TZ).date()
    start = dt.date.fromisoformat(latest) + dt.timedelta(days=1)
    behind = len(_trading_days(start, last_day)) if kind == "session" else max((last_day - start).days + 1, 0)
    unit = "sessions" if kind == "session" else "days"
    return "fresh" if behind <= 0 else f"stale: {behind} {unit} behind"


def layer_status(instance, now=None) -> pd.DataFrame:
    """One row per asset of L0-L6: latest partition, when, run, partitions materialized, gaps, freshness."""
    rows = []
    known = {"/".join(k.path) for k in instance.get_asset_keys()} if instance is not None else set()
    listed = [_key(a) for assets in LAYERS.values() for a, _ in assets if a in known]
    latest_events = instance.get_latest_materialization_events(listed) if listed else {}  # one query, not one each
    for layer, assets in LAYERS.items():
        for asset, kind in assets:
            row = {
                "layer": layer,
                "asset": asset,
                "partitioned_by": kind or "-",
                "latest_partition": None,
                "materialized_at": None,
                "run_id": None,
                "partitions": 0,
                "gaps": 0,
                "first_gap": None,
                "freshness": "never materialized",
                "what_to_run": what_to_run(asset),
            }
            if asset in known:
                event = latest_events.get(_key(asset))
                if event is not None:
                    mat = event.asset_materialization
                    row.update(materialized_at=_ts(event.timestamp), run_id=event.run_id, what_to_run="")
                    if kind is not None:
                        parts = sorted(instance.get_materialized_partitions(_key(asset)))
                        row["partitions"] = len(parts)
                        if parts:
                            latest = parts[-1]  # keys sort in time order (ISO dates, %Y-%m-%d-%H:%M)
                            row["latest_partition"] = latest
                            have = set(parts)
                            missing = [k for k in expected_partitions(kind, parts[0], latest) if k not in have]
                            row.update(gaps=len(missing), first_gap=missing[0] if missing else None)
                    else:
                        row["latest_partition"] = mat.partition or "-"
                    row["freshness"] = freshness(kind, row["latest_partition"] if kind else "-", now)
            rows.append(row)
    return pd.DataFrame(rows)


def overfitting_stats(instance) -> dict:
    """The agent's deflated Sharpe ratio (and its N trials) and the PBO from the latest ``l6/performance``
    materialization's metadata; a value is None with its ``*_reason`` when absent (no instance, never
    materialized, an older materialization that did not record it, or not computable on that evaluation)."""
    out = {
        "dsr": None,
        "trials": None,
        "sharpe_per_session": None,
        "pbo": None,
        "metric_date": None,
        "dsr_reason": None,
        "pbo_reason": None,
    }
    event = instance.get_latest_materialization_event(_key("l6/performance")) if instance is not None else None
    if event is None:
        reason = "no Dagster instance" if instance is None else "l6/performance never materialized"
        return out | {"dsr_reason": reason, "pbo_reason": reason}
    md = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    out["metric_date"] = md.get("metric_date")
    old = "not recorded by this l6/performance materialization (older code): materialize it again"
    if "agent_deflated_sharpe" not in md:
        out["dsr_reason"] = old
    elif md["agent_deflated_sharpe"] is None:
        out["dsr_reason"] = "the agent's per-session returns are degenerate (constant, or too few sessions)"
    else:
        out.update(
            dsr=float(md["agent_deflated_sharpe"]),
            trials=md.get("deflated_sharpe_trials"),
            sharpe_per_session=md.get("agent_sharpe_per_session"),
        )
    if "pbo" not in md:
        out["pbo_reason"] = old
    elif md["pbo"] is None:
        out["pbo_reason"] = "fewer than 2 sessions evaluated"
    else:
        out["pbo"] = float(md["pbo"])
    return out


CHECK_COLUMNS = [
    "layer",
    "asset",
    "check",
    "key",
    "status",
    "passed",
    "severity",
    "sessions",
    "failing",
    "first_failing",
    "detail",
    "partition",
    "at",
    "run_id",
]


def _check_key(asset: str, name: str):
    from dagster import AssetCheckKey

    return AssetCheckKey(_key(asset), name)


def _evaluation(record):
    """The AssetCheckEvaluation of an execution record (None while planned or if the step died)."""
    event = record.event if record is not None else None
    if event is None or event.dagster_event is None or event.dagster_event.event_type_value != "ASSET_CHECK_EVALUATION":
        return None
    return event.dagster_event.event_specific_data


def check_results(instance) -> pd.DataFrame:
    """Each data check over the sessions it evaluated: its latest evaluation per session, summarized.

    ``passed``: True when every evaluated session's latest evaluation passed, False when one failed,
    None when never run; ``first_failing``/``detail``: the earliest failing session and why.
    """
    from dagster._core.event_api import PartitionKeyFilter
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as Status

    rows = []
    for asset, names in CHECKS.items():
        for name in names:
            key = _check_key(asset, name)
            row = dict.fromkeys(CHECK_COLUMNS)
            row.update(
                layer=layer_of(asset),
                asset=asset,
                check=name,
                key=key.to_user_string(),
                status="never run",
                sessions=0,
                failing=0,
            )
            rec = instance.get_latest_asset_check_evaluation_record(key) if instance else None
            if rec is not None:
                row.update(
                    partition=rec.partition,
                    run_id=rec.run_id,
                    at=_ts(rec.create_timestamp),
                    status=rec.status.value.lower(),
                )
                infos = instance.event_log_storage.get_asset_check_partition_info([key])
                done = {
                    i.partition_key: i.latest_execution_status
                    for i in infos
                    if i.latest_execution_status in (Status.SUCCEEDED, Status.FAILED)
                }
                failing = sorted(p for p, st in done.items() if st == Status.FAILED)
                row.update(sessions=len(done), failing=len(failing), passed=not failing if done else None)
                latest = _evaluation(rec)
                if failing:
                    first = instance.event_log_storage.get_asset_check_execution_history(
                        key, limit=1, partition_filter=PartitionKeyFilter(key=failing[0])
                    )
                    latest = _evaluation(first[0]) if first else latest
                    row.update(first_failing=failing[0], detail=(latest.description or "") if latest else "")
                    row["status"] = (
                        f"{'failed' if latest is None or latest.severity.value == 'ERROR' else 'warning'} in "
                        f"{len(failing)} of {len(done)} sessions"
                    )
                elif done:
                    row["status"] = f"passed in {len(done)} sessions"
                if latest is not None:
                    row["severity"] = latest.severity.value
            rows.append(row)
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)


def check_history(instance, asset: str, sessions: int = 20) -> pd.DataFrame:
    """The latest evaluation of each check of ``asset`` in its ``sessions`` most recent evaluated sessions."""
    cols = ["session", "check", "passed", "severity", "detail", "run_id", "at"]
    if instance is None or asset not in CHECKS:
        return pd.DataFrame(columns=cols)
    rows = []
    for name in CHECKS[asset]:
        seen = set()
        for rec in instance.event_log_storage.get_asset_check_execution_history(
            _check_key(asset, name), limit=sessions * 5
        ):
            ev = _evaluation(rec)
            if ev is None or rec.partition in seen:
                continue
            seen.add(rec.partition)
            rows.append(
                {
                    "session": rec.partition,
                    "check": name,
                    "passed": bool(ev.passed),
                    "severity": ev.severity.value,
                    "detail": ev.description or "",
                    "run_id": rec.run_id,
                    "at": _ts(rec.create_timestamp),
                }
            )
    frame = pd.DataFrame(rows, columns=cols)
    keep = sorted(frame["session"].dropna().unique())[-sessions:]
    return (
        frame[frame["session"].isin(keep)]
        .sort_values(["session", "check"], ascending=[False, True])
        .reset_index(drop=True)
    )


def recent_runs(instance, limit: int = 25) -> pd.DataFrame:
    cols = ["run_id", "job", "status", "start", "end", "duration_s", "range", "launched_by"]
    if instance is None:
        return pd.DataFrame(columns=cols)
    rows = []
    for rec in instance.get_run_records(limit=limit):
        run, tags = rec.dagster_run, rec.dagster_run.tags
        start, end = _ts(rec.start_time), _ts(rec.end_time)
        rng = tags.get("dagster/asset_partition_range_start")
        rows.append(
            {
                "run_id": run.run_id,
                "job": run.job_name,
                "status": run.status.value,
                "start": start,
                "end": end,
                "duration_s": round(rec.end_time - rec.start_time, 1) if rec.end_time and rec.start_time else None,
                "range": f"{rng} .. {tags.get('dagster/asset_partition_range_end')}"
                if rng
                else tags.get("dagster/partition"),
                "launched_by": tags.get("usdcop/launched_by"),
            }
        )
    return pd.DataFrame(rows, columns=cols)


def materializations(instance, asset: str, limit: int = 50) -> pd.DataFrame:
    """Latest materializations of an asset: partition, code version, data version, run id, when, metadata.

    ``data_version`` is the partition's own (a range run records each session's in that session's metadata;
    Dagster's ``dagster/data_version`` tag then holds the range's), else the tag."""
    cols = ["partition", "code_version", "data_version", "run_id", "at", "storage_id", "metadata"]
    if instance is None:
        return pd.DataFrame(columns=cols)
    rows = []
    for rec in instance.fetch_materializations(_key(asset), limit=limit).records:
        mat = rec.asset_materialization
        tags = mat.tags or {}
        own = mat.metadata.get("data_version")
        meta = {k: _meta_text(v) for k, v in list(mat.metadata.items())[:12]}
        rows.append(
            {
                "partition": mat.partition,
                "code_version": tags.get("dagster/code_version"),
                "data_version": _meta_text(own) if own is not None else tags.get("dagster/data_version"),
                "run_id": rec.run_id,
                "at": _ts(rec.timestamp),
                "storage_id": rec.storage_id,
                "metadata": json.dumps(meta, default=str)[:400],
            }
        )
    return pd.DataFrame(rows, columns=cols)


def _meta_text(value) -> str:
    inner = getattr(value, "value", value)
    return str(inner)[:80]


def code_version() -> str:
    """This code's version (package version + git commit), as Dagster stamps it on every asset."""
    from usdcop_assets.version import code_version as version

    return version()


# -- cached wrappers for the pages ----------------------------------------------------------------------

try:
    import streamlit as st
except ImportError:  # the pure half stays importable without Streamlit
    st = None

if st is not None:
    TTL = 30

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_bars_summary(env) -> pd.DataFrame:
        return bars_summary(sources(env))

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_bars(env, start, end) -> pd.DataFrame:
        return read_bars(sources(env), start, end)

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_daily_bars(env) -> pd.DataFrame:
        src = sources(env)
        bars = src.warehouse.window(OHLCV, ["time", "open", "high", "low", "close", "volume", "source"])
        return resample_ohlc(bars, "1D")

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_rejects(env, start, end) -> pd.DataFrame:
        return rejects(sources(env), start, end)

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_quality_bars(env, start, end) -> pd.DataFrame:
        return sources(env).warehouse.window(OHLCV, ["time", "is_flat", "source"], start, end)

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_paper_status(env):
        return paper_status(sources(env))

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_positions(env, first: dt.date, last: dt.date):
        return agent_positions(sources(env), cal.trading_days(first, last))

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_latest_observation(env):
        return latest_observation(sources(env))

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_observation_history(env, sessions: int) -> pd.DataFrame:
        return observation_history(sources(env), sessions)

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_latest_features(env):
        return latest_features(sources(env))

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_normalization(env):
        return normalization(sources(env))

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_observation_config(env) -> dict:
        return observation_config()

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_manifests(env, dataset: str, sessions: int) -> pd.DataFrame:
        return manifests(sources(env), dataset, sessions)

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_lake_dates(env, dataset: str) -> list:
        return lake_dates(sources(env), dataset)

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_tear_sheet(env, days: tuple) -> dict:
        """The tear sheet of the stored backtests of ``days`` (a tuple: hashable, the cache key)."""
        import tearsheet

        return tearsheet.tear_sheet(backtest(sources(env), list(days)), cached_models(env))

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_performance(env) -> pd.DataFrame:
        return performance_rows(sources(env))

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_experiments(env) -> pd.DataFrame:
        return experiment_rows(sources(env))

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_experiment_picks(env) -> pd.DataFrame:
        return experiment_picks(sources(env))

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_served_models(env) -> pd.DataFrame:
        return served_models(sources(env))

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_models(env) -> pd.DataFrame:
        return models(sources(env))

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_report(env):
        return report(sources(env))

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_paper_history(env, start, end) -> pd.DataFrame:
        return paper_history(sources(env), start, end)

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_materialized(env) -> dict:
        # the page reads these too: one read of each (same TTL) instead of two
        return materialized(
            sources(env), cached_models(env), cached_performance(env), lambda dataset: cached_lake_dates(env, dataset)
        )

    @st.cache_resource(show_spinner=False)
    def cached_instance(env):
        return open_instance(sources(env))

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_overfitting(env) -> dict:
        return overfitting_stats(cached_instance(env))

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_layer_status(env) -> pd.DataFrame:
        return layer_status(cached_instance(env))

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_check_results(env) -> pd.DataFrame:
        return check_results(cached_instance(env))

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_check_history(env, asset: str, sessions: int = 20) -> pd.DataFrame:
        return check_history(cached_instance(env), asset, sessions)

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_recent_runs(env, limit: int = 25) -> pd.DataFrame:
        return recent_runs(cached_instance(env), limit)

    @st.cache_data(ttl=TTL, show_spinner=False)
    def cached_materializations(env, asset: str, limit: int = 50) -> pd.DataFrame:
        return materializations(cached_instance(env), asset, limit)


__all__ = ["ConfigError"]
