"""First render of every dashboard page with six years materialized: seconds and the process's peak memory.
Prints figures (and writes them as JSON with ``--json PATH``); asserts nothing.

The fixture is built straight with the project's pure functions and its lake/warehouse writers under a
temporary ``USDCOP_HOME`` (through Dagster, six years of layers would take hours):

- L1: six years of synthetic bars, ``refine.standardize_bars`` -> warehouse ``usdcop_m5_ohlcv`` + lake;
- L2: ``features.indicators.compute_indicators`` -> warehouse ``usdcop_m5_indicators`` + lake;
- L3: STAND-IN feature values (the observation config's feature columns, seeded normal noise: the pages
  only read them), then the real monthly ``fit_months`` / ``build_observations`` (L4) and
  ``build_episodes``;
- L5: a stand-in policy (sign of EMA20 - EMA50, half size, flat at the session end) as ``l5/actions_m5``,
  ``rl.paper.paper_ledger`` -> warehouse ``paper_trades`` / ``paper_positions``; one ``rl_models`` row
  per month;
- L6: ``backtest_sessions`` -> lake ``l6/backtest_session``; ``compare`` / ``metrics_rows`` / ``report_html``
  -> ``rl_metrics`` and the HTML report (what ``l6/performance`` does);
- the Dagster instance: one runless materialization per session partition of each session asset (and
  one per unpartitioned asset) with its data version, so the pipeline and audit pages read a six-year
  event log (``--no-instance`` skips it).

Each page then renders in its own child process (cold caches, its own peak RSS) through Streamlit's AppTest:
the page's first render (wall and CPU seconds of the process: on a shared machine the CPU figure is the
steadier one; the 1-minute load average is printed beside it), a warm rerun, and for the terminal the
full-history (daily) view.

    .venv/bin/python bench/dashboard_render.py [--years 6] [--postgres] [--json out.json] [--home DIR]

``--home DIR`` reuses (or builds once into) DIR instead of a temporary home. ``--postgres`` puts the
warehouse in a fresh database on the local PostgreSQL (``USDCOP_TEST_PG``) and drops it afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = {
    "terminal": "views/terminal.py",
    "model": "views/model.py",
    "research": "views/research.py",
    "pipeline": "views/pipeline.py",
    "features": "views/features.py",
    "quality": "views/quality.py",
    "audit": "views/audit.py",
}


def log(msg: str) -> None:
    print(msg, flush=True)


def build_home(home: Path, years: int, warehouse_url: str, instance: bool) -> dict:
    import numpy as np
    import pandas as pd

    from usdcop_assets.backtest.baselines import all_baselines
    from usdcop_assets.backtest.engine import backtest_sessions, compare
    from usdcop_assets.backtest.report import metrics_rows, report_html
    from usdcop_assets.core import calendar as cal
    from usdcop_assets.core.settings import Settings
    from usdcop_assets.features.indicators import compute_indicators
    from usdcop_assets.observation.builder import build_observations, load_config, stats_to_frame
    from usdcop_assets.observation.episodes import build_episodes
    from usdcop_assets.observation.normalization import fit_months, month_start, months_between, shift_month
    from usdcop_assets.refine.standardize import standardize_bars
    from usdcop_assets.rl.costs import live_costs
    from usdcop_assets.rl.paper import paper_ledger
    from usdcop_assets.rl.risk import live_limits
    from usdcop_assets.sources.synthetic import synthetic_bars
    from usdcop_assets.storage.lake.session_table import SessionTable
    from usdcop_assets.storage.lake.store import open_store
    from usdcop_assets.storage.warehouse.database import Warehouse

    timings = {}
    t0 = time.perf_counter()
    last = dt.date(2025, 12, 31)
    days = cal.trading_days(dt.date(last.year - years + 1, 1, 1), last)
    window = (cal.session_open(days[0]), cal.session_end(days[-1]))
    settings = Settings.from_env({"USDCOP_HOME": str(home)})
    store = open_store(settings.lake)
    wh = Warehouse(warehouse_url)
    wh.ensure_schema()

    def lake(dataset: str, frame: pd.DataFrame) -> None:
        SessionTable(store, dataset).write(frame, *window)

    kept, _rejects = standardize_bars(synthetic_bars(cal.bars_of_days(days)))
    wh.upsert("usdcop_m5_ohlcv", kept)
    lake("l1/ohlcv_m5", kept)
    timings["L1 (bars)"] = time.perf_counter() - t0

    t = time.perf_counter()
    ind = compute_indicators(kept)
    wh.upsert("usdcop_m5_indicators", ind)
    lake("l2/indicators_m5", ind)
    timings["L2 (indicators)"] = time.perf_counter() - t

    t = time.perf_counter()
    os.environ["USDCOP_OBS_TRAIN_WINDOW"] = f"{days[0]}..{days[len(days) // 2]}"  # the first half: a declared window
    config = load_config()
    rng = np.random.default_rng(0)
    feats = pd.DataFrame({"time": kept["time"], "symbol": kept["symbol"]})
    for name in config.features:
        feats[name] = rng.normal(size=len(kept))
    feats["warm"] = True
    lake("l3/features_m5", feats)
    months = months_between(days[0], days[-1])
    stats = stats_to_frame(fit_months(feats, config, months))  # monthly, as L4 fits them
    SessionTable(store, "l4/observation_stats").write(
        stats, month_start(months[0]), month_start(shift_month(months[-1], 1))
    )
    from usdcop_assets.observation.builder import stats_from_frame

    obs = build_observations(feats, config, stats_from_frame(stats))
    lake("l4/observations_m5", obs)
    episodes = build_episodes(obs, kept, *window)
    lake("l4/episodes_session", episodes)
    timings["L3-L4 (stand-in features)"] = time.perf_counter() - t

    t = time.perf_counter()
    sessions = episodes["session"].astype(str)
    trend = np.sign(
        (ind.set_index("time")["ema_20"] - ind.set_index("time")["ema_50"])
        .reindex(episodes["time"])
        .fillna(0)
        .to_numpy()
    )
    position = np.where(episodes["is_last"].to_numpy(), 0.0, 0.5 * trend)
    folds = sessions.str[:7]
    actions = pd.DataFrame(
        {
            "time": episodes["time"],
            "symbol": "USD/COP",
            "session": sessions,
            "step": episodes["step"],
            "raw_action": position,
            "target": position,
            "position": position,
            "risk_flags": 0,
            "model_version": folds + "-bench",
            "fold": folds,
            "obs_version": config.version,
            "obs_hash": "0" * 64,
            "inference_latency_ms": 0.0,
            "fallback": None,
        }
    )
    lake("l5/actions_m5", actions)
    wh.upsert("fact_rl_inference", actions)
    trades, positions = paper_ledger(actions, kept, live_costs())
    wh.upsert("paper_trades", trades)
    wh.upsert("paper_positions", positions)
    models = pd.DataFrame({"fold": sorted(set(folds))})
    models["time"] = [
        cal.session_open(dt.date.fromisoformat(f + "-01")) - pd.Timedelta(hours=8) for f in models["fold"]
    ]
    for c, v in (
        ("version", models["fold"] + "-bench"),
        ("artifact_sha256", "0" * 64),
        ("weights_sha256", "0" * 64),
        ("obs_version", config.version),
        ("model_path", "models/bench"),
        ("valid_sharpe", 0.5),
        ("train_sessions", 250),
    ):
        models[c] = v
    wh.upsert("rl_models", models)
    timings["L5 (stand-in policy, paper ledger)"] = time.perf_counter() - t

    t = time.perf_counter()
    bt = backtest_sessions(actions, episodes)
    lake("l6/backtest_session", bt)
    s = bt["session"].astype(str).to_numpy()
    strategies = {"ppo": bt["position"].to_numpy(), **all_baselines(bt["close"].to_numpy(), s)}
    table = compare(
        strategies,
        bt["next_ret"].to_numpy(),
        s,
        live_costs(),
        live_limits(),
        reference="buy_and_hold",
        n_boot=200,
        seed=0,
    )
    rows = metrics_rows(table, bt, pd.Timestamp.now(tz="UTC").floor("s"))
    wh.upsert("rl_metrics", rows)
    store.put(f"reports/performance/{rows['metric_date'].iloc[0]}.html", report_html(rows, {}, bt).encode())
    timings["L6 (backtests, performance)"] = time.perf_counter() - t
    wh.dispose()

    if instance:
        t = time.perf_counter()
        events = fill_instance(home, days)
        timings[f"Dagster instance ({events:,} runless materializations)"] = time.perf_counter() - t
    return {
        "bars": len(kept),
        "sessions": len(days),
        "first": days[0].isoformat(),
        "last": days[-1].isoformat(),
        "setup_s": timings,
    }


def fill_instance(home: Path, days: list) -> int:
    """One runless materialization per session of each session asset (with a data version), one per other asset."""
    import dagster as dg

    from usdcop_assets.cli import open_instance, prepare_environment
    from usdcop_assets.storage.lake.datasets import SESSION_DATASETS

    os.environ["USDCOP_HOME"] = str(home)
    instance = open_instance(prepare_environment())  # from the settings' DAGSTER_HOME (the CLI exports none)
    session_assets = SESSION_DATASETS
    n = 0
    for asset in session_assets:
        key = dg.AssetKey(asset.split("/"))
        for day in days:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    key,
                    partition=day.isoformat(),
                    metadata={"data_version": f"{hash((asset, day)) & (2**64 - 1):016x}"},
                )
            )
            n += 1
    for asset, part in (
        ("l4/observation_stats", None),
        ("l5/ppo_model", days[-1].strftime("%Y-%m")),
        ("l6/performance", None),
    ):
        instance.report_runless_asset_event(dg.AssetMaterialization(dg.AssetKey(asset.split("/")), partition=part))
        n += 1
    instance.dispose()
    return n


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: per address space, so not the parent's, which ``ru_maxrss`` keeps across
    exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def warm_imports() -> None:
    """The once-per-server-process costs no page's data changes: the holiday calendar's country tables, and
    plotly's lazily imported validators (one figure of each kind on toy data)."""
    import pandas as pd

    sys.path.insert(0, str(ROOT / "streamlit_app"))
    import charts

    from usdcop_assets.core import calendar as cal

    cal.colombian_holidays(2019, 2027)
    t = cal.bars_of_days([dt.date(2025, 3, 20)])
    bars = pd.DataFrame(
        {
            "time": t,
            "open": 1.0,
            "high": 2.0,
            "low": 0.5,
            "close": 1.5,
            "ema_20": 1.0,
            "ema_50": 1.0,
            "bb_upper": 2.0,
            "bb_lower": 0.5,
            "o_x": 0.1,
        }
    )
    pos = pd.DataFrame({"time": t, "position": 0.0, "session_pnl": 0.0})
    marks = pd.DataFrame({"time": t[:3], "position": [1.0, -1.0, 0.0], "kind": ["long", "short", "exit"]})
    curves = pd.DataFrame(
        {
            "session": pd.to_datetime(["2025-03-20", "2025-03-21"]),
            "strategy": "ppo",
            "equity": 1.0,
            "drawdown": 0.0,
            "rolling_sharpe": 0.0,
        }
    )
    for fig in (
        charts.candlestick(bars, "x", markers=marks, positions=pos, paper=pos),
        charts.equity_drawdown(curves, "x"),
        charts.rolling_sharpe(curves, "x"),
        charts.histogram(pd.Series([1.0]), "x", "x"),
        charts.vector_chart(pd.DataFrame({"position": [0], "feature": ["x"], "value": [0.1]}), "x"),
        charts.history_chart(bars, ["o_x"], "x"),
        charts.bar_chart(pd.DataFrame({"r": ["a"], "n": [1]}), "r", "n", "x"),
    ):
        fig.to_json()


