"""L1 standardization of raw 5-minute bars: every input row is either kept or rejected with a reason.

Pure pandas; nothing here imports Dagster. ``len(kept) + len(rejects) == len(raw)`` always, and every
rejected row keeps its ORIGINAL time (the rejects table shows what arrived) and gets a ``detail``.

Rules, applied in this order (a row gets the first reason that applies):

1. ``missing_time``: no parseable timestamp.
2. ``bad_price``: an open/high/low/close that is missing, non-finite, zero or negative.
3. ``ohlc_integrity``: high < max(open, close) or low > min(open, close).
4. ``price_spike``: one of open/high/low/close is more than ``SPIKE_MAX_LOG`` (0.15, i.e. x1.162 or
   x0.861) away in log terms from the median close of the rows of the same symbol and Bogota day
   that passed rules 1-3 (any hour of that day). USD/COP never moves 16 % inside a day, so a 10x
   (or 0.1x) print is a vendor error; the median ignores the spike itself. Days with fewer than
   ``SPIKE_MIN_ROWS`` (3) such rows are not judged (a median of two cannot say which one is wrong).
5. Session grid and whole-hour clock shifts. A row whose time is the open of a bar of a Bogota
   session is *native*. The other rows are:
   - on a weekend or a Colombian holiday (Bogota date): ``off_session_grid`` ("weekend"/"holiday");
   - not on the 5-minute grid (e.g. 08:02, seconds): ``off_session_grid``;
   - otherwise (a 5-minute-aligned time on a trading day, outside 08:00-12:55 Bogota) candidates for a
     *shift*: grouped by (symbol, Bogota day, source), each group tries whole-hour shifts
     ``SHIFT_CANDIDATES`` in order (+5, -5: Bogota's UTC offset, i.e. local time stored as UTC or the
     reverse; then +1, -1, +2, -2, ... up to 12, skipping 5). A shift is confirmed for the group only
     if (a) every shifted time is a bar of the session of the SAME Bogota day, and (b) prices
     continue:
       * a shifted row landing on a bar that a native row holds is compared by its close:
         ``|close_shifted / close_native - 1| <= FEED_RTOL`` (0.2 %: another feed's snapshot of the
         same bar; about the 95th percentile of a 5-minute move in 2020-2024H1, 5x the median move).
         Only the close: vendors disagree on intrabar open/high/low. The native row wins either way;
         a copy within the tolerance is a ``shifted_duplicate``, one beyond it is rejected on its own
         as ``shifted_mismatch`` (it does not veto the rest of its group, whose gap-filling rows are
         the evidence). A group whose every row lands on native bars has no other evidence: its
         closes must then be the same (``COINCIDE_RTOL``, 1e-4);
       * shifted rows landing on bars no native row holds form runs (consecutive in time among the
         day's native bars); each run must continue the native bars around it: its first open
         against the previous native bar's close, its last close against the next native bar's
         open, each with ``|log ratio| <= max(CONTINUITY_FLOOR, CONTINUITY_VOL_MULT * sigma * sqrt(k))``:
         floor 0.5 %, 8x the day's typical 5-minute move ``sigma`` (the median |log return| of
         consecutive closes, pooled over the day's native rows and the group's own rows, which a
         shift does not change) scaled by the square root of the distance ``k`` in bars. Only the
         junctions are evidence: inside a run the path is the same whatever the shift;
       * a day without any native bar (a whole session stamped in the wrong zone) is checked across
         the session boundaries instead: the previous session's last close against the group's
         first open, and the group's last close against the next session's first open, each within
         ``OVERNIGHT_MAX_LOG`` (3.5 %: the largest overnight gap in the real 2020-2024H1 history is
         3.08 %, its 99.9th percentile 2.63 %). Neighbour sessions come from the rows given (a range)
         or from ``context`` (the L0 rows of the neighbouring sessions); at least one must be
         known, and every one known must continue. Without either, no shift is confirmed.
     The first confirmed shift is applied: ``time`` moves by it and ``time_shift_hours`` records it.
     A group with no confirmed shift is rejected ``off_session_grid`` with the shifts it tried.
6. Duplicates: more than one row for the same (time, symbol) after correction. The winner is, in
   order: a native row over a corrected one, then the row ingested last, then the later row in the
   input. A corrected row losing to a native row is rejected ``shifted_duplicate`` (it was the
   native bar, delivered again with a shifted clock); every other loser is rejected ``duplicate``.

Kept rows gain ``is_flat`` (open = high = low = close) and ``time_shift_hours`` (0 for untouched rows).
Missing bars stay missing; nothing is invented.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from usdcop_assets.core import calendar as cal

PRICE_COLUMNS = ["open", "high", "low", "close"]
KEPT_COLUMNS = ["time", "symbol", *PRICE_COLUMNS, "volume", "source", "is_flat", "ingested_at", "time_shift_hours"]
REJECT_COLUMNS = ["time", "symbol", "row_hash", "reason", *PRICE_COLUMNS, "volume", "source", "ingested_at", "detail"]

MISSING_TIME = "missing_time"
BAD_PRICE = "bad_price"
OHLC_INTEGRITY = "ohlc_integrity"
PRICE_SPIKE = "price_spike"
OFF_SESSION_GRID = "off_session_grid"
DUPLICATE = "duplicate"
SHIFTED_DUPLICATE = "shifted_duplicate"
SHIFTED_MISMATCH = "shifted_mismatch"
REASONS = (
    MISSING_TIME,
    BAD_PRICE,
    OHLC_INTEGRITY,
    PRICE_SPIKE,
    OFF_SESSION_GRID,
    DUPLICATE,
    SHIFTED_DUPLICATE,
    SHIFTED_MISMATCH,
)

SHIFT_CANDIDATES: tuple[int, ...] = (5, -5, *[s * h for h in range(1, 13) if h != 5 for s in (1, -1)])
FEED_RTOL = 0.002
COINCIDE_RTOL = 1e-4  # "the same close": an exact confirmation, preferred over one within FEED_RTOL
OVERNIGHT_MAX_LOG = 0.035
CONTINUITY_FLOOR = 0.005
CONTINUITY_VOL_MULT = 8.0
SPIKE_MAX_LOG = 0.15
SPIKE_MIN_ROWS = 3

_HOUR_NS = 3_600 * 1_000_000_000
_BAR_NS = cal.BAR_MINUTES * 60 * 1_000_000_000


def row_hashes(raw: pd.DataFrame) -> pd.Series:
    """A stable identity for each raw row (its values and its position among identical rows)."""
    # pandas 3 keeps missing values missing through astype(str) (None/NaN/NaT in any column, e.g. an
    # absent volume or a clean row's parse_error): spell them out so the join sees only strings.
    text = raw.astype(str).fillna("None").agg("\x1f".join, axis=1)
    occurrence = text.groupby(text).cumcount().astype(str)
    return (text + "\x1e" + occurrence).map(lambda s: hashlib.sha256(s.encode()).hexdigest()[:24])


def _iso(ns: int) -> str:
    return pd.Timestamp(ns, tz="UTC").strftime("%Y-%m-%dT%H:%MZ")


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _sigma(*close_series: np.ndarray) -> float:
    """Median |log return| of consecutive closes, pooled over the given time-ordered series."""
    diffs = [np.abs(np.diff(np.log(c))) for c in close_series if len(c) >= 2]
    pooled = np.concatenate(diffs) if diffs else np.zeros(0)
    return float(np.median(pooled)) if len(pooled) else 0.0


def _try_shift(
    h: int,
    times: np.ndarray,
    prices: np.ndarray,
    grid: set,
    native: dict | None,
    sigma: float,
    boundary: tuple[float | None, float | None],
) -> tuple[str | None, np.ndarray]:
    """(None if shift ``h`` is confirmed for the group else why not, rows landing on native bars beyond
    ``FEED_RTOL``)."""
    none = np.zeros(len(times), dtype=bool)
    shifted = times + h * _HOUR_NS
    if not all(int(t) in grid for t in shifted):
        return "off the grid", none
    if native is None:
        return _across_sessions(prices, boundary), none
    n_times, n_prices = native["times"], native["prices"]
    pos = np.searchsorted(n_times, shifted)
    hit = (pos < len(n_times)) & (n_times[np.minimum(pos, len(n_times) - 1)] == shifted)
    mismatch = none.copy()
    if hit.any():
        diff = np.abs(prices[hit, 3] / n_prices[pos[hit], 3] - 1.0)
        mismatch[np.flatnonzero(hit)[diff > FEED_RTOL]] = True
        if not (~hit).any() and (diff > COINCIDE_RTOL).any():
            # nothing to fill: the shift is evidenced only by the copies, which must then be exact
            return (
                f"{int((diff > COINCIDE_RTOL).sum())} of {int(hit.sum())} rows land on native bars with another close "
                f"(max diff {diff.max():.2%})"
            ), none
    gap = ~hit
    if gap.any():
        # Runs of gap-filling rows between the same two native bars: a shift shows as a price jump
        # where a run meets its native neighbours (the run's own path does not change with the shift).
        t, p, i = shifted[gap], prices[gap], pos[gap]
        starts = np.flatnonzero(np.r_[True, i[1:] != i[:-1]])
        ends = np.r_[starts[1:] - 1, len(i) - 1]
        run_pos = i[starts]
        has_prev, has_next = run_pos > 0, run_pos < len(n_times)
        prev_n, next_n = np.maximum(run_pos - 1, 0), np.minimum(run_pos, len(n_times) - 1)
        # edge checks: first row's open against the previous native close, last row's close against the next native open
        val = np.r_[p[starts[has_prev], 0], p[ends[has_next], 3]]
        ref = np.r_[n_prices[prev_n[has_prev], 3], n_prices[next_n[has_next], 0]]
        k = (
            np.r_[t[starts[has_prev]] - n_times[prev_n[has_prev]], n_times[next_n[has_next]] - t[ends[has_next]]]
            / _BAR_NS
        )
        dev = np.abs(np.log(val / ref))
        bound = np.maximum(CONTINUITY_FLOOR, CONTINUITY_VOL_MULT * sigma * np.sqrt(k))
        bad = dev > bound
        if bad.any():
            j = int(np.argmax(dev - bound))
            return (
                f"{int(bad.sum())} of {len(dev)} junctions between gap-filling rows and native bars break price "
                "continuity "
                f"(worst: {dev[j]:.2%} across {int(k[j])} bar(s), bound {bound[j]:.2%})"
            ), none
    return None, mismatch


def _exact(h: int, times: np.ndarray, prices: np.ndarray, native: dict | None) -> bool:
    """Whether the rows shift ``h`` puts on native bars have exactly their closes (within ``COINCIDE_RTOL``).

    A shift confirmed only within the feed tolerance gives way to a later candidate that is exact: a
    wrong shift can land every row on native bars a couple of hours away whose closes differ little.
    """
    if native is None:
        return True
    shifted = times + h * _HOUR_NS
    pos = np.searchsorted(native["times"], shifted)
    hit = (pos < len(native["times"])) & (native["times"][np.minimum(pos, len(native["times"]) - 1)] == shifted)
    if not hit.any():
        return True
    return bool((np.abs(prices[hit, 3] / native["prices"][pos[hit], 3] - 1.0) <= COINCIDE_RTOL).all())


def _across_sessions(prices: np.ndarray, boundary: tuple[float | None, float | None]) -> str | None:
    """A day with no native bar: the group must continue the neighbouring sessions (see rule 5)."""
    prev_close, next_open = boundary
    if prev_close is None and next_open is None:
        return (
            "lands on the grid, but neither the day nor its neighbouring sessions have a native bar to check price "
            "continuity"
        )
    gaps = []
    if prev_close is not None:
        gaps.append(("previous session's last close", abs(np.log(prices[0, 0] / prev_close))))
    if next_open is not None:
        gaps.append(("next session's first open", abs(np.log(next_open / prices[-1, 3]))))
    broken = [f"{what} {gap:.2%}" for what, gap in gaps if gap > OVERNIGHT_MAX_LOG]
    if broken:
        return (
            "no native bar that day, and the prices do not continue the neighbouring sessions "
            f"({'; '.join(broken)} > {OVERNIGHT_MAX_LOG:.1%})"
        )
    return None


def recognise_shifts(
    df: pd.DataFrame, candidates: np.ndarray, native_rows: np.ndarray, context: pd.DataFrame | None = None
) -> tuple[dict, dict, dict]:
    """Decide each candidate row: ``({row: shift hours}, {row: reject detail}, {row: mismatch detail})``.

    ``df`` has UTC ``time``, ``symbol``, ``source`` and float prices; ``candidates`` and ``native_rows``
    are boolean masks over it (positional); ``context``: rows of the neighbouring sessions (any of
    them on the grid with valid prices serve as session-boundary references). See rule 5.
    """
    shifts: dict[int, int] = {}
    details: dict[int, str] = {}
    mismatches: dict[int, str] = {}
    if not candidates.any():
        return shifts, details, mismatches
    time_ns = df["time"].dt.tz_localize(None).to_numpy().astype("datetime64[ns]").astype("int64")
    prices = df[PRICE_COLUMNS].to_numpy(dtype="float64")
    days = np.asarray(cal.session_dates(pd.DatetimeIndex(df["time"].fillna(pd.Timestamp(0, tz="UTC")))), dtype=object)
    symbols = df["symbol"].astype(str).to_numpy()
    sources = df["source"].astype(str).to_numpy()

    # Native reference bars per (symbol, day): one per bar (the last ingested, then the later row).
    natives: dict[tuple, dict] = {}
    nat_idx = np.flatnonzero(native_rows)
    if len(nat_idx):
        ing = (
            df["ingested_at"].dt.tz_localize(None).to_numpy().astype("datetime64[ns]").astype("int64")
        )  # NaT sorts first
        order = nat_idx[np.lexsort((nat_idx, ing[nat_idx], time_ns[nat_idx]))]
        frame = pd.DataFrame({"i": order, "sym": symbols[order], "day": days[order], "t": time_ns[order]})
        frame = frame.drop_duplicates(["sym", "t"], keep="last")
        for (sym, day), g in frame.groupby(["sym", "day"], sort=False):
            rows = g["i"].to_numpy()
            natives[(sym, day)] = {"times": time_ns[rows], "prices": prices[rows]}

    edges = _session_edges(natives, context)
    cand_idx = np.flatnonzero(candidates)
    groups = pd.DataFrame({"i": cand_idx, "sym": symbols[cand_idx], "day": days[cand_idx], "src": sources[cand_idx]})
    for (sym, day, src), g in groups.groupby(["sym", "day", "src"], sort=True):
        rows = g["i"].to_numpy()
        rows = rows[np.argsort(time_ns[rows], kind="stable")]
        grid = {int(t) for t in cal.session_bars(day).asi8}
        native = natives.get((sym, day))
        sigma = _sigma(native["prices"][:, 3] if native else np.zeros(0), prices[rows, 3])
        tried = []
        boundary = (
            edges.get((sym, cal.previous_trading_day(day)), (None, None))[1],
            edges.get((sym, cal.next_trading_day(day)), (None, None))[0],
        )
        confirmed = []  # (shift, mismatch mask): the first exact one wins, else the first within the feed tolerance
        for h in SHIFT_CANDIDATES:
            why, mismatch = _try_shift(h, time_ns[rows], prices[rows], grid, native, sigma, boundary)
            if why is None:
                confirmed.append((h, mismatch))
                if _exact(h, time_ns[rows], prices[rows], native):
                    confirmed = [confirmed[-1]]
                    break
            elif why != "off the grid":
                tried.append(f"{h:+d}h {why}")
        if confirmed:
            h, mismatch = confirmed[0]
            shifts.update({int(r): h for r in rows})
            for r in rows[mismatch]:
                at = _iso(int(time_ns[r]) + h * _HOUR_NS)
                ref = native["prices"][np.searchsorted(native["times"], int(time_ns[r]) + h * _HOUR_NS), 3]
                mismatches[int(r)] = (
                    f"shifted {h:+d}h onto native bar {at} whose close {_fmt(ref)} differs from "
                    f"{_fmt(prices[r, 3])} by {abs(prices[r, 3] / ref - 1):.2%} (feed tolerance {FEED_RTOL:.2%})"
                )
        else:
            head = (
                f"no whole-hour shift puts the {len(rows)} off-session row(s) of {src} on {day.isoformat()} on the "
                "session grid"
            )
            details.update(
                {int(r): head + (" with continuous prices (" + "; ".join(tried) + ")" if tried else "") for r in rows}
            )
    return shifts, details, mismatches


def _session_edges(natives: dict, context: pd.DataFrame | None) -> dict[tuple, tuple[float, float]]:
    """(symbol, day) -> (first native open, last native close), from the rows' natives and the context's grid rows."""
    edges = {key: (float(n["prices"][0, 0]), float(n["prices"][-1, 3])) for key, n in natives.items()}
    if context is None or context.empty:
        return edges
    ctx = context.dropna(subset=["time"]).copy()
    ctx["time"] = pd.to_datetime(ctx["time"], utc=True)
    px = ctx[PRICE_COLUMNS].apply(pd.to_numeric, errors="coerce").to_numpy(dtype="float64")
    ok = np.isfinite(px).all(axis=1) & (px > 0).all(axis=1) & cal.on_session_grid(pd.DatetimeIndex(ctx["time"]))
    ctx = ctx[ok].sort_values("time", kind="stable")
    if ctx.empty:
        return edges
    ctx["day"] = cal.session_dates(pd.DatetimeIndex(ctx["time"])).to_numpy()
    for (sym, day), g in ctx.groupby([ctx["symbol"].astype(str), "day"], sort=False):
        edges.setdefault((sym, day), (float(g["open"].iloc[0]), float(g["close"].iloc[-1])))
    return edges


def standardize_bars(raw: pd.DataFrame, context: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split raw bars into (kept, rejects); ``len(kept) + len(rejects) == len(raw)`` always.

    ``context``: raw rows of the neighbouring sessions, read only as session-boundary price references
    for days with no native bar (rule 5); never kept or rejected here.
    """
    missing = [c for c in ["time", "symbol", *PRICE_COLUMNS] if c not in raw.columns]
    if missing:
        raise ValueError(f"raw bars lack columns {missing} (have {list(raw.columns)})")
    df = raw.reset_index(drop=True).copy()
    for col, default in (("volume", np.nan), ("source", "unknown"), ("ingested_at", pd.NaT)):
        if col not in df.columns:
            df[col] = default
    df["time"] = pd.to_datetime(df["time"], utc=True, errors="coerce").astype("datetime64[ns, UTC]")
    df["ingested_at"] = pd.to_datetime(df["ingested_at"], utc=True, errors="coerce").astype("datetime64[ns, UTC]")
    prices = df[PRICE_COLUMNS].apply(pd.to_numeric, errors="coerce").astype("float64")
    df[PRICE_COLUMNS] = prices
    df["volume"] = pd.to_numeric(df["volume"], errors="coerce").astype("float64")
    n = len(df)
    values = prices.to_numpy()

    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)

    def flag(mask, why: str, text) -> None:
        """Give ``why`` to the rows of ``mask`` that have no reason yet; ``text(i)`` is each detail."""
        rows = np.flatnonzero(np.asarray(mask, dtype=bool) & (reason == None))  # noqa: E711
        reason[rows] = why
        for i in rows:
            detail[i] = text(int(i))

    has_time = df["time"].notna().to_numpy()
    flag(~has_time, MISSING_TIME, lambda i: f"time missing or unparseable ({raw.iloc[i]['time']!r})")

    good = np.isfinite(values) & (values > 0)

    def bad_text(i: int) -> str:
        return "; ".join(
            f"{c} {'missing' if not np.isfinite(values[i, j]) else _fmt(values[i, j])}"
            for j, c in enumerate(PRICE_COLUMNS)
            if not good[i, j]
        )

    flag(~good.all(axis=1), BAD_PRICE, bad_text)
    o, h, lo, c = (values[:, j] for j in range(4))
    with np.errstate(invalid="ignore"):
        flag(
            (h < np.maximum(o, c)) | (lo > np.minimum(o, c)),
            OHLC_INTEGRITY,
            lambda i: f"open {_fmt(o[i])} high {_fmt(h[i])} low {_fmt(lo[i])} close {_fmt(c[i])}",
        )

    # price_spike: against the median close of the symbol's day (rule 4)
    days = np.full(n, None, dtype=object)
    if has_time.any():
        days[has_time] = cal.session_dates(pd.DatetimeIndex(df.loc[has_time, "time"])).to_numpy()
    ok = reason == None  # noqa: E711
    if ok.sum() >= SPIKE_MIN_ROWS:
        keys = (
            pd.Series(df["symbol"].astype(str).to_numpy(), dtype=object)
            + "|"
            + pd.Series(days, dtype=object).astype(str)
        )
        ok_s = pd.Series(ok)
        med = pd.Series(c).where(ok_s).groupby(keys).transform("median").to_numpy()
        cnt = ok_s.groupby(keys).transform("sum").to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            dev = np.abs(np.log(values / med[:, None]))
        worst = np.nanmax(np.where(np.isfinite(dev), dev, 0.0), axis=1) if n else np.zeros(0)
        spike = ok & (cnt >= SPIKE_MIN_ROWS) & (worst > SPIKE_MAX_LOG)

        def spike_text(i: int) -> str:
            j = int(np.argmax(dev[i]))
            return (
                f"{PRICE_COLUMNS[j]} {_fmt(values[i, j])} is {values[i, j] / med[i]:.3g}x the day's median close "
                f"{_fmt(med[i])} (allowed x{np.exp(-SPIKE_MAX_LOG):.3f}..x{np.exp(SPIKE_MAX_LOG):.3f})"
            )

        flag(spike, PRICE_SPIKE, spike_text)

    # session grid and whole-hour shifts (rule 5)
    grid = np.zeros(n, dtype=bool)
    if has_time.any():
        grid[has_time] = cal.on_session_grid(pd.DatetimeIndex(df.loc[has_time, "time"]))
    valid = reason == None  # noqa: E711
    native = valid & grid
    off = valid & ~grid
    day_ok = {d: cal.is_trading_day(d) for d in set(days) if d is not None}
    trading = np.array([day_ok.get(d, False) for d in days], dtype=bool)
    local = pd.DatetimeIndex(df["time"]).tz_convert(cal.TZ)
    aligned = np.asarray(
        (local.minute % cal.BAR_MINUTES == 0) & (local.second == 0) & (local.microsecond == 0) & (local.nanosecond == 0)
    )
    flag(off & ~trading, OFF_SESSION_GRID, lambda i: "holiday" if cal.is_holiday(days[i]) else "weekend")
    flag(
        off & trading & ~aligned,
        OFF_SESSION_GRID,
        lambda i: f"not on the 5-minute grid ({local[i].strftime('%H:%M:%S')} Bogota)",
    )
    candidates = off & trading & aligned
    shifts, shift_details, mismatches = recognise_shifts(df, candidates, native, context)
    flag(np.isin(np.arange(n), list(shift_details)), OFF_SESSION_GRID, shift_details.__getitem__)
    flag(np.isin(np.arange(n), list(mismatches)), SHIFTED_MISMATCH, mismatches.__getitem__)

    shift_hours = np.zeros(n, dtype="int64")
    for i, hrs in shifts.items():
        if i not in mismatches:
            shift_hours[i] = hrs
    shifts = {i: h for i, h in shifts.items() if i not in mismatches}
    new_time = df["time"].copy()
    if shifts:
        idx = np.fromiter(shifts, dtype="int64")
        new_time.iloc[idx] = df["time"].iloc[idx] + pd.to_timedelta(shift_hours[idx], unit="h")

    # duplicates (rule 6): native over corrected, then last ingested, then later input row
    live = np.flatnonzero(reason == None)  # noqa: E711
    if len(live):
        order = pd.DataFrame(
            {
                "time": new_time.iloc[live].to_numpy(),
                "symbol": df["symbol"].iloc[live].astype(str).to_numpy(),
                "native": native[live],
                "ing": df["ingested_at"].iloc[live].to_numpy(),
                "pos": live,
            }
        ).sort_values(["time", "symbol", "native", "ing", "pos"], na_position="first")
        winner = order.drop_duplicates(["time", "symbol"], keep="last").set_index(["time", "symbol"])["pos"]
        losers = order[order.duplicated(["time", "symbol"], keep="last")]
        for row in losers.itertuples(index=False):
            i, w = int(row.pos), int(winner.loc[(row.time, row.symbol)])
            at = _iso(pd.Timestamp(row.time).value)
            if shift_hours[i] and native[w]:
                reason[i], detail[i] = (
                    SHIFTED_DUPLICATE,
                    f"shifted {shift_hours[i]:+d}h to {at}: close within {FEED_RTOL:.2%} of the native bar's",
                )
            else:
                by = (
                    "a native row"
                    if native[w] and shift_hours[i] == 0
                    else f"a row shifted {shift_hours[w]:+d}h"
                    if shift_hours[w]
                    else "a row"
                )
                when = (
                    "ingested later" if df["ingested_at"].iloc[w] != df["ingested_at"].iloc[i] else "later in the input"
                )
                shifted = f"shifted {shift_hours[i]:+d}h to {at}, " if shift_hours[i] else ""
                reason[i], detail[i] = DUPLICATE, f"{shifted}bar {at} also given by {by} {when}"

    keep = reason == None  # noqa: E711
    kept = df[keep].copy()
    kept["time"] = new_time[keep]
    kept["time_shift_hours"] = shift_hours[keep]
    kept["is_flat"] = (kept[PRICE_COLUMNS].nunique(axis=1) == 1).to_numpy()
    kept = kept[KEPT_COLUMNS].sort_values(["time", "symbol"]).reset_index(drop=True)

    rejected = df[~keep].copy()
    rejected["reason"] = reason[~keep]
    rejected["detail"] = pd.Series(detail[~keep], index=rejected.index, dtype=object)
    rejected["row_hash"] = (
        row_hashes(raw.reset_index(drop=True).loc[rejected.index]) if len(rejected) else pd.Series(dtype=str)
    )
    rejects = rejected[REJECT_COLUMNS].reset_index(drop=True)
    rejects["reason"] = rejects["reason"].astype(str) if len(rejects) else rejects["reason"].astype(object)
    if len(kept) + len(rejects) != len(raw):  # pragma: no cover - a bug here must never lose a row silently
        raise AssertionError(f"standardize lost rows: {len(raw)} in, {len(kept)} kept + {len(rejects)} rejected")
    return kept, rejects


