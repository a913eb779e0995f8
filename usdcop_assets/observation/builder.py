"""The one observation builder: L3 features -> the vector the agent sees, for training, inference and backtest.

Everything that defines the vector lives in one versioned config file (``obs_v1.json`` next to this
module, or ``USDCOP_OBS_CONFIG``): feature order, which features are z-scored and which pass through
(already scaled: sin/cos encodings, macro z-scores), the clip (±5) and the rule for NaN/Inf (0 after
normalization, counted per row). Normalization statistics come only from the config's declared
training window (``USDCOP_OBS_TRAIN_WINDOW=YYYY-MM-DD..YYYY-MM-DD`` overrides it, and the override is
recorded in the statistics); they are stored with a version id that hashes config + statistics, so a
vector is always traceable to exactly how it was made.

Pure numpy/pandas; no Dagster.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from usdcop_assets import market_calendar as cal

CONFIG_ENV = "USDCOP_OBS_CONFIG"
TRAIN_WINDOW_ENV = "USDCOP_OBS_TRAIN_WINDOW"
DEFAULT_CONFIG = Path(__file__).with_name("obs_v1.json")
PREFIX = "o_"  # observation columns are o_<feature>, in config order


@dataclass(frozen=True)
class ObservationConfig:
    version: str
    features: tuple[str, ...]
    passthrough: frozenset[str]
    train_start: dt.date
    train_end: dt.date
    min_train_bars: int
    min_std: float
    clip: float
    raw: dict  # the file's content (with any window override applied), hashed into the version

    @property
    def dim(self) -> int:
        return len(self.features)

    @property
    def columns(self) -> list[str]:
        return [PREFIX + f for f in self.features]

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True).encode()).hexdigest()


def _train_window(text: str) -> tuple[dt.date, dt.date]:
    try:
        a, b = (dt.date.fromisoformat(p.strip()) for p in text.split(".."))
    except ValueError:
        raise ValueError(f"{TRAIN_WINDOW_ENV}={text!r}: expected YYYY-MM-DD..YYYY-MM-DD") from None
    if b < a:
        raise ValueError(f"{TRAIN_WINDOW_ENV}={text!r}: the end is before the start")
    return a, b


def load_config(path: str | Path | None = None, env=os.environ) -> ObservationConfig:
    path = Path(path or env.get(CONFIG_ENV) or DEFAULT_CONFIG)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"observation config {path}: {exc}") from None
    missing = [k for k in ("version", "features", "normalization", "clip") if k not in raw]
    if missing:
        raise ValueError(f"observation config {path}: missing {missing}")
    norm = dict(raw["normalization"])
    if env.get(TRAIN_WINDOW_ENV):
        start, end = _train_window(env[TRAIN_WINDOW_ENV])
        norm.update(train_start=start.isoformat(), train_end=end.isoformat(), overridden_by=TRAIN_WINDOW_ENV)
        raw = {**raw, "normalization": norm}
    features = tuple(raw["features"])
    if len(set(features)) != len(features):
        raise ValueError(f"observation config {path}: duplicated features")
    unknown = set(raw.get("passthrough", ())) - set(features)
    if unknown:
        raise ValueError(f"observation config {path}: passthrough names unknown features {sorted(unknown)}")
    return ObservationConfig(
        version=str(raw["version"]),
        features=features,
        passthrough=frozenset(raw.get("passthrough", ())),
        train_start=dt.date.fromisoformat(norm["train_start"]),
        train_end=dt.date.fromisoformat(norm["train_end"]),
        min_train_bars=int(norm.get("min_train_bars", 600)),
        min_std=float(norm.get("min_std", 1e-12)),
        clip=float(raw["clip"]),
        raw=raw,
    )


def train_window(config: ObservationConfig) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[open of the first training session, close of the last) in UTC."""
    days = cal.trading_days(config.train_start, config.train_end)
    if not days:
        raise ValueError(f"{config.version}: no trading session in the training window {config.train_start}..{config.train_end}")
    return cal.session_open(days[0]), cal.session_end(days[-1])


