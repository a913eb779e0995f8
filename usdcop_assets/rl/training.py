"""PPO training per walk-forward fold, checkpoint selection on a validation slice, and inference.

``train_fold`` trains a stable-baselines3 PPO agent on the fold's training sessions only (see
``folds.fold_windows``: every training and validation session is strictly before the fold's month),
in ``n_checkpoints`` equal chunks (``learn(..., reset_num_timesteps=False)``). After each chunk the
policy is evaluated on the validation sessions with deterministic actions (the same environment,
sessions walked in order) and snapshotted; the checkpoint with the best validation metric
(``selection_metric``: bar Sharpe of the net P&L, NaN counted as -inf, or mean episode reward) wins,
ties going to the earliest.

Reproducibility: same episodes + fold + ``TrainConfig`` (seed included) + observation config + costs
-> the same weights, identified by ``weights_sha256``: a SHA-256 over the policy's ``state_dict``
tensors (sorted by name; name, dtype, shape and raw bytes of each). It is *not* a hash of the SB3 zip,
which embeds zip timestamps, the wall-clock start time, the Monitor episode times and system info, and
therefore differs between identical runs. Determinism comes from: ``torch.set_num_threads(1)`` (CPU
reductions in a fixed order), ``set_random_seed(seed)`` (python, numpy, torch), ``PPO(seed=seed,
device='cpu')`` (which also seeds the env's ``np_random`` and action space), a single non-vectorized
env (``DummyVecEnv``), and evaluation that draws no random numbers.

The stored artifact (``policy_artifact``) is the selected policy's tensors in a safetensors file (8-byte
header length, JSON header, raw little-endian bytes) written here with numpy: deterministic (its SHA-256
is a function of the weights), and loaded (``load_policy_artifact``) without unpickling anything: the
header is validated, the ``ActorCriticPolicy`` is rebuilt from the known spaces (observation vector,
target position in [-1, 1]) and the architecture in the header, and only tensors are copied in
(``load_state_dict(strict=True)``). SB3's own zip is never written or read: ``PPO.load`` unpickles its
``data`` entry with cloudpickle, so a modified zip would run code.

Observation assembly at inference is the environment's own (``UsdCopTradingEnv``): the L4 vector,
the position held (fed back bar by bar, so sessions are rolled out sequentially) and the time in
session; the env's rules apply (clip, optional risk manager, flat at the session's last bar).

Pure numpy/torch/SB3; no Dagster.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from usdcop_assets.core.settings import Settings, as_settings
from usdcop_assets.rl.costs import CostConfig, sharpe
from usdcop_assets.rl.env import EnvConfig, SessionEpisodes, UsdCopTradingEnv
from usdcop_assets.rl.folds import Fold
from usdcop_assets.rl.risk import RiskLimits

ARTIFACT_FORMAT = "usdcop-ppo-v2"  # v2: weights-only safetensors artifact (v1 was the SB3 zip)
POLICY_FORMAT = "usdcop-ppo-policy-v1"  # the safetensors header's __metadata__["format"]
ACTIVATION = "Tanh"  # SB3's MlpPolicy default for PPO (TrainConfig does not change it)
_MAX_HEADER = 1 << 20  # bytes: a policy header is a few KB; anything larger is refused before parsing
_DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I64": "<i8", "I32": "<i4"}


@dataclass(frozen=True)
class TrainConfig:
    total_timesteps: int = 200_000
    n_steps: int = 2048
    batch_size: int = 64
    n_epochs: int = 10
    learning_rate: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    net_arch: tuple[int, ...] = (64, 64)
    seed: int = 0
    n_checkpoints: int = 5  # validation evaluations (equal chunks of total_timesteps); the best is kept
    selection_metric: Literal["sharpe", "mean_reward"] = "sharpe"
    sampling: Literal["sequential", "random"] = "random"  # training sessions order (random is seeded)
    reward_scale: float = 1e4  # rewards in basis points
    drawdown_penalty: float = 0.0
    turnover_penalty: float = 0.0
    device: str = "cpu"
    torch_threads: int = 1
    # the environment's action rules and reward shaping (``EnvConfig``; experiments set them, defaults = none)
    action_space: Literal["continuous", "discrete"] = "continuous"
    no_trade_band: float = 0.0
    min_hold_bars: int = 0
    holding_incentive: float = 0.0
    cost_multiplier: float = 1.0  # training reward only; validation and backtests use the real costs
    features: tuple[str, ...] | None = None  # observation subset by name; None = every L4 feature

    def __post_init__(self):
        for name in ("total_timesteps", "n_steps", "batch_size", "n_epochs", "n_checkpoints", "torch_threads"):
            v = getattr(self, name)
            if int(v) != v or v < 1:
                raise ValueError(f"TrainConfig.{name}={v!r}: must be an integer >= 1")
        if self.batch_size > self.n_steps:
            raise ValueError(f"TrainConfig.batch_size={self.batch_size} exceeds n_steps={self.n_steps}")
        if self.selection_metric not in ("sharpe", "mean_reward"):
            raise ValueError(f"TrainConfig.selection_metric={self.selection_metric!r}: 'sharpe' or 'mean_reward'")
        if self.device != "cpu":
            raise ValueError(f"TrainConfig.device={self.device!r}: only 'cpu' is reproducible here")
        if not (0 < self.learning_rate and 0 < self.gamma <= 1 and 0 < self.gae_lambda <= 1):
            raise ValueError("TrainConfig: learning_rate > 0, gamma and gae_lambda in (0, 1]")
        object.__setattr__(self, "net_arch", tuple(int(x) for x in self.net_arch))
        if self.features is not None:
            object.__setattr__(self, "features", tuple(str(f) for f in self.features))

    @property
    def chunk_timesteps(self) -> int:
        """Timesteps per checkpoint: total / n_checkpoints, rounded up to whole rollouts (n_steps)."""
        per = math.ceil(self.total_timesteps / self.n_checkpoints)
        return max(1, math.ceil(per / self.n_steps)) * self.n_steps

    def to_dict(self) -> dict:
        d = asdict(self)
        d["net_arch"] = list(self.net_arch)
        d["features"] = list(self.features) if self.features is not None else None
        return d


@dataclass
class TrainedModel:
    artifact: bytes  # the selected checkpoint's policy as safetensors (``policy_artifact``); deterministic
    weights_sha256: str  # hash of the selected policy's tensors: the reproducibility id
    metadata: dict  # JSON-serializable
    curve: list[dict] = field(default_factory=list)  # one row per checkpoint

    @property
    def version(self) -> str:
        return f"{self.metadata['fold']['key']}-{self.weights_sha256[:12]}"

    @property
    def artifact_sha256(self) -> str:
        """SHA-256 of the artifact's bytes: recorded outside the lake and checked before the file is parsed."""
        return hashlib.sha256(self.artifact).hexdigest()

    def load(self):
        return load_model(self.artifact)

    def metadata_json(self) -> bytes:
        return json.dumps(self.metadata, sort_keys=True, indent=1, default=_json_default).encode()

    def curve_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.curve)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if hasattr(o, "isoformat"):
        return o.isoformat()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def _finite_or_none(x):
    return float(x) if x is not None and math.isfinite(float(x)) else None


