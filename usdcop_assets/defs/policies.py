"""Retry policies of the steps that call a vendor (``l0/ohlcv_m5``, ``l0/macro_daily``), and the backfill policy of
the session-partitioned layers, from a deployment's settings."""

import dagster as dg

from usdcop_assets.core.settings import Settings


def source_retry_policy(settings: Settings) -> dg.RetryPolicy:
    """3 retries, exponential back-off from ``USDCOP_RETRY_DELAY_SECONDS`` with +/- jitter."""
    return dg.RetryPolicy(
        max_retries=3,
        delay=settings.sources.retry_delay_seconds,
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )


def session_backfill_policy(settings: Settings) -> dg.BackfillPolicy:
    """A backfill of session partitions runs as ranges of ``USDCOP_BACKFILL_SESSIONS_PER_RUN`` sessions (250) each."""
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=settings.history.backfill_sessions_per_run)
