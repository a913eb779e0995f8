#!/usr/bin/env python
"""Throughput and latency of the RL stack: environment, PPO training, backtest, per-bar inference.

Everything runs in-process on synthetic data (no lake, no Dagster, no network); the observation width is
the one of the observation config (``load_config().dim``, + position and time_frac in the env):

1. environment steps/s on one core (``torch.set_num_threads(1)``), random actions
   (``env.action_space.sample()``), over a ``SessionEpisodes`` of ``--sessions`` x 60 bars; without and with
   the risk manager (``EnvConfig.risk``). The loop is the one SB3 drives: step, reset on termination.
   A second figure with pre-drawn actions separates the cost of ``action_space.sample()``.
2. PPO training frames/s (SB3 ``PPO("MlpPolicy")`` configured exactly as ``training.train_fold`` does with
   the default ``TrainConfig``: n_steps 2048, batch 64, 10 epochs, net_arch 64/64, DummyVecEnv + Monitor),
   ``--ppo-timesteps`` steps with torch threads 1 and 2; split into rollout (env + policy forward) and
   update (gradient epochs) time with a callback.
3. backtest bars/s over ``--backtest-bars`` bars (random target actions in [-1.2, 1.2], returns, 60-bar
   sessions), session ids as the assets hand them over (``'YYYY-MM-DD'`` strings) and as integer codes:
   the engine alone (``backtest_actions`` with the live-style static limits: clip + flat at the session end,
   the vectorized ``apply_risk`` path), the engine + ``metrics.performance`` (the whole backtest incl.
   metrics: the 10 M bars/s target), and ``compare`` of one strategy with ``n_boot=0`` (what the L6 asset runs
   per strategy, minus the bootstrap). Reported without a target: ``apply_risk`` with a daily loss stop and
   the drawdown breaker (P&L-dependent, so a sequential loop by design) and the 1,000-draw session bootstrap.
4. per-bar inference latency: a briefly trained PPO (one 2,048-step rollout + update), saved as the
   weights-only artifact and loaded back with ``training.load_model`` (torch threads 1), then per bar: the observation
   vector built with ``build_observations`` on a one-row features frame + ``observation_matrix`` +
   position/time_frac, and ``model.predict(obs, deterministic=True)``; p50/p95/p99 over ``--latency-bars``.

    .venv/bin/python bench/rl_throughput.py [--sessions 500] [--env-steps 100000] [--ppo-timesteps 4096]
        [--backtest-bars 1000000] [--latency-bars 2000] [--repeats 3] [--quick]

Prints figures only; asserts nothing about time. The host has 2 shared cores: compare the ``uptime`` load
printed at the start and the end, the figures are noisy (best-of-``--repeats`` is shown where cheap).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from usdcop_assets.backtest import metrics as M  # noqa: E402
from usdcop_assets.backtest.engine import backtest_actions, compare  # noqa: E402
from usdcop_assets.observation.builder import build_observations, load_config, observation_matrix  # noqa: E402
from usdcop_assets.rl.costs import CostConfig  # noqa: E402
from usdcop_assets.rl.env import EnvConfig, SessionEpisodes, UsdCopTradingEnv  # noqa: E402
from usdcop_assets.rl.risk import RiskLimits, apply_risk  # noqa: E402
from usdcop_assets.rl.training import TrainConfig, load_model, policy_artifact, silent_logger  # noqa: E402

BARS = 60
RISK = RiskLimits(max_position=0.8, daily_loss_stop=0.004, max_drawdown=0.02, drawdown_cooldown_sessions=2)
STATIC = RiskLimits(max_position=0.8)  # no P&L-dependent rule: apply_risk is vectorized
RESULTS: list[tuple[str, str, str, str]] = []  # (what, figure, target, verdict)


def log(msg: str = "") -> None:
    print(msg, flush=True)


def load_avg() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except Exception as exc:  # noqa: BLE001
        return f"uptime unavailable ({exc})"


def result(what: str, figure: str, target: str = "-", met: bool | None = None) -> None:
    RESULTS.append((what, figure, target, "-" if met is None else ("PASS" if met else "MISS")))


def session_strings(n_sessions: int) -> np.ndarray:
    days = pd.bdate_range("2015-01-02", periods=n_sessions).strftime("%Y-%m-%d").to_numpy(dtype=object)
    return days


def synthetic_episodes(n_sessions: int, dim: int, clip: float, seed: int = 0) -> SessionEpisodes:
    rng = np.random.default_rng(seed)
    n = n_sessions * BARS
    obs = rng.standard_normal((n, dim)).astype("float32")
    next_ret = rng.normal(0.0, 4e-4, n)
    next_ret[BARS - 1 :: BARS] = 0.0  # last bar of a session earns nothing
    frac = np.tile(np.arange(BARS, dtype="float32") / BARS, n_sessions)
    ids = np.repeat(session_strings(n_sessions), BARS)
    return SessionEpisodes(obs, next_ret, frac, ids, clip=clip, obs_version="bench")


# --- 1. environment --------------------------------------------------------------------------------------


def bench_env(episodes: SessionEpisodes, steps: int, repeats: int) -> None:
    torch.set_num_threads(1)
    log(
        f"\n=== 1. environment steps/s, 1 core, {episodes.n_bars:,} bars ({len(episodes)} sessions x {BARS}), "
        f"obs dim {episodes.dim + 2}, {steps:,} steps ==="
    )
    for label, cfg in (
        ("no risk", EnvConfig(reward_scale=1e4, sampling="random")),
        ("risk on", EnvConfig(reward_scale=1e4, sampling="random", risk=RISK)),
    ):
        env = UsdCopTradingEnv(episodes, cfg)
        env.reset(seed=0)
        env.action_space.seed(0)
        sampled, pre = [], []
        for _ in range(repeats):
            env.reset(seed=0)
            t0 = time.perf_counter()
            for _ in range(steps):
                _, _, term, _, _ = env.step(env.action_space.sample())
                if term:
                    env.reset()
            sampled.append(steps / (time.perf_counter() - t0))
            acts = np.random.default_rng(1).uniform(-1, 1, (steps, 1)).astype("float32")
            env.reset(seed=0)
            t0 = time.perf_counter()
            for i in range(steps):
                _, _, term, _, _ = env.step(acts[i])
                if term:
                    env.reset()
            pre.append(steps / (time.perf_counter() - t0))
        best, med = max(sampled), statistics.median(sampled)
        log(
            f"{label:8}: action_space.sample(): best {best:>9,.0f}/s median {med:>9,.0f}/s | pre-drawn actions: best "
            f"{max(pre):>9,.0f}/s  ({1e6 / max(pre):.1f} us/step; sample() costs {1e6 / best - 1e6 / max(pre):.1f} "
            "us/step)"
        )
        result(
            f"env steps/s, action_space.sample(), {label}",
            f"{best:,.0f}/s (median {med:,.0f})",
            ">= 20,000/s",
            best >= 20_000,
        )
        result(
            f"env steps/s, pre-drawn random actions, {label}",
            f"{max(pre):,.0f}/s (median {statistics.median(pre):,.0f})",
            ">= 20,000/s",
            max(pre) >= 20_000,
        )


# --- 2. PPO ----------------------------------------------------------------------------------------------


def make_ppo(episodes: SessionEpisodes, cfg: TrainConfig, env_cfg: EnvConfig):
    """PPO exactly as ``training.train_fold`` builds it."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.utils import set_random_seed
    from stable_baselines3.common.vec_env import DummyVecEnv

    set_random_seed(cfg.seed)
    venv = DummyVecEnv([lambda: Monitor(UsdCopTradingEnv(episodes, env_cfg))])
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=cfg.n_steps,
        batch_size=cfg.batch_size,
        n_epochs=cfg.n_epochs,
        learning_rate=cfg.learning_rate,
        gamma=cfg.gamma,
        gae_lambda=cfg.gae_lambda,
        clip_range=cfg.clip_range,
        ent_coef=cfg.ent_coef,
        vf_coef=cfg.vf_coef,
        max_grad_norm=cfg.max_grad_norm,
        policy_kwargs={"net_arch": {"pi": list(cfg.net_arch), "vf": list(cfg.net_arch)}},
        seed=cfg.seed,
        device="cpu",
        verbose=0,
    )
    model.set_logger(silent_logger())  # as train_fold: no $TMPDIR/SB3-* folder per learn call
    return model


