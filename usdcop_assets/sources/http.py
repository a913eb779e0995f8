"""Small helpers shared by the vendor HTTP clients: the one retry loop, retry backoff and secret redaction.

- :class:`Backoff` gives exponential backoff with *full jitter* (delay = U(0, min(cap, base * 2**n))),
  with ``sleep`` and ``rand`` injectable so tests run instantly and deterministically.
- :func:`redact` replaces every secret (API keys) in a string or URL with ``***``, including the
  percent-encoded form a key takes inside a query string.
- :func:`install_httpx_log_redaction` masks ``apikey=``/``api_key=`` query values in the records of
  the ``httpx`` logger, which logs every request URL (query string included) at INFO level.

Nothing here imports Dagster.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus

import httpx

MASK = "***"

_QUERY_KEY_RE = re.compile(r"((?:api_?key|apikey|token)=)[^&#\s\"']*", re.I)


def redact(text, secrets: Iterable[str | None]) -> str:
    """``text`` (anything ``str()`` accepts) with every non-empty secret replaced by ``***``.

    Longer secrets are replaced first (so a key that contains another key is hidden whole), and the
    percent-encoded forms of each secret are hidden too. Query-string values of ``apikey``/``api_key``
    parameters are masked as well, whatever they hold.
    """
    out = str(text)
    forms: set[str] = set()
    for secret in secrets or ():
        if not secret:
            continue
        forms.update({secret, quote(secret, safe=""), quote_plus(secret)})
    for form in sorted(forms, key=len, reverse=True):
        out = out.replace(form, MASK)
    return _QUERY_KEY_RE.sub(r"\1" + MASK, out)


class TransientError(Exception):
    """Raised by one attempt of :meth:`VendorHttpClient.with_retries` for a failure worth retrying (5xx, 429)."""


AGAIN = object()  # returned by an attempt to repeat it at once, uncounted (a rate limit the caller waits out itself)


class VendorError(RuntimeError):
    """A vendor request that returned an error, or a body that could not be used (code/message quoted)."""

    def __init__(self, message: str, *, code: int | None = None, vendor_message: str | None = None):
        super().__init__(message)
        self.code = code
        self.vendor_message = vendor_message


@dataclass
class Backoff:
    """Exponential backoff with full jitter and a bounded number of attempts.

    ``delay(n)`` for the n-th retry (0-based) is ``rand() * min(max_delay, base_delay * 2**n)``;
    inject ``rand=lambda: 1.0`` for the deterministic upper envelope.
    """

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    rand: Callable[[], float] = field(default=random.random, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("backoff delays must not be negative")

    def delay(self, retry: int) -> float:
        ceiling = min(self.max_delay, self.base_delay * (2.0 ** max(0, retry)))
        return max(0.0, min(1.0, float(self.rand()))) * ceiling

    def wait(self, retry: int) -> float:
        """Sleep before retry number ``retry`` (0-based); returns the delay slept."""
        seconds = self.delay(retry)
        self.sleep(seconds)
        return seconds


class _RedactingFilter(logging.Filter):
    """Masks API-key query values in log records (httpx logs full request URLs at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            if record.args:
                args = record.args if isinstance(record.args, tuple) else (record.args,)
                record.args = tuple(redact(a, ()) if not isinstance(a, (int, float)) else a for a in args)
            if isinstance(record.msg, str):
                record.msg = redact(record.msg, ())
        except Exception:  # never let redaction break logging
            pass
        return True


_FILTER = _RedactingFilter()


def install_httpx_log_redaction() -> None:
    """Attach (once) a filter to the ``httpx`` logger that masks ``apikey``/``api_key`` values."""
    for name in ("httpx", "httpcore"):
        lg = logging.getLogger(name)
        if _FILTER not in lg.filters:
            lg.addFilter(_FILTER)


class VendorHttpClient:
    """The HTTP plumbing both vendor clients share: an owned or injected ``httpx.Client``, the backoff
    policy, an injectable clock, a request counter, and ``close``/context-manager support. The retry
    loop is :meth:`with_retries`; each client supplies one attempt (TwelveData's rotates keys and honours rate
    limits)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        max_attempts: int,
        base_delay: float,
        max_delay: float,
        clock: Callable[[], dt.datetime],
        sleep: Callable[[float], None],
        rand: Callable[[], float] | None,
        client: httpx.Client | None,
        transport: httpx.BaseTransport | None,
    ):
        self.base_url = check_base_url(base_url, f"{type(self).__name__} base_url").rstrip("/")
        self.timeout = timeout
        backoff_kwargs = {"rand": rand} if rand is not None else {}
        self.backoff = Backoff(
            max_attempts=max_attempts, base_delay=base_delay, max_delay=max_delay, sleep=sleep, **backoff_kwargs
        )
        self._clock = clock
        self._owns_client = client is None
        self._http = client or httpx.Client(timeout=timeout, transport=transport)
        self.requests_made = 0

    def with_retries(
        self,
        attempt: Callable[[], object],
        *,
        vendor: str,
        secrets: Iterable[str | None],
        failed: Callable[[str], Exception],
        log: logging.Logger,
    ):
        """The retry loop of both vendor clients. ``attempt()`` makes one request and returns its result, returns
        :data:`AGAIN` to repeat at once without counting, or raises :class:`TransientError`; timeouts and
        connection errors are transient too, any other exception propagates. After ``max_attempts`` transient
        failures ``failed(message)`` is raised."""
        retries = 0
        while True:
            try:
                result = attempt()
            except httpx.TimeoutException as exc:
                cause = f"timeout after {self.timeout:g} s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                cause = f"connection error ({type(exc).__name__}: {redact(exc, secrets)})"
            except TransientError as exc:
                cause = str(exc)
            else:
                if result is AGAIN:
                    continue
                return result
            retries += 1
            if retries >= self.backoff.max_attempts:
                raise failed(f"failed after {retries} attempts; last cause: {cause}") from None
            delay = self.backoff.delay(retries - 1)
            log.warning(
                "%s request failed (%s), attempt %d of %d; retrying in %.2f s",
                vendor,
                cause,
                retries,
                self.backoff.max_attempts,
                delay,
            )
            self.backoff.sleep(delay)

    def close(self) -> None:
        if self._owns_client:
            self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def is_loopback(host: str | None) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1): traffic that never leaves the machine."""
    import ipaddress

    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(raw: str, var: str, secrets: Iterable[str] = ()) -> str:
    """``raw`` if it is an https URL, or an http URL to a loopback host (a local test server or proxy);
    a ConfigError naming ``var`` otherwise: over plain http the API key would cross the network in clear."""
    from urllib.parse import urlsplit

    from usdcop_assets.core.settings import ConfigError

    parts = urlsplit(raw)
    try:
        host = parts.hostname
    except ValueError:
        host = None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(f"{var}={redact(raw, secrets)!r} is not an https URL")
    if parts.username or parts.password:
        raise ConfigError(f"{var}: credentials do not belong in the URL (the API key is sent in a header or parameter)")
    if parts.scheme == "http" and not is_loopback(host):
        raise ConfigError(
            f"{var}={redact(raw, secrets)!r}: plain http would send the API key in clear text; use https "
            f"(http is accepted only for a loopback host such as 127.0.0.1)"
        )
    return raw
