"""A session's L0..L5 rows from its raw bars and warm state, with the batch path's own functions.

``compute_session`` is what ``session_chain`` does for one session partition, step for step, with the
inputs the batch run reads from the lake held in memory instead (``WarmState``): the L1 bars of the
look-back sessions, the macro rows, the normalization statistics and the fold's model row. Each call
recomputes the whole session so far (~60 rows a layer, tens of milliseconds), so a bar that changes an
earlier one (a republished bar, a spike L1 now rejects against the day's median) changes the stored
session exactly as the batch run would; every layer is causal, so earlier bars' rows are otherwise
unchanged by a new bar.

No Dagster.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from usdcop_assets.core import calendar as cal
from usdcop_assets.features.engineering import MACRO_LOOKBACK_DAYS, build_features, macro_daily_frame, macro_zscores
from usdcop_assets.features.indicators import complete_from, compute_indicators
from usdcop_assets.observation.builder import ObservationConfig, build_observations
from usdcop_assets.observation.episodes import build_episodes, pending_steps
from usdcop_assets.refine.standardize import standardize_bars
from usdcop_assets.rl.decisions import decide_bars
from usdcop_assets.rl.paper import paper_ledger
from usdcop_assets.sources import L0_COLUMNS, conform_l0
from usdcop_assets.storage.lake.datasets import SESSION_DATASETS

# What the live process computes and stores (L6 is left to the session's batch run).
LIVE_ASSETS = tuple(d for d in SESSION_DATASETS if not d.startswith("l6/"))
L0, L1, REJECTS, L2, L3, OBS, EPISODES, ACTIONS, TRADES, POSITIONS = LIVE_ASSETS
# Write order: the input first (a restart recomputes everything from it), then the decision (what the trader
# waits for), then the layers between and the ledger. Each write is atomic and idempotent on its own.
WRITE_ORDER = (L0, ACTIONS, L1, REJECTS, L2, L3, OBS, EPISODES, TRADES, POSITIONS)
# ingested_at: when a row was fetched (the batch fetches again); row_hash: a hash of the raw row that
# includes ingested_at; inference_latency_ms: a timing. None of them is a value of the bar.
PROVENANCE_COLUMNS = ("ingested_at", "row_hash", "inference_latency_ms")


@dataclass(frozen=True)
class LayerSpec:
    """How an asset is stored, as its IO manager does it (built from the asset definitions' metadata)."""

    asset: str  # key path joined by "/"
    dataset: str  # lake dataset
    time_column: str = "time"
    whole_days: bool = False  # ``lake_window: session_days``: the session is stored as its whole Bogota day
    warehouse_table: str | None = None

    def window(self, day: dt.date) -> tuple[pd.Timestamp, pd.Timestamp]:
        start, end = cal.session_open(day), cal.session_end(day)
        return (cal.whole_session_days(start, end) or (start, end)) if self.whole_days else (start, end)


def sessions_back(day: dt.date, sessions: int, first_day: dt.date | None = None) -> dt.date:
    """The trading day ``sessions`` sessions before ``day`` (a session partition offset), not before ``first_day``."""
    for _ in range(sessions):
        if first_day is not None and day <= first_day:
            break
        day = cal.previous_trading_day(day)
    return max(day, first_day) if first_day is not None else day


def lookback_window(day: dt.date, sessions: int, first_day: dt.date | None = None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The whole Bogota days the batch run reads L1 over for ``day`` with a look-back of ``sessions`` sessions."""
    return cal.whole_session_days(cal.session_open(sessions_back(day, sessions, first_day)), cal.session_end(day))


def macro_window(day: dt.date) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The l1/macro_daily window l3/features_m5 reads for the session ``day``."""
    return cal.session_open(day) - pd.Timedelta(days=MACRO_LOOKBACK_DAYS), cal.session_end(day)


@dataclass
class WarmState:
    """What the batch run of the session reads besides the session's own rows, loaded once per session."""

    day: dt.date
    prior_l1: pd.DataFrame  # l1/ohlcv_m5 over the L2 look-back window, before the session's day
    l3_from: pd.Timestamp  # start of the L3 look-back window (whole days)
    macro_wide: pd.DataFrame  # l1/macro_daily over macro_window(day)
    config: ObservationConfig
    stats: dict | None  # the session month's l4/observation_stats; None: not materialized (bars not warm, decided flat)
    models: dict  # fold -> registry row (the session's fold, when trained or selected)
    registry: str = "l5/ppo_model"  # the asset whose rows ``models`` holds (l6/experiment_selection: serve=selection)
    _macro: pd.DataFrame | None = field(default=None, repr=False)
    _pit: pd.DataFrame | None = field(default=None, repr=False)

    def macro_daily(self) -> pd.DataFrame:
        if self._macro is None:
            self._macro = macro_daily_frame(self.macro_wide)
        return self._macro

    def macro_pit(self, targets: pd.DatetimeIndex) -> pd.DataFrame:
        """``macro_zscores(macro_daily(), targets)``, computed once per bar time: each row depends only on
        the daily values and its own bar time, so rows computed earlier in the session are the same bits."""
        cached = self._pit
        todo = targets if cached is None else targets.difference(cached.index)
        if len(todo):
            fresh = macro_zscores(self.macro_daily(), todo)
            cached = fresh if cached is None else pd.concat([cached, fresh]).sort_index()
            self._pit = cached
        return cached.reindex(targets) if cached is not None else macro_zscores(self.macro_daily(), targets)

    def set_macro(self, wide: pd.DataFrame) -> None:
        self.macro_wide, self._macro, self._pit = wide, None, None


@dataclass
class SessionRows:
    day: dt.date
    frames: dict[str, pd.DataFrame]  # asset -> the session's rows, in LIVE_ASSETS order
    fallbacks: list[str]
    skipped: str | None  # why L4/L5 were not computed, if they were not
    seconds: float


def _frame(columns, time_columns=("time",)) -> pd.DataFrame:
    """No rows, typed enough to be written (the store then removes the session's rows)."""
    return pd.DataFrame({c: pd.Series(dtype="datetime64[ns, UTC]" if c in time_columns else "object") for c in columns})


def compute_session(raw: pd.DataFrame, warm: WarmState, policy_of, limits, costs, log=None) -> SessionRows:
    """L0..L5 of the session ``warm.day`` from its raw bars (the L0 frame), as the session's batch run computes them."""
    return complete_session(decide_session(raw, warm, policy_of, limits, costs, log), costs)


def decide_session(raw: pd.DataFrame, warm: WarmState, policy_of, limits, costs, log=None) -> SessionRows:
    """The layers the decision needs (L0..L4 observations, L5 actions); ``complete_session`` adds the episodes
    and the paper ledger. Split so the decision is stored before the bookkeeping is computed."""
    t0 = time.perf_counter()
    day = warm.day
    start, end = cal.session_open(day), cal.session_end(day)
    frames: dict[str, pd.DataFrame] = {L0: raw}

    # L1 (assets/standardized.py)
    kept, rejects = standardize_bars(raw)
    if rejects["time"].isna().any():
        rejects.loc[rejects["time"].isna(), "time"] = start
    kept = kept.sort_values("time", kind="stable").reset_index(drop=True)  # the order the lake gives it back
    frames[L1], frames[REJECTS] = kept, rejects

    # L2 (assets/indicators.py): the look-back sessions and the session, as the batch reads them
    bars = pd.concat([f for f in (warm.prior_l1, kept) if len(f)], ignore_index=True) if len(kept) else kept
    times = pd.DatetimeIndex(bars["time"]) if len(bars) else pd.DatetimeIndex([], tz="UTC")
    targets = times[(times >= start) & (times < end)]
    if len(targets) == 0:
        for asset, cols in (
            (L2, ["time", "symbol"]),
            (L3, ["time", "symbol"]),
            (OBS, ["time", "symbol"]),
            (EPISODES, ["time", "symbol"]),
            (ACTIONS, ["time", "symbol"]),
            (TRADES, ["time", "symbol", "fill_at"]),
            (POSITIONS, ["time", "symbol"]),
        ):
            frames[asset] = _frame(cols)
        return SessionRows(day, frames, [], None, time.perf_counter() - t0)
    indicators = compute_indicators(bars, targets=targets, data_start=complete_from(bars))
    frames[L2] = indicators

    # L3 (assets/features.py)
    bars3 = bars[bars["time"] >= warm.l3_from]
    ind_targets = pd.DatetimeIndex(indicators["time"])
    features = build_features(bars3, indicators, macro_pit=warm.macro_pit(ind_targets), targets=ind_targets)
    frames[L3] = features

    # L4 (assets/observations.py)
    # the month's statistics, or none: then, as in the batch run, the bars are stored not warm (with the reason)
    observations = build_observations(
        features, warm.config, {warm.stats["month"]: warm.stats} if warm.stats is not None else {}
    )
    frames[OBS] = observations

    # L5 (assets/serving.py)
    actions, fallbacks = decide_bars(
        observations,
        kept,
        start,
        end,
        warm.models,
        policy_of,
        warm.config,
        log=log,
        limits=limits,
        costs=costs,
        registry=warm.registry,
    )
    frames[ACTIONS] = actions
    return SessionRows(day, frames, fallbacks, None, time.perf_counter() - t0)


def complete_session(rows: SessionRows, costs) -> SessionRows:
    """Add the episodes (l4/episodes_session) and the paper ledger (l5/paper_*) to decided rows, in place."""
    frames = rows.frames
    if ACTIONS not in frames or EPISODES in frames:
        return rows
    t0 = time.perf_counter()
    start, end = cal.session_open(rows.day), cal.session_end(rows.day)
    kept, actions = frames[L1], frames[ACTIONS]
    episodes = build_episodes(frames[OBS], kept, start, end)
    # as the batch does mid-session: the newest step waits for its next bar (unless it is the closing bar)
    pending = pending_steps(pd.DatetimeIndex(episodes["time"]), end - pd.Timedelta(1, "ns"))
    frames[EPISODES] = episodes[~pending].reset_index(drop=True)
    trades, positions = paper_ledger(actions[actions["time"] < end], kept[kept["time"] < end], costs)
    frames[TRADES] = trades[(trades["time"] >= start) & (trades["time"] < end)].reset_index(drop=True)
    frames[POSITIONS] = positions[(positions["time"] >= start) & (positions["time"] < end)].reset_index(drop=True)
    rows.seconds += time.perf_counter() - t0
    return rows


# --- L0: the source's rows of the session so far ------------------------------------------------------

_VALUE_COLUMNS = [c for c in L0_COLUMNS if c != "ingested_at"]


@dataclass(frozen=True)
class RawUpdate:
    raw: pd.DataFrame  # the session's L0 rows now
    new_bars: list[pd.Timestamp]  # bar times the stored rows did not have
    republished: list[pd.Timestamp]  # bar times whose values changed
    withdrawn: list[pd.Timestamp]  # bar times the source no longer serves

    @property
    def changed(self) -> bool:
        return bool(self.new_bars or self.republished or self.withdrawn)


def _row_ids(frame: pd.DataFrame) -> np.ndarray:
    return (
        pd.util.hash_pandas_object(frame[_VALUE_COLUMNS], index=False).to_numpy()
        if len(frame)
        else np.zeros(0, "uint64")
    )


def _ids_by_time(frame: pd.DataFrame, ids: np.ndarray) -> dict[pd.Timestamp, frozenset]:
    out: dict[pd.Timestamp, set] = {}
    for t, rid in zip(pd.DatetimeIndex(frame["time"]), ids):
        out.setdefault(t, set()).add(int(rid))
    return {t: frozenset(v) for t, v in out.items()}


def merge_raw(stored: pd.DataFrame | None, fetched: pd.DataFrame) -> RawUpdate:
    """The session's L0 after a fetch of the whole session so far: what the source serves now (as the
    batch's L0 would hold), rows unchanged since they were stored keeping their ``ingested_at``."""
    fetched = fetched.sort_values("time", kind="stable").reset_index(drop=True)[L0_COLUMNS]
    if stored is None or stored.empty:
        return RawUpdate(conform_l0(fetched), sorted(set(pd.DatetimeIndex(fetched["time"]))), [], [])
    old_ids, new_ids = _row_ids(stored), _row_ids(fetched)
    position: dict[int, int] = {}
    for i, rid in enumerate(old_ids.tolist()):
        position.setdefault(rid, i)  # the earliest stored copy of an identical row
    known = np.array([rid in position for rid in new_ids.tolist()], dtype=bool)
    raw = fetched.copy()
    if known.any():
        first = [position[rid] for rid in new_ids[known].tolist()]
        raw.loc[known, "ingested_at"] = stored["ingested_at"].iloc[first].to_numpy()
    old, new = _ids_by_time(stored, old_ids), _ids_by_time(fetched, new_ids)
    return RawUpdate(
        raw=conform_l0(raw),
        new_bars=sorted(set(new) - set(old)),
        republished=sorted(t for t in set(new) & set(old) if old[t] != new[t]),
        withdrawn=sorted(set(old) - set(new)),
    )