# --- hashing and (de)serialization ------------------------------------------------------------


def state_dict_sha256(state_dict) -> str:
    """SHA-256 over tensors in sorted name order: name, dtype, shape, then the raw little-endian bytes."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        arr = t.numpy()
        h.update(name.encode())
        h.update(str(arr.dtype).encode())
        h.update(repr(tuple(arr.shape)).encode())
        h.update(np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()


def weights_sha256(model) -> str:
    return state_dict_sha256(model.policy.state_dict())


def _set_threads(n: int) -> None:
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


class ArtifactError(ValueError):
    """A policy artifact that is not a valid weights-only file of this project (nothing of it was executed)."""


@dataclass
class LoadedPolicy:
    """A policy rebuilt from an artifact: what serving and evaluation need of an SB3 model
    (``.policy`` for ``PolicyFunction``/``weights_sha256``, ``.predict`` like ``PPO.predict``)."""

    policy: object  # stable_baselines3 ActorCriticPolicy, eval mode, CPU

    def predict(self, observation, deterministic: bool = True):
        return self.policy.predict(observation, deterministic=deterministic)


def _net_arch(policy) -> tuple[list[int], list[int]]:
    """Hidden layer sizes of the policy and value MLPs (the Linear layers of ``mlp_extractor``)."""
    import torch.nn as nn

    sizes = lambda net: [m.out_features for m in net if isinstance(m, nn.Linear)]  # noqa: E731
    return sizes(policy.mlp_extractor.policy_net), sizes(policy.mlp_extractor.value_net)


def policy_artifact(policy) -> bytes:
    """The policy's tensors as a safetensors file, deterministic for given weights (names sorted,
    fixed header, no timestamps). ``__metadata__`` holds what rebuilding it needs."""
    import torch.nn as nn

    act = {type(m).__name__ for m in policy.mlp_extractor.policy_net if not isinstance(m, nn.Linear)}
    if act - {ACTIVATION}:
        raise ValueError(f"unsupported activation {sorted(act)}: the artifact format supports {ACTIVATION}")
    low, high = policy.action_space.low, policy.action_space.high
    pi, vf = _net_arch(policy)
    meta = {
        "format": POLICY_FORMAT,
        "activation": ACTIVATION,
        "net_arch_pi": ",".join(map(str, pi)),
        "net_arch_vf": ",".join(map(str, vf)),
        "obs_dim": str(int(np.prod(policy.observation_space.shape))),
        "action_dim": str(int(np.prod(policy.action_space.shape))),
        "action_low": repr(float(low.min())),
        "action_high": repr(float(high.max())),
    }
    header: dict = {"__metadata__": meta}
    chunks, offset = [], 0
    state = policy.state_dict()
    for name in sorted(state):
        arr = state[name].detach().cpu().contiguous().numpy()
        code = {np.dtype("float32"): "F32", np.dtype("float64"): "F64"}.get(arr.dtype)
        if code is None:
            raise ValueError(f"policy tensor {name} has dtype {arr.dtype}; only float32/float64 are stored")
        raw = np.ascontiguousarray(arr, dtype=_DTYPES[code]).tobytes()
        header[name] = {"dtype": code, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8-byte alignment
    return len(text).to_bytes(8, "little") + text + b"".join(chunks)


def _read_artifact(blob: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """Header metadata and tensors of a safetensors file, every field validated (no pickle, no eval)."""
    if blob[:2] == b"PK":
        raise ArtifactError(
            "a zip archive (an SB3 model.zip?) is not loaded: its 'data' entry is unpickled; "
            "the artifact must be the weights-only policy.safetensors"
        )
    if len(blob) < 8:
        raise ArtifactError(f"{len(blob)} bytes: too short for a safetensors header")
    n = int.from_bytes(blob[:8], "little")
    if not 2 <= n <= min(_MAX_HEADER, len(blob) - 8):
        raise ArtifactError(f"header length {n} is out of range for a {len(blob)}-byte file")
    try:
        header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ArtifactError("header is not JSON") from None
    if not isinstance(header, dict):
        raise ArtifactError("header is not a JSON object")
    meta = header.pop("__metadata__", None)
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ArtifactError("header lacks the __metadata__ string map")
    if meta.get("format") != POLICY_FORMAT:
        raise ArtifactError(f"format {meta.get('format')!r} is not {POLICY_FORMAT!r}")
    data = memoryview(blob)[8 + n :]
    spans, tensors = [], {}
    for name, spec in header.items():
        if not isinstance(spec, dict) or spec.get("dtype") not in _DTYPES:
            raise ArtifactError(f"tensor {name!r}: unsupported or missing dtype")
        shape, offsets = spec.get("shape"), spec.get("data_offsets")
        if not (
            isinstance(shape, list)
            and all(isinstance(d, int) and d >= 0 for d in shape)
            and isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) for o in offsets)
        ):
            raise ArtifactError(f"tensor {name!r}: malformed shape or data_offsets")
        dtype = np.dtype(_DTYPES[spec["dtype"]])
        begin, end = offsets
        if not 0 <= begin <= end <= len(data) or end - begin != int(np.prod(shape, dtype="int64")) * dtype.itemsize:
            raise ArtifactError(
                f"tensor {name!r}: data_offsets {offsets} do not fit shape {shape} in {len(data)} bytes"
            )
        spans.append((begin, end))
        tensors[name] = (
            np.frombuffer(data[begin:end], dtype=dtype).astype(dtype.newbyteorder("="), copy=True).reshape(shape)
        )
    spans.sort()
    if [0, *[e for _, e in spans]] != [*[b for b, _ in spans], len(data)]:
        raise ArtifactError("tensor data has holes or overlaps (data_offsets must tile the buffer)")
    return meta, tensors


def load_policy_artifact(blob: bytes) -> LoadedPolicy:
    """The policy of a ``policy_artifact`` file, rebuilt from its spaces and architecture; only tensors are read."""
    import gymnasium as gym
    import torch
    from stable_baselines3.common.policies import ActorCriticPolicy

    meta, tensors = _read_artifact(bytes(blob))
    if meta.get("activation") != ACTIVATION:
        raise ArtifactError(f"activation {meta.get('activation')!r} is not {ACTIVATION}")
    try:
        pi = [int(x) for x in meta["net_arch_pi"].split(",") if x]
        vf = [int(x) for x in meta["net_arch_vf"].split(",") if x]
        obs_dim, action_dim = int(meta["obs_dim"]), int(meta["action_dim"])
        low, high = float(meta["action_low"]), float(meta["action_high"])
    except (KeyError, ValueError) as exc:
        raise ArtifactError(f"header metadata: {exc}") from None
    if not (
        0 < obs_dim <= 100_000
        and action_dim == 1
        and all(0 < s <= 100_000 for s in pi + vf)
        and len(pi + vf) <= 64
        and math.isfinite(low)
        and math.isfinite(high)
        and low < high
    ):
        raise ArtifactError(
            f"header metadata out of range: obs_dim {obs_dim}, action_dim {action_dim}, net_arch {pi}/{vf}, action "
            f"[{low}, {high}]"
        )
    with torch.random.fork_rng(devices=[]):  # building initializes layers randomly: leave the caller's RNG alone
        policy = ActorCriticPolicy(
            gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
            gym.spaces.Box(low, high, (action_dim,), np.float32),
            lambda _: 0.0,
            net_arch={"pi": pi, "vf": vf},
            activation_fn=getattr(torch.nn, ACTIVATION),
        )
    try:
        policy.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(
            f"tensors do not match the architecture in the header: {str(exc).splitlines()[0]}"
        ) from None
    policy.set_training_mode(False)
    return LoadedPolicy(policy)


def load_model(model_bytes_or_model, torch_threads: int = 1):
    """A policy from artifact bytes (``load_policy_artifact``), a ``TrainedModel``, or a model passed through."""
    _set_threads(torch_threads)
    if isinstance(model_bytes_or_model, (bytes, bytearray, memoryview)):
        return load_policy_artifact(bytes(model_bytes_or_model))
    if isinstance(model_bytes_or_model, TrainedModel):
        return model_bytes_or_model.load()
    return model_bytes_or_model


# --- episodes -----------------------------------------------------------------------------------


def _session_strings(sessions) -> set[str]:
    return {s.isoformat() if hasattr(s, "isoformat") else str(s)[:10] for s in sessions}


def episodes_for(episodes_df: pd.DataFrame, sessions, obs_config=None, *, warm_only: bool = True) -> SessionEpisodes:
    """``SessionEpisodes`` of the given sessions (dates or ISO strings) of an ``l4/episodes_session`` frame."""
    wanted = _session_strings(sessions)
    frame = episodes_df[episodes_df["session"].astype(str).isin(wanted)]
    if frame.empty:
        raise ValueError(f"none of the {len(wanted)} requested sessions are in the episodes frame")
    return SessionEpisodes.from_frame(frame, obs_config, warm_only=warm_only)


def make_env_config(
    config: TrainConfig,
    costs: CostConfig | None = None,
    risk: RiskLimits | None = None,
    sampling: str | None = None,
    *,
    training: bool = True,
) -> EnvConfig:
    """The environment of ``config``; ``training=False`` (validation, inference) counts the real costs only."""
    return EnvConfig(
        costs=costs or CostConfig(),
        drawdown_penalty=config.drawdown_penalty,
        turnover_penalty=config.turnover_penalty,
        reward_scale=config.reward_scale,
        sampling=sampling or config.sampling,
        risk=risk,
        action_space=config.action_space,
        no_trade_band=config.no_trade_band,
        min_hold_bars=config.min_hold_bars,
        holding_incentive=config.holding_incentive,
        cost_multiplier=config.cost_multiplier if training else 1.0,
        features=config.features,
    )


def inference_env_config(config: TrainConfig, costs: CostConfig | None = None, risk: RiskLimits | None = None):
    """What a model trained with ``config`` trades with: its action rules and features, sessions in order, real
    costs."""
    return make_env_config(config, costs, risk, sampling="sequential", training=False)


# --- inference ------------------------------------------------------------------------------------


def rollout_session(
    model, episodes: SessionEpisodes, session, env_config: EnvConfig | None = None, env: UsdCopTradingEnv | None = None
) -> dict:
    """Deterministic rollout of one session through the environment (position fed back bar by bar).

    ``session`` is a session id or an integer index. Returns numpy arrays per bar: step, target (the
    policy's action, clipped to [-1, 1]), position (after the env's rules: risk, flat at the end),
    reward, pnl (net log P&L) and the session id.
    """
    env = env or UsdCopTradingEnv(episodes, env_config)
    options = {"session_index": int(session)} if isinstance(session, (int, np.integer)) else {"session": session}
    obs, info = env.reset(options=options)
    n = info["bars"]
    target = np.empty(n)
    position = np.empty(n)
    reward = np.empty(n)
    pnl = np.empty(n)
    for t in range(n):
        action, _ = model.predict(obs, deterministic=True)
        a = float(np.clip(np.asarray(action, dtype="float64").reshape(-1)[0], -1.0, 1.0))
        obs, r, terminated, _, step_info = env.step(np.array([a], dtype=np.float32))
        target[t], position[t], reward[t], pnl[t] = a, step_info["position"], r, step_info["pnl"]
        if terminated:
            break
    return {
        "session": info["session"],
        "step": np.arange(n),
        "target": target,
        "position": position,
        "reward": reward,
        "pnl": pnl,
    }


def rollout(model, episodes: SessionEpisodes, env_config: EnvConfig | None = None) -> pd.DataFrame:
    """All sessions of ``episodes`` in order, one row per bar (session, step, target, position, reward, pnl)."""
    env_config = env_config or EnvConfig()
    if env_config.sampling != "sequential":
        env_config = EnvConfig(**{**env_config.__dict__, "sampling": "sequential"})
    env = UsdCopTradingEnv(episodes, env_config)
    parts = []
    for i in range(len(episodes)):
        out = rollout_session(model, episodes, i, env=env)
        parts.append(
            pd.DataFrame(
                {"session": out["session"], **{k: out[k] for k in ("step", "target", "position", "reward", "pnl")}}
            )
        )
    return pd.concat(parts, ignore_index=True)


def predict_positions(
    model_bytes_or_model,
    episodes_df: pd.DataFrame,
    obs_config=None,
    env_config: EnvConfig | None = None,
    *,
    warm_only: bool = True,
    torch_threads: int = 1,
) -> pd.DataFrame:
    """Deterministic positions for every bar of ``episodes_df`` (the observation assembly of the env).

    Returns session, step, (time when the frame has it), target, position, reward, pnl; sessions that are
    not warm are left out with ``warm_only`` (as in training).
    """
    model = load_model(model_bytes_or_model, torch_threads)
    _set_threads(torch_threads)
    episodes = SessionEpisodes.from_frame(episodes_df, obs_config, warm_only=warm_only)
    out = rollout(model, episodes, env_config)
    if "time" in episodes_df.columns:
        times = episodes_df[["session", "step", "time"]].assign(session=lambda f: f["session"].astype(str))
        out = out.merge(times, on=["session", "step"], how="left", validate="one_to_one")
        out.insert(2, "time", out.pop("time"))
    return out


def evaluate(model, episodes: SessionEpisodes, env_config: EnvConfig) -> dict:
    """Deterministic validation metrics: mean episode reward, bar Sharpe of the net P&L, total log return."""
    frame = rollout(model, episodes, env_config)
    pnl = frame["pnl"].to_numpy()
    per_session = frame.groupby("session", sort=False)["reward"].sum()
    return {
        "mean_reward": float(per_session.mean()),
        "sharpe": sharpe(pnl),
        "total_log_return": float(pnl.sum()),
        "turnover": float(np.abs(np.diff(np.r_[0.0, frame["position"].to_numpy()])).sum()),
    }


# --- training -------------------------------------------------------------------------------------


def _episode_rewards_callback(store: list):
    from stable_baselines3.common.callbacks import BaseCallback

    class _Collect(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals.get("infos", ()):
                ep = info.get("episode")
                if ep is not None:
                    store.append(float(ep["r"]))
            return True

    return _Collect()


def _score(row: dict, metric: str) -> float:
    v = row.get(f"valid_{metric}")
    return float(v) if v is not None and math.isfinite(v) else -math.inf


def select_checkpoint(curve: list[dict], metric: str = "sharpe") -> int:
    """Index of the best checkpoint by ``valid_<metric>`` (None/NaN = -inf); ties go to the earliest."""
    if not curve:
        raise ValueError("no checkpoint to select from")
    best = 0
    for k in range(1, len(curve)):
        if _score(curve[k], metric) > _score(curve[best], metric):
            best = k
    return best


def silent_logger():
    """An SB3 logger with no output: without one, every ``learn`` call makes an empty ``$TMPDIR/SB3-<time>`` folder
    (SB3's ``configure`` default), thousands of them over a walk-forward."""
    from stable_baselines3.common.logger import Logger

    return Logger(folder=None, output_formats=[])


def train_fold(
    episodes_df: pd.DataFrame,
    fold: Fold,
    config: TrainConfig | None = None,
    obs_config=None,
    costs: CostConfig | None = None,
    *,
    risk: RiskLimits | None = None,
    obs_stats: dict | None = None,
    log=None,
) -> TrainedModel:
    """Train PPO on the fold's training sessions, select the best checkpoint on its validation sessions.

    ``obs_stats`` (the L4 normalization statistics, ``stats_from_frame``) is recorded in the metadata so the
    artifact carries how its observations were normalized. ``log`` is an optional ``callable(str)``.
    """
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.utils import set_random_seed
    from stable_baselines3.common.vec_env import DummyVecEnv

    from usdcop_assets.observation.builder import load_config

    config = config or TrainConfig()
    obs_config = obs_config or load_config()
    costs = costs or CostConfig()
    leak = [
        d
        for d in (*fold.train_sessions, *fold.valid_sessions, fold.train_last, fold.valid_last)
        if d >= fold.start_session
    ]
    if leak:
        raise ValueError(
            f"fold {fold.key}: training/validation sessions on or after the fold start {fold.start_session} ({leak[0]})"
        )
    train_ids = fold.train_sessions or [d for d in pd.date_range(fold.train_first, fold.train_last).date]
    valid_ids = fold.valid_sessions or [d for d in pd.date_range(fold.valid_first, fold.valid_last).date]
    train_eps = episodes_for(episodes_df, train_ids, obs_config)
    valid_eps = episodes_for(episodes_df, valid_ids, obs_config)
    if train_eps.obs_version and valid_eps.obs_version and train_eps.obs_version != valid_eps.obs_version:
        raise ValueError(f"fold {fold.key}: training and validation episodes have different observation versions")
    env_cfg = make_env_config(config, costs, risk)
    eval_cfg = inference_env_config(config, costs, risk)

    _set_threads(config.torch_threads)
    set_random_seed(config.seed)
    t0 = time.perf_counter()
    venv = DummyVecEnv([lambda: Monitor(UsdCopTradingEnv(train_eps, env_cfg))])
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=config.n_steps,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        learning_rate=config.learning_rate,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=config.clip_range,
        ent_coef=config.ent_coef,
        vf_coef=config.vf_coef,
        max_grad_norm=config.max_grad_norm,
        policy_kwargs={"net_arch": {"pi": list(config.net_arch), "vf": list(config.net_arch)}},
        seed=config.seed,
        device="cpu",
        verbose=0,
    )
    model.set_logger(silent_logger())
    chunk = config.chunk_timesteps
    curve: list[dict] = []
    snapshots: list[tuple[bytes, str]] = []  # (policy_artifact, weights hash) per checkpoint
    best = 0
    for k in range(config.n_checkpoints):
        rewards: list[float] = []
        model.learn(
            chunk, reset_num_timesteps=(k == 0), callback=_episode_rewards_callback(rewards), progress_bar=False
        )
        state = {n: t.detach().clone() for n, t in model.policy.state_dict().items()}
        digest = state_dict_sha256(state)
        scores = evaluate(model, valid_eps, eval_cfg)
        row = {
            "checkpoint": k,
            "timesteps": int(model.num_timesteps),
            "train_episodes": len(rewards),
            "train_mean_reward": float(np.mean(rewards)) if rewards else None,
            "valid_mean_reward": scores["mean_reward"],
            "valid_sharpe": _finite_or_none(scores["sharpe"]),
            "valid_total_log_return": scores["total_log_return"],
            "valid_turnover": scores["turnover"],
            "weights_sha256": digest,
        }
        curve.append(row)
        snapshots.append((policy_artifact(model.policy), digest))
        best = select_checkpoint(curve, config.selection_metric)
        if log:
            log(
                f"fold {fold.key} checkpoint {k}: {row['timesteps']} steps, train reward {row['train_mean_reward']}, "
                f"valid sharpe {row['valid_sharpe']}, valid reward {row['valid_mean_reward']:.4g}"
            )
        del state
    seconds = time.perf_counter() - t0
    artifact, digest = snapshots[best]
    for row in curve:
        row["selected"] = row["checkpoint"] == best

    import gymnasium
    import stable_baselines3

    metadata = {
        "format": ARTIFACT_FORMAT,
        "algorithm": "PPO",
        "fold": fold.to_dict(),
        "data_window": {
            "train_first": fold.train_first.isoformat(),
            "train_last": fold.train_last.isoformat(),
            "valid_first": fold.valid_first.isoformat(),
            "valid_last": fold.valid_last.isoformat(),
            "train_sessions": len(train_eps),
            "valid_sessions": len(valid_eps),
            "train_bars": train_eps.n_bars,
            "valid_bars": valid_eps.n_bars,
            "train_skipped": dict(sorted(train_eps.skipped.items())),
            "valid_skipped": dict(sorted(valid_eps.skipped.items())),
        },
        "seed": config.seed,
        "train_config": config.to_dict(),
        "env_config": {
            "costs": asdict(costs),
            "rate": costs.rate,
            "drawdown_penalty": env_cfg.drawdown_penalty,
            "turnover_penalty": env_cfg.turnover_penalty,
            "reward_scale": env_cfg.reward_scale,
            "sampling": env_cfg.sampling,
            "risk": asdict(risk) if risk is not None else None,
            **(
                {
                    "action_space": env_cfg.action_space,
                    "no_trade_band": env_cfg.no_trade_band,
                    "min_hold_bars": env_cfg.min_hold_bars,
                    "holding_incentive": env_cfg.holding_incentive,
                    "cost_multiplier": env_cfg.cost_multiplier,
                    "features": list(env_cfg.features) if env_cfg.features is not None else None,
                }
                if (env_cfg.shapes_actions or env_cfg.holding_incentive or env_cfg.cost_multiplier != 1.0)
                or env_cfg.features is not None
                else {}
            ),  # only when set: the metadata of default models stays as it was
        },
        "observation": {
            "obs_version": train_eps.obs_version,
            "config_version": obs_config.version,
            "config_sha256": obs_config.sha256(),
            "features": list(obs_config.features),
            "dim": obs_config.dim,
            "clip": obs_config.clip,
            "extra_features": ["position", "time_frac"],
            "normalization": copy.deepcopy(obs_stats) if obs_stats is not None else None,
        },
        "selection": {
            "metric": config.selection_metric,
            "checkpoint": best,
            "timesteps": curve[best]["timesteps"],
            "valid_sharpe": curve[best]["valid_sharpe"],
            "valid_mean_reward": curve[best]["valid_mean_reward"],
        },
        "curve": curve,
        "weights_sha256": digest,
        "libraries": {
            "stable_baselines3": stable_baselines3.__version__,
            "torch": torch.__version__,
            "gymnasium": gymnasium.__version__,
            "numpy": np.__version__,
        },
        "train_seconds": round(seconds, 3),  # informational; not part of any hash
    }
    venv.close()
    metadata["artifact"] = {"file": "policy.safetensors", "sha256": hashlib.sha256(artifact).hexdigest()}
    return TrainedModel(artifact=artifact, weights_sha256=digest, metadata=metadata, curve=curve)


def curve_markdown(curve: list[dict]) -> str:
    """The training curve as a Markdown table (for Dagster metadata; no plotting library is installed)."""
    lines = [
        "| checkpoint | timesteps | train mean reward | valid Sharpe | valid mean reward | selected |",
        "|---|---|---|---|---|---|",
    ]
    fmt = lambda v: "" if v is None else f"{v:.4g}"  # noqa: E731
    for r in curve:
        lines.append(
            f"| {r['checkpoint']} | {r['timesteps']} | {fmt(r['train_mean_reward'])} | {fmt(r['valid_sharpe'])} | "
            f"{fmt(r['valid_mean_reward'])} | {'✓' if r.get('selected') else ''} |"
        )
    return "\n".join(lines)


def train_config_from_env(settings: Settings | None = None) -> TrainConfig:
    """The deployment's training budget (``USDCOP_PPO_*``); the batch is at most the rollout."""
    training = as_settings(settings).training
    return TrainConfig(
        total_timesteps=training.timesteps,
        seed=training.seed,
        n_checkpoints=training.checkpoints,
        n_steps=training.n_steps,
        batch_size=min(TrainConfig.batch_size, training.n_steps),
    )