UNPLACED_REASONS = (
    "not_a_trading_day",
    "before_partitions_start",
)  # unplaced rows with a time the rejects table can hold


def unplaced_rejects(unplaced: pd.DataFrame, where: str) -> pd.DataFrame:
    """Rows an import could not place in any session partition, as reject rows (``REJECT_COLUMNS``).

    They stay in their lake object (``where``); this copy makes them visible beside L1's rejects, on their
    own (weekend or holiday) dates, which no session window ever replaces. Rows without a time stay in
    the lake object only (the rejects table is keyed by time).
    """
    rows = unplaced[unplaced["reason"].isin(UNPLACED_REASONS) & unplaced["time"].notna()].reset_index(drop=True)
    out = pd.DataFrame(
        {
            "time": pd.to_datetime(rows["time"], utc=True).astype("datetime64[ns, UTC]"),
            "symbol": rows["symbol"].astype(str),
            "row_hash": row_hashes(rows.drop(columns=["reason", "line"], errors="ignore"))
            if len(rows)
            else pd.Series(dtype=str),
            "reason": rows["reason"].astype(str),
            **{c: pd.to_numeric(rows[c], errors="coerce").astype("float64") for c in [*PRICE_COLUMNS, "volume"]},
            "source": rows["source"].astype(str) if "source" in rows else "unknown",
            "ingested_at": pd.to_datetime(rows.get("ingested_at"), utc=True) if "ingested_at" in rows else pd.NaT,
            "detail": [
                f"{r} (line {int(n)} of the file; kept in {where})" if pd.notna(n) else f"{r} (kept in {where})"
                for r, n in zip(rows["reason"], rows["line"] if "line" in rows else [None] * len(rows))
            ],
        }
    )
    out["ingested_at"] = pd.to_datetime(out["ingested_at"], utc=True).astype("datetime64[ns, UTC]")
    return out[REJECT_COLUMNS]


def time_shift_summary(kept: pd.DataFrame) -> dict[str, int]:
    """Kept rows whose time was corrected, by shift (``{"+5h": n}``)."""
    shifted = kept.loc[kept["time_shift_hours"] != 0, "time_shift_hours"]
    return {f"{int(h):+d}h": int(v) for h, v in shifted.value_counts().sort_index().items()}


__all__ = [
    "KEPT_COLUMNS",
    "REJECT_COLUMNS",
    "REASONS",
    "SHIFT_CANDIDATES",
    "FEED_RTOL",
    "OVERNIGHT_MAX_LOG",
    "standardize_bars",
    "recognise_shifts",
    "row_hashes",
    "time_shift_summary",
]
