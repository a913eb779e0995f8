"""The performance report of ``l6/performance``: ``rl_metrics`` rows and a self-contained HTML page (inline SVG,
no JavaScript or network). Pure; no Dagster."""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd

AGENT = "ppo"


def finite_or_none(v):
    return (
        float(v)
        if v is not None and isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(float(v))
        else None
    )


def metrics_rows(table: pd.DataFrame, bt: pd.DataFrame, computed_at: pd.Timestamp) -> pd.DataFrame:
    """``compare`` output -> ``rl_metrics`` rows (the seed system's columns, plus strategy and the rest)."""
    sessions = bt["session"].astype(str)
    symbol = str(bt["symbol"].iloc[0])
    versions = ",".join(sorted(bt["model_version"].astype(str).unique()))
    rows = []
    for r in table.to_dict("records"):
        rows.append(
            {
                "metric_date": sessions.max(),
                "symbol": symbol,
                "strategy": r["strategy"],
                "first_session": sessions.min(),
                "bars": int(r["bars"]),
                "sessions": int(r["sessions"]),
                "win_rate": finite_or_none(r["win_rate"]),
                "sharpe_ratio": finite_or_none(r["sharpe"]),
                "sortino_ratio": finite_or_none(r["sortino"]),
                "max_drawdown": finite_or_none(r["max_drawdown"]),
                "total_trades": int(r["n_trades"]),
                "total_pnl": finite_or_none(r["total_log_return"]),
                "total_return": finite_or_none(r["total_return"]),
                "annualized_return": finite_or_none(r["annualized_return"]),
                "volatility": finite_or_none(r["volatility"]),
                "sharpe_session": finite_or_none(r["sharpe_session"]),
                "calmar": finite_or_none(r["calmar"]),
                "profit_factor": finite_or_none(r["profit_factor"]),
                "avg_holding_bars": finite_or_none(r["avg_holding_bars"]),
                "turnover": finite_or_none(r["turnover"]),
                "exposure": finite_or_none(r["exposure"]),
                "sharpe_ci_low": finite_or_none(r.get("sharpe_ci_low")),
                "sharpe_ci_high": finite_or_none(r.get("sharpe_ci_high")),
                "sharpe_diff_vs_buy_and_hold": finite_or_none(r.get("sharpe_diff_vs_buy_and_hold")),
                "model_versions": versions if r["strategy"] == AGENT else None,
                "computed_at": computed_at,
            }
        )
    out = pd.DataFrame(rows)
    float_cols = [
        c
        for c in out.columns
        if c
        not in (
            "metric_date",
            "symbol",
            "strategy",
            "first_session",
            "bars",
            "sessions",
            "total_trades",
            "model_versions",
            "computed_at",
        )
    ]
    out[float_cols] = out[float_cols].astype("float64")
    out["model_versions"] = out["model_versions"].astype("string")
    return out


def experiment_metric_rows(
    comparison: dict,
    sessions: pd.Series,
    folds: list[str],
    selected_by_fold: dict[str, str],
    computed_at: pd.Timestamp,
) -> pd.DataFrame:
    """``experiment_comparison`` output -> ``rl_experiment_metrics`` rows, one per strategy of its table.

    ``sessions``: the compared bars' sessions; ``folds``: the folds compared, in order; ``selected_by_fold``: fold ->
    the strategy name selected on it (a row's ``selected_in`` lists the folds that selected it, or None)."""
    metric_date = str(sessions.max())
    pbo = comparison["pbo"]["pbo"] if comparison["pbo"] else None
    pbo_candidates = comparison["pbo_candidates"]["pbo"] if comparison["pbo_candidates"] else None
    return pd.DataFrame(
        [
            {
                "metric_date": metric_date,
                "strategy": r["strategy"],
                "first_session": str(sessions.min()),
                "first_fold": folds[0],
                "last_fold": folds[-1],
                "folds": len(folds),
                "sessions": int(r["sessions"]),
                "bars": int(r["bars"]),
                "total_return": finite_or_none(r["total_return"]),
                "sharpe_ratio": finite_or_none(r["sharpe"]),
                "sharpe_ci_low": finite_or_none(r.get("sharpe_ci_low")),
                "sharpe_ci_high": finite_or_none(r.get("sharpe_ci_high")),
                "turnover_per_session": finite_or_none(r["turnover_per_session"]),
                "deflated_sharpe": finite_or_none(r["deflated_sharpe"]),
                "n_trials": comparison["n_trials"],
                "pbo": finite_or_none(pbo),
                "pbo_candidates": finite_or_none(pbo_candidates),
                "selected_in": ",".join(f for f in folds if selected_by_fold[f] == r["strategy"]) or None,
                "computed_at": computed_at,
            }
            for r in comparison["table"].to_dict("records")
        ]
    )


