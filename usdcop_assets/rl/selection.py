"""Selection without peeking: which experiment a user would trade in a fold, chosen on validation sessions only.

The rule is fixed before any out-of-sample figure exists (``SelectionRule``; the default is the one the harness
uses): among the candidates, the highest validation Sharpe of the seed ensemble (the traded combination, real
costs and risk rules), optionally only among those whose validation turnover per session is at most
``max_turnover_per_session``, and only when it reaches ``min_sharpe`` (otherwise ``fallback``, e.g. flat). Ties go
to the earlier candidate (the order the experiments were listed in). Each seed's checkpoint was already picked on
the same validation sessions inside ``training.train_fold``.

Peeking is impossible by construction: ``select`` receives a fold start and ``ValidationResult`` rows only, each
carrying the validation sessions its figures cover; it refuses any row whose sessions are not all strictly before
the fold start. It never sees a return of the fold's own months. ``validation_result`` builds a row from
per-session returns and keeps only the given validation sessions (refusing any on or after the fold start).

Pure Python/numpy; no Dagster.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np

ANNUAL_SESSIONS = 252


@dataclass(frozen=True)
class ValidationResult:
    name: str
    sessions: tuple[dt.date, ...]  # the validation sessions the figures cover (all before the fold)
    sharpe: float  # the figure the rule ranks (annualized; NaN = never selected)
    turnover_per_session: float = 0.0
    detail: dict | None = None  # e.g. checkpoints per seed; carried through to the selection

    def __post_init__(self):
        if not self.sessions:
            raise ValueError(f"validation result {self.name!r}: no validation sessions")
        object.__setattr__(self, "sessions", tuple(_as_date(d) for d in self.sessions))


@dataclass(frozen=True)
class SelectionRule:
    metric: str = "sharpe"
    max_turnover_per_session: float | None = None  # candidates above it are not eligible
    min_sharpe: float | None = None  # below it (or no eligible candidate): the fallback is traded
    fallback: str | None = None  # e.g. "flat"; None = the best candidate regardless

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Selection:
    fold_start: dt.date
    selected: str
    reason: str
    scores: dict  # name -> validation Sharpe (None when not finite)
    eligible: tuple[str, ...]
    detail: dict | None = None

    def to_dict(self) -> dict:
        return {
            "fold_start": self.fold_start.isoformat(),
            "selected": self.selected,
            "reason": self.reason,
            "scores": self.scores,
            "eligible": list(self.eligible),
        }


def _as_date(d) -> dt.date:
    if isinstance(d, dt.datetime):
        return d.date()
    if isinstance(d, dt.date):
        return d
    return dt.date.fromisoformat(str(d)[:10])


def validation_result(
    name: str, session_returns: dict, valid_sessions, fold_start, *, turnover_per_session: float = 0.0, detail=None
) -> ValidationResult:
    """A ``ValidationResult`` from per-session net returns (session -> return): only ``valid_sessions`` are read,
    and they must all be before ``fold_start``. Sharpe = mean / std of the session returns x sqrt(252) (0 for a
    candidate that stayed flat: it beats a losing one)."""
    start = _as_date(fold_start)
    valid = sorted({_as_date(d) for d in valid_sessions})
    late = [d for d in valid if d >= start]
    if late:
        raise ValueError(f"validation session {late[0]} is on or after the fold start {start}: that would peek")
    returns = {_as_date(k): float(v) for k, v in session_returns.items()}
    missing = [d for d in valid if d not in returns]
    if missing:
        raise ValueError(f"{name}: no return for validation session {missing[0]}")
    x = np.array([returns[d] for d in valid])
    sd = float(x.std(ddof=1)) if len(x) > 1 else 0.0
    if not np.any(x):
        sharpe = 0.0  # flat throughout: no excess return
    else:
        sharpe = float(x.mean()) / sd * math.sqrt(ANNUAL_SESSIONS) if sd > 0 else float("nan")
    return ValidationResult(name, tuple(valid), sharpe, turnover_per_session, detail)


def select(fold_start, candidates, rule: SelectionRule | None = None) -> Selection:
    """The candidate to trade from ``fold_start`` on, by ``rule`` (module docstring); validation rows only."""
    rule = rule or SelectionRule()
    if rule.metric != "sharpe":
        raise ValueError(f"selection metric {rule.metric!r}: only 'sharpe' is comparable across experiments")
    start = _as_date(fold_start)
    candidates = list(candidates)
    if not candidates:
        raise ValueError("select: no candidate")
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise ValueError(f"select: candidate names repeat {names}")
    for c in candidates:
        if not isinstance(c, ValidationResult):
            raise TypeError(f"select takes ValidationResult rows, got {type(c).__name__}")
        if max(c.sessions) >= start:  # the guard: a figure that reads the fold's own sessions is refused
            raise ValueError(
                f"{c.name}: validation ends {max(c.sessions)}, on or after the fold start {start}; that would peek"
            )
    score = {c.name: (c.sharpe if math.isfinite(c.sharpe) else -math.inf) for c in candidates}
    eligible = [
        c
        for c in candidates
        if math.isfinite(c.sharpe)
        and (rule.max_turnover_per_session is None or c.turnover_per_session <= rule.max_turnover_per_session)
    ]
    scores = {n: (v if math.isfinite(v) else None) for n, v in score.items()}
    best = None
    for c in eligible:  # strict >: ties go to the earlier candidate
        if best is None or score[c.name] > score[best.name]:
            best = c
    if best is not None and (rule.min_sharpe is None or best.sharpe >= rule.min_sharpe):
        reason = f"highest validation Sharpe {best.sharpe:.3f} over {len(best.sessions)} sessions before {start}"
        return Selection(start, best.name, reason, scores, tuple(c.name for c in eligible), best.detail)
    if rule.fallback is None:
        best = max(candidates, key=lambda c: score[c.name])  # nothing eligible: still the best on validation
        return Selection(start, best.name, "no eligible candidate: best validation Sharpe", scores, (), best.detail)
    return Selection(start, rule.fallback, "no candidate passed the rule: fallback", scores, tuple(), None)
