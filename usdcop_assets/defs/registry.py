"""The model registry serving trusts: the fold's row in the warehouse (``rl_models``) and its Dagster record of the
artifact hash, both checked before a byte of the lake's artifact is parsed (``l5/serving``, the live process).

When the deployment serves the selection (``USDCOP_SERVE=selection``), the registry is ``rl_served_models``, written
by ``l6/experiment_selection``: the fold's selected experiment and the SHA-256 of its summary, which lists each
seed's artifact and weights hashes. The chain is the same: the row and the Dagster record of
``l5/experiment_model`` must agree on the summary's hash, the summary's bytes must match it, and each seed's bytes
and weights must match the summary, before anything is parsed.
"""

import hashlib
import json
import threading
from collections import OrderedDict

import dagster as dg
import numpy as np
import pandas as pd

from usdcop_assets.defs.keys import EXPERIMENT_MODEL, PPO_MODEL
from usdcop_assets.defs.partitions import EXPERIMENT_DIM, FOLD_DIM
from usdcop_assets.defs.resources import LakeResource, WarehouseResource
from usdcop_assets.observation.builder import obs_version
from usdcop_assets.observation.normalization import read_month_stats
from usdcop_assets.rl.policy import ActionRules, EnsemblePolicy, PolicyFunction
from usdcop_assets.rl.training import load_policy_artifact, weights_sha256
from usdcop_assets.storage.warehouse.tables import SERVED_REGISTRIES

REGISTRY_TABLE = SERVED_REGISTRIES["ppo_model"][0]
SERVED_TABLE = SERVED_REGISTRIES["selection"][0]  # l6/experiment_selection's row per fold
SERVES = {serve: table for serve, (table, _) in SERVED_REGISTRIES.items()}  # USDCOP_SERVE -> registry table
ARTIFACT_NAME = "policy.safetensors"  # a model's weights-only artifact, beside its metadata.json


def registered_models(warehouse: WarehouseResource, table: str = REGISTRY_TABLE) -> dict[str, dict]:
    """fold key -> the fold's ``rl_models`` row (version, model_path, artifact_sha256, weights_sha256, ...), or its
    ``rl_served_models`` row (``table``).

    The registry lives in the warehouse, not the lake: the lake's copy of the row is informational only,
    since whoever can write the lake could rewrite it along with the artifact.
    """
    frame = warehouse.warehouse().read_window(table)
    return {str(r["fold"]): r for r in frame.sort_values("time").to_dict("records")}


def _recorded(instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition, name: str) -> str | None:
    """Metadata ``name`` of the partition's latest materialization in the Dagster instance (None: never)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition]), limit=1
    ).records
    if not records:
        return None
    value = records[0].asset_materialization.metadata.get(name)
    return str(value.value) if value is not None else None


def dagster_artifact_sha256(instance: dg.DagsterInstance, fold: str) -> str | None:
    """The ``artifact_sha256`` of the fold's latest l5/ppo_model materialization in the Dagster instance."""
    return _recorded(instance, PPO_MODEL, fold, "artifact_sha256")


def _remedy(fold: str) -> str:
    return f"re-materialize l5/ppo_model for the fold (usdcop train --fold {fold})"


def _registered_bytes(lake: LakeResource, key: str, expected: str, name: str, kind: str, fix: str) -> bytes:
    """The lake object ``key``, refused unless its bytes hash to the registered ``expected`` (nothing parsed yet)."""
    blob = lake.store().get(key)
    if blob is None:
        raise FileNotFoundError(f"{name} is missing from the lake: {fix}")
    digest = hashlib.sha256(blob).hexdigest()
    if digest != expected:
        raise ValueError(
            f"{key}: {kind} sha256 {digest[:12]} differs from the registered {expected[:12]} "
            f"(altered, corrupted or replaced; not parsed): {fix}"
        )
    return blob


