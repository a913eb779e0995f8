"""``usdcop experiment``: experiments from a terminal (list the files, run them over folds, compare them).

``run`` materializes, through Dagster and the configured instance (so each run shows in the UI like a Launchpad or
backfill run), for every fold of ``--folds`` and every experiment named: ``l5/experiment_model`` and
``l6/experiment_backtest`` (partition ``<experiment>|<fold>``), then each fold's ``l6/experiment_selection``, then
``l6/experiment_performance`` over those experiments and folds, and prints its table. ``compare`` re-runs only the
comparison over what is stored. The logic lives in the assets (``defs/layers/l5_experiments.py``,
``l6_experiments.py``); this module only parses, launches and prints.
"""

from __future__ import annotations

import math

import click
import pandas as pd

from usdcop_assets.console import dagster_logs_to, new_log_path
from usdcop_assets.core.settings import ConfigError, Settings

PERFORMANCE_OP = "l6__experiment_performance"
MODEL_OP = "l5__experiment_model"


def fold_range(spec: str) -> list[str]:
    """``YYYY-MM..YYYY-MM`` (or one ``YYYY-MM``) -> the months, in order; ValueError naming the form."""
    from usdcop_assets.rl.folds import parse_fold_key

    first, _, last = spec.partition("..")
    last = last or first
    try:
        y0, m0 = parse_fold_key(first)
        y1, m1 = parse_fold_key(last)
    except ValueError:
        raise ValueError(f"--folds {spec!r}: expected YYYY-MM..YYYY-MM") from None
    months = [f"{m // 12}-{m % 12 + 1:02d}" for m in range(y0 * 12 + m0 - 1, y1 * 12 + m1)]
    if not months:
        raise ValueError(f"--folds {spec!r}: the first month is after the last")
    return months


def _fmt(value, spec: str = "{:.2f}") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return spec.format(value)


def metrics_table(rows: pd.DataFrame) -> list[str]:
    """``rl_experiment_metrics`` rows as aligned text lines (the selected strategy first)."""
    head = f"{'strategy':26} {'return':>8} {'Sharpe [95% CI]':>22} {'turnover/s':>10} {'DSR':>6}  picked in"
    lines = [head, "-" * len(head)]
    order = rows.assign(_o=(rows["strategy"] != "selected").astype(int)).sort_values("_o", kind="stable")
    for r in order.to_dict("records"):
        ci = (
            f"{_fmt(r['sharpe_ratio'])} [{_fmt(r.get('sharpe_ci_low'))}, {_fmt(r.get('sharpe_ci_high'))}]"
            if r.get("sharpe_ratio") is not None
            else "-"
        )
        ret = _fmt(None if r["total_return"] is None else r["total_return"] * 100, "{:.2f}%")
        picked = r.get("selected_in")
        lines.append(
            f"{r['strategy']:26} {ret:>8} {ci:>22} {_fmt(r['turnover_per_session']):>10} "
            f"{_fmt(r.get('deflated_sharpe'), '{:.3f}'):>6}  {picked if isinstance(picked, str) else ''}"
        )
    return lines


