#!/usr/bin/env python
"""Out-of-sample walk-forward of the PPO agent on the shared real data, with costs, beside the baselines.

No Dagster run: the pure functions the assets call, in the order the assets run, in memory, on the real
files of ``../shared/data`` (read in place, never copied):

- L0: ``sources.files.read_bar_file`` (as ``usdcop import --kind bars`` does, timestamps as labelled, the
  rows before the partitions start or on non-trading days left out exactly as the import leaves them out)
  and ``sources.macro_sources.fetch_macro("file:...")`` over the macro partitions (as ``usdcop import --kind macro``);
- L1: ``standardize_bars``; ``refine_macro`` (the asset's lag / stale settings from the environment);
- L2: ``compute_indicators`` (data_start = ``complete_from``); L3: ``macro_daily_frame`` + ``macro_zscores`` +
  ``build_features``; L4: ``fit_months`` (each month on the 12 months before it, the config's default rule;
  ``USDCOP_OBS_TRAIN_WINDOW`` is ignored here: it is removed from the environment), ``build_observations``, and the
  body of ``l4/episodes_session`` (it has no separate pure
  helper) over the whole history, as ``bench/l1_l4_pipeline.py``'s direct part does.
- L5: per monthly fold of ``--folds`` (``rl.folds.fold_windows`` with ``fold_options_from_env()``;
  sessions available = the warm episode sessions strictly before the fold, as ``l5/ppo_model`` reads them),
  ``train_fold`` with ``train_config_from_env()`` (``--timesteps`` overrides total_timesteps),
  ``live_costs()``, ``live_limits()``; then ``predict_positions`` on the fold's sessions with the actions
  asset's env config (sessions that are not warm are flat, as ``l5/actions_m5`` records them).
  ``--every N`` trains every N-th month only and reuses the latest model in between (still out of sample:
  a model only ever trades sessions after its own fold start).
- L6: ``backtest.engine.compare`` (``backtest_actions`` + ``metrics.performance`` + session bootstrap CIs of
  the Sharpe and of its difference to buy-and-hold) with the same costs and risk rules, on exactly the same
  bars for: the walk-forward agent, the first model held fixed over the whole period (no retraining), and
  the baselines (flat, buy-and-hold intraday, SMA 5/20 crossover), and ``buy_and_hold_held``: long over the whole
  out-of-sample period with its overnight gaps, outside the session-flat risk rules (``backtest.baselines``), in the
  same table but not among the overfitting candidates below (not a strategy the agent could be). Also: each trained
  model held fixed from its
  own fold to the end, against the walk-forward agent and buy-and-hold on that same sub-period.
- LightGBM baseline (``backtest.gbm_baseline``, unless ``--no-lightgbm``): in every fold month (also between
  PPO's trainings with ``--every N``: a fit takes seconds), ``train_gbm`` on the fold's training sessions with early
  stopping on its validation sessions (the windows PPO uses), seed = the PPO config's; its targets on the fold's
  sessions (not warm: flat) go through the same ``compare`` (risk rules, costs) as the strategy ``lightgbm``.
- Overfitting (``backtest.overfitting.selection_statistics``) over those same strategies' per-session net returns:
  the deflated Sharpe ratio of the walk-forward agent with N = the number of strategies compared (flat's Sharpe
  counted as 0; the checkpoints chosen on validation inside each fold are not counted), and the PBO by CSCV
  (16 splits of the out-of-sample sessions) across the strategies.

Any data: ``--bars FILE --macro FILE`` (defaults: the shared files) go through the same L0 readers.

Experiments (``--experiment NAME ...``, files of ``rl/experiments/`` or ``--experiments-dir``): per fold, every
listed experiment trains its seeds (``rl.ensemble.train_experiment_fold``; its own validation length, each seed's
checkpoint picked on validation) and the seeds' positions are combined (mean or vote); ``rl.selection.select``
then picks the experiment with the highest validation Sharpe of its ensemble on the sessions before the fold
(a rule fixed in advance; the out-of-sample months are never read to choose), and ``selected`` trades the pick
month by month. The JSON adds ``experiments`` (validation vs out-of-sample Sharpe, turnover, per-seed spread),
``selected_by_fold``; ``deflated_sharpe`` uses N = experiments x seeds tried (each seed traded alone is a
trial) and ``pbo`` is CSCV over those trials (``pbo_detail.experiments``: over the experiments' ensembles).
``--prior-trials N`` adds the trials of earlier screens on other periods to the deflated Sharpe's N: a run that
follows screens is judged against everything tried, not only its own candidates. ``--seeds N`` keeps the first
N seeds of each file, ``--timesteps`` overrides the files' (screening).

    .venv/bin/python bench/walk_forward.py --folds 2023-01..2023-06 --timesteps 10000 \
        --experiment baseline discrete_hold cost_aware                        # screen experiments
    .venv/bin/python bench/walk_forward.py --every 6 --timesteps 10000        # quick validation run
    .venv/bin/python bench/walk_forward.py --timesteps 50000                  # monthly retraining

Prints a table and writes every figure to ``--json`` (default /tmp/walk_forward_<time>.json); among its keys
``folds``, ``selected``, ``pbo``, ``overfitting`` (the details) and ``strategies``: per strategy ``total_return``,
``sharpe`` (annualized bar Sharpe, as the table), ``sharpe_ci`` [low, high], ``turnover_per_session``,
``sharpe_per_session`` (not annualized) and, for the selected agent and ``lightgbm``, ``deflated_sharpe`` (a
probability,
the same N trials).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings(
    "ignore", message=".*is currently in beta.*"
)  # Dagster BetaWarnings on importing the asset modules

os.environ.pop("USDCOP_OBS_TRAIN_WINDOW", None)  # the config's rule, not an override
os.environ.pop("USDCOP_OBS_CONFIG", None)
for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

PROJECT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("USDCOP_SHARED_DATA", PROJECT.parent / "shared" / "data"))
BARS_FILE = DATA / "usdcop_m5_ohlcv_2020_2024h1.csv.gz"
MACRO_FILE = DATA / "macro_indicators_daily_to_2024h1.csv.gz"


from l1_l4_pipeline import Clock, loadavg, log  # noqa: E402  (bench/ is on sys.path when run as a script)

# --- L0 -> L4 ---------------------------------------------------------------------------------------


def build_episodes(bars_file=BARS_FILE, macro_file=MACRO_FILE) -> tuple:
    """(episodes frame of the whole history, normalization stats dict, obs config, L0-L4 info)."""
    from types import SimpleNamespace

    import pandas as pd

    from usdcop_assets.core import calendar as cal
    from usdcop_assets.core.settings import Settings
    from usdcop_assets.defs.definitions import build_defs
    from usdcop_assets.defs.keys import EPISODES
    from usdcop_assets.defs.partitions import build_partitions
    from usdcop_assets.defs.windows import complete_from
    from usdcop_assets.features.engineering import build_features, macro_daily_frame, macro_zscores
    from usdcop_assets.features.indicators import compute_indicators
    from usdcop_assets.observation.builder import (
        build_observations,
        load_config,
        obs_version,
        stats_from_frame,
        stats_to_frame,
    )
    from usdcop_assets.observation.normalization import fit_months, months_between
    from usdcop_assets.refine.macro import refine_macro
    from usdcop_assets.refine.standardize import standardize_bars
    from usdcop_assets.sources.files import read_bar_file
    from usdcop_assets.sources.macro_sources import fetch_macro, read_macro_file

    settings = Settings.from_env()
    l4_episodes_session = build_defs(settings).resolve_assets_def(EPISODES)
    macro_partitions = build_partitions(settings.history.start, dt.date.today()).macro

    info: dict = {}
    t = {}
    with Clock() as c:
        bar_file = read_bar_file(bars_file, None, not_before=cal.session_open(settings.history.start))
        raw = bar_file.placed
        macro_rows = read_macro_file(macro_file)
        m_first = max(min(macro_rows["date"]), dt.date.fromisoformat(macro_partitions.start.strftime("%Y-%m-%d")))
        m_last = max(macro_rows["date"])
        macro_l0, _ = fetch_macro(f"file:{macro_file}", m_first, m_last)
    t["L0"] = c.wall
    info["l0"] = {
        **{
            k: bar_file.summary[k]
            for k in (
                "rows_read",
                "rows_placed",
                "rows_unplaced",
                "unplaced_by_reason",
                "sessions",
                "first_session",
                "last_session",
            )
        },
        "macro_rows": len(macro_l0),
        "macro_first": str(m_first),
        "macro_last": str(m_last),
    }

    with Clock() as c:
        kept, rejects = standardize_bars(raw)
        lag = settings.macro.lag_business_days
        stale = settings.macro.stale_business_days
        wide, _ = refine_macro(
            macro_l0, lag_business_days=lag, first_date=m_first, last_date=m_last, stale_after_business_days=stale
        )
    t["L1"] = c.wall
    info["l1"] = {
        "kept": len(kept),
        "rejects": len(rejects),
        "rejects_by_reason": {str(k): int(v) for k, v in rejects["reason"].value_counts().items()}
        if "reason" in rejects.columns
        else {},
        "macro_days": len(wide),
    }

    kept = kept.sort_values("time", kind="stable").reset_index(drop=True)
    with Clock() as c:
        targets = pd.DatetimeIndex(kept["time"])
        indicators = compute_indicators(kept, targets=targets, data_start=complete_from(kept))
    t["L2"] = c.wall

    with Clock() as c:
        targets = pd.DatetimeIndex(indicators["time"])
        daily = macro_daily_frame(wide)
        features = build_features(kept, indicators, macro_pit=macro_zscores(daily, targets), targets=targets)
    t["L3"] = c.wall

    with Clock() as c:
        config = load_config()
        days = cal.trading_days(
            *[pd.Timestamp(x).tz_convert(cal.TZ).date() for x in (kept["time"].min(), kept["time"].max())]
        )
        fitted = fit_months(features, config, months_between(days[0], days[-1]))  # each month on the 12 before it
        stats = stats_from_frame(stats_to_frame(fitted))  # the lake round trip of the asset
        obs = build_observations(features, config, stats)
        window = SimpleNamespace(start=cal.session_open(days[0]), end=cal.session_end(days[-1]))
        body = l4_episodes_session.op.compute_fn.decorated_fn
        episodes = body(SimpleNamespace(partition_time_window=window), observations=obs, bars=kept).value
    t["L4"] = c.wall
    info["l4"] = {
        "obs_version": obs_version(config),
        "train_window": config.rule_text(),
        "train_rows": sum(s["train_rows"] for s in fitted),
        "unfitted_months": [s["month"] for s in fitted if not s["fitted"]],
        "episode_bars": len(episodes),
        "sessions": int(episodes["session"].nunique()),
        "warm_sessions": int(episodes.groupby("session")["warm"].all().sum()),
    }
    info["seconds"] = t
    return episodes, stats, config, info


# --- helpers ----------------------------------------------------------------------------------------


def month_keys(spec: str) -> list[str]:
    import pandas as pd

    a, _, b = spec.partition("..")
    b = b or a
    return [p.strftime("%Y-%m") for p in pd.period_range(a, b, freq="M")]


def fnum(v, fmt="{:.3f}"):
    return "nan" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


def clean(o):
    """JSON-safe (NaN/inf -> None, numpy -> python)."""
    import numpy as np

    if isinstance(o, dict):
        return {str(k): clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [clean(v) for v in o]
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating, float)):
        return float(o) if math.isfinite(float(o)) else None
    if isinstance(o, (np.bool_,)):
        return bool(o)
    if hasattr(o, "isoformat"):
        return o.isoformat()
    return o


# --- experiments: seed ensembles per fold, selection on validation, the selected one traded ---------------


SELECTION_RULE_TEXT = (
    "per fold, the experiment whose seed ensemble has the highest validation Sharpe (real costs, risk rules) on the "
    "validation sessions before the fold; ties to the one listed first"
)


def rule_text(rule) -> str:
    """The selection rule in words, with its optional turnover cap and flat fallback."""
    text = SELECTION_RULE_TEXT
    if rule.max_turnover_per_session is not None:
        text += f"; only experiments with validation turnover <= {rule.max_turnover_per_session:g} units/session"
    if rule.min_sharpe is not None:
        text += f"; traded only when that Sharpe is >= {rule.min_sharpe:g}"
    if rule.fallback is not None:
        text += f", otherwise {rule.fallback}"
    return text


_TRAIN_INPUTS: dict = {}  # what the (forked) training workers read: set by run_experiments before they start


def _train_group(experiments, seeds_of) -> list[list]:
    """The experiments grouped so that those whose seeds train the same models (they differ only in how the seeds
    are combined) share one task and its training cache."""
    groups: dict[str, list] = {}
    for e in experiments:
        settings = e.settings()
        settings.pop("ensemble", None)
        groups.setdefault(json.dumps([settings, list(seeds_of[e.name])], sort_keys=True, default=str), []).append(e)
    return list(groups.values())


def _train_task(key: str, experiments, seeds_of) -> tuple:
    """Train the seeds of each of ``experiments`` on fold ``key`` (the episodes strictly before it), a seed's training
    shared by the experiments that would repeat it: ({name: ExperimentFold}, wall s)."""
    import torch

    from usdcop_assets.core import calendar as cal
    from usdcop_assets.rl.ensemble import train_experiment_fold
    from usdcop_assets.rl.folds import fold_sessions, fold_windows, warm_sessions

    torch.set_num_threads(1)
    x = _TRAIN_INPUTS
    episodes = x["episodes"]
    before = episodes[episodes["time"] < cal.session_open(fold_sessions(key)[0])]
    cache: dict = {}
    out = {}
    with Clock() as c:
        for experiment in experiments:
            fold = fold_windows(key, warm_sessions(before), **experiment.fold_options(x["options"]))
            out[experiment.name] = train_experiment_fold(
                before,
                fold,
                experiment,
                x["obs_config"],
                x["costs"],
                risk=x["limits"],
                obs_stats=x["stats"],
                timesteps=x["timesteps"],
                seeds=seeds_of[experiment.name],
                cache=cache,
            )
    return out, c.wall


def run_experiments(args, experiments) -> int:
    """``--experiment`` mode: each experiment's seeds per fold, the per-fold selection (``rl.selection``), the
    selected one traded out of sample, beside the baselines, LightGBM and every experiment; DSR with N = the
    experiments x seeds tried, PBO by CSCV over those trials."""
    t_all = time.perf_counter()
    import numpy as np
    import stable_baselines3
    import torch

    from usdcop_assets.backtest import metrics as M
    from usdcop_assets.backtest.experiment_comparison import experiment_comparison
    from usdcop_assets.core import calendar as cal
    from usdcop_assets.rl.costs import live_costs
    from usdcop_assets.rl.ensemble import spread
    from usdcop_assets.rl.folds import fold_options_from_env, fold_sessions, fold_windows, warm_sessions
    from usdcop_assets.rl.risk import live_limits
    from usdcop_assets.rl.selection import SelectionRule, ValidationResult, select

    torch.set_num_threads(1)
    costs, limits = live_costs(), live_limits()
    options = fold_options_from_env()
    keys = month_keys(args.folds)
    rule = SelectionRule(max_turnover_per_session=args.max_turnover, min_sharpe=args.min_sharpe, fallback=args.fallback)
    strat = {e.name: f"ppo_{e.name}" for e in experiments}
    seeds_of = {e.name: tuple(e.seeds[: args.seeds] if args.seeds else e.seeds) for e in experiments}
    json_path = Path(args.json or f"/tmp/walk_forward_{time.strftime('%Y%m%d_%H%M%S')}.json")
    log(
        f"python {sys.version.split()[0]}, torch {torch.__version__}, sb3 {stable_baselines3.__version__}, "
        f"{os.cpu_count()} CPUs, load {loadavg()}; costs {costs.rate * 1e4:.2f} bps per unit; risk {limits}"
    )
    log(
        f"experiments {[f'{e.name}@{e.version}' for e in experiments]}, seeds {seeds_of}, timesteps "
        f"{args.timesteps or 'per file'}; folds {keys[0]}..{keys[-1]} ({len(keys)}), train every {args.every}; "
        f"fold options {options}; selection: {rule_text(rule)}"
    )
    with Clock() as c_l4:
        episodes, stats, obs_config, info = build_episodes(args.bars, args.macro)
    log(f"[L0-L4] {c_l4.wall:.1f}s: {info['l4']['episode_bars']} episode bars, {info['l4']['warm_sessions']} warm")
    episodes = episodes.sort_values(["time"], kind="stable").reset_index(drop=True)
    month_of = episodes["session"].astype(str).str[:7]

    gbm_config = None
    if not args.no_lightgbm:
        from usdcop_assets.backtest.gbm_baseline import GbmConfig, gbm_targets, train_gbm

        gbm_config = GbmConfig(seed=experiments[0].seeds[0])

    # L5: per fold, every experiment's seeds (every N-th fold), then the selection on validation only. The
    # (fold, experiment) trainings are independent: with --jobs N they run in N forked worker processes (each torch
    # at one thread), which inherit the episodes built above.
    train_keys = [k for i, k in enumerate(keys) if i % args.every == 0]
    _TRAIN_INPUTS.update(
        episodes=episodes,
        obs_config=obs_config,
        stats=stats,
        costs=costs,
        limits=limits,
        options=options,
        timesteps=args.timesteps,
    )
    groups = _train_group(experiments, seeds_of)
    shared = [[e.name for e in g] for g in groups if len(g) > 1]
    if shared:
        log(f"[L5] trained once per fold for each of {shared} (same seeds and training; only the combination differs)")
    tasks = [(k, i, g) for k in train_keys for i, g in enumerate(groups)]
    pool = None
    if args.jobs > 1:
        import concurrent.futures
        import multiprocessing

        pool = concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("fork"))
        futures = {(k, i): pool.submit(_train_task, k, g, seeds_of) for k, i, g in tasks}
        log(f"[L5] {len(tasks)} (fold, experiment group) trainings on {args.jobs} worker processes")
    else:
        futures = None
    trained: dict[str, dict] = {}  # fold key of training -> experiment name -> ExperimentFold
    fold_rows, gbm_pos = [], {}
    current = None
    t_train = 0.0
    for i, key in enumerate(keys):
        before = episodes[episodes["time"] < cal.session_open(fold_sessions(key)[0])]  # what l5/ppo_model reads
        available = warm_sessions(before)
        if gbm_config:
            g = train_gbm(before, fold_windows(key, available, **options), gbm_config, obs_config)
            gbm_pos[key] = gbm_targets(g, episodes.loc[episodes.index[month_of == key]], obs_config)
        if i % args.every == 0:
            trained[key] = {}
            for i, group in enumerate(groups):
                if futures is not None:
                    got, wall = futures[(key, i)].result()
                else:
                    got, wall = _train_task(key, group, seeds_of)
                t_train += wall
                for e in group:
                    trained[key][e.name] = got[e.name]
                    v = got[e.name].validation
                    others = ", ".join(x.name for x in group if x is not e)
                    log(
                        f"[L5] fold {key} {e.name}: {len(seeds_of[e.name])} seeds in {wall:.0f}s"
                        f"{f' (shared with {others})' if others else ''}; ensemble validation Sharpe "
                        f"{fnum(v['sharpe'], '{:.2f}')}, turnover {fnum(v['turnover_per_session'], '{:.2f}')}/session "
                        f"({v['first_session']}..{v['last_session']})"
                    )
            trained[key] = {e.name: trained[key][e.name] for e in experiments}  # in the order listed
            current = key
            candidates = [
                ValidationResult(
                    strat[name],
                    ef.valid_sessions,
                    ef.validation["sharpe"],
                    ef.validation["turnover_per_session"],
                    {"checkpoints": [r["checkpoint"] for r in ef.per_seed]},
                )
                for name, ef in trained[key].items()
            ]
            selection = select(fold_sessions(key)[0], candidates, rule)
        fold_rows.append(
            {
                "fold": key,
                "model": current,
                "trained": current == key,
                "selected": selection.selected,
                "selection_reason": selection.reason,
                "validation_sharpe": selection.scores,
                "validation_turnover_per_session": {
                    strat[n]: ef.validation["turnover_per_session"] for n, ef in trained[current].items()
                },
                "checkpoints": {strat[n]: [r["checkpoint"] for r in ef.per_seed] for n, ef in trained[current].items()},
            }
        )
        log(f"[select] fold {key}: {selection.selected} ({selection.reason})")

    if pool is not None:
        pool.shutdown()
    # inference: each month with the experiments of its fold's model
    oos = month_of.isin(keys).to_numpy()
    bars = episodes[oos].reset_index(drop=True)
    months = month_of[oos].reset_index(drop=True).to_numpy()
    sessions = bars["session"].astype(str).to_numpy()
    ens = {e.name: [] for e in experiments}
    per_seed = {(e.name, s): [] for e in experiments for s in seeds_of[e.name]}
    selected_pos = []
    t0 = time.perf_counter()
    for row in fold_rows:
        frame = episodes.loc[episodes.index[month_of == row["fold"]]]
        month_pos = {}
        for e in experiments:
            combined, per = trained[row["model"]][e.name].positions(frame, obs_config, costs, limits)
            ens[e.name].append(combined)
            month_pos[strat[e.name]] = combined
            for s, p in zip(seeds_of[e.name], per):
                per_seed[(e.name, s)].append(p)
        selected_pos.append(month_pos.get(row["selected"], np.zeros(len(frame))))  # a fallback name: flat
    t_inf = time.perf_counter() - t0

    # the comparison l6/experiment_performance makes (backtest.experiment_comparison): every ensemble, the selected
    # one, LightGBM and the baselines on the same bars; DSR over the experiments x seeds trials; PBO by CSCV
    comparison = experiment_comparison(
        bars,
        {strat[n]: np.concatenate(v) for n, v in ens.items()},
        {f"{n}_seed{s}": np.concatenate(v) for (n, s), v in per_seed.items()},
        np.concatenate(selected_pos),
        {"lightgbm": np.concatenate([gbm_pos[k] for k in keys])} if gbm_config else None,
        costs,
        limits,
        n_boot=args.n_boot,
        prior_trials=args.prior_trials,
    )
    table, frames = comparison["table"], comparison["frames"]
    seed_frames = {(n, s): comparison["trial_frames"][f"{n}_seed{s}"] for (n, s) in per_seed}
    trials = comparison["trial_sharpe_per_session"]
    pbo_trials, pbo_experiments = comparison["pbo"], comparison["pbo_candidates"]
    dsr_of = dict(zip(table["strategy"], table["deflated_sharpe"]))

    def dsr(name):
        return dsr_of.get(name)

    # per experiment: validation vs out of sample, per-seed spread
    rows = {r["strategy"]: r for r in table.to_dict("records")}
    exp_table = []
    for e in experiments:
        efs = [trained[k][e.name] for k in trained]
        name = strat[e.name]
        by_month = {}
        for k in keys:
            m = months == k
            f = frames[name][m]
            by_month[k] = M.performance(f["pnl"].to_numpy(), f["position"].to_numpy(), sessions[m])["sharpe"]
        seed_oos = {
            s: M.performance(f["pnl"].to_numpy(), f["position"].to_numpy(), sessions)
            for (n, s), f in seed_frames.items()
            if n == e.name
        }
        exp_table.append(
            {
                "experiment": e.name,
                "strategy": name,
                "version": e.version,
                "description": e.description,
                "ensemble": e.ensemble,
                "seeds": list(seeds_of[e.name]),
                "validation_sharpe": float(np.nanmean([ef.validation["sharpe"] for ef in efs]))
                if any(np.isfinite(ef.validation["sharpe"]) for ef in efs)
                else None,
                "validation_sharpe_by_fold": {ef.fold.key: ef.validation["sharpe"] for ef in efs},
                "validation_turnover_per_session": float(
                    np.mean([ef.validation["turnover_per_session"] for ef in efs])
                ),
                "oos_sharpe": rows[name]["sharpe"],
                "oos_sharpe_by_fold": by_month,
                "oos_total_return": rows[name]["total_return"],
                "turnover_per_session": rows[name]["turnover_per_session"],
                "deflated_sharpe": dsr(name),
                "selected_in": [r["fold"] for r in fold_rows if r["selected"] == name],
                "seed_spread": {
                    "validation_sharpe": spread(r["valid_sharpe"] for ef in efs for r in ef.per_seed),
                    "oos_sharpe": spread(p["sharpe"] for p in seed_oos.values()),
                    "oos_total_return": spread(p["total_return"] for p in seed_oos.values()),
                    "oos_turnover_per_session": spread(p["turnover_per_session"] for p in seed_oos.values()),
                },
                "per_fold": [ef.summary() for ef in efs],
            }
        )

    report = {
        "args": vars(args),
        "bars": str(args.bars),
        "macro": str(args.macro),
        "costs": dataclasses.asdict(costs),
        "rate_bps": costs.rate * 1e4,
        "risk": dataclasses.asdict(limits),
        "fold_options": options,
        "selection_rule": {**rule.to_dict(), "text": rule_text(rule)},
        "lightgbm_config": gbm_config.to_dict() if gbm_config else None,
        "l0_l4": {**info, "wall_s": c_l4.wall},
        "folds": fold_rows,
        "selected": "selected",
        "selected_by_fold": {r["fold"]: r["selected"] for r in fold_rows},
        "experiments": exp_table,
        "n_trials": comparison["n_trials"],  # this run's experiments x seeds, plus --prior-trials
        "prior_trials": args.prior_trials,
        "trial_sharpe_per_session": dict(trials),
        "pbo": pbo_trials["pbo"] if pbo_trials else None,
        "pbo_detail": {"trials": pbo_trials, "experiments": pbo_experiments},
        "table": table.to_dict("records"),
        "oos": {"first": keys[0], "last": keys[-1], "bars": len(bars), "sessions": len(set(sessions))},
    }
    report["strategies"] = {
        r["strategy"]: {
            "total_return": r["total_return"],
            "sharpe": r["sharpe"],
            "sharpe_ci": [r.get("sharpe_ci_low"), r.get("sharpe_ci_high")],
            "turnover_per_session": r["turnover_per_session"],
        }
        for r in table.to_dict("records")
    }
    for name in ["selected", *strat.values(), *(["lightgbm"] if gbm_config else [])]:
        report["strategies"][name]["deflated_sharpe"] = dsr(name)  # N = experiments x seeds tried (+ prior trials)
    report["strategies"]["selected"]["picks"] = report["selected_by_fold"]

    log()
    log(f"=== out of sample {keys[0]}..{keys[-1]}: {len(set(sessions))} sessions, {costs.rate * 1e4:.1f} bps/unit ===")
    head = f"{'strategy':26} {'total ret':>9} {'Sharpe [95% CI]':>22} {'turnover/s':>10} {'DSR':>6}"
    lines = [head, "-" * len(head)]
    for name, v in report["strategies"].items():
        ci = f"{fnum(v['sharpe'], '{:.2f}')} [{fnum(v['sharpe_ci'][0], '{:.2f}')}, {fnum(v['sharpe_ci'][1], '{:.2f}')}]"
        lines.append(
            f"{name:26} {fnum(v['total_return'] * 100, '{:.2f}%'):>9} {ci:>22} "
            f"{fnum(v['turnover_per_session'], '{:.2f}'):>10} {fnum(v.get('deflated_sharpe'), '{:.3f}'):>6}"
        )
    xh = f"{'experiment':20} {'valid Sh':>9} {'OOS Sh':>8} {'OOS ret':>8} {'turnover/s':>10} {'seed OOS Sh':>16} picked"
    xlines = [xh, "-" * len(xh)]
    for r in exp_table:
        sp = r["seed_spread"]["oos_sharpe"]
        xlines.append(
            f"{r['experiment']:20} {fnum(r['validation_sharpe'], '{:.2f}'):>9} {fnum(r['oos_sharpe'], '{:.2f}'):>8} "
            f"{fnum(r['oos_total_return'] * 100, '{:.2f}%'):>8} {fnum(r['turnover_per_session'], '{:.2f}'):>10} "
            f"{fnum(sp['mean'], '{:.2f}') + ' +/- ' + fnum(sp['std'], '{:.2f}'):>16} {','.join(r['selected_in'])}"
        )
    for line in lines + [""] + xlines:
        log(line)
    if args.prior_trials:
        log(f"deflated Sharpe: N = {report['n_trials']} ({len(trials)} trials here + {args.prior_trials} before)")
    log(
        f"PBO over {len(trials)} trials (experiments x seeds): {fnum(report['pbo'])}; over the experiments: "
        f"{fnum(pbo_experiments['pbo'] if pbo_experiments else None)}"
    )
    total = time.perf_counter() - t_all
    report["wall"] = {"l1_l4_s": c_l4.wall, "training_s": t_train, "inference_s": t_inf, "total_s": total}
    report["printed"] = {"table": lines, "experiments": xlines}
    log(f"wall time: L0-L4 {c_l4.wall:.1f}s, training {t_train:.1f}s, inference {t_inf:.1f}s, total {total:.1f}s")
    json_path.write_text(json.dumps(clean(report), indent=1))
    log(f"figures written to {json_path}")
    return 0


# --- main -------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", default="2023-01..2024-06", help="fold months YYYY-MM..YYYY-MM (out-of-sample period)")
    ap.add_argument(
        "--every", type=int, default=1, help="train every N months, reusing the latest model in between (1)"
    )
    ap.add_argument(
        "--timesteps",
        type=int,
        default=None,
        help="PPO timesteps per fold (default: the asset's, USDCOP_PPO_TIMESTEPS or 50000)",
    )
    ap.add_argument("--n-boot", type=int, default=1000, help="session-bootstrap draws (1000, as l6/performance)")
    ap.add_argument("--no-fixed", action="store_true", help="skip the 'each model held fixed' staleness table")
    ap.add_argument("--no-lightgbm", action="store_true", help="skip the LightGBM baseline (backtest/gbm_baseline.py)")
    ap.add_argument("--json", default=None, help="write every figure here (default /tmp/walk_forward_<time>.json)")
    ap.add_argument("--bars", default=str(BARS_FILE), help="bar file (CSV/Parquet, as usdcop import --kind bars)")
    ap.add_argument("--macro", default=str(MACRO_FILE), help="macro file (as usdcop import --kind macro)")
    ap.add_argument(
        "--experiment",
        action="append",
        nargs="+",
        default=None,
        metavar="NAME",
        help="experiments to run (rl/experiments/*.toml or --experiments-dir); selection per fold on validation",
    )
    ap.add_argument("--experiments-dir", default=None, help="a user folder of experiment files (overrides by name)")
    ap.add_argument("--seeds", type=int, default=None, help="use only the first N seeds of each experiment (screening)")
    ap.add_argument(
        "--jobs", type=int, default=1, help="train the (fold, experiment) pairs in N processes (--experiment mode; 1)"
    )
    ap.add_argument(
        "--max-turnover", type=float, default=None, help="selection: only experiments at most this validation turnover"
    )
    ap.add_argument("--min-sharpe", type=float, default=None, help="selection: trade only at this validation Sharpe")
    ap.add_argument(
        "--fallback", default=None, choices=["flat"], help="selection: what is traded otherwise (e.g. flat)"
    )
    ap.add_argument(
        "--prior-trials",
        type=int,
        default=0,
        help="trials of earlier screens (other periods) counted in the deflated Sharpe's N (--experiment mode; 0)",
    )
    args = ap.parse_args()
    if args.prior_trials < 0:
        ap.error("--prior-trials must be >= 0")
    if args.min_sharpe is not None and args.fallback is None:
        ap.error("--min-sharpe needs --fallback (e.g. --fallback flat)")
    if args.every < 1:
        ap.error("--every must be >= 1")
    for name in ("bars", "macro"):
        if not Path(getattr(args, name)).is_file():
            ap.error(f"--{name} {getattr(args, name)}: no such file")
    if args.seeds is not None and args.seeds < 1:
        ap.error("--seeds must be >= 1")
    if args.experiment:
        from usdcop_assets.rl.experiments import load_experiment

        names = list(dict.fromkeys(n for group in args.experiment for n in group))
        try:
            experiments = [load_experiment(n, args.experiments_dir) for n in names]
        except ValueError as e:
            ap.error(str(e))
        return run_experiments(args, experiments)
    json_path = Path(args.json or f"/tmp/walk_forward_{time.strftime('%Y%m%d_%H%M%S')}.json")

    t_all = time.perf_counter()
    import numpy as np
    import stable_baselines3
    import torch

    from usdcop_assets.backtest import metrics as M
    from usdcop_assets.backtest.baselines import all_baselines
    from usdcop_assets.backtest.engine import compare
    from usdcop_assets.backtest.experiment_comparison import HELD, SELECTED, experiment_comparison
    from usdcop_assets.backtest.overfitting import deflated_sharpe_ratio, session_sharpe
    from usdcop_assets.core import calendar as cal
    from usdcop_assets.rl.costs import live_costs
    from usdcop_assets.rl.env import EnvConfig
    from usdcop_assets.rl.folds import fold_options_from_env, fold_sessions, fold_windows, warm_sessions
    from usdcop_assets.rl.risk import live_limits
    from usdcop_assets.rl.training import predict_positions, train_config_from_env, train_fold

    costs, limits = live_costs(), live_limits()
    config = train_config_from_env()
    if args.timesteps:
        config = dataclasses.replace(config, total_timesteps=int(args.timesteps))
    options = fold_options_from_env()
    keys = month_keys(args.folds)
    log(
        f"python {sys.version.split()[0]}, torch {torch.__version__}, sb3 {stable_baselines3.__version__}, "
        f"{os.cpu_count()} CPUs, load {loadavg()}"
    )
    log(f"costs {costs} -> rate {costs.rate * 1e4:.2f} bps per unit traded; risk {limits}")
    log(
        f"train config: timesteps {config.total_timesteps} ({config.n_checkpoints} checkpoints x "
        f"{config.chunk_timesteps}), "
        f"n_steps {config.n_steps}, batch {config.batch_size}, seed {config.seed}; folds {keys[0]}..{keys[-1]} "
        f"({len(keys)}), "
        f"train every {args.every}; fold options {options}"
    )

    gbm_config = None
    if not args.no_lightgbm:
        from usdcop_assets.backtest.gbm_baseline import GbmConfig, gbm_targets, train_gbm

        gbm_config = GbmConfig(seed=config.seed)
    report: dict = {
        "args": vars(args),
        "costs": dataclasses.asdict(costs),
        "rate_bps": costs.rate * 1e4,
        "risk": dataclasses.asdict(limits),
        "train_config": config.to_dict(),
        "fold_options": options,
        "lightgbm_config": gbm_config.to_dict() if gbm_config else None,
        "machine": {"cpus": os.cpu_count(), "load_start": loadavg()},
    }

    # L0 - L4
    with Clock() as c_l4:
        episodes, stats, obs_config, info = build_episodes(args.bars, args.macro)
    report["l0_l4"] = {**info, "wall_s": c_l4.wall, "cpu_s": c_l4.cpu}
    log(
        f"[L0-L4] {c_l4.wall:.1f}s: L0 {info['l0']['rows_read']} rows read, {info['l0']['rows_placed']} placed; L1 "
        f"kept {info['l1']['kept']}, "
        f"rejected {info['l1']['rejects']} {info['l1']['rejects_by_reason']}; episodes {info['l4']['episode_bars']} "
        "bars, "
        f"{info['l4']['sessions']} sessions ({info['l4']['warm_sessions']} warm); {info['l4']['obs_version']} fitted "
        "on "
        f"{info['l4']['train_window']} ({info['l4']['train_rows']} rows); per layer "
        f"{', '.join(f'{k} {v:.1f}s' for k, v in info['seconds'].items())}"
    )

    episodes = episodes.sort_values(["time"], kind="stable").reset_index(drop=True)
    month_of = episodes["session"].astype(str).str[:7]
    env_config = EnvConfig(costs=costs, risk=limits, sampling="sequential")

    # L5: training per fold (every N-th), inference cached per (model, month)
    models: dict[str, object] = {}  # fold key -> SB3 model
    fold_rows: list[dict] = []
    model_of_month: dict[str, str] = {}
    t_train = t_gbm = 0.0
    gbm_models: dict[str, object] = {}  # fold key -> GbmModel (every fold)
    current = None
    for i, key in enumerate(keys):
        if i % args.every == 0 or gbm_config:
            before = episodes[episodes["time"] < cal.session_open(fold_sessions(key)[0])]  # what l5/ppo_model reads
            fold = fold_windows(key, warm_sessions(before), **options)
        if gbm_config:
            with Clock() as c_gbm:
                gbm_models[key] = train_gbm(before, fold, gbm_config, obs_config)
            t_gbm += c_gbm.wall
            g = gbm_models[key]
            log(
                f"[L5] fold {key}: LightGBM {c_gbm.wall:.1f}s (fit {g.fit_seconds:.2f}s), {g.n_train} train / "
                f"{g.n_valid} valid rows, "
                f"best iteration {g.best_iteration}, valid log loss {g.valid_logloss:.4f}, valid hit rate "
                f"{g.valid_hit_rate:.3f}"
            )
        if i % args.every == 0:
            with Clock() as c:
                trained = train_fold(before, fold, config, obs_config, costs, risk=limits, obs_stats=stats)
            t_train += c.wall
            models[key] = trained.load()
            current = key
            sel = trained.metadata["selection"]
            fold_rows.append(
                {
                    "fold": key,
                    "model": key,
                    "trained": True,
                    "version": trained.version,
                    "train_first": str(fold.train_first),
                    "train_last": str(fold.train_last),
                    "n_train": fold.n_train,
                    "valid_first": str(fold.valid_first),
                    "valid_last": str(fold.valid_last),
                    "n_valid": fold.n_valid,
                    "selected_checkpoint": sel["checkpoint"],
                    "valid_sharpe": sel["valid_sharpe"],
                    "valid_sharpes": [r["valid_sharpe"] for r in trained.curve],
                    "train_mean_rewards": [r["train_mean_reward"] for r in trained.curve],
                    "train_s": c.wall,
                    "fps": trained.curve[-1]["timesteps"] / c.wall,
                }
            )
            log(
                f"[L5] fold {key}: trained {c.wall:.0f}s ({fold_rows[-1]['fps']:.0f} steps/s incl. validation), "
                f"{fold.n_train} train "
                f"{fold.train_first}..{fold.train_last}, valid {fold.valid_first}..{fold.valid_last}; valid Sharpe "
                "per checkpoint "
                f"{[fnum(v, '{:.2f}') for v in fold_rows[-1]['valid_sharpes']]} -> #{sel['checkpoint']}  (load "
                f"{loadavg()})"
            )
        else:
            fold_rows.append({"fold": key, "model": current, "trained": False, "valid_sharpe": None})
        if gbm_config:
            fold_rows[-1]["lightgbm"] = {
                **{k: v for k, v in gbm_models[key].summary().items() if k != "config"},
                "wall_s": c_gbm.wall,
            }
        model_of_month[key] = current

    # inference: walk-forward = each month with its model; fixed = each model from its fold to the end
    t_inf = 0.0
    cache: dict[tuple[str, str], np.ndarray] = {}

    def positions(model_key: str, month: str) -> np.ndarray:
        nonlocal t_inf
        if (model_key, month) in cache:
            return cache[(model_key, month)]
        rows = episodes.index[month_of == month]
        frame = episodes.loc[rows]
        out = np.zeros(len(frame))
        t0 = time.perf_counter()
        warm = frame.groupby("session")["warm"].transform("all").to_numpy(dtype=bool)
        if warm.any():
            pred = predict_positions(models[model_key], frame[warm], obs_config, env_config)
            pos = (
                frame[["session", "step"]]
                .assign(session=frame["session"].astype(str))
                .merge(pred[["session", "step", "position"]], on=["session", "step"], how="left")["position"]
                .to_numpy()
            )
            out = np.where(np.isnan(pos), 0.0, pos)  # not warm: flat, as l5/actions_m5 records it
        t_inf += time.perf_counter() - t0
        cache[(model_key, month)] = out
        return out

    oos = month_of.isin(keys).to_numpy()
    bars = episodes[oos].reset_index(drop=True)
    months = month_of[oos].reset_index(drop=True)
    sessions = bars["session"].astype(str).to_numpy()
    next_ret = bars["next_ret"].to_numpy(dtype="float64")
    close = bars["close"].to_numpy(dtype="float64")
    wf = np.concatenate([positions(model_of_month[k], k) for k in keys])
    t0 = time.perf_counter()
    gbm = {
        k: gbm_targets(gbm_models[k], episodes.loc[episodes.index[month_of == k]], obs_config) for k in gbm_models
    }  # not warm: 0
    t_gbm_inf = time.perf_counter() - t0
    first_model = keys[0]
    fixed_first = np.concatenate([positions(first_model, k) for k in keys])
    log(f"[L5] inference walk-forward + first model fixed: {t_inf:.1f}s")

    # L6: the comparison l6/experiment_performance makes (backtest.experiment_comparison), with the agent as the one
    # candidate and the selected strategy. The harness does not choose among the strategies (the checkpoint choice on
    # validation is inside each fold), so every strategy compared (the held buy-and-hold aside) is a trial: the N of
    # the agent's DSR and the columns of the PBO.
    with Clock() as c_bt:
        strategies = {"ppo_walk_forward": wf, f"ppo_fixed_{first_model}": fixed_first, **all_baselines(close, sessions)}
        if gbm_config:
            strategies["lightgbm"] = np.concatenate([gbm[k] for k in keys])
        comparison = experiment_comparison(
            bars,
            {"ppo_walk_forward": wf},
            strategies,
            wf,
            {k: v for k, v in strategies.items() if k in (f"ppo_fixed_{first_model}", "lightgbm")},
            costs,
            limits,
            n_boot=args.n_boot,
            seed=0,
        )
        # the agent is its own selection: its row once, the rows in the order listed above, the held one last
        # (buy-and-hold held over the whole out-of-sample period: overnight gaps, outside the risk rules)
        order = {name: i for i, name in enumerate([*strategies, HELD])}
        table = (
            comparison["table"]
            .loc[lambda t: t["strategy"] != SELECTED]
            .sort_values("strategy", key=lambda s: s.map(order), kind="stable")
            .drop(columns="deflated_sharpe")
            .reset_index(drop=True)
        )
        # per-fold: the month's bars only
        frames, held = {name: comparison["frames"][name] for name in strategies}, comparison["held"]
        gross = {  # the backtest frames and the held simulation's arrays alike
            name: {
                "gross_total_return": float(np.expm1(np.sum(f["gross"]))),
                "gross_sharpe": M.sharpe(np.asarray(f["gross"], dtype="float64")),
                "total_cost": float(np.sum(f["cost"])),
            }
            for name, f in {**frames, "buy_and_hold_held": held}.items()
        }
        table["gross_total_return"] = table["strategy"].map(lambda n: gross[n]["gross_total_return"])
        table["gross_sharpe"] = table["strategy"].map(lambda n: gross[n]["gross_sharpe"])
        table["total_cost_log"] = table["strategy"].map(lambda n: gross[n]["total_cost"])
        # per-session net returns (time order); the agent's DSR in full (sr, sr0, PSR) for the report
        session_pnl = {name: comparison["session_pnl"][name] for name in strategies}
        _, codes = np.unique(sessions, return_inverse=True)
        overfit = {
            "candidates": list(strategies),
            "n_trials": comparison["n_trials"],
            "selected": "ppo_walk_forward",
            "n_sessions": int(codes.max() + 1),
            "sharpe_per_session": comparison["trial_sharpe_per_session"],
            "deflated_sharpe": None,
            "pbo": comparison["pbo"],
        }
        try:
            overfit["deflated_sharpe"] = deflated_sharpe_ratio(
                session_pnl["ppo_walk_forward"], list(overfit["sharpe_per_session"].values())
            ).to_dict()
        except ValueError as e:
            overfit["deflated_sharpe_error"] = str(e)
        held_session_pnl = np.bincount(codes, weights=held["pnl"])
        for row in fold_rows:
            m = (months == row["fold"]).to_numpy()
            for name, short in (
                ("ppo_walk_forward", "oos"),
                ("buy_and_hold", "bh"),
                ("flat", "flat"),
                ("lightgbm", "lgbm"),
            ):
                if name not in frames:
                    continue
                f = frames[name][m]
                perf = M.performance(f["pnl"].to_numpy(), f["position"].to_numpy(), sessions[m])
                row[f"{short}_sharpe"] = perf["sharpe"]
                row[f"{short}_total_return"] = perf["total_return"]
                if short == "oos":
                    row.update(
                        oos_trades=perf["n_trades"],
                        oos_turnover=perf["turnover"],
                        oos_exposure=perf["exposure"],
                        sessions=perf["sessions"],
                        oos_cost=float(f["cost"].sum()),
                    )
    t_bt = c_bt.wall

    fixed_rows = []
    if not args.no_fixed:
        for k_i, key in enumerate(keys):
            if not fold_rows[k_i]["trained"]:
                continue
            sub_keys = keys[k_i:]
            m = months.isin(sub_keys).to_numpy()
            fx = np.concatenate([positions(key, k) for k in sub_keys])
            with Clock() as c:
                sub = compare(
                    {
                        "fixed": fx,
                        "walk_forward": wf[m],
                        "buy_and_hold": all_baselines(close[m], sessions[m])["buy_and_hold"],
                    },
                    next_ret[m],
                    sessions[m],
                    costs,
                    limits,
                    reference="walk_forward",
                    n_boot=args.n_boot,
                    seed=0,
                ).set_index("strategy")
            t_bt += c.wall
            fixed_rows.append(
                {
                    "model": key,
                    "period": f"{sub_keys[0]}..{sub_keys[-1]}",
                    "sessions": int(sub.loc["fixed", "sessions"]),
                    "fixed_sharpe": sub.loc["fixed", "sharpe"],
                    "fixed_total_return": sub.loc["fixed", "total_return"],
                    "walk_forward_sharpe": sub.loc["walk_forward", "sharpe"],
                    "walk_forward_total_return": sub.loc["walk_forward", "total_return"],
                    "bh_sharpe": sub.loc["buy_and_hold", "sharpe"],
                    "fixed_minus_wf_sharpe": sub.loc["fixed", "sharpe_diff_vs_walk_forward"],
                    "fixed_minus_wf_ci": [
                        sub.loc["fixed", "sharpe_diff_ci_low"],
                        sub.loc["fixed", "sharpe_diff_ci_high"],
                    ],
                }
            )
        log(f"[L5] inference incl. fixed models: {t_inf:.1f}s")

    total = time.perf_counter() - t_all

    # --- print ---
    log()
    log(
        f"=== out of sample {keys[0]}..{keys[-1]}: {len(bars)} bars, {len(set(sessions))} sessions; costs "
        f"{costs.spread_bps:g} bps spread + "
        f"{costs.slippage_bps:g} bps slippage = {costs.rate * 1e4:.1f} bps per unit traded; risk {limits}; "
        f"{config.total_timesteps} timesteps/fold, "
        f"train every {args.every} month(s) ==="
    )
    head = (
        f"{'strategy':22} {'total ret':>9} {'ann ret':>8} {'vol':>7} {'Sharpe [95% CI]':>22} "
        f"{'dSharpe vs B&H [95% CI]':>25} {'Sortino':>8} {'max DD':>7} {'trades':>7} {'turnover':>9} {'win rate':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in table.to_dict("records"):
        ci = (
            f"{fnum(r['sharpe'], '{:.2f}')} [{fnum(r['sharpe_ci_low'], '{:.2f}')}, "
            f"{fnum(r['sharpe_ci_high'], '{:.2f}')}]"
        )
        dci = (
            f"{fnum(r['sharpe_diff_vs_buy_and_hold'], '{:.2f}')} [{fnum(r['sharpe_diff_ci_low'], '{:.2f}')}, "
            f"{fnum(r['sharpe_diff_ci_high'], '{:.2f}')}]"
            if "sharpe_diff_vs_buy_and_hold" in r
            else ""
        )
        lines.append(
            f"{r['strategy']:22} {fnum(r['total_return'] * 100, '{:.2f}%'):>9} "
            f"{fnum(r['annualized_return'] * 100, '{:.2f}%'):>8} "
            f"{fnum(r['volatility'] * 100, '{:.2f}%'):>7} {ci:>22} {dci:>25} {fnum(r['sortino'], '{:.2f}'):>8} "
            f"{fnum(r['max_drawdown'] * 100, '{:.2f}%'):>7} {r['n_trades']:>7} {fnum(r['turnover'], '{:.1f}'):>9} "
            f"{fnum(r['win_rate'] * 100 if r['win_rate'] == r['win_rate'] else float('nan'), '{:.1f}%'):>8}"
        )
    for line in lines:
        log(line)
    glines = [
        "before costs (same positions, cost = 0): "
        + "; ".join(
            f"{r['strategy']} gross return {fnum(r['gross_total_return'] * 100, '{:.2f}%')}, gross Sharpe "
            f"{fnum(r['gross_sharpe'], '{:.2f}')}, "
            f"costs paid {fnum(r['total_cost_log'] * 1e4, '{:.0f}')} bp (log)"
            for r in table.to_dict("records")
            if r["strategy"] != "flat"
        )
    ]
    for line in glines:
        log(line)
    lines += glines
    log()
    log(
        "per fold (month): model used, validation Sharpe of the selected checkpoint (pre-fold), out-of-sample "
        "Sharpe/return of the agent, buy-and-hold"
    )
    fh = (
        f"{'fold':8} {'model':8} {'n_train':>7} {'valid Sh':>9} {'OOS Sh':>8} {'OOS ret':>8} {'B&H Sh':>8} "
        f"{'B&H ret':>8} {'trades':>6} {'turnover':>8} {'cost':>7}"
        + (f" {'LGBM Sh':>8} {'LGBM ret':>8} {'LGBM fit':>8}" if gbm_config else "")
    )
    flines = [fh]
    for r in fold_rows:
        flines.append(
            f"{r['fold']:8} {r['model']:8} {r.get('n_train', ''):>7} {fnum(r['valid_sharpe'], '{:.2f}'):>9} "
            f"{fnum(r['oos_sharpe'], '{:.2f}'):>8} "
            f"{fnum(r['oos_total_return'] * 100, '{:.2f}%'):>8} {fnum(r['bh_sharpe'], '{:.2f}'):>8} "
            f"{fnum(r['bh_total_return'] * 100, '{:.2f}%'):>8} "
            f"{r['oos_trades']:>6} {fnum(r['oos_turnover'], '{:.1f}'):>8} {fnum(r['oos_cost'] * 1e4, '{:.0f}bp'):>7}"
            + (
                f" {fnum(r['lgbm_sharpe'], '{:.2f}'):>8} {fnum(r['lgbm_total_return'] * 100, '{:.2f}%'):>8} "
                f"{fnum(r['lightgbm']['wall_s'], '{:.1f}s'):>8}"
                if gbm_config
                else ""
            )
        )
    for line in flines:
        log(line)
    tr = [r for r in fold_rows if r["trained"] and r["valid_sharpe"] is not None]
    if len(tr) >= 3:
        v = np.array([r["valid_sharpe"] for r in tr], dtype=float)
        o = np.array([r["oos_sharpe"] for r in tr], dtype=float)
        ok = np.isfinite(v) & np.isfinite(o)
        corr = float(np.corrcoef(v[ok], o[ok])[0, 1]) if ok.sum() >= 3 else float("nan")
        log(
            f"trained folds: mean validation Sharpe {np.nanmean(v):.2f}, mean OOS month Sharpe {np.nanmean(o):.2f}, "
            f"corr {corr:.2f}; "
            f"OOS Sharpe > 0 in {int((o > 0).sum())}/{len(o)} months"
        )
        report["valid_vs_oos"] = {
            "mean_valid": float(np.nanmean(v)),
            "mean_oos": float(np.nanmean(o)),
            "corr": corr,
            "oos_positive": int((o > 0).sum()),
            "n": len(o),
        }
    if fixed_rows:
        log()
        log("each trained model held fixed from its fold to the end vs the walk-forward agent on the same sessions")
        xh = (
            f"{'model':8} {'period':17} {'sessions':>8} {'fixed Sh':>9} {'fixed ret':>9} {'WF Sh':>7} {'WF ret':>8} "
            f"{'B&H Sh':>7} {'fixed-WF [95% CI]':>22}"
        )
        xlines = [xh]
        for r in fixed_rows:
            xlines.append(
                f"{r['model']:8} {r['period']:17} {r['sessions']:>8} {fnum(r['fixed_sharpe'], '{:.2f}'):>9} "
                f"{fnum(r['fixed_total_return'] * 100, '{:.2f}%'):>9} "
                f"{fnum(r['walk_forward_sharpe'], '{:.2f}'):>7} "
                f"{fnum(r['walk_forward_total_return'] * 100, '{:.2f}%'):>8} {fnum(r['bh_sharpe'], '{:.2f}'):>7} "
                f"{fnum(r['fixed_minus_wf_sharpe'], '{:.2f}')} [{fnum(r['fixed_minus_wf_ci'][0], '{:.2f}')}, "
                f"{fnum(r['fixed_minus_wf_ci'][1], '{:.2f}')}]"
            )
        for line in xlines:
            log(line)
    dsr = overfit["deflated_sharpe"]
    log(
        f"overfitting over the {overfit['n_trials']} strategies compared ({overfit['n_sessions']} sessions): "
        "ppo_walk_forward Sharpe per session "
        + (
            f"{dsr['sr']:.3f}, expected max of {dsr['n_trials']} false strategies {dsr['sr0']:.3f}, deflated Sharpe "
            f"ratio {dsr['dsr']:.3f} "
            f"(PSR vs 0: {dsr['psr_zero']:.3f})"
            if dsr
            else f"n/a ({overfit.get('deflated_sharpe_error')})"
        )
        + (
            f"; PBO (CSCV, {overfit['pbo']['n_splits']} splits, {overfit['pbo']['n_combinations']} combinations) "
            f"{overfit['pbo']['pbo']:.3f}"
            if overfit["pbo"]
            else "; PBO n/a"
        )
    )
    log()
    times = {
        "l1_l4_s": c_l4.wall,
        "training_s": t_train,
        "inference_s": t_inf,
        "backtest_s": t_bt,
        "total_s": total,
        "lightgbm_fit_s": t_gbm if gbm_config else None,
        "lightgbm_inference_s": t_gbm_inf if gbm_config else None,
    }
    log(
        f"wall time: L0-L4 {c_l4.wall:.1f}s, training {t_train:.1f}s ({sum(r['trained'] for r in fold_rows)} folds), "
        f"inference {t_inf:.1f}s, "
        f"backtest+metrics+bootstrap {t_bt:.1f}s, total {total:.1f}s; load average now {loadavg()}"
        + (f"; LightGBM {t_gbm:.1f}s for {len(gbm_models)} folds + {t_gbm_inf:.1f}s inference" if gbm_config else "")
    )
    report.update(
        table=table.to_dict("records"),
        folds=fold_rows,
        fixed=fixed_rows,
        wall=times,
        oos={"first": keys[0], "last": keys[-1], "bars": len(bars), "sessions": len(set(sessions))},
        printed={"table": lines, "folds": flines},
    )
    # the harness does not choose among the strategies (the checkpoint choice on validation is inside each fold):
    # the selected one is the agent under test, and its DSR counts every strategy it is compared with as a trial
    report["selected"] = "ppo_walk_forward"
    report["strategies"] = {
        r["strategy"]: {
            "total_return": r["total_return"],
            "sharpe": r["sharpe"],
            "sharpe_ci": [r.get("sharpe_ci_low"), r.get("sharpe_ci_high")],
            "turnover_per_session": r["turnover_per_session"],
            "sharpe_per_session": overfit["sharpe_per_session"][r["strategy"]]
            if r["strategy"] in overfit["sharpe_per_session"]
            else session_sharpe(held_session_pnl),
        }
        for r in table.to_dict("records")
    }
    report["strategies"][report["selected"]]["deflated_sharpe"] = dsr["dsr"] if dsr else None
    if gbm_config:  # the baseline deflated by the same N trials as the agent (None when its returns are degenerate)
        try:
            report["strategies"]["lightgbm"]["deflated_sharpe"] = deflated_sharpe_ratio(
                session_pnl["lightgbm"], list(overfit["sharpe_per_session"].values())
            ).dsr
        except ValueError as e:
            report["strategies"]["lightgbm"]["deflated_sharpe"] = None
            report["strategies"]["lightgbm"]["deflated_sharpe_error"] = str(e)
    report["pbo"] = overfit["pbo"]["pbo"] if overfit["pbo"] else None
    report["overfitting"] = overfit
    report["machine"]["load_end"] = loadavg()
    json_path.write_text(json.dumps(clean(report), indent=1))
    log(f"figures written to {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
