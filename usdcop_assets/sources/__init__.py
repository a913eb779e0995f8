"""Where bars come from. ``USDCOP_SOURCE`` = ``twelvedata`` | ``synthetic`` | ``file:PATH``; unset means
``twelvedata`` when ``TWELVEDATA_API_KEYS`` is set, else ``synthetic``."""

from __future__ import annotations

import os

from usdcop_assets.settings import SOURCE_ENV, ConfigError

AVAILABLE = ("synthetic",)  # twelvedata and file: arrive with the acquisition issue


def resolve_source(env=os.environ) -> str:
    explicit = (env.get(SOURCE_ENV) or "").strip()
    if explicit:
        return explicit
    return "twelvedata" if env.get("TWELVEDATA_API_KEYS") else "synthetic"


def require_available(source: str) -> str:
    """The source, if this build can read it; otherwise a ConfigError naming the variable."""
    kind = source.split(":", 1)[0]
    if kind not in AVAILABLE:
        raise ConfigError(
            f"{SOURCE_ENV} resolves to {source!r}, which this build cannot read yet "
            f"(available: {', '.join(AVAILABLE)}); set {SOURCE_ENV}=synthetic"
        )
    return source
