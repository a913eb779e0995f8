"""L5 research: an experiment's seed ensemble per walk-forward fold (``l5/experiment_model``, experiment x fold).

One partition = one experiment file (``rl/experiments/`` or the user's folder, ``USDCOP_EXPERIMENTS_DIR``) on one
fold (month): every seed of the experiment trained on the L4 episodes strictly before the month, each picking its
checkpoint on the experiment's validation sessions, then the seeds' combined positions evaluated on those same
validation sessions with the real costs (``rl.ensemble.train_experiment_fold``, the harness's function). Each seed's
weights-only artifact goes to the lake, content-addressed, under
``models/experiments/<experiment>/<fold>/<weights hash>/policy.safetensors``; the partition's summary (experiment
version, windows, per-seed checkpoints and hashes, the ensemble's validation figures and per-session validation
returns) to ``models/experiments/<experiment>/<fold>/summary.json``, whose SHA-256 is in the materialization's
metadata. Downstream (``l6_experiments``) the out-of-sample backtest loads the seeds through those recorded hashes,
and the selection reads the validation figures only.

These models are research candidates: ``l5/ppo_model`` stays the model that ``l5/actions_m5`` and the live process
trade (docs/decisions/0012-experiments-dimension.md). Thin wiring: the logic lives in ``usdcop_assets.rl``.
"""

import hashlib
import json

import dagster as dg

from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import Settings
from usdcop_assets.defs.experiment_store import experiment_dir, partition_dims, summary_key
from usdcop_assets.defs.keys import EPISODES, EXPERIMENT_MODEL, OBS_STATS
from usdcop_assets.defs.partitions import Partitions
from usdcop_assets.defs.registry import ARTIFACT_NAME, ModelStoreResource, normalization_summary
from usdcop_assets.defs.resources import LakeResource
from usdcop_assets.defs.run_config import at_least
from usdcop_assets.observation.builder import load_config
from usdcop_assets.rl.costs import live_costs
from usdcop_assets.rl.experiments import load_experiment
from usdcop_assets.rl.folds import fold_sessions, fold_windows, warm_sessions
from usdcop_assets.rl.risk import live_limits


class ExperimentModelConfig(dg.Config):
    """Screening overrides of the experiment file (a run records them; the summary too). Unset: the file's."""

    timesteps: int | None = None  # PPO timesteps per seed
    seeds: int | None = None  # the first N seeds of the file

    def checked(self) -> "ExperimentModelConfig":
        for name in ("timesteps", "seeds"):
            at_least(self, name)
        return self


def build_l5_experiment_assets(parts: Partitions, settings: Settings) -> list[dg.AssetsDefinition]:
    """The experiment models (experiment x fold) of a code location."""

    @dg.asset(
        key=EXPERIMENT_MODEL,
        deps=[
            dg.AssetDep(EPISODES, partition_mapping=dg.AllPartitionMapping()),
            dg.AssetDep(OBS_STATS, partition_mapping=dg.AllPartitionMapping()),
        ],
        partitions_def=parts.experiment_fold,
        group_name="research",
        kinds={"pytorch", "json"},
        description="An experiment's seeds trained on the L4 episodes before its fold (month), each checkpoint picked "
        "on the experiment's validation sessions, and the ensemble's validation figures (the selection's input). "
        "Artifacts and summary under models/experiments/<experiment>/<fold>/ in the lake.",
    )
    def l5_experiment_model(
        context: dg.AssetExecutionContext,
        config: ExperimentModelConfig,
        lake: LakeResource,
        model_store: ModelStoreResource,
    ) -> dg.MaterializeResult:
        from usdcop_assets.rl.ensemble import train_experiment_fold

        name, fold_key = partition_dims(context)
        config = config.checked()
        experiment = load_experiment(name, settings.experiments_dir)
        start = cal.session_open(fold_sessions(fold_key)[0])
        episodes = lake.table("/".join(EPISODES.path)).read(None, start)
        # ValueError naming the sessions missing: not enough history before the fold
        fold = fold_windows(
            fold_key, warm_sessions(episodes), **experiment.fold_options(settings.training.fold_options())
        )
        obs_config = load_config()
        seeds = tuple(experiment.seeds[: config.seeds] if config.seeds else experiment.seeds)
        context.log.info(
            f"{name}@{experiment.version} fold {fold_key}: seeds {seeds}, {fold.n_train} training sessions "
            f"{fold.train_first}..{fold.train_last}, {fold.n_valid} validation {fold.valid_first}..{fold.valid_last}"
        )
        trained = train_experiment_fold(
            episodes,
            fold,
            experiment,
            obs_config,
            live_costs(),
            risk=live_limits(),
            obs_stats=normalization_summary(lake.store(), obs_config, episodes, fold),
            timesteps=config.timesteps,
            seeds=seeds,
            log=context.log.info,
        )
        members = []
        for row, model in zip(trained.per_seed, trained.models):
            path = f"{experiment_dir(name, fold_key)}/{model.weights_sha256[:12]}"
            model_store.save_artifact(path, model.artifact, model.metadata_json(), ARTIFACT_NAME)
            members.append({**row, "model_path": f"{path}/{ARTIFACT_NAME}", "artifact_sha256": model.artifact_sha256})
        validation = dict(trained.validation)
        summary = {
            **trained.summary(),
            "fold": fold_key,
            "experiment_file": experiment.to_dict(),
            "ensemble": experiment.ensemble,
            "timesteps": int(trained.config.total_timesteps),
            "obs_version": trained.models[0].metadata["observation"]["obs_version"],
            "valid_sessions": [d.isoformat() for d in trained.valid_sessions],
            "valid_session_returns": validation.get("session_returns", {}),
            "members": members,
        }
        blob = json.dumps(summary, sort_keys=True, indent=1, default=str).encode()
        lake.store().put(summary_key(name, fold_key), blob)
        spread = trained.seed_spread("valid_sharpe")
        return dg.MaterializeResult(
            metadata={
                "experiment": name,
                "experiment_version": experiment.version,
                "fold": fold_key,
                "seeds": list(seeds),
                "ensemble": experiment.ensemble,
                "valid_window": f"{fold.valid_first}..{fold.valid_last} ({fold.n_valid} sessions)",
                "valid_sharpe": validation.get("sharpe"),
                "valid_turnover_per_session": validation.get("turnover_per_session"),
                "seed_valid_sharpe_mean": spread["mean"],
                "seed_valid_sharpe_std": spread["std"],
                "summary": dg.MetadataValue.path(f"{lake.location}/{summary_key(name, fold_key)}"),
                "summary_sha256": hashlib.sha256(blob).hexdigest(),
                "artifacts": dg.MetadataValue.json([m["model_path"] for m in members]),
            }
        )

    return [l5_experiment_model]
