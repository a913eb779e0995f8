"""L5: the PPO agent per walk-forward fold, and its actions per session.

- ``l5/ppo_model`` (one partition per fold = calendar month, Bogota; run config ``PPOModelConfig`` overrides the
  environment-derived training budget, seed and fold options): trains on the L4 episodes strictly
  before the month (``rl.folds.fold_windows``; scheme and window lengths), picks the
  best checkpoint on the validation slice (``rl.training.train_fold``) and stores the artifact in the
  lake under ``models/ppo/<fold>/<version>/policy.safetensors`` + ``metadata.json``, where ``version`` is
  ``<fold>-<first 12 hex of the weights hash>``: the path is content-addressed by the policy weights, and
  the artifact's bytes are a function of the weights, so retraining to the same weights writes nothing
  new, while a stored artifact that differs (corrupted, replaced) is rewritten. Its output is one summary
  row per fold (fold, version, hashes, path, windows, selected checkpoint, validation Sharpe) through the
  serving IO manager: the lake, and the warehouse table ``rl_models``, the model registry serving trusts.
  The row's ``time`` is the fold start (00:00 Bogota on the 1st, in UTC), inside the month's partition
  window, so re-materializing the fold replaces it in both stores.

Trust: the artifact's SHA-256 (``artifact_sha256``) is recorded outside the lake, in the warehouse row and
in the materialization's Dagster metadata; ``load_fold_model`` checks the bytes against it before parsing
them, and parsing reads tensors only (``rl.training.load_policy_artifact``: no unpickling), so a lake
writer can neither run code in the serving process nor swap the policy.
The serving side (``l5/actions_m5``, the paper ledger) is in ``assets/serving.py``.

Thin wiring only: the logic lives in ``usdcop_assets.rl``.
"""

import dataclasses

import dagster as dg
import numpy as np
import pandas as pd

from usdcop_assets.core.settings import Settings
from usdcop_assets.defs.keys import EPISODES, OBS_STATS, PPO_MODEL
from usdcop_assets.defs.partitions import Partitions
from usdcop_assets.defs.registry import ARTIFACT_NAME, REGISTRY_TABLE, ModelStoreResource, normalization_summary
from usdcop_assets.defs.resources import LakeResource
from usdcop_assets.defs.run_config import at_least
from usdcop_assets.defs.windows import own_window
from usdcop_assets.observation.builder import load_config
from usdcop_assets.rl.costs import live_costs
from usdcop_assets.rl.folds import fold_options_from_env, fold_windows, warm_sessions
from usdcop_assets.rl.risk import live_limits
from usdcop_assets.rl.training import TrainConfig, curve_markdown, train_config_from_env, train_fold

MODELS_PREFIX = "models/ppo"


class PPOModelConfig(dg.Config):
    """Run config of a fold's training; a field left unset takes its environment-derived default
    (``train_config_from_env`` / ``fold_options_from_env``), so schedules and the UI need none. Every training budget
    and fold option the environment sets is here too, so a Launchpad run can change it and the run records it."""

    timesteps: int | None = None
    seed: int | None = None
    checkpoints: int | None = None  # USDCOP_PPO_CHECKPOINTS: validation evaluations; the best is kept
    n_steps: int | None = None  # USDCOP_PPO_N_STEPS: rollout length (the batch is at most this)
    scheme: str | None = None  # USDCOP_TRAIN_SCHEME: expanding | rolling
    train_sessions: int | None = None  # USDCOP_TRAIN_SESSIONS: the rolling window's length
    valid_sessions: int | None = None
    min_train_sessions: int | None = None

    def train_config(self) -> TrainConfig:
        config = train_config_from_env()
        n_steps = at_least(self, "n_steps")
        changes = {
            k: v
            for k, v in (
                ("total_timesteps", at_least(self, "timesteps")),
                ("seed", at_least(self, "seed", 0)),
                ("n_checkpoints", at_least(self, "checkpoints")),
                ("n_steps", n_steps),
                ("batch_size", None if n_steps is None else min(TrainConfig.batch_size, n_steps)),
            )
            if v is not None
        }
        return dataclasses.replace(config, **changes) if changes else config

    def fold_options(self) -> dict:
        options = fold_options_from_env()
        options.update(
            {
                k: v
                for k, v in (
                    ("scheme", self.scheme),
                    ("train_sessions", at_least(self, "train_sessions")),
                    ("valid_sessions", at_least(self, "valid_sessions")),
                    ("min_train_sessions", at_least(self, "min_train_sessions")),
                )
                if v is not None
            }
        )
        return options


def model_dir(fold_key: str, version: str) -> str:
    return f"{MODELS_PREFIX}/{fold_key}/{version}"


