"""Configuration from the environment, validated up front, with secrets masked for display.

With nothing set, everything lives under ``USDCOP_HOME`` (default ``./.usdcop``): the lake directory,
the SQLite warehouse and ``DAGSTER_HOME``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import make_url

HOME_ENV = "USDCOP_HOME"
LAKE_ENV = "USDCOP_LAKE_URL"
WAREHOUSE_ENV = "USDCOP_WAREHOUSE_URL"
SOURCE_ENV = "USDCOP_SOURCE"
DEFAULT_HOME = ".usdcop"

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_IPV4_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_QUERY_SECRET_RE = re.compile(r"((?:api_?key|apikey|token|password|passwd|secret)=)[^&#]*", re.I)
_WAREHOUSE_DIALECTS = {"sqlite", "postgresql"}


def environ() -> Mapping[str, str]:
    """The process environment: the package's only reader of ``os.environ`` (``usdcop_assets_tests/unit/
    test_settings_reader.py`` enforces it). Live, not a snapshot: read at call time, so a variable set after import
    (a test's ``monkeypatch.setenv``, a deployment's restart) is seen; callers take an ``env`` mapping instead when
    given one."""
    return os.environ


def current_settings() -> Settings:
    """The stores' settings from the environment as it is now (never cached at import)."""
    return Settings.from_env(environ())


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class LakeLocation:
    scheme: str  # "file" or "s3"
    root: str  # directory path, or bucket name
    prefix: str = ""  # key prefix inside the bucket

    @property
    def url(self) -> str:
        if self.scheme == "file":
            return self.root
        return f"s3://{self.root}/{self.prefix}".rstrip("/")