def register(
    main: click.Group, open_instance, defs_of, failure_lines, check_home, prepare_environment, fold_history
) -> None:
    """Add the ``experiment`` group to the ``usdcop`` command group (``cli.py`` passes its helpers)."""

    @main.group()
    def experiment() -> None:
        """Experiments (files of rl/experiments/ and USDCOP_EXPERIMENTS_DIR): list, run over folds, compare."""

    @experiment.command("list")
    def list_() -> None:
        """Every experiment file: name, where it comes from, version (a hash of its settings), seeds, budget, and
        the folds trained in this home."""
        from usdcop_assets.defs.experiment_store import EXPERIMENTS_PREFIX, backtest_key, read_summary
        from usdcop_assets.rl.experiments import list_experiments, load_experiment
        from usdcop_assets.storage.lake.store import open_store

        try:
            settings = Settings.from_env()
            rows = list_experiments(settings.experiments_dir)
        except (ValueError, ConfigError) as exc:
            raise click.ClickException(str(exc)) from None
        store = open_store(settings.lake)
        click.echo(
            f"{'name':16} {'origin':8} {'version':12} {'seeds':10} {'timesteps':>9}  {'trained folds':30}  description"
        )
        for row in rows:
            e = load_experiment(row["name"], settings.experiments_dir)
            folds = sorted(
                {
                    k.split("/")[-2]
                    for k in store.list(f"{EXPERIMENTS_PREFIX}/{row['name']}/")
                    if k.endswith("summary.json")
                }
            )
            # trained = a summary; traded = its out-of-sample backtest too; stale = trained as another version
            traded = sum(store.get(backtest_key(row["name"], f)) is not None for f in folds)
            stale = sum((read_summary(store, row["name"], f) or {}).get("version") != e.version for f in folds)
            stale_text = f", stale {stale}" if stale else ""
            trained = f"{folds[0]}..{folds[-1]} ({len(folds)}, traded {traded}{stale_text})" if folds else "-"
            origin = row["origin"] + ("*" if row["overrides"] else "")
            click.echo(
                f"{row['name']:16} {origin:8} {row['version']:12} {','.join(map(str, e.seeds)):10} "
                f"{e.ppo.timesteps:>9}  {trained:30}  {row['description'][:70]}"
            )
        folder = settings.experiments_dir
        click.echo(
            f"user folder: {folder}"
            if folder
            else "user folder: none (add *.toml files to <USDCOP_HOME>/experiments "
            "or set USDCOP_EXPERIMENTS_DIR); * = overrides the package's file of that name"
        )

    @experiment.command()
    @click.argument("names", nargs=-1, required=True)
    @click.option("--folds", "folds_spec", required=True, help="fold months YYYY-MM..YYYY-MM (out of sample)")
    @click.option("--timesteps", type=click.IntRange(min=1), help="PPO timesteps per seed (default: the file's)")
    @click.option("--seeds", type=click.IntRange(min=1), help="only the first N seeds of each file (screening)")
    @click.option("--no-lightgbm", is_flag=True, help="leave the LightGBM baseline out of the comparison")
    @click.option(
        "--prior-trials",
        type=click.IntRange(min=0),
        default=0,
        help="trials of earlier screens on other periods, counted in the deflated Sharpe's N",
    )
    def run(
        names: tuple[str, ...],
        folds_spec: str,
        timesteps: int | None,
        seeds: int | None,
        no_lightgbm: bool,
        prior_trials: int,
    ):
        """Train and trade NAMES on every fold of --folds, select per fold on validation, compare out of sample."""
        from usdcop_assets.rl.experiments import load_experiment

        try:
            settings = prepare_environment()
            folds = fold_range(folds_spec)
            experiments = [load_experiment(n, settings.experiments_dir) for n in names]
        except (ValueError, ConfigError) as exc:
            raise click.ClickException(str(exc)) from None
        # refused before anything runs: a fold without enough L4 episodes before it, naming the backfill that helps
        for fold in folds:
            for e in experiments:
                try:
                    fold_history(settings, fold, e.fold_options(settings.training.fold_options()))
                except ValueError as exc:
                    raise click.ClickException(f"{e.name}: {exc}") from None
        check_home(writes=True)
        with dagster_logs_to(new_log_path(settings.home, "experiment")):
            _run(settings, names, folds, timesteps, seeds, no_lightgbm, prior_trials)

    def _run(settings, names, folds, timesteps, seeds, no_lightgbm, prior_trials) -> None:
        from usdcop_assets.defs.automation.jobs import EXPERIMENT_JOB, EXPERIMENT_SELECTION_JOB

        defs = defs_of()
        job = defs.resolve_job_def(EXPERIMENT_JOB)
        known = set(job.partitions_def.get_partitions_def_for_dimension("fold").get_partition_keys())
        outside = [f for f in folds if f not in known]
        if outside:
            raise click.ClickException(
                f"fold {outside[0]} is not a partition of l5/experiment_model (see `usdcop doctor`)"
            )
        config = {k: v for k, v in (("timesteps", timesteps), ("seeds", seeds)) if v is not None}
        instance = open_instance()
        tags = {"usdcop/launched_by": "usdcop experiment run"}
        for fold in folds:
            for name in names:
                result = job.execute_in_process(
                    instance=instance,
                    partition_key=f"{name}|{fold}",
                    raise_on_error=False,
                    tags=tags,
                    run_config={"ops": {MODEL_OP: {"config": config}}} if config else None,
                )
                if not result.success:
                    raise click.ClickException(
                        f"{name} fold {fold} failed (run {result.run_id}):"
                        + "".join("\n" + x for x in failure_lines(result))
                    )
                md = _metadata(result, "l5/experiment_model")
                bt = _metadata(result, "l6/experiment_backtest")
                click.echo(
                    f"{fold} {name}@{md['experiment_version']}: seeds {md['seeds']}, validation Sharpe "
                    f"{_fmt(md['valid_sharpe'])} over {md['valid_window']}; out of sample {bt['sessions']} sessions, "
                    f"return {_fmt(bt['total_return'] * 100, '{:.2f}%')}, turnover {_fmt(bt['turnover_per_session'])}"
                    f"/session (run {result.run_id[:8]})"
                )
            sel = defs.resolve_job_def(EXPERIMENT_SELECTION_JOB).execute_in_process(
                instance=instance, partition_key=fold, raise_on_error=False, tags=tags
            )
            if not sel.success:
                raise click.ClickException(
                    f"selection for fold {fold} failed:" + "".join("\n" + x for x in failure_lines(sel))
                )
            s = _metadata(sel, "l6/experiment_selection")
            click.echo(f"{fold} selected {s['selected']}: {s['reason']}")
        _compare(defs, instance, list(names), folds[0], folds[-1], not no_lightgbm, failure_lines, tags, prior_trials)

    @experiment.command()
    @click.argument("names", nargs=-1)
    @click.option("--folds", "folds_spec", help="fold months YYYY-MM..YYYY-MM (default: every fold stored)")
    @click.option("--no-lightgbm", is_flag=True, help="leave the LightGBM baseline out")
    @click.option(
        "--prior-trials",
        type=click.IntRange(min=0),
        default=0,
        help="trials of earlier screens on other periods, counted in the deflated Sharpe's N",
    )
    def compare(names: tuple[str, ...], folds_spec: str | None, no_lightgbm: bool, prior_trials: int) -> None:
        """Compare stored experiments out of sample (default: those the latest selection chose among)."""
        try:
            settings = prepare_environment()
            folds = fold_range(folds_spec) if folds_spec else [None]
        except (ValueError, ConfigError) as exc:
            raise click.ClickException(str(exc)) from None
        check_home(writes=True)
        tags = {"usdcop/launched_by": "usdcop experiment compare"}
        with dagster_logs_to(new_log_path(settings.home, "experiment")):
            _compare(
                defs_of(),
                open_instance(),
                list(names),
                folds[0],
                folds[-1],
                not no_lightgbm,
                failure_lines,
                tags,
                prior_trials,
            )