def render(page: str) -> dict:
    """Child mode, as a running server sees a page opened for the first time on this data: the interpreter warmed
    on an empty home (modules imported, dagster too, AppTest set up), then with cold caches for the bench home
    -> ``first_render_s``; a rerun (warm caches) -> ``rerun_s``; the terminal's daily view -> ``full_history_s``."""
    import dagster  # noqa: F401  (what a server has imported once it opened the instance for any page)
    from streamlit.testing.v1 import AppTest

    warmed = os.environ.get("BENCH_WARM_IMPORTS") == "1"
    if warmed:
        warm_imports()

    home = os.environ["USDCOP_HOME"]
    baseline = []
    for _ in range(2):  # caches are keyed on the configuration: empty homes warm nothing of `home`
        with tempfile.TemporaryDirectory() as empty:
            os.environ["USDCOP_HOME"] = empty
            warm = AppTest.from_file(str(ROOT / "streamlit_app" / "app.py"), default_timeout=300)
            warm.switch_page(PAGES[page])
            t0, c0 = time.perf_counter(), time.process_time()
            warm.run()
            baseline.append((time.perf_counter() - t0, time.process_time() - c0))
    rss_warm = peak_rss_mb()
    os.environ["USDCOP_HOME"] = home
    at = AppTest.from_file(str(ROOT / "streamlit_app" / "app.py"), default_timeout=300)
    at.switch_page(PAGES[page])
    t0, c0 = time.perf_counter(), time.process_time()
    at.run()
    first, first_cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {
        "page": page,
        "warm_imports": warmed,
        "first_render_s": round(first, 3),
        "first_render_cpu_s": round(first_cpu, 3),
        "load_average": os.getloadavg()[0],
        "empty_home_render_s": round(baseline[-1][0], 3),
        "empty_home_render_cpu_s": round(baseline[-1][1], 3),
        "exceptions": [str(e.value) for e in at.exception],
        "title": [t.value for t in at.title],
        "charts": len(at.get("plotly_chart")),
        "tables": len(at.dataframe),
        "metrics": [(m.label, m.value) for m in at.metric][:4],
        "peak_rss_first_render_mb": round(peak_rss_mb(), 1),
        "peak_rss_interpreter_mb": round(rss_warm, 1),
    }
    t0 = time.perf_counter()
    at.run()
    out["rerun_s"] = round(time.perf_counter() - t0, 3)
    if page == "terminal":
        t0 = time.perf_counter()
        at.radio(key="history").set_value("Full history (daily)").run()
        out["full_history_s"] = round(time.perf_counter() - t0, 3)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--years", type=int, default=6)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--no-instance", action="store_true")
    parser.add_argument("--home", help="build into / reuse this home instead of a temporary one")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--pages", default=",".join(PAGES))
    parser.add_argument("--render-only", help=argparse.SUPPRESS)  # child mode: the page to render
    args = parser.parse_args()
    if args.render_only:
        print("RESULT " + json.dumps(render(args.render_only)), flush=True)
        return
    for var in ("USDCOP_LAKE_URL", "USDCOP_WAREHOUSE_URL", "DAGSTER_HOME"):
        os.environ.pop(var, None)
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="usdcop_dash_bench_"))
    url, drop = f"sqlite:///{home / 'warehouse.sqlite'}", None
    if args.postgres:
        import uuid

        import sqlalchemy as sa

        server = os.environ.get("USDCOP_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
        name = f"dash_bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        url = server.rsplit("/", 1)[0] + f"/{name}"
        drop = (admin, name)
    report: dict = {"years": args.years, "warehouse": "PostgreSQL" if args.postgres else "SQLite", "home": str(home)}
    marker = home / ".bench-built"
    try:
        if marker.is_file() and not args.postgres:
            report["fixture"] = json.loads(marker.read_text())
            log(f"reusing {home}")
        else:
            home.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            report["fixture"] = build_home(home, args.years, url, not args.no_instance)
            report["fixture"]["total_setup_s"] = round(time.perf_counter() - t0, 1)
            marker.write_text(json.dumps(report["fixture"]))
        fx = report["fixture"]
        log(
            f"fixture: {fx['bars']:,} bars over {fx['sessions']:,} sessions ({fx['first']} .. {fx['last']}); "
            f"warehouse {report['warehouse']}"
        )
        for stage, secs in fx.get("setup_s", {}).items():
            log(f"  setup {stage}: {secs:.1f} s")
        env = {
            **os.environ,
            "USDCOP_HOME": str(home),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        if args.postgres:
            env["USDCOP_WAREHOUSE_URL"] = url
        report["pages"] = []
        runs = [(page, warm) for warm in ("0", "1") for page in args.pages.split(",")]
        for page, warm in runs:
            if page == args.pages.split(",")[0]:
                log(
                    "one-time imports (holiday tables, plotly validators) "
                    + ("done before the render" if warm == "1" else "inside the first render")
                )
            proc = subprocess.run(
                [sys.executable, __file__, "--render-only", page],
                env={**env, "BENCH_WARM_IMPORTS": warm},
                capture_output=True,
                text=True,
            )
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                log(f"{page}: child failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
                continue
            res = json.loads(line[7:])
            report["pages"].append(res)
            extra = "".join(f", {k.replace('_s', '')} {res[k]:.2f} s" for k in ("full_history_s",) if k in res)
            log(
                f"{page:9s} first render {res['first_render_s']:.2f} s, {res['first_render_cpu_s']:.2f} CPU s "
                f"(load {res['load_average']:.1f}; on an empty home {res['empty_home_render_s']:.2f} s, "
                f"{res['empty_home_render_cpu_s']:.2f} CPU s; rerun {res['rerun_s']:.2f} s{extra}); peak RSS "
                f"{res['peak_rss_first_render_mb']:.0f} MB after the first render "
                f"({res['peak_rss_interpreter_mb']:.0f} MB the warmed "
                f"interpreter, {res['peak_rss_mb']:.0f} MB at the end); charts {res['charts']}, tables {res['tables']}"
                + (f"; EXCEPTIONS {res['exceptions']}" if res["exceptions"] else "")
            )
    finally:
        if drop:
            with drop[0].connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {drop[1]} WITH (FORCE)")
            drop[0].dispose()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
        log(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
