"""Configuration from the environment, validated up front, with secrets masked for display.

With nothing set, everything lives under ``USDCOP_HOME`` (default ``./.usdcop``): the lake directory,
the SQLite warehouse and ``DAGSTER_HOME``. Why deployments are configured here and runs by ``dg.Config``:
docs/decisions/0011-configuration.md.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
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


def as_settings(settings: Settings | None = None) -> Settings:
    """``settings`` itself, else (None) ``Settings.from_env`` of the environment now. Anything else is a TypeError (the
    mapping path of before the defs/ merge is gone: build ``Settings.from_env(mapping)`` instead)."""
    if settings is None:
        return Settings.from_env()
    if isinstance(settings, Settings):
        return settings
    raise TypeError(f"expected Settings or None, got {type(settings).__name__} (use Settings.from_env(mapping))")


def child_environ(drop_prefixes: tuple[str, ...] = ()) -> dict[str, str]:
    """A copy of the environment for a child process, without the variables starting with ``drop_prefixes`` (so
    a replay's child sees only the deployment it is given, not this one's)."""
    return {k: v for k, v in environ().items() if not k.startswith(drop_prefixes)}


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


class _EnvGroup(BaseModel):
    """A group of typed settings, each field aliased to its environment variable. Parsed only when first asked for
    (``Settings``' properties): a bad value in one group never stops code that reads another, and the error names the
    variable. An empty or blank variable counts as unset, as it always has."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> _EnvGroup:
        env = environ() if env is None else env
        data = {}
        for name, info in cls.model_fields.items():
            var = info.alias or name
            raw = env.get(var)
            if raw is not None and str(raw).strip():
                data[var] = str(raw).strip()
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            var = str(err["loc"][0]) if err["loc"] else cls.__name__
            shown = "***" if _is_secret(cls, var) else repr(data.get(var))
            raise ConfigError(f"{var}={shown}: {err['msg'][0].lower()}{err['msg'][1:]}") from None

    def describe(self) -> dict[str, str]:
        """The group as ``VARIABLE: value`` with secrets masked (run metadata, ``usdcop config``)."""
        out = {}
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "***" if value.get_secret_value() else ""
            out[info.alias or name] = "" if value is None else str(value)
        return out


def _is_secret(cls: type[BaseModel], var: str) -> bool:
    return any(
        (info.alias or name) == var and info.annotation in (SecretStr, SecretStr | None)
        for name, info in cls.model_fields.items()
    )


def _int(var: str, default: int, minimum: int = 1, maximum: int | None = None):
    return Field(default, alias=var, ge=minimum, le=maximum)


def _num(var: str, default: float, minimum: float = 0.0, maximum: float | None = None):
    return Field(default, alias=var, ge=minimum, le=maximum, allow_inf_nan=False)


class HistorySettings(_EnvGroup):
    """Where the partitioned history starts, and how a long backfill is cut into runs."""

    start: dt.date = Field(dt.date(2020, 1, 1), alias="USDCOP_HISTORY_START")
    # Sessions per run of a long backfill: the session assets' BackfillPolicy and ``usdcop backfill``'s chunks.
    backfill_sessions_per_run: int = _int("USDCOP_BACKFILL_SESSIONS_PER_RUN", 250)


class SourceSettings(_EnvGroup):
    """The bar and macro sources and their vendors' keys (secrets: never printed)."""

    bar_source: str | None = Field(None, alias="USDCOP_SOURCE")  # synthetic[:clean] | twelvedata | file:PATH
    source_tz: str | None = Field(None, alias="USDCOP_SOURCE_TZ")  # the time zone a bar file's stamps are in
    macro_source: str | None = Field(None, alias="USDCOP_MACRO_SOURCE")
    twelvedata_api_keys: SecretStr | None = Field(None, alias="TWELVEDATA_API_KEYS")  # comma-separated
    twelvedata_base_url: str | None = Field(None, alias="TWELVEDATA_BASE_URL")
    twelvedata_credits_per_minute: int | None = Field(None, alias="TWELVEDATA_CREDITS_PER_MINUTE", ge=1)
    twelvedata_credits_per_day: int | None = Field(None, alias="TWELVEDATA_CREDITS_PER_DAY", ge=1)
    fred_api_key: SecretStr | None = Field(None, alias="FRED_API_KEY")
    fred_base_url: str | None = Field(None, alias="FRED_BASE_URL")
    retry_delay_seconds: float = _num("USDCOP_RETRY_DELAY_SECONDS", 10.0, 0.0, 3600.0)  # the vendor steps' back-off

    @property
    def twelvedata_keys(self) -> list[str]:
        raw = self.twelvedata_api_keys.get_secret_value() if self.twelvedata_api_keys else ""
        return [k.strip() for k in raw.split(",") if k.strip()]

    @property
    def fred_key(self) -> str:
        return self.fred_api_key.get_secret_value().strip() if self.fred_api_key else ""


class TrainingSettings(_EnvGroup):
    """A deployment's default training budget and fold options; a run overrides each with ``PPOModelConfig``."""

    timesteps: int = _int("USDCOP_PPO_TIMESTEPS", 50_000)
    seed: int = _int("USDCOP_PPO_SEED", 7, minimum=0)
    checkpoints: int = _int("USDCOP_PPO_CHECKPOINTS", 5)  # validation evaluations; the best is kept
    n_steps: int = _int("USDCOP_PPO_N_STEPS", 2048)  # rollout length (the batch is at most this)
    scheme: Literal["expanding", "rolling"] = Field("expanding", alias="USDCOP_TRAIN_SCHEME")
    train_sessions: int = _int("USDCOP_TRAIN_SESSIONS", 250)  # the rolling window's length
    valid_sessions: int = _int("USDCOP_VALID_SESSIONS", 20)
    min_train_sessions: int = _int("USDCOP_MIN_TRAIN_SESSIONS", 60)
    # a folder of experiment files (rl/experiments.py) beside the package's; default: <USDCOP_HOME>/experiments
    experiments_dir: Path | None = Field(None, alias="USDCOP_EXPERIMENTS_DIR")
    # what l5/actions_m5 and the live process trade: the fold's l5/ppo_model (registry rl_models), or the seed
    # ensemble l6/experiment_selection chose on validation sessions before the fold (registry rl_served_models)
    serve: Literal["ppo_model", "selection"] = Field("ppo_model", alias="USDCOP_SERVE")

    def fold_options(self) -> dict:
        """The keyword arguments of ``rl.folds.fold_windows``."""
        return {
            "scheme": self.scheme,
            "train_sessions": self.train_sessions,
            "valid_sessions": self.valid_sessions,
            "min_train_sessions": self.min_train_sessions,
        }


class ObservationSettings(_EnvGroup):
    config_path: Path | None = Field(None, alias="USDCOP_OBS_CONFIG")  # default: observation/obs_v1.json
    train_window: str | None = Field(None, alias="USDCOP_OBS_TRAIN_WINDOW")  # YYYY-MM-DD..YYYY-MM-DD: declared rule


class MacroSettings(_EnvGroup):
    lag_business_days: int = _int("USDCOP_MACRO_LAG_BUSINESS_DAYS", 1)  # a value is usable this many days later
    stale_business_days: int = _int("USDCOP_MACRO_STALE_BUSINESS_DAYS", 5, minimum=0)


class AutomationSettings(_EnvGroup):
    """Executor, sensors, automation and alerts of a deployment."""

    executor: Literal["in_process", "multiprocess", "k8s", "celery_k8s"] = Field("in_process", alias="USDCOP_EXECUTOR")
    interval_seconds: int = _int("USDCOP_AUTOMATION_INTERVAL_SECONDS", 30)
    history_hours: int = _int("USDCOP_AUTOMATION_HISTORY_HOURS", 48)
    realtime: Literal["on", "off"] = Field("off", alias="USDCOP_REALTIME")
    realtime_run: Literal["l0", "chain"] = Field("chain", alias="USDCOP_REALTIME_RUN")
    realtime_poll_seconds: int = _int("USDCOP_REALTIME_POLL_SECONDS", 15)
    gap_fill_sessions: int = _int("USDCOP_GAP_FILL_SESSIONS", 5)
    gap_fill_grace_minutes: int = _int("USDCOP_GAP_FILL_GRACE_MINUTES", 10, minimum=0)
    freshness_alert_interval_seconds: int = _int("USDCOP_FRESHNESS_ALERT_INTERVAL_SECONDS", 60)
    alert_webhook_url: SecretStr | None = Field(None, alias="USDCOP_ALERT_WEBHOOK_URL")  # its path is a secret
    webserver_url: str | None = Field(None, alias="DAGSTER_WEBSERVER_URL")  # links in alerts


class LiveSettings(_EnvGroup):
    """The long-lived bar process (``usdcop live``)."""

    poll_seconds: float = _num("USDCOP_LIVE_POLL_SECONDS", 1.0, 0.05)  # between requests while a bar is due
    grace_minutes: float = _num("USDCOP_LIVE_GRACE_MINUTES", 10.0)  # after the close, how long the last bar is awaited
    alert_after_seconds: float = _num("USDCOP_LIVE_ALERT_AFTER_SECONDS", 300.0)  # without a due bar: one alert
    replay_clock: str | None = Field(None, alias="USDCOP_REPLAY_CLOCK")  # START[@SPEED]: a replayed clock (demos)


class StorageOptions(_EnvGroup):
    """Operational knobs of the lake and the warehouse (the URLs themselves are ``Settings.lake``/``warehouse_url``)."""

    lease_ttl_seconds: int = _int("USDCOP_LEASE_TTL_SECONDS", 120, minimum=2)
    lease_wait_seconds: int = _int("USDCOP_LEASE_WAIT_SECONDS", 900, minimum=0)
    stale_temp_seconds: int = _int("USDCOP_LAKE_STALE_TEMP_SECONDS", 3600)  # far longer than any object write
    sql_dir: Path | None = Field(None, alias="USDCOP_SQL_DIR")  # default: the repository's sql/
    aws_region: str | None = Field(None, alias="AWS_REGION")
    aws_default_region: str | None = Field(None, alias="AWS_DEFAULT_REGION")
    git_commit: str | None = Field(None, alias="USDCOP_GIT_COMMIT")  # stamped into code versions (images without .git)

    @property
    def region(self) -> str:
        return self.aws_region or self.aws_default_region or "us-east-1"


@dataclass(frozen=True)
class Settings:
    """The deployment's configuration, built once from the environment (``Settings.from_env``): the stores eagerly
    (validated, naming the variable), every other group typed and parsed on first use. Runs are configured by
    ``dg.Config``, not here."""

    home: Path
    lake: LakeLocation
    warehouse_url: sa.URL
    dagster_home: Path
    lake_from_env: bool
    warehouse_from_env: bool
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, env=None) -> Settings:
        env = dict(environ() if env is None else env)  # a snapshot: the object never changes under its users
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
        return cls(root, lake, warehouse, dagster_home, lake_raw is not None, wh_raw is not None, env)

    # frozen dataclass + cached_property: the cache lives in __dict__, which frozen does not guard
    @cached_property
    def history(self) -> HistorySettings:
        return HistorySettings.from_env(self.env)

    @cached_property
    def sources(self) -> SourceSettings:
        return SourceSettings.from_env(self.env)

    @cached_property
    def training(self) -> TrainingSettings:
        return TrainingSettings.from_env(self.env)

    @property
    def experiments_dir(self) -> Path | None:
        """The user's folder of experiment files: ``USDCOP_EXPERIMENTS_DIR`` (which must exist), else
        ``<home>/experiments`` when it exists, else None (the package's files only)."""
        chosen = self.training.experiments_dir
        if chosen is not None:
            return Path(chosen).expanduser().absolute()
        default = self.home / "experiments"
        return default if default.is_dir() else None

    @cached_property
    def observation(self) -> ObservationSettings:
        return ObservationSettings.from_env(self.env)

    @cached_property
    def macro(self) -> MacroSettings:
        return MacroSettings.from_env(self.env)

    @cached_property
    def automation(self) -> AutomationSettings:
        return AutomationSettings.from_env(self.env)

    @cached_property
    def live(self) -> LiveSettings:
        return LiveSettings.from_env(self.env)

    @cached_property
    def storage(self) -> StorageOptions:
        return StorageOptions.from_env(self.env)

    def describe(self) -> dict[str, str]:
        """Resolved configuration, safe to print or attach as metadata."""
        return {
            HOME_ENV: str(self.home),
            LAKE_ENV: self.lake.url,
            WAREHOUSE_ENV: mask_url(self.warehouse_url),
            "DAGSTER_HOME": str(self.dagster_home),
        }
