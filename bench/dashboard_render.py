"""Time to first complete render of the dashboard's trading terminal with six years of 5-minute bars in
the warehouse, and the process's peak memory. Prints figures; asserts nothing.

Six years of synthetic bars are standardized (refine.standardize) and upserted straight into a SQLite
warehouse under a temporary USDCOP_HOME; the page is rendered with Streamlit's AppTest (cold caches),
then once more warm, then the full-history (daily) view.

    .venv/bin/python bench/dashboard_render.py [--years 6]
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
    args = parser.parse_args()
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
    wh = Warehouse(f"sqlite:///{home / 'warehouse.sqlite'}")
    wh.upsert("usdcop_m5_ohlcv", kept)
    wh.dispose()
    print(f"setup: {len(kept):,} bars over {len(days):,} sessions ({days[0]} .. {days[-1]}) in {time.perf_counter() - t0:.1f} s")
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
    print(f"peak RSS: {peak:.0f} MB (after building the warehouse: {rss_before:.0f} MB)")


if __name__ == "__main__":
    main()
