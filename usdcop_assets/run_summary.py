"""The closing summary of ``usdcop run``, read back from the stores (so it shows what was stored, not what a run
meant to store): rows per layer over the range, the data checks, the models, and the agent against the
baselines from ``rl_metrics``. Pure reading and formatting; no Dagster import."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

import pandas as pd

from usdcop_assets.core import calendar as cal
from usdcop_assets.storage.lake.datasets import SESSION_DATASETS
from usdcop_assets.storage.lake.session_table import SessionTable

AGENT = "ppo"  # l6/performance's name of the agent's strategy (defs/layers/l6_backtest.py)

# the session datasets of the lake, in pipeline order (the dataset is the asset key's path)
LAYER_DATASETS = tuple(d for d in SESSION_DATASETS if d != "l5/paper_positions")
METRIC_COLUMNS = (
    "strategy",
    "total_return",
    "sharpe_ratio",
    "sharpe_ci_low",
    "sharpe_ci_high",
    "max_drawdown",
    "total_trades",
)


def layer_rows(store, first: dt.date, last: dt.date, datasets=LAYER_DATASETS) -> dict[str, int]:
    """Rows each lake dataset holds for the sessions ``first..last`` (0 for a dataset never written)."""
    start, end = cal.session_open(first), cal.session_open(last) + pd.Timedelta(days=1)
    counts = {}
    for name in datasets:
        table = SessionTable(store, name).read_arrow(start, end, columns=["time"])
        counts[name] = 0 if table is None else table.num_rows
    return counts


@dataclass(frozen=True)
class CheckTally:
    passed: int
    warned: int
    failed: int
    problems: tuple[str, ...]  # "asset:check: description" of each check that did not pass everywhere


def tally_checks(evaluations, error_severity) -> CheckTally:
    """One verdict per check over the sessions it evaluated: failed (an ERROR check failed in a session), warned
    (only WARN failures) or passed. ``evaluations`` are Dagster's ``AssetCheckEvaluation``s."""
    by_check: dict[str, list] = {}
    for ev in evaluations:
        by_check.setdefault(ev.asset_check_key.to_user_string(), []).append(ev)
    verdicts: Counter = Counter()
    problems = []
    for name, evs in sorted(by_check.items()):
        bad = [ev for ev in evs if not ev.passed]
        if not bad:
            verdicts["passed"] += 1
            continue
        verdict = "failed" if any(ev.severity == error_severity for ev in bad) else "warned"
        verdicts[verdict] += 1
        problems.append(
            f"{name} {verdict} in {len(bad)} of {len(evs)} sessions: {bad[0].description or bad[0].partition}"
        )
    return CheckTally(verdicts["passed"], verdicts["warned"], verdicts["failed"], tuple(problems))


def stored_metrics(warehouse, metric_date: str) -> pd.DataFrame:
    """``rl_metrics`` rows of ``metric_date`` (the last session judged), one per strategy, agent first."""
    frame = warehouse.read_window("rl_metrics")
    frame = frame[frame["metric_date"].astype(str).str[:10] == metric_date]
    order = {AGENT: 0, "flat": 1, "buy_and_hold": 2}
    return frame.sort_values("strategy", key=lambda s: s.map(lambda v: order.get(v, 3)), kind="stable").reset_index(
        drop=True
    )


def _pct(value) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{100 * value:+.2f}%"


def _dd(value) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{100 * abs(value):.2f}%"


def _num(value, fmt: str = "+.2f") -> str:
    return "n/a" if value is None or pd.isna(value) else format(value, fmt)


def metrics_lines(metrics: pd.DataFrame) -> list[str]:
    """A fixed-width table: total return, Sharpe with its 95 % bootstrap interval, max drawdown, trades."""
    header = f"    {'strategy':<19}{'return':>9}{'Sharpe':>8}  {'95% CI':<17}{'max DD':>8}{'trades':>7}"
    lines = [header]
    for r in metrics.to_dict("records"):
        ci = f"[{_num(r['sharpe_ci_low'])}, {_num(r['sharpe_ci_high'])}]"
        lines.append(
            f"    {r['strategy']:<19}{_pct(r['total_return']):>9}{_num(r['sharpe_ratio']):>8}  {ci:<17}"
            f"{_dd(r['max_drawdown']):>8}{int(r['total_trades']):>7}"
        )
    return lines
