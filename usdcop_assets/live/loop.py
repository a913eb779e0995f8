"""The live loop: sleep until a bar closes, poll the source every second until it is published, compute and
store the session's L0..L5 rows, hand the Dagster record to a background worker, sleep again.

- Clock: ``Clock`` reads ``usdcop_assets.clock`` (so ``USDCOP_REPLAY_CLOCK`` replays a session fast) and
  waits in real seconds on a stop event; tests inject a simulated clock. Nothing here calls ``time.sleep``.
- Sessions: the loop works on a session from a minute before its open (warm state loaded) until its last
  bar is stored or ``grace_minutes`` after its close; otherwise it sleeps until the next trading day's
  open (nights, weekends and Colombian holidays come from the market calendar).
- Restart: a session is opened from what is stored. Its stored L0 rows are recomputed and written
  again (idempotent: a bar a killed process left half-written is completed, nothing is duplicated),
  then the loop polls for the bars after them.
- Outages: a failing source is logged once when it starts failing and once when it is back; one alert
  when no new bar has landed for ``alert_after_seconds`` (a whole silent session alerts once). A
  failing store (lake, warehouse) is retried at the next poll, logged once per distinct error.
- Stop: ``stop`` (SIGTERM/SIGINT in ``service``) ends the loop between two steps, never inside a write.

No Dagster: the recorder (``recorder.DagsterRecorder``) is passed in.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import pandas as pd

from usdcop_assets import clock as platform_clock
from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import LiveSettings, Settings
from usdcop_assets.live.live_store import LiveStore
from usdcop_assets.live.session import (
    ACTIONS,
    L0,
    WRITE_ORDER,
    RawUpdate,
    SessionRows,
    WarmState,
    complete_session,
    decide_session,
    merge_raw,
)
from usdcop_assets.rl.decisions import fold_of_session

log = logging.getLogger("usdcop_assets.live")
BAR = pd.Timedelta(minutes=cal.BAR_MINUTES)


# --- clock ---------------------------------------------------------------------------------------------


class Clock:
    """The platform clock (``USDCOP_REPLAY_CLOCK`` honoured) and real-time waits on a stop event."""

    def __init__(self, settings: Settings | None = None):
        self.platform = platform_clock.PlatformClock.from_settings(settings)  # resolved once, not per tick
        spec = self.platform.replay
        self.speed = 1.0
        if spec:
            platform_clock.replay_clock(spec, pd.Timestamp.now(tz="UTC"))  # validates the spec, naming the variable
            self.speed = float(spec.rpartition("x")[2] or 1) if "x" in spec.partition("@")[2] else 1.0

    def now(self) -> pd.Timestamp:
        return self.platform.now()

    def real_seconds(self, clock_seconds: float) -> float:
        return max(0.0, clock_seconds) / self.speed

    def wait(self, real_seconds: float, stop: threading.Event) -> None:
        stop.wait(max(0.0, real_seconds))

    def monotonic(self) -> float:
        return time.monotonic()


class Recorder(Protocol):
    def open_session(self, session_key: str) -> None: ...
    def record(self, session_key: str, rows: SessionRows, info: dict) -> None: ...
    def note(self, session_key: str, text: str) -> None: ...
    def close_session(self, session_key: str, outcome: str, message: str) -> None: ...


class RateLimited(Exception):
    """The source has no request credit right now (not an outage): ask again at the next poll."""


# --- the background worker -----------------------------------------------------------------------------


class Worker:
    """One thread running submitted jobs in order (the Dagster record and the live journal of each bar)."""

    def __init__(self, name: str = "usdcop-live-record"):
        self._jobs: queue.Queue = queue.Queue()
        self._errors: set[str] = set()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], None]) -> None:
        self._jobs.put(fn)

    def _run(self) -> None:
        while True:
            fn = self._jobs.get()
            try:
                if fn is None:
                    return
                fn()
            except Exception as exc:  # a record that fails must not stop the next ones; said once per error
                text = f"{type(exc).__name__}: {exc}"
                if text not in self._errors:
                    self._errors.add(text)
                    log.error(
                        "recording a bar failed (the bar is stored; its Dagster record or journal copy is not): %s",
                        text,
                    )
            finally:
                self._jobs.task_done()

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until every job submitted so far has run (True) or ``timeout`` real seconds passed."""
        done = threading.Event()
        self._jobs.put(done.set)
        return done.wait(timeout)

    def close(self, timeout: float = 60.0) -> bool:
        ok = self.drain(timeout)
        self._jobs.put(None)
        self._thread.join(timeout=5)
        return ok


