"""Gymnasium environment over L4 session episodes (``l4/episodes_session``).

One episode = one trading session (up to 60 five-minute bars). At step t the agent sees

    obs_t = [ o_<feature>_t ... (config.dim values, the L4 vector of the one observation builder),
              p_{t-1}          (position currently held, in [-1, 1]),
              time_frac_t      (fraction of the session elapsed at bar t's open: 0 at 08:00, 59/60 at 12:55) ]

and answers a target position a_t in Box(-1, 1). The position p_t (= a_t clipped to [-1, 1], after the
action rules below and the optional risk manager, and forced to 0 at the session's last bar) is taken at bar t's
close and held to bar t+1's close. The reward is exactly

    reward_t = reward_scale * ( p_t * next_ret_t
                                - rate * |p_t - p_{t-1}|
                                - turnover_penalty * |p_t - p_{t-1}|
                                - (cost_multiplier - 1) * rate * |p_t - p_{t-1}|
                                + holding_incentive * 1[p_t == p_{t-1}]
                                - drawdown_penalty * max(0, DD_t - DD_{t-1}) )

Action rules (``EnvConfig``; the defaults leave a_t as it is): ``action_space="discrete"`` quantizes the target
to short/flat/long (a < -1/3 -> -1, a > 1/3 -> +1, else 0; the policy network stays the same Box policy, so the
weights-only artifact is unchanged); ``no_trade_band`` keeps p_{t-1} while |target - p_{t-1}| < band (hysteresis
against churning); ``min_hold_bars`` keeps a long/short p_{t-1} until it has been held that many bars (the forced
flat at the last bar and the risk manager still apply). ``features`` restricts the observation to a subset of the
L4 features, by name, in the order given. ``cost_multiplier`` only shapes the reward: ``info`` and the
equity always carry the real costs, so validation and backtests see the real ones.

with ``rate = (spread_bps/2 + slippage_bps)/1e4`` (``costs.CostConfig``), ``next_ret_t`` the log return from
bar t's close to the next bar's close (0 at the last bar), p_{-1} = 0, and the intra-episode drawdown
DD_t = max(0, max_{k<=t} E_k) - E_t of the net log equity E_t = sum_{k<=t} (p_k next_ret_k - rate |p_k - p_{k-1}|),
DD_{-1} = 0. The episode terminates after the last bar's step, flat (closing cost charged there).

All data are numpy arrays built once by ``SessionEpisodes``; ``step`` touches no pandas.
Pure numpy/gymnasium; no Dagster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import gymnasium as gym
import numpy as np

from usdcop_assets.rl.costs import CostConfig
from usdcop_assets.rl.policy import discretize  # the one definition, shared with serving
from usdcop_assets.rl.risk import RiskLimits, RiskState

EXTRA_FEATURES = ("position", "time_frac")


class SessionEpisodes:
    """Per-session contiguous numpy arrays: obs (float32, bars x dim), next_ret (float64), time_frac (float32).

    Bars are stored concatenated in session order; session i is ``[starts[i], ends[i])``.
    """

    def __init__(
        self,
        obs,
        next_ret,
        time_frac,
        session_ids,
        *,
        clip: float | None = None,
        obs_version: str | None = None,
        feature_names=None,
        skipped: dict | None = None,
    ):
        obs = np.asarray(obs, dtype="float32")
        if obs.ndim != 2:
            raise ValueError(f"obs must be 2-D (bars x dim), got shape {obs.shape}")
        n = obs.shape[0]
        next_ret = np.asarray(next_ret, dtype="float64").ravel()
        time_frac = np.asarray(time_frac, dtype="float32").ravel()
        ids = np.asarray(session_ids)
        if not (len(next_ret) == len(time_frac) == len(ids) == n):
            raise ValueError(
                f"lengths differ: obs {n}, next_ret {len(next_ret)}, time_frac {len(time_frac)}, sessions {len(ids)}"
            )
        if n == 0:
            raise ValueError("no bars: the episodes are empty")
        if not np.isfinite(obs).all():
            raise ValueError(
                f"{int((~np.isfinite(obs)).sum())} observation values are not finite (the builder zeroes them; "
                "rebuild L4)"
            )
        if not np.isfinite(next_ret).all():
            raise ValueError(
                f"{int((~np.isfinite(next_ret)).sum())} next_ret values are not finite (first session "
                f"{ids[~np.isfinite(next_ret)][0]})"
            )
        if not (np.isfinite(time_frac).all() and (time_frac >= 0).all() and (time_frac <= 1).all()):
            raise ValueError("time_frac must be finite and within [0, 1]")
        new = np.ones(n, dtype=bool)
        new[1:] = ids[1:] != ids[:-1]
        starts = np.flatnonzero(new)
        if len(starts) != len(np.unique(ids)):
            raise ValueError("session ids are not contiguous; sort the bars by session and step")
        self.clip = None if clip is None else float(clip)
        if self.clip is not None:
            obs = np.clip(obs, -self.clip, self.clip)
        self.obs = np.ascontiguousarray(obs)
        self.next_ret = np.ascontiguousarray(next_ret)
        self.time_frac = np.ascontiguousarray(time_frac)
        self.session_of_bar = ids
        self.sessions = ids[starts]
        self.starts = starts.astype("int64")
        self.ends = np.r_[starts[1:], n].astype("int64")
        self.obs_version = obs_version
        self.feature_names = (
            tuple(feature_names) if feature_names is not None else tuple(f"f{i}" for i in range(obs.shape[1]))
        )
        self.skipped = dict(skipped or {})  # session -> reason, for sessions left out of training

    @classmethod
    def from_frame(cls, episodes, config=None, *, warm_only: bool = True) -> SessionEpisodes:
        """From an ``l4/episodes_session`` frame (time, symbol, session, step, obs_version, o_<feature>..., warm,
        next_ret, ...).

        The matrix is read with the one observation builder (``observation_matrix``, config order). With
        ``warm_only``, sessions with any non-warm bar are left out and listed in ``skipped``.
        """
        import pandas as pd

        from usdcop_assets.core import calendar as cal
        from usdcop_assets.observation.builder import load_config, observation_matrix

        config = config or load_config()
        missing = [c for c in ("session", "step", "next_ret") if c not in episodes.columns]
        if missing:
            raise ValueError(f"episodes lack {missing}; expected the l4/episodes_session layout")
        frame = episodes.sort_values(["session", "step"], kind="stable").reset_index(drop=True)
        dup = frame.duplicated(["session", "step"])
        if dup.any():
            raise ValueError(
                f"{int(dup.sum())} duplicated (session, step) rows, first "
                f"{tuple(frame.loc[dup.idxmax(), ['session', 'step']])}"
            )
        version = None
        if "obs_version" in frame.columns and len(frame):
            versions = frame["obs_version"].unique()
            if len(versions) > 1:
                raise ValueError(f"episodes mix observation versions {sorted(map(str, versions))}; use one")
            version = str(versions[0])
        skipped = {}
        if warm_only and "warm" in frame.columns:
            rows = frame.loc[~frame["warm"].astype(bool)]
            why = rows["cold_reason"] if "cold_reason" in rows.columns else pd.Series(pd.NA, index=rows.index)
            first_reason = why.groupby(rows["session"]).first()  # L4's reason: features, or the month's statistics
            cold = rows["session"].unique()
            skipped = {
                str(s): f"not warm ({first_reason.get(s) if pd.notna(first_reason.get(s)) else 'features incomplete'})"
                for s in cold
            }
            frame = frame[~frame["session"].isin(cold)].reset_index(drop=True)
        if frame.empty:
            raise ValueError(f"no usable session in the episodes ({len(skipped)} skipped as not warm)")
        obs = observation_matrix(frame, config)
        if "time" in frame.columns:
            frac = cal.time_in_session(frame["time"])
            if np.isnan(frac).any():
                bad = frame.loc[np.isnan(frac), "time"].iloc[0]
                raise ValueError(f"{int(np.isnan(frac).sum())} episode bars are off the session grid (first {bad})")
        else:
            frac = frame["step"].to_numpy(dtype="float64") / cal.BARS_PER_SESSION
        return cls(
            obs,
            frame["next_ret"].to_numpy(dtype="float64"),
            frac,
            frame["session"].astype(str).to_numpy(),
            clip=config.clip,
            obs_version=version,
            feature_names=config.features,
            skipped=skipped,
        )

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def dim(self) -> int:
        return int(self.obs.shape[1])

    @property
    def n_bars(self) -> int:
        return int(self.obs.shape[0])

    def index_of(self, session) -> int:
        hits = np.flatnonzero(self.sessions == session)
        if not len(hits):
            raise KeyError(f"session {session!r} is not in the episodes")
        return int(hits[0])


@dataclass(frozen=True)
class EnvConfig:
    costs: CostConfig = field(default_factory=CostConfig)
    drawdown_penalty: float = 0.0  # per unit of increase of the intra-episode drawdown (log units)
    turnover_penalty: float = 0.0  # per unit of |position change|, on top of the costs
    reward_scale: float = 1.0  # e.g. 1e4 to give rewards in basis points
    sampling: Literal["sequential", "random"] = "sequential"
    risk: RiskLimits | None = None  # the same risk manager as live and backtest; None = only clip and flat at the end
    action_space: Literal["continuous", "discrete"] = "continuous"  # discrete: short/flat/long (module docstring)
    no_trade_band: float = 0.0  # keep the position while |target - position| < band
    min_hold_bars: int = 0  # keep a new long/short position at least this many bars (flat is left freely)
    holding_incentive: float = 0.0  # reward per bar without a position change (log-return units, before scale)
    cost_multiplier: float = 1.0  # training reward only: costs counted this many times (info keeps the real ones)
    features: tuple[str, ...] | None = None  # observation subset by name; None = every L4 feature

    def __post_init__(self):
        if self.sampling not in ("sequential", "random"):
            raise ValueError(f"EnvConfig.sampling={self.sampling!r}: 'sequential' or 'random'")
        if self.action_space not in ("continuous", "discrete"):
            raise ValueError(f"EnvConfig.action_space={self.action_space!r}: 'continuous' or 'discrete'")
        for name in ("drawdown_penalty", "turnover_penalty", "reward_scale", "no_trade_band", "holding_incentive"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"EnvConfig.{name}={v!r}: must be a finite number >= 0")
        if not (math.isfinite(self.cost_multiplier) and self.cost_multiplier >= 1):
            raise ValueError(f"EnvConfig.cost_multiplier={self.cost_multiplier!r}: must be a finite number >= 1")
        if int(self.min_hold_bars) != self.min_hold_bars or self.min_hold_bars < 0:
            raise ValueError(f"EnvConfig.min_hold_bars={self.min_hold_bars!r}: must be an integer >= 0")
        if self.features is not None:
            if isinstance(self.features, str) or not len(self.features):
                raise ValueError(f"EnvConfig.features={self.features!r}: a non-empty list of names, or None for all")
            object.__setattr__(self, "features", tuple(str(f) for f in self.features))

    @property
    def shapes_actions(self) -> bool:
        """Whether any action rule applies (the defaults take the target as it is, the historical path)."""
        return self.action_space != "continuous" or self.no_trade_band > 0 or self.min_hold_bars > 0

    def feature_index(self, names) -> np.ndarray | None:
        """Column indices of ``features`` in the episodes' feature ``names``; None = every column."""
        if self.features is None:
            return None
        names = list(names)
        unknown = [f for f in self.features if f not in names]
        if unknown:
            raise ValueError(f"EnvConfig.features: {unknown} are not observation features (known: {names})")
        return np.array([names.index(f) for f in self.features], dtype="int64")


