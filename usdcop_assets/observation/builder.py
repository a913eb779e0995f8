"""The one observation builder: L3 features -> the vector the agent sees, for training, inference and backtest.

Everything that defines the vector lives in one versioned config file (``obs_v1.json`` next to this
module, or ``USDCOP_OBS_CONFIG``): feature order, which features are z-scored and which pass through
(already scaled: sin/cos encodings, macro z-scores), the clip (±5), the rule for NaN/Inf (0 after
normalization, counted per row) and the normalization rule. Statistics are monthly and point in time
(``normalization.py``): a bar is normalized with its month's statistics, fitted on data before the
month. Each row carries ``obs_version`` (the config's hash: what a model is compatible with) and
``stats_version`` (its month's statistics), so a vector is traceable to exactly how it was made.

Pure numpy/pandas; no Dagster.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from usdcop_assets.core.settings import Settings, as_settings
from usdcop_assets.observation.normalization import (  # noqa: F401 (re-exported)
    DECLARED,
    RULES,
    TRAILING,
    UNFITTED,
    missing_reason,
    months_of,
    stats_from_frame,
    stats_to_frame,
)

CONFIG_ENV = "USDCOP_OBS_CONFIG"
TRAIN_WINDOW_ENV = "USDCOP_OBS_TRAIN_WINDOW"  # optional: the declared rule with this window
DEFAULT_CONFIG = Path(__file__).with_name("obs_v1.json")
PREFIX = "o_"  # observation columns are o_<feature>, in config order
NOT_WARM = "features not warm"


@dataclass(frozen=True)
class ObservationConfig:
    version: str
    features: tuple[str, ...]
    passthrough: frozenset[str]
    rule: str  # trailing_months | declared (normalization.py)
    months: int  # trailing_months: how many months before the month
    train_start: dt.date | None  # declared: the window
    train_end: dt.date | None
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

    def rule_text(self) -> str:
        if self.rule == DECLARED:
            return f"declared window {self.train_start}..{self.train_end}"
        return f"trailing {self.months} months"


def obs_version(config: ObservationConfig) -> str:
    """The observation version of every row built with ``config``: features, scaling and normalization rule."""
    return f"{config.version}-{config.sha256()[:12]}"


def _train_window(text: str, name: str = TRAIN_WINDOW_ENV) -> tuple[dt.date, dt.date]:
    try:
        a, b = (dt.date.fromisoformat(str(p).strip()) for p in text.split(".."))
    except ValueError:
        raise ValueError(f"{name}={text!r}: expected YYYY-MM-DD..YYYY-MM-DD") from None
    if b < a:
        raise ValueError(f"{name}={text!r}: the end is before the start")
    return a, b


def load_config(path: str | Path | None = None, settings: Settings | None = None) -> ObservationConfig:
    """The observation config at ``path`` (default ``USDCOP_OBS_CONFIG``, else obs_v1.json), its normalization rule
    overridden by ``USDCOP_OBS_TRAIN_WINDOW`` when set."""
    observation = as_settings(settings).observation
    path = Path(path or observation.config_path or DEFAULT_CONFIG)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"observation config {path}: {exc}") from None
    missing = [k for k in ("version", "features", "normalization", "clip") if k not in raw]
    if missing:
        raise ValueError(f"observation config {path}: missing {missing}")
    norm = dict(raw["normalization"])
    if observation.train_window:
        start, end = _train_window(observation.train_window)
        norm.update(
            rule=DECLARED, train_start=start.isoformat(), train_end=end.isoformat(), overridden_by=TRAIN_WINDOW_ENV
        )
        raw = {**raw, "normalization": norm}
    rule = norm.get("rule", TRAILING)
    if rule not in RULES:
        raise ValueError(f"observation config {path}: normalization.rule {rule!r} is not one of {', '.join(RULES)}")
    start = end = None
    if rule == DECLARED:
        if not norm.get("train_start") or not norm.get("train_end"):
            raise ValueError(
                f"observation config {path}: the declared rule needs normalization.train_start and train_end"
            )
        start, end = _train_window(
            f"{norm['train_start']}..{norm['train_end']}", "normalization.train_start..train_end"
        )
    months = int(norm.get("months", 12))
    if months < 1:
        raise ValueError(f"observation config {path}: normalization.months must be at least 1")
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
        rule=rule,
        months=months,
        train_start=start,
        train_end=end,
        min_train_bars=int(norm.get("min_train_bars", 600)),
        min_std=float(norm.get("min_std", 1e-12)),
        clip=float(raw["clip"]),
        raw=raw,
    )


def build_observations(features: pd.DataFrame, config: ObservationConfig, stats: dict[str, dict]) -> pd.DataFrame:
    """time, symbol, obs_version, stats_version, o_<feature>... (config order), non_finite (count per row), warm,
    cold_reason.

    ``stats``: month -> that month's statistics (``stats_from_frame``). A bar whose month has no fitted
    statistics gets zeros, ``warm=False`` and the reason in ``cold_reason``; so does a bar whose features are not warm.
    """
    missing = [f for f in config.features if f not in features.columns]
    if missing:
        raise ValueError(f"{config.version}: features lack {missing}")
    for s in stats.values():
        if s.get("config_sha256") != config.sha256():
            raise ValueError(
                f"normalization statistics of {s.get('month')} were fitted for another observation config "
                f"(sha {str(s.get('config_sha256'))[:12]} vs {config.sha256()[:12]}); re-fit them: `usdcop backfill` "
                "over the range"
            )
    x = features[list(config.features)].to_numpy(dtype="float64")
    n = len(features)
    mean, std = np.zeros((n, config.dim)), np.ones((n, config.dim))
    fitted = np.zeros(n, dtype=bool)
    versions = np.full(n, UNFITTED, dtype=object)
    reasons = np.full(n, None, dtype=object)
    months = months_of(features["time"]) if n else np.array([], dtype=object)
    for month in pd.unique(months):
        rows = months == month
        s = stats.get(month)
        if s is None:
            reasons[rows] = missing_reason(month)
            continue
        if not s["fitted"]:
            reasons[rows] = f"normalization for {month} not fitted: {s['reason']}"
            continue
        mean[rows] = [s["mean"][f] for f in config.features]
        std[rows] = [s["std"][f] for f in config.features]
        fitted[rows], versions[rows] = True, s["stats_version"]
    with np.errstate(invalid="ignore", over="ignore"):
        z = (x - mean) / std
    z[~fitted] = 0.0  # no statistics: no vector (the bar is not warm and never traded)
    bad = ~np.isfinite(z)
    z = np.clip(np.where(bad, 0.0, z), -config.clip, config.clip)
    out = pd.DataFrame({"time": features["time"].to_numpy(), "symbol": features["symbol"].to_numpy()})
    out["time"] = (
        pd.DatetimeIndex(out["time"]).tz_localize("UTC") if pd.DatetimeIndex(out["time"]).tz is None else out["time"]
    )
    out["obs_version"] = obs_version(config)
    out["stats_version"] = pd.Series(versions, index=out.index, dtype="string")
    obs = pd.DataFrame(z, columns=config.columns, index=out.index)
    out = pd.concat([out, obs], axis=1)
    out["non_finite"] = bad.sum(axis=1).astype("int64")
    warm_features = features["warm"].to_numpy(dtype=bool)
    reasons[fitted & ~warm_features] = NOT_WARM
    out["warm"] = warm_features & fitted
    out["cold_reason"] = pd.Series(reasons, index=out.index, dtype="string")
    return out


def observation_matrix(observations: pd.DataFrame, config: ObservationConfig) -> np.ndarray:
    """The (bars × dim) float32 matrix of stored observations, in config order (what the agent is fed)."""
    missing = [c for c in config.columns if c not in observations.columns]
    if missing:
        raise ValueError(f"observations lack {missing} (config {config.version}, dim {config.dim})")
    return observations[config.columns].to_numpy(dtype="float32")
