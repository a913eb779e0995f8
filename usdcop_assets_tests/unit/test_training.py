"""Walk-forward folds, PPO training per fold (reproducible), checkpoint selection and inference.

Tiny synthetic episodes in the exact l4/episodes_session layout; tiny PPO so the file runs in well under a minute.
"""

import datetime as dt
import hashlib

import numpy as np
import pandas as pd
import pytest

from usdcop_assets.core import calendar as cal
from usdcop_assets.observation.builder import load_config
from usdcop_assets.rl import CostConfig, EnvConfig, RiskLimits, SessionEpisodes
from usdcop_assets.rl import training as T
from usdcop_assets.rl.folds import Fold, fold_sessions, fold_windows, monthly_folds

CONFIG = load_config()
DAYS = cal.trading_days(dt.date(2024, 1, 1), dt.date(2024, 3, 31))  # Jan..Mar 2024 trading days (~60)


def episodes_frame(days=DAYS, seed=0, version="obs-v1-test"):
    rng = np.random.default_rng(seed)
    times = cal.bars_of_days(days)
    n = len(times)
    local_days = np.repeat([d.isoformat() for d in days], cal.BARS_PER_SESSION)
    frame = pd.DataFrame(
        {
            "time": times,
            "symbol": "USD/COP",
            "session": local_days,
            "step": np.tile(np.arange(cal.BARS_PER_SESSION), len(days)),
            "obs_version": version,
        }
    )
    obs = rng.normal(size=(n, CONFIG.dim)).clip(-5, 5)
    frame = pd.concat([frame, pd.DataFrame(obs, columns=CONFIG.columns)], axis=1)
    frame["non_finite"] = 0
    frame["warm"] = True
    ret = 2e-4 * obs[:, 0] + rng.normal(0, 5e-4, n)  # a weak learnable signal in the first feature
    ret[cal.BARS_PER_SESSION - 1 :: cal.BARS_PER_SESSION] = 0.0
    frame["close"] = 4000 * np.exp(np.cumsum(ret))
    frame["next_ret"] = ret
    frame["is_last"] = frame["step"] == cal.BARS_PER_SESSION - 1
    return frame


TINY = T.TrainConfig(
    total_timesteps=1536, n_steps=256, batch_size=64, n_epochs=2, n_checkpoints=3, net_arch=(16, 16), seed=7
)


@pytest.fixture(scope="module")
def frame():
    return episodes_frame()


@pytest.fixture(scope="module")
def fold():
    return fold_windows("2024-03", DAYS, scheme="expanding", valid_sessions=8, min_train_sessions=20)


@pytest.fixture(scope="module")
def trained(frame, fold):
    return T.train_fold(frame, fold, TINY, CONFIG, CostConfig())


# --- folds ----------------------------------------------------------------------------------------


def test_monthly_folds_and_fold_sessions():
    assert monthly_folds(dt.date(2024, 1, 15), dt.date(2024, 4, 2)) == ["2024-01", "2024-02", "2024-03", "2024-04"]
    assert monthly_folds("2024-03-30", "2024-03-31") == []  # a weekend only
    march = fold_sessions("2024-03")
    assert march[0] == dt.date(2024, 3, 1) and all(d.month == 3 and cal.is_trading_day(d) for d in march)
    with pytest.raises(ValueError, match="YYYY-MM"):
        fold_sessions("2024/03")


