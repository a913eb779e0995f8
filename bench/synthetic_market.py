"""The synthetic market against the real recorded history: stylized facts, rule Sharpes, generation speed.

    PYTHONPATH=$PWD USDCOP_SHARED_DATA=/work/shared/data python bench/synthetic_market.py [--seed 7]

Statistics: ``sources.stylized_facts`` on both (real: 2020-2024H1; synthetic: 2019-2024, clean bars).
Rule Sharpes: the project's backtest (``backtest.engine.run_backtest``, ``CostConfig()`` costs) and
``backtest.metrics.sharpe``, the rules of ``usdcop_assets.testing.simple_rules`` (as the synthetic market tests use
them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from usdcop_assets.core import calendar as cal  # noqa: E402
from usdcop_assets.rl.costs import CostConfig  # noqa: E402
from usdcop_assets.sources.stylized_facts import facts  # noqa: E402
from usdcop_assets.sources.synthetic import synthetic_bars  # noqa: E402
from usdcop_assets.testing.simple_rules import rule_sharpes  # noqa: E402

SHARED = Path(os.environ.get("USDCOP_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    console = Console()
    real_bars = pd.read_csv(SHARED / "usdcop_m5_ohlcv_2020_2024h1.csv.gz")
    times = cal.expected_bars_between_dates(dt.date(2019, 1, 1), dt.date(2024, 12, 31))
    t0 = time.perf_counter()
    syn_bars = synthetic_bars(times, seed=args.seed, defects=False)
    clean_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    dirty = synthetic_bars(times, seed=args.seed)
    dirty_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for t in times[:: len(times) // 200][:200]:
        synthetic_bars(pd.DatetimeIndex([t]), seed=args.seed)
    single_ms = (time.perf_counter() - t0) / 200 * 1000
    real, syn = facts(real_bars), facts(syn_bars)

    table = Table(title=f"USD/COP 5-minute stylized facts: real 2020-2024H1 vs synthetic 2019-2024 (seed {args.seed})")
    for col in ("statistic", "real", "synthetic"):
        table.add_column(col, justify="right" if col != "statistic" else "left")
    table.add_row("returns", f"{real['n_returns']:,}", f"{syn['n_returns']:,}")
    table.add_row("return sd", f"{real['sd']:.2e}", f"{syn['sd']:.2e}")
    for k in range(12):
        table.add_row(f"ACF lag {k + 1}", f"{real['acf'][k]:+.3f}", f"{syn['acf'][k]:+.3f}")
    table.add_row("excess kurtosis", f"{real['kurtosis']:.1f}", f"{syn['kurtosis']:.1f}")
    for lag in real["abs_acf"]:
        table.add_row(f"|r| ACF lag {lag}", f"{real['abs_acf'][lag]:.3f}", f"{syn['abs_acf'][lag]:.3f}")
    table.add_row("first hour / rest vol", f"{real['first_hour_ratio']:.2f}", f"{syn['first_hour_ratio']:.2f}")
    table.add_row("profile correlation", "1", f"{np.corrcoef(real['profile'], syn['profile'])[0, 1]:.2f}")
    table.add_row("overnight gap sd", f"{real['gap_sd']:.2%}", f"{syn['gap_sd']:.2%}")
    table.add_row("session return sd", f"{real['session_sd']:.2%}", f"{syn['session_sd']:.2%}")
    table.add_row(
        "level min .. max",
        f"{real['level_min']:,.0f} .. {real['level_max']:,.0f}",
        f"{syn['level_min']:,.0f} .. {syn['level_max']:,.0f}",
    )
    console.print(table)

    on_grid = real_bars.assign(time=pd.to_datetime(real_bars["time"], utc=True))
    on_grid = on_grid[cal.on_session_grid(on_grid["time"])].sort_values("time").reset_index(drop=True)
    year = synthetic_bars(
        cal.expected_bars_between_dates(dt.date(2025, 1, 1), dt.date(2025, 12, 31)), seed=args.seed, defects=False
    )
    gross, net = CostConfig(spread_bps=0.0, slippage_bps=0.0), CostConfig()
    cols = {
        "real gross": rule_sharpes(on_grid, gross),
        "real net": rule_sharpes(on_grid, net),
        "synthetic 6y gross": rule_sharpes(syn_bars, gross),
        "synthetic 2025 net": rule_sharpes(year, net),
    }
    rules = Table(title="Annualized Sharpe of simple rules (project backtest, costs 4 bp spread + 1 bp slippage)")
    rules.add_column("rule")
    for c in cols:
        rules.add_column(c, justify="right")
    for name in cols["real gross"]:
        rules.add_row(name, *(f"{cols[c][name]:+.2f}" for c in cols))
    console.print(rules)
    console.print(
        f"generation: {len(times):,} bars (six years) in {clean_s:.2f} s clean, {dirty_s:.2f} s with defects "
        f"({len(times) - len(dirty)} missing); one bar alone {single_ms:.1f} ms"
    )


if __name__ == "__main__":
    main()
