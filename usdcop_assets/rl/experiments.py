"""Experiments: named, versioned TOML files describing one way of training the agent.

An experiment is a file ``<name>.toml`` in the package (``usdcop_assets/rl/experiments/``) or in a user folder
passed in as a path (a user file of the same name overrides the package's; ``list_experiments`` says which).
Adding an experiment is adding a file. Every key is optional (the defaults are today's behaviour, the
``baseline``); unknown keys or bad values raise one ``ValueError`` line naming the file and the key::

    description = "..."
    seeds = [7, 8, 9]                 # >= 1 seed; each fold trains one model per seed
    ensemble = "mean"                 # mean of the seeds' positions | vote: majority of their signs
    [reward]
    cost_multiplier = 1.0             # costs counted this many times in the training reward (>= 1)
    turnover_penalty = 0.0            # per unit of position change, log-return units
    holding_incentive = 0.0           # per bar without a position change, log-return units
    drawdown_penalty = 0.0
    [action]
    space = "continuous"              # or "discrete" (short/flat/long)
    no_trade_band = 0.0               # keep the position while |target - position| < band
    min_hold_bars = 0                 # keep a position at least this many bars
    [observation]
    features = "all"                  # or a list of names of the observation config
    [ppo]
    timesteps = 50000                 # per seed and fold
    learning_rate = 3e-4  n_steps = 2048  batch_size = 64  n_epochs = 10  gamma = 0.99  gae_lambda = 0.95
    clip_range = 0.2  ent_coef = 0.0  vf_coef = 0.5  max_grad_norm = 0.5  net_arch = [64, 64]
    [validation]
    valid_sessions = 20               # the sessions before each fold the checkpoints and experiments are judged on
    checkpoints = 5                   # validation evaluations per training run; the best is kept
    metric = "sharpe"                 # or "mean_reward"

``version`` is the first 12 hex digits of the SHA-256 of the canonical JSON of the parsed, defaulted settings
(the name and description excluded): two files that train the same way share a version, any change of a
setting changes it. ``train_config`` maps an experiment (and a seed) to ``training.TrainConfig``, whose
environment fields reach ``env.EnvConfig`` (``training.make_env_config``). Backtests never read the reward
section: they always charge the real costs.

Pure Python (tomllib) and ``training.TrainConfig`` (whose defaults the [ppo] table's are); no Dagster.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from usdcop_assets.rl.policy import ENSEMBLES
from usdcop_assets.rl.training import TrainConfig

PACKAGE_DIR = Path(__file__).resolve().parent / "experiments"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
DEFAULT_SEEDS = (7, 8, 9)  # 7 = the historical USDCOP_PPO_SEED default
ACTION_SPACES = ("continuous", "discrete")
METRICS = ("sharpe", "mean_reward")


@dataclass(frozen=True)
class Reward:
    cost_multiplier: float = 1.0
    turnover_penalty: float = 0.0
    holding_incentive: float = 0.0
    drawdown_penalty: float = 0.0


@dataclass(frozen=True)
class Action:
    space: str = "continuous"
    no_trade_band: float = 0.0
    min_hold_bars: int = 0


# the PPO hyperparameters' defaults are TrainConfig's (one place; a default changed there changes them here)
_TRAIN = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


@dataclass(frozen=True)
class Ppo:
    timesteps: int = 50_000  # per seed and fold (TrainConfig.total_timesteps' default is the l5 asset's)
    learning_rate: float = _TRAIN["learning_rate"]
    n_steps: int = _TRAIN["n_steps"]
    batch_size: int = _TRAIN["batch_size"]
    n_epochs: int = _TRAIN["n_epochs"]
    gamma: float = _TRAIN["gamma"]
    gae_lambda: float = _TRAIN["gae_lambda"]
    clip_range: float = _TRAIN["clip_range"]
    ent_coef: float = _TRAIN["ent_coef"]
    vf_coef: float = _TRAIN["vf_coef"]
    max_grad_norm: float = _TRAIN["max_grad_norm"]
    net_arch: tuple[int, ...] = _TRAIN["net_arch"]


@dataclass(frozen=True)
class Validation:
    valid_sessions: int = 20
    checkpoints: int = 5
    metric: str = "sharpe"


@dataclass(frozen=True)
class Experiment:
    name: str
    version: str
    description: str = ""
    reward: Reward = Reward()
    action: Action = Action()
    features: tuple[str, ...] | None = None  # None = every feature of the observation config
    ppo: Ppo = Ppo()
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    ensemble: str = "mean"
    validation: Validation = Validation()
    source: str = ""  # the file it was read from

    def settings(self) -> dict:
        """Everything that changes how it trains or trades (what ``version`` hashes)."""
        d = dataclasses.asdict(self)
        for k in ("name", "version", "description", "source"):
            d.pop(k)
        return _jsonable(d)

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "description": self.description, **self.settings()}

    def train_config(self, seed: int | None = None, *, timesteps: int | None = None, torch_threads: int = 1):
        """The ``TrainConfig`` of one seed (default: the first); ``timesteps`` overrides the file's (screening)."""
        p, r, a, v = self.ppo, self.reward, self.action, self.validation
        n_steps = p.n_steps
        return TrainConfig(
            total_timesteps=int(timesteps or p.timesteps),
            n_steps=n_steps,
            batch_size=min(p.batch_size, n_steps),
            n_epochs=p.n_epochs,
            learning_rate=p.learning_rate,
            gamma=p.gamma,
            gae_lambda=p.gae_lambda,
            clip_range=p.clip_range,
            ent_coef=p.ent_coef,
            vf_coef=p.vf_coef,
            max_grad_norm=p.max_grad_norm,
            net_arch=p.net_arch,
            seed=int(self.seeds[0] if seed is None else seed),
            n_checkpoints=v.checkpoints,
            selection_metric=v.metric,
            drawdown_penalty=r.drawdown_penalty,
            turnover_penalty=r.turnover_penalty,
            holding_incentive=r.holding_incentive,
            cost_multiplier=r.cost_multiplier,
            action_space=a.space,
            no_trade_band=a.no_trade_band,
            min_hold_bars=a.min_hold_bars,
            features=self.features,
            torch_threads=torch_threads,
        )

    def fold_options(self, base: dict | None = None) -> dict:
        """``rl.folds.fold_windows`` options with this experiment's validation length (other options from
        ``base``, e.g. ``fold_options_from_env()``)."""
        return {**(base or {}), "valid_sessions": self.validation.valid_sessions}