def test_folds_never_leak_and_expanding_vs_rolling():
    available = DAYS + cal.trading_days(
        dt.date(2024, 4, 1), dt.date(2024, 4, 30)
    )  # data after the fold start is ignored
    exp = fold_windows("2024-03", available, "expanding", valid_sessions=8, min_train_sessions=20)
    roll = fold_windows("2024-03", available, "rolling", train_sessions=25, valid_sessions=8, min_train_sessions=20)
    for f in (exp, roll):
        assert isinstance(f, Fold) and f.key == "2024-03" and f.start_session == dt.date(2024, 3, 1)
        assert all(d < f.start_session for d in f.train_sessions + f.valid_sessions)
        assert f.train_last < f.valid_first <= f.valid_last < f.start_session
        assert f.n_valid == 8 and f.valid_last == cal.previous_trading_day(f.start_session)
    before = [d for d in DAYS if d < dt.date(2024, 3, 1)]
    assert exp.n_train == len(before) - 8 and exp.train_first == before[0]
    assert roll.n_train == 25 and roll.train_last == exp.train_last and roll.train_first > exp.train_first
    # a later fold's expanding window grows; non-trading days in the input are ignored
    later = fold_windows(
        "2024-04", available + [dt.date(2024, 3, 30)], "expanding", valid_sessions=8, min_train_sessions=20
    )
    assert later.n_train > exp.n_train and dt.date(2024, 3, 30) not in later.valid_sessions
    assert exp.to_dict()["n_train"] == exp.n_train


def test_insufficient_history_is_a_clear_error():
    with pytest.raises(ValueError, match=r"fold 2024-01: not enough history before 2024-01-02: 0 available sessions"):
        fold_windows("2024-01", DAYS, valid_sessions=8, min_train_sessions=20)
    with pytest.raises(ValueError, match="not enough history"):
        fold_windows("2024-02", DAYS, valid_sessions=8, min_train_sessions=20)  # only ~21 January sessions
    with pytest.raises(ValueError, match="rolling folds need train_sessions"):
        fold_windows("2024-03", DAYS, "rolling", train_sessions=10, min_train_sessions=20)
    with pytest.raises(ValueError, match="scheme"):
        fold_windows("2024-03", DAYS, "sliding")


# --- training -----------------------------------------------------------------------------------


def test_train_fold_artifact_selection_and_curve(trained, fold):
    meta = trained.metadata
    assert len(trained.weights_sha256) == 64 and meta["weights_sha256"] == trained.weights_sha256
    assert trained.version == f"2024-03-{trained.weights_sha256[:12]}"
    # the artifact is the selected checkpoint's weights only: reloading it gives the same weights hash, and
    # its bytes are a function of the weights (the same policy serializes to the same bytes)
    assert trained.artifact[8:].lstrip(b" ")[:1] == b"{" and b"PK" != trained.artifact[:2]
    assert T.weights_sha256(trained.load()) == trained.weights_sha256
    assert T.policy_artifact(trained.load().policy) == trained.artifact
    assert meta["artifact"]["sha256"] == trained.artifact_sha256 == hashlib.sha256(trained.artifact).hexdigest()
    curve = trained.curve
    assert [r["checkpoint"] for r in curve] == [0, 1, 2]
    assert [r["timesteps"] for r in curve] == [512, 1024, 1536]
    assert sum(r["selected"] for r in curve) == 1
    sel = meta["selection"]["checkpoint"]
    assert curve[sel]["selected"] and curve[sel]["weights_sha256"] == trained.weights_sha256
    scores = [r["valid_sharpe"] if r["valid_sharpe"] is not None else -np.inf for r in curve]
    assert sel == int(np.argmax(scores))  # best validation Sharpe, earliest on ties
    assert all(r["train_episodes"] > 0 and r["train_mean_reward"] is not None for r in curve)
    assert meta["data_window"]["train_last"] < meta["data_window"]["valid_first"] < "2024-03-01"
    assert (
        meta["data_window"]["train_sessions"] == fold.n_train and meta["data_window"]["valid_sessions"] == fold.n_valid
    )
    assert meta["seed"] == 7 and meta["train_config"]["net_arch"] == [16, 16]
    assert (
        meta["observation"]["obs_version"] == "obs-v1-test" and meta["observation"]["config_version"] == CONFIG.version
    )
    assert b'"weights_sha256"' in trained.metadata_json()
    assert "| checkpoint |" in T.curve_markdown(curve)