def fit_normalization(features: pd.DataFrame, config: ObservationConfig) -> dict:
    """Mean and std of each z-scored feature over the warm rows of the training window only."""
    start, end = train_window(config)
    missing = [f for f in config.features if f not in features.columns]
    if missing:
        raise ValueError(f"{config.version}: features lack {missing}")
    times = pd.DatetimeIndex(features["time"]).tz_convert("UTC")
    rows = features[(times >= start) & (times < end) & features["warm"].astype(bool).to_numpy()]
    if len(rows) < config.min_train_bars:
        raise ValueError(
            f"{config.version}: the training window {config.train_start}..{config.train_end} has {len(rows)} warm feature "
            f"rows, fewer than {config.min_train_bars}; materialize l3/features_m5 over it first "
            f"(or declare another window with {TRAIN_WINDOW_ENV})"
        )
    stats: dict = {"mean": {}, "std": {}, "finite_rows": {}}
    for name in config.features:
        values = rows[name].to_numpy(dtype="float64")
        finite = values[np.isfinite(values)]
        if name in config.passthrough:
            mean, std = 0.0, 1.0
        else:
            mean = float(finite.mean()) if len(finite) else 0.0
            std = float(finite.std(ddof=1)) if len(finite) > 1 else 1.0
            std = std if std > config.min_std else 1.0  # a constant feature is centred, not blown up
        stats["mean"][name], stats["std"][name], stats["finite_rows"][name] = mean, std, int(len(finite))
    body = {
        "config_version": config.version,
        "config_sha256": config.sha256(),
        "train_start": config.train_start.isoformat(),
        "train_end": config.train_end.isoformat(),
        "train_rows": int(len(rows)),
        "first_bar": str(pd.Timestamp(rows["time"].min())),
        "last_bar": str(pd.Timestamp(rows["time"].max())),
        **stats,
    }
    body["version"] = f"{config.version}-{hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]}"
    return body


def build_observations(features: pd.DataFrame, config: ObservationConfig, stats: dict) -> pd.DataFrame:
    """time, symbol, obs_version, o_<feature>... (config order), non_finite (count per row), warm."""
    if stats.get("config_sha256") != config.sha256():
        raise ValueError(
            f"normalization statistics {stats.get('version')} were fitted for another observation config "
            f"(sha {str(stats.get('config_sha256'))[:12]} vs {config.sha256()[:12]}); re-fit them"
        )
    missing = [f for f in config.features if f not in features.columns]
    if missing:
        raise ValueError(f"{config.version}: features lack {missing}")
    x = features[list(config.features)].to_numpy(dtype="float64")
    mean = np.array([stats["mean"][f] for f in config.features])
    std = np.array([stats["std"][f] for f in config.features])
    with np.errstate(invalid="ignore", over="ignore"):
        z = (x - mean) / std
    bad = ~np.isfinite(z)
    z = np.clip(np.where(bad, 0.0, z), -config.clip, config.clip)
    out = pd.DataFrame({"time": features["time"].to_numpy(), "symbol": features["symbol"].to_numpy()})
    out["time"] = pd.DatetimeIndex(out["time"]).tz_localize("UTC") if pd.DatetimeIndex(out["time"]).tz is None else out["time"]
    out["obs_version"] = stats["version"]
    obs = pd.DataFrame(z, columns=config.columns, index=out.index)
    out = pd.concat([out, obs], axis=1)
    out["non_finite"] = bad.sum(axis=1).astype("int64")
    out["warm"] = features["warm"].to_numpy(dtype=bool)
    return out


def observation_matrix(observations: pd.DataFrame, config: ObservationConfig) -> np.ndarray:
    """The (bars × dim) float32 matrix of stored observations, in config order (what the agent is fed)."""
    missing = [c for c in config.columns if c not in observations.columns]
    if missing:
        raise ValueError(f"observations lack {missing} (config {config.version}, dim {config.dim})")
    return observations[config.columns].to_numpy(dtype="float32")


# --- the statistics as a table (l4/observation_stats in the lake) ---------------------------------


def stats_to_frame(stats: dict) -> pd.DataFrame:
    """One row per feature (mean, std, finite rows) with the version and window on every row."""
    names = list(stats["mean"])
    frame = pd.DataFrame(
        {
            "feature": names,
            "position": np.arange(len(names)),
            "mean": [stats["mean"][n] for n in names],
            "std": [stats["std"][n] for n in names],
            "finite_rows": [stats["finite_rows"][n] for n in names],
        }
    )
    for key in ("version", "config_version", "config_sha256", "train_start", "train_end", "train_rows", "first_bar", "last_bar"):
        frame[key] = stats[key]
    return frame


def stats_from_frame(frame: pd.DataFrame) -> dict:
    if frame.empty:
        raise ValueError("l4/observation_stats is empty; materialize it (it needs l3/features_m5 over the training window)")
    first = frame.iloc[0]
    frame = frame.sort_values("position")
    stats = {k: (first[k].item() if hasattr(first[k], "item") else first[k]) for k in ("version", "config_version", "config_sha256", "train_start", "train_end", "train_rows", "first_bar", "last_bar")}
    stats["mean"] = dict(zip(frame["feature"], frame["mean"].astype(float)))
    stats["std"] = dict(zip(frame["feature"], frame["std"].astype(float)))
    stats["finite_rows"] = dict(zip(frame["feature"], frame["finite_rows"].astype(int)))
    return stats
