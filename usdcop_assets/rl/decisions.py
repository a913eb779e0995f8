"""The agent's action for every bar of a window, each session decided from its open (pure apart from ``policy_of``).

Used by ``l5/actions_m5`` (assets/serving.py) and by the live process (usdcop_assets/live/): one
definition, so a bar decided live and the same bar decided by the session's batch run are equal.
Never a silent trade: a bar whose fold has no model, whose model was trained on another observation
version, or whose observation is not usable (not warm, not finite) is recorded flat with the reason
in ``fallback``.

No Dagster.
"""

from __future__ import annotations

import hashlib
import time as _time

import numpy as np
import pandas as pd

from usdcop_assets.core import calendar as cal
from usdcop_assets.observation.episodes import next_bar_returns
from usdcop_assets.rl.costs import CostConfig
from usdcop_assets.rl.policy import EnsemblePolicy, decide_session
from usdcop_assets.rl.risk import RiskLimits

FLAT_VERSION = "none (flat)"
ACTION_COLUMNS = [
    "time",
    "symbol",
    "session",
    "step",
    "raw_action",
    "target",
    "position",
    "risk_flags",
    "model_version",
    "fold",
    "obs_version",
    "obs_hash",
    "inference_latency_ms",
    "fallback",
]


def fold_of_session(session: str) -> str:
    return str(session)[:7]


def obs_matrix(frame: pd.DataFrame, obs_config) -> np.ndarray:
    """The L4 vectors of ``frame`` in config order (float32), NaN where the config's column is NaN."""
    missing = [c for c in obs_config.columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"observations lack {len(missing)} columns of {obs_config.version} (first {missing[0]}): rebuild "
            "l4/observations_m5"
        )
    return np.ascontiguousarray(frame[obs_config.columns].to_numpy(dtype="float32"))


def obs_hashes(matrix: np.ndarray) -> list[str]:
    """SHA-256 of each bar's observation vector as little-endian float32 bytes (config order)."""
    m = np.ascontiguousarray(matrix, dtype="<f4")
    return [hashlib.sha256(row.tobytes()).hexdigest() for row in m]