def load_fold_model(lake: LakeResource, row: dict, instance: dg.DagsterInstance | None = None, remedy: str = ""):
    """The fold's policy from the lake, checked against the registry before a byte of it is parsed.

    ``row`` is the fold's registry row (``registered_models``). With ``instance``, its Dagster record of
    the artifact hash must agree too. Refused (ValueError naming the remedy): a missing record, bytes whose
    SHA-256 differs from the recorded one, an artifact that is not the weights-only format, weights whose
    hash differs from the recorded ``weights_sha256``. ``remedy``: the command named (default: retrain the fold).
    """
    fold, key, expected = str(row["fold"]), str(row["model_path"]), str(row.get("artifact_sha256") or "")
    fix = remedy or _remedy(fold)
    if len(expected) != 64:
        raise ValueError(f"fold {fold}: the model registry holds no artifact hash for {key}: {fix}")
    if instance is not None:
        recorded = dagster_artifact_sha256(instance, fold)
        if recorded != expected:
            raise ValueError(
                f"fold {fold}: Dagster records artifact hash {str(recorded)[:12]} but the registry "
                f"{REGISTRY_TABLE} holds {expected[:12]}: {fix}"
            )
    blob = _registered_bytes(lake, key, expected, f"model artifact {key} registered for fold {fold}", "artifact", fix)
    model = load_policy_artifact(blob)
    weights = weights_sha256(model)
    if weights != row["weights_sha256"]:
        raise ValueError(
            f"{key}: weights hash {weights[:12]} differs from the recorded {str(row['weights_sha256'])[:12]}: {fix}"
        )
    return model


def dagster_summary_sha256(instance: dg.DagsterInstance, experiment: str, fold: str) -> str | None:
    """The ``summary_sha256`` of the latest l5/experiment_model materialization of ``experiment`` x ``fold``."""
    key = dg.MultiPartitionKey({EXPERIMENT_DIM: experiment, FOLD_DIM: fold})
    return _recorded(instance, EXPERIMENT_MODEL, key, "summary_sha256")


def _ensemble_remedy(row: dict) -> str:
    fold = str(row["fold"])
    return (
        f"re-run the experiment and its selection (usdcop experiment run {row.get('experiment')} --folds "
        f"{fold}..{fold})"
    )


def load_served_ensemble(lake: LakeResource, row: dict, feature_names, instance: dg.DagsterInstance | None = None):
    """The selected experiment's seeds as an ``EnsemblePolicy``, checked before a byte of them is parsed.

    ``row``: the fold's ``rl_served_models`` row. Refused (ValueError naming the remedy): a row without a summary
    hash, a Dagster record of l5/experiment_model that disagrees with it (with ``instance``), summary bytes whose
    SHA-256 differs, a summary of another experiment version, seed bytes or weights that differ from the summary's.
    """
    fold, expected = str(row["fold"]), str(row.get("summary_sha256") or "")
    if len(expected) != 64:
        raise ValueError(f"fold {fold}: the served registry holds no summary hash: {_ensemble_remedy(row)}")
    if instance is not None:
        recorded = dagster_summary_sha256(instance, str(row["experiment"]), fold)
        if recorded != expected:
            raise ValueError(
                f"fold {fold}: Dagster records summary hash {str(recorded)[:12]} for {row['experiment']} but the "
                f"registry {SERVED_TABLE} holds {expected[:12]}: {_ensemble_remedy(row)}"
            )
    path = str(row["summary_path"])
    blob = _registered_bytes(lake, path, expected, path, "summary", _ensemble_remedy(row))
    summary = json.loads(blob)
    if summary.get("version") != row.get("experiment_version"):
        raise ValueError(
            f"fold {fold}: the summary is {row['experiment']} version {summary.get('version')}, the registry "
            f"serves {row.get('experiment_version')}: {_ensemble_remedy(row)}"
        )
    members = []
    for m in summary["members"]:
        member = load_fold_model(lake, {**m, "fold": fold}, remedy=_ensemble_remedy(row))
        members.append(PolicyFunction.from_model(member))
    rules = ActionRules(
        space=str(row["action_space"]),
        no_trade_band=float(row["no_trade_band"]),
        min_hold_bars=int(row["min_hold_bars"]),
    )
    features = None
    if row.get("features"):
        wanted, names = json.loads(row["features"]), list(feature_names)
        unknown = [f for f in wanted if f not in names]
        if unknown:
            raise ValueError(f"fold {fold}: features {unknown} are not observation features: {_ensemble_remedy(row)}")
        features = np.array([names.index(f) for f in wanted], dtype="int64")
    return EnsemblePolicy(tuple(members), str(row["ensemble"]), rules, features)


