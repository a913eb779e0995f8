"""The Streamlit dashboard (streamlit_app/): every page through Streamlit's AppTest, on a platform the CLI
filled (L0-L3 over one week of synthetic bars) and on an empty one; plus its pure read-only layer."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "streamlit_app" / "app.py"
sys.path.insert(0, str(APP.parent))

import data  # noqa: E402  (streamlit_app/data.py)

from usdcop_assets import market_calendar as cal  # noqa: E402

PAGES = ["views/terminal.py", "views/model.py", "views/pipeline.py", "views/features.py", "views/quality.py", "views/audit.py"]
TITLES = dict(zip(PAGES, ["Trading terminal", "Model and backtest", "Pipeline", "Features", "Data quality", "Audit"]))
FIRST, LAST = "2025-03-10", "2025-03-14"


@pytest.fixture(scope="module")
def filled_home(tmp_path_factory) -> Path:
    """One CLI backfill of L0-L3 over a week (its runs land in the home's Dagster instance)."""
    home = tmp_path_factory.mktemp("dash_home")
    env = {k: v for k, v in os.environ.items() if k not in data.CONFIG_VARS and not k.startswith("USDCOP_")}
    env.update(USDCOP_HOME=str(home), USDCOP_SOURCE="synthetic:clean", USDCOP_MACRO_SOURCE="synthetic")  # counts below: every bar
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "usdcop"), "backfill", "--start", FIRST, "--end", LAST, "--layers", "L0,L1,L2,L3"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return home


def _point_at(monkeypatch, home: Path) -> None:
    for var in data.CONFIG_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("USDCOP_HOME", str(home))


def _run(page: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=60)
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


@pytest.mark.parametrize("page", PAGES)
def test_page_with_data(page, filled_home, monkeypatch):
    _point_at(monkeypatch, filled_home)
    at = _run(page)
    assert "SYNTHETIC DATA: 300 of 300 bars" in _texts(at.warning)  # the marker on every page
    assert not at.error, _texts(at.error)
    metrics, info = _metrics(at), _texts(at.info)
    if page == "views/terminal.py":
        assert metrics["Last bar (Bogota)"] == "2025-03-14 12:55"
        assert float(metrics["Latest price · SYNTHETIC"].replace(",", "")) > 1000
        assert metrics["Agent position"] == "not materialized"
        assert len(at.get("vega_lite_chart")) == 1
        assert "`l5/actions_m5` not materialized yet: run" in _texts(at.caption)
    elif page == "views/model.py":
        for asset in ("l5/ppo_model", "l5/actions_m5", "l6/backtest_session", "l6/performance", "l4/episodes_session"):
            assert f"`{asset}` not materialized yet: run" in info
    elif page == "views/pipeline.py":
        assert metrics["Assets materialized"] == "7 / 16"  # L0-L3, not L4-L6
        assert metrics["Partition gaps"] == "0"
        assert metrics["Checks failing"] == "0"
        assert "`l4/observations_m5` not materialized yet: run" in info
        assert "`l6/performance` not materialized yet" in info
        assert [h.value for h in at.subheader] == ["L0", "L1", "L2", "L3", "L4", "L5", "L6", "Recent runs"]
        tables = [df.value for df in at.dataframe]
        status = pd.concat([t for t in tables if "latest_partition" in t.columns])
        assert status.set_index("asset").loc["l1/ohlcv_m5", "latest_partition"] == "2025-03-14"
        assert (status["freshness"] != "").all()
        checks = pd.concat([t for t in tables if "check" in t.columns])
        assert checks.set_index("check").loc["conservation", "passed"] == True  # noqa: E712
        runs = tables[-1]
        assert {"session_chain", "macro_daily"} <= set(runs["job"])
    elif page == "views/features.py":
        assert "`l4/observations_m5` not materialized yet: run" in info
        assert "`l4/observation_stats` not materialized yet: run" in info
        assert metrics["Observation config"] == "obs-v1"
        feats = at.dataframe[-1].value
        assert {"feature", "value"} <= set(feats.columns) and len(feats) > 10
    elif page == "views/quality.py":
        assert metrics["Rejected rows"] == "0"
        assert metrics["Missing bars (gaps)"] == "0"
        assert metrics["Sessions"] == "5"
        assert "No rejected rows" in _texts(at.success)
        assert "All 7 data checks passed in every session they evaluated." in _texts(at.success)  # L0-L3's checks
    elif page == "views/audit.py":
        mats = at.dataframe[0].value
        assert {"code_version", "data_version", "run_id"} <= set(mats.columns) and len(mats) == 5  # one per session
        assert sorted(mats["partition"]) == ["2025-03-10", "2025-03-11", "2025-03-12", "2025-03-13", "2025-03-14"]
        assert mats["data_version"].notna().all()
        checks = at.dataframe[1].value  # the data checks of l1/ohlcv_m5, per session, from the Dagster instance
        assert set(checks["check"]) == set(data.CHECKS["l1/ohlcv_m5"]) and checks["session"].nunique() == 5
        assert checks["passed"].all() and (checks.groupby("session").size() == 4).all()
        assert metrics["Session objects verified (last 20)"] == "5 / 5"
        man = at.dataframe[2].value
        assert man["sha256"].str.len().eq(64).all()