def build_l5_model_assets(parts: Partitions, settings: Settings) -> list[dg.AssetsDefinition]:
    """The PPO model (one partition per fold) of a code location."""

    @dg.asset(
        key=PPO_MODEL,
        deps=[
            dg.AssetDep(EPISODES, partition_mapping=dg.AllPartitionMapping()),
            dg.AssetDep(OBS_STATS, partition_mapping=dg.AllPartitionMapping()),
        ],
        partitions_def=parts.fold,
        io_manager_key="serving_io_manager",
        group_name="l5_model",
        kinds={"pytorch", "parquet", "sql"},
        metadata={"time_column": "time", "warehouse_table": REGISTRY_TABLE},
        description="SB3 PPO trained only on the L4 episodes before its fold (month); weights-only artifact in the "
        "lake under models/ppo/<fold>/<version>/, its SHA-256 registered in the warehouse (rl_models) and in this "
        "metadata.",
    )
    def l5_ppo_model(
        context: dg.AssetExecutionContext, config: PPOModelConfig, lake: LakeResource, model_store: ModelStoreResource
    ) -> dg.Output[pd.DataFrame]:
        fold_key = context.partition_key
        fold_start, _ = own_window(context)
        episodes = lake.table("/".join(EPISODES.path)).read(None, fold_start)
        fold = fold_windows(
            fold_key, warm_sessions(episodes), **config.fold_options()
        )  # ValueError: not enough history before the fold
        config = config.train_config()  # the run config -> the trainer's settings
        obs_config = load_config()
        obs_stats = normalization_summary(lake.store(), obs_config, episodes, fold)
        context.log.info(
            f"fold {fold_key}: {fold.n_train} training sessions {fold.train_first}..{fold.train_last}, "
            f"{fold.n_valid} validation {fold.valid_first}..{fold.valid_last}; {config.total_timesteps} timesteps, "
            f"seed {config.seed}"
        )
        trained = train_fold(
            episodes,
            fold,
            config,
            obs_config,
            live_costs(),
            risk=live_limits(),
            obs_stats=obs_stats,
            log=context.log.info,
        )

        version = trained.version
        path = model_dir(fold_key, version)
        # Content-addressed and deterministic: the same weights give the same bytes, written once; stored bytes
        # that differ (a corrupted or replaced artifact) are rewritten, with their metadata.
        reused = not model_store.save_artifact(path, trained.artifact, trained.metadata_json(), ARTIFACT_NAME)
        if not reused:
            context.log.info(
                f"fold {fold_key}: artifact {path}/{ARTIFACT_NAME} written (sha256 {trained.artifact_sha256[:12]})"
            )
        sel = trained.metadata["selection"]
        window = trained.metadata["data_window"]
        row = pd.DataFrame(
            [
                {
                    "time": fold_start,
                    "fold": fold_key,
                    "version": version,
                    "weights_sha256": trained.weights_sha256,
                    "artifact_sha256": trained.artifact_sha256,
                    "obs_version": trained.metadata["observation"]["obs_version"],
                    "model_path": f"{path}/{ARTIFACT_NAME}",
                    "metadata_path": f"{path}/metadata.json",
                    "scheme": fold.scheme,
                    "train_first": window["train_first"],
                    "train_last": window["train_last"],
                    "valid_first": window["valid_first"],
                    "valid_last": window["valid_last"],
                    "train_sessions": int(window["train_sessions"]),
                    "valid_sessions": int(window["valid_sessions"]),
                    "seed": int(config.seed),
                    "total_timesteps": int(config.total_timesteps),
                    "selected_checkpoint": int(sel["checkpoint"]),
                    "selected_timesteps": int(sel["timesteps"]),
                    "valid_sharpe": float(sel["valid_sharpe"]) if sel["valid_sharpe"] is not None else np.nan,
                    "valid_mean_reward": float(sel["valid_mean_reward"]),
                }
            ]
        )
        return dg.Output(
            row,
            metadata={
                "version": version,
                "weights_sha256": trained.weights_sha256,
                "artifact_sha256": trained.artifact_sha256,
                "artifact": dg.MetadataValue.path(f"{lake.location}/{path}/{ARTIFACT_NAME}"),
                "artifact_reused": reused,
                "train_window": f"{window['train_first']}..{window['train_last']} "
                f"({window['train_sessions']} sessions)",
                "valid_window": f"{window['valid_first']}..{window['valid_last']} "
                f"({window['valid_sessions']} sessions)",
                "seed": int(config.seed),
                "scheme": fold.scheme,
                "selected_checkpoint": int(sel["checkpoint"]),
                "valid_sharpe": sel["valid_sharpe"],
                "curve": dg.MetadataValue.md(curve_markdown(trained.curve)),
                "train_seconds": trained.metadata["train_seconds"],
            },
        )

    return [l5_ppo_model]