def _timing_callback(store: dict):
    from stable_baselines3.common.callbacks import BaseCallback

    class _Time(BaseCallback):
        def _on_rollout_start(self) -> None:
            store["_t"] = time.perf_counter()

        def _on_rollout_end(self) -> None:
            store["rollout"] = store.get("rollout", 0.0) + time.perf_counter() - store["_t"]

        def _on_step(self) -> bool:
            return True

    return _Time()


def bench_ppo(episodes: SessionEpisodes, timesteps: int, thread_counts=(1, 2)) -> None:
    cfg = TrainConfig(total_timesteps=timesteps)
    env_cfg = EnvConfig(reward_scale=cfg.reward_scale, sampling=cfg.sampling)
    log(
        f"\n=== 2. PPO training frames/s (MlpPolicy {cfg.net_arch}, n_steps {cfg.n_steps}, batch {cfg.batch_size}, "
        f"{cfg.n_epochs} epochs), {timesteps:,} timesteps ==="
    )
    for threads in thread_counts:
        torch.set_num_threads(threads)
        model = make_ppo(episodes, cfg, env_cfg)
        store: dict = {}
        t0 = time.perf_counter()
        model.learn(timesteps, callback=_timing_callback(store), progress_bar=False)
        wall = time.perf_counter() - t0
        frames = int(model.num_timesteps)
        roll = store.get("rollout", 0.0)
        upd = wall - roll
        log(
            f"torch threads {threads}: {frames:,} frames in {wall:.1f}s = {frames / wall:,.0f} fps | rollout "
            f"{roll:.1f}s "
            f"({frames / roll:,.0f} steps/s incl. policy forward) | updates {upd:.1f}s "
            f"({frames * cfg.n_epochs / upd:,.0f} samples/s over {cfg.n_epochs} epochs)"
        )
        result(
            f"PPO fps, torch threads {threads}", f"{frames / wall:,.0f} fps (rollout {roll:.0f}s / update {upd:.0f}s)"
        )
        model.get_env().close()
    torch.set_num_threads(1)


