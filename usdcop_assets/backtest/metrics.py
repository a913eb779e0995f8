"""Performance metrics: the one module, with one annualisation.

Annualisation (documented once, used everywhere):
    BARS_PER_YEAR = 60 * 252     bar returns on a full grid; ``performance`` and the bootstrap use the bars per
                                 session the data has x 252 (years are counted in sessions, not bars / 60)
    SESSIONS_PER_YEAR = 252      session returns (sum of a session's bar P&L)

Inputs are per-bar net log P&L (``engine.run_backtest``'s ``pnl``: p_t * next_ret_t - cost_t), the positions,
and the session of each bar. Risk-free rate 0, required return 0.

Compounding: the P&L is in log-return units, so the equity is E_t = exp(cumsum(pnl)) (starting at
E_{-1} = 1), which is exactly the simple-return compounding prod(1 + s_k) of the simple bar returns
s = expm1(pnl). The definitions are empyrical's (``empyrical``/``empyrical-reloaded``), applied as follows:

- on the log bar P&L x = pnl, like empyrical's ``sharpe_ratio``, ``sortino_ratio``, ``annual_volatility``
  with ``annualization=BARS_PER_YEAR``:
    volatility = std(x, ddof=1) * sqrt(BARS_PER_YEAR)
    sharpe     = mean(x) / std(x, ddof=1) * sqrt(BARS_PER_YEAR)                       (NaN when std is 0)
    sortino    = mean(x) * BARS_PER_YEAR / (sqrt(mean(min(x, 0)^2)) * sqrt(BARS_PER_YEAR))
               = mean(x) / sqrt(mean(min(x, 0)^2)) * sqrt(BARS_PER_YEAR)             (downside deviation over
                 ALL bars, not only the losing ones; NaN without a losing bar, where empyrical gives inf)
    sharpe_session = the same Sharpe on S, the per-session sums of pnl, with SESSIONS_PER_YEAR
- on the equity, i.e. on the simple returns s, like empyrical's ``cum_returns_final``, ``annual_return``,
  ``max_drawdown`` and ``calmar_ratio``:
    total_return = E_final - 1 = exp(sum(pnl)) - 1;  total_log_return = sum(pnl)
    annualized_return = E_final ** (BARS_PER_YEAR / n) - 1 = exp(mean(pnl) * BARS_PER_YEAR) - 1
    max_drawdown = max_t (1 - E_t / max(1, max_{k<=t} E_k))  (a positive fraction; empyrical's is its negative,
                   and like empyrical the starting equity 1 counts as a peak)
    calmar = annualized_return / max_drawdown                 (NaN when there is no drawdown)
- max_drawdown_duration_bars = the longest run of consecutive bars with equity below its running peak
  (log equity more than 1e-12 under it)
- a trade is a maximal run of consecutive bars of one session holding a non-zero position of the same
  sign: it opens on a change from flat or of sign, and closes on the next change to flat or of sign (or at
  the session end). Its P&L is the sum of its bars' pnl plus the pnl of the flat bar that closes it (which
  is exactly its closing cost); on a sign flip the whole bar's cost goes to the new trade.
- n_trades, win_rate = share of trades with P&L > 0, profit_factor = sum of winning trade P&L /
  |sum of losing trade P&L| (inf with no losing trade, NaN with no trade), avg_holding_bars = mean trade length
- turnover = sum |p_t - p_{t-1}| (p_{-1} = 0); turnover_per_session = turnover / sessions;
  exposure = share of bars with a non-zero position

Everything is vectorized numpy (no Python loop over bars).

Bootstrap: session-block bootstrap (whole sessions resampled with replacement, so intra-session
dependence is kept), percentile intervals; the difference version resamples the same sessions for both
strategies (paired).

Pure numpy; no Dagster, no pandas.
"""

from __future__ import annotations

import math

import numpy as np

from usdcop_assets.rl.costs import BARS_PER_YEAR, SESSIONS_PER_YEAR, annualized_sharpe, session_codes, sharpe

_NAN = float("nan")