@pytest.mark.parametrize("page", PAGES)
def test_page_on_empty_platform(page, tmp_path, monkeypatch):
    _point_at(monkeypatch, tmp_path / "empty")
    at = _run(page)
    assert not at.warning  # nothing synthetic to mark
    info = _texts(at.info)
    if page in ("views/terminal.py", "views/pipeline.py", "views/quality.py", "views/audit.py"):
        assert "bash scripts/demo.sh" in info
    else:
        assert "not materialized yet: run" in info
    assert not (tmp_path / "empty").exists()  # read-only: nothing created


def test_terminal_full_history_is_daily(filled_home, monkeypatch):
    _point_at(monkeypatch, filled_home)
    at = _run(PAGES[0])
    at.radio(key="history").set_value("Full history (daily)").run()
    assert not at.exception
    spec = at.get("vega_lite_chart")[0].proto.spec
    assert "daily OHLC, full history (5 sessions)" in spec


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
    bars = pd.DataFrame({"time": times, "open": close, "high": close + 1, "low": close - 1, "close": close + 0.5,
                         "volume": 1.0, "source": "synthetic", "is_flat": False})
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
    assert data.freshness("session", "2025-03-12", now=pd.Timestamp("2025-03-14 18:01", tz="UTC")) == "stale: 2 sessions behind"
    assert data.freshness("session", "2025-03-14", now=pd.Timestamp("2025-03-14 15:07", tz="UTC")) == "fresh"  # mid-session
    assert data.expected_partitions("session", "2025-03-07", "2025-03-11") == ["2025-03-07", "2025-03-10", "2025-03-11"]


def test_postgres_warehouse(filled_home, fresh_pg_url, monkeypatch):
    """The same pages over PostgreSQL: the filled home's bars copied into a PostgreSQL warehouse."""
    from usdcop_assets.warehouse.database import Warehouse

    sqlite_wh = Warehouse(f"sqlite:///{filled_home / 'warehouse.sqlite'}")
    pg_url = fresh_pg_url
    pg = Warehouse(pg_url)
    for table in (data.OHLCV, data.INDICATORS):
        pg.upsert(table, sqlite_wh.read_window(table))
    sqlite_wh.dispose()
    _point_at(monkeypatch, filled_home)
    monkeypatch.setenv("USDCOP_WAREHOUSE_URL", pg_url)
    at = _run(PAGES[0])
    assert _metrics(at)["Last bar (Bogota)"] == "2025-03-14 12:55"
    assert "SYNTHETIC DATA: 300 of 300 bars" in _texts(at.warning)
    pg.dispose()