def env_int(var: str, default: int, minimum: int = 1, env=os.environ) -> int:
    """An integer setting from the environment (``default`` when unset); ConfigError naming ``var`` otherwise."""
    raw = (env.get(var) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{var}={raw!r} must be at least {minimum}")
    return value


BACKFILL_SESSIONS_PER_RUN_ENV = "USDCOP_BACKFILL_SESSIONS_PER_RUN"
DEFAULT_BACKFILL_SESSIONS_PER_RUN = 250


def backfill_sessions_per_run(env=os.environ) -> int:
    """Sessions per run of a long backfill: the session assets' ``BackfillPolicy`` (UI backfills, read when the
    code location loads) and ``usdcop backfill``'s chunks. Smaller runs can go in parallel and hold less in memory."""
    return env_int(BACKFILL_SESSIONS_PER_RUN_ENV, DEFAULT_BACKFILL_SESSIONS_PER_RUN, env=env)


def home(env=os.environ) -> Path:
    return Path(env.get(HOME_ENV) or DEFAULT_HOME).expanduser().absolute()


def parse_lake_url(raw: str, var: str = LAKE_ENV) -> LakeLocation:
    """A local directory (plain path or ``file://``) or ``s3://bucket[/prefix]``."""
    if not raw or not raw.strip():
        raise ConfigError(f"{var} is empty; unset it for the local default or give a path or s3://bucket/prefix")
    raw = raw.strip()
    if "://" not in raw:
        return LakeLocation("file", str(Path(raw).expanduser().absolute()))
    parts = urlsplit(raw)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise ConfigError(f"{var}={_mask_url(raw)!r}: a file URL must look like file:///absolute/path")
        return LakeLocation("file", unquote(parts.path))
    if parts.scheme in ("s3", "s3a"):
        bucket = parts.netloc
        if "@" in bucket:
            raise ConfigError(f"{var}: put S3 credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, not in the URL")
        if ":" in bucket:
            raise ConfigError(f"{var}: s3://bucket/prefix takes no host or port; set the endpoint in AWS_ENDPOINT_URL")
        if not _valid_bucket(bucket):
            raise ConfigError(f"{var}={_mask_url(raw)!r}: {bucket!r} is not a valid S3 bucket name")
        return LakeLocation("s3", bucket, parts.path.strip("/"))
    raise ConfigError(f"{var}={_mask_url(raw)!r}: unsupported scheme {parts.scheme!r} (use a path, file:// or s3://)")


def _valid_bucket(bucket: str) -> bool:
    """S3 bucket naming rules: 3-63 of [a-z0-9.-], alphanumeric ends, no "..", not an IPv4 address."""
    return bool(_BUCKET_RE.match(bucket or "")) and ".." not in bucket and not _IPV4_RE.match(bucket)


def parse_warehouse_url(raw: str, var: str = WAREHOUSE_ENV) -> sa.URL:
    """A SQLAlchemy URL for SQLite or PostgreSQL (``postgresql+psycopg://user@host/db``)."""
    if not raw or not raw.strip():
        raise ConfigError(f"{var} is empty; unset it for the SQLite default or give a SQLAlchemy URL")
    try:
        url = make_url(raw.strip())
    except Exception:
        raise ConfigError(
            f"{var} is not a SQLAlchemy URL (expected e.g. postgresql+psycopg://user@host:5432/db)"
        ) from None
    if url.get_backend_name() not in _WAREHOUSE_DIALECTS:
        raise ConfigError(
            f"{var}={mask_url(url)!r}: backend {url.get_backend_name()!r} is not supported (sqlite or postgresql)"
        )
    if url.get_backend_name() == "postgresql" and not url.database:
        raise ConfigError(f"{var}={mask_url(url)!r}: no database name")
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        # An in-memory database vanishes with each connection (and each run process): nothing would persist.
        raise ConfigError(f"{var}={mask_url(url)!r}: a SQLite warehouse needs a file path (sqlite:///path/to/file)")
    if url.host and "@" in url.host:
        # An unescaped "@" in the password: SQLAlchemy would parse part of the password as the host.
        raise ConfigError(
            f"{var}: the URL's host contains '@'; percent-encode special characters in the password (@ is %40)"
        )
    try:
        url.get_dialect()
    except Exception:
        raise ConfigError(
            f"{var}={mask_url(url)!r}: unknown driver {url.drivername!r} (use e.g. postgresql+psycopg)"
        ) from None
    return url


def mask_url(url: sa.URL | str) -> str:
    """Render a URL for logs and UIs: password hidden, query-string secrets hidden."""
    if isinstance(url, sa.URL):
        # render_as_string hides only the password field; secrets in the query string need masking too.
        return _QUERY_SECRET_RE.sub(r"\1***", url.render_as_string(hide_password=True))
    return _mask_url(url)


def scrub_secrets(text: str, url: sa.URL | str | None) -> str:
    """``text`` (a driver's error message) with the URL's password, in raw and percent-encoded forms, and any
    ``password=``/``apikey=``-style values replaced by ``***``: some drivers echo their connection string."""
    from urllib.parse import quote, quote_plus

    out = str(text)
    password = None
    if isinstance(url, sa.URL):
        password = url.password
    elif url:
        try:
            password = make_url(url).password
        except Exception:
            password = None
    if password:
        password = str(password)
        for form in sorted({password, quote(password, safe=""), quote_plus(password)}, key=len, reverse=True):
            out = out.replace(form, "***")
    return _QUERY_SECRET_RE.sub(r"\1***", out)


def _mask_url(raw: str) -> str:
    masked = raw
    try:
        parts = urlsplit(raw)
        has_password = parts.password is not None
    except ValueError:
        has_password = False
    if has_password:
        # urlsplit splits user info at the *last* "@", so a password containing "@" is masked whole.
        userinfo, _, hostport = parts.netloc.rpartition("@")
        masked = masked.replace(parts.netloc, f"{userinfo.partition(':')[0]}:***@{hostport}", 1)
    masked = re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", masked)  # also a password containing "/"
    return _QUERY_SECRET_RE.sub(r"\1***", masked)


@dataclass(frozen=True)
class Settings:
    home: Path
    lake: LakeLocation
    warehouse_url: sa.URL
    dagster_home: Path
    lake_from_env: bool
    warehouse_from_env: bool

    @classmethod
    def from_env(cls, env=os.environ) -> Settings:
        root = home(env)
        lake_raw = env.get(LAKE_ENV)
        wh_raw = env.get(WAREHOUSE_ENV)
        lake = parse_lake_url(lake_raw) if lake_raw is not None else LakeLocation("file", str(root / "lake"))
        warehouse = (
            parse_warehouse_url(wh_raw)
            if wh_raw is not None
            else sa.URL.create(
                "sqlite", database=str(root / "warehouse.sqlite")
            )  # no parsing: "?" or "#" in the path stay
        )
        dagster_home = Path(env.get("DAGSTER_HOME") or root / "dagster_home").expanduser().absolute()
        return cls(root, lake, warehouse, dagster_home, lake_raw is not None, wh_raw is not None)

    def describe(self) -> dict[str, str]:
        """Resolved configuration, safe to print or attach as metadata."""
        return {
            HOME_ENV: str(self.home),
            LAKE_ENV: self.lake.url,
            WAREHOUSE_ENV: mask_url(self.warehouse_url),
            "DAGSTER_HOME": str(self.dagster_home),
        }
