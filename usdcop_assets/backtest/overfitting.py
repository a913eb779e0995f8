"""Overfitting statistics: probabilistic and deflated Sharpe ratio, probability of backtest overfitting (CSCV).

References (one line each):
- PSR: Bailey, D. H. & López de Prado, M. (2012), "The Sharpe Ratio Efficient Frontier", Journal of Risk 15(2).
- DSR: Bailey, D. H. & López de Prado, M. (2014), "The Deflated Sharpe Ratio: Correcting for Selection Bias,
  Backtest Overfitting and Non-Normality", Journal of Portfolio Management 40(5).
- PBO/CSCV: Bailey, D. H., Borwein, J., López de Prado, M. & Zhu, Q. J. (2016), "The Probability of Backtest
  Overfitting", Journal of Computational Finance 20(4).

Units: every Sharpe ratio here is the NON-annualized Sharpe per observation (per period) of the returns given,
mean / std (std with ddof=1), risk-free rate 0. The platform passes per-session returns (the sum of a session's
net log bar P&L), so these are Sharpe ratios per session; annualizing (x sqrt(252)) is the caller's business and
must not be mixed in here (the PSR's sqrt(n - 1) already counts the observations). The trial Sharpe ratios given to
``deflated_sharpe_ratio`` must be in the same per-period units as ``returns``.

Pure numpy + the standard library (``statistics.NormalDist`` for the normal CDF and its inverse); no scipy, no Dagster.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from statistics import NormalDist

import numpy as np

EULER_GAMMA = 0.5772156649015329  # Euler-Mascheroni constant

_N = NormalDist()


def probabilistic_sharpe_ratio(sr: float, sr_benchmark: float, n_obs: int, skew: float, kurtosis: float) -> float:
    """PSR = P(true Sharpe > sr_benchmark) (Bailey & López de Prado 2012, eq. in their section 3):

        PSR = Phi( (sr - sr_benchmark) * sqrt(n_obs - 1) / sqrt(1 - skew * sr + (kurtosis - 1) / 4 * sr^2) )

    ``sr`` and ``sr_benchmark`` are non-annualized Sharpe ratios per observation; ``skew`` is the skewness and
    ``kurtosis`` the RAW (non-excess, Pearson) kurtosis of the returns: 3 for normal returns, not 0.
    """
    for name, v in (("sr", sr), ("sr_benchmark", sr_benchmark), ("skew", skew), ("kurtosis", kurtosis)):
        if not math.isfinite(v):
            raise ValueError(f"probabilistic_sharpe_ratio: {name} is not finite ({v})")
    if n_obs < 3:
        raise ValueError(f"probabilistic_sharpe_ratio: needs at least 3 observations, got {n_obs}")
    var = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if var <= 0:
        raise ValueError(
            f"probabilistic_sharpe_ratio: 1 - skew*sr + (kurtosis-1)/4*sr^2 = {var:.6g} <= 0 "
            f"(sr={sr:.6g}, skew={skew:.6g}, kurtosis={kurtosis:.6g}; is the kurtosis raw, not excess?)"
        )
    return _N.cdf((sr - sr_benchmark) * math.sqrt(n_obs - 1) / math.sqrt(var))


def expected_max_sharpe(n_trials: int, var_trials: float) -> float:
    """E[max of n_trials Sharpe ratios] when every true Sharpe is 0 (False Strategy Theorem, Bailey & López de Prado
    2014):

        SR0 = sqrt(V) * ((1 - gamma) * Phi^-1(1 - 1/N) + gamma * Phi^-1(1 - 1/(N e)))

    with V the variance of the trials' Sharpe ratios (per observation) and gamma the Euler-Mascheroni constant.
    One trial: no selection, SR0 = 0.
    """
    if n_trials < 1:
        raise ValueError(f"expected_max_sharpe: n_trials must be >= 1, got {n_trials}")
    if not math.isfinite(var_trials) or var_trials < 0:
        raise ValueError(f"expected_max_sharpe: var_trials must be finite and >= 0, got {var_trials}")
    if n_trials == 1:
        return 0.0  # Phi^-1(0) = -inf: the formula does not apply; the max of one trial has no selection bias
    n = float(n_trials)
    return math.sqrt(var_trials) * (
        (1.0 - EULER_GAMMA) * _N.inv_cdf(1.0 - 1.0 / n) + EULER_GAMMA * _N.inv_cdf(1.0 - 1.0 / (n * math.e))
    )


@dataclasses.dataclass(frozen=True)
class DeflatedSharpe:
    """The deflated Sharpe ratio of one strategy (all Sharpe ratios per observation, not annualized)."""

    sr: float  # the strategy's Sharpe per observation
    sr0: float  # the expected maximum Sharpe of n_trials false strategies (the PSR benchmark)
    n_trials: int
    var_trials: float  # variance (ddof=1) of the trials' Sharpe ratios; 0 with one trial
    n_obs: int
    skew: float
    kurtosis: float  # raw (non-excess)
    psr_zero: float  # PSR against 0: what the DSR would be without any selection
    dsr: float  # PSR against sr0: the probability that the true Sharpe is above what selection alone explains

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _moments(returns) -> tuple[np.ndarray, float, float, float]:
    x = np.asarray(returns, dtype="float64").ravel()
    if len(x) < 3:
        raise ValueError(f"deflated_sharpe_ratio: needs at least 3 returns, got {len(x)}")
    if not np.isfinite(x).all():
        raise ValueError(f"deflated_sharpe_ratio: {int((~np.isfinite(x)).sum())} returns are not finite")
    sd = float(x.std(ddof=1))
    if not sd > 1e-12 * math.sqrt(float(np.mean(x * x))):  # constant up to rounding
        raise ValueError("deflated_sharpe_ratio: the returns have zero variance (Sharpe ratio undefined)")
    d = x - x.mean()
    m2 = float(np.mean(d * d))  # population moments for the shape, as in the papers' examples
    return x, float(x.mean()) / sd, float(np.mean(d**3)) / m2**1.5, float(np.mean(d**4)) / m2**2


def deflated_sharpe_ratio(returns, trial_sharpes, prior_trials: int = 0) -> DeflatedSharpe:
    """DSR = PSR(SR0) (Bailey & López de Prado 2014), SR0 = ``expected_max_sharpe(N, var(trial_sharpes))``.

    ``returns``: the selected strategy's returns per period (per session on the platform), at least 3, not constant.
    ``trial_sharpes``: the non-annualized Sharpe ratios per period of ALL N strategies tried, the selected one
    included (N = len); with N = 1 there is no selection and SR0 = 0 (DSR = PSR(0)).
    ``prior_trials``: trials made before this comparison whose Sharpes are not on these periods (earlier screens on
    other months): they count in N, the variance stays that of ``trial_sharpes``.
    Sharpe = mean / std(ddof=1); skewness and raw kurtosis from the population moments.
    """
    x, sr, skew, kurt = _moments(returns)
    t = np.asarray(trial_sharpes, dtype="float64").ravel()
    if not len(t):
        raise ValueError("deflated_sharpe_ratio: trial_sharpes is empty (the selected strategy is one trial)")
    if not np.isfinite(t).all():
        raise ValueError(f"deflated_sharpe_ratio: {int((~np.isfinite(t)).sum())} trial Sharpe ratios are not finite")
    if prior_trials < 0:
        raise ValueError(f"deflated_sharpe_ratio: prior_trials must be >= 0, got {prior_trials}")
    var_t = float(t.var(ddof=1)) if len(t) > 1 else 0.0
    n_trials = int(len(t)) + int(prior_trials)
    sr0 = expected_max_sharpe(n_trials, var_t)
    return DeflatedSharpe(
        sr=sr,
        sr0=sr0,
        n_trials=n_trials,
        var_trials=var_t,
        n_obs=int(len(x)),
        skew=skew,
        kurtosis=kurt,
        psr_zero=probabilistic_sharpe_ratio(sr, 0.0, len(x), skew, kurt),
        dsr=probabilistic_sharpe_ratio(sr, sr0, len(x), skew, kurt),
    )


# --- PBO by combinatorially symmetric cross-validation -------------------------------------------------

MAX_COMBINATIONS = 20_000  # C(16, 8) = 12,870 are all enumerated; C(20, 10) = 184,756 are sampled


@dataclasses.dataclass(frozen=True)
class PBOResult:
    pbo: float  # share of logits <= 0: the in-sample best ranks in the lower half (or the middle) out of sample
    logits: np.ndarray  # one per combination, log(w / (1 - w)), w = the OOS relative rank of the IS best
    n_splits: int
    n_combinations: int  # combinations evaluated
    n_candidates: int
    sampled: bool  # True when C(S, S/2) > max_combinations and a random subset was evaluated

    def to_dict(self) -> dict:
        return {
            "pbo": self.pbo,
            "n_splits": self.n_splits,
            "n_combinations": self.n_combinations,
            "n_candidates": self.n_candidates,
            "sampled": self.sampled,
            "logit_median": float(np.median(self.logits)),
        }


def _combinations(s: int, max_combinations: int, seed: int) -> tuple[list[tuple[int, ...]], bool]:
    half = s // 2
    total = math.comb(s, half)
    if total <= max_combinations:
        return list(itertools.combinations(range(s), half)), False
    # Cap: a uniform random sample (seeded, without repetition) of max_combinations of the C(S, S/2) in-sample sets.
    rng = np.random.default_rng(seed)
    seen: set[tuple[int, ...]] = set()
    while len(seen) < max_combinations:
        seen.add(tuple(sorted(rng.choice(s, size=half, replace=False).tolist())))
    return sorted(seen), True


def _score(sums: np.ndarray, sq: np.ndarray, n: float, metric: str) -> np.ndarray:
    """Per-candidate performance on a set of blocks from their sums (rows: combinations, columns: candidates)."""
    mean = sums / n
    if metric == "mean":
        return mean
    sd = np.sqrt(np.maximum(sq / n - mean * mean, 0.0))  # ddof=0: every candidate has the same n, ranks are unchanged
    # sd from the sums carries rounding of ~1e-8 x the RMS: below 1e-6 x the RMS the candidate is constant
    rms = np.sqrt(sq / n)
    varies = sd > 1e-6 * rms
    # a constant candidate (e.g. always flat): Sharpe 0 if it is always 0, else +-inf by the sign of its mean
    const = np.where(mean > 0, np.inf, np.where(mean < 0, -np.inf, 0.0))
    return np.where(varies, mean / np.where(varies, sd, 1.0), const)


def _relative_rank(oos: np.ndarray, best: np.ndarray) -> np.ndarray:
    """w = rank / (N + 1) of the chosen candidate among the N out of sample, rank 1 = worst, N = best; ties share
    the average rank."""
    chosen = oos[np.arange(len(oos)), best][:, None]
    below = (oos < chosen).sum(axis=1)
    tied = (oos == chosen).sum(axis=1)  # itself included
    rank = below + (tied + 1) / 2.0
    return rank / (oos.shape[1] + 1)


def probability_of_backtest_overfitting(
    performance_matrix,
    n_splits: int = 16,
    metric: str = "sharpe",
    max_combinations: int = MAX_COMBINATIONS,
    seed: int = 0,
) -> PBOResult:
    """PBO by CSCV (Bailey, Borwein, López de Prado & Zhu 2016).

    ``performance_matrix``: T x N, the per-period returns (per session on the platform) of N candidates on the same T
    periods, in time order. The rows are cut into S = ``n_splits`` contiguous blocks (``np.array_split``: sizes differ
    by at most one row when S does not divide T; no row is dropped). For every combination of S/2 blocks as the
    in-sample set J (its complement the out-of-sample set): the candidate with the best ``metric`` on J (the first on a
    tie) is ranked among all N on the complement (1 = worst .. N = best, ties share the average rank), w = rank/(N+1),
    logit = log(w / (1 - w)). PBO = share of logits <= 0.

    ``metric``: "sharpe" (mean / std per period, the paper's; a constant candidate scores 0 if it is always 0, else
    +-inf) or "mean". Combinations: all C(S, S/2) when at most ``max_combinations`` (C(16, 8) = 12,870), otherwise a
    seeded uniform sample of ``max_combinations`` distinct ones (``PBOResult.sampled``).
    """
    m = np.asarray(performance_matrix, dtype="float64")
    if m.ndim != 2:
        raise ValueError(f"probability_of_backtest_overfitting: performance_matrix must be T x N, got shape {m.shape}")
    t, n = m.shape
    if n < 2:
        raise ValueError(f"probability_of_backtest_overfitting: needs at least 2 candidates, got {n}")
    if n_splits < 2 or n_splits % 2:
        raise ValueError(f"probability_of_backtest_overfitting: n_splits must be even and >= 2, got {n_splits}")
    if t < n_splits:
        raise ValueError(
            f"probability_of_backtest_overfitting: {t} periods for {n_splits} splits (need at least one period a split)"
        )
    if not np.isfinite(m).all():
        raise ValueError(f"probability_of_backtest_overfitting: {int((~np.isfinite(m)).sum())} values are not finite")
    if metric not in ("sharpe", "mean"):
        raise ValueError(f"probability_of_backtest_overfitting: metric must be 'sharpe' or 'mean', got {metric!r}")
    if max_combinations < 1:
        raise ValueError("probability_of_backtest_overfitting: max_combinations must be >= 1")
    blocks = np.array_split(np.arange(t), n_splits)
    # sufficient statistics per block: sums of x and x^2, and the row count
    b_sum = np.stack([m[i].sum(axis=0) for i in blocks])
    b_sq = np.stack([(m[i] ** 2).sum(axis=0) for i in blocks])
    b_n = np.array([len(i) for i in blocks], dtype="float64")
    combos, sampled = _combinations(n_splits, max_combinations, seed)
    sel = np.zeros((len(combos), n_splits), dtype=bool)
    for k, c in enumerate(combos):
        sel[k, list(c)] = True
    ins = sel.astype("float64")
    out = 1.0 - ins
    is_score = _score(ins @ b_sum, ins @ b_sq, (ins @ b_n)[:, None], metric)
    oos_score = _score(out @ b_sum, out @ b_sq, (out @ b_n)[:, None], metric)
    w = _relative_rank(oos_score, np.argmax(is_score, axis=1))
    logits = np.log(w / (1.0 - w))
    return PBOResult(
        pbo=float(np.mean(logits <= 0)),
        logits=logits,
        n_splits=n_splits,
        n_combinations=len(combos),
        n_candidates=n,
        sampled=sampled,
    )


# --- a selection among candidate strategies --------------------------------------------------------------


def session_sharpe(returns) -> float:
    """Non-annualized Sharpe per period, mean / std(ddof=1); 0 for a strategy that is always 0 (flat: no excess return);
    NaN with fewer than 2 returns or constant non-zero ones (undefined; ``selection_statistics`` reports no DSR
    then)."""
    x = np.asarray(returns, dtype="float64").ravel()
    if not np.isfinite(x).all():
        raise ValueError(f"session_sharpe: {int((~np.isfinite(x)).sum())} returns are not finite")
    if len(x) < 2:
        return float("nan")
    sd = float(x.std(ddof=1))
    if sd > 1e-12 * math.sqrt(float(np.mean(x * x))):  # above rounding: 0.1 three times has a std of ~1e-17
        return float(x.mean()) / sd
    return 0.0 if not np.any(x) else float("nan")


def selection_statistics(
    session_returns: dict, selected: str, n_splits: int = 16, max_combinations: int = MAX_COMBINATIONS, seed: int = 0
) -> dict:
    """The overfitting statistics of picking ``selected`` among the candidates of ``session_returns``.

    ``session_returns``: name -> per-session returns (the same sessions, in time order) of every candidate compared,
    the selected one included; the N candidates are the N trials of the DSR and the N columns of the PBO.
    Returns a JSON-ready dict: ``sharpe_per_session`` per candidate (non-annualized; flat = 0), ``deflated_sharpe``
    (``DeflatedSharpe.to_dict()`` of the selected one, or None with ``deflated_sharpe_error`` when its returns are
    degenerate, e.g. an agent that never trades), ``pbo`` (``PBOResult.to_dict()`` with S = ``n_splits``, lowered to
    the largest even number of sessions when there are fewer; None with fewer than 2 sessions or candidates).
    Degenerate data (one session, an agent that never trades) gives None entries, not an error, so that a report
    over a short history still renders; misuse (unknown ``selected``, unequal lengths, non-finite returns) raises.
    """
    if selected not in session_returns:
        raise ValueError(f"selection_statistics: {selected!r} is not among the candidates {sorted(session_returns)}")
    names = list(session_returns)
    cols = [np.asarray(session_returns[k], dtype="float64").ravel() for k in names]
    if len({len(c) for c in cols}) != 1:
        raise ValueError(
            f"selection_statistics: the candidates have different numbers of sessions {[len(c) for c in cols]}"
        )
    sharpes = {k: session_sharpe(c) for k, c in zip(names, cols)}
    out: dict = {
        "candidates": names,
        "n_trials": len(names),
        "selected": selected,
        "n_sessions": len(cols[0]),
        "sharpe_per_session": sharpes,
        "deflated_sharpe": None,
        "pbo": None,
    }
    try:
        out["deflated_sharpe"] = deflated_sharpe_ratio(session_returns[selected], list(sharpes.values())).to_dict()
    except ValueError as e:
        out["deflated_sharpe_error"] = str(e)
    s = min(n_splits, len(cols[0]) // 2 * 2)
    if s >= 2 and len(names) >= 2:
        out["pbo"] = probability_of_backtest_overfitting(
            np.column_stack(cols), n_splits=s, max_combinations=max_combinations, seed=seed
        ).to_dict()
    return out