def decide_bars(
    observations: pd.DataFrame,
    bars: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    models: dict,
    policy_of,
    obs_config,
    log=None,
    limits: RiskLimits | None = None,
    costs: CostConfig | None = None,
    registry: str = "l5/ppo_model",
) -> tuple[pd.DataFrame, list[str]]:
    """Actions for the bars in ``[start, end)``, each session decided from its open (pure apart from ``policy_of``).

    ``observations``/``bars``: L4 and L1 rows covering at least the sessions of the window from their open.
    ``models``: fold -> registry row (an l5/ppo_model row, or the selection's row when the deployment serves the
    selection); ``policy_of(row)`` -> ``PolicyFunction``, or ``EnsemblePolicy`` for a selected experiment's seeds
    (decided with ``decide_session_ensemble``, as research rolled them out). A row with a ``flat_reason`` (the
    selection fell back to flat) is recorded flat with that reason. ``limits``/``costs``: the platform's
    (``rl.risk.live_limits``/``rl.costs.live_costs``, which are the defaults). ``registry``: the asset whose
    rows ``models`` holds (named when a fold has none).
    """
    if observations.empty:
        return pd.DataFrame(columns=ACTION_COLUMNS), []
    obs = observations[observations["time"] < end].sort_values("time", kind="stable").reset_index(drop=True)
    times = pd.DatetimeIndex(obs["time"])
    sessions = np.array([d.isoformat() for d in times.tz_convert(cal.TZ).date])
    wanted = set(sessions[(times >= start) & (times < end)])
    rows_of = pd.Series(sessions).groupby(sessions, sort=False).indices  # session -> row positions, one pass
    closes = bars.drop_duplicates("time", keep="last").set_index("time")["close"]
    limits, costs = limits or RiskLimits(), costs or CostConfig()
    parts, fallbacks = [], []
    for session in sorted(wanted):
        frame = obs.iloc[rows_of[session]].reset_index(drop=True)
        ftimes = pd.DatetimeIndex(frame["time"])
        day = ftimes[0].tz_convert(cal.TZ).date()
        matrix = np.clip(obs_matrix(frame, obs_config), -obs_config.clip, obs_config.clip)
        hashes = obs_hashes(matrix)
        close = closes.reindex(ftimes)
        if close.isna().any():
            raise ValueError(
                f"session {session}: {int(close.isna().sum())} observations have no L1 close (first "
                f"{ftimes[close.isna()][0]})"
            )
        rets = next_bar_returns(close, ftimes)
        is_last = ftimes == cal.session_bars(day)[-1]
        frac = cal.time_in_session(ftimes)
        fold = fold_of_session(session)
        row = models.get(fold)
        obs_versions = frame["obs_version"].astype(str)
        reason = None
        if row is None:
            reason = f"no {registry} for fold {fold}"
        elif pd.notna(row.get("flat_reason")):  # a warehouse NULL reads back as None or NaN
            reason = f"the selection for fold {fold} is flat: {row['flat_reason']}"
        elif str(row.get("obs_version")) not in set(obs_versions):
            reason = (
                f"model {row['version']} was trained on observations {row.get('obs_version')}, these are "
                f"{obs_versions.iloc[-1]}: retrain the fold"
            )
        n = len(frame)
        reasons = np.full(n, None, dtype=object)
        t0 = _time.perf_counter()
        if reason:
            decided = None
            reasons[:] = reason
            position = target = np.zeros(n)
            raw = np.full(n, np.nan)
            flags = np.zeros(n, dtype="int64")
            version = FLAT_VERSION
        else:
            cold = ~frame["warm"].to_numpy(dtype=bool) if "warm" in frame.columns else np.zeros(n, dtype=bool)
            usable = matrix.copy()
            usable[cold] = np.nan  # decided flat: features not warm
            policy = policy_of(row)
            if isinstance(policy, EnsemblePolicy):
                decided = policy.decide(usable, frac, rets, is_last, session, limits, costs)
            else:
                decided = decide_session(policy, usable, frac, rets, is_last, session, limits, costs)
            raw, target, position, flags = (
                decided.raw_action,
                np.nan_to_num(decided.target),
                decided.position,
                decided.risk_flags,
            )
            # why a bar is not warm (features, or its month's statistics not fitted), as L4 recorded it
            why = (
                frame["cold_reason"].astype(object).to_numpy()
                if "cold_reason" in frame.columns
                else np.full(n, None, dtype=object)
            )
            reasons[cold] = np.where(pd.isna(why[cold]), "features not warm", why[cold])
            nonfinite = decided.invalid_obs & ~cold
            reasons[nonfinite] = "observation not finite"
            bad_action = ~np.isfinite(raw) & ~decided.invalid_obs
            reasons[bad_action] = "policy output not finite"
            version = str(row["version"])
        elapsed_ms = (_time.perf_counter() - t0) * 1000.0
        own = (ftimes >= start) & (ftimes < end)
        n_own = int(own.sum())
        out = pd.DataFrame(
            {
                "time": frame["time"].to_numpy(),
                "symbol": frame["symbol"].to_numpy(),
                "session": session,
                "step": np.arange(n, dtype="int64"),
                "raw_action": raw,
                "target": target,
                "position": position,
                "risk_flags": flags,
                "model_version": version,
                "fold": fold,
                "obs_version": obs_versions.to_numpy(),
                "obs_hash": hashes,
                "inference_latency_ms": elapsed_ms / max(n_own, 1),
                "fallback": reasons,
            }
        )[own]
        if reason:
            fallbacks.append(f"{session}: {reason}")
            if log:
                log(f"session {session}: {reason}; recorded flat ({FLAT_VERSION})")
        parts.append(out)
    actions = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=ACTION_COLUMNS)
    actions["fallback"] = actions["fallback"].astype("string")  # typed even when every value is null
    actions["risk_flags"] = actions["risk_flags"].astype("int64")
    return actions[ACTION_COLUMNS].reset_index(drop=True), fallbacks
