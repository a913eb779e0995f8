"""The platform's clock: now in UTC, or a replay clock (``USDCOP_REPLAY_CLOCK``) for replays and demos.

One function, so L0 (which asks the source only for bars closed by now), the sensors and the gap
checks agree on what "now" is. Tests monkeypatch ``usdcop_assets.clock.utc_now``.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from usdcop_assets.core.settings import Settings, as_settings

CLOCK_ENV = "USDCOP_REPLAY_CLOCK"


def utc_now(settings: Settings | None = None) -> pd.Timestamp:
    """The current instant (UTC), or the replay clock's (``USDCOP_REPLAY_CLOCK``, read at each call)."""
    now = pd.Timestamp(dt.datetime.now(dt.UTC))
    spec = as_settings(settings).live.replay_clock
    return replay_clock(spec, now) if spec else now


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