class UsdCopTradingEnv(gym.Env):
    """One session per episode; action = target position in [-1, 1]; ends flat. See the module docstring for the reward.

    Sampling: ``sequential`` walks the sessions in order (a ``reset(seed=...)`` restarts at the first
    session); ``random`` draws a session uniformly with the env's seeded ``np_random``.
    ``reset(options={"session": <id>})`` or ``{"session_index": i}`` picks one explicitly.
    """

    metadata = {"render_modes": []}

    def __init__(self, episodes: SessionEpisodes, config: EnvConfig | None = None):
        super().__init__()
        self.episodes = episodes
        self.config = config or EnvConfig()
        self._rate = self.config.costs.rate
        self._extra_rate = (self.config.cost_multiplier - 1.0) * self._rate  # training reward only
        self._cols = self.config.feature_index(episodes.feature_names)
        self._all_obs = episodes.obs if self._cols is None else np.ascontiguousarray(episodes.obs[:, self._cols])
        dim = episodes.dim if self._cols is None else len(self._cols)
        bound = np.float32(episodes.clip) if episodes.clip is not None else np.float32(np.inf)
        low = np.concatenate([np.full(dim, -bound, dtype="float32"), np.array([-1.0, 0.0], dtype="float32")])
        high = np.concatenate([np.full(dim, bound, dtype="float32"), np.array([1.0, 1.0], dtype="float32")])
        self.observation_space = gym.spaces.Box(low=low, high=high, dtype=np.float32)
        self.action_space = gym.spaces.Box(low=-1.0, high=1.0, shape=(1,), dtype=np.float32)
        self._buf = np.zeros(dim + 2, dtype="float32")
        self._cursor = 0
        self._session_index = -1
        self._t = 0
        self._n = 0

    @classmethod
    def from_frame(cls, episodes_frame, obs_config=None, config: EnvConfig | None = None, *, warm_only: bool = True):
        return cls(SessionEpisodes.from_frame(episodes_frame, obs_config, warm_only=warm_only), config)

    # -- internals (numpy only) -------------------------------------------------------------------
    def _observation(self) -> np.ndarray:
        buf = self._buf
        buf[:-2] = self._obs[self._t]
        buf[-2] = self._position
        buf[-1] = self._frac[self._t]
        return buf.copy()

    def _pick_session(self, seed, options) -> int:
        if options and options.get("session_index") is not None:
            i = int(options["session_index"])
            if not 0 <= i < len(self.episodes):
                raise IndexError(f"session_index {i} out of range (0..{len(self.episodes) - 1})")
            return i
        if options and options.get("session") is not None:
            return self.episodes.index_of(options["session"])
        if self.config.sampling == "random":
            return int(self.np_random.integers(len(self.episodes)))
        if seed is not None:
            self._cursor = 0
        i = self._cursor % len(self.episodes)
        self._cursor = i + 1
        return i

    # -- gymnasium API ----------------------------------------------------------------------------
    def _shape(self, target: float) -> float:
        """The action rules of the config: discrete quantization, no-trade band, minimum hold.

        Serving applies the same rules with ``rl.policy.ActionRules.shape`` (parity: test_ensemble_serving)."""
        if not math.isfinite(target):
            return target  # the env's own rule (flat) applies below
        target = min(1.0, max(-1.0, target))
        cfg, p = self.config, self._position
        if cfg.no_trade_band > 0 and abs(target - p) < cfg.no_trade_band:
            return p
        if cfg.action_space == "discrete":
            target = discretize(target)
        if cfg.min_hold_bars and p != 0.0 and self._held < cfg.min_hold_bars:
            return p
        return target

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        i = self._pick_session(seed, options)
        ep = self.episodes
        a, b = int(ep.starts[i]), int(ep.ends[i])
        self._session_index = i
        self._session = ep.sessions[i]
        self._obs = self._all_obs[a:b]
        self._ret = ep.next_ret[a:b].tolist()
        self._frac = ep.time_frac[a:b]
        self._n = b - a
        self._t = 0
        self._position = 0.0
        self._held = 0  # bars the current position has been held (min_hold_bars)
        self._equity = 0.0
        self._peak = 0.0
        self._dd = 0.0
        self._risk = RiskState(self.config.risk, self.config.costs) if self.config.risk is not None else None
        info = {"session": self._session, "session_index": i, "bars": self._n}
        return self._observation(), info

    def step(self, action):
        if self._t >= self._n:
            raise RuntimeError("step() after the episode ended; call reset()")
        target = float(np.asarray(action, dtype="float64").reshape(-1)[0])
        t = self._t
        last = t == self._n - 1
        r = self._ret[t]
        cfg = self.config
        if cfg.shapes_actions:
            target = self._shape(target)
        if self._risk is not None:
            p, flags = self._risk.decide(target, self._session, last)
            self._risk.realize(r)
        else:
            flags = 0
            p = 0.0 if (last or not math.isfinite(target)) else min(1.0, max(-1.0, target))
        trade = abs(p - self._position)
        cost = self._rate * trade
        pnl = p * r - cost
        self._equity += pnl
        if self._equity > self._peak:
            self._peak = self._equity
        dd = self._peak - self._equity
        reward = pnl - cfg.turnover_penalty * trade - cfg.drawdown_penalty * max(0.0, dd - self._dd)
        if self._extra_rate:  # guarded so that the defaults keep the historical arithmetic bit for bit
            reward -= self._extra_rate * trade
        if cfg.holding_incentive and trade == 0.0:
            reward += cfg.holding_incentive
        reward *= cfg.reward_scale
        self._dd = dd
        self._held = self._held + 1 if p == self._position else 1
        self._position = p
        info = {
            "session": self._session,
            "step": t,
            "position": p,
            "trade": trade,
            "cost": cost,
            "pnl": pnl,
            "equity": self._equity,
            "drawdown": dd,
            "risk_flags": flags,
        }
        terminated = last
        if not last:
            self._t = t + 1
            obs = self._observation()
        else:
            self._t = self._n
            buf = self._buf  # terminal observation: the last bar's vector, flat
            buf[:-2] = self._obs[t]
            buf[-2] = 0.0
            buf[-1] = self._frac[t]
            obs = buf.copy()
        return obs, float(reward), terminated, False, info