# --- the loop ------------------------------------------------------------------------------------------


# The live settings are ``core.settings.LiveSettings`` (``USDCOP_LIVE_*``, imported above so ``live.loop.LiveSettings``
# keeps working); this lead is not a deployment setting: the warm state loads in well under a minute.
WAKE_BEFORE_OPEN_SECONDS = 60.0


@dataclass
class _Session:
    day: dt.date
    key: str
    warm: WarmState
    raw: pd.DataFrame | None = None
    last_bar: pd.Timestamp | None = None
    bars_stored: int = 0


@dataclass
class _Outage:
    waiting_since: pd.Timestamp | None = None  # clock time the current wait for a due bar began
    failing_since: pd.Timestamp | None = None  # clock time the source began failing
    cause: str = ""
    alerted: bool = False
    store_errors: set = field(default_factory=set)


def next_open(now: pd.Timestamp, lead_seconds: float = 0.0) -> pd.Timestamp:
    """The open (minus ``lead_seconds``) of the first session whose open is not yet ``lead_seconds`` away."""
    day = now.tz_convert(cal.TZ).date()
    for _ in range(30):
        if cal.is_trading_day(day):
            wake = cal.session_open(day) - pd.Timedelta(seconds=lead_seconds)
            if wake > now:
                return wake
        day += dt.timedelta(days=1)
    raise cal.CalendarError(f"no trading session in the 30 days after {now}")