def test_same_data_seed_config_same_weights_different_seed_differs(trained, frame, fold, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # SB3's default log folder would land here
    again = T.train_fold(frame, fold, TINY, CONFIG, CostConfig())
    assert list(tmp_path.iterdir()) == []  # training writes no SB3-<time> folder per learn call
    assert again.weights_sha256 == trained.weights_sha256 and again.artifact == trained.artifact
    assert [r["weights_sha256"] for r in again.curve] == [r["weights_sha256"] for r in trained.curve]
    other = T.train_fold(
        frame, fold, T.TrainConfig(**{**TINY.to_dict(), "seed": 8, "net_arch": (16, 16)}), CONFIG, CostConfig()
    )
    assert other.weights_sha256 != trained.weights_sha256


def test_train_fold_refuses_a_leaking_fold(frame, fold):
    bad = Fold(**{**fold.__dict__, "valid_sessions": fold.valid_sessions + (dt.date(2024, 3, 4),)})
    with pytest.raises(ValueError, match="on or after the fold start"):
        T.train_fold(frame, bad, TINY, CONFIG)


def test_train_config_validation():
    with pytest.raises(ValueError, match="batch_size"):
        T.TrainConfig(n_steps=64, batch_size=128)
    with pytest.raises(ValueError, match="selection_metric"):
        T.TrainConfig(selection_metric="sortino")
    assert T.TrainConfig(total_timesteps=1000, n_steps=256, n_checkpoints=3).chunk_timesteps == 512


def test_select_checkpoint_best_and_earliest_on_ties():
    curve = [
        {"valid_sharpe": None, "valid_mean_reward": 1.0},
        {"valid_sharpe": 2.0, "valid_mean_reward": 3.0},
        {"valid_sharpe": 2.0, "valid_mean_reward": 3.0},
        {"valid_sharpe": float("nan"), "valid_mean_reward": 0.0},
    ]
    assert T.select_checkpoint(curve, "sharpe") == 1
    assert T.select_checkpoint(curve, "mean_reward") == 1
    assert T.select_checkpoint([{"valid_sharpe": None}] * 3) == 0


# --- inference ------------------------------------------------------------------------------------


def test_predict_positions_deterministic_bounded_and_flat_at_session_end(trained, frame):
    march = frame[frame["session"] >= "2024-03-01"]
    a = T.predict_positions(trained.artifact, march, CONFIG)
    b = T.predict_positions(trained.load(), march, CONFIG)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == len(march) and list(a.columns[:3]) == ["session", "step", "time"]
    assert a["session"].min() >= "2024-03-01"
    assert (a["position"].abs() <= 1).all() and (a["target"].abs() <= 1).all()
    last = a.groupby("session")["step"].transform("max") == a["step"]
    assert (a.loc[last, "position"] == 0).all()
    # with a risk manager capping the position
    capped = T.predict_positions(trained.artifact, march, CONFIG, EnvConfig(risk=RiskLimits(max_position=0.25)))
    assert (capped["position"].abs() <= 0.25 + 1e-12).all() and (capped.loc[last.to_numpy(), "position"] == 0).all()


def test_rollout_session_feeds_back_the_position(trained, frame):
    model = trained.load()
    eps = SessionEpisodes.from_frame(frame[frame["session"] == "2024-03-01"], CONFIG)
    out = T.rollout_session(model, eps, "2024-03-01")
    # replaying by hand: obs = [L4 vector, previous position, time in session]
    prev = 0.0
    for t in range(len(out["step"])):
        x = np.r_[eps.obs[t], prev, eps.time_frac[t]].astype("float32")
        action, _ = model.predict(x, deterministic=True)
        assert float(np.clip(action[0], -1, 1)) == pytest.approx(out["target"][t], abs=1e-6)
        prev = out["position"][t]
    assert out["position"][-1] == 0.0
