"""Serving: the trained policy as a plain numpy function, and a session decided bar by bar.

``PolicyFunction`` is the deterministic action of a stable-baselines3 PPO ``MlpPolicy``
(observation -> shared Flatten -> policy MLP -> ``action_net`` mean -> clip to the action space),
evaluated with the policy's own float32 weights in numpy. One call costs ~10 microseconds instead of
SB3 ``predict``'s ~150 (tensor conversion, ``no_grad``, distribution objects), which is what lets a
realtime run re-decide the whole session so far for every new bar within the latency budget. It
agrees with ``model.predict(obs, deterministic=True)`` to float32 rounding (tested, ~1e-7).

``decide_session`` is the serving loop: the same observation assembly as the training environment
(L4 vector or the experiment's feature subset, position held, time in session), the same action rules
(``ActionRules``: discrete quantization, no-trade band, minimum hold, exactly as ``UsdCopTradingEnv._shape``)
and the same ``RiskState`` as the backtest. It is a pure
function of the session's bars up to the last one given, so deciding a prefix of a session gives
exactly the first decisions of the whole session: a one-bar realtime run and a six-year backfill store
the same positions, and an action never changes when later bars change.

``decide_session_ensemble`` decides a session for an experiment's seed ensemble: every member rolled out on
its own (its own held position, hold counter and risk state, as ``rl.ensemble.seed_positions`` rolls every seed
through the env), the members' positions combined per bar (``rl.ensemble.combine_positions``: mean or vote),
then the combined book through the risk manager (see its docstring).

Bad input never trades silently:
- an observation of the wrong dimension for the policy -> ``ValueError`` naming both dimensions;
- a bar whose observation is not finite -> that bar is flat (risk flag ``invalid``, reason recorded);
- a policy output outside [-1, 1] is clipped to the action space like SB3 does (the raw value is kept);
  a non-finite one -> flat, flag ``invalid``.

Pure numpy; no Dagster, no pandas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from usdcop_assets.rl.costs import CostConfig
from usdcop_assets.rl.risk import INVALID, RiskLimits, RiskState

ACTION_SPACES = ("continuous", "discrete")
ENSEMBLES = ("mean", "vote")  # how an experiment's seeds are combined (rl.experiments reads it from here)
_ACTIVATIONS = {"Tanh": np.tanh, "ReLU": lambda x: np.maximum(x, 0, dtype=x.dtype), "Identity": lambda x: x}


def discretize(target: float) -> float:
    """Short/flat/long from a target in [-1, 1]: thirds of the interval (a < -1/3 short, a > 1/3 long)."""
    return 1.0 if target > 1.0 / 3.0 else (-1.0 if target < -1.0 / 3.0 else 0.0)


@dataclass(frozen=True)
class ActionRules:
    """An experiment's action rules (``EnvConfig.action_space``/``no_trade_band``/``min_hold_bars``); the defaults
    take the policy's target as it is (the historical path, unchanged bit for bit)."""

    space: str = "continuous"  # "discrete": short/flat/long (``discretize``)
    no_trade_band: float = 0.0  # keep the held position while |target - held| < band
    min_hold_bars: int = 0  # keep a long/short position until it has been held this many bars

    def __post_init__(self):
        if self.space not in ACTION_SPACES:
            raise ValueError(f"ActionRules.space={self.space!r}: 'continuous' or 'discrete'")
        if not (math.isfinite(self.no_trade_band) and self.no_trade_band >= 0):
            raise ValueError(f"ActionRules.no_trade_band={self.no_trade_band!r}: must be a finite number >= 0")
        if int(self.min_hold_bars) != self.min_hold_bars or self.min_hold_bars < 0:
            raise ValueError(f"ActionRules.min_hold_bars={self.min_hold_bars!r}: must be an integer >= 0")

    @classmethod
    def from_config(cls, config) -> ActionRules:
        """The rules of a ``TrainConfig`` or ``EnvConfig`` (both carry action_space, no_trade_band, min_hold_bars)."""
        return cls(
            space=str(config.action_space),
            no_trade_band=float(config.no_trade_band),
            min_hold_bars=int(config.min_hold_bars),
        )

    @property
    def shapes(self) -> bool:
        """Whether any rule applies (``EnvConfig.shapes_actions``)."""
        return self.space != "continuous" or self.no_trade_band > 0 or self.min_hold_bars > 0

    def shape(self, target: float, held: float, held_bars: int) -> float:
        """``UsdCopTradingEnv._shape``: the target after the rules, given the position held (after the risk
        manager) and the bars it has been held (the env's counter: 0 at the session's open, then +1 per bar whose
        position equals the previous one, 1 when it changed). Order: clip, band vs the held position,
        quantization, minimum hold. A non-finite target is returned as it is (the risk manager makes it flat)."""
        if not math.isfinite(target):
            return target
        target = min(1.0, max(-1.0, target))
        if self.no_trade_band > 0 and abs(target - held) < self.no_trade_band:
            return held
        if self.space == "discrete":
            target = discretize(target)
        if self.min_hold_bars and held != 0.0 and held_bars < self.min_hold_bars:
            return held
        return target


