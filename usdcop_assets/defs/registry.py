"""The model registry serving trusts: the fold's row in the warehouse (``rl_models``) and its Dagster record of the
artifact hash, both checked before a byte of the lake's artifact is parsed (``l5/serving``, the live process)."""

import hashlib
import threading
from collections import OrderedDict

import dagster as dg
import pandas as pd

from usdcop_assets.defs.keys import PPO_MODEL
from usdcop_assets.defs.resources import LakeResource, WarehouseResource
from usdcop_assets.observation.builder import obs_version
from usdcop_assets.observation.normalization import read_month_stats
from usdcop_assets.rl.policy import PolicyFunction
from usdcop_assets.rl.training import load_policy_artifact, weights_sha256

REGISTRY_TABLE = "rl_models"
ARTIFACT_NAME = "policy.safetensors"  # a model's weights-only artifact, beside its metadata.json


def registered_models(warehouse: WarehouseResource) -> dict[str, dict]:
    """fold key -> the fold's ``rl_models`` row (version, model_path, artifact_sha256, weights_sha256, ...).

    The registry lives in the warehouse, not the lake: the lake's copy of the row is informational only,
    since whoever can write the lake could rewrite it along with the artifact.
    """
    frame = warehouse.warehouse().read_window(REGISTRY_TABLE)
    return {str(r["fold"]): r for r in frame.sort_values("time").to_dict("records")}


def dagster_artifact_sha256(instance: dg.DagsterInstance, fold: str) -> str | None:
    """The ``artifact_sha256`` of the fold's latest l5/ppo_model materialization in the Dagster instance."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=PPO_MODEL, asset_partitions=[fold]), limit=1
    ).records
    if not records:
        return None
    value = records[0].asset_materialization.metadata.get("artifact_sha256")
    return str(value.value) if value is not None else None


def _remedy(fold: str) -> str:
    return f"re-materialize l5/ppo_model for the fold (usdcop train --fold {fold})"


def load_fold_model(lake: LakeResource, row: dict, instance: dg.DagsterInstance | None = None):
    """The fold's policy from the lake, checked against the registry before a byte of it is parsed.

    ``row`` is the fold's registry row (``registered_models``). With ``instance``, its Dagster record of
    the artifact hash must agree too. Refused (ValueError naming the remedy): a missing record, bytes whose
    SHA-256 differs from the recorded one, an artifact that is not the weights-only format, weights whose
    hash differs from the recorded ``weights_sha256``.
    """
    fold, key, expected = str(row["fold"]), str(row["model_path"]), str(row.get("artifact_sha256") or "")
    if len(expected) != 64:
        raise ValueError(f"fold {fold}: the model registry holds no artifact hash for {key}: {_remedy(fold)}")
    if instance is not None:
        recorded = dagster_artifact_sha256(instance, fold)
        if recorded != expected:
            raise ValueError(
                f"fold {fold}: Dagster records artifact hash {str(recorded)[:12]} but the registry "
                f"{REGISTRY_TABLE} holds {expected[:12]}: {_remedy(fold)}"
            )
    blob = lake.store().get(key)
    if blob is None:
        raise FileNotFoundError(
            f"model artifact {key} registered for fold {fold} is missing from the lake: {_remedy(fold)}"
        )
    digest = hashlib.sha256(blob).hexdigest()
    if digest != expected:
        raise ValueError(
            f"{key}: artifact sha256 {digest[:12]} differs from the registered {expected[:12]} "
            f"(altered, corrupted or replaced; not parsed): {_remedy(fold)}"
        )
    model = load_policy_artifact(blob)
    weights = weights_sha256(model)
    if weights != row["weights_sha256"]:
        raise ValueError(
            f"{key}: weights hash {weights[:12]} differs from the recorded {str(row['weights_sha256'])[:12]}: "
            f"{_remedy(fold)}"
        )
    return model


_policies: OrderedDict[tuple[str, str], PolicyFunction] = OrderedDict()
_policies_lock = threading.Lock()


def policy_for(lake: LakeResource, row: dict, instance: dg.DagsterInstance | None = None) -> PolicyFunction:
    """The fold model's policy, loaded and hash-verified once per process (a realtime worker reuses it)."""
    key = (str(lake.location), str(row["model_path"]), str(row.get("artifact_sha256")), str(row["weights_sha256"]))
    with _policies_lock:
        if key in _policies:
            _policies.move_to_end(key)
            return _policies[key]
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

    def registered(self) -> dict[str, dict]:
        """fold key -> the fold's registry row."""
        return registered_models(self.warehouse)

    def policy(self, row: dict, instance: dg.DagsterInstance | None = None) -> PolicyFunction:
        """The registered fold's policy, hash-verified before it is parsed."""
        return policy_for(self.lake, row, instance)

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