class LiveLoop:
    def __init__(
        self,
        source,
        store: LiveStore,
        obs_config,
        policy_of,
        limits,
        costs,
        recorder: Recorder,
        clock=None,
        settings: LiveSettings | None = None,
        alert: Callable[[str], None] | None = None,
        stop: threading.Event | None = None,
        worker: Worker | None = None,
        source_name: str = "source",
        wake_before_open_seconds: float = WAKE_BEFORE_OPEN_SECONDS,
    ):
        self.source = source  # .fetch(start, end) -> the L0 frame of [start, end)
        self.store = store
        self.obs_config = obs_config
        self.policy_of = policy_of
        self.limits, self.costs = limits, costs
        self.recorder = recorder
        self.clock = clock or Clock()
        self.settings = settings or LiveSettings()  # the defaults; ``usdcop live`` passes the deployment's
        self.wake_before_open_seconds = wake_before_open_seconds  # the warm state is loaded this long before the open
        self.alert = alert or (lambda text: None)
        self.stop = stop or threading.Event()
        self.worker = worker or Worker()
        self.source_name = source_name
        self.session: _Session | None = None
        self.done: set[dt.date] = set()  # sessions finished (last bar stored, or closed after the grace)
        self.outage = _Outage()
        self.bars: list[dict] = []  # per stored bar: timings (the bench and the tests read them)
        self._said: str | None = None
        self._runs_opened: set[str] = set()

    # -- the loop -----------------------------------------------------------------------------------------

    def run(self) -> None:
        log.info("live: source=%s, poll every %.2f s", self.source_name, self.settings.poll_seconds)
        try:
            while not self.stop.is_set():
                wait = self.step()
                if wait > 0 and not self.stop.is_set():
                    self.clock.wait(wait, self.stop)
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        if self.session is not None:
            at = self.session.last_bar
            self._close(
                f"live process stopped at bar {cal.bar_key(at) if at is not None else '(none)'}; "
                "a restart resumes the session from what is stored",
                outcome="canceled",
            )
        self.worker.close()

    def step(self) -> float:
        """One decision of the loop; returns the real seconds to wait before the next."""
        now = self.clock.now()
        day = self._active_day(now)
        if day is None:
            if self.session is not None:
                self._close(self._closing_message(), outcome="success")
            wake = next_open(now, self.wake_before_open_seconds)
            self._say(f"no session in progress: sleeping until {wake.tz_convert(cal.TZ):%Y-%m-%d %H:%M} Bogota")
            return self.clock.real_seconds((wake - now).total_seconds())
        if self.session is None or self.session.day != day:
            if self.session is not None:
                self._close(self._closing_message(), outcome="success")
            try:
                self._open(day)
            except Exception as exc:  # a store down at the open: try again at the next poll
                self.session = None
                self._once(
                    f"opening session {cal.session_key(day)} failed, retrying every {self.settings.poll_seconds:g} s: "
                    f"{type(exc).__name__}: {exc}"
                )
                return self.settings.poll_seconds
            return 0.0
        target = self._due_bar(now)
        if target is None:  # before the first close
            return self.clock.real_seconds((cal.session_open(day) + BAR - now).total_seconds())
        if self.session.last_bar is not None and target <= self.session.last_bar:
            if target == cal.session_bars(day)[-1]:
                self._close(self._closing_message(), outcome="success")
                self.done.add(day)
                return 0.0
            return self.clock.real_seconds((target + 2 * BAR - now).total_seconds())  # the next bar's close
        return self._poll(target, now)

    # -- sessions -----------------------------------------------------------------------------------------

    def _active_day(self, now: pd.Timestamp) -> dt.date | None:
        day = now.tz_convert(cal.TZ).date()
        if not cal.is_trading_day(day) or day in self.done:
            return None
        begin = cal.session_open(day) - pd.Timedelta(seconds=self.wake_before_open_seconds)
        end = cal.session_end(day) + pd.Timedelta(minutes=self.settings.grace_minutes)
        return day if begin <= now < end else None

    def _due_bar(self, now: pd.Timestamp) -> pd.Timestamp | None:
        bar = cal.last_closed_bar(now)
        return bar if bar is not None and bar.tz_convert(cal.TZ).date() == self.session.day else None

    def _open(self, day: dt.date) -> None:
        key = cal.session_key(day)
        t0 = self.clock.monotonic()
        warm = self.store.load_warm(day, self.obs_config)
        self.session = _Session(day, key, warm)
        if key not in self._runs_opened:  # the worker opens the session's run before recording any of its bars
            self._runs_opened.add(key)
            self.worker.submit(lambda: self.recorder.open_session(key))
        log.info(
            "session %s: warm state loaded in %.2f s (%d look-back bars, %d macro days, statistics %s, model %s)",
            key,
            self.clock.monotonic() - t0,
            len(warm.prior_l1),
            len(warm.macro_wide),
            "yes" if warm.stats is not None else "MISSING",
            "yes" if warm.models else "none (decided flat)",
        )
        if warm.stats is None:
            log.warning(
                "session %s: l4/observation_stats %s is not materialized: observations are stored not warm and decided "
                "flat until it is (materialize it with `usdcop backfill`, or the observation_stats job for the month)",
                key,
                key[:7],
            )
        self._load_policy(warm)
        stored = self.store.stored_raw(day)
        if len(stored):
            self._resume(stored)

    def _load_policy(self, warm: WarmState) -> None:
        """Load (and hash-verify) the fold's model now, not inside the first bar (torch and the artifact take
        seconds)."""
        row = warm.models.get(fold_of_session(cal.session_key(warm.day)))
        if row is not None and self.policy_of is not None:
            try:
                self.policy_of(row)
            except Exception as exc:  # the bar's decision raises the same error, naming the artifact
                log.error("session %s: the fold's model cannot be used: %s", cal.session_key(warm.day), exc)

    def _resume(self, stored: pd.DataFrame) -> None:
        """Recompute and re-write the stored bars (completes a bar a killed process left half-written)."""
        s = self.session
        on_grid = pd.DatetimeIndex(stored["time"])[cal.on_session_grid(pd.DatetimeIndex(stored["time"]))]
        last = on_grid.max() if len(on_grid) else None
        update = RawUpdate(stored.reset_index(drop=True), [], [], [])
        self._store(update, last, self.clock.monotonic(), trigger="resume")
        log.info(
            "session %s: resumed from the stored bars (last %s)",
            s.key,
            cal.bar_key(last) if last is not None else "none",
        )

    def _closing_message(self) -> str:
        s = self.session
        expected = cal.session_bars(s.day)
        stored = set(pd.DatetimeIndex(s.raw["time"])) if s.raw is not None and len(s.raw) else set()
        missing = [t for t in expected if t not in stored]
        return f"session {s.key} closed: {len(expected) - len(missing)} of {len(expected)} bars stored live" + (
            "; never published: "
            f"{', '.join(cal.bar_key(t)[-5:] for t in missing[:10])}{'...' if len(missing) > 10 else ''}"
            if missing
            else ""
        )

    def _close(self, message: str, outcome: str) -> None:
        s, self.session = self.session, None
        self._runs_opened.discard(s.key)
        self.worker.submit(lambda: self.recorder.close_session(s.key, outcome, message))
        self.worker.drain()
        log.info("%s", message)

    # -- polling ------------------------------------------------------------------------------------------

    def _poll(self, target: pd.Timestamp, now: pd.Timestamp) -> float:
        s = self.session
        if self.outage.waiting_since is None:
            self.outage.waiting_since = now
        t0 = self.clock.monotonic()
        try:
            fetched = self.source.fetch(cal.session_open(s.day), target + BAR)
        except RateLimited:
            return self.settings.poll_seconds
        except Exception as exc:
            self._failing(now, f"{type(exc).__name__}: {exc}")
            return self.settings.poll_seconds
        fetch_s = self.clock.monotonic() - t0
        if self.outage.failing_since is not None:
            log.warning(
                "source=%s answers again (it failed from %s: %s)",
                self.source_name,
                self.outage.failing_since.tz_convert(cal.TZ).strftime("%Y-%m-%d %H:%M:%S"),
                self.outage.cause,
            )
            self.outage.failing_since = None
        if not (len(fetched) and (pd.DatetimeIndex(fetched["time"]) == target).any()):
            self._overdue(now, f"bar {cal.bar_key(target)} not published yet")
            return self.settings.poll_seconds
        update = merge_raw(s.raw, fetched)
        try:
            self._store(update, target, t0, trigger="live", fetch_s=fetch_s)  # from the request that found the bar
        except Exception as exc:  # lake or warehouse down: the writes are idempotent, the next poll retries them
            text = f"{type(exc).__name__}: {exc}"
            if text not in self.outage.store_errors:
                self.outage.store_errors.add(text)
                log.error(
                    "session %s: storing bar %s failed, retrying every %.1f s: %s",
                    s.key,
                    cal.bar_key(target),
                    self.settings.poll_seconds,
                    text,
                )
            return self.settings.poll_seconds
        self.outage = _Outage()
        return 0.0

    def _failing(self, now: pd.Timestamp, cause: str) -> None:
        if self.outage.failing_since is None:
            self.outage.failing_since, self.outage.cause = now, cause
            log.warning(
                "source=%s is failing (%s); polling every %.1f s", self.source_name, cause, self.settings.poll_seconds
            )
        self._overdue(now, f"source failing since {self.outage.failing_since.tz_convert(cal.TZ):%H:%M:%S}: {cause}")

    def _overdue(self, now: pd.Timestamp, why: str) -> None:
        late = (now - self.outage.waiting_since).total_seconds()
        if late >= self.settings.alert_after_seconds and not self.outage.alerted:
            self.outage.alerted = True
            text = (
                f"usdcop live: no new {self.source_name} bar for {late / 60:.0f} min (session {self.session.key}); "
                f"{why}; "
                f"still polling every {self.settings.poll_seconds:g} s"
            )
            log.error("%s", text)
            try:
                self.alert(text)
            except Exception as exc:
                log.error("the alert could not be delivered: %s", exc)
            key = self.session.key
            self.worker.submit(lambda: self.recorder.note(key, text))

    # -- one bar --------------------------------------------------------------------------------------------

    def _store(
        self, update: RawUpdate, bar: pd.Timestamp | None, detected: float, trigger: str, fetch_s: float = 0.0
    ) -> None:
        s = self.session
        for t in update.republished:
            log.warning(
                "session %s: bar %s was published again with different values; the new values replace it",
                s.key,
                cal.bar_key(t),
            )
        rows = decide_session(update.raw, s.warm, self.policy_of, self.limits, self.costs, log=self._once)
        decide_s = rows.seconds
        committed = {}
        for asset in (L0, ACTIONS):  # the input, then the decision: what the trader waits for
            if asset in rows.frames:
                self.store.write_layer(asset, s.day, rows.frames[asset])
                committed[asset] = self.clock.monotonic()
        complete_session(rows, self.costs)
        for asset in (a for a in WRITE_ORDER if a in rows.frames and a not in committed):
            self.store.write_layer(asset, s.day, rows.frames[asset])
            committed[asset] = self.clock.monotonic()
        now = self.clock.now()
        s.raw, s.last_bar = update.raw, bar
        s.bars_stored += 1
        info = {
            "bar": bar,
            "trigger": trigger,
            "detected": detected,
            "committed": committed,
            "clock_now": now,
            "fetch_s": fetch_s,
            "compute_s": decide_s,
            "update": update,
            "skipped": rows.skipped,
            "source": self.source_name,
        }
        self.bars.append(
            {
                "bar": bar,
                "trigger": trigger,
                "fetch_s": fetch_s,
                "compute_s": decide_s,
                "detected_to_actions_s": committed.get(ACTIONS, committed[L0]) - detected,
                "detected_to_all_s": max(committed.values()) - detected,
            }
        )
        key = s.key
        self.worker.submit(lambda: self.store.write_journal(rows))
        self.worker.submit(lambda: self.recorder.record(key, rows, info))
        if bar is not None:
            to_actions = committed.get(ACTIONS, committed[L0]) - detected
            log.info(
                "session %s: bar %s stored (%s): seen -> actions %.0f ms (fetch %.0f, compute %.0f, writes %.0f), "
                "all layers %.0f ms",
                key,
                cal.bar_key(bar)[-5:],
                trigger,
                to_actions * 1000,
                fetch_s * 1000,
                decide_s * 1000,
                (to_actions - fetch_s - decide_s) * 1000,
                (max(committed.values()) - detected) * 1000,
            )
        try:
            changed = self.store.refresh(
                s.warm
            )  # off the critical path: what landed meanwhile counts from the next bar
        except Exception as exc:
            changed = []
            self._once(f"refreshing the warm state failed: {exc}")
        if changed:
            log.info(
                "session %s: %s changed since the warm state was loaded; used from the next bar",
                key,
                ", ".join(changed),
            )
            self._load_policy(s.warm)

    def _once(self, text: str) -> None:
        if text != self._said:
            log.warning("%s", text)
        self._said = text

    def _say(self, text: str) -> None:
        if text != self._said:
            log.info("%s", text)
        self._said = text