def serving_inputs(config, feature_names) -> tuple[ActionRules, np.ndarray | None]:
    """(action rules, feature column indices or None) with which a model trained with ``config`` (``TrainConfig``
    or ``EnvConfig``) trades on observations whose columns are ``feature_names`` (the observation config's
    ``features``, in its order) -- what ``training.inference_env_config`` gives the research rollout."""
    rules = ActionRules.from_config(config)
    wanted = getattr(config, "features", None)
    if wanted is None:
        return rules, None
    names = list(feature_names)
    unknown = [f for f in wanted if f not in names]
    if unknown:
        raise ValueError(f"features {unknown} are not observation features (known: {names})")
    return rules, np.array([names.index(f) for f in wanted], dtype="int64")


@dataclass(frozen=True)
class PolicyFunction:
    layers: tuple[tuple[np.ndarray, np.ndarray, str], ...]  # (weight [out x in], bias, activation) per hidden layer
    action_weight: np.ndarray
    action_bias: np.ndarray
    low: float
    high: float
    obs_dim: int

    @classmethod
    def from_model(cls, model) -> PolicyFunction:
        """Extract the actor of an SB3 PPO ``MlpPolicy`` (refuses anything it cannot reproduce exactly)."""
        import torch.nn as nn
        from stable_baselines3.common.torch_layers import FlattenExtractor

        policy = model.policy
        if not isinstance(policy.pi_features_extractor, FlattenExtractor):
            raise ValueError(
                f"unsupported features extractor {type(policy.pi_features_extractor).__name__}: only Flatten "
                "(MlpPolicy)"
            )
        if getattr(policy, "squash_output", False):
            raise ValueError("squashed (tanh) action outputs are not supported")
        if policy.action_space.shape != (1,):
            raise ValueError(
                f"expected a one-dimensional action (target position), got shape {policy.action_space.shape}"
            )
        layers = []
        pending = None
        for module in policy.mlp_extractor.policy_net:
            if isinstance(module, nn.Linear):
                if pending is not None:
                    layers.append((*pending, "Identity"))
                pending = (
                    module.weight.detach().cpu().numpy().astype("float32"),
                    module.bias.detach().cpu().numpy().astype("float32"),
                )
            elif type(module).__name__ in _ACTIVATIONS and pending is not None:
                layers.append((*pending, type(module).__name__))
                pending = None
            else:
                raise ValueError(f"unsupported policy layer {type(module).__name__}")
        if pending is not None:
            layers.append((*pending, "Identity"))
        net = policy.action_net
        space = policy.action_space
        return cls(
            layers=tuple(layers),
            action_weight=net.weight.detach().cpu().numpy().astype("float32"),
            action_bias=net.bias.detach().cpu().numpy().astype("float32"),
            low=float(space.low[0]),
            high=float(space.high[0]),
            obs_dim=int(np.prod(policy.observation_space.shape)),
        )

    def raw(self, obs: np.ndarray) -> float:
        """The policy's mean action for one observation vector (before clipping)."""
        x = np.asarray(obs, dtype="float32")
        for weight, bias, act in self.layers:
            x = _ACTIVATIONS[act](weight @ x + bias)
        return float((self.action_weight @ x + self.action_bias)[0])

    def __call__(self, obs: np.ndarray) -> float:
        a = self.raw(obs)
        return min(self.high, max(self.low, a)) if np.isfinite(a) else a


