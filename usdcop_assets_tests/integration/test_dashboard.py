"""The Streamlit dashboard (streamlit_app/): every page through Streamlit's AppTest after a main-job-like run
(``main_job_home``: L0-L4, one trained fold, its actions, backtests and performance; dashboard_home.py),
asserting that what a page shows equals what the warehouse and the lake hold, and on an empty home (each
page says what to run); plus its pure read-only layer."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "streamlit_app" / "app.py"
sys.path.insert(0, str(APP.parent))

import data  # noqa: E402  (streamlit_app/data.py)

from usdcop_assets.core import calendar as cal  # noqa: E402

PAGES = [
    "views/terminal.py",
    "views/model.py",
    "views/pipeline.py",
    "views/features.py",
    "views/quality.py",
    "views/audit.py",
]
TITLES = dict(zip(PAGES, ["Trading terminal", "Model and backtest", "Pipeline", "Features", "Data quality", "Audit"]))
MAIN = ".venv/bin/usdcop run"  # the main job every empty page points at
RESEARCH = "views/research.py"  # not in PAGES: its empty state names `usdcop experiment run`, not the main job
TITLES[RESEARCH] = "Research"


def _point_at(monkeypatch, home: Path) -> None:
    for var in data.CONFIG_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv(data.DAGSTER_UI_ENV, raising=False)
    monkeypatch.setenv("USDCOP_HOME", str(home))


def _run(page: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    if page != PAGES[0]:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == [TITLES[page]]
    return at


def _texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def _metrics(at) -> dict:
    return {m.label: m.value for m in at.metric}


def _deltas(at) -> dict:
    return {m.label: m.delta for m in at.metric}


def _figures(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _values(v) -> np.ndarray:
    """A plotly JSON array: a list, or numpy's typed-array encoding ({"dtype", "bdata"})."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v)