def _jsonable(o):
    if isinstance(o, dict):
        return {k: _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    return o


def version_of(settings: dict) -> str:
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# --- parsing ------------------------------------------------------------------------------------------


class _Bad(ValueError):
    pass


def _number(where: str, v, *, lo=None, hi=None, lo_open=False, integer=False):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
        raise _Bad(f"{where}={v!r}: expected {'an integer' if integer else 'a number'}")
    if not math.isfinite(v):
        raise _Bad(f"{where}={v!r}: must be finite")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise _Bad(f"{where}={v!r}: must be {'>' if lo_open else '>='} {lo}")
    if hi is not None and v > hi:
        raise _Bad(f"{where}={v!r}: must be <= {hi}")
    return int(v) if integer else float(v)


def _choice(where: str, v, options):
    if v not in options:
        raise _Bad(f"{where}={v!r}: expected one of {list(options)}")
    return v


# per section: key -> validator(where, value)
_RULES = {
    "reward": {
        "cost_multiplier": lambda w, v: _number(w, v, lo=1.0),
        "turnover_penalty": lambda w, v: _number(w, v, lo=0.0),
        "holding_incentive": lambda w, v: _number(w, v, lo=0.0),
        "drawdown_penalty": lambda w, v: _number(w, v, lo=0.0),
    },
    "action": {
        "space": lambda w, v: _choice(w, v, ACTION_SPACES),
        "no_trade_band": lambda w, v: _number(w, v, lo=0.0, hi=2.0),
        "min_hold_bars": lambda w, v: _number(w, v, lo=0, hi=60, integer=True),
    },
    "ppo": {
        "timesteps": lambda w, v: _number(w, v, lo=1, integer=True),
        "learning_rate": lambda w, v: _number(w, v, lo=0.0, lo_open=True, hi=1.0),
        "n_steps": lambda w, v: _number(w, v, lo=2, integer=True),
        "batch_size": lambda w, v: _number(w, v, lo=2, integer=True),
        "n_epochs": lambda w, v: _number(w, v, lo=1, integer=True),
        "gamma": lambda w, v: _number(w, v, lo=0.0, lo_open=True, hi=1.0),
        "gae_lambda": lambda w, v: _number(w, v, lo=0.0, lo_open=True, hi=1.0),
        "clip_range": lambda w, v: _number(w, v, lo=0.0, lo_open=True),
        "ent_coef": lambda w, v: _number(w, v, lo=0.0),
        "vf_coef": lambda w, v: _number(w, v, lo=0.0),
        "max_grad_norm": lambda w, v: _number(w, v, lo=0.0, lo_open=True),
        "net_arch": lambda w, v: _int_list(w, v, lo=1, hi=4096),
    },
    "validation": {
        "valid_sessions": lambda w, v: _number(w, v, lo=1, integer=True),
        "checkpoints": lambda w, v: _number(w, v, lo=1, integer=True),
        "metric": lambda w, v: _choice(w, v, METRICS),
    },
    "observation": {"features": lambda w, v: _features(w, v)},
}
_TOP = {"description", "seeds", "ensemble", *_RULES}


def _int_list(where: str, v, lo: int, hi: int) -> tuple[int, ...]:
    if not isinstance(v, list) or not v:
        raise _Bad(f"{where}={v!r}: expected a non-empty list of integers")
    return tuple(_number(f"{where}[{i}]", x, lo=lo, hi=hi, integer=True) for i, x in enumerate(v))


def _features(where: str, v):
    if v == "all":
        return None
    if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
        raise _Bad(f'{where}={v!r}: expected "all" or a non-empty list of feature names')
    from usdcop_assets.observation.builder import load_config

    known = list(load_config().features)
    unknown = [x for x in v if x not in known]
    if unknown:
        raise _Bad(f"{where}: {unknown} are not features of the observation config (known: {', '.join(known)})")
    if len(set(v)) != len(v):
        raise _Bad(f"{where}: a feature is listed twice")
    return tuple(v)


def parse_experiment(name: str, data: dict, source: str = "<memory>") -> Experiment:
    """An ``Experiment`` from parsed TOML; ``ValueError('<source>: <key>...')`` on the first problem."""
    try:
        if not NAME_RE.match(name):
            raise _Bad(f"name {name!r}: lower-case letters, digits and _ (starting with a letter), at most 40")
        unknown = sorted(set(data) - _TOP)
        if unknown:
            raise _Bad(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(_TOP))})")
        parts = {}
        for section, rules in _RULES.items():
            raw = data.get(section, {})
            if not isinstance(raw, dict):
                raise _Bad(f"{section}: expected a [{section}] table")
            bad = sorted(set(raw) - set(rules))
            if bad:
                raise _Bad(f"unknown key {section}.{bad[0]!r} (known: {', '.join(sorted(rules))})")
            parts[section] = {k: rules[k](f"{section}.{k}", v) for k, v in raw.items()}
        ppo = parts["ppo"]
        if ppo.get("batch_size", Ppo.batch_size) > ppo.get("n_steps", Ppo.n_steps):
            raise _Bad(f"ppo.batch_size={ppo.get('batch_size', Ppo.batch_size)}: must be <= ppo.n_steps")
        seeds = data.get("seeds", list(DEFAULT_SEEDS))
        seeds = _int_list("seeds", seeds, lo=0, hi=2**31 - 1)
        if len(set(seeds)) != len(seeds):
            raise _Bad(f"seeds={list(seeds)}: a seed is listed twice")
        ensemble = _choice("ensemble", data.get("ensemble", "mean"), ENSEMBLES)
        description = data.get("description", "")
        if not isinstance(description, str):
            raise _Bad("description: expected a string")
        action = Action(**parts["action"])
        if action.space == "continuous" and action.no_trade_band > 1.0:
            raise _Bad(f"action.no_trade_band={action.no_trade_band}: a band above 1 would never trade")
    except _Bad as e:
        raise ValueError(f"experiment {source}: {e}") from None
    exp = Experiment(
        name=name,
        version="",
        description=description,
        reward=Reward(**parts["reward"]),
        action=action,
        features=parts["observation"].get("features"),
        ppo=Ppo(**parts["ppo"]),
        seeds=seeds,
        ensemble=ensemble,
        validation=Validation(**parts["validation"]),
        source=source,
    )
    return dataclasses.replace(exp, version=version_of(exp.settings()))


