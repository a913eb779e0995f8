"""Time to first complete render of the dashboard's trading terminal with six years of 5-minute bars in
the warehouse, and the process's peak memory. Prints figures; asserts nothing.

Six years of synthetic bars are standardized (refine.standardize) and upserted straight into a SQLite
warehouse under a temporary USDCOP_HOME; the page is rendered with Streamlit's AppTest (cold caches),
then once more warm, then the full-history (daily) view.

    .venv/bin/python bench/dashboard_render.py [--years 6] [--postgres]

``--postgres`` puts the bars in a fresh database on the local PostgreSQL (``USDCOP_TEST_PG`` server,
default postgresql+psycopg://postgres@127.0.0.1:5432/test) instead of SQLite, and drops it afterwards.
The render runs in a child process, so its peak RSS is the dashboard's alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--years", type=int, default=6)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--render-only", help=argparse.SUPPRESS)  # child mode: the home to render
    args = parser.parse_args()
    if args.render_only:
        render()
        return
    from usdcop_assets import market_calendar as cal
    from usdcop_assets.refine.standardize import standardize_bars
    from usdcop_assets.sources.synthetic import synthetic_bars
    from usdcop_assets.warehouse.database import Warehouse

    home = Path(tempfile.mkdtemp(prefix="usdcop_dash_bench_"))
    for var in ("USDCOP_LAKE_URL", "USDCOP_WAREHOUSE_URL", "DAGSTER_HOME"):
        os.environ.pop(var, None)
    os.environ["USDCOP_HOME"] = str(home)
    last = dt.date(2025, 12, 31)
    days = cal.trading_days(dt.date(last.year - args.years + 1, 1, 1), last)
    t0 = time.perf_counter()
    kept, _rejects = standardize_bars(synthetic_bars(cal.bars_of_days(days)))
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
    wh = Warehouse(url)
    wh.upsert("usdcop_m5_ohlcv", kept)
    wh.dispose()
    print(f"setup: {len(kept):,} bars over {len(days):,} sessions ({days[0]} .. {days[-1]}) in {time.perf_counter() - t0:.1f} s; "
          f"warehouse {'PostgreSQL' if args.postgres else 'SQLite'}")
    import subprocess
    import sys

    env = {**os.environ, "USDCOP_WAREHOUSE_URL": url} if args.postgres else dict(os.environ)
    try:
        subprocess.run([sys.executable, __file__, "--render-only", str(home)], env=env, check=True)
    finally:
        if drop:
            with drop[0].connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {drop[1]} WITH (FORCE)")
            drop[0].dispose()


def render() -> None:
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "streamlit_app" / "app.py"), default_timeout=120)
    t0 = time.perf_counter()
    at.run()
    cold = time.perf_counter() - t0
    assert not at.exception, [e.value for e in at.exception]
    charts = at.get("vega_lite_chart")
    print(f"trading terminal, first render (cold caches, last 20 sessions): {cold:.2f} s; charts: {len(charts)}; "
          f"metrics: {[(m.label, m.value) for m in at.metric][:2]}")
    t0 = time.perf_counter()
    at.run()
    print(f"trading terminal, rerun (warm caches): {time.perf_counter() - t0:.2f} s")
    t0 = time.perf_counter()
    at.radio(key="history").set_value("Full history (daily)").run()
    assert not at.exception, [e.value for e in at.exception]
    print(f"full history, daily OHLC (first time): {time.perf_counter() - t0:.2f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the rendering process: {peak:.0f} MB (at start: {rss_before:.0f} MB)")


if __name__ == "__main__":
    main()
