"""Walk-forward folds for training the agent: one fold per calendar month (key ``YYYY-MM``).

A fold is the month whose sessions the model trades out of sample. Its training and validation
sessions come strictly before the fold's first session (no leakage), taken from the sessions that
actually have data (``sessions_available``, filtered to trading days of ``market_calendar``):

    ... [ train_first .. train_last ] [ valid_first .. valid_last ] | fold start_session .. end_session
                 train window              last ``valid_sessions``     (out of sample)

- ``expanding``: the training window is every available session before the validation slice;
- ``rolling``: only the last ``train_sessions`` of them.

Either way the training window must hold at least ``min_train_sessions`` sessions, otherwise
``fold_windows`` raises a ValueError saying how many there are and how many are needed.

Pure Python/pandas; no Dagster.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

import pandas as pd

from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import Settings, as_settings

FOLD_KEY_FORMAT = "%Y-%m"
SCHEMES = ("expanding", "rolling")


@dataclass(frozen=True)
class Fold:
    key: str  # 'YYYY-MM'
    start_session: dt.date  # first trading day of the month (out of sample from here)
    end_session: dt.date  # last trading day of the month
    train_first: dt.date
    train_last: dt.date
    valid_first: dt.date
    valid_last: dt.date
    scheme: str = "expanding"
    train_sessions: tuple[dt.date, ...] = ()  # the available sessions used for training, sorted
    valid_sessions: tuple[dt.date, ...] = ()  # the available sessions used for validation, sorted

    @property
    def n_train(self) -> int:
        return len(self.train_sessions)

    @property
    def n_valid(self) -> int:
        return len(self.valid_sessions)

    def to_dict(self) -> dict:
        """JSON-friendly summary (dates as ISO strings, session lists reduced to their counts)."""
        out = {
            k: (v.isoformat() if isinstance(v, dt.date) else v)
            for k, v in asdict(self).items()
            if k not in ("train_sessions", "valid_sessions")
        }
        out.update(n_train=self.n_train, n_valid=self.n_valid)
        return out


def _as_date(value) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, pd.Timestamp):
        return value.date()
    return dt.date.fromisoformat(str(value)[:10])


def parse_fold_key(key: str) -> tuple[int, int]:
    try:
        month = dt.datetime.strptime(str(key), FOLD_KEY_FORMAT)
    except ValueError:
        raise ValueError(f"fold key {key!r} is not of the form YYYY-MM") from None
    return month.year, month.month


def fold_sessions(key: str) -> list[dt.date]:
    """The trading days (market calendar) of the fold's month."""
    year, month = parse_fold_key(key)
    first = dt.date(year, month, 1)
    last = (pd.Timestamp(first) + pd.offsets.MonthEnd(0)).date()
    days = cal.trading_days(first, last)
    if not days:
        raise ValueError(f"fold {key}: the month has no trading session")
    return days


def monthly_folds(first_day, last_day) -> list[str]:
    """Keys ``YYYY-MM`` of the months with at least one trading day in ``first_day..last_day`` (inclusive)."""
    first, last = _as_date(first_day), _as_date(last_day)
    if last < first:
        raise ValueError(f"monthly_folds: {last} is before {first}")
    keys = []
    for month in pd.period_range(first, last, freq="M"):
        lo = max(first, month.start_time.date())
        hi = min(last, month.end_time.date())
        if cal.trading_days(lo, hi):
            keys.append(month.strftime(FOLD_KEY_FORMAT))
    return keys


def fold_windows(
    fold_key: str,
    sessions_available: Iterable,
    scheme: Literal["expanding", "rolling"] = "expanding",
    train_sessions: int | None = 250,
    valid_sessions: int = 20,
    min_train_sessions: int = 60,
) -> Fold:
    """Training and validation windows of a fold, from the available sessions strictly before its month.

    ``train_sessions`` is used by the ``rolling`` scheme (the window length); ``expanding`` ignores it.
    Sessions that are not trading days of the calendar are ignored.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"fold scheme {scheme!r}: expected one of {SCHEMES}")
    if int(valid_sessions) < 1:
        raise ValueError(f"valid_sessions={valid_sessions!r}: must be >= 1")
    if int(min_train_sessions) < 1:
        raise ValueError(f"min_train_sessions={min_train_sessions!r}: must be >= 1")
    if scheme == "rolling" and (train_sessions is None or int(train_sessions) < int(min_train_sessions)):
        raise ValueError(
            f"rolling folds need train_sessions >= min_train_sessions ({train_sessions!r} < {min_train_sessions})"
        )
    month = fold_sessions(fold_key)
    start, end = month[0], month[-1]
    before = sorted({d for d in map(_as_date, sessions_available) if d < start and cal.is_trading_day(d)})
    need = int(min_train_sessions) + int(valid_sessions)
    if len(before) < need:
        raise ValueError(
            f"fold {fold_key}: not enough history before {start.isoformat()}: {len(before)} available sessions, "
            f"need at least {need} ({min_train_sessions} training + {valid_sessions} validation); "
            f"materialize more L4 episodes before the fold or lower min_train_sessions"
        )
    valid = before[-int(valid_sessions) :]
    train = before[: -int(valid_sessions)]
    if scheme == "rolling":
        train = train[-int(train_sessions) :]
    assert train and valid and train[-1] < valid[0] and valid[-1] < start  # noqa: S101 (invariant)
    return Fold(
        key=fold_key,
        start_session=start,
        end_session=end,
        train_first=train[0],
        train_last=train[-1],
        valid_first=valid[0],
        valid_last=valid[-1],
        scheme=scheme,
        train_sessions=tuple(train),
        valid_sessions=tuple(valid),
    )


def fold_options_from_env(settings: Settings | None = None) -> dict:
    """The deployment's fold options (``USDCOP_TRAIN_SCHEME``, ``USDCOP_*_SESSIONS``): ``fold_windows``' keywords."""
    return as_settings(settings).training.fold_options()


def warm_sessions(episodes: pd.DataFrame) -> list[str]:
    if episodes.empty:
        return []
    warm = (
        episodes.groupby("session")["warm"].all()
        if "warm" in episodes.columns
        else episodes.groupby("session").size() > 0
    )
    return sorted(warm[warm].index.astype(str))