def _as1d(x, name, n=None):
    a = np.asarray(x, dtype="float64").ravel()
    if n is not None and len(a) != n:
        raise ValueError(f"{name} has {len(a)} values for {n} bars")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: {int((~np.isfinite(a)).sum())} values are not finite")
    return a


def sortino(bar_pnl, periods_per_year: float = BARS_PER_YEAR) -> float:
    x = np.asarray(bar_pnl, dtype="float64")
    if not len(x):
        return _NAN
    down = np.minimum(x, 0.0)
    np.square(down, out=down)
    down = math.sqrt(float(np.mean(down)))
    return float(x.mean() / down * math.sqrt(periods_per_year)) if down > 0 else _NAN


def drawdown(bar_pnl) -> tuple[float, int]:
    """(max drawdown as a fraction of the peak equity, longest under-water stretch in bars)."""
    x = np.asarray(bar_pnl, dtype="float64").ravel()
    if not len(x):
        return 0.0, 0
    log_eq = np.cumsum(x)
    under = np.maximum(log_eq, 0.0)
    np.maximum.accumulate(under, out=under)  # running peak of the log equity, the start (0) included
    np.subtract(under, log_eq, out=under)  # peak - log equity >= 0
    max_dd = float(1.0 - math.exp(-float(under.max())))
    return max_dd, _longest_run(under > 1e-12)


def _longest_run(mask: np.ndarray) -> int:
    """Length of the longest run of consecutive True values (the widest gap between two False ones)."""
    dry = np.flatnonzero(~mask)
    if len(dry) == len(mask):
        return 0
    return int(np.diff(np.concatenate(([-1], dry, [len(mask)]))).max() - 1)


def trades(bar_pnl, positions, session_ids) -> tuple[np.ndarray, np.ndarray]:
    """(P&L per trade, length in bars per trade), trades as defined in the module docstring."""
    pnl = _as1d(bar_pnl, "bar_pnl")
    pos = _as1d(positions, "positions", len(pnl))
    if len(session_ids) != len(pnl):
        raise ValueError(f"session_ids has {len(session_ids)} values for {len(pnl)} bars")
    return _trades(pnl, pos, session_codes(session_ids))


