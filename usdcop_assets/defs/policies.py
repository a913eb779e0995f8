"""Retry policies of the steps that call a vendor (``l0/ohlcv_m5``, ``l0/macro_daily``), and the backfill policy of
the session-partitioned layers."""

from collections.abc import Mapping

import dagster as dg

from usdcop_assets.core.settings import backfill_sessions_per_run, environ

RETRY_DELAY_ENV = "USDCOP_RETRY_DELAY_SECONDS"
DEFAULT_RETRY_DELAY_SECONDS = 10.0


def retry_delay_seconds(env: Mapping[str, str] | None = None) -> float:
    env = environ() if env is None else env
    raw = (env.get(RETRY_DELAY_ENV) or "").strip()
    if not raw:
        return DEFAULT_RETRY_DELAY_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{RETRY_DELAY_ENV}={raw!r} is not a number of seconds") from None
    if not 0 <= value <= 3600:
        raise ValueError(f"{RETRY_DELAY_ENV}={raw!r} must be between 0 and 3600 seconds")
    return value


def source_retry_policy(env: Mapping[str, str] | None = None) -> dg.RetryPolicy:
    """3 retries, exponential back-off from ``USDCOP_RETRY_DELAY_SECONDS`` with +/- jitter."""
    env = environ() if env is None else env
    return dg.RetryPolicy(
        max_retries=3, delay=retry_delay_seconds(env), backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
    )


SOURCE_RETRY_POLICY = source_retry_policy()


def session_backfill_policy() -> dg.BackfillPolicy:
    """A backfill of session partitions runs as ranges of ``USDCOP_BACKFILL_SESSIONS_PER_RUN`` sessions (250) each."""
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=backfill_sessions_per_run())