def _svg_lines(series: dict[str, np.ndarray], width: int = 900, height: int = 320) -> str:
    """Cumulative log P&L per strategy as an inline SVG line chart (no plotting library needed)."""
    colors = [  # the ten "tab10" colours: a research comparison draws up to ~10 strategies
        "#1f77b4",
        "#ff7f0e",
        "#2ca02c",
        "#d62728",
        "#9467bd",
        "#8c564b",
        "#e377c2",
        "#7f7f7f",
        "#bcbd22",
        "#17becf",
    ]
    values = np.concatenate([v for v in series.values() if len(v)] or [np.zeros(1)])
    lo, hi = float(min(values.min(), 0.0)), float(max(values.max(), 0.0))
    span = hi - lo or 1.0
    n = max(len(v) for v in series.values()) if series else 1
    pad = 40

    def xy(i, v):
        return pad + (width - 2 * pad) * (i / max(n - 1, 1)), pad + (height - 2 * pad) * (1 - (v - lo) / span)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
        f'<rect width="{width}" height="{height}" fill="white" stroke="#ccc"/>',
    ]
    y0 = xy(0, 0.0)[1]
    parts.append(
        f'<line x1="{pad}" y1="{y0:.1f}" x2="{width - pad}" y2="{y0:.1f}" stroke="#999" stroke-dasharray="4"/>'
    )
    parts.append(
        f'<text x="4" y="{pad - 8}" font-size="11">{hi:.4f}</text><text x="4" y="{height - pad + 14}" '
        f'font-size="11">{lo:.4f}</text>'
    )
    for k, (name, v) in enumerate(series.items()):
        color = colors[k % len(colors)]
        pts = " ".join("{:.1f},{:.1f}".format(*xy(i, float(x))) for i, x in enumerate(v))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>')
        parts.append(
            f'<text x="{width - pad + 4 - 120}" y="{pad + 14 * k}" font-size="12" '
            f'fill="{color}">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _overfitting_html(overfit: dict | None) -> str:
    if not overfit:
        return ""
    d, p = overfit["deflated_sharpe"], overfit["pbo"]
    dsr = (
        f"{d['dsr']:.4f} = P(true Sharpe per session &gt; {d['sr0']:.4f}, the expected maximum of {d['n_trials']} "
        "false strategies); "
        f"Sharpe per session {d['sr']:.4f} over {d['n_obs']} sessions, PSR against 0 {d['psr_zero']:.4f}"
        if d
        else f"n/a ({html.escape(str(overfit.get('deflated_sharpe_error')))})"
    )
    pbo = (
        f"{p['pbo']:.4f} (CSCV, {p['n_splits']} splits, {p['n_combinations']} combinations)"
        if p
        else "n/a (fewer than 2 sessions)"
    )
    return (
        f"<h2>Overfitting</h2><p>Deflated Sharpe ratio of {html.escape(overfit['selected'])} (Bailey &amp; López de "
        "Prado 2014), "
        f"the {overfit['n_trials']} strategies compared as the trials: {dsr}.</p>"
        "<p>Probability of backtest overfitting across them (Bailey, Borwein, López de Prado &amp; Zhu 2016): "
        f"{pbo}.</p>"
    )


def report_html(
    table: pd.DataFrame, curves: dict[str, np.ndarray], bt: pd.DataFrame, overfit: dict | None = None
) -> str:
    shown = table.drop(columns=[c for c in ("computed_at",) if c in table.columns])
    if overfit and overfit["deflated_sharpe"] and "sharpe_ratio" in shown.columns:
        # the report's table only (rl_metrics keeps its columns): the DSR beside the Sharpe, on the selected strategy's
        # row
        shown.insert(
            shown.columns.get_loc("sharpe_ratio") + 1,
            "deflated_sharpe",
            np.where(shown["strategy"] == overfit["selected"], overfit["deflated_sharpe"]["dsr"], np.nan),
        )
    first, last = bt["session"].min(), bt["session"].max()
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>USD/COP PPO performance</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}</style></head><body>"
        f"<h1>USD/COP PPO agent vs baselines</h1><p>Sessions {html.escape(str(first))} .. {html.escape(str(last))}, "
        f"{len(bt)} bars, {bt['session'].nunique()} sessions; model versions: "
        f"{html.escape(', '.join(sorted(bt['model_version'].astype(str).unique())))}. "
        "Same bars, costs and risk rules for every strategy (but buy_and_hold_held, held long over the whole period "
        "with its "
        "overnight gaps, outside the session-flat risk rules; buy_and_hold is flat at each close); P&amp;L in "
        "log-return units.</p>"
        f"<h2>Cumulative net log P&amp;L</h2>{_svg_lines(curves)}"
        f"<h2>Metrics</h2>{shown.to_html(index=False, float_format=lambda v: f'{v:.4g}', na_rep='')}"
        f"{_overfitting_html(overfit)}"
        "</body></html>"
    )


