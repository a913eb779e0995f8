"""L6 research: each experiment traded out of sample, the selection per fold, and every candidate compared.

- ``l6/experiment_backtest`` (experiment x fold): the fold's seeds (``l5/experiment_model``), loaded only when their
  bytes match the SHA-256 its summary recorded, roll out on the L4 episodes of the fold's own month (sessions not
  warm: flat); the seeds' positions and their combination (mean or vote) go to the lake as
  ``experiments/backtest/<experiment>/<fold>.parquet`` with each bar's next return and close. A stale summary (the
  experiment file changed since: another version) is refused with the command that retrains it.
- ``l6/experiment_selection`` (fold; every experiment of the fold upstream, ``MultiToSingleDimensionPartitionMapping``):
  ``rl.selection.select`` on the experiments' validation figures, which only ever cover sessions before the fold
  (the rule refuses anything else); ``experiments/selection/<fold>.json``.
- ``l6/experiment_performance`` (unpartitioned): over the folds that have a selection and a backtest of every
  experiment compared, month by month the selected experiment's positions (``selected``), every experiment's
  ensemble, every seed alone (the trials), LightGBM trained per fold on the same windows, and the baselines, through
  ``backtest.experiments.experiment_comparison`` (same costs and risk rules; deflated Sharpe with N = experiments x
  seeds; PBO by CSCV). Rows to the lake and the warehouse (``rl_experiment_metrics``).

Thin wiring: the logic lives in ``usdcop_assets.rl`` and ``usdcop_assets.backtest``.
"""

import hashlib
import io
import json

import dagster as dg
import numpy as np
import pandas as pd

from usdcop_assets.backtest.experiment_comparison import SELECTED, experiment_comparison
from usdcop_assets.backtest.report import experiment_metric_rows, experiment_report_html, finite_or_none
from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import Settings
from usdcop_assets.defs.experiment_store import backtest_key, partition_dims, read_summary, summary_key
from usdcop_assets.defs.keys import (
    EPISODES,
    EXPERIMENT_BACKTEST,
    EXPERIMENT_MODEL,
    EXPERIMENT_PERFORMANCE,
    EXPERIMENT_SELECTION,
)
from usdcop_assets.defs.partitions import FOLD_DIM, Partitions
from usdcop_assets.defs.registry import ModelStoreResource
from usdcop_assets.defs.resources import LakeResource
from usdcop_assets.defs.run_config import at_least
from usdcop_assets.defs.windows import own_window
from usdcop_assets.observation.builder import load_config
from usdcop_assets.rl.costs import live_costs
from usdcop_assets.rl.experiments import load_experiment
from usdcop_assets.rl.folds import fold_sessions, fold_windows, warm_sessions
from usdcop_assets.rl.risk import live_limits
from usdcop_assets.rl.selection import SelectionRule, ValidationResult, select

SELECTION_PREFIX = "experiments/selection"
METRICS_TABLE = "rl_experiment_metrics"
REPORTS_PREFIX = "reports/experiments"  # one self-contained HTML page per evaluation date
SELECTION_RULE = SelectionRule()  # fixed in advance: the highest validation Sharpe of the ensemble


class ExperimentPerformanceConfig(dg.Config):
    """Which experiments and folds to compare (default: every experiment, every fold where all have a backtest)."""

    experiments: list[str] | None = None
    first_fold: str | None = None
    last_fold: str | None = None
    lightgbm: bool = True  # LightGBM per fold on the same windows, beside the experiments
    # trials tried before on other periods (earlier screens): counted in the deflated Sharpe's N, so a comparison
    # made after screening is judged against everything tried, not only the experiments compared here
    prior_trials: int = 0


def strategy_name(experiment: str) -> str:
    return f"ppo_{experiment}"


def selection_key(fold: str) -> str:
    return f"{SELECTION_PREFIX}/{fold}.json"


