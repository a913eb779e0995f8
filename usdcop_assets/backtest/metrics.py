"""Performance metrics: the one module, with one annualisation.

Annualisation (documented once, used everywhere):
    BARS_PER_YEAR = 60 * 252     bar returns (5-minute bars, 60 per Bogota session, 252 sessions a year)
    SESSIONS_PER_YEAR = 252      session returns (sum of a session's bar P&L)

Inputs are per-bar net log P&L (``engine.run_backtest``'s ``pnl``: p_t * next_ret_t - cost_t), the positions,
and the session of each bar. Definitions (risk-free rate 0):

- total_log_return = sum(pnl); total_return = exp(sum(pnl)) - 1
- annualized_return = exp(mean(pnl) * BARS_PER_YEAR) - 1
- volatility = std(pnl, ddof=1) * sqrt(BARS_PER_YEAR)
- sharpe = mean(pnl) / std(pnl, ddof=1) * sqrt(BARS_PER_YEAR)            (NaN when std is 0)
- sortino = mean(pnl) / sqrt(mean(min(pnl, 0)^2)) * sqrt(BARS_PER_YEAR)  (NaN without a losing bar)
- sharpe_session = mean(S) / std(S, ddof=1) * sqrt(SESSIONS_PER_YEAR), S = per-session sums of pnl
- equity E_t = exp(cumsum(pnl)), starting at E_{-1} = 1; max_drawdown = max_t (1 - E_t / max(1, max_{k<=t} E_k))
- max_drawdown_duration_bars = the longest run of consecutive bars with equity below its running peak
- calmar = annualized_return / max_drawdown (NaN when there is no drawdown)
- a trade is a maximal run of consecutive bars of one session holding a non-zero position of the same
  sign: it opens on a change from flat or of sign, and closes on the next change to flat or of sign (or at
  the session end). Its P&L is the sum of its bars' pnl plus the pnl of the flat bar that closes it (which
  is exactly its closing cost); on a sign flip the whole bar's cost goes to the new trade.
- n_trades, win_rate = share of trades with P&L > 0, profit_factor = sum of winning trade P&L /
  |sum of losing trade P&L| (inf with no losing trade, NaN with no trade), avg_holding_bars = mean trade length
- turnover = sum |p_t - p_{t-1}| (p_{-1} = 0); turnover_per_session = turnover / sessions;
  exposure = share of bars with a non-zero position

Bootstrap: session-block bootstrap (whole sessions resampled with replacement, so intra-session
dependence is kept), percentile intervals; the difference version resamples the same sessions for both
strategies (paired).

Pure numpy; no Dagster, no pandas.
"""

from __future__ import annotations

import math

import numpy as np

from usdcop_assets.trading.costs import session_codes

BARS_PER_SESSION = 60
SESSIONS_PER_YEAR = 252
BARS_PER_YEAR = BARS_PER_SESSION * SESSIONS_PER_YEAR

_NAN = float("nan")


def _as1d(x, name, n=None):
    a = np.asarray(x, dtype="float64").ravel()
    if n is not None and len(a) != n:
        raise ValueError(f"{name} has {len(a)} values for {n} bars")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: {int((~np.isfinite(a)).sum())} values are not finite")
    return a


def sharpe(bar_pnl, periods_per_year: float = BARS_PER_YEAR) -> float:
    x = np.asarray(bar_pnl, dtype="float64")
    if len(x) < 2:
        return _NAN
    sd = x.std(ddof=1)
    return float(x.mean() / sd * math.sqrt(periods_per_year)) if sd > 0 else _NAN


def sortino(bar_pnl, periods_per_year: float = BARS_PER_YEAR) -> float:
    x = np.asarray(bar_pnl, dtype="float64")
    if not len(x):
        return _NAN
    down = math.sqrt(float(np.mean(np.minimum(x, 0.0) ** 2)))
    return float(x.mean() / down * math.sqrt(periods_per_year)) if down > 0 else _NAN


def drawdown(bar_pnl) -> tuple[float, int]:
    """(max drawdown as a fraction of the peak equity, longest under-water stretch in bars)."""
    x = np.asarray(bar_pnl, dtype="float64")
    if not len(x):
        return 0.0, 0
    log_eq = np.cumsum(x)
    peak = np.maximum.accumulate(np.maximum(log_eq, 0.0))
    under = peak - log_eq
    max_dd = float(1.0 - math.exp(-float(under.max())))
    water = under > 1e-12
    longest = run = 0
    for w in water.tolist():
        run = run + 1 if w else 0
        if run > longest:
            longest = run
    return max_dd, longest


def trades(bar_pnl, positions, session_ids) -> tuple[np.ndarray, np.ndarray]:
    """(P&L per trade, length in bars per trade), trades as defined in the module docstring."""
    pnl = np.asarray(bar_pnl, dtype="float64")
    sign = np.sign(np.asarray(positions, dtype="float64"))
    codes = session_codes(session_ids)
    n = len(sign)
    if not n:
        return np.zeros(0), np.zeros(0, dtype="int64")
    prev_sign = np.r_[0.0, sign[:-1]]
    new_session = np.r_[True, codes[1:] != codes[:-1]]
    active = sign != 0
    opens = active & (new_session | (sign != prev_sign))
    trade_id = np.cumsum(opens) - 1
    k = int(opens.sum())
    if k == 0:
        return np.zeros(0), np.zeros(0, dtype="int64")
    trade_pnl = np.bincount(trade_id[active], weights=pnl[active], minlength=k)
    lengths = np.bincount(trade_id[active], minlength=k).astype("int64")
    closing = (~active) & (prev_sign != 0)  # a flat bar right after a position: its pnl is the closing cost
    trade_pnl += np.bincount(trade_id[closing], weights=pnl[closing], minlength=k)
    return trade_pnl, lengths


