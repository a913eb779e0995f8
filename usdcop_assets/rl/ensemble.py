"""Seed ensembles: an experiment's N seeds trained on one fold, their actions combined, their spread reported.

``train_experiment_fold`` trains one PPO model per seed of the experiment on the fold's training sessions
(``training.train_fold``: each seed picks its own checkpoint on the fold's validation sessions), then rolls every
seed out on those validation sessions with the experiment's action rules and the real costs, combines the seeds'
positions (``combine_positions``) and backtests the combination with the same costs and risk rules as every
strategy (``backtest.engine.backtest_actions``). The validation figures of the combination are what the selection
across experiments (``rl.selection``) reads; they only ever cover sessions strictly before the fold.

Combining (per bar, each seed rolled out on its own, its own position fed back into its observation):

- ``mean``: the average of the seeds' positions (a fractional position when they disagree);
- ``vote``: the strict majority of the seeds' signs: +1 when more than half are long, -1 when more than half are
  short, 0 otherwise (ties and disagreement stay flat).

Pure numpy/pandas/torch/SB3; no Dagster.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from usdcop_assets.rl.costs import CostConfig
from usdcop_assets.rl.experiments import Experiment
from usdcop_assets.rl.folds import Fold
from usdcop_assets.rl.policy import combine_positions  # the one definition, shared with serving
from usdcop_assets.rl.risk import RiskLimits

__all__ = ["ExperimentFold", "combine_positions", "evaluate_positions", "seed_positions", "spread"]


def spread(values) -> dict:
    """Mean, standard deviation (ddof=1; 0 for one value), min and max of per-seed figures (None/NaN left out)."""
    x = np.array([v for v in values if v is not None and math.isfinite(v)], dtype="float64")
    if not len(x):
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {
        "n": len(x),
        "mean": float(x.mean()),
        "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
        "min": float(x.min()),
        "max": float(x.max()),
    }


def seed_positions(models, episodes_df: pd.DataFrame, config, obs_config=None, costs=None, risk=None) -> np.ndarray:
    """Seeds x bars positions of ``models`` on every bar of ``episodes_df`` (its row order); sessions that are not
    entirely warm are flat (as ``l5/actions_m5`` records them)."""
    from usdcop_assets.rl.training import inference_env_config, predict_positions

    env_config = inference_env_config(config, costs, risk)
    frame = episodes_df.reset_index(drop=True)
    keys = frame[["session", "step"]].assign(session=frame["session"].astype(str))
    warm = (
        frame.groupby("session")["warm"].transform("all").to_numpy(dtype=bool)
        if "warm" in frame.columns
        else np.ones(len(frame), dtype=bool)
    )
    out = np.zeros((len(models), len(frame)))
    if not warm.any():
        return out
    for i, model in enumerate(models):
        pred = predict_positions(model, frame[warm], obs_config, env_config)
        pos = keys.merge(pred[["session", "step", "position"]], on=["session", "step"], how="left")["position"]
        out[i] = np.nan_to_num(pos.to_numpy(dtype="float64"), nan=0.0)
    return out


def evaluate_positions(positions, episodes_df: pd.DataFrame, costs=None, risk=None) -> dict:
    """Figures of one position series on ``episodes_df``'s bars, with the backtest's arithmetic: ``rl.risk.apply_risk``
    then ``cost = rate * |p_t - p_{t-1}|``, as ``backtest.engine.backtest_actions`` (rl never imports backtest).

    Returns sharpe (annualized bar Sharpe, bars per year as the data has them; 0 when every bar's P&L is 0),
    total_return, turnover_per_session, sessions and session_returns (session -> net log return, time order).
    """
    from usdcop_assets.rl.costs import annualized_sharpe
    from usdcop_assets.rl.risk import apply_risk

    costs = costs or CostConfig()
    sessions = episodes_df["session"].astype(str).to_numpy()
    r = episodes_df["next_ret"].to_numpy(dtype="float64")
    p, _ = apply_risk(np.asarray(positions, dtype="float64"), r, sessions, limits=risk, costs=costs)
    trade = np.abs(np.diff(np.r_[0.0, p]))
    pnl = p * r - costs.rate * trade
    ids, codes = np.unique(sessions, return_inverse=True)
    n, k = len(pnl), len(ids)
    per_year = n / k * 252 if k else 0.0
    if not np.any(pnl):
        sr = 0.0  # never exposed, never traded: no excess return (flat's Sharpe, as in backtest.overfitting)
    else:
        sr = annualized_sharpe(float(pnl.mean()), float(pnl.std(ddof=1)), per_year) if n > 1 else float("nan")
    return {
        "sharpe": sr,
        "total_return": float(math.expm1(pnl.sum())),
        "turnover_per_session": float(trade.sum() / k) if k else float("nan"),
        "sessions": int(k),
        "session_returns": dict(zip(ids.tolist(), np.bincount(codes, weights=pnl, minlength=k).tolist())),
    }


@dataclass
class ExperimentFold:
    """The seeds of one experiment trained on one fold, with their validation figures (sessions before the fold)."""

    experiment: Experiment
    fold: Fold
    models: list  # TrainedModel per seed
    config: object  # the TrainConfig of the first seed (the others differ by the seed only)
    per_seed: list[dict] = field(default_factory=list)  # seed, checkpoint, valid_sharpe, ... per seed
    validation: dict = field(default_factory=dict)  # the ensemble's figures on the validation sessions
    valid_sessions: tuple = ()

    @property
    def name(self) -> str:
        return self.experiment.name

    def seed_spread(self, key: str) -> dict:
        return spread(row.get(key) for row in self.per_seed)

    def loaded(self) -> list:
        if not hasattr(self, "_loaded"):
            self._loaded = [m.load() for m in self.models]
        return self._loaded

    def positions(self, episodes_df: pd.DataFrame, obs_config=None, costs=None, risk=None) -> tuple:
        """(ensemble positions, seeds x bars positions) on ``episodes_df``'s bars."""
        per = seed_positions(self.loaded(), episodes_df, self.config, obs_config, costs, risk)
        return combine_positions(per, self.experiment.ensemble), per

    def summary(self) -> dict:
        return {
            "experiment": self.name,
            "version": self.experiment.version,
            "fold": self.fold.key,
            "valid_first": self.fold.valid_first.isoformat(),
            "valid_last": self.fold.valid_last.isoformat(),
            "validation": {k: v for k, v in self.validation.items() if k != "session_returns"},
            "per_seed": self.per_seed,
            "seed_spread": {k: self.seed_spread(k) for k in ("valid_sharpe", "valid_turnover_per_session")},
        }


def _training_key(fold: Fold, config) -> str:
    """What determines a seed's training on given episodes: the fold's windows and the full training config."""
    windows = (fold.key, [str(d) for d in fold.train_sessions], [str(d) for d in fold.valid_sessions])
    return json.dumps([windows, dataclasses.asdict(config)], sort_keys=True, default=str)


def train_experiment_fold(
    episodes_df: pd.DataFrame,
    fold: Fold,
    experiment: Experiment,
    obs_config=None,
    costs: CostConfig | None = None,
    *,
    risk: RiskLimits | None = None,
    obs_stats: dict | None = None,
    timesteps: int | None = None,
    seeds=None,
    log=None,
    cache: dict | None = None,
) -> ExperimentFold:
    """Train every seed of ``experiment`` on ``fold`` and evaluate their combination on its validation sessions.

    ``episodes_df``: the episodes available before the fold (what ``l5/ppo_model`` reads); ``timesteps`` and
    ``seeds`` override the file's (screening runs). The fold's validation window is the experiment's own
    (``fold.valid_sessions``), made by the caller with ``experiment.fold_options``. ``cache``: a dict shared by the
    caller's calls on the same episodes; a seed whose training config and fold windows were trained before is taken
    from it instead of trained again (experiments that differ only in how seeds are combined, e.g. mean vs vote,
    train the same models: the trainer is deterministic given data, config and seed).
    """
    from usdcop_assets.rl.training import train_fold

    costs = costs or CostConfig()
    seeds = tuple(experiment.seeds if seeds is None else seeds)
    valid = tuple(fold.valid_sessions)
    if not valid or max(valid) >= fold.start_session:
        raise ValueError(f"fold {fold.key}: validation sessions must all be before the fold start {fold.start_session}")
    models, per_seed = [], []
    config = None
    for seed in seeds:
        cfg = experiment.train_config(seed, timesteps=timesteps)
        config = config or cfg
        key = _training_key(fold, cfg) if cache is not None else None
        trained = cache.get(key) if key is not None else None
        if trained is None:
            trained = train_fold(episodes_df, fold, cfg, obs_config, costs, risk=risk, obs_stats=obs_stats)
            if key is not None:
                cache[key] = trained
        sel = trained.metadata["selection"]
        models.append(trained)
        per_seed.append(
            {
                "seed": int(seed),
                "checkpoint": sel["checkpoint"],
                "timesteps": sel["timesteps"],
                "valid_sharpe_checkpoint": sel["valid_sharpe"],
                "weights_sha256": trained.weights_sha256,
                "train_seconds": trained.metadata["train_seconds"],
            }
        )
        if log:
            log(
                f"fold {fold.key} {experiment.name} seed {seed}: checkpoint {sel['checkpoint']}, valid Sharpe "
                f"{sel['valid_sharpe']}"
            )
    out = ExperimentFold(experiment, fold, models, config, per_seed, valid_sessions=valid)
    wanted = {d.isoformat() for d in valid}
    frame = episodes_df[episodes_df["session"].astype(str).isin(wanted)].sort_values(["session", "step"])
    frame = frame.reset_index(drop=True)
    combined, per = out.positions(frame, obs_config, costs, risk)
    for row, p in zip(per_seed, per):
        fig = evaluate_positions(p, frame, costs, risk)
        row["valid_sharpe"] = fig["sharpe"]
        row["valid_total_return"] = fig["total_return"]
        row["valid_turnover_per_session"] = fig["turnover_per_session"]
    out.validation = evaluate_positions(combined, frame, costs, risk)
    out.validation["first_session"] = min(wanted)
    out.validation["last_session"] = max(wanted)
    return out