# --- 3. backtest -----------------------------------------------------------------------------------------


def _best(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def bench_backtest(n: int, repeats: int) -> None:
    n = (n // BARS) * BARS
    rng = np.random.default_rng(2)
    actions = rng.uniform(-1.2, 1.2, n)  # some beyond max_position, so CLIPPED fires
    next_ret = rng.normal(0.0, 4e-4, n)
    next_ret[BARS - 1 :: BARS] = 0.0
    str_ids = np.repeat(session_strings(n // BARS), BARS)
    int_ids = np.repeat(np.arange(n // BARS, dtype="int64"), BARS)
    costs = CostConfig()
    log(f"\n=== 3. backtest bars/s over {n:,} bars ({n // BARS:,} sessions), best of {repeats} ===")
    log("    limits for the target rows: max_position 0.8 + flat at the session end (no stop: apply_risk vectorized)")

    def engine_and_metrics(ids):
        f = backtest_actions(actions, next_ret, ids, costs, STATIC)
        return M.performance(f["pnl"].to_numpy(), f["position"].to_numpy(), ids)

    rows = []
    for id_label, ids in (("str ids", str_ids), ("int ids", int_ids)):
        t_eng, framea = _best(lambda: backtest_actions(actions, next_ret, ids, costs, STATIC), repeats)
        t_all, _ = _best(lambda: engine_and_metrics(ids), repeats)
        t_cmp, _ = _best(lambda: compare({"agent": actions}, next_ret, ids, costs, STATIC, n_boot=0), repeats)
        pnl, pos = framea["pnl"].to_numpy(), framea["position"].to_numpy()
        t_perf, _ = _best(lambda: M.performance(pnl, pos, ids), repeats)
        rows += [
            (f"engine alone: backtest_actions ({id_label})", t_eng, True),
            (f"metrics.performance alone ({id_label})", t_perf, False),
            (f"engine + metrics: backtest_actions + performance ({id_label})", t_all, True),
            (f"compare(1 strategy, n_boot=0) ({id_label})", t_cmp, True),
        ]
    t_loop, _ = _best(lambda: apply_risk(actions, next_ret, int_ids, None, RISK, costs), 1)
    rows.append(("apply_risk with daily stop + breaker [sequential loop] (int ids)", t_loop, False))
    t_le, _ = _best(lambda: backtest_actions(actions, next_ret, int_ids, costs, RISK), 1)
    rows.append(("backtest_actions with daily stop + breaker (int ids)", t_le, False))
    for label, t, _ in rows:
        log(f"{label:66} {t * 1e3:>9.1f} ms  {n / t / 1e6:>8.2f} M bars/s")
    for label, t, targeted in rows:
        if targeted:
            result(f"backtest: {label}", f"{n / t / 1e6:.2f} M bars/s", ">= 10 M/s", n / t >= 10e6)
        else:
            result(f"backtest: {label}", f"{n / t / 1e6:.2f} M bars/s")
    pnl = framea["pnl"].to_numpy()
    t_boot, _ = _best(lambda: M.bootstrap_sharpe_ci(pnl, int_ids, n=1000, seed=0), 1)
    log(f"{'bootstrap_sharpe_ci, 1,000 session draws (int ids)':66} {t_boot * 1e3:>9.1f} ms")
    result("backtest: bootstrap_sharpe_ci, 1,000 draws", f"{t_boot * 1e3:.0f} ms")


# --- 4. inference latency --------------------------------------------------------------------------------


def bench_latency(episodes: SessionEpisodes, bars: int) -> None:
    config = load_config()
    torch.set_num_threads(1)
    cfg = TrainConfig(total_timesteps=2048, n_steps=2048)
    model = make_ppo(episodes, cfg, EnvConfig(reward_scale=cfg.reward_scale, sampling=cfg.sampling))
    model.learn(cfg.n_steps, progress_bar=False)  # one rollout + one update: a "trained" tiny model
    model = load_model(policy_artifact(model.policy), torch_threads=1)  # as the realtime path would hold it

    stats = {
        "config_sha256": config.sha256(),
        "version": f"{config.version}-bench",
        "mean": {f: 0.0 for f in config.features},
        "std": {f: 1.0 for f in config.features},
    }
    rng = np.random.default_rng(3)
    times = pd.date_range("2024-01-02 13:00", periods=bars, freq="5min", tz="UTC")
    feats = [
        pd.DataFrame(
            {
                "time": [times[i]],
                "symbol": ["USD/COP"],
                "warm": [True],
                **{f: [float(v)] for f, v in zip(config.features, rng.standard_normal(config.dim))},
            }
        )
        for i in range(bars)
    ]
    log(f"\n=== 4. per-bar inference latency over {bars:,} bars (torch threads 1; obs dim {config.dim + 2}) ===")

    # warm-up
    for i in range(50):
        o = observation_matrix(build_observations(feats[i], config, stats), config)[0]
        model.predict(np.r_[o, 0.0, 0.5].astype("float32"), deterministic=True)

    t_build, t_pred, t_total, t_fwd = [], [], [], []
    position = 0.0
    policy = model.policy
    for i in range(bars):
        t0 = time.perf_counter()
        row = build_observations(feats[i], config, stats)
        vec = observation_matrix(row, config)[0]
        obs = np.empty(config.dim + 2, dtype="float32")
        obs[:-2] = vec
        obs[-2] = position
        obs[-1] = (i % BARS) / BARS
        t1 = time.perf_counter()
        action, _ = model.predict(obs, deterministic=True)
        t2 = time.perf_counter()
        position = float(np.clip(action.reshape(-1)[0], -1.0, 1.0))
        t_build.append(t1 - t0)
        t_pred.append(t2 - t1)
        t_total.append(t2 - t0)
        # the bare network: one forward of the actor's mean under no_grad (what predict wraps)
        t3 = time.perf_counter()
        with torch.no_grad():
            policy._predict(torch.as_tensor(obs).reshape(1, -1), deterministic=True)
        t_fwd.append(time.perf_counter() - t3)

    def pct(xs):
        a = np.asarray(xs) * 1e3
        return np.percentile(a, 50), np.percentile(a, 95), np.percentile(a, 99), a.max()

    for label, xs in (
        ("build_observations + vector", t_build),
        ("model.predict(deterministic)", t_pred),
        ("bar total (build + predict)", t_total),
        ("(policy._predict alone, no_grad)", t_fwd),
    ):
        p50, p95, p99, mx = pct(xs)
        log(f"{label:34} p50 {p50:7.3f} ms  p95 {p95:7.3f} ms  p99 {p99:7.3f} ms  max {mx:7.2f} ms")
    p50, p95, p99, _ = pct(t_total)
    result(
        "inference per bar, excl. I/O (build obs + predict)",
        f"p50 {p50:.2f} / p95 {p95:.2f} / p99 {p99:.2f} ms",
        "p95 < 5 ms",
        p95 < 5.0,
    )
    p50, p95, p99, _ = pct(t_pred)
    result("  of which model.predict", f"p50 {p50:.2f} / p95 {p95:.2f} / p99 {p99:.2f} ms")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=500)
    ap.add_argument("--env-steps", type=int, default=100_000)
    ap.add_argument("--ppo-timesteps", type=int, default=4096)
    ap.add_argument("--backtest-bars", type=int, default=1_000_000)
    ap.add_argument("--latency-bars", type=int, default=2_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the script runs")
    ap.add_argument("--only", default="1,2,3,4", help="sections to run, e.g. 1,3")
    args = ap.parse_args(argv)
    if args.quick:
        args.env_steps, args.ppo_timesteps, args.backtest_bars, args.latency_bars, args.repeats = (
            20_000,
            4096,
            100_000,
            200,
            1,
        )
    only = {s.strip() for s in args.only.split(",")}

    t_all = time.perf_counter()
    start_load = load_avg()
    log(f"load at start: {start_load}")
    log(
        f"cores: {os.cpu_count()} (shared; timings are noisy), torch {torch.__version__}, numpy {np.__version__}, "
        f"pandas {pd.__version__}"
    )
    config = load_config()
    episodes = synthetic_episodes(args.sessions, config.dim, config.clip)

    if "1" in only:
        bench_env(episodes, args.env_steps, args.repeats)
    if "2" in only:
        bench_ppo(episodes, args.ppo_timesteps)
    if "3" in only:
        bench_backtest(args.backtest_bars, args.repeats)
    if "4" in only:
        bench_latency(episodes, args.latency_bars)

    log("\n=== summary ===")
    w = max(len(r[0]) for r in RESULTS) if RESULTS else 10
    wf = max(len(r[1]) for r in RESULTS) if RESULTS else 10
    wt = max(len(r[2]) for r in RESULTS) if RESULTS else 10
    log(f"{'what':{w}}  {'figure':{wf}}  {'target':{wt}}  verdict")
    log("-" * (w + wf + wt + 14))
    for what, fig, target, verdict in RESULTS:
        log(f"{what:{w}}  {fig:{wf}}  {target:{wt}}  {verdict}")
    log(f"\nload at start: {start_load}")
    log(f"load at end:   {load_avg()}")
    log(
        f"2 shared cores: other processes compete for them, so the figures are noisy (best of {args.repeats} where "
        "repeated)."
    )
    log(f"total bench time {time.perf_counter() - t_all:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
