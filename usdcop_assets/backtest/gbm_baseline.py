"""Supervised baseline beside PPO: LightGBM on the agent's observations, predicting the sign of the next hour's return.

Same inputs, folds, risk rules and costs as the agent, so the comparison isolates what RL adds:

- features: the L4 vector the agent sees (``o_<feature>`` columns, config order, clipped as in the env, via
  ``trading.env.SessionEpisodes``) plus ``time_frac``; not the agent's own held position (a policy state, not
  a market observation). Sessions that are not entirely ``warm`` are left out, as in PPO training.
- label of bar t: the sign of the next hour's log return from bar t's close,
  ``sum(next_ret[t : t + horizon])`` over bars of t's session only (truncated at the session end, never crossing
  into the next session). A bar is *complete* when bar t + horizon is in its session, i.e. the whole hour is
  observed; only complete bars with a non-zero return train or validate (``hour_labels``). As each label stays
  inside its own session and training reads only the fold's training sessions, no training label uses a return
  after the training window's end.
- fit: on the fold's training sessions, early stopping (binary log loss) on its validation sessions, the same
  ``trading.folds.Fold`` windows PPO uses; ``deterministic=True``, ``num_threads=1`` and ``seed``: same seed,
  same data -> identical model. Bagging and feature subsampling draw from the seed, so another seed may differ.
- trading: p = P(up); target +1 if p > 0.5 + band, -1 if p < 0.5 - band, 0 in between (``targets_from_proba``);
  then ``backtest.engine.backtest_actions`` (``apply_risk`` -> ``run_backtest``), the agent's path: max
  position, stops, flat at the session end, and every unit of position change charged ``costs.rate``.

Pure numpy/pandas/lightgbm; no Dagster.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from usdcop_assets.rl.costs import CostConfig, session_starts
from usdcop_assets.rl.env import SessionEpisodes
from usdcop_assets.rl.folds import Fold
from usdcop_assets.rl.risk import RiskLimits

HOUR_BARS = 12  # 12 five-minute bars


@dataclass(frozen=True)
class GbmConfig:
    """Small defaults: ~50k training rows of ~20 noisy features; shallow trees, strong leaf minimum, early stopping.

    ``band``: no-trade zone around p = 0.5 (0.05: trade only when P(up) > 0.55 or < 0.45), so a model that
    learned nothing (p near 0.5 everywhere) mostly stays flat instead of paying costs on noise.
    """

    seed: int = 0
    band: float = 0.05
    horizon: int = HOUR_BARS
    num_leaves: int = 15
    learning_rate: float = 0.05
    max_rounds: int = 300
    early_stopping_rounds: int = 30
    min_data_in_leaf: int = 200
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0

    def __post_init__(self):
        if not 0 <= self.band < 0.5:
            raise ValueError(f"GbmConfig.band={self.band!r}: must be in [0, 0.5)")
        if int(self.horizon) < 1:
            raise ValueError(f"GbmConfig.horizon={self.horizon!r}: must be >= 1")

    def params(self) -> dict:
        """LightGBM parameters; ``deterministic`` + ``force_row_wise`` + one thread make a fit reproducible."""
        return {
            "objective": "binary",
            "metric": "binary_logloss",
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2,
            "seed": int(self.seed),
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": 1,
            "verbosity": -1,
        }

    def to_dict(self) -> dict:
        return asdict(self)


def hour_labels(next_ret, session_ids, horizon: int = HOUR_BARS) -> tuple[np.ndarray, np.ndarray]:
    """(forward log return, complete) per bar: ``sum(next_ret[t : t + horizon])`` within t's session.

    Truncated at the session end (the sum stops at the session's last bar); ``complete`` is True when bar
    t + horizon is in the same session, i.e. the hour from t's close to t+horizon's close is fully observed.
    Sessions must be contiguous (``costs.session_starts`` checks it).
    """
    r = np.asarray(next_ret, dtype="float64").ravel()
    n = len(r)
    if len(session_ids) != n:
        raise ValueError(f"hour_labels: {n} returns for {len(session_ids)} session ids")
    new = session_starts(session_ids)
    idx = np.arange(n)
    ends = np.r_[np.flatnonzero(new)[1:], n]  # exclusive end of each session
    end_of = ends[np.cumsum(new) - 1]
    stop = np.minimum(idx + int(horizon), end_of)
    cs = np.r_[0.0, np.cumsum(r)]
    fwd = cs[stop] - cs[idx]
    return fwd, idx + int(horizon) < end_of


def feature_matrix(episodes: SessionEpisodes) -> np.ndarray:
    """The agent's observation vector without its held position: ``o_<feature>``... then ``time_frac``."""
    return np.column_stack([episodes.obs, episodes.time_frac]).astype("float32", copy=False)


def feature_names(episodes: SessionEpisodes) -> list[str]:
    return [*episodes.feature_names, "time_frac"]


def _labelled(episodes: SessionEpisodes, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    fwd, complete = hour_labels(episodes.next_ret, episodes.session_of_bar, horizon)
    keep = complete & (fwd != 0)  # a zero hour has no sign
    return feature_matrix(episodes)[keep], (fwd[keep] > 0).astype("float64")


@dataclass
class GbmModel:
    booster: object  # lightgbm.Booster
    config: GbmConfig
    best_iteration: int
    n_train: int  # labelled rows
    n_valid: int
    valid_logloss: float
    valid_hit_rate: float  # share of validation rows whose sign the model calls right (p > 0.5 <-> up)
    fit_seconds: float
    features: list[str]

    def predict_proba(self, episodes: SessionEpisodes) -> np.ndarray:
        return self.booster.predict(feature_matrix(episodes), num_iteration=self.best_iteration)

    def summary(self) -> dict:
        return {
            "best_iteration": self.best_iteration,
            "n_train": self.n_train,
            "n_valid": self.n_valid,
            "valid_logloss": self.valid_logloss,
            "valid_hit_rate": self.valid_hit_rate,
            "fit_s": self.fit_seconds,
            "config": self.config.to_dict(),
        }


def _sessions_of(episodes_df: pd.DataFrame, sessions, obs_config) -> SessionEpisodes:
    wanted = {s.isoformat() if hasattr(s, "isoformat") else str(s)[:10] for s in sessions}
    frame = episodes_df[episodes_df["session"].astype(str).isin(wanted)]
    if frame.empty:
        raise ValueError(f"none of the {len(wanted)} requested sessions are in the episodes frame")
    return SessionEpisodes.from_frame(frame, obs_config, warm_only=True)


def train_gbm(episodes_df: pd.DataFrame, fold: Fold, config: GbmConfig | None = None, obs_config=None) -> GbmModel:
    """Fit on ``fold.train_sessions``, early-stop on ``fold.valid_sessions``; no other rows of ``episodes_df`` are
    read."""
    import lightgbm as lgb

    config = config or GbmConfig()
    train = _sessions_of(episodes_df, fold.train_sessions, obs_config)
    valid = _sessions_of(episodes_df, fold.valid_sessions, obs_config)
    x, y = _labelled(train, config.horizon)
    xv, yv = _labelled(valid, config.horizon)
    if len(np.unique(y)) < 2 or not len(yv):
        raise ValueError(
            f"fold {fold.key}: LightGBM needs both signs in training and a labelled validation row "
            f"({len(y)} training rows, {len(yv)} validation rows)"
        )
    names = feature_names(train)
    t0 = time.perf_counter()
    params = config.params()
    dtrain = lgb.Dataset(x, y, feature_name=names, params={"verbosity": -1}, free_raw_data=True)
    dvalid = lgb.Dataset(xv, yv, reference=dtrain, feature_name=names)
    booster = lgb.train(
        params,
        dtrain,
        num_boost_round=config.max_rounds,
        valid_sets=[dvalid],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )
    fit_s = time.perf_counter() - t0
    best = int(booster.best_iteration or booster.current_iteration())
    pv = booster.predict(xv, num_iteration=best)
    eps = 1e-12
    logloss = float(-np.mean(yv * np.log(pv + eps) + (1 - yv) * np.log(1 - pv + eps)))
    return GbmModel(
        booster=booster,
        config=config,
        best_iteration=best,
        n_train=len(y),
        n_valid=len(yv),
        valid_logloss=logloss,
        valid_hit_rate=float(np.mean((pv > 0.5) == (yv > 0.5))),
        fit_seconds=fit_s,
        features=names,
    )


def targets_from_proba(proba, band: float) -> np.ndarray:
    """+1 above 0.5 + band, -1 below 0.5 - band, 0 in the no-trade zone (raw targets, before the risk rules)."""
    p = np.asarray(proba, dtype="float64").ravel()
    return np.where(p > 0.5 + band, 1.0, np.where(p < 0.5 - band, -1.0, 0.0))


def predict_targets(model: GbmModel, episodes_df: pd.DataFrame, obs_config=None) -> pd.DataFrame:
    """session, step, proba, target for the warm sessions of ``episodes_df`` (the others are left out: flat)."""
    episodes = SessionEpisodes.from_frame(episodes_df, obs_config, warm_only=True)
    # from_frame's row order: sorted by (session, step), sessions with a cold bar dropped; the steps in that order
    frame = episodes_df.sort_values(["session", "step"], kind="stable")
    if "warm" in frame.columns:
        frame = frame[frame.groupby("session")["warm"].transform("all").astype(bool)]
    step = frame["step"].to_numpy()
    assert len(step) == episodes.n_bars  # noqa: S101 (invariant of from_frame)
    proba = model.predict_proba(episodes)
    return pd.DataFrame(
        {
            "session": episodes.session_of_bar,
            "step": step,
            "proba": proba,
            "target": targets_from_proba(proba, model.config.band),
        }
    )


def gbm_targets(model: GbmModel, episodes_df: pd.DataFrame, obs_config=None) -> np.ndarray:
    """Raw targets aligned with the rows of ``episodes_df`` (in its order); bars of sessions that are not warm: 0."""
    keys = episodes_df[["session", "step"]].assign(session=episodes_df["session"].astype(str))
    warm = (
        episodes_df.groupby("session")["warm"].transform("all").to_numpy(dtype=bool)
        if "warm" in episodes_df.columns
        else np.ones(len(episodes_df), dtype=bool)
    )
    if not warm.any():
        return np.zeros(len(episodes_df))
    pred = predict_targets(model, episodes_df[warm], obs_config)
    merged = keys.merge(pred[["session", "step", "target"]], on=["session", "step"], how="left")["target"].to_numpy()
    return np.where(np.isnan(merged), 0.0, merged)


def backtest_gbm(
    model: GbmModel,
    episodes_df: pd.DataFrame,
    obs_config=None,
    costs: CostConfig | None = None,
    limits: RiskLimits | None = None,
) -> pd.DataFrame:
    """The model's targets on ``episodes_df`` (sorted by session and step) through the agent's risk rules and costs."""
    from usdcop_assets.backtest.engine import backtest_actions

    frame = episodes_df.sort_values(["session", "step"], kind="stable").reset_index(drop=True)
    targets = gbm_targets(model, frame, obs_config)
    return backtest_actions(
        targets, frame["next_ret"].to_numpy(dtype="float64"), frame["session"].astype(str).to_numpy(), costs, limits
    )