def performance(bar_pnl, positions, session_ids) -> dict:
    pnl = _as1d(bar_pnl, "bar_pnl")
    n = len(pnl)
    pos = _as1d(positions, "positions", n)
    if len(session_ids) != n:
        raise ValueError(f"session_ids has {len(session_ids)} values for {n} bars")
    codes = session_codes(session_ids)
    n_sessions = int(codes[-1] + 1) if n else 0
    session_pnl = np.bincount(codes, weights=pnl, minlength=n_sessions) if n else np.zeros(0)
    total = float(pnl.sum())
    ann = float(math.exp(pnl.mean() * BARS_PER_YEAR) - 1.0) if n else _NAN
    max_dd, dd_bars = drawdown(pnl)
    tp, lengths = trades(pnl, pos, session_ids)
    wins, losses = tp[tp > 0].sum(), tp[tp < 0].sum()
    if not len(tp):
        pf = _NAN
    elif losses < 0:
        pf = float(wins / -losses)
    else:
        pf = float("inf") if wins > 0 else _NAN
    turnover = float(np.abs(np.diff(np.r_[0.0, pos])).sum())
    return {
        "bars": n,
        "sessions": n_sessions,
        "total_log_return": total,
        "total_return": float(math.exp(total) - 1.0),
        "annualized_return": ann,
        "volatility": float(pnl.std(ddof=1) * math.sqrt(BARS_PER_YEAR)) if n > 1 else _NAN,
        "sharpe": sharpe(pnl),
        "sortino": sortino(pnl),
        "sharpe_session": sharpe(session_pnl, SESSIONS_PER_YEAR),
        "max_drawdown": max_dd,
        "max_drawdown_duration_bars": int(dd_bars),
        "calmar": float(ann / max_dd) if max_dd > 0 else _NAN,
        "n_trades": int(len(tp)),
        "win_rate": float((tp > 0).mean()) if len(tp) else _NAN,
        "profit_factor": pf,
        "avg_holding_bars": float(lengths.mean()) if len(lengths) else _NAN,
        "turnover": turnover,
        "turnover_per_session": turnover / n_sessions if n_sessions else _NAN,
        "exposure": float((pos != 0).mean()) if n else _NAN,
    }


def _session_moments(bar_pnl, session_ids, center: float):
    x = np.asarray(bar_pnl, dtype="float64") - center
    codes = session_codes(session_ids)
    k = int(codes[-1] + 1)
    return (np.bincount(codes, weights=x, minlength=k), np.bincount(codes, weights=x * x, minlength=k),
            np.bincount(codes, minlength=k).astype("float64"))


def _boot_sharpes(moments, center: float, idx: np.ndarray) -> np.ndarray:
    s, q, c = moments
    cnt = c[idx].sum(axis=1)
    m = s[idx].sum(axis=1) / cnt
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (q[idx].sum(axis=1) - cnt * m * m) / (cnt - 1)
        sd = np.sqrt(np.maximum(var, 0.0))
        out = (m + center) / sd * math.sqrt(BARS_PER_YEAR)
    return np.where(sd > 1e-15, out, np.nan)


def _interval(estimate, draws, confidence, n, seed) -> dict:
    ok = draws[np.isfinite(draws)]
    alpha = (1.0 - confidence) / 2.0
    low, high = (np.quantile(ok, [alpha, 1.0 - alpha]).tolist() if len(ok) else (_NAN, _NAN))
    return {"estimate": estimate, "low": float(low), "high": float(high), "confidence": confidence,
            "std_error": float(ok.std(ddof=1)) if len(ok) > 1 else _NAN, "n": n, "valid": int(len(ok)), "seed": seed}


def _draws(session_ids, n, seed):
    k = int(session_codes(session_ids)[-1] + 1)
    if n < 1:
        raise ValueError("n must be >= 1")
    return np.random.default_rng(seed).integers(0, k, size=(n, k))


def bootstrap_sharpe_ci(bar_pnl, session_ids, n: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Percentile CI of the (bar, annualized) Sharpe ratio by session-block bootstrap."""
    x = _as1d(bar_pnl, "bar_pnl")
    if len(x) < 2:
        raise ValueError("the bootstrap needs at least 2 bars")
    center = float(x.mean())
    idx = _draws(session_ids, n, seed)
    return _interval(sharpe(x), _boot_sharpes(_session_moments(x, session_ids, center), center, idx), confidence, n, seed)


def bootstrap_sharpe_diff_ci(a_pnl, b_pnl, session_ids, n: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Percentile CI of sharpe(a) - sharpe(b), paired: each draw resamples the same sessions for both."""
    a = _as1d(a_pnl, "a_pnl")
    b = _as1d(b_pnl, "b_pnl", len(a))
    if len(a) < 2:
        raise ValueError("the bootstrap needs at least 2 bars")
    ca, cb = float(a.mean()), float(b.mean())
    idx = _draws(session_ids, n, seed)
    diff = _boot_sharpes(_session_moments(a, session_ids, ca), ca, idx) - _boot_sharpes(_session_moments(b, session_ids, cb), cb, idx)
    return _interval(sharpe(a) - sharpe(b), diff, confidence, n, seed)
