"""Leases on date ranges (sessions, macro days), kept in the lake itself, so that overlapping writers serialize.

Two ``usdcop backfill`` runs over overlapping ranges, or a backfill and the realtime runs of today's
session, would otherwise interleave their writes of the same session objects (a data object of one
writer beside the manifest of the other) and race on the warehouse's first-write path. The lake is the
one store every writer shares (a directory, possibly on several hosts, or a bucket), so the lease lives
there, and nothing about it depends on local process ids: a holder proves it is alive by renewing its
entry before ``expires_at``; an entry not renewed in time (its writer died, its host vanished) stops
counting once it expires, whatever host reads it.

Protocol (``_leases/dates/<seq>.json``, one entry per holder or waiter):

1. register: create the entry ``max(seq) + 1`` *exclusively* (``O_EXCL``-style local create, S3
   ``If-None-Match: *``); losing the race means someone else took that number: re-list and retry. The
   highest entry is never deleted, so numbers only grow and registration order is total;
2. wait: the entry is granted when no *earlier* live entry overlaps its range (first come, first
   served; later overlapping registrants wait behind it). A waiter keeps renewing its own entry;
3. hold: a heartbeat thread renews ``expires_at`` every ``ttl / 4``; if the entry disappeared or
   expired meanwhile the lease is marked ``lost`` and the holder must stop writing;
4. release: delete the entry (or, when it is the highest, mark it released so numbers keep growing).
   Expired and released entries below one's own are deleted on the way.

Clocks: expiry compares wall clocks of different hosts; the TTL (``USDCOP_LEASE_TTL_SECONDS``, default
120 s) must exceed their skew plus the longest pause of a holder (NTP keeps skew well under a second).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from usdcop_assets.core.settings import Settings
from usdcop_assets.storage.lake.store import ObjectStore

PREFIX = "_leases/dates/"
TTL_ENV = "USDCOP_LEASE_TTL_SECONDS"
WAIT_ENV = "USDCOP_LEASE_WAIT_SECONDS"


class LeaseBusy(RuntimeError):
    """Sessions held by another writer for longer than the caller would wait; the message names the holder."""


class LeaseLost(RuntimeError):
    """The lease expired or vanished while held (a pause longer than its TTL): writes must stop."""


def _key(seq: int) -> str:
    return f"{PREFIX}{seq:012d}.json"


def _seq(key: str) -> int | None:
    name = key.rsplit("/", 1)[-1]
    stem = name[: -len(".json")] if name.endswith(".json") else ""
    return int(stem) if stem.isdigit() else None


def describe(entry: dict) -> str:
    since = dt.datetime.fromtimestamp(entry.get("acquired_at", 0), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"{entry.get('purpose', '?')} (dates {entry.get('first')} .. {entry.get('last')}, host {entry.get('host')}, "
        f"pid {entry.get('pid')}, since {since})"
    )


@dataclass
class Lease:
    """A registered entry; ``granted`` once no earlier live entry overlaps it. Use as a context manager."""

    leases: SessionLeases
    seq: int
    entry: dict
    lost: bool = False
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def first(self) -> str:
        return self.entry["first"]

    @property
    def last(self) -> str:
        return self.entry["last"]

    def covers(self, first: str, last: str) -> bool:
        return not self.lost and self.first <= first and last <= self.last

    def check(self) -> None:
        if self.lost:
            raise LeaseLost(
                f"the lease on dates {self.first} .. {self.last} ({self.entry['purpose']}) expired while held "
                f"(a pause longer than {TTL_ENV}={self.leases.ttl:g} s?); another writer may have started: re-run"
            )

    def renew(self) -> bool:
        """Extend ``expires_at``; False (and ``lost``) if the entry vanished or had already expired."""
        store, key = self.leases.store, _key(self.seq)
        current = self.leases._load(key)
        now = self.leases.clock()
        if current is None or current.get("owner") != self.entry["owner"] or current.get("expires_at", 0) <= now:
            self.lost = True
            return False
        self.entry["expires_at"] = now + self.leases.ttl
        store.put(key, json.dumps(self.entry, sort_keys=True).encode())
        return True

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.leases.ttl / 4):
            try:
                if not self.renew():
                    return
            except Exception:  # a failed renewal is retried at the next beat; expiry decides
                continue

    def start(self) -> None:
        self._thread = threading.Thread(target=self._heartbeat, name=f"lease-{self.seq}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self.leases._drop(self)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# Leases this process holds (by lake location): writes of dates they cover need no lease of their own.
_held: dict[str, list[Lease]] = {}
_held_lock = threading.Lock()


def held_covering(location: str, first: str, last: str) -> Lease | None:
    with _held_lock:
        return next((lease for lease in _held.get(location, ()) if lease.covers(first, last)), None)


class SessionLeases:
    def __init__(
        self,
        store: ObjectStore,
        ttl: float | None = None,
        poll: float = 1.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.store = store
        self.ttl = float(ttl if ttl is not None else Settings.from_env().storage.lease_ttl_seconds)
        self.poll = poll
        self.clock = clock
        self.sleep = sleep

    # -- registry ---------------------------------------------------------------------------------

    def _load(self, key: str) -> dict | None:
        raw = self.store.get(key)
        if raw is None:
            return None
        try:
            entry = json.loads(raw)
        except ValueError:
            return {}  # unreadable: counts as expired
        return entry if isinstance(entry, dict) else {}

    def _seqs(self) -> list[int]:
        """Entry numbers present (one LIST, no GETs)."""
        return sorted(s for s in map(_seq, self.store.list(PREFIX)) if s is not None)

    def entries(self, below: int | None = None) -> dict[int, dict]:
        out = {}
        for seq in self._seqs():
            if below is not None and seq >= below:
                continue  # later registrants never block us: not even read
            entry = self._load(_key(seq))
            if entry is not None:
                out[seq] = entry
        return out

    def _live(self, entry: dict) -> bool:
        return not entry.get("released") and float(entry.get("expires_at") or 0) > self.clock()

    def _register(self, first: str, last: str, purpose: str) -> Lease:
        now = self.clock()
        entry = {
            "owner": uuid.uuid4().hex,
            "purpose": purpose,
            "first": first,
            "last": last,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "acquired_at": now,
            "expires_at": now + self.ttl,
            "released": False,
        }
        while True:
            seq = max(self._seqs(), default=0) + 1
            if self.store.create(_key(seq), json.dumps(entry, sort_keys=True).encode()):
                return Lease(self, seq, entry)

    def _drop(self, lease: Lease) -> None:
        with _held_lock:
            mine = _held.get(self.store.location, [])
            if lease in mine:
                mine.remove(lease)
        key = _key(lease.seq)
        if max(self._seqs(), default=0) > lease.seq:
            self.store.delete(key)
        else:  # the highest entry stays (numbers must only grow): marked released
            lease.entry.update(released=True, expires_at=0)
            self.store.put(key, json.dumps(lease.entry, sort_keys=True).encode())

    def blockers(self, seq: int, first: str, last: str, earlier: dict[int, dict] | None = None) -> list[dict]:
        """Earlier live entries overlapping ``first..last``."""
        earlier = self.entries(below=seq) if earlier is None else earlier
        return [
            e
            for _, e in sorted(earlier.items())
            if self._live(e) and e.get("first", "") <= last and first <= e.get("last", "")
        ]

    def _collect(self, earlier: dict[int, dict]) -> None:
        """Delete the expired and released entries among ``earlier`` (all below a held entry)."""
        for s, e in earlier.items():
            if not self._live(e):
                self.store.delete(_key(s))

    # -- API --------------------------------------------------------------------------------------

    def acquire(
        self,
        first: dt.date | str,
        last: dt.date | str,
        purpose: str,
        wait: float | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> Lease:
        """A granted lease on dates ``first..last``; waits up to ``wait`` seconds (``USDCOP_LEASE_WAIT_SECONDS``,
        default 900) for overlapping earlier holders, then raises ``LeaseBusy`` naming them."""
        first, last = str(first)[:10], str(last)[:10]
        if last < first:
            raise ValueError(f"lease range {first} .. {last} is empty")
        wait = float(wait if wait is not None else Settings.from_env().storage.lease_wait_seconds)
        lease = self._register(first, last, purpose)
        lease.start()  # renewed while it waits too: a waiter keeps its place in the queue
        deadline = self.clock() + wait
        told = None
        try:
            while True:
                earlier = self.entries(below=lease.seq)
                blocking = self.blockers(lease.seq, first, last, earlier)
                if not blocking:
                    break
                holder = describe(blocking[0])
                if self.clock() >= deadline:
                    raise LeaseBusy(
                        f"dates {first} .. {last} overlap those being written by {holder}; waited {wait:g} s "
                        f"({WAIT_ENV}): retry when it has finished, or pick dates outside {blocking[0].get('first')} "
                        ".. "
                        f"{blocking[0].get('last')}"
                    )
                if on_wait and holder != told:
                    on_wait(
                        f"dates {first} .. {last} overlap those being written by {holder}; waiting up to {wait:g} s "
                        f"({WAIT_ENV}) for it to finish"
                    )
                    told = holder
                self.sleep(min(self.poll, max(0.0, deadline - self.clock())))
            lease.check()
        except BaseException:
            lease.release()
            raise
        self._collect(earlier)
        with _held_lock:
            _held.setdefault(self.store.location, []).append(lease)
        return lease


@dataclass
class _Adopted:
    """A parent process's lease, adopted by the worker processes it started to write under it (a backfill's
    parallel runs): they die with it (a process pool), so its renewal covers them."""

    first: str
    last: str
    purpose: str

    def covers(self, first: str, last: str) -> bool:
        return self.first <= first and last <= self.last

    def check(self) -> None:
        return None


def adopt_parent_lease(location: str, first: str, last: str, purpose: str) -> None:
    """Make this (worker) process write dates ``first..last`` of ``location`` under its parent's lease."""
    with _held_lock:
        _held.setdefault(location, []).append(_Adopted(first, last, purpose))


def session_lease(store: ObjectStore, first, last, purpose: str, wait: float | None = None, on_wait=None):
    """The lease for writing dates ``first..last`` (a context manager), or a no-op one when this process
    already holds a lease covering them (a CLI backfill's runs execute in its process)."""
    first, last = str(first)[:10], str(last)[:10]
    held = held_covering(store.location, first, last)
    if held is not None:
        held.check()
        return _Reentrant(held)
    return SessionLeases(store).acquire(first, last, purpose, wait=wait, on_wait=on_wait)


@dataclass
class _Reentrant:
    lease: Lease

    def check(self) -> None:
        self.lease.check()

    def __enter__(self):
        return self.lease

    def __exit__(self, *exc) -> None:
        return None
