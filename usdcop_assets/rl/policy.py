"""Serving: the trained policy as a plain numpy function, and a session decided bar by bar.

``PolicyFunction`` is the deterministic action of a stable-baselines3 PPO ``MlpPolicy``
(observation -> shared Flatten -> policy MLP -> ``action_net`` mean -> clip to the action space),
evaluated with the policy's own float32 weights in numpy. One call costs ~10 microseconds instead of
SB3 ``predict``'s ~150 (tensor conversion, ``no_grad``, distribution objects), which is what lets a
realtime run re-decide the whole session so far for every new bar within the latency budget. It
agrees with ``model.predict(obs, deterministic=True)`` to float32 rounding (tested, ~1e-7).

``decide_session`` is the serving loop: the same observation assembly as the training environment
(L4 vector, position held, time in session) and the same ``RiskState`` as the backtest. It is a pure
function of the session's bars up to the last one given, so deciding a prefix of a session gives
exactly the first decisions of the whole session: a one-bar realtime run and a six-year backfill store
the same positions, and an action never changes when later bars change.

Bad input never trades silently:
- an observation of the wrong dimension for the policy -> ``ValueError`` naming both dimensions;
- a bar whose observation is not finite -> that bar is flat (risk flag ``invalid``, reason recorded);
- a policy output outside [-1, 1] is clipped to the action space like SB3 does (the raw value is kept);
  a non-finite one -> flat, flag ``invalid``.

Pure numpy; no Dagster, no pandas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from usdcop_assets.rl.costs import CostConfig
from usdcop_assets.rl.risk import INVALID, RiskLimits, RiskState

_ACTIVATIONS = {"Tanh": np.tanh, "ReLU": lambda x: np.maximum(x, 0, dtype=x.dtype), "Identity": lambda x: x}


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


@dataclass
class SessionDecisions:
    raw_action: np.ndarray  # the policy's output (NaN where the bar had no usable observation)
    target: np.ndarray  # the action clipped to [-1, 1]
    position: np.ndarray  # after the risk manager: what is held from the bar's close to the next
    risk_flags: np.ndarray  # bitmask (rl.risk)
    invalid_obs: np.ndarray  # bars whose observation was not finite (flat)


def decide_session(
    policy: PolicyFunction,
    obs,
    time_frac,
    bar_returns,
    is_last,
    session_id=0,
    limits: RiskLimits | None = None,
    costs: CostConfig | None = None,
) -> SessionDecisions:
    """Decide the bars of one session in order, from the session's open.

    ``obs`` (bars x dim, the L4 vectors in config order), ``time_frac`` (fraction of the session at each
    bar's open), ``bar_returns[k]`` = log(close[k+1]/close[k]) for the bars given (the last value is not
    used: its return is not known yet when the last bar is decided), ``is_last`` = the bar is the
    session's closing bar by the calendar (flat there).
    """
    obs = np.asarray(obs, dtype="float32")
    if obs.ndim != 2:
        raise ValueError(f"observations must be 2-D (bars x dim), got shape {obs.shape}")
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
    finite = np.isfinite(obs).all(axis=1)
    state = RiskState(limits, costs)
    raw = np.full(n, np.nan)
    target = np.zeros(n)
    position = np.zeros(n)
    flags = np.zeros(n, dtype="int64")
    buf = np.zeros(dim + 2, dtype="float32")
    held = 0.0
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
        p, f = state.decide(a, session_id, bool(last[t]))
        position[t], flags[t] = p, f | (0 if finite[t] else INVALID)
        if t < n - 1:
            r = rets[t]
            state.realize(r if np.isfinite(r) else 0.0)
        held = p
    return SessionDecisions(raw_action=raw, target=target, position=position, risk_flags=flags, invalid_obs=~finite)