_policies: OrderedDict[tuple[str, str], PolicyFunction] = OrderedDict()
_policies_lock = threading.Lock()


def is_served_ensemble(row: dict) -> bool:
    """Whether a registry row is the selection's (``rl_served_models``) rather than an l5/ppo_model row."""
    return "summary_sha256" in row and "model_path" not in row


def policy_for(
    lake: LakeResource, row: dict, instance: dg.DagsterInstance | None = None, feature_names=()
) -> PolicyFunction | EnsemblePolicy:
    """The fold model's policy (or the selected ensemble's), loaded and hash-verified once per process (a realtime
    worker reuses it)."""
    if is_served_ensemble(row):  # every column of the row shapes the policy, and so do the observation's features
        key = (str(lake.location), str(row), tuple(feature_names))
    else:
        key = (str(lake.location), str(row["model_path"]), str(row.get("artifact_sha256")), str(row["weights_sha256"]))
    with _policies_lock:
        if key in _policies:
            _policies.move_to_end(key)
            return _policies[key]
    if is_served_ensemble(row):
        policy = load_served_ensemble(lake, row, feature_names, instance)
    else:
        policy = PolicyFunction.from_model(load_fold_model(lake, row, instance))
    with _policies_lock:
        _policies[key] = policy
        while len(_policies) > 8:
            _policies.popitem(last=False)
    return policy


class ModelStoreResource(dg.ConfigurableResource):
    """Where fold models live: artifacts in the lake (``models/ppo/<fold>/<version>/``) and the registry serving
    trusts in the warehouse (``rl_models``). ``l5/ppo_model`` writes through it, ``l5/actions_m5`` and the live
    process read through it, so a test swaps it for a fake (a subclass) without a lake full of models."""

    lake: LakeResource
    warehouse: WarehouseResource
    serve: str = "ppo_model"  # USDCOP_SERVE: which registry serving reads (SERVES)

    @property
    def registry_table(self) -> str:
        if self.serve not in SERVES:
            raise ValueError(f"USDCOP_SERVE={self.serve!r}: expected one of {list(SERVES)}")
        return SERVES[self.serve]

    def registered(self) -> dict[str, dict]:
        """fold key -> the fold's registry row (the one the deployment serves)."""
        return registered_models(self.warehouse, self.registry_table)

    def policy(
        self, row: dict, instance: dg.DagsterInstance | None = None, feature_names=()
    ) -> PolicyFunction | EnsemblePolicy:
        """The registered fold's policy (or selected ensemble; ``feature_names``: the observation config's
        features, for an experiment trained on a subset), hash-verified before it is parsed."""
        return policy_for(self.lake, row, instance, feature_names)

    def register_served(self, row: pd.DataFrame) -> None:
        """Write the selection's row for its fold to ``rl_served_models`` (one transaction, idempotent)."""
        self.warehouse.warehouse().upsert(SERVED_TABLE, row)

    def save_artifact(self, path: str, artifact: bytes, metadata_json: str, name: str) -> bool:
        """Store ``artifact`` as ``path/name`` with its ``metadata.json``; False when the same bytes were already
        there (content-addressed: nothing is rewritten), True when written."""
        store = self.lake.store()
        reused = store.get(f"{path}/{name}") == artifact
        if not reused:
            store.put(f"{path}/{name}", artifact)
        if not reused or store.get(f"{path}/metadata.json") is None:
            store.put(f"{path}/metadata.json", metadata_json)
        return not reused


def normalization_summary(store, obs_config, episodes: pd.DataFrame, fold) -> dict:
    """How the fold's observations were normalized: the rule and each month's statistics version (metadata of the
    model)."""
    sessions = [str(d) for d in (*fold.train_sessions, *fold.valid_sessions)]
    months = sorted({s[:7] for s in sessions})
    stored = read_month_stats(store, months)
    return {
        "rule": obs_config.rule_text(),
        "obs_version": obs_version(obs_config),
        "stats_versions": {m: (stored[m]["stats_version"] if m in stored else None) for m in months},
    }