def _warehouse(home: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(f"file:{home / 'warehouse.sqlite'}?mode=ro", uri=True) as conn:
        return conn.execute(sql).fetchall()


def _lake(home: Path, dataset: str) -> pd.DataFrame:
    src = data.sources((("USDCOP_HOME", str(home)),))
    return data.read_all_lake(src, dataset)


def test_terminal_shows_the_warehouse(main_job_home, monkeypatch):
    _point_at(monkeypatch, main_job_home)
    at = _run(PAGES[0])
    assert not at.error, _texts(at.error)
    ((n_bars,),) = _warehouse(main_job_home, "SELECT COUNT(*) FROM usdcop_m5_ohlcv")
    assert f"SYNTHETIC DATA: {n_bars:,} of {n_bars:,} bars" in _texts(at.warning)  # the marker on every page
    ((time, close),) = _warehouse(main_job_home, "SELECT time, close FROM usdcop_m5_ohlcv ORDER BY time DESC LIMIT 1")
    metrics, deltas = _metrics(at), _deltas(at)
    assert metrics["Latest price · SYNTHETIC"] == f"{close:,.2f}"
    last = pd.Timestamp(time).tz_convert(cal.TZ)
    assert (
        (metrics["Last bar (Bogota)"], deltas["Last bar (Bogota)"])
        == (f"{last:%H:%M}", f"{last:%a %Y-%m-%d}")
        == ("12:55", "Fri 2025-02-28")
    )
    ((pnl, target),) = _warehouse(
        main_job_home, "SELECT session_pnl, next_target FROM paper_positions ORDER BY time DESC LIMIT 1"
    )
    assert metrics["Session P&L (paper)"] == f"{pnl * 1e4:+.1f} bp" and metrics["Agent position"] == f"{target:+.2f}"

    (fig,) = _figures(at)
    traces = {t.get("name"): t for t in fig["data"]}
    candles = traces["USD/COP"]
    assert candles["type"] == "candlestick" and len(candles["x"]) == 20 * cal.BARS_PER_SESSION  # the last 20 sessions
    assert _values(candles["close"])[-1] == pytest.approx(close)
    assert candles["x"][-1].startswith("2025-02-28T12:55")  # Bogota wall-clock time on the axis
    assert fig["layout"]["xaxis3"]["title"]["text"] == "time (Bogota, UTC−5)"
    # nights, weekends and holidays are skipped: one break between each pair of the 20 sessions
    breaks = fig["layout"]["xaxis"]["rangebreaks"]
    assert len(breaks) == 19 and breaks[0]["bounds"] == ["2025-02-03 13:00:00", "2025-02-04 08:00:00"]
    assert {"bounds": ["2025-02-07 13:00:00", "2025-02-10 08:00:00"]} in breaks  # Friday's close to Monday's open
    # the agent's entries and exits are the l5/actions_m5 position changes of the window
    actions = _lake(main_job_home, "l5/actions_m5")
    window = actions[actions["time"] >= pd.Timestamp(candles["x"][0]).tz_localize(cal.TZ)]
    expected = data.markers_of(window[["time", "position", "model_version"]].reset_index(drop=True))
    shown = sum(len(traces[f"agent {k}"]["x"]) for k in ("long", "short", "exit") if f"agent {k}" in traces)
    assert shown == len(expected) > 0
    assert _values(traces["agent position"]["y"]).tolist() == window["position"].tolist()
    models = ", ".join(sorted(window["model_version"].astype(str).unique()))
    assert f"(models {models}; now serving l5/ppo_model, USDCOP_SERVE=ppo_model)" in _texts(at.caption)


def test_model_page_is_the_tear_sheet(main_job_home, monkeypatch):
    _point_at(monkeypatch, main_job_home)
    at = _run(PAGES[1])
    assert not at.error, _texts(at.error)
    assert "not materialized" not in _texts(at.info)
    cols = [
        "strategy",
        "total_return",
        "sharpe_ratio",
        "sharpe_ci_low",
        "sharpe_ci_high",
        "total_trades",
        "max_drawdown",
    ]
    rows = _warehouse(
        main_job_home,
        f"SELECT {', '.join(cols)} FROM rl_metrics WHERE metric_date = (SELECT MAX(metric_date) FROM rl_metrics)",
    )
    agent = dict(zip(cols, next(r for r in rows if r[0] == "ppo")))
    metrics, deltas = _metrics(at), _deltas(at)
    assert metrics["Agent total return"] == f"{agent['total_return']:+.2%}"
    assert metrics["Agent Sharpe"] == f"{agent['sharpe_ratio']:+.2f}"
    assert deltas["Agent Sharpe"] == f"CI {agent['sharpe_ci_low']:+.1f}…{agent['sharpe_ci_high']:+.1f}"
    assert metrics["Max drawdown"] == f"{agent['max_drawdown']:.2%}"
    assert metrics["Trades"] == f"{agent['total_trades']:,}"
    strategies = at.dataframe[0].value
    assert set(strategies["strategy"]) == {"ppo", "flat", "buy_and_hold", "sma_5_20", "buy_and_hold_held"}
    # the deflated Sharpe (N trials) and the PBO shown are the latest l6/performance materialization's metadata
    from dagster import AssetKey, DagsterInstance

    instance = DagsterInstance.from_config(str(main_job_home / "dagster_home"))
    md = instance.get_latest_materialization_event(AssetKey(["l6", "performance"])).asset_materialization.metadata
    assert md["agent_deflated_sharpe"].value is not None and md["pbo"].value is not None
    assert metrics["Deflated Sharpe ratio"] == f"{md['agent_deflated_sharpe'].value:.2f}"
    assert deltas["Deflated Sharpe ratio"] == f"N = {md['deflated_sharpe_trials'].value} trials" == "N = 4 trials"
    assert metrics["Probability of backtest overfitting"] == f"{md['pbo'].value:.2f}"
    assert "n/a" not in _texts(at.caption)

    equity, rolling, hist = _figures(at)
    bt = _lake(main_job_home, "l6/backtest_session")
    bt = bt[
        bt["session"] >= "2025-02-03"
    ]  # the sessions `usdcop backtest` evaluated (rl_metrics' first_session..metric_date)
    ppo = [t for t in equity["data"] if t["name"] == "ppo"][
        0
    ]  # the equity trace (the drawdown one follows, unnamed in the legend)
    assert len(ppo["x"]) == bt["session"].nunique() == 20
    assert _values(ppo["y"])[-1] == pytest.approx(np.exp(bt["pnl"].sum()))  # equity from the stored backtest ...
    assert _values(ppo["y"])[-1] - 1 == pytest.approx(
        agent["total_return"]
    )  # ... ending at l6/performance's total return
    assert {t["name"] for t in equity["data"]} == {"ppo", "flat", "buy_and_hold", "sma_5_20", "buy_and_hold_held"}
    held = [t for t in equity["data"] if t["name"] == "buy_and_hold_held"][0]
    held_total = next(
        r
        for r in _warehouse(
            main_job_home,
            "SELECT strategy, total_return FROM rl_metrics WHERE metric_date = "
            "(SELECT MAX(metric_date) FROM rl_metrics)",
        )
        if r[0] == "buy_and_hold_held"
    )[1]
    assert _values(held["y"])[-1] - 1 == pytest.approx(held_total)  # the held curve ends at its rl_metrics total return
    assert equity["layout"]["xaxis2"]["title"]["text"] == "session (Bogota)"
    assert "Rolling Sharpe" in rolling["layout"]["title"]["text"]

    folds = at.dataframe[1].value.set_index("fold")
    ((version, valid_sharpe),) = _warehouse(
        main_job_home, "SELECT version, valid_sharpe FROM rl_models WHERE fold = '2025-02'"
    )
    assert folds.loc["2025-02", "model_version"] == version
    assert folds.loc["2025-02", "valid_sharpe"] == pytest.approx(valid_sharpe)
    assert (
        folds.loc["2025-02", "sharpe_ci_low"]
        <= folds.loc["2025-02", "sharpe"]
        <= folds.loc["2025-02", "sharpe_ci_high"]
    )
    trades = at.dataframe[2].value
    assert len(trades) == agent["total_trades"] == len(_values(hist["data"][0]["x"]))
    assert {"entry (Bogota)", "exit (Bogota)", "side", "pnl_bp"} <= set(trades.columns)
    report = [c.value for c in at.caption if "l6/performance report" in str(c.value)]
    assert report and "reports/performance/2025-02-28.html" in report[0]
    assert (main_job_home / "lake" / "reports" / "performance" / "2025-02-28.html").is_file()


def test_pipeline_links_runs_to_the_dagster_ui(main_job_home, monkeypatch):
    from dagster import DagsterInstance

    _point_at(monkeypatch, main_job_home)
    monkeypatch.setenv(data.DAGSTER_UI_ENV, "http://dagster.example:3333/")
    at = _run(PAGES[2])
    assert not at.error, _texts(at.error)
    metrics = _metrics(at)
    assert metrics["Assets materialized"] == "16 / 16"  # L0-L6, all of them
    assert metrics["Checks failing"] == "0"
    assert "not materialized" not in _texts(at.info)
    instance = DagsterInstance.from_config(str(main_job_home / "dagster_home"))
    run_ids = [r.dagster_run.run_id for r in instance.get_run_records(limit=25)]
    runs = at.dataframe[-1].value
    assert runs["run"].tolist() == [f"http://dagster.example:3333/runs/{r}" for r in run_ids]
    assert {"session_chain", "ppo_model", "performance"} <= set(runs["job"])
    assert "start (Bogota)" in runs.columns and "start" not in runs.columns
    status = pd.concat([t.value for t in at.dataframe if "latest_partition" in t.value.columns])
    assert status.set_index("asset").loc["l6/backtest_session", "latest_partition"] == "2025-02-28"


def test_features_page_reads_the_lake(main_job_home, monkeypatch):
    _point_at(monkeypatch, main_job_home)
    at = _run(PAGES[3])
    assert not at.error, _texts(at.error)
    src = data.sources((("USDCOP_HOME", str(main_job_home)),))
    stats = pq.read_table(
        main_job_home / "lake" / "l4" / "observation_stats" / "date=2025-02-01" / "data.parquet"
    ).to_pandas()
    metrics = _metrics(at)
    assert metrics["Observation config"] == "obs-v1"
    assert metrics["Normalization 2025-02"] == str(
        stats["stats_version"].iloc[0]
    )  # the newest month, fitted on January
    assert metrics["Fitted on sessions"] == f"{stats['window_start'].iloc[0]} .. {stats['window_end'].iloc[0]}"
    assert data.normalization(src)["stats_version"].iloc[0] == stats["stats_version"].iloc[0]
    assert "bar 2025-02-28 12:55 (Bogota)" in _texts(at.caption)
    vector, history = _figures(at)
    assert len(vector["data"][0]["y"]) == 30
    # the history never joins two sessions: a NaN after each session's last bar but the final one's
    for trace in history["data"]:
        y = _values(trace["y"]).astype(float)
        assert len(y) == 5 * cal.BARS_PER_SESSION + 4 and np.isnan(y).sum() >= 4
    assert len(history["layout"]["xaxis"]["rangebreaks"]) == 4


def test_quality_and_audit_pages(main_job_home, monkeypatch):
    from usdcop_assets.version import code_version

    _point_at(monkeypatch, main_job_home)
    at = _run(PAGES[4])
    assert not at.error, _texts(at.error)
    metrics = _metrics(at)
    assert metrics["Rejected rows"] == "0" and metrics["Missing bars (gaps)"] == "0"
    assert metrics["Sessions"] == "60"  # the last 60 of the 62 sessions 2024-12-02 .. 2025-02-28
    assert "No rejected rows" in _texts(at.success)
    checks = at.dataframe[0].value
    assert "at (Bogota)" in checks.columns

    at.switch_page(PAGES[5]).run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = _metrics(at)
    assert metrics["Code version (this code)"] == code_version()
    mats = at.dataframe[0].value
    # package version + git commit of the code that materialized them (this tree, maybe at an earlier commit), not the
    # run id
    from usdcop_assets.version import package_version

    assert (
        len(mats) == 50
        and mats["code_version"].str.fullmatch(re.escape(package_version()) + r"\+g[0-9a-f]{7,12}").all()
    )
    same = int((mats["code_version"] == code_version()).sum())
    assert _deltas(at)["Of the latest materializations"] == "made by this code version"
    assert metrics["Of the latest materializations"] == f"{same} / 50"
    assert mats["run"].str.startswith("http://127.0.0.1:3000/runs/").all()
    src = data.sources((("USDCOP_HOME", str(main_job_home)),))
    table = src.lake_table("l1/ohlcv_m5")
    day = dt.date(2025, 2, 28)
    row = mats.set_index("partition").loc["2025-02-28"]
    assert row["manifest_sha256"] == table.manifest(day)["sha256"]
    assert row["data_version"] and row["data_version"] != row["code_version"]
    assert metrics["Session objects verified (last 20)"] == "20 / 20"


@pytest.mark.parametrize("page", PAGES)
def test_page_on_empty_platform(page, tmp_path, monkeypatch):
    _point_at(monkeypatch, tmp_path / "empty")
    at = _run(page)
    assert not at.warning  # nothing synthetic to mark
    info = _texts(at.info)
    assert f"`{MAIN}`" in info  # each page says what to run
    if page == "views/model.py":
        for asset in ("l5/ppo_model", "l5/actions_m5", "l6/backtest_session", "l6/performance"):
            assert f"`{asset}` not materialized yet: run `{MAIN}`" in info
        assert "usdcop train --fold YYYY-MM" in info and "usdcop backtest --start" in info
    if page == "views/features.py":
        assert "`l4/observations_m5` not materialized yet" in info and "backfill --layers L4" in info
    assert not (tmp_path / "empty").exists()  # read-only: nothing created


def _research_home(home: Path, warehouse_url: str | None = None) -> Path:
    """A home with two evaluations of ``rl_experiment_metrics`` (the older one must not show) and two folds'
    selection records in the lake, written as l6/experiment_performance and l6/experiment_selection write them."""
    from usdcop_assets.core.settings import Settings
    from usdcop_assets.storage.lake.store import open_store
    from usdcop_assets.storage.warehouse.database import Warehouse

    def row(strategy, sharpe, lo, hi, ret, turnover, dsr, selected_in=None, metric_date="2025-03-31"):
        return dict(
            metric_date=metric_date,
            strategy=strategy,
            first_session="2025-02-03",
            first_fold="2025-02",
            last_fold="2025-03",
            folds=2,
            sessions=39,
            bars=39 * cal.BARS_PER_SESSION,
            total_return=ret,
            sharpe_ratio=sharpe,
            sharpe_ci_low=lo,
            sharpe_ci_high=hi,
            turnover_per_session=turnover,
            deflated_sharpe=dsr,
            n_trials=6,
            pbo=0.25,
            pbo_candidates=0.5,
            selected_in=selected_in,
            computed_at=pd.Timestamp("2025-04-01 15:00", tz="UTC"),
        )

    rows = pd.DataFrame(
        [  # stored out of order: the page puts selected, the experiments, then LightGBM and the baselines
            row("buy_and_hold", -0.4, -1.5, 0.7, -0.01, 0.0, None),
            row("ppo_b", 0.9, -0.3, 2.1, 0.03, 2.0, 0.6, "2025-03"),
            row("flat", 0.0, 0.0, 0.0, 0.0, 0.0, None),
            row("selected", 1.234, 0.11, 2.35, 0.0456, 1.5, 0.87),
            row("lightgbm", 0.2, -0.9, 1.3, 0.005, 3.0, None),
            row("ppo_a", 1.1, 0.05, 2.2, 0.04, 1.2, 0.8, "2025-02"),
            row("selected", 9.99, 9.0, 11.0, 0.9, 9.0, 0.99, metric_date="2025-02-28"),  # an older evaluation
        ]
    )
    wh = Warehouse(warehouse_url or f"sqlite:///{home / 'warehouse.sqlite'}")
    wh.ensure_schema()
    wh.upsert("rl_experiment_metrics", rows)
    wh.dispose()
    store = open_store(Settings.from_env({"USDCOP_HOME": str(home)}).lake)
    for fold, selected, scores in (
        ("2025-02", "ppo_a", {"ppo_a": 0.8, "ppo_b": 0.3}),
        ("2025-03", "ppo_b", {"ppo_a": None, "ppo_b": 0.5}),
    ):
        record = {"fold": fold, "selected": selected, "reason": f"highest validation Sharpe ({fold})", "scores": scores}
        store.put(f"experiments/selection/{fold}.json", json.dumps(record).encode())
    return home


SERVE_LINE = (
    "This deployment trades l5/ppo_model (USDCOP_SERVE=ppo_model, registry `rl_models`); set USDCOP_SERVE=selection "
    "to trade the selection's picks (`rl_served_models`)."
)
FLAT_REASON = "no candidate passed the rule: fallback"


def _write_served(home: Path, warehouse_url: str | None = None) -> None:
    """Two folds of ``rl_served_models`` as l6/experiment_selection registers them (l6_experiments.served_row): a
    seed ensemble in 2025-02, flat in 2025-03."""
    from usdcop_assets.storage.warehouse.database import Warehouse

    digest = "ab12" * 16
    rows = [
        dict(
            time=pd.Timestamp("2025-02-01 05:00", tz="UTC"),
            fold="2025-02",
            selected="ppo_a",
            experiment="a",
            experiment_version="v3",
            version=f"a@v3:{digest[:12]}",
            ensemble="mean",
            seeds=3,
            summary_path="experiments/models/a/2025-02/summary.json",
            summary_sha256=digest,
            obs_version="obs1",
            action_space="discrete",
            no_trade_band=0.5,
            min_hold_bars=6,
            features=json.dumps(["ret_1", "rsi_14"]),
            valid_sharpe=0.8,
            reason="highest validation Sharpe 0.800 over 20 sessions before 2025-02-03",
        ),
        dict(
            time=pd.Timestamp("2025-03-01 05:00", tz="UTC"),
            fold="2025-03",
            selected="flat",
            version="flat (flat)",
            reason=FLAT_REASON,
            flat_reason=FLAT_REASON,
        ),
    ]
    wh = Warehouse(warehouse_url or f"sqlite:///{home / 'warehouse.sqlite'}")
    wh.ensure_schema()
    for row in rows:  # a frame per fold, as the selection registers them (seeds stays an integer)
        wh.upsert(data.SERVED_MODELS, pd.DataFrame([row]))
    wh.dispose()


def _assert_served(at) -> None:
    *_, served = (d.value for d in at.dataframe)
    assert served["fold"].tolist() == ["2025-03", "2025-02"]  # newest fold first
    flat, picked = (r.to_dict() for _, r in served.iterrows())
    assert (flat["selected"], flat["model_version"], flat["reason"]) == ("flat", "flat (flat)", FLAT_REASON)
    assert pd.isna(flat["seeds"]) and pd.isna(flat["action_rules"])  # a flat fold trades no ensemble
    assert (picked["selected"], picked["model_version"], picked["ensemble"], picked["seeds"]) == (
        "ppo_a",
        "a@v3:ab12ab12ab12",  # the model_version its actions carry
        "mean",
        3,
    )
    assert picked["action_rules"] == "discrete, band 0.5, hold ≥ 6 bars"
    assert picked["valid_sharpe"] == pytest.approx(0.8) and picked["reason"].startswith("highest validation Sharpe")
    assert SERVE_LINE in _texts(at.caption)


def test_research_page_shows_what_is_served(tmp_path, monkeypatch):
    from usdcop_assets.defs import registry

    assert data.SERVED_MODELS == registry.SERVED_TABLE
    assert {serve: table for serve, (_, table) in data.SERVES.items()} == registry.SERVES
    home = _research_home(tmp_path / "research")
    _write_served(home)
    _point_at(monkeypatch, home)
    at = _run(RESEARCH)
    assert not at.error and not at.info, _texts(at.error) + _texts(at.info)
    assert "Served per fold" in [s.value for s in at.subheader]
    _assert_served(at)

    monkeypatch.setenv("USDCOP_SERVE", "selection")  # part of the cache key: the line follows the setting
    at = _run(RESEARCH)
    assert (
        "This deployment trades the selection's picks (USDCOP_SERVE=selection, registry `rl_served_models`): per "
        "fold its seed ensemble, or flat; unset USDCOP_SERVE to trade l5/ppo_model." in _texts(at.caption)
    )
    monkeypatch.setenv("USDCOP_SERVE", "nope")
    at = _run(RESEARCH)
    assert "USDCOP_SERVE='nope'" in _texts(at.error)


def test_research_page_shows_the_latest_evaluation(tmp_path, monkeypatch):
    from usdcop_assets.defs.layers import l6_experiments

    assert (data.EXPERIMENT_METRICS, data.SELECTION_PREFIX) == (
        l6_experiments.METRICS_TABLE,
        l6_experiments.SELECTION_PREFIX,
    )
    _point_at(monkeypatch, _research_home(tmp_path / "research"))
    at = _run(RESEARCH)
    assert not at.error and not at.info, _texts(at.error) + _texts(at.info)
    metrics, deltas = _metrics(at), _deltas(at)
    assert (metrics["Selected Sharpe"], deltas["Selected Sharpe"]) == ("+1.23", "95% CI +0.11 … +2.35")
    assert metrics["Selected total return"] == "+4.56%" and metrics["Turnover per session"] == "1.50"
    assert (metrics["Deflated Sharpe ratio"], deltas["Deflated Sharpe ratio"]) == ("0.87", "N = 6 trials")
    assert metrics["PBO"] == "0.25" and (metrics["Folds"], deltas["Folds"]) == ("2", "2025-02 … 2025-03, 39 sessions")

    table, picks = (d.value for d in at.dataframe)
    order = ["selected", "ppo_a", "ppo_b", "lightgbm", "flat", "buy_and_hold"]
    assert table["strategy"].tolist() == order
    assert table.set_index("strategy")["selected_in"].to_dict()["ppo_a"] == "2025-02"
    assert table.set_index("strategy")["sharpe_ratio"]["selected"] == pytest.approx(1.234)  # not the older 9.99

    assert picks[["fold", "selected"]].values.tolist() == [["2025-02", "ppo_a"], ["2025-03", "ppo_b"]]
    assert picks["ppo_b"].tolist() == [0.3, 0.5] and np.isnan(picks["ppo_a"].iloc[1])

    (fig,) = _figures(at)
    (dots,) = fig["data"]
    assert list(dots["y"]) == order
    assert _values(dots["error_x"]["array"])[0] == pytest.approx(2.35 - 1.234)  # CI high above the selected dot
    assert SERVE_LINE in _texts(at.caption)  # no rl_served_models row yet: the line, no table (two dataframes above)


@pytest.mark.pg
def test_research_page_on_postgres(tmp_path, fresh_pg_url, monkeypatch):
    """The same evaluation from a PostgreSQL warehouse (DATE columns come back as dates, not text)."""
    home = _research_home(tmp_path / "research", fresh_pg_url)
    _write_served(home, fresh_pg_url)
    _point_at(monkeypatch, home)
    monkeypatch.setenv("USDCOP_WAREHOUSE_URL", fresh_pg_url)
    at = _run(RESEARCH)
    assert not at.error and not at.info, _texts(at.error) + _texts(at.info)
    assert (_metrics(at)["Selected Sharpe"], _deltas(at)["Folds"]) == ("+1.23", "2025-02 … 2025-03, 39 sessions")
    _assert_served(at)  # BIGINT and DOUBLE PRECISION as PostgreSQL returns them
    table, picks, _ = (d.value for d in at.dataframe)
    assert table["strategy"].tolist() == ["selected", "ppo_a", "ppo_b", "lightgbm", "flat", "buy_and_hold"]
    assert picks["fold"].tolist() == ["2025-02", "2025-03"]
    assert "Evaluation of 2025-02-03 … 2025-03-31" in _texts(at.caption)


def test_research_page_without_experiments(tmp_path, monkeypatch):
    _point_at(monkeypatch, tmp_path / "empty")
    at = _run(RESEARCH)
    assert [i.value for i in at.info] == [
        "`l6/experiment_performance` not materialized yet: run `.venv/bin/usdcop experiment run NAME... --folds "
        "YYYY-MM..YYYY-MM` (trains each experiment per fold, trades it on the fold's month, selects per fold on "
        "validation sessions and compares them all)"
    ]
    assert not at.dataframe and not at.get("plotly_chart")
    assert SERVE_LINE in _texts(at.caption)  # no warehouse, no rl_served_models: the line only
    assert not (tmp_path / "empty").exists()  # read-only: nothing created


def test_lake_reads_equal_the_session_table(main_job_home):
    """The dashboard's own lake reads (only the asked columns of each listed object) return what
    ``SessionTable.read`` returns: rows, columns, types; a window's bounds cut the same rows."""
    src = data.sources((("USDCOP_HOME", str(main_job_home)),))
    for dataset, columns in (
        ("l6/backtest_session", data.BACKTEST_READ),
        ("l5/actions_m5", ["time", "position", "model_version"]),
        ("l4/observations_m5", None),
    ):
        days = data.lake_dates(src, dataset)
        assert len(days) > 2, dataset
        table = src.lake_table(dataset)
        start, end = (
            cal.session_open(days[0]) - pd.Timedelta(hours=8),
            cal.session_end(days[-1]) + pd.Timedelta(hours=11),
        )
        pd.testing.assert_frame_equal(
            data.read_sessions(src, dataset, days, start, end, columns), table.read(start, end, columns)
        )
        inside = (cal.session_open(days[1]) + pd.Timedelta(hours=1), cal.session_open(days[-1]) + pd.Timedelta(hours=2))
        pd.testing.assert_frame_equal(
            data.read_sessions(src, dataset, days[1:], *inside, columns), table.read(*inside, columns)
        )
    assert data.read_sessions(src, "l5/actions_m5", [], None, None, ["time", "position"]).empty
    stats = src.lake_table("l4/observation_stats").read()  # every month: Features shows the newest
    pd.testing.assert_frame_equal(
        data.normalization(src), stats[stats["month"] == stats["month"].max()].reset_index(drop=True)
    )


def test_terminal_full_history_is_daily(main_job_home, monkeypatch):
    _point_at(monkeypatch, main_job_home)
    at = _run(PAGES[0])
    at.radio(key="history").set_value("Full history (daily)").run()
    assert not at.exception
    (fig,) = _figures(at)
    assert "daily OHLC, full history (62 sessions)" in fig["layout"]["title"]["text"]  # 2024-12-02 .. 2025-02-28
    assert len(fig["data"][0]["x"]) == 62
    # weekends and holidays are skipped; no intraday break on a daily axis
    breaks = [b["bounds"] for b in fig["layout"]["xaxis"]["rangebreaks"]]
    assert [
        "2025-01-04 00:00:00",
        "2025-01-07 00:00:00",
    ] in breaks  # Saturday .. Tuesday (Monday 6 January is a holiday)


def test_bad_configuration_is_a_message(tmp_path, monkeypatch):
    _point_at(monkeypatch, tmp_path)
    monkeypatch.setenv("USDCOP_WAREHOUSE_URL", "mysql://nope/db")
    at = _run(PAGES[0])
    assert "USDCOP_WAREHOUSE_URL" in _texts(at.error)


# -- the pure layer ------------------------------------------------------------------------------------


def test_resample_and_windows():
    days = cal.trading_days(dt.date(2025, 3, 3), dt.date(2025, 3, 14))
    times = cal.bars_of_days(days)
    close = pd.Series(range(len(times)), dtype=float) + 4000
    bars = pd.DataFrame(
        {
            "time": times,
            "open": close,
            "high": close + 1,
            "low": close - 1,
            "close": close + 0.5,
            "volume": 1.0,
            "source": "synthetic",
            "is_flat": False,
        }
    )
    daily = data.resample_ohlc(bars, "1D")
    assert len(daily) == len(days) and (daily["bars"] == 60).all()
    assert daily["open"].iloc[0] == 4000 and daily["close"].iloc[0] == 4059.5
    assert data.chart_rule(1000) is None and data.chart_rule(100_000) == "1D"
    start, end = data.last_sessions_window(times[-1], 3)
    assert start == cal.session_open(days[-3]) and end == cal.session_end(days[-1])
    q = data.quality_by_session(bars.drop(index=[0, 1]), days[0], days[-1])
    assert q["missing"].tolist()[:2] == [2, 0]
    over = data.add_overlays(bars)
    assert over[["ema_20", "ema_50"]].notna().all().all()
    assert data.synthetic_share(pd.DataFrame({"source": ["synthetic", "twelvedata"], "bars": [3, 7]})) == (3, 10)
    assert data.freshness("session", "2025-03-14", now=pd.Timestamp("2025-03-14 18:01", tz="UTC")) == "fresh"
    assert (
        data.freshness("session", "2025-03-12", now=pd.Timestamp("2025-03-14 18:01", tz="UTC"))
        == "stale: 2 sessions behind"
    )
    assert (
        data.freshness("session", "2025-03-14", now=pd.Timestamp("2025-03-14 15:07", tz="UTC")) == "fresh"
    )  # mid-session
    assert data.expected_partitions("session", "2025-03-07", "2025-03-11") == ["2025-03-07", "2025-03-10", "2025-03-11"]


@pytest.mark.pg
def test_postgres_warehouse(main_job_home, fresh_pg_url, monkeypatch):
    """The same pages over PostgreSQL: the filled home's bars copied into a PostgreSQL warehouse."""
    from usdcop_assets.storage.warehouse.database import Warehouse

    sqlite_wh = Warehouse(f"sqlite:///{main_job_home / 'warehouse.sqlite'}")
    pg_url = fresh_pg_url
    pg = Warehouse(pg_url)
    for table in (data.OHLCV, data.INDICATORS):
        pg.upsert(table, sqlite_wh.read_window(table))
    sqlite_wh.dispose()
    _point_at(monkeypatch, main_job_home)
    monkeypatch.setenv("USDCOP_WAREHOUSE_URL", pg_url)
    at = _run(PAGES[0])
    assert _metrics(at)["Last bar (Bogota)"] == "12:55"
    assert "SYNTHETIC DATA: 3,720 of 3,720 bars" in _texts(at.warning)
    pg.dispose()


def test_range_breaks_follow_the_calendar():
    import charts

    # Monday 24 March 2025 is a Colombian holiday: one break from Friday's close to Tuesday's open
    breaks = [b["bounds"] for b in charts.rangebreaks(dt.date(2025, 3, 20), dt.date(2025, 3, 26))]
    assert breaks == [
        ["2025-03-20 13:00:00", "2025-03-21 08:00:00"],
        ["2025-03-21 13:00:00", "2025-03-25 08:00:00"],
        ["2025-03-25 13:00:00", "2025-03-26 08:00:00"],
    ]
    daily = [b["bounds"] for b in charts.rangebreaks(dt.date(2025, 3, 20), dt.date(2025, 3, 26), intraday=False)]
    assert daily == [["2025-03-22 00:00:00", "2025-03-25 00:00:00"]]


def test_trade_list_matches_the_metrics():
    import tearsheet

    from usdcop_assets.backtest import metrics

    times = cal.bars_of_days([dt.date(2025, 3, 20), dt.date(2025, 3, 21)])
    pos = np.zeros(len(times))
    pos[3:8], pos[8:10], pos[58:63] = 0.5, -1.0, 1.0  # long, flip to short, a long across the night (two trades)
    pnl = np.linspace(-1e-4, 1e-4, len(times))
    bt = pd.DataFrame(
        {"time": times, "session": cal.session_dates(times).astype(str).to_numpy(), "position": pos, "pnl": pnl}
    )
    trades = tearsheet.trade_list(bt)
    expected, lengths = metrics.trades(pnl, pos, bt["session"].to_numpy())
    assert trades["side"].tolist() == ["long", "short", "long", "long"]
    assert trades["bars"].tolist() == lengths.tolist() == [5, 2, 2, 3]
    assert trades["pnl_bp"].tolist() == pytest.approx((expected * 1e4).round(2).tolist())
    assert (
        trades["entry (Bogota)"].iloc[0] == "2025-03-20 08:15" and trades["exit (Bogota)"].iloc[0] == "2025-03-20 08:40"
    )


def test_times_are_shown_in_bogota():
    df = pd.DataFrame({"at": pd.to_datetime(["2025-03-14 17:55"], utc=True), "n": [1]})
    assert data.to_bogota(df).to_dict("records") == [{"at (Bogota)": "2025-03-14 12:55", "n": 1}]


def test_overfitting_stats_say_why_they_are_absent():
    import dagster as dg

    assert data.overfitting_stats(None)["dsr_reason"] == "no Dagster instance"
    with dg.DagsterInstance.ephemeral() as instance:
        assert data.overfitting_stats(instance)["pbo_reason"] == "l6/performance never materialized"
        key = dg.AssetKey(["l6", "performance"])
        instance.report_runless_asset_event(
            dg.AssetMaterialization(key, metadata={"agent_sharpe": 1.2})
        )  # an older run
        old = data.overfitting_stats(instance)
        assert (
            old["dsr"] is None
            and old["pbo"] is None
            and "older code" in old["dsr_reason"]
            and "older code" in old["pbo_reason"]
        )
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                key,
                metadata={
                    "agent_deflated_sharpe": 0.31,
                    "deflated_sharpe_trials": 4,
                    "agent_sharpe_per_session": 0.05,
                    "pbo": None,
                },
            )
        )
        new = data.overfitting_stats(instance)
        assert (new["dsr"], new["trials"], new["sharpe_per_session"], new["dsr_reason"]) == (0.31, 4, 0.05, None)
        assert new["pbo"] is None and new["pbo_reason"] == "fewer than 2 sessions evaluated"
