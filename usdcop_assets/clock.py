"""The platform's clock: now in UTC, or a replay clock (``USDCOP_REPLAY_CLOCK``) for replays and demos.

One function, so L0 (which asks the source only for bars closed by now), the sensors and the gap
checks agree on what "now" is. Tests monkeypatch ``usdcop_assets.clock.utc_now``.

A caller that ticks (the sensors, the live loop) resolves the replay clock once from its settings
(``PlatformClock.from_settings``) and passes it (``utc_now(clock=...)``, or ``PlatformClock.now``): no
``Settings`` is built per call. A one-off ``utc_now()`` reads the environment's settings at the call.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from usdcop_assets.core.settings import Settings, as_settings

CLOCK_ENV = "USDCOP_REPLAY_CLOCK"


@dataclass(frozen=True)
class PlatformClock:
    """The platform clock with its replay setting resolved: ``replay`` is the ``USDCOP_REPLAY_CLOCK`` spec, or None
    for the real clock. A bad spec raises at ``now()``, as ``utc_now`` always did."""

    replay: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> PlatformClock:
        """``settings``' replay clock (None: the environment's settings, read now)."""
        return cls(as_settings(settings).live.replay_clock or None)

    def now(self) -> pd.Timestamp:
        now = pd.Timestamp(dt.datetime.now(dt.UTC))
        return replay_clock(self.replay, now) if self.replay else now


def utc_now(settings: Settings | None = None, *, clock: PlatformClock | None = None) -> pd.Timestamp:
    """The current instant (UTC), or the replay clock's (``USDCOP_REPLAY_CLOCK``): ``clock``'s when given (resolved
    once by a caller that ticks), else ``settings``' (None: the environment's, read at this call)."""
    return (clock or PlatformClock.from_settings(settings)).now()


def replay_clock(spec: str, now: pd.Timestamp) -> pd.Timestamp:
    """A time-shifted, optionally accelerated clock: ``<start ISO>@<real epoch s>x<speed>``.

    At real instant ``epoch`` the clock reads ``start``; it then runs ``speed`` times faster. E.g.
    ``2025-03-04T17:00:00Z@1763650000x30`` replays a session at 30x (a bar every 10 s).
    """
    try:
        start, rest = spec.split("@", 1)
        epoch, _, speed = rest.partition("x")
        base = pd.Timestamp(start)
        base = base.tz_localize("UTC") if base.tz is None else base.tz_convert("UTC")
        elapsed = now.timestamp() - float(epoch)
        return base + pd.Timedelta(seconds=elapsed * float(speed or 1))
    except ValueError:
        raise ValueError(f"{CLOCK_ENV}={spec!r}: expected <start ISO>@<real epoch seconds>x<speed>") from None