def _trades(pnl: np.ndarray, pos: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # boolean masks (1 byte a bar) and few full-size temporaries: at 1M bars the cost is memory traffic
    n = len(pos)
    if not n:
        return np.zeros(0), np.zeros(0, dtype="int64")
    up, down = pos > 0, pos < 0
    active = up | down
    opens = np.empty(n, dtype=bool)  # a trade starts: a non-flat bar with a new sign, or in a new session
    opens[0] = active[0]
    np.not_equal(up[1:], up[:-1], out=opens[1:])
    opens[1:] |= down[1:] != down[:-1]
    opens[1:] |= codes[1:] != codes[:-1]
    opens &= active
    starts = np.flatnonzero(opens)
    k = len(starts)
    if not k:
        return np.zeros(0), np.zeros(0, dtype="int64")
    last = active.copy()  # a trade's last bar: the next bar is flat or opens another trade
    last[:-1] &= ~active[1:] | opens[1:]
    ends = np.flatnonzero(last) + 1  # one past each trade's last bar, in the order of starts
    lengths = (ends - starts).astype("int64")
    # Every bar carries the number of trades opened so far (0 before the first): a trade's bars, then the flat
    # bar that closes it (its closing cost), then flat bars weighted 0, so one bincount sums each trade in
    # bar order, exactly as adding its bars one by one and then its closing cost.
    closes = ends[ends < n]
    closes = closes[~active[closes]]
    weights = np.zeros(n)
    np.copyto(weights, pnl, where=active)
    weights[closes] = pnl[closes]
    trade_no = np.cumsum(opens)
    trade_pnl = np.bincount(trade_no, weights=weights, minlength=k + 1)[1:]
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
    mean = float(pnl.mean()) if n else _NAN
    sd = float(pnl.std(ddof=1)) if n > 1 else _NAN
    # Years are counted in sessions (252 a year), not in bars / 60: gappy data averages fewer than 60 bars a session.
    per_year = bars_per_year(n, n_sessions)
    ann = float(math.exp(total * SESSIONS_PER_YEAR / n_sessions) - 1.0) if n else _NAN
    max_dd, dd_bars = drawdown(pnl)
    tp, lengths = _trades(pnl, pos, codes)
    wins, losses = tp[tp > 0].sum(), tp[tp < 0].sum()
    if not len(tp):
        pf = _NAN
    elif losses < 0:
        pf = float(wins / -losses)
    else:
        pf = float("inf") if wins > 0 else _NAN
    step = np.empty(n)
    step[:1] = pos[:1]
    np.subtract(pos[1:], pos[:-1], out=step[1:])
    turnover = float(np.abs(step, out=step).sum())
    return {
        "bars": n,
        "sessions": n_sessions,
        "total_log_return": total,
        "total_return": float(math.exp(total) - 1.0),
        "annualized_return": ann,
        "volatility": float(sd * math.sqrt(per_year)) if n > 1 else _NAN,
        "sharpe": annualized_sharpe(mean, sd, per_year) if n > 1 else _NAN,
        "sortino": sortino(pnl, per_year),
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
        "exposure": np.count_nonzero(pos) / n if n else _NAN,
    }


def bars_per_year(n_bars: int, n_sessions: int) -> float:
    """Bars a year as the data has them: bars per session observed x 252 sessions (60 x 252 on a full grid)."""
    return n_bars / n_sessions * SESSIONS_PER_YEAR if n_sessions else float(BARS_PER_YEAR)


def _session_moments(bar_pnl, session_ids, center: float):
    x = np.asarray(bar_pnl, dtype="float64") - center
    codes = session_codes(session_ids)
    k = int(codes[-1] + 1)
    return (
        np.bincount(codes, weights=x, minlength=k),
        np.bincount(codes, weights=x * x, minlength=k),
        np.bincount(codes, minlength=k).astype("float64"),
    )


def _boot_sharpes(moments, center: float, idx: np.ndarray, per_year: float = BARS_PER_YEAR) -> np.ndarray:
    s, q, c = moments
    cnt = c[idx].sum(axis=1)
    m = s[idx].sum(axis=1) / cnt
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (q[idx].sum(axis=1) - cnt * m * m) / (cnt - 1)
        sd = np.sqrt(np.maximum(var, 0.0))
        out = (m + center) / sd * math.sqrt(per_year)
    return np.where(sd > 1e-15, out, np.nan)


def _interval(estimate, draws, confidence, n, seed) -> dict:
    ok = draws[np.isfinite(draws)]
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(ok, [alpha, 1.0 - alpha]).tolist() if len(ok) else (_NAN, _NAN)
    return {
        "estimate": estimate,
        "low": float(low),
        "high": float(high),
        "confidence": confidence,
        "std_error": float(ok.std(ddof=1)) if len(ok) > 1 else _NAN,
        "n": n,
        "valid": int(len(ok)),
        "seed": seed,
    }


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
    per_year = bars_per_year(len(x), idx.shape[1])
    return _interval(
        sharpe(x, per_year),
        _boot_sharpes(_session_moments(x, session_ids, center), center, idx, per_year),
        confidence,
        n,
        seed,
    )


def bootstrap_sharpe_diff_ci(a_pnl, b_pnl, session_ids, n: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Percentile CI of sharpe(a) - sharpe(b), paired: each draw resamples the same sessions for both."""
    a = _as1d(a_pnl, "a_pnl")
    b = _as1d(b_pnl, "b_pnl", len(a))
    if len(a) < 2:
        raise ValueError("the bootstrap needs at least 2 bars")
    ca, cb = float(a.mean()), float(b.mean())
    idx = _draws(session_ids, n, seed)
    per_year = bars_per_year(len(a), idx.shape[1])
    diff = _boot_sharpes(_session_moments(a, session_ids, ca), ca, idx, per_year) - _boot_sharpes(
        _session_moments(b, session_ids, cb), cb, idx, per_year
    )
    return _interval(sharpe(a, per_year) - sharpe(b, per_year), diff, confidence, n, seed)
