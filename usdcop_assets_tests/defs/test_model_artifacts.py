"""The model store runs nothing from the lake: l5/ppo_model stores a weights-only artifact, registers its
SHA-256 outside the lake (warehouse ``rl_models`` and the Dagster materialization), and serving checks the
lake object against that record before parsing it; parsing reads tensors only. A malicious SB3 zip is
refused and its payload never runs; a corrupted artifact is rewritten by re-materializing the fold.

l5/ppo_model is materialized through Dagster on synthetic L4 episodes (the test_training layout) with a
tiny PPO; the lake and the warehouse are a temporary directory and SQLite file.
"""

import base64
import hashlib
import io
import json
import zipfile

import dagster as dg
import numpy as np
import pytest

from usdcop_assets.core import calendar as cal
from usdcop_assets.defs.io_managers import ServingIOManager
from usdcop_assets.defs.registry import ModelStoreResource, load_fold_model, registered_models
from usdcop_assets.defs.resources import LakeResource, WarehouseResource
from usdcop_assets.rl import training as T
from usdcop_assets.storage.lake.session_table import SessionTable
from usdcop_assets_tests.defs_helpers import asset_def
from usdcop_assets_tests.unit.test_training import DAYS, episodes_frame

FOLD = "2024-03"


class _Payload:
    """Unpickling it opens ``path`` for writing, i.e. creates the file: the proof that code ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _sb3_zip_with_payload(marker) -> bytes:
    """A genuine SB3 model zip whose ``data`` entry carries a cloudpickled payload (as SB3 serializes objects)."""
    import gymnasium as gym
    from stable_baselines3 import PPO

    class Env(gym.Env):
        observation_space = gym.spaces.Box(-5, 5, (4,), np.float32)
        action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

        def reset(self, seed=None, options=None):
            return np.zeros(4, np.float32), {}

        def step(self, action):
            return np.zeros(4, np.float32), 0.0, True, False, {}

    buf = io.BytesIO()
    PPO("MlpPolicy", Env(), n_steps=64, batch_size=32, device="cpu").save(buf)
    import cloudpickle

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            body = src.read(name)
            if name == "data":
                data = json.loads(body)
                data["policy_class"] = {
                    ":type:": "<class 'type'>",
                    ":serialized:": base64.b64encode(cloudpickle.dumps(_Payload(str(marker)))).decode(),
                }
                body = json.dumps(data).encode()
            dst.writestr(name, body)
    return out.getvalue()


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    root = tmp_path_factory.mktemp("model_artifacts")
    with pytest.MonkeyPatch.context() as mp:
        for var, value in {
            "USDCOP_PPO_TIMESTEPS": "512",
            "USDCOP_PPO_N_STEPS": "256",
            "USDCOP_PPO_CHECKPOINTS": "1",
            "USDCOP_VALID_SESSIONS": "8",
            "USDCOP_MIN_TRAIN_SESSIONS": "20",
        }.items():
            mp.setenv(var, value)
        mp.delenv("USDCOP_OBS_CONFIG", raising=False)
        lake = LakeResource(url=str(root / "lake"))
        warehouse = WarehouseResource(url=f"sqlite:///{root / 'warehouse.sqlite'}")
        SessionTable(lake.store(), "l4/episodes_session").write(
            episodes_frame(), cal.session_open(DAYS[0]), cal.session_end(DAYS[-1])
        )
        resources = {
            "lake": lake,
            "warehouse": warehouse,
            "serving_io_manager": ServingIOManager(lake=lake, warehouse=warehouse),
            "model_store": ModelStoreResource(lake=lake, warehouse=warehouse),
        }
        (root / "dagster_home").mkdir()
        with dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance:

            def materialize():
                result = dg.materialize(
                    [asset_def("l5/ppo_model")], partition_key=FOLD, instance=instance, resources=resources
                )
                assert result.success
                return {
                    k: v.value for k, v in result.asset_materializations_for_node("l5__ppo_model")[0].metadata.items()
                }

            first = materialize()
            yield {
                "lake": lake,
                "warehouse": warehouse,
                "instance": instance,
                "materialize": materialize,
                "first": first,
            }


def _row(platform) -> dict:
    return registered_models(platform["warehouse"])[FOLD]


def test_the_artifact_hash_is_recorded_outside_the_lake_and_checked(platform):
    row, md = _row(platform), platform["first"]
    blob = platform["lake"].store().get(row["model_path"])
    assert row["model_path"].endswith(f"{FOLD}/{row['version']}/policy.safetensors")
    # the same hash in the warehouse registry, in Dagster's metadata, and of the bytes in the lake
    assert row["artifact_sha256"] == md["artifact_sha256"] == hashlib.sha256(blob).hexdigest()
    assert row["weights_sha256"] == md["weights_sha256"] and md["artifact_reused"] is False
    model = load_fold_model(platform["lake"], row, platform["instance"])
    assert T.weights_sha256(model) == row["weights_sha256"]
    # the lake's own copy of the row is not trusted: rewriting it changes nothing the registry says
    lake_rows = platform["lake"].table("l5/ppo_model").read()
    assert list(lake_rows["artifact_sha256"]) == [row["artifact_sha256"]]
    # a registry that disagrees with Dagster's record is refused before the lake is read
    with pytest.raises(
        ValueError, match=f"Dagster records artifact hash {row['artifact_sha256'][:12]}.*usdcop train --fold {FOLD}"
    ):
        load_fold_model(platform["lake"], {**row, "artifact_sha256": "ab" * 32}, platform["instance"])


def test_a_zip_carrying_a_pickled_payload_is_refused_and_never_runs(platform, tmp_path):
    lake, row = platform["lake"], _row(platform)
    store, key = lake.store(), row["model_path"]
    genuine = store.get(key)
    marker = tmp_path / "pwned"
    evil = _sb3_zip_with_payload(marker)
    try:
        store.put(key, evil)
        # 1. the bytes differ from the registered hash: refused before anything is parsed
        with pytest.raises(
            ValueError,
            match=r"artifact sha256 .* differs from the registered .*not parsed.*usdcop train --fold 2024-03",
        ):
            load_fold_model(lake, row, platform["instance"])
        assert not marker.exists()
        # 2. even with the registry forged to the zip's hash, the loader never unpickles: zips are refused
        forged = {**row, "artifact_sha256": hashlib.sha256(evil).hexdigest()}
        with pytest.raises(T.ArtifactError, match="zip archive .* not loaded"):
            load_fold_model(lake, forged)
        with pytest.raises(T.ArtifactError):
            T.load_model(evil)
        assert not marker.exists()
    finally:
        store.put(key, genuine)
    # control: SB3's own deserialization of that entry does run the payload (so the test above could fail)
    from stable_baselines3.common.save_util import json_to_data

    with zipfile.ZipFile(io.BytesIO(evil)) as archive:
        json_to_data(archive.read("data").decode())
    assert marker.exists()


def test_a_corrupted_artifact_is_refused_then_replaced_by_rematerializing(platform):
    lake, row = platform["lake"], _row(platform)
    store, key = lake.store(), row["model_path"]
    genuine = store.get(key)
    corrupted = bytearray(genuine)
    corrupted[-5] ^= 0xFF  # one flipped bit pattern in the last tensor's bytes
    store.put(key, bytes(corrupted))
    with pytest.raises(ValueError, match="differs from the registered"):
        load_fold_model(lake, row, platform["instance"])
    md = platform["materialize"]()  # the documented remedy: re-materialize l5/ppo_model for the fold
    assert md["artifact_reused"] is False and md["version"] == row["version"]
    assert store.get(key) == genuine  # the same weights serialize to the same bytes
    again = _row(platform)
    assert again["artifact_sha256"] == row["artifact_sha256"]
    assert T.weights_sha256(load_fold_model(lake, again, platform["instance"])) == row["weights_sha256"]
    # a sound artifact is kept as is
    assert platform["materialize"]()["artifact_reused"] is True


def _artifact(trained_policy_bytes: bytes, mutate) -> bytes:
    n = int.from_bytes(trained_policy_bytes[:8], "little")
    header = json.loads(trained_policy_bytes[8 : 8 + n])
    body = trained_policy_bytes[8 + n :]
    header, body = mutate(header, body)
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + body


def test_malformed_artifacts_are_refused_with_the_reason(platform):
    genuine = platform["lake"].store().get(_row(platform)["model_path"])
    assert T.weights_sha256(T.load_model(genuine)) == _row(platform)["weights_sha256"]

    def misfit(h, b):  # a tensor's byte span no longer matches its shape
        name = sorted(k for k in h if k != "__metadata__")[0]
        lo, hi = h[name]["data_offsets"]
        h[name]["data_offsets"] = [lo, hi + 4]
        return h, b

    cases = {
        "too short": genuine[:6],
        "header length": (10**9).to_bytes(8, "little") + genuine[8:],
        "not JSON": (4).to_bytes(8, "little") + b"\x80abc" + genuine[12:],
        "format": _artifact(genuine, lambda h, b: ({**h, "__metadata__": {**h["__metadata__"], "format": "other"}}, b)),
        "do not fit": _artifact(genuine, misfit),
        "holes or overlaps": _artifact(genuine, lambda h, b: (h, b + b"\0" * 8)),
        "do not match the architecture": _artifact(
            genuine, lambda h, b: ({**h, "__metadata__": {**h["__metadata__"], "net_arch_pi": "32,32"}}, b)
        ),
        "activation": _artifact(
            genuine, lambda h, b: ({**h, "__metadata__": {**h["__metadata__"], "activation": "os.system"}}, b)
        ),
    }
    for reason, blob in cases.items():
        with pytest.raises(T.ArtifactError, match=reason):
            T.load_policy_artifact(blob)