def _files(user_dir) -> dict[str, tuple[Path, str]]:
    """name -> (path, origin 'package' | 'user'); user files override package files of the same name."""
    out = {p.stem: (p, "package") for p in sorted(PACKAGE_DIR.glob("*.toml"))}
    if user_dir is not None:
        d = Path(user_dir)
        if not d.is_dir():
            raise ValueError(f"experiments folder {d} does not exist or is not a folder; create it or pass another")
        out.update({p.stem: (p, "user") for p in sorted(d.glob("*.toml"))})
    return out


def read_experiment_file(path) -> Experiment:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"experiment {path}: not valid TOML ({e})") from None
    return parse_experiment(path.stem, data, str(path))


def load_experiment(name: str, user_dir=None) -> Experiment:
    """The experiment ``name`` (the user folder's file first, then the package's)."""
    files = _files(user_dir)
    if name not in files:
        raise ValueError(f"no experiment {name!r}; known: {', '.join(sorted(files))} (add {name}.toml to a folder)")
    return read_experiment_file(files[name][0])


def list_experiments(user_dir=None) -> list[dict]:
    """One row per experiment name: name, origin ('package' | 'user'), overrides (a user file hiding the package
    file of the same name), path, version, description. A file that does not validate raises."""
    rows = []
    for name, (path, origin) in sorted(_files(user_dir).items()):
        exp = read_experiment_file(path)
        rows.append(
            {
                "name": name,
                "origin": origin,
                "overrides": origin == "user" and (PACKAGE_DIR / f"{name}.toml").exists(),
                "path": str(path),
                "version": exp.version,
                "description": exp.description,
            }
        )
    return rows
