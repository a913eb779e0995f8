"""The live process's view of the bar source: the batch path's fetch (``sources.fetch_bars``) with, for
TwelveData, one client kept for the whole process (its HTTP connection stays open and its per-key
credit accounting carries over between polls) and no waiting inside a poll: one attempt per poll, and
a key pool out of credit answers "rate limited" instead of sleeping, so the loop asks again a second
later and a SIGTERM is never stuck behind a back-off.

No Dagster.
"""

from __future__ import annotations

import pandas as pd

from usdcop_assets.core.settings import Settings
from usdcop_assets.live.loop import RateLimited
from usdcop_assets.sources import conform_l0, fetch_bars, require_available


def _no_wait(seconds: float) -> None:
    raise RateLimited(f"the key pool would wait {seconds:.1f} s for credit")


class BarSource:
    def __init__(self, source: str, settings: Settings | None = None, timeout: float = 5.0):
        self.name = require_available(source)
        self._client = None
        if self.name.split(":", 1)[0] == "twelvedata":
            from usdcop_assets.sources.twelvedata import TwelveDataClient

            self._client = TwelveDataClient.from_env(settings, timeout=timeout, max_attempts=1, sleep=_no_wait)

    def fetch(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """The L0 frame of ``[start, end)``, as ``sources.fetch_bars`` returns it."""
        if self._client is not None:
            return conform_l0(self._client.fetch_bars(start, end))  # what fetch_bars_with_summary does with its client
        return fetch_bars(self.name, start, end)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