def experiment_report_html(rows: pd.DataFrame, comparison: dict, picks: dict[str, str | None]) -> str:
    """The research comparison as one self-contained HTML page (inline SVG, no JavaScript or network): the selected
    strategy, every experiment's ensemble, LightGBM and the baselines out of sample (cumulative net log P&L, then the
    ``rl_experiment_metrics`` rows), the deflated Sharpe with N = experiments x seeds, PBO over the seed trials and
    over the ensembles, and what each fold selected (``picks``: fold -> experiment, None = the rule's fallback)."""
    frames = comparison["frames"]
    curves = {name: np.cumsum(f["pnl"].to_numpy()) for name, f in frames.items() if name != "flat"}
    curves["buy_and_hold_held"] = np.cumsum(np.asarray(comparison["held"]["pnl"], dtype="float64"))
    shown = rows.drop(columns=[c for c in ("computed_at", "metric_date") if c in rows.columns])
    first = rows.iloc[0]
    selected = rows.set_index("strategy").loc["selected"] if (rows["strategy"] == "selected").any() else None

    def pbo_text(p) -> str:
        return f"{p['pbo']:.4f} (CSCV, {p['n_splits']} splits, {p['n_combinations']} combinations)" if p else "n/a"

    dsr = finite_or_none(selected.get("deflated_sharpe")) if selected is not None else None
    dsr = "n/a" if dsr is None else f"{dsr:.4f}"
    pick_rows = "".join(
        f"<tr><td>{html.escape(f)}</td><td>{html.escape(p or 'flat (fallback)')}</td></tr>" for f, p in picks.items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>USD/COP experiments out of sample</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}</style></head><body>"
        "<h1>USD/COP experiments: the validation-selected strategy vs every candidate and the baselines</h1>"
        f"<p>Folds {html.escape(str(first['first_fold']))} .. {html.escape(str(first['last_fold']))} "
        f"({int(first['folds'])}), sessions from {html.escape(str(first['first_session']))}: {int(first['sessions'])} "
        "sessions out of sample. Each fold's experiment was chosen on validation sessions before the fold only; the "
        "same bars, costs and risk rules for every strategy (but buy_and_hold_held, held over the whole period with "
        "its overnight gaps); P&amp;L in log-return units.</p>"
        f"<h2>Cumulative net log P&amp;L</h2>{_svg_lines(curves)}"
        f"<h2>Metrics</h2>{shown.to_html(index=False, float_format=lambda v: f'{v:.4g}', na_rep='')}"
        "<h2>Overfitting</h2>"
        f"<p>Deflated Sharpe ratio of the selected strategy (Bailey &amp; López de Prado 2014), with the "
        f"{comparison['n_trials']} trials tried (experiments x seeds): {dsr}.</p>"
        "<p>Probability of backtest overfitting (Bailey, Borwein, López de Prado &amp; Zhu 2016) over the seed "
        f"trials: {pbo_text(comparison['pbo'])}; over the experiments' ensembles: "
        f"{pbo_text(comparison['pbo_candidates'])}.</p>"
        f"<h2>Selected per fold</h2><table><tr><th>fold</th><th>experiment</th></tr>{pick_rows}</table>"
        "</body></html>"
    )