def combine_positions(positions, how: str = "mean") -> np.ndarray:
    """Seeds x bars positions -> one position per bar: ``mean`` (the average) or ``vote`` (+1 when more than half
    of the seeds are long, -1 when more than half are short, 0 otherwise). The one definition for research
    (``rl.ensemble``) and serving (``decide_session_ensemble``)."""
    if how not in ENSEMBLES:
        raise ValueError(f"ensemble {how!r}: expected one of {list(ENSEMBLES)}")
    p = np.asarray(positions, dtype="float64")
    if p.ndim != 2 or p.shape[0] < 1:
        raise ValueError(f"combine_positions: expected seeds x bars, got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("combine_positions: positions must be finite")
    if how == "mean":
        return p.mean(axis=0)
    half = p.shape[0] / 2.0
    s = np.sign(p)
    return np.where((s > 0).sum(axis=0) > half, 1.0, np.where((s < 0).sum(axis=0) > half, -1.0, 0.0))


@dataclass
class SessionDecisions:
    raw_action: np.ndarray  # the policy's output (NaN where the bar had no usable observation)
    target: np.ndarray  # the action clipped to [-1, 1]
    position: np.ndarray  # after the risk manager: what is held from the bar's close to the next
    risk_flags: np.ndarray  # bitmask (rl.risk)
    invalid_obs: np.ndarray  # bars whose observation was not finite (flat)
    shaped: np.ndarray | None = None  # the target after the action rules, before the risk manager (rules given)


def decide_session(
    policy: PolicyFunction,
    obs,
    time_frac,
    bar_returns,
    is_last,
    session_id=0,
    limits: RiskLimits | None = None,
    costs: CostConfig | None = None,
    rules: ActionRules | None = None,
    features=None,
) -> SessionDecisions:
    """Decide the bars of one session in order, from the session's open.

    ``obs`` (bars x dim, the L4 vectors in config order), ``time_frac`` (fraction of the session at each
    bar's open), ``bar_returns[k]`` = log(close[k+1]/close[k]) for the bars given (the last value is not
    used: its return is not known yet when the last bar is decided), ``is_last`` = the bar is the
    session's closing bar by the calendar (flat there).

    ``rules``: the experiment's action rules (``ActionRules``; None or the defaults = none), applied to the
    clipped policy output before the risk manager, against the position held after the risk manager, as the
    env's ``step`` does (``shaped`` records the result). ``features``: column indices of ``obs`` the model
    observes (``serving_inputs``; None = every column), selected before position and time in session are
    appended. A bar is invalid (flat) when any value of its whole L4 vector is not finite, used or not.
    """
    obs = np.asarray(obs, dtype="float32")
    if obs.ndim != 2:
        raise ValueError(f"observations must be 2-D (bars x dim), got shape {obs.shape}")
    finite = np.isfinite(obs).all(axis=1)
    if features is not None:
        cols = np.asarray(features)
        if cols.ndim != 1 or not len(cols) or not np.issubdtype(cols.dtype, np.integer):
            raise ValueError(f"features must be a non-empty 1-D array of column indices, got {features!r}")
        if (cols < 0).any() or (cols >= obs.shape[1]).any():
            raise ValueError(f"feature indices {cols.tolist()} out of range for {obs.shape[1]} observation columns")
        obs = np.ascontiguousarray(obs[:, cols])
    n, dim = obs.shape
    if dim + 2 != policy.obs_dim:
        raise ValueError(
            f"observation dimension {dim} (+ position, time in session = {dim + 2}) does not match the model's "
            f"{policy.obs_dim}"
        )
    frac = np.asarray(time_frac, dtype="float32").ravel()
    rets = np.asarray(bar_returns, dtype="float64").ravel()
    last = np.asarray(is_last, dtype=bool).ravel()
    if not (len(frac) == len(rets) == len(last) == n):
        raise ValueError(
            f"lengths differ: obs {n}, time_frac {len(frac)}, bar_returns {len(rets)}, is_last {len(last)}"
        )
    state = RiskState(limits, costs)
    raw = np.full(n, np.nan)
    target = np.zeros(n)
    position = np.zeros(n)
    flags = np.zeros(n, dtype="int64")
    shaped = None if rules is None else np.full(n, np.nan)
    shaping = rules is not None and rules.shapes
    buf = np.zeros(dim + 2, dtype="float32")
    held = 0.0
    held_bars = 0  # the env's counter (UsdCopTradingEnv._held)
    for t in range(n):
        if finite[t]:
            buf[:dim] = obs[t]
            buf[dim] = held
            buf[dim + 1] = frac[t]
            raw[t] = policy.raw(buf)
            a = min(policy.high, max(policy.low, raw[t])) if np.isfinite(raw[t]) else np.nan
        else:
            a = np.nan
        target[t] = a
        if shaping:
            a = rules.shape(a, held, held_bars)
        if shaped is not None:
            shaped[t] = a
        p, f = state.decide(a, session_id, bool(last[t]))
        position[t], flags[t] = p, f | (0 if finite[t] else INVALID)
        if t < n - 1:
            r = rets[t]
            state.realize(r if np.isfinite(r) else 0.0)
        held_bars = held_bars + 1 if p == held else 1
        held = p
    return SessionDecisions(
        raw_action=raw, target=target, position=position, risk_flags=flags, invalid_obs=~finite, shaped=shaped
    )


@dataclass
class EnsembleDecisions(SessionDecisions):
    members: np.ndarray | None = None  # members x bars: each member's position (after its own rules and risk)
    member_decisions: tuple = ()  # each member's SessionDecisions


def decide_session_ensemble(
    members,
    how: str,
    obs,
    time_frac,
    bar_returns,
    is_last,
    session_id=0,
    limits: RiskLimits | None = None,
    costs: CostConfig | None = None,
    rules: ActionRules | None = None,
    features=None,
) -> EnsembleDecisions:
    """Decide one session for a seed ensemble (``members``: one ``PolicyFunction`` per seed, ``how``: mean|vote).

    Every member is decided on its own with ``decide_session`` (its own held position fed back, its own hold
    counter, its own ``RiskState(limits, costs)``, the same ``rules`` and ``features``), which is what
    ``rl.ensemble.seed_positions`` computes per seed through the env with ``inference_env_config(config, costs,
    risk=limits)``. The members' positions are combined per bar with ``combine_positions`` -> ``target`` (what
    ``ExperimentFold.positions`` returns: the combination BEFORE any further risk manager).

    Risk on the combined book: research backtests the combination through ``rl.risk.apply_risk`` with the same
    limits and costs (``evaluate_positions``, ``backtest_actions``), so ``position`` is ``target`` through a fresh
    ``RiskState(limits, costs)`` over the session (``risk_flags`` are its flags, plus ``INVALID`` for a bar
    without a usable observation). That equals ``apply_risk`` over the session; like ``decide_session`` for a
    single model, the state starts fresh at each session, whereas ``apply_risk`` over many sessions carries the
    equity and the drawdown breaker across them (identical when ``max_drawdown`` is None). The risk manager thus
    applies twice, per member and to the book, exactly as in research: the second pass changes the combination
    where the book's own daily stop or breaker trips, and clips a vote (+-1) to a max_position below 1.

    ``raw_action``: the members' mean raw output (NaN when any member had none, so a non-finite policy output
    is still reported); ``shaped``: None; ``members``: members x bars positions.
    """
    members = list(members)
    if not members:
        raise ValueError("an ensemble needs at least one member")
    if how not in ENSEMBLES:
        raise ValueError(f"ensemble {how!r}: expected one of {list(ENSEMBLES)}")
    decided = tuple(
        decide_session(m, obs, time_frac, bar_returns, is_last, session_id, limits, costs, rules, features)
        for m in members
    )
    per = np.vstack([d.position for d in decided])
    combined = combine_positions(per, how)
    rets = np.asarray(bar_returns, dtype="float64").ravel()
    last = np.asarray(is_last, dtype=bool).ravel()
    invalid = decided[0].invalid_obs
    n = len(combined)
    state = RiskState(limits, costs)
    position = np.zeros(n)
    flags = np.zeros(n, dtype="int64")
    for t in range(n):
        p, f = state.decide(combined[t], session_id, bool(last[t]))
        position[t], flags[t] = p, f | (INVALID if invalid[t] else 0)
        if t < n - 1:
            r = rets[t]
            state.realize(r if np.isfinite(r) else 0.0)
    raw = np.vstack([d.raw_action for d in decided]).mean(axis=0)
    return EnsembleDecisions(
        raw_action=raw,
        target=combined,
        position=position,
        risk_flags=flags,
        invalid_obs=invalid.copy(),
        members=per,
        member_decisions=decided,
    )


@dataclass(frozen=True)
class EnsemblePolicy:
    """What serving trades when the fold's registry row is a selected experiment: its seeds' policies, how they are
    combined, and the experiment's action rules and feature subset (``serving_inputs``), so a served session is
    decided exactly as research rolled the ensemble out (``decide_session_ensemble``)."""

    members: tuple[PolicyFunction, ...]
    how: str = "mean"
    rules: ActionRules | None = None
    features: np.ndarray | None = None  # observation column indices, None = every feature

    def __post_init__(self):
        if not self.members:
            raise ValueError("an ensemble policy needs at least one member")
        if self.how not in ENSEMBLES:
            raise ValueError(f"ensemble {self.how!r}: expected one of {list(ENSEMBLES)}")

    def decide(self, obs, time_frac, bar_returns, is_last, session_id=0, limits=None, costs=None) -> EnsembleDecisions:
        return decide_session_ensemble(
            self.members,
            self.how,
            obs,
            time_frac,
            bar_returns,
            is_last,
            session_id,
            limits,
            costs,
            self.rules,
            self.features,
        )