def fold_bounds(fold: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[open of the month's first session, close of its last)."""
    days = fold_sessions(fold)
    return cal.session_open(days[0]), cal.session_end(days[-1])


def _remedy(experiment: str, fold: str) -> str:
    return f"usdcop experiment run {experiment} --folds {fold}..{fold}"


def load_members(store, summary: dict) -> list:
    """The seeds' policies, each refused unless its bytes hash to the SHA-256 the summary recorded."""
    from usdcop_assets.rl.training import load_policy_artifact

    models = []
    for m in summary["members"]:
        blob = store.get(m["model_path"])
        if blob is None:
            raise FileNotFoundError(
                f"{m['model_path']} is missing from the lake: {_remedy(summary['experiment'], summary['fold'])}"
            )
        digest = hashlib.sha256(blob).hexdigest()
        if digest != m["artifact_sha256"]:
            raise ValueError(
                f"{m['model_path']}: sha256 {digest[:12]} differs from the recorded {m['artifact_sha256'][:12]} (not "
                f"parsed): {_remedy(summary['experiment'], summary['fold'])}"
            )
        models.append(load_policy_artifact(blob))
    return models


SERVED_COLUMNS = [  # sql/tables/rl_served_models.sql
    "time",
    "fold",
    "selected",
    "experiment",
    "experiment_version",
    "version",
    "ensemble",
    "seeds",
    "summary_path",
    "summary_sha256",
    "obs_version",
    "action_space",
    "no_trade_band",
    "min_hold_bars",
    "features",
    "valid_sharpe",
    "reason",
    "flat_reason",
]


def served_row(fold: str, fold_start: pd.Timestamp, chosen, summary_blob: bytes | None) -> pd.DataFrame:
    """The fold's ``rl_served_models`` row: the selected experiment's summary (path and SHA-256 of its bytes
    ``summary_blob``, which list the seeds' hashes), its combination, action rules and feature subset as the summary
    recorded them; or, when the rule fell back, a flat row saying why."""
    experiment = (chosen.detail or {}).get("experiment")
    base = {
        "time": fold_start,  # the fold partition's start, as l5/ppo_model's row (live_store.fold_start)
        "fold": fold,
        "selected": chosen.selected,
        "reason": chosen.reason,
        "valid_sharpe": chosen.scores.get(chosen.selected),
    }
    if experiment is None:
        row = {**base, "version": f"flat ({chosen.selected})", "flat_reason": chosen.reason}
        return pd.DataFrame([{c: row.get(c) for c in SERVED_COLUMNS}])  # every column: an upsert clears the old pick
    digest = hashlib.sha256(summary_blob).hexdigest()
    summary = json.loads(summary_blob)
    action, features = summary["experiment_file"]["action"], summary["experiment_file"].get("features")
    return pd.DataFrame(
        [
            {
                **base,
                "experiment": experiment,
                "experiment_version": summary["version"],
                "version": f"{experiment}@{summary['version']}:{digest[:12]}",
                "ensemble": summary["ensemble"],
                "seeds": len(summary["members"]),
                "summary_path": summary_key(experiment, fold),
                "summary_sha256": digest,
                "obs_version": summary["obs_version"],
                "action_space": action["space"],
                "no_trade_band": float(action["no_trade_band"]),
                "min_hold_bars": int(action["min_hold_bars"]),
                "features": json.dumps(list(features)) if features is not None else None,
                "flat_reason": None,  # every column: an upsert over a flat fold clears its reason
            }
        ]
    )[SERVED_COLUMNS]


def read_parquet(store, key: str) -> pd.DataFrame | None:
    blob = store.get(key)
    return pd.read_parquet(io.BytesIO(blob)) if blob else None


def build_l6_experiment_assets(parts: Partitions, settings: Settings) -> list[dg.AssetsDefinition]:
    """The research backtests, selection and comparison of a code location."""

    @dg.asset(
        key=EXPERIMENT_BACKTEST,
        deps=[EXPERIMENT_MODEL, dg.AssetDep(EPISODES, partition_mapping=dg.AllPartitionMapping())],
        partitions_def=parts.experiment_fold,
        group_name="research",
        kinds={"parquet"},
        description="The experiment's seeds and their combination traded on the fold's own month (out of sample), "
        "per bar; experiments/backtest/<experiment>/<fold>.parquet in the lake.",
    )
    def l6_experiment_backtest(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        from usdcop_assets.rl.ensemble import combine_positions, evaluate_positions, seed_positions

        name, fold_key = partition_dims(context)
        store = lake.store()
        summary = read_summary(store, name, fold_key)
        if summary is None:
            raise ValueError(f"no l5/experiment_model for {name} fold {fold_key}: {_remedy(name, fold_key)}")
        experiment = load_experiment(name, settings.experiments_dir)
        if summary["version"] != experiment.version:
            raise ValueError(
                f"{name} fold {fold_key} was trained as version {summary['version']}, the file is now "
                f"{experiment.version}: retrain it ({_remedy(name, fold_key)})"
            )
        start, end = fold_bounds(fold_key)
        frame = lake.table("/".join(EPISODES.path)).read(start, end)
        if frame.empty:
            raise ValueError(
                f"no L4 episodes in fold {fold_key} ({start.date()}..{end.date()}): materialize L0-L4 there first"
            )
        frame = frame.sort_values("time", kind="stable").reset_index(drop=True)
        obs_config = load_config()
        costs, limits = live_costs(), live_limits()
        config = experiment.train_config(summary["members"][0]["seed"], timesteps=summary.get("timesteps"))
        per = seed_positions(load_members(store, summary), frame, config, obs_config, costs, limits)
        combined = combine_positions(per, experiment.ensemble)
        out = frame[["time", "session", "step", "close", "next_ret"]].copy()
        out["session"] = out["session"].astype(str)
        out["experiment"], out["fold"], out["version"] = name, fold_key, experiment.version
        out["position"] = combined
        for m, p in zip(summary["members"], per):
            out[f"seed_{m['seed']}"] = p
        buf = io.BytesIO()
        out.to_parquet(buf, index=False)
        store.put(backtest_key(name, fold_key), buf.getvalue())
        fig = evaluate_positions(combined, out, costs, limits)
        return dg.MaterializeResult(
            metadata={
                "experiment": name,
                "fold": fold_key,
                "sessions": fig["sessions"],
                "bars": len(out),
                "total_return": fig["total_return"],
                "sharpe": finite_or_none(fig["sharpe"]),
                "turnover_per_session": finite_or_none(fig["turnover_per_session"]),
                "path": dg.MetadataValue.path(f"{lake.location}/{backtest_key(name, fold_key)}"),
            }
        )

    @dg.asset(
        key=EXPERIMENT_SELECTION,
        deps=[
            dg.AssetDep(
                EXPERIMENT_MODEL,
                partition_mapping=dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=FOLD_DIM),
            )
        ],
        partitions_def=parts.fold,
        group_name="research",
        kinds={"json"},
        description="The experiment to trade in the fold, chosen by a rule fixed in advance (highest validation "
        "Sharpe of the seed ensemble) on validation sessions before the fold only.",
    )
    def l6_experiment_selection(
        context: dg.AssetExecutionContext, lake: LakeResource, model_store: ModelStoreResource
    ) -> dg.MaterializeResult:
        fold_key = context.partition_key
        store = lake.store()
        blobs = {  # each summary read once: its bytes are hashed for the served row, then parsed
            n: b for n in parts.experiment.get_partition_keys() if (b := store.get(summary_key(n, fold_key)))
        }
        summaries = {n: json.loads(b) for n, b in blobs.items()}
        if not summaries:
            raise ValueError(
                f"no experiment was trained for fold {fold_key}: `usdcop experiment run NAME --folds "
                f"{fold_key}..{fold_key}` trains one"
            )
        candidates = [
            ValidationResult(
                strategy_name(n),
                tuple(s["valid_sessions"]),
                float(s["validation"]["sharpe"]) if s["validation"].get("sharpe") is not None else float("nan"),
                float(s["validation"]["turnover_per_session"]),
                {"experiment": n, "version": s["version"]},
            )
            for n, s in sorted(summaries.items())
        ]
        chosen = select(fold_sessions(fold_key)[0], candidates, SELECTION_RULE)
        record = {
            **chosen.to_dict(),
            "fold": fold_key,
            "rule": SELECTION_RULE.to_dict(),
            "experiment": (chosen.detail or {}).get("experiment"),
            "versions": {n: s["version"] for n, s in summaries.items()},
        }
        store.put(selection_key(fold_key), json.dumps(record, sort_keys=True, indent=1).encode())
        picked = (chosen.detail or {}).get("experiment")
        served = served_row(fold_key, own_window(context)[0], chosen, blobs.get(picked))
        model_store.register_served(served)  # what USDCOP_SERVE=selection trades in the fold
        context.log.info(f"fold {fold_key}: {chosen.selected} ({chosen.reason}); served as {served['version'][0]}")
        return dg.MaterializeResult(
            metadata={
                "selected": chosen.selected,
                "reason": chosen.reason,
                "scores": dg.MetadataValue.json(chosen.scores),
                "candidates": len(candidates),
                "served_version": str(served["version"][0]),
            }
        )

    @dg.asset(
        key=EXPERIMENT_PERFORMANCE,
        deps=[
            dg.AssetDep(EXPERIMENT_BACKTEST, partition_mapping=dg.AllPartitionMapping()),
            dg.AssetDep(EXPERIMENT_SELECTION, partition_mapping=dg.AllPartitionMapping()),
        ],
        io_manager_key="serving_io_manager",
        group_name="research",
        kinds={"parquet", "sql"},
        metadata={"warehouse_table": METRICS_TABLE},
        description="Out of sample: the validation-selected strategy, every experiment, every seed, LightGBM and the "
        "baselines on the same bars and costs, with the deflated Sharpe (N = experiments x seeds) and PBO.",
    )
    def l6_experiment_performance(
        context: dg.AssetExecutionContext, config: ExperimentPerformanceConfig, lake: LakeResource
    ) -> dg.Output[pd.DataFrame]:
        store = lake.store()
        records = {}
        for fold_key in parts.fold.get_partition_keys():
            if (config.first_fold and fold_key < config.first_fold) or (
                config.last_fold and fold_key > config.last_fold
            ):
                continue
            blob = store.get(selection_key(fold_key))
            if blob is not None:
                records[fold_key] = json.loads(blob)
        if not records:
            raise ValueError(
                "no fold has an l6/experiment_selection: `usdcop experiment run NAME ... --folds YYYY-MM..YYYY-MM` "
                "trains, trades and selects"
            )
        # the candidates: the ones given, else those the latest selection chose among; a fold counts only when its
        # selection chose among exactly these (so 'selected' is what that rule picked) and each has a backtest
        names = sorted(config.experiments or records[max(records)]["versions"])
        folds, frames, picks = [], {}, {}
        for fold_key, record in sorted(records.items()):
            if sorted(record["versions"]) != names:
                continue
            got = {n: read_parquet(store, backtest_key(n, fold_key)) for n in names}
            if any(f is None for f in got.values()):
                continue
            folds.append(fold_key)
            frames[fold_key] = got
            picks[fold_key] = record["experiment"]
        if not folds:
            raise ValueError(
                f"no fold has a selection among exactly {names} and a backtest of each: `usdcop experiment run "
                f"{' '.join(names)} --folds YYYY-MM..YYYY-MM` makes them"
            )
        bars, candidates, trials, selected, seeds_of = [], {}, {}, [], {}
        for fold_key in folds:
            got = frames[fold_key]
            base = got[names[0]]
            for n, f in got.items():
                if len(f) != len(base) or not (f["time"].to_numpy() == base["time"].to_numpy()).all():
                    raise ValueError(
                        f"fold {fold_key}: the backtests of {names[0]} and {n} cover different bars; re-materialize "
                        f"l6/experiment_backtest for the fold"
                    )
            bars.append(base[["time", "session", "close", "next_ret"]])
            for n, f in got.items():
                candidates.setdefault(strategy_name(n), []).append(f["position"].to_numpy())
                seed_cols = [c for c in f.columns if c.startswith("seed_")]
                seeds_of.setdefault(n, seed_cols)
                if seed_cols != seeds_of[n]:
                    raise ValueError(f"{n}: fold {fold_key} has seeds {seed_cols}, others {seeds_of[n]}")
                for c in seed_cols:
                    trials.setdefault(f"{strategy_name(n)}_{c}", []).append(f[c].to_numpy())
            selected.append(got[picks[fold_key]]["position"].to_numpy())
        bars_df = pd.concat(bars, ignore_index=True)
        extra = {}
        if config.lightgbm:
            extra["lightgbm"] = _lightgbm_positions(lake, folds, settings)
        comparison = experiment_comparison(
            bars_df,
            {k: np.concatenate(v) for k, v in candidates.items()},
            {k: np.concatenate(v) for k, v in trials.items()},
            np.concatenate(selected),
            extra,
            live_costs(),
            live_limits(),
            prior_trials=at_least(config, "prior_trials", 0),
        )
        computed_at = pd.Timestamp.now(tz="UTC").floor("s")
        metric_date = str(bars_df["session"].max())
        pbo = comparison["pbo"]["pbo"] if comparison["pbo"] else None
        rows = experiment_metric_rows(
            comparison, bars_df["session"], folds, {f: strategy_name(picks[f]) for f in folds}, computed_at
        )
        sel = rows.set_index("strategy").loc[SELECTED]
        report = f"{REPORTS_PREFIX}/{metric_date}.html"
        store.put(report, experiment_report_html(rows, comparison, {f: picks[f] for f in folds}).encode())
        return dg.Output(
            rows,
            metadata={
                "metric_date": metric_date,
                "folds": f"{folds[0]}..{folds[-1]} ({len(folds)})",
                "experiments": dg.MetadataValue.json(names),
                "selected_by_fold": dg.MetadataValue.json(picks),
                "selected_sharpe": finite_or_none(sel["sharpe_ratio"]),
                "selected_deflated_sharpe": finite_or_none(sel["deflated_sharpe"]),
                "selected_turnover_per_session": finite_or_none(sel["turnover_per_session"]),
                "n_trials": comparison["n_trials"],
                "pbo": finite_or_none(pbo),
                "report": dg.MetadataValue.path(f"{lake.location}/{report}"),
                "metrics": dg.MetadataValue.md(
                    rows[
                        [
                            "strategy",
                            "total_return",
                            "sharpe_ratio",
                            "sharpe_ci_low",
                            "sharpe_ci_high",
                            "turnover_per_session",
                            "deflated_sharpe",
                        ]
                    ].to_markdown(index=False)
                ),
            },
        )

    return [l6_experiment_backtest, l6_experiment_selection, l6_experiment_performance]


def _lightgbm_positions(lake: LakeResource, folds: list[str], settings: Settings) -> np.ndarray:
    """LightGBM (``backtest.gbm_baseline``) trained per fold on the fold's windows (the episodes before it), its
    targets on the fold's month: the supervised baseline beside PPO, on the same bars."""
    from usdcop_assets.backtest.gbm_baseline import GbmConfig, gbm_targets, train_gbm

    obs_config = load_config()
    table = lake.table("/".join(EPISODES.path))
    episodes = table.read(None, fold_bounds(folds[-1])[1]).sort_values("time", kind="stable").reset_index(drop=True)
    out = []
    for fold_key in folds:
        start, end = fold_bounds(fold_key)
        before = episodes[episodes["time"] < start]
        model = train_gbm(
            before,
            fold_windows(fold_key, warm_sessions(before), **settings.training.fold_options()),
            GbmConfig(),
            obs_config,
        )
        out.append(gbm_targets(model, episodes[(episodes["time"] >= start) & (episodes["time"] < end)], obs_config))
    return np.concatenate(out)