def _metadata(result, key: str) -> dict:
    for e in result.all_events:
        if e.event_type_value == "ASSET_MATERIALIZATION":
            mat = e.event_specific_data.materialization
            if "/".join(mat.asset_key.path) == key:
                return {k: v.value for k, v in mat.metadata.items()}
    raise KeyError(key)


def _compare(defs, instance, names, first, last, lightgbm, failure_lines, tags, prior_trials: int = 0) -> None:
    from usdcop_assets.defs.automation.jobs import EXPERIMENT_PERFORMANCE_JOB

    config = {
        "experiments": names or None,
        "first_fold": first,
        "last_fold": last,
        "lightgbm": lightgbm,
        "prior_trials": prior_trials,
    }
    result = defs.resolve_job_def(EXPERIMENT_PERFORMANCE_JOB).execute_in_process(
        instance=instance,
        raise_on_error=False,
        tags=tags,
        run_config={"ops": {PERFORMANCE_OP: {"config": config}}},
    )
    if not result.success:
        raise click.ClickException(
            "l6/experiment_performance failed:" + "".join("\n" + x for x in failure_lines(result))
        )
    md = _metadata(result, "l6/experiment_performance")
    rows = result.output_for_node(PERFORMANCE_OP)
    click.echo(
        f"out of sample, folds {md['folds']}: selected by fold {md['selected_by_fold']}; "
        f"{md['n_trials']} trials (experiments x seeds{f' + {prior_trials} tried before' if prior_trials else ''})"
    )
    for line in metrics_table(rows):
        click.echo(line)
    click.echo(
        f"deflated Sharpe of 'selected' {_fmt(md.get('selected_deflated_sharpe'), '{:.3f}')} (N = {md['n_trials']}); "
        f"PBO over the trials {_fmt(md.get('pbo'), '{:.2f}')}; rows in the warehouse table rl_experiment_metrics"
    )
    if md.get("report"):
        click.echo(f"report: {md['report']}")
    click.echo(
        "each fold's pick is registered in rl_served_models: USDCOP_SERVE=selection makes l5/actions_m5 and the live "
        "process trade it"
    )
